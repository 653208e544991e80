//! The platform's namespace.
//!
//! qhub creates it when it does not exist. One that exists without qhub's ApplySet label (a
//! namespace the owner of an `existing` cluster made for the platform) is used as it is:
//! never taken over, relabelled or deleted by `qhub destroy`
//! ([`crate::kubernetes::generated::USE_EXISTING_ANNOTATION`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace as NamespaceObject;
use serde_json::Value as Json;

use super::{Component, Context, KubeError, manifest};
use crate::kubernetes::generated;

/// The Namespace `config.namespace`, which holds every namespaced object of the platform.
#[derive(Debug, Clone, Copy)]
pub struct Namespace;

impl Component for Namespace {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn objects(&self, ctx: &Context<'_>) -> Result<Vec<Json>, KubeError> {
        let mut metadata = ctx.cluster_meta("qhub", ctx.namespace());
        metadata.annotations = Some(BTreeMap::from([(
            generated::USE_EXISTING_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
        let ns = NamespaceObject {
            metadata,
            ..NamespaceObject::default()
        };
        Ok(vec![manifest(&ns)?])
    }
}
