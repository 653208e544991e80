//! The built-in sandbox: a simulated cloud provider (network, cluster, node groups with
//! autoscaling bounds, shared storage) with a latency model scaled down from real clouds and
//! fault injection. Its world persists beside the config (`.qhub-sandbox/`), so separate
//! commands see the same state. It is the README's no-credentials demo and the engine's test bed.
//!
//! The cluster's Kubernetes API is [`kube_api::KubeApi`], in memory, persisted beside the world
//! (`.qhub-sandbox/kube-<deployment>.json`) and reached through a real `kube::Client`; the same
//! faults are injected into it.
//!
//! Its own crate, so that an embedder's `qhub-core` compiles no HTTP server and no WebSocket
//! stack: the `qhub` CLI registers it under [`PROVIDER`] (its default `sandbox` feature), and
//! tests take it as a dev-dependency. The feature `conformance` adds `harness`, the sandbox's
//! implementation of `qhub_core::conformance::Harness`.

pub mod conda_store_api;
pub mod faults;
#[cfg(feature = "conformance")]
pub mod harness;
pub mod keycloak_api;
pub mod kube_api;
mod loopback;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use faults::{FaultSpec, Faults};
use qhub_core::config::{Config, ProviderKind};
use qhub_core::plan::{Action, Change, Observed, Resource, ResourceId, ResourceState, Stage};
use qhub_core::provider::facts::{self, SharedFilesystem};
use qhub_core::provider::{
    ApplyContext, Capabilities, ClusterAccess, ClusterFacts, Facts, Known, Ownership, Preflight,
    Provider, ProviderError,
};
use world::{SimResource, World};

/// The `provider:` name the sandbox is registered under (`provider: sandbox`).
pub const PROVIDER: &str = "sandbox";

/// Registers the sandbox under [`PROVIDER`] (the CLI does, behind its default `sandbox`
/// feature; so do tests and embedders that want the simulated cloud).
pub fn register(registry: &mut qhub_core::provider::ProviderRegistry) {
    registry.register(
        PROVIDER,
        Arc::new(|config: &Config, dir: &Path| {
            SandboxProvider::for_config(config, dir).map(|p| Arc::new(p) as Arc<dyn Provider>)
        }),
    );
}

/// The environment variable scaling the latency model (default [`DEFAULT_TIME_SCALE`]).
pub const TIME_SCALE_ENV: &str = "QHUB_SANDBOX_TIME_SCALE";

/// Real cloud seconds become this many sandbox seconds: a 10-minute cluster takes 0.6 s.
pub const DEFAULT_TIME_SCALE: f64 = 0.001;

/// How long operations take on a real cloud, in seconds (REFERENCE.md §4: EKS control plane
/// ~9-15 min, node groups 2-5 min; a VPC and shared storage take well under a minute or two).
pub fn real_seconds(kind: &str, action: Action) -> f64 {
    match (kind, action) {
        ("network", Action::Delete) => 15.0,
        ("network", _) => 20.0,
        ("cluster", Action::Create | Action::Replace) => 600.0,
        ("cluster", Action::Update) => 300.0,
        ("cluster", Action::Delete) => 300.0,
        ("node_group", Action::Create | Action::Replace) => 180.0,
        ("node_group", Action::Update) => 30.0,
        ("node_group", Action::Delete) => 180.0,
        ("storage", Action::Delete) => 30.0,
        ("storage", _) => 60.0,
        _ => 5.0,
    }
}

/// The simulated cloud provider.
#[derive(Debug, Clone)]
pub struct SandboxProvider {
    dir: PathBuf,
    time_scale: f64,
    faults: Arc<Faults>,
    world_lock: Arc<tokio::sync::Mutex<()>>,
    /// The cluster's API, opened on first use; one instance per provider so that every client
    /// of this process shares its state.
    kube: Arc<std::sync::Mutex<Option<kube_api::KubeApi>>>,
    /// Clusters with an operation in progress (`one_op_per_cluster`).
    operations: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// The cluster's Keycloak admin API (an emulator on loopback), started once Keycloak's
    /// admin Secret exists.
    keycloak: Arc<tokio::sync::Mutex<Option<RunningKeycloak>>>,
    /// The cluster's conda-store REST API (an emulator on loopback), started once conda-store's
    /// Secret exists.
    conda_store: Arc<tokio::sync::Mutex<Option<RunningCondaStore>>>,
    /// A store for a cloud-side deploy lock ([`Self::with_lock_store`]) instead of the local
    /// lock beside the world.
    lock_store: Option<Arc<dyn qhub_core::cloud::lock::LockStore>>,
}

