//! The platform components' sections: `monitoring`, `argo_workflows`, `kbatch`,
//! `cdsdashboards`, `prefect`, `clearml`, `conda_store`, `jupyterhub`, `ingress` and `theme`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A free-form map of settings passed through to a component.
pub type Overrides = serde_json::Map<String, serde_json::Value>;

/// A component that is only switched on or off (`monitoring`, `argo_workflows`, `kbatch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    /// Deploy the component.
    pub enabled: bool,
    /// Extra settings for the component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Overrides>,
}

impl Toggle {
    /// An enabled component without overrides.
    pub fn on() -> Self {
        Self {
            enabled: true,
            overrides: None,
        }
    }
}

/// `cdsdashboards`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CdsDashboards {
    /// Deploy ContainDS Dashboards.
    pub enabled: bool,
    /// Hide users' named servers in the dashboard UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cds_hide_user_named_servers: Option<bool>,
    /// Hide dashboard servers in the user's server list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cds_hide_user_dashboard_servers: Option<bool>,
}

/// Off: QHub 0.4.5 turned it on, but qhub-rs does not deploy ContainDS Dashboards
/// (`super::not_built`), so enabling it is a validation error.
impl Default for CdsDashboards {
    fn default() -> Self {
        Self {
            enabled: false,
            cds_hide_user_named_servers: Some(true),
            cds_hide_user_dashboard_servers: Some(false),
        }
    }
}

/// `prefect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prefect {
    /// Deploy a Prefect agent.
    pub enabled: bool,
    /// Agent image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Extra settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Overrides>,
    /// Prefect Cloud token (use `QHUB_SECRET_...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `clearml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearMl {
    /// Deploy ClearML.
    pub enabled: bool,
    /// Protect ClearML with forward-auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_forward_auth: Option<bool>,
    /// Extra settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Overrides>,
}

/// `conda_store`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CondaStore {
    /// Extra conda-store settings (traitlets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_settings: Option<Overrides>,
    /// Extra Python configuration appended to conda-store's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_config: Option<String>,
    /// conda-store image tag (of `quay.io/quansight/conda-store-server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
    /// The conda-store namespace the `environments` are built in (QHub 0.4.5's key; default
    /// `nebari-git`, as QHub 0.4.5's `input_vars.py` has it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_namespace: Option<String>,
}

/// `jupyterhub`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JupyterHub {
    /// Extra settings merged into the hub's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Overrides>,
}

/// `ingress`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ingress {
    /// Ignored: qhub-rs does not use Terraform. Kept so QHub configs load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terraform_overrides: Option<serde_json::Value>,
}

/// `theme`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Theme {
    /// JupyterHub theme settings (`hub_title`, `hub_subtitle`, `welcome`, `logo`, colours, …).
    #[serde(default)]
    pub jupyterhub: Overrides,
}
