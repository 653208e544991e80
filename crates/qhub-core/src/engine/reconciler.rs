//! The contract every non-cloud backend of the Kubernetes stage keeps: the cluster's objects
//! ([`super::objects`]), the domain's DNS record ([`super::dns`]) and Keycloak's configuration
//! ([`super::keycloak`]) and conda-store's environments ([`super::conda_store`]); the next
//! ones (Grafana) are one more implementation and one more line in [`super::reconcilers`].
//!
//! A reconciler plans its part (what the config wants and what exists of it), observes what
//! the deployment owns for a destroy or `qhub status`, and applies one change of its own. The
//! engine schedules its changes like any other (ordering, retries, deadlines, the lock); it
//! knows no backend by name.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::cluster::{Cluster, connect_locked};
use super::{ApplyReport, Engine, EngineError, EngineOptions};
use crate::config::Config;
use crate::events::{Event, EventSink};
use crate::kubernetes::apply::Applier;
use crate::plan::{self, Change, Plan, ResourceId, Stage};
use crate::provider::{Ownership, Provider, ProviderError};

/// One backend of the Kubernetes stage. A fresh set is made for every plan, observation and
/// apply ([`super::reconcilers`]), so a reconciler keeps what one run learns (a client, a report) in
/// itself.
#[async_trait]
pub(crate) trait Reconciler: Send + Sync {
    /// Whether a resource of the Kubernetes stage is this reconciler's. The engine asks the
    /// reconcilers from the last to the first and the first that says yes applies the change:
    /// a later one builds on the earlier ones and claims a narrower set.
    fn owns(&self, id: &ResourceId) -> bool;

    /// Plans this backend's part: adds what the config wants and what exists of it to `cx`.
    /// Runs in list order, so it may read (and add dependencies to) what earlier ones planned.
    async fn plan(&self, engine: &Engine, cx: &mut PlanContext<'_>) -> Result<(), EngineError>;

    /// Adds what this deployment owns of this backend to `cx` (a destroy deletes it, `qhub
    /// status` lists it). Nothing by default: what is deleted with the cluster needs no
    /// separate delete.
    async fn observe(
        &self,
        _engine: &Engine,
        _cx: &mut ObserveContext<'_>,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// Called once before an apply of `plan` starts.
    fn prepare(&self, _plan: &Plan) {}

    /// Applies one change of its own within `deadline` (the engine retries and times it out).
    /// Deleting what is already gone is done.
    async fn apply(
        &self,
        scope: &Scope,
        change: &Change,
        deadline: Duration,
    ) -> Result<(), ProviderError>;

    /// Adds what this backend has to say to the apply's report, after the apply.
    fn finish(&self, _plan: &Plan, _scope: &Scope, _report: &mut ApplyReport) {}
}

/// A name that is known only after the apply when some planned change matches.
pub(crate) struct AfterApply {
    /// What the plan lists as known after apply.
    pub names: Vec<String>,
    /// Whether a change holds one of them.
    pub holds: Box<dyn Fn(&Change) -> bool + Send + Sync>,
}

/// What the reconcilers plan together: the cluster's objects (which the others build on) and
/// everything else of the Kubernetes stage.
pub(crate) struct PlanContext<'a> {
    /// The config.
    pub config: &'a Config,
    /// The deployment's marks.
    pub ownership: &'a Ownership,
    /// The infrastructure as observed, the source of the cluster facts.
    pub infra: &'a [plan::Observed],
    /// A client for the cluster, once one connected (`None` while it does not exist).
    pub applier: Option<Applier>,
    /// The cluster's objects the config wants.
    pub objects: Vec<plan::Resource>,
    /// The cluster's objects that exist.
    pub objects_observed: Vec<plan::Observed>,
    /// The stage's other resources the config wants (listed before the objects in the plan).
    pub desired: Vec<plan::Resource>,
    /// What exists of them.
    pub observed: Vec<plan::Observed>,
    /// Notes for the plan.
    pub notes: Vec<String>,
    /// What the plan keeps although the config no longer wants it.
    pub kept: Vec<plan::Kept>,
    /// What is known only after the apply.
    pub after_apply: Vec<AfterApply>,
    /// The plan is shown, not applied (`qhub plan`).
    pub preview: bool,
    /// The stage is planned from the config alone: the cluster does not exist and this
    /// process could not reach it (see `engine::offline`).
    pub offline: bool,
}

impl<'a> PlanContext<'a> {
    /// An empty context.
    pub fn new(config: &'a Config, ownership: &'a Ownership, infra: &'a [plan::Observed]) -> Self {
        Self {
            config,
            ownership,
            infra,
            applier: None,
            objects: Vec::new(),
            objects_observed: Vec::new(),
            desired: Vec::new(),
            observed: Vec::new(),
            notes: Vec::new(),
            kept: Vec::new(),
            after_apply: Vec::new(),
            preview: false,
            offline: false,
        }
    }
}

/// What the reconcilers observe together for a destroy or `qhub status`.
pub(crate) struct ObserveContext<'a> {
    /// The config.
    pub config: &'a Config,
    /// The deployment's marks.
    pub ownership: &'a Ownership,
    /// A client for the cluster, once one connected.
    pub applier: Option<Applier>,
    /// What the deployment owns.
    pub observed: Vec<plan::Observed>,
    /// What stands in the way but is not ours.
    pub notes: Vec<String>,
}

/// What a reconciler's apply may use: the cloud, the settings, the config, progress, and the
/// cluster (connected, and its deploy lease taken, on first use).
pub(crate) struct Scope {
    /// The cloud.
    pub provider: Arc<dyn Provider>,
    /// The engine's settings.
    pub options: EngineOptions,
    /// The deployment's marks.
    pub ownership: Ownership,
    /// The config.
    pub config: Config,
    /// The cluster during the apply, made on first use.
    pub(super) cluster: tokio::sync::OnceCell<Option<Cluster>>,
    /// Cancelled when the deploy lease is lost: no new change starts.
    pub(super) lease_lost: CancellationToken,
    /// Where progress goes.
    pub events: Arc<dyn EventSink>,
}

impl Scope {
    /// The scope of one apply, with no cluster connected yet.
    pub(super) fn new(
        provider: Arc<dyn Provider>,
        options: EngineOptions,
        ownership: Ownership,
        config: Config,
        events: Arc<dyn EventSink>,
    ) -> Self {
        Self {
            provider,
            options,
            ownership,
            config,
            cluster: tokio::sync::OnceCell::new(),
            lease_lost: CancellationToken::new(),
            events,
        }
    }

    /// The cluster, connected (and its deploy lease taken) on first use; `None` while it
    /// does not exist.
    pub(crate) async fn cluster(&self) -> Result<&Option<Cluster>, ProviderError> {
        self.cluster
            .get_or_try_init(|| async {
                let mut cluster = connect_locked(
                    &*self.provider,
                    &self.ownership,
                    self.options.lease,
                    &self.options.holder,
                    &self.lease_lost,
                )
                .await?;
                if let Some(c) = cluster.as_mut() {
                    // Long waits inside an apply (a CRD being established, finalizers) show
                    // as progress.
                    let events = self.events.clone();
                    c.applier = c.applier.clone().with_progress(Arc::new(move |id, detail| {
                        events.emit(&Event::Waiting {
                            stage: Some(Stage::Kubernetes),
                            resource: id.clone(),
                            detail: detail.to_string(),
                        });
                    }));
                }
                Ok(cluster)
            })
            .await
    }
}
