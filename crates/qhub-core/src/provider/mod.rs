//! The `Provider` trait: what a cloud (or the sandbox, or an in-house backend) must do for the
//! engine ([`ProviderError`]: the errors it returns, defined below the contract in
//! [`crate::error`]; [`facts`]: what flows into planning besides the
//! config; [`lock`]: the deploy lock; [`local`]: what is found beside the config;
//! [`registry`]: `provider:` names to implementations).
//!
//! A provider never keeps state of its own between calls: everything it knows about a deployment
//! it learns from the cloud, by the ownership marks it put on every resource it created (see
//! [`Ownership`]), and everything it learns for planning it returns as [`Facts`]. The engine
//! diffs [`Provider::desired`] against [`Provider::observe`] and asks the provider to
//! [`Provider::apply`] one change at a time. `docs/writing-a-provider.md` walks through it.

pub mod facts;
pub mod local;
pub mod lock;
pub mod registry;
pub mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::Config;
use crate::plan::{Change, Observed, Resource};

pub use crate::cloud::lock::LockRequest;
pub use crate::error::{ProcessKilled, ProviderError, RetryClass, find_killed};
pub use facts::{ClusterFacts, Facts, Known};
pub use local::{KUBECONFIG_ENV, LOCK_DIR};
pub use lock::{DeployLock, deploy_lock, local_lock, local_lock_holder, take_deploy_lock};
pub use registry::{ProviderFactory, ProviderRegistry};

/// The marks every resource of a deployment carries (tags, labels). Keys use the GCP label
/// syntax (lowercase letters, digits, `-`, `_`) so one set works on every cloud.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ownership {
    /// `project_name`.
    pub project: String,
    /// `namespace`.
    pub namespace: String,
}

impl Ownership {
    /// The tag key naming the tool that manages the resource.
    pub const MANAGED_BY_KEY: &'static str = "qhub-managed-by";
    /// The value of [`Self::MANAGED_BY_KEY`].
    pub const MANAGED_BY: &'static str = "qhub-rs";
    /// The tag key holding `project_name`.
    pub const PROJECT_KEY: &'static str = "qhub-project";
    /// The tag key holding `namespace`.
    pub const NAMESPACE_KEY: &'static str = "qhub-namespace";

    /// The ownership of a config's deployment.
    pub fn of(config: &Config) -> Self {
        Self {
            project: config.project_name.clone(),
            namespace: config.namespace.clone(),
        }
    }

    /// The tags to put on every resource.
    pub fn tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                Self::MANAGED_BY_KEY.to_string(),
                Self::MANAGED_BY.to_string(),
            ),
            (Self::PROJECT_KEY.to_string(), self.project.clone()),
            (Self::NAMESPACE_KEY.to_string(), self.namespace.clone()),
        ])
    }

    /// True when `tags` carry exactly this deployment's marks.
    pub fn owns(&self, tags: &BTreeMap<String, String>) -> bool {
        self.tags().iter().all(|(k, v)| tags.get(k) == Some(v))
    }

    /// `{project}-{namespace}`, the base name of resources.
    pub fn prefix(&self) -> String {
        format!("{}-{}", self.project, self.namespace)
    }
}

/// What a provider can do; the engine and CLI check these before asking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Creates and deletes cloud infrastructure (false for `existing`/`local`).
    pub infrastructure: bool,
    /// Hands out access to a Kubernetes cluster for the `kubernetes` stage.
    pub cluster_access: bool,
    /// Node groups may scale to zero nodes.
    pub scale_to_zero: bool,
    /// GPU node groups are supported.
    pub gpu: bool,
}

/// The result of a preflight check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preflight {
    /// Things that work but deserve attention.
    pub warnings: Vec<String>,
}

