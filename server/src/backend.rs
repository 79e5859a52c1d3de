//! The HTTP client toward backends (SLIP's target URL, jac walkers).
//!
//! Backend calls are few and slow next to WebSocket traffic, and a dead backend must not
//! stall anything else, so they run on their own thread: a small tokio runtime with
//! `reqwest`, one task per request. Cores hand requests over a bounded channel and await
//! the answer on a oneshot; their own runtimes never block. Each request has a deadline
//! (covering queueing, connecting and the response) and is retried, with exponential
//! backoff, only when the connection could not be made — when the request provably never
//! reached the backend. How many requests a core may have in flight is bounded by the
//! caller (see `shell::shard::Shard::backend`).

use std::time::{Duration, Instant};

/// One POST to a backend.
#[derive(Debug, Clone)]
pub struct BackendRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The backend's answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why there is no answer. Never names the URL: it may carry a key, and these reach
/// clients (a jac walker's error) and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("the backend did not answer in time")]
    Timeout,
    #[error("the backend is unreachable: {0}")]
    Unreachable(String),
    #[error("too many backend requests in flight")]
    Overloaded,
    #[error("the backend request failed: {0}")]
    Failed(String),
}

/// Retry policy and limits.
#[derive(Debug, Clone, Copy)]
pub struct BackendPolicy {
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
}

struct Job {
    request: BackendRequest,
    deadline: Instant,
    reply: flume::Sender<Result<BackendResponse, BackendError>>,
}

/// A handle to the backend thread; cheap to clone, usable from any core.
#[derive(Clone)]
pub struct Backend {
    jobs: flume::Sender<Job>,
    policy: BackendPolicy,
}

/// Makes rustls's ring provider the process's default, once: reqwest is built without a
/// provider of its own (`rustls-no-provider`, so that the aws-lc C library is not built), and
/// its clients take the default. A provider installed before (by another part of the
/// process) is kept.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Backend {
    /// Starts the backend thread. `queue` bounds requests waiting to be started.
    pub fn start(policy: BackendPolicy, queue: usize) -> std::io::Result<Backend> {
        let (jobs, incoming) = flume::bounded::<Job>(queue.max(1));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .enable_io()
            .build()?;
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(policy.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(std::io::Error::other)?;
        std::thread::Builder::new()
            .name("rookery-backend".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Ok(job) = incoming.recv_async().await {
                        tokio::spawn(run(client.clone(), policy, job));
                    }
                })
            })?;
        Ok(Backend { jobs, policy })
    }

    /// POSTs `request`, retrying where the policy allows, within the policy's timeout.
    pub async fn post(&self, request: BackendRequest) -> Result<BackendResponse, BackendError> {
        let (reply, answer) = flume::bounded(1);
        let job = Job {
            request,
            deadline: Instant::now() + self.policy.timeout,
            reply,
        };
        self.jobs
            .try_send(job)
            .map_err(|_| BackendError::Overloaded)?;
        answer
            .recv_async()
            .await
            .unwrap_or_else(|_| Err(BackendError::Failed("backend thread gone".into())))
    }
}

async fn run(client: reqwest::Client, policy: BackendPolicy, job: Job) {
    let result = attempt_all(&client, policy, &job).await;
    let _ = job.reply.send(result);
}

async fn attempt_all(
    client: &reqwest::Client,
    policy: BackendPolicy,
    job: &Job,
) -> Result<BackendResponse, BackendError> {
    let mut attempt = 0;
    loop {
        let left = job.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BackendError::Timeout);
        }
        let mut builder = client.post(&job.request.url).timeout(left);
        for (name, value) in &job.request.headers {
            builder = builder.header(name, value);
        }
        match builder.body(job.request.body.clone()).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                return match response.bytes().await {
                    Ok(body) => Ok(BackendResponse {
                        status,
                        body: body.to_vec(),
                    }),
                    Err(e) if e.is_timeout() => Err(BackendError::Timeout),
                    Err(e) => Err(BackendError::Failed(e.without_url().to_string())),
                };
            }
            Err(e) if e.is_timeout() => return Err(BackendError::Timeout),
            // Not connected: the request never left, so trying again cannot duplicate it.
            Err(e) if e.is_connect() && attempt < policy.retries => {
                let pause = policy.backoff * 2u32.pow(attempt);
                attempt += 1;
                let left = job.deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(pause.min(left)).await;
            }
            Err(e) if e.is_connect() => {
                return Err(BackendError::Unreachable(e.without_url().to_string()))
            }
            Err(e) => return Err(BackendError::Failed(e.without_url().to_string())),
        }
    }
}
