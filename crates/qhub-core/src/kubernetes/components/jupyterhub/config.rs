//! The hub's configuration: `jupyterhub_config.py`, the same file for every deployment
//! (reviewable on its own, loaded by JupyterHub as it is), and `values.json` beside it, what
//! varies, rendered from the config and the cluster facts. Secrets are in neither: the .py
//! reads them from environment variables ([`SECRET_ENV`]).

use serde_json::{Map, Value as Json, json};

use super::super::{Context, KubeError, storage};
use super::{HUB_PORT, HUB_SERVICE, PROXY_API_PORT, PROXY_API_SERVICE, kernels, profiles};
use crate::config::certificate::CertificateKind;
use crate::keycloak::REALM;
use crate::kubernetes::components::ingress;
use crate::kubernetes::components::keycloak::PATH as KEYCLOAK_PATH;

/// The hub's configuration file, as JupyterHub loads it.
pub const CONFIG_PY: &str = include_str!("jupyterhub_config.py");
/// The name of the configuration file in the ConfigMap.
pub const CONFIG_PY_NAME: &str = "jupyterhub_config.py";
/// The name of the values document in the ConfigMap.
pub const VALUES_NAME: &str = "values.json";
/// Where the hub image looks for its configuration (z2jh's `images/hub/Dockerfile` `CMD`).
pub const CONFIG_DIR: &str = "/usr/local/etc/jupyterhub";
/// The hub's database directory (the image's working directory, z2jh's `sqlite-pvc` mount).
pub const DB_DIR: &str = "/srv/jupyterhub";
/// Where the hub mounts the shared filesystem's `home` directory, to create each user's home
/// directory as the user before their server's pod mounts it ([`crate::kubernetes::components::storage`]).
pub const HOMES_DIR: &str = "/srv/homes";
/// Where a user's home directory is mounted in their server.
pub const HOME_MOUNT: &str = "/home/jovyan";
/// The Keycloak client's id (contract with Keycloak's reconciler and docs/platform.md).
pub const CLIENT_ID: &str = "jupyterhub";
/// The OAuth callback path.
pub const CALLBACK_PATH: &str = "/hub/oauth_callback";
/// The token claim listing the profiles Keycloak grants (`access: keycloak`).
pub const PROFILES_CLAIM: &str = "jupyterlab_profiles";
/// The client role that makes a user a JupyterHub admin (and the group it is mapped to).
pub const ADMIN_ROLE: &str = "jupyterhub_admin";
/// The group whose members are JupyterHub admins.
pub const ADMIN_GROUP: &str = "admin";
/// The hub service Dask Gateway authenticates users through, and the Secret holding its
/// token (contract with dask-gateway, see docs/platform.md).
pub const DASK_GATEWAY_SERVICE: &str = "dask-gateway";
/// Where conda-store's environments are mounted in users' servers (read-only), and the subPath
/// of the shared claim conda-store keeps its store under: conda-store's.
pub use super::super::conda_store::{STORE_DIRECTORY as CONDA_MOUNT, SUB_PATH as CONDA_SUBPATH};
/// The Secret with the Dask Gateway hub service's token, and its key: Dask Gateway's.
pub use super::super::dask_gateway::{
    HUB_TOKEN_KEY as DASK_GATEWAY_TOKEN_KEY, HUB_TOKEN_SECRET as DASK_GATEWAY_TOKEN_SECRET,
};

/// The hub service Prometheus scrapes `/hub/metrics` as, and the Secret holding its token
/// (contract with monitoring, see docs/platform.md).
pub use super::super::monitoring::hub_token as monitoring_token;

/// The Secret with the kbatch hub service's token, and its key: kbatch's (contract with
/// kbatch, see docs/platform.md).
pub use super::super::kbatch::{
    HUB_TOKEN_KEY as KBATCH_TOKEN_KEY, HUB_TOKEN_SECRET as KBATCH_TOKEN_SECRET,
};

/// The environment variables the .py reads secrets from: (variable, Secret, key). The Dask
/// Gateway, monitoring and kbatch tokens are optional (each may not be deployed); kbatch's is
/// required while kbatch is on ([`secret_required`]).
pub const SECRET_ENV: &[(&str, &str, &str)] = &[
    ("QHUB_HUB_SECRET_SEED", super::SECRET, "seed"),
    ("CONFIGPROXY_AUTH_TOKEN", super::SECRET, "proxy-token"),
    (
        "QHUB_DASK_GATEWAY_API_TOKEN",
        DASK_GATEWAY_TOKEN_SECRET,
        DASK_GATEWAY_TOKEN_KEY,
    ),
    (
        "QHUB_MONITORING_API_TOKEN",
        monitoring_token::SECRET,
        monitoring_token::KEY,
    ),
    (
        "QHUB_KBATCH_API_TOKEN",
        KBATCH_TOKEN_SECRET,
        KBATCH_TOKEN_KEY,
    ),
];

