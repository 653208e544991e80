//! What exists: the deployment's GKE cluster (found by its ownership labels) and its node
//! pools, in the shape of [`crate::desired`] so the engine can diff field by field.
//!
//! One `ListClusters` call per observation: GKE returns each cluster with its node pools.

use std::collections::BTreeMap;

use google_cloud_container_v1::model::{
    Cluster, NodePool, StatusCondition, cluster, node_pool, node_taint,
};
use qhub_core::plan::{Observed, ResourceId, ResourceState, Stage};
use qhub_core::provider::Ownership;
use serde::{Deserialize, Serialize};

use crate::desired::{
    self, Accelerator, CLUSTER, ClusterSpec, PoolSpec, Taint, json, minor, pool_id, serial_group,
};

/// What the provider keeps of an observed cluster for its changes (not diffed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterFacts {
    /// GKE's status name (`RUNNING`, `PROVISIONING`, `ERROR`…).
    pub status: String,
    /// The exact control plane version.
    pub current_version: String,
    /// The API server address (empty while provisioning).
    pub endpoint: String,
    /// The cluster CA (base64 of the PEM, as GKE gives it).
    pub ca: String,
    /// The label fingerprint `setResourceLabels` must quote.
    pub label_fingerprint: String,
}

/// What the provider keeps of an observed node pool (not diffed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolFacts {
    /// GKE's status name.
    pub status: String,
    /// Node version (an update must quote it to leave it unchanged).
    pub version: String,
    /// Image type (likewise).
    pub image_type: String,
}

/// The status name of a cluster.
pub fn cluster_status(s: &cluster::Status) -> String {
    s.name().unwrap_or("STATUS_UNSPECIFIED").to_string()
}

/// The status name of a node pool.
pub fn pool_status(s: &node_pool::Status) -> String {
    s.name().unwrap_or("STATUS_UNSPECIFIED").to_string()
}

fn sorted(m: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The labels of a cluster.
pub fn cluster_labels(c: &Cluster) -> BTreeMap<String, String> {
    sorted(&c.resource_labels)
}

/// A status with its conditions' messages (`status_message` is deprecated in favour of them).
fn detail(status: &str, conditions: &[StatusCondition]) -> String {
    let messages: Vec<&str> = conditions
        .iter()
        .map(|c| c.message.as_str())
        .filter(|m| !m.is_empty())
        .collect();
    if messages.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {}", messages.join("; "))
    }
}

/// The engine's class of a cluster status. DEGRADED ("requires user action", e.g. a lost
/// permission) still serves workloads: replacing the whole cluster would do more harm than
/// good, so it is reported ready with a warning.
pub fn cluster_state(c: &Cluster) -> ResourceState {
    let status = cluster_status(&c.status);
    let detail = detail(&format!("GKE cluster {status}"), &c.conditions);
    match status.as_str() {
        "RUNNING" => ResourceState::Ready,
        "DEGRADED" => {
            tracing::warn!(cluster = %c.name, %detail, "the cluster is degraded");
            ResourceState::Ready
        }
        "ERROR" => ResourceState::Failed(detail),
        _ => ResourceState::Pending(detail),
    }
}

/// The engine's class of a node pool status. RUNNING_WITH_ERROR means some nodes failed;
/// GKE's auto-repair works on them, the pool itself serves.
pub fn pool_state(p: &NodePool) -> ResourceState {
    let status = pool_status(&p.status);
    let detail = detail(&format!("GKE node pool {status}"), &p.conditions);
    match status.as_str() {
        "RUNNING" => ResourceState::Ready,
        "RUNNING_WITH_ERROR" => {
            tracing::warn!(pool = %p.name, %detail, "some nodes of the pool failed");
            ResourceState::Ready
        }
        "ERROR" => ResourceState::Failed(detail),
        _ => ResourceState::Pending(detail),
    }
}

