//! `profiles`: the JupyterLab server sizes users pick from, and the Dask worker sizes.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `profiles` section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profiles {
    /// JupyterLab server profiles, in the order users see them.
    #[serde(default)]
    pub jupyterlab: Vec<JupyterLabProfile>,
    /// Dask worker profiles by name.
    #[serde(default)]
    pub dask_worker: IndexMap<String, DaskWorkerProfile>,
}

/// Who may use a JupyterLab profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Everyone.
    #[default]
    All,
    /// The `users` and `groups` listed in the profile.
    Yaml,
    /// Whoever Keycloak grants the profile's role to.
    Keycloak,
}

/// One entry of `profiles.jupyterlab`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JupyterLabProfile {
    /// The name in the server options list.
    pub display_name: String,
    /// A one-line description.
    #[serde(default)]
    pub description: String,
    /// Pre-select this profile (at most one may).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(extend("default" = false))]
    pub default: bool,
    /// Who may use it.
    #[serde(default, skip_serializing_if = "is_default_access")]
    #[schemars(extend("default" = "all"))]
    pub access: Access,
    /// With `access: yaml`: users allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// With `access: yaml`: groups allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// KubeSpawner settings for servers of this profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubespawner_override: Option<KubeSpawnerOverride>,
}

fn is_default_access(a: &Access) -> bool {
    *a == Access::All
}

/// A CPU amount: a number of cores (`1.5`) or a Kubernetes quantity (`1500m`).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Cpu {
    /// Cores.
    Cores(f64),
    /// A Kubernetes quantity string.
    Quantity(String),
}

/// A memory amount: `8G`, `512Mi`, or a number of bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Memory {
    /// Bytes.
    Bytes(u64),
    /// A Kubernetes quantity string.
    Quantity(String),
}

/// `kubespawner_override`: resources and image of a profile's servers. Extra keys (such as
/// `node_selector` or `extra_resource_limits`) pass through to KubeSpawner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KubeSpawnerOverride {
    /// CPU limit.
    pub cpu_limit: Cpu,
    /// CPU request.
    pub cpu_guarantee: Cpu,
    /// Memory limit.
    pub mem_limit: Memory,
    /// Memory request.
    pub mem_guarantee: Memory,
    /// Image for this profile's servers (default: `default_images.jupyterlab`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Other KubeSpawner settings, kept as written.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One entry of `profiles.dask_worker`. Extra keys pass through to Dask Gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DaskWorkerProfile {
    /// CPU limit of a worker.
    pub worker_cores_limit: Cpu,
    /// CPU request of a worker.
    pub worker_cores: Cpu,
    /// Memory limit of a worker.
    pub worker_memory_limit: Memory,
    /// Memory request of a worker.
    pub worker_memory: Memory,
    /// Threads per worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub worker_threads: Option<u32>,
    /// Worker image (default: `default_images.dask_worker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Other Dask Gateway settings, kept as written.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Serialize for Cpu {
    /// Whole numbers of cores are written as integers (`2`, not `2.0`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cpu::Cores(c) if c.fract() == 0.0 && c.abs() < 1e15 => s.serialize_i64(*c as i64),
            Cpu::Cores(c) => s.serialize_f64(*c),
            Cpu::Quantity(q) => s.serialize_str(q),
        }
    }
}
