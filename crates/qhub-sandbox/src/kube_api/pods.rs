//! Simulated pods: the pods a ready Deployment or StatefulSet runs, as the ReplicaSet and
//! StatefulSet controllers and the kubelet would report them (Running, Ready). Port-forwards
//! reach a workload through them, as `kubectl port-forward` does.
//!
//! Only workloads the simulated controllers made ready have pods; a workload that is not ready
//! has none of its own (tests that need a failing pod create it themselves). A pod names its
//! workload in `ownerReferences`, so deleting the workload collects it. A Deployment's pods are
//! named `{name}-{template hash}-{replica}`: a new pod template rolls out new pods under new
//! names, as a ReplicaSet rollout does.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::store::{Key, State, str_at};

/// Whether `key` is a workload kind whose pods are simulated.
fn simulated(key: &Key) -> bool {
    key.group == "apps" && matches!(key.kind.as_str(), "Deployment" | "StatefulSet")
}

/// The pods `workload` runs now: one per ready replica.
fn wanted(key: &Key, workload: &Value, now: &str) -> Vec<(Key, Value)> {
    let ready = workload
        .pointer("/status/readyReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0);
    let Some(uid) = str_at(workload, &["metadata", "uid"]) else {
        return Vec::new();
    };
    let template = workload
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let hash = {
        let digest = Sha256::digest(template.to_string().as_bytes());
        digest
            .iter()
            .take(5)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let spec = template
        .get("spec")
        .cloned()
        .unwrap_or_else(|| json!({"containers": []}));
    let containers: Vec<Value> = spec
        .get("containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    json!({
                        "name": c.get("name").cloned().unwrap_or(Value::Null),
                        "image": c.get("image").cloned().unwrap_or(Value::Null),
                        "ready": true,
                        "started": true,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": now}},
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    (0..ready)
        .map(|i| {
            let name = if key.kind == "StatefulSet" {
                format!("{}-{i}", key.name)
            } else {
                format!("{}-{hash}-{i}", key.name)
            };
            let pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": key.namespace,
                    "uid": format!("pod-{uid}-{hash}-{i}"),
                    "creationTimestamp": now,
                    "labels": labels,
                    "ownerReferences": [{
                        "apiVersion": "apps/v1",
                        "kind": key.kind,
                        "name": key.name,
                        "uid": uid,
                        "controller": true,
                        "blockOwnerDeletion": true,
                    }],
                },
                "spec": spec,
                "status": {
                    "phase": "Running",
                    "podIP": format!("10.244.0.{}", i + 10),
                    "startTime": now,
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": now},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    ],
                    "containerStatuses": containers,
                },
            });
            let pod_key = Key {
                group: String::new(),
                kind: "Pod".into(),
                namespace: key.namespace.clone(),
                name,
            };
            (pod_key, pod)
        })
        .collect()
}

/// Brings the pods of the workload stored under `key` in line with its status: creates the
/// pods of its ready replicas and removes its pods that are no longer wanted (an older
/// template, fewer ready replicas). Pods it does not own are never touched.
pub(crate) fn sync(st: &mut State, key: &Key, workload: &Value, now: &str) {
    if !simulated(key) {
        return;
    }
    let Some(uid) = str_at(workload, &["metadata", "uid"]) else {
        return;
    };
    let wanted = wanted(key, workload, now);
    let owned: Vec<Key> = st
        .objects
        .iter()
        .filter(|(k, o)| k.kind == "Pod" && k.namespace == key.namespace && owned_by(o, uid))
        .map(|(k, _)| k.clone())
        .collect();
    for k in owned {
        if !wanted.iter().any(|(w, _)| *w == k) {
            st.remove(&k);
        }
    }
    for (k, mut pod) in wanted {
        if !st.objects.contains_key(&k) {
            mount_claims(st, &k.namespace, &mut pod);
            st.put(k, pod);
        }
    }
}

/// The annotation of a simulated pod listing the claims whose files kubelet re-owned to the
/// pod's `fsGroup` when it mounted them (group read/write added to every file, recursively).
pub(crate) const FS_GROUP_CHANGED: &str = "sandbox.qhub.dev/fs-group-changed";
/// The annotation of a PersistentVolumeClaim holding the group its volume's root belongs to,
/// once a pod with an `fsGroup` mounted it.
pub(crate) const VOLUME_ROOT_GROUP: &str = "sandbox.qhub.dev/volume-root-group";

