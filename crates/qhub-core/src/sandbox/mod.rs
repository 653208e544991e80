//! The built-in sandbox: a simulated cloud provider (network, cluster, node groups with
//! autoscaling bounds, shared storage) with a latency model scaled down from real clouds and
//! fault injection. Its world persists beside the config (`.qhub-sandbox/`), so separate
//! commands see the same state. It is the README's no-credentials demo and the engine's test bed.
//!
//! The cluster's Kubernetes API is [`kube_api::KubeApi`], in memory, persisted beside the world
//! (`.qhub-sandbox/kube-<deployment>.json`) and reached through a real `kube::Client`; the same
//! faults are injected into it.

pub mod faults;
pub mod harness;
pub mod kube_api;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use crate::config::{Config, ProviderKind};
use crate::engine::plan::{Action, Change, Observed, Resource, ResourceId, Stage};
use crate::provider::{
    ApplyContext, Capabilities, ClusterAccess, DeployLock, Ownership, Preflight, Provider,
    ProviderError,
};
use faults::{FaultSpec, Faults};
use world::{SimResource, World};

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
}

fn failed(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Failed(e.to_string())
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
        }
    }

    /// The sandbox for a config in `dir`, with time scale and faults from the environment
    /// ([`TIME_SCALE_ENV`], [`faults::FAULTS_ENV`]).
    pub fn for_config(config: &Config, dir: &Path) -> Result<Self, ProviderError> {
        if config.provider != ProviderKind::Sandbox {
            return Err(ProviderError::Failed(format!(
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
            Ok(v) => FaultSpec::parse(&v).map_err(ProviderError::Failed)?,
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
    /// a request, and the process "dying" right after a mutation was carried out.
    fn faulty_client(&self, api: kube_api::KubeApi) -> kube::Client {
        let faults = self.faults.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let api = api.clone();
            let faults = faults.clone();
            async move {
                let what = format!("{} {}", req.method(), req.uri().path());
                let mutating = req.method() != http::Method::GET;
                if let Err(e) = faults.before_call(&what) {
                    let (code, retry_after) = match &e {
                        ProviderError::Retryable {
                            retry_after: Some(_),
                            ..
                        } => (429, Some("1")),
                        _ => (503, None),
                    };
                    return Ok(status_response(code, &e.to_string(), retry_after));
                }
                let response = api.handle_request(req).await;
                if mutating
                    && response.status().is_success()
                    && let Err(e) = faults.after_mutation(&what)
                {
                    return Err(crate::provider::ProcessKilled(e.to_string()));
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

    fn resource(
        &self,
        config: &Config,
        kind: &str,
        name: String,
        spec: serde_json::Value,
        deps: Vec<ResourceId>,
        replace: &[&str],
    ) -> Resource {
        let _ = config;
        Resource {
            id: ResourceId::new(kind, name),
            stage: Stage::Infrastructure,
            spec,
            depends_on: deps,
            replace_fields: replace.iter().map(|s| (*s).to_string()).collect(),
            expected_duration: self.latency(kind, Action::Create),
            payload: None,
        }
    }
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

    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError> {
        if config.sandbox.is_none() {
            return Err(ProviderError::Failed(
                "the config has no `sandbox` section".into(),
            ));
        }
        Ok(Preflight::default())
    }

    fn desired(&self, config: &Config) -> Result<Vec<Resource>, ProviderError> {
        let section = config
            .sandbox
            .as_ref()
            .ok_or_else(|| ProviderError::Failed("the config has no `sandbox` section".into()))?;
        let prefix = config.resource_prefix();
        let network = ResourceId::new("network", &prefix);
        let cluster = ResourceId::new("cluster", &prefix);
        let mut out = vec![
            self.resource(
                config,
                "network",
                prefix.clone(),
                json!({"region": section.region, "cidr": "10.10.0.0/16"}),
                vec![],
                &["region", "cidr"],
            ),
            self.resource(
                config,
                "cluster",
                prefix.clone(),
                json!({"region": section.region, "kubernetes_version": section.kubernetes_version}),
                vec![network.clone()],
                &["region"],
            ),
            self.resource(
                config,
                "storage",
                format!("{prefix}-shared"),
                json!({"size": config.storage.shared_filesystem, "encrypted": true}),
                vec![network],
                &["encrypted"],
            ),
        ];
        for (name, group) in &section.node_groups {
            out.push(self.resource(
                config,
                "node_group",
                format!("{prefix}-{name}"),
                json!({
                    "instance": group.instance,
                    "min_nodes": group.min_nodes,
                    "max_nodes": group.max_nodes,
                    "gpu": group.gpu,
                    "labels": {"qhub.dev/node-group": name},
                    "taints": if group.gpu { json!(["nvidia.com/gpu=present:NoSchedule"]) } else { json!([]) },
                }),
                vec![cluster.clone()],
                &["instance", "gpu"],
            ));
        }
        Ok(out)
    }

    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        self.faults.before_call("observe")?;
        let _guard = self.world_lock.lock().await;
        let world = self.world()?;
        Ok(world
            .resources
            .values()
            .filter(|r| ownership.owns(&r.tags))
            .map(|r| Observed {
                id: ResourceId::new(&r.kind, &r.name),
                stage: Stage::Infrastructure,
                spec: r.spec.clone(),
                depends_on: r
                    .depends_on
                    .iter()
                    .map(|(k, n)| ResourceId::new(k, n))
                    .collect(),
                cloud_id: Some(r.cloud_id.clone()),
                state: r.state.clone(),
                payload: None,
            })
            .collect())
    }

    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        let what = format!("{} {}", change.action.symbol(), change.id);
        self.faults.before_call(&what)?;
        // The cloud's own time, outside the world lock so independent changes overlap.
        tokio::time::sleep(self.latency(&change.id.kind, change.action)).await;
        let _guard = self.world_lock.lock().await;
        // A change that was in flight when another one "killed" the process must not land.
        self.faults.check_alive(&what)?;
        let mut world = self.world()?;
        let key = World::key(&change.id.kind, &change.id.name);
        match change.action {
            Action::Create | Action::Update | Action::Replace => {
                let desired = change
                    .desired
                    .as_ref()
                    .ok_or_else(|| failed(format!("{what}: the change has no desired resource")))?;
                for dep in &desired.depends_on {
                    if !world
                        .resources
                        .contains_key(&World::key(&dep.kind, &dep.name))
                    {
                        return Err(failed(format!("{what}: {dep} does not exist")));
                    }
                }
                if let Some(existing) = world.resources.get(&key) {
                    // Create of something that exists: adopt it if it is ours (a lost response
                    // or an interrupted run), refuse if it belongs to someone else.
                    if !ctx.ownership.owns(&existing.tags) {
                        return Err(failed(format!(
                            "{what}: a resource with this name exists and is not owned by this deployment"
                        )));
                    }
                    if change.action == Action::Create && existing.spec == desired.spec {
                        return Ok(());
                    }
                }
                let cloud_id = match (change.action, world.resources.get(&key)) {
                    (Action::Update | Action::Create, Some(existing)) => existing.cloud_id.clone(),
                    _ => {
                        world.next_id += 1;
                        format!("sbx-{}-{:06}", change.id.kind, world.next_id)
                    }
                };
                world.resources.insert(
                    key,
                    SimResource {
                        kind: change.id.kind.clone(),
                        name: change.id.name.clone(),
                        spec: desired.spec.clone(),
                        tags: ctx.ownership.tags(),
                        depends_on: desired
                            .depends_on
                            .iter()
                            .map(|d| (d.kind.clone(), d.name.clone()))
                            .collect(),
                        cloud_id,
                        state: "active".into(),
                    },
                );
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
                let dependants: Vec<String> = world
                    .resources
                    .iter()
                    .filter(|(_, r)| {
                        r.depends_on
                            .iter()
                            .any(|(k, n)| *k == change.id.kind && *n == change.id.name)
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                if !dependants.is_empty() {
                    return Err(failed(format!(
                        "{what}: DependencyViolation: still used by {}",
                        dependants.join(", ")
                    )));
                }
                world.resources.remove(&key);
                if change.id.kind == "cluster" {
                    // The cluster's objects go with it.
                    if let Ok(mut cached) = self.kube.lock() {
                        *cached = None;
                    }
                    match std::fs::remove_file(self.kube_path(&ctx.ownership)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(failed(e)),
                    }
                }
            }
        }
        world.stats.mutations += 1;
        world.save(&self.dir).map_err(failed)?;
        self.faults.after_mutation(&what)
    }

    async fn cluster_access(&self, ownership: &Ownership) -> Result<ClusterAccess, ProviderError> {
        self.faults.before_call("cluster access")?;
        let world = self.world()?;
        let exists = world
            .resources
            .get(&World::key("cluster", &ownership.prefix()))
            .is_some_and(|c| ownership.owns(&c.tags));
        if !exists {
            return Err(ProviderError::NoCluster(format!(
                "sandbox cluster {} has not been created",
                ownership.prefix()
            )));
        }
        let api = self.kube_api(ownership)?;
        Ok(ClusterAccess::Client(self.faulty_client(api)))
    }

    async fn lock(&self, ownership: &Ownership) -> Result<Option<DeployLock>, ProviderError> {
        let dir = self.dir.join(world::DIR_NAME);
        crate::provider::deploy_lock(&dir, ownership).map(Some)
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
