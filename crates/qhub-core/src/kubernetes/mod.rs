//! The shared Kubernetes deployment layer.
//!
//! Platform components ([`components`]) build typed k8s-openapi objects from the config. They
//! become `kubernetes`-stage [`Resource`]s of the plan: CRDs and namespaces first, then the
//! ApplySet parent, then everything else. [`apply::Applier`] applies them with server-side apply
//! (field manager `qhub`), waits for readiness ([`readiness`]) under deadlines, and deletes what
//! the config no longer wants; what exists is found by ApplySet membership ([`applyset`]), so
//! pruning needs no state file.

pub mod apply;
pub mod applyset;
pub mod auth;
pub mod compare;
pub mod components;
pub mod crd_policy;
pub mod endpoints;
pub mod front_door;
pub mod health;
pub mod lease;
pub mod pods;
pub mod port_forward;
pub mod priced;
pub mod readiness;
pub mod recipes;
pub mod render;
pub mod versions;

use std::collections::BTreeMap;

use serde_json::Value as Json;
use sha2::Digest;

use crate::config::Config;
use crate::plan::{Resource, ResourceId, Stage};
use crate::provider::ClusterFacts;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "qhub";

/// The annotation holding what we last applied (or its digest, for large objects), so that a
/// plan diffs the config against our own intent rather than against server defaults.
pub const LAST_APPLIED: &str = "qhub.dev/last-applied";

/// Largest manifest kept verbatim in [`LAST_APPLIED`]; larger ones (big CRDs) keep a digest, as
/// all annotations of an object together may not exceed 256 KiB.
pub const MAX_LAST_APPLIED: usize = 64 * 1024;

/// Retries of idempotent Kubernetes reads (and of the lease's read-decide-write): quick and
/// short, as a healthy API server answers in milliseconds.
pub const READ_RETRY: crate::retry::Budget = crate::retry::Budget::attempts(
    10,
    std::time::Duration::from_millis(20),
    std::time::Duration::from_secs(2),
);

/// The label every object we create carries.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Errors of the Kubernetes layer.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The API server refused or failed a request.
    #[error("{what}: {}", in_words(source))]
    Api {
        /// What we were doing.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// An object did not become ready in time.
    #[error("{id} not ready after {seconds:.0}s: {detail}")]
    NotReady {
        /// The object.
        id: ResourceId,
        /// How long we waited.
        seconds: f64,
        /// Its last observed state.
        detail: String,
    },
    /// A rollout that cannot succeed (an image that cannot be pulled, a crash loop, a
    /// progress deadline exceeded), found before its deadline.
    #[error("{id} cannot become ready (after {seconds:.0}s): {detail}")]
    Broken {
        /// The object.
        id: ResourceId,
        /// How long we waited.
        seconds: f64,
        /// The pod's (or controller's) own words.
        detail: String,
    },
    /// The object cannot be handled.
    #[error("{0}")]
    Invalid(String),
}

/// A client error as a person reads it: the API server's own message once, with its reason and
/// HTTP code. kube's `Display` of an API error appends the whole `Status` struct in debug form
/// (`ApiError: msg (Status { message: msg, … })`), so retry and error lines repeated the message
/// three times inside a Rust struct.
pub fn in_words(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                String::new()
            } else {
                format!("{}, ", status.reason)
            };
            format!("{} ({reason}HTTP {})", status.message, status.code)
        }
        other => other.to_string(),
    }
}

impl KubeError {
    /// True when the API server does not serve the kind (its CRD is not installed, or not
    /// yet): no object of it can exist.
    pub fn is_not_served(&self) -> bool {
        use kube::error::DiscoveryError as D;
        match self {
            Self::Api {
                source: kube::Error::Api(status),
                ..
            } => status.code == 404,
            Self::Api {
                source: kube::Error::Discovery(d),
                ..
            } => matches!(
                d,
                D::MissingKind(_) | D::MissingApiGroup(_) | D::MissingResource(_)
            ),
            _ => false,
        }
    }

    /// True when trying again may help: throttling, server errors, conflicts with another
    /// writer, transport errors, and kinds not yet served (a CRD just established).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { source, .. } => match source {
                kube::Error::Api(status) => {
                    matches!(status.code, 409 | 429 | 500 | 502 | 503 | 504)
                }
                kube::Error::HyperError(_) | kube::Error::Service(_) => true,
                kube::Error::Discovery(_) => true,
                _ => false,
            },
            Self::NotReady { .. } | Self::Broken { .. } | Self::Invalid(_) => false,
        }
    }
}

