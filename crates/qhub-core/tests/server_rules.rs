//! What a real API server enforces for what we send, enforced by the in-memory API: server
//! defaults nobody owns, the strategy rule they make reachable, immutable fields and the PVC
//! resize admission plugin. Each test sends a known-bad request and expects the real server's
//! answer (the source is cited beside each rule in `sandbox/kube_api/`); then the product's own
//! applier gets through what the server refuses.

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
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

async fn apply(
    api: &Api<DynamicObject>,
    manager: &str,
    body: &Value,
) -> Result<Value, kube::Error> {
    let name = body["metadata"]["name"].as_str().unwrap();
    let obj: DynamicObject = serde_json::from_value(body.clone()).unwrap();
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&obj),
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

fn deployment(strategy: Option<Value>) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "dev"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "nginx:1.29",
                                  "ports": [{"containerPort": 80}]}]}},
        },
    });
    if let Some(s) = strategy {
        d["spec"]["strategy"] = s;
    }
    d
}

/// kubernetes/kubernetes `pkg/apis/apps/v1/defaults.go` and `pkg/apis/core/v1/defaults.go`:
/// the defaults land in the object but in no manager's managedFields.
#[tokio::test]
async fn defaults_are_filled_and_owned_by_nobody() {
    let server = KubeApi::new();
    let client = server.client();
    let deployments = api_of(&client, "apps/v1", "Deployment", "deployments", Some("dev"));
    let live = apply(&deployments, "qhub", &deployment(None))
        .await
        .unwrap();
    assert_eq!(
        live["spec"]["strategy"],
        json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    assert_eq!(live["spec"]["revisionHistoryLimit"], 10);
    let pod = &live["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["dnsPolicy"], "ClusterFirst");
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(pod["containers"][0]["ports"][0]["protocol"], "TCP");
    let owned = live["metadata"]["managedFields"].to_string();
    assert!(
        !owned.contains("strategy"),
        "a defaulted field has an owner: {owned}"
    );
    assert!(!owned.contains("revisionHistoryLimit"), "{owned}");

    let services = api_of(&client, "v1", "Service", "services", Some("dev"));
    let svc = apply(
        &services,
        "qhub",
        &json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "dev"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}),
    )
    .await
    .unwrap();
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    // Applying the same again changes nothing: defaults are not a diff.
    let before = server.mutations();
    apply(&deployments, "qhub", &deployment(None))
        .await
        .unwrap();
    assert_eq!(server.mutations(), before, "a re-apply over defaults wrote");
}

/// kubernetes/kubernetes#24198 and `ValidateDeploymentStrategy`
/// (`pkg/apis/apps/validation/validation.go`): the defaulted rollingUpdate nobody owns survives
/// an apply of `type: Recreate`, and the result is refused.
#[tokio::test]
async fn recreate_over_a_defaulted_rolling_update_is_refused() {
    let server = KubeApi::new();
    let client = server.client();
    let deployments = api_of(&client, "apps/v1", "Deployment", "deployments", Some("dev"));
    apply(&deployments, "qhub", &deployment(None))
        .await
        .unwrap();
    let err = apply(
        &deployments,
        "qhub",
        &deployment(Some(json!({"type": "Recreate"}))),
    )
    .await
    .unwrap_err();
    let (code, message) = status(err);
    assert_eq!(code, 422, "{message}");
    assert_eq!(
        message,
        "Deployment.apps \"web\" is invalid: spec.strategy.rollingUpdate: Forbidden: may not be \
         specified when strategy `type` is 'Recreate'"
    );
}

