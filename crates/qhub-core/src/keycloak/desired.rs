//! What the config wants in Keycloak, as plan resources.
//!
//! Kinds (all in [`Stage::Kubernetes`]):
//! - `keycloak_realm/<realm>`: the realm and its display name;
//! - `keycloak_group/<name>`: `admin`, `developer`, `analyst` (+ `users` with
//!   `security.shared_users_group`), each with whether it is a default group;
//! - `keycloak_identity_provider/<alias>`: `github` or `auth0` (none for `password`);
//! - `keycloak_client/<clientId>`: one OIDC client per platform service, with its redirect URIs,
//!   protocol mappers, client roles and the group→role mappings (REFERENCE.md §2), so a plan
//!   reads `keycloak_client/jupyterhub ~ redirectUris: [..] -> [..]`.
//!
//! A spec is what the plan compares and shows, so it never holds a secret: client and
//! identity-provider secrets appear as `sha256:<hex>` ([`secret_hash`]). The payload carries the
//! representation to send, with the same hash in place of each secret; [`super::Keycloak`]
//! puts the secret back (from its [`Secrets`]) only in the request body.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use super::client::{
    ClientRepresentation, GroupRepresentation, IdentityProviderRepresentation,
    ProtocolMapperRepresentation, RealmRepresentation, SecretString,
};
use super::error::KeycloakError;
use crate::config::{AuthenticationKind, Config};
use crate::plan::{Resource, ResourceId, Stage};

/// The realm a deployment's users live in (QHub's).
pub const REALM: &str = "qhub";
/// Kind of the realm resource.
pub const KIND_REALM: &str = "keycloak_realm";
/// Kind of a group resource.
pub const KIND_GROUP: &str = "keycloak_group";
/// Kind of the identity provider resource.
pub const KIND_IDENTITY_PROVIDER: &str = "keycloak_identity_provider";
/// Kind of an OIDC client resource.
pub const KIND_CLIENT: &str = "keycloak_client";
/// Every kind this module plans.
pub const KINDS: [&str; 4] = [KIND_REALM, KIND_GROUP, KIND_IDENTITY_PROVIDER, KIND_CLIENT];

/// The attribute (config key for an identity provider) marking what this tool manages.
pub const MANAGED_BY_KEY: &str = "qhub.managed-by";
/// Its value.
pub const MANAGED_BY: &str = "qhub-rs";
/// The identity-provider config key holding the hash of the OAuth client secret we set:
/// Keycloak never returns the secret itself (it answers `**********`).
pub const SECRET_HASH_KEY: &str = "qhub.clientSecretHash";

/// The groups a deployment may have, in order. `users` exists only with
/// `security.shared_users_group`.
pub const GROUPS: [&str; 4] = ["admin", "developer", "analyst", "users"];

/// What a plan shows in place of a client secret's hash until the secret exists.
pub const SECRET_AFTER_APPLY: &str = crate::provider::facts::AFTER_APPLY;

/// `sha256:<hex>` of a secret: how a secret is compared and shown.
pub fn secret_hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// One platform service's OIDC client, as the component that runs the service declares it
/// (its `Built::client` in the Kubernetes layer's components): the list of clients is the
/// enabled components' list, never written here by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformClient {
    /// The OAuth client id (and resource name); it may come from the config (an extension's
    /// name), so it is owned.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// Path of the service under the domain (`/hub`).
    pub base_path: String,
    /// The OAuth callback path (`/hub/oauth_callback`).
    pub callback_path: String,
    /// Client roles and the groups each is mapped to.
    pub roles: Vec<(String, Vec<String>)>,
    /// User attributes put in the client's tokens as claims of the same name, aggregated over
    /// the user's groups ([`Self::attribute_claim`]).
    pub attribute_claims: Vec<String>,
}

