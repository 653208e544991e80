//! Both stages against emulators: GKE (infrastructure) and the in-memory Kubernetes API served
//! on loopback, reached through the kubeconfig override (the emulator's cluster endpoints are
//! not API servers). Destroy drains LoadBalancer Services before the cluster goes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use qhub_core::provider::{Ownership, Provider};
use qhub_gcp::{ApiStats, CredentialSource, GcpOptions, GcpProvider};
use qhub_gke_emulator::{GkeEmulator, Options};
use qhub_sandbox::kube_api::KubeApi;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_both_stages_then_destroy_drains_load_balancers() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let kube = KubeApi::new();
    let server = kube
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("kube api");
    // Keycloak "runs" in the cluster: qhub configures it through a port-forward.
    let _keycloak = qhub_sandbox::keycloak_api::KeycloakApi::default()
        .run_in_cluster(&kube, "dev")
        .await
        .unwrap();
    // So does conda-store: qhub registers the config's environments through a port-forward.
    let _conda_store = qhub_sandbox::conda_store_api::run_in_cluster(&kube, "dev")
        .await
        .expect("conda-store emulator");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let config = gcp_config("stages");
    let stats = Arc::new(ApiStats::default());
    let p = || {
        Arc::new(
            GcpProvider::new(
                &config,
                GcpOptions {
                    endpoint: Some(emu.endpoint()),
                    credentials: CredentialSource::Anonymous,
                    poll_interval: Some(Duration::from_millis(1)),
                    stats: Some(stats.clone()),
                    kubeconfig: Some(kubeconfig.clone()),
                    ..GcpOptions::default()
                },
            )
            .unwrap(),
        )
    };
    assert!(p().capabilities().cluster_access);
    let r = deploy(p(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    let k8s_objects = kube.objects().len();
    assert!(k8s_objects > 0, "the Kubernetes stage ran");

    // A LoadBalancer Service someone made by hand: GKE would make a load balancer for it.
    let svc: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hand-made", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": "x"}}
    }))
    .unwrap();
    Api::<Service>::namespaced(kube.client(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .expect("service");

    let r = destroy(p(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    let left_lb = kube
        .objects()
        .into_iter()
        .any(|o| o["kind"] == "Service" && o["spec"]["type"] == "LoadBalancer");
    assert!(!left_lb, "a LoadBalancer Service survived the destroy");
    assert!(census(&emu, &Ownership::of(&config)).is_empty());
    eprintln!(
        "both stages: {k8s_objects} Kubernetes objects; GKE calls {:?}",
        stats.by_operation()
    );
}

/// What `qhub plan/deploy/destroy --stage infrastructure` asks of the engine, with cluster
/// access configured: only GKE is touched, the Kubernetes API is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_infrastructure_stage_alone() {
    use qhub_core::engine::StageFilter;
    use qhub_core::events::NoEvents;
    use qhub_core::plan::Stage;
    use tokio_util::sync::CancellationToken;

    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let kube = KubeApi::new();
    let server = kube.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // Keycloak "runs" in the cluster: qhub configures it through a port-forward.
    let _keycloak = qhub_sandbox::keycloak_api::KeycloakApi::default()
        .run_in_cluster(&kube, "dev")
        .await
        .unwrap();
    // So does conda-store: qhub registers the config's environments through a port-forward.
    let _conda_store = qhub_sandbox::conda_store_api::run_in_cluster(&kube, "dev")
        .await
        .expect("conda-store emulator");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let config = gcp_config("infra");
    let stats = Arc::new(ApiStats::default());
    let p = || {
        Arc::new(
            GcpProvider::new(
                &config,
                GcpOptions {
                    endpoint: Some(emu.endpoint()),
                    credentials: CredentialSource::Anonymous,
                    poll_interval: Some(Duration::from_millis(1)),
                    stats: Some(stats.clone()),
                    kubeconfig: Some(kubeconfig.clone()),
                    ..GcpOptions::default()
                },
            )
            .unwrap(),
        )
    };
    let only = StageFilter::Only(Stage::Infrastructure);
    let plan = engine(p()).plan(&config, only).await.unwrap();
    assert!(
        plan.changes
            .iter()
            .all(|c| c.stage == Stage::Infrastructure)
    );
    assert_eq!(plan.summary().create, 4, "{}", plan.render_text());
    let (_, r) = engine(p())
        .deploy(&config, only, Arc::new(NoEvents), CancellationToken::new())
        .await
        .unwrap();
    assert!(r.succeeded(), "{:?}", r.failed);
    assert_eq!(kube.mutations(), 0, "the Kubernetes stage was not run");
    assert!(engine(p()).plan(&config, only).await.unwrap().is_empty());
    let (_, r) = engine(p())
        .destroy(&config, only, Arc::new(NoEvents), CancellationToken::new())
        .await
        .unwrap();
    assert!(r.succeeded(), "{:?}", r.failed);
    assert!(census(&emu, &Ownership::of(&config)).is_empty());
}
