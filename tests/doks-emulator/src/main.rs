//! `qhub-doks-emulator`: runs the DOKS emulator on loopback until interrupted.
//!
//! Settings: `--port N` or `QHUB_DOKS_PORT` (default 0: any free port),
//! `QHUB_DOKS_TOKEN` (default `dop_v1_emulator`; empty: no token needed),
//! `QHUB_DOKS_PROVISIONING_POLLS` (default 3), `QHUB_DOKS_TIME_SCALE` (default 0: DOKS's own
//! times, 7 minutes for a cluster, 4 for a pool, 5 to delete, multiplied by it), `QHUB_DO_SPEC`
//! (the spec file). It prints `DIGITALOCEAN_API_URL=http://127.0.0.1:PORT` on its first line.

use qhub_doks_emulator::{DoksEmulator, Options};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `--port N` (as the GKE emulator takes it) or QHUB_DOKS_PORT.
    let args: Vec<String> = std::env::args().collect();
    let flag = args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let port: u16 = match flag.or_else(|| var("QHUB_DOKS_PORT")) {
        Some(p) => p
            .parse()
            .map_err(|_| format!("the port must be a number, not `{p}`"))?,
        None => 0,
    };
    let mut options = Options::default();
    if let Some(t) = var("QHUB_DOKS_TOKEN") {
        options.token = Some(t).filter(|t| !t.is_empty());
    }
    if let Some(n) = var("QHUB_DOKS_PROVISIONING_POLLS").and_then(|n| n.parse().ok()) {
        options.provisioning_polls = n;
    }
    if let Some(scale) = var("QHUB_DOKS_TIME_SCALE")
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
    {
        // REFERENCE.md §4: a DOKS cluster takes 6–7 minutes.
        let scaled = |secs: f64| std::time::Duration::from_secs_f64(secs * scale);
        options.cluster_time = scaled(420.0);
        options.pool_time = scaled(240.0);
        options.delete_time = scaled(300.0);
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
