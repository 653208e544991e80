//! Grafana at [`PATH`]: login through Keycloak (client [`CLIENT_ID`]), Prometheus and Loki
//! provisioned as its data sources under fixed uids ([`PROMETHEUS_UID`],
//! [`super::loki::LOKI_UID`]), and the dashboards of
//! `dashboards/*.json` provisioned from files in the folder "QHub".
//!
//! Settings are Grafana's documented ones (grafana/grafana `conf/defaults.ini`; docs
//! "Configure generic OAuth authentication", "Provision Grafana"): `[server] root_url` and
//! `serve_from_sub_path` for the prefix (Traefik passes `/monitoring` on, Grafana serves under
//! it, so its health is `/monitoring/api/health`); `[auth.generic_oauth]` against the realm,
//! the browser sent to Keycloak's public address and the code exchanged in the cluster, as
//! conda-store does; the role from the token's client roles through `role_attribute_path`, as
//! QHub's successor nebari maps them (nebari-dev/nebari
//! `src/_nebari/stages/kubernetes_services/template/modules/kubernetes/services/monitoring/main.tf`:
//! client `grafana`, roles `grafana_admin` ← admin, `grafana_developer` ← developer,
//! `grafana_viewer` ← analyst, and the same expression, whose last alternative we write as the
//! plain `'Viewer'` nebari meant). The client secret reaches Grafana as
//! `GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET` (Grafana reads any setting from
//! `GF_<SECTION>_<KEY>`). No password login and no anonymous access.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, PodSpec,
    Probe, SecretKeySelector, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value as Json, json};

use super::super::{
    CLIENT_SECRET_KEY, ConfigFile, Context, KubeError, Route, client_secret_name, keycloak,
    manifest, selector,
};
use super::{NAME, prometheus};
use crate::keycloak::{PlatformClient, REALM};
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::versions;

/// Grafana's Deployment and Service.
pub const GRAFANA: &str = "grafana";
/// The path it is served at.
pub const PATH: &str = "/monitoring";
/// Its health (no login needed): Grafana's `/api/health` under the prefix.
pub const HEALTH_PATH: &str = "/monitoring/api/health";
/// The OAuth callback (Grafana's `/login/generic_oauth` under the prefix).
pub const CALLBACK_PATH: &str = "/monitoring/login/generic_oauth";
/// The Keycloak client id.
pub const CLIENT_ID: &str = "grafana";
/// The uid of the Prometheus data source, which every dashboard panel names.
pub const PROMETHEUS_UID: &str = "prometheus";
/// The ConfigMap of `grafana.ini` and the provisioning files.
pub const CONFIG_MAP: &str = "grafana-config";
/// The ConfigMap of the dashboards.
pub const DASHBOARDS_MAP: &str = "grafana-dashboards";
/// Grafana's port.
pub const PORT: i32 = 3000;
/// The dashboards, provisioned from files: (file name, JSON).
pub const DASHBOARDS: &[(&str, &str)] = &[
    ("cluster.json", include_str!("dashboards/cluster.json")),
    (
        "jupyterhub.json",
        include_str!("dashboards/jupyterhub.json"),
    ),
    (
        "dask_gateway.json",
        include_str!("dashboards/dask_gateway.json"),
    ),
    ("logs.json", include_str!("dashboards/logs.json")),
];
const CONFIG_DIR: &str = "/etc/grafana";
const DASHBOARDS_DIR: &str = "/etc/grafana-dashboards";
/// The user of Grafana's image (`grafana`, uid 472).
const UID: i64 = 472;
/// The Grafana roles of the token's client roles, first match wins.
pub const ROLE_ATTRIBUTE_PATH: &str = "contains(roles[*], 'grafana_admin') && 'Admin' || contains(roles[*], 'grafana_developer') && 'Editor' || 'Viewer'";

