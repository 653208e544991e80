//! What the deploy tests on the sandbox share: an engine with short deadlines, a deploy that
//! must succeed, and finding an object by kind and name. Each test binary includes this module
//! (`mod support;`) and uses what it needs.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use qhub_core::Config;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::events::NoEvents;
use qhub_core::plan::{Action, Plan};
use qhub_core::provider::Provider;
use qhub_sandbox::SandboxProvider;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

/// An engine on `provider` whose waits fit a test: deadlines of a minute at least, polled
/// every 20 ms.
pub fn engine(provider: &SandboxProvider) -> Engine {
    engine_with(provider, Duration::from_secs(60))
}

/// [`engine`] with another least deadline.
pub fn engine_with(provider: &SandboxProvider, min_deadline: Duration) -> Engine {
    Engine::new(
        Arc::new(provider.clone()) as Arc<dyn Provider>,
        EngineOptions {
            min_deadline,
            deadline_factor: 0.01,
            poll_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    )
}

/// Deploys both stages; the deploy must succeed. Its plan.
pub async fn deploy(engine: &Engine, config: &Config) -> Plan {
    let (plan, report) = engine
        .deploy(
            config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .expect("deploy runs");
    assert!(report.succeeded(), "{report:?}");
    plan
}

/// The object of `kind` named `name` among `objects`.
pub fn find<'a>(objects: &'a [Json], kind: &str, name: &str) -> Option<&'a Json> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

/// Deploys `config` again: nothing is planned, and neither the Kubernetes API nor Keycloak is
/// written to.
pub async fn assert_redeploy_is_a_noop(
    engine: &Engine,
    config: &Config,
    kube: &qhub_sandbox::kube_api::KubeApi,
    keycloak: &qhub_sandbox::keycloak_api::KeycloakApi,
) {
    let (kube_before, kc_before) = (kube.mutations(), keycloak.counts().mutating);
    let again = deploy(engine, config).await;
    assert!(again.is_empty(), "{}", again.render_text());
    assert_eq!(
        kube.mutations(),
        kube_before,
        "Kubernetes writes on a no-op"
    );
    assert_eq!(
        keycloak.counts().mutating,
        kc_before,
        "Keycloak writes on a no-op"
    );
}

/// The ids of what `plan` deletes.
pub fn deleted(plan: &Plan) -> Vec<String> {
    plan.changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.id.to_string())
        .collect()
}

/// What `qhub init sandbox` writes for the project `demo` at `demo.example.com`.
pub fn sandbox_config() -> Config {
    render(&InitOptions::new(
        ProviderKind::Sandbox,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .expect("qhub init's sandbox config renders")
}

/// The ids of the changes of `plan` with `action`.
pub fn ids(plan: &Plan, action: Action) -> BTreeSet<String> {
    plan.changes
        .iter()
        .filter(|c| c.action == action)
        .map(|c| c.id.to_string())
        .collect()
}

/// The python of a pinned virtualenv a real-software test runs (`scripts/test` installs each):
/// the path in `env_var`, else the workspace's `.venv-NAME` (`venv`). A missing one fails the
/// test, naming `what` needs it, the install command `install` and the variable: a skipped
/// check would pass without checking.
pub fn venv_python(env_var: &str, venv: &str, what: &str, install: &str) -> std::path::PathBuf {
    let python = std::env::var_os(env_var)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(venv)
                .join("bin/python")
        });
    assert!(
        python.is_file(),
        "{what}'s python not found at {} (run scripts/test once, or `{install}` and set {env_var})",
        python.display()
    );
    python
}