/// The emulated Keycloak of a sandbox cluster and the loopback server in front of it.
struct RunningKeycloak {
    api: keycloak_api::KeycloakApi,
    server: keycloak_api::KeycloakServer,
}

impl std::fmt::Debug for RunningKeycloak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningKeycloak")
            .field("url", &self.server.url())
            .finish_non_exhaustive()
    }
}

/// The emulated conda-store of a sandbox cluster and the loopback server in front of it.
#[derive(Debug)]
struct RunningCondaStore {
    api: conda_store_api::CondaStoreApi,
    server: conda_store_api::CondaStoreServer,
}

/// How long a build takes in the sandbox's conda-store, at time scale 1.
const CONDA_STORE_BUILD: Duration = Duration::from_secs(2);

fn failed(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Fatal(e.to_string())
}

impl SandboxProvider {
    /// A sandbox whose world lives in `dir`, with the given time scale and faults.
    pub fn new(dir: &Path, time_scale: f64, faults: FaultSpec) -> Self {
        Self {
            dir: dir.to_path_buf(),
            time_scale,
            faults: Arc::new(Faults::new(faults)),
            world_lock: Arc::new(tokio::sync::Mutex::new(())),
            kube: Arc::new(std::sync::Mutex::new(None)),
            operations: Arc::default(),
            keycloak: Arc::default(),
            conda_store: Arc::default(),
            lock_store: None,
        }
    }

    /// This sandbox with a cloud-side deploy lock in `store` (e.g. a shared
    /// `qhub_core::cloud::lock::MemoryStore`, qhub-core's feature `conformance`), as a cloud
    /// provider takes it, instead of the local lock: for tests of the engine's lock handling and
    /// for embedders.
    pub fn with_lock_store(mut self, store: Arc<dyn qhub_core::cloud::lock::LockStore>) -> Self {
        self.lock_store = Some(store);
        self
    }

    /// The sandbox for a config in `dir`, with time scale and faults from the environment
    /// ([`TIME_SCALE_ENV`], [`faults::FAULTS_ENV`]).
    pub fn for_config(config: &Config, dir: &Path) -> Result<Self, ProviderError> {
        if config.provider != ProviderKind::Sandbox {
            return Err(ProviderError::Fatal(format!(
                "the sandbox provider serves `provider: sandbox`, not `{}`",
                config.provider
            )));
        }
        let time_scale = match std::env::var(TIME_SCALE_ENV) {
            Ok(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| *s >= 0.0 && s.is_finite())
                .ok_or_else(|| {
                    failed(format!("{TIME_SCALE_ENV}={v} is not a non-negative number"))
                })?,
            Err(_) => DEFAULT_TIME_SCALE,
        };
        let faults = match std::env::var(faults::FAULTS_ENV) {
            Ok(v) => FaultSpec::parse(&v).map_err(ProviderError::Fatal)?,
            Err(_) => FaultSpec::default(),
        };
        Ok(Self::new(dir, time_scale, faults))
    }

    /// The world as it is now (for status and tests).
    pub fn world(&self) -> Result<World, ProviderError> {
        World::load(&self.dir).map_err(failed)
    }

    /// The file holding the Kubernetes objects of a deployment's cluster.
    pub fn kube_path(&self, ownership: &Ownership) -> PathBuf {
        self.dir
            .join(world::DIR_NAME)
            .join(format!("kube-{}.json", ownership.prefix()))
    }

    /// The emulated Keycloak, once it runs (for tests: counts, out-of-band edits).
    pub async fn keycloak(&self) -> Option<keycloak_api::KeycloakApi> {
        self.keycloak.lock().await.as_ref().map(|k| k.api.clone())
    }

