//! The REST toolkit of the clients qhub writes by hand (Cloud Storage and Compute Engine in
//! qhub-gcp, Spaces and the DigitalOcean API in qhub-do, Cloudflare): what every one of them
//! needs once, so that none writes it again. The shape is object_store's `client/` module: one
//! HTTP client per service with its base URL and credentials, one request path that counts,
//! authenticates and reads the answer, and the retry loop of the engine around it.
//!
//! - **Base URL and scheme** ([`RestClient::new`]): `https`, or plain `http` on loopback only
//!   (an emulator), so that credentials never travel unencrypted; anonymous access only for a
//!   loopback endpoint (DESIGN.md §1, [`crate::cloud::endpoint::is_loopback`]). A refusal is a
//!   typed [`SetupError`] the client turns into its own words (which variable to set).
//! - **Credentials** ([`Auth`]): a bearer token from a [`TokenSource`] (fetched per request, so
//!   a refreshing source such as Google's is asked each time) or a request [`Signer`] (SigV4 for
//!   S3-compatible stores). Neither shows in `Debug`.
//! - **Counters**: every request sent is recorded in [`ApiStats`] under the operation name the
//!   caller gives, as a read or a mutation.
//! - **Retries** ([`RestClient::send`]): the engine's one policy ([`retry_call`]): a read is sent
//!   again after any retryable failure, a mutation only when throttled; `Retry-After` is
//!   honoured ([`retry_after`]) through the error type's [`RetryableError::retry_after`].
//! - **Error envelopes** ([`ErrorEnvelope`]): the code and message of an error answer, parsed
//!   from the body format each service documents (Google's JSON error, S3's XML error).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::cloud::endpoint::is_loopback;
use crate::cloud::stats::ApiStats;
use crate::retry::{CallKind, RetryPolicy, RetryableError, retry_call};

/// A bearer token as a [`TokenSource`] hands it out. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Why a [`TokenSource`] handed out no token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    /// What went wrong, in the source's words.
    pub message: String,
    /// True when asking again may succeed (a token endpoint that did not answer), false when
    /// the credentials themselves are refused.
    pub transient: bool,
}

/// Where bearer tokens come from: asked before every request, so a source that refreshes its
/// token (Google's application default credentials) does so when it must.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A token for the next request.
    async fn token(&self) -> Result<BearerToken, TokenError>;
}

#[async_trait]
impl TokenSource for BearerToken {
    async fn token(&self) -> Result<BearerToken, TokenError> {
        Ok(self.clone())
    }
}

/// Signs a request (AWS Signature Version 4 for S3-compatible stores): given what is sent, the
/// headers to add.
pub trait Signer: Send + Sync {
    /// The headers that authenticate a `method` request of `url` with `headers` and `body`.
    fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String>;
}

/// How a [`RestClient`] authenticates its requests.
#[derive(Clone)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials: allowed for a loopback endpoint only.
    Anonymous,
    /// `Authorization: Bearer …` from a token source.
    Bearer(Arc<dyn TokenSource>),
    /// Headers from a request signer.
    Signed(Arc<dyn Signer>),
}

impl std::fmt::Debug for Auth {
    // The credentials stay out of logs: only which kind there is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::Anonymous => "Anonymous",
            Auth::Bearer(_) => "Bearer(<redacted>)",
            Auth::Signed(_) => "Signed(<redacted>)",
        })
    }
}

