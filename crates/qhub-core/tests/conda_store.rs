//! conda-store's configuration, checked by the real software: the files qhub renders
//! (`conda_store_config.py`, `qhub.json`, one spec per `environments` entry) are written to a
//! temporary directory and loaded by conda-store-server 2025.2.2 (PyPI) with its own
//! application and config classes (server and worker), each spec validated by its own
//! `CondaSpecification` and found by its own watched-path discovery
//! (`tests/conda_store/check_config.py`). Plus insta snapshots of the rendered files.
//!
//! The package lives in the git-ignored virtualenv `.venv-conda-store` (installed by
//! scripts/test), or the Python named by `QHUB_CONDA_STORE_PYTHON`; a missing one fails the
//! test with the command that installs it.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use qhub_core::Config;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::kubernetes::components::{assemble, conda_store};
use qhub_core::provider::ClusterFacts;
use serde_json::{Value as Json, json};

const INSTALL: &str = "python3 -m venv .venv-conda-store && .venv-conda-store/bin/pip install \
                       'conda-store-server==2025.2.2' (or run scripts/test once)";

fn python() -> PathBuf {
    support::venv_python(
        "QHUB_CONDA_STORE_PYTHON",
        ".venv-conda-store",
        "conda-store-server",
        INSTALL,
    )
}

fn config(provider: ProviderKind) -> Config {
    let mut opts = InitOptions::new(provider, "demo", "demo.example.com", "0123456789abcdef");
    opts.gcp_project = Some("demo-project".into());
    render(&opts).expect("the default config renders")
}

/// conda-store's objects for `config`, as assembled.
fn objects(config: &Config) -> Vec<Json> {
    let facts = ClusterFacts::from_config(config);
    assemble(config, &facts)
        .unwrap()
        .into_iter()
        .find(|a| a.name == conda_store::NAME)
        .expect("conda-store is deployed")
        .built
        .manifests
}

/// The data of the ConfigMap `name` among `objects`.
fn config_map(objects: &[Json], name: &str) -> BTreeMap<String, String> {
    let m = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no ConfigMap {name}"));
    serde_json::from_value(m["data"].clone()).unwrap()
}

