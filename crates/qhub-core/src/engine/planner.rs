//! Planning: what exists, observed by the provider and the reconcilers of the Kubernetes
//! stage, against what the config wants.

use std::sync::Arc;

use super::reconciler::{ObserveContext, PlanContext, Reconciler};
use super::{Engine, EngineError, StageFilter, conda_store, connect, dns, keycloak, objects};
use crate::config::Config;
use crate::kubernetes::apply::Applier;
use crate::kubernetes::applyset::ApplySet;
use crate::plan::{self, Plan, Stage};
use crate::provider::{Ownership, ProviderError};

/// The backends of the Kubernetes stage, in planning order: each may read (and add
/// dependencies to) what those before it planned, and a change goes to the last that owns it.
/// A fresh set for every plan, observation and apply, so that what one run learns stays in it.
/// The next backend (conda-store environments, Grafana) is one more line here.
pub(super) fn reconcilers() -> Vec<Arc<dyn Reconciler>> {
    vec![
        Arc::new(objects::Objects::default()),
        Arc::new(dns::Dns::default()),
        Arc::new(keycloak::Identity::default()),
        Arc::new(conda_store::Environments::default()),
    ]
}

impl Engine {
    async fn observe(&self, ownership: &Ownership) -> Result<Vec<plan::Observed>, EngineError> {
        if !self.provider.capabilities().infrastructure {
            return Ok(Vec::new());
        }
        self.read("observing existing resources", || {
            self.provider.observe(ownership)
        })
        .await
    }

    /// The plan that takes what exists to what `config` wants, to be shown (`qhub plan`): before
    /// the cluster exists the Kubernetes stage is planned from the config
    /// (the `offline` module). It takes no lock: a plan to apply is made through
    /// [`Engine::lock`].
    pub async fn plan(&self, config: &Config, stages: StageFilter) -> Result<Plan, EngineError> {
        self.plan_with(config, stages, true).await
    }

    /// [`Engine::plan`]; `preview`: the plan is shown, not applied.
    pub(super) async fn plan_with(
        &self,
        config: &Config,
        stages: StageFilter,
        preview: bool,
    ) -> Result<Plan, EngineError> {
        let ownership = Ownership::of(config);
        let mut desired = Vec::new();
        let mut observed = Vec::new();
        let stage = self.kubernetes_planned(&ownership, stages, preview).await?;
        let kubernetes = stage.planned;
        // The infrastructure as it is: planned in its own stage, and the source of the cluster
        // facts of the Kubernetes stage.
        let infra = if stages.includes(Stage::Infrastructure) || kubernetes {
            self.observe(&ownership).await?
        } else {
            Vec::new()
        };
        if stages.includes(Stage::Infrastructure) {
            let provider = &*self.provider;
            let facts = self
                .read("discovering what the cloud offers", || {
                    provider.discover(config)
                })
                .await?;
            desired =
                self.provider
                    .desired(config, &facts)
                    .map_err(|source| EngineError::Provider {
                        what: "computing the desired infrastructure".into(),
                        source,
                    })?;
            observed.extend(infra.iter().cloned());
        }
        let mut cx = PlanContext::new(config, &ownership, &infra);
        cx.preview = preview;
        cx.offline = stage.offline;
        if kubernetes {
            for r in reconcilers() {
                r.plan(self, &mut cx).await?;
            }
        }
        // The cluster's objects come after the resources built on them, as the plan has always
        // listed them.
        desired.extend(cx.desired);
        desired.extend(cx.objects);
        observed.extend(cx.observed);
        observed.extend(cx.objects_observed);
        let mut plan = plan::diff_allowing(&desired, &observed, &self.options.allow_replace);
        if let Some(refusal) = plan.refusal() {
            return Err(EngineError::Refused(refusal));
        }
        plan.notes = cx.notes;
        plan.kept = cx.kept;
        if stages == StageFilter::All && kubernetes {
            let after = crate::cost::Shape::of_config(config);
            plan.cost = self.cost_change(config, &observed, &after, &plan);
        }
        for after in cx.after_apply {
            if plan.changes.iter().any(|c| (after.holds)(c)) {
                plan.known_after_apply.extend(after.names);
            }
        }
        Ok(plan)
    }

