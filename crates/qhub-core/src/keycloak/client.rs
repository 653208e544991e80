//! A small typed client for Keycloak's admin REST API (Keycloak 26.x paths), enough for what a
//! deployment manages: realm, groups, default groups, clients with their roles and protocol
//! mappers, group→client-role mappings, identity providers.
//!
//! The admin token comes from the `master` realm (`admin-cli`, password grant); it is fetched
//! again when it is about to expire, and once more when a call answers 401 (the token was
//! revoked or the clock skewed). Tokens, passwords and secrets are never logged: the
//! representations that hold a secret print it as `***`.

use crate::retry::{CallKind, RetryPolicy};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::KeycloakError;
use crate::cloud::endpoint::is_loopback;
use crate::cloud::stats::ApiStats;

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

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct Token {
    access: SecretString,
    /// When to fetch a new one (a little before Keycloak's expiry).
    refresh_at: Instant,
}

/// What an answer carried that the typed methods need.
struct Reply {
    location: Option<String>,
    body: bytes::Bytes,
}

/// The admin REST client. Cheap to clone (clones share the token and the counters).
#[derive(Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    credentials: AdminCredentials,
    token: Arc<tokio::sync::Mutex<Option<Token>>>,
    stats: Arc<ApiStats>,
    logins: Arc<std::sync::atomic::AtomicU64>,
    retry: RetryPolicy,
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .field("username", &self.credentials.username)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes one path segment or form value (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The operation name a request is counted under: its path with ids replaced by `{id}`.
fn operation(method: &Method, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let template: Vec<&str> = path
        .split('/')
        .map(|s| {
            if s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4 {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    format!("{method} {}", template.join("/"))
}

fn message_of(body: &[u8], status: StatusCode) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    parsed
        .as_ref()
        .and_then(|v| {
            ["errorMessage", "error_description", "error"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|m| m.as_str()))
        })
        .map(str::to_string)
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        })
}