impl From<KubeError> for crate::provider::ProviderError {
    fn from(e: KubeError) -> Self {
        if let Some(killed) = crate::provider::find_killed(&e) {
            return Self::other(killed.clone());
        }
        let code = match &e {
            KubeError::Api {
                source: kube::Error::Api(status),
                ..
            } => Some(status.code),
            _ => None,
        };
        if code == Some(429) {
            Self::throttled(e.to_string(), None)
        } else if code == Some(409) {
            // Another writer changed the object between our read and write: read again.
            Self::conflict(e.to_string())
        } else if e.is_retryable() {
            Self::retryable(e.to_string())
        } else {
            Self::Fatal(e.to_string())
        }
    }
}

/// `apiVersion`, `kind`, namespace and name of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// `apiVersion` (`v1`, `apps/v1`).
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace, for namespaced objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// Reads the identity of a manifest.
    pub fn of(manifest: &Json) -> Result<Self, KubeError> {
        let s = |ptr: &str| {
            manifest
                .pointer(ptr)
                .and_then(Json::as_str)
                .map(str::to_string)
        };
        Ok(Self {
            api_version: s("/apiVersion")
                .ok_or_else(|| KubeError::Invalid("manifest without apiVersion".into()))?,
            kind: s("/kind").ok_or_else(|| KubeError::Invalid("manifest without kind".into()))?,
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name")
                .ok_or_else(|| KubeError::Invalid("manifest without metadata.name".into()))?,
        })
    }

    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    /// The API version without group.
    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or(self.api_version.as_str(), |(_, v)| v)
    }

    /// `Kind.group` (or `Kind` for the core group), as ApplySets name group-kinds.
    pub fn group_kind(&self) -> String {
        match self.group() {
            "" => self.kind.clone(),
            g => format!("{}.{g}", self.kind),
        }
    }

    /// The plan identity: kind `Kind.group`, name `namespace/name` or `name`.
    pub fn id(&self) -> ResourceId {
        let name = match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        };
        ResourceId::new(self.group_kind(), name)
    }
}

/// What the plan compares for a manifest: the manifest itself (a Secret's values replaced by
/// their digests, [`recipes::comparable_secret`]), or its digest when too large.
pub fn comparable(manifest: &Json) -> Json {
    let manifest = if manifest.get("kind").and_then(Json::as_str) == Some("Secret") {
        recipes::comparable_secret(manifest)
    } else {
        manifest.clone()
    };
    let text = manifest.to_string();
    if text.len() <= MAX_LAST_APPLIED {
        manifest
    } else {
        serde_json::json!({"manifest_sha256": format!("{:x}", sha2::Sha256::digest(text.as_bytes()))})
    }
}

/// The annotation a component puts on an object whose replacement destroys data, saying what
/// (for the plan's refusal); a PersistentVolumeClaim without it destroys "the data on its
/// volume".
pub const REPLACE_DESTROYS: &str = "qhub.dev/replace-destroys";

/// The fields of a kind that the API server never lets change (422), so that a change of one is
/// planned as a replace instead of an update the server refuses. Sources:
/// kubernetes/kubernetes `pkg/apis/apps/validation/validation.go` (`ValidateStatefulSetUpdate`:
/// only replicas, ordinals, template, updateStrategy, revisionHistoryLimit,
/// persistentVolumeClaimRetentionPolicy and minReadySeconds may change;
/// `ValidateDeploymentUpdate`/`ValidateDaemonSetUpdate`: the selector),
/// `pkg/apis/batch/validation/validation.go` (a Job's selector and template),
/// `pkg/apis/core/validation/validation.go` (a PersistentVolume's source, a bound claim's spec
/// but its requests, a Service's clusterIP). A claim's storage request is a replace field too:
/// it may grow in place only where its StorageClass allows expansion, which the plan cannot
/// know, and it may never shrink (the in-memory API enforces the same: `qhub-sandbox`'s
/// `kube_api/`).
pub fn replace_fields(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("apps", "StatefulSet") => &[
            "spec.selector",
            "spec.serviceName",
            "spec.volumeClaimTemplates",
            "spec.podManagementPolicy",
        ],
        ("apps", "Deployment" | "DaemonSet") => &["spec.selector"],
        ("batch", "Job") => &["spec.selector", "spec.template"],
        ("", "PersistentVolume") => &[
            "spec.nfs",
            "spec.csi",
            "spec.hostPath",
            "spec.local",
            "spec.awsElasticBlockStore",
            "spec.gcePersistentDisk",
            "spec.volumeMode",
        ],
        ("", "PersistentVolumeClaim") => &[
            "spec.accessModes",
            "spec.storageClassName",
            "spec.volumeName",
            "spec.volumeMode",
            "spec.selector",
            "spec.dataSource",
            "spec.dataSourceRef",
            "spec.resources.requests.storage",
        ],
        ("", "Service") => &["spec.clusterIP", "spec.clusterIPs"],
        _ => &[],
    }
}

