//! Keycloak's configuration (realm, groups, identity provider, clients) as part of the
//! Kubernetes stage: planned beside the objects, applied through Keycloak's admin API
//! ([`crate::keycloak`]) once the Keycloak Deployment is ready.
//!
//! Where the admin API answers: `QHUB_KEYCLOAK_URL` when set, else what the provider serves
//! ([`crate::provider::Provider::keycloak_url`], the sandbox's emulator), else the
//! deployment's `https://{domain}/auth`. The admin credentials are the config's
//! `initial_root_password`, or the password generated once into the Secret `keycloak-admin`.
//! Each login client's secret is read from the generated Secret its component owns
//! ([`components::client_secret_name`], key [`components::CLIENT_SECRET_KEY`]), the one its
//! pods read too; until that Secret exists the plan shows the secret as known after apply, and
//! the client's change is built again at apply time, once the Secret (which it depends on) is
//! there. Before Keycloak runs (a first deploy) nothing of it can exist: everything is planned
//! as a create.
//!
//! Without cluster access (`QHUB_KEYCLOAK_URL` pointing at the admin API of a cluster this
//! provider gives no access to) the client Secrets cannot be read: the plan says so, and the
//! apply of a client fails naming its Secret rather than setting a secret its pods do not
//! hold.

use crate::config::Config;
use crate::keycloak::{self, AdminCredentials, Keycloak, PlatformClient, SecretString, Secrets};
use crate::kubernetes::apply::Applier;
use crate::kubernetes::components;
use crate::kubernetes::components::keycloak as component;
use crate::kubernetes::port_forward::PortForward;
use crate::plan::{self, ResourceId, ResourceState, Stage};
use crate::provider::{Ownership, Provider, ProviderError};

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
    let password = read_key(
        &applier.client(),
        &config.namespace,
        component::ADMIN_SECRET,
        "password",
    )
    .await?;
    Ok(password.map(|p| AdminCredentials::new(keycloak::ADMIN_USER, p)))
}

/// The value under `key` of the Secret `namespace/name`, or `None` when the Secret or the key
/// does not exist.
pub(crate) async fn read_key(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, ProviderError> {
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), namespace);
    let found = secrets.get_opt(name).await.map_err(|e| {
        ProviderError::retryable(format!("reading the Secret {namespace}/{name}: {e}"))
    })?;
    Ok(found
        .and_then(|s| s.data)
        .and_then(|d| d.get(key).cloned())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .filter(|v| !v.is_empty()))
}

/// The plan id of the Secret holding login client `client_id`'s secret.
pub(crate) fn client_secret_id(config: &Config, client_id: &str) -> ResourceId {
    ResourceId::new(
        "Secret",
        format!(
            "{}/{}",
            config.namespace,
            components::client_secret_name(client_id)
        ),
    )
}

/// Which login clients' secrets [`secrets`] reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read<'a> {
    /// Every client's.
    All,
    /// Only this client's (the others are left unknown).
    Only(&'a str),
    /// None (an apply of the realm or a group needs none).
    None,
}

/// The secrets of the enabled components' login clients (a component that is not deployed
/// has none: no Keycloak client for a service that does not exist), each read from the Secret
/// its component owns through `cluster`; a client whose Secret does not exist yet, or cannot
/// be read (no cluster), or is not asked for, is marked unknown
/// ([`Secrets::set_client_secret_unknown`]).
pub(crate) async fn secrets(
    config: &Config,
    cluster: Option<&kube::Client>,
    read: Read<'_>,
) -> Result<Secrets, ProviderError> {
    let clients = components::oidc_clients(config).map_err(|e| {
        ProviderError::Fatal(format!("building the components' login clients: {e}"))
    })?;
    let mut secrets = Secrets::new(config, clients.clone());
    for c in &clients {
        let wanted = match read {
            Read::All => true,
            Read::Only(id) => id == c.client_id,
            Read::None => false,
        };
        let value = match cluster.filter(|_| wanted) {
            Some(client) => {
                read_key(
                    client,
                    &config.namespace,
                    &components::client_secret_name(&c.client_id),
                    components::CLIENT_SECRET_KEY,
                )
                .await?
            }
            None => None,
        };
        match value {
            Some(v) => secrets.set_client_secret(&c.client_id, SecretString::new(v)),
            None => secrets.set_client_secret_unknown(&c.client_id),
        }
    }
    Ok(secrets)
}

/// How [`after_apply_name`] begins: what tells a client secret from a cluster fact among the
/// plan's values known after apply.
pub(crate) const CLIENT_SECRET_AFTER_APPLY: &str = "the client secret of ";

/// What the plan names as known after apply for a client whose secret is not known yet.
pub(crate) fn after_apply_name(config: &Config, client: &PlatformClient) -> String {
    format!(
        "{CLIENT_SECRET_AFTER_APPLY}{} (Secret {}/{})",
        client.client_id,
        config.namespace,
        components::client_secret_name(&client.client_id)
    )
}

