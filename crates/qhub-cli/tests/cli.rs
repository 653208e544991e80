//! The `qhub` binary end to end: exit codes (0 ok, 1 invalid or failed, 2 usage), files written
//! or left alone, and `--output json` printing exactly one JSON document on stdout.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{code, describe, json_stdout};
use serde_json::Value;

const CONFIG: &str = "qhub-config.yaml";

/// Runs `qhub` in `dir` with a clean environment for the variables it reads.
fn qhub(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qhub"))
        .args(args)
        .current_dir(dir)
        .env_remove("PROJECT_ID")
        .env_remove("QHUB_LOG")
        .output()
        .expect("qhub runs")
}

fn init_args(provider: &str) -> Vec<&str> {
    let mut args = vec![
        "init",
        provider,
        "--project",
        "demo",
        "--domain",
        "demo.example.com",
        "--disable-prompt",
    ];
    if provider == "gcp" {
        args.extend(["--gcp-project", "my-gcp-project"]);
    }
    args
}

#[test]
fn init_then_validate_for_every_provider() {
    for provider in ["aws", "gcp", "do", "existing", "local", "sandbox"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = qhub(dir.path(), &init_args(provider));
        assert_eq!(code(&out), 0, "init {provider}: {}", describe(&out));
        let text = std::fs::read_to_string(dir.path().join(CONFIG)).expect("config written");
        assert!(
            text.contains(&format!("provider: {provider}\n")),
            "{provider}:\n{text}"
        );
        let out = qhub(dir.path(), &["validate", "-c", CONFIG]);
        assert_eq!(code(&out), 0, "validate {provider}: {}", describe(&out));
        let out = qhub(dir.path(), &["--output", "json", "validate"]);
        assert_eq!(code(&out), 0, "validate {provider}: {}", describe(&out));
        let doc = json_stdout(&out);
        assert_eq!(doc["valid"], Value::Bool(true), "{doc}");
        assert_eq!(doc["errors"], serde_json::json!([]), "{doc}");
    }
}

#[test]
fn init_with_json_output_prints_one_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["-o", "json"];
    args.extend(init_args("sandbox"));
    let out = qhub(dir.path(), &args);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let doc = json_stdout(&out);
    assert_eq!(doc["provider"], "sandbox", "{doc}");
    assert_eq!(doc["project_name"], "demo", "{doc}");
}

#[test]
fn init_writes_no_secret_and_says_where_the_admin_password_lives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = qhub(dir.path(), &init_args("aws"));
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let text = std::fs::read_to_string(dir.path().join(CONFIG)).expect("reads");
    assert!(
        !text.contains("initial_root_password"),
        "init wrote a password into the config:\n{text}"
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("keycloak-admin") && said.contains("qhub secrets show keycloak-admin"),
        "{}",
        describe(&out)
    );
}

#[test]
fn init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CONFIG);
    let original = "# hand-edited\nproject_name: mine\n";
    std::fs::write(&path, original).expect("writes fixture");
    let out = qhub(dir.path(), &init_args("aws"));
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read_to_string(&path).expect("reads"), original);
}

#[test]
fn init_without_project_and_prompts_disabled_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = qhub(
        dir.path(),
        &[
            "init",
            "aws",
            "--domain",
            "demo.example.com",
            "--disable-prompt",
        ],
    );
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--project"),
        "{}",
        describe(&out)
    );
    assert!(!dir.path().join(CONFIG).exists());
}

#[test]
fn init_with_an_invalid_project_name_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = qhub(
        dir.path(),
        &[
            "init",
            "aws",
            "--project",
            "awsdemo",
            "--domain",
            "demo.example.com",
            "--disable-prompt",
        ],
    );
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("project_name"),
        "{}",
        describe(&out)
    );
    assert!(!dir.path().join(CONFIG).exists());
}

#[test]
fn unknown_flags_and_commands_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        &["init", "aws", "--bogus"][..],
        &["validate", "--no-such-flag"][..],
        &["frobnicate"][..],
        &["init", "azure", "--project", "demo"][..],
    ] {
        let out = qhub(dir.path(), args);
        assert_eq!(code(&out), 2, "{args:?}: {}", describe(&out));
    }
    assert_eq!(std::fs::read_dir(dir.path()).expect("lists").count(), 0);
}

