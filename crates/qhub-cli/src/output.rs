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

/// Prints an error with its whole cause chain. A cause whose text its error already ends with
/// (the `"{what}: {source}"` pattern) is not printed twice.
pub fn print_error(format: OutputFormat, err: &anyhow::Error) {
    let chain = chain(err);
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

/// The messages of an error's chain, without a cause that the message before it already ends
/// with.
fn chain(err: &anyhow::Error) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for message in err.chain().map(ToString::to_string) {
        if out.last().is_some_and(|prev| prev.ends_with(&message)) {
            continue;
        }
        out.push(message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("observing existing resources: {source}")]
    struct Outer {
        source: Inner,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("HTTP 401 unauthorized")]
    struct Inner;

    #[test]
    fn a_cause_already_in_its_message_is_not_repeated() {
        let err = anyhow::Error::new(Outer { source: Inner }).context("deploying");
        assert_eq!(
            chain(&err),
            [
                "deploying",
                "observing existing resources: HTTP 401 unauthorized"
            ]
        );
    }
}
