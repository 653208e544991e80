//! conda-store's environments offered as kernels in users' JupyterLab servers.
//!
//! conda-store builds an environment `NAME` of namespace `NS` at `/home/conda/NS/envs/NAME`
//! (its default `environment_directory`), which users' servers mount read-only
//! ([`super::config::CONDA_MOUNT`]). `nb_conda_kernels` in the user image offers a kernel for
//! every conda environment conda knows of (`conda info --json`: its `envs` and the
//! environments found in its `envs_dirs`) that has `ipykernel` (which conda-store adds to every
//! build, `CondaStore.conda_included_packages`). So conda must know conda-store's directories,
//! and the kernels must be named after the environments: this is what nebari, QHub's successor,
//! writes into every user's server at start (nebari-dev/nebari
//! `src/_nebari/stages/kubernetes_services/template/modules/kubernetes/services/jupyterhub/files/jupyterhub/03-profiles.py`,
//! `configure_user`: a `~/.condarc` whose `envs_dirs` are `/home/conda/{ns}/envs` for the
//! user's own namespace, the default namespace, `global` and the user's groups, and a
//! `~/.jupyter/jupyter_config.json` with `CondaKernelSpecManager.name_format: "{environment}"`).
//!
//! Here the same two settings are one ConfigMap ([`CONFIG_MAP`]) mounted read-only through
//! KubeSpawner's volumes, at system-wide paths conda and Jupyter read (nothing written into
//! users' homes, nothing a user's own files override unknowingly):
//! - [`CONDARC_MOUNT`]: conda reads every `*.yml` of `/etc/conda/condarc.d/` (its search path,
//!   conda `conda/base/constants.py` `SEARCH_PATH`); `envs_dirs` entries have environment
//!   variables expanded (conda `conda/base/context.py`, `_envs_dirs`, `expandvars=True`), so
//!   `${JUPYTERHUB_USER}` (set by JupyterHub in every server) makes one file serve every user.
//!   Users' environments live in their own namespace and in `global` (conda-store's
//!   `default_namespace` here); per-group namespaces are not listed (a static file cannot know
//!   a user's groups).
//! - [`JUPYTER_MOUNT`]: Jupyter Server reads every JSON file of `jupyter_server_config.d/` in its
//!   config path, `/etc/jupyter` included. Only `CondaKernelSpecManager` settings are given: the
//!   kernel spec manager class itself is enabled by the image's `nb_conda_kernels` package (its
//!   conda package does so on install; QHub's and nebari's JupyterLab images ship it), so an
//!   image without it still starts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value as Json, json};

use super::super::conda_store::config::default_namespace;
use super::super::conda_store::{STORE_DIRECTORY, USERS_DEFAULT_NAMESPACE};
use super::super::{Context, KubeError, manifest};
use super::NAME;

/// The ConfigMap of users' servers' conda and Jupyter settings.
pub const CONFIG_MAP: &str = "jupyterlab-conda";
/// Its key holding the condarc fragment.
pub const CONDARC_KEY: &str = "qhub.yml";
/// Its key holding the Jupyter Server settings.
pub const JUPYTER_KEY: &str = "qhub-conda-kernels.json";
/// Where the condarc fragment is mounted.
pub const CONDARC_MOUNT: &str = "/etc/conda/condarc.d/qhub.yml";
/// Where the Jupyter Server settings are mounted.
pub const JUPYTER_MOUNT: &str = "/etc/jupyter/jupyter_server_config.d/qhub-conda-kernels.json";
/// The volume's name in users' pods.
pub const VOLUME: &str = "conda-config";
/// The variable JupyterHub sets to the user's name in every server (JupyterHub
/// `Spawner.get_env`), expanded by conda.
pub const USER_VARIABLE: &str = "JUPYTERHUB_USER";

/// The directories conda looks for environments in, in order: the user's own namespace, the
/// config's environments, and `global`.
pub fn envs_dirs(config: &crate::Config) -> Vec<String> {
    [
        format!("${{{USER_VARIABLE}}}"),
        default_namespace(config).to_string(),
        USERS_DEFAULT_NAMESPACE.to_string(),
    ]
    .iter()
    .map(|ns| format!("{STORE_DIRECTORY}/{ns}/envs"))
    .collect()
}

/// The condarc fragment (YAML).
pub fn condarc(config: &crate::Config) -> String {
    let mut text = String::from(
        "# Written by qhub-rs: conda-store's environments (its namespaces' envs directories).\nenvs_dirs:\n",
    );
    for dir in envs_dirs(config) {
        text.push_str(&format!("  - {dir}\n"));
    }
    text
}

/// The Jupyter Server settings (JSON): kernels named after their environments.
pub fn jupyter_settings() -> String {
    let doc = json!({"CondaKernelSpecManager": {"name_format": "{environment}"}});
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string());
    text.push('\n');
    text
}

/// The ConfigMap.
pub fn config_map(ctx: &Context<'_>) -> Result<Json, KubeError> {
    manifest(&ConfigMap {
        metadata: ctx.meta(NAME, CONFIG_MAP),
        data: Some(BTreeMap::from([
            (CONDARC_KEY.to_string(), condarc(ctx.config)),
            (JUPYTER_KEY.to_string(), jupyter_settings()),
        ])),
        ..ConfigMap::default()
    })
}

/// The volume users' pods get (KubeSpawner's `volumes` entry).
pub fn volume() -> Json {
    json!({"name": VOLUME, "configMap": {"name": CONFIG_MAP}})
}

/// The mounts users' containers get (KubeSpawner's `volume_mounts` entries): one file each, so
/// that nothing the image has beside them is hidden.
pub fn volume_mounts() -> Vec<Json> {
    [(CONDARC_MOUNT, CONDARC_KEY), (JUPYTER_MOUNT, JUPYTER_KEY)]
        .iter()
        .map(|(path, key)| {
            json!({"name": VOLUME, "mountPath": path, "subPath": key, "readOnly": true})
        })
        .collect()
}
