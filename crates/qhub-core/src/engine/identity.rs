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
use crate::kubernetes::port_forward::PortForward;
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
pub(crate) const NOT_REACHABLE: &str = "Keycloak's realm, groups, identity provider and clients are not configured: this provider hands out no cluster access to reach Keycloak's admin API through. Set QHUB_KEYCLOAK_URL to it (e.g. `kubectl -n NAMESPACE port-forward svc/keycloak 8080` and QHUB_KEYCLOAK_URL=http://127.0.0.1:8080/auth) and deploy again";

/// Whether the engine can reach Keycloak's admin API: `QHUB_KEYCLOAK_URL` is set, the provider
/// serves it, or the provider hands out cluster access (a port-forward through the API
/// server then reaches it).
pub(crate) fn reachable(provider: &dyn Provider) -> bool {
    provider.serves_keycloak()
        || provider.capabilities().cluster_access
        || keycloak::url_from_env().is_some()
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

/// The client secrets for the OIDC clients of the enabled components (a component that is not
/// deployed has none: no Keycloak client for a service that does not exist).
fn secrets(config: &Config, seed: &str) -> Result<Secrets, ProviderError> {
    let clients = crate::kubernetes::components::oidc_clients(config).map_err(|e| {
        ProviderError::Fatal(format!("building the components' login clients: {e}"))
    })?;
    Ok(Secrets::from_config(config, clients, seed))
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
    let secrets = secrets(config, &seed(credentials))?;
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

/// A client for the deployment's Keycloak. Where its admin API answers, first found wins:
/// `QHUB_KEYCLOAK_URL`; what the provider serves ([`Provider::keycloak_url`]); a port-forward
/// to Keycloak's pods through the cluster's API server (`cluster`: no DNS, load balancer or
/// certificate needed); the deployment's `https://{domain}/auth`.
pub(crate) async fn connect(
    provider: &dyn Provider,
    ownership: &Ownership,
    config: &Config,
    credentials: AdminCredentials,
    retry: crate::retry::RetryPolicy,
    cluster: Option<kube::Client>,
) -> Result<Keycloak, ProviderError> {
    let seed = credentials.password.expose().to_string();
    let secrets = secrets(config, &seed)?;
    let from_env = keycloak::url_from_env();
    let served = match from_env {
        Some(_) => None,
        None => provider.keycloak_url(ownership).await?,
    };
    let (base, tunnel) = match (from_env, served, cluster) {
        (Some(url), _, _) | (None, Some(url), _) => (url, None),
        (None, None, Some(client)) => {
            let selector = component_selector();
            let tunnel = PortForward::start(
                client,
                &config.namespace,
                &selector,
                u16::try_from(component::HTTP_PORT).unwrap_or(8080),
            )
            .await?;
            let url = format!("http://{}{}", tunnel.addr(), component::PATH);
            tracing::debug!(%url, "reaching Keycloak's admin API through a port-forward");
            (url, Some(tunnel))
        }
        (None, None, None) => (keycloak::base_url_for(&config.domain), None),
    };
    let admin = keycloak::AdminClient::new(&base, credentials)
        .map_err(ProviderError::from)?
        .with_retry(retry);
    let kc = Keycloak::new(admin, secrets).realm_depends_on([deployment_id(config)]);
    Ok(match tunnel {
        Some(t) => kc.through(t),
        None => kc,
    })
}

/// The label selector of Keycloak's pods (`key=value,...`).
fn component_selector() -> String {
    crate::kubernetes::components::selector(component::NAME)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether Keycloak runs: its Deployment is among the observed objects, ready.
pub(crate) fn running(config: &Config, observed: &[plan::Observed]) -> bool {
    let id = deployment_id(config);
    observed
        .iter()
        .any(|o| o.id == id && o.state == ResourceState::Ready)
}
