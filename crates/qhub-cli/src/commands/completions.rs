//! `qhub completions`: shell completion scripts generated from the clap definition, so they
//! cannot fall behind the commands and flags.

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs, Shell};

/// Writes the completion script for the shell to stdout.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<u8> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "qhub", &mut script);
    crate::output::stdout(&String::from_utf8_lossy(&script))?;
    Ok(0)
}
