//! How the provider reaches GKE: the endpoint, the credentials, the client library's client,
//! the call counters and the wait for GKE's long-running operations.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use google_cloud_auth::credentials::{
    AccessToken, AccessTokenCredentials, AccessTokenCredentialsProvider, CacheableResource,
    Credentials, CredentialsProvider, EntityTag,
};
use google_cloud_container_v1::client::ClusterManager;
use google_cloud_container_v1::model::{Operation, operation};
use google_cloud_gax::retry_policy::NeverRetry;
use http::{Extensions, HeaderMap, HeaderValue};

use qhub_core::cloud::RetryPolicy;
use qhub_core::cloud::poll::{Poll, poll_until};
use qhub_core::provider::ProviderError;
use qhub_core::retry::{CallKind, retry_call};

use crate::errors::{Class, GcpError, Result};

/// The endpoint override (an emulator, a private endpoint).
pub const ENDPOINT_ENV: &str = "QHUB_GKE_ENDPOINT";

/// QHub's variable: a service-account key, as JSON text or as the path of a JSON file (the
/// Terraform google provider accepts both, and QHub users set it so).
pub const CREDENTIALS_ENV: &str = "GOOGLE_CREDENTIALS";

/// A ready OAuth access token (`gcloud auth print-access-token`), as the Terraform google
/// provider reads it: used as is, never refreshed.
pub const ACCESS_TOKEN_ENV: &str = "GOOGLE_OAUTH_ACCESS_TOKEN";

/// A kubeconfig to reach the cluster with, instead of GKE's endpoint and a token (the only
/// cluster access against an emulator, whose endpoints are not real API servers); qhub-core's,
/// the same for every provider.
pub use qhub_core::provider::KUBECONFIG_ENV;

/// The Cloud Storage endpoint override for the deploy lock ([`crate::lock`]). Unset: the GKE
/// endpoint override when that is on loopback (the GKE emulator serves both), else
/// [`crate::lock::DEFAULT_ENDPOINT`].
pub const STORAGE_ENDPOINT_ENV: &str = "QHUB_GCS_ENDPOINT";

/// `local` makes [`crate::GcpProvider::from_env`] take the local deploy lock (`.qhub/` beside
/// the config) instead of the Cloud Storage one ([`crate::lock`]), for projects where qhub may
/// not use Cloud Storage. Two CI runners are then kept apart only by the Kubernetes stage's
/// Lease.
pub use qhub_core::cloud::lock::DEPLOY_LOCK_ENV;

/// GKE's own endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://container.googleapis.com";

/// Where the credentials come from.
#[derive(Clone, Default)]
pub enum CredentialSource {
    /// [`ACCESS_TOKEN_ENV`], then [`CREDENTIALS_ENV`], then application default credentials;
    /// anonymous when none is set and the endpoint is on loopback.
    #[default]
    Environment,
    /// A service-account (or `authorized_user`) key, JSON.
    Key(serde_json::Value),
    /// A fixed access token.
    AccessToken(String),
    /// No credentials: only for a loopback endpoint.
    Anonymous,
}

