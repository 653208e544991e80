//! A small typed client of DigitalOcean's API v2, for the Kubernetes (DOKS) operations the
//! provider uses. DigitalOcean publishes no Rust SDK; this is reqwest plus the care an SDK takes:
//!
//! - **Auth**: a bearer token from `DIGITALOCEAN_TOKEN` (or doctl's
//!   `DIGITALOCEAN_ACCESS_TOKEN`), kept in a [`Token`] whose `Debug` is redacted and which is
//!   never logged. No token is allowed only for a loopback endpoint (an emulator), and the
//!   token is never sent over plain HTTP to a non-loopback host.
//! - **Endpoint**: `DIGITALOCEAN_API_URL` (default [`DEFAULT_API_URL`]).
//! - **Rate limits** (the spec's "Rate Limit"): 5,000 requests an hour, each counting for an
//!   hour (a sliding window reported in `ratelimit-limit`, `ratelimit-remaining` and
//!   `ratelimit-reset`, the time the oldest request expires), and a burst limit of 250 a minute
//!   that no header reports. The client keeps the last reported hourly budget, counts its own
//!   requests in flight against it, and counts its own sends against the burst limit; it waits
//!   *before* sending a request either has no room for, so it does not provoke 429s. A 429 it
//!   gets anyway (another client of the same token) is waited out (`retry-after`).
//! - **Retries**, by qhub-core's one retry policy ([`ClientOptions::retry`], the rules of
//!   [`qhub_core::retry`]): reads are retried on 429, 5xx and transport errors, with
//!   the policy's budgets per class and decorrelated jitter, `retry-after` honoured, each retry
//!   logged with its attempt number. A mutating request is retried by the client only when it
//!   was refused before anything happened (429, or a connection that never opened); after a
//!   5xx or a lost answer the mutation may have been carried out, so the error goes back to
//!   the engine, whose retry re-observes and adopts what exists (a blind re-POST would at best
//!   hit "name already in use"). A call whose budget ran out fails for good
//!   ([`DoError::GaveUp`]), naming the call and how long it kept failing.
//! - **Pagination**: lists follow `links.pages.next` (on the same origin only, so the token
//!   never leaves for another host).
//! - **Errors**: [`DoError`] carries DigitalOcean's `id`, `message` and `request_id`, and
//!   [`DoError::class`] sorts it into what a caller can act on.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qhub_core::cloud::http::{
    Auth, BearerToken, Body, HttpError, Request, RestClient, RestOptions, SetupError,
};
use qhub_core::provider::RetryClass;
use qhub_core::retry::{Retrier, RetryPolicy, give_up_note};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// DigitalOcean's public API.
pub const DEFAULT_API_URL: &str = "https://api.digitalocean.com";
/// The variable overriding the API endpoint (an emulator, a proxy).
pub const API_URL_ENV: &str = "DIGITALOCEAN_API_URL";
/// The variable holding the API token.
pub const TOKEN_ENV: &str = "DIGITALOCEAN_TOKEN";
/// doctl's variable for the token, read when [`TOKEN_ENV`] is unset.
pub const DOCTL_TOKEN_ENV: &str = "DIGITALOCEAN_ACCESS_TOKEN";

/// An API token. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

pub use qhub_core::cloud::endpoint::is_loopback;
pub use qhub_core::cloud::stats::ApiStats;

/// How the client behaves.
#[derive(Clone)]
pub struct ClientOptions {
    /// The API endpoint, without a trailing `/v2`.
    pub base_url: String,
    /// The token (`None`: anonymous, allowed for a loopback endpoint only).
    pub token: Option<Token>,
    /// The retry policy of every call (see the module docs); the engine's by default.
    pub retry: RetryPolicy,
    /// Longest wait for a rate-limit window or a `retry-after`; past it the error goes back to
    /// the caller as throttling.
    pub max_rate_wait: Duration,
    /// Requests of each budget left for other clients of the same token (doctl; the cloud
    /// controller manager has a token of its own).
    pub reserve: u32,
    /// DigitalOcean's burst limit, which no header reports (250 requests a minute: the spec's
    /// "Rate Limit"); the client keeps its own requests under it.
    pub burst_limit: u32,
    /// The window of `burst_limit`.
    pub burst_window: Duration,
    /// Items per page of a list (1..=200).
    pub per_page: u32,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("retry", &self.retry)
            .field("per_page", &self.per_page)
            .finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_API_URL.into(),
            token: None,
            retry: RetryPolicy::default(),
            max_rate_wait: Duration::from_secs(65),
            reserve: 5,
            burst_limit: 250,
            burst_window: Duration::from_secs(60),
            per_page: 200,
            timeout: Duration::from_secs(60),
        }
    }
}

