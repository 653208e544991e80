//! Platform components: each module builds the typed Kubernetes objects of one component from
//! the config. Today: the platform namespace and a small welcome page that proves the apply path
//! end to end; the real components (ingress, Keycloak, JupyterHub, …) come as their own modules.

pub mod namespace;
pub mod welcome;

use serde::Serialize;
use serde_json::Value as Json;

use super::KubeError;
use crate::config::Config;
use crate::provider::ClusterFacts;

/// Serializes a typed object to a manifest (k8s-openapi writes `apiVersion` and `kind`).
pub fn manifest<T: Serialize>(object: &T) -> Result<Json, KubeError> {
    serde_json::to_value(object)
        .map_err(|e| KubeError::Invalid(format!("cannot serialize a manifest: {e}")))
}

/// Every component's manifests for a config and the cluster's facts.
pub fn manifests(config: &Config, facts: &ClusterFacts) -> Result<Vec<Json>, KubeError> {
    let mut out = namespace::manifests(config)?;
    out.extend(welcome::manifests(config, facts)?);
    Ok(out)
}

/// The standard labels of a component's objects.
pub fn labels(component: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), component.to_string()),
        ("app.kubernetes.io/part-of".to_string(), "qhub".to_string()),
    ])
}