#[test]
fn validate_an_invalid_file_reports_every_error_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = qhub(dir.path(), &init_args("aws"));
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let path = dir.path().join(CONFIG);
    let text = std::fs::read_to_string(&path).expect("reads");
    let text = text
        .replacen("project_name: demo\n", "project_name: demo1\n", 1)
        .replacen("    type: password\n", "    type: github\n", 1);
    std::fs::write(&path, &text).expect("writes");

    let out = qhub(dir.path(), &["validate", "-c", CONFIG]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("project_name"),
        "{}",
        describe(&out)
    );

    let out = qhub(dir.path(), &["--output", "json", "validate", "-c", CONFIG]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let doc = json_stdout(&out);
    assert_eq!(doc["valid"], Value::Bool(false), "{doc}");
    let errors = doc["errors"].as_array().expect("errors is a list");
    assert_eq!(errors.len(), 2, "{doc}");
    for e in errors {
        assert!(e["path"].is_string(), "{e}");
        assert!(e["message"].is_string(), "{e}");
        assert!(e["line"].as_u64().is_some_and(|l| l >= 1), "{e}");
        assert!(e["column"].as_u64().is_some_and(|c| c >= 1), "{e}");
    }
    assert_eq!(errors[0]["path"], "project_name");
    assert_eq!(
        (errors[0]["line"].as_u64(), errors[0]["column"].as_u64()),
        (Some(1), Some(15))
    );
    assert_eq!(errors[1]["path"], "security.authentication.type");
    assert!(
        errors[1]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("GitHub")),
        "{doc}"
    );
}

#[test]
fn validate_a_missing_file_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = qhub(dir.path(), &["validate", "-c", "nope.yaml"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope.yaml"),
        "{}",
        describe(&out)
    );
    let out = qhub(dir.path(), &["-o", "json", "validate", "-c", "nope.yaml"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let doc = json_stdout(&out);
    assert!(
        doc["error"]
            .as_str()
            .is_some_and(|e| e.contains("nope.yaml")),
        "{doc}"
    );
}

#[test]
fn validate_a_yaml_syntax_error_fails_with_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(CONFIG),
        "project_name: [demo\nprovider: aws\n",
    )
    .expect("writes");
    let out = qhub(dir.path(), &["-o", "json", "validate"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let doc = json_stdout(&out);
    let errors = doc["errors"].as_array().expect("errors is a list");
    assert_eq!(errors.len(), 1, "{doc}");
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("YAML syntax error")),
        "{doc}"
    );
    assert_eq!(errors[0]["line"], 2, "{doc}");
}

#[test]
fn schema_is_json_with_closed_top_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = qhub(dir.path(), &["schema"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let schema = json_stdout(&out);
    assert_eq!(schema["additionalProperties"], Value::Bool(false));
    let properties = schema["properties"].as_object().expect("properties");
    for key in [
        "project_name",
        "provider",
        "amazon_web_services",
        "profiles",
    ] {
        assert!(properties.contains_key(key), "schema lacks {key}");
    }
    assert!(
        schema["required"]
            .as_array()
            .is_some_and(|r| r.contains(&Value::from("project_name")))
    );
}

#[test]
fn upgrade_of_a_fresh_config_is_a_no_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = qhub(dir.path(), &init_args("do"));
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let path = dir.path().join(CONFIG);
    let before = std::fs::read(&path).expect("reads");
    let out = qhub(dir.path(), &["upgrade", "-c", CONFIG]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to do"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read(&path).expect("reads"), before);
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .expect("lists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec![CONFIG.to_string()], "no backup is written");

    let out = qhub(dir.path(), &["-o", "json", "upgrade"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(json_stdout(&out)["changed"], Value::Bool(false));
    assert_eq!(std::fs::read(&path).expect("reads"), before);
}

#[test]
fn validate_warns_about_node_group_keys_the_provider_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = qhub(dir.path(), &init_args("aws"));
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let path = dir.path().join(CONFIG);
    let text = std::fs::read_to_string(&path).unwrap();
    // A typo'd key under the first node group, indented like its `instance`.
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("instance:"))
        .unwrap();
    let indent = &line[..line.len() - line.trim_start().len()];
    let text = text.replacen(line, &format!("{line}\n{indent}min_nodez: 2"), 1);
    std::fs::write(&path, text).unwrap();
    let out = qhub(dir.path(), &["validate", "--output", "json"]);
    // QHub accepted any key there: the config stays valid, with a warning.
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let doc = json_stdout(&out);
    assert_eq!(doc["valid"], true, "{doc:#}");
    let warning = doc["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| {
            w["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(".min_nodez"))
        })
        .unwrap_or_else(|| panic!("no warning about min_nodez: {doc:#}"));
    assert_eq!(warning["hint"], "did you mean `min_nodes`?", "{doc:#}");
    assert!(warning["line"].as_u64().unwrap() > 1, "{doc:#}");
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish_from_the_command_definitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (shell, marker) in [
        ("bash", "complete "),
        ("zsh", "#compdef qhub"),
        ("fish", "complete -c qhub"),
    ] {
        let out = qhub(dir.path(), &["completions", shell]);
        assert_eq!(code(&out), 0, "{shell}: {}", describe(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: no `{marker}`:\n{script}");
        // Generated from clap: the newest commands and flags are in it.
        for word in ["secrets", "keycloak-admin", "detailed-exitcode"] {
            assert!(script.contains(word), "{shell}: no `{word}`");
        }
    }
    let out = qhub(dir.path(), &["completions", "powershell-ish"]);
    assert_eq!(code(&out), 2, "{}", describe(&out));
}
