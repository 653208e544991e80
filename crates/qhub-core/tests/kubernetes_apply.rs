//! The Kubernetes apply layer against the in-memory API served on loopback HTTP, reached
//! through a kubeconfig (the path real clusters take).

use std::time::Duration;

use qhub_core::config::CiKind;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::kubernetes::apply::Applier;
use qhub_core::kubernetes::applyset::ApplySet;
use qhub_core::kubernetes::{self, KubeError};
use qhub_core::plan::{self, Action};
use qhub_core::provider::ClusterAccess;
use qhub_sandbox::kube_api::KubeApi;
use serde_json::json;

fn config() -> qhub_core::Config {
    render(&InitOptions {
        ci: CiKind::None,
        ..InitOptions::new(
            ProviderKind::Sandbox,
            "demo",
            "demo.example.com",
            "0123456789abcdef",
        )
    })
    .expect("render")
}

async fn served() -> (KubeApi, qhub_sandbox::kube_api::Server, Applier) {
    let api = KubeApi::new();
    let server = api
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("serve");
    let access = ClusterAccess::Kubeconfig {
        text: server.kubeconfig(),
        expires_in: None,
    };
    let client = access.client().await.expect("client from kubeconfig");
    (api, server, Applier::new(client))
}

const DEADLINE: Duration = Duration::from_secs(10);

async fn apply_all(applier: &Applier, resources: &[plan::Resource]) {
    for r in resources {
        let manifest = r.payload.as_ref().unwrap_or(&r.spec);
        applier
            .apply(manifest, &r.spec, DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", r.id));
    }
}

#[tokio::test]
async fn apply_then_observe_plans_nothing_and_makes_no_write() {
    let (api, _server, applier) = served().await;
    let desired = kubernetes::desired(&config(), &facts(&config())).unwrap();
    apply_all(&applier, &desired).await;
    let set = ApplySet::new("dev");
    let observed = applier.observe(&set, &[]).await.unwrap();
    assert_eq!(observed.len(), desired.len(), "{observed:#?}");
    let p = plan::diff(&desired, &observed);
    assert!(p.is_empty(), "{}", p.render_text());
    // Applying the same again changes nothing on the server.
    let before = api.mutations();
    apply_all(&applier, &desired).await;
    assert_eq!(
        api.mutations(),
        before,
        "an identical server-side apply must not write"
    );
}

#[tokio::test]
async fn an_edit_is_an_update_with_a_field_diff_and_force_retakes_fields() {
    let (_api, _server, applier) = served().await;
    let mut cfg = config();
    apply_all(&applier, &kubernetes::desired(&cfg, &facts(&cfg)).unwrap()).await;
    cfg.theme
        .jupyterhub
        .insert("hub_title".into(), json!("New title"));
    let desired = kubernetes::desired(&cfg, &facts(&cfg)).unwrap();
    let observed = applier.observe(&ApplySet::new("dev"), &[]).await.unwrap();
    let p = plan::diff(&desired, &observed);
    // The theme reaches the welcome page and JupyterHub's templates: the two ConfigMaps, and
    // the hub, which reads its ConfigMap, rolls (its config digest); nothing else changes.
    let ids: Vec<String> = p.changes.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(
        ids,
        [
            "ConfigMap/dev/qhub-welcome",
            "ConfigMap/dev/hub-config",
            "Deployment.apps/dev/hub"
        ],
        "{}",
        p.render_text()
    );
    assert!(p.changes.iter().all(|c| c.action == Action::Update));
    let welcome = &p.changes[0];
    assert_eq!(welcome.diff[0].field, "data.index.html");
    apply_all(&applier, &desired).await;
    let observed = applier.observe(&ApplySet::new("dev"), &[]).await.unwrap();
    assert!(plan::diff(&desired, &observed).is_empty());
}

#[tokio::test]
async fn objects_no_longer_wanted_are_pruned() {
    let (_api, _server, applier) = served().await;
    let all = kubernetes::desired(&config(), &facts(&config())).unwrap();
    apply_all(&applier, &all).await;
    // The config without the welcome component: its four objects (with its route) must be planned for deletion.
    let fewer: Vec<_> = all
        .iter()
        .filter(|r| !r.id.name.ends_with("qhub-welcome"))
        .cloned()
        .collect();
    let observed = applier.observe(&ApplySet::new("dev"), &[]).await.unwrap();
    let p = plan::diff(&fewer, &observed);
    let deletes: Vec<String> = p
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(deletes.len(), 4, "{}", p.render_text());
    for c in p.changes.iter().filter(|c| c.action == Action::Delete) {
        let target = c
            .observed
            .as_ref()
            .and_then(|o| o.payload.as_ref())
            .expect("payload");
        applier.delete(target, DEADLINE).await.unwrap();
    }
    let observed = applier.observe(&ApplySet::new("dev"), &[]).await.unwrap();
    assert!(plan::diff(&fewer, &observed).is_empty());
    // Deleting what is already gone is fine.
    let gone = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "qhub-welcome", "namespace": "dev"}});
    applier.delete(&gone, DEADLINE).await.unwrap();
}

