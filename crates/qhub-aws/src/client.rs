//! How the provider reaches AWS: its options, the SDK clients (built on first use), and the
//! SDK interceptor that counts calls and applies the one retry policy to each of them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextMut,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::retry::RetryConfig;
use qhub_core::config::{Config, ProviderKind};
use qhub_core::provider::{ProviderError, RetryClass};
use qhub_core::retry::{CallKind, Retrier, RetryPolicy, give_up_note};

use crate::{ApiStats, AwsError, ENDPOINT_ENV, desired};
use qhub_core::provider::local;

/// The response header in which [`ApiPolicy`] tells [`AwsError::from_sdk`] that a call's retry
/// budget ran out (the SDK's error types have no room for it; the raw response travels with
/// the error). Never sent over the wire: it is added to the answer after it arrived.
pub(crate) const GAVE_UP_HEADER: &str = "x-qhub-gave-up";

/// The SDK interceptor of every client: it feeds [`ApiStats`] right before each attempt is
/// sent, and after each failed attempt decides, by the one [`RetryPolicy`] of qhub-core,
/// whether and when the SDK sends it again.
///
/// **Who retries what** (the rules of [`qhub_core::retry`]). The SDK's retry loop is
/// the call-level loop, but the decisions are ours: after each failed attempt this interceptor
/// asks a [`Retrier`] kept with the call, and hands the SDK's standard strategy a
/// [`RetryConfig`] that yields exactly that answer (one more attempt after exactly the
/// Retrier's delay, or none). So every call on every path (preflight, observe, cluster
/// access, the apply's own reads, the destroy sweep, the "nothing remains" check) gets the
/// policy's per-class budgets, decorrelated jitter and `retry-after`, and each retry is logged
/// with its attempt number and counted in [`ApiStats`]. The SDK's retry quota (a token
/// bucket shared by all calls, meant for fleets of clients) is switched off: under a storm it
/// ran dry and left reads with no retries at all, while the policy's budgets already bound
/// every call in attempts and in time.
///
/// Reads (`Describe*`, `List*`, `Get*`) are retried after throttling, 5xx and transport
/// failures. A mutating call is retried only when its attempt was **throttled**: the service
/// refused it before doing anything. After any other failure (5xx, timeout, a lost answer)
/// the service may have done the work; an SDK-level retry of a create with no idempotency
/// token (`CreateVpc`) would then make a duplicate. That failure goes back to the engine as
/// [`ProviderError::Retryable`], and the engine's retry re-runs the whole step, which first
/// re-observes by the ownership tags and adopts what the lost call made. A call whose budget
/// ran out comes back fatal ([`GAVE_UP_HEADER`]), naming the call and how long it kept
/// failing, so no outer loop retries it again: each failure has exactly one retry loop.
///
/// (Why not a retry strategy of our own: the SDK's service configs take a retry *config*,
/// not a strategy; the interceptor and the config bag are its public extension points.)
#[derive(Debug, Clone)]
struct ApiPolicy {
    stats: Arc<ApiStats>,
    policy: RetryPolicy,
}

/// The retry state of one SDK call, kept in its config bag between attempts.
#[derive(Debug, Clone)]
struct CallState {
    started: Instant,
    retrier: Retrier,
}

impl Storable for CallState {
    type Storer = StoreReplace<Self>;
}

