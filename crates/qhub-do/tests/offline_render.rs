//! What `qhub render` writes offline for DigitalOcean is what a deploy applies: the objects
//! built from [`qhub_do::facts::cluster_facts`] (no token, no client) are compared with the
//! objects a deploy of both stages left in the cluster (the DOKS emulator for the cloud, the
//! in-memory Kubernetes API as the cluster, through the kubeconfig override). On DOKS nothing
//! waits for the apply: no object may differ.

mod common;

use std::sync::Arc;

use qhub_core::engine::events::NoEvents;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::kubernetes::compare::check_render;
use qhub_core::provider::Provider;
use qhub_do::DigitalOceanProvider;
use qhub_sandbox::keycloak_api::KeycloakApi;
use qhub_sandbox::kube_api::KubeApi;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_render_is_what_a_doks_deploy_applies() {
    let config = common::do_config("offline");
    let facts = qhub_do::facts::cluster_facts(&config);
    assert!(facts.unknown().is_empty(), "{:?}", facts.unknown());
    let rendered = qhub_core::kubernetes::desired(&config, &facts).unwrap();

    let emu = common::emulator().await;
    let api = KubeApi::new();
    let server = api
        .serve(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("kube api");
    let _keycloak = KeycloakApi::default()
        .run_in_cluster(&api, "dev")
        .await
        .expect("keycloak emulator");
    // So does conda-store: qhub registers the config's environments through a port-forward.
    let _conda_store = qhub_sandbox::conda_store_api::run_in_cluster(&api, "dev")
        .await
        .expect("conda-store emulator");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let provider: Arc<dyn Provider> = Arc::new(
        DigitalOceanProvider::new(
            &config,
            qhub_do::DoOptions {
                kubeconfig: Some(kubeconfig),
                ..common::options(&emu, Arc::default())
            },
        )
        .expect("provider"),
    );
    let engine = Engine::new(
        provider.clone(),
        EngineOptions {
            min_deadline: std::time::Duration::from_secs(120),
            observe_deadline: std::time::Duration::from_secs(60),
            poll_interval: std::time::Duration::from_millis(20),
            ..EngineOptions::default()
        },
    );
    let (_, report) = engine
        .deploy(
            &config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .expect("deploy runs");
    assert!(report.succeeded(), "deploy: {report:?}");
    let check = check_render(&*provider, &config, &rendered).await.unwrap();
    let c = &check.rendered;
    println!("digitalocean: {}", c.summary());
    assert!(c.differ.is_empty(), "{:#?}", c.differ);
    assert!(c.placeholders.is_empty(), "{:#?}", c.placeholders);
    assert!(c.same > 0);

    // The comparison can fail: the generic facts `qhub render` used without a token differ
    // from what DOKS gets (node-pool label, `do-block-storage`, load-balancer annotations).
    let c = &check.generic;
    assert!(!c.differ.is_empty(), "{}", c.summary());
}
