//! The infrastructure a `google_cloud_platform` section wants, as plain functions of the
//! config (and of the versions GKE offers, [`ServerFacts`]).
//!
//! - `cluster/<project>-<namespace>`: a **regional** cluster in `project`/`region`
//!   (`availability_zones`, when given, are its node locations; `network`/`subnetwork`, when
//!   given, its VPC), at `kubernetes_version`
//!   resolved to the newest GKE version of that minor in the release channel, with the
//!   deployment's ownership as resource labels (GCP label syntax).
//! - `node_pool/<project>-<namespace>-<group>`: one node pool per config group, named after the
//!   group: machine type, autoscaling `min_nodes..max_nodes` as the pool's **totals** (0
//!   allowed: GKE's own autoscaler scales from zero), its zones ([`pool_locations`]: pinned so
//!   it starts exactly `min_nodes`; a GPU pool only where its GPU is, [`candidate_zones`]), the label `qhub.dev/node-group=<group>` that the platform selects the
//!   pool by, `guest_accelerators` with GKE's driver installation and the GPU taint,
//!   `preemptible`/`spot`, auto-repair and auto-upgrade on. Pools are created with the cluster
//!   (`created_with`: one operation instead of one per pool) and every resource is in the serial
//!   group `cluster/<name>`: GKE runs one operation per cluster at a time.
//!
//! The spec compares what can be observed: the version as `MAJOR.MINOR` (GKE upgrades patches
//! by itself, which is no drift), the node locations only when the config names them.

use std::collections::BTreeMap;
use std::time::Duration;

use qhub_core::config::{Config, GcpSection, NodeGroup};
use qhub_core::plan::{Resource, ResourceId, Stage};
use qhub_core::provider::Ownership;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::errors::{GcpError, Result};

/// The resource kind of the cluster.
pub const CLUSTER: &str = "cluster";
/// The resource kind of a node pool.
pub const NODE_POOL: &str = "node_pool";
/// The resource kind of a Persistent Disk a PersistentVolumeClaim left (observed and deleted
/// only: [`crate::apply::disk`]).
pub const DISK: &str = "disk";
/// The node label every pool carries, valued with its config group: what the platform's
/// node selectors use.
pub const NODE_GROUP_LABEL: &str = qhub_core::provider::facts::NODE_GROUP_LABEL;
/// The GPU resource the NVIDIA device plugin exposes (GKE installs it with the driver).
pub const GPU_RESOURCE: &str = qhub_core::provider::facts::GPU_RESOURCE;
/// The taint GKE puts on GPU nodes when the cluster also has non-GPU pools ("GKE
/// automatically taints the GPU nodes … Key: nvidia.com/gpu, Effect: NoSchedule", GKE GPU
/// docs); we set it explicitly so it holds whatever pools the cluster has.
pub const GPU_TAINT: (&str, &str, &str) = ("nvidia.com/gpu", "present", "NO_SCHEDULE");
/// The storage class of GKE's Persistent Disk CSI driver (balanced PD, ReadWriteOnce).
pub const STORAGE_CLASS: &str = "standard-rwo";

/// Extra node-group keys this provider understands (beyond `instance`, `min_nodes`,
/// `max_nodes`, `guest_accelerators`).
pub const NODE_GROUP_KEYS: &[&str] = &["preemptible", "spot", "disk_size_gb", "image_type"];

/// Real durations (REFERENCE.md §4: a GKE cluster 5–10 minutes, node pools minutes).
pub const CLUSTER_CREATE: Duration = Duration::from_secs(420);
/// See [`CLUSTER_CREATE`].
pub const POOL_CREATE: Duration = Duration::from_secs(150);

