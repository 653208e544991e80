//! Logs: Loki (single binary, filesystem storage on its own volume) and Grafana Alloy, which
//! tails every pod's log through the Kubernetes API and pushes it to Loki; Grafana reads Loki
//! as its data source of uid [`LOKI_UID`].
//!
//! Alloy runs as one Deployment, not a DaemonSet: `loki.source.kubernetes` reads logs from the
//! API server (`pods/log`), so it needs no hostPath to the nodes' log files, runs in the
//! platform namespace under the `restricted` Pod Security level, and a single replica ships
//! each line once (Alloy docs, `loki.source.kubernetes`: without clustering every replica
//! tails every target). Retention: [`RETENTION`] (Loki's compactor deletes older chunks) on a
//! [`VOLUME_SIZE`] volume.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, Probe,
    Service, ServiceAccount, ServicePort, ServiceSpec, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value as Json;

use super::super::{ConfigFile, Context, KubeError, manifest, rbac, selector};
use super::NAME;
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::versions;

/// Loki's Deployment and Service.
pub const LOKI: &str = "loki";
/// Its HTTP port.
pub const PORT: i32 = 3100;
/// The uid of the Loki data source in Grafana.
pub const LOKI_UID: &str = "loki";
/// Loki's ConfigMap.
pub const CONFIG_MAP: &str = "loki-config";
/// Loki's configuration file.
pub const FILE: &str = "loki.yaml";
/// Loki's data claim.
pub const CLAIM: &str = "loki-data";
/// Its size.
pub const VOLUME_SIZE: &str = "20Gi";
/// How long logs are kept (Loki's `limits_config.retention_period`).
pub const RETENTION: &str = "336h";
/// Alloy's Deployment and service account.
pub const ALLOY: &str = rbac::ALLOY.service_account;
/// Alloy's ConfigMap.
pub const ALLOY_CONFIG_MAP: &str = "alloy-config";
/// Alloy's configuration file.
pub const ALLOY_FILE: &str = "config.alloy";
const ALLOY_PORT: i32 = 12345;
/// The users of the images: Loki's `loki` (10001) and Alloy's `alloy` (473).
const LOKI_UID_NUMBER: i64 = 10001;
const ALLOY_UID_NUMBER: i64 = 473;

/// `loki.yaml`: one process, no authentication (single tenant), the in-memory ring, TSDB index
/// and chunks on the filesystem, retention applied by the compactor.
pub fn config() -> String {
    format!(
        "# Written by qhub: edits are replaced at the next deploy.\n\
         auth_enabled: false\n\
         server:\n  http_listen_port: {PORT}\n  grpc_listen_port: 9095\n  log_level: info\n\
         common:\n  instance_addr: 127.0.0.1\n  path_prefix: /loki\n  replication_factor: 1\n\
         \x20 storage:\n    filesystem:\n      chunks_directory: /loki/chunks\n      rules_directory: /loki/rules\n\
         \x20 ring:\n    kvstore:\n      store: inmemory\n\
         schema_config:\n  configs:\n    - from: \"2024-01-01\"\n      store: tsdb\n      object_store: filesystem\n      schema: v13\n      index:\n        prefix: index_\n        period: 24h\n\
         limits_config:\n  retention_period: {RETENTION}\n\
         compactor:\n  working_directory: /loki/compactor\n  retention_enabled: true\n  delete_request_store: filesystem\n\
         analytics:\n  reporting_enabled: false\n"
    )
}

/// `config.alloy`: every pod's log, labelled with its namespace, pod, container and app,
/// pushed to Loki.
pub fn alloy_config(ctx: &Context<'_>) -> String {
    let rule = |from: &str, to: &str| {
        format!("  rule {{\n    source_labels = [\"{from}\"]\n    target_label  = \"{to}\"\n  }}\n")
    };
    format!(
        "// Written by qhub: edits are replaced at the next deploy.\n\
         discovery.kubernetes \"pods\" {{\n  role = \"pod\"\n}}\n\n\
         discovery.relabel \"pods\" {{\n  targets = discovery.kubernetes.pods.targets\n{}{}{}{}}}\n\n\
         loki.source.kubernetes \"pods\" {{\n  targets    = discovery.relabel.pods.output\n  forward_to = [loki.write.local.receiver]\n}}\n\n\
         loki.write \"local\" {{\n  endpoint {{\n    url = \"http://{LOKI}.{}.svc:{PORT}/loki/api/v1/push\"\n  }}\n}}\n",
        rule("__meta_kubernetes_namespace", "namespace"),
        rule("__meta_kubernetes_pod_name", "pod"),
        rule("__meta_kubernetes_pod_container_name", "container"),
        rule("__meta_kubernetes_pod_label_app_kubernetes_io_name", "app"),
        ctx.namespace()
    )
}

