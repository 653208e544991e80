//! The plan/apply engine. No state file: it observes what exists by ownership marks, plans the
//! difference with the config, and applies the plan as a dependency graph with bounded
//! concurrency, retries with jittered backoff on retryable errors only, a deadline on every
//! change, and cancellation that lets in-flight changes finish.
//!
//! The infrastructure stage is the provider's; the Kubernetes stage is planned and applied by
//! a list of reconcilers (`reconciler`: the cluster's objects, the domain's DNS record,
//! Keycloak's configuration, conda-store's environments) that the engine schedules without knowing them by name. This
//! module holds the engine and its lock; `planner` plans, `scheduler` applies (`graph` orders the steps, `cluster` holds the
//! cluster client and the deploy lease, `front_door` checks the result).

mod cluster;
pub mod conda_store;
pub mod dns;
mod front_door;
mod graph;
pub(crate) mod identity;
mod keycloak;
mod objects;
mod offline;
mod planner;
mod reconciler;
mod scheduler;

/// Moved to the crate root ([`crate::events`]); this path stays for existing callers.
pub use crate::events;
/// Moved to the crate root ([`crate::retry`]); this path stays for existing callers.
pub use crate::retry;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::plan::{Action, Plan, ResourceId, Stage};
use crate::provider::{Ownership, Provider, ProviderError};
use cluster::connect;
use events::EventSink;
use retry::RetryPolicy;

/// Which stages a command covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StageFilter {
    /// Both stages.
    #[default]
    All,
    /// One stage.
    Only(Stage),
}

impl StageFilter {
    /// True when `stage` is covered.
    pub fn includes(self, stage: Stage) -> bool {
        match self {
            Self::All => true,
            Self::Only(s) => s == stage,
        }
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Changes applied at once.
    pub concurrency: usize,
    /// Retry policy for retryable errors, per error class.
    pub retry: RetryPolicy,
    /// The least time a change may take before it is abandoned as failed; a change's deadline
    /// is the larger of this and [`EngineOptions::deadline_factor`] × its expected duration
    /// (the provider's estimate, or [`crate::kubernetes::readiness::EXPECTED`]).
    pub min_deadline: Duration,
    /// How many times its expected duration a change may take (default 4).
    pub deadline_factor: f64,
    /// How the Kubernetes stage's deploy lease and the provider's cloud-side deploy lock are
    /// held and when they count as lost.
    pub lease: crate::kubernetes::lease::LeaseTiming,
    /// How long [`Engine::lock_with`] waits while another run holds the provider's deploy
    /// lock (default 20 minutes: an EKS cluster takes about fifteen to create).
    pub lock_wait: Duration,
    /// This run's identity in the deploy lock and lease
    /// ([`crate::kubernetes::lease::holder_identity`] by default); two runs must never share
    /// one.
    pub holder: String,
    /// Deadline for observing what exists.
    pub observe_deadline: Duration,
    /// Longest pause between two looks at a resource the engine waits for
    /// ([`Action::Wait`]); the first look comes after a fraction of it.
    pub poll_interval: Duration,
    /// The domain's DNS record: who writes it, and the wait for the name to resolve.
    pub dns: dns::DnsOptions,
    /// Resources whose replacement the user allowed explicitly (`--allow-replace`): a cascade
    /// reaching one that refuses it ([`crate::plan::OnDependencyReplaced::Refuse`]) replaces it
    /// instead of refusing the plan.
    pub allow_replace: Vec<ResourceId>,
    /// How long a delete refused as in use ([`ProviderError::InUse`]) is retried when nothing
    /// in the plan explains it: no resource that depends on it stays, and none was deleted by
    /// this apply (whose network interfaces could still be draining). Something outside the
    /// plan uses it then; the change fails after this grace (EC2's eventual consistency)
    /// instead of the whole busy budget. Default 3 minutes.
    pub in_use_grace: Duration,
    /// After a deploy, how long the front-door check waits for a route's Service to have
    /// ready endpoints (the EndpointSlice controller follows pods within seconds). Default
    /// 30 seconds.
    pub endpoints_grace: Duration,
    /// After a deploy, how long each listed service's health check may take to pass through
    /// the load balancer (a new load balancer's name takes minutes to resolve;
    /// [`crate::kubernetes::health`]). Default 10 minutes.
    pub front_door_deadline: Duration,
    /// A destroy deletes the CRDs this deployment created when no object of theirs remains
    /// outside its ApplySet (`qhub destroy --delete-crds`); without it every CRD is kept
    /// ([`crate::kubernetes::crd_policy`]).
    pub delete_crds: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            retry: RetryPolicy::default(),
            min_deadline: Duration::from_secs(30 * 60),
            deadline_factor: 4.0,
            lease: crate::kubernetes::lease::LeaseTiming::default(),
            lock_wait: Duration::from_secs(20 * 60),
            holder: crate::kubernetes::lease::holder_identity(),
            observe_deadline: Duration::from_secs(5 * 60),
            poll_interval: Duration::from_secs(15),
            dns: dns::DnsOptions::default(),
            allow_replace: Vec::new(),
            in_use_grace: Duration::from_secs(3 * 60),
            endpoints_grace: Duration::from_secs(30),
            front_door_deadline: Duration::from_secs(10 * 60),
            delete_crds: false,
        }
    }
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The provider failed outside a change (observe, desired).
    #[error("{what}: {source}")]
    Provider {
        /// What the engine was doing.
        what: String,
        /// The provider's error.
        source: ProviderError,
    },
    /// Something did not finish in time.
    #[error("{0} did not finish within {1:?}")]
    Deadline(String, Duration),
    /// The plan would replace a resource that refuses a cascaded replacement (one line per
    /// refused cascade, naming both resources, the config key and what to do).
    #[error("the plan is refused, nothing was changed:\n{0}")]
    Refused(String),
    /// The requested stage is not available.
    #[error("the {0} stage is not supported yet: {1}")]
    StageNotSupported(Stage, String),
}

