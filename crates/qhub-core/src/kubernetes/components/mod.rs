//! Platform components and the framework that assembles them.
//!
//! A [`Component`] has a name, says whether the config enables it, names the components it
//! needs ready first, and builds everything it owns from a [`Context`] (the config plus the
//! cluster facts) as one [`Built`] value: its objects, routes, login clients, images, config
//! files, CRDs and expected ready time. [`REGISTRY`] lists every component in one place, and
//! everything else is derived from it: the objects ([`assemble`]), Keycloak's clients
//! ([`oidc_clients`]), the URL list ([`listed_routes`]), the images of a config ([`images`])
//! and the table of every image ([`tables::pinned_images`]).
//! Adding a component is its file plus one line in [`REGISTRY`] (docs/writing-a-component.md).
//! The Kubernetes layer ([`super::desired`]) turns the objects into plan resources and orders them: every
//! object of a component waits until the workloads of the components it depends on are ready
//! (Keycloak before anything that logs in through it).
//!
//! Placement, resources and security contexts come from [`super::pods`]; images from
//! [`super::versions`].

pub mod argo_workflows;
pub mod autoscaler;
pub mod built;
pub mod conda_store;
pub mod dask_gateway;
#[cfg(any(test, feature = "example-component"))]
pub mod example;
pub mod extensions;
pub mod forward_auth;
pub mod gpu;
pub mod ingress;
pub mod jupyterhub;
pub mod jupyterhub_ssh;
pub mod kbatch;
pub mod keycloak;
pub mod monitoring;
pub mod namespace;
pub mod postgres;
pub mod rbac;
pub mod storage;
pub mod tables;
pub mod web_service;
pub mod welcome;

use std::collections::BTreeMap;
use std::time::Duration;

pub use built::{
    Built, CLIENT_SECRET_KEY, CONFIG_HASH_ANNOTATION, ConfigFile, Crd, Listing, Middleware, Route,
    client_secret_name, generated_secret,
};
pub use web_service::WebService;

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

    /// Everything it owns: its objects, routes, login clients, images, config files, CRDs
    /// and expected ready time.
    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError>;

    /// Objects its workloads create in the platform namespace, as (apiVersion, kind, name):
    /// not ours to apply, but ours to delete when the platform is destroyed (a deploy leaves
    /// them alone).
    fn leaves_behind(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        &[]
    }

    /// Kinds of the objects its controllers create at run time in the platform namespace on
    /// users' behalf (Dask Gateway's DaskClusters), as (apiVersion, kind): every object of
    /// these kinds in the namespace is the component's. A destroy deletes them, and so does a
    /// deploy that no longer builds the component: without its controller nothing would ever
    /// stop them (or the pods they own).
    fn creates_at_run_time(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

/// The kinds registered components create at run time ([`Component::creates_at_run_time`]),
/// as (apiVersion, kind, whether the config builds the component).
pub fn run_time_kinds(
    config: &Config,
    facts: &ClusterFacts,
) -> Vec<(&'static str, &'static str, bool)> {
    let ctx = Context { config, facts };
    REGISTRY
        .iter()
        .flat_map(|c| {
            let enabled = c.enabled(&ctx);
            c.creates_at_run_time()
                .iter()
                .map(move |(api_version, kind)| (*api_version, *kind, enabled))
        })
        .collect()
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
    &jupyterhub::JupyterHub,
    &jupyterhub_ssh::JupyterHubSsh,
    &conda_store::CondaStore,
    &dask_gateway::DaskGateway,
    &monitoring::Monitoring,
    &argo_workflows::ArgoWorkflows,
    &kbatch::Kbatch,
    &forward_auth::ForwardAuth,
    &extensions::Extensions,
    &welcome::Welcome,
];

/// Components compiled only into the tests (feature `example-component`, which this crate's
/// tests turn on): the example that exercises every part of [`Built`]; a config turns it on.
#[cfg(any(test, feature = "example-component"))]
static TEST_REGISTRY: &[&dyn Component] = &[&example::Example];
#[cfg(not(any(test, feature = "example-component")))]
static TEST_REGISTRY: &[&dyn Component] = &[];

/// Every registered component, in order.
pub fn registry() -> impl Iterator<Item = &'static dyn Component> {
    REGISTRY.iter().chain(TEST_REGISTRY).copied()
}

/// The component named `name`.
pub fn find(name: &str) -> Option<&'static dyn Component> {
    registry().find(|c| c.name() == name)
}

/// One enabled component, assembled: its [`Built`] value whose `manifests` now hold every
/// object it owns, in apply order (CRDs, config files, its login clients' secrets
/// ([`client_secret_name`]), its own objects, routes), each carrying [`COMPONENT_LABEL`].
#[derive(Debug, Clone)]
pub struct Assembled {
    /// The component's name.
    pub name: &'static str,
    /// What it owns.
    pub built: Built,
}

