//! Advice that is right: one line when the Kubernetes stage has no cluster, hints for the config
//! file given, flags only where they act, `QHUB_*` values checked, and what to do instead of
//! `qhub kubeconfig` where there is none.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{code, describe, json_stdout, stderr};

fn qhub(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qhub"));
    cmd.args(args)
        .current_dir(dir)
        .env("QHUB_SANDBOX_TIME_SCALE", "0.0001")
        .env_remove("QHUB_SANDBOX_FAULTS")
        .env_remove("QHUB_LOG")
        .env_remove("QHUB_DEPLOY_LOCK")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("qhub runs")
}

fn init(dir: &Path, provider: &str, file: &str) {
    let out = qhub(
        dir,
        &[
            "init",
            provider,
            "--project",
            "demo",
            "--domain",
            "demo.example.com",
            "--disable-prompt",
            "-c",
            file,
        ],
        &[],
    );
    assert_eq!(code(&out), 0, "{}", describe(&out));
}

#[test]
fn kubernetes_stage_without_a_cluster_says_to_deploy_the_infrastructure_first_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "sandbox", "team.yaml");
    let out = qhub(
        dir.path(),
        &[
            "deploy",
            "-c",
            "team.yaml",
            "--stage",
            "kubernetes",
            "--disable-prompt",
        ],
        &[],
    );
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let err = stderr(&out);
    // The config's own warnings (services it enables that are not built yet) come first; the
    // advice itself is one line.
    let advice: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim_start().starts_with("WARN"))
        .collect();
    assert_eq!(advice.len(), 1, "one line: {err}");
    assert!(
        err.contains("cluster does not exist")
            && err.contains("`qhub deploy -c team.yaml --stage infrastructure`"),
        "{err}"
    );
    assert!(!err.contains("re-run"), "{err}");
}

#[test]
fn hints_name_the_config_file_given() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "sandbox", "team.yaml");
    // An old config: the hint says how to upgrade this file.
    let text = std::fs::read_to_string(dir.path().join("team.yaml")).unwrap();
    let old = text.replace("qhub_version: 0.4.5", "qhub_version: 0.3.14");
    assert_ne!(old, text, "init writes qhub_version 0.4.5");
    std::fs::write(dir.path().join("team.yaml"), old).unwrap();
    let out = qhub(
        dir.path(),
        &["-o", "json", "validate", "-c", "team.yaml"],
        &[],
    );
    let doc = json_stdout(&out);
    let text = doc.to_string();
    assert!(text.contains("qhub upgrade -c team.yaml"), "{doc:#}");
    assert!(!text.contains("-c qhub-config.yaml"), "{doc:#}");

    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "sandbox", "team.yaml");
    let out = qhub(dir.path(), &["status", "-c", "team.yaml"], &[]);
    assert!(
        common::stdout(&out).contains("`qhub plan -c team.yaml`"),
        "{}",
        describe(&out)
    );
}

#[test]
fn flags_exist_only_on_the_commands_where_they_act() {
    let dir = tempfile::tempdir().unwrap();
    for (args, acts) in [
        (&["plan", "--concurrency", "2"][..], false),
        (&["plan", "--lock-timeout", "5m"], false),
        (&["plan", "--disable-prompt"], false),
        (&["status", "--concurrency", "2"], false),
        (&["status", "--lock-timeout", "5m"], false),
        (&["status", "--allow-replace", "cluster/x"], false),
        (&["destroy", "--allow-replace", "cluster/x"], false),
        (&["deploy", "--detailed-exitcode"], false),
        (&["plan", "--allow-replace", "cluster/x", "--help"], true),
        (&["deploy", "--concurrency", "2", "--help"], true),
        (&["deploy", "--lock-timeout", "5m", "--help"], true),
        (&["destroy", "--lock-timeout", "5m", "--help"], true),
        (&["status", "--detailed-exitcode", "--help"], true),
    ] {
        let out = qhub(dir.path(), args, &[]);
        let expected = if acts { 0 } else { 2 };
        assert_eq!(code(&out), expected, "{args:?}: {}", describe(&out));
    }
}

#[test]
fn unknown_values_of_qhub_variables_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "sandbox", "qhub-config.yaml");
    let out = qhub(dir.path(), &["plan"], &[("QHUB_DEPLOY_LOCK", "bogus")]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(
        stderr(&out).contains("accepted: `cloud`"),
        "{}",
        describe(&out)
    );
    let out = qhub(dir.path(), &["plan"], &[("QHUB_DEPLOY_LOCK", "local")]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
}

#[test]
fn kubeconfig_says_what_to_do_instead_where_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "sandbox", "qhub-config.yaml");
    let out = qhub(dir.path(), &["kubeconfig"], &[]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(stderr(&out).contains("qhub status"), "{}", describe(&out));

    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "existing", "qhub-config.yaml");
    let out = qhub(dir.path(), &["kubeconfig"], &[]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(stderr(&out).contains("KUBECONFIG"), "{}", describe(&out));
}
