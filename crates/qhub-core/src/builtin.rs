//! The providers built into `qhub-core`, registered from above the provider contract: the
//! contract ([`crate::provider`]) knows no implementation of itself, so that it imports
//! neither the sandbox nor any other backend.

use std::sync::Arc;

use crate::config::Config;
use crate::provider::{Provider, ProviderRegistry};

impl ProviderRegistry {
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
