//! Dask Gateway deployed on the sandbox through the engine: its CRD is established before any
//! of its objects, the hub token is generated once, a GPU profile's placement reaches the
//! gateway's settings, a re-deploy makes no Kubernetes write, and a config without worker
//! profiles prunes the component.

use std::sync::Arc;
use std::time::Duration;

use qhub_core::Config;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::events::NoEvents;
use qhub_core::kubernetes::components::dask_gateway;
use qhub_core::plan::Action;
use qhub_core::provider::{Ownership, Provider};
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;

/// The sandbox's default config with a GPU group and a profile asking for a GPU.
fn config() -> Config {
    let mut config = render(&InitOptions::new(
        ProviderKind::Sandbox,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    let groups = &mut config.sandbox.as_mut().unwrap().node_groups;
    let mut gpu = groups["worker"].clone();
    gpu.gpu = true;
    groups.insert("gpu".into(), gpu);
    config.profiles.dask_worker.insert(
        "GPU Worker".into(),
        serde_json::from_value(json!({
            "worker_cores_limit": 4, "worker_cores": 3,
            "worker_memory_limit": "16G", "worker_memory": "10G",
            "worker_extra_container_config": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
        }))
        .unwrap(),
    );
    config
}

async fn deploy(engine: &Engine, config: &Config) -> qhub_core::plan::Plan {
    let (plan, report) = engine
        .deploy(
            config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .expect("deploy runs");
    assert!(report.succeeded(), "{report:?}");
    plan
}

fn find<'a>(objects: &'a [Json], kind: &str, name: &str) -> Option<&'a Json> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dask_gateway_deploys_converges_and_is_pruned_without_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = Engine::new(
        Arc::new(provider.clone()) as Arc<dyn Provider>,
        EngineOptions {
            min_deadline: Duration::from_secs(60),
            deadline_factor: 0.01,
            poll_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    );
    let mut config = config();
    let ns = config.namespace.clone();
    deploy(&engine, &config).await;
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    let objects = kube.objects();

    let crd = find(
        &objects,
        "CustomResourceDefinition",
        "daskclusters.gateway.dask.org",
    )
    .expect("the DaskCluster CRD");
    let established = crd["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established, "{crd:#}");
    assert_eq!(
        crd["spec"]["versions"][0]["subresources"],
        json!({"status": {}})
    );
    for (kind, name) in [
        ("Deployment", dask_gateway::API),
        ("Deployment", dask_gateway::CONTROLLER),
        ("Service", dask_gateway::API),
        ("ConfigMap", dask_gateway::config::CONFIG_MAP),
        ("IngressRoute", dask_gateway::API),
        ("Middleware", dask_gateway::CLUSTERS_MIDDLEWARE),
        ("ServiceAccount", dask_gateway::CONTROLLER),
    ] {
        assert!(find(&objects, kind, name).is_some(), "no {kind} {name}");
    }
    let token = kube
        .secret_value(
            &ns,
            dask_gateway::HUB_TOKEN_SECRET,
            dask_gateway::HUB_TOKEN_KEY,
        )
        .expect("the hub token is generated");
    assert!(token.len() >= 32, "a short token: {} chars", token.len());
    let settings: Json = serde_json::from_str(
        find(&objects, "ConfigMap", dask_gateway::config::CONFIG_MAP).unwrap()["data"]
            [dask_gateway::config::SETTINGS_FILE]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let gpu = settings["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "GPU Worker")
        .unwrap();
    assert_eq!(
        gpu["config"]["worker_extra_pod_config"]["nodeSelector"]["qhub.dev/node-group"],
        "gpu"
    );

    // A re-deploy plans nothing, writes nothing, and keeps the token.
    let before = kube.mutations();
    let again = deploy(&engine, &config).await;
    assert!(again.is_empty(), "{}", again.render_text());
    assert_eq!(kube.mutations(), before, "Kubernetes writes on a no-op");
    assert_eq!(
        kube.secret_value(
            &ns,
            dask_gateway::HUB_TOKEN_SECRET,
            dask_gateway::HUB_TOKEN_KEY
        ),
        Some(token)
    );

    // No worker profile: the component is pruned.
    config.profiles.dask_worker.clear();
    let plan = deploy(&engine, &config).await;
    let deleted: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.id.to_string())
        .collect();
    for id in [
        format!("Deployment.apps/{ns}/{}", dask_gateway::API),
        format!("Deployment.apps/{ns}/{}", dask_gateway::CONTROLLER),
        format!("Secret/{ns}/{}", dask_gateway::HUB_TOKEN_SECRET),
    ] {
        assert!(deleted.contains(&id), "{id} not pruned: {deleted:?}");
    }
    let left = kube.objects();
    assert!(find(&left, "Deployment", dask_gateway::API).is_none());
}
