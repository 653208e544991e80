//! Immutable fields: the updates the API server's validation refuses with 422, with its
//! messages (kubernetes/kubernetes `pkg/apis/apps/validation/validation.go`
//! `ValidateStatefulSetUpdate`, `ValidateDeploymentUpdate`; `pkg/apis/core/validation/
//! validation.go` `ValidatePersistentVolumeUpdate`, `ValidatePersistentVolumeClaimUpdate`,
//! `ValidateServiceUpdate`; `pkg/apis/batch/validation/validation.go` `ValidateJobSpecUpdate`).
//!
//! Values are compared after defaulting ([`super::defaults`]), as the server compares the old
//! and the new object.

use serde_json::Value;

use super::store::Key;

/// The fields of a StatefulSet spec that may change (1.32's list; everything else, notably
/// `volumeClaimTemplates`, `selector` and `serviceName`, is forbidden).
const STATEFUL_SET_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    v.pointer(path).filter(|v| !v.is_null())
}

fn immutable(field: &str, value: Option<&Value>) -> String {
    format!(
        "{field}: Invalid value: {}: field is immutable",
        value.map_or_else(|| "null".to_string(), Value::to_string)
    )
}

/// The first forbidden change from `old` to `new`, as the server words it; None when the
/// update is allowed.
pub(crate) fn check(key: &Key, old: &Value, new: &Value) -> Option<String> {
    match (key.group.as_str(), key.kind.as_str()) {
        ("apps", "StatefulSet") => {
            let strip = |v: &Value| -> Value {
                let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = spec.as_object_mut() {
                    for f in STATEFUL_SET_MUTABLE {
                        m.remove(*f);
                    }
                }
                spec
            };
            (strip(old) != strip(new)).then(|| {
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', \
                 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', \
                 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
                    .to_string()
            })
        }
        ("apps", "Deployment" | "DaemonSet" | "ReplicaSet") | ("batch", "Job") => {
            let sel = "/spec/selector";
            if at(old, sel) != at(new, sel) {
                return Some(immutable("spec.selector", at(new, sel)));
            }
            // A Job's pod template is immutable (the scheduling directives of a suspended
            // Job that never started aside, which we never send).
            let tpl = "/spec/template";
            (key.kind == "Job" && at(old, tpl) != at(new, tpl))
                .then(|| immutable("spec.template", at(new, tpl)))
        }
        ("", "PersistentVolume") => {
            // Everything but the fields any update may touch is the volume source.
            const MUTABLE: &[&str] = &[
                "capacity",
                "accessModes",
                "claimRef",
                "persistentVolumeReclaimPolicy",
                "mountOptions",
                "storageClassName",
                "nodeAffinity",
                "volumeMode",
                "volumeAttributesClassName",
            ];
            let source = |v: &Value| -> Value {
                let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = spec.as_object_mut() {
                    m.retain(|k, _| !MUTABLE.contains(&k.as_str()));
                }
                spec
            };
            if source(old) != source(new) {
                return Some(
                    "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is \
                     immutable after creation"
                        .to_string(),
                );
            }
            let vm = "/spec/volumeMode";
            (at(old, vm) != at(new, vm)).then(|| immutable("spec.volumeMode", at(new, vm)))
        }
        ("", "PersistentVolumeClaim") => {
            // A bound claim's spec may change only in resources.requests (and its volume
            // attributes class); the binder's volumeName is set once.
            let rest = |v: &Value| -> Value {
                let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = spec.as_object_mut() {
                    m.remove("volumeAttributesClassName");
                    if let Some(r) = m.get_mut("resources").and_then(Value::as_object_mut) {
                        r.remove("requests");
                        if r.is_empty() {
                            m.remove("resources");
                        }
                    }
                    if old.pointer("/spec/volumeName").is_none() {
                        m.remove("volumeName");
                    }
                }
                spec
            };
            (rest(old) != rest(new)).then(|| {
                "spec: Forbidden: spec is immutable after creation except resources.requests \
                 and volumeAttributesClassName for bound claims"
                    .to_string()
            })
        }
        ("", "Service") => {
            let ip = |v: &Value| {
                at(v, "/spec/clusterIP")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            match (ip(old), ip(new)) {
                (Some(o), Some(n)) if o != n => Some(format!(
                    "spec.clusterIPs[0]: Invalid value: []string{{\"{n}\"}}: may not change once set"
                )),
                _ => None,
            }
        }
        _ => None,
    }
}
