//! `scripts/smoke`, the opt-in real-cloud smoke test, run end to end on the built-in sandbox
//! (no network, no credentials), and its refusals: no credentials, an emulator endpoint, no
//! confirmation. The real clouds are never called from here. Needs bash and python3 (the
//! script reads qhub's JSON with it; without it the script exits 2 and these tests fail).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{code, describe, json_stdout, stderr};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/smoke")
}

/// `scripts/smoke ARGS` in `dir`, with this build's qhub, a fast sandbox, and no cloud
/// credentials or endpoints from the environment.
fn smoke(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(script())
        .args(args)
        .current_dir(dir)
        .env("QHUB", env!("CARGO_BIN_EXE_qhub"))
        .env("QHUB_SANDBOX_TIME_SCALE", "0.0001")
        .env("HOME", dir)
        .env("TMPDIR", dir)
        .env_remove("QHUB_SANDBOX_FAULTS")
        .env_remove("QHUB_LOG")
        .env_remove("PROJECT_ID")
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_")
            || k.starts_with("GOOGLE_")
            || k.starts_with("DIGITALOCEAN_")
            || k == "QHUB_GKE_ENDPOINT"
        {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("bash runs scripts/smoke")
}

#[test]
fn the_smoke_test_passes_on_the_sandbox_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.md");
    let out = smoke(
        dir.path(),
        &["sandbox", "--yes", "--report", report.to_str().unwrap()],
        &[],
    );
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", describe(&out)));
    assert_eq!(code(&out), 0, "{}\n{text}", describe(&out));
    assert!(
        text.starts_with("# qhub smoke test: sandbox — PASSED\n"),
        "{text}"
    );
    for section in [
        "## Versions",
        "## Steps",
        "## Left behind",
        "## Estimated cost",
        "## Config",
        "## Step output",
    ] {
        assert!(
            text.contains(&format!("\n{section}\n")),
            "no {section}:\n{text}"
        );
    }
    // Every step in order, with its exit code, and each as expected.
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("`qhub "))
        .collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r.trim_start_matches("| ").split(" |").next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "init",
            "validate",
            "cost",
            "deploy",
            "health",
            "no-op plan",
            "destroy",
            "left behind"
        ],
        "{text}"
    );
    for row in &rows {
        let cells: Vec<&str> = row.split(" | ").collect();
        assert_eq!(cells[2], "0", "{row}");
        assert!(
            row.ends_with("| ok |") || row.ends_with("| read |"),
            "{row}"
        );
    }
    assert!(
        text.contains("`qhub plan -c ") && text.contains("--detailed-exitcode`"),
        "{text}"
    );
    assert!(
        text.contains("Nothing tagged with the deployment is left."),
        "{text}"
    );
    // The sandbox's checks cannot run (its load balancer is simulated) and the report says so,
    // naming as many as the deployed config lists (one per enabled component's URL).
    let deployed = text
        .split_once("## Config\n\n```yaml\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(yaml, _)| yaml)
        .unwrap_or_else(|| panic!("no config in the report:\n{text}"));
    let config = qhub_core::config::load_str(deployed, Path::new("qhub-config.yaml"))
        .unwrap_or_else(|e| panic!("the report's config does not load: {e}"))
        .config;
    let checks = qhub_core::kubernetes::endpoints::urls(&config).len();
    assert!(checks >= 7, "{checks} checks for the demo platform");
    assert!(
        text.contains(&format!(
            "| health | {checks} checks not run: the sandbox's load balancer is simulated"
        )),
        "{text}"
    );
    // The estimate it asked about, and the minimal config it deployed.
    assert!(
        text.contains("Cost of the config in sandbox local-1") && text.contains("Total: $"),
        "{text}"
    );
    assert!(text.contains("  type: self-signed"), "{text}");
    assert!(!text.contains("max_nodes: 5"), "{text}");
    assert!(text.contains("  shared_filesystem: 20Gi"), "{text}");
    // The versions are those of the binary that ran.
    let version = Command::new(env!("CARGO_BIN_EXE_qhub"))
        .args(["-o", "json", "version"])
        .output()
        .unwrap();
    let version = json_stdout(&version);
    for key in ["version", "commit"] {
        let v = version[key].as_str().unwrap();
        assert!(text.contains(v), "{key} {v} not in the report:\n{text}");
    }
    println!(
        "report: {} bytes, {} lines",
        text.len(),
        text.lines().count()
    );
    // Its work directory is gone: nothing was left to destroy by hand.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("qhub-smoke."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_smoke_test_refuses_to_run_without_credentials_or_against_an_emulator() {
    let dir = tempfile::tempdir().unwrap();
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Env<'_>, &str); 5] = [
        ("do", &[], "DIGITALOCEAN_TOKEN is not set"),
        ("aws", &[], "no AWS credentials found"),
        ("gcp", &[], "no GCP credentials found"),
        (
            "gcp",
            &[("GOOGLE_CREDENTIALS", "{}")],
            "PROJECT_ID is not set",
        ),
        (
            "aws",
            &[
                ("AWS_ACCESS_KEY_ID", "x"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ],
            "AWS_ENDPOINT_URL is set",
        ),
    ];
    for (provider, env, says) in cases {
        let out = smoke(dir.path(), &[provider, "--yes"], env);
        assert_eq!(code(&out), 2, "{provider}: {}", describe(&out));
        assert!(
            stderr(&out).contains("refusing to run") && stderr(&out).contains(says),
            "{provider}: {}",
            describe(&out)
        );
        assert!(
            stderr(&out).contains("nothing was created"),
            "{}",
            describe(&out)
        );
    }
    // Nothing written: no work directory, no report.
    let written: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

#[test]
fn the_smoke_test_asks_before_it_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let out = smoke(dir.path(), &["sandbox"], &[]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(stderr(&out).contains("not confirmed"), "{}", describe(&out));
    // The estimate was printed before the question.
    assert!(
        common::stdout(&out).contains("Cost of the config in sandbox"),
        "{}",
        describe(&out)
    );
    assert!(!stderr(&out).contains("==> deploy"), "{}", describe(&out));
}