/// The spec of an observed cluster.
pub fn cluster_spec(project: &str, c: &Cluster) -> ClusterSpec {
    ClusterSpec {
        project: project.to_string(),
        region: c.location.clone(),
        locations: Some(c.locations.clone()),
        kubernetes_version: minor(&c.current_master_version),
        release_channel: c
            .release_channel
            .as_ref()
            .and_then(|r| r.channel.name())
            .map(String::from),
        labels: cluster_labels(c),
        // GKE answers the names (or paths, for a Shared VPC) the cluster was made with.
        network: Some(desired::short_name(&c.network)).filter(|n| !n.is_empty()),
        subnetwork: Some(desired::short_name(&c.subnetwork)).filter(|n| !n.is_empty()),
    }
}

/// The spec of an observed node pool.
pub fn pool_spec(p: &NodePool) -> PoolSpec {
    let config = p.config.clone().unwrap_or_default();
    // Counts are compared as the pool's totals (the config's meaning): a pool autoscaled per
    // zone (as qhub-rs made them before it used the totals) counts once per zone.
    let zones = i32::try_from(p.locations.len().max(1)).unwrap_or(1);
    let (min, max) = match &p.autoscaling {
        Some(a) if a.enabled && a.total_max_node_count > 0 => {
            (a.total_min_node_count, a.total_max_node_count)
        }
        Some(a) if a.enabled => (a.min_node_count * zones, a.max_node_count * zones),
        // Without autoscaling the pool has a fixed size: report it as min = max.
        _ => (p.initial_node_count * zones, p.initial_node_count * zones),
    };
    let management = p.management.clone().unwrap_or_default();
    PoolSpec {
        name: p.name.clone(),
        machine_type: config.machine_type.clone(),
        min_nodes: u32::try_from(min).unwrap_or(0),
        max_nodes: u32::try_from(max).unwrap_or(0),
        locations: Some(p.locations.clone()),
        labels: sorted(&config.labels),
        taints: config
            .taints
            .iter()
            .map(|t| Taint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: match &t.effect {
                    node_taint::Effect::NoSchedule => "NO_SCHEDULE".into(),
                    e => e.name().unwrap_or("EFFECT_UNSPECIFIED").to_string(),
                },
            })
            .collect(),
        accelerators: config
            .accelerators
            .iter()
            .map(|a| Accelerator {
                kind: a.accelerator_type.clone(),
                count: u32::try_from(a.accelerator_count).unwrap_or(0),
                driver: a
                    .gpu_driver_installation_config
                    .as_ref()
                    .and_then(|g| g.gpu_driver_version.as_ref())
                    .and_then(|v| v.name())
                    .unwrap_or("GPU_DRIVER_VERSION_UNSPECIFIED")
                    .to_string(),
            })
            .collect(),
        preemptible: config.preemptible,
        spot: config.spot,
        disk_size_gb: u32::try_from(config.disk_size_gb).ok(),
        image_type: Some(config.image_type.clone()),
        auto_repair: management.auto_repair,
        auto_upgrade: management.auto_upgrade,
    }
}

/// The observed resources of one owned cluster: the cluster, then its pools.
pub fn observed(project: &str, c: &Cluster) -> Vec<Observed> {
    let cluster_id = ResourceId::new(CLUSTER, &c.name);
    let facts = ClusterFacts {
        status: cluster_status(&c.status),
        current_version: c.current_master_version.clone(),
        endpoint: c.endpoint.clone(),
        ca: c
            .master_auth
            .as_ref()
            .map(|m| m.cluster_ca_certificate.clone())
            .unwrap_or_default(),
        label_fingerprint: c.label_fingerprint.clone(),
    };
    let group = serial_group(&c.name);
    let mut cluster = Observed::new(
        cluster_id.clone(),
        Stage::Infrastructure,
        json(&cluster_spec(project, c)),
        cluster_state(c),
    );
    cluster.cloud_id = Some(c.self_link.clone()).filter(|s| !s.is_empty());
    cluster.payload = Some(json(&facts));
    cluster.serial_group = Some(group.clone());
    let mut out = vec![cluster];
    for p in &c.node_pools {
        let pool_facts = PoolFacts {
            status: pool_status(&p.status),
            version: p.version.clone(),
            image_type: p
                .config
                .as_ref()
                .map(|c| c.image_type.clone())
                .unwrap_or_default(),
        };
        let mut pool = Observed::new(
            pool_id(&c.name, &p.name),
            Stage::Infrastructure,
            json(&pool_spec(p)),
            pool_state(p),
        );
        pool.depends_on = vec![cluster_id.clone()];
        pool.cloud_id = Some(p.self_link.clone()).filter(|s| !s.is_empty());
        pool.payload = Some(json(&pool_facts));
        pool.serial_group = Some(group.clone());
        pool.created_with = Some(cluster_id.clone());
        out.push(pool);
    }
    out
}

