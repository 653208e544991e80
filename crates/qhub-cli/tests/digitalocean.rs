//! `qhub` with `provider: do` from the command line, against the DOKS emulator on loopback
//! (`tests/doks-emulator`, which checks every request against DigitalOcean's OpenAPI spec when
//! the spec is present): init, validate, plan, deploy, a no-op plan, status, destroy. The token
//! must never appear in qhub's output.

mod common;
#[path = "common/infra.rs"]
mod infra;

use std::process::Output;

use qhub_core::provider::Ownership;
use qhub_doks_emulator::{DoksEmulator, Options};

struct Do {
    url: String,
    token: String,
    dir: tempfile::TempDir,
}

impl Do {
    #[track_caller]
    fn ok(&self, args: &[&str]) -> Output {
        let cmd = infra::command(
            self.dir.path(),
            &[
                ("DIGITALOCEAN_API_URL", &self.url),
                ("DIGITALOCEAN_TOKEN", &self.token),
                // Every library's most detailed logs: the token must not be in them either.
                ("QHUB_LOG", "trace"),
            ],
            &["DIGITALOCEAN_ACCESS_TOKEN"],
        );
        infra::ok(cmd, args, &self.token)
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
        infra::lifecycle(&|args| cli.ok(args))
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
