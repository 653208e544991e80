//! `qhub version` and `--version`.

use crate::cli::OutputFormat;

/// The crate's version.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit it was built from (`…-modified` with uncommitted changes), empty when unknown.
const COMMIT: &str = env!("QHUB_BUILD_COMMIT");
/// `SOURCE_DATE_EPOCH`'s day, or the commit's; empty when unknown (see build.rs).
const DATE: &str = env!("QHUB_BUILD_DATE");

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

fn known(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Prints the version.
pub fn run(format: OutputFormat) -> anyhow::Result<u8> {
    let config_version = qhub_core::config::QHUB_VERSION;
    match format {
        OutputFormat::Json => crate::output::json(&serde_json::json!({
            "version": VERSION,
            "commit": known(COMMIT),
            "build_date": known(DATE),
            "qhub_config_version": config_version,
        }))?,
        OutputFormat::Text => crate::output::stdout(&format!(
            "qhub {VERSION}\ncommit: {}\nbuilt: {}\nconfig: QHub {config_version} (`qhub_version: {config_version}`; older configs: `qhub upgrade`)\n",
            known(COMMIT).unwrap_or("unknown (built without git)"),
            known(DATE).unwrap_or("unknown"),
        ))?,
    }
    Ok(0)
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
