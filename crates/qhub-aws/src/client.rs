//! How the provider reaches AWS: its options, the SDK clients (built on first use), and the
//! SDK interceptor that counts calls and decides which calls the SDK may retry.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;
use qhub_core::config::{Config, ProviderKind};
use qhub_core::provider::ProviderError;

use crate::{ApiStats, AwsError, ENDPOINT_ENV, KUBECONFIG_ENV, LOCK_DIR, desired};

/// The SDK interceptor of every client: it feeds [`ApiStats`] right before each attempt is sent,
/// and sets the retry policy of each operation before it starts.
///
/// **Who retries what.** Reads (`Describe*`, `List*`, `Get*`) are retried by the SDK's standard
/// retry (3 attempts: throttling, 5xx and transient network errors). A mutating call is retried
/// by the SDK only when its attempt was **throttled**: the service refused it before doing
/// anything, so sending it again is safe. After any other failure (5xx, timeout, a lost answer)
/// the service may have done the work; an SDK-level retry of a create with no idempotency token
/// (`CreateVpc`) would then make a duplicate. That failure goes back to the engine as
/// [`ProviderError::Retryable`], and the engine's retry re-runs the whole step, which first
/// re-observes by the ownership tags and adopts what the lost call made. Each failure thus has
/// exactly one retry loop, never two stacked.
#[derive(Debug, Clone)]
struct ApiPolicy(Arc<ApiStats>);

impl ApiPolicy {
    fn operation(cfg: &ConfigBag) -> (String, String) {
        cfg.load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("?".into(), "?".into()))
    }
}

impl Intercept for ApiPolicy {
    fn name(&self) -> &'static str {
        "QhubApiPolicy"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (_, operation) = Self::operation(cfg);
        if ApiStats::is_read_only(&operation) {
            return Ok(());
        }
        let throttled = context.response().is_some_and(|r| {
            is_throttling(
                r.status().as_u16(),
                r.headers().get("x-amzn-errortype"),
                r.body().bytes(),
            )
        });
        if !throttled {
            // The standard retry strategy reads its RetryConfig from the bag when it decides
            // whether to retry, right after this hook.
            cfg.interceptor_state()
                .store_put(RetryConfig::standard().with_max_attempts(1));
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = Self::operation(cfg);
        self.0.record(
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
    /// ([`KUBECONFIG_ENV`]). In emulator mode this is the only cluster access: the endpoint
    /// moto returns is not a real API server and is never contacted.
    pub kubeconfig: Option<PathBuf>,
    /// Where the local deploy lock lives ([`LOCK_DIR`] beside the config, from
    /// [`AwsProvider::from_env`]); `None`: no lock. It keeps two qhub commands on one machine
    /// from deploying the same deployment at once; there is no cloud-side lock yet.
    pub lock_dir: Option<PathBuf>,
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
            .field("lock_dir", &self.lock_dir)
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
                kubeconfig: var(KUBECONFIG_ENV).map(|k| dir.join(k)),
                lock_dir: Some(dir.join(LOCK_DIR)),
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
    /// mode, from an HTML 404).
    pub(crate) fn without_addons(&self, operation: &str) {
        tracing::warn!(
            operation,
            "the custom endpoint does not implement EKS add-ons; the EBS CSI add-on is skipped"
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
        let counter = ApiPolicy(self.stats.clone());
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| ProviderError::Unauthorized("no AWS credentials provider".into()))?;
        Ok(Clients {
            credentials,
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            eks: aws_sdk_eks::Client::from_conf(
                aws_sdk_eks::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            efs: aws_sdk_efs::Client::from_conf(
                aws_sdk_efs::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            sts: aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            elb: aws_sdk_elasticloadbalancing::Client::from_conf(
                aws_sdk_elasticloadbalancing::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::from_conf(
                aws_sdk_elasticloadbalancingv2::config::Builder::from(&sdk)
                    .interceptor(counter)
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
