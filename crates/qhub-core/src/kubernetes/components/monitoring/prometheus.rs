//! The Prometheus server: its scrape configuration (`prometheus.yml`), data volume, Deployment,
//! Service, service account and RBAC ([`rbac::PROMETHEUS`]).
//!
//! Retention: 15 days or [`RETENTION_SIZE`], whichever is reached first, on a
//! [`VOLUME_SIZE`] volume. A platform of a few dozen nodes and a few hundred pods makes on the
//! order of 100k series at a 30 s interval, about 1–2 bytes per sample after compression:
//! roughly 0.5 GiB a day, so 15 days fit with room for bursts of Dask workers; the size limit
//! (80% of the volume) keeps a larger cluster from filling the disk, dropping the oldest
//! blocks first (Prometheus docs, "Storage": `--storage.tsdb.retention.size`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, Probe,
    SecretVolumeSource, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value as Json, json};

use super::super::{
    ConfigFile, Context, KubeError, conda_store, jupyterhub, manifest, rbac, selector,
};
use super::{NAME, hub_token};
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::versions;

/// The server's Deployment, Service and service account.
pub const SERVER: &str = rbac::PROMETHEUS.service_account;
/// Its port.
pub const PORT: i32 = 9090;
/// The ConfigMap holding [`FILE`].
pub const CONFIG_MAP: &str = "prometheus-config";
/// The configuration file.
pub const FILE: &str = "prometheus.yml";
/// The data volume's claim.
pub const CLAIM: &str = "prometheus-data";
/// The data volume's size.
pub const VOLUME_SIZE: &str = "20Gi";
/// How long samples are kept.
pub const RETENTION_TIME: &str = "15d";
/// The most the blocks may take on the volume (80% of [`VOLUME_SIZE`]).
pub const RETENTION_SIZE: &str = "16GB";
/// The scrape and rule evaluation interval.
pub const INTERVAL: &str = "30s";
const CONFIG_DIR: &str = "/etc/prometheus";
const DATA_DIR: &str = "/prometheus";
/// Where the JupyterHub API token is mounted (a file Prometheus reads at each scrape).
const HUB_TOKEN_DIR: &str = "/etc/prometheus-secrets";
/// `nobody`, the user upstream's image runs as.
const UID: i64 = 65534;
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The relabelling of the `prometheus.io/*` annotations on `kind` (`service` or `pod`), as the
/// prometheus-community chart's `kubernetes-service-endpoints` and `kubernetes-pods` jobs
/// (`charts/prometheus/values.yaml`) read them: `scrape: "true"` keeps the target; `scheme`,
/// `path` and `port` replace the defaults.
fn annotation_relabels(kind: &str) -> Vec<Json> {
    let a = |name: &str| format!("__meta_kubernetes_{kind}_annotation_prometheus_io_{name}");
    vec![
        json!({"source_labels": [a("scrape")], "action": "keep", "regex": "true"}),
        json!({"source_labels": [a("scheme")], "action": "replace", "regex": "(https?)",
               "target_label": "__scheme__"}),
        json!({"source_labels": [a("path")], "action": "replace", "regex": "(.+)",
               "target_label": "__metrics_path__"}),
        json!({"source_labels": ["__address__", a("port")], "action": "replace",
               "regex": "([^:]+)(?::\\d+)?;(\\d+)", "replacement": "$1:$2",
               "target_label": "__address__"}),
        json!({"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"}),
    ]
}

/// A job scraping the kubelet of every node on `path` (`/metrics`, `/metrics/cadvisor`),
/// directly on its port 10250 with the service account's token.
fn kubelet_job(name: &str, path: &str) -> Json {
    json!({
        "job_name": name,
        "scheme": "https",
        "metrics_path": path,
        // Kubelets serve certificates the cluster's CA does not always sign (EKS, DOKS):
        // the scrape is authenticated by the token, the target found through the API.
        "tls_config": {"ca_file": format!("{SA_DIR}/ca.crt"), "insecure_skip_verify": true},
        "authorization": {"credentials_file": format!("{SA_DIR}/token")},
        "kubernetes_sd_configs": [{"role": "node"}],
        "relabel_configs": [
            {"action": "labelmap", "regex": "__meta_kubernetes_node_label_(.+)"},
        ],
    })
}

