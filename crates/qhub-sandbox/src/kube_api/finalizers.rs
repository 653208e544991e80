//! Deletes that take time: finalizers, and the controllers that remove them.
//!
//! A DELETE of an object with finalizers only sets its `deletionTimestamp`; the object stays
//! visible until every finalizer is removed, then the API server deletes it (Kubernetes docs,
//! "Finalizers", <https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/>).
//! The ones the platform meets:
//! - a Namespace carries `spec.finalizers: [kubernetes]` from its create; its DELETE sets
//!   `status.phase: Terminating`, the namespace controller deletes everything in it, and the
//!   namespace goes once it is empty (docs, "Namespaces"; kubernetes/kubernetes
//!   `pkg/registry/core/namespace/storage/storage.go` and `pkg/controller/namespace`). Until then
//!   the `NamespaceLifecycle` admission plugin refuses new content with 403 "unable to create
//!   new content in namespace X because it is being terminated"
//!   (`plugin/pkg/admission/namespace/lifecycle/admission.go`);
//! - a PersistentVolumeClaim carries `kubernetes.io/pvc-protection` from its create (the
//!   `StorageObjectInUseProtection` admission plugin) and is removed only when no pod uses it
//!   (docs, "Persistent Volumes", "Storage Object in Use Protection");
//! - a LoadBalancer Service carries `service.kubernetes.io/load-balancer-cleanup` once the
//!   service controller has provisioned its load balancer, and goes only after the cloud's load
//!   balancer is released (docs, "Create an External Load Balancer", "Garbage collecting load
//!   balancers").
//!
//! The namespace controller's pass and the cloud's release take
//! [`super::KubeApi::set_finalize_after`]; freeing a claim happens as soon as its last pod goes.

use std::time::Instant;

use serde_json::{Value, json};

use super::store::{Key, State, meta_mut, str_at};

/// The Namespace finalizer of the namespace controller (in `spec.finalizers`).
pub(crate) const NAMESPACE: &str = "kubernetes";
/// The claim protection finalizer.
pub(crate) const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The service controller's load balancer finalizer.
pub(crate) const LB_CLEANUP: &str = "service.kubernetes.io/load-balancer-cleanup";

pub(crate) fn is_namespace(key: &Key) -> bool {
    key.group.is_empty() && key.kind == "Namespace"
}

fn is_pvc(key: &Key) -> bool {
    key.group.is_empty() && key.kind == "PersistentVolumeClaim"
}

fn is_service(key: &Key) -> bool {
    key.group.is_empty() && key.kind == "Service"
}

/// What the API server adds on create: a Namespace's `spec.finalizers`, a claim's protection.
pub(crate) fn on_create(key: &Key, obj: &mut Value) {
    if is_namespace(key) {
        if let Some(m) = obj.as_object_mut() {
            let spec = m.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                spec.entry("finalizers")
                    .or_insert_with(|| json!([NAMESPACE]));
            }
        }
    } else if is_pvc(key) {
        add(obj, PVC_PROTECTION);
    }
}

/// The service controller's finalizer, once it has provisioned a load balancer.
pub(crate) fn on_load_balancer(obj: &mut Value) {
    add(obj, LB_CLEANUP);
}