/// Traefik's Deployment as the product renders it for `certificate.type`.
fn traefik(kind: qhub_core::config::certificate::CertificateKind) -> Value {
    let mut config = qhub_core::config::init::render(&qhub_core::config::init::InitOptions::new(
        qhub_core::config::provider::ProviderKind::Aws,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    config.certificate.kind = kind;
    config.certificate.acme_email = Some("admin@example.com".into());
    let facts = qhub_core::provider::ClusterFacts::from_config(&config);
    qhub_core::kubernetes::components::manifests(&config, &facts)
        .unwrap()
        .into_iter()
        .find(|m| m["kind"] == "Deployment" && m["metadata"]["name"] == "traefik")
        .unwrap()
}

/// Switching `certificate.type` to lets-encrypt makes Traefik's Deployment `Recreate` (its
/// ACME store is a ReadWriteOnce volume) and back: the product's applier gets through both
/// ways on the same object (before the fix the first switch was the 422 above).
#[tokio::test]
async fn the_certificate_switch_applies_both_ways() {
    use qhub_core::config::certificate::CertificateKind;
    let server = KubeApi::new();
    let applier = Applier::new(server.client());
    let deadline = Duration::from_secs(5);
    let rolling = traefik(CertificateKind::SelfSigned);
    let recreate = traefik(CertificateKind::LetsEncrypt);
    assert_eq!(recreate["spec"]["strategy"]["type"], "Recreate");
    let live = || {
        server
            .objects()
            .into_iter()
            .find(|o| o["kind"] == "Deployment")
            .unwrap()
    };
    applier.apply(&rolling, &rolling, deadline).await.unwrap();
    assert_eq!(
        live()["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );
    applier.apply(&recreate, &recreate, deadline).await.unwrap();
    assert_eq!(live()["spec"]["strategy"], json!({"type": "Recreate"}));
    applier.apply(&rolling, &rolling, deadline).await.unwrap();
    assert_eq!(live()["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        live()["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );
    applier.apply(&recreate, &recreate, deadline).await.unwrap();
    assert_eq!(live()["spec"]["strategy"], json!({"type": "Recreate"}));
}

async fn refused(api: &Api<DynamicObject>, body: &Value) -> (u16, String) {
    status(
        apply(api, "qhub", body)
            .await
            .expect_err("the server accepted it"),
    )
}

/// `ValidateStatefulSetUpdate`, `ValidateDeploymentUpdate`, `ValidateJobSpecUpdate`,
/// `ValidatePersistentVolumeUpdate`, `ValidateServiceUpdate` (kubernetes/kubernetes
/// `pkg/apis/{apps,batch,core}/validation/validation.go`).
#[tokio::test]
async fn immutable_fields_are_refused_with_the_servers_words() {
    let server = KubeApi::new();
    let client = server.client();
    let sets = api_of(
        &client,
        "apps/v1",
        "StatefulSet",
        "statefulsets",
        Some("dev"),
    );
    let set = |size: &str| {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "dev"},
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": size}}}}]}})
    };
    apply(&sets, "qhub", &set("10Gi")).await.unwrap();
    let (code, msg) = refused(&sets, &set("20Gi")).await;
    assert_eq!(code, 422);
    assert!(msg.starts_with("StatefulSet.apps \"db\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas'"), "{msg}");
    // What may change, changes.
    let mut scaled = set("10Gi");
    scaled["spec"]["replicas"] = json!(2);
    apply(&sets, "qhub", &scaled).await.unwrap();

    let deployments = api_of(&client, "apps/v1", "Deployment", "deployments", Some("dev"));
    apply(&deployments, "qhub", &deployment(None))
        .await
        .unwrap();
    let mut moved = deployment(None);
    moved["spec"]["selector"] = json!({"matchLabels": {"app": "web", "tier": "front"}});
    moved["spec"]["template"]["metadata"]["labels"]["tier"] = json!("front");
    let (code, msg) = refused(&deployments, &moved).await;
    assert_eq!(code, 422);
    assert!(
        msg.contains("spec.selector: Invalid value") && msg.ends_with("field is immutable"),
        "{msg}"
    );

    let jobs = api_of(&client, "batch/v1", "Job", "jobs", Some("dev"));
    let job = |image: &str| {
        json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "migrate", "namespace": "dev"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "m", "image": image}]}}}})
    };
    apply(&jobs, "qhub", &job("tool:1")).await.unwrap();
    let (code, msg) = refused(&jobs, &job("tool:2")).await;
    assert_eq!(code, 422);
    assert!(
        msg.contains("spec.template: Invalid value") && msg.ends_with("field is immutable"),
        "{msg}"
    );

    let volumes = api_of(&client, "v1", "PersistentVolume", "persistentvolumes", None);
    let pv = |server: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "dev-shared"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                 "storageClassName": "", "nfs": {"server": server, "path": "/"}}})
    };
    apply(&volumes, "qhub", &pv("10.0.0.1")).await.unwrap();
    let (code, msg) = refused(&volumes, &pv("10.0.0.2")).await;
    assert_eq!(
        (code, msg.as_str()),
        (
            422,
            "PersistentVolume \"dev-shared\" is invalid: spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"
        )
    );

    let services = api_of(&client, "v1", "Service", "services", Some("dev"));
    let svc = apply(
        &services,
        "qhub",
        &json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "dev"},
        "spec": {"ports": [{"port": 80}]}}),
    )
    .await
    .unwrap();
    assert!(svc["spec"]["clusterIP"].is_string());
    let (code, msg) = refused(
        &services,
        &json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "dev"},
        "spec": {"clusterIP": "10.96.99.99", "ports": [{"port": 80}]}}),
    )
    .await;
    assert_eq!(code, 422);
    assert!(
        msg.contains("spec.clusterIPs[0]: Invalid value")
            && msg.ends_with("may not change once set"),
        "{msg}"
    );
}

