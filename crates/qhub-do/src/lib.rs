//! `qhub-do`: the DigitalOcean provider: DOKS through DigitalOcean's REST API v2, with no SDK
//! and no Terraform.
//!
//! [`DigitalOceanProvider`] implements [`qhub_core::provider::Provider`] for `provider: do`:
//!
//! - [`client`]: a small typed REST client (bearer token from `DIGITALOCEAN_TOKEN`, endpoint
//!   from `DIGITALOCEAN_API_URL`, rate-limit pacing, retries, pagination, typed errors).
//! - [`desired`]: one DOKS cluster at the newest version slug matching `kubernetes_version`
//!   (resolved from `/v2/kubernetes/options`) and one autoscaled pool per node group (with a
//!   selection label, GPU taints, the group's own `labels`/`taints`), all created by the
//!   cluster's one create call (`general` first) and deleted with it.
//! - [`observe`]: the clusters and pools carrying the ownership tags (`qhub-project:NAME`, …).
//! - [`apply`]: idempotent creates (a taken name is adopted), in-place pool updates, deletes
//!   that tolerate "not found"; a cluster is destroyed with its load balancers and volumes.
//! - [`preflight`]: the token, region, version and sizes, each problem named by config key.
//! - [`access`]: per-request bearer tokens from `/credentials` for the engine (fetched again
//!   before they expire); a `doctl` exec kubeconfig, with no secret in it, for people.
//! - [`lock`]: the deploy lock on Spaces (S3-compatible conditional writes, checked on every
//!   lock taken), with a Spaces access key (`SPACES_ACCESS_KEY_ID`/`SPACES_SECRET_ACCESS_KEY`);
//!   without one, or with `QHUB_DEPLOY_LOCK=local`, the local lock file only.
//! - [`facts`]: the cluster facts of the Kubernetes stage (`do-block-storage`, the
//!   `doks.digitalocean.com/node-pool` selector, load-balancer annotations, native autoscaling).
//!
//! Against an emulator (a loopback `DIGITALOCEAN_API_URL`) no token is needed, polling is
//! fast, and the cluster's API server is not real: only a kubeconfig override
//! ([`KUBECONFIG_ENV`]) gives cluster access there.

pub mod access;
pub mod apply;
pub mod client;
pub mod desired;
pub mod errors;
pub mod facts;
pub mod lock;
pub mod observe;
pub mod preflight;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use qhub_core::cloud::lock::LockStore;
use qhub_core::config::{Config, ProviderKind};
use qhub_core::kubernetes::auth::ClusterEndpoint;
use qhub_core::plan::{Change, Observed, Resource};
use qhub_core::provider::{
    ApplyContext, Capabilities, ClusterAccess, ClusterFacts, Facts, Ownership, Preflight, Provider,
    ProviderError,
};

use client::{ApiStats, ClientOptions, DoClient};
use desired::DoFacts;
use errors::to_provider;
use observe::{State, cluster_state, owned};

/// The provider name this crate serves (`provider: do` in qhub-config.yaml).
pub const PROVIDER: &str = "do";

/// A kubeconfig file to reach the cluster with instead of DOKS's (emulator mode); the folder
/// beside the config that holds the local deploy lock. Both are qhub-core's, the same for every
/// provider.
pub use qhub_core::provider::{KUBECONFIG_ENV, LOCK_DIR};

/// How the provider reaches DigitalOcean; [`DigitalOceanProvider::from_env`] fills it.
#[derive(Debug, Clone, Default)]
pub struct DoOptions {
    /// The client's options (endpoint, token, retries).
    pub client: ClientOptions,
    /// Where to count API calls (a fresh counter when `None`).
    pub stats: Option<Arc<ApiStats>>,
    /// How often to poll a cluster or pool that is not ready. Default: 10 s against
    /// DigitalOcean, 100 ms against a loopback endpoint (an emulator).
    pub poll_interval: Option<Duration>,
    /// A kubeconfig to reach the cluster with, instead of the one DOKS hands out.
    pub kubeconfig: Option<PathBuf>,
    /// Where the local deploy lock lives (`None`: no lock). Used when the Spaces lock is off,
    /// or Spaces turned out not to honour conditional writes.
    pub lock_dir: Option<PathBuf>,
    /// A Spaces access key for the cloud-side deploy lock ([`lock`]); `None`: none.
    pub spaces: Option<lock::SpacesOptions>,
    /// Take the deploy lock on Spaces when [`Self::spaces`] is set. [`DigitalOceanProvider::from_env`]
    /// turns it on unless `QHUB_DEPLOY_LOCK` is `local`.
    pub spaces_lock: bool,
}

/// The DigitalOcean provider.
#[derive(Debug)]
pub struct DigitalOceanProvider {
    client: DoClient,
    poll: Duration,
    options: DoOptions,
    region: String,
}

