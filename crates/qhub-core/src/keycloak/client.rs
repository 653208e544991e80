//! A small typed client for Keycloak's admin REST API (Keycloak 26.x paths), enough for what a
//! deployment manages: realm, groups, default groups, clients with their roles and protocol
//! mappers, group→client-role mappings, identity providers.
//!
//! It rides on the REST toolkit ([`crate::cloud::http`]): base URL and the loopback rule for
//! plain HTTP, counters, the retry policy with `Retry-After`, error envelopes
//! ([`ErrorEnvelope::keycloak_json`]). The admin token (`client/token.rs`) is the toolkit's refreshing
//! token source: fetched from the `master` realm, again when it is about to expire, and once
//! more per call when a call answers 401. Tokens, passwords and secrets are never logged: the
//! representations that hold a secret print it as `***`.

mod representations;
mod token;
mod users;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use representations::{
    AdminCredentials, ClientMappingsRepresentation, ClientRepresentation, CredentialRepresentation,
    GroupRepresentation, IdentityProviderRepresentation, MappingsRepresentation,
    ProtocolMapperRepresentation, RealmRepresentation, RoleRepresentation, SecretString,
    UserRepresentation,
};

use super::error::KeycloakError;
use crate::cloud::http::{
    Auth, Body, ErrorEnvelope, HttpError, Reply, Request, RestClient, RestOptions, SetupError,
};
use crate::cloud::stats::ApiStats;
use crate::retry::{CallKind, RetryPolicy};
use token::AdminTokens;

/// The service's name in the toolkit's messages.
const SERVICE: &str = "Keycloak";

/// The admin REST client. Cheap to clone (clones share the token and the counters).
#[derive(Clone)]
pub struct AdminClient {
    rest: RestClient,
    tokens: Arc<AdminTokens>,
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.rest.endpoint())
            .field("username", &self.tokens.username())
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

/// The operation a request is counted under: its path with ids replaced by `{id}`.
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

/// Keycloak's message in an error answer, else the status's reason.
fn message_of(body: &[u8], status: StatusCode) -> String {
    let envelope = ErrorEnvelope::keycloak_json(body);
    envelope.message.or(envelope.code).unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string()
    })
}

/// One attempt's outcome as the typed methods see it: the answer of a success, else the
/// [`KeycloakError`] whose class the retry policy reads.
fn judge(outcome: Result<Reply, HttpError>, what: &str) -> Result<Reply, KeycloakError> {
    let token_failure = |e: crate::cloud::http::TokenError, refresh: bool| {
        let message = if refresh {
            format!("Keycloak refused the admin token (401) and no new one could be had: {e}")
        } else {
            e.to_string()
        };
        if e.transient {
            KeycloakError::Transport {
                what: what.into(),
                message,
            }
        } else {
            KeycloakError::Unauthorized {
                what: what.into(),
                message,
            }
        }
    };
    let reply = match outcome {
        Ok(reply) => reply,
        Err(HttpError::Token(e)) => return Err(token_failure(e, false)),
        Err(HttpError::TokenRefresh(e)) => return Err(token_failure(e, true)),
        Err(e @ (HttpError::Transport { .. } | HttpError::Body { .. })) => {
            return Err(KeycloakError::Transport {
                what: what.into(),
                message: e.to_string(),
            });
        }
        Err(e) => return Err(KeycloakError::Setup(format!("{what}: {e}"))),
    };
    let status = reply.status;
    if status == StatusCode::UNAUTHORIZED {
        // Already sent again with a fresh token (the toolkit's one refresh): refused twice.
        return Err(KeycloakError::Unauthorized {
            what: what.into(),
            message: message_of(&reply.body, status),
        });
    }
    if !status.is_success() {
        return Err(KeycloakError::Api {
            status: status.as_u16(),
            what: what.into(),
            message: message_of(&reply.body, status),
            retry_after: reply.retry_after(),
        });
    }
    Ok(reply)
}

impl AdminClient {
    /// A client for the Keycloak at `base_url` (the URL Keycloak is served at, e.g.
    /// `https://example.com/auth`). Plain HTTP is refused unless the host is loopback: the
    /// admin password and tokens must not travel unencrypted. TLS certificates are verified.
    pub fn new(base_url: &str, credentials: AdminCredentials) -> Result<Self, KeycloakError> {
        let setup = |e: SetupError| {
            KeycloakError::Setup(match e {
                SetupError::PlainHttp { endpoint } => format!(
                    "{endpoint} is plain HTTP: the admin password would travel unencrypted; use https"
                ),
                SetupError::Scheme { scheme } => {
                    format!("{base_url}: unsupported scheme `{scheme}`")
                }
                other => other.to_string(),
            })
        };
        let options = |auth| RestOptions {
            // The admin calls are small; half a minute covers a slow Keycloak.
            timeout: Duration::from_secs(30),
            ..RestOptions::new(SERVICE, base_url, auth)
        };
        let login = RestClient::new(
            options(Auth::InBody),
            Arc::default(),
            RetryPolicy::default(),
        )
        .map_err(setup)?;
        let tokens = Arc::new(AdminTokens::new(login, credentials));
        let rest = RestClient::new(
            options(Auth::Bearer(tokens.clone())),
            Arc::new(ApiStats::default()),
            RetryPolicy::default(),
        )
        .map_err(setup)?;
        Ok(Self { rest, tokens })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        self.rest.endpoint()
    }

    /// Counts of the admin calls sent (token requests not included; see [`Self::logins`]).
    pub fn stats(&self) -> Arc<ApiStats> {
        self.rest.stats().clone()
    }

    /// How many times an admin token was fetched.
    pub fn logins(&self) -> u64 {
        self.tokens.logins()
    }

    /// Sets the retry policy of single calls (default: [`RetryPolicy::default`]); the engine
    /// gives its own.
    #[must_use]
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.rest = self.rest.with_policy(policy);
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
        let url = self.rest.url(path);
        let op = operation(&method, path);
        let mut request = Request::new(&op, method.clone(), &url);
        request.mutating = method != Method::GET;
        request.retry = if method == Method::POST {
            CallKind::Mutation
        } else {
            CallKind::Read
        };
        if let Some(json) = body {
            request.body = Body::Json(json);
        }
        self.rest
            .send(what, &request, |outcome| judge(outcome, what))
            .await
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
            .header("location")
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
        let shown = format!(
            "{:?}",
            AdminClient::new("https://qhub.example.com/auth", creds())
        );
        assert!(!shown.contains("pw\""), "{shown}");
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

    #[test]
    fn messages_come_from_keycloak_envelopes() {
        let m = |body: &str, status| message_of(body.as_bytes(), status);
        assert_eq!(
            m(
                r#"{"errorMessage":"Client jupyterhub already exists"}"#,
                StatusCode::CONFLICT
            ),
            "Client jupyterhub already exists"
        );
        assert_eq!(
            m(
                r#"{"error":"invalid_grant","error_description":"Invalid user credentials"}"#,
                StatusCode::UNAUTHORIZED
            ),
            "Invalid user credentials"
        );
        assert_eq!(
            m(
                r#"{"error":"HTTP 401 Unauthorized"}"#,
                StatusCode::UNAUTHORIZED
            ),
            "HTTP 401 Unauthorized"
        );
        assert_eq!(m("<html>", StatusCode::BAD_GATEWAY), "Bad Gateway");
    }
}