fn claim(class: &str, size: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "dev"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                 "resources": {"requests": {"storage": size}}}})
}

/// The `PersistentVolumeClaimResize` admission plugin
/// (`plugin/pkg/admission/storage/persistentvolume/resize/admission.go`) and the shrink rule
/// of `ValidatePersistentVolumeClaimUpdate`.
#[tokio::test]
async fn claims_grow_only_where_their_class_allows_it_and_never_shrink() {
    let server = KubeApi::new();
    let client = server.client();
    let claims = api_of(
        &client,
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        Some("dev"),
    );
    let forbidden = "persistentvolumeclaims \"data\" is forbidden: only dynamically provisioned pvc \
                     can be resized and the storageclass that provisions the pvc must support resize";

    // A static claim (no class).
    apply(&claims, "qhub", &claim("", "10Gi")).await.unwrap();
    assert_eq!(
        refused(&claims, &claim("", "20Gi")).await,
        (403, forbidden.to_string())
    );
    let (code, msg) = refused(&claims, &claim("", "5Gi")).await;
    assert_eq!(code, 422);
    assert!(
        msg.ends_with(
            "spec.resources.requests.storage: Forbidden: field can not be less than previous value"
        ),
        "{msg}"
    );

    // Anything else in a claim's spec is immutable (`ValidatePersistentVolumeClaimUpdate`).
    let mut moved = claim("", "10Gi");
    moved["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    let (code, msg) = refused(&claims, &moved).await;
    assert_eq!(code, 422);
    assert!(
        msg.ends_with(
            "spec: Forbidden: spec is immutable after creation except resources.requests and \
             volumeAttributesClassName for bound claims"
        ),
        "{msg}"
    );

    // A class that does not exist, then one without expansion, then one with it.
    let server_side = KubeApi::new();
    let client = server_side.client();
    let claims = api_of(
        &client,
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        Some("dev"),
    );
    let classes = api_of(
        &client,
        "storage.k8s.io/v1",
        "StorageClass",
        "storageclasses",
        None,
    );
    apply(&claims, "qhub", &claim("gp3", "10Gi")).await.unwrap();
    assert_eq!(refused(&claims, &claim("gp3", "20Gi")).await.0, 403);
    let sc = |allow: bool| {
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "gp3"}, "provisioner": "ebs.csi.aws.com", "allowVolumeExpansion": allow})
    };
    apply(&classes, "qhub", &sc(false)).await.unwrap();
    assert_eq!(refused(&claims, &claim("gp3", "20Gi")).await.0, 403);
    apply(&classes, "qhub", &sc(true)).await.unwrap();
    apply(&claims, "qhub", &claim("gp3", "20Gi")).await.unwrap();
}