impl DigitalOceanProvider {
    /// A provider for `config` (`provider: do`) with explicit options.
    pub fn new(config: &Config, options: DoOptions) -> Result<Self, ProviderError> {
        if config.provider != ProviderKind::Do {
            return Err(ProviderError::Fatal(format!(
                "the DigitalOcean provider serves `provider: do`, not `{}`",
                config.provider
            )));
        }
        let region = section(config)?.region.clone();
        let stats = options.stats.clone().unwrap_or_default();
        let client = DoClient::new(options.client.clone(), stats)
            .map_err(|e| to_provider("setting up the DigitalOcean client", e))?;
        let poll = options.poll_interval.unwrap_or(if client.is_local() {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(10)
        });
        Ok(Self {
            client,
            poll,
            options,
            region,
        })
    }

    /// A provider for `config` from the environment: `DIGITALOCEAN_TOKEN`,
    /// `DIGITALOCEAN_API_URL`, `QHUB_KUBECONFIG` (relative to `dir`, the config's folder), the
    /// Spaces key of the deploy lock (`SPACES_ACCESS_KEY_ID`, `SPACES_SECRET_ACCESS_KEY`,
    /// `QHUB_SPACES_ENDPOINT`, `QHUB_SPACES_REGION`) and `QHUB_DEPLOY_LOCK`.
    pub fn from_env(config: &Config, dir: &Path) -> Result<Self, ProviderError> {
        let kubeconfig = qhub_core::provider::local::kubeconfig_override(dir);
        Self::new(
            config,
            DoOptions {
                client: ClientOptions::from_env(),
                kubeconfig,
                lock_dir: Some(qhub_core::provider::local::lock_dir(dir)),
                spaces: lock::SpacesOptions::from_env()?,
                spaces_lock: qhub_core::cloud::lock::cloud_lock_from_env(),
                ..DoOptions::default()
            },
        )
    }

    /// The API call counters.
    pub fn stats(&self) -> Arc<ApiStats> {
        self.client.stats()
    }

    /// The REST client.
    pub fn client(&self) -> &DoClient {
        &self.client
    }

    pub(crate) fn poll(&self) -> Duration {
        self.poll
    }

    /// The version facts for `config`, from `/v2/kubernetes/options`.
    pub async fn do_facts(&self, config: &Config) -> Result<DoFacts, ProviderError> {
        let options = self.kubernetes_options().await?;
        desired::facts(section(config)?, options).map_err(ProviderError::other)
    }

    async fn kubernetes_options(&self) -> Result<client::KubernetesOptions, ProviderError> {
        self.client
            .options()
            .await
            .map_err(|e| to_provider("reading DOKS options (/v2/kubernetes/options)", e))
    }

    /// The deploy lock's store on Spaces for `ownership`'s deployment (the account names the
    /// bucket). Whether Spaces honours conditional writes is checked when the lock is taken
    /// ([`qhub_core::provider::take_deploy_lock`] falls back to the local lock when not).
    async fn spaces_store(
        &self,
        spaces: &lock::SpacesOptions,
        ownership: &Ownership,
    ) -> Result<lock::SpacesLockStore, ProviderError> {
        let account = self.client.account().await.map_err(|e| {
            to_provider(
                "reading the account (GET /v2/account) to name the deploy lock bucket",
                e,
            )
        })?;
        lock::SpacesLockStore::new(
            spaces,
            account.owner(),
            &self.region,
            &ownership.prefix(),
            self.client.stats(),
            self.options.client.retry,
        )
    }

    /// The deployment's cluster when it exists, is ours and is running; `NoCluster` otherwise.
    async fn running_cluster(
        &self,
        ownership: &Ownership,
    ) -> Result<client::Cluster, ProviderError> {
        let name = ownership.prefix();
        let clusters = self
            .client
            .list_clusters()
            .await
            .map_err(|e| to_provider("listing clusters", e))?;
        let Some(c) = clusters.into_iter().find(|c| c.name == name) else {
            return Err(ProviderError::NoCluster(format!(
                "DOKS cluster {name} does not exist"
            )));
        };
        if !owned(ownership, &c.tags) {
            return Err(ProviderError::Fatal(format!(
                "DOKS cluster {name} exists and is not owned by this deployment"
            )));
        }
        match cluster_state(&c) {
            State::Ready => Ok(c),
            State::Pending(why) | State::Failed(why) => Err(ProviderError::NoCluster(format!(
                "DOKS cluster {name} is not usable now ({why})"
            ))),
            State::Deleting => Err(ProviderError::NoCluster(format!(
                "DOKS cluster {name} is being deleted"
            ))),
        }
    }
}

fn section(config: &Config) -> Result<&qhub_core::config::DoSection, ProviderError> {
    config
        .digital_ocean
        .as_ref()
        .ok_or_else(|| ProviderError::Fatal("the config has no `digital_ocean` section".into()))
}