/// Whether the hub must not start without the Secret `secret` of [`SECRET_ENV`]: its own, and
/// kbatch's while kbatch is on. A hub started before kbatch's token exists would never register
/// the service (it reads the token at start), and kbatch does not wait for the hub
/// ([`super::super::kbatch`]), so the kubelet holds the hub until the Secret is there.
pub fn secret_required(ctx: &Context<'_>, secret: &str) -> bool {
    secret == super::SECRET
        || (secret == KBATCH_TOKEN_SECRET && super::super::kbatch::enabled(ctx.config))
}
/// The variable holding the OIDC client secret.
pub const CLIENT_SECRET_ENV: &str = "QHUB_OAUTH_CLIENT_SECRET";

/// Idle servers are stopped after this many seconds (z2jh's `cull.timeout` default).
pub const CULL_TIMEOUT: u64 = 3600;
/// How often the culler looks, in seconds (z2jh's `cull.every` default).
pub const CULL_EVERY: u64 = 600;

/// The keys of `jupyterhub.overrides` that are honoured.
pub const HONOURED_OVERRIDES: &[&str] = &["hub.config", "cull.timeout", "cull.every"];

/// The user and group the servers run as: the Jupyter Docker Stacks' `jovyan` (uid 1000,
/// group `users` 100), which QHub's JupyterLab images are built on.
const USER_UID: i64 = storage::OWNER_UID;
const USER_GID: i64 = storage::OWNER_GID;

/// The platform's public base URL (`https://<domain>`).
pub fn public_url(ctx: &Context<'_>) -> String {
    let scheme = if ingress::tls::enabled(ctx.config) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", ctx.config.domain)
}

/// The overrides: (`hub.config`, culler timeout, culler interval); anything else is an error.
fn overrides(ctx: &Context<'_>) -> Result<(Map<String, Json>, u64, u64), KubeError> {
    let mut config = Map::new();
    let (mut timeout, mut every) = (CULL_TIMEOUT, CULL_EVERY);
    let Some(o) = ctx
        .config
        .jupyterhub
        .as_ref()
        .and_then(|j| j.overrides.as_ref())
    else {
        return Ok((config, timeout, every));
    };
    let unsupported = |key: &str| {
        KubeError::Invalid(format!(
            "jupyterhub.overrides.{key} is not supported yet (honoured: {})",
            HONOURED_OVERRIDES.join(", ")
        ))
    };
    for (key, value) in o {
        let Some(section) = value.as_object() else {
            return Err(unsupported(key));
        };
        for (sub, v) in section {
            match (key.as_str(), sub.as_str()) {
                ("hub", "config") => {
                    let classes = v.as_object().ok_or_else(|| {
                        KubeError::Invalid(
                            "jupyterhub.overrides.hub.config must map class names to \
                             {trait: value}"
                                .into(),
                        )
                    })?;
                    for (cls, traits) in classes {
                        if !traits.is_object() {
                            return Err(KubeError::Invalid(format!(
                                "jupyterhub.overrides.hub.config.{cls} must map trait names \
                                 to values"
                            )));
                        }
                        config.insert(cls.clone(), traits.clone());
                    }
                }
                ("cull", "timeout" | "every") => {
                    let n = v.as_u64().ok_or_else(|| {
                        KubeError::Invalid(format!(
                            "jupyterhub.overrides.cull.{sub} must be a number of seconds"
                        ))
                    })?;
                    if sub == "timeout" {
                        timeout = n;
                    } else {
                        every = n;
                    }
                }
                _ => return Err(unsupported(&format!("{key}.{sub}"))),
            }
        }
    }
    Ok((config, timeout, every))
}

/// The environment of users' servers: where Dask Gateway is (contract with dask-gateway), and
/// where kbatch is when it is on (`KBATCH_URL`, read by the `kbatch` client). kbatch gives
/// users' jobs the Dask Gateway part too.
pub fn user_environment(ctx: &Context<'_>) -> Map<String, Json> {
    let domain = &ctx.config.domain;
    let mut env = Map::new();
    env.insert(
        "DASK_GATEWAY__ADDRESS".into(),
        json!(format!("{}/gateway", public_url(ctx))),
    );
    env.insert(
        "DASK_GATEWAY__PROXY_ADDRESS".into(),
        json!(format!("gateway://{domain}:8786")),
    );
    env.insert("DASK_GATEWAY__AUTH__TYPE".into(), json!("jupyterhub"));
    env
}

/// [`user_environment`] and, when kbatch is on, `KBATCH_URL`.
fn server_environment(ctx: &Context<'_>) -> Map<String, Json> {
    let mut env = user_environment(ctx);
    if super::super::kbatch::enabled(ctx.config) {
        env.insert(
            "KBATCH_URL".into(),
            json!(super::super::kbatch::user_url(ctx.namespace())),
        );
    }
    env
}