impl ClientOptions {
    /// Options from the environment: [`API_URL_ENV`], [`TOKEN_ENV`] (or [`DOCTL_TOKEN_ENV`]).
    pub fn from_env() -> Self {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        Self {
            base_url: var(API_URL_ENV).unwrap_or_else(|| DEFAULT_API_URL.into()),
            token: var(TOKEN_ENV)
                .or_else(|| var(DOCTL_TOKEN_ENV))
                .map(|t| Token::new(t.trim())),
            ..Self::default()
        }
    }
}

/// What a failed call means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 404.
    NotFound,
    /// The name is taken (422/409 "already exists / in use").
    AlreadyExists,
    /// The resource is busy (a cluster still provisioning, an operation in progress): the
    /// same call succeeds later.
    Busy,
    /// 429 that was not waited out.
    Throttled,
    /// 401/403, or no usable token.
    Unauthorized,
    /// 5xx, a timeout, a lost answer: try again (after re-observing, for a mutation).
    Retryable,
    /// The request is wrong and will stay wrong (other 4xx, a malformed answer).
    Invalid,
    /// The call kept failing until its retry budget ran out ([`DoError::GaveUp`]).
    GaveUp,
}

/// An error of a DigitalOcean API call.
#[derive(Debug, thiserror::Error)]
pub enum DoError {
    /// DigitalOcean answered with an error.
    #[error("DigitalOcean {operation}: HTTP {status} {id}: {message}{}", request_id.as_ref().map(|r| format!(" (request {r})")).unwrap_or_default())]
    Api {
        /// The operation (`METHOD /path`).
        operation: String,
        /// HTTP status.
        status: u16,
        /// DigitalOcean's error id (`not_found`, `unprocessable_entity`, …).
        id: String,
        /// DigitalOcean's message.
        message: String,
        /// DigitalOcean's request id, for support.
        request_id: Option<String>,
        /// The `retry-after` of a 429.
        retry_after: Option<Duration>,
    },
    /// The request did not get an answer (connection refused or dropped, timeout).
    #[error("DigitalOcean {operation}: no answer: {message}")]
    Transport {
        /// The operation.
        operation: String,
        /// What happened.
        message: String,
        /// True when the request surely never reached the server (connect error).
        not_sent: bool,
    },
    /// The answer was not what the API documents.
    #[error("DigitalOcean {operation}: unexpected answer: {message}")]
    Decode {
        /// The operation.
        operation: String,
        /// What was wrong.
        message: String,
    },
    /// No token, and the endpoint is not on loopback.
    #[error("{0}")]
    MissingToken(String),
    /// The client is not set up to make the call (a bad endpoint).
    #[error("{0}")]
    Setup(String),
    /// A call kept failing until its retry budget ran out.
    #[error("{last}; {note}")]
    GaveUp {
        /// Which call, how many attempts, for how long.
        note: String,
        /// The last failure.
        last: Box<DoError>,
    },
}

impl DoError {
    /// What the error means for the caller.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api {
                status, message, ..
            } => {
                let m = message.to_ascii_lowercase();
                let taken = [
                    "already exist",
                    "already in use",
                    "already taken",
                    "name is taken",
                ]
                .iter()
                .any(|s| m.contains(s));
                let busy = [
                    "provisioning",
                    "not running",
                    "in progress",
                    "upgrading",
                    "is busy",
                    "try again",
                ]
                .iter()
                .any(|s| m.contains(s));
                match *status {
                    404 => ErrorClass::NotFound,
                    401 | 403 => ErrorClass::Unauthorized,
                    429 => ErrorClass::Throttled,
                    409 | 422 if taken => ErrorClass::AlreadyExists,
                    409 | 412 | 422 | 423 if busy => ErrorClass::Busy,
                    409 => ErrorClass::Busy,
                    s if s >= 500 => ErrorClass::Retryable,
                    _ => ErrorClass::Invalid,
                }
            }
            Self::Transport { .. } => ErrorClass::Retryable,
            Self::Decode { .. } | Self::Setup(_) => ErrorClass::Invalid,
            Self::MissingToken(_) => ErrorClass::Unauthorized,
            Self::GaveUp { .. } => ErrorClass::GaveUp,
        }
    }

    /// True for a 404.
    pub fn is_not_found(&self) -> bool {
        self.class() == ErrorClass::NotFound
    }

    /// The wait DigitalOcean asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The operation name of a request, for [`ApiStats`]: `METHOD /v2/path` with ids replaced by
