//! `qhub init`: a complete, valid config with QHub's defaults for each provider.

use std::path::Path;

use indexmap::IndexMap;
use rand::Rng;
use serde_json::json;

use super::components::Overrides;
use super::profiles::{Access, Cpu, Memory};
use super::provider::{
    AwsSection, DoSection, ExistingSection, GcpSection, KeyValue, NodeGroup, ProviderKind,
    SandboxSection,
};
use super::security::{Authentication, AuthenticationKind, Keycloak, OAuthConfig, Security};
use super::{
    CdsDashboards, Certificate, CiCd, CiKind, CondaEnvironment, Config, ConfigError,
    DaskWorkerProfile, DefaultImages, Dependency, JupyterLabProfile, KubeSpawnerOverride, Profiles,
    Storage, Theme, Toggle,
};

/// The Kubernetes version `qhub init` writes when none is given. The DigitalOcean provider
/// resolves a `MAJOR.MINOR` to the newest matching slug.
pub const DEFAULT_KUBERNETES_VERSION: &str = "1.33";

/// The Kubernetes version `qhub init` writes for AWS when none is given: the newest version
/// in EKS standard support in December 2026 (1.35: released on EKS 2026-01-27, standard
/// support until 2027-03-27; EKS user guide, "Kubernetes versions", release calendar; the
/// table with its dates is `qhub_aws::versions`). 1.33 left standard support on 2026-07-29
/// and 1.34 on 2026-12-02.
pub const DEFAULT_EKS_KUBERNETES_VERSION: &str = "1.35";

/// What `qhub init` was asked for.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The provider.
    pub provider: ProviderKind,
    /// `project_name`.
    pub project: String,
    /// `domain`.
    pub domain: String,
    /// `namespace` (default `dev`).
    pub namespace: Option<String>,
    /// The identity provider.
    pub auth: AuthenticationKind,
    /// The CI system (`None` writes no `ci_cd` section).
    pub ci: CiKind,
    /// `kubernetes_version` (default [`DEFAULT_KUBERNETES_VERSION`]).
    pub kubernetes_version: Option<String>,
    /// Region (default: QHub's per provider).
    pub region: Option<String>,
    /// GCP project id (required for `gcp`).
    pub gcp_project: Option<String>,
    /// A Keycloak root password to write into the config, or `None` (what `qhub init` does:
    /// the config goes into version control, and a deploy generates the admin password once
    /// into the Secret `keycloak-admin`). Tests and embedders set one for a fixed password.
    pub root_password: Option<String>,
}

impl InitOptions {
    /// Options with `qhub init`'s defaults (password login, GitHub Actions, the default
    /// Kubernetes version and region, namespace `dev`) and a fixed root password, for tests
    /// and embedders; `qhub init` itself sets [`InitOptions::root_password`] to `None`.
    pub fn new(provider: ProviderKind, project: &str, domain: &str, root_password: &str) -> Self {
        Self {
            provider,
            project: project.into(),
            domain: domain.into(),
            namespace: None,
            auth: AuthenticationKind::Password,
            ci: CiKind::GithubActions,
            kubernetes_version: None,
            region: None,
            gcp_project: None,
            root_password: Some(root_password.into()),
        }
    }
}

/// A random 16-character password of letters and digits, as QHub generates.
pub fn random_password() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn group(instance: &str, min_nodes: u32, max_nodes: u32) -> NodeGroup {
    NodeGroup {
        instance: instance.into(),
        min_nodes,
        max_nodes,
        gpu: false,
        guest_accelerators: Vec::new(),
        extra: Default::default(),
    }
}

fn groups(
    general: (&str, u32, u32),
    user: (&str, u32, u32),
    worker: (&str, u32, u32),
) -> IndexMap<String, NodeGroup> {
    [("general", general), ("user", user), ("worker", worker)]
        .into_iter()
        .map(|(name, (i, min, max))| (name.to_string(), group(i, min, max)))
        .collect()
}

fn selectors() -> IndexMap<String, KeyValue> {
    ["general", "user", "worker"]
        .into_iter()
        .map(|g| {
            (
                g.to_string(),
                KeyValue {
                    key: "kubernetes.io/os".into(),
                    value: "linux".into(),
                },
            )
        })
        .collect()
}

