//! The conformance harness ([`qhub_core::conformance::Harness`]) for the sandbox: an example for
//! provider authors, and the engine's own test bed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::SandboxProvider;
use super::faults::FaultSpec;
use super::world::World;
use qhub_core::config::Config;
use qhub_core::conformance::{Faults, Harness, Knobs};
use qhub_core::provider::{Ownership, Provider};

/// How the harness's sandbox behaves beyond faults: like a cloud with one operation per
/// cluster and pools created with the cluster (GKE, DOKS), and how long a cluster stays pending
/// when a check asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    /// One mutating operation per cluster at a time (GKE).
    pub one_op_per_cluster: bool,
    /// Node groups created inside the cluster's create call (GKE, DOKS).
    pub pools_with_cluster: bool,
    /// How long a created cluster stays pending when [`Faults::pending`] is set (ms).
    pub pending_ms: u64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            one_op_per_cluster: false,
            pools_with_cluster: false,
            pending_ms: 300,
        }
    }
}

impl Behaviour {
    /// Like GKE: one operation per cluster, pools created with the cluster.
    pub fn gke_like() -> Self {
        Self {
            one_op_per_cluster: true,
            pools_with_cluster: true,
            ..Self::default()
        }
    }
}

/// A sandbox world in a directory of its own.
#[derive(Debug)]
pub struct SandboxHarness {
    dir: PathBuf,
    config: Config,
    time_scale: f64,
    behaviour: Behaviour,
}

impl SandboxHarness {
    fn kube_path(&self) -> PathBuf {
        let ownership = Ownership::of(&self.config);
        self.dir
            .join(super::world::DIR_NAME)
            .join(format!("kube-{}.json", ownership.prefix()))
    }

    /// A harness whose world lives in `dir` (which it may empty), for `config`
    /// (`provider: sandbox`), with latencies scaled by `time_scale`.
    pub fn new(dir: impl Into<PathBuf>, config: Config, time_scale: f64) -> Self {
        Self {
            dir: dir.into(),
            config,
            time_scale,
            behaviour: Behaviour::default(),
        }
    }

    /// The same harness with a cloud behaviour (see [`Behaviour::gke_like`]).
    #[must_use]
    pub fn with_behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
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
            lost_rate: faults.lost_rate,
            one_op_per_cluster: self.behaviour.one_op_per_cluster,
            pools_with_cluster: self.behaviour.pools_with_cluster,
            pending_ms: faults.pending.then_some(self.behaviour.pending_ms),
            fail_once: faults.fail_once.clone(),
        };
        Arc::new(SandboxProvider::new(&self.dir, self.time_scale, spec))
    }

    async fn reset(&self) {
        let _ = std::fs::remove_file(World::path(&self.dir));
        let _ = std::fs::remove_file(self.kube_path());
    }

    async fn mutations(&self) -> u64 {
        // Cloud mutations, plus the cluster's resourceVersion counter: every write to the
        // Kubernetes API bumps it, and it survives in the persisted store.
        let cloud = World::load(&self.dir)
            .map(|w| w.stats.mutations)
            .unwrap_or(0);
        let kube = std::fs::read(self.kube_path())
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("resourceVersion").and_then(serde_json::Value::as_u64))
            .unwrap_or(0);
        cloud + kube
    }

    async fn cloud_mutations(&self) -> Option<u64> {
        Some(
            World::load(&self.dir)
                .map(|w| w.stats.mutations)
                .unwrap_or(0),
        )
    }

    async fn rejected(&self) -> u64 {
        World::load(&self.dir)
            .map(|w| w.stats.rejected)
            .unwrap_or(0)
    }

    fn knobs(&self) -> Knobs {
        Knobs {
            pending: true,
            fail_once: true,
            lost_answers: true,
        }
    }

    async fn census(&self, ownership: &Ownership) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        if let Ok(world) = World::load(&self.dir) {
            for r in world.resources.values().filter(|r| ownership.owns(&r.tags)) {
                *out.entry(r.kind.clone()).or_insert(0) += 1;
            }
        }
        if self.kube_path().exists()
            && let Ok(api) = super::kube_api::KubeApi::persistent(&self.kube_path())
        {
            for object in api.objects() {
                let ours = object
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(qhub_core::kubernetes::MANAGED_BY_LABEL))
                    .and_then(serde_json::Value::as_str)
                    == Some("qhub")
                    // Not the pods controllers run for our workloads (they carry the
                    // template's labels and an owner reference).
                    && object.pointer("/metadata/ownerReferences").is_none();
                if ours {
                    let kind = object
                        .get("kind")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("?");
                    *out.entry(format!("k8s:{kind}")).or_insert(0) += 1;
                }
            }
        }
        out
    }
}
