//! The output contract (docs/output.md): exit codes per command and mode, a closed pipe, and
//! every `--output json` document and event line validated against the JSON Schema that
//! `qhub schema output` publishes.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{code, describe, json_stdout, stderr, stdout};
use serde_json::Value;

fn qhub(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qhub"))
        .args(args)
        .current_dir(dir)
        .env("QHUB_SANDBOX_TIME_SCALE", "0.0001")
        .env_remove("QHUB_SANDBOX_FAULTS")
        .env_remove("QHUB_LOG")
        .env_remove("RUST_LOG")
        .env_remove("PROJECT_ID")
        .stdin(Stdio::null())
        .output()
        .expect("qhub runs")
}

fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = qhub(
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
    );
    assert_eq!(code(&out), 0, "{}", describe(&out));
    dir
}

/// The published schema of the output, narrowed to one of its `$defs`.
struct Contract {
    schema: Value,
}

impl Contract {
    fn published() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = qhub(dir.path(), &["schema", "output"]);
        assert_eq!(code(&out), 0, "{}", describe(&out));
        Self {
            schema: json_stdout(&out),
        }
    }

    #[track_caller]
    fn check(&self, def: &str, doc: &Value) {
        let mut schema = self.schema.clone();
        assert!(
            schema["$defs"].get(def).is_some(),
            "the schema has no $defs/{def}"
        );
        let map = schema.as_object_mut().unwrap();
        map.remove("anyOf");
        map.insert("$ref".into(), format!("#/$defs/{def}").into());
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{def} does not follow the published schema:\n{}\n{doc:#}",
            errors.join("\n")
        );
    }

    /// Checks stdout as `def` and every stderr line as an event; returns the events.
    #[track_caller]
    fn check_run(&self, def: &str, out: &Output) -> Vec<Value> {
        self.check(def, &json_stdout(out));
        stderr(out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {l}"));
                // Log lines (tracing's JSON) are not events.
                v.get("event").is_some().then_some(v)
            })
            .inspect(|ev| self.check("event", ev))
            .collect()
    }
}

