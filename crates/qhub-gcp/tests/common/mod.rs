//! What the emulator tests share: the config `qhub init gcp` writes, a provider pointed at an
//! in-process GKE emulator, the conformance harness, deploy/destroy helpers.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use qhub_core::Config;
use qhub_core::config::CiKind;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::{GuestAccelerator, NodeGroup, ProviderKind};
use qhub_core::conformance::{Faults, Harness, Knobs};
use qhub_core::engine::{ApplyReport, Engine};
use qhub_core::plan::{Change, Observed, Resource};
use qhub_core::provider::{
    ApplyContext, Capabilities, ClusterAccess, ClusterFacts, Facts, Ownership, Preflight,
    ProcessKilled, Provider, ProviderError,
};
use qhub_gcp::{ApiStats, CredentialSource, GcpOptions, GcpProvider};
use qhub_gke_emulator::{GkeEmulator, Options};
use qhub_sandbox::kube_api::{KubeApi, Server};

/// The GCP project of the tests.
pub const PROJECT: &str = "qhub-test-123";

/// The config `qhub init gcp` writes.
pub fn gcp_config(project: &str) -> Config {
    render(&InitOptions {
        ci: CiKind::None,
        gcp_project: Some(PROJECT.into()),
        ..InitOptions::new(
            ProviderKind::Gcp,
            project,
            "gke.example.com",
            "0123456789abcdef",
        )
    })
    .expect("render")
}

/// The default config plus a GPU group (one T4 per node, scale from zero).
pub fn gpu_config(project: &str) -> Config {
    let mut c = gcp_config(project);
    let gcp = c.google_cloud_platform.as_mut().expect("gcp section");
    gcp.node_groups.insert(
        "gpu".into(),
        NodeGroup {
            instance: "n1-standard-8".into(),
            min_nodes: 0,
            max_nodes: 2,
            gpu: false,
            guest_accelerators: vec![GuestAccelerator {
                name: "nvidia-tesla-t4".into(),
                count: 1,
            }],
            extra: serde_json::Map::from_iter([("spot".to_string(), serde_json::json!(true))]),
        },
    );
    c
}

/// A provider on `emu` with anonymous credentials (loopback only) and fast polls.
pub fn provider(emu: &GkeEmulator, config: &Config, stats: Arc<ApiStats>) -> GcpProvider {
    provider_with(emu, config, stats, CredentialSource::Anonymous)
}

/// A provider on `emu` with the given credentials.
pub fn provider_with(
    emu: &GkeEmulator,
    config: &Config,
    stats: Arc<ApiStats>,
    credentials: CredentialSource,
) -> GcpProvider {
    GcpProvider::new(
        config,
        GcpOptions {
            endpoint: Some(emu.endpoint()),
            credentials,
            poll_interval: Some(Duration::from_millis(1)),
            stats: Some(stats),
            retry: Some(qhub_core::conformance::test_policy()),
            ..GcpOptions::default()
        },
    )
    .expect("provider")
}

/// An engine with the conformance suite's settings.
pub fn engine(p: Arc<dyn Provider>) -> Engine {
    qhub_core::conformance::test_engine(p)
}

/// Plans and applies `config` (under the engine's lock).
pub async fn deploy(p: Arc<dyn Provider>, config: &Config) -> ApplyReport {
    qhub_core::conformance::deploy_once(&engine(p), config)
        .await
        .expect("deploy")
}

/// Plans and applies the destruction of `config`'s deployment.
pub async fn destroy(p: Arc<dyn Provider>, config: &Config) -> ApplyReport {
    qhub_core::conformance::destroy_once(&engine(p), config)
        .await
        .expect("destroy")
}

/// Counts the resources carrying `ownership`'s labels, straight from the emulator.
pub fn census(emu: &GkeEmulator, ownership: &Ownership) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (_, _, c) in emu.clusters() {
        let labels: BTreeMap<String, String> = c["resourceLabels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if qhub_gcp::desired::owned(ownership, &labels) {
            *out.entry("cluster".to_string()).or_insert(0) += 1;
            let pools = c["nodePools"].as_array().map_or(0, Vec::len);
            *out.entry("node_pool".to_string()).or_insert(0) += pools;
        }
    }
    out
}

