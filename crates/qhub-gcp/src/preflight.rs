//! Checks before any change: the project is reachable with these credentials, the region and
//! zones are valid, the Kubernetes version is offered in the release channel, node groups are
//! valid GKE node pools and accelerators are requested only on machine types that take them.
//! Every problem is reported at once, each named by its config key.

use qhub_core::config::Config;
use qhub_core::provider::{Preflight, ProviderError};

use crate::desired::{self, NODE_GROUP_KEYS, ServerFacts};
use crate::errors::{Class, GcpError};

/// The machine series each accelerator attaches to (GKE GPU docs: T4/V100/P100/P4 on N1, A100
/// 40GB on A2 high-GPU, A100 80GB on A2 ultra-GPU, L4 on G2, H100 on A3).
pub fn machine_series(accelerator: &str) -> Option<&'static [&'static str]> {
    Some(match accelerator {
        "nvidia-tesla-t4" | "nvidia-tesla-v100" | "nvidia-tesla-p100" | "nvidia-tesla-p4" => {
            &["n1-"]
        }
        "nvidia-tesla-a100" => &["a2-highgpu-", "a2-megagpu-"],
        "nvidia-a100-80gb" => &["a2-ultragpu-"],
        "nvidia-l4" => &["g2-"],
        "nvidia-h100-80gb" | "nvidia-h100-mega-80gb" => &["a3-"],
        _ => return None,
    })
}

/// The problems and warnings the config alone shows.
pub fn check_config(config: &Config, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
    let s = match desired::section(config) {
        Ok(s) => s,
        Err(e) => {
            problems.push(e.to_string());
            return;
        }
    };
    if s.project.trim().is_empty() {
        problems.push("google_cloud_platform.project: a GCP project id is required".into());
    }
    let cluster = desired::cluster_name(&qhub_core::provider::Ownership::of(config));
    if !desired::valid_name(&cluster) {
        problems.push(format!(
            "project_name: the GKE cluster name {cluster:?} ({{project_name}}-{{namespace}}) must be 1-40 lowercase letters, digits and hyphens"
        ));
    }
    if let Err(e) = desired::cluster_spec(config, None) {
        problems.push(e.to_string());
    }
    if s.zone.is_some() {
        warnings.push(
            "google_cloud_platform.zone is deprecated and ignored; the cluster is regional (use availability_zones to pick node zones)".into(),
        );
    }
    for (name, group) in &s.node_groups {
        let at = format!("google_cloud_platform.node_groups.{name}");
        if let Err(e) = desired::pool_spec(name, group) {
            problems.push(e.to_string());
        }
        for key in group.extra.keys() {
            if !NODE_GROUP_KEYS.contains(&key.as_str()) {
                warnings.push(format!(
                    "{at}.{key}: not a GKE node pool setting; ignored (known: {})",
                    NODE_GROUP_KEYS.join(", ")
                ));
            }
        }
        if group.gpu && group.guest_accelerators.is_empty() {
            warnings.push(format!(
                "{at}.gpu: on GCP a node pool gets GPUs from guest_accelerators; `gpu: true` alone adds none"
            ));
        }
        for (i, a) in group.guest_accelerators.iter().enumerate() {
            let key = format!("{at}.guest_accelerators[{i}].name");
            match machine_series(&a.name) {
                None => problems.push(format!(
                    "{key}: unknown accelerator type {:?} (e.g. nvidia-tesla-t4, nvidia-l4, nvidia-tesla-a100)",
                    a.name
                )),
                Some(series) if !series.iter().any(|p| group.instance.starts_with(p)) => {
                    problems.push(format!(
                        "{key}: {} cannot be attached to {} ({at}.instance); it needs a {} machine type",
                        a.name,
                        group.instance,
                        series.join(" or ").trim_end_matches('-')
                    ));
                }
                Some(_) => {}
            }
        }
    }
}

/// The problem GKE's answer to `getServerConfig` shows, named by its key.
pub fn reachability_problem(project: &str, region: &str, e: &GcpError) -> Option<String> {
    match e.class() {
        Class::Unauthorized => Some(format!(
            "google_cloud_platform.project: project {project} is not reachable with these credentials ({e})"
        )),
        Class::NotFound => Some(format!(
            "google_cloud_platform.project: project {project} does not exist ({e})"
        )),
        Class::Fatal => Some(format!(
            "google_cloud_platform.region: GKE refuses region {region} ({e})"
        )),
        _ => None,
    }
}

/// The version check against what GKE offers.
pub fn check_version(config: &Config, facts: &ServerFacts, problems: &mut Vec<String>) {
    if let Err(e) = desired::cluster_spec(config, Some(facts)) {
        problems.push(e.to_string());
    }
}

/// The outcome: warnings, or every problem at once.
pub fn finish(problems: Vec<String>, warnings: Vec<String>) -> Result<Preflight, ProviderError> {
    if problems.is_empty() {
        Ok(Preflight { warnings })
    } else {
        Err(ProviderError::Fatal(format!(
            "the GCP preflight found {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        )))
    }
}
