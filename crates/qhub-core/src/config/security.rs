//! `security`: how users log in (Keycloak with password, GitHub or Auth0) and Keycloak settings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `security` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// The identity provider Keycloak federates to.
    pub authentication: Authentication,
    /// Put every user in a shared `users` group with a shared directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_users_group: Option<bool>,
    /// Keycloak settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keycloak: Option<Keycloak>,
}

/// `security.authentication`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Authentication {
    /// `password`, `GitHub` or `Auth0` (case-sensitive, as in QHub).
    #[serde(rename = "type")]
    pub kind: AuthenticationKind,
    /// OAuth client settings, required for `GitHub` and `Auth0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<OAuthConfig>,
}

/// The identity providers QHub supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AuthenticationKind {
    /// Users and passwords kept in Keycloak.
    #[serde(rename = "password")]
    Password,
    /// GitHub OAuth.
    GitHub,
    /// Auth0 OAuth.
    Auth0,
}

impl AuthenticationKind {
    /// The spelling used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::GitHub => "GitHub",
            Self::Auth0 => "Auth0",
        }
    }
}

/// `security.authentication.config`: an OAuth application's credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret (use `QHUB_SECRET_...` to read it from the environment).
    pub client_secret: String,
    /// Auth0 only: the tenant subdomain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth0_subdomain: Option<String>,
}

/// `security.keycloak`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Keycloak {
    /// Password of Keycloak's `root` admin user at first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_root_password: Option<String>,
    /// Extra settings for the Keycloak deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<serde_json::Map<String, serde_json::Value>>,
    /// Display name of the `qhub` realm on the login page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_display_name: Option<String>,
}
