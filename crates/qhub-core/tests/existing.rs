//! `provider: existing` puts the platform on a cluster the user already has, through a real
//! kubeconfig: here the in-memory Kubernetes API served on loopback.

use std::sync::Arc;
use std::time::Duration;

use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::events::NoEvents;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::existing::ExistingProvider;
use qhub_core::provider::Provider;
use qhub_core::sandbox::kube_api::KubeApi;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_deploys_the_platform_onto_a_kubeconfig_context() {
    let api = KubeApi::new();
    let server = api.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let mut config = render(&InitOptions::new(
        ProviderKind::Existing,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    let provider = ExistingProvider::for_config(&config)
        .unwrap()
        .with_kubeconfig(kubeconfig.clone());
    let engine = Engine::new(
        Arc::new(provider) as Arc<dyn Provider>,
        EngineOptions {
            min_deadline: Duration::from_secs(30),
            deadline_factor: 0.1,
            poll_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    );
    let plan = engine.plan(&config, StageFilter::All).await.unwrap();
    assert!(
        plan.changes
            .iter()
            .all(|c| c.stage == qhub_core::plan::Stage::Kubernetes),
        "no infrastructure on an existing cluster:\n{}",
        plan.render_text()
    );
    // Keycloak's admin API is not reachable from here: the plan says so and how to fix it.
    assert!(
        plan.notes.iter().any(|n| n.contains("QHUB_KEYCLOAK_URL")),
        "{:?}",
        plan.notes
    );
    let (_, report) = engine
        .deploy(
            &config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    let traefik = api
        .objects()
        .into_iter()
        .find(|o| {
            o["kind"] == "Deployment"
                && o.pointer("/metadata/name").and_then(|n| n.as_str()) == Some("traefik")
        })
        .expect("the ingress runs");
    // Pods are placed with the config's node selectors.
    assert_eq!(
        traefik.pointer("/spec/template/spec/nodeSelector"),
        Some(&serde_json::json!({"kubernetes.io/os": "linux"}))
    );
    let before = api.mutations();
    let again = engine.plan(&config, StageFilter::All).await.unwrap();
    assert!(again.is_empty(), "{}", again.render_text());
    assert_eq!(api.mutations(), before);

    // A context that is not in the kubeconfig is named with the key to fix.
    config.existing.as_mut().unwrap().kube_context = Some("nope".into());
    let provider = ExistingProvider::for_config(&config)
        .unwrap()
        .with_kubeconfig(kubeconfig);
    let err = Engine::new(
        Arc::new(provider) as Arc<dyn Provider>,
        EngineOptions::default(),
    )
    .plan(&config, StageFilter::All)
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("existing.kube_context")
            && err.contains("nope")
            && err.contains("qhub-sandbox"),
        "{err}"
    );
}