/// `{id}`.
fn operation_name(method: &Method, path: &str) -> String {
    let shape: Vec<&str> = path
        .split('/')
        .map(|s| {
            if s.len() >= 32 && s.contains('-') {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    format!("{method} {}", shape.join("/"))
}

/// What the client's rate-limit handling did (shared by clones).
#[derive(Debug, Default)]
struct RateCounters {
    throttled: AtomicU64,
    paced: AtomicU64,
}

/// The rate-limit budget as last reported, and the requests in flight against it.
#[derive(Debug, Default)]
struct Budget {
    limit: Option<u32>,
    remaining: Option<u32>,
    /// Unix time (seconds) the oldest counted request expires.
    reset: Option<u64>,
    in_flight: u32,
    /// When each request of the last burst window was answered (or failed).
    sent: std::collections::VecDeque<Instant>,
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The DigitalOcean API client. Cheap to clone; clones share the budget and the counters.
#[derive(Clone)]
pub struct DoClient {
    rest: RestClient,
    base: reqwest::Url,
    options: ClientOptions,
    budget: Arc<Mutex<Budget>>,
    rate: Arc<RateCounters>,
}

impl fmt::Debug for DoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoClient")
            .field("base", &self.base.as_str())
            .field("options", &self.options)
            .finish()
    }
}

/// `links.pages` of a list answer.
#[derive(Debug, Default, Deserialize)]
struct Links {
    #[serde(default)]
    pages: Pages,
}

#[derive(Debug, Default, Deserialize)]
struct Pages {
    next: Option<String>,
}

impl DoClient {
    /// A client with `options`, counting into `stats`.
    pub fn new(options: ClientOptions, stats: Arc<ApiStats>) -> Result<Self, DoError> {
        let base = reqwest::Url::parse(options.base_url.trim_end_matches('/')).map_err(|e| {
            DoError::Setup(format!(
                "{API_URL_ENV}={} is not a URL: {e}",
                options.base_url
            ))
        })?;
        let auth = match &options.token {
            Some(t) => Auth::Bearer(Arc::new(BearerToken::new(t.expose()))),
            None => Auth::Anonymous,
        };
        let mut rest_options = RestOptions::new("DigitalOcean", base.as_str(), auth);
        rest_options.timeout = options.timeout;
        rest_options.connect_timeout = None;
        // The retries are this client's own (see `send`): the policy is not used by the toolkit.
        let rest = RestClient::new(rest_options, stats, options.retry).map_err(|e| match e {
            SetupError::Anonymous { .. } => DoError::MissingToken(format!(
                "no DigitalOcean token: set {TOKEN_ENV} (an API token with read and write scope); only a loopback endpoint may be used without one"
            )),
            SetupError::PlainHttp { .. } => DoError::Setup(format!(
                "{API_URL_ENV}={base} is plain HTTP: the token would travel unencrypted; use https"
            )),
            SetupError::Scheme { scheme } => {
                DoError::Setup(format!("{API_URL_ENV}: unsupported scheme `{scheme}`"))
            }
            other => DoError::Setup(format!("cannot build the HTTP client: {other}")),
        })?;
        Ok(Self {
            rest,
            base,
            options,
            budget: Arc::new(Mutex::new(Budget::default())),
            rate: Arc::new(RateCounters::default()),
        })
    }

    /// The request counters of this client (and its clones).
    pub fn stats(&self) -> Arc<ApiStats> {
        self.rest.stats().clone()
    }

    /// 429 answers this client (and its clones) received.
    pub fn throttled(&self) -> u64 {
        self.rate.throttled.load(Ordering::SeqCst)
    }

    /// Times this client (and its clones) waited for the rate-limit window before sending.
    pub fn paced(&self) -> u64 {
        self.rate.paced.load(Ordering::SeqCst)
    }

    /// The endpoint.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// True when talking to a loopback endpoint (an emulator).
    pub fn is_local(&self) -> bool {
        is_loopback(self.base.as_str())
    }

    fn url(&self, path_and_query: &str) -> Result<reqwest::Url, DoError> {
        // Appended, not joined: an endpoint behind a proxy may have a path of its own.
        let base = self.base.as_str().trim_end_matches('/');
        reqwest::Url::parse(&format!("{base}{path_and_query}"))
            .map_err(|e| DoError::Setup(format!("bad path {path_and_query}: {e}")))
    }

    /// Waits until the budget has room for one more request, then claims it.
    async fn pace(&self) {
        loop {
            let wait = {
                let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                // Requests are timed when their answer arrives, which is after the server
                // counted them: the client never believes a slot free before the server does.
                let window = self.options.burst_window;
                while b
                    .sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= window)
                {
                    b.sent.pop_front();
                }
                // The hourly budget, as the last answer reported it.
                let hourly = match (b.remaining, b.reset) {
                    (Some(remaining), Some(reset)) if (reset as f64) + 1.0 > now_unix() => {
                        remaining.saturating_sub(b.in_flight) > self.options.reserve
                    }
                    // The oldest counted request expired: at least one slot is free. One
                    // request at a time learns how many.
                    (Some(_), Some(_)) => b.in_flight == 0,
                    _ => true,
                };
                // The burst limit, which no header reports: counted here.
                let burst_room = self
                    .options
                    .burst_limit
                    .saturating_sub(self.options.reserve)
                    .max(1) as usize;
                let burst = b.sent.len() + b.in_flight as usize <= burst_room.saturating_sub(1);
                if hourly && burst {
                    // Claimed: the next request sees one less room until this one's answer.
                    b.in_flight += 1;
                    None
                } else if !burst {
                    match b.sent.front() {
                        Some(oldest) => Some(
                            window.saturating_sub(now.duration_since(*oldest))
                                + Duration::from_millis(5),
                        ),
                        // Everything counted is still in flight: wait for an answer.
                        None => Some(Duration::from_millis(10)),
                    }
                } else {
                    match b.reset {
                        // The reset is in whole seconds (the oldest request expires within the
                        // second after it), and the server's clock decides: a second past it.
                        Some(reset) if (reset as f64) + 1.0 > now_unix() => {
                            Some(Duration::from_secs_f64(reset as f64 + 1.0 - now_unix()))
                        }
                        // Waiting for the answer of the request that learns the budget.
                        _ => Some(Duration::from_millis(10)),
                    }
                }
            };
            match wait {
                None => return,
                Some(w) => {
                    self.rate.paced.fetch_add(1, Ordering::SeqCst);
                    let w = w.min(self.options.max_rate_wait);
                    tracing::debug!(
                        wait_ms = w.as_millis() as u64,
                        "DigitalOcean rate limit: waiting for room in the budget"
                    );
                    tokio::time::sleep(w).await;
                }
            }
        }
    }

    fn settle(&self, headers: Option<&reqwest::header::HeaderMap>) {
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        b.in_flight = b.in_flight.saturating_sub(1);
        // Counted against the burst limit from now (see `pace`); a request that got no answer
        // may have been counted by the server too.
        b.sent.push_back(Instant::now());
        let Some(h) = headers else { return };
        let num = |k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(remaining), Some(reset)) = (num("ratelimit-remaining"), num("ratelimit-reset"))
        {
            let remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
            // Answers may arrive out of order: within one window, the lowest count is newest.
            match b.reset {
                Some(r) if r == reset => {
                    b.remaining = Some(b.remaining.map_or(remaining, |x| x.min(remaining)));
                }
                Some(r) if r > reset => {}
                _ => {
                    b.remaining = Some(remaining);
                    b.reset = Some(reset);
                }
            }
            b.limit = num("ratelimit-limit").and_then(|l| u32::try_from(l).ok());
        }
    }

    /// Sends one request with the retry rules of the module docs; returns the status and
    /// body of a success.
    async fn send(
        &self,
        method: Method,
        url: reqwest::Url,
        body: Option<&Json>,
    ) -> Result<(StatusCode, bytes::Bytes), DoError> {
        let operation = format!("{method} {}", url.path());
        let mutating = method != Method::GET;
        let mut attempt = 0;
        let mut retrier = Retrier::new(self.options.retry);
        let started = Instant::now();
        loop {
            attempt += 1;
            self.pace().await;
            let op = operation_name(&method, url.path());
            let mut request = Request::new(&op, method.clone(), url.as_str());
            request.mutating = mutating;
            if let Some(b) = body {
                request.body = Body::Json(b);
            }
            let error = match self.rest.send_once(&request).await {
                Err(e) => {
                    self.settle(None);
                    let (message, not_sent) = match e {
                        // reqwest's message names the URL, never headers.
                        HttpError::Transport {
                            source, not_sent, ..
                        } => (source.to_string(), not_sent),
                        // An answer whose body broke off is not sent again here: the engine
                        // re-observes before it retries.
                        HttpError::Body { source } => {
                            return Err(DoError::Transport {
                                operation: operation.clone(),
                                message: source.to_string(),
                                not_sent: false,
                            });
                        }
                        other => (other.to_string(), false),
                    };
                    DoError::Transport {
                        operation: operation.clone(),
                        message,
                        not_sent,
                    }
                }
                Ok(resp) => {
                    self.settle(Some(&resp.headers));
                    let status = resp.status;
                    let retry_after = resp.retry_after();
                    let bytes = resp.body;
                    tracing::debug!(%operation, status = status.as_u16(), attempt, "DigitalOcean API");
                    if status.is_success() {
                        return Ok((status, bytes));
                    }
                    let parsed: Json = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
                    let s = |k: &str| parsed.get(k).and_then(Json::as_str).map(str::to_string);
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        self.rate.throttled.fetch_add(1, Ordering::SeqCst);
                    }
                    DoError::Api {
                        operation: operation.clone(),
                        status: status.as_u16(),
                        id: s("id").unwrap_or_else(|| {
                            status.canonical_reason().unwrap_or("error").to_string()
                        }),
                        message: s("message").unwrap_or_else(|| {
                            String::from_utf8_lossy(&bytes).chars().take(200).collect()
                        }),
                        request_id: s("request_id"),
                        retry_after,
                    }
                }
            };
            // Safe to repeat: any read; a mutation refused before it was done.
            let throttled = error.class() == ErrorClass::Throttled;
            let safe = !mutating
                || throttled
                || matches!(error, DoError::Transport { not_sent: true, .. });
            let class = match error.class() {
                ErrorClass::Throttled => RetryClass::Throttled,
                ErrorClass::Retryable => RetryClass::Transient,
                _ => return Err(error),
            };
            if !safe {
                return Err(error);
            }
            if error
                .retry_after()
                .is_some_and(|after| after > self.options.max_rate_wait)
            {
                return Err(error);
            }
            let Some(wait) = retrier.next_delay_for(class, error.retry_after()) else {
                if retrier.retries() == 0 {
                    return Err(error);
                }
                self.rest.stats().record_gave_up(attempt);
                let note = give_up_note(&operation, attempt, started.elapsed());
                tracing::warn!(error = %error, "{note}");
                return Err(DoError::GaveUp {
                    note,
                    last: Box::new(error),
                });
            };
            self.rest.stats().record_retry(attempt + 1);
            tracing::info!(%operation, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, error = %error, "retrying a DigitalOcean API call");
            tokio::time::sleep(wait).await;
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> Result<T, DoError> {
        let url = self.url(path)?;
        let operation = format!("{method} {}", url.path());
        let (_, bytes) = self.send(method, url, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| DoError::Decode {
            operation,
            message: e.to_string(),
        })
    }

    async fn call_empty(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> Result<(), DoError> {
        let url = self.url(path)?;
        self.send(method, url, body).await.map(|_| ())
    }

    /// Every item of a paginated list: `key` is the array's name in the answer.
    async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
    ) -> Result<Vec<T>, DoError> {
        let mut url = self.url(&format!(
            "{path}?per_page={}",
            self.options.per_page.clamp(1, 200)
        ))?;
        let mut out = Vec::new();
        // Bounded: 1,000 pages of 200 is far more than an account holds.
        for _ in 0..1000 {
            let operation = format!("GET {}", url.path());
            let (_, bytes) = self.send(Method::GET, url.clone(), None).await?;
            let mut page: serde_json::Map<String, Json> =
                serde_json::from_slice(&bytes).map_err(|e| DoError::Decode {
                    operation: operation.clone(),
                    message: e.to_string(),
                })?;
            let items = page.remove(key).unwrap_or(Json::Array(Vec::new()));
            let items: Vec<T> = serde_json::from_value(items).map_err(|e| DoError::Decode {
                operation: operation.clone(),
                message: e.to_string(),
            })?;
            out.extend(items);
            let links: Links = page
                .remove("links")
                .and_then(|l| serde_json::from_value(l).ok())
                .unwrap_or_default();
            let Some(next) = links.pages.next else {
                return Ok(out);
            };
            let next = reqwest::Url::parse(&next).map_err(|e| DoError::Decode {
                operation: operation.clone(),
                message: format!("links.pages.next is not a URL: {e}"),
            })?;
            if next.origin() != self.base.origin() {
                return Err(DoError::Decode {
                    operation,
                    message: format!(
                        "links.pages.next points to another host ({}); not following it with our token",
                        next.origin().ascii_serialization()
                    ),
                });
            }
            url = next;
        }
        Err(DoError::Decode {
            operation: format!("GET {path}"),
            message: "more than 1000 pages".into(),
        })
    }

    /// `GET /v2/account`: the token's account and team.
    pub async fn account(&self) -> Result<AccountInfo, DoError> {
        #[derive(Deserialize)]
        struct Answer {
            account: AccountInfo,
        }
        let a: Answer = self.call(Method::GET, "/v2/account", None).await?;
        Ok(a.account)
    }

    /// `GET /v2/kubernetes/options`: regions, version slugs, sizes.
    pub async fn options(&self) -> Result<KubernetesOptions, DoError> {
        #[derive(Deserialize)]
        struct Answer {
            options: KubernetesOptions,
        }
        let a: Answer = self
            .call(Method::GET, "/v2/kubernetes/options", None)
            .await?;
        Ok(a.options)
    }

    /// `GET /v2/kubernetes/clusters`, every page.
    pub async fn list_clusters(&self) -> Result<Vec<Cluster>, DoError> {
        self.list_all("/v2/kubernetes/clusters", "kubernetes_clusters")
            .await
    }

    /// `GET /v2/kubernetes/clusters/{id}`.
    pub async fn get_cluster(&self, id: &str) -> Result<Cluster, DoError> {
        #[derive(Deserialize)]
        struct Answer {
            kubernetes_cluster: Cluster,
        }
        let a: Answer = self
            .call(Method::GET, &format!("/v2/kubernetes/clusters/{id}"), None)
            .await?;
        Ok(a.kubernetes_cluster)
    }

    /// `POST /v2/kubernetes/clusters`.
    pub async fn create_cluster(&self, request: &ClusterCreate) -> Result<Cluster, DoError> {
        #[derive(Deserialize)]
        struct Answer {
            kubernetes_cluster: Cluster,
        }
        let body = serde_json::to_value(request).map_err(|e| DoError::Setup(e.to_string()))?;
        let a: Answer = self
            .call(Method::POST, "/v2/kubernetes/clusters", Some(&body))
            .await?;
        Ok(a.kubernetes_cluster)
    }

    /// `POST /v2/kubernetes/clusters/{id}/upgrade` to a newer version slug.
    pub async fn upgrade_cluster(&self, id: &str, version: &str) -> Result<(), DoError> {
        let body = serde_json::json!({"version": version});
        self.call_empty(
            Method::POST,
            &format!("/v2/kubernetes/clusters/{id}/upgrade"),
            Some(&body),
        )
        .await
    }

    /// `DELETE /v2/kubernetes/clusters/{id}/destroy_with_associated_resources/dangerous`: the
    /// cluster with the load balancers and volumes Kubernetes made for it.
    pub async fn destroy_cluster(&self, id: &str) -> Result<(), DoError> {
        self.call_empty(
            Method::DELETE,
            &format!("/v2/kubernetes/clusters/{id}/destroy_with_associated_resources/dangerous"),
            None,
        )
        .await
    }

    /// `POST /v2/kubernetes/clusters/{id}/node_pools`.
    pub async fn add_node_pool(
        &self,
        cluster: &str,
        pool: &NodePoolCreate,
    ) -> Result<NodePool, DoError> {
        #[derive(Deserialize)]
        struct Answer {
            node_pool: NodePool,
        }
        let body = serde_json::to_value(pool).map_err(|e| DoError::Setup(e.to_string()))?;
        let a: Answer = self
            .call(
                Method::POST,
                &format!("/v2/kubernetes/clusters/{cluster}/node_pools"),
                Some(&body),
            )
            .await?;
        Ok(a.node_pool)
    }

    /// `PUT /v2/kubernetes/clusters/{id}/node_pools/{pool}`.
    pub async fn update_node_pool(
        &self,
        cluster: &str,
        pool: &str,
        update: &NodePoolUpdate,
    ) -> Result<NodePool, DoError> {
        #[derive(Deserialize)]
        struct Answer {
            node_pool: NodePool,
        }
        let body = serde_json::to_value(update).map_err(|e| DoError::Setup(e.to_string()))?;
        let a: Answer = self
            .call(
                Method::PUT,
                &format!("/v2/kubernetes/clusters/{cluster}/node_pools/{pool}"),
                Some(&body),
            )
            .await?;
        Ok(a.node_pool)
    }

    /// `DELETE /v2/kubernetes/clusters/{id}/node_pools/{pool}`.
    pub async fn delete_node_pool(&self, cluster: &str, pool: &str) -> Result<(), DoError> {
        self.call_empty(
            Method::DELETE,
            &format!("/v2/kubernetes/clusters/{cluster}/node_pools/{pool}"),
            None,
        )
        .await
    }

    /// `GET /v2/kubernetes/clusters/{id}/credentials` with a token valid for `expiry`.
    pub async fn credentials(
        &self,
        cluster: &str,
        expiry: Duration,
    ) -> Result<Credentials, DoError> {
        self.call(
            Method::GET,
            &format!(
                "/v2/kubernetes/clusters/{cluster}/credentials?expiry_seconds={}",
                expiry.as_secs().max(1)
            ),
            None,
        )
        .await
    }

    /// `GET /v2/kubernetes/clusters/{id}/kubeconfig` with a token valid for `expiry`: YAML.
    pub async fn kubeconfig(&self, cluster: &str, expiry: Duration) -> Result<String, DoError> {
        let url = self.url(&format!(
            "/v2/kubernetes/clusters/{cluster}/kubeconfig?expiry_seconds={}",
            expiry.as_secs().max(1)
        ))?;
        let (_, bytes) = self.send(Method::GET, url, None).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// `/v2/kubernetes/options`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct KubernetesOptions {
    /// Regions DOKS runs in.
    #[serde(default)]
    pub regions: Vec<Slug>,
    /// Version slugs offered, as DigitalOcean lists them.
    #[serde(default)]
    pub versions: Vec<VersionOption>,
    /// Droplet sizes a node pool may use.
    #[serde(default)]
    pub sizes: Vec<Slug>,
}

/// A region or size.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Slug {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Slug.
    #[serde(default)]
    pub slug: String,
}

/// A DOKS version.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct VersionOption {
    /// E.g. `1.33.1-do.0`.
    #[serde(default)]
    pub slug: String,
    /// E.g. `1.33.1`.
    #[serde(default)]
    pub kubernetes_version: String,
}

