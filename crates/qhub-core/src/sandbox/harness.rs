//! The conformance harness ([`crate::conformance::Harness`]) for the sandbox: an example for
//! provider authors, and the engine's own test bed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::SandboxProvider;
use super::faults::FaultSpec;
use super::world::World;
use crate::config::Config;
use crate::conformance::{Faults, Harness};
use crate::provider::{Ownership, Provider};

/// A sandbox world in a directory of its own.
#[derive(Debug)]
pub struct SandboxHarness {
    dir: PathBuf,
    config: Config,
    time_scale: f64,
}

impl SandboxHarness {
    /// A harness whose world lives in `dir` (which it may empty), for `config`
    /// (`provider: sandbox`), with latencies scaled by `time_scale`.
    pub fn new(dir: impl Into<PathBuf>, config: Config, time_scale: f64) -> Self {
        Self {
            dir: dir.into(),
            config,
            time_scale,
        }
    }
}

#[async_trait]
impl Harness for SandboxHarness {
    fn config(&self) -> Config {
        self.config.clone()
    }

    fn provider(&self, faults: Faults) -> Arc<dyn Provider> {
        let spec = FaultSpec {
            error_rate: faults.error_rate,
            throttle_rate: faults.throttle_rate,
            slow_factor: None,
            die_after: faults.die_after,
            seed: Some(faults.seed),
        };
        Arc::new(SandboxProvider::new(&self.dir, self.time_scale, spec))
    }

    async fn reset(&self) {
        let _ = std::fs::remove_file(World::path(&self.dir));
    }

    async fn mutations(&self) -> u64 {
        World::load(&self.dir)
            .map(|w| w.stats.mutations)
            .unwrap_or(0)
    }

    async fn census(&self, ownership: &Ownership) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        if let Ok(world) = World::load(&self.dir) {
            for r in world.resources.values().filter(|r| ownership.owns(&r.tags)) {
                *out.entry(r.kind.clone()).or_insert(0) += 1;
            }
        }
        out
    }
}