    /// The emulated conda-store, once it runs (for tests: counts, users' environments).
    pub async fn conda_store(&self) -> Option<conda_store_api::CondaStoreApi> {
        self.conda_store
            .lock()
            .await
            .as_ref()
            .map(|c| c.api.clone())
    }

    /// The file holding the state of a deployment's emulated conda-store.
    pub fn conda_store_path(&self, ownership: &Ownership) -> PathBuf {
        self.dir
            .join(world::DIR_NAME)
            .join(format!("conda-store-{}.json", ownership.prefix()))
    }

    /// The file holding the realms of a deployment's emulated Keycloak.
    pub fn keycloak_path(&self, ownership: &Ownership) -> PathBuf {
        self.dir
            .join(world::DIR_NAME)
            .join(format!("keycloak-{}.json", ownership.prefix()))
    }

    /// The admin password Keycloak bootstraps from: the Secret the Kubernetes stage applied.
    fn keycloak_admin_password(
        &self,
        ownership: &Ownership,
    ) -> Result<Option<String>, ProviderError> {
        Ok(self.kube_api(ownership)?.secret_value(
            &ownership.namespace,
            qhub_core::kubernetes::components::keycloak::ADMIN_SECRET,
            "password",
        ))
    }

    /// The cluster's Kubernetes API (opened from its file on first use).
    pub fn kube_api(&self, ownership: &Ownership) -> Result<kube_api::KubeApi, ProviderError> {
        let mut cached = self
            .kube
            .lock()
            .map_err(|_| failed("sandbox Kubernetes API lock poisoned"))?;
        if let Some(api) = cached.as_ref() {
            return Ok(api.clone());
        }
        let path = self.kube_path(ownership);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        let api = kube_api::KubeApi::persistent(&path).map_err(failed)?;
        *cached = Some(api.clone());
        Ok(api)
    }