impl PlatformClient {
    /// A client `client_id` shown as `name`, served under `base_path` with its OAuth callback
    /// at `callback_path`, and no roles yet ([`Self::role`]).
    pub fn new(
        client_id: impl Into<String>,
        name: impl Into<String>,
        base_path: impl Into<String>,
        callback_path: impl Into<String>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            name: name.into(),
            base_path: base_path.into(),
            callback_path: callback_path.into(),
            roles: Vec::new(),
            attribute_claims: Vec::new(),
        }
    }

    /// Adds the claim `attribute`: the values of the user attribute of that name and of the
    /// same attribute of every group the user belongs to, as a list (JupyterHub's
    /// `jupyterlab_profiles`, set on a group in Keycloak's console).
    #[must_use]
    pub fn attribute_claim(mut self, attribute: impl Into<String>) -> Self {
        self.attribute_claims.push(attribute.into());
        self
    }

    /// Adds the client role `role`, mapped to each of `groups`.
    #[must_use]
    pub fn role(mut self, role: impl Into<String>, groups: &[&str]) -> Self {
        self.roles.push((
            role.into(),
            groups.iter().map(|g| (*g).to_string()).collect(),
        ));
        self
    }
}

/// The groups the config wants: `(name, is a default group)`. New users join `analyst` (and
/// `users` when shared), as in QHub.
pub fn groups(config: &Config) -> Vec<(&'static str, bool)> {
    let shared = config.security.shared_users_group.unwrap_or(false);
    GROUPS
        .iter()
        .filter(|g| **g != "users" || shared)
        .map(|g| (*g, matches!(*g, "analyst" | "users")))
        .collect()
}

/// The secrets a Keycloak configuration needs: each OIDC client's secret (read from the Secret
/// its component owns) and the identity provider's OAuth client secret. `Debug` prints none of
/// them.
#[derive(Clone, Default)]
pub struct Secrets {
    declared: Vec<PlatformClient>,
    clients: BTreeMap<String, SecretString>,
    identity_provider: Option<SecretString>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("clients", &self.clients.keys().collect::<Vec<_>>())
            .field("identity_provider", &self.identity_provider.is_some())
            .finish()
    }
}

impl Secrets {
    /// The secrets for `config` and the platform's `declared` clients (those of the enabled
    /// components, `kubernetes::components::oidc_clients`): the identity provider's from
    /// `security.authentication.config.client_secret` (already substituted), and no client
    /// secret yet. Each client's secret lives in the generated Secret its component owns
    /// (`kubernetes::components::client_secret_name`), which the engine reads and hands over
    /// with [`Self::set_client_secret`], or marks [`Self::set_client_secret_unknown`] while it
    /// does not exist.
    pub fn new(config: &Config, declared: Vec<PlatformClient>) -> Self {
        let identity_provider = config
            .security
            .authentication
            .config
            .as_ref()
            .map(|c| SecretString::new(c.client_secret.clone()));
        Self {
            declared,
            clients: BTreeMap::new(),
            identity_provider,
        }
    }

    /// Marks the secret of client `client_id` as known only after apply (its Secret does not
    /// exist yet, or cannot be read from here): plans show [`SECRET_AFTER_APPLY`] in place of
    /// its hash, and an apply of the client refuses to run with it.
    pub fn set_client_secret_unknown(&mut self, client_id: &str) {
        self.set_client_secret(client_id, SecretString::new(SECRET_AFTER_APPLY));
    }

    /// The declared clients whose secret is not known ([`Self::set_client_secret_unknown`]).
    pub fn unknown_clients(&self) -> Vec<&PlatformClient> {
        self.declared
            .iter()
            .filter(|c| {
                self.clients
                    .get(&c.client_id)
                    .is_none_or(|s| s.expose() == SECRET_AFTER_APPLY)
            })
            .collect()
    }

    /// The platform's OIDC clients these secrets are for.
    pub fn platform_clients(&self) -> &[PlatformClient] {
        &self.declared
    }

    /// Sets (or replaces) the secret of client `client_id`.
    pub fn set_client_secret(&mut self, client_id: &str, secret: SecretString) {
        self.clients.insert(client_id.to_string(), secret);
    }

    /// The secret of client `client_id` (for the service's own OAuth settings).
    pub fn client_secret(&self, client_id: &str) -> Option<&SecretString> {
        self.clients.get(client_id)
    }

    /// The secret whose [`secret_hash`] is `hash`.
    pub(crate) fn by_hash(&self, hash: &str) -> Option<&SecretString> {
        self.clients
            .values()
            .chain(self.identity_provider.iter())
            .filter(|s| s.expose() != SECRET_AFTER_APPLY)
            .find(|s| secret_hash(s.expose()) == hash)
    }
}

