//! A pipelined Redis command connection for one core, on monoio.
//!
//! Callers queue encoded commands; one task writes everything queued in one write and
//! answers each caller from the replies, which Redis sends in order. While the connection
//! is down, calls fail at once with [`RedisError::Unavailable`] (nobody waits on a dead
//! server) and the task reconnects with backoff (50 ms doubling to 1 s). A reply overdue
//! by [`CALL_TIMEOUT`] breaks the connection the same way (a hung Redis).

use super::connect::{connect, ConnectError, Connection, Link};
use super::resp::{self, Frame};
use super::stats::Stats;
use monoio::io::AsyncWriteRentExt;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// Not connected, or the connection broke before the reply came.
    #[error("redis is unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error (a script error, NOSCRIPT, a wrong type).
    #[error("redis error: {0}")]
    Reply(String),
}

type Answer = flume::Sender<Result<Vec<Frame>, RedisError>>;

struct Job {
    bytes: Vec<u8>,
    /// Replies expected (one per command in `bytes`).
    count: usize,
    reply: Answer,
}

/// Most bytes gathered into one write.
const MAX_WRITE: usize = 256 * 1024;

/// A reply that takes longer than this means Redis hangs (stopped, or the network between
/// dropped without a reset): the connection is dropped, what waited on it fails, and a new
/// one is made. A healthy Redis answers in well under a millisecond; a script of this
/// node's takes microseconds.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// A core's command connection (cheap to clone: a channel end).
#[derive(Clone)]
pub struct Client {
    jobs: flume::Sender<Job>,
    stats: Arc<Stats>,
}

impl Client {
    /// Starts the connection's task on this core's runtime: to `addr` (the URL's, or a
    /// Cluster master's), opened as `link` says (credentials, TLS).
    pub fn start(addr: SocketAddr, link: Arc<Link>, stats: Arc<Stats>) -> Client {
        let (jobs, queue) = flume::unbounded();
        monoio::spawn(run(addr, link, queue, stats.clone()));
        Client { jobs, stats }
    }

    /// Whether the connection is up now (calls would be written, not refused at once).
    pub fn is_up(&self) -> bool {
        self.stats.command_up.load(Ordering::Relaxed)
    }

    /// Sends one command and waits for its reply; an error reply is `Err(Reply)`.
    pub async fn call<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Frame, RedisError> {
        let mut frames = self.pipeline(resp::command(args), 1).await?;
        let frame = frames.pop().expect("one reply for one command");
        match frame {
            Frame::Error(e) => Err(RedisError::Reply(e)),
            frame => Ok(frame),
        }
    }

    /// Sends `count` commands already encoded in `bytes` and waits for all their replies
    /// (error replies included, as frames).
    pub async fn pipeline(&self, bytes: Vec<u8>, count: usize) -> Result<Vec<Frame>, RedisError> {
        self.queue(bytes, count).wait().await
    }

    /// Queues commands at once (callers that queue one after the other reach Redis in
    /// that order), to be waited for later.
    pub fn queue(&self, bytes: Vec<u8>, count: usize) -> Queued {
        if !self.stats.command_up.load(Ordering::Relaxed) {
            return Queued(Err(RedisError::Unavailable("not connected".into())));
        }
        let (reply, answer) = flume::bounded(1);
        let job = Job {
            bytes,
            count,
            reply,
        };
        match self.jobs.send(job) {
            Ok(()) => Queued(Ok(answer)),
            Err(_) => Queued(Err(RedisError::Unavailable("client stopped".into()))),
        }
    }
}

/// Commands queued on a [`Client`], their replies still to come.
pub struct Queued(Result<flume::Receiver<Result<Vec<Frame>, RedisError>>, RedisError>);

impl Queued {
    /// Commands that could not be queued: waiting answers `error`.
    pub fn failed(error: RedisError) -> Queued {
        Queued(Err(error))
    }

    pub async fn wait(self) -> Result<Vec<Frame>, RedisError> {
        self.0?
            .recv_async()
            .await
            .map_err(|_| RedisError::Unavailable("connection lost".into()))?
    }
}

