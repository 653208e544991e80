//! The registry that maps `provider:` names to implementations; in-house code can add its own.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::{ClusterFacts, Provider, ProviderError};
use crate::config::Config;

/// Builds a provider for a config (and the directory the config lives in).
pub type ProviderFactory = Arc<
    dyn Fn(&Config, &std::path::Path) -> Result<Arc<dyn Provider>, ProviderError> + Send + Sync,
>;

/// The cluster facts of a config before anything exists ([`Provider::cluster_facts`] with no
/// infrastructure), computed without a provider: no client, no credentials, no network.
pub type OfflineFacts = Arc<dyn Fn(&Config) -> ClusterFacts + Send + Sync>;

/// Maps `provider:` names to factories. In-house code can register its own.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    factories: BTreeMap<String, ProviderFactory>,
    offline: BTreeMap<String, OfflineFacts>,
}

impl fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderRegistry")
            .field("providers", &self.factories.keys().collect::<Vec<_>>())
            .field("offline_facts", &self.offline.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ProviderRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the factory for `name`.
    pub fn register(&mut self, name: &str, factory: ProviderFactory) {
        self.factories.insert(name.to_string(), factory);
    }

    /// Adds or replaces how `name`'s cluster facts are computed offline (see
    /// [`ProviderRegistry::offline_facts`]). Register one for a provider whose factory needs
    /// credentials (a token, a credentials file), so that `qhub render` never asks for them.
    pub fn register_offline_facts(&mut self, name: &str, facts: OfflineFacts) {
        self.offline.insert(name.to_string(), facts);
    }

    /// The cluster facts of `config` before anything exists, as `qhub render` and a plan before
    /// the first deploy use them: what follows from the config is known, and only what the
    /// cloud makes is a placeholder ([`super::facts::AFTER_APPLY`], named by
    /// [`ClusterFacts::unknown`]). From the function registered with
    /// [`ProviderRegistry::register_offline_facts`], else from a provider built for the config
    /// (the built-in ones build without a network call).
    pub fn offline_facts(
        &self,
        config: &Config,
        dir: &std::path::Path,
    ) -> Result<ClusterFacts, ProviderError> {
        match self.offline.get(config.provider.as_str()) {
            Some(facts) => Ok(facts(config)),
            None => Ok(self.build(config, dir)?.cluster_facts(config, &[])),
        }
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
