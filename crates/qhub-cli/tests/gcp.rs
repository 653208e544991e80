//! `qhub` with `provider: gcp` from the command line, against the GKE emulator on loopback
//! (`tests/gke-emulator`): init, validate, plan, deploy, a no-op plan, status, destroy. The
//! emulator insists on a bearer token, which must never appear in qhub's output.

mod common;
#[path = "common/infra.rs"]
mod infra;

use std::process::Output;

use qhub_gke_emulator::{GkeEmulator, Options};

const TOKEN: &str = "ya29.qhub-test-token-0123456789";

struct Gcp {
    endpoint: String,
    dir: tempfile::TempDir,
}

impl Gcp {
    #[track_caller]
    fn ok(&self, args: &[&str]) -> Output {
        let cmd = infra::command(
            self.dir.path(),
            &[
                ("QHUB_GKE_ENDPOINT", &self.endpoint),
                ("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN),
                // Every library's most detailed logs: the token must not be in them either.
                ("QHUB_LOG", "trace"),
            ],
            &["GOOGLE_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS"],
        );
        infra::ok(cmd, args, TOKEN)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_status_and_destroy_a_gke_cluster_from_the_cli() {
    let emulator = GkeEmulator::start(Options {
        token: Some(TOKEN.into()),
        ..Options::default()
    })
    .await
    .expect("the GKE emulator starts");
    let gcp = Gcp {
        endpoint: emulator.endpoint(),
        dir: tempfile::tempdir().unwrap(),
    };
    // The qhub process runs while the emulator serves on this runtime's other worker.
    let result = tokio::task::spawn_blocking(move || {
        gcp.ok(&[
            "init",
            "gcp",
            "--project",
            "demo",
            "--domain",
            "demo.example.com",
            "--gcp-project",
            "qhub-test",
            "--ci-provider",
            "none",
            "--disable-prompt",
        ]);
        gcp.ok(&["validate"]);
        infra::lifecycle(&|args| gcp.ok(args))
    })
    .await
    .expect("the CLI run");
    assert!(result >= 2);
    assert!(
        emulator.clusters().is_empty(),
        "destroy left clusters in the emulator"
    );
    // Every command took the deploy lock in Cloud Storage (the default); the destroy removed
    // its bucket once empty.
    let c = emulator.counters();
    assert!(
        c.by_route.get("POST upload/o").is_some_and(|n| *n > 0),
        "no command took the Cloud Storage lock: {c:?}"
    );
    assert!(
        emulator.buckets().is_empty(),
        "destroy left the lock bucket: {:?}",
        emulator.buckets()
    );
    assert_eq!(emulator.counters().rejected, 0, "{:?}", emulator.counters());
}