/// What an apply did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    /// Changes that finished.
    pub done: Vec<(ResourceId, Action)>,
    /// Changes that failed, with the error.
    pub failed: Vec<(ResourceId, Action, String)>,
    /// Changes never started (after a failure or cancellation, or waiting on a failed change).
    pub not_started: Vec<(ResourceId, Action)>,
    /// True when cancellation stopped the apply.
    pub cancelled: bool,
    /// True when the provider reported the process killed: nothing was cleaned up.
    pub killed: bool,
    /// Retries made, in all.
    pub retries: u32,
    /// Wall time (`elapsed_secs` in JSON, as every duration of the output contract).
    #[serde(rename = "elapsed_secs", with = "secs")]
    pub elapsed: Duration,
    /// What was done to the domain's DNS record, when it is planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<crate::dns::DnsReport>,
    /// What the apply could not check and why (the front door's network probe in the
    /// sandbox).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl ApplyReport {
    /// True when every change finished.
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty() && self.not_started.is_empty() && !self.cancelled && !self.killed
    }
}

/// The engine for one provider.
#[derive(Debug, Clone)]
pub struct Engine {
    provider: Arc<dyn Provider>,
    options: EngineOptions,
}

/// The engine with the deployment's lock held: plans made through it cannot go stale before
/// they are applied, because no other qhub command can change the deployment meanwhile.
/// [`Locked::release`] lets go of the lock; dropping this without it leaves a cloud-side lock
/// to expire (as after a crash).
pub struct Locked<'e> {
    engine: &'e Engine,
    config: Config,
    ownership: Ownership,
    lock: Option<crate::provider::DeployLock>,
}

impl std::fmt::Debug for Locked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locked")
            .field("deployment", &self.ownership.prefix())
            .finish()
    }
}

impl Locked<'_> {
    /// The config this lock was taken for.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The plan that takes what exists to what the config wants.
    pub async fn plan(&self, stages: StageFilter) -> Result<Plan, EngineError> {
        self.engine.plan_with(&self.config, stages, false).await
    }

    /// The plan that deletes everything this deployment owns.
    pub async fn destroy_plan(&self, stages: StageFilter) -> Result<Plan, EngineError> {
        self.engine.destroy_plan(&self.config, stages).await
    }

    /// Applies a plan made through this lock: each change once its dependencies are done, up
    /// to `concurrency` at once, at most one per serial group. On a failure or cancellation no
    /// new change starts; changes in flight finish.
    pub async fn apply(
        &self,
        plan: &Plan,
        events: Arc<dyn EventSink>,
        cancel: CancellationToken,
    ) -> ApplyReport {
        let lock = self
            .lock
            .as_ref()
            .and_then(|l| Some((l.lost()?, l.resource()?)));
        self.engine
            .apply_plan(plan, &self.config, &self.ownership, lock, events, cancel)
            .await
    }

    /// Lets go of the deployment's lock (a cloud-side lock object is deleted if still ours).
    pub async fn release(self) {
        if let Some(lock) = self.lock {
            lock.release().await;
        }
    }
}

