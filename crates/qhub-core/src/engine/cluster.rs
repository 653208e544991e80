//! The cluster as the engine reaches it: a client, and during an apply the deploy lease.

use tokio_util::sync::CancellationToken;

use crate::kubernetes::apply::Applier;
use crate::plan::{Action, ResourceId};
use crate::provider::{Ownership, Provider, ProviderError};

/// A client for the deployment's cluster, or `None` when the cluster does not exist.
pub(super) async fn connect(
    provider: &dyn Provider,
    ownership: &Ownership,
) -> Result<Option<Applier>, ProviderError> {
    match provider.cluster_access(ownership).await {
        Ok(access) => Ok(Some(Applier::new(access.client().await?))),
        Err(ProviderError::NoCluster(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The cluster during an apply: a client, and the deploy lease held while the apply runs.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// The client.
    pub applier: Applier,
    lease: tokio::sync::Mutex<Option<crate::kubernetes::lease::LeaseGuard>>,
}

/// The failure of a run (simulated as) killed while it released the deploy lease.
pub(super) fn lease_killed(ownership: &Ownership) -> (ResourceId, Action, String) {
    (
        ResourceId::new(
            "Lease.coordination.k8s.io",
            format!(
                "{}/qhub-deploy-{}",
                crate::kubernetes::lease::LEASE_NAMESPACE,
                ownership.prefix()
            ),
        ),
        Action::Update,
        "the process was killed while releasing the deploy lease".to_string(),
    )
}

/// Releases the deploy lease if it is held; true when the process was (simulated as) killed
/// meanwhile.
pub(super) async fn release_lease(cluster: &tokio::sync::OnceCell<Option<Cluster>>) -> bool {
    if let Some(Some(cluster)) = cluster.get()
        && let Some(lease) = cluster.lease.lock().await.take()
    {
        return lease.release_checked().await;
    }
    false
}

/// Connects for an apply: a client, then the deploy lease.
pub(super) async fn connect_locked(
    provider: &dyn Provider,
    ownership: &Ownership,
    timing: crate::kubernetes::lease::LeaseTiming,
    holder: &str,
    lost: &CancellationToken,
) -> Result<Option<Cluster>, ProviderError> {
    let Some(applier) = connect(provider, ownership).await? else {
        return Ok(None);
    };
    let lease = crate::kubernetes::lease::acquire_with(
        applier.client(),
        &ownership.prefix(),
        holder,
        timing,
    )
    .await?;
    // The apply stops starting changes when the lease is lost.
    let signal = lease.lost();
    let lost = lost.clone();
    tokio::spawn(async move {
        signal.cancelled().await;
        lost.cancel();
    });
    Ok(Some(Cluster {
        applier,
        lease: tokio::sync::Mutex::new(Some(lease)),
    }))
}