impl ApiPolicy {
    fn operation(cfg: &ConfigBag) -> (String, String) {
        cfg.load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("?".into(), "?".into()))
    }

    /// The class of a failed attempt, or `None` when it is not a failure the policy retries
    /// at the call level (not retryable, or a mutation that may have been carried out).
    fn class(context: &FinalizerInterceptorContextMut<'_>, kind: CallKind) -> Option<RetryClass> {
        let class = match context.response() {
            Some(r) => {
                let status = r.status().as_u16();
                if is_throttling(
                    status,
                    r.headers().get("x-amzn-errortype"),
                    r.body().bytes(),
                ) {
                    RetryClass::Throttled
                } else if matches!(status, 500 | 502 | 503 | 504) {
                    // The statuses the SDK's own classifier calls transient: it must agree for
                    // the retry to happen.
                    RetryClass::Transient
                } else {
                    return None;
                }
            }
            None => match context.output_or_error() {
                Some(Err(e)) if e.is_timeout_error() || e.is_connector_error() => {
                    RetryClass::Transient
                }
                _ => return None,
            },
        };
        kind.may_retry(class).then_some(class)
    }

    /// The wait the service asked for: `Retry-After` (seconds) or `x-amz-retry-after`
    /// (milliseconds).
    fn retry_after(context: &FinalizerInterceptorContextMut<'_>) -> Option<Duration> {
        let headers = context.response()?.headers();
        if let Some(ms) = headers
            .get("x-amz-retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Some(Duration::from_millis(ms));
        }
        headers
            .get("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    }
}

/// The SDK retry config that makes the standard strategy send one more attempt after exactly
/// `delay`: with a static exponential base its backoff is `initial × 2^(n-1)` capped at the
/// maximum, so initial = maximum = `delay`.
fn one_more_after(attempts: u32, delay: Duration) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(attempts + 1)
        .with_initial_backoff(delay)
        .with_max_backoff(delay)
        .with_use_static_exponential_base(true)
}

/// The SDK retry config of every client, before any attempt failed: the policy's transient
/// budget (connection failures the interceptor never sees a response for follow it).
fn sdk_retry_config(policy: &RetryPolicy) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(policy.transient.max_attempts.max(1))
        .with_initial_backoff(policy.transient.base)
        .with_max_backoff(policy.transient.cap)
}

impl Intercept for ApiPolicy {
    fn name(&self) -> &'static str {
        "QhubApiPolicy"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(CallState {
            started: Instant::now(),
            retrier: Retrier::new(self.policy),
        });
        Ok(())
    }

    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !matches!(context.output_or_error(), Some(Err(_))) {
            return Ok(());
        }
        let (service, operation) = Self::operation(cfg);
        let what = format!("{service}.{operation}");
        let attempts = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        let Some(class) = Self::class(context, CallKind::of(&operation)) else {
            // The standard strategy reads its RetryConfig from the bag when it decides
            // whether to retry, right after this hook: no further attempt.
            cfg.interceptor_state()
                .store_put(RetryConfig::standard().with_max_attempts(1));
            return Ok(());
        };
        let mut state = cfg
            .load::<CallState>()
            .cloned()
            .unwrap_or_else(|| CallState {
                started: Instant::now(),
                retrier: Retrier::new(self.policy),
            });
        let decision = state
            .retrier
            .next_delay_for(class, Self::retry_after(context));
        match decision {
            Some(delay) => {
                self.stats.record_retry(attempts + 1);
                tracing::info!(
                    operation = %what,
                    attempt = attempts + 1,
                    ?delay,
                    ?class,
                    status = context.response().map(|r| r.status().as_u16()),
                    "{what} failed; retrying"
                );
                cfg.interceptor_state()
                    .store_put(one_more_after(attempts, delay));
            }
            None => {
                self.stats.record_gave_up(attempts);
                let note = give_up_note(&what, attempts, state.started.elapsed());
                tracing::warn!(operation = %what, "{note}");
                if let Some(r) = context.response_mut() {
                    r.headers_mut().insert(GAVE_UP_HEADER, note);
                }
                cfg.interceptor_state()
                    .store_put(RetryConfig::standard().with_max_attempts(1));
            }
        }
        cfg.interceptor_state().store_put(state);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = Self::operation(cfg);
        self.stats.record(
            &format!("{service}.{operation}"),
            !ApiStats::is_read_only(&operation),
        );
        Ok(())
    }
}

/// Error codes of a throttled request (refused before the service did anything).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
];

/// True when a response says the request was throttled: HTTP 429, or a throttling code in the
/// JSON protocols' `x-amzn-ErrorType` header or in the query protocols' XML `<Code>`.
fn is_throttling(status: u16, error_type: Option<&str>, body: Option<&[u8]>) -> bool {
    if status == 429 {
        return true;
    }
    if status != 400 {
        return false;
    }
    let code_of_header = error_type.map(|t| t.split(':').next().unwrap_or(t).trim());
    if code_of_header.is_some_and(|c| THROTTLING_CODES.contains(&c)) {
        return true;
    }
    let body = body.map(String::from_utf8_lossy).unwrap_or_default();
    THROTTLING_CODES
        .iter()
        .any(|c| body.contains(&format!("<Code>{c}</Code>")))
}

