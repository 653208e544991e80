//! The `Provider` trait: what a cloud (or the sandbox, or an in-house backend) must do for the
//! engine, and the registry that maps `provider:` names to implementations.
//!
//! A provider never keeps state of its own between calls: everything it knows about a deployment
//! it learns from the cloud, by the ownership marks it put on every resource it created (see
//! [`Ownership`]). The engine diffs [`Provider::desired`] against [`Provider::observe`] and asks
//! the provider to [`Provider::apply`] one change at a time.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::Config;
use crate::engine::plan::{Change, Observed, Resource};

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
                    ProviderError::Failed(format!("the cluster's kubeconfig is invalid: {e}"))
                })?;
                let config = kube::Config::from_custom_kubeconfig(
                    kubeconfig,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .map_err(|e| {
                    ProviderError::Failed(format!("the cluster's kubeconfig is unusable: {e}"))
                })?;
                kube::Client::try_from(config).map_err(|e| {
                    ProviderError::Failed(format!("cannot build a Kubernetes client: {e}"))
                })
            }
        }
    }
}

/// Errors a provider returns. The engine retries only those marked retryable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// Throttled, 5xx, eventual consistency: safe to try the same call again.
    #[error("{message} (retryable)")]
    Retryable {
        /// What happened.
        message: String,
        /// How long the cloud asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The operation cannot succeed as asked.
    #[error("{0}")]
    Failed(String),
    /// The provider does not support this operation (yet).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// Credentials are missing or refused.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The cluster does not exist (yet): there is nothing to connect to.
    #[error("the cluster does not exist: {0}")]
    NoCluster(String),
    /// The process was (simulated to be) killed: stop at once, without any clean-up.
    #[error("interrupted: {0}")]
    Killed(String),
}

/// The error a simulated backend returns through a client library (e.g. the Kubernetes
/// client) to report that the process "died": anything that finds it in an error's source chain
/// must treat the error as [`ProviderError::Killed`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("interrupted: {0}")]
pub struct ProcessKilled(pub String);

/// Finds a [`ProcessKilled`] in an error's source chain.
pub fn find_killed<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ProcessKilled> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(k) = e.downcast_ref::<ProcessKilled>() {
            return Some(k);
        }
        current = e.source();
    }
    None
}

impl ProviderError {
    /// True when the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
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
}

/// A cloud (or simulated cloud) the engine can deploy to.
///
/// Contract, for every implementation:
/// - **No hidden state.** Everything is learnt from the cloud through ownership marks; two
///   provider instances for the same config behave the same.
/// - [`desired`](Self::desired) is pure and deterministic: the same config gives the same
///   resources in the same order.
/// - [`observe`](Self::observe) returns exactly the resources carrying this deployment's
///   [`Ownership`] marks, in the same shape as `desired` so the engine can diff field by field.
///   Observing nothing is not an error.
/// - [`apply`](Self::apply) performs one change and returns when it is done (the resource is
///   usable, or gone). It is idempotent: creating what already exists with our marks succeeds
///   (it is adopted, never duplicated); deleting what is already gone succeeds. Every resource it
///   creates carries the ownership marks from the moment of creation.
/// - Errors say whether a retry can help ([`ProviderError::is_retryable`]); the engine retries
///   with backoff, the provider must not stack its own retry loop on top of its SDK's.
/// - Unsupported operations return [`ProviderError::NotSupported`], never panic.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// The `provider:` value this implementation serves.
    fn name(&self) -> &str;

    /// What this provider can do.
    fn capabilities(&self) -> Capabilities;

    /// Checks credentials, region, versions and instance types before any change.
    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError>;

    /// The infrastructure resources the config wants, with their dependencies. A plan asks
    /// for them after [`Provider::observe`], so a provider may leave out what it found its
    /// endpoint cannot do (an emulator without EKS add-ons), saying so in a warning.
    fn desired(&self, config: &Config) -> Result<Vec<Resource>, ProviderError>;

    /// The infrastructure resources that exist and carry `ownership`'s marks.
    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError>;

    /// Performs one change (create, update, replace or delete).
    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError>;

    /// Takes the deployment's lock so that two deploys of it cannot run at once. The lock is
    /// held until the returned guard is dropped. `Ok(None)`: this provider has no lock of its
    /// own (the Kubernetes stage then relies on its Lease).
    async fn lock(&self, ownership: &Ownership) -> Result<Option<DeployLock>, ProviderError> {
        let _ = ownership;
        Ok(None)
    }

    /// A kubeconfig for people's own `kubectl` on the deployment's cluster. It should hold no
    /// long-lived secret (an `exec` stanza that mints tokens instead).
    async fn kubeconfig(&self, ownership: &Ownership) -> Result<String, ProviderError> {
        let _ = ownership;
        Err(ProviderError::NotSupported(format!(
            "provider `{}` does not write kubeconfigs",
            self.name()
        )))
    }

    /// Access to the deployment's cluster, with credentials minted now.
    async fn cluster_access(&self, ownership: &Ownership) -> Result<ClusterAccess, ProviderError> {
        let _ = ownership;
        Err(ProviderError::NotSupported(format!(
            "provider `{}` does not hand out cluster access",
            self.name()
        )))
    }
}