impl fmt::Debug for CredentialSource {
    // Keys and tokens never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => f.write_str("Environment"),
            Self::Key(_) => f.write_str("Key(<redacted>)"),
            Self::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
            Self::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// How to reach GKE; [`crate::GcpProvider::from_env`] fills it from the environment.
#[derive(Debug, Clone, Default)]
pub struct GcpOptions {
    /// A custom endpoint ([`ENDPOINT_ENV`]); `None`: GKE itself.
    pub endpoint: Option<String>,
    /// Where credentials come from.
    pub credentials: CredentialSource,
    /// How often to poll an operation. Default: 5 s against GKE, 10 ms on loopback.
    pub poll_interval: Option<Duration>,
    /// Where to count API calls (a fresh counter when `None`).
    pub stats: Option<Arc<ApiStats>>,
    /// A kubeconfig to reach the cluster with ([`KUBECONFIG_ENV`]).
    pub kubeconfig: Option<PathBuf>,
    /// Where the local deploy lock lives; `None`: no local lock. Unused when
    /// [`Self::gcs_lock`] is on.
    pub lock_dir: Option<PathBuf>,
    /// Take the deploy lock in Cloud Storage ([`crate::lock`]: the project's lock bucket),
    /// which keeps CI runners on different machines apart. On in
    /// [`crate::GcpProvider::from_env`] unless [`DEPLOY_LOCK_ENV`] is `local`.
    pub gcs_lock: bool,
    /// The Cloud Storage endpoint ([`STORAGE_ENDPOINT_ENV`]); `None`: see there.
    pub storage_endpoint: Option<String>,
    /// The Compute Engine endpoint ([`crate::compute::ENDPOINT_ENV`]); `None`: the GKE
    /// endpoint when that is on loopback (the emulator serves both), else
    /// [`crate::compute::DEFAULT_ENDPOINT`].
    pub compute_endpoint: Option<String>,
    /// The Resource Manager endpoint ([`crate::compute::RESOURCE_MANAGER_ENDPOINT_ENV`]);
    /// `None`: the GKE endpoint when that is on loopback, else
    /// [`crate::compute::RESOURCE_MANAGER_ENDPOINT`].
    pub resource_manager_endpoint: Option<String>,
    /// The retry policy of every read (sent again after throttling, 5xx and lost answers;
    /// mutations go back to the engine); the engine's by default. Tests shorten its backoffs.
    pub retry: Option<RetryPolicy>,
}

pub use qhub_core::cloud::endpoint::is_loopback;
pub use qhub_core::cloud::stats::ApiStats;

/// `GetOperation` calls counted in `stats`: how many times operations were polled.
pub fn polls(stats: &ApiStats) -> u64 {
    stats
        .by_operation()
        .get("GetOperation")
        .copied()
        .unwrap_or(0)
}

/// A fixed access token as credentials (for [`ACCESS_TOKEN_ENV`] and tests).
#[derive(Clone)]
pub struct StaticToken(String);

impl StaticToken {
    /// Credentials that always send `token`.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken(<redacted>)")
    }
}

