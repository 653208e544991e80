//! Node pools: create (or adopt the one created with the cluster), update (autoscaling,
//! labels and taints, management), delete.

use google_cloud_container_v1::model::{
    AcceleratorConfig, GPUDriverInstallationConfig, NodeConfig, NodeLabels, NodeManagement,
    NodePool, NodePoolAutoscaling, NodeTaint, NodeTaints, gpu_driver_installation_config,
    node_taint,
};
use google_cloud_gax::options::RequestOptionsBuilder;
use qhub_core::plan::{Action, Change};
use qhub_core::provider::ApplyContext;

use super::{POOL_DEADLINE, Target, busy, mutate, wait_idle};
use crate::client::Api;
use crate::desired::{PoolSpec, initial_per_zone};
use crate::errors::{Class, GcpError, Result};
use crate::observe::{self, PoolFacts};

/// The `NodePool` to create.
pub fn build(spec: &PoolSpec) -> NodePool {
    let mut config = NodeConfig::default();
    config.machine_type = spec.machine_type.clone();
    config.labels = spec.labels.clone().into_iter().collect();
    config.taints = spec.taints.iter().map(taint).collect();
    config.accelerators = spec
        .accelerators
        .iter()
        .map(|a| {
            AcceleratorConfig::default()
                .set_accelerator_type(a.kind.clone())
                .set_accelerator_count(i64::from(a.count))
                // GKE installs the NVIDIA driver (and runs the device plugin) itself.
                .set_gpu_driver_installation_config(
                    GPUDriverInstallationConfig::default().set_gpu_driver_version(
                        gpu_driver_installation_config::GPUDriverVersion::from(a.driver.as_str()),
                    ),
                )
        })
        .collect();
    config.preemptible = spec.preemptible;
    config.spot = spec.spot;
    if let Some(gb) = spec.disk_size_gb {
        config.disk_size_gb = i32::try_from(gb).unwrap_or(i32::MAX);
    }
    if let Some(image) = &spec.image_type {
        config.image_type = image.clone();
    }
    // GKE creates `initial_node_count` nodes in each zone of the pool ("The initial node
    // count for the pool … in each of the node pool's zones", NodePool reference): the pool
    // starts with its minimum in all (see `desired::pool_locations`).
    let initial = i32::try_from(initial_per_zone(spec)).unwrap_or(i32::MAX);
    NodePool::default()
        .set_name(spec.name.clone())
        .set_config(config)
        .set_initial_node_count(initial)
        .set_locations(spec.locations.clone().unwrap_or_default())
        .set_autoscaling(autoscaling(spec))
        .set_management(management(spec))
}

fn taint(t: &crate::desired::Taint) -> NodeTaint {
    NodeTaint::default()
        .set_key(t.key.clone())
        .set_value(t.value.clone())
        .set_effect(node_taint::Effect::from(t.effect.as_str()))
}

/// The config's counts are the group's totals: GKE's `total_min_node_count` /
/// `total_max_node_count` ("Minimum/Maximum number of nodes in the node pool", exclusive with
/// the per-zone `min_node_count`/`max_node_count`, NodePoolAutoscaling reference; "use
/// --total-min-nodes … to limit the total number of nodes", GKE cluster autoscaler how-to).
fn autoscaling(spec: &PoolSpec) -> NodePoolAutoscaling {
    NodePoolAutoscaling::default()
        .set_enabled(true)
        .set_total_min_node_count(i32::try_from(spec.min_nodes).unwrap_or(i32::MAX))
        .set_total_max_node_count(i32::try_from(spec.max_nodes).unwrap_or(i32::MAX))
}

fn management(spec: &PoolSpec) -> NodeManagement {
    NodeManagement::default()
        .set_auto_repair(spec.auto_repair)
        .set_auto_upgrade(spec.auto_upgrade)
}

/// The cluster a pool id belongs to (`{cluster}-{pool}`).
fn cluster_of(id_name: &str, pool: &str) -> Result<String> {
    id_name
        .strip_suffix(&format!("-{pool}"))
        .map(String::from)
        .ok_or_else(|| {
            GcpError::NotSupported(format!(
                "node pool resource {id_name} does not end with its pool name {pool}"
            ))
        })
}