/// Every enabled component of `config`, assembled, in registry order.
pub fn assemble(config: &Config, facts: &ClusterFacts) -> Result<Vec<Assembled>, KubeError> {
    let ctx = Context { config, facts };
    let mut out = Vec::new();
    for component in registry().filter(|c| c.enabled(&ctx)) {
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
        let name = component.name();
        let mut built = component.build(&ctx)?;
        built::stamp_config_hashes(&mut built.manifests, &built.config_files);
        let mut objects = Vec::new();
        for crd in &built.crds {
            objects.push(crd.manifest(&ctx)?);
        }
        for file in &built.config_files {
            objects.push(file.manifest(&ctx, name)?);
        }
        for client in &built.clients {
            objects.push(built::client_secret_manifest(
                &ctx,
                name,
                &client.client_id,
            )?);
        }
        objects.append(&mut built.manifests);
        for route in &built.routes {
            objects.extend(ingress::route_objects(&ctx, name, route)?);
        }
        for object in &mut objects {
            if let Some(meta) = object.get_mut("metadata").and_then(Json::as_object_mut) {
                let labels = meta
                    .entry("labels")
                    .or_insert_with(|| serde_json::json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert(COMPONENT_LABEL.into(), Json::String(name.to_string()));
                }
            }
        }
        built.manifests = objects;
        out.push(Assembled { name, built });
    }
    Ok(out)
}

/// The objects of every enabled component, by component, in registry order. Each object
/// carries [`COMPONENT_LABEL`].
pub fn build(
    config: &Config,
    facts: &ClusterFacts,
) -> Result<Vec<(&'static str, Vec<Json>)>, KubeError> {
    Ok(assemble(config, facts)?
        .into_iter()
        .map(|a| (a.name, a.built.manifests))
        .collect())
}

/// The OIDC clients of the enabled components: what Keycloak gets, and nothing for a service
/// that is not deployed. Clients do not depend on cluster facts, so the config's own facts
/// ([`ClusterFacts::from_config`]) serve.
pub fn oidc_clients(config: &Config) -> Result<Vec<crate::keycloak::PlatformClient>, KubeError> {
    let facts = ClusterFacts::from_config(config);
    Ok(assemble(config, &facts)?
        .into_iter()
        .flat_map(|a| a.built.clients)
        .collect())
}

