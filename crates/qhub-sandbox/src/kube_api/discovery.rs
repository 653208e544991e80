//! The kinds we serve (built-ins plus those of stored CRDs) and the discovery documents.

use serde_json::{Value, json};

use super::store::{State, str_at};

/// Every verb a served resource allows.
const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One served kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResType {
    pub group: String,
    /// Served versions, the preferred (storage) one first.
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Whether the kind has a `/status` subresource (then writes to the main resource leave
    /// status alone and status writes leave everything else alone).
    pub status: bool,
}

impl ResType {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// `plural.group` as Kubernetes names the resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
) -> ResType {
    ResType {
        group: group.into(),
        versions: vec![version.into()],
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| (*s).to_string()).collect(),
        status,
    }
}

/// The built-in kinds, in the order discovery lists them.
pub(crate) fn builtins() -> &'static [ResType] {
    static TYPES: std::sync::OnceLock<Vec<ResType>> = std::sync::OnceLock::new();
    TYPES.get_or_init(|| {
        vec![
            builtin("", "v1", "Namespace", "namespaces", false, &["ns"], true),
            builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"], false),
            builtin("", "v1", "Secret", "secrets", true, &[], false),
            builtin("", "v1", "Service", "services", true, &["svc"], true),
            builtin(
                "",
                "v1",
                "ServiceAccount",
                "serviceaccounts",
                true,
                &["sa"],
                false,
            ),
            builtin(
                "",
                "v1",
                "PersistentVolumeClaim",
                "persistentvolumeclaims",
                true,
                &["pvc"],
                true,
            ),
            builtin(
                "",
                "v1",
                "PersistentVolume",
                "persistentvolumes",
                false,
                &["pv"],
                true,
            ),
            builtin("", "v1", "Pod", "pods", true, &["po"], true),
            builtin("", "v1", "Event", "events", true, &["ev"], false),
            builtin("", "v1", "Node", "nodes", false, &["no"], true),
            builtin(
                "apps",
                "v1",
                "Deployment",
                "deployments",
                true,
                &["deploy"],
                true,
            ),
            builtin(
                "apps",
                "v1",
                "StatefulSet",
                "statefulsets",
                true,
                &["sts"],
                true,
            ),
            builtin("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"], true),
            builtin("batch", "v1", "Job", "jobs", true, &[], true),
            builtin("batch", "v1", "CronJob", "cronjobs", true, &["cj"], true),
            builtin(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
                &["crd", "crds"],
                true,
            ),
            builtin(
                "coordination.k8s.io",
                "v1",
                "Lease",
                "leases",
                true,
                &[],
                false,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "Role",
                "roles",
                true,
                &[],
                false,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                "rolebindings",
                true,
                &[],
                false,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRole",
                "clusterroles",
                false,
                &[],
                false,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRoleBinding",
                "clusterrolebindings",
                false,
                &[],
                false,
            ),
            builtin(
                "networking.k8s.io",
                "v1",
                "Ingress",
                "ingresses",
                true,
                &["ing"],
                true,
            ),
            builtin(
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                "networkpolicies",
                true,
                &["netpol"],
                false,
            ),
            builtin(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                true,
                &["pdb"],
                true,
            ),
            builtin(
                "storage.k8s.io",
                "v1",
                "StorageClass",
                "storageclasses",
                false,
                &["sc"],
                false,
            ),
            builtin(
                "discovery.k8s.io",
                "v1",
                "EndpointSlice",
                "endpointslices",
                true,
                &[],
                false,
            ),
        ]
    })
}