/// A cluster's status.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Status {
    /// `running`, `provisioning`, `degraded`, `error`, `deleted`, `upgrading`, `deleting`.
    #[serde(default)]
    pub state: String,
    /// Details.
    #[serde(default)]
    pub message: Option<String>,
}

/// The part of `GET /v2/account` qhub reads.
#[derive(Debug, Clone, Deserialize)]
pub struct AccountInfo {
    /// The user's unique id.
    pub uuid: String,
    /// The team the token acts for, when in a team context.
    #[serde(default)]
    pub team: Option<TeamInfo>,
}

impl AccountInfo {
    /// Who owns what the token creates: the team when there is one, else the user.
    pub fn owner(&self) -> &str {
        self.team
            .as_ref()
            .map(|t| t.uuid.as_str())
            .filter(|u| !u.is_empty())
            .unwrap_or(&self.uuid)
    }
}

/// `account.team` of `GET /v2/account`.
#[derive(Debug, Clone, Deserialize)]
pub struct TeamInfo {
    /// The team's unique id.
    pub uuid: String,
    /// The team's name.
    #[serde(default)]
    pub name: String,
}

/// A DOKS cluster.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Cluster {
    /// UUID.
    pub id: String,
    /// Name (unique in the account).
    pub name: String,
    /// Region slug.
    #[serde(default)]
    pub region: String,
    /// Version slug.
    #[serde(default)]
    pub version: String,
    /// Tags (DOKS adds `k8s` and `k8s:<id>`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Node pools.
    #[serde(default)]
    pub node_pools: Vec<NodePool>,
    /// The API server's URL.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Status.
    #[serde(default)]
    pub status: Status,
}

