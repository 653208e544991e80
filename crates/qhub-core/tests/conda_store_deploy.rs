//! conda-store deployed on the sandbox through the engine: its objects are applied, its
//! Keycloak client exists with its callback, the config's environments are registered and built
//! in conda-store (the sandbox's emulator), a re-deploy makes no Kubernetes, Keycloak or
//! conda-store write, a changed environment is one rebuild, a removed one is deleted, users'
//! environments are left alone, and a build that fails fails the deploy naming it.

use std::sync::Arc;
use std::time::Duration;

use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::events::NoEvents;
use qhub_core::kubernetes::components::conda_store;
use qhub_core::provider::{Ownership, Provider};
use qhub_core::{Config, config::Dependency};
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use tokio_util::sync::CancellationToken;

mod support;
use support::{deploy, sandbox_config};

fn config() -> Config {
    sandbox_config()
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
        .filter(|id| {
            id.contains("conda-store") || id.contains("conda_store") || id.contains("CondaStore")
        })
        .collect();
    for id in [
        "Secret/dev/conda-store",
        "ConfigMap/dev/conda-store-config",
        "CondaStoreEnvironment/nebari-git/dask",
        "CondaStoreEnvironment/nebari-git/dashboard",
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

    // The config's environments are built, marked as the config's.
    let cs = provider.conda_store().await.expect("conda-store runs");
    let envs = cs.environments();
    for name in ["nebari-git/dask", "nebari-git/dashboard"] {
        let (_, description) = envs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} not registered: {envs:?}"));
        assert!(
            description.starts_with(qhub_core::engine::conda_store::MARK),
            "{description}"
        );
    }

    // A re-deploy plans nothing and writes nothing.
    let (kube_before, kc_before) = (kube.mutations(), keycloak.counts().mutating);
    let cs_before = cs.counts().mutating;
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
    assert_eq!(
        cs.counts().mutating,
        cs_before,
        "conda-store writes on a no-op"
    );
    println!(
        "conda-store on the sandbox: {} of the first deploy's {} changes; first deploy {first_secs:.2}s, no-op {again_secs:.2}s",
        ours.len(),
        first.changes.len()
    );

    // A changed environment is one rebuild, and no Kubernetes object changes.
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
    assert_eq!(changed, ["~ CondaStoreEnvironment/nebari-git/dask"]);
    assert!(deploy(&engine, &config).await.is_empty(), "not converged");

    // A user's environments, in their namespace and unmarked in the config's, are left alone;
    // an environment removed from the config is deleted.
    let mine = serde_json::json!({"name": "mine", "dependencies": ["python"]});
    cs.register_as_user("alice", &mine);
    cs.register_as_user("nebari-git", &mine);
    config
        .environments
        .shift_remove("environment-dashboard.yaml");
    let plan = deploy(&engine, &config).await;
    // (Dask Gateway offers the config's environments too: its configuration changes.)
    let changed: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.id.kind == "CondaStoreEnvironment")
        .map(|c| format!("{} {}", c.action.symbol(), c.id))
        .collect();
    assert_eq!(changed, ["- CondaStoreEnvironment/nebari-git/dashboard"]);
    let names: Vec<String> = cs.environments().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["nebari-git/dask", "alice/mine", "nebari-git/mine"]);

    // A build that fails fails the deploy, naming the environment, its entry and its log.
    config
        .environments
        .get_mut("environment-dask.yaml")
        .unwrap()
        .dependencies
        .push(Dependency::Package("unsatisfiable-package".into()));
    let (_, report) = engine
        .deploy(
            &config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .expect("deploy runs");
    assert!(!report.succeeded());
    let (id, _, error) = report.failed.first().expect("a failed change");
    assert_eq!(id.to_string(), "CondaStoreEnvironment/nebari-git/dask");
    for part in [
        "nebari-git/dask",
        "environments.environment-dask.yaml",
        "unsatisfiable-package",
        "https://demo.example.com/conda-store/api/v1/build/",
    ] {
        assert!(error.contains(part), "{part} not in: {error}");
    }
    // It keeps failing until the config is fixed: the environment still points at its last
    // good build.
    let again = engine
        .plan(&config, StageFilter::All)
        .await
        .expect("plan runs");
    assert_eq!(again.changes.len(), 1, "{}", again.render_text());
}
