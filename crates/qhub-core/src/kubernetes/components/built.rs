//! What a component's build returns: everything it owns, in one value ([`Built`]).
//!
//! A component says what it is (its manifests, routes, login clients, images, config files,
//! CRDs, how long it takes to become ready); the framework ([`super::assemble`]) turns the
//! declarations into objects (an IngressRoute and its Middlewares per route, a ConfigMap per
//! config file with its content hash in the pod templates that read it, a generated Secret per
//! login client holding its client secret, a CustomResourceDefinition per CRD), and the rest of qhub reads the same value: Keycloak's
//! clients ([`super::oidc_clients`]), the URL list ([`super::listed_routes`]), the image table
//! ([`super::images`]) and the ready times ([`super::assemble`]'s `ready_within`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion, CustomResourceSubresourceStatus, CustomResourceSubresources,
    CustomResourceValidation, JSONSchemaProps,
};
use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};

use super::{Context, KubeError, manifest};
use crate::keycloak::PlatformClient;
use crate::kubernetes::health::Check;
use crate::kubernetes::recipes::{self, Recipe};
use crate::kubernetes::versions::Image;

/// The pod-template annotation holding the digest of the config files a pod reads: an edit of
/// a file changes it, so exactly the workloads that read that file roll (the pattern Helm's
/// docs call "automatically roll deployments", `checksum/config`).
pub const CONFIG_HASH_ANNOTATION: &str = "qhub.dev/config-sha256";

/// The Secret holding the OIDC client secret of the login client `client_id`, under the key
/// [`CLIENT_SECRET_KEY`]: generated once in the cluster for each declared client, read by the
/// component's pods (through an environment variable from the Secret) and by Keycloak's
/// reconciler, which sets it on the client.
/// A client id may hold what a Kubernetes name may not (`conda_store`): it is lowercased and
/// every character other than a letter, digit, `-` or `.` becomes `-`.
pub fn client_secret_name(client_id: &str) -> String {
    let name: String = client_id
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '.') => c,
            _ => '-',
        })
        .collect();
    format!("{name}-oidc-client")
}

/// The key of the client secret in [`client_secret_name`]'s Secret.
pub const CLIENT_SECRET_KEY: &str = "client-secret";

/// The generated Secret [`client_secret_name`] of login client `client_id`, owned by
/// `component`: no data in the manifest, a [`Recipe::Passwords`] for [`CLIENT_SECRET_KEY`]
/// instead, which the applier fills once in the cluster and keeps
/// ([`crate::kubernetes::recipes`]). Deleted by hand, it is generated again by the next deploy,
/// and Keycloak's reconciler then sets the new value on the client.
pub(crate) fn client_secret_manifest(
    ctx: &Context<'_>,
    component: &str,
    client_id: &str,
) -> Result<Json, KubeError> {
    generated_secret(
        ctx,
        component,
        &client_secret_name(client_id),
        &[CLIENT_SECRET_KEY],
    )
}

/// A Secret `name` of `component` holding a random password under each of `keys`: no data in
/// the manifest, a [`Recipe::Passwords`] instead, which the applier fills once in the cluster
/// and keeps ([`crate::kubernetes::recipes`]).
pub fn generated_secret(
    ctx: &Context<'_>,
    component: &str,
    name: &str,
    keys: &[&str],
) -> Result<Json, KubeError> {
    let recipe = Recipe::Passwords {
        keys: keys.iter().map(|k| (*k).to_string()).collect(),
        fixed: BTreeMap::new(),
    };
    let mut meta = ctx.meta(component, name);
    meta.annotations = Some(BTreeMap::from([(
        recipes::ANNOTATION.to_string(),
        recipe.to_string(),
    )]));
    manifest(&Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        ..Secret::default()
    })
}

/// Everything a component owns. Build it with [`Built::new`] and the adding methods.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Built {
    /// Its Kubernetes objects, as manifests (without the ones the framework makes from the
    /// declarations below).
    pub manifests: Vec<Json>,
    /// Its HTTP routes through the ingress.
    pub routes: Vec<Route>,
    /// Its OIDC clients in Keycloak; the framework adds, for each, the generated Secret
    /// holding its client secret ([`client_secret_name`]), owned by the component.
    pub clients: Vec<PlatformClient>,
    /// Every image its pods run, pinned ([`crate::kubernetes::versions`]).
    pub images: Vec<Image>,
    /// Images its pods run that the config names (an extension's `image`): the user's choice,
    /// not pinned by qhub and not in the image table.
    pub config_images: Vec<String>,
    /// How long its workloads usually take to become ready (none: the kind's usual time,
    /// [`crate::kubernetes::readiness::EXPECTED`]).
    pub ready_within: Option<Duration>,
    /// Its config files, each a ConfigMap.
    pub config_files: Vec<ConfigFile>,
    /// The CustomResourceDefinitions it brings.
    pub crds: Vec<Crd>,
    /// Its listings without an HTTP route of its own (a TCP entrypoint of the load balancer,
    /// such as jupyterhub-ssh's [`crate::kubernetes::health::SSH_PORT`], or a path another
    /// component's route serves, such as kbatch's behind the hub's proxy); an HTTP route's is
    /// [`Route::listed`].
    pub listed: Vec<Listing>,
}