/// Why a [`RestClient`] was not built. Each client says it in its own words (which variable
/// names the endpoint, where credentials come from).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The endpoint is not a URL.
    #[error("{endpoint} is not a URL: {reason}")]
    NotAUrl {
        /// The endpoint as given.
        endpoint: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The endpoint's scheme is neither `https` nor `http`.
    #[error("unsupported scheme `{scheme}`")]
    Scheme {
        /// The scheme.
        scheme: String,
    },
    /// Credentials would travel over plain HTTP to a host that is not this machine.
    #[error("{endpoint} is plain HTTP: the credentials would travel unencrypted; use https")]
    PlainHttp {
        /// The endpoint.
        endpoint: String,
    },
    /// No credentials, and the endpoint is not on loopback.
    #[error("anonymous credentials cannot reach {service} at {endpoint}")]
    Anonymous {
        /// The service's name.
        service: String,
        /// The endpoint.
        endpoint: String,
    },
    /// The HTTP client could not be built.
    #[error("building the {service} client: {source}")]
    Build {
        /// The service's name.
        service: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
}

/// What a [`RestClient`] is built from.
#[derive(Debug, Clone)]
pub struct RestOptions {
    /// The service's name, for messages (`Cloud Storage`, `Spaces`).
    pub service: &'static str,
    /// The base URL; a trailing `/` is dropped.
    pub endpoint: String,
    /// The credentials.
    pub auth: Auth,
    /// The longest one request may take, answer included.
    pub timeout: Duration,
    /// The longest a connection may take to open (`None`: bounded by `timeout` only).
    pub connect_timeout: Option<Duration>,
    /// Send `User-Agent: qhub-rs/VERSION`.
    pub user_agent: bool,
}

impl RestOptions {
    /// Options for `service` at `endpoint` with `auth`: a 60 s timeout, a 10 s connect
    /// timeout and qhub's user agent.
    pub fn new(service: &'static str, endpoint: impl Into<String>, auth: Auth) -> Self {
        Self {
            service,
            endpoint: endpoint.into(),
            auth,
            // These calls are small: a minute covers a slow network, and an answer that
            // never comes is then a retryable failure rather than a hang.
            timeout: Duration::from_secs(60),
            connect_timeout: Some(Duration::from_secs(10)),
            user_agent: true,
        }
    }
}

/// The body of a request.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub enum Body<'a> {
    /// No body.
    #[default]
    Empty,
    /// A JSON document (`Content-Type: application/json`).
    Json(&'a serde_json::Value),
    /// Bytes as they are (the caller's headers say their type); signed as sent.
    Bytes(&'a [u8]),
}

/// One request: what it is called in the counters, and what is sent.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The operation's name in [`ApiStats`] and in retry messages (`storage.objects.get`,
    /// `GET /v2/kubernetes/clusters/{id}`).
    pub operation: &'a str,
    /// Whether it changes anything (counted apart in [`ApiStats::mutating`]).
    pub mutating: bool,
    /// What may be sent again ([`CallKind::may_retry`]): a [`CallKind::Mutation`] only when
    /// throttled. A mutation the server deduplicates (a `PATCH` or `DELETE` by id) may be
    /// declared a [`CallKind::Read`] here while still counted as mutating.
    pub retry: CallKind,
    /// The method.
    pub method: Method,
    /// The full URL ([`RestClient::url`] joins a path to the base URL).
    pub url: &'a str,
    /// Query parameters, appended form-encoded.
    pub query: &'a [(&'a str, String)],
    /// Headers to send (signed with the request when [`Auth::Signed`]).
    pub headers: &'a [(&'static str, String)],
    /// The body.
    pub body: Body<'a>,
}

impl<'a> Request<'a> {
    /// A request of `operation` (a read or a mutation by [`ApiStats::is_read_only`]) with no
    /// query, headers or body.
    pub fn new(operation: &'a str, method: Method, url: &'a str) -> Self {
        Self {
            operation,
            mutating: !ApiStats::is_read_only(operation),
            retry: CallKind::of(operation),
            method,
            url,
            query: &[],
            headers: &[],
            body: Body::Empty,
        }
    }
}

/// The answer to a request, whatever its status.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: bytes::Bytes,
}

impl Reply {
    /// A header's value, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The wait the server asked for ([`retry_after`]).
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }

    /// The first 200 characters of the body, for a message when no envelope parses.
    pub fn body_start(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(200)
            .collect()
    }
}

/// The `Retry-After` of an answer, in whole seconds (the form the APIs we call send; an HTTP
/// date is not honoured and counts as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Why a request got no usable answer. The status of an answer is never an error here: the
/// caller judges it ([`RestClient::send`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The token source handed out no token.
    #[error("cannot get an access token: {0}")]
    Token(#[source] TokenError),
    /// The request could not be signed.
    #[error("signing the request: {0}")]
    Signing(String),
    /// The request could not be built (a bad URL or header).
    #[error("building the request: {0}")]
    Request(String),
    /// No answer: the connection failed or dropped, or the request timed out.
    #[error("no answer from {service}: {source}")]
    Transport {
        /// The service's name.
        service: &'static str,
        /// True when the request surely never reached the server (the connection never
        /// opened): even a mutation may then be sent again.
        not_sent: bool,
        /// reqwest's error (its message names the URL, never a header).
        #[source]
        source: reqwest::Error,
    },
    /// The answer's body could not be read.
    #[error("the answer could not be read: {source}")]
    Body {
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
}

/// The code and message of an error answer, as the service's error body states them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorEnvelope {
    /// The machine-readable code (S3's `<Code>`, Google's first `errors[].reason`).
    pub code: Option<String>,
    /// The human-readable message.
    pub message: Option<String>,
}

