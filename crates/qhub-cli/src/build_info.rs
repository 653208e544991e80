//! What this binary is: the crate version, the commit and the date it was built from (see
//! build.rs). A leaf module: the command line (`--version`) and `qhub version` both read it.

/// The crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit it was built from (`…-modified` with uncommitted changes), empty when unknown.
pub const COMMIT: &str = env!("QHUB_BUILD_COMMIT");
/// `SOURCE_DATE_EPOCH`'s day, or the commit's; empty when unknown (see build.rs).
pub const DATE: &str = env!("QHUB_BUILD_DATE");

/// `qhub --version`'s text: `qhub 0.1.0 (commit abc123, built 2026-12-06; reads and writes
/// QHub 0.4.5 configs)`.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("QHUB_BUILD_COMMIT"),
    ", built ",
    env!("QHUB_BUILD_DATE"),
    "; reads and writes QHub ",
    "0.4.5",
    " configs, qhub_version: 0.4.5)"
);

/// `s`, or `None` when the build did not know it.
pub fn known(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_long_version_names_the_config_version_it_reads() {
        // `concat!` needs literals: the QHub version is written twice, kept equal here.
        assert!(
            super::LONG.contains(&format!(
                "qhub_version: {}",
                qhub_core::config::QHUB_VERSION
            )),
            "{}",
            super::LONG
        );
        assert!(super::LONG.starts_with(env!("CARGO_PKG_VERSION")));
    }
}