/// The provider, "killed" the moment the emulator drops an answer (die-after): whatever it
/// was doing stops there, as a process that died would.
#[derive(Debug)]
pub struct Killable {
    pub inner: GcpProvider,
    pub emu: Arc<GkeEmulator>,
}

impl Killable {
    async fn run<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let dead = || ProviderError::other(ProcessKilled(format!("{what}: the process died")));
        if self.emu.killed() {
            return Err(dead());
        }
        let watch = async {
            while !self.emu.killed() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::select! {
            r = fut => if self.emu.killed() { Err(dead()) } else { r },
            () = watch => Err(dead()),
        }
    }
}

#[async_trait]
impl Provider for Killable {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError> {
        self.inner.preflight(config).await
    }
    fn node_group_keys(&self) -> &'static [&'static str] {
        self.inner.node_group_keys()
    }
    async fn discover(&self, config: &Config) -> Result<Facts, ProviderError> {
        self.run("discover", self.inner.discover(config)).await
    }
    fn desired(&self, config: &Config, facts: &Facts) -> Result<Vec<Resource>, ProviderError> {
        self.inner.desired(config, facts)
    }
    fn cluster_facts(&self, config: &Config, infra: &[Observed]) -> ClusterFacts {
        self.inner.cluster_facts(config, infra)
    }
    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        self.run("observe", self.inner.observe(ownership)).await
    }
    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        let what = format!("{} {}", change.action.symbol(), change.id);
        self.run(&what, self.inner.apply(change, ctx)).await
    }
    async fn cluster_access(&self, ownership: &Ownership) -> Result<ClusterAccess, ProviderError> {
        self.inner.cluster_access(ownership).await
    }
}

/// The cluster's Kubernetes API for the emulated GKE cluster: the in-memory API served on
/// loopback, reached through the kubeconfig override.
pub struct Cluster {
    pub api: KubeApi,
    pub server: Server,
    pub dir: tempfile::TempDir,
    /// Keycloak "running" in the cluster (reached through port-forwards).
    pub keycloak: qhub_sandbox::keycloak_api::KeycloakApi,
    pub keycloak_server: qhub_sandbox::keycloak_api::KeycloakServer,
    /// conda-store "running" in the cluster (reached through port-forwards).
    pub conda_store_server: qhub_sandbox::conda_store_api::CondaStoreServer,
}

impl Cluster {
    /// A fresh, empty API and its kubeconfig.
    pub async fn start() -> Self {
        let api = KubeApi::new();
        let server = api
            .serve("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("kube api");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("kubeconfig"), server.kubeconfig()).expect("kubeconfig");
        let keycloak = qhub_sandbox::keycloak_api::KeycloakApi::default();
        let keycloak_server = keycloak
            .run_in_cluster(&api, "dev")
            .await
            .expect("keycloak emulator");
        let (_, conda_store_server) = qhub_sandbox::conda_store_api::run_in_cluster(&api, "dev")
            .await
            .expect("conda-store emulator");
        Self {
            api,
            server,
            dir,
            keycloak,
            keycloak_server,
            conda_store_server,
        }
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("kubeconfig")
    }
}

/// The conformance harness: one emulator, a provider per run with the faults injected at
/// the API (429, 503, die-after) by the emulator itself; optionally a Kubernetes API for the
/// cluster, so the Kubernetes stage runs too.
pub struct GkeHarness {
    pub emu: Arc<GkeEmulator>,
    pub config: Config,
    pub stats: Arc<ApiStats>,
    pub cluster: Option<std::sync::Mutex<Cluster>>,
}

impl GkeHarness {
    /// A harness on a fresh emulator (infrastructure stage only: the emulator's clusters have
    /// no API server).
    pub async fn start(config: Config) -> Self {
        Self {
            emu: Arc::new(
                GkeEmulator::start(Options::default())
                    .await
                    .expect("emulator"),
            ),
            config,
            stats: Arc::new(ApiStats::default()),
            cluster: None,
        }
    }