/// What GKE offers in a location (`getServerConfig`), as `desired` needs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerFacts {
    /// The default version.
    pub default_version: String,
    /// Every master version, as GKE lists them (newest first).
    pub master_versions: Vec<String>,
    /// Valid versions per release channel name (`REGULAR`…).
    pub channels: BTreeMap<String, Vec<String>>,
    /// The control plane version of the deployment's cluster, when it exists. GKE upgrades
    /// clusters by itself (release channels; end of life for the rest), so a cluster ahead of
    /// `kubernetes_version` is not drift: the config's version is a minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_version: Option<String>,
    /// The region's zones (Compute Engine `regions.get`), sorted; empty when unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// For each accelerator type the config asks for, the zones of the region that offer it
    /// (Compute Engine `acceleratorTypes.aggregatedList`); a type missing from the map is
    /// offered in none. `None`: not asked (no GPU group, or facts from elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator_zones: Option<BTreeMap<String, Vec<String>>>,
}

impl ServerFacts {
    /// The newest version matching `asked` (`1.33`, `1.33.5`, or an exact `1.33.5-gke.N`)
    /// among those of `channel` (all master versions for `UNSPECIFIED`).
    pub fn resolve(&self, asked: &str, channel: &str) -> Option<String> {
        let list = match channel {
            "UNSPECIFIED" => &self.master_versions,
            c => self.channels.get(c)?,
        };
        let mut matching: Vec<&String> = list
            .iter()
            .filter(|v| {
                *v == asked
                    || v.starts_with(&format!("{asked}."))
                    || v.starts_with(&format!("{asked}-"))
            })
            .collect();
        matching.sort_by_key(|v| std::cmp::Reverse(version_key(v)));
        matching.first().map(|v| (*v).clone())
    }

    /// The versions `channel` offers, for messages.
    pub fn offered(&self, channel: &str) -> Vec<String> {
        match channel {
            "UNSPECIFIED" => self.master_versions.clone(),
            c => self.channels.get(c).cloned().unwrap_or_default(),
        }
    }
}

/// Sort key of a GKE version `1.33.5-gke.1201000`.
fn version_key(v: &str) -> Vec<u64> {
    v.split(['.', '-'])
        .filter_map(|p| p.parse::<u64>().ok())
        .collect()
}

/// Compares two versions numerically (`1.9` < `1.33`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    version_key(a).cmp(&version_key(b))
}

/// `MAJOR.MINOR` of a version.
pub fn minor(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The release channel a cluster is enrolled in: the config's, or `REGULAR`, where GKE
/// enrolls new clusters by default.
pub fn channel(section: &GcpSection) -> String {
    section
        .release_channel
        .clone()
        .map(|c| c.to_ascii_uppercase())
        .unwrap_or_else(|| "REGULAR".to_string())
}

/// A GCP label value made from free text: lowercase letters, digits, `-`, `_`, at most 63.
pub fn label_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect()
}

/// The ownership marks as GCP labels ([`Ownership::tags`], values made label-safe).
pub fn labels(ownership: &Ownership) -> BTreeMap<String, String> {
    ownership
        .tags()
        .into_iter()
        .map(|(k, v)| (k, label_value(&v)))
        .collect()
}

/// True when a cluster's labels carry `ownership`'s marks.
pub fn owned(ownership: &Ownership, cluster_labels: &BTreeMap<String, String>) -> bool {
    labels(ownership)
        .iter()
        .all(|(k, v)| cluster_labels.get(k) == Some(v))
}

/// GKE's rule for cluster and node pool names: 1–40 lowercase letters, digits and hyphens,
/// starting with a letter and not ending with a hyphen.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 40
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !name.ends_with('-')
}

/// How many zones GKE spreads a regional cluster's nodes over when no node locations are
/// given ("By default, GKE replicates each node pool across three zones of the control
/// plane's region", GKE docs, "Regional clusters").
pub const DEFAULT_ZONE_COUNT: usize = 3;

