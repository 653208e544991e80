//! The cluster's objects as a reconciler: built by the platform components from the config
//! and the cluster facts, observed by ApplySet membership, applied with server-side apply,
//! deleted (and replaced) through [`Applier`]. The other reconcilers of the stage build on what
//! this one plans: the DNS record waits for the ingress Service, Keycloak's realm for its
//! Deployment.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::cluster::{Cluster, connect};
use super::reconciler::{AfterApply, ObserveContext, PlanContext, Reconciler, Scope};
use super::{Engine, EngineError};
use crate::config::Config;
use crate::kubernetes::apply::Applier;
use crate::kubernetes::applyset::ApplySet;
use crate::plan::{self, Action, Change, Plan, ResourceId, Stage};
use crate::provider::{ClusterFacts, Ownership, ProviderError};

/// The Kubernetes objects: every resource of the stage the later reconcilers do not claim.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    /// The plan's objects were built with placeholders (or a replaced resource may come back
    /// with other facts): build them again once the infrastructure exists.
    rebuild: AtomicBool,
    /// The objects built again from the facts of the applied infrastructure.
    fresh: tokio::sync::OnceCell<BTreeMap<ResourceId, plan::Resource>>,
}

#[async_trait]
impl Reconciler for Objects {
    fn owns(&self, _id: &ResourceId) -> bool {
        true
    }

    async fn plan(&self, engine: &Engine, cx: &mut PlanContext<'_>) -> Result<(), EngineError> {
        let (k8s, unknown) = kubernetes_desired(engine, cx.config, cx.infra)?;
        let (mut observed, applier) = observe_kubernetes(engine, cx.ownership, &k8s).await?;
        super::offline::planned_from_config(cx.preview, applier.is_some());
        if let Some(applier) = &applier {
            // Someone else's namespace is used, not taken over (and never destroyed: a
            // destroy observes only ApplySet members).
            let set = ApplySet::new(&cx.ownership.namespace);
            let unowned = engine
                .read("observing objects qhub uses but does not own", || async {
                    applier
                        .observe_unowned(&set, &k8s)
                        .await
                        .map_err(ProviderError::from)
                })
                .await?;
            observed.extend(unowned);
            // CRDs another manager installed, which the apply uses as they are.
            let shared = engine
                .read("reading the cluster's CRDs", || async {
                    applier.shared_crds(&k8s).await.map_err(ProviderError::from)
                })
                .await?;
            observed.retain(|o| !shared.iter().any(|s| s.id == o.id));
            observed.extend(shared);
            // What the controllers of a component the config no longer builds made for users
            // (DaskClusters and, through them, their pods): pruned with the component.
            let facts = engine.provider().cluster_facts(cx.config, cx.infra);
            let orphaned: Vec<(&str, &str)> =
                crate::kubernetes::components::run_time_kinds(cx.config, &facts)
                    .into_iter()
                    .filter(|(_, _, enabled)| !enabled)
                    .map(|(api_version, kind, _)| (api_version, kind))
                    .collect();
            if !orphaned.is_empty() {
                let made = engine
                    .read(
                        "observing what a dropped component's controllers made",
                        || async {
                            applier
                                .observe_run_time(&cx.ownership.namespace, &orphaned, false)
                                .await
                                .map_err(ProviderError::from)
                        },
                    )
                    .await?;
                observed.extend(made);
            }
        }
        // A deploy never prunes a CRD (crd_policy): one the config no longer wants is kept.
        observed.retain(|o| {
            let prune =
                crate::kubernetes::crd_policy::is_crd(&o.id) && !k8s.iter().any(|d| d.id == o.id);
            if prune {
                cx.kept.push(plan::Kept {
                    id: o.id.clone(),
                    why: crate::kubernetes::crd_policy::never_pruned(),
                });
            }
            !prune
        });
        // Only what a planned object actually holds a placeholder for is "known after apply"
        // (and the manifests are searched only when some fact is unknown).
        if !unknown.is_empty() {
            cx.after_apply.push(AfterApply {
                names: unknown,
                holds: Box::new(|c: &Change| {
                    c.stage == Stage::Kubernetes
                        && c.desired.as_ref().is_some_and(|d| {
                            d.payload
                                .as_ref()
                                .unwrap_or(&d.spec)
                                .to_string()
                                .contains(crate::provider::facts::AFTER_APPLY)
                        })
                }),
            });
        }
        cx.objects = k8s;
        cx.objects_observed = observed;
        cx.applier = applier;
        Ok(())
    }

    /// Found by ApplySet membership, in the kinds the parent lists and the kinds the config's
    /// components use (so that members are found even when an interrupted run left no
    /// parent).
    async fn observe(
        &self,
        engine: &Engine,
        cx: &mut ObserveContext<'_>,
    ) -> Result<(), EngineError> {
        let kinds = crate::kubernetes::desired(cx.config, &ClusterFacts::from_config(cx.config))
            .unwrap_or_default();
        let (k8s, connected) = observe_kubernetes(engine, cx.ownership, &kinds).await?;
        cx.observed.extend(k8s);
        // What every component's controllers made for users: a destroy deletes it.
        if let Some(applier) = &connected {
            let facts = ClusterFacts::from_config(cx.config);
            let all: Vec<(&str, &str)> =
                crate::kubernetes::components::run_time_kinds(cx.config, &facts)
                    .into_iter()
                    .map(|(api_version, kind, _)| (api_version, kind))
                    .collect();
            let made = engine
                .read("observing what the platform's controllers made", || async {
                    applier
                        .observe_run_time(&cx.ownership.namespace, &all, true)
                        .await
                        .map_err(ProviderError::from)
                })
                .await?;
            cx.observed.extend(made);
        }
        cx.applier = connected;
        Ok(())
    }

