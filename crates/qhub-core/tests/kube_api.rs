//! The sandbox's in-memory Kubernetes API, driven by real kube-rs clients: in-process and over
//! loopback HTTP.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope};
use qhub_sandbox::kube_api::KubeApi;
use serde_json::{Value, json};

fn cm(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": data,
    }))
    .unwrap()
}

fn ns(name: &str) -> Namespace {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .unwrap()
}

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }))
    .unwrap()
}

fn code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(body))
        .unwrap();
    let res = client.send(req).await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.into_body().collect_bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn rv<K: kube::Resource>(o: &K) -> String {
    o.meta().resource_version.clone().unwrap()
}

async fn crud(client: kube::Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let created = namespaces
        .create(&PostParams::default(), &ns("team"))
        .await
        .unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Active"));
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let a = cms
        .create(&PostParams::default(), &cm("a", json!({"k": "v"})))
        .await
        .unwrap();
    assert_eq!(a.metadata.namespace.as_deref(), Some("team"));
    assert_eq!(a.metadata.generation, Some(1));
    let dup = cms
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap_err();
    assert_eq!(code(dup), 409);

    let got = cms.get("a").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["k"], "v");
    let mut changed = got.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(rv(&replaced), rv(&got));
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    let merged = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "y", "k": null}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data.unwrap(),
        [("x".to_string(), "y".to_string())].into()
    );
    let (status, patched) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/team/configmaps/a",
        "application/json-patch+json",
        br#"[{"op": "add", "path": "/data/z", "value": "1"}]"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["data"], json!({"x": "y", "z": "1"}));

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "team");
    let d = deployments
        .create(&PostParams::default(), &deployment("web", 2, "nginx:1"))
        .await
        .unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2));

    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(cms.get("a").await.unwrap_err()), 404);
    assert_eq!(
        code(cms.delete("a", &DeleteParams::default()).await.unwrap_err()),
        404
    );
    assert!(cms.get_opt("a").await.unwrap().is_none());
}

#[tokio::test]
async fn typed_crud_in_process() {
    let api = KubeApi::new();
    crud(api.client()).await;
    // create ns, create cm, replace, merge, json patch, create deployment, delete: 7 changes.
    assert_eq!(api.mutations(), 7);
}

#[tokio::test]
async fn typed_crud_over_loopback_http() {
    let api = KubeApi::new();
    let server = api.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert!(server.addr().ip().is_loopback());
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    qhub_core::tls::install_crypto_provider();
    let client = kube::Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    crud(client.clone()).await;
    // The same store, seen in-process.
    let via_memory: Api<Deployment> = Api::namespaced(api.client(), "team");
    assert!(via_memory.get("web").await.is_ok());
    // Watches stream over HTTP (chunked) as they do in-process.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut events = cms
        .watch(&WatchParams::default().timeout(10), "0")
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &cm("streamed", json!({})))
        .await
        .unwrap();
    let seen = loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .expect("a watch event within 5s over HTTP")
            .unwrap()
            .unwrap();
        if let WatchEvent::Added(o) = ev {
            break o.metadata.name.unwrap();
        }
    };
    assert_eq!(seen, "streamed");
    drop(events);
    let addr = server.addr();
    server.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening after shutdown"
    );
}

#[tokio::test]
async fn serve_refuses_non_loopback_addresses() {
    let api = KubeApi::new();
    assert!(api.serve("0.0.0.0:0".parse().unwrap()).await.is_err());
}