/// The zones a group's node pool may use, or `None` when they are not known (no facts):
/// `availability_zones`, else the region's first [`DEFAULT_ZONE_COUNT`] zones; for a GPU
/// group, those of the region (or of `availability_zones`) that offer every accelerator it
/// asks for (GKE attaches a GPU only in a zone that has it: "GPUs … are available in specific
/// zones", GKE GPU docs; a pool elsewhere fails with `Accelerator type … does not exist in
/// zone …`). An empty list: no zone offers it (an error of `desired`, named in preflight).
pub fn candidate_zones(
    section: &GcpSection,
    group: &NodeGroup,
    facts: Option<&ServerFacts>,
) -> Option<Vec<String>> {
    let configured = section.availability_zones.clone().filter(|z| !z.is_empty());
    let region: Vec<String> = facts.map(|f| f.zones.clone()).unwrap_or_default();
    if group.guest_accelerators.is_empty() {
        return configured.or_else(|| {
            (!region.is_empty()).then(|| region.into_iter().take(DEFAULT_ZONE_COUNT).collect())
        });
    }
    let offered = facts.and_then(|f| f.accelerator_zones.as_ref())?;
    // A GPU pool may use any zone of the region (GKE GPU docs: `--node-locations` of a
    // node pool), not only the cluster's default three.
    let base = configured.or_else(|| (!region.is_empty()).then_some(region))?;
    Some(
        base.into_iter()
            .filter(|z| {
                group
                    .guest_accelerators
                    .iter()
                    .all(|a| offered.get(&a.name).is_some_and(|zones| zones.contains(z)))
            })
            .collect(),
    )
}

/// The `locations` of a group's pool, given its candidate zones. `min_nodes` and `max_nodes`
/// are the group's totals, but GKE starts `initial_node_count` nodes **in each zone** of a
/// pool: a pool that must start with nodes is pinned to the most zones `k` (of the first
/// `min(zones, min_nodes)`) that divide `min_nodes`, so it starts exactly `min_nodes`
/// (`min_nodes / k` per zone); a group that starts empty keeps the cluster's zones (a GPU
/// group: every zone offering its GPU), and its autoscaler picks the zones.
pub fn pool_locations(min_nodes: u32, zones: Option<&[String]>, gpu: bool) -> Option<Vec<String>> {
    let zones = zones?;
    if min_nodes == 0 {
        return gpu.then(|| zones.to_vec());
    }
    let most = zones.len().min(min_nodes as usize);
    let k = (1..=most)
        .rev()
        .find(|k| (min_nodes as usize).is_multiple_of(*k))
        .unwrap_or(1);
    Some(zones.iter().take(k).cloned().collect())
}

/// The `initial_node_count` (per zone) that starts a pool with `min_nodes` in all: exact for
/// the locations [`pool_locations`] picks; without locations (zones not known), spread over
/// GKE's default zones, rounded up.
pub fn initial_per_zone(spec: &PoolSpec) -> u32 {
    let zones = match &spec.locations {
        Some(z) if !z.is_empty() => z.len(),
        _ => DEFAULT_ZONE_COUNT,
    };
    spec.min_nodes.div_ceil(u32::try_from(zones).unwrap_or(1))
}

/// The cluster's name: `{project_name}-{namespace}`, lowercased, `_` as `-`.
pub fn cluster_name(ownership: &Ownership) -> String {
    ownership.prefix().to_ascii_lowercase().replace('_', "-")
}

/// A group's node pool name: the group name, lowercased, `_` as `-`.
pub fn pool_name(group: &str) -> String {
    group.to_ascii_lowercase().replace('_', "-")
}

/// The resource id of a node pool.
pub fn pool_id(cluster: &str, pool: &str) -> ResourceId {
    ResourceId::new(NODE_POOL, format!("{cluster}-{pool}"))
}

/// The desired (and observed) shape of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// GCP project.
    pub project: String,
    /// Region (regional cluster).
    pub region: String,
    /// Node zones, when the config names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<Vec<String>>,
    /// `MAJOR.MINOR`.
    pub kubernetes_version: String,
    /// Release channel, when the config names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_channel: Option<String>,
    /// Resource labels (ownership).
    pub labels: BTreeMap<String, String>,
    /// The VPC network's name, when the config names one (`google_cloud_platform.network`;
    /// the last segment of a Shared VPC path); GKE's default is the project's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The subnetwork's name, when the config names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnetwork: Option<String>,
}