// ---- normalization: the one shape both desired and observed specs take ----

fn qhub_attributes<V: Clone + Into<Json>>(attributes: &BTreeMap<String, V>) -> Json {
    Json::Object(
        attributes
            .iter()
            .filter(|(k, _)| k.starts_with("qhub."))
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect(),
    )
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

/// The spec of a realm.
pub(crate) fn realm_spec(rep: &RealmRepresentation) -> Json {
    json!({
        "realm": rep.realm,
        "displayName": rep.display_name,
        "enabled": rep.enabled,
        "attributes": qhub_attributes(&rep.attributes),
    })
}

/// The spec of a group.
pub(crate) fn group_spec(rep: &GroupRepresentation, default: bool) -> Json {
    json!({
        "name": rep.name,
        "default": default,
        "attributes": qhub_attributes(&rep.attributes),
    })
}

/// The spec of an identity provider: its config without the secret, which appears as the hash
/// we stored beside it.
pub(crate) fn identity_provider_spec(rep: &IdentityProviderRepresentation) -> Json {
    let config: serde_json::Map<String, Json> = rep
        .config
        .iter()
        .filter(|(k, _)| k.as_str() != "clientSecret" && k.as_str() != SECRET_HASH_KEY)
        .map(|(k, v)| (k.clone(), Json::String(v.clone())))
        .collect();
    json!({
        "alias": rep.alias,
        "providerId": rep.provider_id,
        "displayName": rep.display_name,
        "enabled": rep.enabled,
        "trustEmail": rep.trust_email,
        "clientSecretHash": rep.config.get(SECRET_HASH_KEY),
        "config": config,
    })
}

/// The client's own fields (what `PUT /clients/{id}` changes).
pub(crate) fn client_base_spec(rep: &ClientRepresentation) -> Json {
    // Observed secrets are hashed here; desired ones arrive as their hash already.
    let secret_hash_of = |s: &SecretString| {
        if s.expose().starts_with("sha256:") || s.expose() == SECRET_AFTER_APPLY {
            s.expose().to_string()
        } else {
            secret_hash(s.expose())
        }
    };
    json!({
        "clientId": rep.client_id,
        "name": rep.name,
        "enabled": rep.enabled,
        "protocol": rep.protocol,
        "publicClient": rep.public_client,
        "rootUrl": rep.root_url,
        "baseUrl": rep.base_url,
        "redirectUris": sorted(&rep.redirect_uris),
        "webOrigins": sorted(&rep.web_origins),
        "standardFlowEnabled": rep.standard_flow_enabled,
        "directAccessGrantsEnabled": rep.direct_access_grants_enabled,
        "secretHash": rep.secret.as_ref().map(secret_hash_of),
        "attributes": qhub_attributes(&rep.attributes),
    })
}

/// The protocol mappers as the spec shows them: sorted by name, without server ids.
pub(crate) fn mappers_spec(mappers: &[ProtocolMapperRepresentation]) -> Json {
    let mut m: Vec<&ProtocolMapperRepresentation> = mappers.iter().collect();
    m.sort_by(|a, b| a.name.cmp(&b.name));
    Json::Array(
        m.into_iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "protocol": p.protocol,
                    "protocolMapper": p.protocol_mapper,
                    "config": p.config,
                })
            })
            .collect(),
    )
}

/// The spec of a client: its fields, protocol mappers, roles, and for each managed group the
/// client roles it is mapped to (an empty list too, so a mapping added out of band shows).
pub(crate) fn client_spec(
    rep: &ClientRepresentation,
    roles: &[String],
    mappings: &BTreeMap<String, Vec<String>>,
) -> Json {
    let mut spec = client_base_spec(rep);
    spec["protocolMappers"] = mappers_spec(&rep.protocol_mappers);
    spec["roles"] = json!(sorted(roles));
    spec["roleMappings"] = Json::Object(
        mappings
            .iter()
            .map(|(g, r)| (g.clone(), json!(sorted(r))))
            .collect(),
    );
    spec
}

// ---- the representations the config wants ----

