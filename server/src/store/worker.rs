//! Runs a [`StateStore`] on a thread of its own, so a slow disk never stalls an IO core.
//!
//! Every core holds a [`StoreHandle`]. Requests reach the thread in the order they are sent
//! (the channel is unbounded; each core waits for its commits, which bounds it). The thread
//! takes everything queued at once and commits a run of consecutive commits, from every
//! core, as one batch: group commit. A load or a history read sees every commit sent
//! before it.
//!
//! # Durability
//!
//! A commit is answered once the store's `commit` returned, which for a [`DiskStore`] means
//! the OS has it (a killed process loses nothing). What a power cut may take depends on the
//! [`Durability`] the thread was given: [`Durability::Always`] fsyncs every batch before
//! answering it; [`Durability::EveryMs`] answers first and fsyncs within that many ms. An
//! fsync takes milliseconds (3.6 ms median here); under `EveryMs`, a store that offers a
//! [`StateStore::background_sync`] is fsynced by a second thread, `rookery-fsync`, while
//! this one goes on committing — done inline, every fsync held every core's commits up
//! for its whole length (W3 on disk: 57 % of the memory store's deliveries/s with the
//! fsync every 5 ms, ~100 % with it every second).
//!
//! # Failures
//!
//! A failed commit is never answered with an error while its changes are lost, and never
//! answered as done: the thread logs it, counts it and retries the same batch (backing off
//! from 10 ms to 1 s) until it is stored, while the cores waiting on it stay blocked (and
//! everything queued behind it waits). A failed fsync is retried the same way, committing
//! again everything since the last good fsync first, since the OS may have dropped what the
//! failed fsync did not write (a failed background fsync is retried so, on this thread). [`StoreHandle::healthy`] and [`StoreHandle::failures`] tell
//! monitoring about it.
//!
//! # The memory store runs on the cores
//!
//! A [`MemoryStore`] neither fails nor waits for a disk, so a thread of its own would only
//! add a hand-over and a wake-up per batch (two context switches on a core that shares its
//! CPU with it): [`StoreHandle::in_memory`] runs it on the calling core, behind a mutex the
//! cores share, and its answers are at hand when asked for. The order guarantees are the
//! same (a call sees every commit made before it).
//!
//! [`DiskStore`]: super::DiskStore

use super::{History, HistoryQuery, MemoryStore, StateStore, StoreError, SyncFn};
use crate::engine::{Change, RoomSnapshot};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

type Answer<T> = flume::Sender<Result<T, StoreError>>;

enum Job {
    Load {
        room: String,
        reply: Answer<Option<RoomSnapshot>>,
    },
    Commit {
        changes: Vec<Change>,
        reply: Answer<()>,
    },
    History {
        room: String,
        query: HistoryQuery,
        reply: Answer<History>,
    },
    Sync {
        reply: Answer<()>,
    },
    /// The background fsync asked for last is done (from `rookery-fsync`).
    Synced(Result<(), StoreError>),
}

/// Most jobs taken off the queue at once.
const MAX_TAKEN: usize = 1024;

/// The first wait before retrying a failed commit or fsync; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Attempts at the last fsync when the thread ends (nobody waits for it any more, so it
/// does not retry forever).
const FINAL_SYNC_ATTEMPTS: u32 = 8;

/// When commits are made durable against power loss (an fsync, [`StateStore::sync`]).
///
/// Either way a commit is answered only once the store's `commit` returned: for a
/// [`DiskStore`](super::DiskStore) the OS holds it, so a crash of the process loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every batch is fsynced before its commits are answered: an answered commit survives
    /// a power cut. Each group commit waits for a disk flush (its batches grow to match).
    Always,
    /// Commits are answered once the OS has them, and fsynced at most every this many ms
    /// while any are unsynced (also when the store goes idle, within this many ms of the
    /// last commit): a power cut loses at most about the last this-many ms of answered
    /// commits. A commit after a quiet spell is fsynced at once.
    EveryMs(u64),
}

/// How the store's thread is doing, shared with every handle.
#[derive(Debug)]
struct Health {
    /// `false` while the last commit or fsync attempt failed.
    healthy: AtomicBool,
    /// Failed commit and fsync attempts since the start.
    failures: AtomicU64,
}

