//! What a real API server does over time, done by the in-memory API: a CRD's kind is served
//! only once the CRD is Established; deletes wait for finalizers (namespace termination, claim
//! protection, load balancer cleanup); EndpointSlices follow ready pods; SubjectAccessReviews
//! are answered from the stored RBAC. Each rule is a known request answered as the real server
//! answers it (source cited per test); then the product's applier gets through it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use qhub_core::kubernetes::apply::Applier;
use qhub_sandbox::kube_api::KubeApi;
use serde_json::{Value, json};

fn api_of(
    client: &kube::Client,
    av: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = av.rsplit_once('/').unwrap_or(("", av));
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

async fn apply(api: &Api<DynamicObject>, body: Value) -> Result<Value, kube::Error> {
    let name = body["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&obj(body)),
    )
    .await
    .map(|o| serde_json::to_value(o).unwrap())
}

fn status(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.org"},
        "spec": {
            "group": "example.org", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    })
}

fn widget() -> Value {
    json!({"apiVersion": "example.org/v1", "kind": "Widget",
           "metadata": {"name": "w", "namespace": "dev"}, "spec": {"size": 1}})
}

async fn until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// apiextensions-apiserver `pkg/apiserver/customresource_handler.go`, `crdHandler.ServeHTTP`:
/// while neither `NamesAccepted` nor `Established` is true the request goes to the delegate,
/// which answers 404; `customresource_discovery_controller.go` lists only Established CRDs.
#[tokio::test]
async fn a_new_crds_kind_is_not_served_until_it_is_established() {
    let server = KubeApi::new();
    server.set_crd_established_after(Duration::from_millis(300));
    let client = server.client();
    let crds = api_of(
        &client,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        None,
    );
    let created = apply(&crds, crd()).await.unwrap();
    let established = |v: &Value| {
        v.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            })
    };
    assert!(!established(&created), "established at once: {created}");
    let widgets = api_of(&client, "example.org/v1", "Widget", "widgets", Some("dev"));
    let (code, message) = status(
        widgets
            .create(&PostParams::default(), &obj(widget()))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404, "{message}");
    assert!(
        message.contains("could not find the requested resource"),
        "{message}"
    );
    let gvk = GroupVersionKind::gvk("example.org", "v1", "Widget");
    assert!(
        kube::discovery::pinned_kind(&client, &gvk).await.is_err(),
        "discovery lists a kind whose CRD is not established"
    );
    until(
        "the CRD being established",
        Duration::from_secs(3),
        async || {
            established(
                &serde_json::to_value(crds.get("widgets.example.org").await.unwrap()).unwrap(),
            )
        },
    )
    .await;
    widgets
        .create(&PostParams::default(), &obj(widget()))
        .await
        .expect("served once established");
    // An update of an established CRD does not take its kind away.
    let mut changed = crd();
    changed["spec"]["names"]["shortNames"] = json!(["wd"]);
    let updated = apply(&crds, changed).await.unwrap();
    assert!(established(&updated), "{updated}");
}

/// The product waits for the CRD of a kind not served yet, reporting progress, and fails
/// naming the CRD and its conditions when it is not established in time (before: the apply
/// spent the read retries on discovery and failed with "discovering Widget.example.org/v1",
/// naming no CRD).
#[tokio::test]
async fn the_applier_waits_for_the_crd_of_a_kind_and_names_it_when_it_is_late() {
    let server = KubeApi::new();
    server.set_crd_established_after(Duration::from_secs(3600));
    let client = server.client();
    let crds = api_of(
        &client,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        None,
    );
    apply(&crds, crd()).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    let applier = Applier::new(client.clone()).with_progress(Arc::new(move |id, detail| {
        sink.lock().unwrap().push(format!("{id}: {detail}"));
    }));
    let start = Instant::now();
    let err = applier
        .apply(&widget(), &widget(), Duration::from_secs(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("widgets.example.org is not Established")
            && err.contains("Established False (Installing)"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|s| s.contains("widgets.example.org is not Established yet")),
        "no progress reported: {seen:?}"
    );
    // No CRD at all: said so.
    let other = json!({"apiVersion": "nothing.example.org/v1", "kind": "Gadget",
                       "metadata": {"name": "g", "namespace": "dev"}});
    let err = applier
        .apply(&other, &other, Duration::from_millis(600))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no CustomResourceDefinition defines Gadget.nothing.example.org"),
        "{err}"
    );
    // Established within the deadline: the object is applied.
    let server = KubeApi::new();
    server.set_crd_established_after(Duration::from_millis(400));
    let client = server.client();
    let crds = api_of(
        &client,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        None,
    );
    apply(&crds, crd()).await.unwrap();
    Applier::new(client.clone())
        .apply(&widget(), &widget(), Duration::from_secs(10))
        .await
        .expect("applied once the CRD is established");
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn claim() -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "data", "namespace": "dev"},
           "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}})
}