#[async_trait]
impl Provider for DigitalOceanProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            infrastructure: true,
            // An emulator's cluster endpoint is not real: only an override reaches one.
            cluster_access: !self.client.is_local() || self.options.kubeconfig.is_some(),
            scale_to_zero: true,
            gpu: true,
        }
    }

    fn node_group_keys(&self) -> &'static [&'static str] {
        desired::NODE_GROUP_KEYS
    }

    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError> {
        section(config)?;
        let options = self.kubernetes_options().await?;
        let (problems, warnings) = preflight::check(config, &options);
        preflight::result(problems, warnings)
    }

    async fn discover(&self, config: &Config) -> Result<Facts, ProviderError> {
        Ok(Facts::new(self.do_facts(config).await?))
    }

    fn desired(&self, config: &Config, facts: &Facts) -> Result<Vec<Resource>, ProviderError> {
        let facts = facts.get::<DoFacts>().ok_or_else(|| {
            ProviderError::Fatal(
                "the DigitalOcean provider plans from the facts of its own discover".into(),
            )
        })?;
        desired::desired(config, facts).map_err(ProviderError::other)
    }

    fn priced_shape(
        &self,
        _config: &Config,
        observed: &[Observed],
    ) -> Option<qhub_core::cost::Shape> {
        observe::priced_shape(observed)
    }

    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        let clusters = self
            .client
            .list_clusters()
            .await
            .map_err(|e| to_provider("listing clusters", e))?;
        observe::observe(&clusters, ownership)
    }

    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        apply::apply(self, change, ctx).await
    }

    fn cluster_facts(&self, config: &Config, infra: &[Observed]) -> ClusterFacts {
        let _ = infra;
        facts::cluster_facts(config)
    }

    async fn lock_store(
        &self,
        ownership: &Ownership,
    ) -> Result<Option<Arc<dyn LockStore>>, ProviderError> {
        match (&self.options.spaces, self.options.spaces_lock) {
            (Some(spaces), true) => Ok(Some(Arc::new(self.spaces_store(spaces, ownership).await?))),
            (None, true) => {
                tracing::warn!(
                    "no cloud-side deploy lock: two CI runners could deploy this config at once; set {} and {} (a Spaces access key) for the lock on Spaces, or {}=local to keep the local lock without this warning",
                    lock::ACCESS_KEY_ENV,
                    lock::SECRET_KEY_ENV,
                    qhub_core::cloud::lock::DEPLOY_LOCK_ENV
                );
                Ok(None)
            }
            (_, false) => Ok(None),
        }
    }

    fn lock_dir(&self) -> Option<std::path::PathBuf> {
        self.options.lock_dir.clone()
    }

    async fn kubeconfig(&self, ownership: &Ownership) -> Result<String, ProviderError> {
        let c = self.running_cluster(ownership).await?;
        if let Some(path) = &self.options.kubeconfig {
            return read_override(path);
        }
        let credentials = self
            .client
            .credentials(&c.id, access::ACCESS_EXPIRY)
            .await
            .map_err(|e| to_provider("reading the cluster's credentials", e))?;
        Ok(access::exec_kubeconfig(
            &c.region,
            &c.name,
            &c.id,
            &credentials,
        ))
    }

    async fn cluster_access(&self, ownership: &Ownership) -> Result<ClusterAccess, ProviderError> {
        let c = self.running_cluster(ownership).await?;
        if let Some(path) = &self.options.kubeconfig {
            return Ok(ClusterAccess::Kubeconfig {
                text: read_override(path)?,
                expires_in: None,
            });
        }
        if self.client.is_local() {
            return Err(ProviderError::NotSupported(format!(
                "emulator mode: the API server of DOKS cluster {} is not real; set {KUBECONFIG_ENV} to reach a cluster",
                c.name
            )));
        }
        let tokens = access::DoTokens::new(
            self.client.clone(),
            &c.id,
            access::ACCESS_EXPIRY,
            access::REFRESH_MARGIN,
        );
        // The server and CA now; the token per request, from the source.
        let (credentials, _) = tokens.fetch().await?;
        let ca_pem = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(credentials.certificate_authority_data.trim())
                .map_err(|e| {
                    ProviderError::Fatal(format!("DOKS cluster {}: CA data: {e}", c.name))
                })?
        };
        let client = qhub_core::kubernetes::auth::client_with_token(
            &ClusterEndpoint {
                server: credentials.server,
                ca_pem,
            },
            Arc::new(tokens),
        )?;
        Ok(ClusterAccess::Client(client))
    }
}

fn read_override(path: &Path) -> Result<String, ProviderError> {
    qhub_core::provider::local::read_kubeconfig_override(path)
}
