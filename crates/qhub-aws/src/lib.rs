//! `qhub-aws`: the Amazon Web Services provider (EKS, VPC, IAM, EFS through the AWS SDK for
//! Rust, no Terraform, no CloudFormation).
//!
//! [`AwsProvider`] implements [`qhub_core::provider::Provider`] for `provider: aws`:
//!
//! - [`desired`] turns an `amazon_web_services` section into resources: a VPC
//!   (10.10.0.0/16, DNS support and hostnames), two public subnets in two availability zones, an
//!   internet gateway, a route table with the default route, a security group, the IAM cluster
//!   and node roles with the managed policies EKS needs, the EKS cluster, one managed node group
//!   per config group, and an encrypted EFS file system with a mount target per subnet.
//! - [`observe`] finds what exists by the ownership tags (EC2 `tag:` filters; list + describe
//!   for EKS, IAM and EFS) and reports it in the same shape.
//! - [`apply`] creates, updates and deletes one resource. A create first re-observes by tags and
//!   adopts what a lost response or an interrupted run left behind, so nothing is duplicated; a
//!   delete tolerates "not found".
//!
//! **Emulator mode**: with `AWS_ENDPOINT_URL` set (moto, LocalStack), every client talks to that
//! endpoint; dummy credentials are used when the default chain has none, but only when the
//! endpoint is on loopback; operations the endpoint answers with an HTML 404 are skipped with a
//! warning (never on the real AWS endpoint).
//!
//! **Not yet**: cluster access. [`Capabilities::cluster_access`] is `false`: the kubeconfig
//! with a fresh presigned-STS EKS token (REFERENCE.md §3) comes next, and with it the
//! Kubernetes stage and the destroy-time sweep of LoadBalancer services. The EBS CSI add-on,
//! the cluster-autoscaler IAM policy and the autoscaling-group node-template tags (EKS does not
//! propagate node group tags to the ASG, aws/containers-roadmap#608) are also still to come; the
//! node-template tags are put on the node group for now.

pub mod apply;
pub mod desired;
pub mod errors;
pub mod observe;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;
use qhub_core::config::{Config, ProviderKind};
use qhub_core::engine::plan::{Change, Observed, Resource};
use qhub_core::provider::{
    ApplyContext, Capabilities, Ownership, Preflight, Provider, ProviderError,
};

pub use errors::AwsError;

/// The provider name this crate serves (`provider: aws` in qhub-config.yaml).
pub const PROVIDER: &str = "aws";

/// The AWS SDK's own variable for a custom endpoint (one endpoint for every service).
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL";

/// Counts of the API calls a provider's SDK clients sent (every attempt, including the SDK's
/// own retries), shared between providers when a test wants a total.
#[derive(Debug, Default)]
pub struct ApiStats {
    calls: AtomicU64,
    mutating: AtomicU64,
    by_operation: Mutex<BTreeMap<String, u64>>,
}

impl ApiStats {
    /// Every request sent.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Requests whose operation changes something (anything but `Describe*`, `List*`, `Get*`).
    pub fn mutating(&self) -> u64 {
        self.mutating.load(Ordering::SeqCst)
    }

    /// Requests per `Service.Operation`.
    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        self.by_operation
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// True for an operation name that does not change anything.
    pub fn is_read_only(operation: &str) -> bool {
        ["Describe", "List", "Get"]
            .iter()
            .any(|p| operation.starts_with(p))
    }

    fn record(&self, service: &str, operation: &str) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !Self::is_read_only(operation) {
            self.mutating.fetch_add(1, Ordering::SeqCst);
        }
        if let Ok(mut m) = self.by_operation.lock() {
            *m.entry(format!("{service}.{operation}")).or_insert(0) += 1;
        }
    }
}

/// The SDK interceptor of every client: it feeds [`ApiStats`] right before each attempt is sent,
/// and sets the retry policy of each operation before it starts.
///
/// **Who retries what.** Reads (`Describe*`, `List*`, `Get*`) are retried by the SDK's standard
/// retry (3 attempts, throttling, 5xx and transient network errors). A mutating call is sent
/// **once** by the SDK: if its answer is lost (a 503 after the service did the work), an
/// SDK-level retry of a create with no idempotency token (`CreateVpc`) would make a duplicate.
/// Its failure goes back to the engine as [`ProviderError::Retryable`], and the engine's retry
/// re-runs the whole step, which first re-observes by the ownership tags and adopts what the lost
/// call made. Each call thus has exactly one retry loop, never two stacked.
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

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (_, operation) = Self::operation(cfg);
        if !ApiStats::is_read_only(&operation) {
            // The standard retry strategy reads its RetryConfig from the bag at every attempt.
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
        self.0.record(&service, &operation);
        Ok(())
    }
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
}