/// Access to the deployment's Kubernetes cluster, with credentials minted when it was made.
#[derive(Clone)]
pub enum ClusterAccess {
    /// A kubeconfig document (YAML or JSON text).
    Kubeconfig {
        /// The kubeconfig.
        text: String,
        /// When its credentials stop working, if they expire.
        expires_in: Option<Duration>,
    },
    /// A ready client (the sandbox's in-process Kubernetes API).
    Client(kube::Client),
}

impl fmt::Debug for ClusterAccess {
    // A kubeconfig holds bearer tokens: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kubeconfig { expires_in, .. } => f
                .debug_struct("Kubeconfig")
                .field("text", &"<redacted>")
                .field("expires_in", expires_in)
                .finish(),
            Self::Client(_) => f.write_str("Client(..)"),
        }
    }
}

impl ClusterAccess {
    /// A Kubernetes client for this access.
    pub async fn client(&self) -> Result<kube::Client, ProviderError> {
        match self {
            Self::Client(c) => Ok(c.clone()),
            Self::Kubeconfig { text, .. } => {
                crate::tls::install_crypto_provider();
                let kubeconfig = kube::config::Kubeconfig::from_yaml(text).map_err(|e| {
                    ProviderError::Fatal(format!("the cluster's kubeconfig is invalid: {e}"))
                })?;
                let config = kube::Config::from_custom_kubeconfig(
                    kubeconfig,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .map_err(|e| {
                    ProviderError::Fatal(format!("the cluster's kubeconfig is unusable: {e}"))
                })?;
                kube::Client::try_from(config).map_err(|e| {
                    ProviderError::Fatal(format!("cannot build a Kubernetes client: {e}"))
                })
            }
        }
    }
}

/// The context of one change: what the provider may need beyond the change itself.
#[derive(Debug, Clone)]
pub struct ApplyContext {
    /// The ownership marks to put on anything created.
    pub ownership: Ownership,
    /// The attempt number, from 1 (a retried create must first re-observe: the lost-response
    /// case, where the first attempt did create the resource).
    pub attempt: u32,
    /// For a create or replace: the desired resources created with this one
    /// ([`Resource::created_with`] naming it), to be made in the same call.
    pub children: Vec<Resource>,
    /// For a resource created with a parent ([`Resource::created_with`]): what this run
    /// already did, successfully, to that parent, or `None` (no parent, or nothing done to it
    /// in this run). `Some(Create | Replace)`: the parent's create call made this resource as
    /// desired (it was among that call's [`children`](Self::children)), so a create, update or
    /// replace of it only adopts it, without a call. `Some(Delete)`: the parent's delete
    /// removed it, so its delete is done without a call. This is the only memory a provider
    /// has of the run: it keeps none of its own (see [`Provider`]).
    pub parent_applied: Option<crate::plan::Action>,
}

impl ApplyContext {
    /// The context of a change's first attempt, with no children and nothing done to a
    /// parent.
    pub fn new(ownership: Ownership) -> Self {
        Self {
            ownership,
            attempt: 1,
            children: Vec::new(),
            parent_applied: None,
        }
    }
}

/// A cloud (or simulated cloud) the engine can deploy to.
///
/// Contract, for every implementation:
/// - **No hidden state.** Everything is learnt from the cloud through ownership marks, and
///   what planning needs from the cloud comes from [`discover`](Self::discover) as explicit
///   [`Facts`]; two provider instances for the same config behave the same.
/// - [`desired`](Self::desired) is pure and deterministic: the same config and facts give the
///   same resources in the same order.
/// - [`observe`](Self::observe) returns exactly the resources carrying this deployment's
///   [`Ownership`] marks, in the same shape as `desired` so the engine can diff field by field,
///   each with its [`crate::plan::ResourceState`] (a cluster still creating is `Pending`, one in
///   an error state `Failed`: the plan repairs it). Observing nothing is not an error. A second
///   copy of a resource is reported under its own id (`name~cloud-id`, see
///   [`crate::cloud::duplicates`]) so the plan deletes it.
/// - [`apply`](Self::apply) performs one change (create, update, replace or delete; never
///   [`crate::plan::Action::Wait`], which the engine does by observing) and returns when it is
///   done (the resource is usable, or gone). It is idempotent: creating what already exists
///   with our marks succeeds (it is adopted, never duplicated); deleting what is already gone
///   succeeds. Every resource it creates carries the ownership marks from the moment of
///   creation. A create or replace receives in [`ApplyContext::children`] the resources created
///   with it (their desired specs), and should make them in the same call. The children's own
///   changes come afterwards: a create, update or replace of a child whose parent was just
///   created or replaced finds it made as desired and must only adopt it (no call); the engine
///   says so in [`ApplyContext::parent_applied`], so a provider needs no memory of its own
///   calls. A delete must work from every state (pending, failed); deleting a parent removes
///   its children, whose own deletes then find nothing ([`ApplyContext::parent_applied`] is
///   then `Delete`).
/// - A [`ProviderError::NotFound`] out of a delete means "gone already" to the engine: return
///   it only when the deleted object itself was not found, never for a NotFound of another
///   call on the way (a list of the location's operations, a parent's lookup).
/// - Errors are classed ([`ProviderError::retry_class`]); the engine retries with a budget per
///   class, and the provider must not stack its own retry loop on top of its SDK's.
/// - Resources that the cloud lets change only one at a time name a
///   [`Resource::serial_group`]; the engine then never runs two of them at once.
/// - Unsupported operations return [`ProviderError::NotSupported`], never panic.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// The `provider:` value this implementation serves.
    fn name(&self) -> &str;