#[test]
fn every_json_document_and_event_follows_the_published_schema() {
    let contract = Contract::published();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let init = qhub(
        d,
        &[
            "-o",
            "json",
            "init",
            "sandbox",
            "--project",
            "demo",
            "--domain",
            "demo.example.com",
            "--disable-prompt",
        ],
    );
    contract.check_run("init", &init);
    contract.check_run("validate", &qhub(d, &["-o", "json", "validate"]));
    contract.check_run("upgrade", &qhub(d, &["-o", "json", "upgrade", "--dry-run"]));
    let plan = qhub(d, &["-o", "json", "plan"]);
    contract.check_run("plan", &plan);
    assert_eq!(json_stdout(&plan)["in_sync"], false);
    contract.check_run("status", &qhub(d, &["-o", "json", "status"]));
    let deploy = qhub(d, &["-o", "json", "deploy", "--disable-prompt"]);
    assert_eq!(code(&deploy), 0, "{}", describe(&deploy));
    let events = contract.check_run("deploy", &deploy);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for kind in ["apply_started", "started", "done"] {
        assert!(kinds.contains(&kind), "no {kind} event: {kinds:?}");
    }
    // The stage on every event of a change, and one unit for durations.
    for ev in &events {
        if ev["resource"].is_string() && ev["event"] != "waiting" {
            assert!(ev["stage"].is_string(), "{ev}");
        }
        assert!(
            ev.get("expected").is_none() && ev.get("elapsed").is_none(),
            "{ev}"
        );
    }
    let status = qhub(d, &["-o", "json", "status"]);
    contract.check_run("status", &status);
    assert_eq!(json_stdout(&status)["in_sync"], true);
    // The health table: on the sandbox, every listed service's check, not run, and why.
    let health = &json_stdout(&status)["health"];
    assert_eq!(health["ran"], false, "{health}");
    assert!(
        health["skipped"]
            .as_str()
            .is_some_and(|s| s.contains("sandbox's load balancer is simulated")),
        "{health}"
    );
    let checks = health["checks"].as_array().unwrap();
    // JupyterHub, Dask Gateway, conda-store, Keycloak, Grafana, kbatch, the welcome page, and
    // the SSH banner of jupyterhub-ssh.
    assert_eq!(checks.len(), 8, "{health}");
    assert!(
        checks.iter().any(|c| c["component"] == "jupyterhub-ssh"),
        "{health}"
    );
    assert!(checks.iter().all(|c| c["result"] == "not_run"), "{health}");
    let keycloak = checks
        .iter()
        .find(|c| c["component"] == "keycloak")
        .unwrap();
    assert_eq!(
        keycloak["check"],
        "GET /auth/realms/qhub answers 200 with JSON `realm: qhub`"
    );
    let secret = qhub(d, &["-o", "json", "secrets", "show", "keycloak-admin"]);
    assert_eq!(code(&secret), 0, "{}", describe(&secret));
    contract.check_run("secrets_show", &secret);
    assert_eq!(json_stdout(&secret)["source"], "cluster");
    let add = qhub(
        d,
        &["-o", "json", "users", "add", "ada", "--group", "admin"],
    );
    assert_eq!(code(&add), 0, "{}", describe(&add));
    contract.check_run("users_change", &add);
    let generated = qhub(
        d,
        &["-o", "json", "users", "set-password", "ada", "--generate"],
    );
    contract.check_run("users_change", &generated);
    assert!(json_stdout(&generated)["generated_password"].is_string());
    contract.check_run("users_list", &qhub(d, &["-o", "json", "users", "list"]));
    contract.check_run(
        "users_change",
        &qhub(d, &["-o", "json", "users", "remove", "ada"]),
    );
    let support = qhub(d, &["-o", "json", "support", "--out", "bundle.zip"]);
    assert_eq!(code(&support), 0, "{}", describe(&support));
    contract.check_run("support", &support);
    contract.check_run(
        "render",
        &qhub(d, &["-o", "json", "render", "--manifests", "out"]),
    );
    let version = qhub(d, &["-o", "json", "version"]);
    contract.check_run("version", &version);
    assert_eq!(json_stdout(&version)["qhub_config_version"], "0.4.5");
    // A failing command prints the error document, with its exit code.
    let failed = qhub(d, &["-o", "json", "kubeconfig"]);
    assert_eq!(code(&failed), 1, "{}", describe(&failed));
    contract.check_run("error", &failed);
    assert_eq!(json_stdout(&failed)["exit_code"], 1);
    let destroy = qhub(d, &["-o", "json", "destroy", "--disable-prompt"]);
    assert_eq!(code(&destroy), 0, "{}", describe(&destroy));
    contract.check_run("destroy", &destroy);
}

#[test]
fn detailed_exitcode_tells_in_sync_from_changes_pending_on_plan_and_status() {
    let dir = sandbox();
    let d = dir.path();
    let run = |args: &[&str]| code(&qhub(d, args));
    // Without the flag, a plan with changes is a success.
    assert_eq!(run(&["plan"]), 0);
    assert_eq!(run(&["status"]), 0);
    assert_eq!(run(&["plan", "--detailed-exitcode"]), 3);
    assert_eq!(run(&["status", "--detailed-exitcode"]), 3);
    assert_eq!(run(&["-o", "json", "plan", "--detailed-exitcode"]), 3);
    let deploy = qhub(d, &["deploy", "--disable-prompt"]);
    assert_eq!(code(&deploy), 0, "{}", describe(&deploy));
    assert_eq!(run(&["plan", "--detailed-exitcode"]), 0);
    assert_eq!(run(&["status", "--detailed-exitcode"]), 0);
    // An error stays 1, a usage error 2.
    assert_eq!(
        run(&["plan", "--detailed-exitcode", "-c", "missing.yaml"]),
        1
    );
    assert_eq!(run(&["plan", "--detailed-exitcode", "--bogus"]), 2);
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_sigpipe_status() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["schema"][..],
        &["schema", "--format", "markdown"],
        &["--help"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_qhub"))
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before qhub writes (`qhub schema | true`).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        let code = out.status.code();
        assert!(
            matches!(code, Some(141) | Some(0)),
            "{args:?}: exit {code:?}: {err}"
        );
        if args[0] == "schema" {
            assert_eq!(code, Some(141), "{args:?}: {err}");
            assert!(err.is_empty(), "{args:?}: {err}");
        }
    }
}