/// What kubelet does to the claims a new pod mounts when the pod sets `fsGroup`: with
/// `fsGroupChangePolicy: Always` (the default) it re-owns every file on every mount, adding
/// group read/write; with `OnRootMismatch` only when the volume's root does not belong to the
/// group yet, i.e. the first mount (kubernetes/kubernetes `pkg/volume/volume_linux.go`,
/// `SetVolumeOwnership`; Kubernetes docs, "Configure volume permission and ownership change
/// policy for Pods"). The pod records which claims were re-owned ([`FS_GROUP_CHANGED`]); the
/// claim remembers its root's group ([`VOLUME_ROOT_GROUP`]).
fn mount_claims(st: &mut State, namespace: &str, pod: &mut Value) {
    let Some(group) = pod
        .pointer("/spec/securityContext/fsGroup")
        .and_then(Value::as_i64)
    else {
        return;
    };
    let on_mismatch = pod
        .pointer("/spec/securityContext/fsGroupChangePolicy")
        .and_then(Value::as_str)
        == Some("OnRootMismatch");
    let claims: Vec<String> = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| str_at(v, &["persistentVolumeClaim", "claimName"]).map(str::to_string))
        .collect();
    let mut changed = Vec::new();
    for claim in claims {
        let key = Key {
            group: String::new(),
            kind: "PersistentVolumeClaim".into(),
            namespace: namespace.to_string(),
            name: claim.clone(),
        };
        let Some(mut pvc) = st.objects.get(&key).cloned() else {
            continue;
        };
        let root = pvc
            .pointer(&format!(
                "/metadata/annotations/{}",
                VOLUME_ROOT_GROUP.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .and_then(|g| g.parse::<i64>().ok());
        if on_mismatch && root == Some(group) {
            continue;
        }
        changed.push(claim);
        if root != Some(group) {
            let annotations = super::store::meta_mut(&mut pvc)
                .entry("annotations")
                .or_insert_with(|| json!({}));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(VOLUME_ROOT_GROUP.into(), json!(group.to_string()));
            }
            st.put(key, pvc);
        }
    }
    if !changed.is_empty() {
        let annotations = super::store::meta_mut(pod)
            .entry("annotations")
            .or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(FS_GROUP_CHANGED.into(), json!(changed.join(",")));
        }
    }
}

/// Whether `pod` names the object with `uid` as its controller.
pub(crate) fn owned_by(pod: &Value, uid: &str) -> bool {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
        })
}

/// The name of the workload that controls `pod`, if any.
pub(crate) fn owner_name(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("name").and_then(Value::as_str))
}

/// `GET …/pods/{name}/log`: what the kubelet would answer, as text — a few lines per simulated
/// container (its start and readiness), the last `tail_lines` of them. As the API server does,
/// a pod with several containers needs `container`, and an unknown one is a 400
/// (kubernetes/kubernetes `pkg/registry/core/pod/strategy.go`, `LogLocation`).
pub(crate) fn log(
    pod: &Value,
    container: Option<&str>,
    tail_lines: Option<&str>,
) -> Result<String, super::api_err::ApiErr> {
    use super::api_err::ApiErr;
    let name = str_at(pod, &["metadata", "name"]).unwrap_or_default();
    // Init containers have logs too (and count among the names `container` may take).
    let containers: Vec<&Value> = ["/spec/initContainers", "/spec/containers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .collect();
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let chosen = match (container, names.as_slice()) {
        (Some(c), _) if names.contains(&c) => c,
        (Some(c), _) => {
            return Err(ApiErr::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        (None, _)
            if pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map(Vec::len)
                == Some(1) =>
        {
            pod.pointer("/spec/containers/0/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
        }
        (None, _) => {
            return Err(ApiErr::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let image = containers
        .iter()
        .find(|c| c["name"] == chosen)
        .and_then(|c| c["image"].as_str())
        .unwrap_or("unknown");
    let since = str_at(pod, &["metadata", "creationTimestamp"]).unwrap_or("1970-01-01T00:00:00Z");
    let lines = [
        format!("{since} {chosen}: starting (image {image})"),
        format!("{since} {chosen}: listening"),
        format!("{since} {chosen}: ready"),
    ];
    let tail = tail_lines
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(lines.len())
        .min(lines.len());
    Ok(lines[lines.len() - tail..]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect())
}