/// The name in a network or subnetwork reference (`projects/H/global/networks/N` → `N`).
pub fn short_name(reference: &str) -> String {
    reference
        .rsplit('/')
        .next()
        .unwrap_or(reference)
        .to_string()
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// GKE's effect name: `NO_SCHEDULE`, `PREFER_NO_SCHEDULE`, `NO_EXECUTE`.
    pub effect: String,
}

/// An accelerator on each node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accelerator {
    /// e.g. `nvidia-tesla-t4`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Per node.
    pub count: u32,
    /// GKE's driver installation: `DEFAULT` (GKE installs the default driver).
    pub driver: String,
}

/// The desired (and observed) shape of a node pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// Pool name.
    pub name: String,
    /// Machine type.
    pub machine_type: String,
    /// Autoscaling minimum of the whole pool, all zones together (0 allowed).
    pub min_nodes: u32,
    /// Autoscaling maximum of the whole pool, all zones together.
    pub max_nodes: u32,
    /// The zones of the pool's nodes, when they are not simply the cluster's
    /// ([`pool_locations`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<Vec<String>>,
    /// Kubernetes node labels.
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    pub taints: Vec<Taint>,
    /// Accelerators.
    pub accelerators: Vec<Accelerator>,
    /// Preemptible VMs.
    pub preemptible: bool,
    /// Spot VMs.
    pub spot: bool,
    /// Boot disk size, when the config sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size_gb: Option<u32>,
    /// Node image, when the config sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_type: Option<String>,
    /// GKE repairs unhealthy nodes.
    pub auto_repair: bool,
    /// GKE upgrades nodes with the control plane.
    pub auto_upgrade: bool,
}

/// What the cluster's creation needs beyond its spec (not diffed); its node pools come as
/// the change's children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterPayload {
    /// The exact version to create at (resolved), or the config's text when GKE's offer is
    /// unknown (GKE resolves `1.33` itself).
    pub initial_version: String,
    /// The network as the config writes it (a name, or a Shared VPC path), to create with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The subnetwork as the config writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnetwork: Option<String>,
}

/// The serial group of a cluster and its pools: GKE runs one operation per cluster.
pub fn serial_group(cluster: &str) -> String {
    format!("cluster/{cluster}")
}

/// The `google_cloud_platform` section, or an error naming it.
pub fn section(config: &Config) -> Result<&GcpSection> {
    config.google_cloud_platform.as_ref().ok_or_else(|| {
        GcpError::config(
            "google_cloud_platform",
            "the config has no google_cloud_platform section",
        )
    })
}

fn extra_bool(group: &NodeGroup, key: &str, at: &str) -> Result<bool> {
    match group.extra.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(GcpError::config(
            format!("{at}.{key}"),
            format!("must be true or false, not {v}"),
        )),
    }
}