#[tokio::test]
async fn server_side_apply_is_idempotent_and_counts_only_changes() {
    let api = KubeApi::new();
    let cms: Api<ConfigMap> = Api::namespaced(api.client(), "default");
    let pp = PatchParams::apply("qhub").force();
    let first = cms
        .patch("cfg", &pp, &Patch::Apply(cm("cfg", json!({"a": "1"}))))
        .await
        .unwrap();
    assert_eq!(api.mutations(), 1);
    let fields = first.metadata.managed_fields.clone().unwrap();
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].manager.as_deref(), Some("qhub"));
    assert_eq!(fields[0].operation.as_deref(), Some("Apply"));
    assert_eq!(
        serde_json::to_value(fields[0].fields_v1.as_ref().unwrap()).unwrap(),
        json!({"f:data": {"f:a": {}}})
    );

    let second = cms
        .patch("cfg", &pp, &Patch::Apply(cm("cfg", json!({"a": "1"}))))
        .await
        .unwrap();
    assert_eq!(rv(&second), rv(&first));
    assert_eq!(api.mutations(), 1);

    let third = cms
        .patch("cfg", &pp, &Patch::Apply(cm("cfg", json!({"a": "2"}))))
        .await
        .unwrap();
    assert_ne!(rv(&third), rv(&first));
    assert_eq!(api.mutations(), 2);

    // Apply needs a field manager.
    let (status, body) = raw(
        &api.client(),
        "PATCH",
        "/api/v1/namespaces/default/configmaps/cfg",
        "application/apply-patch+yaml",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"}}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // YAML that is not JSON is refused clearly.
    let (status, body) = raw(
        &api.client(),
        "PATCH",
        "/api/v1/namespaces/default/configmaps/cfg?fieldManager=x",
        "application/apply-patch+yaml",
        b"apiVersion: v1\nkind: ConfigMap\n".to_vec(),
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["reason"], "UnsupportedMediaType");
    assert!(body["message"].as_str().unwrap().contains("JSON"));
}

#[tokio::test]
async fn conflicting_apply_without_force_is_refused() {
    let api = KubeApi::new();
    let cms: Api<ConfigMap> = Api::namespaced(api.client(), "default");
    cms.patch(
        "cfg",
        &PatchParams::apply("qhub"),
        &Patch::Apply(cm("cfg", json!({"a": "1", "b": "1"}))),
    )
    .await
    .unwrap();
    let err = cms
        .patch(
            "cfg",
            &PatchParams::apply("other"),
            &Patch::Apply(cm("cfg", json!({"a": "2"}))),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
            assert!(s.message.contains(".data.a"), "{}", s.message);
            assert!(s.message.contains("qhub"), "{}", s.message);
        }
        other => panic!("{other:?}"),
    }
    // The same value is shared ownership, not a conflict.
    cms.patch(
        "cfg",
        &PatchParams::apply("other"),
        &Patch::Apply(cm("cfg", json!({"b": "1"}))),
    )
    .await
    .unwrap();
    // Forcing takes the field over.
    let forced = cms
        .patch(
            "cfg",
            &PatchParams::apply("other").force(),
            &Patch::Apply(cm("cfg", json!({"a": "2"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "2");
    let qhub = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("qhub"))
        .unwrap();
    let owned = serde_json::to_value(qhub.fields_v1.unwrap()).unwrap();
    assert_eq!(owned, json!({"f:data": {"f:b": {}}}));
    // An update (merge patch) by someone else takes ownership too: a later apply conflicts.
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"b": "edited"}})),
    )
    .await
    .unwrap();
    let err = cms
        .patch(
            "cfg",
            &PatchParams::apply("qhub"),
            &Patch::Apply(cm("cfg", json!({"b": "1"}))),
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), 409);
}

