//! A core's connections to Redis, standalone or Cluster, behind one handle ([`Redis`]):
//! commands go where their key is, subscriptions to the master that serves their channel,
//! and a probe per master checks that its pub/sub delivers.
//!
//! Against a standalone Redis there is one link (a command connection and a subscriber
//! connection). Against a Cluster (`--redis-cluster`) there is a link per master, found
//! with `CLUSTER SLOTS` (asked of the `--redis-url` address, then of any master), and the
//! slot map says which link serves which of the 16,384 slots. A master's answer `MOVED`
//! updates the map (and a full refresh follows); `ASK` sends the command once to the
//! importing master, after `ASKING`; `TRYAGAIN` (a script's keys split by a migration in
//! progress) waits a little and tries again. The map is also refreshed every few seconds,
//! and whenever Redis drops a subscription because its slot moved.
//!
//! Ordering: commands queued one after the other on one core reach each master in that
//! order; a command that is redirected is sent again after the ones queued behind it (only
//! while a slot moves).

use super::client::{self, Client, RedisError};
use super::connect::Link as Settings;
use super::resp::{self, Frame};
use super::stats::Stats;
use super::subscriber::{Push, Subscriber, PROBE_PREFIX};
use super::topology::{self, Redirect, Route, SLOTS};
use ahash::{AHashMap, AHashSet};
use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often each link publishes its probe.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// How often the slot map is asked for again when nothing changed.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Redirections followed for one command before its last answer stands.
const MAX_REDIRECTS: usize = 5;

/// `TRYAGAIN` (a script whose keys a migration has split) is tried again this many times,
/// [`TRYAGAIN_WAIT`] apart: moving a room's few keys takes milliseconds.
const MAX_TRYAGAIN: usize = 20;
const TRYAGAIN_WAIT: Duration = Duration::from_millis(50);

/// How long a redirected command waits for the connection to a newly found master.
const NEW_LINK_WAIT: Duration = Duration::from_secs(2);

/// No master serves this slot (in the map).
const NOBODY: u16 = u16::MAX;

/// A pair of connections to one Redis server (the standalone one, or a master).
struct Link {
    addr: SocketAddr,
    client: Client,
    subscriber: Subscriber,
    stats: Arc<Stats>,
    /// This link's probe channel (in a Cluster: one in a slot this master serves; empty
    /// until it serves one).
    probe: RefCell<String>,
}

impl Link {
    /// Connections to `addr`, opened as `settings` say (credentials, TLS: the same for
    /// every master).
    fn start(
        addr: SocketAddr,
        settings: &Arc<Settings>,
        stats: Arc<Stats>,
        pushes: flume::Sender<Push>,
    ) -> Link {
        Link {
            addr,
            client: Client::start(addr, settings.clone(), stats.clone()),
            subscriber: Subscriber::start(addr, settings.clone(), stats.clone(), pushes),
            stats,
            probe: RefCell::default(),
        }
    }

