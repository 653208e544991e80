//! Keycloak's configuration as planned resources: the realm, its groups and default groups,
//! the identity provider for `security.authentication`, and one OIDC client per platform
//! service with its roles and group→role mappings. They are planned like any resource (so
//! `qhub plan` shows `keycloak_client/jupyterhub ~ redirectUris: ...` before it happens) and
//! applied through Keycloak's admin REST API by [`client::AdminClient`].
//!
//! - [`desired::desired`]: what the config wants ([`crate::plan::Resource`]s);
//! - [`reconcile::observe`]: what exists, normalized by the same functions, so an in-sync realm
//!   diffs empty with [`crate::plan::diff`];
//! - [`reconcile::apply`]: one change, idempotently.
//!
//! [`Keycloak`] bundles them for the engine. Secrets (the identity provider's OAuth client
//! secret, each client's secret) never appear in a spec, a plan, its JSON or a log line: specs
//! and payloads carry `sha256:` hashes, and [`Keycloak::apply`] puts the secret back from its
//! [`Secrets`] only in the request it sends.
//!
//! Wiring it into a deployment:
//!
//! ```ignore
//! let credentials = keycloak::admin_credentials(&config)   // or the generated one from its Secret
//!     .unwrap_or_else(|| AdminCredentials::new(keycloak::ADMIN_USER, generated));
//! // https://{domain}/auth, or QHUB_KEYCLOAK_URL, or the sandbox's emulator URL:
//! let admin = keycloak::admin_from_env_or(&keycloak::base_url_for(&config.domain), credentials)?;
//! let mut secrets = Secrets::new(&config, clients);       // each client's secret, read from
//! secrets.set_client_secret("jupyterhub", from_its_secret); // the Secret its component owns
//! let kc = Keycloak::new(admin, secrets)
//!     .realm_depends_on([keycloak_deployment_id]);
//! let desired = kc.desired(&config)?;   // add to the Kubernetes stage's resources
//! let observed = kc.observe().await?;   // add to what the stage observes
//! // for each change whose id.kind is in keycloak::KINDS:
//! kc.apply(&change).await.map_err(ProviderError::from)?;
//! ```

pub mod client;
pub mod desired;
pub mod error;
pub mod reconcile;
pub mod users;

pub use client::{AdminClient, AdminCredentials, SecretString};
pub use desired::{KINDS, PlatformClient, REALM, Secrets, secret_hash};
pub use error::KeycloakError;

use crate::config::Config;
use crate::plan::{self, Change, Observed, Plan, Resource, ResourceId};

/// The environment variable pointing the admin client at another Keycloak (an emulator, a
/// port-forward): its base URL, e.g. `http://127.0.0.1:8080/auth`.
pub const URL_ENV: &str = "QHUB_KEYCLOAK_URL";

/// The admin user QHub creates in the `master` realm.
pub const ADMIN_USER: &str = "root";

/// The base URL of the Keycloak of a deployment at `domain` (served at `/auth`).
pub fn base_url_for(domain: &str) -> String {
    format!("https://{domain}/auth")
}

/// The base URL to use: `QHUB_KEYCLOAK_URL` when set (and not blank), else `default`.
pub fn url_from_env_or(default: &str) -> String {
    url_from_env().unwrap_or_else(|| default.to_string())
}

/// `QHUB_KEYCLOAK_URL` (trimmed, without a trailing `/`), unless it is unset or blank.
pub fn url_from_env() -> Option<String> {
    url_of(std::env::var(URL_ENV).ok())
}

/// `value` trimmed, without a trailing `/`, unless it is missing or blank.
fn url_of(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().trim_end_matches('/').to_string())
        .filter(|v| !v.is_empty())
}

/// `value` as [`url_of`] reads it, else `default`.
#[cfg(test)]
fn url_or(value: Option<String>, default: &str) -> String {
    url_of(value).unwrap_or_else(|| default.to_string())
}

/// An admin client for `QHUB_KEYCLOAK_URL` when set, else for `default_base_url` (the
/// deployment's `https://{domain}/auth`, or the sandbox's emulator).
pub fn admin_from_env_or(
    default_base_url: &str,
    credentials: AdminCredentials,
) -> Result<AdminClient, KeycloakError> {
    AdminClient::new(&url_from_env_or(default_base_url), credentials)
}

/// The admin credentials the config gives: [`ADMIN_USER`] with
/// `security.keycloak.initial_root_password` (already substituted), or `None` when the config
/// has none (then one is generated once and kept in a Secret by the Kubernetes layer).
pub fn admin_credentials(config: &Config) -> Option<AdminCredentials> {
    config
        .security
        .keycloak
        .as_ref()
        .and_then(|k| k.initial_root_password.as_deref())
        .filter(|p| !p.is_empty())
        .map(|p| AdminCredentials::new(ADMIN_USER, p))
}