#[tokio::test]
async fn apply_removes_fields_its_manager_dropped() {
    let api = KubeApi::new();
    let cms: Api<ConfigMap> = Api::namespaced(api.client(), "default");
    let pp = PatchParams::apply("qhub").force();
    cms.patch(
        "cfg",
        &pp,
        &Patch::Apply(cm("cfg", json!({"keep": "1", "drop": "1"}))),
    )
    .await
    .unwrap();
    // A field another manager also owns stays.
    cms.patch(
        "cfg",
        &PatchParams::apply("other"),
        &Patch::Apply(cm("cfg", json!({"shared": "1"}))),
    )
    .await
    .unwrap();
    cms.patch(
        "cfg",
        &pp,
        &Patch::Apply(cm("cfg", json!({"keep": "1", "drop": "1", "shared": "1"}))),
    )
    .await
    .unwrap();
    let after = cms
        .patch("cfg", &pp, &Patch::Apply(cm("cfg", json!({"keep": "1"}))))
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert_eq!(data.get("keep").map(String::as_str), Some("1"));
    assert_eq!(data.get("shared").map(String::as_str), Some("1"));
    assert!(!data.contains_key("drop"), "{data:?}");
    // Labels (nested maps) are pruned the same way.
    let mut with_label = cm("cfg", json!({"keep": "1"}));
    with_label.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
    let labelled = cms
        .patch("cfg", &pp, &Patch::Apply(with_label))
        .await
        .unwrap();
    assert_eq!(labelled.metadata.labels.unwrap()["team"], "a");
    let unlabelled = cms
        .patch("cfg", &pp, &Patch::Apply(cm("cfg", json!({"keep": "1"}))))
        .await
        .unwrap();
    assert!(unlabelled.metadata.labels.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let api = KubeApi::new();
    let cms: Api<ConfigMap> = Api::namespaced(api.client(), "default");
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "db"})),
        ("c", json!({"tier": "back"})),
    ] {
        let mut c = cm(name, json!({}));
        c.metadata.labels = serde_json::from_value(labels).unwrap();
        cms.create(&PostParams::default(), &c).await.unwrap();
    }
    let names = |sel: &str| {
        let cms = cms.clone();
        let sel = sel.to_string();
        async move {
            let mut out: Vec<String> = cms
                .list(&ListParams::default().labels(&sel))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| c.metadata.name.unwrap())
                .collect();
            out.sort();
            out.join(",")
        }
    };
    assert_eq!(names("app=web").await, "a");
    assert_eq!(names("app!=web").await, "b,c");
    assert_eq!(names("app").await, "a,b");
    assert_eq!(names("!app").await, "c");
    assert_eq!(names("app in (web,db)").await, "a,b");
    assert_eq!(names("tier notin (front)").await, "b,c");
    assert_eq!(names("app,tier").await, "a");
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let list = cms.list(&ListParams::default()).await.unwrap();
    assert!(list.metadata.resource_version.is_some());
    let bad = cms
        .list(&ListParams::default().labels("app in web"))
        .await
        .unwrap_err();
    assert_eq!(code(bad), 400);
    // Across namespaces.
    let other: Api<ConfigMap> = Api::namespaced(api.client(), "other");
    other
        .create(&PostParams::default(), &cm("d", json!({})))
        .await
        .unwrap();
    let all: Api<ConfigMap> = Api::all(api.client());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
}