#[test]
fn schema_markdown_with_json_output_is_a_usage_error_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = qhub(
        dir.path(),
        &["-o", "json", "schema", "--format", "markdown"],
    );
    assert_eq!(code(&out), 2, "{}", describe(&out));
    let doc = json_stdout(&out);
    assert_eq!(doc["schema_version"], 1);
    assert!(!stdout(&out).contains("# "), "{}", stdout(&out));
    // The config's schema stays the plain JSON Schema.
    let schema = json_stdout(&qhub(dir.path(), &["schema"]));
    assert!(schema.get("schema_version").is_none());
    assert!(schema["$schema"].is_string());
}

#[test]
fn version_names_the_build_and_the_config_version_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = qhub(dir.path(), &["--version"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("qhub {} (commit ", env!("CARGO_PKG_VERSION")))
            && text.contains("qhub_version: 0.4.5"),
        "{text}"
    );
    let out = qhub(dir.path(), &["version"]);
    let text = stdout(&out);
    for line in ["commit: ", "built: ", "config: QHub 0.4.5"] {
        assert!(text.contains(line), "{text}");
    }
    // Built from this checkout: the commit is known.
    let doc = json_stdout(&qhub(dir.path(), &["-o", "json", "version"]));
    assert!(doc["commit"].is_string(), "{doc:#}");
    assert!(
        doc["build_date"].as_str().is_some_and(|d| d.len() == 10),
        "{doc:#}"
    );
}

#[test]
fn cost_follows_the_published_schema() {
    let contract = Contract::published();
    for provider in ["aws", "do"] {
        let dir = tempfile::tempdir().unwrap();
        let init = qhub(
            dir.path(),
            &[
                "init",
                provider,
                "--project",
                "demo",
                "--domain",
                "demo.example.com",
                "--disable-prompt",
            ],
        );
        assert_eq!(code(&init), 0, "{}", describe(&init));
        contract.check_run("cost", &qhub(dir.path(), &["-o", "json", "cost"]));
    }
}

/// The health table of a cluster whose load balancer answered (one check healthy, one not)
/// follows the published schema as `qhub status` prints it.
#[test]
fn a_health_table_that_ran_follows_the_schema() {
    use qhub_core::kubernetes::health::{HealthReport, Outcome, Row};
    let contract = Contract::published();
    let row = |component: &str, result, answered: Option<&str>| Row {
        component: component.into(),
        url: format!("https://demo.example.com/{component}/"),
        check: "GET /x answers 200".into(),
        result,
        answered: answered.map(str::to_string),
        latency_secs: Some(0.02),
    };
    let report = HealthReport {
        ran: true,
        skipped: None,
        checks: vec![
            row("jupyterhub", Outcome::Healthy, None),
            row(
                "keycloak",
                Outcome::Unhealthy,
                Some("503 Service Unavailable"),
            ),
        ],
    };
    let doc = serde_json::to_value(&report).unwrap();
    contract.check("health", &doc);
    assert_eq!(doc["checks"][1]["result"], "unhealthy");
    // And a row that breaks the contract is caught (the check can fail).
    let mut bad = doc.clone();
    bad["checks"][0]["result"] = "fine".into();
    let result = std::panic::catch_unwind(|| contract.check("health", &bad));
    assert!(result.is_err(), "an unknown result passed the schema");
}
