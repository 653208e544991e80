//! Simulated controllers: the status a real cluster's controllers would write.

use serde_json::{Value, json};

use super::store::Key;

/// The annotation the simulated service controller puts on a LoadBalancer Service: its
/// address is made up and nothing answers there
/// ([`qhub_core::kubernetes::front_door::SIMULATED_LOAD_BALANCER`]).
pub(crate) const SIMULATED_LOAD_BALANCER: &str =
    qhub_core::kubernetes::front_door::SIMULATED_LOAD_BALANCER;

/// How many nodes the simulated cluster has (DaemonSets schedule one pod on each).
pub(crate) const NODES: u64 = 3;

/// Whether the kind's readiness is simulated with a delay (`set_ready_after`,
/// `set_auto_ready`; a CRD's with `set_crd_established_after`); other controllers (Namespace)
/// act at once, as they do in a cluster.
pub(crate) fn delayed(key: &Key, obj: &Value) -> bool {
    match (key.group.as_str(), key.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => true,
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job")
        | ("", "PersistentVolumeClaim") => true,
        ("", "Service") => is_load_balancer(obj),
        _ => false,
    }
}

fn is_load_balancer(obj: &Value) -> bool {
    obj.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer")
}

fn condition(typ: &str, ready: bool, reason: &str, now: &str) -> Value {
    json!({
        "type": typ,
        "status": if ready { "True" } else { "False" },
        "reason": reason,
        "message": "",
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    })
}

/// Writes the status a controller would for `obj`; `ready` says whether its workload is up.
/// Returns false for kinds without a simulated controller.
pub(crate) fn reconcile(key: &Key, obj: &mut Value, ready: bool, now: &str) -> bool {
    let generation = obj
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let replicas = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let up = if ready { replicas } else { 0 };
    let status = match (key.group.as_str(), key.kind.as_str()) {
        ("", "Namespace") => json!({"phase": "Active"}),
        ("apiextensions.k8s.io", "CustomResourceDefinition") if !ready => json!({
            // Until the naming and establishing controllers have run, the names are not
            // accepted and nothing of the kind is served.
            "conditions": [
                {"type": "NamesAccepted", "status": "False", "reason": "Pending",
                 "message": "the names have not been checked yet", "lastTransitionTime": now},
                {"type": "Established", "status": "False", "reason": "Installing",
                 "message": "the initial names have not been accepted yet", "lastTransitionTime": now},
            ],
            "acceptedNames": {"kind": "", "plural": ""},
            "storedVersions": [],
        }),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let stored: Vec<Value> = obj
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                        .filter_map(|v| v.get("name").cloned())
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
                "acceptedNames": obj.pointer("/spec/names").cloned().unwrap_or(json!({})),
                "storedVersions": stored,
            })
        }
        ("apps", "Deployment") => json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": up,
            "availableReplicas": up,
            "unavailableReplicas": replicas - up,
            "conditions": [
                condition(
                    "Available",
                    ready,
                    if ready { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                    now,
                ),
                condition(
                    "Progressing",
                    true,
                    if ready { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                    now,
                ),
            ],
        }),
        ("apps", "StatefulSet") => json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "currentReplicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": up,
            "availableReplicas": up,
            "currentRevision": format!("{}-{generation}", key.name),
            "updateRevision": format!("{}-{generation}", key.name),
        }),
        ("apps", "DaemonSet") => {
            let up = if ready { NODES } else { 0 };
            json!({
                "observedGeneration": generation,
                "desiredNumberScheduled": NODES,
                "currentNumberScheduled": NODES,
                "updatedNumberScheduled": NODES,
                "numberMisscheduled": 0,
                "numberReady": up,
                "numberAvailable": up,
                "numberUnavailable": NODES - up,
            })
        }
        ("batch", "Job") => {
            if ready {
                json!({
                    "startTime": now,
                    "completionTime": now,
                    "succeeded": 1,
                    "active": 0,
                    "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": now,
                         "lastTransitionTime": now},
                        {"type": "Complete", "status": "True", "lastProbeTime": now,
                         "lastTransitionTime": now},
                    ],
                })
            } else {
                json!({"startTime": now, "active": 1})
            }
        }
        ("", "Service") => {
            if is_load_balancer(obj) && ready {
                json!({"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ipMode": "VIP"}]}})
            } else {
                json!({"loadBalancer": {}})
            }
        }
        ("", "PersistentVolumeClaim") => {
            if ready {
                json!({
                    "phase": "Bound",
                    "accessModes": obj.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
                    "capacity": {
                        "storage": obj.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi")),
                    },
                })
            } else {
                json!({"phase": "Pending"})
            }
        }
        _ => return false,
    };
    if let Some(map) = obj.as_object_mut() {
        // Conditions keep their transition times while nothing changes, so an identical
        // write stays a no-op.
        let status = match map.get("status") {
            Some(old) if same_ignoring_times(old, &status) => old.clone(),
            _ => status,
        };
        map.insert("status".into(), status);
    }
    if key.group.is_empty() && key.kind == "Service" && is_load_balancer(obj) && ready {
        super::finalizers::on_load_balancer(obj);
        // Nothing listens at the simulated address: say so where a client can see it.
        let annotations = super::store::meta_mut(obj)
            .entry("annotations")
            .or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(SIMULATED_LOAD_BALANCER.into(), json!("true"));
        }
    }
    true
}

fn same_ignoring_times(a: &Value, b: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| !k.ends_with("Time"))
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    strip(a) == strip(b)
}

/// Allocates a Service's cluster IP, as the API server does on create (`None` stays
/// headless). The address comes from the service CIDR 10.96.0.0/12, like kubeadm's default.
pub(crate) fn allocate_cluster_ip(obj: &mut Value, seq: u64) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
        return;
    }
    if spec.get("clusterIP").and_then(Value::as_str).is_none() {
        let n = seq % 65_000 + 10;
        let ip = format!("10.96.{}.{}", n / 250, n % 250 + 1);
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
    }
}
