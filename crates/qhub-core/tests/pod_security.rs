//! Pod Security admission in the in-memory API, and what a deploy makes of it: a pod that
//! breaks its namespace's `pod-security.kubernetes.io/enforce` level is refused (403), a
//! Deployment whose pods are refused gets `ReplicaFailure`, and the apply fails at once with
//! the admission message instead of waiting out its deadline (Kubernetes docs, "Pod Security
//! Admission").

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use qhub_core::kubernetes::KubeError;
use qhub_core::kubernetes::apply::Applier;
use qhub_sandbox::kube_api::KubeApi;
use serde_json::json;

fn namespace(name: &str, level: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name,
        "labels": {"pod-security.kubernetes.io/enforce": level}}}))
    .unwrap()
}

/// A pod spec that needs the `privileged` level (as the kernel NFS server did).
fn privileged_spec() -> serde_json::Value {
    json!({"containers": [{"name": "nfs", "image": "nfs",
        "securityContext": {"privileged": true}}]})
}

#[tokio::test]
async fn a_pod_breaking_its_namespace_level_is_forbidden() {
    let api = KubeApi::new();
    let client = api.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for (name, level) in [
        ("platform", "restricted"),
        ("platform-privileged", "privileged"),
    ] {
        namespaces
            .create(&PostParams::default(), &namespace(name, level))
            .await
            .unwrap();
    }
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "nfs"}, "spec": privileged_spec()}))
            .unwrap();
    let refused = Api::<Pod>::namespaced(client.clone(), "platform")
        .create(&PostParams::default(), &pod)
        .await
        .expect_err("a privileged pod in a restricted namespace");
    match refused {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.starts_with(
                    "pods \"nfs\" is forbidden: violates PodSecurity \"restricted:latest\": privileged (container \"nfs\" must not set securityContext.privileged=true)"
                ),
                "{}",
                status.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    // Where the level allows it, the same pod is created.
    Api::<Pod>::namespaced(client, "platform-privileged")
        .create(&PostParams::default(), &pod)
        .await
        .expect("privileged namespace");
}

#[tokio::test]
async fn a_workload_whose_pods_are_refused_fails_the_apply_at_once_with_the_admission_message() {
    let api = KubeApi::new();
    let applier = Applier::new(api.client());
    let ns = serde_json::to_value(namespace("dev", "restricted")).unwrap();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": ns["metadata"]});
    applier
        .apply(&ns, &ns, Duration::from_secs(10))
        .await
        .unwrap();
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nfs-server", "namespace": "dev"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nfs"}},
            "template": {"metadata": {"labels": {"app": "nfs"}}, "spec": privileged_spec()}},
    });
    let started = Instant::now();
    let err = applier
        .apply(&deployment, &deployment, Duration::from_secs(600))
        .await
        .expect_err("its pods are refused");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited {:?}",
        started.elapsed()
    );
    match err {
        KubeError::Broken { id, detail, .. } => {
            assert_eq!(id.to_string(), "Deployment.apps/dev/nfs-server");
            assert!(
                detail.starts_with("ReplicaFailure: FailedCreate: pods \"nfs-server-")
                    && detail.contains(
                        "is forbidden: violates PodSecurity \"restricted:latest\": privileged (container \"nfs\""
                    ),
                "{detail}"
            );
        }
        other => panic!("expected Broken, got {other}"),
    }
    // The controller's view, as `kubectl describe` shows it.
    let live = Api::<Deployment>::namespaced(api.client(), "dev")
        .get("nfs-server")
        .await
        .unwrap();
    let conditions = live.status.unwrap().conditions.unwrap();
    let failure = conditions
        .iter()
        .find(|c| c.type_ == "ReplicaFailure")
        .expect("ReplicaFailure");
    assert_eq!(
        (failure.status.as_str(), failure.reason.as_deref()),
        ("True", Some("FailedCreate"))
    );
}
