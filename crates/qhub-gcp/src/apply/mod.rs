//! Carrying out one change: create, update, replace or delete a cluster or a node pool, and
//! wait for GKE's operation to finish.
//!
//! **One operation per cluster.** GKE refuses a mutation while another operation runs on the
//! same cluster (400 FAILED_PRECONDITION). Node pools are therefore created with the cluster
//! (one operation), the engine runs one change of the serial group `cluster/<name>` at a time
//! (and the provider's own [`Target::lock`] keeps two changes of one provider apart even when
//! it is driven by something else), and before touching a cluster that looks busy it waits for
//! the running operation (`wait_idle`). Should GKE still refuse (an operation someone else started), it
//! waits for that operation once and tries again; after that the refusal goes back to the
//! engine as a retryable conflict.
//!
//! **Idempotency.** A create that finds the resource exists (409, after an answer was lost or a
//! run was interrupted) adopts it, after checking it carries our labels; a delete whose own
//! call finds nothing (404 about the deleted object) is done. A 404 of another call on the way
//! (the location's `ListOperations`) is an error naming that call: it says nothing about the
//! object ([`GcpError::not_found_only_of`]).
//!
//! **No memory of its own.** Whether a pool was made by its cluster's create, or removed by its
//! delete, in this run comes from the engine ([`ApplyContext::parent_applied`]), not from sets
//! kept in the process.

pub mod cluster;
pub mod disk;
pub mod pool;

use std::future::Future;
use std::time::{Duration, Instant};

use google_cloud_container_v1::model::{Operation, operation};
use qhub_core::plan::Change;
use qhub_core::provider::ApplyContext;

use crate::client::Api;
use crate::desired::{CLUSTER, NODE_POOL};
use crate::errors::{Class, GcpError, Result};

/// Longest wait for a cluster operation (GKE's own timeouts for cluster creation are 45 min).
pub const CLUSTER_DEADLINE: Duration = Duration::from_secs(45 * 60);
/// Longest wait for a node pool operation.
pub const POOL_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// Where the deployment lives, and the lock serialising its mutations.
#[derive(Debug)]
pub struct Target {
    /// GCP project.
    pub project: String,
    /// Region.
    pub region: String,
    /// Held while a mutation of the cluster runs (it and its operation).
    pub lock: tokio::sync::Mutex<()>,
}

impl Target {
    /// A target.
    pub fn new(project: &str, region: &str) -> Self {
        Self {
            project: project.into(),
            region: region.into(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// `projects/P/locations/R`.
    pub fn location(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.region)
    }

    /// `projects/P/locations/R/clusters/C`.
    pub fn cluster(&self, name: &str) -> String {
        format!("{}/clusters/{name}", self.location())
    }

    /// `…/clusters/C/nodePools/N`.
    pub fn pool(&self, cluster: &str, pool: &str) -> String {
        format!("{}/nodePools/{pool}", self.cluster(cluster))
    }
}

/// True for a status in which GKE is still working on a cluster or a node pool.
pub fn busy(status: &str) -> bool {
    matches!(status, "PROVISIONING" | "RECONCILING" | "STOPPING")
}

/// True when an operation targets `cluster` (or one of its node pools).
fn targets(op: &Operation, cluster: &str) -> bool {
    let marker = format!("/clusters/{cluster}");
    op.target_link.ends_with(&marker) || op.target_link.contains(&format!("{marker}/"))
}

/// Waits until no operation runs on `cluster`.
pub(crate) async fn wait_idle(api: &Api, t: &Target, cluster: &str) -> Result<()> {
    let location = t.location();
    let started = Instant::now();
    loop {
        let ops = api
            .read("ListOperations", &location, || {
                api.client.list_operations().set_parent(&location).send()
            })
            .await?;
        let running: Vec<Operation> = ops
            .operations
            .into_iter()
            .filter(|o| o.status != operation::Status::Done && targets(o, cluster))
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        for op in running {
            tracing::info!(operation = %op.name, cluster, "waiting for a running GKE operation");
            // Its outcome is not ours to report: only that the cluster is free again.
            match api
                .wait(&location, op, "a running operation", CLUSTER_DEADLINE)
                .await
            {
                Ok(()) | Err(GcpError::OperationFailed { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if started.elapsed() > CLUSTER_DEADLINE {
            return Err(GcpError::Timeout {
                what: format!("cluster {cluster} to be free of operations"),
                after: CLUSTER_DEADLINE,
            });
        }
    }
}

/// Sends a mutation of `cluster` once no operation runs on it (one `ListOperations` read: an
/// operation a killed run left behind, or one GKE started itself, would make GKE refuse it);
/// if GKE still says another operation runs (a race), waits for that one and sends it once
/// more. Returns the mutation's operation.
pub(crate) async fn mutate<F, Fut>(
    api: &Api,
    t: &Target,
    cluster: &str,
    send: F,
) -> Result<Operation>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Operation>>,
{
    wait_idle(api, t, cluster).await?;
    match send().await {
        Err(e) if e.class() == Class::Conflict => {
            tracing::info!(error = %e, "cluster busy; waiting for its operation");
            wait_idle(api, t, cluster).await?;
            send().await
        }
        r => r,
    }
}

/// Performs one change.
pub(crate) async fn apply(
    api: &Api,
    t: &Target,
    change: &Change,
    ctx: &ApplyContext,
) -> Result<()> {
    match change.id.kind.as_str() {
        CLUSTER => Box::pin(cluster::apply(api, t, change, ctx)).await,
        NODE_POOL => Box::pin(pool::apply(api, t, change, ctx)).await,
        other => Err(GcpError::NotSupported(format!(
            "the GKE provider does not manage {other} resources"
        ))),
    }
}