/// `values.json`: everything in the hub's configuration that varies with the config.
pub fn values(ctx: &Context<'_>) -> Result<Json, KubeError> {
    let ns = ctx.namespace();
    let public = public_url(ctx);
    let realm = format!("{public}{KEYCLOAK_PATH}/realms/{REALM}/protocol/openid-connect");
    let (config, timeout, every) = overrides(ctx)?;
    // Hub services with an API token from another component's Secret; monitoring's only when
    // it is deployed, so that turning it on rolls the hub, which then reads the token.
    let mut services = vec![json!({"name": DASK_GATEWAY_SERVICE, "token_env": SECRET_ENV[2].0})];
    if super::super::monitoring::enabled(ctx.config) {
        services.push(
            json!({"name": monitoring_token::SERVICE, "token_env": SECRET_ENV[3].0,
            "scopes": ["read:metrics"]}),
        );
    }
    // kbatch-proxy behind the hub's proxy at /services/kbatch/: the hub routes the service's
    // prefix to its URL (JupyterHub `Service.url`).
    if super::super::kbatch::enabled(ctx.config) {
        services.push(
            json!({"name": super::super::kbatch::SERVICE, "token_env": SECRET_ENV[4].0,
            "url": super::super::kbatch::service_url(ns)}),
        );
    }
    let allowed: Vec<&str> = crate::keycloak::desired::groups(ctx.config)
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    let node_selector = ctx
        .facts
        .node_selector
        .for_group(profiles::USER_GROUP)
        .unwrap_or_default();
    // conda-store's environments offered as kernels ([`kernels`]).
    let kernels_mounts = kernels::volume_mounts();
    Ok(json!({
        "hub": {
            "bind_url": format!("http://:{HUB_PORT}"),
            "connect_url": format!("http://{HUB_SERVICE}.{ns}.svc:{HUB_PORT}"),
            "public_url": format!("{public}/"),
            "db_url": format!("sqlite:///{DB_DIR}/jupyterhub.sqlite"),
            "proxy_api_url": format!("http://{PROXY_API_SERVICE}.{ns}.svc:{PROXY_API_PORT}"),
        },
        "authenticator": {
            "login_service": "Keycloak",
            "client_id": CLIENT_ID,
            "oauth_callback_url": format!("{public}{CALLBACK_PATH}"),
            "authorize_url": format!("{realm}/auth"),
            "token_url": format!("{realm}/token"),
            "userdata_url": format!("{realm}/userinfo"),
            "scope": ["openid", "profile", "email"],
            "username_claim": "preferred_username",
            // Traefik's self-signed certificate is trusted by nobody, the hub included.
            "validate_server_cert": ctx.config.certificate.kind != CertificateKind::SelfSigned,
            "allowed_groups": allowed,
            "admin_groups": [ADMIN_GROUP],
            "admin_roles": [ADMIN_ROLE],
        },
        "keycloak_profiles_claim": PROFILES_CLAIM,
        "spawner": {
            "namespace": ns,
            "image": ctx.config.default_images.jupyterlab,
            "node_selector": node_selector,
            "uid": USER_UID,
            "gid": USER_GID,
            "fs_gid": USER_GID,
            // The platform namespace enforces Pod Security `restricted` (components::namespace):
            // what it asks of a pod beyond KubeSpawner's defaults.
            "pod_security_context": {
                "runAsNonRoot": true,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "container_security_context": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "runAsNonRoot": true,
            },
            "environment": server_environment(ctx),
            "volumes": [{
                "name": "shared",
                "persistentVolumeClaim": {"claimName": storage::CLAIM},
            }, kernels::volume()],
            // KubeSpawner expands `{escaped_username}` in volume mounts: escapism's escape
            // (kubespawner 7.0 `slugs.escape_slug`), the directory names QHub's homes have
            // (its KubeSpawner's `{username}`) and the one jupyterhub-ssh's sftp server serves
            // (`jupyterhub_ssh::sftp`). 7.0's `{username}` is the new "safe" slug, which differs
            // for any name with a character outside [a-z0-9-] (an e-mail address).
            "volume_mounts": [
                {"name": "shared", "mountPath": HOME_MOUNT,
                 "subPath": format!("{}/{{escaped_username}}", storage::HOME_DIR)},
                {"name": "shared", "mountPath": "/shared", "subPath": storage::SHARED_DIR},
                {"name": "shared", "mountPath": CONDA_MOUNT, "subPath": CONDA_SUBPATH,
                 "readOnly": true},
                kernels_mounts[0],
                kernels_mounts[1],
            ],
            "default_url": "/lab",
            // A server on a node the autoscaler must first add: minutes (REFERENCE.md §4).
            "start_timeout": 600,
            "http_timeout": 120,
        },
        "profiles": profiles::entries(ctx)?,
        "homes": {
            "root": HOMES_DIR,
            "volume": "shared",
            "mount_path": HOME_MOUNT,
            "prefix": format!("{}/", storage::HOME_DIR),
        },
        "culler": {"timeout": timeout, "every": every},
        "services": services,
        "template_vars": ctx.config.theme.jupyterhub,
        "config": config,
    }))
}