/// How to reach AWS; [`AwsProvider::from_env`] fills it from the environment.
#[derive(Clone, Default)]
pub struct AwsOptions {
    /// A custom endpoint for every service (`AWS_ENDPOINT_URL`): emulator mode.
    pub endpoint: Option<String>,
    /// Static credentials `(access key id, secret access key)` instead of the default chain.
    pub credentials: Option<(String, String)>,
    /// Where to count API calls (a fresh counter when `None`).
    pub stats: Option<Arc<ApiStats>>,
    /// How often to poll an operation that completes asynchronously (EKS clusters and node
    /// groups, EFS). Default: 10 s against AWS, 100 ms in emulator mode.
    pub poll_interval: Option<Duration>,
    /// A kubeconfig to reach the cluster with instead of EKS's endpoint and token
    /// ([`KUBECONFIG_ENV`](crate::KUBECONFIG_ENV)). In emulator mode this is the only cluster access: the endpoint
    /// moto returns is not a real API server and is never contacted.
    pub kubeconfig: Option<PathBuf>,
    /// The cluster's API server (`https://…`, or `http://` on loopback) to reach with EKS
    /// tokens instead of the endpoint EKS reports: the same tokens, the same access check
    /// ([`crate::access`]), another address (an emulated cluster in tests; a private endpoint
    /// through a tunnel). Its CA is the system's, not the cluster's.
    pub cluster_endpoint: Option<String>,
    /// Where the local deploy lock lives ([`LOCK_DIR`](crate::LOCK_DIR) beside the config, from
    /// [`AwsProvider::from_env`]); `None`: no local lock. It keeps two qhub commands on one
    /// machine from deploying the same deployment at once; unused when [`Self::s3_lock`] is on.
    pub lock_dir: Option<PathBuf>,
    /// Take the deploy lock in S3 ([`crate::lock`]: the account's lock bucket in the region),
    /// which keeps CI runners on different machines apart. On in [`AwsProvider::from_env`]
    /// unless [`DEPLOY_LOCK_ENV`](crate::DEPLOY_LOCK_ENV) is `local`.
    pub s3_lock: bool,
    /// The retry policy of every API call, which decides each of the SDK's retries: reads are
    /// sent again after throttling, 5xx and network failures, mutations only after throttling.
    /// The engine's by default; tests shorten its backoffs.
    pub retry: Option<RetryPolicy>,
}

impl fmt::Debug for AwsOptions {
    // The secret key must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsOptions")
            .field("endpoint", &self.endpoint)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(id, _)| (id, "<redacted>")),
            )
            .field("poll_interval", &self.poll_interval)
            .field("kubeconfig", &self.kubeconfig)
            .field("cluster_endpoint", &self.cluster_endpoint)
            .field("lock_dir", &self.lock_dir)
            .field("s3_lock", &self.s3_lock)
            .field("retry", &self.retry)
            .finish()
    }
}

/// The SDK clients, built on first use (loading the default chain is async; provider
/// factories are not).
#[derive(Debug, Clone)]
pub(crate) struct Clients {
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) eks: aws_sdk_eks::Client,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) efs: aws_sdk_efs::Client,
    pub(crate) sts: aws_sdk_sts::Client,
    pub(crate) elb: aws_sdk_elasticloadbalancing::Client,
    pub(crate) elbv2: aws_sdk_elasticloadbalancingv2::Client,
    /// The deploy lock's bucket ([`crate::lock`]).
    pub(crate) s3: aws_sdk_s3::Client,
    /// Preflight's vCPU quotas ([`crate::preflight`]).
    pub(crate) quotas: aws_sdk_servicequotas::Client,
    /// The credentials every client signs with (EKS tokens are signed with them too).
    pub(crate) credentials: aws_credential_types::provider::SharedCredentialsProvider,
}

/// The AWS provider.
pub struct AwsProvider {
    pub(crate) region: String,
    pub(crate) options: AwsOptions,
    stats: Arc<ApiStats>,
    poll: Duration,
    clients: tokio::sync::OnceCell<Clients>,
    account: tokio::sync::OnceCell<String>,
    /// `amazon_web_services.support_type` in the EKS API's spelling.
    pub(crate) support_type: &'static str,
    /// Clusters whose support warning was given already (observe runs many times a deploy).
    pub(crate) warned: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsProvider")
            .field("region", &self.region)
            .field("options", &self.options)
            .finish()
    }
}

