//! The platform's namespaces and their Pod Security levels.
//!
//! The platform namespace enforces the `restricted` Pod Security Standard: every workload in
//! it runs as non-root, without privilege escalation, with all capabilities dropped and the
//! runtime's default seccomp profile ([`crate::kubernetes::pods`]). The two pieces that need
//! more, the in-cluster NFS server (a kernel NFS server) and the NVIDIA device plugin (a
//! hostPath to the kubelet's device-plugin socket), run in `<namespace>-privileged`, which
//! enforces `privileged`, and exists only when one of them is deployed. Clusters that enforce
//! a level cluster-wide (hardened distributions, GKE Autopilot) thus refuse no platform pod
//! silently: the levels are declared where the pods are (Kubernetes docs, "Pod Security
//! Standards" and "Enforce Pod Security Standards with namespace labels").
//!
//! qhub creates the platform namespace when it does not exist. One that exists without qhub's
//! ApplySet label (a namespace the owner of an `existing` cluster made for the platform) is
//! used as it is: never taken over, relabelled or deleted by `qhub destroy`
//! ([`crate::kubernetes::recipes::USE_EXISTING_ANNOTATION`]); its Pod Security labels are
//! then its owner's to set.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace as NamespaceObject;

use super::{Built, Component, Context, KubeError, manifest};
use crate::kubernetes::recipes;

/// The suffix of the namespace of privileged pieces ([`Context::privileged_namespace`]).
pub const PRIVILEGED_SUFFIX: &str = "privileged";
/// The label setting the Pod Security level a namespace enforces.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// The label pinning the Pod Security Standards version a namespace enforces.
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";

/// The Namespace `config.namespace`, which holds every namespaced object of the platform, and
/// `<namespace>-privileged` when a privileged piece runs.
#[derive(Debug, Clone, Copy)]
pub struct Namespace;

/// Whether a privileged piece (the in-cluster NFS server, the device plugin, the node
/// exporter of monitoring, the sftp server of jupyterhub-ssh) is deployed.
pub fn needs_privileged(ctx: &Context<'_>) -> bool {
    super::storage::in_cluster(ctx)
        || super::gpu::DevicePlugin.enabled(ctx)
        || super::monitoring::Monitoring.enabled(ctx)
        || super::jupyterhub_ssh::JupyterHubSsh.enabled(ctx)
}

fn pod_security(level: &str) -> [(String, String); 2] {
    [
        (ENFORCE_LABEL.to_string(), level.to_string()),
        (ENFORCE_VERSION_LABEL.to_string(), "latest".to_string()),
    ]
}

impl Component for Namespace {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let mut metadata = ctx.cluster_meta("qhub", ctx.namespace());
        metadata.annotations = Some(BTreeMap::from([(
            recipes::USE_EXISTING_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
        if let Some(labels) = metadata.labels.as_mut() {
            labels.extend(pod_security("restricted"));
        }
        let mut out = vec![manifest(&NamespaceObject {
            metadata,
            ..NamespaceObject::default()
        })?];
        if needs_privileged(ctx) {
            let mut metadata = ctx.cluster_meta("qhub", &ctx.privileged_namespace());
            if let Some(labels) = metadata.labels.as_mut() {
                labels.extend(pod_security("privileged"));
            }
            out.push(manifest(&NamespaceObject {
                metadata,
                ..NamespaceObject::default()
            })?);
        }
        Ok(Built::new(out))
    }
}

// The check that every pod meets its namespace's Pod Security level runs the sandbox's
// admission rules: `tests/pod_security.rs` (the sandbox depends on this crate).