impl ErrorEnvelope {
    /// Google's JSON error (`{"error": {"message", "errors": [{"reason"}]}}`), used by Cloud
    /// Storage and Compute Engine.
    pub fn google_json(body: &[u8]) -> Self {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        Self {
            code: text(&v["error"]["errors"][0]["reason"]),
            message: text(&v["error"]["message"]),
        }
    }

    /// S3's XML error (`<Error><Code>…</Code><Message>…</Message></Error>`), used by S3 and
    /// Spaces.
    pub fn s3_xml(body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let element = |name: &str| {
            text.split_once(&format!("<{name}>"))
                .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
                .map(|(v, _)| v.trim().to_string())
        };
        Self {
            code: element("Code"),
            message: element("Message"),
        }
    }
}

/// A REST client of one service: base URL, credentials, counters and retry policy. Cheap to
/// clone; clones share the connection pool and the counters.
#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    endpoint: String,
    service: &'static str,
    auth: Auth,
    stats: Arc<ApiStats>,
    policy: RetryPolicy,
}

impl std::fmt::Debug for RestClient {
    // Credentials stay out of logs ([`Auth`]'s `Debug` names only their kind).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("service", &self.service)
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl RestClient {
    /// A client as `options` say, counting into `stats` and retrying under `policy`. Refuses
    /// an endpoint that is not an `http(s)` URL, credentials over plain HTTP to a host that is
    /// not loopback, and anonymous access to one.
    pub fn new(
        options: RestOptions,
        stats: Arc<ApiStats>,
        policy: RetryPolicy,
    ) -> Result<Self, SetupError> {
        let endpoint = options.endpoint.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&endpoint).map_err(|e| SetupError::NotAUrl {
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        })?;
        let loopback = is_loopback(&endpoint);
        match (&options.auth, parsed.scheme()) {
            (Auth::Anonymous, "http" | "https") if !loopback => {
                return Err(SetupError::Anonymous {
                    service: options.service.to_string(),
                    endpoint,
                });
            }
            (_, "http") if !loopback => return Err(SetupError::PlainHttp { endpoint }),
            (_, "http" | "https") => {}
            (_, scheme) => {
                return Err(SetupError::Scheme {
                    scheme: scheme.to_string(),
                });
            }
        }
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder().timeout(options.timeout);
        if let Some(connect) = options.connect_timeout {
            builder = builder.connect_timeout(connect);
        }
        if options.user_agent {
            builder = builder.user_agent(concat!("qhub-rs/", env!("CARGO_PKG_VERSION")));
        }
        let http = builder.build().map_err(|source| SetupError::Build {
            service: options.service.to_string(),
            source,
        })?;
        Ok(Self {
            http,
            endpoint,
            service: options.service,
            auth: options.auth,
            stats,
            policy,
        })
    }

    /// The base URL, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The base URL with `path` appended (not joined: an endpoint behind a proxy may have a
    /// path of its own).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    /// True when the endpoint is on this machine (an emulator).
    pub fn is_local(&self) -> bool {
        is_loopback(&self.endpoint)
    }

    /// The counters of this client and its clones.
    pub fn stats(&self) -> &Arc<ApiStats> {
        &self.stats
    }

