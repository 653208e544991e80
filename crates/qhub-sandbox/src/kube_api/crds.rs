//! Custom resources as the API server stores them: pruned to their CRD's structural schema.
//!
//! Kubernetes docs, "Extend the Kubernetes API with CustomResourceDefinitions", section
//! "Field pruning": for `apiextensions.k8s.io/v1` CRDs the server drops, on every write, each
//! field of a custom object that the version's `openAPIV3Schema` does not declare, unless the
//! schema sets `x-kubernetes-preserve-unknown-fields: true` at that level (the implementation is
//! k8s.io/apiextensions-apiserver `pkg/apiserver/schema/pruning/algorithm.go`). `apiVersion`,
//! `kind` and `metadata` are never pruned (metadata is the server's own). This is what makes a
//! CRD with a cut-down schema destroy fields that the controller accepts: another tenant's
//! Middleware keeps only what the schema names.

use serde_json::Value;

use super::store::{Key, State};

/// The schema of `version` of the CRD that defines `group`/`kind`, if one is stored.
fn schema<'a>(st: &'a State, group: &str, kind: &str, version: &str) -> Option<&'a Value> {
    st.objects
        .iter()
        .filter(|(k, _)| k.group == "apiextensions.k8s.io" && k.kind == "CustomResourceDefinition")
        .map(|(_, crd)| crd)
        .find(|crd| {
            crd.pointer("/spec/group").and_then(Value::as_str) == Some(group)
                && crd.pointer("/spec/names/kind").and_then(Value::as_str) == Some(kind)
        })?
        .pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))?
        .pointer("/schema/openAPIV3Schema")
}

fn preserves(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Removes from `value` what `schema` does not declare.
fn prune(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if props.is_none() && additional.is_none() && preserves(schema) {
                return;
            }
            let keep_unknown = preserves(schema);
            map.retain(|k, _| {
                keep_unknown || additional.is_some() || props.is_some_and(|p| p.contains_key(k))
            });
            for (k, v) in map.iter_mut() {
                let child = props.and_then(|p| p.get(k)).or(additional);
                if let Some(child) = child {
                    prune(child, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// Prunes a custom object to its CRD's schema for the object's version (`apiVersion` as
/// written, else the CRD's first). Built-in kinds and CRDs without a schema are left alone.
pub(crate) fn prune_custom(st: &State, key: &Key, new: &mut Value) {
    if key.group.is_empty() {
        return;
    }
    let version = new
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|av| av.rsplit_once('/'))
        .map(|(_, v)| v.to_string());
    let Some(version) = version else { return };
    let Some(schema) = schema(st, &key.group, &key.kind, &version) else {
        return;
    };
    let Some(map) = new.as_object_mut() else {
        return;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    let keep_unknown = preserves(schema);
    map.retain(|k, _| {
        matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
            || keep_unknown
            || props.is_some_and(|p| p.contains_key(k))
    });
    for (k, v) in map.iter_mut() {
        if k == "metadata" {
            continue;
        }
        if let Some(child) = props.and_then(|p| p.get(k)) {
            prune(child, v);
        }
    }
}
