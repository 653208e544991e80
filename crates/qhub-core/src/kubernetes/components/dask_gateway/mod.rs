//! Dask Gateway (dask-gateway-server 2026.3.0): users of JupyterHub start Dask clusters of the
//! config's worker profiles (`profiles.dask_worker`), on the `worker` node group or, for a
//! profile that asks for a GPU, on a GPU group.
//!
//! What it deploys, after the upstream chart dask/dask-gateway 2026.3.0
//! (`resources/helm/dask-gateway/templates/`), without its Traefik (the platform's ingress
//! serves its routes):
//! - the `DaskCluster` CRD ([`crd`]);
//! - the API server (`dask-gateway-api`: Deployment, Service on port 8000, routed at
//!   `/gateway` with the prefix cut) and the controller (`dask-gateway-controller`), each with
//!   its service account and the RBAC of its upstream table
//!   ([`rbac::DASK_GATEWAY_API`], [`rbac::DASK_GATEWAY_CONTROLLER`]);
//! - one ConfigMap both read: `dask_gateway_config.py` and the settings it reads ([`config`]);
//!   an edit rolls both;
//! - the generated Secret [`HUB_TOKEN_SECRET`], the API token JupyterHub registers for its
//!   `dask-gateway` service and the gateway's `JupyterHubAuthenticator` presents;
//! - the Middleware that cuts `/gateway/clusters/<cluster>` before a cluster's dashboard.
//!
//! The controller writes, per cluster, an IngressRoute (dashboard, on the HTTPS entry point)
//! and an IngressRouteTCP (scheduler, TLS passthrough by SNI, on the entry point
//! [`ingress::DASK`], port 8786) in group `traefik.io`, the group of the Traefik we run
//! ([`ingress::crds::GROUP`]); 2026.3.0's controller writes no other group
//! (`backends/kubernetes/controller.py`, `make_ingressroute`, `make_ingressroutetcp`).

pub mod config;
pub mod crd;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PodSpec, Probe, Secret, SecretKeySelector, Service, ServiceAccount, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value as Json, json};

use super::{Built, Component, Context, KubeError, Route, ingress, manifest, rbac, selector};
use crate::kubernetes::health::Check;
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::{recipes, versions};

/// The component's name (and the gateway instance its clusters are labelled with).
pub const NAME: &str = "dask-gateway";
/// The API server's Deployment, Service and service account.
pub const API: &str = rbac::DASK_GATEWAY_API.service_account;
/// The controller's Deployment and service account.
pub const CONTROLLER: &str = rbac::DASK_GATEWAY_CONTROLLER.service_account;
/// The port both servers listen on (upstream's `:8000`).
pub const API_PORT: i32 = 8000;
/// The path the API is routed at.
pub const PATH: &str = "/gateway";
/// The generated Secret holding the JupyterHub API token (contract with jupyterhub, see
/// docs/platform.md).
pub const HUB_TOKEN_SECRET: &str = "dask-gateway-hub-token";
/// Its key (contract with jupyterhub, see docs/platform.md).
pub const HUB_TOKEN_KEY: &str = "token";
/// The Middleware cutting `/gateway/clusters/<namespace>.<cluster>` before a dashboard.
pub const CLUSTERS_MIDDLEWARE: &str = "dask-gateway-clusters-prefix";
/// Where the ConfigMap is mounted.
const CONFIG_DIR: &str = "/etc/dask-gateway";
/// The user upstream's `dask-gateway-server` image runs as (its Dockerfile: `dask`, uid 1000).
const SERVER_UID: i64 = 1000;

/// Dask Gateway.
#[derive(Debug, Clone, Copy)]
pub struct DaskGateway;