    /// The retry policy of [`Self::send`].
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// This client with another retry policy.
    #[must_use]
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sends `request` once: counts it, authenticates it, and returns the answer whatever its
    /// status.
    pub async fn send_once(&self, request: &Request<'_>) -> Result<Reply, HttpError> {
        self.stats.record(request.operation, request.mutating);
        let mut builder = self
            .http
            .request(request.method.clone(), request.url)
            .query(request.query);
        for (name, value) in request.headers {
            builder = builder.header(*name, value.as_str());
        }
        builder = match request.body {
            Body::Empty => builder,
            Body::Json(json) => builder.json(json),
            Body::Bytes(bytes) => builder.body(bytes.to_vec()),
        };
        if let Auth::Bearer(tokens) = &self.auth {
            let token = tokens.token().await.map_err(HttpError::Token)?;
            builder = builder.bearer_auth(token.expose());
        }
        let mut built = builder
            .build()
            .map_err(|e| HttpError::Request(e.without_url().to_string()))?;
        if let Auth::Signed(signer) = &self.auth {
            let body = match request.body {
                Body::Bytes(bytes) => bytes,
                _ => &[],
            };
            let headers: Vec<(&str, &str)> = request
                .headers
                .iter()
                .map(|(n, v)| (*n, v.as_str()))
                .collect();
            let signed = signer
                .sign(
                    request.method.as_str(),
                    built.url().as_str(),
                    &headers,
                    body,
                )
                .map_err(HttpError::Signing)?;
            for (name, value) in signed {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| HttpError::Signing(e.to_string()))?;
                let value =
                    HeaderValue::from_str(&value).map_err(|e| HttpError::Signing(e.to_string()))?;
                built.headers_mut().insert(name, value);
            }
        }
        let response = self
            .http
            .execute(built)
            .await
            .map_err(|source| HttpError::Transport {
                service: self.service,
                not_sent: source.is_connect(),
                source,
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|source| HttpError::Body { source })?;
        tracing::debug!(
            operation = request.operation,
            status = status.as_u16(),
            service = self.service,
            "REST call"
        );
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Sends `request` under the retry policy ([`retry_call`], named `what` in its messages):
    /// `judge` turns each attempt's outcome into the caller's result or error, whose
    /// [`RetryableError`] class decides whether it is sent again (a read after any retryable
    /// failure; a mutation, by [`Request::retry`], only when throttled).
    pub async fn send<T, E, J>(&self, what: &str, request: &Request<'_>, judge: J) -> Result<T, E>
    where
        E: RetryableError,
        J: Fn(Result<Reply, HttpError>) -> Result<T, E>,
    {
        retry_call(
            &self.policy,
            Some(&self.stats),
            what,
            request.retry,
            || async { judge(self.send_once(request).await) },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderError;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server answering each connection with the next of `answers` (raw HTTP),
    /// recording each request's head.
    async fn serve(answers: Vec<String>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for answer in answers {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 8192];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (format!("http://{addr}"), seen)
    }

    fn answer(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
            body.len()
        )
    }

    fn quick() -> RetryPolicy {
        RetryPolicy::uniform(crate::retry::Budget {
            max_attempts: 5,
            max_elapsed: Duration::from_secs(5),
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        })
    }

    #[test]
    fn anonymous_and_plain_http_credentials_are_for_loopback_only() {
        let token = || Auth::Bearer(Arc::new(BearerToken::new("very-secret")));
        let build = |endpoint: &str, auth: Auth| {
            RestClient::new(
                RestOptions::new("Test", endpoint, auth),
                Arc::default(),
                RetryPolicy::default(),
            )
        };
        assert!(matches!(
            build("https://api.example.com", Auth::Anonymous),
            Err(SetupError::Anonymous { .. })
        ));
        assert!(matches!(
            build("http://api.example.com", token()),
            Err(SetupError::PlainHttp { .. })
        ));
        assert!(matches!(
            build("ftp://127.0.0.1", Auth::Anonymous),
            Err(SetupError::Scheme { .. })
        ));
        assert!(matches!(
            build("not a url", token()),
            Err(SetupError::NotAUrl { .. })
        ));
        let local = build("http://127.0.0.1:9/", Auth::Anonymous).unwrap();
        assert_eq!(local.url("/v1/x"), "http://127.0.0.1:9/v1/x");
        assert!(local.is_local());
        let remote = build("https://api.example.com", token()).unwrap();
        let shown = format!("{remote:?}");
        assert!(
            !shown.contains("very-secret") && shown.contains("Bearer(<redacted>)"),
            "{shown}"
        );
        assert!(!format!("{:?}", BearerToken::new("very-secret")).contains("very-secret"));
    }

    #[test]
    fn error_envelopes_are_read() {
        let google =
            br#"{"error":{"code":404,"message":"No such object","errors":[{"reason":"notFound"}]}}"#;
        assert_eq!(
            ErrorEnvelope::google_json(google),
            ErrorEnvelope {
                code: Some("notFound".into()),
                message: Some("No such object".into())
            }
        );
        let s3 =
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>m</Message></Error>";
        assert_eq!(
            ErrorEnvelope::s3_xml(s3),
            ErrorEnvelope {
                code: Some("NoSuchBucket".into()),
                message: Some("m".into())
            }
        );
        assert_eq!(ErrorEnvelope::s3_xml(b"oops"), ErrorEnvelope::default());
        assert_eq!(
            ErrorEnvelope::google_json(b"oops"),
            ErrorEnvelope::default()
        );
    }

    /// Judges a reply the way the clients do: success passes, 429 is throttling with its
    /// `Retry-After`, 5xx is retryable, anything else fatal.
    fn judge(outcome: Result<Reply, HttpError>) -> Result<Reply, ProviderError> {
        let reply = outcome.map_err(|e| ProviderError::retryable(e.to_string()))?;
        match reply.status.as_u16() {
            200..=299 => Ok(reply),
            429 => Err(ProviderError::Throttled {
                message: "429".into(),
                retry_after: reply.retry_after(),
            }),
            500.. => Err(ProviderError::retryable(format!("{}", reply.status))),
            _ => Err(ProviderError::Fatal(reply.body_start())),
        }
    }

    #[tokio::test]
    async fn a_read_is_retried_after_throttling_and_5xx_and_every_attempt_is_counted() {
        let (endpoint, seen) = serve(vec![
            answer("429 Too Many Requests", "retry-after: 0\r\n", ""),
            answer("503 Service Unavailable", "", ""),
            answer("200 OK", "x-goog-generation: 7\r\n", "{\"ok\":true}"),
        ])
        .await;
        let stats = Arc::new(ApiStats::default());
        let client = RestClient::new(
            RestOptions::new(
                "Test",
                endpoint.as_str(),
                Auth::Bearer(Arc::new(BearerToken::new("t0k"))),
            ),
            stats.clone(),
            quick(),
        )
        .unwrap();
        let url = client.url("/v1/things");
        let query = [("alt", "json".to_string())];
        let mut request = Request::new("things.get", Method::GET, &url);
        request.query = &query;
        let reply = client.send("things.get", &request, judge).await.unwrap();
        assert_eq!(reply.header("x-goog-generation"), Some("7"));
        assert_eq!(reply.json()["ok"], true);
        assert_eq!(
            (stats.calls(), stats.mutating(), stats.retries()),
            (3, 0, 2)
        );
        let heads = seen.lock().unwrap().clone();
        assert!(
            heads[0].starts_with("GET /v1/things?alt=json "),
            "{}",
            heads[0]
        );
        assert!(
            heads[0]
                .to_ascii_lowercase()
                .contains("authorization: bearer t0k"),
            "{}",
            heads[0]
        );
    }

    #[tokio::test]
    async fn a_mutation_is_sent_again_only_when_throttled() {
        let (endpoint, _) = serve(vec![
            answer("429 Too Many Requests", "", ""),
            answer("500 Internal Server Error", "", ""),
            answer("200 OK", "", ""),
        ])
        .await;
        let stats = Arc::new(ApiStats::default());
        let client = RestClient::new(
            RestOptions::new("Test", endpoint.as_str(), Auth::Anonymous),
            stats.clone(),
            quick(),
        )
        .unwrap();
        let url = client.url("/v1/things");
        let body = serde_json::json!({"name": "x"});
        let mut request = Request::new("things.insert", Method::POST, &url);
        request.body = Body::Json(&body);
        let err = client.send("insert", &request, judge).await.unwrap_err();
        // Throttled once (sent again), then a 500: the mutation may have been carried out,
        // so it goes back to the caller.
        assert!(matches!(err, ProviderError::Retryable { .. }), "{err:?}");
        assert_eq!((stats.calls(), stats.mutating()), (2, 2));
    }

    #[tokio::test]
    async fn a_signer_signs_what_is_sent() {
        struct Echo;
        impl Signer for Echo {
            fn sign(
                &self,
                method: &str,
                url: &str,
                headers: &[(&str, &str)],
                body: &[u8],
            ) -> Result<Vec<(String, String)>, String> {
                Ok(vec![(
                    "x-signed".into(),
                    format!("{method} {url} {} {}", headers.len(), body.len()),
                )])
            }
        }
        let (endpoint, seen) = serve(vec![answer("412 Precondition Failed", "", "")]).await;
        let client = RestClient::new(
            RestOptions::new("Test", endpoint.as_str(), Auth::Signed(Arc::new(Echo))),
            Arc::default(),
            quick(),
        )
        .unwrap();
        let url = client.url("/bucket/key");
        let headers = [("if-none-match", "*".to_string())];
        let mut request = Request::new("PutObject", Method::PUT, &url);
        request.headers = &headers;
        request.body = Body::Bytes(b"hello");
        let reply = client.send_once(&request).await.unwrap();
        assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
        let head = seen.lock().unwrap()[0].to_ascii_lowercase();
        assert!(
            head.contains(&format!("x-signed: put {endpoint}/bucket/key 1 5")),
            "{head}"
        );
        assert!(head.contains("if-none-match: *"), "{head}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transport_error_that_was_not_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let client = RestClient::new(
            RestOptions::new("Test", endpoint.as_str(), Auth::Anonymous),
            Arc::default(),
            quick(),
        )
        .unwrap();
        let url = client.url("/x");
        let err = client
            .send_once(&Request::new("getX", Method::GET, &url))
            .await
            .unwrap_err();
        assert!(
            matches!(err, HttpError::Transport { not_sent: true, .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("no answer from Test"), "{err}");
    }
}
