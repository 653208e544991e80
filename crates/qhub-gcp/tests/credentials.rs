//! Credentials: the bearer token reaches GKE (the emulator checks it) and never a log, even at
//! TRACE level; a refused token is an authentication error that does not quote it.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use qhub_core::provider::{Ownership, Provider, ProviderError};
use qhub_gcp::{ApiStats, CredentialSource};
use qhub_gke_emulator::{GkeEmulator, Options};

use common::*;

const TOKEN: &str = "ya29.qhub-test-secret-token-0123456789";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_token_is_sent_and_never_logged() {
    let logs = Buffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emu = GkeEmulator::start(Options {
        token: Some(TOKEN.into()),
        ..Options::default()
    })
    .await
    .unwrap();
    let config = gcp_config("tokens");
    let stats = Arc::new(ApiStats::default());
    let good = || {
        Arc::new(provider_with(
            &emu,
            &config,
            stats.clone(),
            CredentialSource::AccessToken(TOKEN.into()),
        ))
    };
    let r = deploy(good(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    let kubeconfig = good()
        .kubeconfig(&Ownership::of(&config))
        .await
        .expect("kubeconfig");
    assert!(!kubeconfig.contains(TOKEN));
    let r = destroy(good(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    assert_eq!(emu.counters().unauthenticated, 0);
    tracing::info!(provider = ?good(), "debug print of the provider");

    // A refused token: an authentication error, without the token in it.
    let bad = provider_with(
        &emu,
        &config,
        stats.clone(),
        CredentialSource::AccessToken(format!("{TOKEN}-revoked")),
    );
    let e = bad.observe(&Ownership::of(&config)).await.unwrap_err();
    assert!(matches!(e, ProviderError::Unauthorized(_)), "{e:?}");
    assert!(!e.to_string().contains(TOKEN), "{e}");
    assert_eq!(emu.counters().unauthenticated, 1);

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("GKE call"), "the logs were captured:\n{text}");
    assert!(!text.contains(TOKEN), "the token leaked into the logs");
}

#[test]
fn anonymous_credentials_only_on_loopback() {
    let config = gcp_config("anon");
    let e = qhub_gcp::GcpProvider::new(
        &config,
        qhub_gcp::GcpOptions {
            endpoint: Some("https://container.googleapis.com".into()),
            credentials: CredentialSource::Anonymous,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("loopback"), "{e}");
    assert!(qhub_gcp::client::is_loopback("http://127.0.0.1:8080"));
    assert!(qhub_gcp::client::is_loopback("http://[::1]:80/v1"));
    assert!(qhub_gcp::client::is_loopback("http://localhost:1"));
    assert!(!qhub_gcp::client::is_loopback(
        "https://container.googleapis.com"
    ));
    assert!(!qhub_gcp::client::is_loopback(
        "http://127.0.0.1.example.com"
    ));
}
