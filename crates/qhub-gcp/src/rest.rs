//! The JSON REST calls the GKE client library does not cover (Cloud Storage for the deploy
//! lock, Compute Engine for preflight and the disk sweep), over one reqwest client: the
//! bearer token from the provider's credentials, every call counted, reads retried under the
//! provider's policy, writes only when throttled, Google's error bodies turned into messages
//! and each HTTP status into a [`Class`].

use std::sync::Arc;

use async_trait::async_trait;
use google_cloud_auth::credentials::AccessTokenCredentials;
use qhub_core::cloud::RetryPolicy;
use qhub_core::cloud::http::{
    Auth, BearerToken, Body, ErrorEnvelope, HttpError, Request, RestClient, RestOptions,
    SetupError, TokenError, TokenSource,
};
use qhub_core::provider::ProviderError;
use reqwest::Method;

use crate::client::ApiStats;
use crate::errors::{Class, GcpError};

pub(crate) use qhub_core::cloud::http::Reply;

/// Percent-encodes a path segment (an object name's `/` becomes `%2F`, as the JSON APIs want).
pub(crate) fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What Google's JSON APIs say in an answer beyond its status.
pub(crate) trait GoogleReply {
    /// Google's error message (`{"error": {"message"}}`), or the start of the body.
    fn message(&self) -> String;
    /// The first `errors[].reason` of Google's error body (`notFound`,
    /// `resourceInUseByAnotherResource`…).
    fn reason(&self) -> String;
    /// Cloud Storage's `x-goog-generation` header, when sent.
    fn generation(&self) -> Option<String>;
}

impl GoogleReply for Reply {
    fn message(&self) -> String {
        ErrorEnvelope::google_json(&self.body)
            .message
            .unwrap_or_else(|| self.body_start())
    }

    fn reason(&self) -> String {
        ErrorEnvelope::google_json(&self.body)
            .code
            .unwrap_or_default()
    }

    fn generation(&self) -> Option<String> {
        self.header("x-goog-generation").map(str::to_string)
    }
}

/// The provider's Google credentials as the toolkit's token source: asked before each request
/// (the library refreshes the token when it must).
struct GoogleTokens(AccessTokenCredentials);

#[async_trait]
impl TokenSource for GoogleTokens {
    async fn token(&self) -> Result<BearerToken, TokenError> {
        self.0
            .access_token()
            .await
            .map(|t| BearerToken::new(t.token))
            .map_err(|e| TokenError {
                transient: e.is_transient(),
                message: e.to_string(),
            })
    }
}

/// A JSON REST client of one Google API, on qhub-core's REST toolkit.
#[derive(Clone, Debug)]
pub(crate) struct GoogleRest {
    rest: RestClient,
}

impl GoogleRest {
    /// A client of `service` at `endpoint` with `tokens` (`None`: anonymous, loopback only),
    /// calls counted in `stats` and retried under `policy`.
    pub(crate) fn new(
        service: &'static str,
        endpoint: &str,
        tokens: Option<AccessTokenCredentials>,
        stats: Arc<ApiStats>,
        policy: RetryPolicy,
    ) -> Result<Self, GcpError> {
        let auth = match tokens {
            Some(t) => Auth::Bearer(Arc::new(GoogleTokens(t))),
            None => Auth::Anonymous,
        };
        let rest = RestClient::new(RestOptions::new(service, endpoint, auth), stats, policy)
            .map_err(|e| match e {
                SetupError::Anonymous { .. } | SetupError::PlainHttp { .. } => {
                    GcpError::Credentials(e.to_string())
                }
                other => GcpError::Api {
                    what: format!("building the {service} client"),
                    class: Class::Fatal,
                    message: other.to_string(),
                },
            })?;
        Ok(Self { rest })
    }

    /// The endpoint, without a trailing `/`.
    pub(crate) fn endpoint(&self) -> &str {
        self.rest.endpoint()
    }

    /// Sends one request under the retry policy: a read is sent again after throttling, 5xx
    /// and lost answers; a write only after throttling (429: not carried out). Statuses in
    /// `handled` come back as a [`Reply`], anything else but success is an error of its class;
    /// `what` names the target in messages.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send(
        &self,
        rpc: &'static str,
        what: &str,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<(&'static str, Vec<u8>)>,
        handled: &[u16],
    ) -> Result<Reply, ProviderError> {
        let label = format!("{rpc} {what}");
        let headers = body
            .as_ref()
            .map(|(content_type, _)| vec![("content-type", content_type.to_string())])
            .unwrap_or_default();
        let mut request = Request::new(rpc, method, url);
        request.query = query;
        request.headers = &headers;
        if let Some((_, bytes)) = &body {
            request.body = Body::Bytes(bytes);
        }
        self.rest
            .send(&label, &request, |outcome| judge(&label, outcome, handled))
            .await
            .map_err(ProviderError::from)
    }
}

/// One attempt's outcome as the GCP error classes: statuses in `handled` and successes come
/// back; any other status is an error of its class, named `what`.
fn judge(
    what: &str,
    outcome: Result<Reply, HttpError>,
    handled: &[u16],
) -> Result<Reply, GcpError> {
    let api = |class, message: String| GcpError::Api {
        what: what.to_string(),
        class,
        message,
    };
    let reply = match outcome {
        Ok(reply) => reply,
        Err(HttpError::Token(e)) => {
            let class = if e.transient {
                Class::Retryable
            } else {
                Class::Unauthorized
            };
            return Err(api(class, HttpError::Token(e).to_string()));
        }
        Err(e @ (HttpError::Transport { .. } | HttpError::Body { .. })) => {
            return Err(api(Class::Retryable, e.to_string()));
        }
        Err(e) => return Err(api(Class::Fatal, e.to_string())),
    };
    let status = reply.status;
    if status.is_success() || handled.contains(&status.as_u16()) {
        return Ok(reply);
    }
    let class = match status.as_u16() {
        429 => Class::Throttled,
        401 | 403 => Class::Unauthorized,
        404 => Class::NotFound,
        409 => Class::AlreadyExists,
        408 => Class::Retryable,
        c if c >= 500 => Class::Retryable,
        _ => Class::Fatal,
    };
    Err(api(
        class,
        format!("HTTP {}: {}", status.as_u16(), reply.message()),
    ))
}
