//! What exists: the account's clusters carrying the deployment's ownership tags, and their
//! pools carrying them too, in the shape of [`crate::desired`] so the engine can diff them.
//!
//! DOKS adds tags of its own (`k8s`, `k8s:<cluster id>`, `k8s-worker`); only our `qhub-*:`
//! tags are read. Cluster names are unique in an account and pool names in a cluster, so there
//! are no same-named duplicates to sort out: an owned cluster or pool under another name shows
//! up under that name, and a plan deletes it. A cluster being deleted is not reported: it is
//! going away with its pools.

use qhub_core::plan::{Observed, ResourceId, ResourceState, Stage};
use qhub_core::provider::{Ownership, ProviderError, spec};

use crate::client::{Cluster, NodePool};
use crate::desired::{CLUSTER, ClusterSpec, NODE_POOL, PoolSpec, tags_to_marks};

/// The state of a cluster or pool, in the contract's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Usable.
    Ready,
    /// On its way (provisioning, upgrading, nodes starting); the text says what it waits for.
    Pending(String),
    /// Broken; the text says why.
    Failed(String),
    /// Being deleted.
    Deleting,
}

impl State {
    /// The contract's state (a pool whose cluster is being deleted is pending: it goes).
    pub fn to_resource_state(&self) -> ResourceState {
        match self {
            Self::Ready => ResourceState::Ready,
            Self::Pending(why) => ResourceState::Pending(why.clone()),
            Self::Failed(why) => ResourceState::Failed(why.clone()),
            Self::Deleting => ResourceState::Pending("being deleted".into()),
        }
    }
}

/// The state of a cluster from its `status.state`.
pub fn cluster_state(c: &Cluster) -> State {
    match c.status.state.as_str() {
        "running" => State::Ready,
        "provisioning" | "upgrading" => State::Pending(format!("cluster is {}", c.status.state)),
        "deleting" | "deleted" => State::Deleting,
        // Degraded means some nodes are unhealthy: the cluster works, and DOKS repairs its
        // nodes itself. Replacing it (what a failed state leads to) would destroy a working
        // platform.
        "degraded" => {
            tracing::warn!(cluster = %c.name, "DOKS reports the cluster degraded (some nodes unhealthy)");
            State::Ready
        }
        "error" => State::Failed(format!(
            "cluster is {}{}",
            c.status.state,
            c.status
                .message
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
        other => State::Pending(format!("cluster state is `{other}`")),
    }
}

/// The state of a pool: ready when its cluster is running and all its nodes are.
pub fn pool_state(c: &Cluster, p: &NodePool) -> State {
    match cluster_state(c) {
        State::Ready => {}
        State::Deleting => return State::Deleting,
        other => return other,
    }
    let running = p
        .nodes
        .iter()
        .filter(|n| n.status.state == "running")
        .count();
    if running == p.nodes.len() {
        State::Ready
    } else {
        State::Pending(format!("{running} of {} nodes running", p.nodes.len()))
    }
}

/// True when `tags` carry `ownership`'s marks.
pub fn owned(ownership: &Ownership, tags: &[String]) -> bool {
    ownership.owns(&tags_to_marks(tags))
}

/// The observed spec of a pool in cluster `c` (the fields [`crate::desired::pool_spec`] and
/// [`crate::desired::desired`] set).
pub fn pool_spec(c: &Cluster, p: &NodePool) -> PoolSpec {
    let mut taints = p.taints.clone();
    taints.sort();
    PoolSpec {
        size: p.size.clone(),
        auto_scale: p.auto_scale,
        min_nodes: p.min_nodes,
        max_nodes: p.max_nodes,
        labels: p.labels.clone().unwrap_or_default(),
        taints,
        region: Some(c.region.clone()),
    }
}

/// Where an observed cluster is: its observed payload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterAddress {
    /// The cluster's id.
    pub cluster_id: String,
    /// Its `status.state`.
    pub state: String,
}

/// Where an observed pool is: its observed payload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PoolAddress {
    /// Its cluster's id.
    pub cluster_id: String,
    /// The pool's id.
    pub pool_id: String,
    /// Its current node count.
    pub count: u32,
}

/// Where an observed pool is, read back typed from its payload (`None` without one).
pub fn pool_address(observed: &Observed) -> Result<Option<PoolAddress>, ProviderError> {
    observed
        .payload
        .as_ref()
        .map(|p| spec::read(&observed.id, "payload", p))
        .transpose()
}

