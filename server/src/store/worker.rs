//! Runs a [`StateStore`] on a thread of its own, so a slow disk never stalls an IO core.
//!
//! Every core holds a [`StoreHandle`]. Requests reach the thread in the order they are sent
//! (the channel is unbounded; each core waits for its commits, which bounds it). The thread
//! takes everything queued at once and commits a run of consecutive commits, from every
//! core, as one batch: group commit.

use super::{History, HistoryQuery, StateStore, StoreError};
use crate::engine::{Change, RoomSnapshot};

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
}

/// Most jobs taken off the queue at once.
const MAX_TAKEN: usize = 1024;

/// A core's way to its store. Cheap to clone; the thread ends when the last one is dropped.
#[derive(Clone)]
pub struct StoreHandle {
    jobs: flume::Sender<Job>,
}

/// What a request answered: the thread is gone (the process is shutting down) or the store
/// failed.
fn gone<T>(answer: Result<Result<T, StoreError>, flume::RecvError>) -> Result<T, StoreError> {
    answer.unwrap_or_else(|_| Err(StoreError::Unavailable("the store thread ended".into())))
}

impl StoreHandle {
    /// Starts the store's thread.
    pub fn spawn(store: Box<dyn StateStore>) -> std::io::Result<StoreHandle> {
        let (jobs, queue) = flume::unbounded();
        std::thread::Builder::new()
            .name("rookery-store".into())
            .spawn(move || run(store, queue))?;
        Ok(StoreHandle { jobs })
    }

    // Each request is sent at once, in the caller's order; its answer is awaited with
    // [`Pending::wait`], by the caller or by another task.

    /// Commits `changes`; the answer comes once the store holds them.
    pub fn commit(&self, changes: Vec<Change>) -> Pending<()> {
        let (reply, answer) = flume::bounded(1);
        let _ = self.jobs.send(Job::Commit { changes, reply });
        Pending(answer)
    }

    /// Loads a room (seeing every commit sent before).
    pub fn load(&self, room: String) -> Pending<Option<RoomSnapshot>> {
        let (reply, answer) = flume::bounded(1);
        let _ = self.jobs.send(Job::Load { room, reply });
        Pending(answer)
    }

    /// Reads a page of a room's history (seeing every commit sent before).
    pub fn history(&self, room: String, query: HistoryQuery) -> Pending<History> {
        let (reply, answer) = flume::bounded(1);
        let _ = self.jobs.send(Job::History { room, query, reply });
        Pending(answer)
    }
}

/// An answer on its way from the store's thread.
pub struct Pending<T>(flume::Receiver<Result<T, StoreError>>);

impl<T> Pending<T> {
    pub async fn wait(self) -> Result<T, StoreError> {
        gone(self.0.recv_async().await)
    }
}

fn run(mut store: Box<dyn StateStore>, queue: flume::Receiver<Job>) {
    let mut taken = Vec::new();
    let mut changes = Vec::new();
    let mut waiting = Vec::new();
    while let Ok(first) = queue.recv() {
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
                    changes.append(&mut more);
                    waiting.push(reply);
                }
                other => {
                    commit(store.as_mut(), &mut changes, &mut waiting);
                    serve(store.as_mut(), other);
                }
            }
        }
        commit(store.as_mut(), &mut changes, &mut waiting);
    }
}

/// Commits the gathered changes as one batch and answers everyone waiting on them.
fn commit(store: &mut dyn StateStore, changes: &mut Vec<Change>, waiting: &mut Vec<Answer<()>>) {
    if waiting.is_empty() {
        return;
    }
    let result = store.commit(changes);
    if let Err(error) = &result {
        tracing::error!(%error, changes = changes.len(), "a commit failed");
    }
    changes.clear();
    for reply in waiting.drain(..) {
        let _ = reply.send(result.clone());
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
        Job::Commit { .. } => unreachable!("commits are gathered"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use rust_decimal::Decimal;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn loads_see_every_commit_sent_before_them() {
        let store = StoreHandle::spawn(Box::new(MemoryStore::new(10))).unwrap();
        block(async {
            let commits: Vec<_> = (1..=50u32)
                .map(|n| {
                    store.commit(vec![Change::Counter {
                        room: "r".into(),
                        counter: "c".into(),
                        value: Decimal::from(n),
                    }])
                })
                .collect();
            let load = store.load("r".into());
            for commit in commits {
                commit.wait().await.unwrap();
            }
            let snapshot = load.wait().await.unwrap().unwrap();
            assert_eq!(snapshot.counters["c"], Decimal::from(50));
        });
    }
}
