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

/// Whether a privileged piece (the in-cluster NFS server, the device plugin) is deployed.
pub fn needs_privileged(ctx: &Context<'_>) -> bool {
    super::storage::in_cluster(ctx) || super::gpu::DevicePlugin.enabled(ctx)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use crate::provider::ClusterFacts;
    use crate::sandbox::kube_api::pod_security::{Level, violations};
    use serde_json::Value as Json;

    /// Every workload's pods, with the level the namespace they land in enforces.
    fn pods_and_levels(config: &crate::Config) -> Vec<(String, Level, Json)> {
        let facts = ClusterFacts::from_config(config);
        let manifests = crate::kubernetes::components::manifests(config, &facts).unwrap();
        let level_of = |ns: &str| {
            let found = manifests
                .iter()
                .find(|m| m["kind"] == "Namespace" && m["metadata"]["name"] == ns)
                .unwrap_or_else(|| panic!("no Namespace {ns} is deployed"));
            match found["metadata"]["labels"][ENFORCE_LABEL].as_str() {
                Some("restricted") => Level::Restricted,
                Some("baseline") => Level::Baseline,
                // No label: the cluster's default, which a hardened cluster sets to restricted.
                Some("privileged") => Level::Privileged,
                _ => Level::Restricted,
            }
        };
        manifests
            .iter()
            .filter(|m| m["spec"]["template"]["spec"].is_object())
            .map(|m| {
                let ns = m["metadata"]["namespace"].as_str().unwrap();
                (
                    format!(
                        "{}/{ns}/{}",
                        m["kind"].as_str().unwrap(),
                        m["metadata"]["name"].as_str().unwrap()
                    ),
                    level_of(ns),
                    m["spec"]["template"]["spec"].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn every_pod_meets_the_pod_security_level_of_its_namespace() {
        let mut checked = Vec::new();
        for provider in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
            let mut config = crate::kubernetes::components::test_config(provider);
            // A GPU group, so that the device plugin is deployed where the cloud lacks one.
            if let Some(aws) = config.amazon_web_services.as_mut() {
                let mut gpu = aws.node_groups["user"].clone();
                gpu.gpu = true;
                aws.node_groups.insert("gpu".into(), gpu);
            }
            for (workload, level, pod) in pods_and_levels(&config) {
                let found = violations(level, &pod);
                assert!(
                    found.is_empty(),
                    "{provider:?} {workload} ({level:?}): {found:?}"
                );
                checked.push((workload, level));
            }
        }
        // The restricted ones are the platform's own; only the NFS server and the device
        // plugin need the privileged namespace.
        for (workload, level) in &checked {
            let privileged =
                workload.contains("nfs-server") || workload.contains("nvidia-device-plugin");
            assert_eq!(
                *level == Level::Privileged,
                privileged,
                "{workload} runs at {level:?}"
            );
        }
        for name in [
            "traefik",
            "keycloak",
            "keycloak-postgres",
            "qhub-welcome",
            "cluster-autoscaler",
            "nfs-server",
            "nvidia-device-plugin",
        ] {
            assert!(
                checked
                    .iter()
                    .any(|(w, _)| w.ends_with(&format!("/{name}"))),
                "{name} not checked: {checked:?}"
            );
        }
    }
}
