//! Printing results and errors in the chosen format. With `--output json`, stdout carries
//! exactly one JSON document; everything else goes to stderr. The shapes are a contract
//! (`docs/output.md`), published as JSON Schema by `qhub schema output` ([`OUTPUT_SCHEMA`]).

use std::io::Write as _;

use serde::Serialize;

/// Output formats (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One JSON document on stdout.
    Json,
}

pub use qhub_core::events::{SCHEMA_VERSION, now_rfc3339};

/// The JSON Schema of every document and event `--output json` prints.
pub const OUTPUT_SCHEMA: &str = include_str!("../schemas/output.schema.json");

static VERBOSE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Sets the `-v` count the text output reads (`-v`: every object, not only each component).
pub fn set_verbose(count: u8) {
    VERBOSE.store(count, std::sync::atomic::Ordering::Relaxed);
}

/// The `-v` count.
pub fn verbose() -> u8 {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Stdout was closed by its reader (`qhub plan | head -1`): the command stops quietly and
/// exits with [`crate::EXIT_CLOSED_PIPE`], as a process killed by SIGPIPE reports in a shell.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct ClosedPipe;

/// Writes `text` to stdout; a closed pipe is [`ClosedPipe`], never a panic.
pub fn stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ClosedPipe.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// Prints one JSON document on stdout, with `schema_version` first. Objects only: every
/// document of the contract is one.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut doc = serde_json::Map::new();
    doc.insert("schema_version".into(), SCHEMA_VERSION.into());
    match serde_json::to_value(value)? {
        serde_json::Value::Object(fields) => doc.extend(fields),
        other => anyhow::bail!("internal: a JSON document must be an object, not {other}"),
    }
    raw_json(&doc)
}

/// Prints a JSON value as it is (the JSON Schemas `qhub schema` prints).
pub fn raw_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    stdout(&format!("{text}\n"))
}

/// Makes `println!` and friends on a closed stdout or stderr end the process quietly with
/// [`crate::EXIT_CLOSED_PIPE`] instead of a panic message and exit code 101: the standard
/// library panics there, and not every line goes through [`stdout`].
pub fn exit_quietly_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to std") && is_broken_pipe(message) {
            std::process::exit(i32::from(crate::EXIT_CLOSED_PIPE));
        }
        default(info);
    }));
}

/// The standard library's text for EPIPE ("Broken pipe (os error 32)").
fn is_broken_pipe(message: &str) -> bool {
    message.contains("Broken pipe") || message.contains("os error 32")
}

/// Prints an error with its whole cause chain. A cause whose text its error already ends with
/// (the `"{what}: {source}"` pattern) is not printed twice.
pub fn print_error(format: OutputFormat, err: &anyhow::Error, exit_code: u8) {
    let chain = chain(err);
    match format {
        OutputFormat::Json => {
            let doc = serde_json::json!({
                "error": chain.first(),
                "causes": &chain[1.min(chain.len())..],
                "exit_code": exit_code,
            });
            let _ = json(&doc);
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
