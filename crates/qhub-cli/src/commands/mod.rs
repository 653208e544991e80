//! One module per command.

mod completions;
mod cost;
mod groups;
mod health;
mod init;
mod lifecycle;
mod progress;
mod render;
mod schema;
mod secrets;
mod support;
mod upgrade;
mod users;
mod validate;
mod version;

use crate::cli::{Cli, Command};

/// Runs the chosen command; returns the exit code for outcomes that are not errors
/// (`validate` on an invalid config returns 1 after printing its report).
pub fn dispatch(cli: &Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Init(args) => init::run(args, cli.output),
        Command::Validate(args) => validate::run(&args.config, cli.output),
        Command::Upgrade(args) => upgrade::run(args, cli.output),
        Command::Plan(args) => lifecycle::plan(args, cli.output),
        Command::Deploy(args) => lifecycle::deploy(args, cli.output),
        Command::Status(args) => lifecycle::status(args, cli.output),
        Command::Destroy(args) => lifecycle::destroy(args, cli.output),
        Command::Kubeconfig(args) => lifecycle::kubeconfig(args, cli.output),
        Command::Render(args) => render::run(args, cli.output),
        Command::Schema(args) => schema::run(args, cli.output),
        Command::Version => version::run(cli.output),
        Command::Secrets(crate::cli::SecretsCommand::Show(args)) => secrets::show(args, cli.output),
        Command::Users(cmd) => users::run(cmd, cli.output),
        Command::Support(args) => support::run(args, cli.output),
        Command::Cost(args) => cost::run(&args.config, cli.output),
        Command::Completions(args) => completions::run(args),
    }
}
