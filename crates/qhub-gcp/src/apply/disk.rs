//! The Persistent Disks the cluster's CSI driver made for PersistentVolumeClaims: observed by
//! their labels ([`crate::observe::claim_disks`]) and deleted after the cluster.
//!
//! GKE does not promise to delete them with the cluster ("`gcloud container clusters delete`
//! … Persistent disks … are not deleted", Google Cloud SDK reference; GKE's "Deleting a
//! cluster" page lists persistent disks among what may remain), and a deleted cluster's
//! `Delete` reclaim policy can no longer run. A destroy plans each such disk as a delete made
//! with the cluster ([`qhub_core::plan::Observed::made_by_cluster`]): it runs once the cluster
//! is gone (its nodes have released the disk), a disk still attached is busy and retried, one
//! gone already is done. A deploy leaves them alone: they hold the platform's data.

use qhub_core::plan::{Action, Change};
use qhub_core::provider::ProviderError;

use crate::compute::ComputeApi;

/// A disk's resource name: `<zone>/<disk>`.
pub fn disk_name(zone: &str, name: &str) -> String {
    format!("{zone}/{name}")
}

/// Performs a change of a disk: only deletes (qhub never makes one).
pub(crate) async fn apply(compute: &ComputeApi, change: &Change) -> Result<(), ProviderError> {
    if change.action != Action::Delete {
        return Err(ProviderError::NotSupported(format!(
            "{}: the cluster makes disks, qhub only deletes them",
            change.id
        )));
    }
    let Some((zone, name)) = change.id.name.split_once('/') else {
        return Err(ProviderError::Fatal(format!(
            "{}: a disk is named <zone>/<disk>",
            change.id
        )));
    };
    tracing::info!(
        disk = name,
        zone,
        "deleting a Persistent Disk a PersistentVolumeClaim left"
    );
    compute.delete_disk(zone, name).await
}
