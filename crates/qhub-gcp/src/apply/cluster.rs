//! The cluster: create (with its node pools), update (version, node locations, release
//! channel, labels), delete.

use google_cloud_container_v1::model::{Cluster, ClusterUpdate, ReleaseChannel, release_channel};
use google_cloud_gax::options::RequestOptionsBuilder;
use qhub_core::plan::{Action, Change, Resource};
use qhub_core::provider::{ApplyContext, Ownership};

use super::{CLUSTER_DEADLINE, Target, busy, mutate, pool, wait_idle};
use crate::client::Api;
use crate::desired::{self, ClusterPayload, ClusterSpec, PoolSpec, version_cmp};
use crate::errors::{Class, GcpError, Result};
use crate::observe;

fn spec_of(change: &Change) -> Result<(ClusterSpec, ClusterPayload)> {
    let d = change.desired.as_ref().ok_or_else(|| {
        GcpError::NotSupported(format!("{}: the change has no desired resource", change.id))
    })?;
    let spec: ClusterSpec = serde_json::from_value(d.spec.clone())
        .map_err(|e| GcpError::config(change.id.to_string(), format!("bad spec: {e}")))?;
    let payload: ClusterPayload = serde_json::from_value(d.payload.clone().unwrap_or_default())
        .map_err(|e| GcpError::config(change.id.to_string(), format!("bad payload: {e}")))?;
    Ok((spec, payload))
}

/// The node pools to create with the cluster: the change's children.
fn pools_of(children: &[Resource]) -> Result<Vec<PoolSpec>> {
    children
        .iter()
        .filter(|c| c.id.kind == desired::NODE_POOL)
        .map(|c| {
            serde_json::from_value(c.spec.clone())
                .map_err(|e| GcpError::config(c.id.to_string(), format!("bad node pool spec: {e}")))
        })
        .collect()
}

/// Performs a change of the cluster.
pub(crate) async fn apply(
    api: &Api,
    t: &Target,
    change: &Change,
    ctx: &ApplyContext,
) -> Result<()> {
    let name = change.id.name.as_str();
    let _serial = t.lock.lock().await;
    match change.action {
        Action::Create => {
            let (spec, payload) = spec_of(change)?;
            let pools = pools_of(&ctx.children)?;
            create(api, t, name, &spec, &payload, &pools, &ctx.ownership).await
        }
        Action::Update => {
            let (spec, payload) = spec_of(change)?;
            update(api, t, name, &spec, &payload).await
        }
        Action::Replace => {
            // A cluster in ERROR, or one whose project/region changed: GKE cannot fix either in
            // place.
            let (spec, payload) = spec_of(change)?;
            let pools = pools_of(&ctx.children)?;
            delete_observed(api, t, name, change).await?;
            create(api, t, name, &spec, &payload, &pools, &ctx.ownership).await
        }
        Action::Delete => delete_observed(api, t, name, change).await,
        Action::Wait => Err(GcpError::NotSupported(
            "the engine waits by observing; a provider is never asked to wait".into(),
        )),
    }
}

/// The `Cluster` to create, with its node pools.
pub fn build(
    name: &str,
    spec: &ClusterSpec,
    payload: &ClusterPayload,
    pools: &[PoolSpec],
) -> Cluster {
    let mut c = Cluster::default();
    c.name = name.to_string();
    c.resource_labels = spec.labels.clone().into_iter().collect();
    c.initial_cluster_version = payload.initial_version.clone();
    c.locations = spec.locations.clone().unwrap_or_default();
    c.network = payload.network.clone().unwrap_or_default();
    c.subnetwork = payload.subnetwork.clone().unwrap_or_default();
    if let Some(channel) = &spec.release_channel {
        c.release_channel = Some(
            ReleaseChannel::default().set_channel(release_channel::Channel::from(channel.as_str())),
        );
    }
    c.node_pools = pools.iter().map(pool::build).collect();
    c
}

async fn get(api: &Api, t: &Target, name: &str) -> Result<Cluster> {
    let path = t.cluster(name);
    api.read("GetCluster", &path, || {
        api.client.get_cluster().set_name(&path).send()
    })
    .await
}

async fn create(
    api: &Api,
    t: &Target,
    name: &str,
    spec: &ClusterSpec,
    payload: &ClusterPayload,
    pools: &[PoolSpec],
    ownership: &Ownership,
) -> Result<()> {
    let location = t.location();
    let cluster = build(name, spec, payload, pools);
    let what = format!("creating GKE cluster {name}");
    let sent = api
        .call(
            "CreateCluster",
            name,
            api.client
                .create_cluster()
                .set_parent(&location)
                .set_cluster(cluster)
                .with_idempotency(false)
                .send(),
        )
        .await;
    match sent {
        Ok(op) => api.wait(&location, op, &what, CLUSTER_DEADLINE).await,
        Err(e) if matches!(e.class(), Class::AlreadyExists | Class::Conflict) => {
            adopt(api, t, name, ownership).await
        }
        Err(e) => Err(e),
    }
}