/// The pool spec of one config group; `zones`: the zones it may use ([`candidate_zones`];
/// `None` when not known).
pub fn pool_spec(name: &str, group: &NodeGroup, zones: Option<&[String]>) -> Result<PoolSpec> {
    let at = format!("google_cloud_platform.node_groups.{name}");
    let pool = pool_name(name);
    if !valid_name(&pool) {
        return Err(GcpError::config(
            &at,
            format!(
                "the node pool name {pool:?} is not valid on GKE (1-40 lowercase letters, digits and hyphens, starting with a letter)"
            ),
        ));
    }
    if group.instance.trim().is_empty() {
        return Err(GcpError::config(
            format!("{at}.instance"),
            "a machine type is required",
        ));
    }
    if group.max_nodes < 1 || group.min_nodes > group.max_nodes {
        return Err(GcpError::config(
            format!("{at}.max_nodes"),
            format!(
                "GKE needs 0 <= min_nodes <= max_nodes and max_nodes >= 1 (got {}..{})",
                group.min_nodes, group.max_nodes
            ),
        ));
    }
    let preemptible = extra_bool(group, "preemptible", &at)?;
    let spot = extra_bool(group, "spot", &at)?;
    if preemptible && spot {
        return Err(GcpError::config(
            format!("{at}.spot"),
            "preemptible and spot cannot both be set (spot VMs supersede preemptible ones)",
        ));
    }
    let disk_size_gb = match group.extra.get("disk_size_gb") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (10..=65_536).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    GcpError::config(
                        format!("{at}.disk_size_gb"),
                        format!("must be a whole number of GB from 10 to 65536, not {v}"),
                    )
                })?,
        ),
    };
    let image_type = match group.extra.get("image_type") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.to_ascii_uppercase()),
        Some(v) => {
            return Err(GcpError::config(
                format!("{at}.image_type"),
                format!("must be a GKE image type such as COS_CONTAINERD, not {v}"),
            ));
        }
    };
    let accelerators: Vec<Accelerator> = group
        .guest_accelerators
        .iter()
        .map(|a| Accelerator {
            kind: a.name.clone(),
            count: a.count,
            driver: "DEFAULT".into(),
        })
        .collect();
    if let Some(zones) = zones
        && zones.is_empty()
    {
        let names: Vec<&str> = group
            .guest_accelerators
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        return Err(GcpError::config(
            format!("{at}.guest_accelerators"),
            format!(
                "no zone of the region (or of availability_zones) offers {} (see `gcloud compute accelerator-types list --filter=zone~REGION`); pick another region or accelerator",
                names.join(" with ")
            ),
        ));
    }
    let taints = if accelerators.is_empty() {
        Vec::new()
    } else {
        vec![Taint {
            key: GPU_TAINT.0.into(),
            value: GPU_TAINT.1.into(),
            effect: GPU_TAINT.2.into(),
        }]
    };
    Ok(PoolSpec {
        name: pool,
        machine_type: group.instance.clone(),
        min_nodes: group.min_nodes,
        max_nodes: group.max_nodes,
        locations: pool_locations(group.min_nodes, zones, !accelerators.is_empty()),
        labels: BTreeMap::from([(NODE_GROUP_LABEL.to_string(), name.to_string())]),
        taints,
        accelerators,
        preemptible,
        spot,
        disk_size_gb,
        image_type,
        auto_repair: true,
        auto_upgrade: true,
    })
}

/// The cluster spec and its creation payload.
pub fn cluster_spec(config: &Config, facts: Option<&ServerFacts>) -> Result<(ClusterSpec, String)> {
    let s = section(config)?;
    let ownership = Ownership::of(config);
    let channel = channel(s);
    let asked = s.kubernetes_version.trim().to_string();
    // A cluster GKE already moved past the config's minor stays where it is: GKE cannot
    // downgrade, and upgrading by itself is what its release channels are for.
    let ahead = facts
        .and_then(|f| f.cluster_version.as_deref())
        .map(minor)
        .filter(|current| version_cmp(current, &minor(&asked)).is_ge());
    if let Some(current) = &ahead
        && *current != minor(&asked)
    {
        tracing::info!(
            %current,
            asked = %asked,
            "GKE upgraded the cluster past google_cloud_platform.kubernetes_version; keeping it"
        );
    }
    let initial = match facts {
        Some(f) if ahead.is_some() => f.resolve(&asked, &channel).unwrap_or(asked.clone()),
        Some(f) => f.resolve(&asked, &channel).ok_or_else(|| {
            GcpError::config(
                "google_cloud_platform.kubernetes_version",
                format!(
                    "{asked} is not available in GKE's {channel} channel in {} (offered: {})",
                    s.region,
                    f.offered(&channel).join(", ")
                ),
            )
        })?,
        None => asked.clone(),
    };
    if let Some(zones) = &s.availability_zones {
        for (i, z) in zones.iter().enumerate() {
            if !z.starts_with(&format!("{}-", s.region)) {
                return Err(GcpError::config(
                    format!("google_cloud_platform.availability_zones[{i}]"),
                    format!("zone {z:?} is not in region {}", s.region),
                ));
            }
        }
    }
    Ok((
        ClusterSpec {
            project: s.project.clone(),
            region: s.region.clone(),
            locations: s.availability_zones.clone().filter(|z| !z.is_empty()),
            kubernetes_version: ahead.unwrap_or_else(|| minor(&asked)),
            release_channel: s.release_channel.as_ref().map(|c| c.to_ascii_uppercase()),
            labels: labels(&ownership),
            network: s
                .network
                .as_deref()
                .filter(|n| !n.is_empty())
                .map(short_name),
            subnetwork: s
                .subnetwork
                .as_deref()
                .filter(|n| !n.is_empty())
                .map(short_name),
        },
        initial,
    ))
}