impl Health {
    /// Healthy, with no failures yet.
    fn fresh() -> Arc<Health> {
        Arc::new(Health {
            healthy: AtomicBool::new(true),
            failures: AtomicU64::new(0),
        })
    }
}

/// A core's way to its store. Cheap to clone; the thread ends (after a last fsync) when the
/// last one is dropped.
#[derive(Clone)]
pub struct StoreHandle {
    way: Way,
    health: Arc<Health>,
}

/// Where a handle's calls go.
#[derive(Clone)]
enum Way {
    /// To the store's thread.
    Thread(flume::Sender<Job>),
    /// Run by the caller: a memory store (see the module's doc).
    Here(Arc<Mutex<MemoryStore>>),
}

/// What a request answered: the thread is gone (the process is shutting down) or the store
/// failed.
fn gone<T>(answer: Result<Result<T, StoreError>, flume::RecvError>) -> Result<T, StoreError> {
    answer.unwrap_or_else(|_| Err(StoreError::Unavailable("the store thread ended".into())))
}

impl StoreHandle {
    /// Starts the store's thread, fsyncing as `durability` says.
    pub fn spawn(
        store: Box<dyn StateStore>,
        durability: Durability,
    ) -> std::io::Result<StoreHandle> {
        let (jobs, queue) = flume::unbounded();
        let health = Health::fresh();
        let syncer = match (durability, store.background_sync()) {
            (Durability::EveryMs(_), Some(sync)) => Some(spawn_syncer(sync, jobs.downgrade())?),
            _ => None,
        };
        let worker = Worker {
            store,
            durability,
            health: health.clone(),
            changes: Vec::new(),
            waiting: Vec::new(),
            unsynced: Vec::new(),
            last_sync: Instant::now(),
            syncer,
            syncing: None,
            inline_syncs: 0,
        };
        std::thread::Builder::new()
            .name("rookery-store".into())
            .spawn(move || worker.run(queue))?;
        Ok(StoreHandle {
            way: Way::Thread(jobs),
            health,
        })
    }

    /// A handle that runs `store` on the calling core (see the module's doc).
    pub fn in_memory(store: MemoryStore) -> StoreHandle {
        StoreHandle {
            way: Way::Here(Arc::new(Mutex::new(store))),
            health: Health::fresh(),
        }
    }

    // Each request is sent at once, in the caller's order; its answer is awaited with
    // [`Pending::wait`], by the caller or by another task.

    /// Commits `changes`; the answer comes once the store holds them (and, with
    /// [`Durability::Always`], once they are fsynced). It never comes while they are not
    /// stored: a failing store is retried until it takes them.
    pub fn commit(&self, changes: Vec<Change>) -> Pending<()> {
        match &self.way {
            Way::Thread(jobs) => ask(jobs, |reply| Job::Commit { changes, reply }),
            // By value: the memory store keeps the changes' entries, not copies of them.
            Way::Here(store) => {
                lock(store).take(changes);
                Pending::ready(Ok(()))
            }
        }
    }

    /// Loads a room (seeing every commit sent before).
    pub fn load(&self, room: String) -> Pending<Option<RoomSnapshot>> {
        match &self.way {
            Way::Thread(jobs) => ask(jobs, |reply| Job::Load { room, reply }),
            Way::Here(store) => Pending::ready(lock(store).load(&room)),
        }
    }

    /// Reads a page of a room's history (seeing every commit sent before).
    pub fn history(&self, room: String, query: HistoryQuery) -> Pending<History> {
        match &self.way {
            Way::Thread(jobs) => ask(jobs, |reply| Job::History { room, query, reply }),
            Way::Here(store) => Pending::ready(lock(store).history(&room, query)),
        }
    }

    /// Answers once every commit sent before is fsynced: for a clean shutdown under
    /// [`Durability::EveryMs`], which otherwise leaves the last fsync to the thread's end.
    pub fn sync(&self) -> Pending<()> {
        match &self.way {
            Way::Thread(jobs) => ask(jobs, |reply| Job::Sync { reply }),
            Way::Here(_) => Pending::ready(Ok(())),
        }
    }

