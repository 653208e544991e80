//! kbatch (when `kbatch.enabled`): kbatch-proxy 0.4.2, which turns users' `kbatch job submit`
//! into Kubernetes Jobs and CronJobs in a namespace of their own, as a JupyterHub service at
//! `/services/kbatch`.
//!
//! What it deploys, after kbatch-proxy's Helm chart (kbatch-dev/helm-chart 0.4.2,
//! `kbatch/templates/`) and QHub 0.4.5's module
//! (`qhub/template/stages/07-kubernetes-services/modules/kubernetes/services/kbatch/main.tf`):
//! - kbatch-proxy ([`SERVER`]): the chart's Deployment and Service (port 80 to the container's
//!   `http`, probed with `GET /` as the chart does), running the chart's image
//!   ([`versions::KBATCH_PROXY`]) as a non-root user on 8080 (the image's command binds
//!   `${APP_PORT}`, `kbatch-proxy/docker/production/Dockerfile`), so the pod passes the
//!   platform namespace's Pod Security level (`restricted`); its service account holds the
//!   cluster-wide RBAC of [`rbac::KBATCH_PROXY`] (it makes each user's namespace and runs their
//!   jobs there);
//! - the generated Secret [`HUB_TOKEN_SECRET`], the API token of the JupyterHub service
//!   [`SERVICE`]: the hub registers the service with it and with the Service's URL, so the
//!   hub's proxy routes `/services/kbatch/` to kbatch-proxy (contract with jupyterhub, see
//!   docs/platform.md), and kbatch-proxy presents it to check users' tokens;
//! - kbatch-proxy's settings (its pydantic `Settings` in `kbatch_proxy/main.py`, read from
//!   the environment, [`settings`]): the hub's API, the service prefix (kbatch-proxy serves
//!   its API under [`PREFIX`], `KBATCH_PREFIX`, since the hub's proxy does not cut it), the
//!   job template file and the environment every job gets (Dask Gateway's address, as QHub
//!   gave it);
//! - the job template ([`job_template`]), a ConfigMap: the chart has none by default (its
//!   `app.extraFiles`, documented in kbatch-dev/kbatch `docs/source/kbatch-proxy.md`, is where
//!   one goes); qhub's puts users' jobs on the `user` node group.
//!
//! It depends on no other component: the hub needs kbatch's token Secret to start once kbatch
//! is on (its variable is then not optional), and kbatch-proxy needs the hub only to answer a
//! request, so waiting on the hub would deadlock the first deploy.
//!
//! Not done: the namespaces kbatch-proxy makes for users (`kbatch_proxy/patch.py`
//! `namespace_for_username`) are not labelled or tracked by qhub: turning kbatch off or
//! destroying the platform leaves them, and the CronJobs in them, behind; they get the
//! cluster's default Pod Security level.

use serde_json::json;

use super::built::Listing;
use super::{Built, Component, ConfigFile, Context, KubeError, WebService, manifest, rbac};
use crate::config::Config;
use crate::kubernetes::health::Check;
use crate::kubernetes::versions;

/// The component's name.
pub const NAME: &str = "kbatch";
/// kbatch-proxy's Deployment, Service and service account ([`rbac::KBATCH_PROXY`]).
pub const SERVER: &str = rbac::KBATCH_PROXY.service_account;
/// The JupyterHub service's name (QHub 0.4.5's, `jupyterhub.tf` `services`).
pub const SERVICE: &str = "kbatch";
/// Where the hub's proxy serves it, and the prefix kbatch-proxy serves its API under.
pub const PREFIX: &str = "/services/kbatch";
/// The generated Secret holding the service's JupyterHub API token (contract with jupyterhub,
/// see docs/platform.md).
pub const HUB_TOKEN_SECRET: &str = "kbatch-hub-token";
/// Its key.
pub const HUB_TOKEN_KEY: &str = "token";
/// The ConfigMap holding the job template.
pub const JOB_TEMPLATE_CONFIGMAP: &str = "kbatch-job-template";
/// Where the job template is mounted.
pub const JOB_TEMPLATE_DIR: &str = "/etc/kbatch";
/// The job template's file name.
pub const JOB_TEMPLATE_FILE: &str = "job-template.yaml";
/// The port kbatch-proxy listens on in its container (`APP_PORT`).
pub const CONTAINER_PORT: i32 = 8080;
/// The user it runs as: the image (`python:3.9`) names none, any non-root uid reads its code.
const UID: i64 = 1000;

/// Whether the config turns kbatch on.
pub fn enabled(config: &Config) -> bool {
    config.kbatch.as_ref().is_some_and(|t| t.enabled)
}

/// The URL the hub registers for the service: kbatch-proxy's Service, which the hub's proxy
/// routes [`PREFIX`] to (without cutting it).
pub fn service_url(namespace: &str) -> String {
    format!(
        "http://{SERVER}.{namespace}.svc:{}",
        super::web_service::SERVICE_PORT
    )
}

/// The URL users' servers reach kbatch at (`KBATCH_URL`, which the `kbatch` client reads,
/// kbatch-dev/kbatch 0.4.2 `kbatch/kbatch/_core.py` `handle_url`): kbatch-proxy's Service
/// inside the cluster, with the prefix.
pub fn user_url(namespace: &str) -> String {
    format!("http://{SERVER}.{namespace}.svc{PREFIX}/")
}

/// kbatch.
#[derive(Debug, Clone, Copy)]
pub struct Kbatch;