/// Every resource the config wants, cluster first.
pub fn desired(config: &Config, facts: Option<&ServerFacts>) -> Result<Vec<Resource>> {
    let s = section(config)?;
    let ownership = Ownership::of(config);
    let name = cluster_name(&ownership);
    if !valid_name(&name) {
        return Err(GcpError::config(
            "project_name",
            format!(
                "the GKE cluster name {name:?} ({{project_name}}-{{namespace}}) must be 1-40 lowercase letters, digits and hyphens"
            ),
        ));
    }
    let (spec, initial_version) = cluster_spec(config, facts)?;
    let pools = s
        .node_groups
        .iter()
        .map(|(g, group)| pool_spec(g, group, candidate_zones(s, group, facts).as_deref()))
        .collect::<Result<Vec<_>>>()?;
    let cluster_id = ResourceId::new(CLUSTER, &name);
    let group = serial_group(&name);
    let mut cluster = Resource::new(CLUSTER, &name, Stage::Infrastructure, json(&spec))
        // GKE cannot move a cluster to another network.
        .replace_fields(&["project", "region", "network", "subnetwork"])
        .hosts_kubernetes()
        .expected(CLUSTER_CREATE)
        .serial_group(&group);
    cluster.payload = Some(json(&ClusterPayload {
        initial_version,
        network: s.network.clone().filter(|n| !n.is_empty()),
        subnetwork: s.subnetwork.clone().filter(|n| !n.is_empty()),
    }));
    let mut out = vec![cluster];
    for pool in pools {
        let id = pool_id(&name, &pool.name);
        out.push(
            Resource::new(NODE_POOL, id.name, Stage::Infrastructure, json(&pool))
                .depends_on([cluster_id.clone()])
                // GKE cannot change these without recreating the nodes anyway.
                .replace_fields(&[
                    "name",
                    "machine_type",
                    "accelerators",
                    "preemptible",
                    "spot",
                    "disk_size_gb",
                    "image_type",
                ])
                .expected(POOL_CREATE)
                .serial_group(&group)
                .created_with(cluster_id.clone()),
        );
    }
    Ok(out)
}

