//! The example provider passes the provider conformance suite.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use qhub_core::Config;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::conformance::{self, Faults, Harness, Knobs};
use qhub_core::plan::{Change, Observed, Resource};
use qhub_core::provider::{
    ApplyContext, Capabilities, Facts, Ownership, Preflight, ProcessKilled, Provider, ProviderError,
};
use qhub_example_memory_provider::{Cloud, MemoryProvider};

/// The provider with the suite's faults around it: "dying" after N changes, and errors.
#[derive(Debug)]
struct Faulty {
    inner: MemoryProvider,
    faults: Faults,
    applied: AtomicU64,
    dead: AtomicBool,
    calls: AtomicU64,
}

impl Faulty {
    fn before(&self, what: &str) -> Result<(), ProviderError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(ProviderError::other(ProcessKilled(format!("{what}: dead"))));
        }
        // A fixed pattern, reproducible: every call whose number falls in the error or
        // throttle share of a 20-call cycle fails.
        let n = self.calls.fetch_add(1, Ordering::SeqCst) % 20;
        let n = f64::from(u32::try_from(n).unwrap_or(0)) / 20.0;
        if n < self.faults.error_rate {
            return Err(ProviderError::retryable(format!("{what}: injected 503")));
        }
        if n < self.faults.error_rate + self.faults.throttle_rate {
            return Err(ProviderError::throttled(
                format!("{what}: injected 429"),
                None,
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for Faulty {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn preflight(&self, c: &Config) -> Result<Preflight, ProviderError> {
        self.inner.preflight(c).await
    }
    fn desired(&self, c: &Config, f: &Facts) -> Result<Vec<Resource>, ProviderError> {
        self.inner.desired(c, f)
    }
    async fn observe(&self, o: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        self.before("observe")?;
        self.inner.observe(o).await
    }
    async fn apply(&self, ch: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        let what = format!("{} {}", ch.action.symbol(), ch.id);
        self.before(&what)?;
        self.inner.apply(ch, ctx).await?;
        let n = self.applied.fetch_add(1, Ordering::SeqCst) + 1;
        if self.faults.die_after.is_some_and(|limit| n > limit) {
            self.dead.store(true, Ordering::SeqCst);
            return Err(ProviderError::other(ProcessKilled(format!(
                "{what}: killed"
            ))));
        }
        Ok(())
    }
}

struct MemoryHarness {
    cloud: Arc<Mutex<Cloud>>,
    config: Config,
}

#[async_trait]
impl Harness for MemoryHarness {
    fn config(&self) -> Config {
        self.config.clone()
    }
    fn provider(&self, faults: Faults) -> Arc<dyn Provider> {
        if faults.fail_once.as_deref() == Some("cluster") {
            self.cloud.lock().unwrap().fail_next_cluster = true;
        }
        Arc::new(Faulty {
            inner: MemoryProvider::new(self.cloud.clone(), Duration::from_millis(2)),
            faults,
            applied: AtomicU64::new(0),
            dead: AtomicBool::new(false),
            calls: AtomicU64::new(0),
        })
    }
    async fn reset(&self) {
        let mut cloud = self.cloud.lock().unwrap();
        cloud.items.clear();
        cloud.busy = false;
        cloud.fail_next_cluster = false;
    }
    async fn mutations(&self) -> u64 {
        self.cloud.lock().unwrap().mutations
    }
    async fn census(&self, o: &Ownership) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for item in self.cloud.lock().unwrap().items.values() {
            if o.owns(&item.tags) {
                *out.entry(item.kind.clone()).or_insert(0) += 1;
            }
        }
        out
    }
    async fn rejected(&self) -> u64 {
        self.cloud.lock().unwrap().rejected
    }
    fn knobs(&self) -> Knobs {
        Knobs {
            pending: false,
            fail_once: true,
            lost_answers: false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_provider_passes_the_conformance_suite() {
    let config = render(&InitOptions::new(
        ProviderKind::Sandbox,
        "example",
        "example.example.com",
        "0123456789abcdef",
    ))
    .expect("render");
    let harness = MemoryHarness {
        cloud: Arc::default(),
        config,
    };
    let report = conformance::run_all(&harness)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (check, detail) in &report.checks {
        eprintln!("{check}: {detail}");
    }
    // The example hands out no cluster access, so the facts cannot reach a cluster.
    report.assert_skipped(&["cluster facts"]);
    assert_eq!(harness.cloud.lock().unwrap().rejected, 0);
}
