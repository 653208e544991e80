//! conda-store (conda-store-server 2025.2.2): builds the config's `environments` and users'
//! own environments onto the platform's shared volume, served at `/conda-store`, login through
//! Keycloak.
//!
//! What runs, as upstream's Kubernetes example lays it out (conda-incubator/conda-store
//! `examples/kubernetes/` at 2025.2.2: server, worker, PostgreSQL, Redis, MinIO), with the
//! artifacts on the shared volume instead of MinIO:
//! - `conda-store-server` (web UI and REST API) and `conda-store-worker` (Celery; builds), one
//!   image, both reading the ConfigMap `conda-store-config` (`conda_store_config.py` and
//!   `qhub.json`, [`config`]): an edit rolls both;
//! - `conda-store-postgres`, its own PostgreSQL (conda-store's state; the Keycloak database is
//!   not shared: its image creates one database on first start, and a second would need a
//!   migration job for every existing volume);
//! - `conda-store-redis`: Celery's broker and results, and the lock of channel updates. The
//!   database broker conda-store falls back to without Redis cannot clean up builds stuck in
//!   BUILDING after a worker died (conda-store `docusaurus-docs/conda-store/references/faq.md`);
//!   Redis keeps no data across restarts here (queued tasks are re-sent by the worker's start
//!   and its one-minute watch);
//! - the store on the shared claim ([`storage::CLAIM`], subPath [`SUB_PATH`]) at
//!   [`STORE_DIRECTORY`], read-write here and read-only in JupyterLab and Dask pods: an
//!   environment `NAME` of conda-store namespace `NS` is `/home/conda/NS/envs/NAME`
//!   (conda-store's default `environment_directory`, `{store_directory}/{namespace}/envs/{name}`);
//! - the config's `environments` are not files here: the engine registers each one in the
//!   namespace `conda_store.default_namespace` through conda-store's REST API once the server
//!   runs, and waits for its build (`qhub_core::engine::conda_store`). QHub 0.4.5 and nebari
//!   mounted them as spec files the worker re-registered every minute
//!   (`CondaStoreWorker.watch_paths`); that second writer is not configured, so that a deploy
//!   knows when an environment is built, or that its build failed.

pub mod config;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PersistentVolumeClaimVolumeSource, PodSpec, Probe, Secret, SecretKeySelector,
    Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value as Json;

use super::{
    Built, CLIENT_SECRET_KEY, Component, ConfigFile, Context, KubeError, Route, client_secret_name,
    keycloak, manifest, selector, storage,
};
use crate::keycloak::PlatformClient;
use crate::kubernetes::health::Check;
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::recipes::{self, Recipe};
use crate::kubernetes::versions::{self, Image};

