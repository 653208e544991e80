//! `provider: existing` puts the platform on a cluster the user already has, through a real
//! kubeconfig: here the in-memory Kubernetes API served on loopback.

use std::sync::Arc;
use std::time::Duration;

use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::events::NoEvents;
use qhub_core::existing::ExistingProvider;
use qhub_core::provider::Provider;
use qhub_sandbox::keycloak_api::KeycloakApi;
use qhub_sandbox::kube_api::KubeApi;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_deploys_the_platform_onto_a_kubeconfig_context() {
    let api = KubeApi::new();
    let server = api.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // Keycloak "runs" in the cluster: port-forwards to its pods reach the admin-API emulator.
    let keycloak = KeycloakApi::default();
    let _in_cluster = keycloak.run_in_cluster(&api, "dev").await.unwrap();
    // So does conda-store: qhub registers the config's environments through a port-forward.
    let _conda_store = qhub_sandbox::conda_store_api::run_in_cluster(&api, "dev")
        .await
        .expect("conda-store emulator");
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
    // The example component (feature `example-component`, on in these tests) is the one with a
    // login client: its client is configured through the port-forward too.
    qhub_core::kubernetes::components::example::enable(&mut config, "hello", "hi").unwrap();
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
    // Keycloak's configuration is planned: once Keycloak runs, qhub reaches its admin API
    // through a port-forward, with no QHUB_KEYCLOAK_URL, DNS or load balancer.
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    assert!(
        plan.changes
            .iter()
            .any(|c| c.id.to_string() == "keycloak_client/hello"),
        "{}",
        plan.render_text()
    );
    let started = std::time::Instant::now();
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
    // The realm and its clients were made through the port-forward.
    let counts = keycloak.counts();
    eprintln!(
        "existing: deploy through a kubeconfig took {:?}; Keycloak through the port-forward: {counts:?}",
        started.elapsed()
    );
    assert!(counts.mutating > 5, "{counts:?}");
    assert!(keycloak.client("qhub", "hello").is_some());
    assert!(keycloak.group_names("qhub").contains(&"admin".to_string()));
    let before = api.mutations();
    let again = engine.plan(&config, StageFilter::All).await.unwrap();
    assert!(again.is_empty(), "{}", again.render_text());
    assert_eq!(api.mutations(), before);
    assert_eq!(keycloak.counts().mutating, counts.mutating);
    eprintln!("existing: no-op plan: Keycloak {:?}", keycloak.counts());

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_preflight_reads_the_default_storage_class_and_the_nodes_labels() {
    use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
    let api = KubeApi::new();
    let server = api.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let config = render(&InitOptions::new(
        ProviderKind::Existing,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    let provider = ExistingProvider::for_config(&config)
        .unwrap()
        .with_kubeconfig(kubeconfig);
    let client = api.client();
    let create = |body: serde_json::Value| {
        let client = client.clone();
        async move {
            let obj: DynamicObject = serde_json::from_value(body).unwrap();
            let (ar, _) = kube::discovery::pinned_kind(
                &client,
                &kube::core::GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap(),
            )
            .await
            .unwrap();
            Api::<DynamicObject>::all_with(client, &ar)
                .create(&PostParams::default(), &obj)
                .await
                .unwrap();
        }
    };

    // No StorageClass at all: the platform's volumes would never bind.
    let err = provider.preflight(&config).await.unwrap_err().to_string();
    assert!(
        err.contains("no default StorageClass (it has: none)")
            && err.contains("install a storage provisioner"),
        "{err}"
    );
    // A class that is not the default: named, with the command that makes it the default.
    create(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard"}, "provisioner": "rancher.io/local-path",
    }))
    .await;
    let err = provider.preflight(&config).await.unwrap_err().to_string();
    assert!(
        err.contains("(it has: standard)")
            && err.contains("kubectl annotate storageclass standard storageclass.kubernetes.io/is-default-class=true"),
        "{err}"
    );
    let classes: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "storage.k8s.io",
            "v1",
            "StorageClass",
        )),
    );
    classes
        .patch(
            "standard",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}}})),
        )
        .await
        .unwrap();

    // The default config places every group on `kubernetes.io/os: linux`: a cluster of
    // Windows nodes carries none of it, and each group's key is named.
    create(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "win-1", "labels": {"kubernetes.io/os": "windows"}},
    }))
    .await;
    let warnings = provider.preflight(&config).await.unwrap().warnings;
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("existing.node_selectors.general")
                && w.contains("nodes carry kubernetes.io/os=windows")
                && w.contains("kubectl label node NAME kubernetes.io/os=linux")),
        "{warnings:#?}"
    );
    // A Linux node joins: nothing left to say.
    create(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "linux-1", "labels": {"kubernetes.io/os": "linux"}},
    }))
    .await;
    let warnings = provider.preflight(&config).await.unwrap().warnings;
    assert!(warnings.is_empty(), "{warnings:#?}");
}
