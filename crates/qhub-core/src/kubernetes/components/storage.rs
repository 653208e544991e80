//! Shared storage: the PersistentVolume and PersistentVolumeClaim (`shared`, ReadWriteMany)
//! that home and shared directories mount. On AWS it is the EFS file system of the
//! infrastructure (from the cluster facts); elsewhere an NFS server in the cluster, on a
//! ReadWriteOnce volume of `storage.shared_filesystem`.
//!
//! A one-time Job ([`LAYOUT_JOB`]) gives the filesystem its layout before anything mounts it:
//! the directories of [`LAYOUT`], owned by the user the platform's pods run as. Without it
//! nobody could write there: kubelet creates a missing `subPath` itself, as root, with the mode
//! of the volume's root (kubernetes `pkg/kubelet/kubelet_pods.go` `makeMounts` and
//! `pkg/volume/util/subpath/subpath_linux.go` `doSafeMakeDir`), and an NFS volume gets no
//! `fsGroup` ownership change. QHub and nebari ran a root init container in every user's pod
//! for this (`initialize-home-mount`, `mkdir -p … && chmod 777 …`, nebari
//! `03-profiles.py`); users' pods here run under Pod Security `restricted`, which refuses root,
//! so the Job does the one-time part and the hub creates each user's home directory as that
//! user ([`crate::kubernetes::components::jupyterhub`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, NFSVolumeSource, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, PodSpec,
    Probe, SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value as Json;

use super::{Built, Component, Context, KubeError, manifest, selector};
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::recipes::{self, Derived};
use crate::kubernetes::versions;
use crate::provider::facts::{AFTER_APPLY, Known, SharedFilesystem};

/// The component's name.
pub const NAME: &str = "shared-storage";
/// The claim services mount.
pub const CLAIM: &str = "shared";
/// The in-cluster NFS server (Deployment and Service).
pub const NFS_SERVER: &str = "nfs-server";
/// The claim of the in-cluster NFS server's data volume (its size is `storage.shared_filesystem`).
pub const NFS_DATA: &str = "nfs-server-data";
/// What the `shared` claim asks for. The claim binds to its own static volume, whose capacity
/// is the config's size; NFS enforces no size, and a claim without a storage class can never be
/// resized (the `PersistentVolumeClaimResize` admission plugin refuses it with 403), so the
/// request is the least that binds and never changes with `storage.shared_filesystem`. On EFS a
/// new size therefore changes only the volume's nominal capacity (EFS grows by itself).
pub const SHARED_CLAIM_REQUEST: &str = "1Mi";

/// The uid that owns the shared filesystem's directories: the one every pod that writes there
/// runs as (the Jupyter Docker Stacks' `jovyan`; conda-store and the hub run as it too).
pub const OWNER_UID: i64 = 1000;
/// The group of [`OWNER_UID`] (`users`, as in the Jupyter Docker Stacks).
pub const OWNER_GID: i64 = 100;
/// The directory holding one directory per user (`home/<user>`), made by the hub.
pub const HOME_DIR: &str = "home";
/// The directory every user mounts at `/shared`.
pub const SHARED_DIR: &str = "shared";
/// The directory conda-store builds environments into (read-only for users).
pub const CONDA_STORE_DIR: &str = "conda-store";
/// The shared filesystem's top-level directories and their modes ([`OWNER_UID`] owns each).
pub const LAYOUT: [(&str, &str); 3] = [
    (HOME_DIR, "755"),
    (SHARED_DIR, "2775"),
    (CONDA_STORE_DIR, "755"),
];
/// The Job that makes [`LAYOUT`] (in the privileged namespace: it runs as root).
pub const LAYOUT_JOB: &str = "shared-storage-layout";

/// The shared filesystem.
#[derive(Debug, Clone, Copy)]
pub struct SharedStorage;

/// Whether the shared filesystem is an NFS server in the cluster (no cloud file system).
pub fn in_cluster(ctx: &Context<'_>) -> bool {
    matches!(
        ctx.facts.shared_filesystem,
        Known::Known(SharedFilesystem::InCluster)
    )
}

fn quantity(size: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([("storage".to_string(), Quantity(size.to_string()))])
}

