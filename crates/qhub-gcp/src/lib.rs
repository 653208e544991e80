//! `qhub-gcp`: the Google Cloud provider — GKE through the official
//! `google-cloud-container-v1` client, no Terraform.
//!
//! [`GcpProvider`] implements [`qhub_core::provider::Provider`] for `provider: gcp`:
//!
//! - `discover` asks GKE which versions it offers (`getServerConfig`) and which one the
//!   cluster runs, and Compute Engine the region's zones and the zones offering each GPU the
//!   config asks for; [`desired`] turns the config into a regional GKE cluster with one
//!   autoscaling node pool per config group (`created_with` the cluster: one GKE operation),
//!   all in the serial group `cluster/<name>`, ownership in resource labels.
//! - [`observe`]: one `ListClusters` call (every location of the project) finds the cluster by
//!   its labels, with its pools, and one Compute `disks.aggregatedList` the disks its
//!   PersistentVolumeClaims left, each with its typed state (PROVISIONING is pending, ERROR
//!   failed: the plan repairs it).
//! - [`apply`]: each GKE `Operation` polled until DONE and its error surfaced; a mutation
//!   first waits for any operation already running on the cluster; creates adopt what a lost
//!   answer or an interrupted run left, deletes tolerate "not found"; the cluster's
//!   LoadBalancer Services are drained before it goes, and the Persistent Disks its claims
//!   left are deleted after it ([`apply::disk`]).
//! - [`preflight`]: project, region, zones, version in the channel, node pools, accelerators
//!   (machine series and the zones offering them), machine types, regional and global quotas
//!   against the groups' minimum and maximum ([`compute`] reads Compute Engine); every
//!   problem named by its config key.
//! - [`access`]: a Kubernetes client with fresh OAuth tokens; a kubeconfig with a
//!   `gke-gcloud-auth-plugin` exec stanza.
//! - [`lock`] is the deploy lock: a lease on a Cloud Storage object written with generation
//!   preconditions, so that two CI runners cannot deploy or destroy one deployment at once
//!   (`QHUB_DEPLOY_LOCK=local` keeps the local lock instead).
//!
//! **Reaching GKE** ([`client`]): `QHUB_GKE_ENDPOINT` overrides the endpoint (the GKE emulator
//! of the tests); credentials come from `GOOGLE_OAUTH_ACCESS_TOKEN`, `GOOGLE_CREDENTIALS` (a
//! service-account key, as QHub used: JSON text or a file path) or application default
//! credentials; anonymous credentials only for a loopback endpoint.

pub mod access;
pub mod apply;
pub mod client;
pub mod compute;
pub mod desired;
pub mod errors;
pub mod facts;
pub mod lock;
pub mod observe;
pub mod preflight;
pub mod provider;
pub(crate) mod rest;

use async_trait::async_trait;
use qhub_core::config::Config;
use qhub_core::kubernetes::auth::client_with_token;
use qhub_core::plan::{Action, Change, Observed, Resource};
use qhub_core::provider::{
    ApplyContext, Capabilities, ClusterAccess, ClusterFacts, Facts, Ownership, Preflight, Provider,
    ProviderError,
};

use crate::desired::ServerFacts;

pub use client::{ApiStats, CredentialSource, DEPLOY_LOCK_ENV, GcpOptions};
pub use errors::GcpError;
pub use provider::GcpProvider;

/// The provider name this crate serves (`provider: gcp` in qhub-config.yaml).
pub const PROVIDER: &str = "gcp";