impl CredentialsProvider for StaticToken {
    async fn headers(
        &self,
        _extensions: Extensions,
    ) -> std::result::Result<
        CacheableResource<HeaderMap>,
        google_cloud_auth::errors::CredentialsError,
    > {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0)).map_err(|_| {
            google_cloud_gax::error::CredentialsError::from_msg(
                false,
                "the access token holds characters not allowed in a header",
            )
        })?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        Ok(CacheableResource::New {
            entity_tag: EntityTag::new(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

impl AccessTokenCredentialsProvider for StaticToken {
    async fn access_token(
        &self,
    ) -> std::result::Result<AccessToken, google_cloud_auth::errors::CredentialsError> {
        Ok(AccessToken {
            token: self.0.clone(),
        })
    }
}

/// The credentials the client signs with, and the token source for cluster access.
#[derive(Clone, Debug)]
pub(crate) struct Auth {
    pub(crate) credentials: Credentials,
    /// `None` for anonymous credentials.
    pub(crate) tokens: Option<AccessTokenCredentials>,
}

fn key_credentials(key: serde_json::Value) -> Result<AccessTokenCredentials> {
    let kind = key
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string();
    let built = match kind.as_str() {
        "service_account" => google_cloud_auth::credentials::service_account::Builder::new(key)
            .build_access_token_credentials(),
        "authorized_user" => google_cloud_auth::credentials::user_account::Builder::new(key)
            .build_access_token_credentials(),
        other => {
            return Err(GcpError::NotSupported(format!(
                "{CREDENTIALS_ENV} holds credentials of type {other:?}; use a service-account key (or application default credentials)"
            )));
        }
    };
    built.map_err(|e| GcpError::Credentials(format!("the {kind} key is unusable: {e}")))
}

/// Reads [`CREDENTIALS_ENV`]: JSON text, or the path of a JSON file.
fn key_from_env(value: &str) -> Result<serde_json::Value> {
    let text = if value.trim_start().starts_with('{') {
        value.to_string()
    } else {
        std::fs::read_to_string(value).map_err(|e| {
            GcpError::Credentials(format!(
                "{CREDENTIALS_ENV} is neither JSON nor a readable file ({e})"
            ))
        })?
    };
    serde_json::from_str(&text)
        .map_err(|e| GcpError::Credentials(format!("{CREDENTIALS_ENV} is not valid JSON: {e}")))
}

/// Builds the credentials for `endpoint`.
pub(crate) fn auth(source: &CredentialSource, endpoint: &str) -> Result<Auth> {
    let tokens = |t: AccessTokenCredentials| Auth {
        credentials: Credentials::from(t.clone()),
        tokens: Some(t),
    };
    let anonymous = || -> Result<Auth> {
        qhub_core::cloud::endpoint::check_anonymous(
            Some(endpoint),
            &format!("set {CREDENTIALS_ENV} or run `gcloud auth application-default login`"),
        )
        .map_err(|e| GcpError::Credentials(e.to_string()))?;
        Ok(Auth {
            credentials: google_cloud_auth::credentials::anonymous::Builder::new().build(),
            tokens: None,
        })
    };
    match source {
        CredentialSource::Anonymous => anonymous(),
        CredentialSource::AccessToken(t) => {
            Ok(tokens(AccessTokenCredentials::from(StaticToken::new(t))))
        }
        CredentialSource::Key(key) => Ok(tokens(key_credentials(key.clone())?)),
        CredentialSource::Environment => {
            if let Ok(t) = std::env::var(ACCESS_TOKEN_ENV)
                && !t.is_empty()
            {
                return Ok(tokens(AccessTokenCredentials::from(StaticToken::new(t))));
            }
            if let Ok(v) = std::env::var(CREDENTIALS_ENV)
                && !v.is_empty()
            {
                return Ok(tokens(key_credentials(key_from_env(&v)?)?));
            }
            if is_loopback(endpoint) {
                // An emulator needs no credentials; ADC may not exist on a test machine.
                return anonymous();
            }
            let adc = google_cloud_auth::credentials::Builder::default()
                .build_access_token_credentials()
                .map_err(|e| {
                    GcpError::Credentials(format!(
                        "no credentials: set {CREDENTIALS_ENV} to a service-account key, or run `gcloud auth application-default login` ({e})"
                    ))
                })?;
            Ok(tokens(adc))
        }
    }
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The client library client and what goes with it.
#[derive(Clone, Debug)]
pub(crate) struct Api {
    pub(crate) client: ClusterManager,
    pub(crate) auth: Auth,
    pub(crate) stats: Arc<ApiStats>,
    pub(crate) poll: Duration,
    pub(crate) policy: RetryPolicy,
}

/// Builds the client for `endpoint`.
pub(crate) async fn connect(
    endpoint: &str,
    source: &CredentialSource,
    stats: Arc<ApiStats>,
    poll: Duration,
    policy: RetryPolicy,
) -> Result<Api> {
    // reqwest's rustls needs a process-wide provider (we build without aws-lc-rs).
    qhub_core::tls::install_crypto_provider();
    let auth = auth(source, endpoint)?;
    let client = ClusterManager::builder()
        .with_endpoint(endpoint)
        .with_credentials(auth.credentials.clone())
        // One retry loop per failure, ours: reads through `Api::read` (qhub-core's policy),
        // mutations by the engine after it re-observed (a blindly retried create is not
        // idempotent).
        .with_retry_policy(NeverRetry)
        .build()
        .await
        .map_err(|e| GcpError::Api {
            what: "building the GKE client".into(),
            class: Class::Fatal,
            message: e.to_string(),
        })?;
    Ok(Api {
        client,
        auth,
        stats,
        poll,
        policy,
    })
}

impl Api {
    /// Sends one read (`Get*`, `List*`) under the one retry policy
    /// ([`qhub_core::retry::retry_call`]): sent again after throttling, 5xx and lost
    /// answers, each retry logged and counted; once its budget is spent it fails for good,
    /// naming the call and how long it kept failing. `send` builds the request anew for each
    /// attempt.
    pub(crate) async fn read<T, F, S>(
        &self,
        rpc: &'static str,
        target: &str,
        mut send: S,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = google_cloud_gax::Result<T>> + Send + 'static,
        S: FnMut() -> F,
    {
        let what = format!("{rpc} {target}");
        retry_call(
            &self.policy,
            Some(&self.stats),
            &what,
            CallKind::Read,
            || self.call(rpc, target, send()),
        )
        .await
    }

    /// Sends one request once, counting it, mapping its error (mutations: a failed one goes
    /// back to the engine, which re-observes before it tries again).
    pub(crate) async fn call<T, F>(&self, rpc: &'static str, target: &str, fut: F) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = google_cloud_gax::Result<T>> + Send + 'static,
    {
        self.stats.record(rpc, !ApiStats::is_read_only(rpc));
        let started = Instant::now();
        // Run as a task of its own: decoding a `Cluster` (a message of ~100 fields) takes
        // hundreds of KiB of stack in a debug build, and nested under the engine's futures
        // that overflowed a 2 MiB thread. Aborted if we are dropped (a cancelled or "killed"
        // apply must not leave its request running).
        let mut task = AbortOnDrop(tokio::spawn(fut));
        let r = match (&mut task.0).await {
            Ok(r) => r,
            Err(e) => {
                return Err(GcpError::Api {
                    what: format!("{rpc} {target}"),
                    class: Class::Retryable,
                    message: format!("the request task failed: {e}"),
                });
            }
        };
        tracing::debug!(rpc, target, elapsed = ?started.elapsed(), ok = r.is_ok(), "GKE call");
        r.map_err(|e| GcpError::from_gax(rpc, target, e))
    }

    /// Polls a GKE operation (`location` is `projects/P/locations/L`) until it is DONE
    /// ([`qhub_core::cloud::poll`]); its `error`, if any, becomes
    /// [`GcpError::OperationFailed`]. A poll is a read ([`Self::read`]).
    pub(crate) async fn wait(
        &self,
        location: &str,
        op: Operation,
        what: &str,
        deadline: Duration,
    ) -> Result<()> {
        let started = Instant::now();
        let name = format!("{location}/operations/{}", op.name);
        let id = op.name.clone();
        let mut first = Some(op);
        let done = poll_until(what, deadline, self.poll, || {
            let known = first.take();
            let name = name.clone();
            async move {
                let op = match known {
                    // The mutation's own answer is the first state: no call for it.
                    Some(op) => op,
                    None => self
                        .read("GetOperation", &name, || {
                            self.client.get_operation().set_name(&name).send()
                        })
                        .await
                        .map_err(ProviderError::from)?,
                };
                Ok(if op.status == operation::Status::Done {
                    Poll::Ready(op)
                } else {
                    Poll::Pending(op.status.name().unwrap_or("?").to_string())
                })
            }
        })
        .await
        .map_err(|e| GcpError::Api {
            what: format!("{what} (operation {id})"),
            class: match e.retry_class() {
                Some(_) => Class::Retryable,
                None if matches!(e, ProviderError::Unauthorized(_)) => Class::Unauthorized,
                None => Class::Fatal,
            },
            message: e.to_string(),
        })?;
        if let Some(e) = &done.error {
            return Err(GcpError::OperationFailed {
                what: what.to_string(),
                operation: id,
                message: e.message.clone(),
            });
        }
        tracing::debug!(operation = %id, what, elapsed = ?started.elapsed(), "GKE operation done");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_credentials_is_json_text_or_a_file() {
        let text = r#"{"type": "service_account", "project_id": "p"}"#;
        assert_eq!(key_from_env(text).unwrap()["project_id"], "p");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            key_from_env(path.to_str().unwrap()).unwrap()["type"],
            "service_account"
        );
        let e = key_from_env("/nonexistent/key.json").unwrap_err();
        assert!(e.to_string().contains(CREDENTIALS_ENV), "{e}");
        let e = key_credentials(serde_json::json!({"type": "gdch_service_account"})).unwrap_err();
        assert!(matches!(e, GcpError::NotSupported(_)), "{e}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let key = CredentialSource::Key(serde_json::json!({"private_key": "SECRET-KEY"}));
        let token = CredentialSource::AccessToken("SECRET-TOKEN".into());
        let text = format!("{key:?} {token:?} {:?}", StaticToken::new("SECRET-TOKEN"));
        assert!(!text.contains("SECRET"), "{text}");
    }
}
