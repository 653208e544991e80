//! Platform components and the framework that assembles them.
//!
//! A [`Component`] has a name, says whether the config enables it, names the components it
//! needs ready first, and builds its typed Kubernetes objects from a [`Context`] (the config
//! plus the cluster facts). [`REGISTRY`] lists every component in one place; the Kubernetes
//! layer ([`super::desired`]) turns their objects into plan resources and orders them: every
//! object of a component waits until the workloads of the components it depends on are ready
//! (Keycloak before anything that logs in through it).
//!
//! Placement, resources and security contexts come from [`super::pods`]; images from
//! [`super::versions`].

pub mod autoscaler;
pub mod gpu;
pub mod ingress;
pub mod keycloak;
pub mod namespace;
pub mod rbac;
pub mod storage;
pub mod welcome;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::Value as Json;

use super::KubeError;
use crate::config::Config;
use crate::provider::ClusterFacts;

/// The label naming the component an object belongs to.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// What a component builds its objects from.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The deployment's config.
    pub config: &'a Config,
    /// What the cluster offers (placement labels, storage, load balancer, GPUs).
    pub facts: &'a ClusterFacts,
}

impl Context<'_> {
    /// The platform namespace.
    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }

    /// Metadata of a namespaced object of `component` named `name`, with the standard labels.
    pub fn meta(&self, component: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.config.namespace.clone()),
            labels: Some(labels(component)),
            ..ObjectMeta::default()
        }
    }

    /// The namespace of the pieces that need privileges the platform namespace refuses (the
    /// in-cluster NFS server, the NVIDIA device plugin): `<namespace>-privileged`, labelled for
    /// the `privileged` Pod Security level ([`namespace`]).
    pub fn privileged_namespace(&self) -> String {
        format!("{}-{}", self.config.namespace, namespace::PRIVILEGED_SUFFIX)
    }

    /// Metadata of an object of `component` named `name` in the namespace
    /// [`Context::privileged_namespace`].
    pub fn privileged_meta(&self, component: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(self.privileged_namespace()),
            ..self.meta(component, name)
        }
    }

    /// Metadata of a cluster-scoped object of `component` named `name`.
    pub fn cluster_meta(&self, component: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels(component)),
            ..ObjectMeta::default()
        }
    }

    /// The cluster's name as the infrastructure stage names it (`<project>-<namespace>`).
    pub fn cluster_name(&self) -> String {
        crate::provider::Ownership::of(self.config).prefix()
    }
}

/// One platform component.
pub trait Component: Send + Sync {
    /// Its name (the value of [`COMPONENT_LABEL`] on its objects).
    fn name(&self) -> &'static str;

    /// Whether the config (and the cluster) wants it.
    fn enabled(&self, _ctx: &Context<'_>) -> bool {
        true
    }

    /// The components whose workloads must be ready before this one's objects are applied.
    fn depends_on(&self) -> &'static [&'static str] {
        &[]
    }

    /// Its objects, as manifests.
    fn objects(&self, ctx: &Context<'_>) -> Result<Vec<Json>, KubeError>;

    /// Objects its workloads create in the platform namespace, as (apiVersion, kind, name):
    /// not ours to apply, but ours to delete when the platform is destroyed (a deploy leaves
    /// them alone).
    fn leaves_behind(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        &[]
    }
}

/// What every registered component's workloads leave behind ([`Component::leaves_behind`]),
/// enabled or not: a component the config dropped may have left them.
pub fn left_behind() -> Vec<(&'static str, &'static str, &'static str)> {
    REGISTRY
        .iter()
        .flat_map(|c| c.leaves_behind())
        .copied()
        .collect()
}

/// Every component, in one place.
pub static REGISTRY: &[&dyn Component] = &[
    &namespace::Namespace,
    &ingress::Ingress,
    &storage::SharedStorage,
    &keycloak::KeycloakDatabase,
    &keycloak::Keycloak,
    &autoscaler::ClusterAutoscaler,
    &gpu::DevicePlugin,
    &welcome::Welcome,
];

/// The component named `name`.
pub fn find(name: &str) -> Option<&'static dyn Component> {
    REGISTRY.iter().copied().find(|c| c.name() == name)
}