/// kbatch-proxy's settings, as environment variables: the fields of its pydantic `Settings`
/// (kbatch-dev/kbatch 0.4.2 `kbatch-proxy/kbatch_proxy/main.py`; pydantic reads a field from
/// the variable of its name, case-insensitively), `JUPYTERHUB_API_URL` (read by JupyterHub's
/// `HubAuth`, which kbatch-proxy checks users' tokens with), and the image's own `APP_PORT`
/// and `WEB_CONCURRENCY` (its `gunicorn_conf.py`). The API token comes from
/// [`HUB_TOKEN_SECRET`] as `JUPYTERHUB_API_TOKEN`.
pub fn settings(ctx: &Context<'_>) -> Result<Vec<(String, String)>, KubeError> {
    let ns = ctx.namespace();
    let hub = format!(
        "http://{}.{ns}.svc:{}/hub/api",
        super::jupyterhub::HUB_SERVICE,
        super::jupyterhub::HUB_PORT
    );
    // What QHub 0.4.5 gave every job (`KBATCH_JOB_EXTRA_ENV`): where Dask Gateway is, as
    // users' servers have it.
    let extra = serde_json::to_string(&super::jupyterhub::config::user_environment(ctx))
        .map_err(|e| KubeError::Invalid(format!("kbatch's job environment: {e}")))?;
    Ok([
        ("APP_PORT", CONTAINER_PORT.to_string()),
        // One worker: the default two of its gunicorn_conf.py double the memory for a
        // service that waits on the API server.
        ("WEB_CONCURRENCY", "1".to_string()),
        ("JUPYTERHUB_API_URL", hub),
        ("JUPYTERHUB_SERVICE_PREFIX", format!("{PREFIX}/")),
        ("KBATCH_PREFIX", PREFIX.to_string()),
        (
            "KBATCH_JOB_TEMPLATE_FILE",
            format!("{JOB_TEMPLATE_DIR}/{JOB_TEMPLATE_FILE}"),
        ),
        ("KBATCH_JOB_EXTRA_ENV", extra),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

/// The job template kbatch-proxy merges into every job (`KBATCH_JOB_TEMPLATE_FILE`, its
/// `utils.merge_json_objects`): a `batch/v1` Job whose pods run on the `user` node group,
/// where users' servers run (the config's own placement labels; none on a cluster without
/// node groups). JSON, which is YAML (kbatch-proxy reads it with `yaml.safe_load`).
pub fn job_template(ctx: &Context<'_>) -> Result<ConfigFile, KubeError> {
    let mut template = json!({"apiVersion": "batch/v1", "kind": "Job"});
    if let Some(selector) = ctx
        .facts
        .node_selector
        .for_group(super::jupyterhub::profiles::USER_GROUP)
    {
        template["spec"] = json!({"template": {"spec": {"nodeSelector": selector}}});
    }
    let text = serde_json::to_string_pretty(&template)
        .map_err(|e| KubeError::Invalid(format!("kbatch's job template: {e}")))?;
    Ok(ConfigFile::new(
        JOB_TEMPLATE_CONFIGMAP,
        JOB_TEMPLATE_FILE,
        format!("{text}\n"),
    ))
}

/// QHub 0.4.5's `kbatch` section has only `enabled` (`qhub/schema.py` `KBatch`): an override
/// would be silently ignored, so it is refused.
fn check_overrides(ctx: &Context<'_>) -> Result<(), KubeError> {
    let keys: Vec<&String> = ctx
        .config
        .kbatch
        .as_ref()
        .and_then(|t| t.overrides.as_ref())
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    match keys.first() {
        None => Ok(()),
        Some(key) => Err(KubeError::Invalid(format!(
            "kbatch.overrides.{key} is not supported: kbatch takes no overrides (QHub 0.4.5's \
             `kbatch` section has only `enabled`); remove `kbatch.overrides`"
        ))),
    }
}

impl Component for Kbatch {
    fn name(&self) -> &'static str {
        NAME
    }

    fn enabled(&self, ctx: &Context<'_>) -> bool {
        enabled(ctx.config)
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        check_overrides(ctx)?;
        let mut service = WebService::new(SERVER, versions::KBATCH_PROXY, CONTAINER_PORT, UID)
            .service_account(SERVER)
            // With `KBATCH_PREFIX` set, kbatch-proxy also answers `GET /` (`app_root`), which
            // the chart probes.
            .http_probe("/")
            .resources("50m", "192Mi", "512Mi")
            // A python image qhub does not build, never run read-only upstream.
            .writable_root()
            .config_file(job_template(ctx)?, JOB_TEMPLATE_DIR)
            .secret_env("JUPYTERHUB_API_TOKEN", HUB_TOKEN_SECRET, HUB_TOKEN_KEY);
        for (name, value) in settings(ctx)? {
            service = service.env(name, value);
        }
        let mut built = service.build(ctx, NAME)?;
        let mut objects = vec![
            super::generated_secret(ctx, NAME, HUB_TOKEN_SECRET, &[HUB_TOKEN_KEY])?,
            manifest(&k8s_openapi::api::core::v1::ServiceAccount {
                metadata: ctx.meta(NAME, SERVER),
                ..Default::default()
            })?,
        ];
        objects.extend(rbac::objects(ctx, NAME, &rbac::KBATCH_PROXY)?);
        objects.append(&mut built.manifests);
        built.manifests = objects;
        // Served through the hub's proxy (JupyterHub's catch-all route), so listed without a
        // route of its own: `GET /services/kbatch/` answers `{"message": "kbatch"}`
        // (kbatch_proxy/main.py `get_root`, under the prefix).
        Ok(built.listed(Listing::http(
            format!("{PREFIX}/"),
            Check::http(format!("{PREFIX}/")).json_equals("message", "kbatch"),
        )))
    }
}

#[cfg(test)]
mod tests;