/// The component's name.
pub const NAME: &str = "conda-store";
/// The server's Deployment and Service.
pub const SERVER: &str = "conda-store-server";
/// The worker's Deployment.
pub const WORKER: &str = "conda-store-worker";
/// The database's StatefulSet and Service.
pub const DATABASE: &str = "conda-store-postgres";
/// Redis's Deployment and Service.
pub const REDIS: &str = "conda-store-redis";
/// The generated Secret: database and Redis passwords, the API token signing secret.
pub const SECRET: &str = "conda-store";
/// The ConfigMap of [`config::PYTHON_FILE`] and [`config::SETTINGS_FILE`].
pub const CONFIG: &str = "conda-store-config";
/// The Keycloak client id (contract with JupyterHub and Dask Gateway, see docs/platform.md).
pub const CLIENT_ID: &str = "conda_store";
/// The path conda-store is served at (`CondaStoreServer.url_prefix`).
pub const PATH: &str = "/conda-store";
/// The OAuth callback: `GenericOAuthAuthentication`'s route `/oauth_callback/` under the
/// prefix (conda_store_server `server/auth.py`, `routes`), with its slash, so no redirect sits
/// between Keycloak and the route.
pub const CALLBACK_PATH: &str = "/conda-store/oauth_callback/";
/// The path that answers 200 when the server is up: the REST API's status
/// (`_internal/server/views/api.py`, `api_status`, no login needed).
pub const HEALTH_PATH: &str = "/conda-store/api/v1/";
/// The server's port (QHub 0.4.5's).
pub const PORT: i32 = 5000;
/// Where the store is mounted in conda-store's pods, and read-only in users' and Dask's
/// (contract with JupyterHub and Dask Gateway, see docs/platform.md).
pub const STORE_DIRECTORY: &str = "/home/conda";
/// The conda-store namespace users' environments go to unless they name one (conda-store's
/// `CondaStore.default_namespace`, set in `conda_store_config.py`).
pub const USERS_DEFAULT_NAMESPACE: &str = "global";
/// The store's directory on the shared claim.
pub const SUB_PATH: &str = super::storage::CONDA_STORE_DIR;
const CONFIG_DIRECTORY: &str = "/etc/conda-store";
/// The user the image runs as (conda-store-server `Dockerfile`, `user_no=1000`).
const UID: i64 = 1000;
/// The official Redis image's `redis` user.
const REDIS_UID: i64 = 999;
const DATABASE_NAME: &str = "conda_store";
const DATABASE_USER: &str = "conda_store";
/// The database volume: conda-store keeps the package index of its channels in it
/// (`task_update_conda_channels`), several GiB for conda-forge.
const DATABASE_SIZE: &str = "20Gi";

/// The database image: Keycloak's pinned Postgres, so nothing new is pulled.
pub const POSTGRES_IMAGE: Image = Image {
    component: NAME,
    ..versions::POSTGRES
};

/// conda-store.
#[derive(Debug, Clone, Copy)]
pub struct CondaStore;

/// A `'static` copy of `text`, made once per distinct text: an image tag from the config
/// (`conda_store.image_tag`) in the pinned-image table, whose tags are `'static`.
fn interned(text: &str) -> &'static str {
    static SEEN: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = seen.get(text) {
        return s;
    }
    let s: &'static str = Box::leak(text.to_string().into_boxed_str());
    seen.insert(s);
    s
}