impl AdminClient {
    /// A client for the Keycloak at `base_url` (the URL Keycloak is served at, e.g.
    /// `https://example.com/auth`). Plain HTTP is refused unless the host is loopback: the
    /// admin password and tokens must not travel unencrypted.
    pub fn new(base_url: &str, credentials: AdminCredentials) -> Result<Self, KeycloakError> {
        let base = base_url.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| KeycloakError::Setup(format!("{base} is not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&base) => {}
            "http" => {
                return Err(KeycloakError::Setup(format!(
                    "{base} is plain HTTP: the admin password would travel unencrypted; use https"
                )));
            }
            other => {
                return Err(KeycloakError::Setup(format!(
                    "{base}: unsupported scheme `{other}`"
                )));
            }
        }
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("qhub-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| KeycloakError::Setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            credentials,
            token: Arc::new(tokio::sync::Mutex::new(None)),
            stats: Arc::new(ApiStats::default()),
            logins: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            retry: RetryPolicy::default(),
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Counts of the admin calls sent (token requests not included; see [`Self::logins`]).
    pub fn stats(&self) -> Arc<ApiStats> {
        self.stats.clone()
    }

    /// How many times an admin token was fetched.
    pub fn logins(&self) -> u64 {
        self.logins.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn login(&self) -> Result<Token, KeycloakError> {
        let what = "admin login (master realm, admin-cli)";
        let url = format!("{}/realms/master/protocol/openid-connect/token", self.base);
        let form = format!(
            "grant_type=password&client_id=admin-cli&username={}&password={}",
            encode(&self.credentials.username),
            encode(self.credentials.password.expose())
        );
        self.logins
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let started = Instant::now();
        let res = self
            .http
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| KeycloakError::Transport {
                what: what.into(),
                message: e.without_url().to_string(),
            })?;
        let status = res.status();
        let retry_after = retry_after(res.headers());
        let body = res.bytes().await.map_err(|e| KeycloakError::Transport {
            what: what.into(),
            message: e.to_string(),
        })?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST {
            return Err(KeycloakError::Unauthorized {
                what: what.into(),
                message: message_of(&body, status),
            });
        }
        if !status.is_success() {
            return Err(KeycloakError::Api {
                status: status.as_u16(),
                what: what.into(),
                message: message_of(&body, status),
                retry_after,
            });
        }
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| KeycloakError::Decode {
                what: what.into(),
                message: e.to_string(),
            })?;
        // Keycloak's default admin token lives 60 s; renew a fifth of it early (at most 10 s)
        // so a call never starts with a token that expires in flight.
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(60));
        let margin = (lifetime / 5).min(Duration::from_secs(10));
        tracing::debug!(
            lifetime_s = lifetime.as_secs(),
            "fetched a Keycloak admin token"
        );
        Ok(Token {
            access: token.access_token,
            refresh_at: started + lifetime.saturating_sub(margin),
        })
    }

    /// A valid token: the cached one, or a fresh one when it is (about to be) expired or
    /// `force` is set (after a 401).
    async fn bearer(&self, force: bool) -> Result<SecretString, KeycloakError> {
        let mut slot = self.token.lock().await;
        let fresh = slot
            .as_ref()
            .is_some_and(|t| !force && Instant::now() < t.refresh_at);
        if !fresh {
            *slot = Some(self.login().await?);
        }
        Ok(slot.as_ref().map(|t| t.access.clone()).unwrap_or_default())
    }

    /// Sets the retry policy of single calls (default: [`RetryPolicy::default`]); the engine
    /// gives its own.
    #[must_use]
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sends one admin call under the retry policy: reads, updates and deletes (idempotent)
    /// after any retryable failure, creates only when Keycloak refused them (429, 503).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<Reply, KeycloakError> {
        let kind = if method == Method::POST {
            CallKind::Mutation
        } else {
            CallKind::Read
        };
        crate::retry::retry_call(&self.retry, None, what, kind, || {
            self.send_once(method.clone(), path, body, what)
        })
        .await
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<Reply, KeycloakError> {
        let url = format!("{}{path}", self.base);
        let op = operation(&method, path);
        let mutating = method != Method::GET;
        let mut refreshed = false;
        loop {
            let token = self.bearer(refreshed).await?;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose());
            if let Some(b) = body {
                req = req.json(b);
            }
            self.stats.record(&op, mutating);
            tracing::debug!(%method, path, "keycloak admin call");
            let res = req.send().await.map_err(|e| KeycloakError::Transport {
                what: what.into(),
                message: e.without_url().to_string(),
            })?;
            let status = res.status();
            let retry_after = retry_after(res.headers());
            let location = res
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = res.bytes().await.map_err(|e| KeycloakError::Transport {
                what: what.into(),
                message: e.to_string(),
            })?;
            if status == StatusCode::UNAUTHORIZED {
                if !refreshed {
                    tracing::debug!(path, "Keycloak answered 401; fetching a new admin token");
                    refreshed = true;
                    continue;
                }
                return Err(KeycloakError::Unauthorized {
                    what: what.into(),
                    message: message_of(&bytes, status),
                });
            }
            if !status.is_success() {
                return Err(KeycloakError::Api {
                    status: status.as_u16(),
                    what: what.into(),
                    message: message_of(&bytes, status),
                    retry_after,
                });
            }
            return Ok(Reply {
                location,
                body: bytes,
            });
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T, KeycloakError> {
        let reply = self.send(Method::GET, path, None, what).await?;
        serde_json::from_slice(&reply.body).map_err(|e| KeycloakError::Decode {
            what: what.into(),
            message: e.to_string(),
        })
    }

    async fn get_opt<T: DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<Option<T>, KeycloakError> {
        match self.get(path, what).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write<T: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&T>,
        what: &str,
    ) -> Result<Reply, KeycloakError> {
        let json =
            body.map(serde_json::to_value)
                .transpose()
                .map_err(|e| KeycloakError::Decode {
                    what: what.into(),
                    message: e.to_string(),
                })?;
        self.send(method, path, json.as_ref(), what).await
    }

    /// The id at the end of a create's `Location` header.
    fn created_id(reply: &Reply, what: &str) -> Result<String, KeycloakError> {
        reply
            .location
            .as_deref()
            .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .ok_or_else(|| KeycloakError::Decode {
                what: what.into(),
                message: "no Location header in the 201 answer".into(),
            })
    }

    fn realm_path(realm: &str) -> String {
        format!("/admin/realms/{}", encode(realm))
    }

    // ---- realm ----

    /// `GET /admin/realms/{realm}`; `None` when it does not exist.
    pub async fn realm(&self, realm: &str) -> Result<Option<RealmRepresentation>, KeycloakError> {
        self.get_opt(&Self::realm_path(realm), &format!("read realm {realm}"))
            .await
    }

    /// `POST /admin/realms`.
    pub async fn create_realm(&self, rep: &RealmRepresentation) -> Result<(), KeycloakError> {
        let what = format!("create realm {}", rep.realm);
        self.write(Method::POST, "/admin/realms", Some(rep), &what)
            .await
            .map(drop)
    }

    /// `PUT /admin/realms/{realm}`.
    pub async fn update_realm(
        &self,
        realm: &str,
        rep: &RealmRepresentation,
    ) -> Result<(), KeycloakError> {
        let what = format!("update realm {realm}");
        self.write(Method::PUT, &Self::realm_path(realm), Some(rep), &what)
            .await
            .map(drop)
    }

    /// `DELETE /admin/realms/{realm}`.
    pub async fn delete_realm(&self, realm: &str) -> Result<(), KeycloakError> {
        let what = format!("delete realm {realm}");
        self.write::<()>(Method::DELETE, &Self::realm_path(realm), None, &what)
            .await
            .map(drop)
    }

    // ---- groups ----

    /// `GET /admin/realms/{realm}/groups?briefRepresentation=false`: the top-level groups with
    /// their attributes.
    pub async fn groups(&self, realm: &str) -> Result<Vec<GroupRepresentation>, KeycloakError> {
        let path = format!(
            "{}/groups?briefRepresentation=false&max=1000",
            Self::realm_path(realm)
        );
        self.get(&path, &format!("list groups of realm {realm}"))
            .await
    }

    /// `POST /admin/realms/{realm}/groups`; returns the new group's id.
    pub async fn create_group(
        &self,
        realm: &str,
        rep: &GroupRepresentation,
    ) -> Result<String, KeycloakError> {
        let what = format!("create group {}", rep.name);
        let path = format!("{}/groups", Self::realm_path(realm));
        let reply = self.write(Method::POST, &path, Some(rep), &what).await?;
        Self::created_id(&reply, &what)
    }

    /// `PUT /admin/realms/{realm}/groups/{id}`.
    pub async fn update_group(
        &self,
        realm: &str,
        id: &str,
        rep: &GroupRepresentation,
    ) -> Result<(), KeycloakError> {
        let what = format!("update group {}", rep.name);
        let path = format!("{}/groups/{}", Self::realm_path(realm), encode(id));
        self.write(Method::PUT, &path, Some(rep), &what)
            .await
            .map(drop)
    }

    /// `DELETE /admin/realms/{realm}/groups/{id}`.
    pub async fn delete_group(
        &self,
        realm: &str,
        id: &str,
        name: &str,
    ) -> Result<(), KeycloakError> {
        let what = format!("delete group {name}");
        let path = format!("{}/groups/{}", Self::realm_path(realm), encode(id));
        self.write::<()>(Method::DELETE, &path, None, &what)
            .await
            .map(drop)
    }

    /// `GET /admin/realms/{realm}/default-groups`.
    pub async fn default_groups(
        &self,
        realm: &str,
    ) -> Result<Vec<GroupRepresentation>, KeycloakError> {
        let path = format!("{}/default-groups", Self::realm_path(realm));
        self.get(&path, &format!("list default groups of realm {realm}"))
            .await
    }

    /// `PUT /admin/realms/{realm}/default-groups/{id}`.
    pub async fn add_default_group(
        &self,
        realm: &str,
        id: &str,
        name: &str,
    ) -> Result<(), KeycloakError> {
        let what = format!("make group {name} a default group");
        let path = format!("{}/default-groups/{}", Self::realm_path(realm), encode(id));
        self.write::<()>(Method::PUT, &path, None, &what)
            .await
            .map(drop)
    }

    /// `DELETE /admin/realms/{realm}/default-groups/{id}`.
    pub async fn remove_default_group(
        &self,
        realm: &str,
        id: &str,
        name: &str,
    ) -> Result<(), KeycloakError> {
        let what = format!("stop group {name} being a default group");
        let path = format!("{}/default-groups/{}", Self::realm_path(realm), encode(id));
        self.write::<()>(Method::DELETE, &path, None, &what)
            .await
            .map(drop)
    }

    // ---- clients ----

    /// `GET /admin/realms/{realm}/clients`.
    pub async fn clients(&self, realm: &str) -> Result<Vec<ClientRepresentation>, KeycloakError> {
        let path = format!("{}/clients?max=1000", Self::realm_path(realm));
        self.get(&path, &format!("list clients of realm {realm}"))
            .await
    }

    /// `GET /admin/realms/{realm}/clients?clientId=..`: the client with this clientId.
    pub async fn client_by_client_id(
        &self,
        realm: &str,
        client_id: &str,
    ) -> Result<Option<ClientRepresentation>, KeycloakError> {
        let path = format!(
            "{}/clients?clientId={}&search=false",
            Self::realm_path(realm),
            encode(client_id)
        );
        let found: Vec<ClientRepresentation> =
            self.get(&path, &format!("find client {client_id}")).await?;
        Ok(found.into_iter().find(|c| c.client_id == client_id))
    }

    /// `POST /admin/realms/{realm}/clients`; returns the new client's UUID.
    pub async fn create_client(
        &self,
        realm: &str,
        rep: &ClientRepresentation,
    ) -> Result<String, KeycloakError> {
        let what = format!("create client {}", rep.client_id);
        let path = format!("{}/clients", Self::realm_path(realm));
        let reply = self.write(Method::POST, &path, Some(rep), &what).await?;
        Self::created_id(&reply, &what)
    }

    /// `PUT /admin/realms/{realm}/clients/{id}` (protocol mappers in `rep` are ignored by
    /// Keycloak here; see [`Self::create_protocol_mapper`]).
    pub async fn update_client(
        &self,
        realm: &str,
        id: &str,
        rep: &ClientRepresentation,
    ) -> Result<(), KeycloakError> {
        let what = format!("update client {}", rep.client_id);
        let path = format!("{}/clients/{}", Self::realm_path(realm), encode(id));
        self.write(Method::PUT, &path, Some(rep), &what)
            .await
            .map(drop)
    }

    /// `DELETE /admin/realms/{realm}/clients/{id}`.
    pub async fn delete_client(
        &self,
        realm: &str,
        id: &str,
        client_id: &str,
    ) -> Result<(), KeycloakError> {
        let what = format!("delete client {client_id}");
        let path = format!("{}/clients/{}", Self::realm_path(realm), encode(id));
        self.write::<()>(Method::DELETE, &path, None, &what)
            .await
            .map(drop)
    }

    /// `GET /admin/realms/{realm}/clients/{id}/roles`.
    pub async fn client_roles(
        &self,
        realm: &str,
        id: &str,
        client_id: &str,
    ) -> Result<Vec<RoleRepresentation>, KeycloakError> {
        let path = format!("{}/clients/{}/roles", Self::realm_path(realm), encode(id));
        self.get(&path, &format!("list roles of client {client_id}"))
            .await
    }

    /// `POST /admin/realms/{realm}/clients/{id}/roles`.
    pub async fn create_client_role(
        &self,
        realm: &str,
        id: &str,
        client_id: &str,
        role: &RoleRepresentation,
    ) -> Result<(), KeycloakError> {
        let what = format!("create role {} of client {client_id}", role.name);
        let path = format!("{}/clients/{}/roles", Self::realm_path(realm), encode(id));
        self.write(Method::POST, &path, Some(role), &what)
            .await
            .map(drop)
    }

    /// `DELETE /admin/realms/{realm}/clients/{id}/roles/{role}`.
    pub async fn delete_client_role(
        &self,
        realm: &str,
        id: &str,
        client_id: &str,
        role: &str,
    ) -> Result<(), KeycloakError> {
        let what = format!("delete role {role} of client {client_id}");
        let path = format!(
            "{}/clients/{}/roles/{}",
            Self::realm_path(realm),
            encode(id),
            encode(role)
        );
        self.write::<()>(Method::DELETE, &path, None, &what)
            .await
            .map(drop)
    }

    /// `POST /admin/realms/{realm}/clients/{id}/protocol-mappers/models`.
    pub async fn create_protocol_mapper(
        &self,
        realm: &str,
        id: &str,
        client_id: &str,
        mapper: &ProtocolMapperRepresentation,
    ) -> Result<(), KeycloakError> {
        let what = format!("create mapper {} of client {client_id}", mapper.name);
        let path = format!(
            "{}/clients/{}/protocol-mappers/models",
            Self::realm_path(realm),
            encode(id)
        );
        self.write(Method::POST, &path, Some(mapper), &what)
            .await
            .map(drop)
    }

    /// `PUT /admin/realms/{realm}/clients/{id}/protocol-mappers/models/{mapper}`.
    pub async fn update_protocol_mapper(
        &self,
        realm: &str,
        id: &str,
        client_id: &str,
        mapper: &ProtocolMapperRepresentation,
    ) -> Result<(), KeycloakError> {
        let what = format!("update mapper {} of client {client_id}", mapper.name);
        let mapper_id = mapper.id.as_deref().unwrap_or_default();
        let path = format!(
            "{}/clients/{}/protocol-mappers/models/{}",
            Self::realm_path(realm),
            encode(id),
            encode(mapper_id)
        );
        self.write(Method::PUT, &path, Some(mapper), &what)
            .await
            .map(drop)
    }

    /// `DELETE /admin/realms/{realm}/clients/{id}/protocol-mappers/models/{mapper}`.
    pub async fn delete_protocol_mapper(
        &self,
        realm: &str,
        id: &str,
        client_id: &str,
        mapper: &ProtocolMapperRepresentation,
    ) -> Result<(), KeycloakError> {
        let what = format!("delete mapper {} of client {client_id}", mapper.name);
        let mapper_id = mapper.id.as_deref().unwrap_or_default();
        let path = format!(
            "{}/clients/{}/protocol-mappers/models/{}",
            Self::realm_path(realm),
            encode(id),
            encode(mapper_id)
        );
        self.write::<()>(Method::DELETE, &path, None, &what)
            .await
            .map(drop)
    }

    // ---- role mappings ----

    /// `GET /admin/realms/{realm}/groups/{id}/role-mappings`: every role mapped to a group.
    pub async fn group_role_mappings(
        &self,
        realm: &str,
        group_id: &str,
        group: &str,
    ) -> Result<MappingsRepresentation, KeycloakError> {
        let path = format!(
            "{}/groups/{}/role-mappings",
            Self::realm_path(realm),
            encode(group_id)
        );
        self.get(&path, &format!("read role mappings of group {group}"))
            .await
    }

    /// `POST /admin/realms/{realm}/groups/{id}/role-mappings/clients/{client}`: maps client
    /// roles (given with their ids) to a group.
    pub async fn add_group_client_roles(
        &self,
        realm: &str,
        group_id: &str,
        client_uuid: &str,
        what: &str,
        roles: &[RoleRepresentation],
    ) -> Result<(), KeycloakError> {
        let path = format!(
            "{}/groups/{}/role-mappings/clients/{}",
            Self::realm_path(realm),
            encode(group_id),
            encode(client_uuid)
        );
        self.write(Method::POST, &path, Some(&roles), what)
            .await
            .map(drop)
    }

    /// `DELETE /admin/realms/{realm}/groups/{id}/role-mappings/clients/{client}`.
    pub async fn remove_group_client_roles(
        &self,
        realm: &str,
        group_id: &str,
        client_uuid: &str,
        what: &str,
        roles: &[RoleRepresentation],
    ) -> Result<(), KeycloakError> {
        let path = format!(
            "{}/groups/{}/role-mappings/clients/{}",
            Self::realm_path(realm),
            encode(group_id),
            encode(client_uuid)
        );
        self.write(Method::DELETE, &path, Some(&roles), what)
            .await
            .map(drop)
    }

    // ---- identity providers ----

    /// `GET /admin/realms/{realm}/identity-provider/instances`.
    pub async fn identity_providers(
        &self,
        realm: &str,
    ) -> Result<Vec<IdentityProviderRepresentation>, KeycloakError> {
        let path = format!("{}/identity-provider/instances", Self::realm_path(realm));
        self.get(&path, &format!("list identity providers of realm {realm}"))
            .await
    }

    /// `GET /admin/realms/{realm}/identity-provider/instances/{alias}`.
    pub async fn identity_provider(
        &self,
        realm: &str,
        alias: &str,
    ) -> Result<Option<IdentityProviderRepresentation>, KeycloakError> {
        let path = format!(
            "{}/identity-provider/instances/{}",
            Self::realm_path(realm),
            encode(alias)
        );
        self.get_opt(&path, &format!("read identity provider {alias}"))
            .await
    }

    /// `POST /admin/realms/{realm}/identity-provider/instances`.
    pub async fn create_identity_provider(
        &self,
        realm: &str,
        rep: &IdentityProviderRepresentation,
    ) -> Result<(), KeycloakError> {
        let what = format!("create identity provider {}", rep.alias);
        let path = format!("{}/identity-provider/instances", Self::realm_path(realm));
        self.write(Method::POST, &path, Some(rep), &what)
            .await
            .map(drop)
    }

    /// `PUT /admin/realms/{realm}/identity-provider/instances/{alias}`.
    pub async fn update_identity_provider(
        &self,
        realm: &str,
        rep: &IdentityProviderRepresentation,
    ) -> Result<(), KeycloakError> {
        let what = format!("update identity provider {}", rep.alias);
        let path = format!(
            "{}/identity-provider/instances/{}",
            Self::realm_path(realm),
            encode(&rep.alias)
        );
        self.write(Method::PUT, &path, Some(rep), &what)
            .await
            .map(drop)
    }

    /// `DELETE /admin/realms/{realm}/identity-provider/instances/{alias}`.
    pub async fn delete_identity_provider(
        &self,
        realm: &str,
        alias: &str,
    ) -> Result<(), KeycloakError> {
        let what = format!("delete identity provider {alias}");
        let path = format!(
            "{}/identity-provider/instances/{}",
            Self::realm_path(realm),
            encode(alias)
        );
        self.write::<()>(Method::DELETE, &path, None, &what)
            .await
            .map(drop)
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback() {
        let creds = || AdminCredentials::new("root", "pw");
        assert!(AdminClient::new("http://127.0.0.1:8080/auth", creds()).is_ok());
        assert!(AdminClient::new("https://qhub.example.com/auth", creds()).is_ok());
        let e = AdminClient::new("http://qhub.example.com/auth", creds()).unwrap_err();
        assert!(e.to_string().contains("plain HTTP"), "{e}");
        assert!(AdminClient::new("ftp://127.0.0.1/auth", creds()).is_err());
        assert!(AdminClient::new("not a url", creds()).is_err());
    }

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

    #[test]
    fn operations_hide_ids_and_segments_are_encoded() {
        assert_eq!(
            operation(
                &Method::GET,
                "/admin/realms/qhub/clients/0b8e7a7e-3c7e-4f7e-9d1e-1a2b3c4d5e6f/roles"
            ),
            "GET /admin/realms/qhub/clients/{id}/roles"
        );
        assert_eq!(encode("a b/c&d=é"), "a%20b%2Fc%26d%3D%C3%A9");
    }
}
