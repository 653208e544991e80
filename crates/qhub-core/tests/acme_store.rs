//! Traefik's ACME store across restarts, on the sandbox: the in-memory API records what
//! kubelet does to a volume a pod with an `fsGroup` mounts (`sandbox.qhub.dev/fs-group-changed`
//! on the pod). With `fsGroupChangePolicy: OnRootMismatch` the store's volume is re-owned only
//! on its first mount, when it is still empty; a later Traefik pod finds `acme.json` as Traefik
//! left it (0600), which Traefik requires (traefik/traefik `pkg/provider/acme/local_store_unix.go`).

use std::sync::Arc;
use std::time::Duration;

use qhub_core::config::certificate::CertificateKind;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::events::NoEvents;
use qhub_core::provider::{Ownership, Provider};
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

async fn deploy(engine: &Engine, config: &qhub_core::Config) {
    let (_, report) = engine
        .deploy(
            config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .expect("deploy runs");
    assert!(report.succeeded(), "{report:?}");
}

/// The Traefik pods: (name, the claims kubelet re-owned when it started).
fn traefik_pods(objects: &[Value]) -> Vec<(String, String)> {
    objects
        .iter()
        .filter(|o| {
            o["kind"] == "Pod" && o["metadata"]["labels"]["app.kubernetes.io/name"] == "traefik"
        })
        .map(|o| {
            (
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                o["metadata"]["annotations"]["sandbox.qhub.dev/fs-group-changed"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_traefik_finds_its_acme_store_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = Engine::new(
        Arc::new(provider.clone()) as Arc<dyn Provider>,
        EngineOptions {
            min_deadline: Duration::from_secs(60),
            poll_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    );
    let mut config = render(&InitOptions::new(
        ProviderKind::Sandbox,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    config.certificate.kind = CertificateKind::LetsEncrypt;
    config.certificate.acme_email = Some("admin@example.com".into());
    deploy(&engine, &config).await;
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    let first = traefik_pods(&kube.objects());
    assert_eq!(first.len(), 1, "{first:?}");
    // The fresh volume is made the group's on its first mount (it is empty then).
    assert_eq!(first[0].1, "traefik-acme", "{first:?}");

    // A new Traefik pod (a changed pod template, as an upgrade or a config change makes).
    config.certificate.acme_email = Some("ops@example.com".into());
    deploy(&engine, &config).await;
    let second = traefik_pods(&kube.objects());
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second[0].0, first[0].0, "no new pod was started");
    assert_eq!(
        second[0].1, "",
        "kubelet re-owned the ACME store again (acme.json would be 0660 and refused): {second:?}"
    );
}
