//! The NVIDIA device plugin, which advertises `nvidia.com/gpu` on GPU nodes, where the cloud
//! does not install it (EKS; GKE and DOKS do): a DaemonSet that runs only on the config's GPU
//! groups and tolerates their taint.

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, HostPathVolumeSource, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, PodSpec, SecurityContext, Volume, VolumeMount,
};

use super::{Built, Component, Context, KubeError, manifest};
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::versions;

/// The component's name.
pub const NAME: &str = super::rbac::NVIDIA_DEVICE_PLUGIN.service_account;

/// The device plugin.
#[derive(Debug, Clone, Copy)]
pub struct DevicePlugin;

/// The config's GPU node groups (`gpu: true` or guest accelerators).
pub fn gpu_groups(ctx: &Context<'_>) -> Vec<String> {
    ctx.config
        .node_groups()
        .map(|groups| {
            groups
                .iter()
                .filter(|(_, g)| g.gpu || !g.guest_accelerators.is_empty())
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default()
}

impl Component for DevicePlugin {
    fn name(&self) -> &'static str {
        NAME
    }

    fn enabled(&self, ctx: &Context<'_>) -> bool {
        ctx.facts.gpu.device_plugin && !gpu_groups(ctx).is_empty()
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["namespace"]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let values: Vec<String> = gpu_groups(ctx)
            .iter()
            .filter_map(|g| ctx.facts.node_selector.values.get(g).cloned())
            .collect();
        let mut container = pods::container(
            NAME,
            versions::NVIDIA_DEVICE_PLUGIN.reference(),
            pods::resources("10m", "32Mi", "128Mi"),
        );
        // The plugin registers with the kubelet through its socket directory.
        container.security_context = Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..SecurityContext::default()
        });
        container.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "FAIL_ON_INIT_ERROR".into(),
            value: Some("false".into()),
            ..Default::default()
        }]);
        container.volume_mounts = Some(vec![VolumeMount {
            name: "device-plugin".into(),
            mount_path: "/var/lib/kubelet/device-plugins".into(),
            ..VolumeMount::default()
        }]);
        let mut pod = PodSpec {
            containers: vec![container],
            priority_class_name: Some("system-node-critical".into()),
            automount_service_account_token: Some(false),
            volumes: Some(vec![Volume {
                name: "device-plugin".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/var/lib/kubelet/device-plugins".into(),
                    type_: Some("Directory".into()),
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        };
        // Tolerations from the shared helper; the node choice is "any GPU group".
        Placement::default()
            .tolerating_gpus(ctx.facts)
            .place(&mut pod);
        if !values.is_empty() {
            pod.affinity = Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: ctx.facts.node_selector.label.clone(),
                                operator: "In".into(),
                                values: Some(values),
                            }]),
                            ..NodeSelectorTerm::default()
                        }],
                    }),
                    ..NodeAffinity::default()
                }),
                ..Affinity::default()
            });
        }
        let set = DaemonSet {
            // The hostPath to the kubelet's socket directory is refused by the `restricted`
            // (and `baseline`) Pod Security level of the platform namespace.
            metadata: ctx.privileged_meta(NAME, NAME),
            spec: Some(DaemonSetSpec {
                selector: super::pod_selector(NAME),
                template: super::pod_template(NAME, pod),
                ..DaemonSetSpec::default()
            }),
            ..DaemonSet::default()
        };
        Ok(Built::new(vec![manifest(&set)?]).image(versions::NVIDIA_DEVICE_PLUGIN))
    }
}
