//! The CI/CD pipelines `qhub render` writes for `ci_cd.type` (GitOps): on GitHub Actions a
//! deploy workflow per config and one validation workflow for all of them ([`github`]); on
//! GitLab CI one `.gitlab-ci.yml` with a deploy and a validate job per config ([`gitlab`]).
//!
//! Several configs (staging, production) may be rendered into one repository, in one run or
//! in several: each file's first lines name the configs it was rendered from
//! ([`SOURCES_PREFIX`]), so a later render of one config knows the others ([`sources`]),
//! renders them again beside it, and removes only what no config wants any more (through the
//! shared writer, [`crate::kubernetes::render::write_owned`]).

pub mod github;
pub mod gitlab;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::config::ci_cd::CiKind;
use crate::config::provider::ProviderKind;
use crate::config::{Config, secrets};
use crate::kubernetes::render::{RenderError, Rendered, Written, write_owned};

/// The first words of every pipeline file's first line (the same words as the manifests'
/// [`crate::kubernetes::render::HEADER`]).
pub const HEADER_PREFIX: &str = "# Rendered by `qhub render`";

/// The second line of every pipeline file: this prefix and a JSON array of the config files
/// (relative to the repository directory) the file was rendered from.
pub const SOURCES_PREFIX: &str = "# qhub-render-sources: ";

/// The directory GitHub reads workflows from.
pub const GITHUB_WORKFLOWS: &str = ".github/workflows";

/// The file GitLab reads its pipeline from.
pub const GITLAB_CI_FILE: &str = ".gitlab-ci.yml";

/// The `qhub` release a pipeline installs: this binary's own version, so a pipeline runs the
/// qhub that rendered it.
///
/// The release files are what `scripts/build-static` makes: the static Linux x86-64 binary
/// `qhub-VERSION-x86_64-linux` and its checksum `qhub-VERSION-x86_64-linux.sha256` in
/// `sha256sum`'s format, published side by side on the repository's release page. The
/// pipeline downloads both and runs `sha256sum --check` before it runs the binary.
pub const RELEASE: Release = Release {
    version: env!("CARGO_PKG_VERSION"),
    url: concat!(
        env!("CARGO_PKG_REPOSITORY"),
        "/releases/download/v{version}/qhub-{version}-x86_64-linux"
    ),
};

/// A `qhub` release a pipeline downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The version (`0.1.0`).
    pub version: &'static str,
    /// The binary's URL, with `{version}` standing for the version; the checksum is at the
    /// same URL plus `.sha256`.
    pub url: &'static str,
}

impl Release {
    /// The binary's URL.
    pub fn binary_url(&self) -> String {
        self.url.replace("{version}", self.version)
    }

    /// The binary's file name (the last part of its URL).
    pub fn file_name(&self) -> String {
        let url = self.binary_url();
        url.rsplit('/').next().unwrap_or("qhub").to_string()
    }
}

/// A config to render, with its path relative to the repository directory.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The config file, relative to the repository directory, `/`-separated.
    pub path: &'a str,
    /// The loaded config (`QHUB_SECRET_` values unresolved).
    pub config: &'a Config,
}

/// Errors of rendering pipelines.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CicdError {
    /// Two configs would write the same file.
    #[error(
        "{first} and {second} would both write {file} (each deployment needs its own project_name/namespace)"
    )]
    SameFile {
        /// The file.
        file: String,
        /// One config.
        first: String,
        /// The other.
        second: String,
    },
    /// Two configs would deploy from the same branch.
    #[error(
        "{first} and {second} both deploy from branch `{branch}` with {kind}: give each its own ci_cd.branch (e.g. `staging` and `main`)"
    )]
    SameBranch {
        /// The branch.
        branch: String,
        /// The CI system.
        kind: &'static str,
        /// One config.
        first: String,
        /// The other.
        second: String,
    },
    /// Something the config asks for that this renderer does not build.
    #[error("{config}: {what} is not supported yet")]
    NotSupported {
        /// The config.
        config: String,
        /// What.
        what: String,
    },
    /// A `before_script`/`after_script` entry that is not a step.
    #[error("{config}: ci_cd.{key}[{index}]: {message}")]
    Script {
        /// The config.
        config: String,
        /// `before_script` or `after_script`.
        key: &'static str,
        /// The entry's index.
        index: usize,
        /// Why.
        message: String,
    },
    /// An existing pipeline file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the files failed.
    #[error(transparent)]
    Write(#[from] RenderError),
}