    /// A harness whose clusters are reached through a kubeconfig override to an in-memory
    /// Kubernetes API: both stages run.
    pub async fn with_cluster(config: Config) -> Self {
        let mut h = Self::start(config).await;
        h.cluster = Some(std::sync::Mutex::new(Cluster::start().await));
        h
    }

    fn kube(&self) -> Option<(KubeApi, std::path::PathBuf)> {
        self.cluster.as_ref().map(|c| {
            let c = c.lock().expect("cluster lock");
            (c.api.clone(), c.kubeconfig())
        })
    }
}

#[async_trait]
impl Harness for GkeHarness {
    fn config(&self) -> Config {
        self.config.clone()
    }

    fn provider(&self, faults: Faults) -> Arc<dyn Provider> {
        self.emu.set_faults(qhub_gke_emulator::Faults {
            throttle_rate: faults.throttle_rate,
            error_rate: faults.error_rate,
            die_after: faults.die_after,
            seed: faults.seed,
            lost_rate: faults.lost_rate,
            ..qhub_gke_emulator::Faults::default()
        });
        // `pending`: a created cluster stays PROVISIONING for ~0.3 s (GKE's 7 minutes scaled).
        let scale = if faults.pending { 0.3 / 420.0 } else { 0.0 };
        self.emu.set_timing(Options::default().min_polls, scale);
        if faults.fail_once.as_deref() == Some("cluster") {
            self.emu.fail_next(
                "CREATE_CLUSTER",
                "Insufficient regional quota to satisfy request: resource \"CPUS\"",
            );
        }
        let inner = GcpProvider::new(
            &self.config,
            GcpOptions {
                endpoint: Some(self.emu.endpoint()),
                credentials: CredentialSource::Anonymous,
                poll_interval: Some(Duration::from_millis(1)),
                stats: Some(self.stats.clone()),
                kubeconfig: self.kube().map(|(_, path)| path),
                retry: Some(qhub_core::conformance::test_policy()),
                ..GcpOptions::default()
            },
        )
        .expect("provider");
        Arc::new(Killable {
            inner,
            emu: self.emu.clone(),
        })
    }

    async fn reset(&self) {
        self.emu.reset();
        if let Some(c) = &self.cluster {
            let fresh = Cluster::start().await;
            // Same kubeconfig path, new server: rewrite the file the providers read.
            let mut c = c.lock().expect("cluster lock");
            std::fs::write(c.kubeconfig(), fresh.server.kubeconfig()).expect("kubeconfig");
            c.api = fresh.api;
            c.server = fresh.server;
            c.keycloak = fresh.keycloak;
            c.keycloak_server = fresh.keycloak_server;
            c.conda_store_server = fresh.conda_store_server;
        }
    }

    async fn mutations(&self) -> u64 {
        self.emu.counters().mutations + self.kube().map_or(0, |(api, _)| api.mutations())
    }

    async fn rejected(&self) -> u64 {
        self.emu.counters().rejected
    }

    fn knobs(&self) -> Knobs {
        Knobs {
            pending: true,
            fail_once: true,
            lost_answers: true,
        }
    }

    async fn census(&self, ownership: &Ownership) -> BTreeMap<String, usize> {
        let mut out = census(&self.emu, ownership);
        if let Some((api, _)) = self.kube() {
            for o in api.objects() {
                let ours = o
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(qhub_core::kubernetes::MANAGED_BY_LABEL))
                    .and_then(serde_json::Value::as_str)
                    == Some("qhub");
                if ours {
                    let kind = o["kind"].as_str().unwrap_or("?");
                    *out.entry(format!("k8s:{kind}")).or_insert(0) += 1;
                }
            }
        }
        out
    }
}
