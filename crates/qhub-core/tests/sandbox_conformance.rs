//! The provider conformance suite against the sandbox.

use qhub_core::config::CiKind;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::conformance;
use qhub_core::sandbox::harness::SandboxHarness;

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
    assert_eq!(report.checks.len(), 7, "{report:?}");
    for (check, detail) in &report.checks {
        eprintln!("{check}: {detail}");
    }
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
