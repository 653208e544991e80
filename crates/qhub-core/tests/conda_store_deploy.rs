//! conda-store deployed on the sandbox through the engine: its objects are applied, its
//! Keycloak client exists with its callback, a re-deploy makes no Kubernetes or Keycloak write,
//! and a changed environment is one ConfigMap update that rolls no pod.

use std::sync::Arc;
use std::time::Duration;

use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::events::NoEvents;
use qhub_core::kubernetes::components::conda_store;
use qhub_core::plan::Action;
use qhub_core::provider::{Ownership, Provider};
use qhub_core::{Config, config::Dependency};
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use tokio_util::sync::CancellationToken;

fn config() -> Config {
    render(&InitOptions::new(
        ProviderKind::Sandbox,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conda_store_deploys_on_the_sandbox_and_stays_converged() {
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
    let started = std::time::Instant::now();
    let first = deploy(&engine, &config).await;
    let first_secs = started.elapsed().as_secs_f64();
    let ours: Vec<String> = first
        .changes
        .iter()
        .map(|c| c.id.to_string())
        .filter(|id| id.contains("conda-store") || id.contains("conda_store"))
        .collect();
    for id in [
        "Secret/dev/conda-store",
        "ConfigMap/dev/conda-store-config",
        "ConfigMap/dev/conda-store-environments",
        "StatefulSet.apps/dev/conda-store-postgres",
        "Deployment.apps/dev/conda-store-redis",
        "Deployment.apps/dev/conda-store-server",
        "Deployment.apps/dev/conda-store-worker",
        "Service/dev/conda-store-server",
        "IngressRoute.traefik.io/dev/conda-store-server",
        "keycloak_client/conda_store",
    ] {
        assert!(ours.iter().any(|o| o == id), "{id} not deployed: {ours:#?}");
    }
    let ownership = Ownership::of(&config);
    let kube = provider.kube_api(&ownership).unwrap();
    let keycloak = provider.keycloak().await.expect("Keycloak runs");
    let client = keycloak
        .client("qhub", conda_store::CLIENT_ID)
        .expect("the conda_store client exists");
    assert_eq!(
        client["redirectUris"],
        serde_json::json!(["https://demo.example.com/conda-store/oauth_callback/"])
    );
    // The generated Secret got its passwords, and kept them out of every manifest.
    let secret = kube
        .objects()
        .into_iter()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == conda_store::SECRET)
        .expect("the Secret exists");
    for key in ["postgres-password", "redis-password", "token-secret"] {
        assert!(secret["data"].get(key).is_some(), "no {key}: {secret}");
    }

    // A re-deploy plans nothing and writes nothing.
    let (kube_before, kc_before) = (kube.mutations(), keycloak.counts().mutating);
    let started = std::time::Instant::now();
    let again = deploy(&engine, &config).await;
    let again_secs = started.elapsed().as_secs_f64();
    assert!(again.is_empty(), "{}", again.render_text());
    assert_eq!(
        kube.mutations(),
        kube_before,
        "Kubernetes writes on a no-op"
    );
    assert_eq!(
        keycloak.counts().mutating,
        kc_before,
        "Keycloak writes on a no-op"
    );
    println!(
        "conda-store on the sandbox: {} of the first deploy's {} changes; first deploy {first_secs:.2}s, no-op {again_secs:.2}s",
        ours.len(),
        first.changes.len()
    );

    // A changed environment is one ConfigMap update: the worker sees the file change in place.
    config
        .environments
        .get_mut("environment-dask.yaml")
        .unwrap()
        .dependencies
        .push(Dependency::Package("xarray".into()));
    let plan = deploy(&engine, &config).await;
    let changed: Vec<String> = plan
        .changes
        .iter()
        .map(|c| format!("{} {}", c.action.symbol(), c.id))
        .collect();
    assert_eq!(plan.changes.len(), 1, "{changed:?}");
    assert_eq!(plan.changes[0].action, Action::Update);
    assert_eq!(
        plan.changes[0].id.to_string(),
        "ConfigMap/dev/conda-store-environments"
    );
}