/// The objects of every enabled component, by component, in registry order. Each object
/// carries [`COMPONENT_LABEL`].
pub fn build(
    config: &Config,
    facts: &ClusterFacts,
) -> Result<Vec<(&'static str, Vec<Json>)>, KubeError> {
    let ctx = Context { config, facts };
    let mut out = Vec::new();
    for component in REGISTRY.iter().filter(|c| c.enabled(&ctx)) {
        for dep in component.depends_on() {
            let needed = find(dep).ok_or_else(|| {
                KubeError::Invalid(format!(
                    "component {} depends on unknown component {dep}",
                    component.name()
                ))
            })?;
            if !needed.enabled(&ctx) {
                return Err(KubeError::Invalid(format!(
                    "component {} needs {dep}, which this config disables",
                    component.name()
                )));
            }
        }
        let mut objects = component.objects(&ctx)?;
        for object in &mut objects {
            if let Some(meta) = object.get_mut("metadata").and_then(Json::as_object_mut) {
                let labels = meta
                    .entry("labels")
                    .or_insert_with(|| serde_json::json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert(
                        COMPONENT_LABEL.into(),
                        Json::String(component.name().to_string()),
                    );
                }
            }
        }
        out.push((component.name(), objects));
    }
    Ok(out)
}

/// Every enabled component's manifests for a config and the cluster's facts.
pub fn manifests(config: &Config, facts: &ClusterFacts) -> Result<Vec<Json>, KubeError> {
    Ok(build(config, facts)?
        .into_iter()
        .flat_map(|(_, objects)| objects)
        .collect())
}

/// Serializes a typed object to a manifest (k8s-openapi writes `apiVersion` and `kind`).
pub fn manifest<T: Serialize>(object: &T) -> Result<Json, KubeError> {
    serde_json::to_value(object)
        .map_err(|e| KubeError::Invalid(format!("cannot serialize a manifest: {e}")))
}

/// The standard labels of a component's objects.
pub fn labels(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), component.to_string()),
        ("app.kubernetes.io/part-of".to_string(), "qhub".to_string()),
    ])
}

/// The selector labels of a component's pods.
pub fn selector(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/name".to_string(), component.to_string())])
}

/// The selector of a component's pods.
pub fn pod_selector(
    component: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        match_labels: Some(selector(component)),
        ..Default::default()
    }
}

/// The pod template of a component's pods: the standard labels and `pod`.
pub fn pod_template(
    component: &str,
    pod: k8s_openapi::api::core::v1::PodSpec,
) -> k8s_openapi::api::core::v1::PodTemplateSpec {
    k8s_openapi::api::core::v1::PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(component)),
            ..ObjectMeta::default()
        }),
        spec: Some(pod),
    }
}

/// The one-replica Deployment named after `component`, running `pod`; `recreate` for pods
/// holding a ReadWriteOnce volume (the old pod lets go of it first).
pub fn deployment(
    ctx: &Context<'_>,
    component: &str,
    pod: k8s_openapi::api::core::v1::PodSpec,
    recreate: bool,
) -> k8s_openapi::api::apps::v1::Deployment {
    use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
    Deployment {
        metadata: ctx.meta(component, component),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            // Always explicit: a strategy type left out would stay whatever was applied last
            // (another write may own it), and the switch must work both ways; the
            // rollingUpdate block the server defaults is cleared by the applier when the type
            // becomes Recreate (`apply::DEFAULTED_UNDER`).
            strategy: Some(DeploymentStrategy {
                type_: Some(
                    if recreate {
                        "Recreate"
                    } else {
                        "RollingUpdate"
                    }
                    .into(),
                ),
                ..DeploymentStrategy::default()
            }),
            selector: pod_selector(component),
            template: pod_template(component, pod),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The default config `qhub init` writes for `provider` (tests and snapshots).
#[cfg(test)]
pub(crate) fn test_config(provider: crate::config::ProviderKind) -> Config {
    let mut opts = crate::config::init::InitOptions::new(
        provider,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    );
    if provider == crate::config::ProviderKind::Gcp {
        opts.gcp_project = Some("demo-project".into());
    }
    crate::config::init::render(&opts).expect("the default config renders")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dependency_names_a_registered_component_and_there_is_no_cycle() {
        let names: Vec<&str> = REGISTRY.iter().map(|c| c.name()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate component names");
        // Registry order is a valid order: a component only depends on earlier ones.
        for (i, c) in REGISTRY.iter().enumerate() {
            for dep in c.depends_on() {
                let j = names.iter().position(|n| n == dep);
                assert!(
                    j.is_some_and(|j| j < i),
                    "{} depends on {dep}, which is not registered before it",
                    c.name()
                );
            }
        }
    }

    #[test]
    fn every_object_is_labelled_with_its_component() {
        let config = test_config(crate::config::ProviderKind::Aws);
        let facts = ClusterFacts::from_config(&config);
        for (name, objects) in build(&config, &facts).unwrap() {
            assert!(!objects.is_empty(), "{name} has no objects");
            for o in objects {
                assert_eq!(
                    o.pointer("/metadata/labels/app.kubernetes.io~1component")
                        .and_then(Json::as_str),
                    Some(name),
                    "{o}"
                );
            }
        }
    }
}
