//! `qhub-cloudflare-emulator`: runs the Cloudflare emulator on loopback until interrupted.
//!
//! Settings: `QHUB_CLOUDFLARE_ZONES` (comma-separated zone names, default `example.com`),
//! `QHUB_CLOUDFLARE_EMULATOR_TOKEN` (default `cf-emulator-token`). It prints
//! `QHUB_CLOUDFLARE_API_URL=http://127.0.0.1:PORT/client/v4` on its first line.

use qhub_cloudflare_emulator::{CloudflareEmulator, Options};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    let mut options = Options::default();
    if let Some(zones) = var("QHUB_CLOUDFLARE_ZONES") {
        options.zones = zones.split(',').map(|z| z.trim().to_string()).collect();
    }
    if let Some(token) = var("QHUB_CLOUDFLARE_EMULATOR_TOKEN") {
        options.tokens = vec![token];
    }
    let emulator = CloudflareEmulator::start(options).await?;
    println!("QHUB_CLOUDFLARE_API_URL={}", emulator.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    let c = emulator.counters();
    eprintln!("served {} requests ({} mutations)", c.requests, c.mutations);
    Ok(())
}
