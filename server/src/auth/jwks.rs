//! The identity provider's keys (`--jwt-jwks-url`): fetched over HTTP(S) on a thread of
//! their own (a small tokio runtime with reqwest, like the backend client's), so no core
//! ever blocks on the network; cached; fetched again every [`REFRESH_EVERY`], and at once
//! when a token names a key id (`kid`) the cache lacks — the provider has rotated its keys.
//!
//! A token's `kid` is the sender's choice, so refreshes on an unknown `kid` are rate-limited:
//! at most one per [`ON_DEMAND_COOLDOWN`]; a flood of forged kids costs the provider one
//! request per cooldown, and those tokens are refused at once meanwhile. A check that does
//! wait for a refresh awaits a channel (the core goes on with everything else). A fetch
//! that fails, or a document that holds no usable key, is logged and retried with backoff;
//! the keys fetched before stay in use.

use super::keys::{parse_jwks, KeySet, PublicKey};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How often the set is fetched again when nothing asks for it sooner.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// At most one refresh per this long is made because a token named an unknown key id.
pub const ON_DEMAND_COOLDOWN: Duration = Duration::from_secs(10);
/// Deadline of one fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff of a failed fetch: from the first, doubling up to the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// The largest JWKS document read.
const MAX_BODY: usize = 1 << 20;

/// What the cache says of a key id.
pub enum Lookup {
    Found(PublicKey),
    /// The set is loaded and has no such key.
    Unknown,
    /// No set has been fetched yet.
    NotLoaded,
}

struct Refreshing {
    in_flight: bool,
    last_on_demand: Option<Instant>,
    waiters: Vec<flume::Sender<()>>,
}

/// The cached key set and the handle of its fetcher thread.
pub struct Jwks {
    /// The URL as logs show it (no credentials, no query).
    shown: String,
    keys: RwLock<Option<Arc<KeySet>>>,
    refreshing: Mutex<Refreshing>,
    wake: flume::Sender<()>,
}

impl Jwks {
    /// Starts the fetcher thread, which fetches the set at once. `url` must be an `http`
    /// or `https` URL (else an error naming the flag).
    pub fn start(url: &str) -> Result<Arc<Jwks>, String> {
        let parsed = check_url(url)?;
        crate::backend::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("--jwt-jwks-url: cannot build the HTTP client ({e})"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .enable_io()
            .build()
            .map_err(|e| format!("--jwt-jwks-url: cannot start its thread ({e})"))?;
        let (wake, woken) = flume::bounded(1);
        let jwks = Arc::new(Jwks {
            shown: shown_url(&parsed),
            keys: RwLock::new(None),
            refreshing: Mutex::new(Refreshing {
                in_flight: true,
                last_on_demand: None,
                waiters: Vec::new(),
            }),
            wake,
        });
        let this = jwks.clone();
        std::thread::Builder::new()
            .name("rookery-jwks".into())
            .spawn(move || runtime.block_on(this.run(client, parsed, woken)))
            .map_err(|e| format!("--jwt-jwks-url: cannot start its thread ({e})"))?;
        Ok(jwks)
    }

    /// A set with these keys and no fetcher (tests).
    #[cfg(test)]
    pub fn preloaded(set: KeySet) -> Arc<Jwks> {
        let (wake, _) = flume::bounded(1);
        Arc::new(Jwks {
            shown: "test".into(),
            keys: RwLock::new(Some(Arc::new(set))),
            refreshing: Mutex::new(Refreshing {
                in_flight: false,
                last_on_demand: None,
                waiters: Vec::new(),
            }),
            wake,
        })
    }

    /// The key `kid` names, as far as the cache knows.
    pub fn lookup(&self, kid: &str) -> Lookup {
        match self.keys() {
            None => Lookup::NotLoaded,
            Some(set) => match set.by_kid.get(kid) {
                Some(key) => Lookup::Found(key.clone()),
                None => Lookup::Unknown,
            },
        }
    }

    /// The whole cached set, if one was fetched.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Asks for a refresh because a token named a key the cache lacks: a channel that
    /// closes (or yields) once the refresh under way, or a new one, is done; `None` when a
    /// refresh was made too recently (the token is refused at once).
    pub fn refresh(&self) -> Option<flume::Receiver<()>> {
        let mut state = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        if !state.in_flight {
            let now = Instant::now();
            if state
                .last_on_demand
                .is_some_and(|t| now.duration_since(t) < ON_DEMAND_COOLDOWN)
            {
                return None;
            }
            state.last_on_demand = Some(now);
            state.in_flight = true;
            let _ = self.wake.try_send(());
        }
        let (tx, rx) = flume::bounded(1);
        state.waiters.push(tx);
        Some(rx)
    }

    async fn run(
        self: Arc<Self>,
        client: reqwest::Client,
        url: reqwest::Url,
        woken: flume::Receiver<()>,
    ) {
        let mut backoff = RETRY_FIRST;
        loop {
            let wait = match self.fetch(&client, &url).await {
                Ok(()) => {
                    backoff = RETRY_FIRST;
                    REFRESH_EVERY
                }
                Err(error) => {
                    let retry_s = backoff.as_secs();
                    tracing::warn!(url = %self.shown, %error, retry_s, "JWKS fetch failed: the keys fetched before stay in use; retrying");
                    let wait = backoff;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    wait
                }
            };
            {
                let mut state = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
                state.in_flight = false;
                for waiter in state.waiters.drain(..) {
                    let _ = waiter.try_send(());
                }
            }
            match tokio::time::timeout(wait, woken.recv_async()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    self.refreshing
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .in_flight = true;
                }
            }
        }
    }

    async fn fetch(&self, client: &reqwest::Client, url: &reqwest::Url) -> Result<(), String> {
        // `without_url`: the URL may carry a key in its query; logs show `shown` instead.
        let response = client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the server answered {status}"));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if body.len() > MAX_BODY {
            return Err(format!("the document is larger than {MAX_BODY} bytes"));
        }
        let (set, skipped) = parse_jwks(&body)?;
        for why in &skipped {
            tracing::warn!(url = %self.shown, %why, "JWKS: a key was skipped");
        }
        let kids: Vec<&String> = set.by_kid.keys().collect();
        tracing::info!(url = %self.shown, keys = set.len(), ?kids, "JWKS fetched");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(set));
        Ok(())
    }
}

/// `url` parsed, if it is an http(s) URL (else an error naming the flag).
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("--jwt-jwks-url: not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("--jwt-jwks-url: must be an http:// or https:// URL".into());
    }
    Ok(parsed)
}

/// `url` without credentials and query (either may hold a key), for logs.
pub fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        shown.set_query(Some("<redacted>"));
    }
    shown.to_string()
}