/// The AWS provider.
pub struct AwsProvider {
    region: String,
    options: AwsOptions,
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

/// True when `endpoint`'s host is a loopback address (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback(endpoint: &str) -> bool {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl AwsProvider {
    /// A provider for `config` (`provider: aws`) with explicit options.
    pub fn new(config: &Config, options: AwsOptions) -> Result<Self, ProviderError> {
        if config.provider != ProviderKind::Aws {
            return Err(ProviderError::Failed(format!(
                "the aws provider serves `provider: aws`, not `{}`",
                config.provider
            )));
        }
        let section = config.amazon_web_services.as_ref().ok_or_else(|| {
            ProviderError::Failed("the config has no `amazon_web_services` section".into())
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
    /// chain, the config's region, and `AWS_ENDPOINT_URL` when set (emulator mode). `dir` (the
    /// config's directory) is not used yet.
    pub fn from_env(config: &Config, dir: &Path) -> Result<Self, ProviderError> {
        let _ = dir;
        let endpoint = std::env::var(ENDPOINT_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty());
        Self::new(
            config,
            AwsOptions {
                endpoint,
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
            match &self.options.endpoint {
                // Anonymous use is for emulators on this machine only (DESIGN.md §1).
                Some(e) if is_loopback(e) => {
                    tracing::warn!(endpoint = %e, "no AWS credentials found; using dummy credentials for the loopback endpoint");
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
                _ => {
                    return Err(ProviderError::Auth(
                        "no AWS credentials found (environment, shared config, SSO, instance role); configure them as for the AWS CLI".into(),
                    ));
                }
            }
        }
        let counter = ApiPolicy(self.stats.clone());
        Ok(Clients {
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

#[async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            infrastructure: true,
            // The presigned-STS EKS token and the kubeconfig come next.
            cluster_access: false,
            scale_to_zero: true,
            gpu: true,
        }
    }

    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError> {
        let c = self.clients().await?;
        c.sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| self.err(AwsError::from_sdk("GetCallerIdentity", e)))?;
        let zones = apply::availability_zones(self).await?;
        let mut warnings = Vec::new();
        if let Some(wanted) = config
            .amazon_web_services
            .as_ref()
            .and_then(|s| s.availability_zones.as_ref())
        {
            for z in wanted {
                if !zones.contains(z) {
                    return Err(ProviderError::Failed(format!(
                        "availability zone {z} is not available in {} (available: {})",
                        self.region,
                        zones.join(", ")
                    )));
                }
            }
        } else if zones.len() < 2 {
            return Err(ProviderError::Failed(format!(
                "region {} offers {} availability zone(s); EKS needs subnets in two",
                self.region,
                zones.len()
            )));
        }
        if self.emulator() {
            warnings.push(
                "emulator mode: Kubernetes version and instance type checks are skipped".into(),
            );
        }
        Ok(Preflight { warnings })
    }

    fn desired(&self, config: &Config) -> Result<Vec<Resource>, ProviderError> {
        desired::desired(config)
    }

    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        observe::observe(self, ownership).await
    }

    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        apply::apply(self, change, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:5000"));
        assert!(is_loopback("http://localhost:4566/"));
        assert!(is_loopback("http://[::1]:5000"));
        assert!(!is_loopback("https://ec2.us-west-2.amazonaws.com"));
        assert!(!is_loopback("http://10.0.0.1:5000"));
        assert!(!is_loopback("http://127.0.0.1.example.com:80"));
    }

    #[test]
    fn reads_are_not_mutations() {
        assert!(ApiStats::is_read_only("DescribeVpcs"));
        assert!(ApiStats::is_read_only("ListRoles"));
        assert!(!ApiStats::is_read_only("CreateVpc"));
        assert!(!ApiStats::is_read_only("AttachRolePolicy"));
    }
}
