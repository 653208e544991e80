//! `default_images`, `external_container_reg` and `storage`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The image tag matching the QHub release whose config format we read.
pub const QHUB_IMAGE_TAG: &str = "v0.4.5";

/// `default_images`: the images of the hub, user servers and Dask workers. Each defaults to
/// QHub's image of the release whose format we read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultImages {
    /// JupyterHub image.
    pub jupyterhub: String,
    /// JupyterLab (user server) image.
    pub jupyterlab: String,
    /// Dask worker image.
    pub dask_worker: String,
}

impl Default for DefaultImages {
    fn default() -> Self {
        Self {
            jupyterhub: format!("quansight/qhub-jupyterhub:{QHUB_IMAGE_TAG}"),
            jupyterlab: format!("quansight/qhub-jupyterlab:{QHUB_IMAGE_TAG}"),
            dask_worker: format!("quansight/qhub-dask-worker:{QHUB_IMAGE_TAG}"),
        }
    }
}

/// `external_container_reg`: pull images from a private Amazon ECR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalContainerReg {
    /// Use the registry.
    pub enabled: bool,
    /// AWS access key id with ECR read access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// Its secret key (use `QHUB_SECRET_...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// AWS account id of the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extcr_account: Option<String>,
    /// AWS region of the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extcr_region: Option<String>,
}

/// `storage`: sizes of the persistent volumes (each defaults to `200Gi`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// QHub's conda-store volume size, e.g. `200Gi`: accepted, no effect (conda-store's
    /// environments are on the shared filesystem, sized by `shared_filesystem`).
    pub conda_store: String,
    /// The shared filesystem (home and shared directories), e.g. `200Gi`.
    pub shared_filesystem: String,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            conda_store: "200Gi".into(),
            shared_filesystem: "200Gi".into(),
        }
    }
}