fn parse<T: serde::de::DeserializeOwned>(v: Option<&serde_json::Value>, what: &str) -> Result<T> {
    let v = v.ok_or_else(|| GcpError::NotSupported(format!("the change has no {what}")))?;
    serde_json::from_value(v.clone())
        .map_err(|e| GcpError::NotSupported(format!("unreadable {what}: {e}")))
}

/// Performs a change of a node pool.
pub(crate) async fn apply(
    api: &Api,
    t: &Target,
    change: &Change,
    ctx: &ApplyContext,
) -> Result<()> {
    let _serial = t.lock.lock().await;
    let desired: Option<PoolSpec> = match &change.desired {
        Some(d) => Some(parse(Some(&d.spec), "desired spec")?),
        None => None,
    };
    let observed: Option<PoolSpec> = match &change.observed {
        Some(o) => Some(parse(Some(&o.spec), "observed spec")?),
        None => None,
    };
    let facts: Option<PoolFacts> = change
        .observed
        .as_ref()
        .and_then(|o| o.payload.clone())
        .and_then(|p| serde_json::from_value(p).ok());
    let pool_name = desired
        .as_ref()
        .or(observed.as_ref())
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let cluster = cluster_of(&change.id.name, &pool_name)?;
    match (change.action, ctx.parent_applied) {
        // Created (or re-created, repairing it) by the cluster's own create in this run: the
        // pool's create or replace only adopts it, without a call.
        (Action::Create | Action::Replace, Some(Action::Create | Action::Replace))
        // Deleted with its cluster in this run (the engine deletes the parent first).
        | (Action::Delete, Some(Action::Delete)) => return Ok(()),
        _ => {}
    }
    match (change.action, desired, observed) {
        (Action::Create, Some(spec), _) => create(api, t, &cluster, &spec).await,
        (Action::Update, Some(spec), Some(have)) => {
            update(api, t, &cluster, &spec, &have, facts.as_ref()).await
        }
        (Action::Replace, Some(spec), _) => {
            delete(api, t, &cluster, &pool_name).await?;
            create(api, t, &cluster, &spec).await
        }
        (Action::Delete, _, _) => delete(api, t, &cluster, &pool_name).await,
        (action, _, _) => Err(GcpError::NotSupported(format!(
            "{}: {action:?} without the resources it needs",
            change.id
        ))),
    }
}

async fn get(api: &Api, t: &Target, cluster: &str, pool: &str) -> Result<NodePool> {
    let path = t.pool(cluster, pool);
    api.read("GetNodePool", &path, || {
        api.client.get_node_pool().set_name(&path).send()
    })
    .await
}

async fn create(api: &Api, t: &Target, cluster: &str, spec: &PoolSpec) -> Result<()> {
    // Usually created with the cluster (by an earlier run): then adopt it.
    match get(api, t, cluster, &spec.name).await {
        Ok(existing) => return adopt(api, t, cluster, &existing).await,
        Err(e) if e.is_not_found_of(&t.pool(cluster, &spec.name)) => {}
        Err(e) => return Err(e),
    }
    let location = t.location();
    let parent = t.cluster(cluster);
    let pool = build(spec);
    let sent = mutate(api, t, cluster, || {
        api.call(
            "CreateNodePool",
            &parent,
            api.client
                .create_node_pool()
                .set_parent(&parent)
                .set_node_pool(pool.clone())
                .with_idempotency(false)
                .send(),
        )
    })
    .await;
    match sent {
        Ok(op) => {
            api.wait(
                &location,
                op,
                &format!("creating node pool {} of {cluster}", spec.name),
                POOL_DEADLINE,
            )
            .await
        }
        Err(e) if e.class() == Class::AlreadyExists => {
            let existing = get(api, t, cluster, &spec.name).await?;
            adopt(api, t, cluster, &existing).await
        }
        Err(e) => Err(e),
    }
}

async fn adopt(api: &Api, t: &Target, cluster: &str, existing: &NodePool) -> Result<()> {
    let mut status = observe::pool_status(&existing.status);
    if busy(&status) {
        wait_idle(api, t, cluster).await?;
        status = observe::pool_status(&get(api, t, cluster, &existing.name).await?.status);
    }
    match status.as_str() {
        "RUNNING" => Ok(()),
        other => Err(GcpError::Api {
            what: format!("node pool {} of {cluster}", existing.name),
            class: Class::Fatal,
            message: format!("exists in status {other}; the next plan replaces it"),
        }),
    }
}

