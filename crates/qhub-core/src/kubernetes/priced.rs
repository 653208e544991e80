//! What the Kubernetes stage adds to a deployment's priced shape ([`Shape`]), read from its
//! observed objects: each provider's [`crate::provider::Provider::priced_shape`] starts here and
//! adds what its cloud stage made.

use serde_json::Value as Json;

use super::components::storage::NFS_DATA;
use crate::cost::Shape;
use crate::plan::{Observed, Stage};

/// The parts of the shape the Kubernetes stage makes on every provider: the ingress load
/// balancer (a `LoadBalancer` Service of ours) and, where the shared filesystem is the
/// in-cluster NFS server, the size its data claim asks for. Node groups and the cluster are
/// the provider's to add.
pub fn shape_of_objects(observed: &[Observed]) -> Shape {
    let load_balancer = observed.iter().any(|o| {
        o.stage == Stage::Kubernetes
            && o.id.kind == "Service"
            && o.spec.pointer("/spec/type").and_then(Json::as_str) == Some("LoadBalancer")
    });
    let storage = observed
        .iter()
        .filter(|o| o.stage == Stage::Kubernetes && o.id.kind == "PersistentVolumeClaim")
        .find(|o| o.id.name.rsplit('/').next() == Some(NFS_DATA))
        .and_then(|o| {
            o.spec
                .pointer("/spec/resources/requests/storage")
                .and_then(Json::as_str)
                .map(str::to_string)
        });
    Shape {
        load_balancer,
        storage,
        ..Shape::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;

    /// The load balancer and the in-cluster NFS server's size are read from the manifests the
    /// platform really applies (observed as applied), at the paths they have there.
    #[test]
    fn the_objects_give_the_load_balancer_and_the_nfs_volume() {
        use crate::provider::facts::{ClusterFacts, Known, SharedFilesystem};
        let mut config = crate::config::init::render(&crate::config::init::InitOptions::new(
            ProviderKind::Do,
            "demo",
            "demo.example.com",
            "0123456789abcdef",
        ))
        .unwrap();
        config.storage.shared_filesystem = "123Gi".into();
        let mut facts = ClusterFacts::from_config(&config);
        facts.shared_filesystem = Known::Known(SharedFilesystem::InCluster);
        let objects: Vec<Observed> = crate::kubernetes::desired(&config, &facts)
            .unwrap()
            .iter()
            .map(|r| Observed::like(r, r.spec.clone(), None, crate::plan::ResourceState::Ready))
            .collect();
        let shape = shape_of_objects(&objects);
        assert!(shape.load_balancer);
        assert_eq!(shape.storage.as_deref(), Some("123Gi"));
        assert!(shape.node_groups.is_empty() && !shape.cluster);
        // Without the Service and the claim: neither.
        let others: Vec<Observed> = objects
            .into_iter()
            .filter(|o| o.id.kind != "Service" && o.id.kind != "PersistentVolumeClaim")
            .collect();
        assert_eq!(shape_of_objects(&others), Shape::default());
    }
}
