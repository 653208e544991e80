//! JupyterHub: the hub (JupyterHub with KubeSpawner and OAuthenticator, z2jh's hub image),
//! configurable-http-proxy in front of it and of users' servers, and users' JupyterLab servers
//! spawned per profile, logging in through Keycloak.
//!
//! What z2jh's chart deploys, built natively (jupyterhub/zero-to-jupyterhub-k8s 4.4.0):
//! - the hub: a Deployment (`Recreate`: its sqlite database is on a ReadWriteOnce volume, z2jh's
//!   default `hub.db.type: sqlite-pvc`, 1Gi) behind the Service `hub` (8081), its service
//!   account granted the chart's hub Role ([`super::rbac::JUPYTERHUB`]); sqlite rather than
//!   Keycloak's Postgres keeps the hub's state with the hub and away from the identity
//!   provider's database, as z2jh does; the hub is one replica either way (JupyterHub does not
//!   run active-active);
//! - the proxy: configurable-http-proxy, its API at the Service `proxy-api` (8001) and its
//!   public side at `proxy-public` (80), which the catch-all route `/` reaches ([`PATH`]);
//!   the proxy's API token is generated once in the Secret [`SECRET`];
//! - the configuration ([`config`]): `jupyterhub_config.py` and `values.json`, one ConfigMap
//!   mounted where the hub image reads it, so that an edit rolls the hub and nothing else;
//! - the profiles users choose from ([`profiles`]), the idle culler as a hub service, home
//!   directories and the shared directory on the platform's shared claim, conda-store's
//!   environments mounted read-only and offered as kernels ([`kernels`]).

pub mod config;
pub mod kernels;
pub mod profiles;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSpec, Probe, Secret, SecretKeySelector, Service, ServiceAccount,
    ServicePort, ServiceSpec, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value as Json;

use super::{
    Built, CLIENT_SECRET_KEY, Component, ConfigFile, Context, KubeError, Route, client_secret_name,
    manifest, rbac, selector,
};
use crate::keycloak::PlatformClient;
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::recipes::{self, Recipe};
use crate::kubernetes::versions;

/// The component's name.
pub const NAME: &str = "jupyterhub";
/// The hub's Deployment, Service (contract with dask-gateway: `http://hub.<namespace>.svc:8081`)
/// and service account (z2jh's name, [`rbac::JUPYTERHUB`]).
pub const HUB_SERVICE: &str = rbac::JUPYTERHUB.service_account;
/// The hub's port (its API at `/hub/api`).
pub const HUB_PORT: i32 = 8081;
/// The proxy's Deployment.
pub const PROXY: &str = "proxy";
/// The Service of the proxy's API (the hub adds and removes routes through it).
pub const PROXY_API_SERVICE: &str = "proxy-api";
/// The proxy's API port.
pub const PROXY_API_PORT: i32 = 8001;
/// The Service of the proxy's public side, which the ingress routes to.
pub const PROXY_PUBLIC_SERVICE: &str = "proxy-public";
/// The proxy's public port in its container.
const PROXY_PORT: i32 = 8000;
/// The generated Secret: `seed` (from which the .py derives the cookie secret and the
/// auth-state key) and `proxy-token` (the proxy's API token).
pub const SECRET: &str = "hub-secrets";
/// The hub's database claim.
pub const DB_CLAIM: &str = "hub-db";
/// The database volume's size (z2jh's `hub.db.pvc.storage`).
const DB_SIZE: &str = "1Gi";
/// The ConfigMap of the hub's configuration.
pub const CONFIG_MAP: &str = "hub-config";
/// The path routed to the proxy: the catch-all, below every other component's prefix
/// ([`super::built::CATCH_ALL_PRIORITY`]). JupyterHub serves under its base URL `/` (the hub
/// at `/hub`, users' servers at `/user`, hub services at `/services`, and `/` redirects to
/// the hub), as QHub 0.4.5 routed it.
pub const PATH: &str = "/";
/// The path that answers 200 when the hub is up (JupyterHub's `/hub/health`, no login).
pub const HEALTH_PATH: &str = "/hub/health";