    /// What this provider can do.
    fn capabilities(&self) -> Capabilities;

    /// The provider-specific node-group keys this provider reads (GCP's `preemptible`, …).
    /// Any other extra key of a node group gets a warning naming it (QHub accepted any key, so
    /// such configs still load).
    fn node_group_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// Checks credentials, region, versions and instance types before any change.
    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError>;

    /// Read-only lookups that [`desired`](Self::desired) needs (DOKS version slugs, GKE's
    /// server config, whether an emulator implements an API). The engine calls it once per plan,
    /// with its read retries.
    async fn discover(&self, config: &Config) -> Result<Facts, ProviderError> {
        let _ = config;
        Ok(Facts::none())
    }

    /// The infrastructure resources the config wants, with their dependencies, given the facts
    /// from [`discover`](Self::discover).
    fn desired(&self, config: &Config, facts: &Facts) -> Result<Vec<Resource>, ProviderError>;

    /// The infrastructure resources that exist and carry `ownership`'s marks.
    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError>;

    /// Performs one change (create, update, replace or delete).
    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError>;

    /// What the Kubernetes stage needs to know about the cluster, from the config and the
    /// infrastructure observed now (empty before the first deploy: values that only exist
    /// then are [`Known::AfterApply`]). Default: [`ClusterFacts::from_config`].
    fn cluster_facts(&self, config: &Config, infra: &[Observed]) -> ClusterFacts {
        let _ = infra;
        ClusterFacts::from_config(config)
    }

    /// What exists now, as the price table prices it ([`crate::cost::Shape`]: instance type,
    /// minimum and maximum per node group, the shared filesystem's size, whether the cluster
    /// and the ingress load balancer exist), mapped from `observed`: what [`Provider::observe`]
    /// returned and the Kubernetes stage's objects ([`crate::kubernetes::priced::shape_of_objects`] reads
    /// the load balancer and an in-cluster volume from those). `config` gives only what the
    /// cloud has no observable value for (EFS has no size). It must not guess: `None` (the
    /// default) when this provider cannot map what it observes; the plan then says the cost
    /// now is unknown.
    fn priced_shape(&self, config: &Config, observed: &[Observed]) -> Option<crate::cost::Shape> {
        let _ = (config, observed);
        None
    }