/// What one config's deployment pipeline needs, shared by the CI systems.
#[derive(Debug, Clone)]
pub(crate) struct Deployment<'a> {
    /// The config file, relative to the repository directory.
    pub path: &'a str,
    /// `{project_name}-{namespace}`: the file names, environment and concurrency group.
    pub name: String,
    /// The branch whose pushes deploy.
    pub branch: &'a str,
    /// Commit the rendered manifests back.
    pub commit_render: bool,
    /// Environment variables the deploy and the plan need, and the secret each comes from.
    pub secrets: Vec<(String, String)>,
    /// How many of `secrets`, from the first, are the cloud credentials.
    pub cloud_secrets: usize,
    /// The variable whose presence means the cloud credentials are there.
    pub credential: String,
    /// `ci_cd.before_script`.
    pub before: &'a [Json],
    /// `ci_cd.after_script`.
    pub after: &'a [Json],
}

impl Deployment<'_> {
    /// Where the deploy job writes (and commits) the rendered manifests.
    pub fn manifests_dir(&self) -> String {
        format!("qhub-manifests/{}", self.name)
    }
}

/// The cloud credentials a deploy reads, as environment variables (each from the secret of
/// the same name), per provider: the variables the providers read (`qhub-aws`: the AWS
/// default chain; `qhub-gcp` `CREDENTIALS_ENV`; `qhub-do` `TOKEN_ENV` and the Spaces key of
/// its deploy lock). The first one tells whether credentials are present.
fn credentials(config: &Config, path: &str) -> Result<&'static [&'static str], CicdError> {
    Ok(match config.provider {
        ProviderKind::Aws => &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        ProviderKind::Gcp => &["GOOGLE_CREDENTIALS"],
        ProviderKind::Do => &[
            "DIGITALOCEAN_TOKEN",
            "SPACES_ACCESS_KEY_ID",
            "SPACES_SECRET_ACCESS_KEY",
        ],
        other => {
            return Err(CicdError::NotSupported {
                config: path.to_string(),
                what: format!("a CI/CD pipeline for provider `{other}`"),
            });
        }
    })
}