/// JupyterHub.
#[derive(Debug, Clone, Copy)]
pub struct JupyterHub;

fn env_from(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(optional),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, port: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        ..ContainerPort::default()
    }
}

fn service(
    ctx: &Context<'_>,
    name: &str,
    pods: &str,
    port: i32,
    target: &str,
) -> Result<Json, KubeError> {
    manifest(&Service {
        metadata: ctx.meta(NAME, name),
        spec: Some(ServiceSpec {
            selector: Some(selector(pods)),
            ports: Some(vec![ServicePort {
                name: Some(target.into()),
                port,
                target_port: Some(IntOrString::String(target.into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

fn volume_mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The hub's Deployment.
fn hub(ctx: &Context<'_>) -> Result<Json, KubeError> {
    let mut container = pods::container(
        HUB_SERVICE,
        versions::JUPYTERHUB_HUB.reference(),
        pods::resources("200m", "512Mi", "1Gi"),
    );
    container.command = Some(vec![
        "jupyterhub".into(),
        "--config".into(),
        format!("{}/{}", config::CONFIG_DIR, config::CONFIG_PY_NAME),
    ]);
    let mut env: Vec<EnvVar> = config::SECRET_ENV
        .iter()
        .map(|(var, secret, key)| env_from(var, secret, key, !config::secret_required(ctx, secret)))
        .collect();
    env.push(env_from(
        config::CLIENT_SECRET_ENV,
        &client_secret_name(config::CLIENT_ID),
        CLIENT_SECRET_KEY,
        false,
    ));
    container.env = Some(env);
    container.ports = Some(vec![port("http", HUB_PORT)]);
    container.readiness_probe = Some(http_probe("/hub/health", "http", 10));
    container.liveness_probe = Some(Probe {
        failure_threshold: Some(30),
        ..http_probe("/hub/health", "http", 10)
    });
    container.volume_mounts = Some(vec![
        volume_mount("config", config::CONFIG_DIR, true),
        volume_mount("db", config::DB_DIR, false),
        volume_mount("tmp", "/tmp", false),
        // Users' home directories, which the hub creates (`modify_pod_hook`).
        VolumeMount {
            sub_path: Some(super::storage::HOME_DIR.into()),
            ..volume_mount("homes", config::HOMES_DIR, false)
        },
    ]);
    let mut pod = PodSpec {
        containers: vec![container],
        service_account_name: Some(HUB_SERVICE.into()),
        // KubeSpawner talks to the API server with the service account's token.
        automount_service_account_token: Some(true),
        security_context: Some(pods::non_root_pod(1000)),
        volumes: Some(vec![
            pods::config_map_volume("config", CONFIG_MAP),
            pods::claim_volume("db", DB_CLAIM),
            pods::empty_dir_volume("tmp"),
            pods::claim_volume("homes", super::storage::CLAIM),
        ]),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    manifest(&super::deployment(ctx, HUB_SERVICE, pod, true))
}

/// The proxy's Deployment (z2jh 4.4.0 `jupyterhub/templates/proxy/deployment.yaml`: the same
/// flags, without TLS, which Traefik terminates).
fn proxy(ctx: &Context<'_>) -> Result<Json, KubeError> {
    let hub = format!("http://{HUB_SERVICE}.{}.svc:{HUB_PORT}", ctx.namespace());
    let mut container = pods::container(
        PROXY,
        versions::JUPYTERHUB_PROXY.reference(),
        pods::resources("100m", "128Mi", "512Mi"),
    );
    container.command = Some(vec![
        "configurable-http-proxy".into(),
        "--ip=".into(),
        "--api-ip=".into(),
        format!("--api-port={PROXY_API_PORT}"),
        format!("--default-target={hub}"),
        format!("--error-target={hub}/hub/error"),
        format!("--port={PROXY_PORT}"),
    ]);
    container.env = Some(vec![env_from(
        "CONFIGPROXY_AUTH_TOKEN",
        SECRET,
        "proxy-token",
        false,
    )]);
    container.ports = Some(vec![port("http", PROXY_PORT), port("api", PROXY_API_PORT)]);
    container.readiness_probe = Some(http_probe("/_chp_healthz", "http", 10));
    container.liveness_probe = Some(http_probe("/_chp_healthz", "http", 10));
    let mut pod = PodSpec {
        containers: vec![container],
        automount_service_account_token: Some(false),
        // z2jh runs the proxy as `nobody`.
        security_context: Some(pods::non_root_pod(65534)),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    manifest(&super::deployment(ctx, PROXY, pod, false))
}

/// The hub's login client: its roles mapped as QHub mapped them (REFERENCE.md §2), and the
/// `jupyterlab_profiles` claim for `access: keycloak` profiles.
pub fn client() -> PlatformClient {
    PlatformClient::new(
        config::CLIENT_ID,
        "JupyterHub",
        "/hub",
        config::CALLBACK_PATH,
    )
    .role(config::ADMIN_ROLE, &[config::ADMIN_GROUP])
    .role("jupyterhub_developer", &["developer", "analyst"])
    .attribute_claim(config::PROFILES_CLAIM)
}

/// The hub's configuration files (the ConfigMap [`CONFIG_MAP`]).
pub fn config_file(ctx: &Context<'_>) -> Result<ConfigFile, KubeError> {
    let values = serde_json::to_string_pretty(&config::values(ctx)?)
        .map_err(|e| KubeError::Invalid(format!("the hub's values: {e}")))?;
    Ok(ConfigFile {
        name: CONFIG_MAP.into(),
        files: BTreeMap::from([
            (
                config::CONFIG_PY_NAME.to_string(),
                config::CONFIG_PY.to_string(),
            ),
            (config::VALUES_NAME.to_string(), format!("{values}\n")),
        ]),
    })
}

impl Component for JupyterHub {
    fn name(&self) -> &'static str {
        NAME
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["ingress", "keycloak", super::storage::NAME]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let mut secret_meta = ctx.meta(NAME, SECRET);
        secret_meta.annotations = Some(BTreeMap::from([(
            recipes::ANNOTATION.to_string(),
            Recipe::Passwords {
                keys: vec!["seed".into(), "proxy-token".into()],
                fixed: BTreeMap::new(),
            }
            .to_string(),
        )]));
        let secret = Secret {
            metadata: secret_meta,
            type_: Some("Opaque".into()),
            ..Secret::default()
        };
        let account = ServiceAccount {
            metadata: ctx.meta(NAME, HUB_SERVICE),
            ..ServiceAccount::default()
        };
        let db = PersistentVolumeClaim {
            metadata: ctx.meta(NAME, DB_CLAIM),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: ctx.facts.storage_class.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(DB_SIZE.into()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        };
        let mut objects = vec![manifest(&secret)?, manifest(&account)?];
        objects.extend(rbac::objects(ctx, NAME, &rbac::JUPYTERHUB)?);
        objects.extend([
            manifest(&db)?,
            hub(ctx)?,
            service(ctx, HUB_SERVICE, HUB_SERVICE, HUB_PORT, "http")?,
            proxy(ctx)?,
            service(ctx, PROXY_API_SERVICE, PROXY, PROXY_API_PORT, "api")?,
            service(ctx, PROXY_PUBLIC_SERVICE, PROXY, 80, "http")?,
            kernels::config_map(ctx)?,
        ]);
        let mut built = Built::new(objects)
            .image(versions::JUPYTERHUB_HUB)
            .image(versions::JUPYTERHUB_PROXY)
            .client(client())
            .config_file(config_file(ctx)?);
        // Everything no other component routes is JupyterHub's, as in QHub: `/` redirects to
        // the hub, `/hub`, `/user` and `/services` are its own.
        built = built.route(
            Route::new(PATH, PROXY_PUBLIC_SERVICE, 80)
                .named(NAME)
                // `GET /hub/health` answers 200 with no body as soon as the hub serves
                // (jupyterhub/jupyterhub `jupyterhub/handlers/pages.py` `HealthCheckHandler`;
                // 5.5.0 from PyPI).
                .listed(PATH, HEALTH_PATH),
        );
        Ok(built)
    }
}

#[cfg(test)]
mod tests;