    /// The store of the deployment's cloud-side deploy lock ([`crate::cloud::lock`]), when this
    /// provider has one and it is wanted (not [`crate::cloud::lock::DEPLOY_LOCK_ENV`]`=local`):
    /// it keeps CI runners on different machines apart. The engine takes the lock in it
    /// ([`take_deploy_lock`]) before it plans a deploy or destroy and holds it to the end.
    /// `Ok(None)` (the default): no cloud lock; the engine takes the local lock in
    /// [`Provider::lock_dir`] instead. Building the store may call the cloud (the account that
    /// names the bucket); it must not take the lock.
    async fn lock_store(
        &self,
        ownership: &Ownership,
    ) -> Result<Option<std::sync::Arc<dyn crate::cloud::lock::LockStore>>, ProviderError> {
        let _ = ownership;
        Ok(None)
    }

    /// The folder of the local deploy lock ([`deploy_lock`]; [`LOCK_DIR`] beside the config,
    /// [`local::lock_dir`]), which keeps two commands on one machine apart: used when
    /// [`Provider::lock_store`] hands out no store. `None` (the default): no local lock either
    /// (the Kubernetes stage then relies on its Lease).
    fn lock_dir(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// Who holds the deployment's deploy lock now (`qhub@host/… (deploy) since …`), when this
    /// provider can tell without taking it; `Ok(None)` when it is free or cannot be known.
    /// `qhub status` uses it to say that a deploy is running.
    async fn lock_holder(&self, ownership: &Ownership) -> Result<Option<String>, ProviderError> {
        let _ = ownership;
        Ok(None)
    }

    /// A kubeconfig for people's own `kubectl` on the deployment's cluster. It should hold no
    /// long-lived secret (an `exec` stanza that mints tokens instead; see
    /// [`crate::cloud::kubeconfig`]).
    async fn kubeconfig(&self, ownership: &Ownership) -> Result<String, ProviderError> {
        let _ = ownership;
        Err(ProviderError::NotSupported(format!(
            "provider `{}` does not write kubeconfigs",
            self.name()
        )))
    }

    /// Whether this provider serves the deployment's Keycloak admin API to the engine itself
    /// ([`Provider::keycloak_url`]); otherwise the engine configures Keycloak only when
    /// `QHUB_KEYCLOAK_URL` says where it answers.
    fn serves_keycloak(&self) -> bool {
        false
    }

    /// The base URL (`…/auth`) of the deployment's Keycloak admin API, when
    /// [`Provider::serves_keycloak`]: asked once Keycloak runs. The default has none.
    async fn keycloak_url(&self, ownership: &Ownership) -> Result<Option<String>, ProviderError> {
        let _ = ownership;
        Ok(None)
    }

    /// Whether this provider serves the deployment's conda-store REST API to the engine itself
    /// ([`Provider::conda_store_url`]); otherwise the engine reaches it through a port-forward
    /// (cluster access) or `QHUB_CONDA_STORE_URL`.
    fn serves_conda_store(&self) -> bool {
        false
    }

    /// The base URL (`…/conda-store`) of the deployment's conda-store, when
    /// [`Provider::serves_conda_store`]: asked once conda-store runs. The default has none.
    async fn conda_store_url(
        &self,
        ownership: &Ownership,
    ) -> Result<Option<String>, ProviderError> {
        let _ = ownership;
        Ok(None)
    }

    /// Access to the deployment's cluster, with credentials minted now.
    /// [`ProviderError::NoCluster`] when the cluster does not exist or cannot be used now
    /// (creating, failed, deleting): a destroy then has no object to delete through it.
    async fn cluster_access(&self, ownership: &Ownership) -> Result<ClusterAccess, ProviderError> {
        let _ = ownership;
        Err(ProviderError::NotSupported(format!(
            "provider `{}` does not hand out cluster access",
            self.name()
        )))
    }
}
