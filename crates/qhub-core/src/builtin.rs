//! The providers built into `qhub-core`, registered from above the provider contract: the
//! contract ([`crate::provider`]) knows no implementation of itself, so that it imports
//! no backend.

use std::sync::Arc;

use crate::config::Config;
use crate::provider::{Provider, ProviderRegistry};

impl ProviderRegistry {
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
}