/// Its config files: Loki's and Alloy's.
pub fn config_files(ctx: &Context<'_>) -> [ConfigFile; 2] {
    [
        ConfigFile::new(CONFIG_MAP, FILE, config()),
        ConfigFile::new(ALLOY_CONFIG_MAP, ALLOY_FILE, alloy_config(ctx)),
    ]
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn http(port: i32) -> Option<Vec<ContainerPort>> {
    Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: port,
        ..ContainerPort::default()
    }])
}

fn ready(path: &str) -> Option<Probe> {
    Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    })
}

/// Loki (data claim, Deployment, Service) and Alloy (service account, RBAC, Deployment).
pub fn objects(ctx: &Context<'_>) -> Result<Vec<Json>, KubeError> {
    let mut out = vec![manifest(&PersistentVolumeClaim {
        metadata: ctx.meta(NAME, CLAIM),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: ctx.facts.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(VOLUME_SIZE.into()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    })?];
    let mut loki = pods::container(
        LOKI,
        versions::LOKI.reference(),
        pods::resources("100m", "256Mi", "1Gi"),
    );
    loki.args = Some(vec![format!("-config.file=/etc/loki/{FILE}")]);
    loki.ports = http(PORT);
    loki.readiness_probe = ready("/ready");
    loki.volume_mounts = Some(vec![
        mount("config", "/etc/loki", true),
        mount("data", "/loki", false),
        mount("tmp", "/tmp", false),
    ]);
    let mut pod = PodSpec {
        containers: vec![loki],
        security_context: Some(pods::non_root_pod(LOKI_UID_NUMBER)),
        automount_service_account_token: Some(false),
        volumes: Some(vec![
            pods::config_map_volume("config", CONFIG_MAP),
            pods::claim_volume("data", CLAIM),
            pods::empty_dir_volume("tmp"),
        ]),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    let mut deployment = super::super::deployment(ctx, LOKI, pod, true);
    deployment.metadata = ctx.meta(NAME, LOKI);
    out.push(manifest(&deployment)?);
    out.push(manifest(&Service {
        metadata: ctx.meta(NAME, LOKI),
        spec: Some(ServiceSpec {
            selector: Some(selector(LOKI)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: PORT,
                target_port: Some(IntOrString::String("http".into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })?);

    out.push(manifest(&ServiceAccount {
        metadata: ctx.meta(NAME, ALLOY),
        ..ServiceAccount::default()
    })?);
    out.extend(rbac::objects(ctx, ALLOY, &rbac::ALLOY)?);
    let mut alloy = pods::container(
        ALLOY,
        versions::ALLOY.reference(),
        pods::resources("50m", "128Mi", "512Mi"),
    );
    alloy.args = Some(vec![
        "run".into(),
        format!("/etc/alloy/{ALLOY_FILE}"),
        format!("--server.http.listen-addr=0.0.0.0:{ALLOY_PORT}"),
        "--storage.path=/tmp/alloy".into(),
        "--disable-reporting".into(),
    ]);
    alloy.ports = http(ALLOY_PORT);
    alloy.readiness_probe = ready("/-/ready");
    alloy.volume_mounts = Some(vec![
        mount("config", "/etc/alloy", true),
        mount("tmp", "/tmp", false),
    ]);
    let mut pod = PodSpec {
        service_account_name: Some(ALLOY.into()),
        containers: vec![alloy],
        security_context: Some(pods::non_root_pod(ALLOY_UID_NUMBER)),
        volumes: Some(vec![
            pods::config_map_volume("config", ALLOY_CONFIG_MAP),
            pods::empty_dir_volume("tmp"),
        ]),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    // One replica at a time: two would ship every line twice.
    let mut deployment = super::super::deployment(ctx, ALLOY, pod, true);
    deployment.metadata = ctx.meta(NAME, ALLOY);
    out.push(manifest(&deployment)?);
    Ok(out)
}
