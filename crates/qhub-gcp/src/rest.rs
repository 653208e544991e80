//! The JSON REST calls the GKE client library does not cover (Cloud Storage for the deploy
//! lock, Compute Engine for preflight and the disk sweep), over one reqwest client: the
//! bearer token from the provider's credentials, every call counted, reads retried under the
//! provider's policy, writes only when throttled, Google's error bodies turned into messages
//! and each HTTP status into a [`Class`].

use std::sync::Arc;
use std::time::Duration;

use google_cloud_auth::credentials::AccessTokenCredentials;
use qhub_core::cloud::RetryPolicy;
use qhub_core::provider::ProviderError;
use qhub_core::retry::{CallKind, retry_call};
use reqwest::{Method, StatusCode};

use crate::client::ApiStats;
use crate::errors::{Class, GcpError};

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

/// One answer, with the statuses a caller handles itself left to it.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    /// Cloud Storage's `x-goog-generation` header, when sent.
    pub(crate) generation: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// Google's error message (`{"error": {"message"}}`), or the start of the body.
    pub(crate) fn message(&self) -> String {
        let v = self.json();
        v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect()
            })
    }

    /// The first `errors[].reason` of Google's error body (`notFound`,
    /// `resourceInUseByAnotherResource`…).
    pub(crate) fn reason(&self) -> String {
        self.json()["error"]["errors"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A JSON REST client of one Google API.
#[derive(Clone)]
pub(crate) struct GoogleRest {
    http: reqwest::Client,
    endpoint: String,
    tokens: Option<AccessTokenCredentials>,
    stats: Arc<ApiStats>,
    policy: RetryPolicy,
    /// The API's name, for messages (`Cloud Storage`, `Compute Engine`).
    service: &'static str,
}

impl std::fmt::Debug for GoogleRest {
    // The token source stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleRest")
            .field("service", &self.service)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
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
        if tokens.is_none() && !crate::client::is_loopback(endpoint) {
            return Err(GcpError::Credentials(format!(
                "anonymous credentials cannot reach {service} at {endpoint}"
            )));
        }
        qhub_core::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            // These calls are small: a minute covers a slow network, and an answer that never
            // comes is then a retryable failure rather than a hang.
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| GcpError::Api {
                what: format!("building the {service} client"),
                class: Class::Fatal,
                message: e.to_string(),
            })?;
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            tokens,
            stats,
            policy,
            service,
        })
    }

    /// The endpoint, without a trailing `/`.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends one request once: statuses in `handled` come back as a [`Reply`], anything else
    /// but success is an error of its class. `what` names the target in messages.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send_once(
        &self,
        rpc: &'static str,
        what: &str,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<(&'static str, Vec<u8>)>,
        handled: &[u16],
    ) -> Result<Reply, GcpError> {
        self.stats.record(rpc, !ApiStats::is_read_only(rpc));
        let what = format!("{rpc} {what}");
        let mut req = self.http.request(method, url).query(query);
        if let Some(tokens) = &self.tokens {
            let token = tokens.access_token().await.map_err(|e| GcpError::Api {
                what: what.clone(),
                class: if e.is_transient() {
                    Class::Retryable
                } else {
                    Class::Unauthorized
                },
                message: format!("cannot get an access token: {e}"),
            })?;
            req = req.bearer_auth(token.token);
        }
        if let Some((content_type, bytes)) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        let resp = req.send().await.map_err(|e| GcpError::Api {
            what: what.clone(),
            class: Class::Retryable,
            message: format!("no answer from {}: {e}", self.service),
        })?;
        let status = resp.status();
        let generation = resp
            .headers()
            .get("x-goog-generation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .bytes()
            .await
            .map_err(|e| GcpError::Api {
                what: what.clone(),
                class: Class::Retryable,
                message: format!("the answer could not be read: {e}"),
            })?
            .to_vec();
        let reply = Reply {
            status,
            generation,
            body,
        };
        tracing::debug!(
            rpc,
            status = status.as_u16(),
            service = self.service,
            "REST call"
        );
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
        Err(GcpError::Api {
            what,
            class,
            message: format!("HTTP {}: {}", status.as_u16(), reply.message()),
        })
    }

    /// [`Self::send_once`] under the retry policy: a read is sent again after throttling,
    /// 5xx and lost answers; a write only after throttling (429: not carried out).
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
        retry_call(
            &self.policy,
            Some(&self.stats),
            &label,
            CallKind::of(rpc),
            || self.send_once(rpc, what, method.clone(), url, query, body.clone(), handled),
        )
        .await
        .map_err(ProviderError::from)
    }
}