/// A Kubernetes taint.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A node's status.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct NodeStatus {
    /// `provisioning`, `running`, `draining`, `deleting`.
    #[serde(default)]
    pub state: String,
}

/// A node of a pool.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Node {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Status.
    #[serde(default)]
    pub status: NodeStatus,
}

/// A node pool.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct NodePool {
    /// UUID.
    pub id: String,
    /// Name (unique in its cluster).
    pub name: String,
    /// Droplet size slug.
    #[serde(default)]
    pub size: String,
    /// Current node count.
    #[serde(default)]
    pub count: u32,
    /// Tags (DOKS adds `k8s`, `k8s:<cluster id>`, `k8s-worker`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Kubernetes labels of its nodes.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Kubernetes taints of its nodes.
    #[serde(default)]
    pub taints: Vec<Taint>,
    /// Autoscaling on.
    #[serde(default)]
    pub auto_scale: bool,
    /// Autoscaling minimum.
    #[serde(default)]
    pub min_nodes: u32,
    /// Autoscaling maximum.
    #[serde(default)]
    pub max_nodes: u32,
    /// Nodes.
    #[serde(default)]
    pub nodes: Vec<Node>,
}

/// The body of `POST /v2/kubernetes/clusters`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterCreate {
    /// Name.
    pub name: String,
    /// Region slug.
    pub region: String,
    /// Version slug.
    pub version: String,
    /// Tags.
    pub tags: Vec<String>,
    /// The pools created with the cluster (at least one).
    pub node_pools: Vec<NodePoolCreate>,
}

