//! What the Kubernetes stage needs to know about a GKE cluster (the contract's cluster facts):
//! a pure function of the config. Nothing waits for the apply (the shared filesystem is an
//! NFS server in the cluster), so `qhub render` and a plan before the first deploy build
//! exactly what a deploy applies, with no client, no credentials and no network.

use qhub_core::config::Config;
use qhub_core::provider::facts::{self, Gpu, Known, SharedFilesystem};

use crate::desired;

/// What the Kubernetes stage needs to know about a GKE cluster: volumes on the Persistent Disk
/// CSI driver's `standard-rwo` class, pools selected by the label every pool carries
/// ([`desired::NODE_GROUP_LABEL`]), GPUs as `nvidia.com/gpu` behind the taint the GPU pools
/// carry (GKE installs the driver and device plugin), GKE's own autoscaler (no
/// cluster-autoscaler to run), and an in-cluster NFS server for the shared filesystem (as QHub
/// ran on GCP).
pub fn cluster_facts(config: &Config) -> facts::ClusterFacts {
    let mut f = facts::ClusterFacts::from_config(config);
    f.storage_class = Some(desired::STORAGE_CLASS.to_string());
    f.shared_filesystem = Known::Known(SharedFilesystem::InCluster);
    f.node_selector.label = desired::NODE_GROUP_LABEL.to_string();
    f.gpu = Gpu {
        resource: desired::GPU_RESOURCE.to_string(),
        taint: Some(facts::Taint {
            key: desired::GPU_TAINT.0.to_string(),
            value: desired::GPU_TAINT.1.to_string(),
            // GKE's NO_SCHEDULE is Kubernetes' NoSchedule.
            effect: "NoSchedule".to_string(),
        }),
        // GKE installs the drivers and the device plugin on GPU pools.
        device_plugin: false,
    };
    f.native_autoscaling = true;
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fact_is_known_before_the_apply() {
        let config = qhub_core::config::init::render(&qhub_core::config::init::InitOptions {
            ci: qhub_core::config::CiKind::None,
            gcp_project: Some("unit-project".into()),
            ..qhub_core::config::init::InitOptions::new(
                qhub_core::config::provider::ProviderKind::Gcp,
                "unit",
                "unit.example.com",
                "0123456789abcdef",
            )
        })
        .unwrap();
        let f = cluster_facts(&config);
        assert!(f.unknown().is_empty(), "{:?}", f.unknown());
        assert_eq!(f.storage_class.as_deref(), Some(desired::STORAGE_CLASS));
        assert_eq!(f.node_selector.label, desired::NODE_GROUP_LABEL);
        assert!(f.native_autoscaling);
    }
}
