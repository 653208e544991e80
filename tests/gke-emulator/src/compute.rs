//! The subset of the Compute Engine API (`compute/v1`) that qhub-gcp reads and GKE's rules
//! depend on: regions with their quotas, the project's quotas, machine types, accelerator
//! types per zone, networks and subnetworks, and the Persistent Disks a cluster's CSI driver
//! makes (which outlive the cluster, as on GKE).
//!
//! Routes (all under `/compute/v1/projects/P/`): `GET` (the project, with its global quotas),
//! `GET regions/R`, `GET zones/Z/machineTypes/M`, `GET aggregated/acceleratorTypes`,
//! `GET global/networks/N`, `GET regions/R/subnetworks/S`, `GET aggregated/disks`
//! (`filter=labels.KEY:*` honoured), `DELETE zones/Z/disks/D`, `GET zones/Z/operations/O`.
//! Errors are Compute's shape: `{"error": {"code", "message", "errors": [{"domain", "reason",
//! "message"}]}}`.
//!
//! The tables below are an illustrative subset of the real offer, each shaped after Compute
//! Engine's documentation ("GPU regions and zones availability",
//! <https://cloud.google.com/compute/docs/gpus/gpu-regions-zones>; "Machine families
//! resource and comparison guide"; "Allocation quotas",
//! <https://cloud.google.com/compute/resource-usage>).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// A Compute error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeError {
    /// HTTP status.
    pub code: u16,
    /// Compute's `reason` (`notFound`, `resourceInUseByAnotherResource`…).
    pub reason: &'static str,
    /// Human message.
    pub message: String,
}

impl ComputeError {
    /// A new error.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    /// 404 notFound, Compute's words: `The resource '…' was not found`.
    pub fn not_found(resource: &str) -> Self {
        Self::new(
            404,
            "notFound",
            format!("The resource '{resource}' was not found"),
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {
            "code": self.code,
            "message": self.message,
            "errors": [{"domain": "global", "reason": self.reason, "message": self.message}],
        }})
    }
}

/// True for a Compute Engine path (`/compute/v1/…`).
pub fn is_compute(segments: &[&str]) -> bool {
    matches!(segments, ["compute", "v1", ..])
}

/// vCPUs of a machine type (`guestCpus`), for the types the emulator knows.
pub fn guest_cpus(machine: &str) -> Option<u32> {
    match machine {
        "f1-micro" | "g1-small" => return Some(1),
        "e2-micro" | "e2-small" | "e2-medium" => return Some(2),
        _ => {}
    }
    let parts: Vec<&str> = machine.split('-').collect();
    match parts.as_slice() {
        [
            "n1" | "n2" | "n2d" | "e2" | "c2" | "c2d" | "c3" | "g2" | "t2d",
            "standard" | "highmem" | "highcpu",
            n,
        ] => n.parse().ok().filter(|n| *n > 0),
        // A2: 12 vCPUs per A100 (a2-highgpu-1g … 8g, a2-ultragpu-1g … 8g), megagpu-16g 96.
        ["a2", "highgpu" | "ultragpu", g] => g
            .strip_suffix('g')
            .and_then(|g| g.parse::<u32>().ok())
            .map(|g| 12 * g),
        ["a2", "megagpu", "16g"] => Some(96),
        // A3: 26 vCPUs per H100 (a3-highgpu-8g has 208).
        ["a3", "highgpu", g] => g
            .strip_suffix('g')
            .and_then(|g| g.parse::<u32>().ok())
            .map(|g| 26 * g),
        _ => None,
    }
}

/// The regional quota metric a machine type's vCPUs count against ("CPU quota": N1, E2 and
/// the shared-core types use `CPUS`; other families have their own metric).
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

/// The regional quota metric of an accelerator type.
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

