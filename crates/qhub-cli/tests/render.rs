//! `qhub render --manifests DIR` end to end: the manifests of QHub's default AWS, GCP and
//! DigitalOcean configs (insta snapshots), strict schema validation with
//! `kubernetes-validate` (PyPI) for the cluster's Kubernetes version, no secret on disk, and
//! stale files of an earlier render removed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{code, describe, json_stdout};

fn qhub(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qhub"))
        .args(args)
        .current_dir(dir)
        .env_remove("QHUB_LOG")
        .env("PROJECT_ID", "demo-project")
        .output()
        .expect("qhub runs")
}

/// A default config for `provider` written by `qhub init` with a root password added, and the
/// password.
fn init(dir: &Path, provider: &str) -> (PathBuf, String) {
    let file = dir.join(format!("{provider}.yaml"));
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
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", describe(&out));
    // `init` writes no password; a config that still carries one (as QHub 0.4's did) must not
    // have it rendered into a file.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("initial_root_password"), "{text}");
    let password = "RenderTestRootPassword1".to_string();
    let text = text.replacen(
        "  shared_users_group: true\n",
        &format!(
            "  shared_users_group: true\n  keycloak:\n    initial_root_password: {password}\n"
        ),
        1,
    );
    assert!(text.contains(&password), "{text}");
    std::fs::write(&file, text).unwrap();
    (file, password)
}

/// Every file under `dir`, sorted, as (relative path, text).
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(dir).unwrap().flatten() {
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            let rel = f
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read_to_string(f.path()).unwrap()));
        }
    }
    out.sort();
    out
}

fn render(dir: &Path, provider: &str) -> (PathBuf, Vec<(String, String)>, String) {
    let (config, password) = init(dir, provider);
    let manifests = dir.join(format!("out-{provider}"));
    let out = qhub(
        dir,
        &[
            "--output",
            "json",
            "render",
            "-c",
            config.to_str().unwrap(),
            "--manifests",
            manifests.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let doc = json_stdout(&out);
    let files = files(&manifests);
    assert_eq!(doc["objects"], files.len(), "{doc:#}");
    (manifests, files, password)
}

/// `kubernetes-validate --strict` on every file, for Kubernetes `version`. The tool is required:
/// `QHUB_KUBERNETES_VALIDATE`, else the workspace's `.venv` (scripts/test installs it there); a
/// missing tool fails the test rather than letting it pass unchecked.
fn validate_strictly(manifests: &Path, files: &[(String, String)], version: &str) {
    let tool = std::env::var_os("QHUB_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/kubernetes-validate")
        });
    assert!(
        tool.is_file(),
        "kubernetes-validate not found at {} (run scripts/test once, or `pip install \
         kubernetes-validate==1.37.0` and set QHUB_KUBERNETES_VALIDATE)",
        tool.display()
    );
    let out = Command::new(&tool)
        .args(["--strict", "--quiet", "-k", &format!("{version}.0")])
        .args(files.iter().map(|(p, _)| manifests.join(p)))
        .output()
        .expect("kubernetes-validate runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{report}"
    );
    // Only our CRDs' instances may lack a built-in schema (they are checked against our own).
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.contains("Couldn't find schema for kind") && line.contains("traefik.io/v1alpha1"),
            "kubernetes-validate: {line}\n{report}"
        );
    }
}

fn check(provider: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (manifests, files, password) = render(dir.path(), provider);
    for (path, text) in &files {
        assert!(!text.contains(&password), "{path} holds the root password");
    }
    validate_strictly(&manifests, &files, "1.33");
    let joined: String = files.iter().map(|(p, t)| format!("=== {p}\n{t}")).collect();
    insta::assert_snapshot!(format!("render_{provider}"), joined);
}

#[test]
fn aws_default_config_renders_valid_manifests() {
    check("aws");
}

#[test]
fn gcp_default_config_renders_valid_manifests() {
    check("gcp");
}

#[test]
fn do_default_config_renders_valid_manifests() {
    check("do");
}