impl AwsProvider {
    /// A provider for `config` (`provider: aws`) with explicit options.
    pub fn new(config: &Config, options: AwsOptions) -> Result<Self, ProviderError> {
        if config.provider != ProviderKind::Aws {
            return Err(ProviderError::Fatal(format!(
                "the aws provider serves `provider: aws`, not `{}`",
                config.provider
            )));
        }
        let section = config.amazon_web_services.as_ref().ok_or_else(|| {
            ProviderError::Fatal("the config has no `amazon_web_services` section".into())
        })?;
        let emulator = options.endpoint.is_some();
        let poll = options.poll_interval.unwrap_or(if emulator {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(10)
        });
        Ok(Self {
            region: section.region.clone(),
            stats: options.stats.clone().unwrap_or_default(),
            options,
            poll,
            clients: tokio::sync::OnceCell::new(),
            account: tokio::sync::OnceCell::new(),
            support_type: section.support_type.unwrap_or_default().api_value(),
            warned: std::sync::Mutex::default(),
        })
    }

    /// A provider for `config`, reaching AWS the way the AWS CLI would: the default credential
    /// chain, the config's region, and `AWS_ENDPOINT_URL` when set (emulator mode).
    /// `QHUB_KUBECONFIG` names a kubeconfig override for cluster access, relative to `dir`
    /// (the config's directory) when not absolute.
    pub fn from_env(config: &Config, dir: &Path) -> Result<Self, ProviderError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self::new(
            config,
            AwsOptions {
                endpoint: var(ENDPOINT_ENV),
                kubeconfig: local::kubeconfig_override(dir),
                lock_dir: Some(local::lock_dir(dir)),
                s3_lock: qhub_core::cloud::lock::cloud_lock_from_env(),
                ..AwsOptions::default()
            },
        )
    }

    /// The API call counters of this provider.
    pub fn stats(&self) -> Arc<ApiStats> {
        self.stats.clone()
    }

    /// True when a custom endpoint is set.
    pub fn emulator(&self) -> bool {
        self.options.endpoint.is_some()
    }

    /// Warns that the custom endpoint does not implement EKS add-ons (only ever in emulator
    /// mode, from an HTML 404: the real EKS API always has them). Kept for emulators without
    /// them (bare moto, LocalStack); the tests' rules layer serves add-ons and Pod Identity,
    /// so the tests never take this path.
    pub(crate) fn without_addons(&self, operation: &str) {
        tracing::warn!(
            operation,
            "the custom endpoint does not implement EKS add-ons; the add-ons and EKS Pod Identity are skipped"
        );
    }

    /// Whether the endpoint implements EKS add-ons: against AWS it does (nothing is asked); in
    /// emulator mode one read (`DescribeAddonVersions`) tells, so that plans leave the add-on
    /// out from the start.
    pub(crate) async fn probe_addons(&self) -> Result<bool, ProviderError> {
        if !self.emulator() {
            return Ok(true);
        }
        let asked = self
            .clients()
            .await?
            .eks
            .describe_addon_versions()
            .addon_name(desired::EBS_CSI_ADDON)
            .max_results(1)
            .send()
            .await;
        match asked {
            Ok(_) => Ok(true),
            Err(e) => match self.err(AwsError::from_sdk("DescribeAddonVersions", e)) {
                ProviderError::NotSupported(_) => {
                    self.without_addons("DescribeAddonVersions");
                    Ok(false)
                }
                other => Err(other),
            },
        }
    }

    pub(crate) fn poll(&self) -> Duration {
        self.poll
    }

    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    /// The account the credentials belong to (`GetCallerIdentity`, asked once).
    pub(crate) async fn account(&self) -> Result<&str, ProviderError> {
        self.account
            .get_or_try_init(|| async {
                let out = self
                    .clients()
                    .await?
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| self.err(AwsError::from_sdk("GetCallerIdentity", e)))?;
                out.account().map(str::to_string).ok_or_else(|| {
                    ProviderError::Fatal("GetCallerIdentity named no account".into())
                })
            })
            .await
            .map(String::as_str)
    }

    pub(crate) async fn clients(&self) -> Result<&Clients, ProviderError> {
        self.clients.get_or_try_init(|| self.build_clients()).await
    }

    async fn build_clients(&self) -> Result<Clients, ProviderError> {
        use aws_config::BehaviorVersion;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()));
        if let Some(endpoint) = &self.options.endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        if let Some((id, secret)) = &self.options.credentials {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "qhub",
            ));
        }
        let mut sdk = loader.load().await;
        let has_credentials = match sdk.credentials_provider() {
            Some(p) => {
                use aws_credential_types::provider::ProvideCredentials;
                p.provide_credentials().await.is_ok()
            }
            None => false,
        };
        if !has_credentials {
            // Anonymous use is for emulators on this machine only (DESIGN.md §1).
            qhub_core::cloud::endpoint::check_anonymous(
                self.options.endpoint.as_deref(),
                "configure AWS credentials as for the AWS CLI (environment, shared config, SSO, instance role)",
            )?;
            sdk = sdk
                .into_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(
                        aws_credential_types::Credentials::new(
                            "qhub-emulator",
                            "qhub-emulator",
                            None,
                            None,
                            "qhub",
                        ),
                    ),
                )
                .build();
        }
        let counter = ApiPolicy {
            stats: self.stats.clone(),
            policy: self.options.retry.unwrap_or_default(),
        };
        let retry = sdk_retry_config(&counter.policy);
        // The SDK's retry quota is off (see [`ApiPolicy`]): the policy bounds every call.
        let partition = aws_sdk_ec2::config::retry::RetryPartition::custom("qhub")
            .token_bucket(aws_sdk_ec2::config::retry::TokenBucket::unlimited())
            .build();
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| ProviderError::Unauthorized("no AWS credentials provider".into()))?;
        Ok(Clients {
            credentials,
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .retry_config(retry.clone())
                    .retry_partition(partition.clone())
                    .build(),
            ),
            eks: aws_sdk_eks::Client::from_conf(
                aws_sdk_eks::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .retry_config(retry.clone())
                    .retry_partition(partition.clone())
                    .build(),
            ),
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .retry_config(retry.clone())
                    .retry_partition(partition.clone())
                    .build(),
            ),
            efs: aws_sdk_efs::Client::from_conf(
                aws_sdk_efs::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .retry_config(retry.clone())
                    .retry_partition(partition.clone())
                    .build(),
            ),
            sts: aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .retry_config(retry.clone())
                    .retry_partition(partition.clone())
                    .build(),
            ),
            elb: aws_sdk_elasticloadbalancing::Client::from_conf(
                aws_sdk_elasticloadbalancing::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .retry_config(retry.clone())
                    .retry_partition(partition.clone())
                    .build(),
            ),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::from_conf(
                aws_sdk_elasticloadbalancingv2::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .retry_config(retry.clone())
                    .retry_partition(partition.clone())
                    .build(),
            ),
            quotas: aws_sdk_servicequotas::Client::from_conf(
                aws_sdk_servicequotas::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .retry_config(retry.clone())
                    .retry_partition(partition.clone())
                    .build(),
            ),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&sdk)
                    .interceptor(counter)
                    .retry_config(retry.clone())
                    .retry_partition(partition.clone())
                    // An emulator on `127.0.0.1:port` has no `<bucket>.` host names.
                    .force_path_style(self.emulator())
                    .build(),
            ),
        })
    }

    /// Maps an SDK error of `operation` to a [`ProviderError`], with this provider's
    /// emulator-mode rules.
    pub(crate) fn err(&self, e: AwsError) -> ProviderError {
        e.into_provider(self.emulator())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_recognised_in_every_protocol() {
        assert!(is_throttling(429, None, None));
        assert!(is_throttling(
            400,
            Some("ThrottlingException:http://x"),
            None
        ));
        let ec2 = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>";
        assert!(is_throttling(400, None, Some(ec2)));
        let iam = b"<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>";
        assert!(is_throttling(400, None, Some(iam)));
        // A 503 may have done the work: not throttling.
        assert!(!is_throttling(503, None, Some(b"<Code>Throttling</Code>")));
        let dup = b"<Response><Errors><Error><Code>InvalidGroup.Duplicate</Code></Error></Errors></Response>";
        assert!(!is_throttling(400, None, Some(dup)));
        assert!(!is_throttling(400, Some("ResourceInUseException"), None));
    }
}
