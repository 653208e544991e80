//! `qhub-aws`: the Amazon Web Services provider (EKS, VPC, IAM, EFS through the AWS SDK for
//! Rust, no Terraform, no CloudFormation).
//!
//! [`AwsProvider`] implements [`qhub_core::provider::Provider`] for `provider: aws`:
//!
//! - [`desired`] turns an `amazon_web_services` section into resources: a VPC
//!   (10.10.0.0/16, DNS support and hostnames), two public subnets in two availability zones, an
//!   internet gateway, a route table with the default route, a security group, the IAM cluster
//!   and node roles with the managed policies EKS needs (and the cluster autoscaler's inline
//!   policy), the EKS cluster, one managed node group per config group, the EBS CSI add-on, and
//!   an encrypted EFS file system with a mount target per subnet.
//! - [`observe`] finds what exists by the ownership tags (EC2 `tag:` filters; list + describe
//!   for EKS, IAM and EFS) and reports it in the same shape.
//! - [`apply`] creates, updates and deletes one resource. A create first re-observes by tags and
//!   adopts what a lost response or an interrupted run left behind, so nothing is duplicated; a
//!   delete tolerates "not found". Deleting the cluster first deletes LoadBalancer Services
//!   through it, then sweeps the load balancers and security groups Kubernetes left
//!   ([`apply::sweep`]).
//! - [`preflight`] checks credentials, region, zones, Kubernetes version and instance types.
//!
//! **Emulator mode**: with `AWS_ENDPOINT_URL` set (moto, LocalStack), every client talks to that
//! endpoint; dummy credentials are used when the default chain has none, but only when the
//! endpoint is on loopback; operations the endpoint answers with an HTML 404 are skipped with a
//! warning (never on the real AWS endpoint).
//!
//! **Cluster access** ([`access`]): the engine's client reaches the EKS endpoint with the
//! cluster's CA and a presigned-STS bearer token minted for its requests (never older than five
//! minutes). In emulator mode the endpoint is not real and is never contacted; only a kubeconfig
//! override ([`KUBECONFIG_ENV`]) gives cluster access there.

pub mod access;
pub mod apply;
pub mod desired;
pub mod errors;
pub mod observe;
pub mod preflight;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
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
use qhub_core::kubernetes::auth::ClusterEndpoint;
use qhub_core::plan::{Change, Observed, Resource};
use qhub_core::provider::{
    ApplyContext, Capabilities, ClusterAccess, ClusterFacts, DeployLock, Facts, Ownership,
    Preflight, Provider, ProviderError,
};

pub use errors::AwsError;

/// The provider name this crate serves (`provider: aws` in qhub-config.yaml).
pub const PROVIDER: &str = "aws";

/// The AWS SDK's own variable for a custom endpoint (one endpoint for every service).
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL";

/// A kubeconfig file to reach the cluster with, overriding EKS's endpoint and token (see
/// [`AwsOptions::kubeconfig`]).
pub const KUBECONFIG_ENV: &str = "QHUB_KUBECONFIG";

/// The folder beside the config that holds the local deploy lock.
pub const LOCK_DIR: &str = ".qhub";

pub use qhub_core::cloud::endpoint::is_loopback;
pub use qhub_core::cloud::stats::ApiStats;

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
    region: String,
    options: AwsOptions,
    stats: Arc<ApiStats>,
    poll: Duration,
    clients: tokio::sync::OnceCell<Clients>,
}

/// What [`AwsProvider`] learns from its endpoint before planning ([`Provider::discover`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsFacts {
    /// The endpoint implements EKS add-ons (always against AWS; an emulator may not).
    pub addons: bool,
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

