//! The scheduler: applies a plan's changes as a dependency graph ([`super::graph`]) with
//! bounded concurrency, one mutating change per serial group, retries with jittered backoff on
//! retryable errors only, a deadline on every change, cancellation that lets in-flight changes
//! finish, and the deploy lock and lease (losing either starts nothing more). Infrastructure
//! changes go to the provider, those of the Kubernetes stage to the reconciler that owns them
//! ([`super::reconciler`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::cluster::{lease_killed, release_lease};
use super::graph::{Users, mutating_group, steps, users, wait_sets};
use super::reconciler::{Reconciler, Scope};
use super::{ApplyReport, Engine};
use crate::config::Config;
use crate::events::{Event, EventSink};
use crate::plan::{self, Action, Change, Plan, ResourceId, ResourceState, Stage};
use crate::provider::{ApplyContext, Ownership, ProviderError};
use crate::retry;

impl Engine {
    /// Applies a plan (the lock is held by the caller, see [`Locked::apply`]).
    pub(super) async fn apply_plan(
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
        let reconcilers = super::planner::reconcilers();
        for r in &reconcilers {
            r.prepare(plan);
        }
        let shared = Arc::new(Run {
            scope: Scope::new(
                self.provider.clone(),
                self.options.clone(),
                ownership.clone(),
                config.clone(),
                events.clone(),
            ),
            children: plan
                .resources
                .iter()
                .filter(|r| r.created_with.is_some())
                .cloned()
                .collect(),
            applied: std::sync::Mutex::default(),
            reconcilers,
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
            if shared.scope.lease_lost.is_cancelled() && !lease_lost_reported {
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
                () = shared.scope.lease_lost.cancelled(), if !lease_lost_reported => continue,
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
                            if release_lease(&shared.scope.cluster).await {
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
            && plan.resources.iter().any(|r| r.stage == Stage::Kubernetes)
        {
            self.front_door(&shared.scope, config, &events, &mut report)
                .await;
        }
        // Release the deploy lease, unless the process "died" (a dead process releases nothing).
        if !report.killed && release_lease(&shared.scope.cluster).await {
            report.killed = true;
            report.failed.push(lease_killed(ownership));
        }
        report.not_started = pending
            .iter()
            .map(|i| (changes[*i].id.clone(), changes[*i].action))
            .collect();
        report.elapsed = start.elapsed();
        for r in &shared.reconcilers {
            r.finish(plan, &shared.scope, &mut report);
        }
        report
    }
}

/// What every change task of one apply shares.
struct Run {
    /// What a reconciler's apply may use.
    scope: Scope,
    /// The plan's desired resources that are created with a parent (given to its create).
    children: Vec<plan::Resource>,
    /// The changes done so far in this run, for [`ApplyContext::parent_applied`].
    applied: std::sync::Mutex<BTreeMap<ResourceId, Action>>,
    /// The backends of the Kubernetes stage, in planning order.
    reconcilers: Vec<Arc<dyn Reconciler>>,
}

impl Run {
    /// The reconciler that applies a change of the Kubernetes stage: the last that owns it.
    fn reconciler(&self, id: &ResourceId) -> Option<&Arc<dyn Reconciler>> {
        self.reconcilers.iter().rev().find(|r| r.owns(id))
    }
}

/// A finished change's task: its index, the retries made (or the error and the retries), and
/// its wall time.
type Finished = (usize, Result<u32, (ProviderError, u32)>, Duration);

/// Waits until the cloud reports the resource of a [`Action::Wait`] change ready, looking at
/// it again and again (the first look soon, later ones up to the poll interval apart).
async fn wait_ready(shared: &Scope, change: &Change) -> Result<(), ProviderError> {
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
    run: &Run,
    change: &Change,
    users: &Users,
) -> Result<u32, (ProviderError, u32)> {
    let shared = &run.scope;
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
        run.children
            .iter()
            .filter(|r| r.created_with.as_ref() == Some(&change.id))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let parent_applied = change
        .created_with()
        .and_then(|p| run.applied.lock().ok()?.get(p).copied());
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
                (Stage::Kubernetes, _) => match run.reconciler(&change.id) {
                    Some(r) => r.apply(shared, change, remaining).await,
                    None => Err(ProviderError::Fatal(format!(
                        "{}: no backend of the Kubernetes stage applies it",
                        change.id
                    ))),
                },
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
