//! Helpers shared by the `qhub-do` tests: the default DO config, the DOKS emulator and a
//! provider pointed at it.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use qhub_core::Config;
use qhub_core::config::CiKind;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::retry::{Budget, RetryPolicy};
use qhub_do::client::{ApiStats, ClientOptions, Token};
use qhub_do::{DigitalOceanProvider, DoOptions};
use qhub_doks_emulator::{DoksEmulator, Options, RateLimit};

/// The config `qhub init do` writes for `project`.
pub fn do_config(project: &str) -> Config {
    render(&InitOptions {
        ci: CiKind::None,
        ..InitOptions::new(
            ProviderKind::Do,
            project,
            "do.example.com",
            "0123456789abcdef",
        )
    })
    .expect("render")
}

/// An emulator with quick provisioning (two reads) that checks requests against the spec.
/// Its budget is large: a provider polling every millisecond would otherwise spend
/// DigitalOcean's 250 requests a minute in a second and wait out the minute (the client's
/// pacing is tested on its own in `client.rs`).
pub async fn emulator() -> DoksEmulator {
    emulator_with(Options {
        provisioning_polls: 2,
        rate_limit: RateLimit::unlimited(),
        ..Options::default()
    })
    .await
}

/// An emulator with `options`.
pub async fn emulator_with(options: Options) -> DoksEmulator {
    DoksEmulator::start(options).await.expect("emulator")
}

/// Client options for `emu`: its URL and token, fast retries.
pub fn client_options(emu: &DoksEmulator) -> ClientOptions {
    ClientOptions {
        base_url: emu.url(),
        token: emu.token().map(Token::new),
        retry: RetryPolicy::uniform(Budget::attempts(
            8,
            Duration::from_millis(2),
            Duration::from_millis(50),
        )),
        max_rate_wait: Duration::from_secs(5),
        reserve: 0,
        // The tests poll every millisecond; the budget tests set their own limits.
        burst_limit: 1_000_000,
        burst_window: Duration::from_secs(60),
        per_page: 20,
        timeout: Duration::from_secs(10),
    }
}

/// Provider options for `emu`, counting into `stats`, polling every millisecond.
pub fn options(emu: &DoksEmulator, stats: Arc<ApiStats>) -> DoOptions {
    DoOptions {
        client: client_options(emu),
        stats: Some(stats),
        poll_interval: Some(Duration::from_millis(1)),
        ..DoOptions::default()
    }
}

/// A provider for `config` against `emu`, counting into `stats`.
pub fn provider(emu: &DoksEmulator, config: &Config, stats: Arc<ApiStats>) -> DigitalOceanProvider {
    DigitalOceanProvider::new(config, options(emu, stats)).expect("provider")
}

/// Fails when the emulator saw a request off DigitalOcean's spec, or checked none at all.
pub fn assert_on_spec(emu: &DoksEmulator) -> u64 {
    let c = emu.counters();
    assert_eq!(
        c.spec_violations,
        0,
        "requests off DigitalOcean's OpenAPI spec:\n{}",
        c.violations.join("\n")
    );
    // The emulator's own answers must be DigitalOcean's shapes, or the client is tested
    // against a fiction.
    assert!(
        c.answer_violations.is_empty(),
        "emulator answers off DigitalOcean's OpenAPI spec:\n{}",
        c.answer_violations.join("\n")
    );
    assert!(
        emu.spec_checked() && c.spec_checked > 0,
        "no request was checked against DigitalOcean's OpenAPI spec ({} requests served)",
        c.requests
    );
    c.spec_checked
}
