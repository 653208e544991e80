//! Shared storage: the PersistentVolume and PersistentVolumeClaim (`shared`, ReadWriteMany)
//! that home and shared directories mount. On AWS it is the EFS file system of the
//! infrastructure (from the cluster facts); elsewhere an NFS server in the cluster, on a
//! ReadWriteOnce volume of `storage.shared_filesystem`.

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
const NFS_DATA: &str = "nfs-server-data";
/// What the `shared` claim asks for. The claim binds to its own static volume, whose capacity
/// is the config's size; NFS enforces no size, and a claim without a storage class can never be
/// resized (the `PersistentVolumeClaimResize` admission plugin refuses it with 403), so the
/// request is the least that binds and never changes with `storage.shared_filesystem`. On EFS a
/// new size therefore changes only the volume's nominal capacity (EFS grows by itself).
pub const SHARED_CLAIM_REQUEST: &str = "1Mi";

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
        Ok(Built::new(out).images(image))
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
    // (server, path, mount options) of the volume.
    let (server, path, options, derived) = match &ctx.facts.shared_filesystem {
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
    };
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
