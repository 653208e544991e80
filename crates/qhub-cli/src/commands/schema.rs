//! `qhub schema`.

use qhub_core::config::{reference, schema};

use crate::cli::{SchemaArgs, SchemaFormat};

/// Prints the JSON Schema (always JSON, whatever `--output` says: it is for machines), or with
/// `--format markdown` the configuration reference generated from it.
pub fn run(args: &SchemaArgs) -> anyhow::Result<u8> {
    match args.format {
        SchemaFormat::Json => crate::output::json(schema::json_schema())?,
        SchemaFormat::Markdown => print!("{}", reference::markdown()),
    }
    Ok(0)
}
