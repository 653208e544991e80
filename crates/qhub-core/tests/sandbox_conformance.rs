//! The provider conformance suite against the sandbox.

use qhub_core::Config;
use qhub_core::config::CiKind;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::conformance;
use qhub_core::plan::{Change, Observed, Resource};
use qhub_core::provider::{
    ApplyContext, Capabilities, ClusterAccess, Facts, Ownership, Preflight, Provider, ProviderError,
};
use qhub_sandbox::harness::{Behaviour, SandboxHarness};

fn sandbox_config() -> qhub_core::Config {
    render(&InitOptions {
        ci: CiKind::None,
        ..InitOptions::new(
            ProviderKind::Sandbox,
            "conform",
            "conform.example.com",
            "0123456789abcdef",
        )
    })
    .expect("render")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    // A small non-zero time scale keeps the latency model (and so real concurrency) in play.
    let harness = SandboxHarness::new(dir.path(), sandbox_config(), 0.00001);
    let report = conformance::run_all(&harness)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (check, detail) in &report.checks {
        eprintln!("{check}: {detail}");
    }
    report.assert_skipped(&[]);
    // The sandbox's shared storage exists only after the infrastructure does: the first plan
    // names it, and the applied welcome page holds the real address (checked by the suite).
    let facts = &report
        .checks
        .iter()
        .find(|(c, _)| *c == "cluster facts")
        .expect("facts check")
        .1;
    assert!(facts.contains("shared filesystem"), "{facts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gke_like_sandbox_passes_the_conformance_suite() {
    // One operation per cluster, node groups created with the cluster: the rules GKE and DOKS
    // impose, which the engine must honour with zero rejected operations.
    let dir = tempfile::tempdir().unwrap();
    let harness = SandboxHarness::new(dir.path(), sandbox_config(), 0.00001)
        .with_behaviour(Behaviour::gke_like());
    let report = conformance::run_all(&harness)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (check, detail) in &report.checks {
        eprintln!("{check}: {detail}");
    }
    report.assert_skipped(&[]);
    let children = &report
        .checks
        .iter()
        .find(|(c, _)| *c == "children once")
        .expect("children check")
        .1;
    assert!(
        !children.starts_with("0 "),
        "no child was planned: {children}"
    );
}

/// A provider that forgets to declare its serial groups, on a backend that enforces one
/// operation per cluster.
#[derive(Debug)]
struct Ungrouped(std::sync::Arc<dyn Provider>);

#[async_trait::async_trait]
impl Provider for Ungrouped {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn preflight(&self, c: &Config) -> Result<Preflight, ProviderError> {
        self.0.preflight(c).await
    }
    fn desired(&self, c: &Config, f: &Facts) -> Result<Vec<Resource>, ProviderError> {
        let mut out = self.0.desired(c, f)?;
        for r in &mut out {
            r.serial_group = None;
        }
        Ok(out)
    }
    async fn observe(&self, o: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        let mut out = self.0.observe(o).await?;
        for r in &mut out {
            r.serial_group = None;
        }
        Ok(out)
    }
    async fn apply(&self, ch: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        self.0.apply(ch, ctx).await
    }
    async fn cluster_access(&self, o: &Ownership) -> Result<ClusterAccess, ProviderError> {
        self.0.cluster_access(o).await
    }
    fn serves_keycloak(&self) -> bool {
        self.0.serves_keycloak()
    }
    async fn keycloak_url(&self, o: &Ownership) -> Result<Option<String>, ProviderError> {
        self.0.keycloak_url(o).await
    }
    // Everything but the serial groups is forwarded: a method left to the trait's default
    // would quietly change the provider under test (a missing conda-store URL failed this
    // check for the wrong reason).
    fn node_group_keys(&self) -> &'static [&'static str] {
        self.0.node_group_keys()
    }
    async fn discover(&self, c: &Config) -> Result<Facts, ProviderError> {
        self.0.discover(c).await
    }
    fn cluster_facts(&self, c: &Config, infra: &[Observed]) -> qhub_core::provider::ClusterFacts {
        self.0.cluster_facts(c, infra)
    }
    fn priced_shape(&self, c: &Config, observed: &[Observed]) -> Option<qhub_core::cost::Shape> {
        self.0.priced_shape(c, observed)
    }
    async fn lock_store(
        &self,
        o: &Ownership,
    ) -> Result<Option<std::sync::Arc<dyn qhub_core::cloud::lock::LockStore>>, ProviderError> {
        self.0.lock_store(o).await
    }
    fn lock_dir(&self) -> Option<std::path::PathBuf> {
        self.0.lock_dir()
    }
    async fn lock_holder(&self, o: &Ownership) -> Result<Option<String>, ProviderError> {
        self.0.lock_holder(o).await
    }
    async fn kubeconfig(&self, o: &Ownership) -> Result<String, ProviderError> {
        self.0.kubeconfig(o).await
    }
    fn serves_conda_store(&self) -> bool {
        self.0.serves_conda_store()
    }
    async fn conda_store_url(&self, o: &Ownership) -> Result<Option<String>, ProviderError> {
        self.0.conda_store_url(o).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_provider_that_ignores_the_one_operation_rule() {
    struct Harness(SandboxHarness);
    #[async_trait::async_trait]
    impl conformance::Harness for Harness {
        fn config(&self) -> Config {
            self.0.config()
        }
        fn provider(&self, f: conformance::Faults) -> std::sync::Arc<dyn Provider> {
            std::sync::Arc::new(Ungrouped(self.0.provider(f)))
        }
        async fn reset(&self) {
            self.0.reset().await
        }
        async fn mutations(&self) -> u64 {
            self.0.mutations().await
        }
        async fn cloud_mutations(&self) -> Option<u64> {
            self.0.cloud_mutations().await
        }
        async fn census(&self, o: &Ownership) -> std::collections::BTreeMap<String, usize> {
            self.0.census(o).await
        }
        async fn rejected(&self) -> u64 {
            self.0.rejected().await
        }
    }
    let dir = tempfile::tempdir().unwrap();
    // Slow enough that node-group operations overlap.
    let h = Harness(
        SandboxHarness::new(dir.path(), sandbox_config(), 0.0005).with_behaviour(Behaviour {
            pools_with_cluster: false,
            ..Behaviour::gke_like()
        }),
    );
    let err = conformance::serial_groups_are_honoured(&h)
        .await
        .expect_err("overlapping operations on one cluster must fail the check");
    assert!(err.message.contains("rejected"), "{err}");
}

#[tokio::test]
async fn the_suite_catches_a_provider_that_forgets_to_delete() {
    // A harness whose census reports a leftover: the destroy check must fail, proving the
    // suite can fail.
    struct Leaky(SandboxHarness);
    #[async_trait::async_trait]
    impl conformance::Harness for Leaky {
        fn config(&self) -> qhub_core::Config {
            self.0.config()
        }
        fn provider(
            &self,
            f: conformance::Faults,
        ) -> std::sync::Arc<dyn qhub_core::provider::Provider> {
            self.0.provider(f)
        }
        async fn reset(&self) {
            self.0.reset().await
        }
        async fn mutations(&self) -> u64 {
            self.0.mutations().await
        }
        async fn cloud_mutations(&self) -> Option<u64> {
            self.0.cloud_mutations().await
        }
        async fn census(
            &self,
            o: &qhub_core::provider::Ownership,
        ) -> std::collections::BTreeMap<String, usize> {
            let mut c = self.0.census(o).await;
            *c.entry("orphan".into()).or_insert(0) += 1;
            c
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let leaky = Leaky(SandboxHarness::new(dir.path(), sandbox_config(), 0.0));
    let err = conformance::destroy_after_interruption_leaves_nothing(&leaky)
        .await
        .expect_err("a leftover resource must fail the check");
    assert!(err.message.contains("orphan"), "{err}");
}
