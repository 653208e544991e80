//! What the API server does to a write between decoding it and storing it, in its order:
//! structural pruning of custom objects ([`super::crds`]), defaulting ([`super::defaults`]),
//! admission (here: `PersistentVolumeClaimResize`), and
//! validation (the strategy rules of [`super::defaults::validate`] and the immutable fields of
//! [`super::immutable`]). One entry point, [`admit`], called by every write of a main resource
//! (create, update, patch, apply); `/status` writes skip it.

use serde_json::Value;

use super::api_err::ApiErr;
use super::discovery::ResType;
use super::store::{Key, State};

/// `Kind.group "name"` (or `Kind "name"` in the core group), as 422 messages name an object.
fn invalid(rt: &ResType, name: &str, detail: &str) -> ApiErr {
    let kind = if rt.group.is_empty() {
        rt.kind.clone()
    } else {
        format!("{}.{}", rt.kind, rt.group)
    };
    ApiErr::invalid(format!("{kind} \"{name}\" is invalid: {detail}"))
}

/// Defaults `new`, then admits and validates it against `old` (None on create).
pub(crate) fn admit(
    st: &State,
    rt: &ResType,
    key: &Key,
    old: Option<&Value>,
    new: &mut Value,
) -> Result<(), ApiErr> {
    super::crds::prune_custom(st, key, new);
    super::defaults::apply(key, new);
    if let Some(old) = old {
        if key.group.is_empty() && key.kind == "PersistentVolumeClaim" {
            resize(st, rt, key, old, new)?;
        }
        if let Some(why) = super::immutable::check(key, old, new) {
            return Err(invalid(rt, &key.name, &why));
        }
    }
    super::defaults::validate(key, new).map_err(|why| invalid(rt, &key.name, &why))?;
    // The generation moves when the spec does, compared with both sides defaulted: an apply
    // that leaves out what the server filled in is no change.
    let moved = old.and_then(|o| o.get("spec")) != new.get("spec");
    if let Some(g) = old.and_then(|o| o.pointer("/metadata/generation").and_then(Value::as_i64))
        && let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert(
            "generation".into(),
            Value::from(if moved { g + 1 } else { g }),
        );
    }
    Ok(())
}

/// Parses a storage quantity (`10Gi`, `500M`, `1e3`) into bytes; None when unreadable.
pub(crate) fn bytes(q: &str) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let q = q.trim();
    for (s, m) in SUFFIXES {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<f64>().ok().map(|n| n * m);
        }
    }
    q.parse().ok()
}

fn requested(v: &Value) -> Option<f64> {
    v.pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
        .and_then(bytes)
}

/// A claim's storage request may only grow, and only where the storage class can expand
/// volumes:
/// - shrinking: 422 (kubernetes/kubernetes `pkg/apis/core/validation/validation.go`,
///   `ValidatePersistentVolumeClaimUpdate`, with `RecoverVolumeExpansionFailure` off);
/// - growing: the `PersistentVolumeClaimResize` admission plugin
///   (`plugin/pkg/admission/storage/persistentvolume/resize/admission.go`) answers 403 unless
///   the claim is bound and its StorageClass exists and sets `allowVolumeExpansion: true`; a
///   claim with no class (`storageClassName: ""`, a statically provisioned volume) never grows.
fn resize(st: &State, rt: &ResType, key: &Key, old: &Value, new: &Value) -> Result<(), ApiErr> {
    let (Some(before), Some(after)) = (requested(old), requested(new)) else {
        return Ok(());
    };
    if after < before {
        return Err(invalid(
            rt,
            &key.name,
            "spec.resources.requests.storage: Forbidden: field can not be less than previous value",
        ));
    }
    if after == before {
        return Ok(());
    }
    let forbidden = |why: &str| {
        ApiErr::new(
            403,
            "Forbidden",
            format!(
                "persistentvolumeclaims \"{}\" is forbidden: {why}",
                key.name
            ),
        )
    };
    if old.pointer("/status/phase").and_then(Value::as_str) != Some("Bound") {
        return Err(forbidden(
            "Only bound persistent volume claims can be expanded",
        ));
    }
    let class = new
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let expandable = !class.is_empty()
        && st
            .objects
            .get(&Key {
                group: "storage.k8s.io".into(),
                kind: "StorageClass".into(),
                namespace: String::new(),
                name: class.to_string(),
            })
            .and_then(|sc| sc.get("allowVolumeExpansion"))
            .and_then(Value::as_bool)
            == Some(true);
    if !expandable {
        return Err(forbidden(
            "only dynamically provisioned pvc can be resized and the storageclass that \
             provisions the pvc must support resize",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn quantities() {
        assert_eq!(bytes("1Gi"), Some(1_073_741_824.0));
        assert!(bytes("200Gi").unwrap() > bytes("100Gi").unwrap());
        assert_eq!(bytes("1G"), Some(1e9));
        assert_eq!(bytes("12"), Some(12.0));
        assert_eq!(bytes("x"), None);
    }
}