/// Connects, serves, and reconnects for ever.
async fn run(addr: SocketAddr, link: Arc<Link>, queue: flume::Receiver<Job>, stats: Arc<Stats>) {
    let mut backoff = Duration::from_millis(50);
    let mut first = true;
    loop {
        match connect(addr, &link).await {
            Ok(stream) => {
                if !first {
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                first = false;
                backoff = Duration::from_millis(50);
                stats.command_up.store(true, Ordering::Relaxed);
                let error = serve(stream, &queue, &stats).await;
                stats.command_up.store(false, Ordering::Relaxed);
                tracing::warn!(%addr, %error, "redis command connection lost");
            }
            // A refusal is logged by `connect`, once.
            Err(ConnectError::Refused(_)) => {}
            Err(error) => tracing::debug!(%addr, %error, "redis is not reachable"),
        }
        // Down: whatever is asked meanwhile fails at once.
        let wait = monoio::time::sleep(backoff);
        fail_while_down(&queue, wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Fails every job that arrives until `wait` is over.
async fn fail_while_down(queue: &flume::Receiver<Job>, wait: monoio::time::Sleep) {
    let mut wait = std::pin::pin!(wait);
    loop {
        monoio::select! {
            _ = &mut wait => return,
            job = queue.recv_async() => match job {
                Ok(job) => {
                    let _ = job.reply.send(Err(RedisError::Unavailable("not connected".into())));
                }
                Err(_) => return,
            },
        }
    }
}

/// A job written, waiting for its replies.
struct Waiting {
    count: usize,
    frames: Vec<Frame>,
    reply: Answer,
    sent: Instant,
}

/// Runs one connection until it breaks; fails what was waiting on it.
async fn serve(stream: Connection, queue: &flume::Receiver<Job>, stats: &Stats) -> String {
    let (mut rd, mut wr) = stream.into_split();
    let waiting: Rc<RefCell<VecDeque<Waiting>>> = Rc::default();
    let reader = {
        let waiting = waiting.clone();
        async move {
            let mut replies = resp::FrameReader::new();
            let mut frames = Vec::new();
            loop {
                if let Err(e) = replies.read(&mut rd, &mut frames).await {
                    return e;
                }
                let mut waiting = waiting.borrow_mut();
                for frame in frames.drain(..) {
                    let Some(front) = waiting.front_mut() else {
                        return "a reply nobody asked for".to_owned();
                    };
                    front.frames.push(frame);
                    if front.frames.len() == front.count {
                        let done = waiting.pop_front().expect("front exists");
                        let rtt = done.sent.elapsed().as_micros() as u64;
                        stats.rtt_us.store(rtt, Ordering::Relaxed);
                        stats.pending.fetch_sub(1, Ordering::Relaxed);
                        let _ = done.reply.send(Ok(done.frames));
                    }
                }
            }
        }
    };
    let writer = {
        let waiting = waiting.clone();
        async move {
            let mut buf = Vec::with_capacity(16 * 1024);
            loop {
                let Ok(job) = queue.recv_async().await else {
                    return "client stopped".to_owned();
                };
                let mut next = Some(job);
                let now = Instant::now();
                while let Some(job) = next {
                    buf.extend_from_slice(&job.bytes);
                    stats.pending.fetch_add(1, Ordering::Relaxed);
                    waiting.borrow_mut().push_back(Waiting {
                        count: job.count,
                        frames: Vec::with_capacity(job.count),
                        reply: job.reply,
                        sent: now,
                    });
                    next = if buf.len() < MAX_WRITE {
                        queue.try_recv().ok()
                    } else {
                        None
                    };
                }
                let (result, back) = wr.write_all(buf).await;
                buf = back;
                buf.clear();
                if let Err(e) = result {
                    return e.to_string();
                }
            }
        }
    };
    let overdue = {
        let waiting = waiting.clone();
        async move {
            loop {
                monoio::time::sleep(CALL_TIMEOUT / 4).await;
                let late = waiting
                    .borrow()
                    .front()
                    .is_some_and(|front| front.sent.elapsed() > CALL_TIMEOUT);
                if late {
                    return format!("no reply within {CALL_TIMEOUT:?}");
                }
            }
        }
    };
    let error = monoio::select! {
        e = reader => e,
        e = writer => e,
        e = overdue => e,
    };
    for job in waiting.borrow_mut().drain(..) {
        stats.pending.fetch_sub(1, Ordering::Relaxed);
        let _ = job.reply.send(Err(RedisError::Unavailable(error.clone())));
    }
    error
}