/// Field pruning of `apiextensions.k8s.io/v1` CRDs (Kubernetes docs, "Extend the Kubernetes
/// API with CustomResourceDefinitions", "Field pruning"): what the schema does not declare is
/// dropped on write, unless the level preserves unknown fields.
#[tokio::test]
async fn custom_objects_are_pruned_to_their_schema() {
    let server = KubeApi::new();
    // Pruning is the subject here, not the establishing delay (server_lifecycle.rs).
    server.set_crd_established_after(Duration::ZERO);
    let client = server.client();
    let crds = api_of(
        &client,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        None,
    );
    apply(&crds, "qhub", &json!({"apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "string"},
                        "nested": {"type": "object", "properties": {"kept": {"type": "string"}}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}}]}}))
    .await
    .unwrap();
    let widgets = api_of(&client, "example.com/v1", "Widget", "widgets", Some("dev"));
    let stored = apply(
        &widgets,
        "qhub",
        &json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "namespace": "dev", "labels": {"a": "b"}},
        "spec": {"size": "L", "unknown": 1, "nested": {"kept": "k", "dropped": "d"},
                 "labels": {"any": "thing"}, "open": {"whatever": {"deep": true}}},
        "extra": "gone"}),
    )
    .await
    .unwrap();
    assert_eq!(
        stored["spec"],
        json!({"size": "L", "nested": {"kept": "k"}, "labels": {"any": "thing"},
               "open": {"whatever": {"deep": true}}})
    );
    assert!(stored.get("extra").is_none());
    assert_eq!(stored["metadata"]["labels"]["a"], "b");
}

/// Every Traefik object the platform renders survives its own CRDs' pruning unchanged (a field
/// our schema forgot would silently vanish on a real cluster).
#[tokio::test]
async fn nothing_we_render_is_pruned_by_our_crds() {
    use qhub_core::config::certificate::CertificateKind;
    for kind in [
        CertificateKind::SelfSigned,
        CertificateKind::LetsEncrypt,
        CertificateKind::Disabled,
    ] {
        let mut config =
            qhub_core::config::init::render(&qhub_core::config::init::InitOptions::new(
                qhub_core::config::provider::ProviderKind::Aws,
                "demo",
                "demo.example.com",
                "not-a-real-password",
            ))
            .unwrap();
        config.certificate.kind = kind;
        config.certificate.acme_email = Some("admin@example.com".into());
        let facts = qhub_core::provider::ClusterFacts::from_config(&config);
        let manifests = qhub_core::kubernetes::components::manifests(&config, &facts).unwrap();
        let server = KubeApi::new();
        let applier = Applier::new(server.client());
        let deadline = Duration::from_secs(5);
        let (crds, rest): (Vec<&Value>, Vec<&Value>) = manifests
            .iter()
            .partition(|m| m["kind"] == "CustomResourceDefinition");
        for m in crds {
            applier.apply(m, m, deadline).await.unwrap();
        }
        let mut checked = 0;
        for m in rest.into_iter().filter(|m| {
            m["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .starts_with("traefik.io/")
        }) {
            applier.apply(m, m, deadline).await.unwrap();
            let stored = server
                .objects()
                .into_iter()
                .find(|o| o["kind"] == m["kind"] && o["metadata"]["name"] == m["metadata"]["name"])
                .unwrap();
            assert_eq!(
                stored["spec"], m["spec"],
                "{kind:?}: {} was pruned",
                m["metadata"]["name"]
            );
            checked += 1;
        }
        assert!(checked > 0);
    }
}