/// The login client: its roles mapped from the platform's groups.
pub fn client() -> PlatformClient {
    PlatformClient::new(CLIENT_ID, "Grafana", PATH, CALLBACK_PATH)
        .role("grafana_admin", &["admin"])
        .role("grafana_developer", &["developer"])
        .role("grafana_viewer", &["analyst"])
}

fn public_url(ctx: &Context<'_>) -> String {
    let scheme = if super::super::ingress::tls::enabled(ctx.config) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", ctx.config.domain)
}

/// `grafana.ini`.
pub fn ini(ctx: &Context<'_>) -> String {
    let public = public_url(ctx);
    let internal = format!(
        "http://{}.{}.svc:{}{}/realms/{REALM}/protocol/openid-connect",
        keycloak::NAME,
        ctx.namespace(),
        keycloak::HTTP_PORT,
        keycloak::PATH
    );
    format!(
        "# Written by qhub: edits are replaced at the next deploy.\n\
         [server]\n\
         http_port = {PORT}\n\
         root_url = {public}{PATH}/\n\
         serve_from_sub_path = true\n\
         \n\
         [log]\n\
         mode = console\n\
         \n\
         [paths]\n\
         provisioning = {CONFIG_DIR}/provisioning\n\
         \n\
         [analytics]\n\
         reporting_enabled = false\n\
         check_for_updates = false\n\
         check_for_plugin_updates = false\n\
         \n\
         [users]\n\
         allow_sign_up = false\n\
         \n\
         [auth]\n\
         disable_login_form = true\n\
         \n\
         [auth.basic]\n\
         enabled = false\n\
         \n\
         [auth.anonymous]\n\
         enabled = false\n\
         \n\
         [auth.generic_oauth]\n\
         enabled = true\n\
         name = Keycloak\n\
         auto_login = true\n\
         allow_sign_up = true\n\
         client_id = {CLIENT_ID}\n\
         scopes = openid profile email\n\
         auth_url = {public}{}/realms/{REALM}/protocol/openid-connect/auth\n\
         token_url = {internal}/token\n\
         api_url = {internal}/userinfo\n\
         login_attribute_path = preferred_username\n\
         role_attribute_path = {ROLE_ATTRIBUTE_PATH}\n\
         role_attribute_strict = false\n\
         allow_assign_grafana_admin = false\n",
        keycloak::PATH
    )
}

/// The data sources, under fixed uids: Prometheus (the default) and Loki.
pub fn datasources(ctx: &Context<'_>) -> Json {
    json!({
        "apiVersion": 1,
        "datasources": [{
            "name": "Prometheus",
            "type": "prometheus",
            "uid": PROMETHEUS_UID,
            "access": "proxy",
            "url": format!("http://{}.{}.svc:{}", prometheus::SERVER, ctx.namespace(), prometheus::PORT),
            "isDefault": true,
            "editable": false,
        }, {
            "name": "Loki",
            "type": "loki",
            "uid": super::loki::LOKI_UID,
            "access": "proxy",
            "url": format!("http://{}.{}.svc:{}", super::loki::LOKI, ctx.namespace(), super::loki::PORT),
            "editable": false,
        }],
    })
}

/// The dashboard provider reading [`DASHBOARDS`] from their mounted directory.
pub fn dashboard_provider() -> Json {
    json!({
        "apiVersion": 1,
        "providers": [{
            "name": "qhub",
            "folder": "QHub",
            "type": "file",
            "disableDeletion": true,
            "allowUiUpdates": false,
            "options": {"path": DASHBOARDS_DIR},
        }],
    })
}

fn pretty(doc: &Json) -> String {
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_else(|_| doc.to_string());
    text.push('\n');
    text
}

/// Its config files: `grafana.ini` with the provisioning files, and the dashboards.
pub fn config_files(ctx: &Context<'_>) -> [ConfigFile; 2] {
    let mut config = ConfigFile::new(CONFIG_MAP, "grafana.ini", ini(ctx));
    config
        .files
        .insert("datasources.yaml".into(), pretty(&datasources(ctx)));
    config
        .files
        .insert("dashboards.yaml".into(), pretty(&dashboard_provider()));
    let dashboards = ConfigFile {
        name: DASHBOARDS_MAP.into(),
        files: DASHBOARDS
            .iter()
            .map(|(name, text)| ((*name).to_string(), (*text).to_string()))
            .collect(),
    };
    [config, dashboards]
}

