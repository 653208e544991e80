//! The `qhub-config.yaml` model: every key of QHub 0.4.x, typed, one file per section.
//!
//! Loading is three passes over a YAML tree that remembers positions ([`yaml`]):
//! 1. the structural pass ([`schema`]) checks keys and types against the JSON Schema derived from
//!    this model and reports every problem at once;
//! 2. serde builds the typed [`Config`];
//! 3. the semantic pass ([`validate`]) checks the rules that span keys (`min_nodes <=
//!    max_nodes`, one default profile, the provider's section exists, …).
//!
//! `QHUB_SECRET_X` values are substituted from the environment afterwards, in memory only
//! ([`Loaded::resolve_secrets`]).

pub mod certificate;
pub mod ci_cd;
pub mod components;
pub mod diagnostics;
pub mod environments;
pub mod extensions;
pub mod formats;
pub mod images;
pub mod init;
pub mod not_built;
pub mod profiles;
pub mod provider;
pub mod reference;
pub mod schema;
pub mod secrets;
pub mod security;
pub mod upgrade;
pub mod validate;
pub mod yaml;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use certificate::{Certificate, CertificateKind};
pub use ci_cd::{CiCd, CiKind, TerraformState};
pub use components::{
    CdsDashboards, ClearMl, CondaStore, Ingress, JupyterHub, Prefect, Theme, Toggle,
};
pub use diagnostics::{Diagnostic, KeyPath, Report, Severity};
pub use environments::{CondaEnvironment, Dependency};
pub use extensions::{Extension, HelmExtension};
pub use images::{DefaultImages, ExternalContainerReg, Storage};
pub use profiles::{DaskWorkerProfile, JupyterLabProfile, KubeSpawnerOverride, Profiles};
pub use provider::{
    AwsSection, AzureSection, DoSection, ExistingSection, GcpSection, NodeGroup, NodeGroups,
    ProviderKind, SandboxSection,
};
pub use security::{Authentication, AuthenticationKind, Security};
pub use yaml::Position;

/// The default file name.
pub const DEFAULT_FILE: &str = "qhub-config.yaml";

/// The QHub release whose config format this model reads and `qhub init` writes.
pub const QHUB_VERSION: &str = "0.4.5";

/// A whole `qhub-config.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Project name: at most 16 characters, letters, `-` and `_`, starting and ending with a
    /// letter. Cloud resources are named `{project_name}-{namespace}`.
    pub project_name: String,
    /// Where to deploy: `aws`, `gcp`, `do`, `existing`, `local` or `sandbox` (`azure` is not
    /// supported).
    pub provider: ProviderKind,
    /// The DNS name the platform is served at, e.g. `qhub.example.com`.
    pub domain: String,
    /// Kubernetes namespace of the platform, and the second half of resource names: lowercase
    /// letters and `-`, not a namespace the cluster keeps for itself (`default`, `kube-*`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The QHub config format version this file was written for (0.4.x).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qhub_version: Option<String>,
    /// CI/CD pipeline that deploys on push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_cd: Option<CiCd>,
    /// Ignored: qhub-rs keeps no Terraform state. Accepted so QHub configs load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terraform_state: Option<TerraformState>,
    /// TLS certificate source.
    #[serde(default)]
    pub certificate: Certificate,
    /// Login and Keycloak.
    pub security: Security,
    /// Images of the hub, user servers and Dask workers.
    #[serde(default)]
    pub default_images: DefaultImages,
    /// Persistent volume sizes.
    #[serde(default)]
    pub storage: Storage,
    /// JupyterHub look and feel.
    #[serde(default)]
    pub theme: Theme,
    /// Helm charts to install (not supported: qhub-rs runs without Helm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_extensions: Option<Vec<HelmExtension>>,
    /// Prometheus and Grafana.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Toggle>,
    /// Argo Workflows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argo_workflows: Option<Toggle>,
    /// kbatch (batch jobs from notebooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kbatch: Option<Toggle>,
    /// ContainDS Dashboards.
    #[serde(default)]
    pub cdsdashboards: CdsDashboards,
    /// Prefect agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefect: Option<Prefect>,
    /// ClearML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clearml: Option<ClearMl>,
    /// A private Amazon ECR to pull images from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_container_reg: Option<ExternalContainerReg>,
    /// `provider: aws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amazon_web_services: Option<AwsSection>,
    /// `provider: gcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google_cloud_platform: Option<GcpSection>,
    /// `provider: do`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digital_ocean: Option<DoSection>,
    /// `provider: azure` (not supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureSection>,
    /// `provider: existing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<ExistingSection>,
    /// `provider: local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<ExistingSection>,
    /// `provider: sandbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxSection>,
    /// JupyterLab and Dask worker profiles.
    #[serde(default)]
    pub profiles: Profiles,
    /// Conda environments built by conda-store, keyed by file name.
    #[serde(default)]
    pub environments: IndexMap<String, CondaEnvironment>,
    /// conda-store settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conda_store: Option<CondaStore>,
    /// JupyterHub settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jupyterhub: Option<JupyterHub>,
    /// Extra web apps behind the platform's login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tf_extensions: Option<Vec<Extension>>,
    /// Ingress settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Ingress>,
    /// Refuse to deploy (a guard for configs that must not be applied).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(extend("default" = false))]
    pub prevent_deploy: bool,
    /// The config as written, `QHUB_SECRET_` references unexpanded, when this value is the
    /// result of [`Loaded::resolve_secrets`] (none otherwise): what may be shown to the
    /// platform's own workloads (an extension's `qhubconfigyaml`) without the secrets.
    #[serde(skip)]
    #[schemars(skip)]
    pub as_written: Option<std::sync::Arc<serde_json::Value>>,
}

