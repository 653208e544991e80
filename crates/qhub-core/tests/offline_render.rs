//! What `qhub render` writes offline is what a deploy applies, on the sandbox: the objects
//! built from the offline cluster facts (no provider client) are compared with the objects a
//! deploy left in the sandbox's cluster. Only the named placeholder (the shared filesystem's
//! server, an address the simulated cloud makes) may differ. And `qhub plan` before the first
//! deploy lists the whole Kubernetes stage and Keycloak's configuration as creates.

use std::sync::Arc;
use std::time::Duration;

use qhub_core::Config;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::events::NoEvents;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::kubernetes::compare::check_render;
use qhub_core::plan::{Action, Stage};
use qhub_core::provider::Provider;
use qhub_core::provider::registry::ProviderRegistry;
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use tokio_util::sync::CancellationToken;

fn config() -> Config {
    render(&InitOptions::new(
        ProviderKind::Sandbox,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_render_is_what_a_sandbox_deploy_applies() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = Engine::new(
        Arc::new(provider.clone()) as Arc<dyn Provider>,
        EngineOptions {
            min_deadline: Duration::from_secs(60),
            deadline_factor: 0.01,
            poll_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    );
    let config = config();
    let mut registry = ProviderRegistry::with_builtin();
    qhub_sandbox::register(&mut registry);
    let facts = registry
        .offline_facts(&config, dir.path())
        .expect("offline facts");
    assert_eq!(facts.unknown(), ["shared filesystem"]);
    let rendered = qhub_core::kubernetes::desired(&config, &facts).unwrap();

    // Before the first deploy the preview lists every rendered object and Keycloak's
    // configuration as creates.
    let preview = engine.plan(&config, StageFilter::All).await.unwrap();
    let creates: Vec<String> = preview
        .changes
        .iter()
        .filter(|c| c.stage == Stage::Kubernetes)
        .inspect(|c| assert_eq!(c.action, Action::Create, "{}", c.id))
        .map(|c| c.id.to_string())
        .collect();
    for r in &rendered {
        assert!(creates.contains(&r.id.to_string()), "{} not planned", r.id);
    }
    use qhub_core::keycloak::desired::{KIND_CLIENT, KIND_GROUP, KIND_REALM};
    for kind in [KIND_REALM, KIND_GROUP] {
        assert!(
            preview.changes.iter().any(|c| c.id.kind == kind),
            "no {kind} planned"
        );
    }
    // A login client for exactly each one the enabled, built components declare.
    let clients: Vec<String> = qhub_core::kubernetes::components::oidc_clients(&config)
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    let planned: Vec<String> = preview
        .changes
        .iter()
        .filter(|c| c.id.kind == KIND_CLIENT)
        .map(|c| c.id.name.clone())
        .collect();
    assert_eq!(planned.len(), clients.len(), "{planned:?} vs {clients:?}");

    let (_, report) = engine
        .deploy(
            &config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .expect("deploy runs");
    assert!(report.succeeded(), "{report:?}");
    let check = check_render(&provider, &config, &rendered).await.unwrap();
    let c = &check.rendered;
    println!("sandbox: {}", c.summary());
    assert!(c.differ.is_empty(), "{:#?}", c.differ);
    assert!(c.same > 0);
    // The named placeholder: the shared filesystem's server, in its volumes (the platform's and
    // sftp's in the privileged namespace, and the layout Job's) and on the welcome page that shows it.
    assert_eq!(
        c.placeholders.keys().collect::<Vec<_>>(),
        [
            "ConfigMap/dev/qhub-welcome",
            "Job.batch/dev-privileged/shared-storage-layout",
            "PersistentVolume/dev-privileged-shared",
            "PersistentVolume/dev-shared"
        ],
        "{}",
        c.summary()
    );

    // The comparison can fail: the generic facts (what `qhub render` used for a provider it
    // could not build) differ from what the sandbox applied.
    let c = &check.generic;
    assert!(!c.differ.is_empty(), "{}", c.summary());
}
