//! Engine behaviour that no provider should be able to break.

use std::sync::Arc;

use async_trait::async_trait;
use qhub_core::Config;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::events::NoEvents;
use qhub_core::plan::{Change, Observed, Resource};
use qhub_core::provider::{
    ApplyContext, Capabilities, Facts, Ownership, Preflight, Provider, ProviderError,
};
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use tokio_util::sync::CancellationToken;

/// The sandbox, except that applying a node group panics.
#[derive(Debug)]
struct Panicky(SandboxProvider);

#[async_trait]
impl Provider for Panicky {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            cluster_access: false,
            ..self.0.capabilities()
        }
    }
    async fn preflight(&self, c: &Config) -> Result<Preflight, ProviderError> {
        self.0.preflight(c).await
    }
    fn desired(&self, c: &Config, f: &Facts) -> Result<Vec<Resource>, ProviderError> {
        self.0.desired(c, f)
    }
    async fn observe(&self, o: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        self.0.observe(o).await
    }
    async fn apply(&self, ch: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        assert!(ch.id.kind != "node_group", "a bug in the provider");
        self.0.apply(ch, ctx).await
    }
}

#[tokio::test]
async fn a_panicking_provider_fails_its_change_and_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = render(&InitOptions::new(
        ProviderKind::Sandbox,
        "panic",
        "panic.example.com",
        "0123456789abcdef",
    ))
    .unwrap();
    let provider = Panicky(SandboxProvider::new(dir.path(), 0.0, FaultSpec::default()));
    let engine = Engine::new(Arc::new(provider), EngineOptions::default());
    let (_, report) = engine
        .deploy(
            &config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .expect("plan");
    assert!(!report.succeeded(), "{report:?}");
    let (id, _, error) = report.failed.first().expect("a failed change");
    assert_eq!(id.kind, "node_group", "{report:?}");
    assert!(
        error.contains("panicked") && error.contains("a bug in the provider"),
        "{error}"
    );
}

/// A tiny cloud with a subnet (its zone cannot change in place), a route table associated with
/// it, a cluster in it and a node group on the cluster. Like EC2, it refuses to delete what is
/// still used (`DependencyViolation`, [`ProviderError::InUse`]), and it can be told that a
/// deleted resource leaves network interfaces behind that hold what it used for a few more
/// delete attempts (a load balancer's, draining).
#[derive(Debug)]
struct TinyCloud {
    zone: std::sync::Mutex<String>,
    cluster: qhub_core::plan::OnDependencyReplaced,
    /// Whether the route table's association holds the subnet's delete (a provider that
    /// declared it would not).
    route_table_holds: bool,
    /// Only the subnet and the route table are wanted.
    network_only: bool,
    items: std::sync::Mutex<std::collections::BTreeMap<ResourceId, serde_json::Value>>,
    /// Delete attempts refused for a resource whatever else happens (something the plan
    /// does not know of uses it), per resource.
    foreign: std::sync::Mutex<std::collections::BTreeMap<ResourceId, u32>>,
    /// Refusals a resource's delete leaves on what it depended on (draining interfaces).
    drains: u32,
    log: std::sync::Mutex<Vec<String>>,
}

use qhub_core::plan::{Action, OnDependencyReplaced, ResourceId, ResourceState, Stage};

fn tiny_id(kind: &str) -> ResourceId {
    ResourceId::new(kind, "tiny")
}

/// What each kind depends on.
fn tiny_deps(kind: &str) -> Vec<ResourceId> {
    match kind {
        "route_table" | "cluster" => vec![tiny_id("subnet")],
        "node_group" => vec![tiny_id("cluster")],
        _ => Vec::new(),
    }
}

