//! jupyterhub-ssh's rendered settings and the host key qhub generates, loaded by the real
//! packages the servers run: ruamel.yaml, traitlets and asyncssh for the ssh server
//! (`tests/jupyterhub_ssh/check_ssh.py`, in `.venv-jupyterhub-ssh`, which scripts/test
//! installs), and OpenSSH's own key loader (`ssh-keygen`, Debian's openssh-client) for the
//! sftp server's sshd. jupyterhub-ssh itself is not on PyPI (the name is taken by an unrelated
//! project): the script says what it reproduces of it and from where.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::kubernetes::components::{self, jupyterhub_ssh};
use qhub_core::kubernetes::recipes;
use qhub_core::provider::ClusterFacts;
use serde_json::{Value as Json, json};

/// The install command of the venv (scripts/test runs it).
const INSTALL: &str = "python3 -m venv .venv-jupyterhub-ssh && .venv-jupyterhub-ssh/bin/pip \
                       install asyncssh==2.14.0 cryptography==41.0.3 ruamel.yaml==0.17.32 \
                       traitlets==5.10.0 requests==2.26.0 escapism==1.0.1";

/// The venv's python: `QHUB_JUPYTERHUB_SSH_PYTHON`, else the workspace's `.venv-jupyterhub-ssh`.
fn python() -> PathBuf {
    support::venv_python(
        "QHUB_JUPYTERHUB_SSH_PYTHON",
        ".venv-jupyterhub-ssh",
        "jupyterhub-ssh",
        INSTALL,
    )
}

/// `ssh-keygen`: OpenSSH's key loader, the one sshd uses.
fn ssh_keygen() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("ssh-keygen"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("ssh-keygen not found on PATH (install it: `apt-get install openssh-client`)")
    })
}

#[test]
fn the_ssh_server_loads_its_settings_and_both_servers_load_the_generated_host_key() {
    let config = render(&InitOptions::new(
        ProviderKind::Aws,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    let facts = ClusterFacts::from_config(&config);
    let manifests = components::manifests(&config, &facts).unwrap();
    let map = manifests
        .iter()
        .find(|m| m["kind"] == "ConfigMap" && m["metadata"]["name"] == jupyterhub_ssh::CONFIG_MAP)
        .expect("the ssh server's ConfigMap");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(jupyterhub_ssh::VALUES_FILE),
        map["data"][jupyterhub_ssh::VALUES_FILE].as_str().unwrap(),
    )
    .unwrap();
    let key_path = dir.path().join(jupyterhub_ssh::HOST_KEY);
    std::fs::write(&key_path, recipes::ssh_host_key().unwrap()).unwrap();
    // As the sftp pod mounts it (mode 0400): OpenSSH refuses a key others can read.
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o400)).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jupyterhub_ssh/check_ssh.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check_ssh.py failed:\n{stderr}");
    let report: Json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["unknown"], json!([]), "{report:#}");
    assert_eq!(report["hub_url"], "http://proxy-public.dev.svc:80");
    assert_eq!(report["port"], 8022);
    assert_eq!(report["debug"], false);
    assert_eq!(report["start_timeout"], 600);
    assert_eq!(
        report["host_key_path"],
        format!(
            "{}/{}",
            jupyterhub_ssh::SECRETS_DIR,
            jupyterhub_ssh::HOST_KEY
        )
    );
    assert_eq!(report["served"]["algorithm"], "ecdsa-sha2-nistp256");

    // OpenSSH reads the same key and derives the same public key asyncssh served.
    let keygen = Command::new(ssh_keygen())
        .arg("-y")
        .arg("-f")
        .arg(&key_path)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        keygen.status.success(),
        "ssh-keygen refuses the key: {}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let public = String::from_utf8(keygen.stdout).unwrap();
    let mut fields = public.split_whitespace();
    assert_eq!(fields.next(), Some("ecdsa-sha2-nistp256"), "{public}");
    assert_eq!(
        fields.next(),
        report["served"]["public_key"].as_str(),
        "{public}"
    );
}

/// qhub's sftp token check, as the sftp pod's ConfigMap holds it, with the sftp image's
/// requests and escapism against a stand-in hub: a user gets in with their own token only.
#[test]
fn sftp_admits_a_user_with_their_own_token_only_and_serves_their_escaped_home() {
    let config = render(&InitOptions::new(
        ProviderKind::Do,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    let facts = ClusterFacts::from_config(&config);
    let manifests = components::manifests(&config, &facts).unwrap();
    let map = manifests
        .iter()
        .find(|m| {
            m["kind"] == "ConfigMap" && m["metadata"]["name"] == jupyterhub_ssh::sftp::CONFIG_MAP
        })
        .expect("the sftp server's ConfigMap");
    let dir = tempfile::tempdir().unwrap();
    let check = dir.path().join("token_check.py");
    std::fs::write(
        &check,
        map["data"][jupyterhub_ssh::sftp::TOKEN_CHECK_FILE]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jupyterhub_ssh/check_token.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(&check)
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check_token.py failed:\n{stderr}");
    let report: Json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        report,
        json!({
            "own token": true,
            "another user's token": false,
            "a service's token": false,
            "an unknown token": false,
            "no token": false,
            "hub down": false,
            "names refused": ["", ".", "..", "a/b", "../x", "a\u{0}b"],
            "home of ada@example.com": "ada-40example-2ecom",
            "home of Bob.Smith": "-42ob-2e-53mith",
        }),
        "{stderr}"
    );
}
