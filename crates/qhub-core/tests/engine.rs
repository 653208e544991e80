//! Engine behaviour that no provider should be able to break.

use std::sync::Arc;

use async_trait::async_trait;
use qhub_core::Config;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::events::NoEvents;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::plan::{Change, Observed, Resource};
use qhub_core::provider::{
    ApplyContext, Capabilities, Facts, Ownership, Preflight, Provider, ProviderError,
};
use qhub_core::sandbox::SandboxProvider;
use qhub_core::sandbox::faults::FaultSpec;
use tokio_util::sync::CancellationToken;

/// The sandbox, except that applying a node group panics.
#[derive(Debug)]
struct Panicky(SandboxProvider);

#[async_trait]
impl Provider for Panicky {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            cluster_access: false,
            ..self.0.capabilities()
        }
    }
    async fn preflight(&self, c: &Config) -> Result<Preflight, ProviderError> {
        self.0.preflight(c).await
    }
    fn desired(&self, c: &Config, f: &Facts) -> Result<Vec<Resource>, ProviderError> {
        self.0.desired(c, f)
    }
    async fn observe(&self, o: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        self.0.observe(o).await
    }
    async fn apply(&self, ch: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        assert!(ch.id.kind != "node_group", "a bug in the provider");
        self.0.apply(ch, ctx).await
    }
}

#[tokio::test]
async fn a_panicking_provider_fails_its_change_and_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = render(&InitOptions::new(
        ProviderKind::Sandbox,
        "panic",
        "panic.example.com",
        "0123456789abcdef",
    ))
    .unwrap();
    let provider = Panicky(SandboxProvider::new(dir.path(), 0.0, FaultSpec::default()));
    let engine = Engine::new(Arc::new(provider), EngineOptions::default());
    let (_, report) = engine
        .deploy(
            &config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .expect("plan");
    assert!(!report.succeeded(), "{report:?}");
    let (id, _, error) = report.failed.first().expect("a failed change");
    assert_eq!(id.kind, "node_group", "{report:?}");
    assert!(
        error.contains("panicked") && error.contains("a bug in the provider"),
        "{error}"
    );
}