/// The routes of the enabled components listed among the platform's URLs, as (component,
/// listing), by path (the root first), then their TCP listings ([`Built::listed`]).
pub fn listed_routes(config: &Config) -> Result<Vec<(&'static str, Listing)>, KubeError> {
    let facts = ClusterFacts::from_config(config);
    let mut out: Vec<(&'static str, Listing)> = assemble(config, &facts)?
        .into_iter()
        .flat_map(|a| {
            let name = a.name;
            a.built
                .routes
                .into_iter()
                .filter_map(|r| r.listed)
                .chain(a.built.listed)
                .map(move |l| (name, l))
        })
        .collect();
    // HTTP listings by path (the root first), then TCP ones.
    out.sort_by(|a, b| (!a.1.health.is_http(), &a.1.path).cmp(&(!b.1.health.is_http(), &b.1.path)));
    Ok(out)
}

/// The images of the enabled components for a config on a cluster with `facts`.
pub fn images(
    config: &Config,
    facts: &ClusterFacts,
) -> Result<Vec<crate::kubernetes::versions::Image>, KubeError> {
    let mut out: Vec<crate::kubernetes::versions::Image> = Vec::new();
    for a in assemble(config, facts)? {
        for i in a.built.images {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    Ok(out)
}

/// How long each enabled component's workloads usually take to become ready, where the
/// component says (the others take their kind's usual time).
pub fn ready_times(
    config: &Config,
    facts: &ClusterFacts,
) -> Result<BTreeMap<&'static str, Duration>, KubeError> {
    Ok(assemble(config, facts)?
        .into_iter()
        .filter_map(|a| a.built.ready_within.map(|d| (a.name, d)))
        .collect())
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

    /// What is wrong with the images of `assembled`: an image not pinned (no tag, `latest`, a
    /// tag in the repository, a malformed digest), or a container running an image its
    /// component does not declare.
    fn image_problems(assembled: &[Assembled]) -> Vec<String> {
        let mut out = Vec::new();
        for a in assembled {
            for image in &a.built.images {
                let digest_ok = image.digest.is_none_or(|d| {
                    d.strip_prefix("sha256:")
                        .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
                });
                if image.tag.is_empty()
                    || image.tag == "latest"
                    || image.repository.contains(':')
                    || !digest_ok
                {
                    out.push(format!("{}: image {image:?} is not pinned", a.name));
                }
            }
            let declared: Vec<String> = a
                .built
                .images
                .iter()
                .map(|i| i.reference())
                .chain(a.built.config_images.iter().cloned())
                .collect();
            for m in &a.built.manifests {
                let Some(pod) = m.pointer("/spec/template/spec") else {
                    continue;
                };
                for field in ["containers", "initContainers"] {
                    for c in pod[field].as_array().into_iter().flatten() {
                        let image = c["image"].as_str().unwrap_or_default();
                        if !declared.iter().any(|d| d == image) {
                            out.push(format!(
                                "{}: runs {image}, which it does not declare",
                                a.name
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    /// Routes of `assembled` that collide: the same path prefix, the same object name, or a
    /// prefix that does not outrank a shorter prefix of it (Traefik would choose between two
    /// matching rules of equal priority by neither path).
    fn route_problems(assembled: &[Assembled]) -> Vec<String> {
        let mut out = Vec::new();
        let all: Vec<(&str, &Route)> = assembled
            .iter()
            .flat_map(|a| a.built.routes.iter().map(move |r| (a.name, r)))
            .collect();
        for (a, short) in &all {
            for (b, long) in &all {
                let prefix = short.path.trim_end_matches('/');
                let under = long.path.len() > short.path.len()
                    && long.path.starts_with(prefix)
                    && long.path[prefix.len()..].starts_with('/');
                if under && long.priority <= short.priority {
                    out.push(format!(
                        "{b}'s {} (priority {}) does not outrank {a}'s {} (priority {})",
                        long.path, long.priority, short.path, short.priority
                    ));
                }
            }
        }
        let mut paths: BTreeMap<String, &str> = BTreeMap::new();
        let mut names: BTreeMap<String, &str> = BTreeMap::new();
        for a in assembled {
            for r in &a.built.routes {
                if let Some(other) = paths.insert(r.path.clone(), a.name) {
                    out.push(format!("{} and {other} both route {}", a.name, r.path));
                }
                if let Some(other) = names.insert(r.name.clone(), a.name) {
                    out.push(format!(
                        "{} and {other} both name a route {}",
                        a.name, r.name
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn every_image_is_pinned_and_declared_and_no_two_routes_collide() {
        let configs = tables::everything_enabled();
        assert!(configs.len() >= 6, "{} configs", configs.len());
        for (config, facts) in configs {
            let assembled = assemble(&config, &facts).unwrap();
            assert!(assembled.iter().any(|a| a.name == example::NAME));
            assert_eq!(image_problems(&assembled), Vec::<String>::new());
            assert_eq!(route_problems(&assembled), Vec::<String>::new());
        }
    }

    #[test]
    fn the_registry_checks_catch_a_floating_image_and_a_colliding_route() {
        let config = test_config(crate::config::ProviderKind::Aws);
        let facts = ClusterFacts::from_config(&config);
        let mut assembled = assemble(&config, &facts).unwrap();
        let welcome = assembled
            .iter_mut()
            .find(|a| a.name == welcome::NAME)
            .unwrap();
        welcome.built.images[0].tag = "latest";
        welcome
            .built
            .routes
            .push(Route::new(keycloak::PATH, "other", 80));
        // A sub-path of Keycloak's prefix at Keycloak's priority: a tie Traefik breaks by
        // neither path.
        welcome.built.routes.push(
            Route::new(format!("{}/admin", keycloak::PATH), "other", 80)
                .priority(super::built::DEFAULT_PRIORITY),
        );
        let images = image_problems(&assembled);
        assert!(
            images.iter().any(|p| p.contains("not pinned")),
            "{images:?}"
        );
        assert!(
            images.iter().any(|p| p.contains("does not declare")),
            "{images:?}"
        );
        let routes = route_problems(&assembled);
        assert!(
            routes.iter().any(|p| p.contains("both route /auth")),
            "{routes:?}"
        );
        assert!(
            routes
                .iter()
                .any(|p| p.contains("/auth/admin (priority 10) does not outrank")),
            "{routes:?}"
        );
    }

    #[test]
    fn only_built_components_get_login_clients_and_urls() {
        let config = test_config(crate::config::ProviderKind::Aws);
        let clients: Vec<String> = oidc_clients(&config)
            .unwrap()
            .into_iter()
            .map(|c| c.client_id)
            .collect();
        assert_eq!(
            clients,
            [
                jupyterhub::config::CLIENT_ID,
                conda_store::CLIENT_ID,
                monitoring::grafana::CLIENT_ID
            ]
        );
        let urls: Vec<String> = crate::kubernetes::endpoints::urls(&config)
            .into_iter()
            .map(|u| u.url)
            .collect();
        assert_eq!(
            urls,
            [
                "https://demo.example.com/",
                "https://demo.example.com/auth/",
                "https://demo.example.com/conda-store/",
                "https://demo.example.com/gateway/",
                "https://demo.example.com/monitoring/",
                "https://demo.example.com/services/kbatch/",
                "https://demo.example.com/welcome/",
                "ssh://demo.example.com:8022",
            ]
        );
    }

    #[test]
    fn keycloak_says_how_long_it_takes_to_become_ready() {
        let config = test_config(crate::config::ProviderKind::Aws);
        let facts = ClusterFacts::from_config(&config);
        let times = ready_times(&config, &facts).unwrap();
        assert_eq!(
            times.get(keycloak::NAME),
            Some(&Duration::from_secs(120)),
            "{times:?}"
        );
    }

    #[test]
    fn every_dependency_names_a_registered_component_and_there_is_no_cycle() {
        let names: Vec<&str> = registry().map(|c| c.name()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate component names");
        // Registry order is a valid order: a component only depends on earlier ones.
        for (i, c) in registry().enumerate() {
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