    /// The plan that deletes everything this deployment owns. It takes no lock: a plan to
    /// apply is made through [`Engine::lock`].
    pub async fn destroy_plan(
        &self,
        config: &Config,
        stages: StageFilter,
    ) -> Result<Plan, EngineError> {
        let (mut observed, notes, applier) = self.observe_owned(config, stages).await?;
        // When the cluster itself goes, its CRDs go with it: nothing to review.
        let cluster_goes = observed.iter().any(|o| o.stage == Stage::Infrastructure);
        let mut kept = Vec::new();
        if let Some(applier) = applier.as_ref().filter(|_| !cluster_goes) {
            let set = ApplySet::for_config(config);
            let delete_crds = self.options.delete_crds;
            kept = self
                .read("reviewing the CRDs qhub would delete", || async {
                    crate::kubernetes::crd_policy::review(applier, &set, &observed, delete_crds)
                        .await
                        .map_err(ProviderError::from)
                })
                .await?;
            observed.retain(|o| !kept.iter().any(|k| k.id == o.id));
        }
        let mut plan = plan::destroy(&observed);
        plan.notes = notes;
        plan.kept = kept;
        if stages == StageFilter::All {
            // Everything goes: nothing priced is left.
            plan.cost = self.cost_change(config, &observed, &crate::cost::Shape::default(), &plan);
        }
        Ok(plan)
    }

    /// How `plan` moves the cost (shown only when it moves it): what exists now, as the
    /// provider maps `observed` (both stages), against `after`. With a provider that cannot
    /// map what it observes, the cost now is unknown and shown when the plan changes any
    /// infrastructure.
    fn cost_change(
        &self,
        config: &Config,
        observed: &[plan::Observed],
        after: &crate::cost::Shape,
        plan: &Plan,
    ) -> Option<crate::cost::CostChange> {
        if plan.is_empty() {
            return None;
        }
        let table = match crate::cost::PriceTable::shipped() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("no cost in the plan: {e}");
                return None;
            }
        };
        let before = self.provider.priced_shape(config, observed);
        let infrastructure_changes = plan
            .changes
            .iter()
            .any(|c| c.stage == Stage::Infrastructure && c.action != plan::Action::Wait);
        crate::cost::CostChange::between(
            config,
            before.as_ref(),
            after,
            infrastructure_changes,
            &table,
        )
    }

    /// Everything this deployment owns, in the given stages (what `qhub status` lists).
    /// Kubernetes objects are found by ApplySet membership, in the kinds the parent lists and
    /// the kinds the config's components use (so that members are found even when an interrupted
    /// run left no parent).
    /// The domain's DNS record is among them when qhub manages it (the DNS provider of
    /// [`super::EngineOptions::dns`]) and it carries this deployment's comment.
    pub async fn observe_all(
        &self,
        config: &Config,
        stages: StageFilter,
    ) -> Result<Vec<plan::Observed>, EngineError> {
        Ok(self.observe_owned(config, stages).await?.0)
    }

    /// [`Engine::observe_all`], with notes on what stands in the way but is not ours (a DNS
    /// record at the domain without our comment).
    async fn observe_owned(
        &self,
        config: &Config,
        stages: StageFilter,
    ) -> Result<(Vec<plan::Observed>, Vec<String>, Option<Applier>), EngineError> {
        let ownership = Ownership::of(config);
        let mut cx = ObserveContext {
            config,
            ownership: &ownership,
            applier: None,
            observed: Vec::new(),
            notes: Vec::new(),
        };
        if stages.includes(Stage::Infrastructure) {
            cx.observed.extend(self.observe(&ownership).await?);
        }
        if self.kubernetes_stage(stages)? {
            for r in reconcilers() {
                r.observe(self, &mut cx).await?;
            }
        }
        Ok((cx.observed, cx.notes, cx.applier))
    }

    /// Where the platform answers: the ingress load balancer's address, the DNS record the
    /// domain needs and each component's URL. `Ok(None)` when the provider hands out no
    /// cluster access or the cluster does not exist.
    pub async fn endpoints(
        &self,
        config: &Config,
    ) -> Result<Option<crate::kubernetes::endpoints::Endpoints>, EngineError> {
        if !self.provider.capabilities().cluster_access {
            return Ok(None);
        }
        let ownership = Ownership::of(config);
        let provider = &*self.provider;
        self.read("reading the platform's endpoints", || async {
            match connect(provider, &ownership).await? {
                None => Ok(None),
                Some(applier) => crate::kubernetes::endpoints::read(applier.client(), config)
                    .await
                    .map(Some)
                    .map_err(Into::into),
            }
        })
        .await
    }
}
