//! The exporters Prometheus scrapes besides the platform's own services: kube-state-metrics
//! (the state of Kubernetes objects) and the node exporter (one pod per node).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    ContainerPort, HTTPGetAction, HostPathVolumeSource, PodSpec, Probe, Service, ServiceAccount,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value as Json;

use super::super::{Context, KubeError, manifest, pod_selector, rbac, selector};
use super::NAME;
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::versions;

/// kube-state-metrics' Deployment, Service and service account.
pub const KUBE_STATE_METRICS: &str = rbac::KUBE_STATE_METRICS.service_account;
/// The node exporter's DaemonSet and service account (in the privileged namespace).
pub const NODE_EXPORTER: &str = rbac::NODE_EXPORTER.service_account;
/// The node exporter's port (on the node's network).
pub const NODE_EXPORTER_PORT: i32 = 9100;
/// kube-state-metrics' metrics port.
const KSM_PORT: i32 = 8080;
/// Its own health port (`telemetry`).
const KSM_TELEMETRY_PORT: i32 = 8081;
/// `nobody`, the user both images run as.
const UID: i64 = 65534;

/// The annotations asking Prometheus to scrape on `port` (its `service-endpoints` and `pods`
/// jobs).
fn scrape_annotations(port: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), port.to_string()),
    ])
}

/// kube-state-metrics, after kubernetes/kube-state-metrics v2.20.0 `examples/standard/`
/// (Deployment, Service, service account, cluster role), with `--resources` narrowed to what
/// [`rbac::KUBE_STATE_METRICS`] grants and the pod labels the dashboards group by
/// (`--metric-labels-allowlist`, as nebari's values do: the hub's user label, the components
/// of JupyterHub and Dask Gateway pods, a Dask cluster's name).
pub fn kube_state_metrics(ctx: &Context<'_>) -> Result<Vec<Json>, KubeError> {
    let mut out = vec![manifest(&ServiceAccount {
        metadata: ctx.meta(NAME, KUBE_STATE_METRICS),
        ..ServiceAccount::default()
    })?];
    out.extend(rbac::objects(
        ctx,
        KUBE_STATE_METRICS,
        &rbac::KUBE_STATE_METRICS,
    )?);
    let mut container = pods::container(
        KUBE_STATE_METRICS,
        versions::KUBE_STATE_METRICS.reference(),
        pods::resources("50m", "128Mi", "512Mi"),
    );
    container.args = Some(vec![
        format!("--resources={}", rbac::KUBE_STATE_METRICS_RESOURCES),
        "--metric-labels-allowlist=pods=[app,component,hub.jupyter.org/username,app.kubernetes.io/component,gateway.dask.org/cluster]".into(),
        format!("--port={KSM_PORT}"),
        format!("--telemetry-port={KSM_TELEMETRY_PORT}"),
    ]);
    container.ports = Some(vec![
        ContainerPort {
            name: Some("http-metrics".into()),
            container_port: KSM_PORT,
            ..ContainerPort::default()
        },
        ContainerPort {
            name: Some("telemetry".into()),
            container_port: KSM_TELEMETRY_PORT,
            ..ContainerPort::default()
        },
    ]);
    container.readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/readyz".into()),
            port: IntOrString::String("telemetry".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(5),
        timeout_seconds: Some(5),
        ..Probe::default()
    });
    container.liveness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/livez".into()),
            port: IntOrString::String("http-metrics".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(5),
        timeout_seconds: Some(5),
        ..Probe::default()
    });
    let mut pod = PodSpec {
        service_account_name: Some(KUBE_STATE_METRICS.into()),
        containers: vec![container],
        security_context: Some(pods::non_root_pod(UID)),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    let mut deployment = super::super::deployment(ctx, KUBE_STATE_METRICS, pod, false);
    deployment.metadata = ctx.meta(NAME, KUBE_STATE_METRICS);
    out.push(manifest(&deployment)?);
    out.push(manifest(&Service {
        metadata: ObjectMeta {
            annotations: Some(scrape_annotations(KSM_PORT)),
            ..ctx.meta(NAME, KUBE_STATE_METRICS)
        },
        spec: Some(ServiceSpec {
            selector: Some(selector(KUBE_STATE_METRICS)),
            ports: Some(vec![ServicePort {
                name: Some("http-metrics".into()),
                port: KSM_PORT,
                target_port: Some(IntOrString::String("http-metrics".into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })?);
    Ok(out)
}

fn host_path(name: &str, path: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: name.into(),
            host_path: Some(HostPathVolumeSource {
                path: path.into(),
                type_: None,
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: name.into(),
            mount_path: format!("/host{}", if path == "/" { "/root" } else { path }),
            read_only: Some(true),
            mount_propagation: (path == "/").then(|| "HostToContainer".to_string()),
            ..VolumeMount::default()
        },
    )
}

/// The node exporter on every node, whatever its taints (GPU nodes included), after the
/// prometheus-community chart `prometheus-node-exporter` (`templates/daemonset.yaml`: host
/// network and PID namespace, `/proc`, `/sys` and `/` of the host read-only). Those are
/// refused by the platform namespace's `restricted` level: it runs in the privileged
/// namespace. Its pods carry the scrape annotations; no Service (each pod is a target).
pub fn node_exporter(ctx: &Context<'_>) -> Result<Vec<Json>, KubeError> {
    let account = manifest(&ServiceAccount {
        metadata: ctx.privileged_meta(NAME, NODE_EXPORTER),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    })?;
    let mounts = [
        host_path("proc", "/proc"),
        host_path("sys", "/sys"),
        host_path("root", "/"),
    ];
    let mut container = pods::container(
        NODE_EXPORTER,
        versions::NODE_EXPORTER.reference(),
        pods::resources("20m", "32Mi", "128Mi"),
    );
    container.args = Some(vec![
        "--path.procfs=/host/proc".into(),
        "--path.sysfs=/host/sys".into(),
        "--path.rootfs=/host/root".into(),
        format!("--web.listen-address=:{NODE_EXPORTER_PORT}"),
        // Container runtimes' mounts are not node filesystems.
        "--collector.filesystem.mount-points-exclude=^/(dev|proc|sys|var/lib/docker/.+|var/lib/kubelet/.+|run/containerd/.+)($|/)".into(),
    ]);
    container.ports = Some(vec![ContainerPort {
        name: Some("metrics".into()),
        container_port: NODE_EXPORTER_PORT,
        host_port: Some(NODE_EXPORTER_PORT),
        ..ContainerPort::default()
    }]);
    container.readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/".into()),
            port: IntOrString::String("metrics".into()),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    });
    container.volume_mounts = Some(mounts.iter().map(|(_, m)| m.clone()).collect());
    let mut pod = PodSpec {
        service_account_name: Some(NODE_EXPORTER.into()),
        automount_service_account_token: Some(false),
        host_network: Some(true),
        host_pid: Some(true),
        containers: vec![container],
        security_context: Some(pods::non_root_pod(UID)),
        volumes: Some(mounts.into_iter().map(|(v, _)| v).collect()),
        ..PodSpec::default()
    };
    Placement::everywhere().place(&mut pod);
    let mut template = super::super::pod_template(NODE_EXPORTER, pod);
    if let Some(meta) = template.metadata.as_mut() {
        meta.annotations = Some(scrape_annotations(NODE_EXPORTER_PORT));
    }
    let set = DaemonSet {
        metadata: ctx.privileged_meta(NAME, NODE_EXPORTER),
        spec: Some(DaemonSetSpec {
            selector: pod_selector(NODE_EXPORTER),
            template,
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    };
    Ok(vec![account, manifest(&set)?])
}