/// The observed resources of `ownership` among `clusters` (the whole account's list).
pub fn observe(
    clusters: &[Cluster],
    ownership: &Ownership,
) -> Result<Vec<Observed>, ProviderError> {
    let mut out = Vec::new();
    for c in clusters.iter().filter(|c| owned(ownership, &c.tags)) {
        let state = cluster_state(c);
        if state == State::Deleting {
            // Going away with its pools: not part of what exists. A create of the same name
            // waits for it to be gone; a destroy has nothing left to do.
            continue;
        }
        let cluster_id = ResourceId::new(CLUSTER, &c.name);
        let spec = ClusterSpec {
            region: c.region.clone(),
            version: c.version.clone(),
        };
        let mut cluster = Observed::new(
            cluster_id.clone(),
            Stage::Infrastructure,
            spec::write(&cluster_id, OBSERVED, &spec)?,
            state.to_resource_state(),
        );
        cluster.cloud_id = Some(c.id.clone());
        let address = ClusterAddress {
            cluster_id: c.id.clone(),
            state: c.status.state.clone(),
        };
        cluster.payload = Some(spec::write(&cluster_id, "payload", &address)?);
        out.push(cluster);
        if matches!(state, State::Failed(_)) {
            // A failed cluster is replaced with its pools: they are created again with it.
            continue;
        }
        // Every pool goes with its cluster (see `crate::desired`).
        for p in c.node_pools.iter().filter(|p| owned(ownership, &p.tags)) {
            let id = ResourceId::new(NODE_POOL, &p.name);
            let address = PoolAddress {
                cluster_id: c.id.clone(),
                pool_id: p.id.clone(),
                count: p.count,
            };
            let mut pool = Observed::new(
                id.clone(),
                Stage::Infrastructure,
                spec::write(&id, OBSERVED, &pool_spec(c, p))?,
                pool_state(c, p).to_resource_state(),
            );
            pool.depends_on = vec![cluster_id.clone()];
            pool.cloud_id = Some(format!("{}/{}", c.id, p.id));
            pool.payload = Some(spec::write(&id, "payload", &address)?);
            pool.created_with = Some(cluster_id.clone());
            out.push(pool);
        }
    }
    Ok(out)
}

/// What exists, as the price table prices it ([`qhub_core::provider::Provider::priced_shape`]):
/// the DOKS cluster, each node pool's droplet size and autoscaling bounds (named by its
/// [`crate::desired::GROUP_LABEL`]), and, from the Kubernetes objects, the load balancer and
/// the in-cluster NFS server's data claim (the block storage volume). `None` when a pool's
/// spec cannot be read.
pub fn priced_shape(observed: &[Observed]) -> Option<qhub_core::cost::Shape> {
    let mut shape = qhub_core::kubernetes::priced::shape_of_objects(observed);
    for o in observed.iter().filter(|o| o.stage == Stage::Infrastructure) {
        if o.id.kind == CLUSTER {
            shape.cluster = true;
        } else if o.id.kind == NODE_POOL {
            let p: PoolSpec = spec::read(&o.id, OBSERVED, &o.spec).ok()?;
            shape.node_groups.insert(
                p.labels.get(crate::desired::GROUP_LABEL)?.clone(),
                qhub_core::cost::GroupShape {
                    instance: p.size,
                    min_nodes: p.min_nodes,
                    max_nodes: p.max_nodes,
                    accelerators: false,
                },
            );
        }
    }
    Some(shape)
}

/// What an observed spec is called in errors.
const OBSERVED: &str = "observed spec";

#[cfg(test)]
mod tests {
    use super::*;

    /// What a deploy of the default DigitalOcean config makes (with the NFS server's claim) is
    /// priced as the config; a node pool scaled outside qhub is priced as it is.
    #[test]
    fn what_a_deploy_makes_is_priced_as_the_config() {
        let facts = crate::desired::DoFacts {
            version: "1.33.10-do.1".into(),
            options: Default::default(),
        };
        qhub_core::conformance::priced_as_the_config(
            qhub_core::config::ProviderKind::Do,
            |config| crate::desired::desired(config, &facts).unwrap(),
            true,
            "node_pool",
            |_, observed| priced_shape(observed),
        )
        .unwrap();
    }
    use crate::client::{Node, NodeStatus, Status};

    fn cluster(state: &str, tags: &[&str]) -> Cluster {
        Cluster {
            id: "c1".into(),
            name: "demo-dev".into(),
            region: "nyc3".into(),
            version: "1.33.10-do.1".into(),
            tags: tags.iter().map(|t| (*t).to_string()).collect(),
            status: Status {
                state: state.into(),
                message: None,
            },
            node_pools: vec![NodePool {
                id: "p1".into(),
                name: "demo-dev-general".into(),
                tags: tags.iter().map(|t| (*t).to_string()).collect(),
                nodes: vec![Node {
                    name: "n".into(),
                    status: NodeStatus {
                        state: "provisioning".into(),
                    },
                }],
                ..NodePool::default()
            }],
            ..Cluster::default()
        }
    }

    #[test]
    fn states_ownership_and_the_first_pool() {
        let o = Ownership {
            project: "demo".into(),
            namespace: "dev".into(),
        };
        let ours = [
            "qhub-managed-by:qhub-rs",
            "qhub-project:demo",
            "qhub-namespace:dev",
            "k8s",
            "k8s:c1",
        ];
        // Degraded works: never a reason to replace a cluster.
        assert_eq!(cluster_state(&cluster("degraded", &ours)), State::Ready);
        assert!(matches!(
            cluster_state(&cluster("error", &ours)),
            State::Failed(_)
        ));
        let seen = observe(&[cluster("running", &ours)], &o).unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].created_with, Some(seen[0].id.clone()));
        assert!(matches!(seen[1].state, ResourceState::Pending(_)));
        // Another deployment's cluster, a deleting one, and a failed one's pools are left out.
        let theirs = [
            "qhub-managed-by:qhub-rs",
            "qhub-project:other",
            "qhub-namespace:dev",
        ];
        assert!(
            observe(&[cluster("running", &theirs)], &o)
                .unwrap()
                .is_empty()
        );
        assert!(
            observe(&[cluster("deleting", &ours)], &o)
                .unwrap()
                .is_empty()
        );
        assert_eq!(observe(&[cluster("error", &ours)], &o).unwrap().len(), 1);
    }
}
