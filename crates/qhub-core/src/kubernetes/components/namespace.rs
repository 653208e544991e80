//! The platform's namespace.

use k8s_openapi::api::core::v1::Namespace as NamespaceObject;
use serde_json::Value as Json;

use super::{Component, Context, KubeError, manifest};

/// The Namespace `config.namespace`, which holds every namespaced object of the platform.
#[derive(Debug, Clone, Copy)]
pub struct Namespace;

impl Component for Namespace {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn objects(&self, ctx: &Context<'_>) -> Result<Vec<Json>, KubeError> {
        let ns = NamespaceObject {
            metadata: ctx.cluster_meta("qhub", ctx.namespace()),
            ..NamespaceObject::default()
        };
        Ok(vec![manifest(&ns)?])
    }
}