/// A deployment's Keycloak: the admin client, the realm, and the secrets its changes need.
#[derive(Debug, Clone)]
pub struct Keycloak {
    client: AdminClient,
    realm: String,
    secrets: Secrets,
    realm_depends_on: Vec<ResourceId>,
    /// The port-forward the admin client goes through, kept open as long as this is.
    tunnel: Option<std::sync::Arc<crate::kubernetes::port_forward::PortForward>>,
}

impl Keycloak {
    /// Keycloak reached through `client`, configuring realm [`REALM`] with `secrets`.
    pub fn new(client: AdminClient, secrets: Secrets) -> Self {
        Self {
            client,
            realm: REALM.to_string(),
            secrets,
            realm_depends_on: Vec::new(),
            tunnel: None,
        }
    }

    /// Keeps `tunnel`, the port-forward the admin client's base URL points at, open for as
    /// long as this (or a clone) lives.
    #[must_use]
    pub fn through(mut self, tunnel: crate::kubernetes::port_forward::PortForward) -> Self {
        self.tunnel = Some(std::sync::Arc::new(tunnel));
        self
    }

    /// Makes the realm (and so everything in it) depend on `ids`, in desired and observed
    /// resources alike: e.g. the Keycloak Deployment, so the realm is created once Keycloak
    /// runs and deleted before Keycloak goes.
    #[must_use]
    pub fn realm_depends_on(mut self, ids: impl IntoIterator<Item = ResourceId>) -> Self {
        self.realm_depends_on.extend(ids);
        self
    }

    fn attach(&self, depends_on: &mut Vec<ResourceId>, kind: &str) {
        if kind == desired::KIND_REALM {
            for id in &self.realm_depends_on {
                if !depends_on.contains(id) {
                    depends_on.push(id.clone());
                }
            }
        }
    }

    /// The admin client (for its call counters).
    pub fn client(&self) -> &AdminClient {
        &self.client
    }

    /// The secrets (for the services' own OAuth settings).
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The resources `config` wants (see [`desired::desired`]).
    pub fn desired(&self, config: &Config) -> Result<Vec<Resource>, KeycloakError> {
        let mut out = desired::desired(config, &self.secrets)?;
        for r in &mut out {
            self.attach(&mut r.depends_on, &r.id.kind);
        }
        Ok(out)
    }

    /// What exists and is ours (see [`reconcile::observe`]).
    pub async fn observe(&self) -> Result<Vec<Observed>, KeycloakError> {
        let declared: Vec<&str> = self
            .secrets
            .platform_clients()
            .iter()
            .map(|c| c.client_id.as_str())
            .collect();
        let mut out = reconcile::observe(&self.client, &self.realm, &declared).await?;
        for o in &mut out {
            self.attach(&mut o.depends_on, &o.id.kind);
        }
        Ok(out)
    }

    /// The plan from `config` against what exists.
    pub async fn plan(&self, config: &Config) -> Result<Plan, KeycloakError> {
        let desired = self.desired(config)?;
        let observed = self.observe().await?;
        Ok(plan::diff(&desired, &observed))
    }

    /// Applies one change (create, update, replace, delete; a wait is a no-op).
    pub async fn apply(&self, change: &Change) -> Result<(), KeycloakError> {
        reconcile::apply(&self.client, &self.realm, &self.secrets, change).await
    }

    /// Applies every change of `plan` in order, one at a time (the engine runs them itself,
    /// in parallel where the dependencies allow; this is for tools and tests).
    pub async fn apply_plan(&self, plan: &Plan) -> Result<(), KeycloakError> {
        for change in &plan.changes {
            self.apply(change).await?;
        }
        Ok(())
    }
}

// The tests against the admin-API emulator are `tests/keycloak_emulator.rs` (the emulator lives
// in qhub-sandbox, which depends on this crate); only what needs no emulator stays here.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keycloak_url_env_overrides_the_default() {
        // The variable is read by `url_from_env_or` through `url_or`; tests cannot set it (they run
        // in parallel, and `set_var` needs unsafe code), so `url_or` is checked with its values.
        let default = base_url_for("demo.example.com");
        assert_eq!(default, "https://demo.example.com/auth");
        assert_eq!(url_or(None, &default), default);
        assert_eq!(url_or(Some("  ".into()), &default), default);
        assert_eq!(
            url_or(Some(" http://127.0.0.1:8080/auth/ ".into()), &default),
            "http://127.0.0.1:8080/auth"
        );
        let c = admin_from_env_or(&default, AdminCredentials::new("root", "x"));
        if std::env::var(URL_ENV).is_err() {
            assert_eq!(c.unwrap().base_url(), default);
        }
        // Pointed at a remote host over plain HTTP, the client refuses.
        assert!(
            AdminClient::new(
                &url_or(Some("http://keycloak.example.com/auth".into()), &default),
                AdminCredentials::new("root", "x")
            )
            .is_err()
        );
    }
}
