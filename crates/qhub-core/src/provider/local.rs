//! What every provider finds beside the config the same way: the kubeconfig override
//! ([`KUBECONFIG_ENV`], applied to every provider by [`WithKubeconfig`], which
//! [`super::ProviderRegistry::build`] puts around the provider it builds) and the folder of the
//! local deploy lock ([`LOCK_DIR`]). One place for both names, so that no provider spells them
//! again, and no provider reads the override itself: a provider only says how to reach its own
//! cluster.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::{
    ApplyContext, Capabilities, ClusterAccess, ClusterFacts, Facts, Ownership, Preflight, Provider,
    ProviderError,
};
use crate::config::Config;
use crate::plan::{Change, Observed, Resource};

/// The variable naming a kubeconfig for cluster access instead of the one the provider mints
/// (an emulator's cluster, or an operator's own access); relative to the config's folder when
/// not absolute.
pub const KUBECONFIG_ENV: &str = "QHUB_KUBECONFIG";

/// The folder beside the config that holds the local deploy lock
/// ([`super::lock::deploy_lock`]).
pub const LOCK_DIR: &str = ".qhub";

/// The kubeconfig override [`KUBECONFIG_ENV`] names, resolved against `dir` (the config's
/// folder); `None` when it is unset or blank.
pub fn kubeconfig_override(dir: &Path) -> Option<PathBuf> {
    std::env::var(KUBECONFIG_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|k| dir.join(k))
}

/// The local deploy lock's folder for a config in `dir`.
pub fn lock_dir(dir: &Path) -> PathBuf {
    dir.join(LOCK_DIR)
}

/// Reads the kubeconfig override at `path`, saying which file could not be read.
pub fn read_kubeconfig_override(path: &Path) -> Result<String, ProviderError> {
    std::fs::read_to_string(path).map_err(|e| {
        ProviderError::Fatal(format!(
            "cannot read the kubeconfig override {}: {e}",
            path.display()
        ))
    })
}

/// A provider whose cluster is reached through a kubeconfig file instead of the access the
/// provider mints ([`KUBECONFIG_ENV`]: an emulator's cluster, or an operator's own access).
/// Everything else is the provider's. The provider still says whether its cluster is there: a
/// [`ProviderError::NoCluster`] from it stands (a destroy then has nothing to delete through
/// it); any other answer (access minted, or "not supported" in an emulator whose endpoint is
/// not real) gives way to the file.
#[derive(Debug)]
pub struct WithKubeconfig {
    inner: Arc<dyn Provider>,
    path: PathBuf,
}

impl WithKubeconfig {
    /// `inner`, its cluster reached through the kubeconfig at `path`.
    pub fn new(inner: Arc<dyn Provider>, path: impl Into<PathBuf>) -> Self {
        Self {
            inner,
            path: path.into(),
        }
    }

    /// `inner` wrapped when [`KUBECONFIG_ENV`] names a kubeconfig (relative to `dir`, the
    /// config's folder), else `inner` as it is.
    pub fn from_env(inner: Arc<dyn Provider>, dir: &Path) -> Arc<dyn Provider> {
        match kubeconfig_override(dir) {
            Some(path) => Arc::new(Self::new(inner, path)),
            None => inner,
        }
    }

    /// The file, once the provider says its cluster exists.
    async fn text(&self, ownership: &Ownership) -> Result<String, ProviderError> {
        match self.inner.cluster_access(ownership).await {
            Err(e @ ProviderError::NoCluster(_)) => Err(e),
            _ => {
                tracing::info!(kubeconfig = %self.path.display(), "cluster access through the kubeconfig override");
                read_kubeconfig_override(&self.path)
            }
        }
    }
}

#[async_trait]
impl Provider for WithKubeconfig {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            cluster_access: true,
            ..self.inner.capabilities()
        }
    }

    fn node_group_keys(&self) -> &'static [&'static str] {
        self.inner.node_group_keys()
    }

    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError> {
        self.inner.preflight(config).await
    }

    async fn discover(&self, config: &Config) -> Result<Facts, ProviderError> {
        self.inner.discover(config).await
    }

    fn desired(&self, config: &Config, facts: &Facts) -> Result<Vec<Resource>, ProviderError> {
        self.inner.desired(config, facts)
    }

    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        self.inner.observe(ownership).await
    }

    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        self.inner.apply(change, ctx).await
    }

    fn cluster_facts(&self, config: &Config, infra: &[Observed]) -> ClusterFacts {
        self.inner.cluster_facts(config, infra)
    }

    async fn lock_store(
        &self,
        ownership: &Ownership,
    ) -> Result<Option<Arc<dyn crate::cloud::lock::LockStore>>, ProviderError> {
        self.inner.lock_store(ownership).await
    }

    fn lock_dir(&self) -> Option<PathBuf> {
        self.inner.lock_dir()
    }

    async fn lock_holder(&self, ownership: &Ownership) -> Result<Option<String>, ProviderError> {
        self.inner.lock_holder(ownership).await
    }

    async fn kubeconfig(&self, ownership: &Ownership) -> Result<String, ProviderError> {
        self.text(ownership).await
    }

    fn serves_keycloak(&self) -> bool {
        self.inner.serves_keycloak()
    }

    async fn keycloak_url(&self, ownership: &Ownership) -> Result<Option<String>, ProviderError> {
        self.inner.keycloak_url(ownership).await
    }

    async fn cluster_access(&self, ownership: &Ownership) -> Result<ClusterAccess, ProviderError> {
        Ok(ClusterAccess::Kubeconfig {
            text: self.text(ownership).await?,
            expires_in: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_folder_sits_beside_the_config_and_a_missing_override_says_which_file() {
        assert_eq!(
            lock_dir(Path::new("/deploy")),
            PathBuf::from("/deploy/.qhub")
        );
        let err = read_kubeconfig_override(Path::new("/nonexistent/kubeconfig")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
    }
}