fn default_namespace() -> String {
    "dev".into()
}

impl Config {
    /// `{project_name}-{namespace}`: the base name of every cloud resource.
    pub fn resource_prefix(&self) -> String {
        format!("{}-{}", self.project_name, self.namespace)
    }

    /// The `existing` or `local` section, when the provider is one of them.
    pub fn existing_section(&self) -> Option<&ExistingSection> {
        match self.provider {
            ProviderKind::Existing => self.existing.as_ref(),
            ProviderKind::Local => self.local.as_ref(),
            _ => None,
        }
    }

    /// The node groups of the chosen provider (none for `existing`/`local`).
    pub fn node_groups(&self) -> Option<&NodeGroups> {
        match self.provider {
            ProviderKind::Aws => self.amazon_web_services.as_ref().map(|p| &p.node_groups),
            ProviderKind::Gcp => self.google_cloud_platform.as_ref().map(|p| &p.node_groups),
            ProviderKind::Do => self.digital_ocean.as_ref().map(|p| &p.node_groups),
            ProviderKind::Sandbox => self.sandbox.as_ref().map(|p| &p.node_groups),
            ProviderKind::Azure | ProviderKind::Existing | ProviderKind::Local => None,
        }
    }

    /// The Kubernetes version of the chosen provider's section, when it has one.
    pub fn kubernetes_version(&self) -> Option<&str> {
        match self.provider {
            ProviderKind::Aws => self
                .amazon_web_services
                .as_ref()
                .map(|p| &p.kubernetes_version),
            ProviderKind::Gcp => self
                .google_cloud_platform
                .as_ref()
                .map(|p| &p.kubernetes_version),
            ProviderKind::Do => self.digital_ocean.as_ref().map(|p| &p.kubernetes_version),
            ProviderKind::Sandbox => self.sandbox.as_ref().map(|p| &p.kubernetes_version),
            _ => None,
        }
        .map(String::as_str)
    }

    /// Writes the config as YAML (key order as in [`Config`]).
    pub fn to_yaml(&self) -> String {
        let json = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        yaml::emit(&yaml::Node::from_json(&json))
    }
}

/// Where each key path was written: (position of the key, position of the value).
pub type Spans = HashMap<String, (Position, Position)>;

/// A loaded, valid config with the source positions of its keys.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed config, with `QHUB_SECRET_` values still unresolved.
    pub config: Config,
    /// Warnings found while validating (errors make loading fail).
    pub report: Report,
    /// The config as JSON, as read (before defaults), for secret substitution.
    raw: serde_json::Value,
    spans: Spans,
}

impl Loaded {
    /// Where `path` was written, or its nearest written ancestor.
    pub fn position(&self, path: &KeyPath) -> Position {
        position_of(&self.spans, path)
    }

