//! `tf_extensions` (extra web apps behind the platform's login) and `helm_extensions`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One entry of `helm_extensions`. Read so QHub configs load; deploying Helm charts is not
/// supported (qhub-rs runs without Helm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HelmExtension {
    /// Release name.
    pub name: String,
    /// Chart repository URL.
    pub repository: String,
    /// Chart name.
    pub chart: String,
    /// Chart version.
    pub version: String,
    /// Chart values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One entry of `tf_extensions`: a container served at `/<urlslug>` (docs/platform.md,
/// "Extensions").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// Its name: the Deployment, Service and route are `qhub-ext-<name>`.
    pub name: String,
    /// Container image; it listens on `$PORT` (80).
    pub image: String,
    /// URL path prefix: served at `/<urlslug>`, the prefix cut before forwarding.
    pub urlslug: String,
    /// Require a login through Keycloak (forward-auth) before any request reaches it.
    #[serde(default)]
    pub private: bool,
    /// Create a Keycloak OAuth client `qhub-ext-<name>-client` for the app; its id, secret and
    /// the realm's URLs reach it as `OAUTH2_*` environment variables.
    #[serde(default)]
    pub oauth2client: bool,
    /// Give the app Keycloak admin credentials (`KEYCLOAK_*` environment variables).
    #[serde(default)]
    pub keycloakadmin: bool,
    /// Give the app a generated secret to sign JWTs with (`JWT_SECRET_KEY`,
    /// `COOKIE_AUTHORIZATION_NAME`).
    #[serde(default)]
    pub jwt: bool,
    /// Mount the config, `QHUB_SECRET_` references unexpanded, at
    /// `/etc/qhubyamlsecret/qhub-config.yaml`.
    #[serde(default)]
    pub qhubconfigyaml: bool,
    /// Logout URL path (accepted; not used, as in QHub 0.4.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logout: Option<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envs: Option<Vec<ExtensionEnv>>,
}

/// An environment variable of an extension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtensionEnv {
    /// Variable name.
    pub name: String,
    /// Variable value.
    pub value: String,
}