impl Built {
    /// A component owning `manifests` and nothing else yet.
    pub fn new(manifests: Vec<Json>) -> Self {
        Self {
            manifests,
            ..Self::default()
        }
    }

    /// Adds a route.
    #[must_use]
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Adds an OIDC client.
    #[must_use]
    pub fn client(mut self, client: PlatformClient) -> Self {
        self.clients.push(client);
        self
    }

    /// Adds an image its pods run.
    #[must_use]
    pub fn image(mut self, image: Image) -> Self {
        self.images.push(image);
        self
    }

    /// Adds images its pods run (none, for an optional workload that is off).
    #[must_use]
    pub fn images(mut self, images: impl IntoIterator<Item = Image>) -> Self {
        self.images.extend(images);
        self
    }

    /// Adds an image its pods run that the config names ([`Built::config_images`]).
    #[must_use]
    pub fn config_image(mut self, reference: impl Into<String>) -> Self {
        self.config_images.push(reference.into());
        self
    }

    /// Sets how long its workloads usually take to become ready.
    #[must_use]
    pub fn ready_within(mut self, expected: Duration) -> Self {
        self.ready_within = Some(expected);
        self
    }

    /// Adds a config file.
    #[must_use]
    pub fn config_file(mut self, file: ConfigFile) -> Self {
        self.config_files.push(file);
        self
    }

    /// Adds a CRD.
    #[must_use]
    pub fn crd(mut self, crd: Crd) -> Self {
        self.crds.push(crd);
        self
    }

    /// Lists a URL that no route of its own serves (a TCP entrypoint, [`Listing::tcp`], or a
    /// path behind another component's route, [`Listing::http`]) among the platform's URLs,
    /// with its health check.
    #[must_use]
    pub fn listed(mut self, listing: Listing) -> Self {
        self.listed.push(listing);
        self
    }
}

/// A middleware on a route (Traefik's `Middleware` kind).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Middleware {
    /// Ask `address` before forwarding each request; a 2xx lets it through, anything else is
    /// the answer (Traefik's `forwardAuth`); `response_headers` are copied from its answer
    /// to the request (the user it authenticated).
    ForwardAuth {
        /// The authentication service's URL.
        address: String,
        /// Headers of its answer copied to the forwarded request.
        response_headers: Vec<String>,
    },
    /// A middleware another object defines, by name (in the platform namespace).
    Named(String),
}

/// Where a route is listed among the platform's URLs ([`crate::kubernetes::endpoints`]), and
/// how its health is checked through the front door ([`crate::kubernetes::health`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The path shown (`/auth/`; empty for a TCP listing, shown as `scheme://domain:port`).
    pub path: String,
    /// What a healthy service answers, and where (`GET /auth/realms/qhub` answering 200 with
    /// JSON `realm: qhub`).
    pub health: Check,
}

impl Listing {
    /// An HTTP listing of `path` that another component's route serves (kbatch, behind the
    /// hub's proxy at `/services/kbatch/`), with its check.
    pub fn http(path: impl Into<String>, check: Check) -> Self {
        Self {
            path: path.into(),
            health: check,
        }
    }

    /// A TCP entrypoint's listing: shown and checked as `check` says ([`Check::Banner`]).
    pub fn tcp(check: Check) -> Self {
        Self {
            path: String::new(),
            health: check,
        }
    }

    /// Its URL on `domain`, `http_scheme` (`https` or `http`) for an HTTP listing.
    pub fn url(&self, http_scheme: &str, domain: &str) -> String {
        match &self.health {
            Check::Banner { scheme, port, .. } => format!("{scheme}://{domain}:{port}"),
            Check::Http { .. } => format!("{http_scheme}://{domain}{}", self.path),
        }
    }
}

/// The priority [`Route::new`] gives a route of a prefix other than `/`.
pub const DEFAULT_PRIORITY: i64 = 10;
/// The priority [`Route::new`] gives the catch-all `/` (JupyterHub's, as in QHub): below every
/// other route, so that a request reaches it only when no other prefix matches.
pub const CATCH_ALL_PRIORITY: i64 = 1;