/// What replacing the object destroys, when it holds data: a claim's volume (named by its
/// [`REPLACE_DESTROYS`] annotation, or generically).
fn replace_destroys(r: &ObjectRef, manifest: &Json) -> Option<String> {
    let named = manifest
        .pointer(&format!(
            "/metadata/annotations/{}",
            REPLACE_DESTROYS.replace('/', "~1")
        ))
        .and_then(Json::as_str)
        .map(str::to_string);
    match (r.group(), r.kind.as_str()) {
        ("", "PersistentVolumeClaim") => {
            Some(named.unwrap_or_else(|| format!("the data on the volume of claim {}", r.name)))
        }
        _ => named,
    }
}

/// The ordering class of a kind: CRDs and namespaces first, then the ApplySet parent, then the
/// rest.
fn tier(r: &ObjectRef) -> u8 {
    match (r.group(), r.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") | ("", "Namespace") => 0,
        _ if r.name == applyset::PARENT_NAME && r.kind == "Secret" => 1,
        _ => 2,
    }
}

/// Whether a kind runs pods whose readiness gates the components that depend on it.
fn is_workload(r: &ObjectRef) -> bool {
    r.group() == "apps" && matches!(r.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet")
        // A Job's readiness is its completion (the shared filesystem's layout).
        || (r.group() == "batch" && r.kind == "Job")
}

/// Whether a workload of the same component needs the object to exist first (what its pods
/// mount, read or run as).
fn is_workload_input(r: &ObjectRef) -> bool {
    r.group() == ""
        && matches!(
            r.kind.as_str(),
            "Secret" | "ConfigMap" | "PersistentVolumeClaim" | "ServiceAccount"
        )
        || r.group() == "rbac.authorization.k8s.io"
}

/// The `kubernetes`-stage resources for a config on a cluster with `facts`: every enabled
/// component's objects, labelled as ApplySet members and ordered: CRDs and namespaces first;
/// within a component, what its pods need before its workloads; every object of a component
/// after the workloads of the components it depends on are ready; an object with a derived
/// field after the object it derives from.
pub fn desired(config: &Config, facts: &ClusterFacts) -> Result<Vec<Resource>, KubeError> {
    let set = applyset::ApplySet::for_config(config);
    let built = components::assemble(config, facts)?;
    let ready_within: BTreeMap<&'static str, std::time::Duration> = built
        .iter()
        .filter_map(|a| a.built.ready_within.map(|d| (a.name, d)))
        .collect();
    // (component, manifest)
    let mut manifests: Vec<(Option<&'static str>, Json)> = built
        .into_iter()
        .flat_map(|a| {
            let c = a.name;
            a.built.manifests.into_iter().map(move |m| (Some(c), m))
        })
        .collect();
    for (_, m) in &mut manifests {
        set.label_member(m);
    }
    let mut group_kinds: Vec<String> = Vec::new();
    for (_, m) in &manifests {
        let gk = ObjectRef::of(m)?.group_kind();
        if !group_kinds.contains(&gk) {
            group_kinds.push(gk);
        }
    }
    let mut namespaces: Vec<String> = Vec::new();
    for (_, m) in &manifests {
        if let Some(ns) = ObjectRef::of(m)?.namespace
            && !namespaces.contains(&ns)
        {
            namespaces.push(ns);
        }
    }
    manifests.push((None, set.parent_manifest(&group_kinds, &namespaces)));
    let refs: Vec<ObjectRef> = manifests
        .iter()
        .map(|(_, m)| ObjectRef::of(m))
        .collect::<Result<_, _>>()?;
    // The group and kind each CRD defines, by index: only its instances wait for it.
    let defines: BTreeMap<usize, (&str, &str)> = manifests
        .iter()
        .enumerate()
        .filter(|(_, (_, m))| {
            m.get("kind").and_then(Json::as_str) == Some("CustomResourceDefinition")
        })
        .filter_map(|(i, (_, m))| {
            Some((
                i,
                (
                    m.pointer("/spec/group")?.as_str()?,
                    m.pointer("/spec/names/kind")?.as_str()?,
                ),
            ))
        })
        .collect();
    let mut out = Vec::with_capacity(manifests.len());
    for (i, ((component, m), r)) in manifests.iter().zip(&refs).enumerate() {
        let t = tier(r);
        let needs: Vec<&'static str> = component
            .and_then(components::find)
            .map(|c| c.depends_on().to_vec())
            .unwrap_or_default();
        let mut depends_on: Vec<ResourceId> = Vec::new();
        for (j, ((other_component, _), other)) in manifests.iter().zip(&refs).enumerate() {
            if i == j {
                continue;
            }
            let tier_edge = tier(other) < t
                && (defines
                    .get(&j)
                    .is_some_and(|gk| *gk == (r.group(), r.kind.as_str()))
                    || other.kind == "Namespace"
                        && r.namespace.as_deref() == Some(other.name.as_str())
                    || tier(other) == 1);
            let component_edge = t == 2
                && tier(other) == 2
                && other_component.is_some_and(|oc| needs.contains(&oc))
                && is_workload(other);
            let input_edge = t == 2
                && is_workload(r)
                && other_component == component
                && is_workload_input(other);
            if tier_edge || component_edge || input_edge {
                depends_on.push(other.id());
            }
        }
        if let Some(d) = recipes::derived(m)? {
            depends_on.push(d.source_id());
        }
        let mut resource = Resource::new(
            r.group_kind(),
            r.id().name,
            Stage::Kubernetes,
            comparable(m),
        )
        .depends_on(depends_on)
        .expected(
            component
                .and_then(|c| ready_within.get(c))
                .filter(|_| is_workload(r))
                .copied()
                .unwrap_or_else(|| readiness::expected(&r.kind)),
        )
        .replace_fields(replace_fields(r.group(), &r.kind))
        .exact();
        if let Some(what) = replace_destroys(r, m) {
            resource = resource.replace_destroys(what);
        }
        resource.payload = Some(m.clone());
        out.push(resource);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_error_reads_as_words_with_its_message_once() {
        let status = kube::core::Status::failure(
            "Deployment.apps \"hub\" is invalid: spec.selector: field is immutable",
            "Invalid",
        )
        .with_code(422);
        let e = KubeError::Api {
            what: "applying Deployment/dev/hub".into(),
            source: kube::Error::Api(status.boxed()),
        };
        let text = e.to_string();
        assert_eq!(
            text,
            "applying Deployment/dev/hub: Deployment.apps \"hub\" is invalid: spec.selector: field is immutable (Invalid, HTTP 422)"
        );
        assert_eq!(text.matches("field is immutable").count(), 1);
        assert!(!text.contains("Status {"), "{text}");
    }

    #[test]
    fn object_refs_and_ids() {
        let m = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hub", "namespace": "dev"}});
        let r = ObjectRef::of(&m).unwrap();
        assert_eq!(r.group(), "apps");
        assert_eq!(r.version(), "v1");
        assert_eq!(r.id().to_string(), "Deployment.apps/dev/hub");
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}});
        assert_eq!(
            ObjectRef::of(&ns).unwrap().id().to_string(),
            "Namespace/dev"
        );
        assert!(ObjectRef::of(&serde_json::json!({"kind": "X"})).is_err());
    }

    #[test]
    fn large_manifests_are_compared_by_digest() {
        let big = serde_json::json!({"data": "x".repeat(MAX_LAST_APPLIED + 1)});
        let c = comparable(&big);
        assert!(c.get("manifest_sha256").is_some());
        let small = serde_json::json!({"data": "x"});
        assert_eq!(comparable(&small), small);
    }
}
