//! The sftp server: OpenSSH's sshd from jupyterhub-ssh's `jupyterhub-sftp` image, serving
//! each user their own home directory on the shared filesystem.
//!
//! How the image works (yuvipanda/jupyterhub-ssh `jupyterhub-sftp/`): sshd (`etc/ssh/sshd_config`:
//! port 2222, password logins only, `ForceCommand internal-sftp`, `ChrootDirectory
//! /export/home/%u`, host key `/etc/jupyterhub-sftp/config/hostKey`) authenticates through PAM,
//! whose `pam_exec` runs `jupyterhub-token-verify.py` as root: the password must be a
//! JupyterHub API token the hub accepts at `<hubUrl>/hub/api/user` (`hubUrl` read from
//! `/etc/jupyterhub-sftp/config/hubUrl`), whoever it belongs to: any user's token opens any
//! home. qhub mounts its own check over the script ([`TOKEN_CHECK`]), which also requires
//! the token's owner to be the user logging in. The script then bind-mounts
//! `/mnt/home/<escaped name>` into the chroot. The escaped name is escapism's
//! (`escape(name, safe=[a-z0-9], escape_char="-").lower()`), which is KubeSpawner's
//! `{escaped_username}`: the hub mounts users' homes at exactly that subPath of the shared
//! claim (`jupyterhub::config`, `home/{escaped_username}`), and this pod mounts the claim's
//! `home` directory at `/mnt/home`, as QHub's `sftp.tf` did. sftp thus serves the directory a
//! user's server has as `/home/jovyan`.
//!
//! Pod Security: chroot and `mount --bind` need root with `CAP_SYS_CHROOT` and
//! `CAP_SYS_ADMIN`, and a mount is refused by the container runtime's default AppArmor
//! profile; `baseline` forbids adding `SYS_ADMIN` and running unconfined, so the pod cannot
//! live in the platform namespace (`restricted`) and runs in `<namespace>-privileged`, beside
//! the NFS server and the node exporter. Upstream's chart and QHub ran it `privileged: true`;
//! this pod asks for less: the runtime's default capabilities plus `SYS_ADMIN` (the bind
//! mount) and `AUDIT_CONTROL` (PAM's session modules set the login uid), AppArmor unconfined,
//! the runtime's default seccomp profile (containerd's allows `mount` to a holder of
//! `SYS_ADMIN`), no host namespaces, no devices, no service account token.
//!
//! A pod mounts only claims of its own namespace, so the shared filesystem gets a second
//! PersistentVolume and claim in the privileged namespace ([`storage::claim_objects`]); and
//! Traefik watches that namespace too, for the IngressRouteTCP beside the sftp Service
//! (`ingress`: `--providers.kubernetescrd.namespaces`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    AppArmorProfile, Capabilities, ConfigMap, ConfigMapProjection, ConfigMapVolumeSource,
    ContainerPort, KeyToPath, PodSpec, ProjectedVolumeSource, SeccompProfile, SecretProjection,
    SecurityContext, VolumeMount, VolumeProjection,
};
use serde_json::Value as Json;

use super::super::{CONFIG_HASH_ANNOTATION, ConfigFile, storage};
use super::{
    Context, HOST_KEY, KubeError, NAME, host_key_secret, hub_url, ingress, manifest, service,
    tcp_probe,
};
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::versions;

/// The sftp server's Deployment and Service (in the privileged namespace).
pub const SFTP: &str = "jupyterhub-sftp";
/// The port its Service exposes (QHub's, the load balancer's sftp port).
pub const SFTP_PORT: i32 = 8023;
/// The port sshd listens on in the image (`Port 2222` of its `sshd_config`).
pub const CONTAINER_PORT: i32 = 2222;
/// The generated Secret holding the sftp server's host key. A Secret is read only in its
/// own namespace, so sftp's key is its own, not the ssh server's: a client records each
/// `[host]:port` apart anyway.
pub const HOST_KEY_SECRET: &str = "jupyterhub-sftp-host-key";
/// The ConfigMap holding `hubUrl`.
pub const CONFIG_MAP: &str = "jupyterhub-sftp-config";
/// The file the token check reads the hub's URL from.
pub const HUB_URL_FILE: &str = "hubUrl";
/// Where the image reads its host key and `hubUrl` (`sshd_config`'s `HostKey`, the token
/// check's `open(...)`).
pub const CONFIG_DIR: &str = "/etc/jupyterhub-sftp/config";
/// Where the image looks for users' home directories (the token check's `SRC_DIR`).
pub const HOMES_DIR: &str = "/mnt/home";
/// The directory of the shared claim that holds users' homes (`home/<escaped name>`).
pub const HOMES_SUB_PATH: &str = "home";
/// qhub's token check ([`TOKEN_CHECK`]), the file of the ConfigMap holding it.
pub const TOKEN_CHECK_FILE: &str = "jupyterhub-token-verify.py";
/// Where PAM runs the token check from in the image (`etc/pam.d/common-auth`).
pub const TOKEN_CHECK_PATH: &str = "/usr/sbin/jupyterhub-token-verify.py";
/// qhub's token check, mounted over the image's: the image's accepts any valid token of the
/// hub for any user name (`jupyterhub-token-verify.py`, `valid_user` ignores the name), so
/// anyone with a token could read and write anyone's home; this one accepts only a token whose
/// owner (`GET /hub/api/user`) is the user logging in, then bind-mounts the home as the
/// image's does.
pub const TOKEN_CHECK: &str = include_str!("token_check.py");

