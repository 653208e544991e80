//! `ci_cd`: the GitOps pipeline `qhub render` writes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `ci_cd` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CiCd {
    /// `github-actions`, `gitlab-ci` or `none`.
    #[serde(rename = "type")]
    pub kind: CiKind,
    /// The branch whose pushes deploy.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Commit the rendered files back to the branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_render: Option<bool>,
    /// Steps to run before the deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_script: Option<Vec<serde_json::Value>>,
    /// Steps to run after the deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_script: Option<Vec<serde_json::Value>>,
}

fn default_branch() -> String {
    "main".into()
}

/// CI systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CiKind {
    /// GitHub Actions.
    GithubActions,
    /// GitLab CI.
    GitlabCi,
    /// No pipeline.
    None,
}

impl CiKind {
    /// The spelling used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GithubActions => "github-actions",
            Self::GitlabCi => "gitlab-ci",
            Self::None => "none",
        }
    }
}

/// `terraform_state`: read so that QHub configs load; qhub-rs keeps no state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TerraformState {
    /// `remote`, `local` or `existing`.
    #[serde(rename = "type")]
    pub kind: TerraformStateKind,
    /// Terraform backend name (with `existing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Backend settings (with `existing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Terraform state kinds QHub had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TerraformStateKind {
    /// A bucket created by QHub.
    Remote,
    /// A local file.
    Local,
    /// A backend the user configured.
    Existing,
}
