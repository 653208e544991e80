//! The platform's namespace.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value as Json;

use super::{KubeError, manifest};
use crate::config::Config;

/// The Namespace `config.namespace`.
pub fn manifests(config: &Config) -> Result<Vec<Json>, KubeError> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(config.namespace.clone()),
            labels: Some(super::labels("qhub")),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Ok(vec![manifest(&ns)?])
}