fn workload() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "dev"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.29",
                          "ports": [{"name": "http", "containerPort": 8080}]}],
                         "volumes": [{"name": "data",
                                      "persistentVolumeClaim": {"claimName": "data"}}]}},
        },
    })
}

fn service(kind: &str, selector: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "dev"},
           "spec": {"type": kind, "selector": {"app": selector},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
}

struct World {
    server: KubeApi,
    client: kube::Client,
}

async fn world(finalize_after: Duration) -> World {
    let server = KubeApi::new();
    server.set_finalize_after(finalize_after);
    let client = server.client();
    let namespaces = api_of(&client, "v1", "Namespace", "namespaces", None);
    apply(&namespaces, namespace("dev")).await.unwrap();
    apply(
        &api_of(
            &client,
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            Some("dev"),
        ),
        claim(),
    )
    .await
    .unwrap();
    apply(
        &api_of(&client, "apps/v1", "Deployment", "deployments", Some("dev")),
        workload(),
    )
    .await
    .unwrap();
    apply(
        &api_of(&client, "v1", "Service", "services", Some("dev")),
        service("LoadBalancer", "web"),
    )
    .await
    .unwrap();
    World { server, client }
}

fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Kubernetes docs, "Namespaces" and "Finalizers": a deleted namespace is `Terminating` (with
/// `deletionTimestamp`) until the namespace controller has deleted its contents; meanwhile
/// the `NamespaceLifecycle` admission plugin refuses new content with 403 Forbidden
/// (kubernetes/kubernetes `plugin/pkg/admission/namespace/lifecycle/admission.go`: "unable to
/// create new content in namespace %s because it is being terminated").
#[tokio::test]
async fn a_deleted_namespace_terminates_refuses_new_content_then_goes() {
    let w = world(Duration::from_millis(300)).await;
    let namespaces = api_of(&w.client, "v1", "Namespace", "namespaces", None);
    let live = serde_json::to_value(namespaces.get("dev").await.unwrap()).unwrap();
    assert_eq!(live["spec"]["finalizers"], json!(["kubernetes"]), "{live}");
    namespaces
        .delete("dev", &DeleteParams::default())
        .await
        .unwrap();
    let live = serde_json::to_value(namespaces.get("dev").await.unwrap()).unwrap();
    assert_eq!(live["status"]["phase"], "Terminating", "{live}");
    assert!(live["metadata"]["deletionTimestamp"].is_string(), "{live}");
    let configmaps = api_of(&w.client, "v1", "ConfigMap", "configmaps", Some("dev"));
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "late", "namespace": "dev"}});
    let (code, message) = status(
        configmaps
            .create(&PostParams::default(), &obj(cm.clone()))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "configmaps \"late\" is forbidden: unable to create new content in namespace dev \
         because it is being terminated"
    );
    // Server-side apply creates too: refused the same way.
    assert_eq!(status(apply(&configmaps, cm).await.unwrap_err()).0, 403);
    until("the namespace going", Duration::from_secs(5), async || {
        namespaces.get_opt("dev").await.unwrap().is_none()
    })
    .await;
    assert!(
        w.server
            .objects()
            .iter()
            .all(|o| o["metadata"]["namespace"] != "dev"),
        "left in the namespace: {:?}",
        w.server.objects()
    );
}

/// Kubernetes docs, "Persistent Volumes", "Storage Object in Use Protection": a claim carries
/// `kubernetes.io/pvc-protection` and its removal is postponed until no pod uses it.
#[tokio::test]
async fn a_claim_in_use_stays_until_its_pods_are_gone() {
    let w = world(Duration::from_millis(50)).await;
    let claims = api_of(
        &w.client,
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        Some("dev"),
    );
    let live = serde_json::to_value(claims.get("data").await.unwrap()).unwrap();
    assert_eq!(finalizers(&live), ["kubernetes.io/pvc-protection"]);
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let live = serde_json::to_value(claims.get("data").await.unwrap()).unwrap();
    assert!(live["metadata"]["deletionTimestamp"].is_string(), "{live}");
    api_of(
        &w.client,
        "apps/v1",
        "Deployment",
        "deployments",
        Some("dev"),
    )
    .delete("web", &DeleteParams::default())
    .await
    .unwrap();
    assert!(
        claims.get_opt("data").await.unwrap().is_none(),
        "the claim outlived its last pod"
    );
}