/// The note of a plan that cannot read the login clients' Secrets (no cluster access).
pub(crate) fn unreadable_note(config: &Config, clients: &[&PlatformClient]) -> String {
    let names: Vec<String> = clients
        .iter()
        .map(|c| {
            format!(
                "{}/{}",
                config.namespace,
                components::client_secret_name(&c.client_id)
            )
        })
        .collect();
    format!(
        "the login clients' secrets are kept in the Secrets {} (their pods read them there), which only cluster access can read, and this provider hands out none: applying those clients will fail rather than set another secret",
        names.join(", ")
    )
}

/// The error of an apply of login client `client_id` whose Secret could not be read.
pub(crate) fn unknown_secret_error(
    config: &Config,
    client_id: &str,
    cluster: bool,
) -> ProviderError {
    let secret = format!(
        "{}/{}",
        config.namespace,
        components::client_secret_name(client_id)
    );
    ProviderError::Fatal(if cluster {
        format!(
            "the secret of login client {client_id} is unknown: the Secret {secret} (key {}) does not exist; it is generated by the deploy before the client, so deploy again",
            components::CLIENT_SECRET_KEY
        )
    } else {
        format!(
            "cannot set the secret of login client {client_id}: it is kept in the Secret {secret}, which only cluster access can read, and this provider hands out none; the client is left as it is (any other secret would not be the one its pods read)"
        )
    })
}

/// The resources Keycloak's configuration wants with `secrets`: the realm waits for the
/// Keycloak Deployment, and each client for the Secret holding its secret.
pub(crate) fn desired(
    config: &Config,
    secrets: &Secrets,
) -> Result<Vec<plan::Resource>, ProviderError> {
    let mut out = keycloak::desired::desired(config, secrets).map_err(ProviderError::from)?;
    let realm = keycloak::desired::realm_id();
    for r in &mut out {
        r.stage = Stage::Kubernetes;
        let needs = if r.id == realm {
            Some(deployment_id(config))
        } else if r.id.kind == keycloak::desired::KIND_CLIENT {
            Some(client_secret_id(config, &r.id.name))
        } else {
            None
        };
        if let Some(id) = needs.filter(|id| !r.depends_on.contains(id)) {
            r.depends_on.push(id);
        }
    }
    Ok(out)
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
    // The declared clients (observed by id, adopted) and no secret: what an apply sends is
    // read per change ([`secrets`]).
    let clients = components::oidc_clients(config).map_err(|e| {
        ProviderError::Fatal(format!("building the components' login clients: {e}"))
    })?;
    let kc = Keycloak::new(admin, Secrets::new(config, clients))
        .realm_depends_on([deployment_id(config)]);
    Ok(match tunnel {
        Some(t) => kc.through(t),
        None => kc,
    })
}

/// The label selector of Keycloak's pods (`key=value,...`).
fn component_selector() -> String {
    components::selector(component::NAME)
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

impl super::Engine {
    /// The deployment's Keycloak for day-2 work (`qhub users`): reached the way the engine
    /// reaches it (`QHUB_KEYCLOAK_URL`, the provider's, a port-forward through the
    /// cluster's API server, else `https://{domain}/auth` with TLS verified), as the admin whose
    /// password is the config's `initial_root_password` or the one generated into the Secret
    /// `keycloak-admin`. [`ProviderError::NoCluster`] before the first deploy made one.
    pub async fn keycloak_admin(&self, config: &Config) -> Result<Keycloak, ProviderError> {
        let ownership = Ownership::of(config);
        let provider = &**self.provider();
        let cluster = if provider.capabilities().cluster_access {
            let access = provider.cluster_access(&ownership).await?;
            Some(access.client().await?)
        } else {
            None
        };
        let credentials = match keycloak::admin_credentials(config) {
            Some(c) => c,
            None => {
                let client = cluster.as_ref().ok_or_else(|| {
                    ProviderError::Fatal(format!(
                        "the Keycloak admin password is kept in the Secret {}/{}, which only cluster access can read, and provider `{}` hands out none: set security.keycloak.initial_root_password in the config",
                        config.namespace,
                        component::ADMIN_SECRET,
                        provider.name()
                    ))
                })?;
                let password =
                    read_key(client, &config.namespace, component::ADMIN_SECRET, "password")
                        .await?
                        .ok_or_else(|| {
                            ProviderError::NoCluster(format!(
                                "the Secret {}/{} does not exist yet: the Kubernetes stage of `qhub deploy` generates it",
                                config.namespace,
                                component::ADMIN_SECRET
                            ))
                        })?;
                AdminCredentials::new(keycloak::ADMIN_USER, password)
            }
        };
        connect(
            provider,
            &ownership,
            config,
            credentials,
            self.options().retry,
            cluster,
        )
        .await
    }
}