fn profiles() -> Profiles {
    let lab = |name: &str, desc: &str, default: bool, cpu: (f64, f64), mem: (&str, &str)| {
        JupyterLabProfile {
            display_name: name.into(),
            description: desc.into(),
            default,
            access: Access::All,
            users: None,
            groups: None,
            kubespawner_override: Some(KubeSpawnerOverride {
                cpu_limit: Cpu::Cores(cpu.0),
                cpu_guarantee: Cpu::Cores(cpu.1),
                mem_limit: Memory::Quantity(mem.0.into()),
                mem_guarantee: Memory::Quantity(mem.1.into()),
                image: None,
                extra: Default::default(),
            }),
        }
    };
    let worker = |cpu: (f64, f64), mem: (&str, &str), threads: u32| DaskWorkerProfile {
        worker_cores_limit: Cpu::Cores(cpu.0),
        worker_cores: Cpu::Cores(cpu.1),
        worker_memory_limit: Memory::Quantity(mem.0.into()),
        worker_memory: Memory::Quantity(mem.1.into()),
        worker_threads: Some(threads),
        image: None,
        extra: Default::default(),
    };
    Profiles {
        jupyterlab: vec![
            lab(
                "Small Instance",
                "Stable environment with 2 cpu / 8 GB ram",
                true,
                (2.0, 1.5),
                ("8G", "5G"),
            ),
            lab(
                "Medium Instance",
                "Stable environment with 4 cpu / 16 GB ram",
                false,
                (4.0, 3.0),
                ("16G", "10G"),
            ),
        ],
        dask_worker: [
            (
                "Small Worker".to_string(),
                worker((2.0, 1.5), ("8G", "5G"), 2),
            ),
            (
                "Medium Worker".to_string(),
                worker((4.0, 3.0), ("16G", "10G"), 4),
            ),
        ]
        .into_iter()
        .collect(),
    }
}

fn environments() -> IndexMap<String, CondaEnvironment> {
    let env = |name: &str, deps: &[&str], pip: &[&str]| {
        let mut dependencies: Vec<Dependency> = deps
            .iter()
            .map(|d| Dependency::Package((*d).into()))
            .collect();
        if !pip.is_empty() {
            dependencies.push(Dependency::Installer(
                [(
                    "pip".to_string(),
                    pip.iter().map(|s| (*s).to_string()).collect(),
                )]
                .into_iter()
                .collect(),
            ));
        }
        CondaEnvironment {
            name: name.into(),
            channels: Some(vec!["conda-forge".into()]),
            dependencies,
        }
    };
    [
        (
            "environment-dask.yaml".to_string(),
            env(
                "dask",
                &[
                    "python==3.9.13",
                    "ipykernel==6.15.1",
                    "ipywidgets==7.7.1",
                    "qhub-dask==0.4.5",
                    "python-graphviz==0.20.1",
                    "pyarrow==9.0.0",
                    "s3fs==2022.7.1",
                    "gcsfs==2022.7.1",
                    "numpy=1.22.4",
                    "numba=0.56.0",
                    "pandas=1.4.3",
                ],
                &["kbatch==0.4.1"],
            ),
        ),
        (
            "environment-dashboard.yaml".to_string(),
            env(
                "dashboard",
                &[
                    "python==3.9.13",
                    "ipykernel==6.15.1",
                    "ipywidgets==7.7.1",
                    "qhub-dask==0.4.5",
                    "param==1.12.2",
                    "python-graphviz==0.20.1",
                    "matplotlib==3.5.2",
                    "panel==0.13.1",
                    "voila==0.3.6",
                    "streamlit==1.11.1",
                    "dash==2.6.1",
                    "cdsdashboards-singleuser==0.6.2",
                ],
                &[],
            ),
        ),
    ]
    .into_iter()
    .collect()
}

