//! `qhub validate`.

use std::path::Path;

use anyhow::Context;
use qhub_core::config::{self, Diagnostic};
use serde::Serialize;

use crate::cli::OutputFormat;

#[derive(Serialize)]
struct Result<'a> {
    file: &'a Path,
    valid: bool,
    errors: Vec<&'a Diagnostic>,
    warnings: Vec<&'a Diagnostic>,
}

/// Validates the file; exit code 1 when it has errors.
pub fn run(path: &Path, format: OutputFormat) -> anyhow::Result<u8> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (loaded, mut report) = config::check_str(&text);
    // Node-group keys are checked against what the config's provider reads, when this build
    // has that provider (building one makes no network call).
    if let Some(loaded) = &loaded {
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Ok(provider) = super::lifecycle::registry().build(&loaded.config, dir) {
            report
                .diagnostics
                .extend(loaded.node_group_key_warnings(provider.node_group_keys()));
            report.sort();
        }
    }
    crate::hints_for(&mut report, path);
    let valid = !report.has_errors();
    match format {
        OutputFormat::Json => crate::output::json(&Result {
            file: path,
            valid,
            errors: report.errors().collect(),
            warnings: report.warnings().collect(),
        })?,
        OutputFormat::Text => {
            if !report.diagnostics.is_empty() {
                eprintln!("{}:", path.display());
                eprint!("{report}");
            }
            let (e, w) = (report.errors().count(), report.warnings().count());
            if valid {
                println!("{} is valid ({w} warning(s))", path.display());
            } else {
                eprintln!(
                    "{} is invalid: {e} error(s), {w} warning(s)",
                    path.display()
                );
            }
        }
    }
    Ok(if valid { 0 } else { crate::EXIT_FAILED })
}
