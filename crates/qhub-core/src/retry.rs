//! The one retry policy: a budget per error class ([`RetryClass`]), decorrelated jitter, the
//! cloud's `retry-after` honoured, each retry logged with its attempt number.
//!
//! It serves two levels, never stacked on one failure:
//!
//! - **one API call** ([`retry_call`]): a provider's client sends every call through it. A read
//!   is sent again after any retryable failure; a mutation only when it was throttled (refused
//!   before the cloud did anything), because after a 5xx or a lost answer the cloud may have
//!   carried it out. When a call's budget runs out its error becomes fatal and names the call
//!   and how long it kept failing, so no outer loop retries it again.
//! - **one change** (the engine's `run_change`): a mutation that failed in a way the call level
//!   may not retry is retried as a whole step, which first re-observes and adopts what the lost
//!   call made.
//!
//! The engine's own reads (observe, discover, connect) go through [`retry`]; providers whose
//! SDK has a retry loop of its own configure it from the same [`RetryPolicy`] (qhub-aws does).
//! Every budget is bounded in attempts and in time, so a deploy under sustained faults
//! finishes or fails naming the call that kept failing; it never loops forever.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::cloud::stats::ApiStats;
use crate::error::{ProviderError, RetryClass};

/// How one class of errors is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Longest time spent retrying this class, from the first failure.
    pub max_elapsed: Duration,
    /// Shortest backoff.
    pub base: Duration,
    /// Longest backoff.
    pub cap: Duration,
}

impl Budget {
    /// A budget of `max_attempts` with backoff between `base` and `cap`, and time enough for
    /// all of them.
    pub const fn attempts(max_attempts: u32, base: Duration, cap: Duration) -> Self {
        Self {
            max_attempts,
            max_elapsed: Duration::from_secs(24 * 3600),
            base,
            cap,
        }
    }
}

impl Budget {
    /// A simple exponential backoff with full jitter before attempt `attempt + 1` (from 1), for
    /// loops that count attempts themselves (quick in-cluster reads).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.cap);
        Duration::from_secs_f64(exp.as_secs_f64() * rand::rng().random_range(0.0..=1.0))
    }
}

/// How the engine (and providers, through [`retry`]) retry a call that failed with a
/// retryable error: one [`Budget`] per [`RetryClass`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Throttled calls (429, `Throttling`): the call did nothing; back off and retry.
    pub throttled: Budget,
    /// 5xx, timeouts, lost answers.
    pub transient: Budget,
    /// The cloud is busy or waits for a dependency (GKE's one operation per cluster, IAM
    /// eventual consistency, a dependency still being deleted): minutes, not seconds, since one
    /// GKE node-pool operation alone takes minutes.
    pub busy: Budget,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            // Attempts enough that a storm refusing 30% of all calls spends one in 0.3^20
            // (about 3e-11) of them; the time budget is what binds in practice.
            throttled: Budget {
                max_attempts: 20,
                max_elapsed: Duration::from_secs(4 * 60),
                base: Duration::from_millis(500),
                cap: Duration::from_secs(30),
            },
            transient: Budget {
                max_attempts: 20,
                max_elapsed: Duration::from_secs(3 * 60),
                base: Duration::from_millis(200),
                cap: Duration::from_secs(20),
            },
            busy: Budget {
                max_attempts: 120,
                max_elapsed: Duration::from_secs(20 * 60),
                base: Duration::from_secs(2),
                cap: Duration::from_secs(30),
            },
        }
    }
}

impl RetryPolicy {
    /// The same budget for every class (tests, and quick in-cluster reads).
    pub const fn uniform(budget: Budget) -> Self {
        Self {
            throttled: budget,
            transient: budget,
            busy: budget,
        }
    }

    /// The budget of a class.
    pub fn budget(&self, class: RetryClass) -> &Budget {
        match class {
            RetryClass::Throttled => &self.throttled,
            RetryClass::Transient => &self.transient,
            RetryClass::Busy => &self.busy,
        }
    }
}

/// The retry state of one call: attempts made per class, the time of the first failure, the
/// last backoff (decorrelated jitter grows from it).
#[derive(Debug, Clone)]
pub struct Retrier {
    policy: RetryPolicy,
    attempts: [u32; 3],
    first_failure: Option<Instant>,
    previous: Duration,
    retries: u32,
}

fn index(class: RetryClass) -> usize {
    match class {
        RetryClass::Throttled => 0,
        RetryClass::Transient => 1,
        RetryClass::Busy => 2,
    }
}

