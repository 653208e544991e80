//! The plan/apply engine. No state file: it observes what exists by ownership marks, plans the
//! difference with the config, and applies the plan as a dependency graph with bounded
//! concurrency, retries with jittered backoff on retryable errors only, a deadline on every
//! change, and cancellation that lets in-flight changes finish.

pub mod events;
pub mod plan;
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
use crate::provider::{ApplyContext, Ownership, Provider, ProviderError};
use events::{Event, EventSink};
use plan::{Action, Change, Plan, ResourceId, Stage};
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
    /// Retry policy for retryable errors.
    pub retry: RetryPolicy,
    /// The least time a change may take before it is abandoned as failed; a change's deadline
    /// is the larger of this and 4× the provider's estimate.
    pub min_deadline: Duration,
    /// Deadline for observing what exists.
    pub observe_deadline: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            retry: RetryPolicy::default(),
            min_deadline: Duration::from_secs(30 * 60),
            observe_deadline: Duration::from_secs(5 * 60),
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
    /// Wall time.
    #[serde(with = "secs")]
    pub elapsed: Duration,
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

impl Engine {
    /// An engine over `provider`.
    pub fn new(provider: Arc<dyn Provider>, options: EngineOptions) -> Self {
        Self { provider, options }
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
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

    /// Runs a read (observe, connect) with retries on retryable errors and a deadline per try.
    async fn read<T, F, Fut>(&self, what: &str, mut attempt_once: F) -> Result<T, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let deadline = self.options.observe_deadline;
        let retry = self.options.retry;
        let mut attempt = 1;
        loop {
            let result = tokio::time::timeout(deadline, attempt_once())
                .await
                .map_err(|_| EngineError::Deadline(what.to_string(), deadline))?;
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < retry.max_attempts => {
                    let retry_after = match &e {
                        ProviderError::Retryable { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    let delay = retry.delay(attempt, retry_after);
                    tracing::info!(attempt, ?delay, error = %e, "{what} failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(source) => {
                    return Err(EngineError::Provider {
                        what: what.to_string(),
                        source,
                    });
                }
            }
        }
    }

    async fn observe_kubernetes(
        &self,
        ownership: &Ownership,
        desired: &[plan::Resource],
    ) -> Result<Vec<plan::Observed>, EngineError> {
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
                None => Ok(Vec::new()),
                Some(applier) => applier.observe(&set, &kinds).await.map_err(Into::into),
            }
        })
        .await
    }

    async fn observe(&self, ownership: &Ownership) -> Result<Vec<plan::Observed>, EngineError> {
        self.read("observing existing resources", || {
            self.provider.observe(ownership)
        })
        .await
    }

    /// The plan that takes what exists to what `config` wants.
    pub async fn plan(&self, config: &Config, stages: StageFilter) -> Result<Plan, EngineError> {
        let ownership = Ownership::of(config);
        let mut desired = Vec::new();
        let mut observed = Vec::new();
        if stages.includes(Stage::Infrastructure) {
            // Observe first: what a provider learns about its endpoint while observing (an
            // emulator lacking an API) may shape what it can offer.
            observed = self.observe(&ownership).await?;
            desired = self
                .provider
                .desired(config)
                .map_err(|source| EngineError::Provider {
                    what: "computing the desired infrastructure".into(),
                    source,
                })?;
        }
        if self.kubernetes_stage(stages)? {
            let k8s = crate::kubernetes::desired(config).map_err(|e| EngineError::Provider {
                what: "building the Kubernetes objects".into(),
                source: e.into(),
            })?;
            observed.extend(self.observe_kubernetes(&ownership, &k8s).await?);
            desired.extend(k8s);
        }
        Ok(plan::diff(&desired, &observed))
    }

    /// The plan that deletes everything this deployment owns.
    pub async fn destroy_plan(
        &self,
        config: &Config,
        stages: StageFilter,
    ) -> Result<Plan, EngineError> {
        Ok(plan::destroy(&self.observe_all(config, stages).await?))
    }

    /// Everything this deployment owns, in the given stages (what `qhub status` lists).
    /// Kubernetes objects are found by ApplySet membership, in the kinds the parent lists and
    /// the kinds the config's components use (so that members are found even when an interrupted
    /// run left no parent).
    pub async fn observe_all(
        &self,
        config: &Config,
        stages: StageFilter,
    ) -> Result<Vec<plan::Observed>, EngineError> {
        let ownership = Ownership::of(config);
        let mut observed = Vec::new();
        if stages.includes(Stage::Infrastructure) {
            observed.extend(self.observe(&ownership).await?);
        }
        if self.kubernetes_stage(stages)? {
            let kinds = crate::kubernetes::desired(config).unwrap_or_default();
            observed.extend(self.observe_kubernetes(&ownership, &kinds).await?);
        }
        Ok(observed)
    }

    /// Applies a plan: each change once its dependencies are done, up to `concurrency` at once.
    /// On a failure or cancellation no new change starts; changes in flight finish.
    pub async fn apply(
        &self,
        plan: &Plan,
        ownership: &Ownership,
        events: Arc<dyn EventSink>,
        cancel: CancellationToken,
    ) -> ApplyReport {
        let start = Instant::now();
        let mut report = ApplyReport::default();
        events.emit(&Event::ApplyStarted {
            changes: plan.changes.len(),
        });
        let waits = wait_sets(&plan.changes);
        let mut pending: BTreeSet<usize> = (0..plan.changes.len()).collect();
        let mut finished: BTreeSet<usize> = BTreeSet::new();
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut stop = false;
        let mut cancel_announced = false;
        // The cluster client, made on first use (after the infrastructure exists), with
        // credentials minted then rather than at plan time.
        let mut kubernetes_left = plan
            .changes
            .iter()
            .filter(|c| c.stage == Stage::Kubernetes)
            .count();
        let cluster: Arc<tokio::sync::OnceCell<Option<Cluster>>> =
            Arc::new(tokio::sync::OnceCell::new());
        loop {
            if !stop && cancel.is_cancelled() {
                stop = true;
                report.cancelled = true;
            }
            if stop && report.cancelled && !cancel_announced {
                cancel_announced = true;
                events.emit(&Event::Cancelling {
                    in_flight: running.len(),
                });
            }
            if !stop {
                let ready: Vec<usize> = pending
                    .iter()
                    .copied()
                    .filter(|i| waits[*i].iter().all(|d| finished.contains(d)))
                    .take(self.options.concurrency.saturating_sub(running.len()))
                    .collect();
                for i in ready {
                    pending.remove(&i);
                    let change = plan.changes[i].clone();
                    let provider = self.provider.clone();
                    let events = events.clone();
                    let options = self.options.clone();
                    let ownership = ownership.clone();
                    let cluster = cluster.clone();
                    running.spawn(async move {
                        let t = Instant::now();
                        let result = run_change(
                            &*provider, &cluster, &change, &ownership, &options, &*events,
                        )
                        .await;
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
            };
            let Some(joined) = joined else { break };
            let (i, result, elapsed) = match joined {
                Ok(v) => v,
                Err(e) => {
                    // A panicking provider task: record it, do not take the process down.
                    tracing::error!(error = %e, "a change's task failed");
                    stop = true;
                    continue;
                }
            };
            let change = &plan.changes[i];
            match result {
                Ok(retries) => {
                    report.retries += retries;
                    finished.insert(i);
                    report.done.push((change.id.clone(), change.action));
                    if change.stage == Stage::Kubernetes {
                        kubernetes_left -= 1;
                        if kubernetes_left == 0 {
                            // The cluster may be deleted next (destroy): let go of it first.
                            release_lease(&cluster).await;
                        }
                    }
                    events.emit(&Event::Done {
                        resource: change.id.clone(),
                        action: change.action,
                        elapsed,
                    });
                }
                Err((error, retries)) => {
                    report.retries += retries;
                    events.emit(&Event::Failed {
                        resource: change.id.clone(),
                        action: change.action,
                        error: error.to_string(),
                    });
                    report
                        .failed
                        .push((change.id.clone(), change.action, error.to_string()));
                    stop = true;
                    if matches!(error, ProviderError::Killed(_)) {
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
        // Release the deploy lease, unless the process "died" (a dead process releases nothing).
        if !report.killed {
            release_lease(&cluster).await;
        }
        report.not_started = pending
            .iter()
            .map(|i| (plan.changes[*i].id.clone(), plan.changes[*i].action))
            .collect();
        report.elapsed = start.elapsed();
        report
    }
}

/// A finished change's task: its index, the retries made (or the error and the retries), and
/// its wall time.
type Finished = (usize, Result<u32, (ProviderError, u32)>, Duration);

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
                // volumes would otherwise block the network's deletion).
                for (j, other) in changes.iter().enumerate() {
                    if other.action == Action::Delete
                        && (other.depends_on().contains(&c.id)
                            || c.stage == Stage::Infrastructure && other.stage == Stage::Kubernetes)
                    {
                        waits.insert(j);
                    }
                }
            } else {
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
async fn release_lease(cluster: &tokio::sync::OnceCell<Option<Cluster>>) {
    if let Some(Some(cluster)) = cluster.get()
        && let Some(lease) = cluster.lease.lock().await.take()
    {
        lease.release().await;
    }
}

/// Connects for an apply: a client, then the deploy lease.
async fn connect_locked(
    provider: &dyn Provider,
    ownership: &Ownership,
) -> Result<Option<Cluster>, ProviderError> {
    let Some(applier) = connect(provider, ownership).await? else {
        return Ok(None);
    };
    let lease = crate::kubernetes::lease::acquire(
        applier.client(),
        &ownership.prefix(),
        &crate::kubernetes::lease::holder_identity(),
    )
    .await?;
    Ok(Some(Cluster {
        applier,
        lease: tokio::sync::Mutex::new(Some(lease)),
    }))
}

/// Applies one Kubernetes change through the (lazily connected) cluster client.
async fn apply_kubernetes(
    provider: &dyn Provider,
    cluster: &tokio::sync::OnceCell<Option<Cluster>>,
    change: &Change,
    ctx: &ApplyContext,
    deadline: Duration,
) -> Result<(), ProviderError> {
    let cluster = cluster
        .get_or_try_init(|| connect_locked(provider, &ctx.ownership))
        .await?;
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
                    ProviderError::Failed(format!(
                        "{}: nothing to address the object by",
                        change.id
                    ))
                })?;
            applier.delete(target, deadline).await.map_err(Into::into)
        }
        _ => {
            let desired = change.desired.as_ref().ok_or_else(|| {
                ProviderError::Failed(format!("{}: no desired object", change.id))
            })?;
            let manifest = desired.payload.as_ref().unwrap_or(&desired.spec);
            applier
                .apply(manifest, &desired.spec, deadline)
                .await
                .map_err(Into::into)
        }
    }
}

/// Runs one change with retries and a deadline. Returns the number of retries made.
async fn run_change(
    provider: &dyn Provider,
    cluster: &tokio::sync::OnceCell<Option<Cluster>>,
    change: &Change,
    ownership: &Ownership,
    options: &EngineOptions,
    events: &dyn EventSink,
) -> Result<u32, (ProviderError, u32)> {
    let expected = change
        .desired
        .as_ref()
        .map_or(Duration::ZERO, |d| d.expected_duration);
    let deadline = options.min_deadline.max(expected * 4);
    events.emit(&Event::Started {
        stage: change.stage,
        resource: change.id.clone(),
        action: change.action,
        expected,
    });
    let started = Instant::now();
    let mut attempt = 1u32;
    loop {
        let ctx = ApplyContext {
            ownership: ownership.clone(),
            attempt,
        };
        let remaining = deadline.saturating_sub(started.elapsed());
        let work = async {
            match change.stage {
                Stage::Infrastructure => provider.apply(change, &ctx).await,
                Stage::Kubernetes => {
                    apply_kubernetes(provider, cluster, change, &ctx, remaining).await
                }
            }
        };
        let result = match tokio::time::timeout(remaining, work).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Failed(format!(
                "{} {} did not finish within {deadline:?}",
                change.action.symbol(),
                change.id
            ))),
        };
        match result {
            Ok(()) => return Ok(attempt - 1),
            Err(e) if e.is_retryable() && attempt < options.retry.max_attempts => {
                let retry_after = match &e {
                    ProviderError::Retryable { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let delay = options.retry.delay(attempt, retry_after);
                if started.elapsed() + delay > deadline {
                    return Err((e, attempt - 1));
                }
                tracing::info!(resource = %change.id, attempt, ?delay, error = %e, "retrying");
                events.emit(&Event::Retrying {
                    resource: change.id.clone(),
                    attempt,
                    delay,
                    error: e.to_string(),
                });
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err((e, attempt - 1)),
        }
    }
}