    /// A client of the cluster's API with this sandbox's faults injected: 429/503 answers before
    /// a request, lost answers (a 503 after the change was made), and the process "dying" right
    /// after a mutation was carried out.
    fn faulty_client(&self, api: kube_api::KubeApi) -> kube::Client {
        let faults = self.faults.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let api = api.clone();
            let faults = faults.clone();
            async move {
                let what = format!("{} {}", req.method(), req.uri().path());
                // A SubjectAccessReview is a POST that stores nothing: not a mutation.
                let mutating = req.method() != http::Method::GET
                    && !req.uri().path().ends_with("/subjectaccessreviews");
                if let Err(e) = faults.before_call(&what) {
                    let (code, retry_after) = match &e {
                        ProviderError::Throttled { .. } => (429, Some("1")),
                        _ => (503, None),
                    };
                    return Ok(status_response(code, &e.to_string(), retry_after));
                }
                let response = api.handle_request(req).await;
                if mutating
                    && response.status().is_success()
                    && let Err(e) = faults.after_mutation(&what)
                {
                    if !e.is_killed() {
                        // A lost answer: the change was made, the client hears a 503.
                        return Ok(status_response(503, &e.to_string(), None));
                    }
                    return Err(qhub_core::provider::ProcessKilled(e.to_string()));
                }
                Ok(response)
            }
        });
        kube::Client::new(service, "default")
    }

    /// The simulated duration of an operation.
    pub fn latency(&self, kind: &str, action: Action) -> Duration {
        Duration::from_secs_f64(
            real_seconds(kind, action) * self.time_scale * self.faults.slow_factor(),
        )
    }

    fn resource(&self, kind: &str, name: String, spec: serde_json::Value) -> Resource {
        Resource::new(kind, name, Stage::Infrastructure, spec)
            .expected(self.latency(kind, Action::Create))
    }

    /// The cluster a resource belongs to, for the one-operation-per-cluster rule.
    fn cluster_group(ownership: &Ownership) -> String {
        format!("cluster/{}", ownership.prefix())
    }

    /// Starts an operation on the cluster (`one_op_per_cluster`): refused as busy while
    /// another one runs, like GKE's FAILED_PRECONDITION.
    async fn begin_operation(
        &self,
        change: &Change,
        ctx: &ApplyContext,
    ) -> Result<Option<OperationGuard>, ProviderError> {
        let spec = self.faults.spec();
        if !spec.one_op_per_cluster || !matches!(change.id.kind.as_str(), "cluster" | "node_group")
        {
            return Ok(None);
        }
        let group = Self::cluster_group(&ctx.ownership);
        let started = self
            .operations
            .lock()
            .map_err(|_| failed("sandbox operation table poisoned"))?
            .insert(group.clone());
        if !started {
            let _guard = self.world_lock.lock().await;
            let mut world = self.world()?;
            world.stats.rejected += 1;
            world.save(&self.dir).map_err(failed)?;
            return Err(ProviderError::conflict(format!(
                "sandbox: {} {}: FAILED_PRECONDITION: another operation is in progress on {group}",
                change.action.symbol(),
                change.id
            )));
        }
        Ok(Some(OperationGuard {
            operations: self.operations.clone(),
            group,
        }))
    }

    /// A world resource made from a desired one.
    fn sim(
        &self,
        world: &mut World,
        desired: &Resource,
        ctx: &ApplyContext,
        cloud_id: Option<String>,
    ) -> SimResource {
        let cloud_id = cloud_id.unwrap_or_else(|| {
            world.next_id += 1;
            format!("sbx-{}-{:06}", desired.id.kind, world.next_id)
        });
        let spec = self.faults.spec();
        let (state, ready_at_ms, failure) = if spec.fail_once.as_deref()
            == Some(desired.id.kind.as_str())
            && !world.failed_once.contains(&desired.id.kind)
        {
            world.failed_once.push(desired.id.kind.clone());
            (
                "failed".to_string(),
                None,
                Some(format!(
                    "{} creation failed (injected fail_once)",
                    desired.id.kind
                )),
            )
        } else {
            match spec.pending_ms {
                Some(ms) if desired.id.kind == "cluster" => {
                    ("pending".to_string(), Some(now_ms() + ms), None)
                }
                _ => ("active".to_string(), None, None),
            }
        };
        SimResource {
            kind: desired.id.kind.clone(),
            name: desired.id.name.clone(),
            spec: desired.spec.clone(),
            tags: ctx.ownership.tags(),
            depends_on: desired
                .depends_on
                .iter()
                .map(|d| (d.kind.clone(), d.name.clone()))
                .collect(),
            cloud_id,
            state,
            ready_at_ms,
            failure,
        }
    }

    /// A resource's state now (a pending one becomes active once its time has come).
    fn state_of(r: &SimResource) -> ResourceState {
        match r.state.as_str() {
            "failed" => {
                ResourceState::Failed(r.failure.clone().unwrap_or_else(|| "failed".to_string()))
            }
            "pending" if r.ready_at_ms.is_some_and(|t| now_ms() < t) => {
                ResourceState::Pending(format!("{} provisioning", r.kind))
            }
            _ => ResourceState::Ready,
        }
    }

    /// Waits until a just-created resource is ready (the cloud's own wait), or reports its
    /// failure, like a real provider's create.
    async fn wait_created(&self, kind: &str, name: &str) -> Result<(), ProviderError> {
        loop {
            let world = self.world()?;
            let Some(r) = world.resources.get(&World::key(kind, name)) else {
                return Err(failed(format!(
                    "{kind}/{name} vanished while being created"
                )));
            };
            match Self::state_of(r) {
                ResourceState::Ready => return Ok(()),
                ResourceState::Failed(why) => return Err(ProviderError::Fatal(why)),
                ResourceState::Pending(_) => {
                    let wait = r.ready_at_ms.unwrap_or(0).saturating_sub(now_ms()).max(1);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
    }
}

/// Releases the cluster's operation slot when an operation ends.
#[derive(Debug)]
struct OperationGuard {
    operations: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    group: String,
}

impl Drop for OperationGuard {
    fn drop(&mut self) {
        if let Ok(mut running) = self.operations.lock() {
            running.remove(&self.group);
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[async_trait]
impl Provider for SandboxProvider {
    fn name(&self) -> &str {
        "sandbox"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            infrastructure: true,
            cluster_access: true,
            scale_to_zero: true,
            gpu: true,
        }
    }

    fn node_group_keys(&self) -> &'static [&'static str] {
        &[]
    }

    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError> {
        if config.sandbox.is_none() {
            return Err(ProviderError::Fatal(
                "the config has no `sandbox` section".into(),
            ));
        }
        Ok(Preflight::default())
    }

    fn desired(&self, config: &Config, _facts: &Facts) -> Result<Vec<Resource>, ProviderError> {
        let section = config
            .sandbox
            .as_ref()
            .ok_or_else(|| ProviderError::Fatal("the config has no `sandbox` section".into()))?;
        let spec = self.faults.spec();
        let prefix = config.resource_prefix();
        let network = ResourceId::new("network", &prefix);
        let cluster = ResourceId::new("cluster", &prefix);
        let group = Self::cluster_group(&Ownership::of(config));
        let mut cluster_resource = self
            .resource(
                "cluster",
                prefix.clone(),
                json!({"region": section.region, "kubernetes_version": section.kubernetes_version}),
            )
            .depends_on([network.clone()])
            .replace_fields(&["region"])
            .hosts_kubernetes();
        if spec.one_op_per_cluster {
            cluster_resource = cluster_resource.serial_group(group.clone());
        }
        let mut out = vec![
            self.resource(
                "network",
                prefix.clone(),
                json!({"region": section.region, "cidr": "10.10.0.0/16"}),
            )
            .replace_fields(&["region", "cidr"]),
            cluster_resource,
            self.resource(
                "storage",
                format!("{prefix}-shared"),
                json!({"size": config.storage.shared_filesystem, "encrypted": true}),
            )
            .depends_on([network])
            .replace_fields(&["encrypted"]),
        ];
        for (name, node_group) in &section.node_groups {
            let mut r = self
                .resource(
                    "node_group",
                    format!("{prefix}-{name}"),
                    json!({
                        "instance": node_group.instance,
                        "min_nodes": node_group.min_nodes,
                        "max_nodes": node_group.max_nodes,
                        "gpu": node_group.gpu,
                        "labels": {(facts::NODE_GROUP_LABEL): name},
                        "taints": if node_group.gpu { json!(["nvidia.com/gpu=present:NoSchedule"]) } else { json!([]) },
                    }),
                )
                .depends_on([cluster.clone()])
                .replace_fields(&["instance", "gpu"]);
            if spec.pools_with_cluster {
                r = r.created_with(cluster.clone());
            }
            if spec.one_op_per_cluster {
                r = r.serial_group(group.clone());
            }
            out.push(r);
        }
        Ok(out)
    }

    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        self.faults.before_call("observe")?;
        let _guard = self.world_lock.lock().await;
        let world = self.world()?;
        let spec = self.faults.spec();
        let group = Self::cluster_group(ownership);
        let cluster = ResourceId::new("cluster", ownership.prefix());
        Ok(world
            .resources
            .values()
            .filter(|r| ownership.owns(&r.tags))
            .map(|r| {
                let id = ResourceId::new(&r.kind, &r.name);
                let mut o =
                    Observed::new(id, Stage::Infrastructure, r.spec.clone(), Self::state_of(r));
                o.depends_on = r
                    .depends_on
                    .iter()
                    .map(|(k, n)| ResourceId::new(k, n))
                    .collect();
                o.cloud_id = Some(r.cloud_id.clone());
                if matches!(r.kind.as_str(), "cluster" | "node_group") && spec.one_op_per_cluster {
                    o.serial_group = Some(group.clone());
                }
                if r.kind == "node_group" && spec.pools_with_cluster {
                    o.created_with = Some(cluster.clone());
                }
                o
            })
            .collect())
    }

    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        let what = format!("{} {}", change.action.symbol(), change.id);
        self.faults.before_call(&what)?;
        let _operation = self.begin_operation(change, ctx).await?;
        // The cloud's own time, outside the world lock so independent changes overlap.
        tokio::time::sleep(self.latency(&change.id.kind, change.action)).await;
        let guard = self.world_lock.lock().await;
        // A change that was in flight when another one "killed" the process must not land.
        self.faults.check_alive(&what)?;
        let mut world = self.world()?;
        let key = World::key(&change.id.kind, &change.id.name);
        match change.action {
            Action::Wait => {
                return Err(failed(format!(
                    "{what}: the engine waits for resources itself; providers never receive a wait"
                )));
            }
            Action::Create | Action::Update | Action::Replace => {
                let desired = change
                    .desired
                    .as_ref()
                    .ok_or_else(|| failed(format!("{what}: the change has no desired resource")))?;
                for dep in &desired.depends_on {
                    match world.resources.get(&World::key(&dep.kind, &dep.name)) {
                        None => return Err(failed(format!("{what}: {dep} does not exist"))),
                        Some(d) => match Self::state_of(d) {
                            ResourceState::Ready => {}
                            ResourceState::Pending(p) => {
                                return Err(ProviderError::conflict(format!(
                                    "{what}: {dep} is not ready yet ({p})"
                                )));
                            }
                            ResourceState::Failed(why) => {
                                return Err(failed(format!("{what}: {dep} has failed: {why}")));
                            }
                        },
                    }
                }
                let existing = world.resources.get(&key).cloned();
                if let Some(existing) = &existing {
                    // Create of something that exists: adopt it if it is ours (a lost response
                    // or an interrupted run, or a child made by its parent's create), refuse if
                    // it belongs to someone else.
                    if !ctx.ownership.owns(&existing.tags) {
                        return Err(failed(format!(
                            "{what}: a resource with this name exists and is not owned by this deployment"
                        )));
                    }
                    if change.action == Action::Create && existing.spec == desired.spec {
                        drop(guard);
                        return self.wait_created(&change.id.kind, &change.id.name).await;
                    }
                }
                let keep_id = match (change.action, &existing) {
                    (Action::Update | Action::Create, Some(e)) if e.state != "failed" => {
                        Some(e.cloud_id.clone())
                    }
                    _ => None,
                };
                if change.action == Action::Replace {
                    // The old one goes first, and the children created with it go with it.
                    world.resources.retain(|_, r| {
                        !(change.id.kind == "cluster"
                            && r.kind == "node_group"
                            && self.faults.spec().pools_with_cluster
                            && r.depends_on
                                .iter()
                                .any(|(k, n)| *k == change.id.kind && *n == change.id.name))
                    });
                }
                let sim = self.sim(&mut world, desired, ctx, keep_id);
                world.resources.insert(key, sim);
                for child in &ctx.children {
                    let child_key = World::key(&child.id.kind, &child.id.name);
                    if !world.resources.contains_key(&child_key) {
                        let sim = self.sim(&mut world, child, ctx, None);
                        world.resources.insert(child_key, sim);
                    }
                }
            }
            Action::Delete => {
                let Some(existing) = world.resources.get(&key) else {
                    return Ok(());
                };
                if !ctx.ownership.owns(&existing.tags) {
                    return Err(failed(format!(
                        "{what}: not owned by this deployment; refusing to delete"
                    )));
                }
                let with_parent =
                    change.id.kind == "cluster" && self.faults.spec().pools_with_cluster;
                let dependants: Vec<String> = world
                    .resources
                    .iter()
                    .filter(|(_, r)| {
                        r.depends_on
                            .iter()
                            .any(|(k, n)| *k == change.id.kind && *n == change.id.name)
                            && !(with_parent && r.kind == "node_group")
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                if !dependants.is_empty() {
                    return Err(ProviderError::conflict(format!(
                        "{what}: DependencyViolation: still used by {}",
                        dependants.join(", ")
                    )));
                }
                world.resources.remove(&key);
                if with_parent {
                    // Like GKE and DOKS: the cluster's pools go with it.
                    world.resources.retain(|_, r| {
                        !(r.kind == "node_group"
                            && r.depends_on
                                .iter()
                                .any(|(k, n)| *k == change.id.kind && *n == change.id.name))
                    });
                }
                if change.id.kind == "cluster" {
                    // The cluster's objects go with it.
                    if let Ok(mut cached) = self.kube.lock() {
                        *cached = None;
                    }
                    *self.keycloak.lock().await = None;
                    *self.conda_store.lock().await = None;
                    for path in [
                        self.kube_path(&ctx.ownership),
                        self.keycloak_path(&ctx.ownership),
                        self.conda_store_path(&ctx.ownership),
                    ] {
                        match std::fs::remove_file(path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(failed(e)),
                        }
                    }
                }
            }
        }
        world.stats.mutations += 1;
        world.save(&self.dir).map_err(failed)?;
        self.faults.after_mutation(&what)?;
        drop(guard);
        if change.action != Action::Delete {
            // The cloud's wait for the resource to be usable (pending clusters), outside the
            // world lock.
            self.wait_created(&change.id.kind, &change.id.name).await?;
        }
        Ok(())
    }

    fn serves_keycloak(&self) -> bool {
        true
    }

    async fn keycloak_url(&self, ownership: &Ownership) -> Result<Option<String>, ProviderError> {
        // Keycloak bootstraps its admin from the Secret, as the real one does from its env.
        let password = self.keycloak_admin_password(ownership)?.ok_or_else(|| {
            ProviderError::NoCluster(
                "Keycloak has not started: its admin Secret does not exist yet".into(),
            )
        })?;
        let user = qhub_core::kubernetes::components::keycloak::ADMIN_USER;
        let mut running = self.keycloak.lock().await;
        if let Some(k) = running.as_ref() {
            k.api.set_admin(user, &password);
            return Ok(Some(k.server.url()));
        }
        // The sandbox's faults reach its Keycloak too: refused calls at the error and
        // throttle rates, from the same seed.
        let spec = self.faults.spec();
        let options = keycloak_api::KeycloakApiOptions {
            admin_username: user.to_string(),
            admin_password: password,
            fault_rate: (spec.error_rate + spec.throttle_rate).min(1.0),
            seed: spec.seed.unwrap_or(0),
            ..keycloak_api::KeycloakApiOptions::default()
        };
        let api = keycloak_api::KeycloakApi::persistent(options, &self.keycloak_path(ownership))
            .map_err(failed)?;
        let server = api.serve().await.map_err(failed)?;
        let url = server.url();
        *running = Some(RunningKeycloak { api, server });
        Ok(Some(url))
    }

    fn serves_conda_store(&self) -> bool {
        true
    }

    async fn conda_store_url(
        &self,
        ownership: &Ownership,
    ) -> Result<Option<String>, ProviderError> {
        use qhub_core::kubernetes::components::conda_store as component;
        // conda-store signs its tokens with the secret its pods read from the Secret.
        let secret = self
            .kube_api(ownership)?
            .secret_value(&ownership.namespace, component::SECRET, "token-secret")
            .ok_or_else(|| {
                ProviderError::NoCluster(
                    "conda-store has not started: its Secret does not exist yet".into(),
                )
            })?;
        let mut running = self.conda_store.lock().await;
        if let Some(c) = running.as_ref() {
            c.api.set_token_secret(&secret);
            return Ok(Some(c.server.url()));
        }
        let options = conda_store_api::CondaStoreApiOptions {
            token_secret: secret,
            build_delay: CONDA_STORE_BUILD.mul_f64(self.time_scale),
        };
        let api =
            conda_store_api::CondaStoreApi::persistent(options, &self.conda_store_path(ownership))
                .map_err(failed)?;
        let server = api.serve().await.map_err(failed)?;
        let url = server.url();
        *running = Some(RunningCondaStore { api, server });
        Ok(Some(url))
    }

    fn priced_shape(
        &self,
        _config: &Config,
        observed: &[Observed],
    ) -> Option<qhub_core::cost::Shape> {
        let mut shape = qhub_core::kubernetes::priced::shape_of_objects(observed);
        for o in observed.iter().filter(|o| o.stage == Stage::Infrastructure) {
            match o.id.kind.as_str() {
                "cluster" => shape.cluster = true,
                // The simulated storage has the size it was made with (its own, not the NFS
                // claim's: the sandbox's shared filesystem is this resource).
                "storage" => shape.storage = Some(o.spec.get("size")?.as_str()?.to_string()),
                "node_group" => {
                    let group = o
                        .spec
                        .pointer(&format!(
                            "/labels/{}",
                            facts::NODE_GROUP_LABEL.replace('/', "~1")
                        ))?
                        .as_str()?;
                    let count = |key: &str| {
                        o.spec
                            .get(key)
                            .and_then(serde_json::Value::as_u64)
                            .and_then(|n| u32::try_from(n).ok())
                    };
                    shape.node_groups.insert(
                        group.to_string(),
                        qhub_core::cost::GroupShape {
                            instance: o.spec.get("instance")?.as_str()?.to_string(),
                            min_nodes: count("min_nodes")?,
                            max_nodes: count("max_nodes")?,
                            accelerators: false,
                        },
                    );
                }
                _ => {}
            }
        }
        Some(shape)
    }

    fn cluster_facts(&self, config: &Config, infra: &[Observed]) -> ClusterFacts {
        let mut facts = ClusterFacts::from_config(config);
        facts.storage_class = Some("sandbox-ssd".to_string());
        // The shared storage is a cloud resource: its address exists once it does.
        let storage = ResourceId::new("storage", format!("{}-shared", config.resource_prefix()));
        facts.shared_filesystem = match infra.iter().find(|o| o.id == storage) {
            Some(o) => Known::Known(SharedFilesystem::Nfs {
                server: format!(
                    "{}.storage.sandbox.internal",
                    o.cloud_id.as_deref().unwrap_or("unknown")
                ),
                path: "/".to_string(),
            }),
            None => Known::AfterApply,
        };
        facts
    }

    async fn cluster_access(&self, ownership: &Ownership) -> Result<ClusterAccess, ProviderError> {
        self.faults.before_call("cluster access")?;
        let world = self.world()?;
        let cluster = world
            .resources
            .get(&World::key("cluster", &ownership.prefix()))
            .filter(|c| ownership.owns(&c.tags));
        match cluster.map(Self::state_of) {
            None => {
                return Err(ProviderError::NoCluster(format!(
                    "sandbox cluster {} has not been created",
                    ownership.prefix()
                )));
            }
            Some(ResourceState::Ready) => {}
            Some(state) => {
                return Err(ProviderError::NoCluster(format!(
                    "sandbox cluster {} is {state}",
                    ownership.prefix()
                )));
            }
        }
        let api = self.kube_api(ownership)?;
        Ok(ClusterAccess::Client(self.faulty_client(api)))
    }

    async fn lock_store(
        &self,
        _ownership: &Ownership,
    ) -> Result<Option<Arc<dyn qhub_core::cloud::lock::LockStore>>, ProviderError> {
        Ok(self.lock_store.clone())
    }

    fn lock_dir(&self) -> Option<std::path::PathBuf> {
        Some(self.dir.join(world::DIR_NAME))
    }

    async fn lock_holder(&self, ownership: &Ownership) -> Result<Option<String>, ProviderError> {
        if self.lock_store.is_some() {
            return Ok(None);
        }
        let dir = self.dir.join(world::DIR_NAME);
        Ok(qhub_core::provider::local_lock_holder(&dir, ownership))
    }
}

/// A Kubernetes `Status` error answer, as an API server sends it.
fn status_response(
    code: u16,
    message: &str,
    retry_after: Option<&str>,
) -> http::Response<
    http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::convert::Infallible>,
> {
    use http_body_util::BodyExt;
    let reason = if code == 429 {
        "TooManyRequests"
    } else {
        "ServiceUnavailable"
    };
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
    .to_string();
    let mut builder = http::Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(after) = retry_after {
        builder = builder.header(http::header::RETRY_AFTER, after);
    }
    builder
        .body(http_body_util::Full::new(bytes::Bytes::from(body)).boxed_unsync())
        .unwrap_or_else(|_| {
            http::Response::new(http_body_util::Full::new(bytes::Bytes::new()).boxed_unsync())
        })
}