fn theme(project: &str, domain: &str, provider: ProviderKind) -> Theme {
    let subtitle = match provider {
        ProviderKind::Existing | ProviderKind::Local => {
            "Autoscaling Compute Environment".to_string()
        }
        p => format!("Autoscaling Compute Environment on {}", p.display_name()),
    };
    let values = json!({
        "hub_title": format!("QHub - {project}"),
        "hub_subtitle": subtitle,
        "welcome": format!("Welcome to {domain}. This platform is deployed and maintained with qhub-rs from a qhub-config.yaml kept in version control."),
        "logo": "/hub/custom/images/jupyter_qhub_logo.svg",
        "primary_color": "#4f4173",
        "secondary_color": "#957da6",
        "accent_color": "#32C574",
        "text_color": "#111111",
        "h1_color": "#652e8e",
        "h2_color": "#652e8e",
    });
    let jupyterhub: Overrides = values.as_object().cloned().unwrap_or_default();
    Theme { jupyterhub }
}

/// Sections `init` writes off although qhub-rs deploys them: Argo Workflows brings about
/// 870 KB of upstream CRD schemas (`components/argo_workflows/crds/`), which every deploy then
/// applies and waits on; it is opt-in until that cost is measured and bounded.
pub const OPT_IN: &[&str] = &["argo_workflows"];

/// Whether `init` (and `upgrade`, for a missing section) turns the service section `key` on:
/// QHub 0.4.5 turned them all on; qhub-rs does for those it deploys, except [`OPT_IN`].
pub fn default_on(key: &str) -> bool {
    super::not_built::is_built(key) && !OPT_IN.contains(&key)
}

/// A service section as `init` writes it ([`default_on`]).
fn toggle(key: &str) -> Toggle {
    Toggle {
        enabled: default_on(key),
        overrides: None,
    }
}