#[tokio::test]
async fn deleting_a_namespace_or_an_owner_cascades() {
    let api = KubeApi::new();
    let client = api.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &ns("doomed"))
        .await
        .unwrap();
    let doomed: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    doomed
        .create(&PostParams::default(), &cm("x", json!({})))
        .await
        .unwrap();
    let keep: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = keep
        .create(&PostParams::default(), &cm("owner", json!({})))
        .await
        .unwrap();
    let mut child = cm("child", json!({}));
    child.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
            "uid": owner.metadata.uid.clone().unwrap(),
        }))
        .unwrap(),
    ]);
    keep.create(&PostParams::default(), &child).await.unwrap();
    keep.create(&PostParams::default(), &cm("bystander", json!({})))
        .await
        .unwrap();

    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(code(doomed.get("x").await.unwrap_err()), 404);
    keep.delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    assert!(keep.get_opt("child").await.unwrap().is_none());
    assert!(keep.get_opt("bystander").await.unwrap().is_some());
    // The namespace itself goes once the namespace controller has emptied it
    // (server_lifecycle.rs): Terminating meanwhile.
    let live = namespaces.get("doomed").await.unwrap();
    assert_eq!(
        live.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    for _ in 0..200 {
        if api.objects().len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(api.objects().len(), 1, "{:?}", api.objects());
}

#[tokio::test]
async fn discovery_lists_builtins_and_crd_kinds() {
    let api = KubeApi::new();
    let client = api.client();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let gvk = GroupVersionKind::gvk("apps", "v1", "Deployment");
    let (ar, caps) = discovery.resolve_gvk(&gvk).unwrap();
    assert_eq!(ar.plural, "deployments");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(caps.supports_operation("patch"));
    let (ns_ar, ns_caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"))
        .unwrap();
    assert_eq!(ns_ar.plural, "namespaces");
    assert_eq!(ns_caps.scope, Scope::Cluster);
    for (g, k) in [
        ("storage.k8s.io", "StorageClass"),
        ("policy", "PodDisruptionBudget"),
        ("networking.k8s.io", "Ingress"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("coordination.k8s.io", "Lease"),
        ("batch", "Job"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ] {
        assert!(
            discovery
                .resolve_gvk(&GroupVersionKind::gvk(g, "v1", k))
                .is_some(),
            "{k}"
        );
    }
    assert!(!discovery.has_group("example.com"));
    apply_crd(&client).await;
    let discovery = Discovery::new(client).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .unwrap();
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, Scope::Namespaced);
}

async fn apply_crd(client: &kube::Client) -> CustomResourceDefinition {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
            }],
        },
    }))
    .unwrap();
    crds.patch(
        "widgets.example.com",
        &PatchParams::apply("qhub").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    // A new CRD is served once Established, a moment later (server_lifecycle.rs).
    for _ in 0..200 {
        let live = crds.get("widgets.example.com").await.unwrap();
        let established = live
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return live;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the CRD was not established within 2s")
}

#[tokio::test]
async fn crd_kinds_are_served_while_the_crd_exists() {
    let api = KubeApi::new();
    let client = api.client();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    assert_eq!(
        code(widgets.list(&ListParams::default()).await.unwrap_err()),
        404
    );

    let crd = apply_crd(&client).await;
    let conditions = crd.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "NamesAccepted" && c.status == "True")
    );

    let w = DynamicObject::new("w1", &ar).data(json!({"spec": {"size": 3}}));
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.data["spec"]["size"], 3);
    let applied = widgets
        .patch(
            "w1",
            &PatchParams::apply("qhub").force(),
            &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["spec"]["size"], 5);
    assert_eq!(applied.metadata.generation, Some(2));
    // Status goes through /status only.
    let status = widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ok": true}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(status.data["status"]["ok"], true);
    assert_eq!(status.data["spec"]["size"], 5);
    assert_eq!(status.metadata.generation, Some(2));
    assert_eq!(
        widgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    widgets
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    widgets.create(&PostParams::default(), &w).await.unwrap();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        code(widgets.list(&ListParams::default()).await.unwrap_err()),
        404
    );
    assert!(api.objects().is_empty(), "{:?}", api.objects());

    // A CRD whose name does not match its plural and group is invalid.
    let mut bad = crd_json();
    bad["metadata"]["name"] = json!("gadgets.example.com");
    let (status, _) = raw(
        &client,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        serde_json::to_vec(&bad).unwrap(),
    )
    .await;
    assert_eq!(status, 422);
}

fn crd_json() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{"name": "v1", "served": true, "storage": true}],
        },
    })
}

#[tokio::test]
async fn watch_streams_added_modified_deleted() {
    let api = KubeApi::new();
    let cms: Api<ConfigMap> = Api::namespaced(api.client(), "default");
    cms.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();
    let mut events = cms
        .watch(&WatchParams::default().timeout(10), "0")
        .await
        .unwrap()
        .boxed();
    let mut next = async || loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .expect("a watch event within 5s")
            .unwrap()
            .expect("the stream to stay open");
        match ev {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Added(o) => break ("ADDED", o.metadata.name.unwrap()),
            WatchEvent::Modified(o) => break ("MODIFIED", o.metadata.name.unwrap()),
            WatchEvent::Deleted(o) => break ("DELETED", o.metadata.name.unwrap()),
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(next().await, ("ADDED", "before".to_string()));
    cms.create(&PostParams::default(), &cm("w", json!({})))
        .await
        .unwrap();
    assert_eq!(next().await, ("ADDED", "w".to_string()));
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "1"}})),
    )
    .await
    .unwrap();
    assert_eq!(next().await, ("MODIFIED", "w".to_string()));
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    assert_eq!(next().await, ("DELETED", "w".to_string()));

    // Resuming from a resourceVersion replays only what came after it, selector applied.
    let list = cms.list(&ListParams::default()).await.unwrap();
    let from = list.metadata.resource_version.unwrap();
    let mut labelled = cm("l", json!({}));
    labelled.metadata.labels = Some([("pick".to_string(), "me".to_string())].into());
    cms.create(&PostParams::default(), &cm("unlabelled", json!({})))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &labelled).await.unwrap();
    let replay: Vec<_> = cms
        .watch(&WatchParams::default().labels("pick=me").timeout(1), &from)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let names: Vec<String> = replay
        .into_iter()
        .filter_map(|e| match e {
            WatchEvent::Added(o) => o.metadata.name,
            _ => None,
        })
        .collect();
    assert_eq!(names, vec!["l".to_string()]);
}

