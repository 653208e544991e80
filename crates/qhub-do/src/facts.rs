//! What the Kubernetes stage needs to know about a DOKS cluster (the contract's cluster
//! facts), as plain data.
//!
//! - Storage: DOKS installs the DigitalOcean CSI driver with the default storage class
//!   `do-block-storage` (volumes are ReadWriteOnce; the shared file system is an in-cluster NFS
//!   server, as QHub did on DigitalOcean).
//! - Node selection: DOKS labels every node with its pool's name
//!   (`doks.digitalocean.com/node-pool`); our pools are named `{project}-{namespace}-{group}`.
//! - GPUs: the NVIDIA device plugin is installed by DOKS; GPU nodes carry the taint
//!   `nvidia.com/gpu:NoSchedule`.
//! - Load balancers: the cloud controller manager reads `service.beta.kubernetes.io/do-…`
//!   annotations (digitalocean-cloud-controller-manager, docs/controllers/services/annotations.md).
//! - Autoscaling: DOKS runs the cluster autoscaler itself (`auto_scale` on each pool).

use std::collections::BTreeMap;

use qhub_core::config::Config;
use qhub_core::provider::facts::{Gpu, NodeSelector, SharedFilesystem, Taint};
use qhub_core::provider::{ClusterFacts, Known};

use crate::desired::{self, POOL_LABEL, pool_name};

/// The default storage class of DOKS (the DigitalOcean CSI driver's).
pub const STORAGE_CLASS: &str = "do-block-storage";

/// The node label selecting a pool, and its value for each node group.
pub fn node_selector(config: &Config) -> (String, BTreeMap<String, String>) {
    let prefix = config.resource_prefix();
    let values = config
        .digital_ocean
        .as_ref()
        .map(|s| {
            s.node_groups
                .keys()
                .map(|g| (g.clone(), pool_name(&prefix, g)))
                .collect()
        })
        .unwrap_or_default();
    (POOL_LABEL.to_string(), values)
}

/// Annotations for the platform's LoadBalancer Service: a recognisable name in the
/// DigitalOcean console (`{prefix}-ingress`), the smallest size unit, and TCP health checks
/// (the ingress answers HTTP on port 80 with a redirect, which an HTTP check would count as a
/// failure).
pub fn load_balancer_annotations(config: &Config) -> BTreeMap<String, String> {
    let a = |k: &str| format!("service.beta.kubernetes.io/do-loadbalancer-{k}");
    BTreeMap::from([
        (a("name"), format!("{}-ingress", config.resource_prefix())),
        (a("size-unit"), "1".into()),
        (a("healthcheck-protocol"), "tcp".into()),
    ])
}

/// The Kubernetes stage's facts about a DOKS cluster (see the module's notes), a pure function
/// of the config: none waits for the apply, and none needs a token (what `qhub render` uses).
pub fn cluster_facts(config: &Config) -> ClusterFacts {
    let (label, values) = node_selector(config);
    let gpu = desired::gpu_taint();
    ClusterFacts {
        storage_class: Some(STORAGE_CLASS.into()),
        // DigitalOcean has no managed NFS: the platform runs its NFS server on a volume.
        shared_filesystem: Known::Known(SharedFilesystem::InCluster),
        node_selector: NodeSelector { label, values },
        gpu: Gpu {
            resource: desired::GPU_RESOURCE.into(),
            taint: Some(Taint {
                key: gpu.key,
                value: gpu.value,
                effect: gpu.effect,
            }),
            // DOKS GPU nodes come with NVIDIA's device plugin.
            device_plugin: false,
        },
        load_balancer_annotations: load_balancer_annotations(config),
        native_autoscaling: true,
    }
}