impl Component for SharedStorage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["namespace"]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let mut out = Vec::new();
        let mut image = None;
        if in_cluster(ctx) {
            out.extend(nfs_server(ctx, &ctx.config.storage.shared_filesystem)?);
            image = Some(versions::NFS_SERVER);
        }
        out.extend(claim_objects(ctx, NAME, ctx.namespace())?);
        out.push(layout_job(ctx)?);
        Ok(Built::new(out).images(image.into_iter().chain([versions::POSTGRES])))
    }
}

/// The file system's NFS server, export path and mount options, and for the in-cluster server
/// the [`Derived`] recipe of its address (known at apply time). The volume users mount and the
/// layout Job mount the same.
fn nfs_source(ctx: &Context<'_>) -> (String, String, Vec<&'static str>, Option<Derived>) {
    match &ctx.facts.shared_filesystem {
        Known::Known(SharedFilesystem::Efs { dns_name, .. }) => (
            dns_name.clone(),
            "/".to_string(),
            vec![
                "nfsvers=4.1",
                "rsize=1048576",
                "wsize=1048576",
                "hard",
                "timeo=600",
                "retrans=2",
                "noresvport",
            ],
            None,
        ),
        Known::Known(SharedFilesystem::Nfs { server, path }) => {
            (server.clone(), path.clone(), vec!["nfsvers=4.1"], None)
        }
        Known::AfterApply => (
            AFTER_APPLY.to_string(),
            "/".to_string(),
            vec!["nfsvers=4.1"],
            None,
        ),
        Known::Known(SharedFilesystem::InCluster) => {
            // Kubelet mounts with the node's resolver, which does not know cluster DNS
            // names: the volume names the Service's cluster IP, read at apply time.
            let derived = Derived {
                path: "/spec/nfs/server".into(),
                kind: "Service".into(),
                namespace: ctx.privileged_namespace(),
                name: NFS_SERVER.into(),
                field: "/spec/clusterIP".into(),
            };
            (
                derived.placeholder(),
                "/".to_string(),
                vec!["nfsvers=4.1"],
                Some(derived),
            )
        }
    }
}