#[async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            infrastructure: true,
            // In emulator mode the cluster endpoint is not real: only an override reaches one.
            cluster_access: !self.emulator() || self.options.kubeconfig.is_some(),
            scale_to_zero: true,
            gpu: true,
        }
    }

    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError> {
        preflight::preflight(self, config).await
    }

    fn node_group_keys(&self) -> &'static [&'static str] {
        desired::NODE_GROUP_KEYS
    }

    async fn discover(&self, _config: &Config) -> Result<Facts, ProviderError> {
        Ok(Facts::new(AwsFacts {
            addons: self.probe_addons().await?,
        }))
    }

    fn desired(&self, config: &Config, facts: &Facts) -> Result<Vec<Resource>, ProviderError> {
        let addons = facts.get::<AwsFacts>().is_none_or(|f| f.addons);
        desired::desired(config, addons)
    }

    fn cluster_facts(&self, config: &Config, infra: &[Observed]) -> ClusterFacts {
        desired::cluster_facts(config, &self.region, infra)
    }

    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        observe::observe(self, ownership).await
    }

    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        apply::apply(self, change, ctx).await
    }

    async fn lock(&self, ownership: &Ownership) -> Result<Option<DeployLock>, ProviderError> {
        self.options
            .lock_dir
            .as_ref()
            .map(|dir| qhub_core::provider::deploy_lock(dir, ownership))
            .transpose()
    }

    async fn kubeconfig(&self, ownership: &Ownership) -> Result<String, ProviderError> {
        let name = ownership.prefix();
        let Some(cluster) = self.active_cluster(ownership).await? else {
            return Err(ProviderError::NoCluster(format!(
                "EKS cluster {name} does not exist; deploy first"
            )));
        };
        if let Some(path) = &self.options.kubeconfig {
            return access::read_override(path);
        }
        if self.emulator() {
            return Err(ProviderError::NotSupported(format!(
                "emulator mode: the endpoint of EKS cluster {name} is not a real API server; set {KUBECONFIG_ENV} to name a cluster"
            )));
        }
        Ok(access::kubeconfig(
            &name,
            &self.region,
            &cluster.endpoint,
            &cluster.ca_data,
        ))
    }

    async fn cluster_access(&self, ownership: &Ownership) -> Result<ClusterAccess, ProviderError> {
        let name = ownership.prefix();
        let Some(cluster) = self.active_cluster(ownership).await? else {
            return Err(ProviderError::NoCluster(format!(
                "EKS cluster {name} does not exist"
            )));
        };
        if let Some(path) = &self.options.kubeconfig {
            tracing::info!(kubeconfig = %path.display(), "cluster access through the kubeconfig override");
            return Ok(ClusterAccess::Kubeconfig {
                text: access::read_override(path)?,
                expires_in: None,
            });
        }
        if self.emulator() {
            return Err(ProviderError::NotSupported(format!(
                "emulator mode: the endpoint of EKS cluster {name} is not a real API server; set {KUBECONFIG_ENV} to reach a cluster"
            )));
        }
        let tokens = access::EksTokens::new(
            self.clients().await?.credentials.clone(),
            &self.region,
            &name,
        );
        let client = qhub_core::kubernetes::auth::client_with_token(
            &ClusterEndpoint {
                server: cluster.endpoint,
                ca_pem: cluster.ca_pem,
            },
            Arc::new(tokens),
        )?;
        Ok(ClusterAccess::Client(client))
    }
}

/// An active EKS cluster's API server.
#[derive(Debug)]
struct ActiveCluster {
    endpoint: String,
    ca_pem: Vec<u8>,
    /// The CA as EKS gives it (base64 of the PEM), for kubeconfigs.
    ca_data: String,
}

impl AwsProvider {
    /// The deployment's cluster when it exists, is ours (by tags) and is active; a cluster
    /// still being created is retryable.
    async fn active_cluster(
        &self,
        ownership: &Ownership,
    ) -> Result<Option<ActiveCluster>, ProviderError> {
        use base64::Engine as _;
        let name = ownership.prefix();
        let described = self
            .clients()
            .await?
            .eks
            .describe_cluster()
            .name(&name)
            .send()
            .await;
        let cluster = match described {
            Ok(d) => d.cluster,
            Err(e) => {
                let e = AwsError::from_sdk("DescribeCluster", e);
                if e.is_not_found() {
                    return Ok(None);
                }
                return Err(self.err(e));
            }
        };
        let Some(cluster) = cluster else {
            return Ok(None);
        };
        let tags: BTreeMap<String, String> = cluster
            .tags()
            .map(|t| t.clone().into_iter().collect())
            .unwrap_or_default();
        if !ownership.owns(&tags) {
            return Err(ProviderError::Fatal(format!(
                "EKS cluster {name} exists and is not owned by this deployment"
            )));
        }
        match cluster.status().map(|s| s.as_str()) {
            Some("ACTIVE" | "UPDATING") => {}
            // Creating, failed or being deleted: no API server to use now. A deploy waits for
            // the cluster in the infrastructure stage before it asks again; a destroy has no
            // object to delete through it.
            other => {
                return Err(ProviderError::NoCluster(format!(
                    "EKS cluster {name} is {}",
                    other.unwrap_or("in an unknown state")
                )));
            }
        }
        let endpoint = cluster.endpoint().unwrap_or_default().to_string();
        let ca_data = cluster
            .certificate_authority()
            .and_then(|c| c.data())
            .unwrap_or_default()
            .trim()
            .to_string();
        let ca_pem = Some(ca_data.as_str())
            .filter(|d| !d.is_empty())
            .map(|d| base64::engine::general_purpose::STANDARD.decode(d))
            .transpose()
            .map_err(|e| ProviderError::Fatal(format!("EKS cluster {name}: CA data: {e}")))?
            .unwrap_or_default();
        Ok(Some(ActiveCluster {
            endpoint,
            ca_pem,
            ca_data,
        }))
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
