//! The representations of Keycloak's admin REST API that a deployment manages (the fields we
//! manage of keycloak/keycloak `core/src/main/java/org/keycloak/representations/idm/*.java`,
//! 26.x), and the admin credentials. Whatever holds a secret prints it as `***`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret string: serialized as itself (it must reach Keycloak), printed as `***`.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself (to send it, or to hash it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// The admin user Keycloak's admin API is used as (QHub's `root`).
#[derive(Clone, Debug)]
pub struct AdminCredentials {
    /// User name in the `master` realm.
    pub username: String,
    /// Password (printed as `***`).
    pub password: SecretString,
}

impl AdminCredentials {
    /// Credentials for `username` with `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: SecretString::new(password),
        }
    }
}

/// `RealmRepresentation` (the fields we manage).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealmRepresentation {
    /// Server id (Keycloak sets it to the realm name unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Realm name.
    pub realm: String,
    /// Name shown on the login page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Whether users can log in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Free-form attributes (our ownership mark lives here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// `GroupRepresentation` (top-level groups).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRepresentation {
    /// Server-generated UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Group name (unique among top-level groups).
    pub name: String,
    /// `/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Free-form multi-valued attributes (our ownership mark lives here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// `RoleRepresentation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRepresentation {
    /// Server-generated UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Role name (unique within its client).
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether it is a client role (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_role: Option<bool>,
    /// The client's UUID for a client role (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

/// `ProtocolMapperRepresentation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolMapperRepresentation {
    /// Server-generated UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Mapper name (unique within its client).
    pub name: String,
    /// `openid-connect`.
    pub protocol: String,
    /// The mapper type, e.g. `oidc-group-membership-mapper`.
    pub protocol_mapper: String,
    /// Its settings.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// `ClientRepresentation` (the fields we manage). `secret` prints as `***`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRepresentation {
    /// Server-generated UUID (what the other client paths take).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The OAuth client id (unique within the realm).
    pub client_id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether it may be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `openid-connect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// False for a confidential client (with a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_client: Option<bool>,
    /// Base of relative URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_url: Option<String>,
    /// Where the account console links to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Allowed redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Allowed CORS origins.
    #[serde(default)]
    pub web_origins: Vec<String>,
    /// Authorization code flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_flow_enabled: Option<bool>,
    /// Resource-owner password grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_access_grants_enabled: Option<bool>,
    /// The client secret (confidential clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretString>,
    /// Free-form attributes (our ownership mark lives here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Protocol mappers (accepted on create; changed later through their own paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocol_mappers: Vec<ProtocolMapperRepresentation>,
}

/// `IdentityProviderRepresentation`. Keycloak answers `config.clientSecret` masked
/// (`**********`); `Debug` prints it as `***` either way.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProviderRepresentation {
    /// Alias (unique within the realm; part of its broker URLs).
    pub alias: String,
    /// Display name on the login page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Provider type: `github`, `oidc`, ...
    pub provider_id: String,
    /// Whether it is offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Trust the e-mail it reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_email: Option<bool>,
    /// Keep the provider's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_token: Option<bool>,
    /// The flow a first login through it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_broker_login_flow_alias: Option<String>,
    /// Provider settings (`clientId`, `clientSecret`, URLs).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl fmt::Debug for IdentityProviderRepresentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config: BTreeMap<&str, &str> = self
            .config
            .iter()
            .map(|(k, v)| {
                let shown = if k.to_ascii_lowercase().contains("secret") {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("IdentityProviderRepresentation")
            .field("alias", &self.alias)
            .field("display_name", &self.display_name)
            .field("provider_id", &self.provider_id)
            .field("enabled", &self.enabled)
            .field("trust_email", &self.trust_email)
            .field("store_token", &self.store_token)
            .field(
                "first_broker_login_flow_alias",
                &self.first_broker_login_flow_alias,
            )
            .field("config", &config)
            .finish()
    }
}

/// One client's roles in a `MappingsRepresentation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientMappingsRepresentation {
    /// The client's UUID.
    #[serde(default)]
    pub id: Option<String>,
    /// The client's clientId.
    #[serde(default)]
    pub client: Option<String>,
    /// The mapped roles.
    #[serde(default)]
    pub mappings: Vec<RoleRepresentation>,
}

/// `MappingsRepresentation`: every role mapped to a group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingsRepresentation {
    /// Realm roles.
    #[serde(default)]
    pub realm_mappings: Vec<RoleRepresentation>,
    /// Client roles by clientId.
    #[serde(default)]
    pub client_mappings: BTreeMap<String, ClientMappingsRepresentation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let creds = AdminCredentials::new("root", "hunter2-secret");
        assert!(!format!("{creds:?}").contains("hunter2"));
        let client = ClientRepresentation {
            client_id: "jupyterhub".into(),
            secret: Some("s3cr3t-value".into()),
            ..Default::default()
        };
        assert!(!format!("{client:?}").contains("s3cr3t"));
        let idp = IdentityProviderRepresentation {
            alias: "github".into(),
            provider_id: "github".into(),
            config: [("clientSecret".to_string(), "gh-s3cr3t".to_string())].into(),
            ..Default::default()
        };
        assert!(!format!("{idp:?}").contains("gh-s3cr3t"));
        // The wire form does carry it: Keycloak needs it.
        assert!(
            serde_json::to_string(&client)
                .unwrap()
                .contains("s3cr3t-value")
        );
    }
}

/// `UserRepresentation` (the fields `qhub users` reads and writes; keycloak/keycloak 26.x
/// `core/src/main/java/org/keycloak/representations/idm/UserRepresentation.java`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRepresentation {
    /// Server-generated UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// User name (Keycloak keeps it in lower case; unique within the realm).
    pub username: String,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the user can log in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Credentials set at creation (a password); never read back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialRepresentation>,
}

/// `CredentialRepresentation` of type `password` (what `PUT …/reset-password` takes). The
/// value prints as `***`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRepresentation {
    /// `password`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The password.
    pub value: SecretString,
    /// Whether the user must change it at the next login.
    pub temporary: bool,
}

impl CredentialRepresentation {
    /// A password credential.
    pub fn password(value: SecretString, temporary: bool) -> Self {
        Self {
            kind: "password".into(),
            value,
            temporary,
        }
    }
}
