//! `qhub deploy --dns-provider cloudflare --dns-auto-provision` end to end on the sandbox, with
//! `QHUB_CLOUDFLARE_API_URL` pointing at the Cloudflare emulator on loopback: the record is
//! created after deploy and a re-deploy makes no Cloudflare write; the flags are checked before
//! anything changes; the token never appears in trace logs.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{code, describe, json_stdout, stderr, stdout};
use qhub_cloudflare_emulator::{CloudflareEmulator, Options};

const TOKEN: &str = "cfTraceToken0123456789abcdef";

fn qhub(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qhub"));
    cmd.args(args)
        .current_dir(dir)
        .env("QHUB_SANDBOX_TIME_SCALE", "0.0001")
        .env_remove("QHUB_SANDBOX_FAULTS")
        .env_remove("QHUB_LOG")
        .env_remove("RUST_LOG")
        .env_remove("CLOUDFLARE_TOKEN")
        .env_remove("QHUB_CLOUDFLARE_API_URL")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs qhub off the async runtime (the emulator answers on it meanwhile).
async fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = qhub(dir, args, env);
    tokio::task::spawn_blocking(move || cmd.output().expect("qhub runs"))
        .await
        .expect("qhub ran")
}

async fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "init",
            "sandbox",
            "--project",
            "demo",
            "--domain",
            "demo.example.com",
            "--disable-prompt",
        ],
        &[],
    )
    .await;
    assert_eq!(code(&out), 0, "init: {}", describe(&out));
    dir
}

async fn emulator() -> CloudflareEmulator {
    CloudflareEmulator::start(Options {
        tokens: vec![TOKEN.into()],
        ..Options::default()
    })
    .await
    .unwrap()
}

const DEPLOY: &[&str] = &[
    "--output",
    "json",
    "deploy",
    "--disable-prompt",
    "--dns-provider",
    "cloudflare",
    "--dns-auto-provision",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_creates_the_record_and_a_redeploy_writes_nothing_to_cloudflare() {
    let dir = sandbox().await;
    let cf = emulator().await;
    let url = cf.url();
    let env = [
        ("CLOUDFLARE_TOKEN", TOKEN),
        ("QHUB_CLOUDFLARE_API_URL", url.as_str()),
    ];
    let out = run(dir.path(), DEPLOY, &env).await;
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let doc = json_stdout(&out);
    assert_eq!(doc["dns"]["outcome"], "created", "{doc:#}");
    assert_eq!(doc["dns"]["provider"], "cloudflare");
    assert_eq!(doc["dns"]["type"], "A");
    assert_eq!(doc["dns"]["value"], "127.0.0.1");
    let records = cf.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].name.as_str(), records[0].content.as_str()),
        ("demo.example.com", "127.0.0.1")
    );
    let writes = cf.mutations();
    assert_eq!(writes, 1);
    let calls = cf.counters().requests;

    let out = run(dir.path(), DEPLOY, &env).await;
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let doc = json_stdout(&out);
    assert_eq!(doc["dns"]["outcome"], "unchanged", "{doc:#}");
    assert_eq!(
        cf.mutations(),
        writes,
        "a re-deploy writes nothing to Cloudflare"
    );
    // A no-op deploy reads: the zone lookups and one list of the name's records.
    let reads = cf.counters().requests - calls;
    assert!(reads <= 3, "{reads} Cloudflare calls for a no-op deploy");

    // Text output says what was done.
    let out = run(
        dir.path(),
        &[
            "deploy",
            "--disable-prompt",
            "--dns-provider",
            "cloudflare",
            "--dns-auto-provision",
        ],
        &env,
    )
    .await;
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(
        !stdout(&out).contains("at your DNS provider"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flags_are_checked_before_anything_changes() {
    let dir = sandbox().await;
    let out = run(dir.path(), DEPLOY, &[]).await;
    assert_eq!(code(&out), 1, "{}", describe(&out));
    // With --output json the error is a JSON document on stdout.
    assert!(
        json_stdout(&out)["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("CLOUDFLARE_TOKEN is not set")),
        "{}",
        describe(&out)
    );
    assert!(
        !dir.path().join(".qhub-sandbox").join("world.json").exists(),
        "nothing was created"
    );
    let out = run(
        dir.path(),
        &[
            "deploy",
            "--disable-prompt",
            "--dns-provider",
            "route53",
            "--dns-auto-provision",
        ],
        &[("CLOUDFLARE_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(
        stderr(&out).contains("--dns-provider route53: not supported yet"),
        "{}",
        describe(&out)
    );
    let out = run(
        dir.path(),
        &["deploy", "--disable-prompt", "--dns-auto-provision"],
        &[("CLOUDFLARE_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(
        stderr(&out).contains("needs --dns-provider"),
        "{}",
        describe(&out)
    );
    assert!(!dir.path().join(".qhub-sandbox").join("world.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloudflare_token_never_appears_in_trace_logs() {
    let dir = sandbox().await;
    let cf = emulator().await;
    let url = cf.url();
    let env = [
        ("CLOUDFLARE_TOKEN", TOKEN),
        ("QHUB_CLOUDFLARE_API_URL", url.as_str()),
        ("QHUB_LOG", "trace"),
    ];
    for args in [DEPLOY, &DEPLOY[2..]] {
        let out = run(dir.path(), args, &env).await;
        assert_eq!(code(&out), 0, "{}", describe(&out));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            all.contains("TRACE") || all.contains("trace"),
            "no trace lines"
        );
        assert!(
            all.contains("Cloudflare"),
            "the Cloudflare calls are logged"
        );
        assert!(
            !all.contains(TOKEN),
            "the token appears in the trace output"
        );
    }
    // A refused token's error names the variable, not the value.
    let wrong = "cfWrongToken0123456789abcdef";
    let out = run(
        dir.path(),
        DEPLOY,
        &[
            ("CLOUDFLARE_TOKEN", wrong),
            ("QHUB_CLOUDFLARE_API_URL", url.as_str()),
            ("QHUB_LOG", "trace"),
        ],
    )
    .await;
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("CLOUDFLARE_TOKEN was refused"), "{all}");
    assert!(!all.contains(wrong));
}
