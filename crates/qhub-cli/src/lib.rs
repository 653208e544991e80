//! `qhub`: the command-line front end of qhub-rs. It parses arguments, wires providers to
//! `qhub-core` and prints results; it holds no provider logic.
//!
//! Exit codes (the contract is `docs/output.md`): 0 success, 1 invalid input or failed
//! operation, 2 usage error, 3 changes pending (`plan`/`status --detailed-exitcode`), 130/143
//! stopped by SIGINT/SIGTERM, 141 stdout closed by its reader.

mod build_info;
mod cli;
mod commands;
mod env;
mod output;

use std::process::ExitCode;

use clap::Parser;

pub use cli::{Cli, Command, OutputFormat};

/// Exit code for an invalid config or a failed operation.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for a usage error (bad flags, missing arguments).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `plan --detailed-exitcode` and `status --detailed-exitcode` when the deployment
/// is not in sync with the config. Not Terraform's 2: ours is the usage error (clap's), and a
/// mistyped flag in CI must not read as drift.
pub const EXIT_CHANGES_PENDING: u8 = 3;
/// Exit code when stdout (or stderr) was closed by its reader (`qhub schema | head -1`): the
/// status a shell reports for a process ended by SIGPIPE (128 + 13), without a message.
pub const EXIT_CLOSED_PIPE: u8 = 141;
/// Exit code of a deploy or destroy stopped by Ctrl-C (128 + SIGINT): in-flight changes
/// finished, nothing new started.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit code of a deploy or destroy stopped by SIGTERM (128 + SIGTERM, a cancelled CI job).
pub const EXIT_TERMINATED: u8 = 143;

/// An error that carries its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    /// What was wrong with the invocation.
    pub message: String,
}

/// `qhub VERB`, with `-c CONFIG` when the config is not the default file: the command a hint
/// tells the user to run, for the file they gave.
pub(crate) fn command_for(verb: &str, config: &std::path::Path) -> String {
    if config == std::path::Path::new(qhub_core::config::DEFAULT_FILE) {
        format!("qhub {verb}")
    } else {
        format!("qhub {verb} -c {}", config.display())
    }
}

/// Rewrites the hints of the config checks, written for the default file
/// (`qhub upgrade -c qhub-config.yaml`), for the file the user gave.
pub(crate) fn hints_for(report: &mut qhub_core::config::Report, config: &std::path::Path) {
    let default = format!("-c {}", qhub_core::config::DEFAULT_FILE);
    let given = format!("-c {}", config.display());
    if default == given {
        return;
    }
    for d in &mut report.diagnostics {
        d.message = d.message.replace(&default, &given);
        if let Some(h) = &mut d.hint {
            *h = h.replace(&default, &given);
        }
    }
}

/// Runs the CLI with the process's arguments and returns its exit code.
pub fn run() -> ExitCode {
    output::exit_quietly_on_closed_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    if let Err(e) = env::check(|name| std::env::var(name).ok()) {
        output::print_error(cli.output, &e.into(), EXIT_USAGE);
        return ExitCode::from(EXIT_USAGE);
    }
    init_tracing(cli.verbose, cli.output == OutputFormat::Json);
    output::set_verbose(cli.verbose);
    match commands::dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if err.downcast_ref::<output::ClosedPipe>().is_some() => {
            ExitCode::from(EXIT_CLOSED_PIPE)
        }
        Err(err) => {
            let code = if err.downcast_ref::<UsageError>().is_some() {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            };
            output::print_error(cli.output, &err, code);
            ExitCode::from(code)
        }
    }
}

/// Libraries whose trace events print requests or responses with their headers and bodies:
/// the AWS SDK's orchestrator ("transmitting request", "read HTTP response body") and signer
/// (the request it signs), and the HTTP stacks under every cloud client and the Kubernetes one.
const WIRE_TARGETS: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_sigv4",
    "aws_config",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "tower_http",
    "kube_client",
];

/// Logs go to stderr: plain lines, or JSON lines with `--output json` so that every stderr
/// line a machine reads is JSON.
fn init_tracing(verbose: u8, json: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("QHUB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Trace is where libraries print whole requests and responses; those hold credentials
    // (STS's answer to AssumeRole, the SDK reading a response body). The wire-level targets stay
    // at debug however QHUB_LOG asks for more, so no log ever prints one.
    if filter
        .max_level_hint()
        .is_none_or(|level| level >= tracing_subscriber::filter::LevelFilter::TRACE)
    {
        for target in WIRE_TARGETS {
            if let Ok(directive) = format!("{target}=debug").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    // Colours only on a terminal, and never with NO_COLOR set (no-color.org): a log file or
    // a CI pipe gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.without_time().try_init()
    };
}
