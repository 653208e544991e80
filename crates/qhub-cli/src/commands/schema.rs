//! `qhub schema`.

use qhub_core::config::{reference, schema};

use crate::UsageError;
use crate::cli::{OutputFormat, SchemaArgs, SchemaFormat, SchemaKind};

/// Prints a JSON Schema (always JSON, whatever `--output` says: it is for machines): the
/// config's, or with `output` that of what `--output json` prints; with `--format markdown`
/// the configuration reference generated from the config's.
pub fn run(args: &SchemaArgs, format: OutputFormat) -> anyhow::Result<u8> {
    match (args.what, args.format) {
        (_, SchemaFormat::Markdown) if format == OutputFormat::Json => Err(UsageError {
            message: "--format markdown prints Markdown, which is not JSON: drop --output json, or drop --format markdown for the JSON Schema".into(),
        }
        .into()),
        (SchemaKind::Output, SchemaFormat::Markdown) => Err(UsageError {
            message: "the output contract is published as JSON Schema only (its prose is docs/output.md): drop --format markdown".into(),
        }
        .into()),
        (SchemaKind::Config, SchemaFormat::Json) => {
            crate::output::raw_json(schema::json_schema())?;
            Ok(0)
        }
        (SchemaKind::Config, SchemaFormat::Markdown) => {
            crate::output::stdout(&reference::markdown())?;
            Ok(0)
        }
        (SchemaKind::Output, SchemaFormat::Json) => {
            let doc: serde_json::Value = serde_json::from_str(crate::output::OUTPUT_SCHEMA)?;
            crate::output::raw_json(&doc)?;
            Ok(0)
        }
    }
}
