//! A small static page at `/welcome` (nginx serving the theme's title, the domain and where
//! shared storage lives): the one page that needs no login, for a producer checking the
//! ingress and the certificate before JupyterHub answers at `/`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, ContainerPort, EmptyDirVolumeSource, PodSpec, Probe, Service,
    ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value as Json;

use super::{Built, Component, Context, KubeError, Route, manifest, selector};
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::versions;
use crate::provider::facts::SharedFilesystem;

/// The component's name.
pub const NAME: &str = "qhub-welcome";
/// The path the page is served at (the prefix is cut: nginx serves it at `/`).
pub const PATH: &str = "/welcome";

/// The welcome page.
#[derive(Debug, Clone, Copy)]
pub struct Welcome;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Component for Welcome {
    fn name(&self) -> &'static str {
        NAME
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["ingress"]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let config = ctx.config;
        let text = |key: &str, default: &str| {
            config
                .theme
                .jupyterhub
                .get(key)
                .and_then(Json::as_str)
                .unwrap_or(default)
                .to_string()
        };
        // Where home directories will live: a fact of the infrastructure (an EFS or NFS
        // address exists only once the infrastructure does), shown so that a producer can
        // check it.
        let storage = ctx.facts.shared_filesystem.or_placeholder(|fs| match fs {
            SharedFilesystem::Efs { dns_name, .. } => format!("EFS {dns_name}"),
            SharedFilesystem::Nfs { server, path } => format!("NFS {server}:{path}"),
            SharedFilesystem::InCluster => "an NFS server in the cluster".to_string(),
        });
        let page = format!(
            "<!doctype html><title>{title}</title><h1>{title}</h1><p>{welcome}</p><p>{storage}</p>\n",
            title = escape(&text("hub_title", "QHub")),
            welcome = escape(&format!("Welcome to {}.", config.domain)),
            storage = escape(&format!("Shared storage: {storage}.")),
        );
        let meta = |name: &str| ctx.meta(NAME, name);
        let page_map = ConfigMap {
            metadata: meta(NAME),
            data: Some(BTreeMap::from([("index.html".to_string(), page)])),
            ..ConfigMap::default()
        };
        let mut container = pods::container(
            "nginx",
            versions::WELCOME.reference(),
            pods::resources("10m", "16Mi", "64Mi"),
        );
        container.ports = Some(vec![ContainerPort {
            container_port: 8080,
            name: Some("http".into()),
            ..ContainerPort::default()
        }]);
        container.readiness_probe = Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("http".into()),
                ..TCPSocketAction::default()
            }),
            ..Probe::default()
        });
        container.volume_mounts = Some(vec![
            VolumeMount {
                name: "page".into(),
                mount_path: "/usr/share/nginx/html".into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]);
        let mut pod = PodSpec {
            containers: vec![container],
            security_context: Some(pods::non_root_pod(101)),
            automount_service_account_token: Some(false),
            volumes: Some(vec![
                Volume {
                    name: "page".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: NAME.into(),
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
        let deployment = super::deployment(ctx, NAME, pod, false);
        let service = Service {
            metadata: meta(NAME),
            spec: Some(ServiceSpec {
                selector: Some(selector(NAME)),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::String("http".into())),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        Ok(Built::new(vec![
            manifest(&page_map)?,
            manifest(&deployment)?,
            manifest(&service)?,
        ])
        .image(versions::WELCOME)
        .route(
            Route::new(PATH, NAME, 80)
                .strip_prefix()
                // Its page itself: a static file the web server answers 200 for.
                .listed(format!("{PATH}/"), format!("{PATH}/")),
        ))
    }
}