/// An HTTP route from a path of the domain to a Service of the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The IngressRoute's name (the Service's unless set).
    pub name: String,
    /// The path prefix (`/auth`; `/` for everything else).
    pub path: String,
    /// The Service it sends to.
    pub service: String,
    /// The Service's port.
    pub port: i32,
    /// Traefik's priority: among routes whose rules both match a request, the higher wins
    /// (Traefik's own default is the rule's length; an explicit one is stable across
    /// hosts). [`Route::new`] gives the catch-all `/` [`CATCH_ALL_PRIORITY`] and every other
    /// prefix [`DEFAULT_PRIORITY`], so that no prefix ties with `/`.
    pub priority: i64,
    /// Whether the prefix is cut before forwarding (a service that serves at `/`).
    pub strip_prefix: bool,
    /// Middlewares, in order.
    pub middlewares: Vec<Middleware>,
    /// Whether and how it is listed among the platform's URLs.
    pub listed: Option<Listing>,
}

impl Route {
    /// A route of `path` to `service:port`, named after the service, not listed, at
    /// [`CATCH_ALL_PRIORITY`] when `path` is `/` and [`DEFAULT_PRIORITY`] otherwise.
    pub fn new(path: impl Into<String>, service: impl Into<String>, port: i32) -> Self {
        let service = service.into();
        let path = path.into();
        let priority = if path == "/" {
            CATCH_ALL_PRIORITY
        } else {
            DEFAULT_PRIORITY
        };
        Self {
            name: service.clone(),
            path,
            service,
            port,
            priority,
            strip_prefix: false,
            middlewares: Vec::new(),
            listed: None,
        }
    }

    /// Sets the priority.
    #[must_use]
    pub fn priority(mut self, priority: i64) -> Self {
        self.priority = priority;
        self
    }

    /// Names the IngressRoute (the Service's name otherwise).
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Cuts the prefix before forwarding.
    #[must_use]
    pub fn strip_prefix(mut self) -> Self {
        self.strip_prefix = true;
        self
    }

    /// Adds a middleware.
    #[must_use]
    pub fn middleware(mut self, middleware: Middleware) -> Self {
        self.middlewares.push(middleware);
        self
    }

    /// Lists it among the platform's URLs at `path`, healthy when `health` passes (a path
    /// alone: `GET path` answers 200, [`Check::http`]).
    #[must_use]
    pub fn listed(mut self, path: impl Into<String>, health: impl Into<Check>) -> Self {
        self.listed = Some(Listing {
            path: path.into(),
            health: health.into(),
        });
        self
    }

    /// The name of its `n`th middleware object (`<route>-<n>`), or of its strip-prefix one.
    pub(crate) fn middleware_name(&self, what: &str) -> String {
        format!("{}-{what}", self.name)
    }
}

/// A config file: a ConfigMap whose content digest lands in the pod template of every workload
/// of the component that mounts or reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// The ConfigMap's name.
    pub name: String,
    /// File name → content.
    pub files: BTreeMap<String, String>,
}

impl ConfigFile {
    /// A ConfigMap `name` holding one file.
    pub fn new(
        name: impl Into<String>,
        file: impl Into<String>,
        content: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            files: BTreeMap::from([(file.into(), content.into())]),
        }
    }

    /// `sha256:<hex>` of its name and files.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        for (k, v) in &self.files {
            h.update([0]);
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    pub(crate) fn manifest(&self, ctx: &Context<'_>, component: &str) -> Result<Json, KubeError> {
        manifest(&ConfigMap {
            metadata: ctx.meta(component, &self.name),
            data: Some(self.files.clone()),
            ..ConfigMap::default()
        })
    }
}

/// A namespaced CustomResourceDefinition with one version, served and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Crd {
    /// The app label of the CRD object (the workload that serves its kind).
    pub app: String,
    /// API group.
    pub group: String,
    /// The version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Its `openAPIV3Schema`.
    pub schema: Json,
    /// Whether it serves the `status` subresource (a controller writing the status of its
    /// objects through `<plural>/status`).
    pub status_subresource: bool,
}

impl Crd {
    /// The CRD object: `<plural>.<group>`, list kind `<kind>List`, singular the lower-case
    /// kind, no short names or categories.
    pub fn manifest(&self, ctx: &Context<'_>) -> Result<Json, KubeError> {
        let props: JSONSchemaProps = serde_json::from_value(self.schema.clone())
            .map_err(|e| KubeError::Invalid(format!("the schema of {}: {e}", self.kind)))?;
        manifest(&CustomResourceDefinition {
            metadata: ctx.cluster_meta(&self.app, &format!("{}.{}", self.plural, self.group)),
            spec: CustomResourceDefinitionSpec {
                group: self.group.clone(),
                names: CustomResourceDefinitionNames {
                    kind: self.kind.clone(),
                    list_kind: Some(format!("{}List", self.kind)),
                    plural: self.plural.clone(),
                    singular: Some(self.kind.to_lowercase()),
                    ..CustomResourceDefinitionNames::default()
                },
                scope: "Namespaced".into(),
                versions: vec![CustomResourceDefinitionVersion {
                    name: self.version.clone(),
                    served: true,
                    storage: true,
                    schema: Some(CustomResourceValidation {
                        open_api_v3_schema: Some(props),
                    }),
                    subresources: self.status_subresource.then(|| CustomResourceSubresources {
                        status: Some(CustomResourceSubresourceStatus(json!({}))),
                        ..CustomResourceSubresources::default()
                    }),
                    ..CustomResourceDefinitionVersion::default()
                }],
                ..CustomResourceDefinitionSpec::default()
            },
            ..CustomResourceDefinition::default()
        })
    }
}

