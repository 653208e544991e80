//! Fault injection for the sandbox: errors, throttling, slow operations, lost answers (a change
//! carried out, its answer a 503) and "die after N mutations" (a simulated SIGKILL right after
//! the cloud carried out a change).

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use qhub_core::provider::{ProcessKilled, ProviderError};

/// The environment variable that sets faults for `qhub` runs, e.g.
/// `error_rate=0.1,throttle_rate=0.1,slow_factor=2,die_after=5,seed=7`.
pub const FAULTS_ENV: &str = "QHUB_SANDBOX_FAULTS";

/// Which faults to inject.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultSpec {
    /// Probability that a call fails with a retryable 5xx-like error.
    pub error_rate: f64,
    /// Probability that a call is throttled (retryable, with a retry-after).
    pub throttle_rate: f64,
    /// Multiplies every latency.
    pub slow_factor: Option<f64>,
    /// After this many successful mutations in this process, the next mutation is carried out
    /// and then the process "dies" (a [`ProcessKilled`] error).
    pub die_after: Option<u64>,
    /// Random seed, for reproducible runs.
    pub seed: Option<u64>,
    /// Probability that a mutation is carried out and its answer then lost (a retryable 503
    /// after the fact).
    pub lost_rate: f64,
    /// Behave like GKE: one mutating operation per cluster at a time (the cluster and its node
    /// groups); a second one is refused as busy and counted in the world's `rejected`.
    pub one_op_per_cluster: bool,
    /// Behave like GKE and DOKS: node groups are created inside the cluster's create call and
    /// deleted with it.
    pub pools_with_cluster: bool,
    /// A created cluster stays pending this long (sandbox milliseconds) before it is ready,
    /// so that an interrupted run leaves a pending cluster behind.
    pub pending_ms: Option<u64>,
    /// The first creation of a resource of this kind in a world ends in a failed state (like
    /// an EKS cluster that goes FAILED); later ones succeed.
    pub fail_once: Option<String>,
}

impl FaultSpec {
    /// Parses `key=value,...`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut spec = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{FAULTS_ENV}: `{part}` is not key=value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{FAULTS_ENV}: {k}: {e}");
            match k {
                "error_rate" => spec.error_rate = v.parse().map_err(|e| bad(&e))?,
                "throttle_rate" => spec.throttle_rate = v.parse().map_err(|e| bad(&e))?,
                "slow_factor" => spec.slow_factor = Some(v.parse().map_err(|e| bad(&e))?),
                "lost_rate" => spec.lost_rate = v.parse().map_err(|e| bad(&e))?,
                "die_after" => spec.die_after = Some(v.parse().map_err(|e| bad(&e))?),
                "seed" => spec.seed = Some(v.parse().map_err(|e| bad(&e))?),
                "one_op_per_cluster" => spec.one_op_per_cluster = v.parse().map_err(|e| bad(&e))?,
                "pools_with_cluster" => spec.pools_with_cluster = v.parse().map_err(|e| bad(&e))?,
                "pending_ms" => spec.pending_ms = Some(v.parse().map_err(|e| bad(&e))?),
                "fail_once" => spec.fail_once = Some(v.to_string()),
                _ => {
                    return Err(format!(
                        "{FAULTS_ENV}: unknown key `{k}` (error_rate, throttle_rate, lost_rate, slow_factor, die_after, seed, one_op_per_cluster, pools_with_cluster, pending_ms, fail_once)"
                    ));
                }
            }
        }
        for (name, rate) in [
            ("error_rate", spec.error_rate),
            ("throttle_rate", spec.throttle_rate),
            ("lost_rate", spec.lost_rate),
        ] {
            if !(0.0..1.0).contains(&rate) {
                return Err(format!("{FAULTS_ENV}: {name} must be in [0, 1)"));
            }
        }
        Ok(spec)
    }
}

/// Fault state for one provider instance.
#[derive(Debug)]
pub struct Faults {
    spec: FaultSpec,
    /// The random source, the mutations carried out, and whether the process has "died".
    state: Mutex<(StdRng, u64, bool)>,
}