/// The shared filesystem as a claim [`CLAIM`] in `namespace`, for `component`: a
/// PersistentVolume `<namespace>-shared` of the file system (cluster-scoped, so its name
/// carries the namespace) and the claim bound to it. The platform namespace's pair is this
/// component's; a piece in the privileged namespace that serves the same files (sftp) makes
/// its own pair there, since a pod mounts only claims of its own namespace.
pub fn claim_objects(
    ctx: &Context<'_>,
    component: &str,
    namespace: &str,
) -> Result<Vec<Json>, KubeError> {
    let size = ctx.config.storage.shared_filesystem.clone();
    let (server, path, options, derived) = nfs_source(ctx);
    let volume_name = format!("{namespace}-{CLAIM}");
    let mut meta = ctx.cluster_meta(component, &volume_name);
    if let Some(d) = &derived {
        meta.annotations = Some(BTreeMap::from([(
            recipes::DERIVED_ANNOTATION.to_string(),
            d.to_string(),
        )]));
    }
    let volume = PersistentVolume {
        metadata: meta,
        spec: Some(PersistentVolumeSpec {
            capacity: Some(quantity(&size)),
            access_modes: Some(vec!["ReadWriteMany".into()]),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            storage_class_name: Some(String::new()),
            mount_options: Some(options.into_iter().map(str::to_string).collect()),
            nfs: Some(NFSVolumeSource {
                server,
                path,
                read_only: None,
            }),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    };
    let mut claim_meta = ctx.meta(component, CLAIM);
    claim_meta.namespace = Some(namespace.to_string());
    let claim = PersistentVolumeClaim {
        metadata: claim_meta,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteMany".into()]),
            storage_class_name: Some(String::new()),
            volume_name: Some(volume_name),
            resources: Some(VolumeResourceRequirements {
                requests: Some(quantity(SHARED_CLAIM_REQUEST)),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    Ok(vec![manifest(&volume)?, manifest(&claim)?])
}

/// The script of [`LAYOUT_JOB`]: each directory of [`LAYOUT`] made, owned by [`OWNER_UID`] and
/// given its mode, and users' home directories that kubelet made as root (before the hub made
/// them) handed to their user. Nothing is changed that is already right, so a filesystem whose
/// export squashes root works when its directories were prepared by hand.
fn layout_script() -> String {
    let owner = format!("{OWNER_UID}:{OWNER_GID}");
    let mut script = String::from("set -eu\ncd /share\n");
    for (dir, mode) in LAYOUT {
        script.push_str(&format!(
            "mkdir -p {dir}\n\
             [ \"$(stat -c %u:%g {dir})\" = {owner} ] || chown {owner} {dir}\n\
             [ \"$(stat -c %a {dir})\" = {mode} ] || chmod {mode} {dir}\n"
        ));
    }
    script.push_str(&format!(
        "for d in {HOME_DIR}/*/; do\n  \
         [ -d \"$d\" ] || continue\n  \
         [ \"$(stat -c %u:%g \"$d\")\" = {owner} ] || chown {owner} \"$d\"\n\
         done\n\
         echo \"shared filesystem layout: $(stat -c '%n %u:%g %a' {dirs})\"\n",
        dirs = LAYOUT.map(|(d, _)| d).join(" "),
    ));
    script
}

/// The Job that gives the shared filesystem its layout ([`LAYOUT`]). It mounts the filesystem
/// itself (the same server and path as the volume) from the privileged namespace, as root with
/// only the capabilities it uses (`CHOWN`, `FOWNER`, `DAC_OVERRIDE`). A shell with `stat` and
/// `chown` is all it needs: it reuses the Postgres image (Alpine's busybox) rather than adding
/// an image to pull and patch.
fn layout_job(ctx: &Context<'_>) -> Result<Json, KubeError> {
    use k8s_openapi::api::batch::v1::{Job, JobSpec};
    let (server, path, _, derived) = nfs_source(ctx);
    use k8s_openapi::api::core::v1::{
        Capabilities, PodSecurityContext, PodTemplateSpec, SeccompProfile,
    };
    let mut container = pods::container(
        LAYOUT_JOB,
        versions::POSTGRES.reference(),
        pods::resources("10m", "16Mi", "64Mi"),
    );
    container.command = Some(vec!["sh".into(), "-c".into(), layout_script()]);
    container.security_context = Some(SecurityContext {
        run_as_user: Some(0),
        run_as_non_root: Some(false),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: Some(vec!["CHOWN".into(), "FOWNER".into(), "DAC_OVERRIDE".into()]),
        }),
        ..SecurityContext::default()
    });
    container.volume_mounts = Some(vec![VolumeMount {
        name: "share".into(),
        mount_path: "/share".into(),
        ..VolumeMount::default()
    }]);
    let mut pod = PodSpec {
        containers: vec![container],
        restart_policy: Some("OnFailure".into()),
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        volumes: Some(vec![Volume {
            name: "share".into(),
            nfs: Some(NFSVolumeSource {
                server,
                path,
                read_only: None,
            }),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    let mut meta = ctx.privileged_meta(NAME, LAYOUT_JOB);
    if let Some(d) = derived {
        let d = Derived {
            path: "/spec/template/spec/volumes/0/nfs/server".into(),
            ..d
        };
        meta.annotations = Some(BTreeMap::from([(
            recipes::DERIVED_ANNOTATION.to_string(),
            d.to_string(),
        )]));
    }
    let job = Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(3),
            // A filesystem that never mounts fails the deploy in minutes, not at its deadline.
            active_deadline_seconds: Some(600),
            template: PodTemplateSpec {
                metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    labels: Some(selector(LAYOUT_JOB)),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    };
    manifest(&job)
}

/// The NFS server: its data volume, Deployment and Service, in the privileged namespace
/// ([`Context::privileged_namespace`]): the platform namespace enforces `restricted`.
fn nfs_server(ctx: &Context<'_>, size: &str) -> Result<Vec<Json>, KubeError> {
    let mut meta = ctx.privileged_meta(NFS_SERVER, NFS_DATA);
    // Its size is `storage.shared_filesystem`: a new size is a new volume (the plan cannot know
    // that the class expands volumes, and a claim never shrinks), which loses this data.
    meta.annotations = Some(BTreeMap::from([(
        crate::kubernetes::REPLACE_DESTROYS.to_string(),
        format!(
            "the shared filesystem's data on claim {NFS_DATA} (every user's home directory and \
             the shared directories; set by storage.shared_filesystem)"
        ),
    )]));
    let data = PersistentVolumeClaim {
        metadata: meta,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: ctx.facts.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(quantity(size)),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    let ports = [("nfs", 2049), ("mountd", 20048), ("rpcbind", 111)];
    let mut container = pods::container(
        NFS_SERVER,
        versions::NFS_SERVER.reference(),
        pods::resources("100m", "256Mi", "1Gi"),
    );
    // The kernel NFS server needs privileges: the one container of the platform that has them.
    container.security_context = Some(SecurityContext {
        privileged: Some(true),
        ..SecurityContext::default()
    });
    container.ports = Some(
        ports
            .iter()
            .map(|(name, port)| ContainerPort {
                name: Some((*name).into()),
                container_port: *port,
                ..ContainerPort::default()
            })
            .collect(),
    );
    container.readiness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("nfs".into()),
            ..TCPSocketAction::default()
        }),
        ..Probe::default()
    });
    container.volume_mounts = Some(vec![VolumeMount {
        name: "data".into(),
        mount_path: "/exports".into(),
        ..VolumeMount::default()
    }]);
    let mut pod = PodSpec {
        containers: vec![container],
        automount_service_account_token: Some(false),
        volumes: Some(vec![Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: NFS_DATA.into(),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    let mut deployment = super::deployment(ctx, NFS_SERVER, pod, true);
    deployment.metadata = ctx.privileged_meta(NFS_SERVER, NFS_SERVER);
    let service = Service {
        metadata: ctx.privileged_meta(NFS_SERVER, NFS_SERVER),
        spec: Some(ServiceSpec {
            selector: Some(selector(NFS_SERVER)),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| ServicePort {
                        name: Some((*name).into()),
                        port: *port,
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    Ok(vec![
        manifest(&data)?,
        manifest(&deployment)?,
        manifest(&service)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ClusterFacts;

    fn objects() -> Vec<Json> {
        let config = crate::kubernetes::components::test_config(crate::config::ProviderKind::Do);
        let facts = ClusterFacts::from_config(&config);
        crate::kubernetes::components::manifests(&config, &facts).unwrap()
    }

    #[test]
    fn the_layout_job_runs_as_root_with_only_the_capabilities_it_uses() {
        let objects = objects();
        let job = objects
            .iter()
            .find(|m| m["kind"] == "Job" && m["metadata"]["name"] == LAYOUT_JOB)
            .expect("the layout Job");
        assert_eq!(job["metadata"]["namespace"], "dev-privileged");
        let pod = &job["spec"]["template"]["spec"];
        let sc = &pod["containers"][0]["securityContext"];
        assert_eq!(sc["runAsUser"], 0);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(
            sc["capabilities"]["add"],
            serde_json::json!(["CHOWN", "FOWNER", "DAC_OVERRIDE"])
        );
        // The same filesystem as the volume users mount.
        let pv = objects
            .iter()
            .find(|m| m["kind"] == "PersistentVolume")
            .unwrap();
        assert_eq!(pod["volumes"][0]["nfs"], pv["spec"]["nfs"]);
    }

    /// The script run by `sh` on a directory standing in for the filesystem: the layout is
    /// made, a second run changes nothing, and a home directory made by root is handed over.
    #[test]
    fn the_layout_script_makes_the_directories_and_is_idempotent() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let script = layout_script().replace("cd /share", &format!("cd {}", dir.path().display()));
        std::fs::create_dir_all(dir.path().join("home/early")).unwrap();
        let run = || {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap()
        };
        let out = run();
        // Whether this process runs as root: the owner of its own /proc entry.
        let root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if !root {
            // Not root: chown is refused and the script stops (set -e), as on an export that
            // squashes root and was not prepared by hand.
            assert!(!out.status.success(), "{out:?}");
            return;
        }
        assert!(out.status.success(), "{out:?}");
        for (name, mode) in LAYOUT {
            let meta = std::fs::metadata(dir.path().join(name)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (1000, 100), "{name}");
            assert_eq!(
                format!("{:o}", meta.permissions().mode() & 0o7777),
                mode,
                "{name}"
            );
        }
        let early = std::fs::metadata(dir.path().join("home/early")).unwrap();
        assert_eq!((early.uid(), early.gid()), (1000, 100));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("shared filesystem layout: home 1000:100 755"),
            "{stdout}"
        );
        // A second run finds everything right and succeeds.
        assert!(run().status.success());
    }
}
