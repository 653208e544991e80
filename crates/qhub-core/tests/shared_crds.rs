//! A CRD another manager installed (another Traefik on an `existing` cluster) is never taken
//! over: used as it is when it serves the versions the platform needs, otherwise the deploy
//! stops naming its managers and versions (issue 27, "Objects we share").

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use qhub_core::kubernetes::apply::Applier;
use qhub_core::sandbox::kube_api::KubeApi;
use serde_json::{Value, json};

fn foreign(versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({"name": v, "served": true, "storage": i == 0,
                   "schema": {"openAPIV3Schema": {"type": "object",
                       "x-kubernetes-preserve-unknown-fields": true}}})
        })
        .collect();
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "middlewares.traefik.io", "labels": {"app.kubernetes.io/managed-by": "Helm"}},
        "spec": {"group": "traefik.io", "scope": "Namespaced",
            "names": {"kind": "Middleware", "plural": "middlewares", "singular": "middleware"},
            "versions": versions}})
}

/// Our Middleware CRD, as the platform renders it (labelled as a member of our ApplySet).
fn ours() -> Value {
    let config = qhub_core::config::init::render(&qhub_core::config::init::InitOptions::new(
        qhub_core::config::provider::ProviderKind::Aws,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    let facts = qhub_core::provider::ClusterFacts::from_config(&config);
    qhub_core::kubernetes::desired(&config, &facts)
        .unwrap()
        .into_iter()
        .filter_map(|r| r.payload)
        .find(|m| m["metadata"]["name"] == "middlewares.traefik.io")
        .unwrap()
}

async fn install(server: &KubeApi, crd: &Value) {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    );
    let api: Api<DynamicObject> = Api::all_with(server.client(), &ar);
    let obj: DynamicObject = serde_json::from_value(crd.clone()).unwrap();
    api.patch(
        "middlewares.traefik.io",
        &PatchParams::apply("helm").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap();
}

fn live(server: &KubeApi) -> Value {
    server
        .objects()
        .into_iter()
        .find(|o| o["metadata"]["name"] == "middlewares.traefik.io")
        .unwrap()
}

#[tokio::test]
async fn a_fitting_foreign_crd_is_used_and_left_as_it_is() {
    let server = KubeApi::new();
    install(&server, &foreign(&["v1alpha1"])).await;
    let before = live(&server);
    let ours = ours();
    Applier::new(server.client())
        .apply(&ours, &ours, Duration::from_secs(5))
        .await
        .unwrap();
    let after = live(&server);
    assert_eq!(after["spec"], before["spec"], "the CRD was taken over");
    assert!(
        !after["metadata"]["managedFields"]
            .to_string()
            .contains("\"qhub\""),
        "qhub became a manager: {}",
        after["metadata"]["managedFields"]
    );
    // The plan sees it as in place: nothing to create.
    let config = qhub_core::config::init::render(&qhub_core::config::init::InitOptions::new(
        qhub_core::config::provider::ProviderKind::Aws,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    let facts = qhub_core::provider::ClusterFacts::from_config(&config);
    let desired = qhub_core::kubernetes::desired(&config, &facts).unwrap();
    let shared = Applier::new(server.client())
        .shared_crds(&desired)
        .await
        .unwrap();
    assert_eq!(shared.len(), 1, "{shared:?}");
    assert_eq!(
        shared[0].id.to_string(),
        "CustomResourceDefinition.apiextensions.k8s.io/middlewares.traefik.io"
    );
}

#[tokio::test]
async fn a_foreign_crd_without_our_version_stops_the_deploy_naming_its_manager() {
    let server = KubeApi::new();
    install(&server, &foreign(&["v1"])).await;
    let ours = ours();
    let err = Applier::new(server.client())
        .apply(&ours, &ours, Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("middlewares.traefik.io")
            && err.contains("managed by helm")
            && err.contains("serving versions [v1]")
            && err.contains("missing: v1alpha1"),
        "{err}"
    );
    assert_eq!(live(&server)["spec"]["versions"][0]["name"], "v1");
}