/// The clusters among `clusters` that carry `ownership`'s labels.
pub fn owned<'a>(ownership: &Ownership, clusters: &'a [Cluster]) -> Vec<&'a Cluster> {
    clusters
        .iter()
        .filter(|c| desired::owned(ownership, &cluster_labels(c)))
        .collect()
}

/// True when a disk of GKE's CSI driver belongs to `ownership`'s cluster: it carries the
/// deployment's labels (GKE propagates the cluster's resource labels to it), or names the
/// cluster and one of `locations` in GKE's `goog-k8s-cluster-name`/`-location` labels.
pub fn owns_disk(
    ownership: &Ownership,
    locations: &[String],
    labels: &BTreeMap<String, String>,
) -> bool {
    use crate::compute::{CLUSTER_LOCATION_LABEL, CLUSTER_NAME_LABEL};
    desired::owned(ownership, labels)
        || (labels.get(CLUSTER_NAME_LABEL) == Some(&desired::cluster_name(ownership))
            && labels
                .get(CLUSTER_LOCATION_LABEL)
                .is_some_and(|l| locations.contains(l)))
}

/// The disks PersistentVolumeClaims left for a cluster, as resources a destroy
/// deletes after the cluster (`created_with` it when it exists).
pub fn claim_disks(cluster: Option<&Cluster>, disks: &[crate::compute::Disk]) -> Vec<Observed> {
    disks
        .iter()
        .map(|d| {
            let mut o = Observed::new(
                ResourceId::new(
                    desired::DISK,
                    crate::apply::disk::disk_name(&d.zone, &d.name),
                ),
                Stage::Infrastructure,
                serde_json::json!({"claim": d.claim, "zone": d.zone, "size_gb": d.size_gb}),
                ResourceState::Ready,
            );
            o.cloud_id = Some(d.name.clone());
            o.created_with = cluster.map(|c| ResourceId::new(CLUSTER, &c.name));
            o.made_by_cluster = true;
            o
        })
        .collect()
}
/// What exists, as the price table prices it ([`qhub_core::provider::Provider::priced_shape`]):
/// the GKE cluster, each node pool's machine type and total autoscaling bounds (named by its
/// [`desired::NODE_GROUP_LABEL`]; a pool with accelerators is marked so, the table prices
/// none), and, from the Kubernetes objects, the load balancer and the in-cluster NFS server's
/// data claim (the persistent disk). `None` when a pool's spec cannot be read.
pub fn priced_shape(observed: &[Observed]) -> Option<qhub_core::cost::Shape> {
    let mut shape = qhub_core::kubernetes::priced::shape_of_objects(observed);
    for o in observed.iter().filter(|o| o.stage == Stage::Infrastructure) {
        if o.id.kind == CLUSTER {
            shape.cluster = true;
        } else if o.id.kind == desired::NODE_POOL {
            let p: PoolSpec = serde_json::from_value(o.spec.clone()).ok()?;
            shape.node_groups.insert(
                p.labels.get(desired::NODE_GROUP_LABEL)?.clone(),
                qhub_core::cost::GroupShape {
                    instance: p.machine_type,
                    min_nodes: p.min_nodes,
                    max_nodes: p.max_nodes,
                    accelerators: !p.accelerators.is_empty(),
                },
            );
        }
    }
    Some(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a deploy of the default Google Cloud config makes (with the NFS server's claim) is
    /// priced as the config; a node pool scaled outside qhub is priced as it is.
    #[test]
    fn what_a_deploy_makes_is_priced_as_the_config() {
        qhub_core::conformance::priced_as_the_config(
            qhub_core::config::ProviderKind::Gcp,
            |config| crate::desired::desired(config, None).unwrap(),
            true,
            "node_pool",
            |_, observed| priced_shape(observed),
        )
        .unwrap();
    }
}