    /// Warnings for the provider-specific keys of node groups that the provider does not read:
    /// QHub accepted any key there, so such configs still load, but a key that has no effect
    /// (`min_nodez: 2`, or a key of another cloud) is named, with the key it resembles.
    /// `known`: the extra keys the provider declares ([`crate::provider::Provider::node_group_keys`]).
    pub fn node_group_key_warnings(&self, known: &[&str]) -> Vec<Diagnostic> {
        let Some(groups) = self.config.node_groups() else {
            return Vec::new();
        };
        let section = self.config.provider.section();
        // The keys every node group has, then the provider's own.
        let mut candidates: Vec<&str> = vec![
            "instance",
            "min_nodes",
            "max_nodes",
            "gpu",
            "guest_accelerators",
        ];
        candidates.extend(known.iter().copied());
        let mut out = Vec::new();
        for (name, group) in groups {
            for key in group.extra.keys() {
                if known.contains(&key.as_str()) {
                    continue;
                }
                let path = KeyPath::root()
                    .key(section)
                    .key("node_groups")
                    .key(name)
                    .key(key);
                let pos = self.position(&path);
                let hint = match diagnostics::did_you_mean(key, candidates.iter().copied()) {
                    Some(like) => Some(format!("did you mean `{like}`?")),
                    None if known.is_empty() => Some(format!(
                        "provider `{}` reads no extra node-group keys; remove it",
                        self.config.provider
                    )),
                    None => Some(format!(
                        "provider `{}` reads these extra keys: {}",
                        self.config.provider,
                        known.join(", ")
                    )),
                };
                out.push(Diagnostic {
                    severity: Severity::Warning,
                    path,
                    line: pos.line,
                    column: pos.column,
                    message: format!(
                        "`{key}` has no effect: provider `{}` does not use it",
                        self.config.provider
                    ),
                    hint,
                });
            }
        }
        out
    }

    /// The config with every `QHUB_SECRET_X` replaced by the value of environment variable `X`
    /// as `lookup` gives it. Nothing is written to disk.
    pub fn resolve_secrets(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw = secrets::substitute(&self.raw, &lookup, &KeyPath::root())?;
        let mut config: Config =
            serde_json::from_value(raw).map_err(|e| ConfigError::Internal(e.to_string()))?;
        config.as_written = Some(std::sync::Arc::new(self.raw.clone()));
        Ok(config)
    }
}

pub(crate) fn position_of(spans: &Spans, path: &KeyPath) -> Position {
    let mut p = Some(path.clone());
    while let Some(cur) = p {
        if let Some((_, value)) = spans.get(&cur.to_string()) {
            return *value;
        }
        p = cur.parent();
    }
    Position { line: 1, column: 1 }
}

/// Errors of the config layer.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file we would create already exists.
    #[error("{path} already exists; qhub never overwrites it (move it away or edit it)")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// The config is invalid; the report lists every problem.
    #[error("{} is invalid: {} error(s)\n{report}", file.display(), report.errors().count())]
    Invalid {
        /// The file (or `<input>`).
        file: PathBuf,
        /// Every finding.
        report: Report,
    },
    /// A `QHUB_SECRET_X` value names an environment variable that is not set.
    #[error(
        "{path}: environment variable `{var}` is not set (the config asks for it with `QHUB_SECRET_{var}`); export it before running qhub"
    )]
    MissingSecret {
        /// Key whose value names the variable.
        path: KeyPath,
        /// The variable.
        var: String,
    },
    /// The request cannot be carried out as asked (bad `init`/`upgrade` arguments).
    #[error("{0}")]
    Usage(String),
    /// A bug: the structural pass accepted what serde rejected.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

/// Loads and validates config text. `file` is used in messages only.
pub fn load_str(text: &str, file: &Path) -> Result<Loaded, ConfigError> {
    let (loaded, report) = check_str(text);
    match loaded {
        Some(mut loaded) if !report.has_errors() => {
            loaded.report = report;
            Ok(loaded)
        }
        _ => Err(ConfigError::Invalid {
            file: file.to_path_buf(),
            report,
        }),
    }
}

/// Reads, loads and validates a config file.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text, path)
}

