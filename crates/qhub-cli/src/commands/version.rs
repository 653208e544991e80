//! `qhub version`.

use crate::build_info::{COMMIT, DATE, VERSION, known};
use crate::output::OutputFormat;

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
