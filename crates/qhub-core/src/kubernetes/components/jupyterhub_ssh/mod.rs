//! SSH and SFTP into users' servers: jupyterhub-ssh (github.com/yuvipanda/jupyterhub-ssh), as
//! QHub 0.4.5 deployed it beside JupyterHub
//! (`qhub/template/stages/07-kubernetes-services/modules/kubernetes/services/jupyterhub-ssh/`,
//! nebari-dev/nebari tag v0.4.5) and as the project's Helm chart wires it (its latest published
//! release, `0.0.1-0.dev.git.149.he5107a4`, `helm-chart/jupyterhub-ssh/templates/`).
//!
//! - **ssh** ([`SSH`], this file): the `jupyterhub_ssh` server (asyncssh) on port 8022. A user
//!   logs in as their JupyterHub name with a JupyterHub API token as the password; the server
//!   starts their JupyterLab server through the hub's API if it is not running and opens a
//!   terminal in it (terminado over the proxy). Its settings are the chart's `values.yaml`
//!   (`hubUrl` and `ssh.config`), which the image's own `jupyterhub_ssh_config.py` reads from
//!   `/etc/jupyterhub-ssh/config/values.yaml` (`helm-chart/images/jupyterhub-ssh/`): a
//!   ConfigMap here, so an edit rolls the server. The host key is a Secret qhub generates once
//!   and keeps ([`HOST_KEY_SECRET`], [`recipes::Recipe::SshHostKey`]).
//! - **sftp** ([`sftp`]): OpenSSH's sshd serving each user's home directory on the shared
//!   filesystem, in the privileged namespace (it chroots and bind-mounts as root).
//!
//! Both are reached through the one load balancer: an IngressRouteTCP each on Traefik's
//! [`ingress::SSH`] (8022) and [`ingress::SFTP`] (8023) entry points, matching every
//! connection (`HostSNI(\`*\`)`, plain TCP), as QHub's `main.tf` did. Neither talks to the
//! Kubernetes API (the chart sets `automountServiceAccountToken: false`): no RBAC.
//!
//! Deployed whenever JupyterHub is (QHub always deployed it).

pub mod sftp;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, PodSpec, Probe, Secret, SecretVolumeSource, Service, ServicePort, ServiceSpec,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value as Json, json};

use super::{Built, Component, ConfigFile, Context, KubeError, ingress, jupyterhub, manifest};
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::{recipes, versions};

/// The component's name.
pub const NAME: &str = "jupyterhub-ssh";
/// The ssh server's Deployment and Service.
pub const SSH: &str = "jupyterhub-ssh";
/// The port the ssh server listens on and its Service exposes (upstream's `JupyterHubSSH.port`
/// default and QHub's Service port).
pub const SSH_PORT: i32 = 8022;
/// The load balancer's entry point for ssh (port 8022): what a TCP banner check dials.
pub const SSH_ENTRY_POINT: ingress::EntryPoint = ingress::SSH;
/// The load balancer's entry point for sftp (port 8023): what a TCP banner check dials.
pub const SFTP_ENTRY_POINT: ingress::EntryPoint = ingress::SFTP;
/// The ConfigMap of the ssh server's settings (`values.yaml`).
pub const CONFIG_MAP: &str = "jupyterhub-ssh-config";
/// The settings file the image's `jupyterhub_ssh_config.py` reads.
pub const VALUES_FILE: &str = "values.yaml";
/// Where the image's `jupyterhub_ssh_config.py` reads [`VALUES_FILE`] from.
pub const CONFIG_DIR: &str = "/etc/jupyterhub-ssh/config";
/// The generated Secret holding the ssh server's host key.
pub const HOST_KEY_SECRET: &str = "jupyterhub-ssh-host-key";
/// The key of the host key in the generated Secrets (the chart's name for it).
pub const HOST_KEY: &str = "hostKey";
/// Where the ssh server's host key Secret is mounted (QHub's path).
pub const SECRETS_DIR: &str = "/etc/jupyterhub-ssh/secrets";
/// How long the ssh server waits for a user's server to start, in seconds: as long as the hub
/// does (`jupyterhub::config`'s `start_timeout`, minutes when the autoscaler must add a node);
/// upstream's 30 s default would drop the connection of anyone whose server is not running.
pub const START_TIMEOUT: u64 = 600;
/// The user the ssh image runs as (its Dockerfile: `jovyan`, uid 1000).
const SSH_UID: i64 = 1000;

/// jupyterhub-ssh: the ssh and sftp servers.
#[derive(Debug, Clone, Copy)]
pub struct JupyterHubSsh;