/// Validates config text and returns every finding, plus the loaded config when it could be
/// built (it may still have semantic errors in the report).
pub fn check_str(text: &str) -> (Option<Loaded>, Report) {
    let mut report = Report::default();
    let node = match yaml::parse(text) {
        Ok(node) => node,
        Err(e) => {
            report.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                path: KeyPath::root(),
                line: e.pos.line,
                column: e.pos.column,
                message: format!("YAML syntax error: {}", e.message),
                hint: None,
            });
            return (None, report);
        }
    };
    let mut spans = Spans::new();
    let mut walker = schema::Walker::new(schema::json_schema(), &mut spans);
    let raw = walker.walk(&node, schema::json_schema(), &KeyPath::root());
    report.diagnostics.append(&mut walker.diagnostics);
    // The semantic rules read the partial value too, so one run reports every problem: a broken
    // section does not hide the rule violations of the others.
    let raw = raw.unwrap_or(serde_json::Value::Null);
    validate::check(&raw, &spans, &mut report);
    let loaded = if report.has_errors() {
        None
    } else {
        match serde_json::from_value::<Config>(raw.clone()) {
            Ok(config) => Some(Loaded {
                config,
                report: Report::default(),
                raw,
                spans,
            }),
            Err(e) => {
                report.diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    path: KeyPath::root(),
                    line: 1,
                    column: 1,
                    message: format!("internal error (please report): {e}"),
                    hint: None,
                });
                None
            }
        }
    };
    report.sort();
    (loaded, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_node_group_keys_a_provider_does_not_read_are_named() {
        let config = init::render(&init::InitOptions::new(
            ProviderKind::Aws,
            "demo",
            "demo.example.com",
            "0123456789abcdef",
        ))
        .unwrap();
        let text = config.to_yaml();
        // A typo'd key under the first node group, indented like its `instance`.
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("instance:"))
            .unwrap();
        let indent = &line[..line.len() - line.trim_start().len()];
        let text = text.replacen(line, &format!("{line}\n{indent}min_nodez: 2"), 1);
        let loaded = load_str(&text, Path::new("qhub-config.yaml")).expect("still loads");
        // `qhub init` writes AWS's own `single_subnet` on `general` (qhub-aws declares it).
        let warnings = loaded.node_group_key_warnings(&["single_subnet"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let w = &warnings[0];
        assert!(w.path.to_string().ends_with(".min_nodez"), "{w}");
        assert!(
            w.path
                .to_string()
                .starts_with("amazon_web_services.node_groups."),
            "{w}"
        );
        assert!(w.line > 1, "{w}");
        assert_eq!(w.hint.as_deref(), Some("did you mean `min_nodes`?"), "{w}");
        // A key the provider declares is not warned about.
        assert!(
            loaded
                .node_group_key_warnings(&["min_nodez", "single_subnet"])
                .is_empty()
        );
    }

    #[test]
    fn gcp_network_and_subnetwork_are_resource_names_or_paths() {
        let mut opts = init::InitOptions::new(
            ProviderKind::Gcp,
            "demo",
            "demo.example.com",
            "0123456789abcdef",
        );
        opts.gcp_project = Some("p-123".into());
        let text = init::render(&opts).unwrap().to_yaml();
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("region:"))
            .unwrap();
        let indent = &line[..line.len() - line.trim_start().len()];
        let with = |network: &str, subnetwork: &str| {
            text.replacen(
                line,
                &format!("{line}\n{indent}network: {network}\n{indent}subnetwork: {subnetwork}"),
                1,
            )
        };
        let (loaded, report) = check_str(&with("corp-vpc", "corp-us"));
        assert!(!report.has_errors(), "{report:?}");
        let gcp = loaded.unwrap().config.google_cloud_platform.unwrap();
        assert_eq!(gcp.network.as_deref(), Some("corp-vpc"));
        assert_eq!(gcp.subnetwork.as_deref(), Some("corp-us"));
        let (_, report) = check_str(&with(
            "projects/host/global/networks/shared",
            "projects/host/regions/us-central1/subnetworks/shared-us",
        ));
        assert!(!report.has_errors(), "Shared VPC paths: {report:?}");
        let (_, report) = check_str(&with("Corp_VPC", "projects/host/global/networks/x"));
        let errors: Vec<&diagnostics::Diagnostic> = report.errors().collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].path.to_string(), "google_cloud_platform.network");
        assert_eq!(
            errors[1].path.to_string(),
            "google_cloud_platform.subnetwork"
        );
        assert!(errors[0].line > 1, "{}", errors[0]);
        assert!(
            errors[0]
                .hint
                .as_deref()
                .unwrap_or("")
                .contains("Shared VPC"),
            "{}",
            errors[0]
        );
    }
}