/// A create found the cluster: ours (a lost answer, an interrupted run) is waited for and
/// adopted; someone else's is an error.
async fn adopt(api: &Api, t: &Target, name: &str, ownership: &Ownership) -> Result<()> {
    let existing = get(api, t, name).await?;
    if !desired::owned(ownership, &observe::cluster_labels(&existing)) {
        return Err(GcpError::Api {
            what: format!("creating GKE cluster {name}"),
            class: Class::Fatal,
            message: "a cluster of this name exists and does not carry this deployment's labels; refusing to adopt it".into(),
        });
    }
    let mut status = observe::cluster_status(&existing.status);
    if busy(&status) {
        wait_idle(api, t, name).await?;
        status = observe::cluster_status(&get(api, t, name).await?.status);
    }
    tracing::info!(cluster = name, %status, "adopted an existing GKE cluster");
    match status.as_str() {
        "RUNNING" => Ok(()),
        // Being deleted (an interrupted destroy): once gone, the retry creates it.
        "STOPPING" => Err(GcpError::Api {
            what: format!("creating GKE cluster {name}"),
            class: Class::Conflict,
            message: "the cluster is being deleted".into(),
        }),
        other => Err(GcpError::Api {
            what: format!("creating GKE cluster {name}"),
            class: Class::Fatal,
            message: format!("the cluster exists in status {other}; the next plan replaces it"),
        }),
    }
}

async fn update(
    api: &Api,
    t: &Target,
    name: &str,
    spec: &ClusterSpec,
    payload: &ClusterPayload,
) -> Result<()> {
    let location = t.location();
    let path = t.cluster(name);
    let current = get(api, t, name).await?;
    if busy(&observe::cluster_status(&current.status)) {
        wait_idle(api, t, name).await?;
    }
    let have = observe::cluster_spec(&spec.project, &current);
    let mut updates: Vec<(String, ClusterUpdate)> = Vec::new();
    if have.kubernetes_version != spec.kubernetes_version {
        if version_cmp(&spec.kubernetes_version, &have.kubernetes_version).is_lt() {
            return Err(GcpError::config(
                "google_cloud_platform.kubernetes_version",
                format!(
                    "GKE cannot downgrade cluster {name} from {} to {}",
                    have.kubernetes_version, spec.kubernetes_version
                ),
            ));
        }
        updates.push((
            format!(
                "upgrading GKE cluster {name} to {}",
                payload.initial_version
            ),
            ClusterUpdate::default().set_desired_master_version(payload.initial_version.clone()),
        ));
    }
    if let Some(zones) = &spec.locations
        && have.locations.as_ref() != Some(zones)
    {
        updates.push((
            format!(
                "moving the nodes of GKE cluster {name} to {}",
                zones.join(", ")
            ),
            ClusterUpdate::default().set_desired_locations(zones.clone()),
        ));
    }
    if let Some(channel) = &spec.release_channel
        && have.release_channel.as_ref() != Some(channel)
    {
        updates.push((
            format!("enrolling GKE cluster {name} in the {channel} channel"),
            ClusterUpdate::default().set_desired_release_channel(
                ReleaseChannel::default()
                    .set_channel(release_channel::Channel::from(channel.as_str())),
            ),
        ));
    }
    for (what, update) in updates {
        let op = mutate(api, t, name, || {
            api.call(
                "UpdateCluster",
                &path,
                api.client
                    .update_cluster()
                    .set_name(&path)
                    .set_update(update.clone())
                    .with_idempotency(false)
                    .send(),
            )
        })
        .await?;
        api.wait(&location, op, &what, CLUSTER_DEADLINE).await?;
    }
    if have.labels != spec.labels {
        // The fingerprint must be the one of the labels we replace: read it fresh.
        let fingerprint = get(api, t, name).await?.label_fingerprint;
        let op = mutate(api, t, name, || {
            api.call(
                "SetLabels",
                &path,
                api.client
                    .set_labels()
                    .set_name(&path)
                    .set_resource_labels(spec.labels.clone())
                    .set_label_fingerprint(fingerprint.clone())
                    .with_idempotency(false)
                    .send(),
            )
        })
        .await?;
        api.wait(
            &location,
            op,
            &format!("labelling GKE cluster {name}"),
            CLUSTER_DEADLINE,
        )
        .await?;
    }
    Ok(())
}

/// Deletes the cluster where it was observed: in another region than the config's when the
/// config moved it (a replace) or left it behind.
async fn delete_observed(api: &Api, t: &Target, name: &str, change: &Change) -> Result<()> {
    let region = change
        .observed
        .as_ref()
        .and_then(|o| o.spec.get("region"))
        .and_then(serde_json::Value::as_str)
        .filter(|r| !r.is_empty() && *r != t.region);
    match region {
        Some(region) => delete(api, &Target::new(&t.project, region), name).await,
        None => delete(api, t, name).await,
    }
}

/// Deletes the cluster (and its node pools with it); gone already is done. Only
/// `DeleteCluster`'s own 404 about the cluster means gone: any other 404 on the way fails the
/// delete, naming its call.
pub(crate) async fn delete(api: &Api, t: &Target, name: &str) -> Result<()> {
    let path = t.cluster(name);
    delete_at(api, t, name, &path)
        .await
        .map_err(|e| e.not_found_only_of(&path))
}

async fn delete_at(api: &Api, t: &Target, name: &str, path: &str) -> Result<()> {
    let location = t.location();
    // `mutate` waits for an operation still running on it (an interrupted create).
    let sent = mutate(api, t, name, || {
        api.call(
            "DeleteCluster",
            path,
            api.client
                .delete_cluster()
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
                &format!("deleting GKE cluster {name}"),
                CLUSTER_DEADLINE,
            )
            .await
        }
        Err(e) if e.is_not_found_of(path) => Ok(()),
        Err(e) => Err(e),
    }
}