/// Builds the config `qhub init` writes.
pub fn render(opts: &InitOptions) -> Result<Config, ConfigError> {
    let version = opts
        .kubernetes_version
        .clone()
        .unwrap_or_else(|| DEFAULT_KUBERNETES_VERSION.to_string());
    let region = |default: &str| opts.region.clone().unwrap_or_else(|| default.to_string());
    let oauth = |prefix: &str, auth0: bool| OAuthConfig {
        client_id: format!("QHUB_SECRET_{prefix}_CLIENT_ID"),
        client_secret: format!("QHUB_SECRET_{prefix}_CLIENT_SECRET"),
        auth0_subdomain: auth0.then(|| format!("QHUB_SECRET_{prefix}_SUBDOMAIN")),
    };
    let mut config = Config {
        project_name: opts.project.clone(),
        provider: opts.provider,
        domain: opts.domain.clone(),
        namespace: opts.namespace.clone().unwrap_or_else(|| "dev".into()),
        qhub_version: Some(super::QHUB_VERSION.into()),
        ci_cd: (opts.ci != CiKind::None).then(|| CiCd {
            kind: opts.ci,
            branch: "main".into(),
            commit_render: Some(true),
            before_script: None,
            after_script: None,
        }),
        terraform_state: None,
        certificate: Certificate::default(),
        security: Security {
            authentication: Authentication {
                kind: opts.auth,
                config: match opts.auth {
                    AuthenticationKind::Password => None,
                    AuthenticationKind::GitHub => Some(oauth("GITHUB", false)),
                    AuthenticationKind::Auth0 => Some(oauth("AUTH0", true)),
                },
            },
            shared_users_group: Some(true),
            keycloak: opts.root_password.as_ref().map(|password| Keycloak {
                initial_root_password: Some(password.clone()),
                overrides: None,
                realm_display_name: None,
            }),
        },
        default_images: DefaultImages::default(),
        storage: Storage::default(),
        theme: theme(&opts.project, &opts.domain, opts.provider),
        helm_extensions: None,
        // QHub 0.4.5's init turned these on; an integration qhub-rs does not deploy is written
        // off, since enabling it is a validation error (`not_built`).
        monitoring: Some(toggle("monitoring")),
        argo_workflows: Some(toggle("argo_workflows")),
        kbatch: Some(toggle("kbatch")),
        cdsdashboards: CdsDashboards {
            enabled: super::not_built::is_built("cdsdashboards"),
            ..CdsDashboards::default()
        },
        prefect: None,
        clearml: None,
        external_container_reg: None,
        amazon_web_services: None,
        google_cloud_platform: None,
        digital_ocean: None,
        azure: None,
        existing: None,
        local: None,
        sandbox: None,
        profiles: profiles(),
        environments: environments(),
        conda_store: None,
        jupyterhub: None,
        tf_extensions: None,
        ingress: None,
        prevent_deploy: false,
        as_written: None,
    };
    match opts.provider {
        ProviderKind::Aws => {
            config.amazon_web_services = Some(AwsSection {
                region: region("us-west-2"),
                availability_zones: None,
                kubernetes_version: opts
                    .kubernetes_version
                    .clone()
                    .unwrap_or_else(|| DEFAULT_EKS_KUBERNETES_VERSION.to_string()),
                support_type: None,
                cluster_admins: Vec::new(),
                node_groups: {
                    let mut g = groups(
                        ("m5.2xlarge", 1, 1),
                        ("m5.xlarge", 1, 5),
                        ("m5.xlarge", 1, 5),
                    );
                    // QHub's key: `general` hosts the platform's zonal EBS volumes on its one
                    // node, so it stays in one availability zone (qhub-aws NODE_GROUP_KEYS).
                    if let Some(general) = g.get_mut("general") {
                        general
                            .extra
                            .insert("single_subnet".into(), serde_json::Value::Bool(true));
                    }
                    g
                },
                terraform_overrides: None,
            });
        }
        ProviderKind::Gcp => {
            let project = opts.gcp_project.clone().ok_or_else(|| {
                ConfigError::Usage(
                    "provider gcp needs the GCP project id: pass --gcp-project ID (or set PROJECT_ID)".into(),
                )
            })?;
            config.google_cloud_platform = Some(GcpSection {
                project,
                region: region("us-central1"),
                zone: None,
                availability_zones: None,
                kubernetes_version: version,
                release_channel: None,
                network: None,
                subnetwork: None,
                node_groups: groups(
                    ("n1-standard-8", 1, 1),
                    ("n1-standard-4", 0, 5),
                    ("n1-standard-4", 0, 5),
                ),
                terraform_overrides: None,
            });
        }
        ProviderKind::Do => {
            config.digital_ocean = Some(DoSection {
                region: region("nyc3"),
                kubernetes_version: version,
                node_groups: groups(
                    ("g-8vcpu-32gb", 1, 1),
                    ("g-4vcpu-16gb", 1, 5),
                    ("g-4vcpu-16gb", 1, 5),
                ),
                terraform_overrides: None,
            });
        }
        ProviderKind::Existing => {
            config.existing = Some(ExistingSection {
                kube_context: None,
                node_selectors: selectors(),
            });
        }
        ProviderKind::Local => {
            config.local = Some(ExistingSection {
                kube_context: None,
                node_selectors: selectors(),
            });
        }
        ProviderKind::Sandbox => {
            config.sandbox = Some(SandboxSection {
                region: region("local-1"),
                kubernetes_version: version,
                node_groups: groups(
                    ("sandbox-8cpu-32gb", 1, 1),
                    ("sandbox-4cpu-16gb", 0, 5),
                    ("sandbox-4cpu-16gb", 0, 5),
                ),
            });
        }
        ProviderKind::Azure => {
            return Err(ConfigError::Usage(
                "provider azure is not supported by qhub-rs; use aws, gcp, do or existing".into(),
            ));
        }
    }
    Ok(config)
}

/// Renders the config and writes it to `path`, refusing to overwrite. The written text is checked
/// by the loader first, so `init` never writes a file `validate` would reject.
pub fn write(opts: &InitOptions, path: &Path) -> Result<Config, ConfigError> {
    if path.exists() {
        return Err(ConfigError::AlreadyExists {
            path: path.to_path_buf(),
        });
    }
    let config = render(opts)?;
    let text = config.to_yaml();
    // Arguments such as the project name are checked here, by the same rules as `validate`.
    super::load_str(&text, path)?;
    crate::fs::write_new(path, text.as_bytes()).map_err(|e| match e {
        crate::fs::WriteError::Exists(path) => ConfigError::AlreadyExists { path },
        crate::fs::WriteError::Io { path, source } => ConfigError::Write { path, source },
    })?;
    Ok(config)
}