/// The zones of `region` that offer `accelerator` (after the GPU regions and zones page; a
/// subset of regions).
pub fn accelerator_zones(region: &str, accelerator: &str) -> &'static [&'static str] {
    match (region, accelerator) {
        (
            "us-central1",
            "nvidia-tesla-t4" | "nvidia-tesla-v100" | "nvidia-tesla-a100" | "nvidia-a100-80gb",
        ) => &[
            "us-central1-a",
            "us-central1-b",
            "us-central1-c",
            "us-central1-f",
        ],
        ("us-central1", "nvidia-tesla-p4") => &["us-central1-a", "us-central1-c"],
        ("us-central1", "nvidia-tesla-p100") => &["us-central1-c", "us-central1-f"],
        ("us-central1", "nvidia-l4") => &["us-central1-a", "us-central1-b", "us-central1-c"],
        ("us-central1", "nvidia-h100-80gb") => &["us-central1-a", "us-central1-c"],
        ("us-east1", "nvidia-tesla-t4") => &["us-east1-c", "us-east1-d"],
        ("us-east1", "nvidia-tesla-p100") => &["us-east1-b", "us-east1-c"],
        ("us-west1", "nvidia-tesla-t4" | "nvidia-tesla-v100") => &["us-west1-a", "us-west1-b"],
        ("europe-west1", "nvidia-tesla-t4") => &["europe-west1-b", "europe-west1-c"],
        ("europe-west4", "nvidia-tesla-t4" | "nvidia-tesla-v100" | "nvidia-l4") => {
            &["europe-west4-a", "europe-west4-b", "europe-west4-c"]
        }
        ("asia-southeast1", "nvidia-tesla-t4") => &["asia-southeast1-b", "asia-southeast1-c"],
        _ => &[],
    }
}

/// A VPC network of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Name.
    pub name: String,
    /// Auto mode: a subnetwork named after the network in every region.
    pub auto_subnetworks: bool,
    /// Custom subnetworks: `(region, name)`.
    pub subnetworks: Vec<(String, String)>,
}

impl Network {
    /// The `default` network a new project gets (auto mode), unless an organisation policy
    /// (`constraints/compute.skipDefaultNetworkCreation`) or its owner removed it.
    pub fn default_auto() -> Self {
        Self {
            name: "default".into(),
            auto_subnetworks: true,
            subnetworks: Vec::new(),
        }
    }

    /// True when the network has subnetwork `name` in `region`.
    pub fn has_subnetwork(&self, region: &str, name: &str) -> bool {
        (self.auto_subnetworks && name == self.name && crate::state::zones_of(region).is_some())
            || self
                .subnetworks
                .iter()
                .any(|(r, n)| r == region && n == name)
    }
}