/// `prometheus.yml` as a JSON document (YAML is a superset of JSON: the file is this document
/// written as JSON, which Prometheus reads as YAML).
pub fn document(ctx: &Context<'_>) -> Json {
    let ns = ctx.namespace();
    let own_namespace = json!([{"role": "pod", "namespaces": {"names": [ns]}}]);
    let mut jobs = vec![
        json!({"job_name": "prometheus", "static_configs": [{"targets": [format!("localhost:{PORT}")]}]}),
        kubelet_job("kubelet", "/metrics"),
        kubelet_job("cadvisor", "/metrics/cadvisor"),
    ];
    // Services and pods that ask for it with the usual annotations, anywhere in the cluster
    // (kube-state-metrics and the node exporter among them).
    let mut services = annotation_relabels("service");
    services.push(
        json!({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"}),
    );
    services.push(
        json!({"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"}),
    );
    jobs.push(
        json!({"job_name": "service-endpoints", "honor_labels": true,
        "kubernetes_sd_configs": [{"role": "endpointslice"}], "relabel_configs": services}),
    );
    let mut pods_relabel = annotation_relabels("pod");
    pods_relabel
        .push(json!({"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}));
    pods_relabel.push(
        json!({"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"}),
    );
    jobs.push(json!({"job_name": "pods", "honor_labels": true,
        "kubernetes_sd_configs": [{"role": "pod"}], "relabel_configs": pods_relabel}));
    // Traefik: its Prometheus metrics on the `traefik` entry point (`--metrics.prometheus`,
    // Traefik's default entry point for them), the ingress pod's port named `ping`.
    jobs.push(
        json!({"job_name": "traefik", "kubernetes_sd_configs": own_namespace,
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name",
                               "__meta_kubernetes_pod_container_port_name"],
             "action": "keep", "regex": format!("{};ping", super::super::ingress::NAME)},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ]}),
    );
    // JupyterHub's `/hub/metrics` (users, servers, spawn times) on the hub's Service, with the
    // API token of the hub service `monitoring`, whose role grants `read:metrics` (JupyterHub
    // 5 asks for it: `JupyterHub.authenticate_prometheus` defaults to true).
    jobs.push(json!({"job_name": "jupyterhub", "metrics_path": "/hub/metrics",
        "authorization": {"credentials_file": format!("{HUB_TOKEN_DIR}/{}", hub_token::KEY)},
        "static_configs": [{"targets": [format!("{}.{ns}.svc:{}", jupyterhub::HUB_SERVICE, jupyterhub::HUB_PORT)]}]}));
    // conda-store's `/metrics` under its prefix (conda-store-server 2025.2.2,
    // `_internal/server/views/metrics.py`, mounted when `enable_metrics`, the default; no
    // login), as QHub's successor nebari scrapes it.
    if super::super::find(conda_store::NAME).is_some_and(|c| c.enabled(ctx)) {
        jobs.push(json!({"job_name": "conda-store", "metrics_path": format!("{}/metrics", conda_store::PATH),
            "static_configs": [{"targets": [format!("{}.{ns}.svc:{}", conda_store::SERVER, conda_store::PORT)]}]}));
    }
    // Dask: dask-gateway-server 2026.3.0 serves no metrics (no such route in its `routes.py`);
    // each cluster's scheduler does, on its dashboard port 8787 (`distributed`'s
    // `/metrics`), labelled by the gateway's controller (`backends/kubernetes/controller.py`:
    // `app.kubernetes.io/component=dask-scheduler`, `gateway.dask.org/cluster`).
    jobs.push(json!({"job_name": "dask-schedulers", "kubernetes_sd_configs": own_namespace,
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
             "action": "keep", "regex": "dask-scheduler"},
            {"source_labels": ["__address__"], "action": "replace", "regex": "([^:]+)(?::\\d+)?",
             "replacement": "$1:8787", "target_label": "__address__"},
            {"source_labels": ["__meta_kubernetes_pod_label_gateway_dask_org_cluster"], "target_label": "cluster"},
        ]}));
    json!({
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "scrape_configs": jobs,
    })
}

/// The configuration file.
pub fn config_file(ctx: &Context<'_>) -> ConfigFile {
    let doc = document(ctx);
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string());
    text.push('\n');
    ConfigFile::new(CONFIG_MAP, FILE, text)
}

/// The server's objects: service account, RBAC, data claim, Deployment and Service.
pub fn objects(ctx: &Context<'_>) -> Result<Vec<Json>, KubeError> {
    let mut out = vec![manifest(&ServiceAccount {
        metadata: ctx.meta(NAME, SERVER),
        ..ServiceAccount::default()
    })?];
    out.extend(rbac::objects(ctx, SERVER, &rbac::PROMETHEUS)?);
    out.push(manifest(&PersistentVolumeClaim {
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
    })?);
    let mut container = pods::container(
        SERVER,
        versions::PROMETHEUS.reference(),
        pods::resources("200m", "1Gi", "4Gi"),
    );
    container.args = Some(vec![
        format!("--config.file={CONFIG_DIR}/{FILE}"),
        format!("--storage.tsdb.path={DATA_DIR}"),
        format!("--storage.tsdb.retention.time={RETENTION_TIME}"),
        format!("--storage.tsdb.retention.size={RETENTION_SIZE}"),
        format!("--web.listen-address=:{PORT}"),
    ]);
    container.ports = Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: PORT,
        ..ContainerPort::default()
    }]);
    container.readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/-/ready".into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    });
    container.volume_mounts = Some(vec![
        mount("config", CONFIG_DIR, true),
        mount("data", DATA_DIR, false),
        mount("hub-token", HUB_TOKEN_DIR, true),
    ]);
    let mut pod = PodSpec {
        service_account_name: Some(SERVER.into()),
        containers: vec![container],
        security_context: Some(pods::non_root_pod(UID)),
        volumes: Some(vec![
            pods::config_map_volume("config", CONFIG_MAP),
            pods::claim_volume("data", CLAIM),
            Volume {
                name: "hub-token".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(hub_token::SECRET.into()),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    // Recreate: the old pod lets go of the ReadWriteOnce volume first.
    let mut deployment = super::super::deployment(ctx, SERVER, pod, true);
    deployment.metadata = ctx.meta(NAME, SERVER);
    out.push(manifest(&deployment)?);
    out.push(manifest(&Service {
        metadata: ctx.meta(NAME, SERVER),
        spec: Some(ServiceSpec {
            selector: Some(selector(SERVER)),
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
    Ok(out)
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}