/// The names of the ConfigMaps a pod spec reads (volumes, projected volumes, `envFrom`,
/// `env[].valueFrom`).
fn config_maps_read(pod: &Json) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: Option<&Json>| {
        if let Some(n) = v.and_then(Json::as_str) {
            out.push(n.to_string());
        }
    };
    for v in pod["volumes"].as_array().into_iter().flatten() {
        push(v.pointer("/configMap/name"));
        for s in v
            .pointer("/projected/sources")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            push(s.pointer("/configMap/name"));
        }
    }
    for field in ["containers", "initContainers"] {
        for c in pod[field].as_array().into_iter().flatten() {
            for e in c["envFrom"].as_array().into_iter().flatten() {
                push(e.pointer("/configMapRef/name"));
            }
            for e in c["env"].as_array().into_iter().flatten() {
                push(e.pointer("/valueFrom/configMapKeyRef/name"));
            }
        }
    }
    out
}

/// Stamps [`CONFIG_HASH_ANNOTATION`] on the pod template of each workload in `manifests` that
/// reads one of `files`: the digest of the files it reads, in declaration order.
pub(crate) fn stamp_config_hashes(manifests: &mut [Json], files: &[ConfigFile]) {
    if files.is_empty() {
        return;
    }
    for m in manifests.iter_mut() {
        let Some(pod) = m.pointer("/spec/template/spec") else {
            continue;
        };
        let read = config_maps_read(pod);
        let digests: Vec<String> = files
            .iter()
            .filter(|f| read.contains(&f.name))
            .map(ConfigFile::digest)
            .collect();
        if digests.is_empty() {
            continue;
        }
        let digest = if digests.len() == 1 {
            digests.concat()
        } else {
            let joined = digests.join("\n");
            let hex: String = Sha256::digest(joined.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("sha256:{hex}")
        };
        let template = &mut m["spec"]["template"];
        if template.get("metadata").is_none_or(Json::is_null) {
            template["metadata"] = json!({});
        }
        let meta = &mut template["metadata"];
        if meta.get("annotations").is_none_or(Json::is_null) {
            meta["annotations"] = json!({});
        }
        meta["annotations"][CONFIG_HASH_ANNOTATION] = Json::String(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_secret_name_is_a_kubernetes_name_whatever_the_client_id() {
        assert_eq!(client_secret_name("jupyterhub"), "jupyterhub-oidc-client");
        // Kubernetes refuses `_` and capitals in a Secret's name (RFC 1123 subdomain).
        assert_eq!(client_secret_name("conda_store"), "conda-store-oidc-client");
        assert_eq!(client_secret_name("My_Ext"), "my-ext-oidc-client");
    }

    #[test]
    fn only_the_workloads_that_read_a_file_carry_its_digest() {
        let reads = json!({"kind": "Deployment", "spec": {"template": {"metadata": {},
            "spec": {"volumes": [{"name": "c", "configMap": {"name": "app-config"}}], "containers": []}}}});
        let env = json!({"kind": "Deployment", "spec": {"template": {
            "spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "app-config"}}]}]}}}});
        let other = json!({"kind": "Deployment", "spec": {"template": {"metadata": {},
            "spec": {"containers": [{"name": "x"}]}}}});
        let mut ms = vec![reads, env, other];
        let file = ConfigFile::new("app-config", "app.yaml", "a: 1\n");
        stamp_config_hashes(&mut ms, std::slice::from_ref(&file));
        let at = |m: &Json| {
            m.pointer("/spec/template/metadata/annotations/qhub.dev~1config-sha256")
                .cloned()
        };
        assert_eq!(at(&ms[0]), Some(Json::String(file.digest())));
        assert_eq!(at(&ms[1]), Some(Json::String(file.digest())));
        assert_eq!(at(&ms[2]), None);
        let edited = ConfigFile::new("app-config", "app.yaml", "a: 2\n");
        assert_ne!(edited.digest(), file.digest());
    }
}
