//! `qhub` with `provider: do` from the command line, against the DOKS emulator on loopback
//! (`tests/doks-emulator`, which checks every request against DigitalOcean's OpenAPI spec when
//! the spec is present): init, validate, plan, deploy, a no-op plan, status, destroy. The token
//! must never appear in qhub's output.

mod common;

use std::process::{Command, Output, Stdio};

use common::{code, describe, json_stdout};
use qhub_core::provider::Ownership;
use qhub_doks_emulator::{DoksEmulator, Options};
use serde_json::Value;

struct Do {
    url: String,
    token: String,
    dir: tempfile::TempDir,
}

impl Do {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qhub"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("DIGITALOCEAN_API_URL", &self.url)
            .env("DIGITALOCEAN_TOKEN", &self.token)
            .env_remove("DIGITALOCEAN_ACCESS_TOKEN")
            .env_remove("QHUB_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("qhub runs");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(&self.token),
            "qhub {}: the token leaked",
            args.join(" ")
        );
        assert_eq!(code(&out), 0, "qhub {}: {}", args.join(" "), describe(&out));
        out
    }

    #[track_caller]
    fn plan(&self) -> Value {
        json_stdout(&self.ok(&["plan", "--stage", "infrastructure", "--output", "json"]))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_status_and_destroy_a_doks_cluster_from_the_cli() {
    let emulator = DoksEmulator::start(Options {
        provisioning_polls: 2,
        ..Options::default()
    })
    .await
    .expect("the DOKS emulator starts");
    let token = emulator.token().expect("the emulator insists on a token");
    let cli = Do {
        url: emulator.url(),
        token,
        dir: tempfile::tempdir().unwrap(),
    };
    let creates = tokio::task::spawn_blocking(move || {
        cli.ok(&[
            "init",
            "do",
            "--project",
            "demo",
            "--domain",
            "demo.example.com",
            "--ci-provider",
            "none",
            "--disable-prompt",
        ]);
        cli.ok(&["validate"]);
        let plan = cli.plan();
        let creates = plan["summary"]["create"].as_u64().unwrap_or(0);
        assert!(creates >= 2, "a cluster and its pools: {plan:#}");
        cli.ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
        let after = cli.plan();
        assert_eq!(after["changes"], serde_json::json!([]), "{after:#}");
        let status =
            json_stdout(&cli.ok(&["--output", "json", "status", "--stage", "infrastructure"]));
        assert_eq!(status["in_sync"], true, "{status:#}");
        let resources = status["resources"].as_array().expect("resources");
        assert_eq!(resources.len() as u64, creates, "{status:#}");
        assert!(
            resources.iter().all(|r| r["state"] == "ready"),
            "{status:#}"
        );
        cli.ok(&["destroy", "--stage", "infrastructure", "--disable-prompt"]);
        let gone =
            json_stdout(&cli.ok(&["--output", "json", "status", "--stage", "infrastructure"]));
        assert_eq!(gone["resources"], serde_json::json!([]), "{gone:#}");
        creates
    })
    .await
    .expect("the CLI run");
    assert!(creates >= 2);
    let ownership = Ownership {
        project: "demo".into(),
        namespace: "dev".into(),
    };
    let left = emulator.census(&qhub_do::desired::ownership_tags(&ownership));
    assert!(left.values().all(|n| *n == 0), "destroy left {left:?}");
    let counters = emulator.counters();
    assert_eq!(counters.spec_violations, 0, "{:?}", counters.violations);
    if !emulator.spec_checked() {
        eprintln!("NOTICE: the DigitalOcean spec was not found; requests were not checked");
    }
}