#[tokio::test]
async fn replace_with_a_stale_resource_version_conflicts() {
    let api = KubeApi::new();
    let cms: Api<ConfigMap> = Api::namespaced(api.client(), "default");
    let original = cms
        .create(&PostParams::default(), &cm("c", json!({"a": "1"})))
        .await
        .unwrap();
    let mut first = original.clone();
    first.data = Some([("a".to_string(), "2".to_string())].into());
    cms.replace("c", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut stale = original;
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let err = cms
        .replace("c", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(code(err), 409);
    assert_eq!(cms.get("c").await.unwrap().data.unwrap()["a"], "2");
    assert_eq!(
        code(
            cms.replace("missing", &PostParams::default(), &cm("missing", json!({})))
                .await
                .unwrap_err()
        ),
        404
    );
}

fn ready(d: &Deployment) -> bool {
    let generation = d.metadata.generation;
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    d.status.as_ref().is_some_and(|s| {
        s.observed_generation == generation && s.ready_replicas.unwrap_or(0) == want
    })
}

#[tokio::test]
async fn deployments_become_ready_unless_told_not_to() {
    let api = KubeApi::new();
    let deployments: Api<Deployment> = Api::namespaced(api.client(), "default");
    let pp = PatchParams::apply("qhub").force();
    let d = deployments
        .patch("web", &pp, &Patch::Apply(deployment("web", 3, "nginx:1")))
        .await
        .unwrap();
    assert!(ready(&d), "{:?}", d.status);
    assert_eq!(d.status.as_ref().unwrap().available_replicas, Some(3));
    let conditions = d.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    );
    assert_eq!(api.mutations(), 1);

    // A new template bumps generation; the controller writes status without counting.
    let d2 = deployments
        .patch("web", &pp, &Patch::Apply(deployment("web", 3, "nginx:2")))
        .await
        .unwrap();
    assert_eq!(d2.metadata.generation, Some(2));
    assert!(ready(&d2));
    assert_eq!(api.mutations(), 2);

    api.set_auto_ready(false);
    let d3 = deployments
        .patch("web", &pp, &Patch::Apply(deployment("web", 3, "nginx:3")))
        .await
        .unwrap();
    assert!(!ready(&d3));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!ready(&deployments.get("web").await.unwrap()));

    api.set_auto_ready(true);
    api.set_ready_after(Duration::from_millis(100));
    let d4 = deployments
        .patch("web", &pp, &Patch::Apply(deployment("web", 3, "nginx:4")))
        .await
        .unwrap();
    assert!(!ready(&d4));
    let mutations = api.mutations();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = deployments.get("web").await.unwrap();
    assert!(ready(&later), "{:?}", later.status);
    assert_ne!(rv(&later), rv(&d4));
    assert_eq!(api.mutations(), mutations);
    assert_eq!(later.metadata.generation, d4.metadata.generation);
}

#[tokio::test]
async fn load_balancer_services_get_an_address() {
    let api = KubeApi::new();
    let services: Api<Service> = Api::namespaced(api.client(), "default");
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }))
    .unwrap();
    let created = services
        .patch("lb", &PatchParams::apply("qhub"), &Patch::Apply(&svc))
        .await
        .unwrap();
    assert!(created.spec.as_ref().unwrap().cluster_ip.is_some());
    let ingress = created
        .status
        .clone()
        .unwrap()
        .load_balancer
        .unwrap()
        .ingress
        .unwrap();
    assert_eq!(ingress[0].ip.as_deref(), Some("127.0.0.1"));
    // Re-applying keeps the allocated cluster IP and changes nothing.
    let again = services
        .patch("lb", &PatchParams::apply("qhub"), &Patch::Apply(&svc))
        .await
        .unwrap();
    assert_eq!(rv(&again), rv(&created));
}

