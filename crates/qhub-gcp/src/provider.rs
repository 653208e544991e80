//! [`GcpProvider`]: the provider's state (none of the deployment's: that lives in GKE) and the
//! reads the trait methods share.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use google_cloud_container_v1::model::Cluster;
use qhub_core::config::{Config, ProviderKind};
use qhub_core::provider::{Ownership, ProviderError};

use crate::apply::Target;
use crate::client::{self, Api, ApiStats, CredentialSource, GcpOptions};
use crate::desired::{self, ServerFacts};
use crate::errors::{Class, GcpError, Result};

/// The folder beside the config that holds the local deploy lock (qhub-core's, the same for
/// every provider).
pub use qhub_core::provider::LOCK_DIR;

/// The GKE provider for one config's project and region.
pub struct GcpProvider {
    pub(crate) target: Target,
    pub(crate) endpoint: String,
    pub(crate) options: GcpOptions,
    stats: Arc<ApiStats>,
    poll: Duration,
    api: tokio::sync::OnceCell<Api>,
    compute: tokio::sync::OnceCell<crate::compute::ComputeApi>,
}

impl fmt::Debug for GcpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpProvider")
            .field("project", &self.target.project)
            .field("region", &self.target.region)
            .field("endpoint", &self.endpoint)
            .field("options", &self.options)
            .finish()
    }
}

impl GcpProvider {
    /// A provider for `config` (`provider: gcp`).
    pub fn new(config: &Config, options: GcpOptions) -> Result<Self, ProviderError> {
        if config.provider != ProviderKind::Gcp {
            return Err(ProviderError::Fatal(format!(
                "the GCP provider serves `provider: gcp`, not `{}`",
                config.provider
            )));
        }
        let section = desired::section(config)?;
        let endpoint = options
            .endpoint
            .clone()
            .unwrap_or_else(|| client::DEFAULT_ENDPOINT.to_string());
        if matches!(options.credentials, CredentialSource::Anonymous)
            && !client::is_loopback(&endpoint)
        {
            return Err(GcpError::Credentials(format!(
                "anonymous credentials are only allowed for a loopback endpoint, not {endpoint}"
            ))
            .into());
        }
        let poll = options
            .poll_interval
            .unwrap_or(if client::is_loopback(&endpoint) {
                Duration::from_millis(10)
            } else {
                // GKE operations take minutes; polling every few seconds costs nothing.
                Duration::from_secs(5)
            });
        Ok(Self {
            target: Target::new(&section.project, &section.region),
            stats: options.stats.clone().unwrap_or_default(),
            endpoint,
            options,
            poll,
            api: tokio::sync::OnceCell::new(),
            compute: tokio::sync::OnceCell::new(),
        })
    }

