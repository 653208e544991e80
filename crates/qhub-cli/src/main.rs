//! The `qhub` binary: everything lives in [`qhub_cli::run`].

fn main() -> std::process::ExitCode {
    qhub_cli::run()
}
