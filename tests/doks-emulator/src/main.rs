//! `qhub-doks-emulator`: runs the DOKS emulator on loopback until interrupted.
//!
//! Settings from the environment: `QHUB_DOKS_PORT` (default 0: any free port),
//! `QHUB_DOKS_TOKEN` (default `dop_v1_emulator`; empty: no token needed),
//! `QHUB_DOKS_PROVISIONING_POLLS` (default 3), `QHUB_DO_SPEC` (the spec file). It prints
//! `DIGITALOCEAN_API_URL=http://127.0.0.1:PORT` on its first line.

use qhub_doks_emulator::{DoksEmulator, Options};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = var("QHUB_DOKS_PORT")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let mut options = Options::default();
    if let Some(t) = var("QHUB_DOKS_TOKEN") {
        options.token = Some(t).filter(|t| !t.is_empty());
    }
    if let Some(n) = var("QHUB_DOKS_PROVISIONING_POLLS").and_then(|n| n.parse().ok()) {
        options.provisioning_polls = n;
    }
    let emulator =
        DoksEmulator::start_on(options, std::net::SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("DIGITALOCEAN_API_URL={}", emulator.url());
    if let Some(t) = emulator.token() {
        println!("token: {t}");
    }
    // Ctrl-C or SIGTERM (a test harness stopping it) ends it, with its counters on stderr.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    let c = emulator.counters();
    eprintln!(
        "served {} requests ({} mutations, {} spec violations)",
        c.requests, c.mutations, c.spec_violations
    );
    Ok(())
}
