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

/// The folder beside the config that holds the local deploy lock.
pub const LOCK_DIR: &str = ".qhub";

/// The GKE provider for one config's project and region.
pub struct GcpProvider {
    pub(crate) target: Target,
    pub(crate) endpoint: String,
    pub(crate) options: GcpOptions,
    stats: Arc<ApiStats>,
    poll: Duration,
    api: tokio::sync::OnceCell<Api>,
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
                kubeconfig: var(client::KUBECONFIG_ENV).map(|k| dir.join(k)),
                lock_dir: Some(dir.join(LOCK_DIR)),
                gcs_lock: qhub_core::cloud::lock::cloud_lock_from_env(),
                storage_endpoint: var(client::STORAGE_ENDPOINT_ENV),
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

    /// The deploy lock's store for `ownership`'s deployment ([`crate::lock`]).
    pub(crate) async fn lock_store(
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
        };
        Ok(facts)
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