impl Component for DaskGateway {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Deployed when the config offers at least one worker profile (QHub's default configs
    /// all do): without one, a cluster has nothing to run.
    fn enabled(&self, ctx: &Context<'_>) -> bool {
        !ctx.config.profiles.dask_worker.is_empty()
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["ingress", "keycloak", super::storage::NAME]
    }

    /// Users' clusters: the controller gives each DaskCluster's scheduler and worker pods,
    /// Secret, Service and routes an ownerReference to it and sets no finalizer
    /// (dask-gateway-server 2026.3.0 `backends/kubernetes/controller.py`, `make_pod`,
    /// `make_secret`, `make_service`), so deleting the DaskClusters stops every pod of them.
    fn creates_at_run_time(&self) -> &'static [(&'static str, &'static str)] {
        &[(crd::API_VERSION, crd::KIND)]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let file = config::config_file(ctx)?;
        let mut out = Vec::new();
        for (account, table) in [
            (API, &rbac::DASK_GATEWAY_API),
            (CONTROLLER, &rbac::DASK_GATEWAY_CONTROLLER),
        ] {
            out.push(manifest(&ServiceAccount {
                metadata: ctx.meta(NAME, account),
                ..ServiceAccount::default()
            })?);
            out.extend(rbac::objects(ctx, account, table)?);
        }
        out.push(hub_token(ctx)?);
        let api_env = vec![EnvVar {
            name: "JUPYTERHUB_API_TOKEN".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: HUB_TOKEN_SECRET.into(),
                    key: HUB_TOKEN_KEY.into(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }];
        let mut api = server_deployment(ctx, API, &[], api_env, &file.name, false)?;
        // Upstream's probes (templates/gateway/deployment.yaml): `/api/health` on the API port.
        let health = Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/api/health".into()),
                port: IntOrString::String("api".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            ..Probe::default()
        };
        if let Some(c) = api
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .and_then(|p| p.containers.first_mut())
        {
            c.readiness_probe = Some(health.clone());
            c.liveness_probe = Some(Probe {
                initial_delay_seconds: Some(5),
                ..health
            });
        }
        out.push(manifest(&api)?);
        out.push(manifest(&Service {
            metadata: ctx.meta(API, API),
            spec: Some(ServiceSpec {
                selector: Some(selector(API)),
                ports: Some(vec![ServicePort {
                    name: Some("api".into()),
                    port: API_PORT,
                    target_port: Some(IntOrString::String("api".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        })?);
        // The controller: one replica at a time (upstream: `strategy: Recreate`).
        let controller = server_deployment(
            ctx,
            CONTROLLER,
            &["kube-controller"],
            Vec::new(),
            &file.name,
            true,
        )?;
        out.push(manifest(&controller)?);
        out.push(clusters_middleware(ctx)?);
        Ok(Built::new(out)
            .image(versions::DASK_GATEWAY_SERVER)
            .config_file(file)
            .crd(crd::dask_cluster())
            .route(
                Route::new(PATH, API, API_PORT)
                    .strip_prefix()
                    // `GET /api/version` answers 200 with `{"version": ...}`
                    // (dask/dask-gateway `dask-gateway-server/dask_gateway_server/routes.py`
                    // `version`, and `app.py` `version_info`; 2026.3.0 from PyPI).
                    .listed(
                        format!("{PATH}/"),
                        Check::http(format!("{PATH}/api/version")).json_has("version"),
                    ),
            ))
    }
}

/// The generated Secret holding the JupyterHub API token: filled once at apply time, kept.
fn hub_token(ctx: &Context<'_>) -> Result<Json, KubeError> {
    let recipe = recipes::Recipe::Passwords {
        keys: vec![HUB_TOKEN_KEY.into()],
        fixed: BTreeMap::new(),
    };
    let mut meta = ctx.meta(NAME, HUB_TOKEN_SECRET);
    meta.annotations = Some(BTreeMap::from([(
        recipes::ANNOTATION.to_string(),
        recipe.to_string(),
    )]));
    manifest(&Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        ..Secret::default()
    })
}

/// The Middleware the controller puts on every cluster's dashboard route
/// (`KubeController.proxy_web_middlewares`): upstream's `clusters-prefix` one
/// (templates/gateway/middleware.yaml), for the prefix `/gateway`.
fn clusters_middleware(ctx: &Context<'_>) -> Result<Json, KubeError> {
    Ok(json!({
        "apiVersion": format!("{}/{}", ingress::crds::GROUP, ingress::crds::VERSION),
        "kind": "Middleware",
        "metadata": manifest(&ctx.meta(NAME, CLUSTERS_MIDDLEWARE))?,
        "spec": {"stripPrefixRegex": {"regex": [format!("{PATH}/clusters/[a-zA-Z0-9.-]+")]}},
    }))
}

/// A Deployment `name` running `dask-gateway-server <subcommand> --config ...` on the
/// `general` group, reading the ConfigMap `config_map`; `recreate` stops the old pod first.
fn server_deployment(
    ctx: &Context<'_>,
    name: &str,
    subcommand: &[&str],
    env: Vec<EnvVar>,
    config_map: &str,
    recreate: bool,
) -> Result<k8s_openapi::api::apps::v1::Deployment, KubeError> {
    let mut container = pods::container(
        name,
        versions::DASK_GATEWAY_SERVER.reference(),
        pods::resources("50m", "128Mi", "512Mi"),
    );
    let mut args = vec!["dask-gateway-server".to_string()];
    args.extend(subcommand.iter().map(|s| (*s).to_string()));
    args.extend([
        "--config".to_string(),
        format!("{CONFIG_DIR}/{}", config::FILE),
    ]);
    container.args = Some(args);
    container.env = (!env.is_empty()).then_some(env);
    container.ports = Some(vec![ContainerPort {
        container_port: API_PORT,
        name: Some("api".into()),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }]);
    container.volume_mounts = Some(vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        // The root filesystem is read-only; Python and aiohttp may want a scratch directory.
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ]);
    let mut pod = PodSpec {
        service_account_name: Some(name.into()),
        containers: vec![container],
        security_context: Some(pods::non_root_pod(SERVER_UID)),
        volumes: Some(vec![
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: config_map.into(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    let mut deployment = super::deployment(ctx, name, pod, recreate);
    deployment.metadata = ctx.meta(name, name);
    Ok(deployment)
}

#[cfg(test)]
mod tests;