fn add(obj: &mut Value, finalizer: &str) {
    let meta = meta_mut(obj);
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(a) = list.as_array_mut()
        && !a.iter().any(|f| f.as_str() == Some(finalizer))
    {
        a.push(json!(finalizer));
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn drop_finalizer(obj: &mut Value, finalizer: &str) {
    let meta = meta_mut(obj);
    if let Some(a) = meta.get_mut("finalizers").and_then(Value::as_array_mut) {
        a.retain(|f| f.as_str() != Some(finalizer));
        if a.is_empty() {
            meta.remove("finalizers");
        }
    }
}

/// Whether an object is on its way out.
pub(crate) fn deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// Whether a DELETE of `obj` must wait for a finalizer (a Namespace always does).
pub(crate) fn held(key: &Key, obj: &Value) -> bool {
    is_namespace(key) || !finalizers(obj).is_empty()
}

/// Marks `obj` as being deleted: `deletionTimestamp` (kept if already set), and for a
/// Namespace the `Terminating` phase.
pub(crate) fn mark(key: &Key, obj: &mut Value, now: &str) {
    let meta = meta_mut(obj);
    meta.entry("deletionTimestamp")
        .or_insert_with(|| json!(now));
    meta.entry("deletionGracePeriodSeconds")
        .or_insert_with(|| json!(0));
    if is_namespace(key)
        && let Some(m) = obj.as_object_mut()
    {
        let status = m.entry("status").or_insert_with(|| json!({}));
        if let Some(s) = status.as_object_mut() {
            s.insert("phase".into(), json!("Terminating"));
        }
    }
}

/// The 403 of the `NamespaceLifecycle` admission plugin for a create in a namespace being
/// deleted, or None.
pub(crate) fn refuse_create(st: &State, key: &Key, qualified: &str) -> Option<String> {
    if key.namespace.is_empty() {
        return None;
    }
    let ns = st.objects.get(&Key {
        group: String::new(),
        kind: "Namespace".into(),
        namespace: String::new(),
        name: key.namespace.clone(),
    })?;
    deleting(ns).then(|| {
        format!(
            "{qualified} \"{}\" is forbidden: unable to create new content in namespace {} \
             because it is being terminated",
            key.name, key.namespace
        )
    })
}

/// Whether a pod in the claim's namespace mounts it.
fn claim_in_use(st: &State, key: &Key) -> bool {
    st.objects.iter().any(|(k, pod)| {
        k.group.is_empty()
            && k.kind == "Pod"
            && k.namespace == key.namespace
            && pod
                .pointer("/spec/volumes")
                .and_then(Value::as_array)
                .is_some_and(|vs| {
                    vs.iter().any(|v| {
                        str_at(v, &["persistentVolumeClaim", "claimName"]) == Some(&key.name)
                    })
                })
    })
}

/// One pass of the controllers that remove finalizers. `due` holds when each deleting
/// Namespace's controller pass and each LoadBalancer's release are done (missing: done, as
/// for a store loaded after the time passed). Returns the keys to remove for good (their
/// finalizers are gone), and whether anything still waits on time.
pub(crate) fn sweep(
    st: &mut State,
    due: &std::collections::BTreeMap<Key, Instant>,
    now: Instant,
) -> (Vec<Key>, bool) {
    let mut waiting = false;
    let mut gone = Vec::new();
    let keys: Vec<Key> = st
        .objects
        .iter()
        .filter(|(_, o)| deleting(o))
        .map(|(k, _)| k.clone())
        .collect();
    for key in keys {
        let Some(obj) = st.objects.get(&key).cloned() else {
            continue;
        };
        let is_due = due.get(&key).is_none_or(|t| *t <= now);
        let mut new = obj.clone();
        let held_by = finalizers(&obj);
        if held_by.iter().any(|f| f == LB_CLEANUP) && is_service(&key) {
            if is_due {
                // The cloud has released the load balancer.
                drop_finalizer(&mut new, LB_CLEANUP);
                if let Some(m) = new.as_object_mut() {
                    m.insert("status".into(), json!({"loadBalancer": {}}));
                }
            } else {
                waiting = true;
            }
        }
        if held_by.iter().any(|f| f == PVC_PROTECTION) && !claim_in_use(st, &key) {
            drop_finalizer(&mut new, PVC_PROTECTION);
        }
        if is_namespace(&key) {
            let empty = !st.objects.keys().any(|k| k.namespace == key.name);
            if !is_due {
                waiting = true;
            } else if empty && finalizers(&new).is_empty() {
                gone.push(key.clone());
                continue;
            }
        } else if finalizers(&new).is_empty() {
            gone.push(key.clone());
            continue;
        }
        if new != obj {
            st.put(key, new);
        }
    }
    (gone, waiting)
}
