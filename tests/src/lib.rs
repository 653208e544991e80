//! Workspace-level integration tests for qhub-rs (in `tests/tests/`), their fixtures
//! (`tests/fixtures/`) and, as providers arrive, the local emulators they run against.

use std::path::PathBuf;

pub mod fault_proxy;
pub mod moto;

/// The directory of the test fixtures.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Reads a fixture file as text.
pub fn fixture(name: &str) -> String {
    let path = fixtures_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}