#[async_trait]
impl Provider for GcpProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            infrastructure: true,
            // An emulator's cluster endpoints are not API servers: only an override reaches one.
            cluster_access: !self.emulator() || self.options.kubeconfig.is_some(),
            scale_to_zero: true,
            gpu: true,
        }
    }

    fn node_group_keys(&self) -> &'static [&'static str] {
        desired::NODE_GROUP_KEYS
    }

    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        preflight::check_config(config, &mut problems, &mut warnings);
        match self.server_facts().await {
            Ok(mut facts) => {
                preflight::check_version(config, &facts, &mut problems);
                match Box::pin(self.add_zones(config, &mut facts)).await? {
                    Some(region) => {
                        preflight::check_zones(config, &facts, &mut problems);
                        problems.extend(Box::pin(self.network_problems(config)).await?);
                        let capacity = Box::pin(self.capacity(config, region, &facts)).await?;
                        preflight::check_capacity(config, &capacity, &mut problems, &mut warnings);
                        if capacity.node_service_account.is_some() {
                            let policy = Box::pin(self.iam_policy()).await?;
                            preflight::check_node_service_account(
                                &self.target.project,
                                capacity.node_service_account.as_deref(),
                                policy.as_ref(),
                                &mut warnings,
                            );
                        }
                    }
                    None => problems.push(format!(
                        "google_cloud_platform.region: Compute Engine does not know region {} (see `gcloud compute regions list`)",
                        self.target.region
                    )),
                }
            }
            Err(e) => {
                match preflight::reachability_problem(&self.target.project, &self.target.region, &e)
                {
                    Some(p) => problems.push(p),
                    None => return Err(e.into()),
                }
            }
        }
        problems.dedup();
        preflight::finish(problems, warnings)
    }

    async fn discover(&self, config: &Config) -> Result<Facts, ProviderError> {
        let mut facts = Box::pin(self.server_facts()).await?;
        Box::pin(self.add_zones(config, &mut facts)).await?;
        facts.cluster_version = Box::pin(self.cluster(&Ownership::of(config)))
            .await?
            .map(|c| c.current_master_version);
        Ok(Facts::new(facts))
    }

    fn desired(&self, config: &Config, facts: &Facts) -> Result<Vec<Resource>, ProviderError> {
        Ok(desired::desired(config, facts.get::<ServerFacts>())?)
    }

    fn priced_shape(
        &self,
        _config: &Config,
        observed: &[Observed],
    ) -> Option<qhub_core::cost::Shape> {
        observe::priced_shape(observed)
    }

    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        let clusters = Box::pin(self.clusters()).await?;
        let owned = observe::owned(ownership, &clusters);
        let mut out: Vec<Observed> = owned
            .iter()
            .flat_map(|c| observe::observed(&self.target.project, c))
            .collect();
        // The disks of the cluster's claims, which may outlive it (one aggregated list).
        let mut locations: Vec<String> = owned.iter().map(|c| c.location.clone()).collect();
        locations.push(self.target.region.clone());
        let disks = Box::pin(
            self.compute()
                .await?
                .claim_disks(|labels| observe::owns_disk(ownership, &locations, labels)),
        )
        .await?;
        let name = desired::cluster_name(ownership);
        let cluster = owned.iter().find(|c| c.name == name).copied();
        out.extend(observe::claim_disks(cluster, &disks));
        Ok(out)
    }

    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        if change.id.kind == desired::DISK {
            return apply::disk::apply(self.compute().await?, change).await;
        }
        let api = self.api().await?;
        let removes_cluster = change.id.kind == desired::CLUSTER
            && matches!(change.action, Action::Delete | Action::Replace);
        if removes_cluster {
            Box::pin(self.drain(&ctx.ownership)).await?;
        }
        // Boxed (and each request a task of its own, see `Api::call`): the client library's
        // futures are large, and a debug build's frames nested this deep overflow a 2 MiB stack.
        Ok(Box::pin(apply::apply(api, &self.target, change, ctx)).await?)
    }

    fn cluster_facts(&self, config: &Config, infra: &[Observed]) -> ClusterFacts {
        let _ = infra;
        facts::cluster_facts(config)
    }

    async fn lock_store(
        &self,
        ownership: &Ownership,
    ) -> Result<Option<std::sync::Arc<dyn qhub_core::cloud::lock::LockStore>>, ProviderError> {
        if !self.options.gcs_lock {
            return Ok(None);
        }
        let store = self.gcs_lock_store(ownership).await?;
        Ok(Some(std::sync::Arc::new(store)))
    }

    fn lock_dir(&self) -> Option<std::path::PathBuf> {
        self.options.lock_dir.clone()
    }

    async fn kubeconfig(&self, ownership: &Ownership) -> Result<String, ProviderError> {
        let (facts, name) = Box::pin(self.running_cluster(ownership)).await?;
        Ok(access::exec_kubeconfig(
            &self.target.project,
            &self.target.region,
            &name,
            &facts,
        ))
    }

    async fn cluster_access(&self, ownership: &Ownership) -> Result<ClusterAccess, ProviderError> {
        let (facts, name) = Box::pin(self.running_cluster(ownership)).await?;
        if let Some(path) = &self.options.kubeconfig {
            tracing::info!(kubeconfig = %path.display(), "cluster access through the kubeconfig override");
            let text = qhub_core::provider::local::read_kubeconfig_override(path)?;
            return Ok(ClusterAccess::Kubeconfig {
                text,
                expires_in: None,
            });
        }
        if self.emulator() {
            return Err(ProviderError::NotSupported(format!(
                "emulator mode: the endpoint of GKE cluster {name} is not a real API server; set {} to reach a cluster",
                client::KUBECONFIG_ENV
            )));
        }
        let api = self.api().await?;
        let tokens = api.auth.tokens.clone().ok_or_else(|| {
            ProviderError::Unauthorized("anonymous credentials cannot reach a GKE cluster".into())
        })?;
        let client = client_with_token(
            &access::endpoint(&facts)?,
            std::sync::Arc::new(access::GkeTokens(tokens)),
        )?;
        Ok(ClusterAccess::Client(client))
    }
}

impl GcpProvider {
    /// Deletes the cluster's LoadBalancer Services (and so GKE's load balancers) before the
    /// cluster goes. Skipped when the cluster is not usable (an ERROR cluster has no reachable
    /// API; GKE then cleans what it can) or cannot be reached (emulator without a kubeconfig).
    async fn drain(&self, ownership: &Ownership) -> Result<(), ProviderError> {
        qhub_core::cloud::drain::drain_through(
            self,
            ownership,
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(600),
        )
        .await
        .map(drop)
    }

    /// The deployment's cluster when it is usable (RUNNING), with its name; `NoCluster`
    /// otherwise (absent, provisioning, failed, being deleted).
    async fn running_cluster(
        &self,
        ownership: &Ownership,
    ) -> Result<(observe::ClusterFacts, String), ProviderError> {
        let name = desired::cluster_name(ownership);
        let Some(c) = self.cluster(ownership).await? else {
            return Err(ProviderError::NoCluster(format!(
                "GKE cluster {name} does not exist"
            )));
        };
        let observed = observe::observed(&self.target.project, &c);
        let facts: observe::ClusterFacts = observed
            .first()
            .and_then(|o| o.payload.clone())
            .and_then(|p| serde_json::from_value(p).ok())
            .ok_or_else(|| ProviderError::Fatal(format!("GKE cluster {name}: unreadable")))?;
        if facts.status != "RUNNING" && facts.status != "RECONCILING" {
            return Err(ProviderError::NoCluster(format!(
                "GKE cluster {name} is {} and not usable yet",
                facts.status
            )));
        }
        Ok((facts, name))
    }
}
