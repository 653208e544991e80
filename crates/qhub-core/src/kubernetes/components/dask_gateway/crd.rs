//! The `DaskCluster` kind: one object per cluster a user starts, written by the gateway's API
//! server and turned into pods by its controller.
//!
//! As dask/dask-gateway 2026.3.0 declares it (`resources/helm/dask-gateway/crds/daskclusters.yaml`):
//! group `gateway.dask.org`, version `v1alpha1` served and stored, namespaced, the `status`
//! subresource (the controller writes status through `daskclusters/status`), and a schema that
//! validates nothing and keeps every field (upstream keeps it so on purpose,
//! dask/dask-gateway#434).

use serde_json::json;

use super::NAME;
use crate::kubernetes::components::Crd;

/// The API group.
pub const GROUP: &str = "gateway.dask.org";
/// The served and stored version (`KubeBackend.crd_version`'s default).
pub const VERSION: &str = "v1alpha1";
/// The kind.
pub const KIND: &str = "DaskCluster";
/// The apiVersion of its objects.
pub const API_VERSION: &str = "gateway.dask.org/v1alpha1";
/// Its plural.
pub const PLURAL: &str = "daskclusters";

/// The CRD.
pub fn dask_cluster() -> Crd {
    Crd {
        app: NAME.into(),
        group: GROUP.into(),
        version: VERSION.into(),
        kind: KIND.into(),
        plural: PLURAL.into(),
        schema: json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        status_subresource: true,
    }
}