impl Retrier {
    /// A fresh retry state.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            attempts: [0; 3],
            first_failure: None,
            previous: Duration::ZERO,
            retries: 0,
        }
    }

    /// Retries granted so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Retries granted plus one: after [`Self::next_delay_for`] granted a retry, the number of
    /// the attempt about to be sent; after it refused one, the attempts made.
    pub fn attempts(&self) -> u32 {
        self.retries + 1
    }

    /// After a failure with `error`: the backoff before the next attempt, or `None` when the
    /// error is not retryable or its class's budget is spent (see [`Self::next_delay_for`]).
    pub fn next_delay(&mut self, error: &ProviderError) -> Option<Duration> {
        self.next_delay_for(error.retry_class()?, error.retry_after())
    }

    /// After a failure of `class`: the backoff before the next attempt, or `None` when the
    /// class's budget is spent. Decorrelated jitter ("Exponential Backoff And Jitter", AWS
    /// Architecture Blog): a random wait between the class's base and three times the previous
    /// wait, capped, and never shorter than the cloud's `retry_after`.
    pub fn next_delay_for(
        &mut self,
        class: RetryClass,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let budget = *self.policy.budget(class);
        let first = *self.first_failure.get_or_insert_with(Instant::now);
        let i = index(class);
        self.attempts[i] += 1;
        // `attempts` counts failures of this class: the attempts made are one more.
        if self.attempts[i] + 1 > budget.max_attempts {
            return None;
        }
        let upper = self
            .previous
            .saturating_mul(3)
            .max(budget.base)
            .min(budget.cap);
        let lower = budget.base.min(upper);
        let jittered = if upper > lower {
            Duration::from_secs_f64(
                rand::rng().random_range(lower.as_secs_f64()..=upper.as_secs_f64()),
            )
        } else {
            lower
        };
        let delay = jittered.max(retry_after.unwrap_or(Duration::ZERO));
        if first.elapsed() + delay > budget.max_elapsed {
            return None;
        }
        self.previous = jittered;
        self.retries += 1;
        Some(delay)
    }
}

/// What a call does to the cloud, which decides what may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Changes nothing: safe to send again after any retryable failure.
    Read,
    /// Changes something: sent again only when it was throttled.
    Mutation,
}

impl CallKind {
    /// The kind of a named operation (`DescribeVpcs`, `GetOperation`: reads; `CreateVpc`:
    /// a mutation), by [`ApiStats::is_read_only`].
    pub fn of(operation: &str) -> Self {
        if ApiStats::is_read_only(operation) {
            Self::Read
        } else {
            Self::Mutation
        }
    }

    /// Whether a failure of `class` may be sent again at the call level: any class for a
    /// read; for a mutation only throttling, the one failure that says the cloud did nothing.
    /// Any other failed mutation goes back to the engine, which re-observes before it retries.
    pub fn may_retry(self, class: RetryClass) -> bool {
        self == Self::Read || class == RetryClass::Throttled
    }
}

/// An error the retry loop can judge: each provider's client error implements it.
pub trait RetryableError: Sized + std::fmt::Display {
    /// The error's class, or `None` when retrying cannot help.
    fn retry_class(&self) -> Option<RetryClass>;
    /// How long the cloud asked us to wait, if it said.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
    /// The process was "killed" (tests): nothing more may be sent.
    fn is_killed(&self) -> bool {
        false
    }
    /// This error once the call's budget ran out, carrying `note` ([`give_up_note`]) and no
    /// longer retryable: no outer loop may retry the call again.
    fn gave_up(self, note: &str) -> Self;
}

impl RetryableError for ProviderError {
    fn retry_class(&self) -> Option<RetryClass> {
        ProviderError::retry_class(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        ProviderError::retry_after(self)
    }

    fn is_killed(&self) -> bool {
        ProviderError::is_killed(self)
    }

    fn gave_up(self, note: &str) -> Self {
        match self {
            ProviderError::Throttled { message, .. }
            | ProviderError::Retryable { message, .. }
            | ProviderError::Conflict { message, .. }
            | ProviderError::InUse { message, .. } => {
                ProviderError::Fatal(format!("{message}; {note}"))
            }
            other => other,
        }
    }
}

/// What a call whose retries ran out says: which call, how many attempts, for how long.
pub fn give_up_note(what: &str, attempts: u32, elapsed: Duration) -> String {
    format!(
        "{what} kept failing: gave up after {attempts} attempts over {:.0}s",
        elapsed.as_secs_f64()
    )
}

/// Sends one API call under `policy`: a [`CallKind::Read`] is sent again after any retryable
/// failure, a [`CallKind::Mutation`] only after throttling ([`CallKind::may_retry`]). Each
/// retry is logged with its attempt number and counted in `stats`. When the budget of the
/// failure's class runs out, the error is [`RetryableError::gave_up`]: fatal, naming `what`,
/// the attempts and the time spent.
pub async fn retry_call<T, E, F, Fut>(
    policy: &RetryPolicy,
    stats: Option<&ApiStats>,
    what: &str,
    kind: CallKind,
    mut call: F,
) -> Result<T, E>
where
    E: RetryableError,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut retrier = Retrier::new(*policy);
    let started = Instant::now();
    loop {
        let e = match call().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if e.is_killed() {
            return Err(e);
        }
        let Some(class) = e.retry_class().filter(|c| kind.may_retry(*c)) else {
            return Err(e);
        };
        match retrier.next_delay_for(class, e.retry_after()) {
            Some(delay) => {
                let attempt = retrier.attempts();
                if let Some(s) = stats {
                    s.record_retry(attempt);
                }
                tracing::info!(attempt, ?delay, ?class, error = %e, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
            }
            None if retrier.retries() > 0 => {
                let attempts = retrier.attempts();
                if let Some(s) = stats {
                    s.record_gave_up(attempts);
                }
                let note = give_up_note(what, attempts, started.elapsed());
                tracing::warn!(error = %e, "{note}");
                return Err(e.gave_up(&note));
            }
            None => return Err(e),
        }
    }
}

/// Runs `call` until it succeeds, fails with an error that is not retryable, or its class's
/// budget is spent; logs each retry with its attempt number. For reads (every class is
/// retried), and mutations the cloud deduplicates: [`retry_call`] with [`CallKind::Read`].
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, what: &str, call: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    retry_call(policy, None, what, CallKind::Read, call).await
}

