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

/// One entry of `tf_extensions`: a container served at `/<urlslug>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// Name of the Deployment and Service.
    pub name: String,
    /// Container image.
    pub image: String,
    /// URL path prefix.
    pub urlslug: String,
    /// Require login.
    #[serde(default)]
    pub private: bool,
    /// Create a Keycloak OAuth client for the app.
    #[serde(default)]
    pub oauth2client: bool,
    /// Give the app Keycloak admin credentials.
    #[serde(default)]
    pub keycloakadmin: bool,
    /// Pass a signed JWT to the app.
    #[serde(default)]
    pub jwt: bool,
    /// Mount the qhub-config.yaml into the app.
    #[serde(default)]
    pub qhubconfigyaml: bool,
    /// Logout URL path.
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
