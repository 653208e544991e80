//! GitLab CI: one `.gitlab-ci.yml` (GitLab reads one file) with, per config, a deploy job (a
//! push to `ci_cd.branch` touching the config) and a validate job (a merge request touching
//! it: `qhub validate`, and `qhub plan` when the credentials are set as CI/CD variables).
//!
//! QHub 0.4.5's (`qhub/provider/cicd/gitlab.py`) had one job; this adds the merge-request
//! validation, a `resource_group` per deployment (GitLab runs one job of a resource group at a
//! time: two deploys of one environment never overlap), an `environment` per deployment, the
//! pinned, checksum-verified `qhub` binary instead of `pip install qhub`, and a push of the
//! rendered manifests with a project access token (`QHUB_PUSH_TOKEN`) since the job token
//! cannot push, and the merge request's plan posted as a note with another
//! ([`NOTE_TOKEN`]), as GitHub's validation comments on the pull request.

use serde_json::Value as Json;

use super::{
    CicdError, Deployment, GITLAB_CI_FILE, RELEASE, RUN_PLAN, header, indent, plan_comment, quote,
};
use crate::kubernetes::render::Rendered;

/// The job image: Docker's official `buildpack-deps` image with curl, git and CA certificates
/// (the `qhub` binary is static and needs nothing else).
const IMAGE: &str = "buildpack-deps:bookworm-scm";

/// The install commands: the pinned binary and its checksum file from the release, checked.
fn install() -> String {
    let file = RELEASE.file_name();
    let url = RELEASE.binary_url();
    [
        format!(
            "curl --fail --silent --show-error --location --proto '=https' --retry 3 --output {file} {url}"
        ),
        format!(
            "curl --fail --silent --show-error --location --proto '=https' --retry 3 --output {file}.sha256 {url}.sha256"
        ),
        format!("sha256sum --check --strict {file}.sha256"),
        format!("install -m 0755 {file} /usr/local/bin/qhub"),
        "qhub version".to_string(),
    ]
    .iter()
    .map(|l| format!("- {}\n", quote(l)))
    .collect()
}

/// `ci_cd.before_script`/`after_script`: GitLab's own lists of commands.
fn script(d: &Deployment<'_>, key: &'static str) -> Result<String, CicdError> {
    let entries = if key == "before_script" {
        d.before
    } else {
        d.after
    };
    let mut out = String::new();
    for (index, entry) in entries.iter().enumerate() {
        let Json::String(cmd) = entry else {
            return Err(CicdError::Script {
                config: d.path.to_string(),
                key,
                index,
                message: "GitLab CI takes commands (strings) here".into(),
            });
        };
        out.push_str(&format!("- {}\n", quote(cmd)));
    }
    Ok(out)
}

/// The CI/CD variable holding the project access token that posts the plan on the merge
/// request (scope `api`: GitLab's notes API takes no narrower one).
pub const NOTE_TOKEN: &str = "QHUB_NOTE_TOKEN";

/// The merge request's plan: `qhub plan` when the credentials variable `credential` is set
/// (CI/CD variables are not given to merge requests from forks unless the project allows it:
/// without them the plan is left out, not failed), printed, and posted as a note on the merge
/// request when [`NOTE_TOKEN`] is set, as GitHub's validation posts a pull-request comment.
///
/// The note goes through GitLab's notes API, `POST
/// $CI_API_V4_URL/projects/$CI_PROJECT_ID/merge_requests/$CI_MERGE_REQUEST_IID/notes` with the
/// form field `body` (GitLab `doc/api/notes.md`, "Create new merge request note"), the token in
/// the `PRIVATE-TOKEN` header (`doc/api/rest/authentication.md`). The token never reaches a
/// command line or the log: the header is written by the shell's `printf` builtin into a
/// private file that curl reads (`--header @FILE`), and GitLab prints script lines unexpanded.
/// Without the token, or outside a merge-request pipeline, the job says so and does not fail;
/// a refused post is a warning too (the plan itself decides the job's result: 0 or 3 pass).
fn plan_and_note(credential: &str) -> String {
    let script = format!(
        r#"if [ -z "${{{credential}:-}}" ]; then echo 'no {credential}: plan left out'; exit 0; fi
{RUN_PLAN}if [ -z "${{{NOTE_TOKEN}:-}}" ]; then
  echo '{NOTE_TOKEN} is not set: the plan is not posted on the merge request (docs/gitops.md, GitLab CI)'
elif [ -z "${{CI_MERGE_REQUEST_IID:-}}" ]; then
  echo 'not a merge-request pipeline: the plan is not posted'
else
{comment}  header="$(mktemp)"
  printf 'PRIVATE-TOKEN: %s\n' "${NOTE_TOKEN}" > "$header"
  status="$(curl --silent --show-error --proto '=https' --retry 3 --output /dev/null --write-out '%{{http_code}}' --header @"$header" --data-urlencode body@plan.md "$CI_API_V4_URL/projects/$CI_PROJECT_ID/merge_requests/$CI_MERGE_REQUEST_IID/notes" || true)"
  rm -f "$header"
  case "$status" in
    2*) echo "posted the plan on merge request !$CI_MERGE_REQUEST_IID" ;;
    *) echo "warning: GitLab refused the plan's note (HTTP $status): check that {NOTE_TOKEN} is a project access token with the api scope" ;;
  esac
