//! `qhub upgrade`.

use qhub_core::config::upgrade;

use crate::cli::{OutputFormat, UpgradeArgs};

/// Migrates the config in place (or shows what would change with `--dry-run`).
pub fn run(args: &UpgradeArgs, format: OutputFormat) -> anyhow::Result<u8> {
    let outcome = upgrade::upgrade_file(&args.config, args.dry_run)?;
    let m = &outcome.migration;
    match format {
        OutputFormat::Json => crate::output::json(&serde_json::json!({
            "file": args.config,
            "dry_run": args.dry_run,
            "changed": !m.changes.is_empty(),
            "outcome": outcome,
        }))?,
        OutputFormat::Text => {
            if m.changes.is_empty() {
                println!(
                    "{} is already current (qhub_version {}); nothing to do",
                    args.config.display(),
                    m.to_version
                );
                return Ok(0);
            }
            let verb = if args.dry_run {
                "would upgrade"
            } else {
                "upgraded"
            };
            println!(
                "{verb} {} from {} to {}:",
                args.config.display(),
                m.from_version,
                m.to_version
            );
            for change in &m.changes {
                println!("  - {change}");
            }
            if let Some(backup) = &outcome.backup {
                let verb = if args.dry_run { "would keep" } else { "kept" };
                println!("{verb} the original as {}", backup.display());
            }
            if let Some(users) = &outcome.users_import_file {
                let verb = if args.dry_run { "would write" } else { "wrote" };
                println!("{verb} {}", users.display());
            }
            for note in &m.notes {
                println!("note: {note}");
            }
        }
    }
    Ok(0)
}