/// The body of `POST .../node_pools` (and a pool in a cluster create).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodePoolCreate {
    /// Name.
    pub name: String,
    /// Droplet size slug.
    pub size: String,
    /// Nodes to start with.
    pub count: u32,
    /// Tags.
    pub tags: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
    /// Autoscaling.
    pub auto_scale: bool,
    /// Autoscaling minimum.
    pub min_nodes: u32,
    /// Autoscaling maximum.
    pub max_nodes: u32,
}

/// The body of `PUT .../node_pools/{id}` (`name` and `count` are required by the API).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodePoolUpdate {
    /// Name (unchanged).
    pub name: String,
    /// Node count (the current one, kept within the new bounds).
    pub count: u32,
    /// Tags.
    pub tags: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
    /// Autoscaling.
    pub auto_scale: bool,
    /// Autoscaling minimum.
    pub min_nodes: u32,
    /// Autoscaling maximum.
    pub max_nodes: u32,
}

/// `/credentials`.
#[derive(Clone, Default, Deserialize, PartialEq)]
pub struct Credentials {
    /// The API server.
    #[serde(default)]
    pub server: String,
    /// Base64 of the CA's PEM.
    #[serde(default)]
    pub certificate_authority_data: String,
    /// A bearer token.
    #[serde(default)]
    pub token: Option<String>,
    /// RFC 3339 time the token expires.
    #[serde(default)]
    pub expires_at: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