#[tokio::test]
async fn persistent_store_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("kube.json");
    {
        let api = KubeApi::persistent(&path).unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(api.client(), "default");
        cms.patch(
            "kept",
            &PatchParams::apply("qhub"),
            &Patch::Apply(cm("kept", json!({"a": "1"}))),
        )
        .await
        .unwrap();
        apply_crd(&api.client()).await;
    }
    assert!(path.exists());
    let api = KubeApi::persistent(&path).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(api.client(), "default");
    let kept = cms.get("kept").await.unwrap();
    assert_eq!(kept.data.as_ref().unwrap()["a"], "1");
    // The resourceVersion counter continues, and CRD kinds are still served.
    let next = cms
        .create(&PostParams::default(), &cm("next", json!({})))
        .await
        .unwrap();
    assert!(rv(&next).parse::<u64>().unwrap() > rv(&kept).parse::<u64>().unwrap());
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(api.client(), "default", &ar);
    assert!(widgets.list(&ListParams::default()).await.is_ok());

    std::fs::write(&path, b"{not json").unwrap();
    assert!(KubeApi::persistent(&path).is_err());
}

/// Sends raw bytes over TCP and returns the HTTP status code of the reply.
async fn raw_http(addr: std::net::SocketAddr, request: &[u8]) -> Option<u16> {
    // Blocking std I/O on a worker thread: tokio's io-util is not among our features.
    let request = request.to_vec();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(&request).ok()?;
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).ok()?;
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        head.split_whitespace().nth(1)?.parse().ok()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn garbage_input_gets_4xx_and_never_panics() {
    let api = KubeApi::new();
    let client = api.client();
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut random_bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let paths = [
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/configmaps/x",
        "/api/v1/namespaces",
        "/apis/apps/v1/namespaces/default/deployments/d",
        "/apis/apps/v1/namespaces/default/deployments/d/status",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    ];
    let types = [
        "application/json",
        "application/apply-patch+yaml",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        "text/plain",
    ];
    for (i, path) in paths.iter().enumerate() {
        for method in ["POST", "PUT", "PATCH"] {
            for (j, ct) in types.iter().enumerate() {
                let body = random_bytes(1 + (i * 31 + j * 7) % 200);
                let (status, reply) =
                    raw(&client, method, &format!("{path}?fieldManager=x"), ct, body).await;
                assert!(
                    (400..500).contains(&status),
                    "{method} {path} {ct}: {status} {reply}"
                );
                assert_eq!(reply["kind"], "Status");
            }
        }
    }
    // Well-formed JSON of the wrong shape.
    for body in [
        &b"[]"[..],
        b"null",
        b"42",
        br#"{"metadata": 5}"#,
        br#"{"metadata": {"name": 5}}"#,
    ] {
        let (status, reply) = raw(
            &client,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            body.to_vec(),
        )
        .await;
        assert!(
            (400..500).contains(&status),
            "{}: {status} {reply}",
            String::from_utf8_lossy(body)
        );
    }
    for path in [
        "/",
        "/nope",
        "/api/v2",
        "/apis/nope/v1/things",
        "/api/v1/namespaces/a/b/c/d/e/f",
        "/api/v1/nodes/x/y/z",
        "/apis/apps/v1/deployments/x",
    ] {
        let (status, reply) = raw(&client, "GET", path, "application/json", vec![]).await;
        assert_eq!(status, 404, "{path}: {reply}");
        assert_eq!(reply["reason"], "NotFound");
    }
    let (status, _) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps/x",
        "application/json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, 405);
    let (status, _) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=abc",
        "",
        vec![],
    )
    .await;
    assert_eq!(status, 400);

    // Over HTTP too, including requests that are not HTTP at all.
    let server = api.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.addr();
    let status = raw_http(addr, b"PATCH /api/v1/namespaces/default/configmaps/x HTTP/1.1\r\nhost: x\r\ncontent-type: application/merge-patch+json\r\ncontent-length: 3\r\n\r\n\xff\x00{").await;
    assert!(matches!(status, Some(400..=499)), "{status:?}");
    let status = raw_http(addr, b"GET /%%%/../..?a=%zz&&= HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(matches!(status, Some(400..=499)), "{status:?}");
    for _ in 0..5 {
        let junk = random_bytes(300);
        let _ = raw_http(addr, &junk).await;
    }
    // Still serving.
    let status = raw_http(addr, b"GET /version HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(status, Some(200));
    assert_eq!(api.mutations(), 0);
}

/// An echo server on loopback: what "listens in the pod" for port-forward tests.
async fn echo_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn loopback_client(server: &qhub_sandbox::kube_api::Server) -> kube::Client {
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    qhub_core::tls::install_crypto_provider();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn ready_workloads_run_pods_that_port_forwards_reach() {
    use k8s_openapi::api::core::v1::Pod;
    use qhub_core::kubernetes::port_forward::PortForward;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let api = KubeApi::new();
    let server = api.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = loopback_client(&server).await;
    // Nothing runs yet: a port-forward has no pod to go to, and says which.
    let err = PortForward::start(client.clone(), "default", "app=web", 80)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no running, ready pod (app=web)"),
        "{err}"
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("web", 2, "nginx:1"))
        .await
        .unwrap();
    // The controllers run one Running, Ready pod per replica, labelled from the template.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let running = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(running.items.len(), 2, "{running:?}");
    let first = running.items[0].metadata.name.clone().unwrap();
    assert!(first.starts_with("web-"), "{first}");

    // Port 80 of the workload's pods is answered by an echo server.
    api.forward_port("default", "web", 80, echo_server().await);
    let forward = PortForward::start(client.clone(), "default", "app=web", 80)
        .await
        .unwrap();
    assert!(forward.addr().ip().is_loopback());
    for message in [
        &b"hello through the API server"[..],
        b"and a second connection",
    ] {
        let mut conn = tokio::net::TcpStream::connect(forward.addr())
            .await
            .unwrap();
        conn.write_all(message).await.unwrap();
        let mut got = vec![0u8; message.len()];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(got, message);
    }

    // A port nothing listens on: the connection is closed, no byte comes back.
    let nothing = PortForward::start(client.clone(), "default", "app=web", 81)
        .await
        .unwrap();
    let mut conn = tokio::net::TcpStream::connect(nothing.addr())
        .await
        .unwrap();
    let _ = conn.write_all(b"anyone?").await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("the forward closes the connection")
        .unwrap_or(0);
    assert_eq!(n, 0);

    // A new pod template rolls out new pods; the forward follows to one of them.
    let mut web = deployments.get("web").await.unwrap();
    web.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("nginx:2".into());
    deployments
        .replace("web", &PostParams::default(), &web)
        .await
        .unwrap();
    let names: Vec<String> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names.len(), 2);
    assert!(!names.contains(&first), "{names:?}");
    let mut conn = tokio::net::TcpStream::connect(forward.addr())
        .await
        .unwrap();
    conn.write_all(b"after the rollout").await.unwrap();
    let mut got = vec![0u8; 17];
    conn.read_exact(&mut got).await.unwrap();
    assert_eq!(got, b"after the rollout");

    // Port-forwards are WebSocket upgrades only; a pod that does not exist is a 404.
    let plain = raw_http(
        server.addr(),
        format!("GET /api/v1/namespaces/default/pods/{first}/portforward?ports=80 HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(matches!(plain, Some(400 | 404)), "{plain:?}");
    match pods.portforward("nope", &[80]).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404, "{s:?}"),
        Err(other) => panic!("expected a 404, got {other:?}"),
        Ok(_) => panic!("a port-forward to a pod that does not exist was accepted"),
    }

    // Deleting the workload collects its pods.
    deployments
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let left = pods.list(&ListParams::default()).await.unwrap();
    assert!(left.items.is_empty(), "{left:?}");
}