/// Writes the config's files as the pods mount them and runs the checker with `expect`;
/// returns (success, stdout + stderr).
fn check(config: &Config, expect: &Json) -> (bool, String) {
    let python = python();
    let objects = objects(config);
    let dir = tempfile::tempdir().unwrap();
    let (conf, envs) = (dir.path().join("conf"), dir.path().join("environments"));
    for (sub, map) in [
        (&conf, config_map(&objects, conda_store::CONFIG)),
        (&envs, conda_store::config::environment_files(config)),
    ] {
        std::fs::create_dir_all(sub).unwrap();
        for (file, text) in map {
            std::fs::write(sub.join(file), text).unwrap();
        }
    }
    let expect_file = dir.path().join("expect.json");
    std::fs::write(&expect_file, expect.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conda_store/check_config.py");
    let out = Command::new(python)
        .arg(script)
        .args([&conf, &envs, &expect_file])
        .env("HOME", dir.path())
        .output()
        .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn user(name: &str, roles: &[&str], groups: &[&str]) -> Json {
    json!({"preferred_username": name, "roles": roles, "groups": groups})
}

#[test]
fn conda_store_loads_the_default_configuration_as_qhub_renders_it() {
    let config = config(ProviderKind::Aws);
    let expect = json!({
        "traits": {
            "CondaStore.store_directory": "/home/conda",
            "CondaStore.filesystem_namespace": "nebari-git",
            "CondaStore.default_namespace": "global",
            "CondaStore.storage_class": "LocalStorage",
            "CondaStore.conda_included_packages": ["ipykernel"],
            "CondaStore.database_url":
                "postgresql+psycopg2://conda_store:pg-secret@conda-store-postgres:5432/conda_store",
            "CondaStore.redis_url": "redis://:redis-secret@conda-store-redis:6379/0",
            "CondaStore.environment_directory": "{store_directory}/{namespace}/envs/{name}",
            "LocalStorage.storage_path": "/home/conda/.conda-store-artifacts",
            "CondaStoreServer.url_prefix": "/conda-store",
            "CondaStoreServer.port": 5000,
            "CondaStoreServer.behind_proxy": true,
            "CondaStoreServer.authentication_class": "QHubKeycloakAuthentication",
            "CondaStoreWorker.concurrency": 4,
            "GenericOAuthAuthentication.client_id": "conda_store",
            "GenericOAuthAuthentication.authorize_url":
                "https://demo.example.com/auth/realms/qhub/protocol/openid-connect/auth",
            "GenericOAuthAuthentication.access_token_url":
                "http://keycloak.dev.svc:8080/auth/realms/qhub/protocol/openid-connect/token",
            "GenericOAuthAuthentication.user_data_url":
                "http://keycloak.dev.svc:8080/auth/realms/qhub/protocol/openid-connect/userinfo",
            "GenericOAuthAuthentication.oauth_callback_url":
                "https://demo.example.com/conda-store/oauth_callback/",
            "RBACAuthorizationBackend.authenticated_role_bindings": {"nebari-git/*": ["viewer"]},
        },
        "role_bindings": [
            {
                "user": user("ana", &["conda_store_developer"], &["analyst"]),
                "bindings": {
                    "ana/*": ["admin"],
                    "nebari-git/*": ["viewer"],
                    "global/*": ["developer"],
                    "analyst/*": ["developer"],
                },
            },
            {
                "user": user("root", &["conda_store_admin", "other_client_role"], &["/admin"]),
                "bindings": {
                    "root/*": ["admin"],
                    "nebari-git/*": ["viewer"],
                    "global/*": ["admin"],
                    "admin/*": ["admin"],
                },
            },
            {
                "user": user("nobody", &[], &[]),
                "bindings": {"nobody/*": ["admin"], "nebari-git/*": ["viewer"], "global/*": []},
            },
        ],
        "environments": ["dask", "dashboard"],
    });
    let (success, out) = check(&config, &expect);
    assert!(success, "{out}");
    // Every check ran: the traits, three users, two environments.
    assert_eq!(
        out.matches("\nok: ").count() + 1,
        2 + 20 + 3 + 2 + 1,
        "{out}"
    );
}

#[test]
fn extra_settings_and_extra_config_are_applied_last_and_the_namespace_is_the_configs() {
    let mut config = config(ProviderKind::Do);
    let conda: qhub_core::config::CondaStore = serde_json::from_value(json!({
        "default_namespace": "team-envs",
        "extra_settings": {
            "CondaStore": {"conda_included_packages": ["ipykernel", "numpy"]},
            "CondaStoreServer": {"log_level": 10},
        },
        "extra_config": "c.CondaStoreWorker.concurrency = 2\nc.CondaStore.conda_included_packages.append('scipy')\n",
    }))
    .unwrap();
    config.conda_store = Some(conda);
    config.environments.insert(
        "environment-ml.yaml".into(),
        serde_json::from_value(json!({
            "name": "ml",
            "dependencies": ["python=3.12", "pip", {"pip": ["torch==2.5.1"]}],
        }))
        .unwrap(),
    );
    let expect = json!({
        "traits": {
            "CondaStore.filesystem_namespace": "team-envs",
            "CondaStore.conda_included_packages": ["ipykernel", "numpy", "scipy"],
            "CondaStoreServer.log_level": 10,
            "CondaStoreWorker.concurrency": 2,
            "RBACAuthorizationBackend.authenticated_role_bindings": {"team-envs/*": ["viewer"]},
        },
        "environments": ["dask", "dashboard", "ml"],
    });
    let (success, out) = check(&config, &expect);
    assert!(success, "{out}");
    assert!(
        out.contains("environment-ml.yaml: CondaSpecification ml with 3 dependencies"),
        "{out}"
    );
}

#[test]
fn a_setting_conda_store_does_not_know_fails_the_check() {
    let mut config = config(ProviderKind::Gcp);
    config.conda_store = Some(
        serde_json::from_value(json!({
            "extra_settings": {"CondaStore": {"conda_include_packages": ["numpy"]}},
        }))
        .unwrap(),
    );
    let (success, out) = check(&config, &json!({"environments": ["dask", "dashboard"]}));
    assert!(!success, "{out}");
    assert!(
        out.contains("c.CondaStore.conda_include_packages is not a trait of CondaStore"),
        "{out}"
    );
}

#[test]
fn an_environment_conda_store_would_refuse_fails_the_check() {
    let mut config = config(ProviderKind::Aws);
    config.environments.insert(
        "environment-bad.yaml".into(),
        // A space: `qhub validate` refuses it too; conda-store's schema is the reference.
        serde_json::from_value(json!({"name": "bad name", "dependencies": ["numpy"]})).unwrap(),
    );
    let (success, out) = check(
        &config,
        &json!({"environments": ["dask", "dashboard", "bad name"]}),
    );
    assert!(!success, "{out}");
    assert!(out.contains("validation error"), "{out}");
}

#[test]
fn rendered_configuration_files_snapshots() {
    for provider in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
        let objects = objects(&config(provider));
        let files = config_map(&objects, conda_store::CONFIG);
        insta::assert_snapshot!(
            format!("qhub_json_{}", format!("{provider:?}").to_lowercase()),
            files["qhub.json"]
        );
        if provider == ProviderKind::Aws {
            insta::assert_snapshot!("conda_store_config_py", files["conda_store_config.py"]);
            let envs = conda_store::config::environment_files(&config(provider));
            let all: String = envs.iter().map(|(f, t)| format!("# {f}\n{t}")).collect();
            insta::assert_snapshot!("environments", all);
        }
    }
}
