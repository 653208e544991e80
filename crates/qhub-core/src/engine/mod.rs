//! The plan/apply engine. No state file: it observes what exists by ownership marks, plans the
//! difference with the config, and applies the plan as a dependency graph with bounded
//! concurrency, retries with jittered backoff on retryable errors only, a deadline on every
//! change, and cancellation that lets in-flight changes finish.

pub mod dns;
pub mod events;
mod identity;

pub mod retry;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::kubernetes::apply::Applier;
use crate::kubernetes::applyset::ApplySet;
use crate::plan::ResourceState;
use crate::plan::{self, Action, Change, Plan, ResourceId, Stage};
use crate::provider::{ApplyContext, ClusterFacts, Ownership, Provider, ProviderError};
use events::{Event, EventSink};
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
    /// reaching one that refuses it ([`plan::OnDependencyReplaced::Refuse`]) replaces it
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
    /// After a deploy, how long each URL may take to answer through the load balancer (a new
    /// load balancer's name takes minutes to resolve). Default 10 minutes.
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
        self.engine.plan(&self.config, stages).await
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

    /// Takes the deployment's lock (the provider's, see [`Provider::lock`]) for `command`
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
        let lock = self
            .provider
            .lock(&ownership, &request)
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

    async fn observe_kubernetes(
        &self,
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
        let provider = &*self.provider;
        self.read("observing Kubernetes objects", || async {
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

    async fn observe(&self, ownership: &Ownership) -> Result<Vec<plan::Observed>, EngineError> {
        if !self.provider.capabilities().infrastructure {
            return Ok(Vec::new());
        }
        self.read("observing existing resources", || {
            self.provider.observe(ownership)
        })
        .await
    }

    /// The Kubernetes stage's resources, built from the config and the cluster facts the
    /// provider derives from the observed infrastructure; with the names of the facts not
    /// known yet.
    fn kubernetes_desired(
        &self,
        config: &Config,
        infra: &[plan::Observed],
    ) -> Result<(Vec<plan::Resource>, Vec<String>), EngineError> {
        let facts = self.provider.cluster_facts(config, infra);
        let k8s =
            crate::kubernetes::desired(config, &facts).map_err(|e| EngineError::Provider {
                what: "building the Kubernetes objects".into(),
                source: e.into(),
            })?;
        Ok((k8s, facts.unknown()))
    }

    /// The plan that takes what exists to what `config` wants. It takes no lock: a plan to
    /// apply is made through [`Engine::lock`].
    pub async fn plan(&self, config: &Config, stages: StageFilter) -> Result<Plan, EngineError> {
        let ownership = Ownership::of(config);
        let mut desired = Vec::new();
        let mut observed = Vec::new();
        let kubernetes = self.kubernetes_stage(stages)?;
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
        let mut known_after_apply = Vec::new();
        let mut notes = Vec::new();
        let mut identity_unknown = false;
        if kubernetes {
            let (mut k8s, unknown) = self.kubernetes_desired(config, &infra)?;
            known_after_apply = unknown;
            let (mut k8s_observed, applier) = self.observe_kubernetes(&ownership, &k8s).await?;
            if let Some(applier) = &applier {
                // Someone else's namespace is used, not taken over (and never destroyed: a
                // destroy observes only ApplySet members).
                let set = ApplySet::new(&ownership.namespace);
                let unowned = self
                    .read("observing objects qhub uses but does not own", || async {
                        applier
                            .observe_unowned(&set, &k8s)
                            .await
                            .map_err(ProviderError::from)
                    })
                    .await?;
                k8s_observed.extend(unowned);
            }
            if let Some((record, existing)) = self
                .plan_dns(config, &mut k8s, &k8s_observed, applier.as_ref())
                .await?
            {
                desired.push(record);
                observed.extend(existing);
            }
            if identity::reachable(&*self.provider) {
                let (kc_desired, kc_observed, known) = self
                    .plan_identity(config, &ownership, &k8s_observed, applier.as_ref())
                    .await?;
                identity_unknown = !known;
                desired.extend(kc_desired);
                observed.extend(kc_observed);
            } else {
                notes.push(identity::NOT_REACHABLE.to_string());
            }
            observed.extend(k8s_observed);
            // CRDs another manager installed, which the apply uses as they are.
            if let Some(applier) = &applier {
                let shared = self
                    .read("reading the cluster's CRDs", || async {
                        applier.shared_crds(&k8s).await.map_err(ProviderError::from)
                    })
                    .await?;
                observed.retain(|o| !shared.iter().any(|s| s.id == o.id));
                observed.extend(shared);
            }
            desired.extend(k8s);
        }
        // A deploy never prunes a CRD (crd_policy): one the config no longer wants is kept.
        let mut kept = Vec::new();
        observed.retain(|o| {
            let prune = crate::kubernetes::crd_policy::is_crd(&o.id)
                && !desired.iter().any(|d| d.id == o.id);
            if prune {
                kept.push(plan::Kept {
                    id: o.id.clone(),
                    why: crate::kubernetes::crd_policy::never_pruned(),
                });
            }
            !prune
        });
        let mut plan = plan::diff_allowing(&desired, &observed, &self.options.allow_replace);
        if let Some(refusal) = plan.refusal() {
            return Err(EngineError::Refused(refusal));
        }
        plan.notes = notes;
        plan.kept = kept;
        // Only what a planned object actually holds a placeholder for is "known after apply"
        // (and the manifests are searched only when some fact is unknown).
        let placeholder = !known_after_apply.is_empty()
            && plan.changes.iter().any(|c| {
                c.stage == Stage::Kubernetes
                    && c.desired.as_ref().is_some_and(|d| {
                        d.payload
                            .as_ref()
                            .unwrap_or(&d.spec)
                            .to_string()
                            .contains(crate::provider::facts::AFTER_APPLY)
                    })
            });
        if placeholder {
            plan.known_after_apply = known_after_apply;
        }
        if identity_unknown
            && plan
                .changes
                .iter()
                .any(|c| identity::is_identity(&c.id) && c.action != Action::Delete)
        {
            plan.known_after_apply
                .push(identity::AFTER_APPLY.to_string());
        }
        Ok(plan)
    }

    /// Keycloak's configuration: what the config wants, what exists (read only when Keycloak
    /// runs), and whether the client secrets are known yet.
    async fn plan_identity(
        &self,
        config: &Config,
        ownership: &Ownership,
        k8s_observed: &[plan::Observed],
        applier: Option<&Applier>,
    ) -> Result<(Vec<plan::Resource>, Vec<plan::Observed>, bool), EngineError> {
        let provider = &*self.provider;
        let running = identity::running(config, k8s_observed);
        let credentials = if running {
            self.read("reading the Keycloak admin credentials", || {
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
        let (desired, known) =
            identity::desired(config, credentials.as_ref()).map_err(|source| {
                EngineError::Provider {
                    what: "computing Keycloak's configuration".into(),
                    source,
                }
            })?;
        let observed = match (running, credentials) {
            (true, Some(credentials)) => {
                self.read("observing Keycloak's configuration", || async {
                    let kc = identity::connect(
                        provider,
                        ownership,
                        config,
                        credentials.clone(),
                        self.options.retry,
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
        Ok(plan)
    }

    /// Everything this deployment owns, in the given stages (what `qhub status` lists).
    /// Kubernetes objects are found by ApplySet membership, in the kinds the parent lists and
    /// the kinds the config's components use (so that members are found even when an interrupted
    /// run left no parent).
    /// The domain's DNS record is among them when qhub manages it (the DNS provider of
    /// [`EngineOptions::dns`]) and it carries this deployment's comment.
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
        let mut observed = Vec::new();
        let mut notes = Vec::new();
        let mut applier = None;
        if stages.includes(Stage::Infrastructure) {
            observed.extend(self.observe(&ownership).await?);
        }
        if self.kubernetes_stage(stages)? {
            let kinds = crate::kubernetes::desired(config, &ClusterFacts::from_config(config))
                .unwrap_or_default();
            let (k8s, connected) = self.observe_kubernetes(&ownership, &kinds).await?;
            observed.extend(k8s);
            applier = connected;
            // Read whether or not the cluster still exists: a destroy interrupted after the
            // cluster went can still delete the record.
            let (record, dns_notes) = self.observe_dns(config).await?;
            observed.extend(record);
            notes.extend(dns_notes);
        }
        Ok((observed, notes, applier))
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

    /// Applies a plan (the lock is held by the caller, see [`Locked::apply`]).
    async fn apply_plan(
        &self,
        plan: &Plan,
        config: &Config,
        ownership: &Ownership,
        lock: Option<(CancellationToken, ResourceId)>,
        events: Arc<dyn EventSink>,
        cancel: CancellationToken,
    ) -> ApplyReport {
        let start = Instant::now();
        let mut report = ApplyReport::default();
        events.emit(&Event::ApplyStarted {
            changes: plan.changes.len(),
        });
        let changes = steps(&plan.changes);
        let waits = wait_sets(&changes);
        let users = users(&changes, &plan.resources);
        let mut pending: BTreeSet<usize> = (0..changes.len()).collect();
        let mut finished: BTreeSet<usize> = BTreeSet::new();
        let mut running: JoinSet<Finished> = JoinSet::new();
        // Serial groups with a mutating change in flight.
        let mut busy: BTreeSet<String> = BTreeSet::new();
        let mut stop = false;
        let mut cancel_announced = false;
        // The cluster client, made on first use (after the infrastructure exists), with
        // credentials minted then rather than at plan time.
        let mut kubernetes_left = plan
            .changes
            .iter()
            .filter(|c| c.stage == Stage::Kubernetes)
            .count();
        let shared = Arc::new(Shared {
            provider: self.provider.clone(),
            options: self.options.clone(),
            ownership: ownership.clone(),
            config: config.clone(),
            // A replaced resource may come back with other facts (a shared filesystem's
            // address): the Kubernetes objects are built from the new ones.
            rebuild: !plan.known_after_apply.is_empty()
                || plan
                    .changes
                    .iter()
                    .any(|c| c.stage == Stage::Infrastructure && c.action == Action::Replace),
            children: plan
                .resources
                .iter()
                .filter(|r| r.created_with.is_some())
                .cloned()
                .collect(),
            applied: std::sync::Mutex::default(),
            cluster: tokio::sync::OnceCell::new(),
            fresh: tokio::sync::OnceCell::new(),
            identity: tokio::sync::OnceCell::new(),
            dns: std::sync::Mutex::new(None),
            lease_lost: CancellationToken::new(),
            events: events.clone(),
        });
        let mut lease_lost_reported = false;
        let (lock_lost, lock_id) = match lock {
            Some((lost, id)) => (lost, Some(id)),
            None => (CancellationToken::new(), None),
        };
        let mut lock_lost_reported = false;
        loop {
            if !stop && cancel.is_cancelled() {
                stop = true;
                report.cancelled = true;
            }
            if lock_lost.is_cancelled() && !lock_lost_reported {
                // The Lease's rule for the provider's deploy lock: another run may hold it
                // now; start nothing more, let what runs finish, and fail saying why.
                lock_lost_reported = true;
                stop = true;
                let id = lock_id
                    .clone()
                    .unwrap_or_else(|| ResourceId::new("DeployLock", ownership.prefix()));
                let why = "the deploy lock was lost (another run took it, or it could not be \
                           renewed): no new change was started; re-run to converge"
                    .to_string();
                events.emit(&Event::Failed {
                    stage: None,
                    resource: id.clone(),
                    action: Action::Update,
                    error: why.clone(),
                });
                report.failed.push((id, Action::Update, why));
            }
            if shared.lease_lost.is_cancelled() && !lease_lost_reported {
                // Another run may hold the lock now: start nothing more, let what runs finish,
                // and fail saying why.
                lease_lost_reported = true;
                stop = true;
                let lease = ResourceId::new(
                    "Lease.coordination.k8s.io",
                    format!(
                        "{}/qhub-deploy-{}",
                        crate::kubernetes::lease::LEASE_NAMESPACE,
                        ownership.prefix()
                    ),
                );
                let why = "the deploy lease was lost (another run took it, or it could not be \
                           renewed): no new change was started; re-run to converge"
                    .to_string();
                events.emit(&Event::Failed {
                    stage: Some(Stage::Kubernetes),
                    resource: lease.clone(),
                    action: Action::Update,
                    error: why.clone(),
                });
                report.failed.push((lease, Action::Update, why));
            }
            if stop && report.cancelled && !cancel_announced {
                cancel_announced = true;
                events.emit(&Event::Cancelling {
                    in_flight: running.len(),
                });
            }
            if !stop {
                let mut room = self.options.concurrency.saturating_sub(running.len());
                let candidates: Vec<usize> = pending
                    .iter()
                    .copied()
                    .filter(|i| waits[*i].iter().all(|d| finished.contains(d)))
                    .collect();
                for i in candidates {
                    if room == 0 {
                        break;
                    }
                    let change = &changes[i];
                    let group = mutating_group(change);
                    if let Some(g) = group {
                        if busy.contains(g) {
                            continue;
                        }
                        busy.insert(g.to_string());
                    }
                    room -= 1;
                    pending.remove(&i);
                    let change = change.clone();
                    let shared = shared.clone();
                    let users = users[i].clone();
                    running.spawn(async move {
                        use futures::FutureExt as _;
                        let t = Instant::now();
                        // A panicking provider fails its change (named in the report), never
                        // the process, and never silently.
                        let result =
                            std::panic::AssertUnwindSafe(run_change(&shared, &change, &users))
                                .catch_unwind()
                                .await
                                .unwrap_or_else(|panic| {
                                    let why = panic
                                        .downcast_ref::<&str>()
                                        .map(|s| (*s).to_string())
                                        .or_else(|| panic.downcast_ref::<String>().cloned())
                                        .unwrap_or_else(|| "no message".to_string());
                                    Err((
                                        ProviderError::Fatal(format!(
                                            "{} {}: the provider panicked: {why}",
                                            change.action.symbol(),
                                            change.id
                                        )),
                                        0,
                                    ))
                                });
                        (i, result, t.elapsed())
                    });
                }
            }
            if running.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = running.join_next() => joined,
                () = cancel.cancelled(), if !stop => continue,
                () = shared.lease_lost.cancelled(), if !lease_lost_reported => continue,
                () = lock_lost.cancelled(), if !lock_lost_reported => continue,
            };
            let Some(joined) = joined else { break };
            let (i, result, elapsed) = match joined {
                Ok(v) => v,
                Err(e) => {
                    // Panics are caught inside the task; this is a task aborted from outside.
                    tracing::error!(error = %e, "a change's task ended without a result");
                    report.failed.push((
                        ResourceId::new("task", "unknown"),
                        Action::Update,
                        format!("a change's task ended without a result: {e}"),
                    ));
                    stop = true;
                    continue;
                }
            };
            let change = &changes[i];
            if let Some(g) = mutating_group(change) {
                busy.remove(g);
            }
            match result {
                Ok(retries) => {
                    report.retries += retries;
                    finished.insert(i);
                    if let Ok(mut applied) = shared.applied.lock() {
                        applied.insert(change.id.clone(), change.action);
                    }
                    report.done.push((change.id.clone(), change.action));
                    if change.stage == Stage::Kubernetes {
                        kubernetes_left -= 1;
                        if kubernetes_left == 0 {
                            // The cluster may be deleted next (destroy): let go of it first.
                            if release_lease(&shared.cluster).await {
                                // Simulated death while releasing: nothing more happens (no
                                // front-door check either).
                                report.killed = true;
                                report.failed.push(lease_killed(ownership));
                                stop = true;
                            }
                        }
                    }
                    events.emit(&Event::Done {
                        stage: change.stage,
                        resource: change.id.clone(),
                        action: change.action,
                        elapsed,
                    });
                }
                Err((error, retries)) => {
                    report.retries += retries;
                    events.emit(&Event::Failed {
                        stage: Some(change.stage),
                        resource: change.id.clone(),
                        action: change.action,
                        error: error.to_string(),
                    });
                    report
                        .failed
                        .push((change.id.clone(), change.action, error.to_string()));
                    stop = true;
                    if error.is_killed() {
                        // Simulated process death: abandon everything at once, like SIGKILL.
                        report.killed = true;
                        running.abort_all();
                        // Wait until every aborted task has stopped, so nothing happens after
                        // the "death" has been reported.
                        while running.join_next().await.is_some() {}
                        break;
                    }
                }
            }
        }
        // "Deploy succeeded" means the front door can answer: checked after every deploy that
        // reaches the Kubernetes stage (a destroy plan desires nothing).
        if report.succeeded()
            && self.provider.capabilities().cluster_access
            && plan
                .resources
                .iter()
                .any(|r| r.stage == Stage::Kubernetes && !dns::is_dns(&r.id))
        {
            self.front_door(&shared, config, &events, &mut report).await;
        }
        // Release the deploy lease, unless the process "died" (a dead process releases nothing).
        if !report.killed && release_lease(&shared.cluster).await {
            report.killed = true;
            report.failed.push(lease_killed(ownership));
        }
        report.not_started = pending
            .iter()
            .map(|i| (changes[*i].id.clone(), changes[*i].action))
            .collect();
        report.elapsed = start.elapsed();
        report.dns = shared
            .dns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .or_else(|| dns::unchanged(plan, &self.options.dns));
        report
    }
}

impl Engine {
    /// The front-door check ([`crate::kubernetes::front_door`]): routes, Services, ready
    /// endpoints and the ingress controller's RBAC in the cluster, then each URL through the
    /// load balancer where one can be reached. A failure fails the deploy, naming what is
    /// missing.
    async fn front_door(
        &self,
        shared: &Shared,
        config: &Config,
        events: &Arc<dyn EventSink>,
        report: &mut ApplyReport,
    ) {
        use crate::kubernetes::front_door::{self, FrontDoorError, Missing};
        const KILLED: &str = "the process was killed";
        let id = ResourceId::new("FrontDoor", &config.domain);
        let started = Instant::now();
        events.emit(&Event::Started {
            stage: Stage::Kubernetes,
            resource: id.clone(),
            action: Action::Wait,
            expected: Duration::from_secs(1),
        });
        let outcome: Result<Vec<String>, String> = async {
            let client = match shared.cluster.get() {
                Some(Some(c)) => c.applier.client(),
                _ => match connect(&*self.provider, &shared.ownership).await {
                    Ok(Some(applier)) => applier.client(),
                    Ok(None) => return Err("the cluster does not exist".to_string()),
                    Err(e) => return Err(format!("connecting to the cluster: {e}")),
                },
            };
            let checked = loop {
                match front_door::check_cluster(&client, config).await {
                    Ok(c) => break c,
                    // Endpoints follow ready pods within seconds: wait a little for them.
                    Err(FrontDoorError::Missing(m))
                        if m.iter().all(|x| matches!(x, Missing::Endpoints { .. }))
                            && started.elapsed() < self.options.endpoints_grace =>
                    {
                        let detail = m.iter().map(ToString::to_string).collect::<Vec<_>>();
                        events.emit(&Event::Waiting {
                            stage: Some(Stage::Kubernetes),
                            resource: id.clone(),
                            detail: detail.join("; "),
                        });
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(FrontDoorError::Kube(e)) if crate::provider::find_killed(&e).is_some() => {
                        return Err(KILLED.to_string());
                    }
                    // Reads that ran out of their own retries (throttling, 5xx): the whole
                    // check again, within the grace.
                    Err(FrontDoorError::Kube(e))
                        if e.is_retryable()
                            && started.elapsed()
                                < self.options.endpoints_grace.max(Duration::from_secs(30)) =>
                    {
                        events.emit(&Event::Waiting {
                            stage: Some(Stage::Kubernetes),
                            resource: id.clone(),
                            detail: format!("{e}; checking again"),
                        });
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(e.to_string()),
                }
            };
            let mut notes = Vec::new();
            let urls = crate::kubernetes::endpoints::urls(config);
            if config.provider == crate::config::ProviderKind::Sandbox {
                notes.push(format!(
                    "front door: routes, Services, ready endpoints and the ingress controller's \
                     RBAC ({} permissions) were checked for {} URL(s); the request through the \
                     load balancer was skipped: the sandbox's load balancer is simulated and \
                     {} does not resolve offline",
                    checked.permissions, checked.urls, config.domain
                ));
                return Ok(notes);
            }
            let services: kube::Api<k8s_openapi::api::core::v1::Service> =
                kube::Api::namespaced(client.clone(), &config.namespace);
            let ingress = services
                .get_opt(crate::kubernetes::components::ingress::NAME)
                .await
                .map_err(|e| format!("reading the ingress Service: {e}"))?;
            if ingress.as_ref().is_some_and(|s| {
                s.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(front_door::SIMULATED_LOAD_BALANCER))
            }) {
                notes.push(format!(
                    "front door: routes, Services, ready endpoints and the ingress controller's \
                     RBAC ({} permissions) were checked for {} URL(s); the request through the \
                     load balancer was skipped: the cluster's load balancer is simulated \
                     (annotation {}) and nothing answers at its address",
                    checked.permissions,
                    checked.urls,
                    front_door::SIMULATED_LOAD_BALANCER
                ));
                return Ok(notes);
            }
            let live = crate::kubernetes::endpoints::read(client.clone(), config)
                .await
                .map_err(|e| e.to_string())?;
            let Some(address) = live.load_balancer else {
                notes.push(format!(
                    "front door: routes, Services, ready endpoints and RBAC were checked; the \
                     request through the load balancer was skipped: the ingress has no load \
                     balancer address ({})",
                    live.hint.unwrap_or_default()
                ));
                return Ok(notes);
            };
            let progress = |detail: &str| {
                events.emit(&Event::Waiting {
                    stage: Some(Stage::Kubernetes),
                    resource: id.clone(),
                    detail: detail.to_string(),
                });
            };
            front_door::probe(
                &urls,
                &address,
                None,
                self.options.front_door_deadline,
                &progress,
            )
            .await
            .map_err(|m| FrontDoorError::Missing(m).to_string())?;
            Ok(notes)
        }
        .await;
        match outcome {
            Err(e) if e == KILLED => report.killed = true,
            Ok(notes) => {
                // A check, not a change of the plan: not counted among the changes done.
                report.notes.extend(notes);
                events.emit(&Event::Done {
                    stage: Stage::Kubernetes,
                    resource: id,
                    action: Action::Wait,
                    elapsed: started.elapsed(),
                });
            }
            Err(error) => {
                events.emit(&Event::Failed {
                    stage: Some(Stage::Kubernetes),
                    resource: id.clone(),
                    action: Action::Wait,
                    error: error.clone(),
                });
                report.failed.push((id, Action::Wait, error));
            }
        }
    }
}

/// The serial group a change occupies while it runs. A wait counts too: the resource it waits
/// for is the cloud's operation in progress (GKE refuses a second operation on a cluster while
/// a pool operation left by an interrupted run still runs).
fn mutating_group(change: &Change) -> Option<&str> {
    change.serial_group()
}

/// What every change task of one apply shares.
struct Shared {
    provider: Arc<dyn Provider>,
    options: EngineOptions,
    ownership: Ownership,
    config: Config,
    /// The plan's Kubernetes objects were built with placeholders: build them again once the
    /// infrastructure exists.
    rebuild: bool,
    /// The plan's desired resources that are created with a parent (given to its create).
    children: Vec<plan::Resource>,
    /// The changes done so far in this run, for [`ApplyContext::parent_applied`].
    applied: std::sync::Mutex<BTreeMap<ResourceId, Action>>,
    cluster: tokio::sync::OnceCell<Option<Cluster>>,
    /// The Kubernetes objects built again from the facts of the applied infrastructure.
    fresh: tokio::sync::OnceCell<BTreeMap<ResourceId, plan::Resource>>,
    /// Keycloak's admin client, made on the first change of its configuration.
    identity: tokio::sync::OnceCell<crate::keycloak::Keycloak>,
    /// What the apply did to the domain's DNS record.
    dns: std::sync::Mutex<Option<crate::dns::DnsReport>>,
    /// Cancelled when the deploy lease is lost: no new change starts.
    lease_lost: CancellationToken,
    events: Arc<dyn EventSink>,
}

impl Shared {
    /// The cluster, connected (and its deploy lease taken) on first use; `None` while it
    /// does not exist.
    async fn cluster(&self) -> Result<&Option<Cluster>, ProviderError> {
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

/// A finished change's task: its index, the retries made (or the error and the retries), and
/// its wall time.
type Finished = (usize, Result<u32, (ProviderError, u32)>, Duration);

/// The steps an apply runs: the plan's changes, with every infrastructure replacement that is
/// part of a cascade (it is replaced because of another one, or another change is planned
/// because of it) split in a delete and a create. Its dependants' deletes then run before its
/// delete and their creates after its create ([`wait_sets`]); a replacement on its own stays
/// one change, which the provider carries out as it sees fit.
fn steps(changes: &[Change]) -> Vec<Change> {
    let cascaded: BTreeSet<&ResourceId> = changes
        .iter()
        .filter_map(|c| c.because.as_ref())
        .chain(
            changes
                .iter()
                .filter(|c| c.because.is_some())
                .map(|c| &c.id),
        )
        .collect();
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        let split = c.action == Action::Replace
            && c.stage == Stage::Infrastructure
            && c.desired.is_some()
            && c.observed.is_some()
            && cascaded.contains(&c.id);
        if split {
            let mut delete = c.clone();
            delete.action = Action::Delete;
            delete.desired = None;
            delete.diff = Vec::new();
            let mut create = c.clone();
            create.action = Action::Create;
            create.observed = None;
            out.push(delete);
            out.push(create);
        } else {
            out.push(c.clone());
        }
    }
    out
}

/// What the engine knows about who uses the resource a step deletes, to judge a delete the
/// cloud refuses as in use ([`ProviderError::InUse`]).
#[derive(Debug, Clone, Default)]
struct Users {
    /// Desired resources that depend on it and stay in the cloud after the apply (not deleted
    /// or replaced by it): while one stays, no wait frees it.
    staying: Vec<ResourceId>,
    /// Those of them that declared they survive its replacement
    /// ([`plan::OnDependencyReplaced::Update`]): when nothing deleted by this apply explains a
    /// refusal, one of them is what the cloud sees using it, and it stays until its update,
    /// which comes after the create.
    tolerant: Vec<ResourceId>,
    /// A resource that depends on it (transitively) is deleted by this apply: what that one
    /// left (network interfaces of a cluster's load balancers) may still be draining, so the
    /// refusal is waited out on the busy budget.
    released: bool,
}

/// [`Users`] for each step (empty for a step that deletes nothing).
fn users(steps: &[Change], desired: &[plan::Resource]) -> Vec<Users> {
    let touched: BTreeSet<&ResourceId> = steps
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace | Action::Create))
        .map(|c| &c.id)
        .collect();
    let deleted: BTreeSet<&ResourceId> = steps
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        .map(|c| &c.id)
        .collect();
    let mut dependants: BTreeMap<&ResourceId, BTreeSet<&ResourceId>> = BTreeMap::new();
    for c in steps {
        for dep in c.depends_on() {
            dependants.entry(dep).or_default().insert(&c.id);
        }
    }
    steps
        .iter()
        .map(|c| {
            if !matches!(c.action, Action::Delete | Action::Replace) {
                return Users::default();
            }
            let (tolerant, staying): (Vec<&plan::Resource>, Vec<&plan::Resource>) = desired
                .iter()
                .filter(|r| {
                    r.stage == Stage::Infrastructure
                        && r.depends_on.contains(&c.id)
                        && r.created_with.as_ref() != Some(&c.id)
                        && !touched.contains(&r.id)
                })
                .partition(|r| r.on_dependency_replaced == plan::OnDependencyReplaced::Update);
            let ids = |v: Vec<&plan::Resource>| v.into_iter().map(|r| r.id.clone()).collect();
            let mut seen: BTreeSet<&ResourceId> = BTreeSet::new();
            let mut next: Vec<&ResourceId> = vec![&c.id];
            while let Some(id) = next.pop() {
                for d in dependants.get(id).into_iter().flatten() {
                    if *d != &c.id && seen.insert(d) {
                        next.push(d);
                    }
                }
            }
            Users {
                staying: ids(staying),
                tolerant: ids(tolerant),
                released: seen.iter().any(|d| deleted.contains(d)),
            }
        })
        .collect()
}

/// For each change, the indices of the changes it must wait for.
fn wait_sets(changes: &[Change]) -> Vec<BTreeSet<usize>> {
    let index: BTreeMap<(&ResourceId, bool), usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| ((&c.id, c.action == Action::Delete), i))
        .collect();
    changes
        .iter()
        .map(|c| {
            let mut waits = BTreeSet::new();
            if c.action == Action::Delete {
                // A delete waits for the deletes of everything that depends on it, and the
                // infrastructure waits for the Kubernetes objects (their load balancers and
                // volumes would otherwise block the network's deletion). A resource deleted
                // with its parent is the exception: the parent goes first (a DOKS cluster
                // cannot lose its last pool) and takes it along.
                let parent_deleted = c
                    .created_with()
                    .and_then(|p| index.get(&(p, true)))
                    .copied();
                if let Some(j) = parent_deleted {
                    waits.insert(j);
                }
                for (j, other) in changes.iter().enumerate() {
                    let child_of_c = other.created_with() == Some(&c.id);
                    if other.action == Action::Delete
                        && !child_of_c
                        && Some(j) != parent_deleted
                        && (other.depends_on().contains(&c.id)
                            || c.stage == Stage::Infrastructure && other.stage == Stage::Kubernetes)
                    {
                        waits.insert(j);
                    }
                }
            } else {
                // The create half of a split replacement comes after its delete half.
                if let Some(j) = index.get(&(&c.id, true)) {
                    waits.insert(*j);
                }
                for dep in c.depends_on() {
                    if let Some(j) = index.get(&(dep, false)) {
                        waits.insert(*j);
                    }
                }
                // Kubernetes objects wait for the infrastructure.
                if c.stage == Stage::Kubernetes {
                    for (j, other) in changes.iter().enumerate() {
                        if other.stage == Stage::Infrastructure && other.action != Action::Delete {
                            waits.insert(j);
                        }
                    }
                }
            }
            waits
        })
        .collect()
}

/// A client for the deployment's cluster, or `None` when the cluster does not exist.
async fn connect(
    provider: &dyn Provider,
    ownership: &Ownership,
) -> Result<Option<Applier>, ProviderError> {
    match provider.cluster_access(ownership).await {
        Ok(access) => Ok(Some(Applier::new(access.client().await?))),
        Err(ProviderError::NoCluster(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The cluster during an apply: a client, and the deploy lease held while the apply runs.
#[derive(Debug)]
struct Cluster {
    applier: Applier,
    lease: tokio::sync::Mutex<Option<crate::kubernetes::lease::LeaseGuard>>,
}

/// Releases the deploy lease if it is held.
/// The failure of a run (simulated as) killed while it released the deploy lease.
fn lease_killed(ownership: &Ownership) -> (ResourceId, Action, String) {
    (
        ResourceId::new(
            "Lease.coordination.k8s.io",
            format!(
                "{}/qhub-deploy-{}",
                crate::kubernetes::lease::LEASE_NAMESPACE,
                ownership.prefix()
            ),
        ),
        Action::Update,
        "the process was killed while releasing the deploy lease".to_string(),
    )
}

/// Returns true when the process was (simulated as) killed meanwhile.
async fn release_lease(cluster: &tokio::sync::OnceCell<Option<Cluster>>) -> bool {
    if let Some(Some(cluster)) = cluster.get()
        && let Some(lease) = cluster.lease.lock().await.take()
    {
        return lease.release_checked().await;
    }
    false
}

/// Connects for an apply: a client, then the deploy lease.
async fn connect_locked(
    provider: &dyn Provider,
    ownership: &Ownership,
    timing: crate::kubernetes::lease::LeaseTiming,
    holder: &str,
    lost: &CancellationToken,
) -> Result<Option<Cluster>, ProviderError> {
    let Some(applier) = connect(provider, ownership).await? else {
        return Ok(None);
    };
    let lease = crate::kubernetes::lease::acquire_with(
        applier.client(),
        &ownership.prefix(),
        holder,
        timing,
    )
    .await?;
    // The apply stops starting changes when the lease is lost.
    let signal = lease.lost();
    let lost = lost.clone();
    tokio::spawn(async move {
        signal.cancelled().await;
        lost.cancel();
    });
    Ok(Some(Cluster {
        applier,
        lease: tokio::sync::Mutex::new(Some(lease)),
    }))
}

/// The Kubernetes objects built again from the facts of the infrastructure as it is now.
async fn rebuild_kubernetes(
    shared: &Shared,
) -> Result<BTreeMap<ResourceId, plan::Resource>, ProviderError> {
    let infra = retry::retry(
        &shared.options.retry,
        "observing the infrastructure",
        || shared.provider.observe(&shared.ownership),
    )
    .await?;
    let facts = shared.provider.cluster_facts(&shared.config, &infra);
    if let Some(unknown) = facts.unknown().first() {
        return Err(ProviderError::Fatal(format!(
            "the {unknown} is still unknown after the infrastructure was applied"
        )));
    }
    let objects = crate::kubernetes::desired(&shared.config, &facts)?;
    Ok(objects.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// Applies one Kubernetes change through the (lazily connected) cluster client.
async fn apply_kubernetes(
    shared: &Shared,
    change: &Change,
    deadline: Duration,
) -> Result<(), ProviderError> {
    let cluster = shared.cluster().await?;
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
                    ProviderError::Fatal(format!("{}: nothing to address the object by", change.id))
                })?;
            applier.delete(target, deadline).await.map_err(Into::into)
        }
        _ => {
            let planned = change
                .desired
                .as_ref()
                .ok_or_else(|| ProviderError::Fatal(format!("{}: no desired object", change.id)))?;
            let desired = if shared.rebuild {
                let fresh = shared
                    .fresh
                    .get_or_try_init(|| rebuild_kubernetes(shared))
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

/// Applies one change of Keycloak's configuration through its admin API, with the resource
/// built again from the real admin credentials (a first plan knew no client secret).
async fn apply_identity(shared: &Shared, change: &Change) -> Result<(), ProviderError> {
    let kc = shared
        .identity
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

/// Waits until the cloud reports the resource of a [`Action::Wait`] change ready, looking at
/// it again and again (the first look soon, later ones up to the poll interval apart).
async fn wait_ready(shared: &Shared, change: &Change) -> Result<(), ProviderError> {
    let mut pause = (shared.options.poll_interval / 16).max(Duration::from_millis(1));
    let mut last = String::new();
    loop {
        let observed = retry::retry(&shared.options.retry, "observing", || {
            shared.provider.observe(&shared.ownership)
        })
        .await?;
        let Some(found) = observed.iter().find(|o| o.id == change.id) else {
            return Err(ProviderError::Fatal(format!(
                "{} disappeared while we waited for it; re-run to create it",
                change.id
            )));
        };
        match &found.state {
            ResourceState::Ready => return Ok(()),
            ResourceState::Failed(why) => {
                return Err(ProviderError::Fatal(format!(
                    "{} failed while we waited for it: {why}; re-run to repair it",
                    change.id
                )));
            }
            ResourceState::Pending(what) => {
                if *what != last {
                    shared.events.emit(&Event::Waiting {
                        stage: Some(change.stage),
                        resource: change.id.clone(),
                        detail: what.clone(),
                    });
                    last.clone_from(what);
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(shared.options.poll_interval);
    }
}

/// Runs one change with retries and a deadline. Returns the number of retries made.
/// `users`: what uses the resource it deletes ([`Users`]), to judge a refusal as in use.
async fn run_change(
    shared: &Shared,
    change: &Change,
    users: &Users,
) -> Result<u32, (ProviderError, u32)> {
    let options = &shared.options;
    let events = &*shared.events;
    let expected = change
        .desired
        .as_ref()
        .map_or(Duration::ZERO, |d| d.expected_duration);
    let deadline = options
        .min_deadline
        .max(expected.mul_f64(options.deadline_factor.max(0.0)));
    events.emit(&Event::Started {
        stage: change.stage,
        resource: change.id.clone(),
        action: change.action,
        expected,
    });
    let children: Vec<plan::Resource> = if matches!(change.action, Action::Create | Action::Replace)
    {
        shared
            .children
            .iter()
            .filter(|r| r.created_with.as_ref() == Some(&change.id))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let parent_applied = change
        .created_with()
        .and_then(|p| shared.applied.lock().ok()?.get(p).copied());
    let started = Instant::now();
    let mut retrier = retry::Retrier::new(options.retry);
    let mut in_use_since: Option<Instant> = None;
    let mut attempt = 1u32;
    loop {
        let ctx = ApplyContext {
            ownership: shared.ownership.clone(),
            attempt,
            children: children.clone(),
            parent_applied,
        };
        let remaining = deadline.saturating_sub(started.elapsed());
        let work = async {
            match (change.stage, change.action) {
                (_, Action::Wait) => wait_ready(shared, change).await,
                (Stage::Infrastructure, _) => shared.provider.apply(change, &ctx).await,
                (Stage::Kubernetes, _) if identity::is_identity(&change.id) => {
                    apply_identity(shared, change).await
                }
                (Stage::Kubernetes, _) if dns::is_dns(&change.id) => {
                    dns::apply(shared, change).await
                }
                (Stage::Kubernetes, _) => apply_kubernetes(shared, change, remaining).await,
            }
        };
        let result = match tokio::time::timeout(remaining, work).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Fatal(format!(
                "{} {} did not finish within {deadline:?}",
                change.action.symbol(),
                change.id
            ))),
        };
        let e = match result {
            Ok(()) => return Ok(retrier.retries()),
            Err(e) if e.is_killed() => return Err((e, retrier.retries())),
            // Deleting what is already gone is done.
            Err(ProviderError::NotFound(_)) if change.action == Action::Delete => {
                return Ok(retrier.retries());
            }
            // In use by something that stays: no wait can free it (AWS DependencyViolation on a
            // subnet the cluster still uses was retried for the whole busy budget).
            Err(e @ ProviderError::InUse { .. })
                if !users.staying.is_empty() || !users.released && !users.tolerant.is_empty() =>
            {
                let staying: Vec<String> = users
                    .staying
                    .iter()
                    .chain(&users.tolerant)
                    .map(ToString::to_string)
                    .collect();
                let e = ProviderError::Fatal(format!(
                    "cannot delete {id}: the cloud refuses because it is still in use ({e}); \
                     {staying} depend(s) on it and stay(s) after this plan, so waiting cannot \
                     free it. Replace or delete {staying} first, or undo the change that \
                     replaces or deletes {id}",
                    id = change.id,
                    staying = staying.join(", "),
                ));
                return Err((e, retrier.retries()));
            }
            // In use, and nothing this apply deleted explains it: something outside the plan
            // uses it. A short grace for eventual consistency, not the whole busy budget.
            Err(e @ ProviderError::InUse { .. })
                if !users.released
                    && in_use_since.get_or_insert_with(Instant::now).elapsed()
                        >= options.in_use_grace =>
            {
                let e = ProviderError::Fatal(format!(
                    "cannot delete {id}: the cloud refuses because it is still in use ({e}) \
                     after {grace:?}, and nothing this deployment plans uses it: something \
                     outside the plan does (another deployment's or a person's resource in it, \
                     or what a resource deleted by an earlier run left still draining). Remove \
                     what the cloud names, or re-run in a few minutes",
                    id = change.id,
                    grace = options.in_use_grace,
                ));
                return Err((e, retrier.retries()));
            }
            Err(e) => e,
        };
        let Some(delay) = retrier.next_delay(&e) else {
            let retries = retrier.retries();
            let e = if retries > 0 {
                retry::gave_up(
                    e,
                    &format!("{} {}", change.action.symbol(), change.id),
                    retries,
                    started.elapsed(),
                )
            } else {
                e
            };
            return Err((e, retries));
        };
        if started.elapsed() + delay > deadline {
            return Err((e, retrier.retries() - 1));
        }
        tracing::info!(resource = %change.id, attempt, ?delay, error = %e, "retrying");
        events.emit(&Event::Retrying {
            stage: change.stage,
            resource: change.id.clone(),
            attempt,
            delay,
            error: e.to_string(),
        });
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Observed, OnDependencyReplaced, Resource};
    use serde_json::json;

    fn res(kind: &str, spec: serde_json::Value, deps: &[&str]) -> Resource {
        Resource::new(kind, "x", Stage::Infrastructure, spec)
            .depends_on(deps.iter().map(|k| ResourceId::new(*k, "x")))
    }

    /// Subnet (replaced: its zone moved), a route table re-associated after it, a mount target
    /// in it, a cluster on it (replacement allowed), a node group on the cluster, and an
    /// unrelated role.
    fn cascade_plan() -> Plan {
        let desired = vec![
            res("subnet", json!({"zone": "a"}), &[]).replace_fields(&["zone"]),
            res("route_table", json!({}), &["subnet"])
                .on_dependency_replaced(OnDependencyReplaced::Update),
            res("mount_target", json!({}), &["subnet"]),
            res("cluster", json!({}), &["subnet", "route_table", "role"])
                .on_dependency_replaced(OnDependencyReplaced::Refuse("everything".into())),
            res("node_group", json!({}), &["cluster"]),
            res("role", json!({}), &[]),
        ];
        let observed: Vec<Observed> = desired
            .iter()
            .map(|r| {
                let spec = if r.id.kind == "subnet" {
                    json!({"zone": "b"})
                } else {
                    r.spec.clone()
                };
                Observed::like(r, spec, None, ResourceState::Ready)
            })
            .collect();
        plan::diff_allowing(&desired, &observed, &[ResourceId::new("cluster", "x")])
    }

    /// The order steps run in one at a time, always the first whose waits are done.
    fn run_order(steps: &[Change]) -> Vec<String> {
        let waits = wait_sets(steps);
        let mut done: BTreeSet<usize> = BTreeSet::new();
        let mut out = Vec::new();
        while done.len() < steps.len() {
            let Some(i) =
                (0..steps.len()).find(|i| !done.contains(i) && waits[*i].is_subset(&done))
            else {
                panic!("a cycle among {out:?}");
            };
            done.insert(i);
            out.push(format!("{} {}", steps[i].action.symbol(), steps[i].id.kind));
        }
        out
    }

    #[test]
    fn a_cascade_deletes_dependants_before_and_creates_them_after_what_they_depend_on() {
        let plan = cascade_plan();
        assert!(plan.refused.is_empty(), "{:?}", plan.refused);
        let steps = steps(&plan.changes);
        let order = run_order(&steps);
        let at = |step: &str| {
            order
                .iter()
                .position(|s| s == step)
                .unwrap_or_else(|| panic!("{step} not in {order:?}"))
        };
        assert!(at("- node_group") < at("- cluster"), "{order:?}");
        assert!(at("- cluster") < at("- subnet"), "{order:?}");
        assert!(at("- mount_target") < at("- subnet"), "{order:?}");
        assert!(at("- subnet") < at("+ subnet"), "{order:?}");
        assert!(at("+ subnet") < at("+ mount_target"), "{order:?}");
        assert!(at("+ subnet") < at("~ route_table"), "{order:?}");
        assert!(at("~ route_table") < at("+ cluster"), "{order:?}");
        assert!(at("+ cluster") < at("+ node_group"), "{order:?}");
        // Split into a delete and a create each: subnet, mount target, cluster, node group.
        assert_eq!(steps.len(), 9, "{order:?}");
        assert!(!order.iter().any(|s| s.contains("role")), "{order:?}");
    }

    #[test]
    fn a_replacement_on_its_own_stays_one_change() {
        let desired = vec![
            res("subnet", json!({"zone": "a"}), &[]).replace_fields(&["zone"]),
            res("role", json!({}), &[]),
        ];
        let observed = vec![Observed::like(
            &desired[0],
            json!({"zone": "b"}),
            None,
            ResourceState::Ready,
        )];
        let plan = plan::diff(&desired, &observed);
        let steps = steps(&plan.changes);
        assert_eq!(run_order(&steps), ["+ role", "-/+ subnet"]);
    }

    #[test]
    fn who_uses_a_deleted_resource_is_known_to_judge_an_in_use_refusal() {
        let plan = cascade_plan();
        let steps = steps(&plan.changes);
        let users = users(&steps, &plan.resources);
        let of = |action: Action, kind: &str| {
            let i = steps
                .iter()
                .position(|c| c.action == action && c.id.kind == kind)
                .unwrap_or_else(|| panic!("{kind}"));
            users[i].clone()
        };
        // The subnet's delete comes after the cluster's: what the cluster left may drain.
        let subnet = of(Action::Delete, "subnet");
        assert!(subnet.released, "{subnet:?}");
        assert!(subnet.staying.is_empty(), "{subnet:?}");
        assert_eq!(subnet.tolerant, [ResourceId::new("route_table", "x")]);
        // Nothing depends on the node group.
        let group = of(Action::Delete, "node_group");
        assert!(!group.released && group.staying.is_empty());
        // A create deletes nothing.
        assert!(of(Action::Create, "subnet").staying.is_empty());
    }
}