/// The server and worker image: the pinned one, or its tag replaced by `conda_store.image_tag`.
pub fn image(ctx: &Context<'_>) -> Image {
    match ctx
        .config
        .conda_store
        .as_ref()
        .and_then(|c| c.image_tag.as_deref())
        .filter(|t| !t.trim().is_empty())
    {
        Some(tag) => Image {
            tag: interned(tag.trim()),
            digest: None,
            ..versions::CONDA_STORE
        },
        None => versions::CONDA_STORE,
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn mount(name: &str, path: &str, sub_path: Option<&str>, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        sub_path: sub_path.map(str::to_string),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn config_map_volume(name: &str, config_map: &str) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.into(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn service(ctx: &Context<'_>, name: &str, port: i32) -> Result<Json, KubeError> {
    manifest(&Service {
        metadata: ctx.meta(name, name),
        spec: Some(ServiceSpec {
            selector: Some(selector(name)),
            ports: Some(vec![ServicePort {
                name: Some("main".into()),
                port,
                target_port: Some(IntOrString::String("main".into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

fn port(port: i32) -> Option<Vec<ContainerPort>> {
    Some(vec![ContainerPort {
        name: Some("main".into()),
        container_port: port,
        ..ContainerPort::default()
    }])
}

/// Init containers that wait until the database and Redis answer: conda-store exits when
/// either is missing at start (`CondaStore.redis_url` pings Redis when set), and a crash loop
/// would fail the deploy before the database's first start is over.
fn wait_for_services() -> Vec<Container> {
    let mut database = pods::container(
        "wait-for-database",
        POSTGRES_IMAGE.reference(),
        pods::resources("10m", "16Mi", "64Mi"),
    );
    database.command = Some(vec![
        "sh".into(),
        "-c".into(),
        format!("until pg_isready -q -h {DATABASE} -p 5432; do sleep 2; done"),
    ]);
    let mut redis = pods::container(
        "wait-for-redis",
        versions::CONDA_STORE_REDIS.reference(),
        pods::resources("10m", "16Mi", "64Mi"),
    );
    // redis-cli reads the password from REDISCLI_AUTH.
    redis.command = Some(vec![
        "sh".into(),
        "-c".into(),
        format!("until [ \"$(redis-cli -h {REDIS} ping)\" = PONG ]; do sleep 2; done"),
    ]);
    redis.env = Some(vec![secret_env("REDISCLI_AUTH", SECRET, "redis-password")]);
    vec![database, redis]
}

/// The server or worker pod: `command` (`conda-store-server` or `conda-store-worker`) with
/// the config, the store and the secrets it needs.
fn conda_store_pod(ctx: &Context<'_>, image: &Image, server: bool) -> PodSpec {
    let (name, resources) = if server {
        (SERVER, pods::resources("250m", "1Gi", "2Gi"))
    } else {
        // Solves and builds: QHub's later releases (nebari) give the worker 1 CPU and 4 GiB,
        // limited at 6 GiB (`CondaStoreWorker.resources`).
        (WORKER, pods::resources("1", "4Gi", "6Gi"))
    };
    let mut container = pods::container(name, image.reference(), resources);
    // conda-store writes beside its image's files (its data directory, conda's caches, /tmp).
    container.security_context = Some(pods::restricted(false));
    container.args = Some(vec![
        name.into(),
        "--config".into(),
        format!("{CONFIG_DIRECTORY}/{}", config::PYTHON_FILE),
    ]);
    let mut env = vec![
        secret_env(
            "QHUB_CONDA_STORE_POSTGRES_PASSWORD",
            SECRET,
            "postgres-password",
        ),
        secret_env("QHUB_CONDA_STORE_REDIS_PASSWORD", SECRET, "redis-password"),
    ];
    let mounts = vec![
        mount("config", CONFIG_DIRECTORY, None, true),
        mount("store", STORE_DIRECTORY, Some(SUB_PATH), false),
    ];
    let volumes = vec![
        config_map_volume("config", CONFIG),
        Volume {
            name: "store".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: storage::CLAIM.into(),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    if server {
        env.push(secret_env(
            "QHUB_CONDA_STORE_CLIENT_SECRET",
            &client_secret_name(CLIENT_ID),
            CLIENT_SECRET_KEY,
        ));
        env.push(secret_env(
            "QHUB_CONDA_STORE_TOKEN_SECRET",
            SECRET,
            "token-secret",
        ));
        container.ports = port(PORT);
        container.readiness_probe = Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some(HEALTH_PATH.into()),
                port: IntOrString::String("main".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            ..Probe::default()
        });
    }
    container.env = Some(env);
    container.volume_mounts = Some(mounts);
    let mut pod = PodSpec {
        init_containers: Some(wait_for_services()),
        containers: vec![container],
        security_context: Some(pods::non_root_pod(UID)),
        automount_service_account_token: Some(false),
        volumes: Some(volumes),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    pod
}

fn database(ctx: &Context<'_>) -> Result<Vec<Json>, KubeError> {
    let set = super::postgres::Postgres {
        name: DATABASE,
        image: &POSTGRES_IMAGE,
        secret: SECRET,
        keys: [
            "postgres-username",
            "postgres-password",
            "postgres-database",
        ],
        user: DATABASE_USER,
        database: DATABASE_NAME,
        size: DATABASE_SIZE,
        port_name: "main",
    }
    .stateful_set(ctx);
    Ok(vec![manifest(&set)?, service(ctx, DATABASE, 5432)?])
}

fn redis(ctx: &Context<'_>) -> Result<Vec<Json>, KubeError> {
    let mut container = pods::container(
        "redis",
        versions::CONDA_STORE_REDIS.reference(),
        pods::resources("50m", "64Mi", "512Mi"),
    );
    container.command = Some(vec![
        "sh".into(),
        "-c".into(),
        "exec redis-server --requirepass \"$REDIS_PASSWORD\" --save '' --appendonly no".into(),
    ]);
    container.env = Some(vec![secret_env("REDIS_PASSWORD", SECRET, "redis-password")]);
    container.ports = port(6379);
    container.readiness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("main".into()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(5),
        ..Probe::default()
    });
    container.volume_mounts = Some(vec![mount("data", "/data", None, false)]);
    let mut pod = PodSpec {
        containers: vec![container],
        security_context: Some(pods::non_root_pod(REDIS_UID)),
        automount_service_account_token: Some(false),
        volumes: Some(vec![Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    Ok(vec![
        manifest(&super::deployment(ctx, REDIS, pod, false))?,
        service(ctx, REDIS, 6379)?,
    ])
}

fn generated_secret(ctx: &Context<'_>) -> Result<Json, KubeError> {
    let mut meta = ctx.meta(NAME, SECRET);
    let recipe = Recipe::Passwords {
        keys: vec![
            "postgres-password".into(),
            "redis-password".into(),
            "token-secret".into(),
        ],
        fixed: BTreeMap::from([
            ("postgres-username".into(), DATABASE_USER.into()),
            ("postgres-database".into(), DATABASE_NAME.into()),
        ]),
    };
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

/// The config file (`conda_store_config.py` and `qhub.json`) for `ctx`.
pub fn config_file(ctx: &Context<'_>) -> ConfigFile {
    let layout = config::Layout {
        namespace: ctx.namespace(),
        url_prefix: PATH,
        port: PORT,
        store_directory: STORE_DIRECTORY,
        client_id: CLIENT_ID,
        callback_path: CALLBACK_PATH,
        database: (DATABASE, 5432, DATABASE_NAME, DATABASE_USER),
        redis: (REDIS, 6379),
        keycloak_internal: format!(
            "http://{}.{}.svc:{}{}",
            keycloak::NAME,
            ctx.namespace(),
            keycloak::HTTP_PORT,
            keycloak::PATH
        ),
    };
    ConfigFile {
        name: CONFIG.into(),
        files: BTreeMap::from([
            (config::PYTHON_FILE.to_string(), config::PYTHON.to_string()),
            (
                config::SETTINGS_FILE.to_string(),
                config::settings(ctx.config, &layout),
            ),
        ]),
    }
}

impl Component for CondaStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["ingress", "keycloak", storage::NAME]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let image = image(ctx);
        let server = super::deployment(ctx, SERVER, conda_store_pod(ctx, &image, true), false);
        let worker = super::deployment(ctx, WORKER, conda_store_pod(ctx, &image, false), false);
        let mut objects = vec![generated_secret(ctx)?];
        objects.extend(database(ctx)?);
        objects.extend(redis(ctx)?);
        objects.push(manifest(&server)?);
        objects.push(service(ctx, SERVER, PORT)?);
        objects.push(manifest(&worker)?);
        Ok(Built::new(objects)
            .images([image, POSTGRES_IMAGE, versions::CONDA_STORE_REDIS])
            .config_file(config_file(ctx))
            // The first start pulls a large image (conda and its solver) and migrates the
            // database.
            .ready_within(Duration::from_secs(180))
            // `GET /api/v1/` answers 200 with `{"status": "ok", "data": {"version": ...}}`
            // (conda-incubator/conda-store `conda-store-server/conda_store_server/_internal/
            // server/views/api.py` `api_status`; 2025.2.2 from PyPI).
            .route(Route::new(PATH, SERVER, PORT).listed(
                format!("{PATH}/"),
                Check::http(HEALTH_PATH).json_equals("status", "ok"),
            ))
            .client(
                PlatformClient::new(CLIENT_ID, "conda-store", PATH, CALLBACK_PATH)
                    .role("conda_store_admin", &["admin"])
                    .role("conda_store_developer", &["developer", "analyst"])
                    .role("conda_store_viewer", &[]),
            ))
    }
}

#[cfg(test)]
mod tests;
