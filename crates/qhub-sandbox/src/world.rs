//! The sandbox's simulated cloud: its resources, persisted in a file beside the config so that
//! separate `qhub` commands see the same world.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The folder beside the config that holds the sandbox's world.
pub const DIR_NAME: &str = ".qhub-sandbox";

/// One simulated cloud resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimResource {
    /// Kind (`network`, `cluster`, `node_group`, `storage`).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Properties.
    pub spec: Json,
    /// Tags (ownership marks).
    pub tags: BTreeMap<String, String>,
    /// `kind/name` of what it depends on.
    pub depends_on: Vec<(String, String)>,
    /// The simulated cloud id.
    pub cloud_id: String,
    /// State word: `active`, `pending`, `failed`.
    pub state: String,
    /// When a pending resource becomes active (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at_ms: Option<u64>,
    /// What failed, for a failed resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Counters of calls made to the simulated cloud.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Mutating calls (create, update, delete) that reached the cloud.
    pub mutations: u64,
    /// Mutating calls refused because another operation was in progress on the cluster
    /// (with `one_op_per_cluster`).
    #[serde(default)]
    pub rejected: u64,
}

/// The whole simulated cloud.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct World {
    /// Resources by `kind/name`.
    pub resources: BTreeMap<String, SimResource>,
    /// Call counters.
    pub stats: Stats,
    /// Next cloud id number.
    pub next_id: u64,
    /// Kinds whose one injected failure (`fail_once`) has happened.
    #[serde(default)]
    pub failed_once: Vec<String>,
}

/// Errors reading or writing the world file.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// I/O.
    #[error("sandbox world {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a world.
    #[error(
        "sandbox world {path} is corrupt ({source}); delete the {DIR_NAME} folder to start afresh"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
}

impl World {
    /// The world file in `dir` (the config's directory).
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(DIR_NAME).join("world.json")
    }

    /// Loads the world; a missing file is an empty world.
    pub fn load(dir: &Path) -> Result<Self, WorldError> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| WorldError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(WorldError::Io { path, source }),
        }
    }

    /// Saves the world atomically (a crash leaves the old or the new world, never half of one).
    pub fn save(&self, dir: &Path) -> Result<(), WorldError> {
        let path = Self::path(dir);
        let io = |source| WorldError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        qhub_core::fs::replace(&path, &bytes).map_err(|e| match e {
            qhub_core::fs::WriteError::Io { source, .. } => io(source),
            qhub_core::fs::WriteError::Exists(_) => io(std::io::Error::other("exists")),
        })
    }

    /// The key of a resource.
    pub fn key(kind: &str, name: &str) -> String {
        format!("{kind}/{name}")
    }
}