    /// The provider for a config in `dir`, reached as the environment says
    /// ([`client::ENDPOINT_ENV`], [`client::CREDENTIALS_ENV`], [`client::KUBECONFIG_ENV`],
    /// [`client::STORAGE_ENDPOINT_ENV`]); the deploy lock in Cloud Storage unless
    /// [`client::DEPLOY_LOCK_ENV`] is `local`.
    pub fn from_env(config: &Config, dir: &Path) -> Result<Self, ProviderError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self::new(
            config,
            GcpOptions {
                endpoint: var(client::ENDPOINT_ENV),
                kubeconfig: qhub_core::provider::local::kubeconfig_override(dir),
                lock_dir: Some(qhub_core::provider::local::lock_dir(dir)),
                gcs_lock: qhub_core::cloud::lock::cloud_lock_from_env(),
                storage_endpoint: var(client::STORAGE_ENDPOINT_ENV),
                compute_endpoint: var(crate::compute::ENDPOINT_ENV),
                resource_manager_endpoint: var(crate::compute::RESOURCE_MANAGER_ENDPOINT_ENV),
                ..GcpOptions::default()
            },
        )
    }

    /// The API call counters.
    pub fn stats(&self) -> Arc<ApiStats> {
        self.stats.clone()
    }

    /// True when the endpoint is an emulator on loopback (its clusters' endpoints are not
    /// real API servers).
    pub fn emulator(&self) -> bool {
        client::is_loopback(&self.endpoint)
    }

    /// Where the deploy lock's Cloud Storage calls go: the override, else the GKE endpoint
    /// when it is an emulator on loopback, else Cloud Storage itself.
    pub fn storage_endpoint(&self) -> String {
        match &self.options.storage_endpoint {
            Some(e) => e.clone(),
            None if self.emulator() => self.endpoint.clone(),
            None => crate::lock::DEFAULT_ENDPOINT.to_string(),
        }
    }

    /// Where Compute Engine calls go: the override, else the GKE endpoint when it is an
    /// emulator on loopback, else Compute Engine itself.
    pub fn compute_endpoint(&self) -> String {
        match &self.options.compute_endpoint {
            Some(e) => e.clone(),
            None if self.emulator() => self.endpoint.clone(),
            None => crate::compute::DEFAULT_ENDPOINT.to_string(),
        }
    }

    /// The Compute Engine client of the config's project, built on first use.
    pub(crate) async fn compute(&self) -> Result<&crate::compute::ComputeApi> {
        let api = self.api().await?;
        self.compute
            .get_or_try_init(|| async {
                let rest = crate::rest::GoogleRest::new(
                    "Compute Engine",
                    &self.compute_endpoint(),
                    api.auth.tokens.clone(),
                    self.stats.clone(),
                    api.policy,
                )?;
                Ok(crate::compute::ComputeApi::new(rest, &self.target.project))
            })
            .await
    }

    /// The deploy lock's store for `ownership`'s deployment ([`crate::lock`]).
    pub(crate) async fn gcs_lock_store(
        &self,
        ownership: &Ownership,
    ) -> Result<crate::lock::GcsLockStore> {
        let api = self.api().await?;
        crate::lock::GcsLockStore::new(
            &self.storage_endpoint(),
            api.auth.tokens.clone(),
            self.stats.clone(),
            api.policy,
            &self.target.project,
            &self.target.region,
            &ownership.prefix(),
        )
    }

    /// The client, built on first use.
    pub(crate) async fn api(&self) -> Result<&Api> {
        self.api
            .get_or_try_init(|| {
                client::connect(
                    &self.endpoint,
                    &self.options.credentials,
                    self.stats.clone(),
                    self.poll,
                    self.options.retry.unwrap_or_default(),
                )
            })
            .await
    }

    /// What GKE offers in the region (`getServerConfig`).
    pub async fn server_facts(&self) -> Result<ServerFacts> {
        let api = self.api().await?;
        let location = self.target.location();
        let sc = api
            .read("GetServerConfig", &location, || {
                api.client.get_server_config().set_name(&location).send()
            })
            .await?;
        let facts = ServerFacts {
            default_version: sc.default_cluster_version.clone(),
            master_versions: sc.valid_master_versions.clone(),
            channels: sc
                .channels
                .iter()
                .filter_map(|c| {
                    c.channel
                        .name()
                        .map(|n| (n.to_string(), c.valid_versions.clone()))
                })
                .collect(),
            cluster_version: None,
            ..ServerFacts::default()
        };
        Ok(facts)
    }

    /// Adds what Compute Engine says of the config's region to `facts`: its zones
    /// (`regions.get`) and, when a group asks for GPUs, the zones offering each
    /// (`acceleratorTypes.aggregatedList`). Returns the region (with its quotas); `None` when
    /// Compute does not know it. One call, two with GPU groups.
    pub(crate) async fn add_zones(
        &self,
        config: &Config,
        facts: &mut ServerFacts,
    ) -> Result<Option<crate::compute::Region>, ProviderError> {
        let compute = self.compute().await?;
        let Some(region) = compute.region(&self.target.region).await? else {
            return Ok(None);
        };
        facts.zones.clone_from(&region.zones);
        let wanted: std::collections::BTreeSet<&str> = desired::section(config)?
            .node_groups
            .values()
            .flat_map(|g| g.guest_accelerators.iter().map(|a| a.name.as_str()))
            .collect();
        if !wanted.is_empty() {
            let mut offered = compute.accelerator_zones(&region.zones).await?;
            offered.retain(|k, _| wanted.contains(k.as_str()));
            facts.accelerator_zones = Some(offered);
        }
        Ok(Some(region))
    }

    /// What the capacity checks need beyond `region` ([`crate::preflight::Capacity`]): each
    /// machine type's vCPUs (one `machineTypes.get` per type), the global quotas and the
    /// nodes' service account (one `projects.get`), and whether the cluster exists (one
    /// `GetCluster`).
    pub(crate) async fn capacity(
        &self,
        config: &Config,
        region: crate::compute::Region,
        facts: &ServerFacts,
    ) -> Result<crate::preflight::Capacity, ProviderError> {
        let s = desired::section(config)?;
        let compute = self.compute().await?;
        let mut cpus = std::collections::BTreeMap::new();
        for group in s.node_groups.values() {
            if cpus.contains_key(&group.instance) || group.instance.trim().is_empty() {
                continue;
            }
            let zone = desired::candidate_zones(s, group, Some(facts))
                .and_then(|z| z.first().cloned())
                .or_else(|| region.zones.first().cloned());
            let Some(zone) = zone else { continue };
            let n = compute.guest_cpus(&zone, &group.instance).await?;
            cpus.insert(group.instance.clone(), (zone, n));
        }
        let (global, node_service_account) = compute.project().await?;
        let cluster_exists = self.cluster(&Ownership::of(config)).await?.is_some();
        Ok(crate::preflight::Capacity {
            node_service_account,
            region,
            global,
            cpus,
            cluster_exists,
        })
    }

    /// The network checks ([`crate::preflight::network_problems`]): one `networks.get`, and a
    /// `subnetworks.get` when the config names a subnetwork.
    pub(crate) async fn network_problems(
        &self,
        config: &Config,
    ) -> Result<Vec<String>, ProviderError> {
        let s = desired::section(config)?;
        let compute = self.compute().await?;
        let (net_project, network) =
            crate::preflight::reference(&s.project, s.network.as_deref(), "default");
        let exists = compute.network_exists(&net_project, &network).await?;
        let subnetwork = match s.subnetwork.as_deref().filter(|n| !n.is_empty()) {
            Some(sub) => {
                let (sub_project, sub) = crate::preflight::reference(&net_project, Some(sub), "");
                let of = compute
                    .subnetwork_network(&sub_project, &self.target.region, &sub)
                    .await?;
                Some((sub, of))
            }
            None => None,
        };
        Ok(crate::preflight::network_problems(
            config,
            (&net_project, &network, exists),
            subnetwork
                .as_ref()
                .map(|(n, of)| (n.as_str(), of.as_deref())),
        ))
    }

    /// Where Resource Manager calls go: the override, else the GKE endpoint when it is an
    /// emulator on loopback, else Resource Manager itself.
    pub fn resource_manager_endpoint(&self) -> String {
        match &self.options.resource_manager_endpoint {
            Some(e) => e.clone(),
            None if self.emulator() => self.endpoint.clone(),
            None => crate::compute::RESOURCE_MANAGER_ENDPOINT.to_string(),
        }
    }

    /// The project's IAM policy (Resource Manager `projects.getIamPolicy`, one call); `None`
    /// when the caller may not read it (403).
    pub(crate) async fn iam_policy(&self) -> Result<Option<serde_json::Value>, ProviderError> {
        let api = self.api().await?;
        let rest = crate::rest::GoogleRest::new(
            "Resource Manager",
            &self.resource_manager_endpoint(),
            api.auth.tokens.clone(),
            self.stats.clone(),
            api.policy,
        )?;
        let url = format!(
            "{}/v1/projects/{}:getIamPolicy",
            rest.endpoint(),
            crate::rest::encode(&self.target.project)
        );
        let reply = rest
            .send(
                "resourcemanager.projects.getIamPolicy",
                &format!("projects/{}", self.target.project),
                reqwest::Method::POST,
                &url,
                &[],
                Some(("application/json", b"{}".to_vec())),
                &[403],
            )
            .await?;
        Ok((reply.status.as_u16() != 403).then(|| reply.json()))
    }

    /// Every cluster in the project's region.
    /// Every cluster of the project, in every location (`locations/-`): a cluster left in a
    /// region the config no longer names is still ours to delete.
    pub(crate) async fn clusters(&self) -> Result<Vec<Cluster>> {
        let api = self.api().await?;
        let location = format!("projects/{}/locations/-", self.target.project);
        let r = api
            .read("ListClusters", &location, || {
                api.client.list_clusters().set_parent(&location).send()
            })
            .await?;
        Ok(r.clusters)
    }

    /// The deployment's cluster, if it exists.
    pub(crate) async fn cluster(&self, ownership: &Ownership) -> Result<Option<Cluster>> {
        let api = self.api().await?;
        let path = self.target.cluster(&desired::cluster_name(ownership));
        match api
            .read("GetCluster", &path, || {
                api.client.get_cluster().set_name(&path).send()
            })
            .await
        {
            Ok(c) if desired::owned(ownership, &crate::observe::cluster_labels(&c)) => Ok(Some(c)),
            Ok(_) => Ok(None),
            Err(e) if e.class() == Class::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
