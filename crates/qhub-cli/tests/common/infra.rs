//! The infrastructure lifecycle every cloud's CLI test runs against its emulator.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::{code, describe, json_stdout};

/// A `qhub` command in `dir` with `env` set, `remove` removed (credentials the machine may
/// have), no log filter, and stdin not a terminal.
pub fn command(dir: &std::path::Path, env: &[(&str, &str)], remove: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qhub"));
    cmd.current_dir(dir)
        .env_remove("QHUB_LOG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    cmd
}

/// Runs `cmd` with `args`, insists on exit 0, and on `secret` appearing nowhere in its output.
#[track_caller]
pub fn ok(mut cmd: Command, args: &[&str], secret: &str) -> Output {
    let out = cmd.args(args).output().expect("qhub runs");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(secret),
        "qhub {}: the token leaked",
        args.join(" ")
    );
    assert_eq!(code(&out), 0, "qhub {}: {}", args.join(" "), describe(&out));
    out
}

/// `qhub plan` (a cluster and its pools, the pools created with the cluster), `deploy`, a no-op
/// plan, `status` (in sync, everything ready), `destroy`, `status` (nothing left), all with
/// `--stage infrastructure`. `ok` runs `qhub` with the cloud's environment and insists on exit
/// 0. Returns how many resources the first plan created.
pub fn lifecycle(ok: &dyn Fn(&[&str]) -> Output) -> u64 {
    let plan = || -> Value {
        json_stdout(&ok(&[
            "plan",
            "--stage",
            "infrastructure",
            "--output",
            "json",
        ]))
    };
    let status = || -> Value {
        json_stdout(&ok(&[
            "--output",
            "json",
            "status",
            "--stage",
            "infrastructure",
        ]))
    };
    let first = plan();
    let creates = first["summary"]["create"].as_u64().unwrap_or(0);
    assert!(creates >= 2, "a cluster and its pools: {first:#}");
    let changes = first["changes"].as_array().expect("changes");
    assert!(
        changes.iter().skip(1).all(|c| c["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("created with"))),
        "the pools are created with the cluster, each planned once after it: {first:#}"
    );
    ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    let after = plan();
    assert_eq!(after["changes"], serde_json::json!([]), "{after:#}");
    let deployed = status();
    assert_eq!(deployed["in_sync"], true, "{deployed:#}");
    let resources = deployed["resources"].as_array().expect("resources");
    assert_eq!(resources.len() as u64, creates, "{deployed:#}");
    assert!(
        resources.iter().all(|r| r["state"] == "ready"),
        "{deployed:#}"
    );
    ok(&["destroy", "--stage", "infrastructure", "--disable-prompt"]);
    let gone = status();
    assert_eq!(gone["resources"], serde_json::json!([]), "{gone:#}");
    creates
}
