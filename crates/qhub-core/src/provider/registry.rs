//! The registry that maps `provider:` names to implementations; in-house code can add its own.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::{Provider, ProviderError};
use crate::config::Config;

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

    /// A registry with the providers built into `qhub-core` (`existing` and `local`); the
    /// clouds and the sandbox live in their own crates and are registered by their user (the
    /// CLI registers them all).
    pub fn with_builtin() -> Self {
        let mut r = Self::new();
        for name in ["existing", "local"] {
            r.register(
                name,
                Arc::new(|config: &Config, _dir: &std::path::Path| {
                    crate::existing::ExistingProvider::for_config(config)
                        .map(|p| Arc::new(p) as Arc<dyn Provider>)
                }),
            );
        }
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