#[test]
fn a_second_render_removes_what_the_config_no_longer_wants_and_keeps_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = init(dir.path(), "aws");
    let manifests = dir.path().join("out");
    let run = || {
        let out = qhub(
            dir.path(),
            &[
                "--output",
                "json",
                "render",
                "-c",
                config.to_str().unwrap(),
                "--manifests",
                manifests.to_str().unwrap(),
            ],
        );
        assert_eq!(code(&out), 0, "{}", describe(&out));
        json_stdout(&out)
    };
    let first = run();
    assert!(first["written"].as_array().is_some_and(|w| !w.is_empty()));
    let foreign = manifests.join("ingress").join("mine.yaml");
    std::fs::write(&foreign, "kind: ConfigMap\n").unwrap();
    let again = run();
    assert_eq!(
        again["written"].as_array().map(Vec::len),
        Some(0),
        "{again:#}"
    );
    assert_eq!(again["unchanged"], first["objects"], "{again:#}");
    // Switch the AWS autoscaler off by moving to a provider that scales natively is not a
    // config edit; drop the welcome page's theme title instead and turn TLS off: the
    // certificate's objects go.
    let text = std::fs::read_to_string(&config).unwrap();
    let text = if text.contains("certificate:") {
        text.replace("type: self-signed", "type: disabled")
    } else {
        format!("{text}certificate:\n  type: disabled\n")
    };
    std::fs::write(&config, text).unwrap();
    let third = run();
    let removed: Vec<String> = third["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        removed.iter().any(|r| r.ends_with("tlsstore-default.yaml")),
        "{third:#}"
    );
    assert!(
        foreign.exists(),
        "a file qhub did not write is never removed"
    );
}

/// The GPU variant of every cloud's default config (a GPU node group, a GPU JupyterLab profile
/// and a GPU Dask worker profile, and every optional component the registry has turned on:
/// `components::tables::everything_enabled`) renders manifests `kubernetes-validate --strict`
/// accepts. The per-component snapshots hold the GPU variants' content.
#[test]
fn gpu_variants_of_the_default_configs_render_valid_manifests() {
    use qhub_core::config::ProviderKind;
    let dir = tempfile::tempdir().unwrap();
    let mut rendered = Vec::new();
    for (mut config, _) in qhub_core::kubernetes::components::tables::everything_enabled() {
        if !matches!(
            config.provider,
            ProviderKind::Aws | ProviderKind::Gcp | ProviderKind::Do
        ) {
            continue;
        }
        let provider = config.provider.to_string();
        config.profiles.jupyterlab.push(
            serde_json::from_value(serde_json::json!({
                "display_name": "GPU Instance",
                "description": "4 CPU / 16GB RAM / 1 GPU",
                "kubespawner_override": {
                    "cpu_limit": 4, "cpu_guarantee": 3, "mem_limit": "16G", "mem_guarantee": "10G",
                    "extra_resource_limits": {"nvidia.com/gpu": 1},
                },
            }))
            .unwrap(),
        );
        config.profiles.dask_worker.insert(
            "GPU Worker".into(),
            serde_json::from_value(serde_json::json!({
                "worker_cores_limit": 4, "worker_cores": 3,
                "worker_memory_limit": "16G", "worker_memory": "10G",
                "worker_extra_container_config": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
            }))
            .unwrap(),
        );
        let file = dir.path().join(format!("{provider}-gpu.yaml"));
        std::fs::write(&file, config.to_yaml()).unwrap();
        let manifests = dir.path().join(format!("out-{provider}-gpu"));
        let out = qhub(
            dir.path(),
            &[
                "render",
                "-c",
                file.to_str().unwrap(),
                "--manifests",
                manifests.to_str().unwrap(),
            ],
        );
        assert_eq!(code(&out), 0, "{provider}: {}", describe(&out));
        let files = files(&manifests);
        assert!(
            files.iter().any(|(_, t)| t.contains("nvidia.com/gpu")),
            "{provider}: no GPU placement rendered"
        );
        validate_strictly(&manifests, &files, "1.33");
        rendered.push(provider);
    }
    assert_eq!(rendered, ["aws", "gcp", "do"]);
}