/// The realm the config wants.
pub fn realm_representation(config: &Config) -> RealmRepresentation {
    let display = config
        .security
        .keycloak
        .as_ref()
        .and_then(|k| k.realm_display_name.clone())
        .unwrap_or_else(|| "QHub".to_string());
    RealmRepresentation {
        id: None,
        realm: REALM.to_string(),
        display_name: Some(display),
        enabled: Some(true),
        attributes: [(MANAGED_BY_KEY.to_string(), MANAGED_BY.to_string())].into(),
    }
}

/// A group as the config wants it.
pub fn group_representation(name: &str) -> GroupRepresentation {
    GroupRepresentation {
        id: None,
        name: name.to_string(),
        path: None,
        attributes: [(MANAGED_BY_KEY.to_string(), vec![MANAGED_BY.to_string()])].into(),
    }
}

fn mapper(name: &str, kind: &str, extra: &[(&str, &str)]) -> ProtocolMapperRepresentation {
    let mut config: BTreeMap<String, String> = [
        ("access.token.claim", "true"),
        ("id.token.claim", "true"),
        ("userinfo.token.claim", "true"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect();
    config.insert("claim.name".into(), name.into());
    ProtocolMapperRepresentation {
        id: None,
        name: name.to_string(),
        protocol: "openid-connect".into(),
        protocol_mapper: kind.into(),
        config,
    }
}

/// A platform client's representation, its secret given as `secret` (a hash in plans).
pub fn client_representation(
    config: &Config,
    c: &PlatformClient,
    secret: SecretString,
) -> ClientRepresentation {
    let root = format!("https://{}", config.domain);
    ClientRepresentation {
        id: None,
        client_id: c.client_id.clone(),
        name: Some(c.name.clone()),
        enabled: Some(true),
        protocol: Some("openid-connect".into()),
        public_client: Some(false),
        root_url: Some(root.clone()),
        base_url: Some(c.base_path.clone()),
        redirect_uris: vec![format!("{root}{}", c.callback_path)],
        web_origins: vec![root],
        standard_flow_enabled: Some(true),
        direct_access_grants_enabled: Some(false),
        secret: Some(secret),
        attributes: [(MANAGED_BY_KEY.to_string(), MANAGED_BY.to_string())].into(),
        protocol_mappers: vec![
            // Group membership (`groups` claim, plain names) and this client's roles (`roles`).
            mapper(
                "groups",
                "oidc-group-membership-mapper",
                &[("full.path", "false")],
            ),
            mapper(
                "roles",
                "oidc-usermodel-client-role-mapper",
                &[
                    ("usermodel.clientRoleMapping.clientId", &c.client_id),
                    ("multivalued", "true"),
                    ("jsonType.label", "String"),
                ],
            ),
        ]
        .into_iter()
        // Keycloak's user-attribute mapper with `aggregate.attrs` adds the attribute's values
        // from the user's groups to the user's own (keycloak/keycloak
        // `services/src/main/java/org/keycloak/protocol/oidc/mappers/UserAttributeMapper.java`,
        // `KeycloakModelUtils.resolveAttribute(user, name, aggregateAttrs)`).
        .chain(c.attribute_claims.iter().map(|a| {
            mapper(
                a,
                "oidc-usermodel-attribute-mapper",
                &[
                    ("user.attribute", a),
                    ("multivalued", "true"),
                    ("aggregate.attrs", "true"),
                    ("jsonType.label", "String"),
                ],
            )
        }))
        .collect(),
    }
}

/// The identity provider for `security.authentication`, its secret given as `secret`; `None`
/// for `password`.
pub fn identity_provider_representation(
    config: &Config,
    secret: &SecretString,
) -> Option<IdentityProviderRepresentation> {
    let auth = &config.security.authentication;
    let oauth = auth.config.as_ref()?;
    let (alias, provider, display, extra): (&str, &str, &str, Vec<(String, String)>) =
        match auth.kind {
            AuthenticationKind::Password => return None,
            AuthenticationKind::GitHub => (
                "github",
                "github",
                "GitHub",
                vec![("defaultScope".into(), "user:email".into())],
            ),
            AuthenticationKind::Auth0 => {
                let sub = oauth.auth0_subdomain.clone().unwrap_or_default();
                let base = format!("https://{sub}.auth0.com");
                (
                    "auth0",
                    "oidc",
                    "Auth0",
                    vec![
                        ("authorizationUrl".into(), format!("{base}/authorize")),
                        ("tokenUrl".into(), format!("{base}/oauth/token")),
                        ("userInfoUrl".into(), format!("{base}/userinfo")),
                        ("issuer".into(), format!("{base}/")),
                        ("defaultScope".into(), "openid email profile".into()),
                        ("clientAuthMethod".into(), "client_secret_post".into()),
                        ("syncMode".into(), "IMPORT".into()),
                    ],
                )
            }
        };
    let mut cfg: BTreeMap<String, String> = extra.into_iter().collect();
    cfg.insert("clientId".into(), oauth.client_id.clone());
    cfg.insert("clientSecret".into(), secret.expose().to_string());
    cfg.insert(
        SECRET_HASH_KEY.into(),
        if secret.expose().starts_with("sha256:") {
            secret.expose().to_string()
        } else {
            secret_hash(secret.expose())
        },
    );
    cfg.insert(MANAGED_BY_KEY.into(), MANAGED_BY.into());
    Some(IdentityProviderRepresentation {
        alias: alias.into(),
        display_name: Some(display.into()),
        provider_id: provider.into(),
        enabled: Some(true),
        trust_email: Some(true),
        store_token: Some(false),
        first_broker_login_flow_alias: Some("first broker login".into()),
        config: cfg,
    })
}

/// The id of the realm resource.
pub fn realm_id() -> ResourceId {
    ResourceId::new(KIND_REALM, REALM)
}

/// The role mappings of `c` for each group in `groups`, empty lists included.
pub(crate) fn role_mappings(
    c: &PlatformClient,
    groups: &[(&str, bool)],
) -> BTreeMap<String, Vec<String>> {
    groups
        .iter()
        .map(|(g, _)| {
            let roles = c
                .roles
                .iter()
                .filter(|(_, gs)| gs.iter().any(|x| x == g))
                .map(|(r, _)| r.clone())
                .collect();
            ((*g).to_string(), roles)
        })
        .collect()
}

/// The dependencies of a client: the realm and the groups whose mappings it lists.
pub(crate) fn client_depends_on(mappings: &BTreeMap<String, Vec<String>>) -> Vec<ResourceId> {
    std::iter::once(realm_id())
        .chain(
            mappings
                .keys()
                .map(|g| ResourceId::new(KIND_GROUP, g.as_str())),
        )
        .collect()
}

/// The Keycloak resources `config` wants. Every secret is in `secrets`; specs and payloads
/// carry only its hash.
pub fn desired(config: &Config, secrets: &Secrets) -> Result<Vec<Resource>, KeycloakError> {
    let mut out = Vec::new();
    let realm = realm_representation(config);
    out.push(
        Resource::new(KIND_REALM, REALM, Stage::Kubernetes, realm_spec(&realm))
            .expected(std::time::Duration::from_secs(5))
            .with_payload(json!({ "representation": realm })),
    );
    let groups = groups(config);
    for (name, default) in &groups {
        let rep = group_representation(name);
        out.push(
            Resource::new(
                KIND_GROUP,
                *name,
                Stage::Kubernetes,
                group_spec(&rep, *default),
            )
            .depends_on([realm_id()])
            .with_payload(json!({ "representation": rep })),
        );
    }
    let hashed = |s: &SecretString| {
        SecretString::new(if s.expose() == SECRET_AFTER_APPLY {
            SECRET_AFTER_APPLY.to_string()
        } else {
            secret_hash(s.expose())
        })
    };
    if config.security.authentication.kind != AuthenticationKind::Password {
        let secret = secrets.identity_provider.as_ref().ok_or_else(|| {
            KeycloakError::MissingSecret("the identity provider's OAuth client secret".into())
        })?;
        if let Some(rep) = identity_provider_representation(config, &hashed(secret)) {
            out.push(
                Resource::new(
                    KIND_IDENTITY_PROVIDER,
                    rep.alias.clone(),
                    Stage::Kubernetes,
                    identity_provider_spec(&rep),
                )
                .depends_on([realm_id()])
                .with_payload(json!({ "representation": rep })),
            );
        }
    }
    for c in secrets.platform_clients() {
        let secret = secrets
            .client_secret(&c.client_id)
            .ok_or_else(|| KeycloakError::MissingSecret(format!("client {}", c.client_id)))?;
        let rep = client_representation(config, c, hashed(secret));
        let roles: Vec<String> = c.roles.iter().map(|(r, _)| r.clone()).collect();
        let mappings = role_mappings(c, &groups);
        out.push(
            Resource::new(
                KIND_CLIENT,
                c.client_id.clone(),
                Stage::Kubernetes,
                client_spec(&rep, &roles, &mappings),
            )
            .depends_on(client_depends_on(&mappings))
            .with_payload(json!({ "representation": rep })),
        );
    }
    Ok(out)
}

/// Sets a resource's payload (the plan model has no builder for it).
trait WithPayload {
    fn with_payload(self, payload: Json) -> Self;
}

impl WithPayload for Resource {
    fn with_payload(mut self, payload: Json) -> Self {
        self.payload = Some(payload);
        self
    }
}

/// QHub's four login clients (REFERENCE.md §2), as the components that will run those
/// services are to declare them (none is built yet): test data for the Keycloak model,
/// Grafana's only with `monitoring` on, as QHub 0.4.5 does.
#[cfg(any(test, feature = "example-component"))]
#[doc(hidden)]
pub fn test_clients(config: &Config) -> Vec<PlatformClient> {
    let mut clients = vec![
        PlatformClient::new("jupyterhub", "JupyterHub", "/hub", "/hub/oauth_callback")
            .role("jupyterhub_admin", &["admin"])
            .role("jupyterhub_developer", &["developer", "analyst"]),
        PlatformClient::new(
            "dask_gateway",
            "Dask Gateway",
            "/gateway",
            "/gateway/oauth_callback",
        )
        .role("dask_gateway_admin", &["admin"])
        .role("dask_gateway_developer", &["developer"]),
        PlatformClient::new(
            "conda_store",
            "conda-store",
            "/conda-store",
            "/conda-store/oauth_callback",
        )
        .role("conda_store_admin", &["admin"])
        .role("conda_store_developer", &["developer"])
        .role("conda_store_viewer", &["analyst"]),
    ];
    if config.monitoring.as_ref().is_none_or(|m| m.enabled) {
        clients.push(
            PlatformClient::new(
                "grafana",
                "Grafana",
                "/monitoring",
                "/monitoring/login/generic_oauth",
            )
            .role("grafana_admin", &["admin"])
            .role("grafana_developer", &["developer"])
            .role("grafana_viewer", &["analyst"]),
        );
    }
    clients
}

/// [`Secrets`] for [`test_clients`], each client's secret a fixed value of its own
/// (`test-secret-of-<clientId>`), as the engine would read them from their Secrets.
#[cfg(any(test, feature = "example-component"))]
#[doc(hidden)]
pub fn test_secrets(config: &Config) -> Secrets {
    let clients = test_clients(config);
    let mut secrets = Secrets::new(config, clients.clone());
    for c in &clients {
        secrets.set_client_secret(
            &c.client_id,
            SecretString::new(format!("test-secret-of-{}", c.client_id)),
        );
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use crate::config::init::{InitOptions, render};
    use crate::config::security::OAuthConfig;

    fn config(auth: AuthenticationKind) -> Config {
        let mut c = render(&InitOptions::new(
            ProviderKind::Aws,
            "demo",
            "demo.example.com",
            "root-password",
        ))
        .unwrap();
        c.security.authentication.kind = auth;
        c.security.authentication.config =
            (auth != AuthenticationKind::Password).then(|| OAuthConfig {
                client_id: "gh-client-id".into(),
                client_secret: "gh-very-secret-value".into(),
                auth0_subdomain: Some("tenant".into()),
            });
        c
    }

    #[test]
    fn keycloak_desired_resources_for_the_default_config() {
        let c = config(AuthenticationKind::GitHub);
        let s = test_secrets(&c);
        let res = desired(&c, &s).unwrap();
        let ids: Vec<String> = res.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "keycloak_realm/qhub",
                "keycloak_group/admin",
                "keycloak_group/developer",
                "keycloak_group/analyst",
                "keycloak_group/users",
                "keycloak_identity_provider/github",
                "keycloak_client/jupyterhub",
                "keycloak_client/dask_gateway",
                "keycloak_client/conda_store",
                "keycloak_client/grafana",
            ]
        );
        let hub = &res[6];
        assert_eq!(
            hub.spec["redirectUris"],
            json!(["https://demo.example.com/hub/oauth_callback"])
        );
        assert_eq!(
            hub.spec["roleMappings"]["admin"],
            json!(["jupyterhub_admin"])
        );
        assert_eq!(
            hub.spec["roleMappings"]["analyst"],
            json!(["jupyterhub_developer"])
        );
        assert!(
            hub.depends_on
                .contains(&ResourceId::new(KIND_GROUP, "analyst"))
        );
        // No secret anywhere a plan could show or a log could print.
        let everything = format!("{}{res:?}", serde_json::to_string(&res).unwrap());
        assert!(!everything.contains("gh-very-secret-value"));
        let hub_secret = s.client_secret("jupyterhub").unwrap().expose().to_string();
        assert!(!everything.contains(&hub_secret));
        let payloads: String = res
            .iter()
            .map(|r| r.payload.as_ref().unwrap().to_string())
            .collect();
        assert!(!payloads.contains("gh-very-secret-value") && !payloads.contains(&hub_secret));
        assert_eq!(
            res[5].spec["clientSecretHash"],
            json!(secret_hash("gh-very-secret-value"))
        );
    }

    #[test]
    fn keycloak_groups_follow_shared_users_and_auth() {
        let mut c = config(AuthenticationKind::Password);
        assert_eq!(
            c.security.shared_users_group,
            Some(true),
            "qhub init's default"
        );
        c.monitoring = Some(crate::config::components::Toggle {
            enabled: false,
            overrides: None,
        });
        let res = desired(&c, &test_secrets(&c)).unwrap();
        assert!(res.iter().all(|r| r.id.kind != KIND_IDENTITY_PROVIDER));
        assert!(res.iter().all(|r| r.id.name != "grafana"));
        let users = res.iter().find(|r| r.id.name == "users").unwrap();
        assert_eq!(users.spec["default"], json!(true));
        c.security.shared_users_group = Some(false);
        let res = desired(&c, &test_secrets(&c)).unwrap();
        assert!(res.iter().all(|r| r.id.name != "users"));
        let auth0 = config(AuthenticationKind::Auth0);
        let res = desired(&auth0, &test_secrets(&auth0)).unwrap();
        let idp = res
            .iter()
            .find(|r| r.id.kind == KIND_IDENTITY_PROVIDER)
            .unwrap();
        assert_eq!(idp.id.name, "auth0");
        assert_eq!(
            idp.spec["config"]["tokenUrl"],
            json!("https://tenant.auth0.com/oauth/token")
        );
    }

    #[test]
    fn a_client_secret_not_known_yet_shows_as_such_and_is_never_sent() {
        let c = config(AuthenticationKind::Password);
        let mut s = Secrets::new(&c, test_clients(&c));
        assert_eq!(s.unknown_clients().len(), test_clients(&c).len());
        assert!(
            desired(&c, &s).is_err(),
            "a client without any secret is refused"
        );
        for client in test_clients(&c) {
            s.set_client_secret_unknown(&client.client_id);
        }
        s.set_client_secret("jupyterhub", SecretString::new("from-its-secret"));
        let unknown: Vec<&str> = s
            .unknown_clients()
            .iter()
            .map(|c| c.client_id.as_str())
            .collect();
        assert!(!unknown.contains(&"jupyterhub") && unknown.contains(&"grafana"));
        let res = desired(&c, &s).unwrap();
        let spec = |id: &str| res.iter().find(|r| r.id.name == id).unwrap().spec.clone();
        assert_eq!(
            spec("jupyterhub")["secretHash"],
            json!(secret_hash("from-its-secret"))
        );
        assert_eq!(spec("grafana")["secretHash"], json!(SECRET_AFTER_APPLY));
        // The placeholder is never handed out as a secret to send.
        assert!(s.by_hash(SECRET_AFTER_APPLY).is_none());
        assert!(s.by_hash(&secret_hash(SECRET_AFTER_APPLY)).is_none());
        assert!(s.by_hash(&secret_hash("from-its-secret")).is_some());
        assert!(!format!("{s:?}").contains("from-its-secret"));
    }
}