/// The error of a call whose retries ran out, saying which call kept failing and for how long.
pub fn gave_up(e: ProviderError, what: &str, retries: u32, elapsed: Duration) -> ProviderError {
    e.gave_up(&give_up_note(what, retries + 1, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(max_attempts: u32) -> RetryPolicy {
        RetryPolicy::uniform(Budget::attempts(
            max_attempts,
            Duration::from_millis(1),
            Duration::from_millis(8),
        ))
    }

    #[test]
    fn delays_are_bounded_budgets_are_per_class_and_retry_after_is_honoured() {
        let mut policy = small(3);
        policy.busy.max_attempts = 50;
        let mut r = Retrier::new(policy);
        let busy = ProviderError::conflict("operation in progress");
        for _ in 0..40 {
            let d = r.next_delay(&busy).expect("busy has 50 attempts");
            assert!(d <= Duration::from_millis(8), "{d:?}");
        }
        let transient = ProviderError::retryable("503");
        assert!(r.next_delay(&transient).is_some());
        assert!(r.next_delay(&transient).is_some());
        assert!(
            r.next_delay(&transient).is_none(),
            "transient budget is 3 attempts"
        );
        assert!(r.next_delay(&ProviderError::Fatal("no".into())).is_none());

        let mut r = Retrier::new(small(5));
        let d = r
            .next_delay(&ProviderError::throttled(
                "429",
                Some(Duration::from_secs(3)),
            ))
            .unwrap();
        assert!(d >= Duration::from_secs(3));
    }

    #[test]
    fn elapsed_budget_stops_retries() {
        let mut policy = small(100);
        policy.transient.max_elapsed = Duration::ZERO;
        let mut r = Retrier::new(policy);
        assert!(r.next_delay(&ProviderError::retryable("503")).is_none());
    }

    #[tokio::test]
    async fn retry_gives_up_naming_the_call() {
        let mut calls = 0;
        let e = retry(&small(3), "DescribeVpcs", || {
            calls += 1;
            async { Err::<(), _>(ProviderError::retryable("503 Service Unavailable")) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 3);
        let text = e.to_string();
        assert!(text.contains("DescribeVpcs kept failing"), "{text}");
        assert!(!e.is_retryable());
    }

    #[tokio::test]
    async fn a_mutation_is_retried_only_when_throttled_and_each_retry_is_counted() {
        let stats = ApiStats::default();
        let mut calls = 0;
        let r = retry_call(
            &small(5),
            Some(&stats),
            "CreateVpc",
            CallKind::Mutation,
            || {
                calls += 1;
                let n = calls;
                async move {
                    match n {
                        1 | 2 => Err::<(), _>(ProviderError::throttled("429", None)),
                        _ => Err(ProviderError::retryable("503: may have been done")),
                    }
                }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(calls, 3, "two throttled retries, then the 503 goes back");
        assert!(r.is_retryable(), "the engine re-observes and retries: {r}");
        assert_eq!((stats.retries(), stats.longest_chain()), (2, 3));

        let mut calls = 0;
        let v = retry_call(
            &small(5),
            Some(&stats),
            "DescribeVpcs",
            CallKind::Read,
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 4 {
                        Err(ProviderError::retryable("503"))
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 4);
        assert_eq!((stats.retries(), stats.longest_chain()), (5, 4));
        assert_eq!(CallKind::of("ListRolePolicies"), CallKind::Read);
        assert_eq!(CallKind::of("DeleteRole"), CallKind::Mutation);
    }

    #[tokio::test]
    async fn the_time_budget_bounds_a_call_that_keeps_failing() {
        let mut policy = small(1_000);
        policy.transient.max_elapsed = Duration::from_millis(60);
        let stats = ApiStats::default();
        let started = Instant::now();
        let e = retry_call(
            &policy,
            Some(&stats),
            "EC2.DescribeAvailabilityZones",
            CallKind::Read,
            || async { Err::<(), _>(ProviderError::retryable("503")) },
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(stats.gave_up(), 1);
        let text = e.to_string();
        assert!(
            text.contains("EC2.DescribeAvailabilityZones kept failing: gave up after"),
            "{text}"
        );
        assert!(!e.is_retryable());
    }
}
