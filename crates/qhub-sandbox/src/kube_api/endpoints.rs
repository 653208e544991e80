//! The EndpointSlice controller: for every Service with a selector, one
//! `discovery.k8s.io/v1` EndpointSlice listing the pods it selects, each with the pod's
//! address and its readiness (`conditions.ready` follows the pod's `Ready` condition), labelled
//! `kubernetes.io/service-name` and owned by the Service, as the controller in
//! kubernetes/kubernetes `pkg/controller/endpointslice` writes them (Kubernetes docs,
//! "EndpointSlices"). Ingress controllers route to these addresses, so a Service whose slice
//! has no ready endpoint answers 503 behind the ingress.
//!
//! Simplified: one slice per Service (the real controller splits at 100 endpoints), IPv4 only,
//! a named `targetPort` resolved against the pod's container ports.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::store::{Key, State, str_at};

/// The label naming a slice's Service.
pub(crate) const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";

fn selects(selector: &serde_json::Map<String, Value>, pod: &Value) -> bool {
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The port a Service port reaches on `pod`.
fn target_port(port: &Value, pod: &Value) -> Value {
    match port.get("targetPort") {
        Some(Value::Number(n)) => json!(n),
        Some(Value::String(name)) => pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c.get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| p.get("containerPort").cloned())
            .unwrap_or(Value::Null),
        _ => port.get("port").cloned().unwrap_or(Value::Null),
    }
}

fn slice_name(service: &str, uid: &str) -> String {
    let digest = Sha256::digest(uid.as_bytes());
    let suffix: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    format!("{service}-{}", &suffix[..5])
}

/// Brings every Service's EndpointSlice in line with the pods it selects.
pub(crate) fn sync(st: &mut State) {
    let services: Vec<(Key, Value)> = st
        .objects
        .iter()
        .filter(|(k, s)| {
            k.group.is_empty()
                && k.kind == "Service"
                && s.pointer("/spec/selector")
                    .and_then(Value::as_object)
                    .is_some_and(|m| !m.is_empty())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, svc) in services {
        let Some(uid) = str_at(&svc, &["metadata", "uid"]) else {
            continue;
        };
        let selector = svc
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let pods: Vec<&Value> = st
            .objects
            .iter()
            .filter(|(k, p)| {
                k.group.is_empty()
                    && k.kind == "Pod"
                    && k.namespace == key.namespace
                    && selects(&selector, p)
                    && str_at(p, &["status", "podIP"]).is_some()
            })
            .map(|(_, p)| p)
            .collect();
        let endpoints: Vec<Value> = pods
            .iter()
            .map(|p| {
                let ready = pod_ready(p);
                json!({
                    "addresses": [str_at(p, &["status", "podIP"])],
                    "conditions": {"ready": ready, "serving": ready, "terminating": false},
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": key.namespace,
                        "name": str_at(p, &["metadata", "name"]),
                        "uid": str_at(p, &["metadata", "uid"]),
                    },
                })
            })
            .collect();
        let ports: Vec<Value> = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|port| {
                let number = pods
                    .first()
                    .map_or_else(|| target_port(port, &Value::Null), |p| target_port(port, p));
                json!({
                    "name": port.get("name").cloned().unwrap_or(json!("")),
                    "port": number,
                    "protocol": port.get("protocol").cloned().unwrap_or(json!("TCP")),
                })
            })
            .collect();
        let name = slice_name(&key.name, uid);
        let slice_key = Key {
            group: "discovery.k8s.io".into(),
            kind: "EndpointSlice".into(),
            namespace: key.namespace.clone(),
            name: name.clone(),
        };
        let live = st.objects.get(&slice_key);
        let mut slice = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": key.namespace,
                "uid": format!("slice-{uid}"),
                "creationTimestamp": live
                    .and_then(|l| l.pointer("/metadata/creationTimestamp").cloned())
                    .unwrap_or_else(|| json!(super::ops::now())),
                "generation": 1,
                "labels": {SERVICE_NAME: key.name, MANAGED_BY: CONTROLLER},
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": key.name,
                    "uid": uid,
                    "controller": true,
                    "blockOwnerDeletion": true,
                }],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        });
        if let Some(live) = live {
            let mut comparable = live.clone();
            if let Some(m) = comparable
                .pointer_mut("/metadata")
                .and_then(Value::as_object_mut)
            {
                m.remove("resourceVersion");
            }
            if comparable == slice {
                continue;
            }
            if let (Some(rv), Some(m)) = (
                live.pointer("/metadata/resourceVersion").cloned(),
                slice
                    .pointer_mut("/metadata")
                    .and_then(Value::as_object_mut),
            ) {
                m.insert("resourceVersion".into(), rv);
            }
        }
        st.put(slice_key, slice);
    }
}