async fn update(
    api: &Api,
    t: &Target,
    cluster: &str,
    spec: &PoolSpec,
    have: &PoolSpec,
    facts: Option<&PoolFacts>,
) -> Result<()> {
    let location = t.location();
    let path = t.pool(cluster, &spec.name);
    if (spec.min_nodes, spec.max_nodes) != (have.min_nodes, have.max_nodes) {
        let op = mutate(api, t, cluster, || {
            api.call(
                "SetNodePoolAutoscaling",
                &path,
                api.client
                    .set_node_pool_autoscaling()
                    .set_name(&path)
                    .set_autoscaling(autoscaling(spec))
                    .with_idempotency(false)
                    .send(),
            )
        })
        .await?;
        let what = format!(
            "autoscaling {} to {}..{}",
            spec.name, spec.min_nodes, spec.max_nodes
        );
        api.wait(&location, op, &what, POOL_DEADLINE).await?;
    }
    let move_to = spec
        .locations
        .as_ref()
        .filter(|z| have.locations.as_ref() != Some(*z));
    if spec.labels != have.labels || spec.taints != have.taints || move_to.is_some() {
        // `node_version` and `image_type` are required by UpdateNodePool: the current ones
        // leave the nodes' version and image as they are.
        let (version, image) = match facts {
            Some(f) => (f.version.clone(), f.image_type.clone()),
            None => {
                let p = get(api, t, cluster, &spec.name).await?;
                let image = p.config.map(|c| c.image_type).unwrap_or_default();
                (p.version, image)
            }
        };
        let op = mutate(api, t, cluster, || {
            api.call(
                "UpdateNodePool",
                &path,
                api.client
                    .update_node_pool()
                    .set_name(&path)
                    .set_node_version(version.clone())
                    .set_image_type(image.clone())
                    .set_labels(NodeLabels::default().set_labels(spec.labels.clone()))
                    .set_taints(NodeTaints::default().set_taints(spec.taints.iter().map(taint)))
                    // Empty: the locations stay as they are.
                    .set_locations(move_to.cloned().unwrap_or_default())
                    .with_idempotency(false)
                    .send(),
            )
        })
        .await?;
        let what = match move_to {
            Some(z) => format!("node pool {} to zones {}", spec.name, z.join(", ")),
            None => format!("relabelling node pool {}", spec.name),
        };
        api.wait(&location, op, &what, POOL_DEADLINE).await?;
    }
    if (spec.auto_repair, spec.auto_upgrade) != (have.auto_repair, have.auto_upgrade) {
        let op = mutate(api, t, cluster, || {
            api.call(
                "SetNodePoolManagement",
                &path,
                api.client
                    .set_node_pool_management()
                    .set_name(&path)
                    .set_management(management(spec))
                    .with_idempotency(false)
                    .send(),
            )
        })
        .await?;
        let what = format!("node management of {}", spec.name);
        api.wait(&location, op, &what, POOL_DEADLINE).await?;
    }
    Ok(())
}

/// Deletes the pool; gone already (its own `DeleteNodePool` answers 404: the pool, or its
/// whole cluster, is gone) is done, a 404 of another call is not.
async fn delete(api: &Api, t: &Target, cluster: &str, pool: &str) -> Result<()> {
    let path = t.pool(cluster, pool);
    delete_at(api, t, cluster, pool, &path)
        .await
        .map_err(|e| e.not_found_only_of(&path))
}

async fn delete_at(api: &Api, t: &Target, cluster: &str, pool: &str, path: &str) -> Result<()> {
    let location = t.location();
    let sent = mutate(api, t, cluster, || {
        api.call(
            "DeleteNodePool",
            path,
            api.client
                .delete_node_pool()
                .set_name(path)
                .with_idempotency(false)
                .send(),
        )
    })
    .await;
    match sent {
        Ok(op) => {
            api.wait(
                &location,
                op,
                &format!("deleting node pool {pool} of {cluster}"),
                POOL_DEADLINE,
            )
            .await
        }
        Err(e) if e.is_not_found_of(path) => Ok(()),
        Err(e) => Err(e),
    }
}
