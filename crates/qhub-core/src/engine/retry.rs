//! The one retry policy: a budget per error class ([`RetryClass`]), decorrelated jitter, the
//! cloud's `retry-after` honoured, each retry logged. The engine uses it for every change and
//! every read it makes; providers use [`retry`] for reads outside the engine (preflight, the
//! destroy sweep) so that each call has exactly one retry loop.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::provider::{ProviderError, RetryClass};

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
            throttled: Budget {
                max_attempts: 16,
                max_elapsed: Duration::from_secs(4 * 60),
                base: Duration::from_millis(500),
                cap: Duration::from_secs(30),
            },
            transient: Budget {
                max_attempts: 10,
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

    /// After a failure with `error`: the backoff before the next attempt, or `None` when the
    /// error is not retryable or its class's budget is spent. Decorrelated jitter ("Exponential
    /// Backoff And Jitter", AWS Architecture Blog): a random wait between the class's base and
    /// three times the previous wait, capped, and never shorter than the cloud's `retry-after`.
    pub fn next_delay(&mut self, error: &ProviderError) -> Option<Duration> {
        let class = error.retry_class()?;
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
        let delay = jittered.max(error.retry_after().unwrap_or(Duration::ZERO));
        if first.elapsed() + delay > budget.max_elapsed {
            return None;
        }
        self.previous = jittered;
        self.retries += 1;
        Some(delay)
    }
}

/// Runs `call` until it succeeds, fails with an error that is not retryable, or its class's
/// budget is spent; logs each retry with its attempt number. For idempotent calls only (reads,
/// and mutations the cloud deduplicates).
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut call: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut retrier = Retrier::new(*policy);
    let started = Instant::now();
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_killed() => return Err(e),
            Err(e) => match retrier.next_delay(&e) {
                Some(delay) => {
                    tracing::info!(
                        attempt = retrier.retries() + 1,
                        ?delay,
                        error = %e,
                        "{what} failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                None if retrier.retries() > 0 => {
                    return Err(gave_up(e, what, retrier.retries(), started.elapsed()));
                }
                None => return Err(e),
            },
        }
    }
}

/// The error of a call whose retries ran out, saying which call kept failing and for how long.
pub fn gave_up(e: ProviderError, what: &str, retries: u32, elapsed: Duration) -> ProviderError {
    let note = format!(
        "{what} kept failing: gave up after {} attempts over {:.0}s",
        retries + 1,
        elapsed.as_secs_f64()
    );
    match e {
        ProviderError::Throttled { message, .. }
        | ProviderError::Retryable { message, .. }
        | ProviderError::Conflict { message, .. } => {
            ProviderError::Fatal(format!("{message}; {note}"))
        }
        other => other,
    }
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
}