fn item(key: &str, path: &str) -> KeyToPath {
    KeyToPath {
        key: key.into(),
        path: path.into(),
        ..KeyToPath::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// Its Deployment and Service. Its database (users, preferences) is SQLite on an emptyDir:
/// everything that matters is provisioned from files or comes from Keycloak at login, and a
/// dashboard saved in the UI is lost at a restart (docs/platform.md: add dashboards as files).
pub fn objects(ctx: &Context<'_>) -> Result<Vec<Json>, KubeError> {
    let mut container = pods::container(
        GRAFANA,
        versions::GRAFANA.reference(),
        pods::resources("50m", "128Mi", "512Mi"),
    );
    container.env = Some(vec![
        EnvVar {
            name: "GF_PATHS_CONFIG".into(),
            value: Some(format!("{CONFIG_DIR}/grafana.ini")),
            ..EnvVar::default()
        },
        EnvVar {
            name: "GF_SERVER_ROOT_URL".into(),
            value: Some(format!("{}{PATH}/", public_url(ctx))),
            ..EnvVar::default()
        },
        EnvVar {
            name: "GF_SERVER_SERVE_FROM_SUB_PATH".into(),
            value: Some("true".into()),
            ..EnvVar::default()
        },
        EnvVar {
            name: "GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: client_secret_name(CLIENT_ID),
                    key: CLIENT_SECRET_KEY.into(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
    ]);
    container.ports = Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: PORT,
        ..ContainerPort::default()
    }]);
    container.readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some(HEALTH_PATH.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    });
    container.volume_mounts = Some(vec![
        mount("config", CONFIG_DIR, true),
        mount("dashboards", DASHBOARDS_DIR, true),
        mount("data", "/var/lib/grafana", false),
        mount("tmp", "/tmp", false),
    ]);
    let mut pod = PodSpec {
        containers: vec![container],
        security_context: Some(pods::non_root_pod(UID)),
        automount_service_account_token: Some(false),
        volumes: Some(vec![
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: CONFIG_MAP.into(),
                    items: Some(vec![
                        item("grafana.ini", "grafana.ini"),
                        item(
                            "datasources.yaml",
                            "provisioning/datasources/datasources.yaml",
                        ),
                        item("dashboards.yaml", "provisioning/dashboards/dashboards.yaml"),
                    ]),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            pods::config_map_volume("dashboards", DASHBOARDS_MAP),
            pods::empty_dir_volume("data"),
            pods::empty_dir_volume("tmp"),
        ]),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    let mut deployment = super::super::deployment(ctx, GRAFANA, pod, false);
    deployment.metadata = ctx.meta(NAME, GRAFANA);
    let service = Service {
        metadata: ctx.meta(NAME, GRAFANA),
        spec: Some(ServiceSpec {
            selector: Some(selector(GRAFANA)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: PORT,
                target_port: Some(IntOrString::String("http".into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    Ok(vec![manifest(&deployment)?, manifest(&service)?])
}

/// Its route: `/monitoring`, prefix kept (Grafana serves from the sub-path), listed.
pub fn route() -> Route {
    // `GET /api/health` answers 200 with `{"commit": ..., "database": "ok", "version": ...}`
    // (Grafana's HTTP API docs, "Health API", grafana/grafana `docs/sources/developers/http_api/
    // other.md`; `database` is "ok" only while `pkg/api/health.go` `databaseHealthy` holds).
    Route::new(PATH, GRAFANA, PORT).listed(
        format!("{PATH}/"),
        crate::kubernetes::health::Check::http(HEALTH_PATH).json_equals("database", "ok"),
    )
}
