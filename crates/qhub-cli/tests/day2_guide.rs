//! docs/day-2.md, run: every command of its code blocks, in order, through `sh`, against a
//! deployed sandbox (and, for `qhub cost`, the configs `qhub init aws|gcp|do` writes); each
//! must succeed.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{code, describe, json_stdout};

fn qhub(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qhub"))
        .args(args)
        .current_dir(dir)
        .env("QHUB_SANDBOX_TIME_SCALE", "0.0001")
        .env_remove("QHUB_SANDBOX_FAULTS")
        .env_remove("QHUB_KEYCLOAK_URL")
        .env_remove("QHUB_LOG")
        .env_remove("PROJECT_ID")
        .stdin(Stdio::null())
        .output()
        .expect("qhub runs")
}

/// The lines of the guide's code blocks.
fn block_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block && !line.trim().is_empty() {
            out.push(line.trim().to_string());
        }
    }
    out
}

#[test]
fn every_command_of_the_day_2_guide_runs() {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/day-2.md");
    let lines = block_lines(&std::fs::read_to_string(guide).unwrap());
    assert!(lines.len() >= 10, "{lines:?}");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let init = |provider: &str, file: &str| {
        let mut args = vec![
            "init",
            provider,
            "--project",
            "demo",
            "--domain",
            "demo.example.com",
            "--disable-prompt",
            "-c",
            file,
        ];
        if provider == "gcp" {
            args.extend(["--gcp-project", "my-gcp-project"]);
        }
        let out = qhub(d, &args);
        assert_eq!(code(&out), 0, "{}", describe(&out));
    };
    init("sandbox", "qhub-config.yaml");
    for (provider, file) in [("aws", "aws.yaml"), ("gcp", "gcp.yaml"), ("do", "do.yaml")] {
        init(provider, file);
    }
    let deploy = qhub(d, &["deploy", "--disable-prompt"]);
    assert_eq!(code(&deploy), 0, "{}", describe(&deploy));
    let bin = Path::new(env!("CARGO_BIN_EXE_qhub")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for line in &lines {
        assert!(
            line.contains("qhub "),
            "a code block line that is no qhub command: {line}"
        );
        let out = Command::new("sh")
            .args(["-c", line])
            .current_dir(d)
            .env("PATH", &path)
            .env("PASSWORD", "a-Long-password-from-a-vault-1")
            .env("QHUB_SANDBOX_TIME_SCALE", "0.0001")
            .env_remove("QHUB_SANDBOX_FAULTS")
            .env_remove("QHUB_KEYCLOAK_URL")
            .env_remove("QHUB_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("sh runs");
        assert_eq!(code(&out), 0, "`{line}`: {}", describe(&out));
    }
    // What the guide's commands did: alice added, bob added and removed again.
    let list = json_stdout(&qhub(d, &["-o", "json", "users", "list"]));
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["alice"], "{list:#}");
    assert!(d.join("support.zip").exists());
    println!("docs/day-2.md: {} commands run", lines.len());
}