/// The default regional quota limits of a project (a new paid project's `CPUS` is 24: see
/// amygdala/tensorflow-workshop#13, "24 is the default quota for people not on the free
/// trial"; its GPU quotas are small).
pub fn default_quotas() -> BTreeMap<String, f64> {
    let mut q: BTreeMap<String, f64> = [
        ("CPUS", 24.0),
        ("N2_CPUS", 24.0),
        ("N2D_CPUS", 24.0),
        ("C2_CPUS", 24.0),
        ("A2_CPUS", 24.0),
        ("G2_CPUS", 24.0),
        ("IN_USE_ADDRESSES", 8.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for a in crate::state::ACCELERATORS {
        if let Some(m) = gpu_metric(a) {
            q.insert(m.to_string(), 4.0);
            q.insert(format!("PREEMPTIBLE_{m}"), 4.0);
        }
    }
    q
}

/// A project's global quota limits (`GPUS_ALL_REGIONS` is 0 in many new projects; the
/// emulator grants 4 unless a test lowers it).
pub fn default_global_quotas() -> BTreeMap<String, f64> {
    [("GPUS_ALL_REGIONS", 4.0), ("CPUS_ALL_REGIONS", 32.0)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The Compute state: what tests set (quotas, networks) and the disks.
#[derive(Debug, Default, Clone)]
pub struct Compute {
    /// Quota limits by `(project, region)`, overriding [`default_quotas`] per metric; the
    /// scope `global` holds project-wide limits ([`default_global_quotas`]).
    pub quotas: BTreeMap<(String, String), BTreeMap<String, f64>>,
    /// Networks by project; a project not listed has only [`Network::default_auto`].
    pub networks: BTreeMap<String, Vec<Network>>,
    /// Disks by `(project, zone, name)`.
    pub disks: BTreeMap<(String, String, String), Value>,
    /// Zonal operations by id: `(project, zone)`.
    pub operations: BTreeMap<String, (String, String, String)>,
    /// Operation counter.
    pub next_op: u64,
}

impl Compute {
    /// The quota limit of `metric` in `scope` (a region, or `global`).
    pub fn limit(&self, project: &str, scope: &str, metric: &str) -> Option<f64> {
        let set = self.quotas.get(&(project.to_string(), scope.to_string()));
        if let Some(v) = set.and_then(|s| s.get(metric)) {
            return Some(*v);
        }
        if scope == "global" {
            default_global_quotas().get(metric).copied()
        } else {
            default_quotas().get(metric).copied()
        }
    }

    /// Every metric of `scope` with its limit.
    pub fn limits(&self, project: &str, scope: &str) -> BTreeMap<String, f64> {
        let mut all = if scope == "global" {
            default_global_quotas()
        } else {
            default_quotas()
        };
        if let Some(set) = self.quotas.get(&(project.to_string(), scope.to_string())) {
            all.extend(set.iter().map(|(k, v)| (k.clone(), *v)));
        }
        all
    }

    /// The project's networks.
    pub fn networks_of(&self, project: &str) -> Vec<Network> {
        self.networks
            .get(project)
            .cloned()
            .unwrap_or_else(|| vec![Network::default_auto()])
    }

    /// The network `name` of `project`.
    pub fn network(&self, project: &str, name: &str) -> Option<Network> {
        self.networks_of(project)
            .into_iter()
            .find(|n| n.name == name)
    }

    fn start_op(&mut self, project: &str, zone: &str, kind: &str, target: &str) -> Value {
        self.next_op += 1;
        let id = format!("operation-{}-disk", 1_800_000_000_000u64 + self.next_op);
        self.operations.insert(
            id.clone(),
            (project.to_string(), zone.to_string(), target.to_string()),
        );
        // Disk deletes are quick: the operation is DONE when first read, as Compute often is.
        json!({
            "kind": "compute#operation",
            "name": id,
            "operationType": kind,
            "status": "DONE",
            "progress": 100,
            "zone": format!("https://www.googleapis.com/compute/v1/projects/{project}/zones/{zone}"),
            "targetLink": target,
        })
    }

    /// `DELETE zones/Z/disks/D`: refused while a VM of a running cluster uses it.
    pub fn delete_disk(
        &mut self,
        project: &str,
        zone: &str,
        name: &str,
        in_use: bool,
    ) -> Result<Value, ComputeError> {
        let key = (project.to_string(), zone.to_string(), name.to_string());
        let link = format!("projects/{project}/zones/{zone}/disks/{name}");
        if !self.disks.contains_key(&key) {
            return Err(ComputeError::not_found(&link));
        }
        if in_use {
            // Compute refuses to delete an attached disk.
            return Err(ComputeError::new(
                400,
                "resourceInUseByAnotherResource",
                format!(
                    "The disk resource '{link}' is already being used by 'projects/{project}/zones/{zone}/instances/gke-node'"
                ),
            ));
        }
        self.disks.remove(&key);
        Ok(self.start_op(
            project,
            zone,
            "delete",
            &format!("https://www.googleapis.com/compute/v1/{link}"),
        ))
    }

    /// `GET aggregated/disks`, honouring a `labels.KEY:*` filter.
    pub fn aggregated_disks(&self, project: &str, filter: Option<&str>) -> Value {
        let has_label = filter
            .and_then(|f| f.trim().strip_prefix("labels."))
            .and_then(|f| f.strip_suffix(":*"))
            .map(str::trim);
        let mut items: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for ((p, zone, _), d) in &self.disks {
            if p != project {
                continue;
            }
            if let Some(key) = has_label
                && d["labels"].get(key).is_none()
            {
                continue;
            }
            items
                .entry(format!("zones/{zone}"))
                .or_default()
                .push(d.clone());
        }
        let items: serde_json::Map<String, Value> = items
            .into_iter()
            .map(|(k, v)| (k, json!({"disks": v})))
            .collect();
        json!({"kind": "compute#diskAggregatedList", "items": items})
    }
}