/// Kubernetes docs, "Create an External Load Balancer", "Garbage collecting load balancers": a
/// LoadBalancer Service carries `service.kubernetes.io/load-balancer-cleanup` and is deleted
/// only after the cloud's load balancer is. The product's delete waits for it, reporting the
/// finalizer it waits for.
#[tokio::test]
async fn a_load_balancer_service_goes_after_its_load_balancer_and_the_applier_waits() {
    let w = world(Duration::from_millis(600)).await;
    let services = api_of(&w.client, "v1", "Service", "services", Some("dev"));
    let live = serde_json::to_value(services.get("web").await.unwrap()).unwrap();
    assert_eq!(
        finalizers(&live),
        ["service.kubernetes.io/load-balancer-cleanup"]
    );
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    let applier = Applier::new(w.client.clone()).with_progress(Arc::new(move |_, detail| {
        sink.lock().unwrap().push(detail.to_string());
    }));
    let watcher = {
        let services = services.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            serde_json::to_value(services.get("web").await.unwrap()).unwrap()
        })
    };
    let start = Instant::now();
    applier
        .delete(&live, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    let during = watcher.await.unwrap();
    assert!(
        during["metadata"]["deletionTimestamp"].is_string(),
        "{during}"
    );
    assert!(services.get_opt("web").await.unwrap().is_none());
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|d| d.contains("service.kubernetes.io/load-balancer-cleanup")),
        "{seen:?}"
    );
}

/// The product under namespace termination: a namespace applied while a destroy's delete
/// still terminates it is waited for and created anew (before: the apply wrote into the
/// terminating namespace and waited for `Active` until its deadline, and everything applied
/// into it was refused with 403).
#[tokio::test]
async fn applying_a_namespace_that_is_terminating_waits_and_creates_it_anew() {
    let w = world(Duration::from_millis(500)).await;
    let namespaces = api_of(&w.client, "v1", "Namespace", "namespaces", None);
    let before = serde_json::to_value(namespaces.get("dev").await.unwrap()).unwrap();
    namespaces
        .delete("dev", &DeleteParams::default())
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    let applier = Applier::new(w.client.clone()).with_progress(Arc::new(move |_, detail| {
        sink.lock().unwrap().push(detail.to_string());
    }));
    applier
        .apply(&namespace("dev"), &namespace("dev"), Duration::from_secs(5))
        .await
        .expect("the namespace is created again");
    let after = serde_json::to_value(namespaces.get("dev").await.unwrap()).unwrap();
    assert_ne!(before["metadata"]["uid"], after["metadata"]["uid"]);
    assert_eq!(after["status"]["phase"], "Active");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|d| d.contains("still being deleted") && d.contains("Terminating")),
        "{seen:?}"
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "after", "namespace": "dev"}});
    applier
        .apply(&cm, &cm, Duration::from_secs(5))
        .await
        .expect("content goes into the new namespace");
}

/// Kubernetes docs, "EndpointSlices" (kubernetes/kubernetes `pkg/controller/endpointslice`):
/// a Service with a selector gets a slice labelled `kubernetes.io/service-name`, listing the
/// selected pods' addresses with their readiness and the Service's ports resolved against the
/// pods' named container ports.
#[tokio::test]
async fn endpoint_slices_follow_the_ready_pods_a_service_selects() {
    let w = world(Duration::from_millis(50)).await;
    let slices = api_of(
        &w.client,
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "endpointslices",
        Some("dev"),
    );
    let params = kube::api::ListParams::default().labels("kubernetes.io/service-name=web");
    let list = slices.list(&params).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let slice = serde_json::to_value(&list.items[0]).unwrap();
    assert_eq!(
        slice["endpoints"][0]["conditions"]["ready"], true,
        "{slice}"
    );
    assert_eq!(slice["ports"][0]["port"], 8080, "{slice}");
    // A selector nothing matches: the slice lists no endpoint.
    apply(
        &api_of(&w.client, "v1", "Service", "services", Some("dev")),
        service("LoadBalancer", "nothing"),
    )
    .await
    .unwrap();
    let list = slices.list(&params).await.unwrap();
    let slice = serde_json::to_value(&list.items[0]).unwrap();
    assert_eq!(slice["endpoints"], json!([]), "{slice}");
}

/// Kubernetes docs, "Authorization", "Checking API access": a `SubjectAccessReview` answers
/// whether a user may do something, from the authorizers (here RBAC over the stored roles).
#[tokio::test]
async fn subject_access_reviews_are_answered_from_the_stored_rbac() {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let server = KubeApi::new();
    let client = server.client();
    apply(
        &api_of(
            &client,
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "clusterroles",
            None,
        ),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "reader"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                          "verbs": ["get", "list", "watch"]}]}),
    )
    .await
    .unwrap();
    apply(
        &api_of(
            &client,
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            None,
        ),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "reader"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "ingress", "namespace": "dev"}]}),
    )
    .await
    .unwrap();
    let reviews: Api<SubjectAccessReview> = Api::all(client);
    let ask = async |resource: &str| {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some("system:serviceaccount:dev:ingress".into()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("watch".into()),
                    group: Some(String::new()),
                    resource: Some(resource.into()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        reviews
            .create(&PostParams::default(), &review)
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    };
    assert!(ask("configmaps").await);
    assert!(!ask("secrets").await);
}
