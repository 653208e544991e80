//! A small static welcome page (nginx serving the theme's title and welcome text): the first
//! component, which proves the apply path (ConfigMap, Deployment rollout, Service) end to end.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, PodSpec, PodTemplateSpec, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value as Json;

use super::{KubeError, labels, manifest};
use crate::config::Config;
use crate::provider::ClusterFacts;
use crate::provider::facts::SharedFilesystem;

/// The component's name.
pub const NAME: &str = "qhub-welcome";
/// The image serving the page (unprivileged nginx listens on 8080).
pub const IMAGE: &str = "nginxinc/nginx-unprivileged:1.27-alpine";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The ConfigMap with the page, the Deployment serving it and its Service.
pub fn manifests(config: &Config, facts: &ClusterFacts) -> Result<Vec<Json>, KubeError> {
    let ns = Some(config.namespace.clone());
    let text = |key: &str, default: &str| {
        config
            .theme
            .jupyterhub
            .get(key)
            .and_then(Json::as_str)
            .unwrap_or(default)
            .to_string()
    };
    // Where home directories will live: a fact of the infrastructure (an EFS or NFS address
    // exists only once the infrastructure does), shown so that a producer can check it.
    let storage = facts.shared_filesystem.or_placeholder(|fs| match fs {
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
    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_string()),
        namespace: ns.clone(),
        labels: Some(labels(NAME)),
        ..ObjectMeta::default()
    };
    let selector: BTreeMap<String, String> =
        BTreeMap::from([("app.kubernetes.io/name".to_string(), NAME.to_string())]);
    let page_map = ConfigMap {
        metadata: meta(NAME),
        data: Some(BTreeMap::from([("index.html".to_string(), page)])),
        ..ConfigMap::default()
    };
    let deployment = Deployment {
        metadata: meta(NAME),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(NAME)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    // The `general` group, under the label this cluster puts on it; a cluster
                    // without one (an `existing` cluster with no selector) schedules anywhere.
                    node_selector: facts.node_selector.for_group("general"),
                    containers: vec![Container {
                        name: "nginx".into(),
                        image: Some(IMAGE.into()),
                        ports: Some(vec![ContainerPort {
                            container_port: 8080,
                            name: Some("http".into()),
                            ..ContainerPort::default()
                        }]),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "page".into(),
                            mount_path: "/usr/share/nginx/html".into(),
                            read_only: Some(true),
                            ..VolumeMount::default()
                        }]),
                        ..Container::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "page".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: NAME.into(),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    let service = Service {
        metadata: meta(NAME),
        spec: Some(ServiceSpec {
            selector: Some(selector),
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
    Ok(vec![
        manifest(&page_map)?,
        manifest(&deployment)?,
        manifest(&service)?,
    ])
}