impl TinyCloud {
    fn new(cluster: OnDependencyReplaced) -> Self {
        Self {
            zone: std::sync::Mutex::new("a".into()),
            cluster,
            route_table_holds: false,
            network_only: false,
            items: std::sync::Mutex::default(),
            foreign: std::sync::Mutex::default(),
            drains: 0,
            log: std::sync::Mutex::default(),
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn census(&self) -> Vec<String> {
        let items = self.items.lock().unwrap();
        items.keys().map(ToString::to_string).collect()
    }

    fn delete(&self, id: &ResourceId) -> Result<(), ProviderError> {
        let mut items = self.items.lock().unwrap();
        if let Some(n) = self.foreign.lock().unwrap().get_mut(id).filter(|n| **n > 0) {
            *n -= 1;
            return Err(ProviderError::in_use(format!(
                "DependencyViolation: {id} has dependencies and cannot be deleted"
            )));
        }
        let users: Vec<&ResourceId> = items
            .keys()
            .filter(|other| tiny_deps(&other.kind).contains(id))
            .filter(|other| self.route_table_holds || other.kind != "route_table")
            .collect();
        if !users.is_empty() {
            return Err(ProviderError::in_use(format!(
                "DependencyViolation: {id} has dependencies and cannot be deleted"
            )));
        }
        if items.remove(id).is_none() {
            return Err(ProviderError::NotFound(id.to_string()));
        }
        let mut foreign = self.foreign.lock().unwrap();
        for dep in tiny_deps(&id.kind) {
            *foreign.entry(dep).or_default() += self.drains;
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for TinyCloud {
    fn name(&self) -> &str {
        "tiny"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            infrastructure: true,
            cluster_access: false,
            scale_to_zero: false,
            gpu: false,
        }
    }
    async fn preflight(&self, _: &Config) -> Result<Preflight, ProviderError> {
        Ok(Preflight::default())
    }
    fn desired(&self, _: &Config, _: &Facts) -> Result<Vec<Resource>, ProviderError> {
        let zone = self.zone.lock().unwrap().clone();
        let r = |kind: &str, spec: serde_json::Value| {
            Resource::new(kind, "tiny", Stage::Infrastructure, spec).depends_on(tiny_deps(kind))
        };
        let mut out = vec![
            r("subnet", serde_json::json!({"zone": zone}))
                .replace_fields(&["zone"])
                .config_key("zone", "tiny.availability_zones"),
            r("route_table", serde_json::json!({}))
                .on_dependency_replaced(OnDependencyReplaced::Update),
            r("cluster", serde_json::json!({})).on_dependency_replaced(self.cluster.clone()),
            r("node_group", serde_json::json!({})),
        ];
        if self.network_only {
            out.truncate(2);
        }
        Ok(out)
    }
    async fn observe(&self, _: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        let items = self.items.lock().unwrap();
        Ok(items
            .iter()
            .map(|(id, spec)| {
                let mut o = Observed::new(
                    id.clone(),
                    Stage::Infrastructure,
                    spec.clone(),
                    ResourceState::Ready,
                );
                o.depends_on = tiny_deps(&id.kind)
                    .into_iter()
                    .filter(|d| items.contains_key(d))
                    .collect();
                o
            })
            .collect())
    }
    async fn apply(&self, ch: &Change, _: &ApplyContext) -> Result<(), ProviderError> {
        let result = match ch.action {
            Action::Delete => self.delete(&ch.id),
            Action::Replace => self.delete(&ch.id).map(|()| {
                let spec = ch
                    .desired
                    .as_ref()
                    .map(|d| d.spec.clone())
                    .unwrap_or_default();
                self.items.lock().unwrap().insert(ch.id.clone(), spec);
            }),
            _ => {
                let spec = ch
                    .desired
                    .as_ref()
                    .map(|d| d.spec.clone())
                    .unwrap_or_default();
                self.items.lock().unwrap().insert(ch.id.clone(), spec);
                Ok(())
            }
        };
        if result.is_ok() {
            let line = format!("{} {}", ch.action.symbol(), ch.id.kind);
            self.log.lock().unwrap().push(line);
        }
        result
    }
}

fn tiny_config() -> Config {
    render(&InitOptions::new(
        ProviderKind::Sandbox,
        "tiny",
        "tiny.example.com",
        "0123456789abcdef",
    ))
    .unwrap()
}

/// Retries quick enough for a test, with a busy budget long enough that running it out
/// would show (seconds).
fn tiny_options(allow: &[&str], in_use_grace: std::time::Duration) -> EngineOptions {
    use qhub_core::retry::{Budget, RetryPolicy};
    let budget = Budget {
        max_attempts: 10_000,
        max_elapsed: std::time::Duration::from_secs(30),
        base: std::time::Duration::from_millis(5),
        cap: std::time::Duration::from_millis(20),
    };
    EngineOptions {
        retry: RetryPolicy::uniform(budget),
        allow_replace: allow.iter().map(|k| tiny_id(k)).collect(),
        in_use_grace,
        ..EngineOptions::default()
    }
}

async fn tiny_deploy(
    cloud: &Arc<TinyCloud>,
    options: EngineOptions,
) -> Result<qhub_core::engine::ApplyReport, qhub_core::engine::EngineError> {
    let engine = Engine::new(cloud.clone(), options);
    engine
        .deploy(
            &tiny_config(),
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .map(|(_, report)| report)
}

#[tokio::test]
async fn replacing_a_subnet_replaces_what_depends_on_it_or_refuses_naming_both() {
    let grace = std::time::Duration::from_secs(60);
    // The cluster refuses a cascaded replacement: the plan fails, nothing changes.
    let cloud = Arc::new(TinyCloud::new(OnDependencyReplaced::Refuse(
        "every workload on it".into(),
    )));
    let report = tiny_deploy(&cloud, tiny_options(&[], grace)).await.unwrap();
    assert!(report.succeeded(), "{report:?}");
    *cloud.zone.lock().unwrap() = "b".into();
    let before = cloud.log().len();
    let started = std::time::Instant::now();
    let refused = tiny_deploy(&cloud, tiny_options(&[], grace))
        .await
        .expect_err("a refused plan");
    let text = refused.to_string();
    for needle in [
        "subnet/tiny",
        "cluster/tiny",
        "tiny.availability_zones",
        "--allow-replace cluster/tiny",
        "every workload on it",
    ] {
        assert!(text.contains(needle), "{needle} missing from: {text}");
    }
    assert_eq!(
        cloud.log().len(),
        before,
        "a refused plan changed something"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // Allowed: dependants are deleted before the subnet and created after it, and the route
    // table is associated again; one of everything remains.
    let report = tiny_deploy(&cloud, tiny_options(&["cluster"], grace))
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    let log = cloud.log()[before..].to_vec();
    let at = |step: &str| {
        log.iter()
            .position(|s| s == step)
            .unwrap_or_else(|| panic!("{step} not in {log:?}"))
    };
    assert!(at("- node_group") < at("- cluster"), "{log:?}");
    assert!(at("- cluster") < at("- subnet"), "{log:?}");
    assert!(at("- subnet") < at("+ subnet"), "{log:?}");
    assert!(at("+ subnet") < at("~ route_table"), "{log:?}");
    assert!(at("+ subnet") < at("+ cluster"), "{log:?}");
    assert!(at("+ cluster") < at("+ node_group"), "{log:?}");
    assert_eq!(
        cloud.census(),
        [
            "cluster/tiny",
            "node_group/tiny",
            "route_table/tiny",
            "subnet/tiny"
        ]
    );
    assert_eq!(report.retries, 0, "{report:?}");
    let engine = Engine::new(cloud.clone(), tiny_options(&[], grace));
    let plan = engine.plan(&tiny_config(), StageFilter::All).await.unwrap();
    assert!(plan.is_empty(), "{}", plan.render_text());
}

#[tokio::test]
async fn a_delete_held_by_a_dependant_that_stays_fails_at_once_naming_both() {
    // The provider declared the route table survives the subnet's replacement, but the cloud
    // refuses the subnet's delete while it is associated: waiting cannot help, the route table
    // is only updated after the subnet's create.
    let mut cloud = TinyCloud::new(OnDependencyReplaced::Replace);
    cloud.route_table_holds = true;
    cloud.network_only = true;
    let cloud = Arc::new(cloud);
    let grace = std::time::Duration::from_secs(60);
    assert!(
        tiny_deploy(&cloud, tiny_options(&[], grace))
            .await
            .unwrap()
            .succeeded()
    );
    *cloud.zone.lock().unwrap() = "b".into();
    let started = std::time::Instant::now();
    let report = tiny_deploy(&cloud, tiny_options(&[], grace)).await.unwrap();
    let elapsed = started.elapsed();
    assert!(!report.succeeded());
    let (id, _, error) = report.failed.first().expect("a failed change");
    assert_eq!(id.to_string(), "subnet/tiny");
    assert!(
        error.contains("DependencyViolation") && error.contains("route_table/tiny"),
        "{error}"
    );
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "took {elapsed:?}: retried instead of failing at once"
    );
}

#[tokio::test]
async fn a_delete_held_by_something_outside_the_plan_fails_after_a_short_grace() {
    let cloud = Arc::new(TinyCloud::new(OnDependencyReplaced::Replace));
    let grace = std::time::Duration::from_millis(300);
    assert!(
        tiny_deploy(&cloud, tiny_options(&[], grace))
            .await
            .unwrap()
            .succeeded()
    );
    // Something the plan does not know of uses the node group for good.
    cloud
        .foreign
        .lock()
        .unwrap()
        .insert(tiny_id("node_group"), u32::MAX);
    let engine = Engine::new(cloud.clone(), tiny_options(&[], grace));
    let started = std::time::Instant::now();
    let (_, report) = engine
        .destroy(
            &tiny_config(),
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(!report.succeeded());
    let (id, _, error) = report.failed.first().expect("a failed change");
    assert_eq!(id.to_string(), "node_group/tiny");
    assert!(
        error.contains("outside the plan") && error.contains("DependencyViolation"),
        "{error}"
    );
    // The busy budget is 30 s here; the grace 0.3 s.
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "took {elapsed:?}"
    );
}

#[tokio::test]
async fn a_delete_held_while_what_a_deleted_dependant_left_drains_is_retried_until_it_clears() {
    let mut cloud = TinyCloud::new(OnDependencyReplaced::Replace);
    // Each delete leaves its dependencies held for three more attempts.
    cloud.drains = 3;
    let cloud = Arc::new(cloud);
    // No grace at all: only "something this apply deleted may be draining" keeps it retrying.
    let grace = std::time::Duration::ZERO;
    assert!(
        tiny_deploy(&cloud, tiny_options(&[], grace))
            .await
            .unwrap()
            .succeeded()
    );
    let engine = Engine::new(cloud.clone(), tiny_options(&[], grace));
    let (_, report) = engine
        .destroy(
            &tiny_config(),
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert!(report.retries >= 3, "{report:?}");
    assert!(cloud.census().is_empty(), "{:?}", cloud.census());
}