    /// Waits (bounded) for the command connection of a link just made.
    async fn wait_up(&self) {
        let start = Instant::now();
        while !self.client.is_up() && start.elapsed() < NEW_LINK_WAIT {
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A core's handle on Redis.
pub struct Redis {
    cluster: bool,
    /// The `--redis-url` address.
    seed: SocketAddr,
    /// How every connection is opened (`--redis-url`'s credentials and TLS).
    settings: Arc<Settings>,
    /// Cluster: asks the seed for the slot map when no master answers.
    seed_client: Option<Client>,
    /// The core's figures (`/metrics`, `/readyz`).
    stats: Arc<Stats>,
    pushes: flume::Sender<Push>,
    /// `rk:probe:<node>:<core>`: this core's probe channels start with it.
    probe_base: String,
    links: RefCell<Vec<Rc<Link>>>,
    /// Cluster: slot → index in `links` ([`NOBODY`] when unknown); empty until the first
    /// map.
    map: RefCell<Vec<u16>>,
    /// Cluster: the channels this core wants, and on which link each is subscribed.
    wanted: RefCell<AHashSet<String>>,
    placed: RefCell<AHashMap<String, usize>>,
    /// Cluster: wanted channels Redis dropped (their slot moved), to be made again.
    lost: RefCell<AHashSet<String>>,
    /// Cluster: asks the refresher for a new slot map now.
    refresh: flume::Sender<()>,
}

impl Redis {
    /// Starts this core's connections (to the URL's address, or, with `cluster`, to the
    /// masters of the Cluster it belongs to); what the subscriptions bring goes to
    /// `pushes`.
    pub fn start(
        settings: Arc<Settings>,
        cluster: bool,
        stats: Arc<Stats>,
        node: u64,
        core: usize,
        pushes: flume::Sender<Push>,
    ) -> Rc<Redis> {
        let addr = settings.addr;
        let probe_base = format!("{PROBE_PREFIX}{node:016x}:{core}");
        let (refresh, asked) = flume::unbounded();
        stats.cluster.store(cluster, Ordering::Relaxed);
        let mut links = Vec::new();
        let mut seed_client = None;
        if cluster {
            // Its own figures: it is not one of the links readiness depends on.
            seed_client = Some(Client::start(addr, settings.clone(), Arc::default()));
        } else {
            let link = Link::start(addr, &settings, stats.clone(), pushes.clone());
            *link.probe.borrow_mut() = probe_base.clone();
            link.subscriber.want(probe_base.clone());
            links.push(Rc::new(link));
        }
        let redis = Rc::new(Redis {
            cluster,
            seed: addr,
            settings,
            seed_client,
            stats,
            pushes,
            probe_base,
            links: RefCell::new(links),
            map: RefCell::default(),
            wanted: RefCell::default(),
            placed: RefCell::default(),
            lost: RefCell::default(),
            refresh,
        });
        monoio::spawn(run_probes(redis.clone()));
        if cluster {
            monoio::spawn(run_refresh(redis.clone(), asked));
        }
        redis
    }

    /// The link serving `slot` (any link for `None`).
    fn link_for(&self, slot: Option<u16>) -> Option<Rc<Link>> {
        let links = self.links.borrow();
        if !self.cluster {
            return links.first().cloned();
        }
        let map = self.map.borrow();
        let index = match slot {
            Some(slot) => *map.get(usize::from(slot))?,
            None => *map.iter().find(|&&i| i != NOBODY)?,
        };
        links.get(usize::from(index)).cloned()
    }

    /// The link to `addr`, made if there is none yet.
    fn link_at(&self, addr: SocketAddr) -> usize {
        let mut links = self.links.borrow_mut();
        if let Some(i) = links.iter().position(|l| l.addr == addr) {
            return i;
        }
        let link = Link::start(addr, &self.settings, Arc::default(), self.pushes.clone());
        links.push(Rc::new(link));
        links.len() - 1
    }

    /// `host:port` from a map or a redirection (an empty host is the seed's). Masters
    /// announce IP addresses unless configured with `cluster-announce-hostname`; a host
    /// name is resolved here, on the core (blocking, briefly).
    fn resolve(&self, addr: &str) -> Option<SocketAddr> {
        let full = match addr.strip_prefix(':') {
            Some(port) => format!("{}:{port}", self.seed.ip()),
            None => addr.to_owned(),
        };
        full.to_socket_addrs().ok()?.next()
    }

    /// Queues a command now, where its key is (so that commands queued one after the
    /// other reach their master in that order), to be waited for later.
    pub fn queue<A: AsRef<[u8]>>(self: &Rc<Self>, args: &[A]) -> Queued {
        let bytes = resp::command(args);
        if !self.cluster {
            let link = self.link_for(None).expect("a standalone link");
            return Queued {
                first: link.client.queue(bytes, 1),
                retry: None,
            };
        }
        let slot = match topology::route(args) {
            Route::Slot(slot) => Some(slot),
            Route::Any | Route::All => None,
        };
        let Some(link) = self.link_for(slot) else {
            let error = RedisError::Unavailable("the cluster's slot map is not known".into());
            return Queued {
                first: client::Queued::failed(error),
                retry: None,
            };
        };
        Queued {
            first: link.client.queue(bytes.clone(), 1),
            retry: Some((self.clone(), bytes, slot)),
        }
    }

    /// Sends one command and waits for its reply; an error reply is `Err(Reply)`.
    pub async fn call<A: AsRef<[u8]>>(self: &Rc<Self>, args: &[A]) -> Result<Frame, RedisError> {
        let mut frames = self.queue(args).wait().await?;
        match frames.pop() {
            Some(Frame::Error(e)) => Err(RedisError::Reply(e)),
            Some(frame) => Ok(frame),
            None => Err(RedisError::Unavailable("no reply".into())),
        }
    }

    /// Sends one command to every master (`SCRIPT LOAD`: each keeps its own scripts);
    /// answers the first master's reply that is not an error (a script's SHA1 is the same
    /// everywhere; a master that missed it answers `NOSCRIPT` later, and gets `EVAL`), or
    /// the first failure.
    pub async fn call_all<A: AsRef<[u8]>>(
        self: &Rc<Self>,
        args: &[A],
    ) -> Result<Frame, RedisError> {
        if !self.cluster {
            return self.call(args).await;
        }
        let links: Vec<Rc<Link>> = {
            let map = self.map.borrow();
            let links = self.links.borrow();
            let serving: AHashSet<u16> = map.iter().copied().filter(|&i| i != NOBODY).collect();
            serving
                .into_iter()
                .filter_map(|i| links.get(usize::from(i)).cloned())
                .collect()
        };
        let queued: Vec<_> = links
            .iter()
            .map(|link| link.client.queue(resp::command(args), 1))
            .collect();
        let mut first = Err(RedisError::Unavailable("no master known".into()));
        for (i, queued) in queued.into_iter().enumerate() {
            let answer = queued
                .wait()
                .await
                .and_then(|mut frames| match frames.pop() {
                    Some(Frame::Error(e)) => Err(RedisError::Reply(e)),
                    Some(frame) => Ok(frame),
                    None => Err(RedisError::Unavailable("no reply".into())),
                });
            if i == 0 || answer.is_ok() && first.is_err() {
                first = answer;
            }
        }
        first
    }

    /// Follows the redirections of a command's answer.
    async fn follow(
        self: &Rc<Self>,
        mut frames: Vec<Frame>,
        bytes: Vec<u8>,
        slot: Option<u16>,
    ) -> Result<Vec<Frame>, RedisError> {
        let (mut redirects, mut tries) = (0, 0);
        // The importing master of the last `ASK`: a `TRYAGAIN` from it is asked there again.
        let mut asked: Option<Rc<Link>> = None;
        while redirects < MAX_REDIRECTS && tries < MAX_TRYAGAIN {
            let Some(Frame::Error(error)) = frames.last() else {
                return Ok(frames);
            };
            redirects += 1;
            match topology::redirect(error) {
                Some(Redirect::Moved { slot: moved, addr }) => {
                    let Some(addr) = self.resolve(&addr) else {
                        return Ok(frames);
                    };
                    tracing::debug!(slot = moved, %addr, "redis cluster: MOVED");
                    asked = None;
                    self.moved(moved, addr);
                    let _ = self.refresh.send(());
                    let link = self
                        .link_for(Some(moved))
                        .expect("the slot was just mapped");
                    link.wait_up().await;
                    frames = link.client.queue(bytes.clone(), 1).wait().await?;
                }
                Some(Redirect::Ask { slot, addr }) => {
                    let Some(addr) = self.resolve(&addr) else {
                        return Ok(frames);
                    };
                    tracing::debug!(slot, %addr, "redis cluster: ASK");
                    let index = self.link_at(addr);
                    let link = self.links.borrow()[index].clone();
                    link.wait_up().await;
                    let mut asking = resp::command(&["ASKING"]);
                    asking.extend_from_slice(&bytes);
                    let mut both = link.client.queue(asking, 2).wait().await?;
                    frames = vec![both.pop().expect("two replies")];
                    asked = Some(link);
                }
                None if error.starts_with("TRYAGAIN") => {
                    redirects -= 1;
                    tries += 1;
                    monoio::time::sleep(TRYAGAIN_WAIT).await;
                    if let Some(link) = &asked {
                        let mut asking = resp::command(&["ASKING"]);
                        asking.extend_from_slice(&bytes);
                        let mut both = link.client.queue(asking, 2).wait().await?;
                        frames = vec![both.pop().expect("two replies")];
                        continue;
                    }
                    let Some(link) = self.link_for(slot) else {
                        return Ok(frames);
                    };
                    frames = link.client.queue(bytes.clone(), 1).wait().await?;
                }
                None => return Ok(frames),
            }
        }
        Ok(frames)
    }

    /// `slot` is served at `addr` now: the map says so, and this core's subscriptions in
    /// that slot are made there (what they missed meanwhile is filled).
    fn moved(&self, slot: u16, addr: SocketAddr) {
        let index = self.link_at(addr) as u16;
        {
            let mut map = self.map.borrow_mut();
            if map.len() != SLOTS {
                return;
            }
            map[usize::from(slot)] = index;
        }
        self.place_all();
    }

    /// Subscribes to `channel` and waits until Redis confirmed it. In a Cluster, a
    /// subscription refused because its slot moved is made again where the slot is now.
    pub async fn subscribe(&self, channel: String) -> Result<(), ()> {
        if !self.cluster {
            let link = self.link_for(None).expect("a standalone link");
            return link.subscriber.subscribe(channel).await;
        }
        self.wanted.borrow_mut().insert(channel.clone());
        // The caller bounds the wait (a room's load gives up after a few seconds).
        while self.map.borrow().is_empty() {
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        let slot = topology::slot(channel.as_bytes());
        for _ in 0..MAX_REDIRECTS {
            let Some(link) = self.link_for(Some(slot)) else {
                return Err(());
            };
            let index = self.link_at(link.addr);
            if let Some(old) = self.placed.borrow_mut().insert(channel.clone(), index) {
                if old != index {
                    self.links.borrow()[old]
                        .subscriber
                        .unsubscribe(channel.clone());
                }
            }
            if link.subscriber.subscribe(channel.clone()).await.is_ok() {
                return Ok(());
            }
            // Given up on that link: the slot moved (try where it is now), or nobody
            // wants the channel any more.
            let moved = self
                .placed
                .borrow()
                .get(&channel)
                .is_some_and(|&i| i != index);
            if !moved || !self.wanted.borrow().contains(&channel) {
                return Err(());
            }
        }
        Err(())
    }

    /// Subscribes without waiting.
    pub fn want(&self, channel: String) {
        if !self.cluster {
            let link = self.link_for(None).expect("a standalone link");
            return link.subscriber.want(channel);
        }
        self.wanted.borrow_mut().insert(channel);
        self.place_all();
    }

    pub fn unsubscribe(&self, channel: String) {
        if !self.cluster {
            let link = self.link_for(None).expect("a standalone link");
            return link.subscriber.unsubscribe(channel);
        }
        self.wanted.borrow_mut().remove(&channel);
        if let Some(index) = self.placed.borrow_mut().remove(&channel) {
            self.links.borrow()[index].subscriber.unsubscribe(channel);
        }
    }

    /// Redis dropped a subscription (its slot moved): it is made again where the map
    /// says, once refreshed.
    pub fn dropped(&self, channel: &str) {
        tracing::debug!(
            channel,
            "redis cluster: a subscription was dropped (its slot moved)"
        );
        if self.placed.borrow_mut().remove(channel).is_some() {
            self.lost.borrow_mut().insert(channel.to_owned());
            let _ = self.refresh.send(());
        }
    }

    /// Redis refused a subscription: with `MOVED`/`ASK`, the slot is elsewhere.
    pub fn refused(&self, error: &str) {
        match topology::redirect(error) {
            Some(Redirect::Moved { slot, addr }) | Some(Redirect::Ask { slot, addr }) => {
                if let Some(addr) = self.resolve(&addr) {
                    self.moved(slot, addr);
                }
                let _ = self.refresh.send(());
            }
            None => {}
        }
    }

    /// Makes every wanted subscription on the link the map says (moving those on another
    /// link); when one moved or was lost, says [`Push::Resubscribed`] so that the rooms
    /// fill what they may have missed. (A channel wanted for the first time is just
    /// subscribed.)
    fn place_all(&self) {
        let map = self.map.borrow();
        if map.len() != SLOTS {
            return;
        }
        let links = self.links.borrow();
        let mut placed = self.placed.borrow_mut();
        let mut lost = self.lost.borrow_mut();
        let mut moved = false;
        for channel in self.wanted.borrow().iter() {
            let index = map[usize::from(topology::slot(channel.as_bytes()))];
            if index == NOBODY {
                continue;
            }
            let index = usize::from(index);
            match placed.insert(channel.clone(), index) {
                Some(old) if old == index => continue,
                Some(old) => {
                    links[old].subscriber.unsubscribe(channel.clone());
                    moved = true;
                }
                None => moved |= lost.remove(channel),
            }
            links[index].subscriber.want(channel.clone());
        }
        lost.retain(|channel| self.wanted.borrow().contains(channel));
        if moved {
            let _ = self.pushes.send(Push::Resubscribed);
        }
    }

    /// Asks for the slot map (of a master that answers, or the seed) and applies it.
    async fn refresh_map(self: &Rc<Self>) -> Result<(), String> {
        let mut askers: Vec<(SocketAddr, Client)> = self
            .links
            .borrow()
            .iter()
            .filter(|l| l.client.is_up())
            .map(|l| (l.addr, l.client.clone()))
            .collect();
        if let Some(seed) = &self.seed_client {
            askers.push((self.seed, seed.clone()));
        }
        let mut last = "no master answers".to_owned();
        for (asked, client) in askers {
            let ranges = match client.call(&["CLUSTER", "SLOTS"]).await {
                Ok(frame) => topology::parse_slots(&frame),
                Err(e) => Err(e.to_string()),
            };
            match ranges {
                Ok(ranges) if !ranges.is_empty() => {
                    self.apply(asked, ranges);
                    return Ok(());
                }
                Ok(_) => last = "the cluster serves no slot".into(),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn apply(&self, asked: SocketAddr, ranges: Vec<topology::Range>) {
        let mut map = vec![NOBODY; SLOTS];
        for range in ranges {
            let addr = match range.master.strip_prefix(':') {
                Some(port) => format!("{}:{port}", asked.ip()),
                None => range.master,
            };
            let Some(addr) = self.resolve(&addr) else {
                tracing::warn!(%addr, "a cluster master's address does not resolve");
                continue;
            };
            let index = self.link_at(addr) as u16;
            map[usize::from(range.start)..=usize::from(range.end)].fill(index);
        }
        let serving: AHashSet<u16> = map.iter().copied().filter(|&i| i != NOBODY).collect();
        *self.map.borrow_mut() = map;
        // Each serving master's probe channel must be in one of its slots.
        let links = self.links.borrow().clone();
        let mut live = Vec::new();
        for &index in &serving {
            let link = &links[usize::from(index)];
            let current = link.probe.borrow().clone();
            let owned = |name: &str| {
                self.map.borrow()[usize::from(topology::slot(name.as_bytes()))] == index
            };
            if current.is_empty() || !owned(&current) {
                let probe = (0..)
                    .map(|i| format!("{}:{i}", self.probe_base))
                    .find(|name| owned(name))
                    .expect("a master serves at least one slot");
                if !current.is_empty() {
                    link.subscriber.unsubscribe(current);
                }
                link.subscriber.want(probe.clone());
                *link.probe.borrow_mut() = probe;
            }
            live.push(link.stats.clone());
        }
        // A master that serves no slot any more (a replica now, or emptied by resharding)
        // has no probe: readiness does not depend on it, and it gets a fresh one if it
        // serves slots again.
        for (index, link) in links.iter().enumerate() {
            if !serving.contains(&(index as u16)) && !link.probe.borrow().is_empty() {
                let probe = std::mem::take(&mut *link.probe.borrow_mut());
                link.subscriber.unsubscribe(probe);
            }
        }
        *self.stats.links.write().expect("not poisoned") = live;
        self.place_all();
    }
}

/// Commands queued on a [`Redis`], their replies still to come.
pub struct Queued {
    first: client::Queued,
    /// Cluster: what it takes to send it again elsewhere.
    retry: Option<(Rc<Redis>, Vec<u8>, Option<u16>)>,
}

impl Queued {
    pub async fn wait(self) -> Result<Vec<Frame>, RedisError> {
        let frames = self.first.wait().await?;
        match self.retry {
            None => Ok(frames),
            Some((redis, bytes, slot)) => redis.follow(frames, bytes, slot).await,
        }
    }

    /// Lets the command go on without anyone waiting for it (in a Cluster, a task still
    /// follows its redirections).
    pub fn detach(self) {
        if self.retry.is_some() {
            monoio::spawn(async move {
                let _ = self.wait().await;
            });
        }
    }
}

/// A probe: published by a script that declares the probe channel as its key, so that a
/// master that refuses keyed commands (a Cluster that is down: `CLUSTERDOWN`; sharded
/// pub/sub alone would still work there) does not look healthy either.
const PROBE: &str = "return redis.call('SPUBLISH', KEYS[1], ARGV[1])";

/// Publishes each serving link's probe on its command connection, to come back on its
/// subscriber connection (`Stats::live`): a subscription that silently stopped
/// delivering does not look healthy.
async fn run_probes(this: Rc<Redis>) {
    loop {
        let links: Vec<Rc<Link>> = this.links.borrow().clone();
        let queued: Vec<_> = links
            .iter()
            .filter_map(|link| {
                let probe = link.probe.borrow();
                (!probe.is_empty()).then(|| {
                    let command = resp::command(&["EVAL", PROBE, "1", &probe, "p"]);
                    link.client.queue(command, 1)
                })
            })
            .collect();
        for queued in queued {
            let _ = queued.wait().await;
        }
        monoio::time::sleep(PROBE_EVERY).await;
    }
}

/// Keeps the slot map: at once until one is known, then every [`REFRESH_EVERY`] or when
/// asked (a redirection, a dropped subscription).
async fn run_refresh(this: Rc<Redis>, asked: flume::Receiver<()>) {
    let mut backoff = Duration::from_millis(50);
    // Told once per streak of failures (and once that this Redis is not a Cluster).
    let (mut failing, mut told_disabled) = (false, false);
    loop {
        let wait = match this.refresh_map().await {
            Ok(()) => {
                failing = false;
                backoff = Duration::from_millis(50);
                REFRESH_EVERY
            }
            Err(error) => {
                let disabled = error.contains("cluster support disabled");
                if disabled && !std::mem::replace(&mut told_disabled, true) {
                    tracing::error!(
                        addr = %this.seed,
                        "--redis-cluster is set but this Redis is not a Cluster \
                         (cluster-enabled no): the node stays unready"
                    );
                } else if !disabled
                    && !error.contains("not connected")
                    && !std::mem::replace(&mut failing, true)
                {
                    tracing::warn!(%error, "the cluster's slot map cannot be read");
                } else {
                    tracing::debug!(%error, "the cluster's slot map cannot be read");
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                backoff
            }
        };
        monoio::select! {
            _ = monoio::time::sleep(wait) => {}
            got = asked.recv_async() => {
                if got.is_err() {
                    return;
                }
                while asked.try_recv().is_ok() {}
            }
        }
    }
}
