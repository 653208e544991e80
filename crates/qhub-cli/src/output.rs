//! Printing results and errors in the chosen format. With `--output json`, stdout carries
//! exactly one JSON document; everything else goes to stderr.

use serde::Serialize;

use crate::cli::OutputFormat;

/// Prints one JSON document on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    println!("{text}");
    Ok(())
}

/// Prints an error with its whole cause chain.
pub fn print_error(format: OutputFormat, err: &anyhow::Error) {
    let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
    match format {
        OutputFormat::Json => {
            let doc =
                serde_json::json!({"error": chain.first(), "causes": &chain[1.min(chain.len())..]});
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        OutputFormat::Text => {
            eprintln!("error: {}", chain.first().map(String::as_str).unwrap_or(""));
            for cause in &chain[1.min(chain.len())..] {
                eprintln!("  caused by: {cause}");
            }
        }
    }
}