/// A spec as JSON (specs hold only strings, numbers, booleans, lists and maps).
pub fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ServerFacts {
        ServerFacts {
            default_version: "1.33.5-gke.1201000".into(),
            master_versions: vec![
                "1.34.1-gke.1431000".into(),
                "1.33.5-gke.1201000".into(),
                "1.33.4-gke.1350000".into(),
            ],
            channels: BTreeMap::from([(
                "REGULAR".to_string(),
                vec!["1.33.4-gke.1350000".into(), "1.33.5-gke.1201000".into()],
            )]),
            cluster_version: None,
            ..ServerFacts::default()
        }
    }

    #[test]
    fn versions_resolve_to_the_newest_patch_of_the_channel() {
        let f = facts();
        assert_eq!(
            f.resolve("1.33", "REGULAR").as_deref(),
            Some("1.33.5-gke.1201000")
        );
        assert_eq!(
            f.resolve("1.33.4", "REGULAR").as_deref(),
            Some("1.33.4-gke.1350000")
        );
        assert_eq!(f.resolve("1.34", "REGULAR"), None);
        assert_eq!(
            f.resolve("1.34", "UNSPECIFIED").as_deref(),
            Some("1.34.1-gke.1431000")
        );
        assert_eq!(f.resolve("1.3", "REGULAR"), None, "1.3 is not 1.33");
    }

    #[test]
    fn a_cluster_gke_upgraded_past_the_config_is_not_drift() {
        let mut config = qhub_core::config::init::render(&qhub_core::config::init::InitOptions {
            gcp_project: Some("p".into()),
            ..qhub_core::config::init::InitOptions::new(
                qhub_core::config::ProviderKind::Gcp,
                "demo",
                "example.com",
                "0123456789abcdef",
            )
        })
        .unwrap();
        let mut f = facts();
        f.cluster_version = Some("1.34.1-gke.1431000".into());
        let (spec, _) = cluster_spec(&config, Some(&f)).unwrap();
        assert_eq!(spec.kubernetes_version, "1.34", "kept where GKE took it");
        // Asking for more than the cluster runs is an upgrade; 1.35 is not offered.
        config
            .google_cloud_platform
            .as_mut()
            .unwrap()
            .kubernetes_version = "1.35".into();
        assert!(cluster_spec(&config, Some(&f)).is_err());
        f.cluster_version = Some("1.32.9-gke.1108000".into());
        config
            .google_cloud_platform
            .as_mut()
            .unwrap()
            .kubernetes_version = "1.33".into();
        let (spec, initial) = cluster_spec(&config, Some(&f)).unwrap();
        assert_eq!(
            (spec.kubernetes_version.as_str(), initial.as_str()),
            ("1.33", "1.33.5-gke.1201000")
        );
    }

    #[test]
    fn a_pool_starts_with_exactly_its_minimum() {
        let zones: Vec<String> = ["z-a", "z-b", "z-c"].map(String::from).to_vec();
        let at = |min: u32, gpu: bool| pool_locations(min, Some(&zones), gpu);
        // Empty at the start: the cluster's zones (a GPU pool: all the GPU's zones).
        assert_eq!(at(0, false), None);
        assert_eq!(at(0, true), Some(zones.clone()));
        // 1 → one zone; 2 → two zones × 1; 3 → three × 1; 4 → two × 2; 5 → one × 5; 6 → 3 × 2.
        for (min, k) in [(1, 1), (2, 2), (3, 3), (4, 2), (5, 1), (6, 3)] {
            let locations = at(min, false).unwrap();
            assert_eq!(locations.len(), k, "min {min}");
            let spec = PoolSpec {
                name: "p".into(),
                machine_type: "n1-standard-4".into(),
                min_nodes: min,
                max_nodes: 10,
                locations: Some(locations),
                labels: BTreeMap::new(),
                taints: Vec::new(),
                accelerators: Vec::new(),
                preemptible: false,
                spot: false,
                disk_size_gb: None,
                image_type: None,
                auto_repair: true,
                auto_upgrade: true,
            };
            assert_eq!(initial_per_zone(&spec) as usize * k, min as usize);
        }
        assert_eq!(pool_locations(2, None, false), None, "zones unknown");
    }

    #[test]
    fn names_and_labels_follow_gcp_rules() {
        let o = Ownership {
            project: "Demo_Proj".into(),
            namespace: "dev".into(),
        };
        assert_eq!(cluster_name(&o), "demo-proj-dev");
        assert!(valid_name(&cluster_name(&o)));
        assert_eq!(labels(&o)["qhub-project"], "demo_proj");
        assert!(owned(&o, &labels(&o)));
        assert!(!valid_name("gpu_pool"));
        assert!(!valid_name("1pool"));
        assert_eq!(pool_name("GPU_t4"), "gpu-t4");
    }
}