/// The sftp server's settings file, as a [`ConfigFile`] (for its digest; the ConfigMap lives in
/// the privileged namespace, so the framework's platform-namespace ConfigMaps cannot hold it).
pub fn config_file(ctx: &Context<'_>) -> ConfigFile {
    ConfigFile {
        name: CONFIG_MAP.into(),
        files: BTreeMap::from([
            (HUB_URL_FILE.to_string(), hub_url(ctx)),
            (TOKEN_CHECK_FILE.to_string(), TOKEN_CHECK.to_string()),
        ]),
    }
}

/// Everything of sftp, in the privileged namespace: the shared filesystem's volume and claim
/// there, the host key Secret, the `hubUrl` ConfigMap, the Deployment, the Service and the
/// IngressRouteTCP on [`ingress::SFTP`].
pub fn objects(ctx: &Context<'_>) -> Result<Vec<Json>, KubeError> {
    let namespace = ctx.privileged_namespace();
    let file = config_file(ctx);
    let mut out = storage::claim_objects(ctx, NAME, &namespace)?;
    out.push(host_key_secret(ctx.privileged_meta(NAME, HOST_KEY_SECRET))?);
    out.push(manifest(&ConfigMap {
        metadata: ctx.privileged_meta(NAME, CONFIG_MAP),
        data: Some(file.files.clone()),
        ..ConfigMap::default()
    })?);
    out.push(deployment(ctx, &file)?);
    out.push(service(ctx, SFTP, SFTP_PORT, "sftp", &namespace)?);
    let mut route = ingress::tcp_route(ctx, NAME, super::SFTP_ENTRY_POINT, SFTP, SFTP_PORT)?;
    route["metadata"]["namespace"] = Json::String(namespace);
    out.push(route);
    Ok(out)
}

/// The container's security context: see the module's documentation.
fn security_context() -> SecurityContext {
    SecurityContext {
        capabilities: Some(Capabilities {
            add: Some(vec!["SYS_ADMIN".into(), "AUDIT_CONTROL".into()]),
            ..Capabilities::default()
        }),
        app_armor_profile: Some(AppArmorProfile {
            type_: "Unconfined".into(),
            ..AppArmorProfile::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// The sftp Deployment (the chart's `templates/sftp/deployment.yaml`, QHub's `sftp.tf`).
fn deployment(ctx: &Context<'_>, file: &ConfigFile) -> Result<Json, KubeError> {
    let mut container = pods::container(
        SFTP,
        versions::JUPYTERHUB_SFTP.reference(),
        pods::resources("50m", "64Mi", "256Mi"),
    );
    container.security_context = Some(security_context());
    container.ports = Some(vec![ContainerPort {
        name: Some("sftp".into()),
        container_port: CONTAINER_PORT,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }]);
    container.readiness_probe = Some(tcp_probe("sftp"));
    container.liveness_probe = Some(tcp_probe("sftp"));
    container.volume_mounts = Some(vec![
        VolumeMount {
            name: "home".into(),
            mount_path: HOMES_DIR.into(),
            sub_path: Some(HOMES_SUB_PATH.into()),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        // One file over the image's: the rest of /usr/sbin stays the image's.
        VolumeMount {
            name: "token-check".into(),
            mount_path: TOKEN_CHECK_PATH.into(),
            sub_path: Some(TOKEN_CHECK_FILE.into()),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ]);
    // The host key readable by root only: sshd refuses a host key others can read.
    let config = k8s_openapi::api::core::v1::Volume {
        name: "config".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    secret: Some(SecretProjection {
                        name: HOST_KEY_SECRET.into(),
                        items: Some(vec![KeyToPath {
                            key: HOST_KEY.into(),
                            path: HOST_KEY.into(),
                            mode: Some(0o400),
                        }]),
                        ..SecretProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: CONFIG_MAP.into(),
                        items: Some(vec![KeyToPath {
                            key: HUB_URL_FILE.into(),
                            path: HUB_URL_FILE.into(),
                            mode: Some(0o444),
                        }]),
                        ..ConfigMapProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
            ]),
            ..ProjectedVolumeSource::default()
        }),
        ..k8s_openapi::api::core::v1::Volume::default()
    };
    let mut pod = PodSpec {
        containers: vec![container],
        automount_service_account_token: Some(false),
        volumes: Some(vec![
            pods::claim_volume("home", storage::CLAIM),
            config,
            k8s_openapi::api::core::v1::Volume {
                name: "token-check".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: CONFIG_MAP.into(),
                    items: Some(vec![KeyToPath {
                        key: TOKEN_CHECK_FILE.into(),
                        path: TOKEN_CHECK_FILE.into(),
                        // Run by pam_exec as root: executable, written by no one.
                        mode: Some(0o555),
                    }]),
                    ..ConfigMapVolumeSource::default()
                }),
                ..k8s_openapi::api::core::v1::Volume::default()
            },
        ]),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    let mut deployment = super::super::deployment(ctx, SFTP, pod, false);
    deployment.metadata = ctx.privileged_meta(SFTP, SFTP);
    // The ConfigMap is not one of the framework's (those live in the platform namespace), so
    // its digest is stamped here: an edit rolls the server.
    if let Some(template) = deployment.spec.as_mut().map(|s| &mut s.template) {
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.annotations = Some(BTreeMap::from([(
            CONFIG_HASH_ANNOTATION.to_string(),
            file.digest(),
        )]));
    }
    manifest(&deployment)
}
