//! `qhub schema`.

/// Prints the JSON Schema (always JSON: it is for machines).
pub fn run() -> anyhow::Result<u8> {
    crate::output::json(qhub_core::config::schema::json_schema())?;
    Ok(0)
}
