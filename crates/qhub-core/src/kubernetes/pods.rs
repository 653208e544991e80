//! What every pod of the platform gets from one place: its placement on a node group (node
//! selector and tolerations, GPU limits), resource requests and limits, and a security
//! context. Components never write a node selector or a toleration themselves.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, PodSecurityContext, PodSpec, ResourceRequirements, SeccompProfile,
    SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::provider::ClusterFacts;

/// Where a pod runs: the node group's selector and the tolerations it needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// The node selector, `None` when the cluster has no label for the group (an `existing`
    /// cluster without `node_selectors`): the pod schedules anywhere.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations (the GPU taint for GPU pods).
    pub tolerations: Vec<Toleration>,
    /// GPUs per container that asks for them.
    pub gpus: u32,
    /// The extended resource GPUs are requested as.
    pub gpu_resource: String,
}

impl Placement {
    /// Pods on the node group `group` (`general`, `user`, `worker`, …).
    pub fn on_group(facts: &ClusterFacts, group: &str) -> Self {
        Self {
            node_selector: facts.node_selector.for_group(group),
            tolerations: Vec::new(),
            gpus: 0,
            gpu_resource: facts.gpu.resource.clone(),
        }
    }

    /// Pods that tolerate the GPU taint (DaemonSets that must run on GPU nodes, or GPU
    /// workloads), without asking for a GPU.
    pub fn tolerating_gpus(mut self, facts: &ClusterFacts) -> Self {
        if let Some(taint) = &facts.gpu.taint {
            self.tolerations.push(Toleration {
                key: Some(taint.key.clone()),
                operator: Some("Exists".into()),
                effect: Some(taint.effect.clone()),
                ..Toleration::default()
            });
        }
        self
    }

    /// Pods that run on every node whatever its taints (`operator: Exists` without a key: the
    /// node exporter, whose metrics must cover GPU nodes and any tainted group too), on no
    /// particular group.
    pub fn everywhere() -> Self {
        Self {
            tolerations: vec![Toleration {
                operator: Some("Exists".into()),
                ..Toleration::default()
            }],
            ..Self::default()
        }
    }

    /// Pods whose first container asks for `count` GPUs (and tolerate the GPU taint).
    pub fn with_gpus(self, facts: &ClusterFacts, count: u32) -> Self {
        let mut placed = self.tolerating_gpus(facts);
        placed.gpus = count;
        placed
    }

    /// Puts the placement on a pod spec: node selector, tolerations, and the GPU limit on its
    /// first container.
    pub fn place(&self, pod: &mut PodSpec) {
        pod.node_selector.clone_from(&self.node_selector);
        if !self.tolerations.is_empty() {
            pod.tolerations = Some(self.tolerations.clone());
        }
        if self.gpus > 0
            && let Some(container) = pod.containers.first_mut()
        {
            let resources = container.resources.get_or_insert_with(Default::default);
            let quantity = Quantity(self.gpus.to_string());
            resources
                .limits
                .get_or_insert_with(Default::default)
                .insert(self.gpu_resource.clone(), quantity);
        }
    }
}

/// Requests and limits of a container: `cpu` and `memory` requested, `memory_limit` as the
/// limit (no CPU limit: throttling a busy ingress or identity provider hurts more than it
/// protects; the request reserves its share).
pub fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(memory.to_string())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity(memory_limit.to_string()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// How kubelet applies `fsGroup` to a pod's volumes: only when the volume's root does not
/// already belong to the group (the first mount of a fresh volume).
///
/// The default (`Always`) re-applies it recursively on every mount, adding group read/write to
/// every file (kubelet's `pkg/volume/volume_linux.go`, `changeFilePermission`): Traefik's
/// ACME store `/data/acme.json`, which Traefik creates 0600, becomes 0660 after the first
/// restart, and Traefik then refuses it as "too open" and drops the resolver
/// (traefik/traefik `pkg/provider/acme/local_store_unix.go`, `CheckFile`: any group or other
/// bit is an error; traefik#6972, traefik-helm-chart#396). An init container that chmods the
/// file (the helm chart's commented-out `volume-permissions` example) would have to run as
/// root, which the `restricted` Pod Security level forbids; `OnRootMismatch` keeps the pod
/// unprivileged and still lets the first mount make a fresh volume writable by the group
/// (Kubernetes docs, "Configure volume permission and ownership change policy for Pods").
pub const FS_GROUP_CHANGE_POLICY: &str = "OnRootMismatch";

/// The pod security context of a pod whose images run as the unprivileged user `uid`.
pub fn non_root_pod(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        fs_group_change_policy: Some(FS_GROUP_CHANGE_POLICY.into()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// The container security context of an unprivileged container: no privilege escalation, no
/// capabilities, read-only root filesystem when `read_only_root`.
pub fn restricted(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(read_only_root),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// A container with the given name, image, requests/limits and restricted security context.
pub fn container(name: &str, image: String, resources: ResourceRequirements) -> Container {
    Container {
        name: name.into(),
        image: Some(image),
        resources: Some(resources),
        security_context: Some(restricted(true)),
        ..Container::default()
    }
}

/// A volume `name` of the ConfigMap `map`.
pub fn config_map_volume(name: &str, map: &str) -> k8s_openapi::api::core::v1::Volume {
    use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, Volume};
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: map.into(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A volume `name` of the PersistentVolumeClaim `claim`.
pub fn claim_volume(name: &str, claim: &str) -> k8s_openapi::api::core::v1::Volume {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Volume};
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            ..PersistentVolumeClaimVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// An emptyDir volume `name` (scratch space beside a read-only root file system).
pub fn empty_dir_volume(name: &str) -> k8s_openapi::api::core::v1::Volume {
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Volume};
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::facts::NodeSelector;

    fn facts() -> ClusterFacts {
        let config =
            crate::kubernetes::components::test_config(crate::config::ProviderKind::Sandbox);
        let mut f = ClusterFacts::from_config(&config);
        f.node_selector = NodeSelector {
            label: "cloud.example/pool".into(),
            values: BTreeMap::from([("general".into(), "general-pool".into())]),
        };
        f
    }

    #[test]
    fn placement_follows_the_cluster_facts() {
        let f = facts();
        let mut pod = PodSpec {
            containers: vec![Container::default()],
            ..PodSpec::default()
        };
        Placement::on_group(&f, "general").place(&mut pod);
        assert_eq!(
            pod.node_selector,
            Some(BTreeMap::from([(
                "cloud.example/pool".to_string(),
                "general-pool".to_string()
            )]))
        );
        assert!(pod.tolerations.is_none());
        // An unknown group schedules anywhere.
        let mut pod = PodSpec::default();
        Placement::on_group(&f, "nope").place(&mut pod);
        assert!(pod.node_selector.is_none());
    }

    #[test]
    fn gpu_pods_tolerate_the_taint_and_ask_for_the_resource() {
        let f = facts();
        let mut pod = PodSpec {
            containers: vec![Container::default()],
            ..PodSpec::default()
        };
        Placement::on_group(&f, "gpu")
            .with_gpus(&f, 2)
            .place(&mut pod);
        let t = &pod.tolerations.as_ref().unwrap()[0];
        assert_eq!(t.key.as_deref(), Some("nvidia.com/gpu"));
        let limits = pod.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap();
        assert_eq!(limits["nvidia.com/gpu"], Quantity("2".into()));
    }
}
