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
//!   a refreshing source such as Google's is asked each time; one that can fetch a new token on
//!   demand, such as Keycloak's password grant, gets one refresh per request after a 401), a
//!   request [`Signer`] (SigV4 for S3-compatible stores), or credentials the request carries
//!   itself (a token endpoint's form). None shows in `Debug`.
//! - **Counters**: every request sent is recorded in [`ApiStats`] under the operation name the
//!   caller gives, as a read or a mutation.
//! - **Retries** ([`RestClient::send`]): the engine's one policy ([`retry_call`]): a read is sent
//!   again after any retryable failure, a mutation only when throttled; `Retry-After` is
//!   honoured ([`retry_after`]) through the error type's [`RetryableError::retry_after`].
//! - **Error envelopes** ([`ErrorEnvelope`]): the code and message of an error answer, parsed
//!   from the body format each service documents (Google's JSON error, S3's XML error,
//!   Keycloak's and OAuth 2's JSON error).

mod auth;

use std::sync::Arc;
use std::time::Duration;

pub use auth::{Auth, BearerToken, Signer, TokenError, TokenSource};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::cloud::endpoint::is_loopback;
use crate::cloud::stats::ApiStats;
use crate::retry::{CallKind, RetryPolicy, RetryableError, retry_call};

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
    /// The server refused a token (401) and the source could not hand out a fresh one.
    #[error("the access token was refused and could not be refreshed: {0}")]
    TokenRefresh(#[source] TokenError),
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

    /// Keycloak's JSON error: the admin API's `ErrorRepresentation` (`{"errorMessage": …}`,
    /// keycloak/keycloak `core/src/main/java/org/keycloak/representations/idm/
    /// ErrorRepresentation.java`, 26.x) or the OAuth 2 error of its token endpoint
    /// (`{"error": code, "error_description": …}`, RFC 6749 §5.2).
    pub fn keycloak_json(body: &[u8]) -> Self {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |key: &str| v.get(key).and_then(|m| m.as_str()).map(str::to_string);
        Self {
            code: text("error"),
            message: text("errorMessage").or_else(|| text("error_description")),
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
    /// status. When a bearer token is refused (401) and its source [`TokenSource::refreshes`],
    /// the request is sent once more with a fresh token (counted again); the second answer is
    /// returned whatever it is, and a failed refresh is [`HttpError::TokenRefresh`].
    pub async fn send_once(&self, request: &Request<'_>) -> Result<Reply, HttpError> {
        let tokens = match &self.auth {
            Auth::Bearer(tokens) => Some(tokens),
            _ => None,
        };
        let token = match tokens {
            Some(tokens) => Some(tokens.token().await.map_err(HttpError::Token)?),
            None => None,
        };
        let reply = self.execute(request, token.as_ref()).await?;
        let (Some(tokens), Some(rejected)) = (tokens, token) else {
            return Ok(reply);
        };
        if reply.status != StatusCode::UNAUTHORIZED || !tokens.refreshes() {
            return Ok(reply);
        }
        tracing::debug!(
            operation = request.operation,
            service = self.service,
            "token refused (401); sending once more with a fresh one"
        );
        let fresh = tokens
            .refresh(&rejected)
            .await
            .map_err(HttpError::TokenRefresh)?;
        self.execute(request, Some(&fresh)).await
    }

    /// Builds, counts, authenticates (with `token`, or the signer) and sends one request.
    async fn execute(
        &self,
        request: &Request<'_>,
        token: Option<&BearerToken>,
    ) -> Result<Reply, HttpError> {
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
        if let Some(token) = token {
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
mod tests;
