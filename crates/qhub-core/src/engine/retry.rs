//! Retry policy: jittered exponential backoff, for retryable errors only.

use std::time::Duration;

use rand::Rng;

/// How the engine retries a change that failed with a retryable error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt.
    pub base: Duration,
    /// Longest backoff.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1): "full jitter", a random
    /// duration up to `min(cap, base * 2^(attempt-1))`, at least `retry_after` when the cloud
    /// asked for it. Full jitter spreads retries of many parallel changes apart (AWS
    /// Architecture Blog, "Exponential Backoff And Jitter").
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.cap);
        let jittered =
            Duration::from_secs_f64(exp.as_secs_f64() * rand::rng().random_range(0.0..=1.0));
        jittered.max(retry_after.unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_bounded_and_honour_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for attempt in 1..10 {
            let d = p.delay(attempt, None);
            let bound = Duration::from_millis(100 * (1u64 << (attempt - 1).min(20))).min(p.cap);
            assert!(d <= bound, "attempt {attempt}: {d:?} > {bound:?}");
        }
        assert!(p.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }
}
