//! ApplySet membership (KEP-3659): a parent object records which group-kinds the set contains,
//! and every member carries the set's id in a label. Listing members by that label is how we
//! find what we applied before, and prune what the config no longer wants.

use base64::Engine as _;
use serde_json::{Value as Json, json};
use sha2::Digest;

use crate::config::Config;

/// Name of the parent Secret (in the platform's namespace).
pub const PARENT_NAME: &str = "qhub-applyset";
/// The label naming a member's set.
pub const PART_OF_LABEL: &str = "applyset.kubernetes.io/part-of";
/// The label naming the parent's set.
pub const ID_LABEL: &str = "applyset.kubernetes.io/id";
/// The parent annotation naming the tool.
pub const TOOLING_ANNOTATION: &str = "applyset.kubernetes.io/tooling";
/// The parent annotation listing member group-kinds.
pub const GROUP_KINDS_ANNOTATION: &str = "applyset.kubernetes.io/contains-group-kinds";
/// The parent annotation listing the namespaces other than the parent's that hold members
/// (KEP-3659's ApplySet specification; kubectl's `ApplySetAdditionalNamespacesAnnotation` in
/// kubernetes/kubernetes `staging/src/k8s.io/kubectl/pkg/cmd/apply/applyset.go`): an
/// ApplySet-aware tool lists namespaced members only in the parent's namespace and these, so
/// without it `kubectl` would never see (nor prune) what we run in `<namespace>-privileged`.
pub const ADDITIONAL_NAMESPACES_ANNOTATION: &str = "applyset.kubernetes.io/additional-namespaces";

/// One deployment's ApplySet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplySet {
    /// The platform namespace (the parent lives there).
    pub namespace: String,
    /// The set id.
    pub id: String,
}

impl ApplySet {
    /// The set of a config's deployment.
    pub fn for_config(config: &Config) -> Self {
        Self::new(&config.namespace)
    }

    /// The set whose parent is the Secret [`PARENT_NAME`] in `namespace`.
    pub fn new(namespace: &str) -> Self {
        // KEP-3659: id = "applyset-" + base64url(sha256("<name>.<namespace>.<kind>.<group>")) + "-v1".
        let key = format!("{PARENT_NAME}.{namespace}.Secret.");
        let digest = sha2::Sha256::digest(key.as_bytes());
        let id = format!(
            "applyset-{}-v1",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
        );
        Self {
            namespace: namespace.to_string(),
            id,
        }
    }

    /// Labels a member manifest with the set id and our managed-by label.
    pub fn label_member(&self, manifest: &mut Json) {
        if let Some(meta) = manifest.get_mut("metadata").and_then(Json::as_object_mut) {
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert(PART_OF_LABEL.into(), Json::String(self.id.clone()));
                labels.insert(super::MANAGED_BY_LABEL.into(), Json::String("qhub".into()));
            }
        }
    }

    /// The parent Secret, listing `group_kinds` and the `namespaces` of members other than
    /// its own (each sorted, as the KEP asks; kubectl writes the namespace list even when empty).
    pub fn parent_manifest(&self, group_kinds: &[String], namespaces: &[String]) -> Json {
        let mut kinds: Vec<&str> = group_kinds.iter().map(String::as_str).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let mut others: Vec<&str> = namespaces
            .iter()
            .map(String::as_str)
            .filter(|ns| *ns != self.namespace)
            .collect();
        others.sort_unstable();
        others.dedup();
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": PARENT_NAME,
                "namespace": self.namespace,
                "labels": {ID_LABEL: self.id, super::MANAGED_BY_LABEL: "qhub"},
                "annotations": {
                    TOOLING_ANNOTATION: concat!("qhub/", env!("CARGO_PKG_VERSION")),
                    GROUP_KINDS_ANNOTATION: kinds.join(","),
                    ADDITIONAL_NAMESPACES_ANNOTATION: others.join(","),
                },
            },
            "type": "Opaque",
        })
    }

    /// The label selector of members.
    pub fn member_selector(&self) -> String {
        format!("{PART_OF_LABEL}={}", self.id)
    }
}

/// Splits a `Kind.group` group-kind into (group, kind).
pub fn split_group_kind(gk: &str) -> (&str, &str) {
    match gk.split_once('.') {
        Some((kind, group)) => (group, kind),
        None => ("", gk),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_per_namespace() {
        let a = ApplySet::new("dev");
        assert_eq!(a, ApplySet::new("dev"));
        assert_ne!(a.id, ApplySet::new("prod").id);
        assert!(a.id.starts_with("applyset-") && a.id.ends_with("-v1"));
        // Label values are at most 63 characters.
        assert!(a.id.len() <= 63, "{}", a.id);
    }

    #[test]
    fn parent_lists_sorted_group_kinds() {
        let p = ApplySet::new("dev").parent_manifest(
            &["Service".into(), "Deployment.apps".into(), "Service".into()],
            &[
                "dev-privileged".into(),
                "dev".into(),
                "dev-privileged".into(),
            ],
        );
        assert_eq!(
            p["metadata"]["annotations"][GROUP_KINDS_ANNOTATION],
            "Deployment.apps,Service"
        );
        assert_eq!(
            p["metadata"]["annotations"][ADDITIONAL_NAMESPACES_ANNOTATION],
            "dev-privileged"
        );
        assert_eq!(split_group_kind("Deployment.apps"), ("apps", "Deployment"));
        assert_eq!(
            split_group_kind("CustomResourceDefinition.apiextensions.k8s.io"),
            ("apiextensions.k8s.io", "CustomResourceDefinition")
        );
        assert_eq!(split_group_kind("Namespace"), ("", "Namespace"));
    }
}
