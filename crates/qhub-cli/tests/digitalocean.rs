//! `qhub` with `provider: do` from the command line, against the DOKS emulator on loopback
//! (`tests/doks-emulator`, which checks every request against DigitalOcean's OpenAPI spec when
//! the spec is present): init, validate, plan, deploy, a no-op plan, status, destroy, with the
//! deploy lock on Spaces (moto's S3 standing in for it). Neither the token nor the Spaces
//! secret may appear in qhub's output.

mod common;
#[path = "common/infra.rs"]
mod infra;

use std::process::Output;

use qhub_core::cloud::RetryPolicy;
use qhub_core::cloud::lock::LockStore;
use qhub_core::provider::Ownership;
use qhub_do::lock::{SpacesLockStore, SpacesOptions};
use qhub_doks_emulator::{DoksEmulator, Options, TEAM_UUID};
use qhub_tests::moto::Moto;

const SPACES_SECRET: &str = "spaces-secret-0123456789abcdef";

struct Do {
    url: String,
    token: String,
    spaces: String,
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
                ("SPACES_ACCESS_KEY_ID", "DO00CLITEST"),
                ("SPACES_SECRET_ACCESS_KEY", SPACES_SECRET),
                ("QHUB_SPACES_ENDPOINT", &self.spaces),
                // Every library's most detailed logs: the token must not be in them either.
                ("QHUB_LOG", "trace"),
            ],
            &[
                "DIGITALOCEAN_ACCESS_TOKEN",
                "QHUB_DEPLOY_LOCK",
                "QHUB_SPACES_REGION",
            ],
        );
        let out = infra::ok(cmd, args, &self.token);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(SPACES_SECRET),
            "qhub {}: the Spaces secret leaked",
            args.join(" ")
        );
        assert!(
            !all.contains("no cloud-side deploy lock"),
            "qhub {} did not take the lock on Spaces: {all}",
            args.join(" ")
        );
        out
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
    let moto = Moto::start();
    let cli = Do {
        url: emulator.url(),
        token,
        spaces: moto.endpoint(),
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
    // The commands took the deploy lock on Spaces (the default with a Spaces key): the team's
    // lock bucket exists, and holds no lock once they are done. Destroy leaves the bucket: a
    // deleted bucket's name stays reserved for a week.
    qhub_core::tls::install_crypto_provider();
    let buckets = reqwest::get(moto.endpoint())
        .await
        .expect("moto lists its buckets")
        .text()
        .await
        .expect("the list");
    let bucket = qhub_do::lock::bucket_name(TEAM_UUID, "nyc3");
    assert!(
        buckets.contains(&bucket),
        "no lock bucket {bucket}: {buckets}"
    );
    let store = SpacesLockStore::new(
        &SpacesOptions {
            access_key: "DO00CLITEST".into(),
            secret_key: SPACES_SECRET.into(),
            endpoint: Some(moto.endpoint()),
            region: None,
        },
        TEAM_UUID,
        "nyc3",
        &ownership.prefix(),
        Default::default(),
        RetryPolicy::default(),
    )
    .expect("store");
    assert!(
        store.get().await.expect("read the lock").is_none(),
        "a lock was left behind"
    );
    let counters = emulator.counters();
    assert_eq!(counters.spec_violations, 0, "{:?}", counters.violations);
    assert!(
        emulator.spec_checked() && counters.spec_checked > 0,
        "no request was checked against DigitalOcean's OpenAPI spec"
    );
}
