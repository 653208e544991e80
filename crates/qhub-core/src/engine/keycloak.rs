//! Keycloak's configuration (realm, groups, identity provider, clients) as a reconciler of the
//! Kubernetes stage ([`super::identity`] says where its admin API answers and with which
//! credentials).

use std::time::Duration;

use async_trait::async_trait;

use super::identity;
use super::reconciler::{AfterApply, PlanContext, Reconciler, Scope};
use super::{Engine, EngineError};
use crate::config::Config;
use crate::keycloak::{self, Keycloak, Secrets};
use crate::kubernetes::apply::Applier;
use crate::plan::{self, Action, Change, ResourceId};
use crate::provider::{Ownership, ProviderError};

/// Keycloak's configuration. Nothing of it is observed for a destroy: it lives in Keycloak's
/// database, which goes with its Deployment.
#[derive(Debug, Default)]
pub(crate) struct Identity {
    /// The admin client, made on the first change of an apply.
    client: tokio::sync::OnceCell<Keycloak>,
}

#[async_trait]
impl Reconciler for Identity {
    fn owns(&self, id: &ResourceId) -> bool {
        identity::is_identity(id)
    }

    async fn plan(&self, engine: &Engine, cx: &mut PlanContext<'_>) -> Result<(), EngineError> {
        if !cx.offline && !identity::reachable(&**engine.provider()) {
            cx.notes.push(identity::NOT_REACHABLE.to_string());
            return Ok(());
        }
        let (desired, observed, secrets) = plan_identity(
            engine,
            cx.config,
            cx.ownership,
            &cx.objects_observed,
            cx.applier.as_ref(),
        )
        .await?;
        cx.desired.extend(desired);
        cx.observed.extend(observed);
        let unknown = secrets.unknown_clients();
        if !unknown.is_empty() {
            if !cx.offline && cx.applier.is_none() {
                cx.notes
                    .push(identity::unreadable_note(cx.config, &unknown));
            }
            let ids: Vec<String> = unknown.iter().map(|c| c.client_id.clone()).collect();
            cx.after_apply.push(AfterApply {
                names: unknown
                    .iter()
                    .map(|c| identity::after_apply_name(cx.config, c))
                    .collect(),
                holds: Box::new(move |c: &Change| {
                    c.id.kind == keycloak::desired::KIND_CLIENT
                        && c.action != Action::Delete
                        && ids.contains(&c.id.name)
                }),
            });
        }
        Ok(())
    }

    async fn apply(
        &self,
        scope: &Scope,
        change: &Change,
        _deadline: Duration,
    ) -> Result<(), ProviderError> {
        apply_identity(&self.client, scope, change).await
    }
}

/// Keycloak's configuration: what the config wants, what exists (read only when Keycloak
/// runs), and the client secrets it was planned with (those whose Secret could not be read are
/// unknown).
async fn plan_identity(
    engine: &Engine,
    config: &Config,
    ownership: &Ownership,
    k8s_observed: &[plan::Observed],
    applier: Option<&Applier>,
) -> Result<(Vec<plan::Resource>, Vec<plan::Observed>, Secrets), EngineError> {
    let provider = &**engine.provider();
    let running = identity::running(config, k8s_observed);
    let credentials = if running {
        engine
            .read("reading the Keycloak admin credentials", || {
                identity::credentials(config, applier)
            })
            .await?
    } else {
        identity::credentials(config, None)
            .await
            .map_err(|source| EngineError::Provider {
                what: "reading the Keycloak admin credentials".into(),
                source,
            })?
    };
    let cluster = applier.map(Applier::client);
    let secrets = engine
        .read("reading the login clients' Secrets", || {
            identity::secrets(config, cluster.as_ref(), identity::Read::All)
        })
        .await?;
    let desired = identity::desired(config, &secrets).map_err(|source| EngineError::Provider {
        what: "computing Keycloak's configuration".into(),
        source,
    })?;
    let observed = match (running, credentials) {
        (true, Some(credentials)) => {
            engine
                .read("observing Keycloak's configuration", || async {
                    let kc = identity::connect(
                        provider,
                        ownership,
                        config,
                        credentials.clone(),
                        engine.options().retry,
                        applier.map(Applier::client),
                    )
                    .await?;
                    kc.observe().await.map_err(ProviderError::from)
                })
                .await?
        }
        // Before Keycloak runs nothing of its configuration can exist.
        _ => Vec::new(),
    };
    Ok((desired, observed, secrets))
}

/// Applies one change of Keycloak's configuration through its admin API, with the resource
/// built again at apply time: a client's with its secret read now from the Secret its
/// component owns (a first plan knew none; the client's change waits for that Secret).
async fn apply_identity(
    client: &tokio::sync::OnceCell<Keycloak>,
    shared: &Scope,
    change: &Change,
) -> Result<(), ProviderError> {
    let cluster = shared.cluster().await?;
    let applier = cluster.as_ref().map(|c| &c.applier);
    let kc = client
        .get_or_try_init(|| async {
            let credentials = identity::credentials(&shared.config, applier)
                .await?
                .ok_or_else(|| {
                    ProviderError::Fatal(format!(
                        "the Keycloak admin password is unknown: the Secret {}/{} does not exist",
                        shared.config.namespace,
                        crate::kubernetes::components::keycloak::ADMIN_SECRET
                    ))
                })?;
            identity::connect(
                &*shared.provider,
                &shared.ownership,
                &shared.config,
                credentials,
                shared.options.retry,
                applier.map(Applier::client),
            )
            .await
        })
        .await?;
    let is_client = change.id.kind == keycloak::desired::KIND_CLIENT;
    let read = match (change.action, is_client) {
        (Action::Delete, _) | (_, false) => identity::Read::None,
        (_, true) => identity::Read::Only(&change.id.name),
    };
    let kube = applier.map(Applier::client);
    let secrets = identity::secrets(&shared.config, kube.as_ref(), read).await?;
    let mut change = change.clone();
    if change.action != Action::Delete {
        if is_client
            && secrets
                .unknown_clients()
                .iter()
                .any(|c| c.client_id == change.id.name)
        {
            return Err(identity::unknown_secret_error(
                &shared.config,
                &change.id.name,
                kube.is_some(),
            ));
        }
        let fresh = identity::desired(&shared.config, &secrets)?;
        if let Some(d) = fresh.into_iter().find(|r| r.id == change.id) {
            change.desired = Some(d);
        }
    }
    keycloak::reconcile::apply(kc.client(), keycloak::REALM, &secrets, &change)
        .await
        .map_err(Into::into)
}