/// Every `QHUB_SECRET_X` the config references (`X`), sorted, once each.
fn secret_references(config: &Config) -> Vec<String> {
    fn walk(v: &Json, out: &mut Vec<String>) {
        match v {
            Json::String(s) => out.extend(secrets::references(s).into_iter().map(String::from)),
            Json::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Json::Object(map) => map.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(json) = serde_json::to_value(config) {
        walk(&json, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

impl<'a> Deployment<'a> {
    fn new(source: Source<'a>) -> Result<Option<(CiKind, Self)>, CicdError> {
        let Some(ci) = source.config.ci_cd.as_ref() else {
            return Ok(None);
        };
        if ci.kind == CiKind::None {
            return Ok(None);
        }
        let creds = credentials(source.config, source.path)?;
        let mut secrets: Vec<(String, String)> = creds
            .iter()
            .map(|v| (v.to_string(), v.to_string()))
            .collect();
        // `QHUB_SECRET_X` reads variable `X`; its CI secret is named `QHUB_SECRET_X` (GitHub
        // refuses secret names starting with `GITHUB_`, which QHub's own
        // `QHUB_SECRET_GITHUB_CLIENT_ID` would need).
        for var in secret_references(source.config) {
            if !secrets.iter().any(|(v, _)| *v == var) {
                let secret = format!("{}{var}", secrets::PREFIX);
                secrets.push((var, secret));
            }
        }
        Ok(Some((
            ci.kind,
            Deployment {
                path: source.path,
                name: format!("{}-{}", source.config.project_name, source.config.namespace),
                branch: &ci.branch,
                // QHub's default (`ci_cd.get("commit_render", True)`).
                commit_render: ci.commit_render.unwrap_or(true),
                secrets,
                cloud_secrets: creds.len(),
                credential: creds[0].to_string(),
                before: ci.before_script.as_deref().unwrap_or(&[]),
                after: ci.after_script.as_deref().unwrap_or(&[]),
            },
        )))
    }
}

/// What [`render`] made.
#[derive(Debug, Clone, Default)]
pub struct Pipelines {
    /// The files, paths relative to the repository directory.
    pub files: Vec<Rendered>,
    /// Configs that get no pipeline (`ci_cd` missing or `type: none`).
    pub without_pipeline: Vec<String>,
}

/// The pipeline files for `sources` (every config rendered into one repository).
///
/// Two configs that would write the same file, or deploy from the same branch with the same
/// CI system, are an error naming both.
pub fn render(sources: &[Source<'_>]) -> Result<Pipelines, CicdError> {
    // By path: the files do not depend on the order the configs were given in, so a render of
    // one config among several rewrites nothing.
    let mut sources = sources.to_vec();
    sources.sort_by(|a, b| a.path.cmp(b.path));
    let mut out = Pipelines::default();
    let mut by_kind: BTreeMap<&'static str, Vec<Deployment<'_>>> = BTreeMap::new();
    for source in &sources {
        let Some((kind, d)) = Deployment::new(*source)? else {
            out.without_pipeline.push(source.path.to_string());
            continue;
        };
        let list = by_kind.entry(kind.as_str()).or_default();
        for other in list.iter() {
            if other.branch == d.branch {
                return Err(CicdError::SameBranch {
                    branch: d.branch.to_string(),
                    kind: kind.as_str(),
                    first: other.path.to_string(),
                    second: d.path.to_string(),
                });
            }
        }
        list.push(d);
    }
    // Same project and namespace: the same deployment twice (and the same file names).
    let all: Vec<&Deployment<'_>> = by_kind.values().flatten().collect();
    for (i, a) in all.iter().enumerate() {
        if let Some(b) = all[..i].iter().find(|b| b.name == a.name) {
            return Err(CicdError::SameFile {
                file: github::deploy_file(a),
                first: b.path.to_string(),
                second: a.path.to_string(),
            });
        }
    }
    if let Some(list) = by_kind.get(CiKind::GithubActions.as_str()) {
        out.files.extend(github::render(list)?);
    }
    if let Some(list) = by_kind.get(CiKind::GitlabCi.as_str()) {
        out.files.push(gitlab::render(list)?);
    }
    Ok(out)
}

/// The first two lines of a pipeline file rendered from `sources`.
pub(crate) fn header(sources: &[&str]) -> String {
    let names = sources.join(", ");
    let change = if sources.len() == 1 {
        format!("change {names} instead")
    } else {
        "change those files instead".to_string()
    };
    format!(
        "{HEADER_PREFIX} from {names}: do not edit, {change}.\n{SOURCES_PREFIX}{}\n",
        Json::from(sources.to_vec())
    )
}

/// The config files a pipeline file's header names, or `None` when `text` is not a file
/// `qhub render` wrote as a pipeline.
pub fn file_sources(text: &str) -> Option<Vec<String>> {
    let mut lines = text.lines();
    if !lines.next()?.starts_with(HEADER_PREFIX) {
        return None;
    }
    let list = lines.next()?.strip_prefix(SOURCES_PREFIX)?;
    serde_json::from_str(list).ok()
}

/// Whether `rel` (relative to the repository directory) is where pipelines live.
fn pipeline_path(rel: &Path) -> bool {
    if rel == Path::new(GITLAB_CI_FILE) {
        return true;
    }
    rel.parent() == Some(Path::new(GITHUB_WORKFLOWS))
        && rel.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

/// The pipeline files under `dir` that an earlier render wrote.
fn existing(dir: &Path) -> Result<Vec<(PathBuf, String)>, CicdError> {
    let mut candidates = vec![dir.join(GITLAB_CI_FILE)];
    if let Ok(entries) = std::fs::read_dir(dir.join(GITHUB_WORKFLOWS)) {
        candidates.extend(entries.flatten().map(|e| e.path()));
    }
    let mut out = Vec::new();
    for path in candidates {
        let Ok(rel) = path.strip_prefix(dir) else {
            continue;
        };
        if !pipeline_path(rel) || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| CicdError::Read {
            path: path.clone(),
            source,
        })?;
        out.push((rel.to_path_buf(), text));
    }
    out.sort();
    Ok(out)
}

/// The configs (relative to `dir`) named by the pipelines an earlier render wrote into `dir`,
/// sorted, once each: a later render of one of them renders the others too, so that nothing
/// of theirs is removed.
pub fn sources(dir: &Path) -> Result<Vec<String>, CicdError> {
    let mut out: Vec<String> = existing(dir)?
        .iter()
        .filter_map(|(_, text)| file_sources(text))
        .flatten()
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Writes `files` under `dir` and removes the pipelines an earlier render wrote that are no
/// longer rendered (a config now `type: none`, or deleted). Files without the pipeline header
/// are never touched.
pub fn write(dir: &Path, files: &[Rendered]) -> Result<Written, CicdError> {
    let stale_dirs = [PathBuf::new(), PathBuf::from(GITHUB_WORKFLOWS)];
    Ok(write_owned(dir, files, &stale_dirs, &|rel, text| {
        pipeline_path(rel) && file_sources(text).is_some()
    })?)
}

/// The most of the plan a pull-request comment or merge-request note carries (GitHub caps a
/// comment at 65,536 characters, GitLab a note at 1,000,000; the job's log keeps all of it).
const COMMENT_PLAN_BYTES: usize = 60_000;

/// Shell lines that run `qhub plan` of `$QHUB_CONFIG` into `plan.txt`, keep its exit code in
/// `$code` (0: nothing to change, 3: changes) and print it to the job's log.
pub(crate) const RUN_PLAN: &str = r#"set +e
qhub plan -c "$QHUB_CONFIG" --detailed-exitcode > plan.txt
code=$?
set -e
cat plan.txt
"#;

/// Shell lines that write `plan.md`, the plan ([`RUN_PLAN`]) as a pull-request comment or
/// merge-request note: a heading, what `$code` means, and the plan's first
/// [`COMMENT_PLAN_BYTES`] in a code block. `log` ends the failure's sentence (where the
/// job's log is).
pub(crate) fn plan_comment(log: &str) -> String {
    format!(
        r#"{{
  printf '### `qhub plan` of `%s`\n\n' "$QHUB_CONFIG"
  case "$code" in
    0) echo "Nothing to change." ;;
    3) echo "Changes a merge would deploy:" ;;
    *) echo "The plan failed (exit $code); see the job's log{log}" ;;
  esac
  printf '\n```\n'
  head -c {COMMENT_PLAN_BYTES} plan.txt
  printf '\n```\n'
}} > plan.md
"#
    )
}

/// A string as a YAML scalar: a JSON string is a valid YAML double-quoted scalar.
pub(crate) fn quote(s: &str) -> String {
    Json::from(s).to_string()
}

/// Indents every line of `text` by `n` spaces (empty lines stay empty).
pub(crate) fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_round_trips_its_sources() {
        let h = header(&["envs/staging.yaml", "prod, \"eu\".yaml"]);
        assert!(h.starts_with(HEADER_PREFIX), "{h}");
        assert_eq!(
            file_sources(&format!("{h}name: x\n")),
            Some(vec![
                "envs/staging.yaml".to_string(),
                "prod, \"eu\".yaml".to_string()
            ])
        );
        assert_eq!(file_sources("name: x\n"), None);
        assert_eq!(file_sources(&format!("{HEADER_PREFIX}\nname: x\n")), None);
    }

    #[test]
    fn the_release_url_names_the_version_twice() {
        let url = RELEASE.binary_url();
        assert!(url.ends_with(&format!(
            "/releases/download/v{0}/qhub-{0}-x86_64-linux",
            RELEASE.version
        )));
        assert_eq!(
            RELEASE.file_name(),
            format!("qhub-{}-x86_64-linux", RELEASE.version)
        );
    }

    #[test]
    fn only_pipeline_locations_are_ours() {
        assert!(pipeline_path(Path::new(".gitlab-ci.yml")));
        assert!(pipeline_path(Path::new(".github/workflows/a.yml")));
        assert!(pipeline_path(Path::new(".github/workflows/a.yaml")));
        assert!(!pipeline_path(Path::new(".github/workflows/sub/a.yaml")));
        assert!(!pipeline_path(Path::new("qhub-config.yaml")));
    }
}
