//! Keycloak's configuration (realm, groups, identity provider, clients) as a reconciler of the
//! Kubernetes stage ([`super::identity`] says where its admin API answers and with which
//! credentials).

use std::time::Duration;

use async_trait::async_trait;

use super::identity;
use super::reconciler::{AfterApply, PlanContext, Reconciler, Scope};
use super::{Engine, EngineError};
use crate::config::Config;
use crate::keycloak::Keycloak;
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
        let (desired, observed, known) = plan_identity(
            engine,
            cx.config,
            cx.ownership,
            &cx.objects_observed,
            cx.applier.as_ref(),
        )
        .await?;
        cx.desired.extend(desired);
        cx.observed.extend(observed);
        if !known {
            cx.after_apply.push(AfterApply {
                names: vec![identity::AFTER_APPLY.to_string()],
                holds: Box::new(|c: &Change| {
                    identity::is_identity(&c.id) && c.action != Action::Delete
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
/// runs), and whether the client secrets are known yet.
async fn plan_identity(
    engine: &Engine,
    config: &Config,
    ownership: &Ownership,
    k8s_observed: &[plan::Observed],
    applier: Option<&Applier>,
) -> Result<(Vec<plan::Resource>, Vec<plan::Observed>, bool), EngineError> {
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
    let (desired, known) = identity::desired(config, credentials.as_ref()).map_err(|source| {
        EngineError::Provider {
            what: "computing Keycloak's configuration".into(),
            source,
        }
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
    Ok((desired, observed, known))
}

/// Applies one change of Keycloak's configuration through its admin API, with the resource
/// built again from the real admin credentials (a first plan knew no client secret).
async fn apply_identity(
    client: &tokio::sync::OnceCell<Keycloak>,
    shared: &Scope,
    change: &Change,
) -> Result<(), ProviderError> {
    let kc = client
        .get_or_try_init(|| async {
            let provider = &*shared.provider;
            let cluster = shared.cluster().await?;
            let applier = cluster.as_ref().map(|c| &c.applier);
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
                provider,
                &shared.ownership,
                &shared.config,
                credentials,
                shared.options.retry,
                applier.map(Applier::client),
            )
            .await
        })
        .await?;
    let mut change = change.clone();
    if change.action != Action::Delete {
        let fresh = kc.desired(&shared.config)?;
        if let Some(d) = fresh.into_iter().find(|r| r.id == change.id) {
            change.desired = Some(d);
        }
    }
    kc.apply(&change).await.map_err(Into::into)
}