    fn prepare(&self, plan: &Plan) {
        // A replaced resource may come back with other facts (a shared filesystem's address):
        // the objects are built from the new ones.
        let rebuild = !plan.known_after_apply.is_empty()
            || plan
                .changes
                .iter()
                .any(|c| c.stage == Stage::Infrastructure && c.action == Action::Replace);
        self.rebuild.store(rebuild, Ordering::SeqCst);
    }

    async fn apply(
        &self,
        scope: &Scope,
        change: &Change,
        deadline: Duration,
    ) -> Result<(), ProviderError> {
        self.apply_object(scope, change, deadline).await
    }
}

impl Objects {
    /// Applies one Kubernetes change through the (lazily connected) cluster client.
    async fn apply_object(
        &self,
        scope: &Scope,
        change: &Change,
        deadline: Duration,
    ) -> Result<(), ProviderError> {
        let cluster = scope.cluster().await?;
        let Some(Cluster { applier, .. }) = cluster else {
            if change.action == Action::Delete {
                // No cluster, so no object either.
                return Ok(());
            }
            return Err(ProviderError::NoCluster(format!(
                "cannot apply {} before the cluster exists",
                change.id
            )));
        };
        match change.action {
            Action::Delete => {
                let target = change
                    .observed
                    .as_ref()
                    .and_then(|o| o.payload.as_ref())
                    .ok_or_else(|| {
                        ProviderError::Fatal(format!(
                            "{}: nothing to address the object by",
                            change.id
                        ))
                    })?;
                applier.delete(target, deadline).await.map_err(Into::into)
            }
            _ => {
                let planned = change.desired.as_ref().ok_or_else(|| {
                    ProviderError::Fatal(format!("{}: no desired object", change.id))
                })?;
                let desired = if self.rebuild.load(Ordering::SeqCst) {
                    let fresh = self
                        .fresh
                        .get_or_try_init(|| rebuild_kubernetes(scope))
                        .await?;
                    fresh.get(&change.id).unwrap_or(planned)
                } else {
                    planned
                };
                let manifest = desired.payload.as_ref().unwrap_or(&desired.spec);
                // A field the API server never lets change: delete the object (waiting until it
                // is gone), then create it again.
                if change.action == Action::Replace
                    && let Some(target) = change.observed.as_ref().and_then(|o| o.payload.as_ref())
                {
                    applier
                        .delete(target, deadline)
                        .await
                        .map_err(ProviderError::from)?;
                }
                applier
                    .apply(manifest, &desired.spec, deadline)
                    .await
                    .map_err(Into::into)
            }
        }
    }
}

/// The Kubernetes objects built again from the facts of the infrastructure as it is now.
async fn rebuild_kubernetes(
    scope: &Scope,
) -> Result<BTreeMap<ResourceId, plan::Resource>, ProviderError> {
    let infra = crate::retry::retry(&scope.options.retry, "observing the infrastructure", || {
        scope.provider.observe(&scope.ownership)
    })
    .await?;
    let facts = scope.provider.cluster_facts(&scope.config, &infra);
    if let Some(unknown) = facts.unknown().first() {
        return Err(ProviderError::Fatal(format!(
            "the {unknown} is still unknown after the infrastructure was applied"
        )));
    }
    let objects = crate::kubernetes::desired(&scope.config, &facts)?;
    Ok(objects.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// The Kubernetes stage's resources, built from the config and the cluster facts the
/// provider derives from the observed infrastructure; with the names of the facts not
/// known yet.
fn kubernetes_desired(
    engine: &Engine,
    config: &Config,
    infra: &[plan::Observed],
) -> Result<(Vec<plan::Resource>, Vec<String>), EngineError> {
    let facts = engine.provider().cluster_facts(config, infra);
    let k8s = crate::kubernetes::desired(config, &facts).map_err(|e| EngineError::Provider {
        what: "building the Kubernetes objects".into(),
        source: e.into(),
    })?;
    Ok((k8s, facts.unknown()))
}

/// The deployment's objects in the kinds `desired` uses (and those its ApplySet lists), with
/// the client that read them; `None` while the cluster does not exist.
pub(super) async fn observe_kubernetes(
    engine: &Engine,
    ownership: &Ownership,
    desired: &[plan::Resource],
) -> Result<(Vec<plan::Observed>, Option<Applier>), EngineError> {
    let set = ApplySet::new(&ownership.namespace);
    let mut kinds: Vec<(String, String)> = Vec::new();
    for r in desired {
        let manifest = r.payload.as_ref().unwrap_or(&r.spec);
        if let Ok(o) = crate::kubernetes::ObjectRef::of(manifest) {
            let pair = (o.api_version, o.kind);
            if !kinds.contains(&pair) {
                kinds.push(pair);
            }
        }
    }
    let provider = &**engine.provider();
    engine
        .read("observing Kubernetes objects", || async {
            match connect(provider, ownership).await? {
                None => Ok((Vec::new(), None)),
                Some(applier) => {
                    let observed = applier.observe(&set, &kinds).await?;
                    Ok((observed, Some(applier)))
                }
            }
        })
        .await
}
