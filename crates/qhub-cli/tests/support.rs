//! `qhub support` on the sandbox (its in-memory Kubernetes API): the bundle lists the expected
//! entries, is bounded, and holds no secret value — neither a generated Secret's data nor a
//! `QHUB_SECRET_` value of the config.

mod common;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use common::{code, describe, json_stdout};

const ROOT_PASSWORD: &str = "root-pw-from-the-environment-42";

fn qhub(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qhub"))
        .args(args)
        .current_dir(dir)
        .env("QHUB_SANDBOX_TIME_SCALE", "0.0001")
        .env("ROOT_PW", ROOT_PASSWORD)
        .env_remove("QHUB_SANDBOX_FAULTS")
        .env_remove("QHUB_KEYCLOAK_URL")
        .env_remove("QHUB_LOG")
        .output()
        .expect("qhub runs")
}

/// Every value of every Secret the sandbox's cluster holds (decoded).
fn secret_values(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(".qhub-sandbox/kube-demo-dev.json"))
        .expect("the sandbox's cluster is kept beside the config");
    let saved: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for obj in saved["objects"].as_array().unwrap() {
        if obj["kind"] != "Secret" {
            continue;
        }
        for v in obj["data"].as_object().into_iter().flat_map(|m| m.values()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    out
}

fn entries(zip_path: &Path) -> Vec<(String, String)> {
    let file = std::fs::File::open(zip_path).unwrap();
    let mut archive = zip::ZipArchive::new(file).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            (f.name().to_string(), text)
        })
        .collect()
}

#[test]
fn a_support_bundle_has_logs_events_status_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let init = qhub(
        d,
        &[
            "init",
            "sandbox",
            "--project",
            "demo",
            "--domain",
            "demo.example.com",
            "--disable-prompt",
        ],
    );
    assert_eq!(code(&init), 0, "{}", describe(&init));
    // The root password from the environment, as a producer keeps it out of git.
    let config = d.join("qhub-config.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(
        "security:\n",
        "security:\n  keycloak:\n    initial_root_password: QHUB_SECRET_ROOT_PW\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let deploy = qhub(d, &["deploy", "--disable-prompt"]);
    assert_eq!(code(&deploy), 0, "{}", describe(&deploy));

    let out = qhub(
        d,
        &[
            "-o",
            "json",
            "support",
            "--out",
            "bundle.zip",
            "--tail",
            "2",
        ],
    );
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let doc = json_stdout(&out);
    assert_eq!(doc["errors"], serde_json::json!([]), "{doc:#}");
    let path = d.join("bundle.zip");
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(doc["bytes"], size);
    let entries = entries(&path);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    println!(
        "support bundle: {size} bytes, {} entries: {names:?}",
        names.len()
    );
    for want in [
        "qhub-support/README.txt",
        "qhub-support/version.json",
        "qhub-support/config.yaml",
        "qhub-support/status.json",
        "qhub-support/pods.json",
        "qhub-support/events.json",
    ] {
        assert!(names.contains(&want), "no {want} in {names:?}");
    }
    let logs: Vec<&(String, String)> = entries
        .iter()
        .filter(|(n, _)| n.starts_with("qhub-support/logs/") && n.ends_with(".log"))
        .collect();
    assert!(
        logs.iter()
            .any(|(n, _)| n.starts_with("qhub-support/logs/keycloak-")),
        "{names:?}"
    );
    for (name, text) in &logs {
        assert_eq!(
            text.lines().count(),
            2,
            "--tail 2 keeps 2 lines: {name}\n{text}"
        );
    }
    let get = |n: &str| &entries.iter().find(|(name, _)| name == n).unwrap().1;
    let status: serde_json::Value = serde_json::from_str(get("qhub-support/status.json")).unwrap();
    assert_eq!(status["in_sync"], true, "{status:#}");
    let config = get("qhub-support/config.yaml");
    assert!(
        config.contains("initial_root_password: QHUB_SECRET_ROOT_PW"),
        "the reference is kept, it names no value:\n{config}"
    );

    // No secret value anywhere: the generated Secrets' data, the config's resolved secret.
    let mut secrets = secret_values(d);
    assert!(secrets.len() >= 5, "{}", secrets.len());
    secrets.push(ROOT_PASSWORD.into());
    for (name, text) in &entries {
        for s in secrets.iter().filter(|s| s.len() >= 6) {
            assert!(!text.contains(s.as_str()), "{name} holds a secret value");
        }
    }
    // The zip is replaced atomically, never left half-written: a second run replaces it.
    let again = qhub(d, &["support", "--out", "bundle.zip"]);
    assert_eq!(code(&again), 0, "{}", describe(&again));
    assert!(
        common::stdout(&again).contains("wrote bundle.zip"),
        "{}",
        describe(&again)
    );
}