fi
[ "$code" -eq 0 ] || [ "$code" -eq 3 ]
"#,
        NOTE_TOKEN = NOTE_TOKEN,
        comment = indent(&plan_comment(": $CI_JOB_URL"), 2),
    );
    format!("- |\n{}", indent(&script, 2))
}

/// The `.gitlab-ci.yml` for the GitLab CI deployments `list`.
pub(crate) fn render(list: &[Deployment<'_>]) -> Result<Rendered, CicdError> {
    let sources: Vec<&str> = list.iter().map(|d| d.path).collect();
    let mut jobs = String::new();
    for d in list {
        let variables = format!("variables:\n  QHUB_CONFIG: {}\n", quote(d.path));
        let mut deploy = install();
        deploy.push_str(&format!(
            "- {}\n",
            quote("qhub deploy -c \"$QHUB_CONFIG\" --disable-prompt")
        ));
        if d.commit_render {
            for line in [
                "qhub render -c \"$QHUB_CONFIG\" --manifests \"$QHUB_MANIFESTS\"",
                "git add -- \"$QHUB_MANIFESTS\"",
                "if git diff --staged --quiet; then echo 'the rendered manifests are up to date'; exit 0; fi",
                "git -c user.name='qhub' -c user.email='qhub@noreply.invalid' commit --quiet -m \"qhub: rendered manifests of $QHUB_CONFIG at $CI_COMMIT_SHA [skip ci]\"",
                "git push \"https://oauth2:${QHUB_PUSH_TOKEN}@${CI_SERVER_HOST}/${CI_PROJECT_PATH}.git\" \"HEAD:$CI_COMMIT_BRANCH\"",
            ] {
                deploy.push_str(&format!("- {}\n", quote(line)));
            }
        }
        let before = script(d, "before_script")?;
        let after = script(d, "after_script")?;
        let mut job = format!(
            "deploy-{name}:\n  stage: deploy\n  image: {IMAGE}\n  resource_group: {group}\n  environment:\n    name: {env}\n  rules:\n    - if: {rule}\n      changes:\n        - {path}\n",
            name = d.name,
            group = quote(&format!("qhub-{}", d.name)),
            env = quote(&d.name),
            rule = quote(&format!("$CI_COMMIT_BRANCH == {}", quote(d.branch))),
            path = quote(d.path),
        );
        let mut vars = variables.clone();
        if d.commit_render {
            vars.push_str(&format!(
                "  QHUB_MANIFESTS: {}\n",
                quote(&d.manifests_dir())
            ));
        }
        job.push_str(&indent(&vars, 2));
        if !before.is_empty() {
            job.push_str(&format!("  before_script:\n{}", indent(&before, 4)));
        }
        job.push_str(&format!("  script:\n{}", indent(&deploy, 4)));
        if !after.is_empty() {
            job.push_str(&format!("  after_script:\n{}", indent(&after, 4)));
        }
        let mut validate = install();
        validate.push_str(&format!(
            "- {}\n",
            quote("qhub validate -c \"$QHUB_CONFIG\"")
        ));
        validate.push_str(&plan_and_note(&d.credential));
        job.push_str(&format!(
            "\nvalidate-{name}:\n  stage: validate\n  image: {IMAGE}\n  rules:\n    - if: '$CI_PIPELINE_SOURCE == \"merge_request_event\"'\n      changes:\n        - {path}\n{vars}  script:\n{script}",
            name = d.name,
            path = quote(d.path),
            vars = indent(&variables, 2),
            script = indent(&validate, 4),
        ));
        jobs.push('\n');
        jobs.push_str(&job);
    }
    Ok(Rendered {
        path: GITLAB_CI_FILE.into(),
        text: format!(
            "{header}stages:\n  - validate\n  - deploy\n{jobs}",
            header = header(&sources)
        ),
    })
}
