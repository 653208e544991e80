//! A CRD another manager installed (another Traefik on an `existing` cluster) is never taken
//! over: used as it is when it serves the versions the platform needs, otherwise the deploy
//! stops naming its managers and versions (issue 27, "Objects we share").

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use qhub_core::kubernetes::apply::Applier;
use qhub_sandbox::kube_api::KubeApi;
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

/// Issue 27 ("Objects we share"), issue 20 ("CRDs we share"): a destroy keeps every CRD unless
/// asked (`--delete-crds`), and even then keeps one whose objects others still have, so another
/// tenant's IngressRoute survives; once nothing of others remains, the flag deletes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_keeps_the_crds_unless_asked_and_while_another_tenant_uses_them() {
    use std::sync::Arc;

    use qhub_core::engine::{Engine, EngineOptions, StageFilter};
    use qhub_core::events::NoEvents;
    use qhub_core::existing::ExistingProvider;
    use qhub_core::plan::Action;
    use qhub_core::provider::Provider;
    use tokio_util::sync::CancellationToken;

    let api = KubeApi::new();
    let server = api.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let config = qhub_core::config::init::render(&qhub_core::config::init::InitOptions::new(
        qhub_core::config::provider::ProviderKind::Existing,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    // What a deploy applies first: the namespaces, the CRDs and the ApplySet parent.
    let facts = qhub_core::provider::ClusterFacts::from_config(&config);
    let applier = Applier::new(api.client());
    for r in qhub_core::kubernetes::desired(&config, &facts).unwrap() {
        let m = r.payload.unwrap();
        if matches!(
            m["kind"].as_str(),
            Some("CustomResourceDefinition" | "Namespace")
        ) || m["metadata"]["name"] == "qhub-applyset"
        {
            applier
                .apply(&m, &r.spec, Duration::from_secs(5))
                .await
                .unwrap();
        }
    }
    let crds = |api: &KubeApi| -> Vec<String> {
        api.objects()
            .into_iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Traefik's ten and Dask Gateway's DaskCluster.
    assert_eq!(crds(&api).len(), 11, "{:?}", crds(&api));
    // Another tenant's route, through the CRD qhub created.
    let routes: Api<DynamicObject> = Api::namespaced_with(
        api.client(),
        "team-b",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("traefik.io", "v1alpha1", "IngressRoute"),
            "ingressroutes",
        ),
    );
    let theirs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"name": "team-b-api", "namespace": "team-b"},
        "spec": {"routes": [{"match": "Host(`b.example.com`)", "kind": "Rule",
            "services": [{"name": "api", "port": 80}]}]}}))
    .unwrap();
    routes
        .patch(
            "team-b-api",
            &PatchParams::apply("team-b"),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap();
    let engine = |delete_crds: bool| {
        let provider = ExistingProvider::for_config(&config)
            .unwrap()
            .with_kubeconfig(kubeconfig.clone());
        Engine::new(
            Arc::new(provider) as Arc<dyn Provider>,
            EngineOptions {
                min_deadline: Duration::from_secs(30),
                poll_interval: Duration::from_millis(20),
                delete_crds,
                ..EngineOptions::default()
            },
        )
    };
    let destroy = |engine: Engine| {
        let config = config.clone();
        async move {
            let (plan, report) = engine
                .destroy(
                    &config,
                    StageFilter::All,
                    Arc::new(NoEvents),
                    CancellationToken::new(),
                )
                .await
                .unwrap();
            assert!(report.succeeded(), "{report:?}");
            assert!(
                !plan
                    .changes
                    .iter()
                    .any(|c| c.action == Action::Delete && plan.kept.iter().any(|k| k.id == c.id)),
                "{}",
                plan.render_text()
            );
            plan
        }
    };
    let route_kept = "CustomResourceDefinition.apiextensions.k8s.io/ingressroutes.traefik.io";

    // Without the flag: every CRD is kept, each with why.
    let plan = destroy(engine(false)).await;
    // Traefik's ten and Dask Gateway's DaskCluster.
    assert_eq!(plan.kept.len(), 11, "{}", plan.render_text());
    let text = plan.render_text();
    assert!(
        text.contains(&format!(
            "Kept: {route_kept} (1 of its objects belong to others (team-b/team-b-api)"
        )),
        "{text}"
    );
    assert!(
        text.contains("middlewares.traefik.io (created by this deployment")
            && text.contains("--delete-crds"),
        "{text}"
    );
    assert_eq!(crds(&api).len(), 11);
    assert!(routes.get_opt("team-b-api").await.unwrap().is_some());

    // With it: the ten nobody else uses go; the one with the tenant's route stays, and so
    // does the route.
    let plan = destroy(engine(true)).await;
    let kept: Vec<String> = plan.kept.iter().map(|k| k.id.to_string()).collect();
    assert_eq!(kept, vec![route_kept.to_string()], "{}", plan.render_text());
    assert_eq!(crds(&api), vec!["ingressroutes.traefik.io".to_string()]);
    assert!(routes.get_opt("team-b-api").await.unwrap().is_some());

    // The tenant moves away: now it goes too.
    routes
        .delete("team-b-api", &Default::default())
        .await
        .unwrap();
    let plan = destroy(engine(true)).await;
    assert!(plan.kept.is_empty(), "{}", plan.render_text());
    assert!(crds(&api).is_empty(), "{:?}", crds(&api));
}

/// A deploy never prunes a CRD, even one of ours the config no longer wants: the plan keeps
/// it and says why (issue 27: CRDs are "never pruned").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_never_prunes_a_crd_it_no_longer_wants() {
    use std::sync::Arc;

    use qhub_core::engine::{Engine, EngineOptions, StageFilter};
    use qhub_core::existing::ExistingProvider;
    use qhub_core::kubernetes::applyset::ApplySet;
    use qhub_core::provider::Provider;

    let api = KubeApi::new();
    let server = api.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let config = qhub_core::config::init::render(&qhub_core::config::init::InitOptions::new(
        qhub_core::config::provider::ProviderKind::Existing,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    // A CRD an older config of this deployment made (a member of our ApplySet).
    let mut old = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]}});
    ApplySet::for_config(&config).label_member(&mut old);
    Applier::new(api.client())
        .apply(&old, &old, Duration::from_secs(5))
        .await
        .unwrap();
    let provider = ExistingProvider::for_config(&config)
        .unwrap()
        .with_kubeconfig(kubeconfig);
    let plan = Engine::new(
        Arc::new(provider) as Arc<dyn Provider>,
        EngineOptions::default(),
    )
    .plan(&config, StageFilter::All)
    .await
    .unwrap();
    let id = "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com";
    assert!(
        !plan.changes.iter().any(|c| c.id.to_string() == id),
        "{}",
        plan.render_text()
    );
    assert!(
        plan.render_text().contains(&format!(
            "Kept: {id} (no longer wanted by the config, but a deploy never deletes a CRD"
        )),
        "{}",
        plan.render_text()
    );
}
