//! Workspace-level integration tests for qhub-rs (in `tests/tests/`), their fixtures
//! (`tests/fixtures/`) and, as providers arrive, the local emulators they run against.

use std::path::PathBuf;

pub mod aws_rules;
pub mod eks_access;
pub mod eks_addons;
pub mod fault_proxy;
pub mod moto;
pub mod service_quotas;

/// The seed every property test runs with unless `PROPTEST_RNG_SEED` names another: a failure
/// seen once is seen on every machine and every re-run.
pub const PROPTEST_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// The configuration of every property test of the workspace: `cases` cases (unless
/// `PROPTEST_CASES` says otherwise, e.g. `PROPTEST_CASES=20000` for a deeper run), a fixed seed
/// ([`PROPTEST_SEED`], or `PROPTEST_RNG_SEED`), and failures persisted under
/// `proptest-regressions/` beside the test's crate, where they are committed so that every later
/// run replays them first.
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};
    // `Config::default()` reads the `PROPTEST_*` variables; keep what they set.
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(PROPTEST_SEED);
    }
    config.failure_persistence = Some(Box::new(FileFailurePersistence::SourceParallel(
        "proptest-regressions",
    )));
    config
}

/// The directory of the test fixtures.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Reads a fixture file as text.
pub fn fixture(name: &str) -> String {
    let path = fixtures_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}