impl Component for JupyterHubSsh {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Whenever JupyterHub is deployed.
    fn enabled(&self, ctx: &Context<'_>) -> bool {
        jupyterhub::JupyterHub.enabled(ctx)
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["ingress", super::storage::NAME, jupyterhub::NAME]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let file = config_file(ctx)?;
        let mut out = vec![
            host_key_secret(ctx.meta(NAME, HOST_KEY_SECRET))?,
            ssh_deployment(ctx, &file.name)?,
            service(ctx, SSH, SSH_PORT, "ssh", ctx.namespace())?,
            ingress::tcp_route(ctx, NAME, SSH_ENTRY_POINT, SSH, SSH_PORT)?,
        ];
        out.extend(sftp::objects(ctx)?);
        Ok(Built::new(out)
            // Checked through the load balancer: the server's SSH banner on 8022.
            .listed(super::Listing::tcp(crate::kubernetes::health::ssh_banner()))
            .image(versions::JUPYTERHUB_SSH)
            .image(versions::JUPYTERHUB_SFTP)
            .config_file(file))
    }
}

/// The URL both servers reach JupyterHub at: the proxy's public Service inside the cluster,
/// which serves the hub's API (`/hub/api`) and users' servers (`/user/<name>`), the two things
/// `JupyterHubSSH.hub_url` must reach (upstream's help text names `http://proxy-public`;
/// QHub's `internal_jupyterhub_url` was `http://proxy-public.<namespace>:80`).
pub fn hub_url(ctx: &Context<'_>) -> String {
    format!(
        "http://{}.{}.svc:80",
        jupyterhub::PROXY_PUBLIC_SERVICE,
        ctx.namespace()
    )
}

/// The ssh server's settings, in the shape of the chart's `values.yaml`: `hubUrl`, and
/// `ssh.config`, which the image's config file applies class by class
/// (`c[app].update(cfg)`). Written as JSON, which YAML parsers read as it is.
pub fn values(ctx: &Context<'_>) -> Json {
    json!({
        "hubUrl": hub_url(ctx),
        "ssh": {"config": {"JupyterHubSSH": {
            "port": SSH_PORT,
            "host_key_path": format!("{SECRETS_DIR}/{HOST_KEY}"),
            "start_timeout": START_TIMEOUT,
            "debug": false,
        }}},
    })
}

/// The ConfigMap [`CONFIG_MAP`] holding [`VALUES_FILE`].
pub fn config_file(ctx: &Context<'_>) -> Result<ConfigFile, KubeError> {
    let text = serde_json::to_string_pretty(&values(ctx))
        .map_err(|e| KubeError::Invalid(format!("jupyterhub-ssh's values: {e}")))?;
    Ok(ConfigFile::new(
        CONFIG_MAP,
        VALUES_FILE,
        format!("{text}\n"),
    ))
}

/// A generated Secret with an SSH host key under [`HOST_KEY`], filled once at apply time and
/// kept ([`recipes::Recipe::SshHostKey`]).
fn host_key_secret(
    mut meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<Json, KubeError> {
    let recipe = recipes::Recipe::SshHostKey {
        key: HOST_KEY.into(),
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

/// A ClusterIP Service `name` in `namespace` on `port`, to the container port named `target`.
fn service(
    ctx: &Context<'_>,
    name: &str,
    port: i32,
    target: &str,
    namespace: &str,
) -> Result<Json, KubeError> {
    let mut meta = ctx.meta(name, name);
    meta.namespace = Some(namespace.to_string());
    manifest(&Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            selector: Some(super::selector(name)),
            ports: Some(vec![ServicePort {
                name: Some(target.into()),
                port,
                target_port: Some(IntOrString::String(target.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// A readiness probe: the container accepts TCP connections on its port named `port`.
fn tcp_probe(port: &str) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(port.into()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    }
}

/// The ssh server's Deployment (the chart's `templates/ssh/deployment.yaml`): the image's
/// own command (`python3 -m jupyterhub_ssh` in `/srv/jupyterhub-ssh`, which loads
/// `jupyterhub_ssh_config.py` there), its settings and host key mounted read-only, no
/// service account token. It runs as the image's unprivileged user under the platform
/// namespace's `restricted` level: the chart asks only `allowPrivilegeEscalation: false` and
/// `runAsNonRoot: true`, and the server listens on an unprivileged port and writes no file.
fn ssh_deployment(ctx: &Context<'_>, config_map: &str) -> Result<Json, KubeError> {
    let mut container = pods::container(
        SSH,
        versions::JUPYTERHUB_SSH.reference(),
        pods::resources("50m", "128Mi", "512Mi"),
    );
    container.ports = Some(vec![ContainerPort {
        name: Some("ssh".into()),
        container_port: SSH_PORT,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }]);
    container.readiness_probe = Some(tcp_probe("ssh"));
    container.liveness_probe = Some(tcp_probe("ssh"));
    container.volume_mounts = Some(vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "secrets".into(),
            mount_path: SECRETS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ]);
    let mut pod = PodSpec {
        containers: vec![container],
        automount_service_account_token: Some(false),
        security_context: Some(pods::non_root_pod(SSH_UID)),
        volumes: Some(vec![
            pods::config_map_volume("config", config_map),
            Volume {
                name: "secrets".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(HOST_KEY_SECRET.into()),
                    // Readable by the server's group (the pod's fsGroup) and no one else.
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    let mut deployment = super::deployment(ctx, SSH, pod, false);
    deployment.metadata = ctx.meta(SSH, SSH);
    manifest(&deployment)
}

#[cfg(test)]
mod tests;