#[tokio::test]
async fn a_rollout_that_never_becomes_ready_fails_at_its_deadline() {
    let (api, _server, applier) = served().await;
    api.set_auto_ready(false);
    let desired = kubernetes::desired(&config(), &facts(&config())).unwrap();
    let deployment = desired
        .iter()
        .find(|r| r.id.kind == "Deployment.apps")
        .unwrap();
    let ns = desired.iter().find(|r| r.id.kind == "Namespace").unwrap();
    api.set_auto_ready(true);
    apply_all(&applier, std::slice::from_ref(ns)).await;
    api.set_auto_ready(false);
    let err = applier
        .apply(
            deployment.payload.as_ref().unwrap(),
            &deployment.spec,
            Duration::from_millis(800),
        )
        .await
        .expect_err("never ready");
    match err {
        KubeError::NotReady { detail, .. } => assert!(detail.contains("replicas"), "{detail}"),
        other => panic!("expected NotReady, got {other}"),
    }
}

#[tokio::test]
async fn crds_are_established_before_their_objects_are_applied() {
    let (_api, _server, applier) = served().await;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    });
    applier
        .apply(&crd, &crd, DEADLINE)
        .await
        .expect("CRD established");
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": 3}});
    applier
        .apply(&widget, &widget, DEADLINE)
        .await
        .expect("custom object");
}

fn facts(config: &qhub_core::Config) -> qhub_core::provider::ClusterFacts {
    qhub_core::provider::ClusterFacts::from_config(config)
}

#[tokio::test]
async fn a_broken_image_fails_the_rollout_at_once_with_the_pods_message() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, Patch, PatchParams, PostParams};

    let (api, _server, applier) = served().await;
    let desired = kubernetes::desired(&config(), &facts(&config())).unwrap();
    let ns = desired.iter().find(|r| r.id.kind == "Namespace").unwrap();
    apply_all(&applier, std::slice::from_ref(ns)).await;
    let deployment = desired
        .iter()
        .find(|r| r.id.to_string() == "Deployment.apps/dev/qhub-welcome")
        .unwrap();
    // The kubelet's view: the Deployment's pod cannot pull its image.
    let pods: Api<Pod> = Api::namespaced(applier.client(), "dev");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "qhub-welcome-7d4b9-x2x", "labels": {"app.kubernetes.io/name": "qhub-welcome"}},
        // The template's spec: the namespace admits only what meets its Pod Security level.
        "spec": deployment.payload.as_ref().unwrap()["spec"]["template"]["spec"]
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        "qhub-welcome-7d4b9-x2x",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"containerStatuses": [{"name": "nginx", "restartCount": 0,
            "ready": false, "image": "nginx:does-not-exist", "imageID": "",
            "state": {"waiting": {"reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"nginx:does-not-exist\""}}}]}}),
        ),
    )
    .await
    .unwrap();
    api.set_auto_ready(false);
    let started = std::time::Instant::now();
    let err = applier
        .apply(
            deployment.payload.as_ref().unwrap(),
            &deployment.spec,
            Duration::from_secs(600),
        )
        .await
        .expect_err("the image cannot be pulled");
    // Well inside its deadline (600 s): the first look at its pods finds the failure.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    match err {
        KubeError::Broken { detail, id, .. } => {
            assert_eq!(id.to_string(), "Deployment.apps/dev/qhub-welcome");
            assert!(
                detail.contains("container nginx: ImagePullBackOff: Back-off pulling image"),
                "{detail}"
            );
        }
        other => panic!("expected Broken, got {other}"),
    }
}

#[tokio::test]
async fn a_restart_during_a_first_start_is_said_while_waiting() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, Patch, PatchParams, PostParams};

    let (api, _server, applier) = served().await;
    let desired = kubernetes::desired(&config(), &facts(&config())).unwrap();
    let ns = desired.iter().find(|r| r.id.kind == "Namespace").unwrap();
    apply_all(&applier, std::slice::from_ref(ns)).await;
    let deployment = desired
        .iter()
        .find(|r| r.id.to_string() == "Deployment.apps/dev/keycloak")
        .unwrap();
    // The kubelet's view: Keycloak was killed once during its first start and runs again.
    let pods: Api<Pod> = Api::namespaced(applier.client(), "dev");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "keycloak-5f7c9-abcde", "labels": {"app.kubernetes.io/name": "keycloak"}},
        "spec": deployment.payload.as_ref().unwrap()["spec"]["template"]["spec"]
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        "keycloak-5f7c9-abcde",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"containerStatuses": [{"name": "keycloak",
            "restartCount": 1, "ready": false, "image": "keycloak", "imageID": "",
            "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}})),
    )
    .await
    .unwrap();
    api.set_auto_ready(false);
    let err = applier
        .apply(
            deployment.payload.as_ref().unwrap(),
            &deployment.spec,
            Duration::from_millis(800),
        )
        .await
        .expect_err("never ready");
    match err {
        KubeError::NotReady { detail, .. } => assert!(
            detail.contains(
                "pod keycloak-5f7c9-abcde: container keycloak restarted 1 time(s), last exit 137 (Error)"
            ),
            "{detail}"
        ),
        other => panic!("expected NotReady, got {other}"),
    }
}
