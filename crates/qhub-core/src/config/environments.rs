//! `environments`: the conda environments conda-store builds, keyed by file name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One conda environment (`environment-*.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CondaEnvironment {
    /// Environment name.
    pub name: String,
    /// Conda channels, in priority order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// Conda packages and `{pip: [...]}`.
    pub dependencies: Vec<Dependency>,
}

/// A dependency: a conda package spec or a `pip:` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Dependency {
    /// A conda package spec such as `numpy` or `python==3.9.7`.
    Package(String),
    /// `{pip: [...]}` and other installer lists.
    Installer(indexmap::IndexMap<String, Vec<String>>),
}
