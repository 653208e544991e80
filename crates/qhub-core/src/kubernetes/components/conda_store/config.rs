//! conda-store's configuration files, rendered from qhub-config.yaml.
//!
//! - `conda_store_config.py` ([`PYTHON`]): the same for every deployment, loaded as it is by
//!   `conda-store-server --config` and `conda-store-worker --config`;
//! - `qhub.json` ([`settings`]): what varies (URLs, the namespace of the config's environments,
//!   service names, `conda_store.extra_settings` and `extra_config`), read by the Python file
//!   from beside it;
//! - the specification registered for each `environments` entry ([`environment_json`],
//!   sent through conda-store's REST API by the engine; [`environment_files`] as YAML files).
//!
//! Secrets are in neither file: the pods get them as environment variables from Secrets.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use crate::config::yaml::{Node, emit};
use crate::config::{CondaEnvironment, Config, Dependency};

/// The configuration file conda-store loads.
pub const PYTHON: &str = include_str!("conda_store_config.py");
/// Its file name in the config ConfigMap.
pub const PYTHON_FILE: &str = "conda_store_config.py";
/// The file holding what varies, beside [`PYTHON_FILE`].
pub const SETTINGS_FILE: &str = "qhub.json";

/// The conda-store namespace of the config's environments when `conda_store.default_namespace`
/// is not set: QHub 0.4.5's (`qhub/stages/input_vars.py`, `conda-store-default-namespace`).
pub const DEFAULT_NAMESPACE: &str = "nebari-git";

/// Keycloak client role → conda-store role, applied by the config's authentication class. The
/// Keycloak client maps the platform groups onto the client roles as QHub 0.4.5 did
/// (`07-kubernetes-services/modules/kubernetes/services/conda-store/server.tf`: admin →
/// conda_store_admin; developer and analyst → conda_store_developer); `conda_store_viewer` is
/// mapped to no group, for a producer to grant by hand.
pub const ROLE_MAPPINGS: [(&str, &str); 3] = [
    ("conda_store_admin", "admin"),
    ("conda_store_developer", "developer"),
    ("conda_store_viewer", "viewer"),
];

/// The names and places [`settings`] needs from the component.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    /// The platform namespace (Kubernetes), for in-cluster URLs.
    pub namespace: &'a str,
    /// Path of conda-store under the domain (`/conda-store`).
    pub url_prefix: &'a str,
    /// The server's port.
    pub port: i32,
    /// Where the store is mounted (`/home/conda`).
    pub store_directory: &'a str,
    /// The OIDC client id.
    pub client_id: &'a str,
    /// Its OAuth callback path.
    pub callback_path: &'a str,
    /// The database Service, its port, database and user.
    pub database: (&'a str, i32, &'a str, &'a str),
    /// The Redis Service and port.
    pub redis: (&'a str, i32),
    /// Keycloak's in-cluster base URL (`http://keycloak.<ns>.svc:8080/auth`).
    pub keycloak_internal: String,
}

/// The conda-store namespace the config's environments are built in.
pub fn default_namespace(config: &Config) -> &str {
    config
        .conda_store
        .as_ref()
        .and_then(|c| c.default_namespace.as_deref())
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// `qhub.json`: the values of [`PYTHON`] that vary, as pretty JSON.
pub fn settings(config: &Config, layout: &Layout<'_>) -> String {
    let scheme = if crate::kubernetes::components::ingress::tls::enabled(config) {
        "https"
    } else {
        "http"
    };
    let public = format!("{scheme}://{}", config.domain);
    let realm = crate::keycloak::REALM;
    let internal = format!(
        "{}/realms/{realm}/protocol/openid-connect",
        layout.keycloak_internal
    );
    let conda_store = config.conda_store.as_ref();
    let extra_settings = conda_store
        .and_then(|c| c.extra_settings.clone())
        .unwrap_or_default();
    let extra_config = conda_store
        .and_then(|c| c.extra_config.clone())
        .unwrap_or_default();
    let doc = json!({
        "url_prefix": layout.url_prefix,
        "port": layout.port,
        "store_directory": layout.store_directory,
        "artifacts_directory": format!("{}/.conda-store-artifacts", layout.store_directory),
        "default_namespace": default_namespace(config),
        "database": {
            "host": layout.database.0,
            "port": layout.database.1,
            "name": layout.database.2,
            "user": layout.database.3,
        },
        "redis": {"host": layout.redis.0, "port": layout.redis.1},
        "oidc": {
            // The browser goes to Keycloak's public address; the server exchanges the code and
            // reads the user's claims in the cluster (no TLS to a self-signed certificate).
            // Keycloak issues the same `iss` either way: its hostname is fixed (`KC_HOSTNAME`).
            "authorize_url": format!("{public}/auth/realms/{realm}/protocol/openid-connect/auth"),
            "token_url": format!("{internal}/token"),
            "userinfo_url": format!("{internal}/userinfo"),
            "callback_url": format!("{public}{}", layout.callback_path),
            "client_id": layout.client_id,
        },
        "role_mappings": ROLE_MAPPINGS.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "extra_settings": extra_settings,
        "extra_config": extra_config,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string());
    text.push('\n');
    text
}

/// The spec conda-store registers for one environment: name, channels, dependencies (a `pip:`
/// list as conda's `environment.yaml` writes it), as YAML.
pub fn environment_spec(env: &CondaEnvironment) -> String {
    emit(&Node::from_json(&environment_json(env)))
}

/// [`environment_spec`] as JSON (what the REST API is sent: JSON is YAML).
pub fn environment_json(env: &CondaEnvironment) -> Json {
    let dependencies: Vec<Json> = env
        .dependencies
        .iter()
        .map(|d| match d {
            Dependency::Package(spec) => Json::String(spec.clone()),
            Dependency::Installer(map) => json!(map),
        })
        .collect();
    let mut doc = serde_json::Map::new();
    doc.insert("name".into(), Json::String(env.name.clone()));
    if let Some(channels) = &env.channels {
        doc.insert("channels".into(), json!(channels));
    }
    doc.insert("dependencies".into(), Json::Array(dependencies));
    Json::Object(doc)
}

/// One environment spec file per `environments` entry, by the entry's file name.
pub fn environment_files(config: &Config) -> BTreeMap<String, String> {
    config
        .environments
        .iter()
        .map(|(file, env)| (file.clone(), environment_spec(env)))
        .collect()
}