/// The kind a CRD object defines, if it is well-formed and serves at least one version.
pub(crate) fn from_crd(crd: &Value) -> Option<ResType> {
    let spec = crd.get("spec")?;
    let names = spec.get("names")?;
    let mut versions: Vec<(bool, String, bool)> = Vec::new();
    for v in spec.get("versions")?.as_array()? {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        versions.push((
            v.get("storage").and_then(Value::as_bool).unwrap_or(false),
            v.get("name")?.as_str()?.to_string(),
            v.pointer("/subresources/status").is_some(),
        ));
    }
    // The storage version is the one discovery prefers.
    versions.sort_by_key(|(storage, _, _)| !*storage);
    if versions.is_empty() {
        return None;
    }
    let kind = str_at(names, &["kind"])?.to_string();
    Some(ResType {
        group: str_at(spec, &["group"])?.to_string(),
        status: versions.iter().any(|(_, _, s)| *s),
        versions: versions.into_iter().map(|(_, n, _)| n).collect(),
        plural: str_at(names, &["plural"])?.to_string(),
        singular: str_at(names, &["singular"])
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_ascii_lowercase()),
        short_names: names
            .get("shortNames")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        namespaced: str_at(spec, &["scope"]) != Some("Cluster"),
        kind,
    })
}

/// Whether the API server serves a CRD's kind yet: once its `NamesAccepted` or `Established`
/// condition is true. Before that, requests for its resources fall through to the delegate and
/// answer 404 (kubernetes/kubernetes
/// `staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/customresource_handler.go`,
/// `crdHandler.ServeHTTP`: "if !IsCRDConditionTrue(crd, NamesAccepted) &&
/// !IsCRDConditionTrue(crd, Established) { r.delegate.ServeHTTP(w, req) }"), and discovery
/// leaves it out (`customresource_discovery_controller.go` skips CRDs not Established).
pub(crate) fn established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                matches!(
                    c.get("type").and_then(Value::as_str),
                    Some("NamesAccepted" | "Established")
                ) && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// Every served kind: the built-ins, then those of the stored CRDs that are established.
pub(crate) fn all_types(state: &State) -> Vec<ResType> {
    let mut out = builtins().to_vec();
    for (key, crd) in &state.objects {
        if key.group == "apiextensions.k8s.io"
            && key.kind == "CustomResourceDefinition"
            && established(crd)
            && let Some(t) = from_crd(crd)
            // A CRD may not shadow a built-in.
            && !out.iter().any(|b| b.group == t.group && b.plural == t.plural)
        {
            out.push(t);
        }
    }
    out
}

/// The kind served at `group/version` under `plural`.
pub(crate) fn find(state: &State, group: &str, version: &str, plural: &str) -> Option<ResType> {
    all_types(state)
        .into_iter()
        .find(|t| t.group == group && t.plural == plural && t.versions.iter().any(|v| v == version))
}

/// `GET /version`.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-qhub-sandbox",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`.
pub(crate) fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// The named groups and their versions, preferred first, in discovery order.
fn groups(state: &State) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in all_types(state) {
        if t.group.is_empty() {
            continue;
        }
        let idx = match out.iter().position(|(g, _)| *g == t.group) {
            Some(i) => i,
            None => {
                out.push((t.group.clone(), Vec::new()));
                out.len() - 1
            }
        };
        for v in &t.versions {
            if !out[idx].1.contains(v) {
                out[idx].1.push(v.clone());
            }
        }
    }
    out
}

/// `GET /apis`.
pub(crate) fn group_list(state: &State) -> Value {
    let groups: Vec<Value> = groups(state)
        .iter()
        .map(|(g, vs)| {
            let mut doc = group_doc(g, vs);
            if let Some(o) = doc.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            doc
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`.
pub(crate) fn group(state: &State, name: &str) -> Option<Value> {
    groups(state)
        .into_iter()
        .find(|(g, _)| g == name)
        .map(|(g, vs)| group_doc(&g, &vs))
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`.
pub(crate) fn resource_list(state: &State, group: &str, version: &str) -> Option<Value> {
    let types: Vec<ResType> = all_types(state)
        .into_iter()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in &types {
        resources.push(json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": VERBS,
            "shortNames": t.short_names,
        }));
        if t.status {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": types[0].api_version(version),
        "resources": resources,
    }))
}