    /// `false` while the store's last commit or fsync attempt failed (commits are then
    /// waiting for a retry to succeed): for health checks and metrics.
    pub fn healthy(&self) -> bool {
        self.health.healthy.load(Ordering::Relaxed)
    }

    /// Failed commit and fsync attempts since the store started (each retry counts).
    pub fn failures(&self) -> u64 {
        self.health.failures.load(Ordering::Relaxed)
    }
}

/// Sends the job `job` makes (given its answer's way back) to the store's thread.
fn ask<T>(jobs: &flume::Sender<Job>, job: impl FnOnce(Answer<T>) -> Job) -> Pending<T> {
    let (reply, answer) = flume::bounded(1);
    let _ = jobs.send(job(reply));
    Pending(Reply::Later(answer))
}

/// The memory store, for a call run here.
fn lock(store: &Mutex<MemoryStore>) -> std::sync::MutexGuard<'_, MemoryStore> {
    // A panic elsewhere while it was held left nothing half-done that matters more than
    // going on: each call is one store operation.
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An answer: at hand (a memory store's), or on its way from the store's thread.
pub struct Pending<T>(Reply<T>);

enum Reply<T> {
    Ready(Result<T, StoreError>),
    Later(flume::Receiver<Result<T, StoreError>>),
}

impl<T> Pending<T> {
    fn ready(answer: Result<T, StoreError>) -> Pending<T> {
        Pending(Reply::Ready(answer))
    }

    /// Waits for the answer (an error if the store failed, or its thread ended).
    pub async fn wait(self) -> Result<T, StoreError> {
        match self.0 {
            Reply::Ready(answer) => answer,
            Reply::Later(answer) => gone(answer.recv_async().await),
        }
    }

    /// Whether the answer is there (for tests).
    #[cfg(test)]
    fn is_answered(&self) -> bool {
        match &self.0 {
            Reply::Ready(_) => true,
            Reply::Later(answer) => !answer.is_empty(),
        }
    }

    /// Blocks the thread until the answer comes (outside the cores: the shutdown path).
    pub fn wait_blocking(self) -> Result<T, StoreError> {
        match self.0 {
            Reply::Ready(answer) => answer,
            Reply::Later(answer) => gone(answer.recv()),
        }
    }
}

/// The store's thread.
struct Worker {
    store: Box<dyn StateStore>,
    durability: Durability,
    health: Arc<Health>,
    /// Changes of the commits gathered for the next batch.
    changes: Vec<Change>,
    /// Those commits' answers.
    waiting: Vec<Answer<()>>,
    /// Changes committed since the last good fsync, committed again if an fsync fails.
    unsynced: Vec<Change>,
    last_sync: Instant,
    /// Asks `rookery-fsync` for a background fsync (`None`: fsyncs are done inline).
    syncer: Option<flume::Sender<()>>,
    /// The background fsync under way: how many of `unsynced` it covers, and the
    /// `inline_syncs` when it started (an inline fsync since then covered them already).
    syncing: Option<(usize, u64)>,
    /// Inline fsyncs that worked.
    inline_syncs: u64,
}

/// Starts `rookery-fsync`, which runs `sync` each time it is asked and answers on the
/// store thread's own queue (holding it only weakly, so the queue still closes when the
/// last [`StoreHandle`] goes). It ends when the store thread drops the returned sender.
fn spawn_syncer(
    mut sync: SyncFn,
    answers: flume::WeakSender<Job>,
) -> std::io::Result<flume::Sender<()>> {
    let (ask, asked) = flume::unbounded::<()>();
    std::thread::Builder::new()
        .name("rookery-fsync".into())
        .spawn(move || {
            while asked.recv().is_ok() {
                let result = sync();
                match answers.upgrade() {
                    Some(queue) => {
                        let _ = queue.send(Job::Synced(result));
                    }
                    None => break,
                }
            }
        })?;
    Ok(ask)
}

impl Worker {
    fn run(mut self, queue: flume::Receiver<Job>) {
        let mut taken = Vec::new();
        loop {
            let first = match self.sync_due_in() {
                None => match queue.recv() {
                    Ok(job) => job,
                    Err(flume::RecvError::Disconnected) => break,
                },
                Some(due) => match queue.recv_timeout(due) {
                    Ok(job) => job,
                    Err(flume::RecvTimeoutError::Timeout) => {
                        self.start_sync();
                        continue;
                    }
                    Err(flume::RecvTimeoutError::Disconnected) => break,
                },
            };
            taken.push(first);
            while taken.len() < MAX_TAKEN {
                match queue.try_recv() {
                    Ok(job) => taken.push(job),
                    Err(_) => break,
                }
            }
            for job in taken.drain(..) {
                match job {
                    Job::Commit {
                        changes: mut more,
                        reply,
                    } => {
                        self.changes.append(&mut more);
                        self.waiting.push(reply);
                    }
                    Job::Sync { reply } => {
                        self.commit();
                        self.sync(None);
                        let _ = reply.send(Ok(()));
                    }
                    Job::Synced(result) => self.synced(result),
                    other => {
                        self.commit();
                        serve(self.store.as_mut(), other);
                    }
                }
            }
            self.commit();
            if self.sync_due_in() == Some(Duration::ZERO) {
                self.start_sync();
            }
        }
        if !self.unsynced.is_empty() {
            self.sync(Some(FINAL_SYNC_ATTEMPTS));
        }
    }

    /// How long until unsynced commits are due for an fsync (`None`: nothing is due).
    fn sync_due_in(&self) -> Option<Duration> {
        match self.durability {
            // One background fsync at a time: the next one is due once it is answered.
            Durability::EveryMs(_) if self.syncing.is_some() => None,
            Durability::EveryMs(ms) if !self.unsynced.is_empty() => {
                let due = self.last_sync + Duration::from_millis(ms);
                Some(due.saturating_duration_since(Instant::now()))
            }
            _ => None,
        }
    }

    /// Commits the gathered changes as one batch (retrying until the store takes them) and
    /// answers everyone waiting on them.
    fn commit(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let changes = &self.changes;
        retry(&self.health, "a commit", changes.len(), None, || {
            self.store.commit(changes)
        });
        self.unsynced.append(&mut self.changes);
        if self.durability == Durability::Always {
            self.sync(None);
        }
        for reply in self.waiting.drain(..) {
            let _ = reply.send(Ok(()));
        }
    }

    /// Starts a due fsync: in the background when there is a syncer (the answer comes as a
    /// [`Job::Synced`]), else inline.
    fn start_sync(&mut self) {
        let Some(syncer) = &self.syncer else {
            self.sync(None);
            return;
        };
        if self.syncing.is_some() || self.unsynced.is_empty() {
            return;
        }
        self.last_sync = Instant::now();
        if syncer.send(()).is_ok() {
            self.syncing = Some((self.unsynced.len(), self.inline_syncs));
        } else {
            // The syncer is gone (it never ends first): fsync here.
            self.syncer = None;
            self.sync(None);
        }
    }

    /// A background fsync's answer: what it covered is durable, or (if it failed) is
    /// committed again and fsynced here, retrying until it works.
    fn synced(&mut self, result: Result<(), StoreError>) {
        let Some((covered, inline_syncs)) = self.syncing.take() else {
            return;
        };
        if inline_syncs != self.inline_syncs {
            // An inline fsync since it started made all of that durable already.
            return;
        }
        match result {
            Ok(()) => {
                self.unsynced.drain(..covered.min(self.unsynced.len()));
                self.health.healthy.store(true, Ordering::Relaxed);
            }
            Err(error) => {
                self.health.failures.fetch_add(1, Ordering::Relaxed);
                self.health.healthy.store(false, Ordering::Relaxed);
                tracing::error!(%error, changes = covered, "a background fsync failed; committing again and fsyncing here");
                self.sync_after_failure(None);
            }
        }
    }

    /// Fsyncs every commit so far, retrying (at most `attempts` times, or until it works):
    /// before each retry, the changes since the last good fsync are committed again, since
    /// a failed fsync may have lost them. Returns whether it worked.
    fn sync(&mut self, attempts: Option<u32>) -> bool {
        self.sync_from(false, attempts)
    }

    /// [`Self::sync`] after an fsync failed elsewhere: commits again first.
    fn sync_after_failure(&mut self, attempts: Option<u32>) -> bool {
        self.sync_from(true, attempts)
    }

    fn sync_from(&mut self, mut retrying: bool, attempts: Option<u32>) -> bool {
        if self.unsynced.is_empty() {
            self.last_sync = Instant::now();
            return true;
        }
        let unsynced = &self.unsynced;
        let store = &mut self.store;
        let done = retry(&self.health, "an fsync", unsynced.len(), attempts, || {
            if std::mem::replace(&mut retrying, true) {
                store.commit(unsynced)?;
            }
            store.sync()
        });
        if done {
            self.unsynced.clear();
            self.inline_syncs += 1;
        }
        self.last_sync = Instant::now();
        done
    }
}

/// Runs `attempt` until it works (or `attempts` times), logging and counting each failure
/// and backing off between tries. Returns whether it worked.
fn retry(
    health: &Health,
    what: &str,
    changes: usize,
    attempts: Option<u32>,
    mut attempt: impl FnMut() -> Result<(), StoreError>,
) -> bool {
    let mut backoff = FIRST_BACKOFF;
    let mut tried = 0;
    loop {
        match attempt() {
            Ok(()) => {
                if tried > 0 {
                    tracing::info!(tried, "{what} worked after failing");
                }
                health.healthy.store(true, Ordering::Relaxed);
                return true;
            }
            Err(error) => {
                tried += 1;
                health.failures.fetch_add(1, Ordering::Relaxed);
                health.healthy.store(false, Ordering::Relaxed);
                if attempts.is_some_and(|attempts| tried >= attempts) {
                    tracing::error!(%error, changes, tried, "{what} failed; giving up");
                    return false;
                }
                tracing::error!(%error, changes, tried, retry_in = ?backoff, "{what} failed; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn serve(store: &mut dyn StateStore, job: Job) {
    match job {
        Job::Load { room, reply } => {
            let _ = reply.send(store.load(&room));
        }
        Job::History { room, query, reply } => {
            let _ = reply.send(store.history(&room, query));
        }
        Job::Commit { .. } | Job::Sync { .. } | Job::Synced(_) => {
            unreachable!("commits and syncs are handled")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use rust_decimal::Decimal;
    use std::sync::Mutex;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    fn counter(n: u32) -> Vec<Change> {
        vec![Change::Counter {
            room: "r".into(),
            counter: "c".into(),
            value: Decimal::from(n),
        }]
    }

    /// What a [`Flaky`] store saw, shared with the test.
    #[derive(Default)]
    struct Seen {
        /// Commits and fsyncs that failed on purpose still to come.
        failing_commits: u32,
        failing_syncs: u32,
        /// Every call, in order: `c` for a commit that worked, `s` for an fsync that worked,
        /// `x` for a failure.
        calls: String,
        /// When set, commits fail until it is cleared.
        broken: bool,
    }

    /// A memory store that fails on demand and reports its calls (and its end) to the test.
    struct Flaky {
        inner: MemoryStore,
        seen: Arc<Mutex<Seen>>,
        events: flume::Sender<char>,
    }

    impl Flaky {
        fn new(seen: Seen) -> (Flaky, Arc<Mutex<Seen>>, flume::Receiver<char>) {
            let seen = Arc::new(Mutex::new(seen));
            let (events, heard) = flume::unbounded();
            let store = Flaky {
                inner: MemoryStore::new(10),
                seen: seen.clone(),
                events,
            };
            (store, seen, heard)
        }

        fn note(&self, call: char) {
            self.seen.lock().unwrap().calls.push(call);
            let _ = self.events.send(call);
        }
    }

    impl Drop for Flaky {
        fn drop(&mut self) {
            let _ = self.events.send('.');
        }
    }

    impl StateStore for Flaky {
        fn load(&mut self, room: &str) -> Result<Option<RoomSnapshot>, StoreError> {
            self.inner.load(room)
        }

        fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
            let fail = {
                let mut seen = self.seen.lock().unwrap();
                let fail = seen.broken || seen.failing_commits > 0;
                seen.failing_commits = seen.failing_commits.saturating_sub(1);
                fail
            };
            if fail {
                self.note('x');
                return Err(StoreError::Unavailable("the disk is on fire".into()));
            }
            self.note('c');
            self.inner.commit(changes)
        }

        fn history(&mut self, room: &str, query: HistoryQuery) -> Result<History, StoreError> {
            self.inner.history(room, query)
        }

        fn sync(&mut self) -> Result<(), StoreError> {
            let fail = {
                let mut seen = self.seen.lock().unwrap();
                let fail = seen.failing_syncs > 0;
                seen.failing_syncs = seen.failing_syncs.saturating_sub(1);
                fail
            };
            if fail {
                self.note('x');
                return Err(StoreError::Unavailable("the disk is full".into()));
            }
            self.note('s');
            Ok(())
        }
    }

    /// Ends a [`Background`] store's fsync under way, as it says.
    type Decide = flume::Sender<Result<(), StoreError>>;

    /// A [`Flaky`] store with a background fsync that notes `b` when it starts and then
    /// waits for the test to say how it ends.
    struct Background {
        flaky: Flaky,
        outcome: flume::Receiver<Result<(), StoreError>>,
        events: flume::Sender<char>,
    }

    impl Background {
        /// The store, what it saw, what it hears, and how the test ends its fsyncs.
        fn new() -> (Background, Arc<Mutex<Seen>>, flume::Receiver<char>, Decide) {
            let (flaky, seen, heard) = Flaky::new(Seen::default());
            let (decide, outcome) = flume::unbounded();
            let events = flaky.events.clone();
            (
                Background {
                    flaky,
                    outcome,
                    events,
                },
                seen,
                heard,
                decide,
            )
        }
    }

    impl StateStore for Background {
        fn load(&mut self, room: &str) -> Result<Option<RoomSnapshot>, StoreError> {
            self.flaky.load(room)
        }
        fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
            self.flaky.commit(changes)
        }
        fn history(&mut self, room: &str, query: HistoryQuery) -> Result<History, StoreError> {
            self.flaky.history(room, query)
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            self.flaky.sync()
        }
        fn background_sync(&self) -> Option<SyncFn> {
            let outcome = self.outcome.clone();
            let events = self.events.clone();
            Some(Box::new(move || {
                let _ = events.send('b');
                outcome.recv().unwrap_or(Ok(()))
            }))
        }
    }

    #[test]
    fn commits_go_on_while_a_background_fsync_is_under_way() {
        let (store, seen, heard, decide) = Background::new();
        let store = StoreHandle::spawn(Box::new(store), Durability::EveryMs(0)).unwrap();
        block(async {
            store.commit(counter(1)).wait().await.unwrap();
        });
        assert_eq!(heard.recv().unwrap(), 'c');
        assert_eq!(
            heard.recv().unwrap(),
            'b',
            "an fsync started in the background"
        );
        // It has not ended: commits are answered all the same.
        block(async {
            for n in 2..=4 {
                store.commit(counter(n)).wait().await.unwrap();
            }
        });
        assert_eq!(seen.lock().unwrap().calls, "cccc", "no inline fsync");
        decide.send(Ok(())).unwrap();
        // The commits after it get a background fsync of their own.
        assert_eq!(heard.iter().find(|c| *c != 'c'), Some('b'));
        decide.send(Ok(())).unwrap();
        assert_eq!(store.failures(), 0);
        assert!(store.healthy());
    }

    #[test]
    fn a_failed_background_fsync_commits_again_and_fsyncs_inline() {
        let (store, seen, heard, decide) = Background::new();
        let store = StoreHandle::spawn(Box::new(store), Durability::EveryMs(0)).unwrap();
        block(async {
            store.commit(counter(1)).wait().await.unwrap();
        });
        assert_eq!(heard.recv().unwrap(), 'c');
        assert_eq!(heard.recv().unwrap(), 'b');
        decide
            .send(Err(StoreError::Unavailable("the disk is full".into())))
            .unwrap();
        // The commit again, then an fsync on the store thread.
        assert_eq!(heard.recv().unwrap(), 'c');
        assert_eq!(heard.recv().unwrap(), 's');
        // A commit after it is answered once the store thread is past the fsync.
        block(async {
            store.commit(counter(2)).wait().await.unwrap();
        });
        assert!(seen.lock().unwrap().calls.starts_with("ccsc"));
        assert_eq!(store.failures(), 1);
        assert!(
            store.healthy(),
            "healthy again once the inline fsync worked"
        );
    }

    #[test]
    fn loads_see_every_commit_sent_before_them() {
        let store = StoreHandle::spawn(Box::new(MemoryStore::new(10)), Durability::Always).unwrap();
        block(async {
            let commits: Vec<_> = (1..=50u32).map(|n| store.commit(counter(n))).collect();
            let load = store.load("r".into());
            for commit in commits {
                commit.wait().await.unwrap();
            }
            let snapshot = load.wait().await.unwrap().unwrap();
            assert_eq!(snapshot.counters["c"], Decimal::from(50));
        });
    }

    #[test]
    fn a_failed_commit_is_retried_until_it_is_stored() {
        let (flaky, seen, _) = Flaky::new(Seen {
            failing_commits: 3,
            ..Seen::default()
        });
        let store = StoreHandle::spawn(Box::new(flaky), Durability::EveryMs(60_000)).unwrap();
        block(async {
            store
                .commit(counter(7))
                .wait()
                .await
                .expect("stored in the end");
            let snapshot = store.load("r".into()).wait().await.unwrap().unwrap();
            assert_eq!(snapshot.counters["c"], Decimal::from(7));
        });
        assert_eq!(seen.lock().unwrap().calls, "xxxc");
        assert_eq!(store.failures(), 3);
        assert!(store.healthy());
    }

    /// The memory store on the cores: every answer is at hand when asked for, and a call
    /// sees every commit made before it, as with the thread.
    #[test]
    fn a_memory_store_run_here_answers_at_once_and_in_order() {
        let store = StoreHandle::in_memory(MemoryStore::new(10));
        let first = store.commit(counter(1));
        let load = store.load("r".into());
        assert!(first.is_answered() && load.is_answered());
        let second = store.commit(counter(2));
        let other = store.clone().load("r".into());
        let sync = store.sync();
        assert!(second.is_answered() && other.is_answered() && sync.is_answered());
        block(async {
            first.wait().await.unwrap();
            let snapshot = load.wait().await.unwrap().unwrap();
            assert_eq!(snapshot.counters["c"], Decimal::from(1));
            second.wait().await.unwrap();
            let snapshot = other.wait().await.unwrap().unwrap();
            assert_eq!(snapshot.counters["c"], Decimal::from(2));
            sync.wait().await.unwrap();
        });
        assert!(store.healthy());
        assert_eq!(store.failures(), 0);
        assert_eq!(store.load("nowhere".into()).wait_blocking().unwrap(), None);
    }

    #[test]
    fn nothing_is_answered_while_commits_fail() {
        let (flaky, seen, heard) = Flaky::new(Seen {
            broken: true,
            ..Seen::default()
        });
        let store = StoreHandle::spawn(Box::new(flaky), Durability::Always).unwrap();
        let commit = store.commit(counter(1));
        let load = store.load("r".into());
        // Wait for two failed attempts (the second after a backoff, so the first is counted).
        assert_eq!(heard.recv().unwrap(), 'x');
        assert_eq!(heard.recv().unwrap(), 'x');
        assert!(!store.healthy());
        assert!(store.failures() >= 1);
        assert!(
            !commit.is_answered(),
            "no answer while the changes are not stored"
        );
        assert!(
            !load.is_answered(),
            "a load waits for the commits before it"
        );
        seen.lock().unwrap().broken = false;
        block(async {
            commit.wait().await.unwrap();
            let snapshot = load.wait().await.unwrap().unwrap();
            assert_eq!(snapshot.counters["c"], Decimal::from(1));
        });
        assert!(store.healthy());
    }

    #[test]
    fn always_fsyncs_each_batch_before_answering() {
        let (flaky, seen, _) = Flaky::new(Seen::default());
        let store = StoreHandle::spawn(Box::new(flaky), Durability::Always).unwrap();
        block(async {
            for n in 1..=3 {
                store.commit(counter(n)).wait().await.unwrap();
                let calls = seen.lock().unwrap().calls.clone();
                assert_eq!(calls, "cs".repeat(n as usize), "synced before the answer");
            }
        });
    }

    #[test]
    fn a_failed_fsync_commits_again_and_is_retried() {
        let (flaky, seen, _) = Flaky::new(Seen {
            failing_syncs: 2,
            ..Seen::default()
        });
        let store = StoreHandle::spawn(Box::new(flaky), Durability::Always).unwrap();
        block(async {
            store.commit(counter(5)).wait().await.unwrap();
        });
        // The commit, two failed fsyncs (each followed by the commit again), a good one.
        assert_eq!(seen.lock().unwrap().calls, "cxcxcs");
        assert_eq!(store.failures(), 2);
        assert!(store.healthy());
    }

    #[test]
    fn every_ms_fsyncs_an_idle_store_soon_after_its_last_commit() {
        let (flaky, seen, heard) = Flaky::new(Seen::default());
        let store = StoreHandle::spawn(Box::new(flaky), Durability::EveryMs(20)).unwrap();
        block(async {
            // The thread's start counts as a sync: this commit is answered before one.
            store.commit(counter(1)).wait().await.unwrap();
        });
        assert_eq!(heard.recv().unwrap(), 'c');
        // Nothing else is sent: the idle thread fsyncs on its own.
        let next = heard.recv_timeout(Duration::from_secs(10));
        assert_eq!(next, Ok('s'), "an idle store fsyncs within the interval");
        assert_eq!(seen.lock().unwrap().calls, "cs");
    }

    #[test]
    fn every_ms_answers_first_and_fsyncs_when_the_thread_ends() {
        let (flaky, seen, heard) = Flaky::new(Seen::default());
        let store = StoreHandle::spawn(Box::new(flaky), Durability::EveryMs(60_000)).unwrap();
        block(async {
            for n in 1..=3 {
                store.commit(counter(n)).wait().await.unwrap();
            }
        });
        assert_eq!(
            seen.lock().unwrap().calls,
            "ccc",
            "answered without an fsync"
        );
        drop(store);
        let rest: String = heard.iter().collect();
        assert_eq!(rest, "cccs.", "a last fsync, then the store is dropped");
    }

    #[test]
    fn a_sync_request_answers_once_everything_before_it_is_fsynced() {
        let (flaky, seen, _) = Flaky::new(Seen::default());
        let store = StoreHandle::spawn(Box::new(flaky), Durability::EveryMs(60_000)).unwrap();
        block(async {
            let commit = store.commit(counter(1));
            store.sync().wait().await.unwrap();
            commit.wait().await.unwrap();
        });
        assert_eq!(seen.lock().unwrap().calls, "cs");
    }

    #[test]
    fn commits_from_every_core_are_grouped() {
        let (flaky, seen, _) = Flaky::new(Seen {
            broken: true,
            ..Seen::default()
        });
        let store = StoreHandle::spawn(Box::new(flaky), Durability::Always).unwrap();
        // While the first commit is retried, the others queue up behind it.
        let first = store.commit(counter(1));
        while store.failures() == 0 {
            std::thread::yield_now();
        }
        let rest: Vec<_> = (2..=20).map(|n| store.clone().commit(counter(n))).collect();
        seen.lock().unwrap().broken = false;
        block(async {
            first.wait().await.unwrap();
            for commit in rest {
                commit.wait().await.unwrap();
            }
            let snapshot = store.load("r".into()).wait().await.unwrap().unwrap();
            assert_eq!(snapshot.counters["c"], Decimal::from(20));
        });
        let calls = seen.lock().unwrap().calls.clone();
        let commits = calls.matches('c').count();
        assert_eq!(commits, 2, "the queued commits went as one batch: {calls}");
    }
}
