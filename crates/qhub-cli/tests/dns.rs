//! `qhub deploy --dns-provider cloudflare --dns-auto-provision` end to end on the sandbox, with
//! `QHUB_CLOUDFLARE_API_URL` pointing at the Cloudflare emulator on loopback: the record is
//! created after deploy and a re-deploy makes no Cloudflare write; `plan` shows it; `destroy`
//! with the flags deletes only the record qhub wrote (a second destroy writes nothing) and
//! without them says it was left; the flags are checked the same on plan, deploy and destroy
//! before anything changes; the token never appears in trace logs.

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

/// The environment that points qhub at the Cloudflare emulator at `url`, with its token.
fn cloudflare_env(url: &str) -> [(&'static str, &str); 2] {
    [
        ("CLOUDFLARE_TOKEN", TOKEN),
        ("QHUB_CLOUDFLARE_API_URL", url),
    ]
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
    let (dir, cf) = (sandbox().await, emulator().await);
    let url = cf.url();
    let env = cloudflare_env(&url);
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

    // Status with the flags lists the record, ready and in sync; without them Cloudflare is
    // not asked and the record is not listed.
    let dns_listed = |doc: &serde_json::Value| {
        doc["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter(|r| r["resource"] == "DnsRecord/demo.example.com")
            .map(|r| r["state"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    let status = [
        "--output",
        "json",
        "status",
        "--dns-provider",
        "cloudflare",
        "--dns-auto-provision",
    ];
    let out = run(dir.path(), &status, &env).await;
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let doc = json_stdout(&out);
    assert_eq!(dns_listed(&doc), vec!["ready"], "{doc:#}");
    assert_eq!(doc["in_sync"], true, "{doc:#}");
    let asked = cf.counters().requests;
    let out = run(dir.path(), &status[..3], &env).await;
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(dns_listed(&json_stdout(&out)).is_empty());
    assert_eq!(
        cf.counters().requests,
        asked,
        "status without the flags read Cloudflare"
    );
    assert_eq!(cf.mutations(), writes, "status writes nothing");

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
async fn the_flags_are_checked_before_anything_changes_on_plan_deploy_status_and_destroy() {
    let dir = sandbox().await;
    for verb in ["plan", "deploy", "status", "destroy"] {
        let with = |extra: &[&'static str]| {
            let mut args = vec![verb];
            if verb == "deploy" || verb == "destroy" {
                args.push("--disable-prompt");
            }
            args.extend_from_slice(extra);
            args
        };
        let mut args = vec!["--output", "json"];
        args.extend(with(&[
            "--dns-provider",
            "cloudflare",
            "--dns-auto-provision",
        ]));
        let out = run(dir.path(), &args, &[]).await;
        assert_eq!(code(&out), 1, "{verb}: {}", describe(&out));
        // With --output json the error is a JSON document on stdout.
        assert!(
            json_stdout(&out)["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("CLOUDFLARE_TOKEN is not set")),
            "{verb}: {}",
            describe(&out)
        );
        let out = run(
            dir.path(),
            &with(&["--dns-provider", "route53", "--dns-auto-provision"]),
            &[("CLOUDFLARE_TOKEN", TOKEN)],
        )
        .await;
        assert_eq!(code(&out), 2, "{verb}: {}", describe(&out));
        assert!(
            stderr(&out).contains("--dns-provider route53: not supported yet"),
            "{verb}: {}",
            describe(&out)
        );
        let out = run(
            dir.path(),
            &with(&["--dns-auto-provision"]),
            &[("CLOUDFLARE_TOKEN", TOKEN)],
        )
        .await;
        assert_eq!(code(&out), 2, "{verb}: {}", describe(&out));
        assert!(
            stderr(&out).contains("needs --dns-provider"),
            "{verb}: {}",
            describe(&out)
        );
        assert!(
            !dir.path().join(".qhub-sandbox").join("world.json").exists(),
            "{verb}: nothing was created"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_dns_record_with_the_flags() {
    let (dir, cf) = (sandbox().await, emulator().await);
    let url = cf.url();
    let env = cloudflare_env(&url);
    let out = run(dir.path(), &["plan"], &env).await;
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(
        !stdout(&out).contains("DnsRecord/"),
        "without the flags the record is not planned: {}",
        describe(&out)
    );
    let flags = ["--dns-provider", "cloudflare", "--dns-auto-provision"];
    let out = run(dir.path(), &[&["plan", "-v"][..], &flags].concat(), &env).await;
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(
        stdout(&out).contains("+ DnsRecord/demo.example.com"),
        "{}",
        describe(&out)
    );
    let out = run(
        dir.path(),
        &[&["--output", "json", "plan"][..], &flags].concat(),
        &env,
    )
    .await;
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let doc = json_stdout(&out);
    let change = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["resource"] == "DnsRecord/demo.example.com")
        .unwrap_or_else(|| panic!("no DnsRecord in {doc:#}"));
    assert_eq!(change["action"], "create");
    assert!(cf.counters().requests > 0, "the plan read Cloudflare");
    assert_eq!(cf.mutations(), 0, "a plan writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_deletes_the_dns_record_qhub_wrote_and_never_another() {
    let (dir, cf) = (sandbox().await, emulator().await);
    let url = cf.url();
    let env = cloudflare_env(&url);
    let out = run(dir.path(), DEPLOY, &env).await;
    assert_eq!(code(&out), 0, "{}", describe(&out));
    // The user's own records: an AAAA beside ours at the name, and another name's A.
    cf.insert("AAAA", "demo.example.com", "2001:db8::7", None);
    cf.insert("A", "www.example.com", "192.0.2.9", None);
    let ours = |cf: &CloudflareEmulator| {
        cf.records()
            .iter()
            .any(|r| r.kind == "A" && r.name == "demo.example.com")
    };
    assert!(ours(&cf));

    // Without the flags the record stays, and the output says so and how to remove it.
    let writes = cf.mutations();
    let out = run(dir.path(), &["destroy", "--disable-prompt"], &env).await;
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(
        stdout(&out).contains(
            "DNS: the record of demo.example.com (if any) was left in place: delete it at your DNS provider, or re-run destroy with --dns-provider cloudflare --dns-auto-provision"
        ),
        "{}",
        describe(&out)
    );
    assert!(ours(&cf));
    assert_eq!(cf.mutations(), writes);

    // With them, the record qhub wrote is deleted (the cluster is gone already), the others
    // stay, the AAAA is named; the token appears nowhere, even in trace logs.
    let destroy = [
        "--output",
        "json",
        "destroy",
        "--disable-prompt",
        "--dns-provider",
        "cloudflare",
        "--dns-auto-provision",
    ];
    let trace = [env[0], env[1], ("QHUB_LOG", "trace")];
    let out = run(dir.path(), &destroy, &trace).await;
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("Cloudflare"),
        "the Cloudflare calls are logged"
    );
    assert!(!all.contains(TOKEN), "the token appears in the output");
    let doc = json_stdout(&out);
    let changes = doc["plan"]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{doc:#}");
    assert_eq!(changes[0]["resource"], "DnsRecord/demo.example.com");
    assert_eq!(changes[0]["action"], "delete");
    assert_eq!(doc["applied"]["dns"]["outcome"], "deleted", "{doc:#}");
    assert_eq!(doc["remaining"], serde_json::json!([]));
    assert!(
        doc["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .is_some_and(|n| n.contains("AAAA demo.example.com -> 2001:db8::7"))),
        "{doc:#}"
    );
    assert!(!ours(&cf));
    let mut left: Vec<(String, String)> =
        cf.records().into_iter().map(|r| (r.kind, r.name)).collect();
    left.sort();
    assert_eq!(
        left,
        [
            ("A".to_string(), "www.example.com".to_string()),
            ("AAAA".to_string(), "demo.example.com".to_string()),
        ]
    );
    assert_eq!(cf.mutations(), writes + 1);

    // A second destroy: nothing to delete, no error, no write; the AAAA is named again.
    let out = run(dir.path(), &destroy[2..], &env).await;
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(stdout(&out).contains("No changes"), "{}", describe(&out));
    assert!(
        stdout(&out).contains("Note: Cloudflare has AAAA demo.example.com -> 2001:db8::7"),
        "{}",
        describe(&out)
    );
    assert!(!stdout(&out).contains("left in place: delete it at your DNS provider"));
    assert_eq!(cf.mutations(), writes + 1);
}

#[test]
fn dns_wait_is_a_deploy_flag_with_the_lock_timeout_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let out = qhub(dir.path(), &["deploy", "--help"], &[])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(
        stdout(&out).contains("--dns-wait <DURATION>"),
        "{}",
        describe(&out)
    );
    let out = qhub(dir.path(), &["deploy", "--dns-wait", "ten"], &[])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(
        stderr(&out).contains("`ten` is not a duration like 90s, 20m or 1h"),
        "{}",
        describe(&out)
    );
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