impl Engine {
    /// An engine over `provider`.
    pub fn new(provider: Arc<dyn Provider>, options: EngineOptions) -> Self {
        Self { provider, options }
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    /// The options.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Takes the deployment's lock for a deploy, reporting no wait; see [`Engine::lock_with`].
    pub async fn lock(&self, config: &Config) -> Result<Locked<'_>, EngineError> {
        self.lock_with(config, "deploy", Arc::new(events::NoEvents))
            .await
    }

    /// Takes the deployment's lock (the provider's cloud lock, else the local one; see
    /// [`crate::provider::take_deploy_lock`]) for `command`
    /// (`deploy`, `destroy`), waiting up to [`EngineOptions::lock_wait`] while another run
    /// holds it and reporting the wait on `events`; plan and apply through the result, then
    /// [`Locked::release`] it.
    pub async fn lock_with(
        &self,
        config: &Config,
        command: &str,
        events: Arc<dyn EventSink>,
    ) -> Result<Locked<'_>, EngineError> {
        let ownership = Ownership::of(config);
        let request = crate::provider::LockRequest {
            holder: self.options.holder.clone(),
            command: command.to_string(),
            wait: self.options.lock_wait,
            timing: self.options.lease,
            retry: self.options.retry,
            events,
        };
        let lock = crate::provider::take_deploy_lock(self.provider.as_ref(), &ownership, &request)
            .await
            .map_err(|source| EngineError::Provider {
                what: "taking the deploy lock".into(),
                source,
            })?;
        Ok(Locked {
            engine: self,
            config: config.clone(),
            ownership,
            lock,
        })
    }

    /// Takes the lock, plans and applies: what `qhub deploy --disable-prompt` does.
    pub async fn deploy(
        &self,
        config: &Config,
        stages: StageFilter,
        events: Arc<dyn EventSink>,
        cancel: CancellationToken,
    ) -> Result<(Plan, ApplyReport), EngineError> {
        let locked = self.lock_with(config, "deploy", events.clone()).await?;
        let plan = match locked.plan(stages).await {
            Ok(plan) => plan,
            Err(e) => {
                locked.release().await;
                return Err(e);
            }
        };
        let report = locked.apply(&plan, events, cancel).await;
        if !report.killed {
            locked.release().await;
        }
        Ok((plan, report))
    }

    /// Takes the lock, plans the destroy and applies it.
    pub async fn destroy(
        &self,
        config: &Config,
        stages: StageFilter,
        events: Arc<dyn EventSink>,
        cancel: CancellationToken,
    ) -> Result<(Plan, ApplyReport), EngineError> {
        let locked = self.lock_with(config, "destroy", events.clone()).await?;
        let plan = match locked.destroy_plan(stages).await {
            Ok(plan) => plan,
            Err(e) => {
                locked.release().await;
                return Err(e);
            }
        };
        let report = locked.apply(&plan, events, cancel).await;
        if !report.killed {
            locked.release().await;
        }
        Ok((plan, report))
    }

    /// Whether the Kubernetes stage runs: a provider without cluster access can only be asked
    /// for the infrastructure stage.
    fn kubernetes_stage(&self, stages: StageFilter) -> Result<bool, EngineError> {
        if !stages.includes(Stage::Kubernetes) {
            return Ok(false);
        }
        if self.provider.capabilities().cluster_access {
            return Ok(true);
        }
        if stages == StageFilter::Only(Stage::Kubernetes) {
            return Err(EngineError::StageNotSupported(
                Stage::Kubernetes,
                format!(
                    "provider `{}` does not hand out cluster access",
                    self.provider.name()
                ),
            ));
        }
        tracing::warn!(
            provider = self.provider.name(),
            "no cluster access: planning the infrastructure stage only"
        );
        Ok(false)
    }

    /// Runs a read (observe, discover, connect) with the retry policy ([`retry::retry`]) and a
    /// deadline per try; a try that outlives it ends the read.
    async fn read<T, F, Fut>(&self, what: &str, mut attempt_once: F) -> Result<T, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let deadline = self.options.observe_deadline;
        let timed_out = std::sync::atomic::AtomicBool::new(false);
        retry::retry(&self.options.retry, what, || {
            let attempt = tokio::time::timeout(deadline, attempt_once());
            let timed_out = &timed_out;
            async move {
                attempt.await.unwrap_or_else(|_| {
                    timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
                    Err(ProviderError::Fatal(format!("{what} timed out")))
                })
            }
        })
        .await
        .map_err(|source| {
            if timed_out.load(std::sync::atomic::Ordering::SeqCst) {
                EngineError::Deadline(what.to_string(), deadline)
            } else {
                EngineError::Provider {
                    what: what.to_string(),
                    source,
                }
            }
        })
    }
}
