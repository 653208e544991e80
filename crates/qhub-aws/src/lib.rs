//! `qhub-aws`: the Amazon Web Services provider (EKS, VPC, IAM, EFS through the AWS SDK for
//! Rust, no Terraform, no CloudFormation).
//!
//! [`AwsProvider`] implements [`qhub_core::provider::Provider`] for `provider: aws`:
//!
//! - [`desired`] turns an `amazon_web_services` section into resources: a VPC
//!   (10.10.0.0/16, DNS support and hostnames), two public subnets in two availability zones, an
//!   internet gateway, a route table with the default route, a security group, the IAM cluster
//!   and node roles with the managed policies EKS needs, the EKS cluster, one managed node
//!   group per config group, the `eks-pod-identity-agent` and EBS CSI add-ons, EKS Pod Identity
//!   for the EBS CSI controller and the cluster autoscaler (a role each, trusted by
//!   `pods.eks.amazonaws.com`, and an association per service account: AL2023 nodes keep the
//!   node role from pods), and an encrypted EFS file system with a mount target per subnet.
//! - [`observe`] finds what exists by the ownership tags (EC2 `tag:` filters; list + describe
//!   for EKS, IAM and EFS) and reports it in the same shape.
//! - [`apply`] creates, updates and deletes one resource. A create first re-observes by tags and
//!   adopts what a lost response or an interrupted run left behind, so nothing is duplicated; a
//!   delete tolerates "not found". Deleting the cluster first deletes LoadBalancer Services
//!   through it, then sweeps the load balancers and security groups Kubernetes left
//!   ([`apply::sweep`]).
//! - [`preflight`] checks credentials, region, zones, Kubernetes version, instance types, the
//!   AMI type each node group gets, and the account's EC2 On-Demand vCPU quotas.
//! - [`versions`] is EKS's version calendar: `plan`, `status` and `deploy` warn when a cluster
//!   is within 60 days of leaving standard support.
//! - [`lock`] is the deploy lock: a lease on an S3 object written with conditional writes, so
//!   that two CI runners cannot deploy or destroy one deployment at once.
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
pub mod client;
pub mod desired;
pub mod errors;
pub mod facts;
pub mod lock;
pub mod observe;
pub mod partition;
pub mod preflight;
mod sent;
pub mod spec;
pub mod versions;

use std::sync::Arc;

use async_trait::async_trait;
use qhub_core::cloud::lock::LockStore;
use qhub_core::config::Config;
use qhub_core::plan::{Change, Observed, Resource};
use qhub_core::provider::{
    ApplyContext, Capabilities, ClusterAccess, ClusterFacts, Facts, Ownership, Preflight, Provider,
    ProviderError,
};

pub use client::{AwsOptions, AwsProvider};
pub use errors::AwsError;

/// The provider name this crate serves (`provider: aws` in qhub-config.yaml).
pub const PROVIDER: &str = "aws";

/// The AWS SDK's own variable for a custom endpoint (one endpoint for every service).
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL";

/// A kubeconfig file to reach the cluster with, overriding EKS's endpoint and token (see
/// [`AwsOptions::kubeconfig`]); the folder beside the config that holds the local deploy lock.
/// Both are qhub-core's, the same for every provider.
pub use qhub_core::provider::{KUBECONFIG_ENV, LOCK_DIR};

/// `local` makes [`AwsProvider::from_env`] take the local deploy lock ([`LOCK_DIR`]) instead of
/// the S3 one ([`lock`]), for accounts where qhub may not use S3. Two CI runners are then kept
/// apart only by the Kubernetes stage's Lease.
pub use qhub_core::cloud::lock::DEPLOY_LOCK_ENV;

pub use qhub_core::cloud::endpoint::is_loopback;
pub use qhub_core::cloud::stats::ApiStats;

/// What [`AwsProvider`] learns from its endpoint before planning ([`Provider::discover`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsFacts {
    /// The endpoint implements EKS add-ons, and with them Pod Identity (always against AWS,
    /// where both exist in every region qhub deploys to; an emulator may lack them: bare moto,
    /// which the tests' rules layer completes).
    pub addons: bool,
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
            cluster_access: !self.emulator()
                || self.options.kubeconfig.is_some()
                || self.options.cluster_endpoint.is_some(),
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
        facts::cluster_facts(config, &self.region, infra)
    }

    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        observe::observe(self, ownership).await
    }

    fn priced_shape(
        &self,
        config: &Config,
        observed: &[Observed],
    ) -> Option<qhub_core::cost::Shape> {
        observe::priced_shape(config, observed)
    }

    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        apply::apply(self, change, ctx).await
    }

    async fn lock_store(
        &self,
        ownership: &Ownership,
    ) -> Result<Option<Arc<dyn LockStore>>, ProviderError> {
        if !self.options.s3_lock {
            return Ok(None);
        }
        let account = self.account().await?.to_string();
        let s3 = self.clients().await?.s3.clone();
        let store = lock::S3LockStore::new(
            s3,
            &account,
            &self.region,
            &ownership.prefix(),
            self.emulator(),
        );
        Ok(Some(Arc::new(store)))
    }

    fn lock_dir(&self) -> Option<std::path::PathBuf> {
        self.options.lock_dir.clone()
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
        let Some(endpoint) = self.endpoint_of(&name, &cluster)? else {
            return Err(ProviderError::NotSupported(format!(
                "emulator mode: the endpoint of EKS cluster {name} is not a real API server; set {KUBECONFIG_ENV} to name a cluster"
            )));
        };
        // A kubeconfig this identity cannot use would fail at the user's first kubectl with
        // `Unauthorized`: say what to do now instead.
        let client = self.token_client(&name, &endpoint).await?;
        self.check_access(&client, &name).await?;
        Ok(access::kubeconfig(
            &name,
            &self.region,
            &endpoint.server,
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
        let Some(endpoint) = self.endpoint_of(&name, &cluster)? else {
            return Err(ProviderError::NotSupported(format!(
                "emulator mode: the endpoint of EKS cluster {name} is not a real API server; set {KUBECONFIG_ENV} to reach a cluster"
            )));
        };
        let client = self.token_client(&name, &endpoint).await?;
        // Before the Kubernetes stage plans anything: an identity without an access entry
        // gets the fix, not `Unauthorized` half-way through.
        self.check_access(&client, &name).await?;
        Ok(ClusterAccess::Client(client))
    }
}

/// The config `qhub init aws` writes for project `unit`, for the unit tests.
#[cfg(test)]
pub(crate) fn unit_config() -> qhub_core::config::Config {
    use qhub_core::config::CiKind;
    use qhub_core::config::init::{InitOptions, render};
    use qhub_core::config::provider::ProviderKind;
    render(&InitOptions {
        ci: CiKind::None,
        ..InitOptions::new(
            ProviderKind::Aws,
            "unit",
            "unit.example.com",
            "0123456789abcdef",
        )
    })
    .expect("the init config renders")
}