impl Faults {
    /// Faults per `spec`.
    pub fn new(spec: FaultSpec) -> Self {
        let rng = match spec.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            spec,
            state: Mutex::new((rng, 0, false)),
        }
    }

    /// The spec.
    pub fn spec(&self) -> &FaultSpec {
        &self.spec
    }

    /// Before a call: maybe fail it with a retryable error.
    pub fn before_call(&self, what: &str) -> Result<(), ProviderError> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        if state.2 {
            return Err(dead(what));
        }
        let roll: f64 = state.0.random();
        if roll < self.spec.throttle_rate {
            return Err(ProviderError::throttled(
                format!("sandbox: {what}: 429 Too Many Requests (injected)"),
                Some(Duration::from_millis(20)),
            ));
        }
        if roll < self.spec.throttle_rate + self.spec.error_rate {
            return Err(ProviderError::Retryable {
                message: format!("sandbox: {what}: 503 Service Unavailable (injected)"),
                retry_after: None,
            });
        }
        Ok(())
    }

    /// After a mutation was carried out: maybe "die", maybe lose the answer (a retryable
    /// error although the change was made).
    pub fn after_mutation(&self, what: &str) -> Result<(), ProviderError> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        state.1 += 1;
        match self.spec.die_after {
            Some(n) if state.1 > n => {
                state.2 = true;
                return Err(ProviderError::other(ProcessKilled(format!(
                    "sandbox: killed right after mutation {} ({what}) (injected die_after={n})",
                    state.1
                ))));
            }
            _ => {}
        }
        if self.spec.lost_rate > 0.0 && state.0.random::<f64>() < self.spec.lost_rate {
            return Err(ProviderError::retryable(format!(
                "sandbox: {what}: 503 Service Unavailable after the change was made (injected lost answer)"
            )));
        }
        Ok(())
    }

    /// Right before a mutation is carried out: a process that has "died" (after
    /// [`Self::after_mutation`] reported it) makes no further change, like a SIGKILLed one.
    pub fn check_alive(&self, what: &str) -> Result<(), ProviderError> {
        match self.state.lock() {
            Ok(state) if state.2 => Err(dead(what)),
            _ => Ok(()),
        }
    }

    /// Multiplier for latencies.
    pub fn slow_factor(&self) -> f64 {
        self.spec.slow_factor.unwrap_or(1.0)
    }
}

fn dead(what: &str) -> ProviderError {
    ProviderError::other(ProcessKilled(format!(
        "sandbox: {what}: not carried out, the process has already died (injected die_after)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let s = FaultSpec::parse("error_rate=0.2, die_after=3,seed=9").unwrap();
        assert_eq!(s.error_rate, 0.2);
        assert_eq!(s.die_after, Some(3));
        assert!(
            FaultSpec::parse("bogus=1")
                .unwrap_err()
                .contains("unknown key")
        );
        assert!(FaultSpec::parse("error_rate=2").is_err());
        assert_eq!(FaultSpec::parse("lost_rate=0.1").unwrap().lost_rate, 0.1);
        assert!(FaultSpec::parse("error_rate").is_err());
    }

    #[test]
    fn dies_after_n_mutations() {
        let f = Faults::new(FaultSpec {
            die_after: Some(2),
            ..FaultSpec::default()
        });
        assert!(f.after_mutation("a").is_ok());
        assert!(f.after_mutation("b").is_ok());
        assert!(matches!(
            f.after_mutation("c"),
            Err(e) if e.is_killed()
        ));
        // Dead: nothing more is carried out.
        assert!(f.check_alive("d").is_err_and(|e| e.is_killed()));
        assert!(f.before_call("d").is_err_and(|e| e.is_killed()));
    }

    #[test]
    fn lost_answers_are_retryable_and_not_deaths() {
        let f = Faults::new(FaultSpec {
            lost_rate: 0.5,
            seed: Some(3),
            ..FaultSpec::default()
        });
        let lost = (0..200)
            .filter_map(|i| f.after_mutation(&format!("m{i}")).err())
            .inspect(|e| assert!(e.is_retryable() && !e.is_killed(), "{e}"))
            .count();
        assert!((50..150).contains(&lost), "{lost} of 200 lost");
        assert!(f.check_alive("next").is_ok());
    }
}
