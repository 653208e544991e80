//! Keycloak's configuration (realm, groups, identity provider, clients) as part of the
//! Kubernetes stage: planned beside the objects, applied through Keycloak's admin API
//! ([`crate::keycloak`]) once the Keycloak Deployment is ready.
//!
//! Where the admin API answers: `QHUB_KEYCLOAK_URL` when set, else what the provider serves
//! ([`crate::provider::Provider::keycloak_url`], the sandbox's emulator), else the
//! deployment's `https://{domain}/auth`. The admin credentials are the config's
//! `initial_root_password`, or the password generated once into the Secret `keycloak-admin`;
//! the client secrets are derived from them. Before Keycloak runs (a first deploy) nothing of
//! it can exist: everything is planned as a create, and built again at apply time with the
//! real credentials.

use crate::config::Config;
use crate::keycloak::{self, AdminCredentials, Keycloak, Secrets};
use crate::kubernetes::apply::Applier;
use crate::kubernetes::components::keycloak as component;
use crate::plan::{self, ResourceId, ResourceState, Stage};
use crate::provider::{Ownership, Provider, ProviderError};

/// Stands in for the admin password until it exists (the plan marks the client secrets as
/// known after apply).
const UNKNOWN_SEED: &str = "(known after apply)";

/// What the plan calls the values that need the admin password.
pub(crate) const AFTER_APPLY: &str = "Keycloak client secrets";

/// The id of the Keycloak Deployment, which the realm waits for.
pub(crate) fn deployment_id(config: &Config) -> ResourceId {
    ResourceId::new(
        "Deployment.apps",
        format!("{}/{}", config.namespace, component::NAME),
    )
}

/// The note of a plan that leaves Keycloak's configuration out.
pub(crate) const NOT_REACHABLE: &str = "Keycloak's realm, groups, identity provider and clients are not configured: this provider does not reach Keycloak's admin API from here yet. Set QHUB_KEYCLOAK_URL to it (e.g. `kubectl -n NAMESPACE port-forward svc/keycloak 8080` and QHUB_KEYCLOAK_URL=http://127.0.0.1:8080/auth) and deploy again";

/// Whether the engine can reach Keycloak's admin API: `QHUB_KEYCLOAK_URL` is set, or the
/// provider serves it.
pub(crate) fn reachable(provider: &dyn Provider) -> bool {
    provider.serves_keycloak()
        || std::env::var(keycloak::URL_ENV).is_ok_and(|v| !v.trim().is_empty())
}

/// Whether a resource belongs to Keycloak's configuration.
pub(crate) fn is_identity(id: &ResourceId) -> bool {
    keycloak::KINDS.contains(&id.kind.as_str())
}

/// The admin credentials: the config's, or the generated Secret's when it exists.
pub(crate) async fn credentials(
    config: &Config,
    applier: Option<&Applier>,
) -> Result<Option<AdminCredentials>, ProviderError> {
    if let Some(c) = keycloak::admin_credentials(config) {
        return Ok(Some(c));
    }
    let Some(applier) = applier else {
        return Ok(None);
    };
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(applier.client(), &config.namespace);
    let found = secrets
        .get_opt(component::ADMIN_SECRET)
        .await
        .map_err(|e| ProviderError::retryable(format!("reading the Keycloak admin Secret: {e}")))?;
    let password = found
        .and_then(|s| s.data)
        .and_then(|d| d.get("password").cloned())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    Ok(password.map(|p| AdminCredentials::new(keycloak::ADMIN_USER, p)))
}

fn seed(credentials: Option<&AdminCredentials>) -> String {
    credentials.map_or_else(
        || UNKNOWN_SEED.to_string(),
        |c| c.password.expose().to_string(),
    )
}

/// The resources Keycloak's configuration wants; the bool says whether the client secrets
/// were derived from the real admin password (false: known after apply).
pub(crate) fn desired(
    config: &Config,
    credentials: Option<&AdminCredentials>,
) -> Result<(Vec<plan::Resource>, bool), ProviderError> {
    let secrets = Secrets::from_config(config, &seed(credentials));
    let mut out = keycloak::desired::desired(config, &secrets).map_err(ProviderError::from)?;
    let realm = keycloak::desired::realm_id();
    for r in &mut out {
        r.stage = Stage::Kubernetes;
        if r.id == realm && !r.depends_on.contains(&deployment_id(config)) {
            r.depends_on.push(deployment_id(config));
        }
    }
    Ok((out, credentials.is_some()))
}

/// A client for the deployment's Keycloak.
pub(crate) async fn connect(
    provider: &dyn Provider,
    ownership: &Ownership,
    config: &Config,
    credentials: AdminCredentials,
    retry: crate::engine::retry::RetryPolicy,
) -> Result<Keycloak, ProviderError> {
    let default = match provider.keycloak_url(ownership).await? {
        Some(url) => url,
        None => keycloak::base_url_for(&config.domain),
    };
    // QHUB_KEYCLOAK_URL, when set, wins over both.
    let seed = credentials.password.expose().to_string();
    let admin = keycloak::admin_from_env_or(&default, credentials)?.with_retry(retry);
    Ok(Keycloak::new(admin, Secrets::from_config(config, &seed))
        .realm_depends_on([deployment_id(config)]))
}

/// Whether Keycloak runs: its Deployment is among the observed objects, ready.
pub(crate) fn running(config: &Config, observed: &[plan::Observed]) -> bool {
    let id = deployment_id(config);
    observed
        .iter()
        .any(|o| o.id == id && o.state == ResourceState::Ready)
}