/// A held deployment lock; dropping it releases the lock.
pub type DeployLock = Box<dyn std::any::Any + Send + Sync>;

/// The local deploy lock of `ownership`'s deployment, in `dir` (`<prefix>.lock`): what
/// providers without a cloud-side lock use so that two qhub commands on one machine cannot
/// deploy or destroy the same deployment at once. The folder ignores itself in git (a
/// `.gitignore` of `*`), so a lock beside a config kept in a repository is never committed.
pub fn deploy_lock(
    dir: &std::path::Path,
    ownership: &Ownership,
) -> Result<DeployLock, ProviderError> {
    let lock = crate::fs::try_lock(dir, &format!("{}.lock", ownership.prefix()));
    let ignore = dir.join(".gitignore");
    if lock.is_ok() && !ignore.exists() {
        // Best effort: without it, `git status` merely shows a stray folder.
        let _ = crate::fs::write_new(&ignore, b"*\n");
    }
    match lock {
        Ok(lock) => Ok(Box::new(lock)),
        Err(crate::fs::LockError::Held(path)) => Err(ProviderError::Failed(format!(
            "another qhub command is deploying or destroying {} (lock {} is held); wait for it to finish",
            ownership.prefix(),
            path.display()
        ))),
        Err(e) => Err(ProviderError::Failed(e.to_string())),
    }
}

/// Builds a provider for a config (and the directory the config lives in).
pub type ProviderFactory = Arc<
    dyn Fn(&Config, &std::path::Path) -> Result<Arc<dyn Provider>, ProviderError> + Send + Sync,
>;

/// Maps `provider:` names to factories. In-house code can register its own.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    factories: BTreeMap<String, ProviderFactory>,
}

impl fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

impl ProviderRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the providers built into `qhub-core` (the sandbox).
    pub fn with_builtin() -> Self {
        let mut r = Self::new();
        r.register(
            "sandbox",
            Arc::new(|config: &Config, dir: &std::path::Path| {
                crate::sandbox::SandboxProvider::for_config(config, dir)
                    .map(|p| Arc::new(p) as Arc<dyn Provider>)
            }),
        );
        r
    }

    /// Adds or replaces the factory for `name`.
    pub fn register(&mut self, name: &str, factory: ProviderFactory) {
        self.factories.insert(name.to_string(), factory);
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// Builds the provider the config asks for.
    pub fn build(
        &self,
        config: &Config,
        dir: &std::path::Path,
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        let name = config.provider.as_str();
        let factory = self.factories.get(name).ok_or_else(|| {
            ProviderError::NotSupported(format!(
                "provider `{name}` is not available in this build yet (available: {})",
                self.names().collect::<Vec<_>>().join(", ")
            ))
        })?;
        factory(config, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deploy_lock_excludes_a_second_holder_and_ignores_itself_in_git() {
        let dir = tempfile::tempdir().unwrap();
        let lock_dir = dir.path().join(".qhub");
        let o = Ownership {
            project: "demo".into(),
            namespace: "dev".into(),
        };
        let held = deploy_lock(&lock_dir, &o).expect("first holder");
        let err = deploy_lock(&lock_dir, &o).map(|_| ()).unwrap_err();
        assert!(
            err.to_string().contains("demo-dev") && err.to_string().contains("is held"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(lock_dir.join(".gitignore")).unwrap(),
            "*\n"
        );
        drop(held);
        deploy_lock(&lock_dir, &o).expect("free again once dropped");
    }
}
