//! Checks before any change: the project is reachable with these credentials, the region and
//! zones are valid, the Kubernetes version is offered in the release channel, node groups are
//! valid GKE node pools, accelerators are requested only on machine types that take them and
//! in zones that offer them ([`check_zones`]), and the groups fit the project's quotas
//! ([`check_capacity`]). Every problem is reported at once, each named by its config key.

use std::collections::BTreeMap;

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
        if let Err(e) = desired::pool_spec(name, group, None) {
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

/// The zones each group's pool may use ([`desired::candidate_zones`]): a GPU group with no
/// zone offering its accelerator is named with the accelerator.
pub fn check_zones(config: &Config, facts: &ServerFacts, problems: &mut Vec<String>) {
    let Ok(s) = desired::section(config) else {
        return;
    };
    for (name, group) in &s.node_groups {
        let zones = desired::candidate_zones(s, group, Some(facts));
        if let Err(e) = desired::pool_spec(name, group, zones.as_deref()) {
            problems.push(e.to_string());
        }
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

/// The regional quota metric a machine type's vCPUs count against: `CPUS` for N1, E2 and the
/// shared-core types, a family metric for the others (Compute Engine "Allocation quotas",
/// <https://cloud.google.com/compute/resource-usage>: "CPUs … N2 CPUs … C2 CPUs …").
pub fn cpu_metric(machine: &str) -> &'static str {
    match machine.split('-').next().unwrap_or("") {
        "n2" => "N2_CPUS",
        "n2d" => "N2D_CPUS",
        "c2" => "C2_CPUS",
        "c2d" => "C2D_CPUS",
        "c3" => "C3_CPUS",
        "a2" => "A2_CPUS",
        "g2" => "G2_CPUS",
        "a3" => "A3_CPUS",
        _ => "CPUS",
    }
}

/// The regional quota metric of an accelerator type (Compute Engine "GPU quota": one metric
/// per model, `PREEMPTIBLE_…` for spot and preemptible VMs).
pub fn gpu_metric(accelerator: &str) -> Option<&'static str> {
    Some(match accelerator {
        "nvidia-tesla-t4" => "NVIDIA_T4_GPUS",
        "nvidia-tesla-v100" => "NVIDIA_V100_GPUS",
        "nvidia-tesla-p100" => "NVIDIA_P100_GPUS",
        "nvidia-tesla-p4" => "NVIDIA_P4_GPUS",
        "nvidia-tesla-a100" => "NVIDIA_A100_GPUS",
        "nvidia-a100-80gb" => "NVIDIA_A100_80GB_GPUS",
        "nvidia-l4" => "NVIDIA_L4_GPUS",
        "nvidia-h100-80gb" => "NVIDIA_H100_GPUS",
        _ => return None,
    })
}

/// The project-wide quota of all GPUs ("GPUs (all regions)", 0 in many new projects).
pub const GPUS_ALL_REGIONS: &str = "GPUS_ALL_REGIONS";

/// What preflight learnt from Compute Engine for the capacity checks.
#[derive(Debug, Clone, Default)]
pub struct Capacity {
    /// The region: its zones and quotas (`regions.get`).
    pub region: crate::compute::Region,
    /// The project's global quotas (`projects.get`); read only when a group asks for GPUs.
    pub global: BTreeMap<String, crate::compute::Quota>,
    /// vCPUs of each machine type the groups use, with the zone it was looked up in
    /// (`machineTypes.get` in the group's first zone); `None`: not offered there.
    pub cpus: BTreeMap<String, (String, Option<u32>)>,
    /// True when the deployment's cluster exists already (its nodes are in the usage).
    pub cluster_exists: bool,
    /// The Compute Engine default service account, the nodes' identity (`projects.get`).
    pub node_service_account: Option<String>,
}

/// The roles that let the nodes' service account do what GKE nodes need (write logs and
/// metrics, read images): the dedicated `roles/container.defaultNodeServiceAccount`, or the
/// Editor (or Owner) role the default service account gets where automatic grants are on
/// (GKE docs, "Use least privilege service accounts for your nodes").
pub const NODE_ROLES: &[&str] = &[
    "roles/container.defaultNodeServiceAccount",
    "roles/editor",
    "roles/owner",
];

/// Warns when the nodes' service account holds none of [`NODE_ROLES`] in the project's IAM
/// `policy` (`None`: the policy could not be read), naming the gcloud step that grants it.
pub fn check_node_service_account(
    project: &str,
    account: Option<&str>,
    policy: Option<&serde_json::Value>,
    warnings: &mut Vec<String>,
) {
    let Some(account) = account else {
        return;
    };
    let Some(policy) = policy else {
        warnings.push(format!(
            "could not read the IAM policy of project {project} (resourcemanager.projects.getIamPolicy) to check that the nodes' service account {account} holds roles/container.defaultNodeServiceAccount"
        ));
        return;
    };
    let member = format!("serviceAccount:{account}");
    let held = policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|b| {
            b["role"].as_str().is_some_and(|r| NODE_ROLES.contains(&r))
                && b["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|x| x.as_str() == Some(member.as_str())))
        });
    if !held {
        warnings.push(format!(
            "the nodes' service account {account} (the Compute Engine default) holds neither roles/container.defaultNodeServiceAccount nor Editor in project {project} (automatic role grants are off in this organisation): nodes cannot write logs and metrics; grant it with `gcloud projects add-iam-policy-binding {project} --member=serviceAccount:{account} --role=roles/container.defaultNodeServiceAccount`"
        ));
    }
}

/// One quota's demand: the groups' minimum and maximum, and who asks.
#[derive(Debug, Default)]
struct Demand {
    min: f64,
    max: f64,
    /// Each group with what one of its nodes takes.
    groups: Vec<(String, f64)>,
}

/// The Cloud Quotas id of a Compute metric (`CPUS` → `CPUS-per-project-region`,
/// `GPUS_ALL_REGIONS` → `GPUS-ALL-REGIONS-per-project`), as `gcloud quotas preferences create
/// --quota-id` takes it (Cloud Quotas docs; Terraform's `google_cloud_quotas_quota_preference`
/// example names `CPUS-per-project-region`).
fn quota_id(metric: &str, global: bool) -> String {
    let id = metric.replace('_', "-");
    if global {
        format!("{id}-per-project")
    } else {
        format!("{id}-per-project-region")
    }
}

/// How to raise `metric` to `wanted`: the console page and the gcloud command.
fn raise(project: &str, region: &str, metric: &str, global: bool, wanted: f64) -> String {
    let dims = if global {
        String::new()
    } else {
        format!(" --dimensions=region={region}")
    };
    format!(
        "raise it in the console (https://console.cloud.google.com/iam-admin/quotas?project={project}, filter \"{metric}\"{}) or with `gcloud quotas preferences create --service=compute.googleapis.com --quota-id={} --preferred-value={} --project={project}{dims} --email=YOU@EXAMPLE.COM`",
        if global {
            String::new()
        } else {
            format!(" in {region}")
        },
        quota_id(metric, global),
        wanted.ceil()
    )
}

/// Checks the groups against the project's quotas: a group whose one node exceeds a quota's
/// limit can never run (a problem: a new project's GPU quotas are often 0), the minimum of
/// all groups must fit what is free on a first deploy (a problem: GKE refuses the create,
/// `Insufficient regional quota to satisfy request`), and the maximum should fit (a warning:
/// the autoscaler stops short). Machine types the zone does not offer are problems too.
pub fn check_capacity(
    config: &Config,
    cap: &Capacity,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let Ok(s) = desired::section(config) else {
        return;
    };
    let (project, region) = (s.project.as_str(), s.region.as_str());
    // (global?, metric) -> demand.
    let mut demand: BTreeMap<(bool, String), Demand> = BTreeMap::new();
    let regional = |m: &str| cap.region.quotas.get(m).is_some_and(|q| q.limit > 0.0);
    for (name, group) in &s.node_groups {
        let at = format!("google_cloud_platform.node_groups.{name}");
        let Some((zone, cpus)) = cap.cpus.get(&group.instance) else {
            continue;
        };
        let Some(cpus) = *cpus else {
            problems.push(format!(
                "{at}.instance: machine type {} is not offered in zone {zone} (see `gcloud compute machine-types list --filter=\"zone:{zone}\"`)",
                group.instance
            ));
            continue;
        };
        let spot = group.extra.get("spot").and_then(serde_json::Value::as_bool) == Some(true)
            || group
                .extra
                .get("preemptible")
                .and_then(serde_json::Value::as_bool)
                == Some(true);
        let mut add = |global: bool, metric: String, per_node: f64| {
            let d = demand.entry((global, metric)).or_default();
            d.min += per_node * f64::from(group.min_nodes);
            d.max += per_node * f64::from(group.max_nodes);
            d.groups.push((name.clone(), per_node));
        };
        // Spot and preemptible VMs use the PREEMPTIBLE_ quotas where the project has them,
        // else the standard ones (Compute Engine "Preemptible quotas").
        let cpu = cpu_metric(&group.instance);
        let cpu = if spot && regional(&format!("PREEMPTIBLE_{cpu}")) {
            format!("PREEMPTIBLE_{cpu}")
        } else {
            cpu.to_string()
        };
        add(false, cpu, f64::from(cpus));
        for a in &group.guest_accelerators {
            let Some(metric) = gpu_metric(&a.name) else {
                continue;
            };
            let metric = if spot && regional(&format!("PREEMPTIBLE_{metric}")) {
                format!("PREEMPTIBLE_{metric}")
            } else {
                metric.to_string()
            };
            add(false, metric, f64::from(a.count));
            add(true, GPUS_ALL_REGIONS.to_string(), f64::from(a.count));
        }
    }
    for ((global, metric), d) in &demand {
        let quota = if *global {
            cap.global.get(metric)
        } else {
            cap.region.quotas.get(metric)
        };
        let Some(q) = quota else {
            continue;
        };
        let scope = if *global {
            format!("project {project}")
        } else {
            format!("{region} (project {project})")
        };
        let keys = |groups: &mut dyn Iterator<Item = &(String, f64)>| {
            groups
                .map(|(g, _)| format!("google_cloud_platform.node_groups.{g}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let groups = keys(&mut d.groups.iter());
        let free = (q.limit - q.usage).max(0.0);
        let too_big: Vec<&(String, f64)> = d.groups.iter().filter(|(_, n)| *n > q.limit).collect();
        if let Some(biggest) = too_big.iter().map(|(_, n)| *n).reduce(f64::max) {
            problems.push(format!(
                "{}: one node needs {biggest} of quota {metric} in {scope}, whose limit is {}: the group can never run a node; {}",
                keys(&mut too_big.into_iter()),
                q.limit,
                raise(project, region, metric, *global, d.max.max(biggest))
            ));
        } else if !cap.cluster_exists && d.min > free {
            problems.push(format!(
                "{groups}: the minimum node counts need {} of quota {metric} in {scope}, and {free} of its {} is free: GKE would refuse the cluster; lower min_nodes, or {}",
                d.min,
                q.limit,
                raise(project, region, metric, *global, q.usage + d.max)
            ));
        } else if d.max > if cap.cluster_exists { q.limit } else { free } {
            warnings.push(format!(
                "{groups}: the maximum node counts need {} of quota {metric} in {scope}, more than the {} {}: the autoscaler will stop short; {}",
                d.max,
                if cap.cluster_exists { q.limit } else { free },
                if cap.cluster_exists { "it allows" } else { "free" },
                raise(project, region, metric, *global, q.usage + d.max)
            ));
        }
    }
}

/// The project and name of a network or subnetwork reference: a name lives in `project`; a
/// Shared VPC path (`projects/HOST/…/NAME`) in its host project; none at all is `default`.
pub fn reference(project: &str, value: Option<&str>, default: &str) -> (String, String) {
    match value.filter(|v| !v.is_empty()) {
        None => (project.to_string(), default.to_string()),
        Some(v) => {
            let parts: Vec<&str> = v.split('/').collect();
            match parts.as_slice() {
                ["projects", host, .., name] => ((*host).to_string(), (*name).to_string()),
                _ => (project.to_string(), v.to_string()),
            }
        }
    }
}

/// What is wrong with the cluster's network: `network` is `(project, name, exists)`;
/// `subnetwork`, when the config names one, `(name, the network it belongs to if it exists)`.
/// GKE refuses a cluster in a network that does not exist (`Project "P" has no network named
/// "default".`, kubeflow/examples#537); many organisations delete the `default` network or
/// never get one (the organisation policy `constraints/compute.skipDefaultNetworkCreation`).
pub fn network_problems(
    config: &Config,
    network: (&str, &str, bool),
    subnetwork: Option<(&str, Option<&str>)>,
) -> Vec<String> {
    let Ok(s) = desired::section(config) else {
        return Vec::new();
    };
    let (net_project, name, exists) = network;
    let mut problems = Vec::new();
    if !exists {
        if s.network.as_deref().is_none_or(str::is_empty) {
            problems.push(format!(
                "google_cloud_platform.network: project {net_project} has no network named \"default\", where GKE puts a cluster by default (it was deleted, or never made because the organisation policy constraints/compute.skipDefaultNetworkCreation is on); create it with `gcloud compute networks create default --subnet-mode=auto --project={net_project}`, or set google_cloud_platform.network (and subnetwork) to an existing VPC (`gcloud compute networks list --project={net_project}`)"
            ));
        } else {
            problems.push(format!(
                "google_cloud_platform.network: network {name} does not exist in project {net_project} (see `gcloud compute networks list --project={net_project}`)"
            ));
        }
        return problems;
    }
    if let Some((sub, of)) = subnetwork {
        match of {
            None => problems.push(format!(
                "google_cloud_platform.subnetwork: subnetwork {sub} does not exist in region {} (see `gcloud compute networks subnets list --regions={} --project={net_project}`)",
                s.region, s.region
            )),
            Some(of) if of != name => problems.push(format!(
                "google_cloud_platform.subnetwork: subnetwork {sub} belongs to network {of}, not to {name} (google_cloud_platform.network)"
            )),
            Some(_) => {}
        }
    }
    problems
}
