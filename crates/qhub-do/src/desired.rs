//! The desired infrastructure of a `digital_ocean` section (REFERENCE.md §3): one DOKS cluster
//! in `region` at the newest version slug matching `kubernetes_version`, and one node pool per
//! node group, each created with the cluster (its create call takes every pool; the `general`
//! group's is the first, as DOKS refuses a cluster without a pool) and deleted with it. A pool
//! added to an existing cluster is created on its own.
//!
//! Every pool autoscales between `min_nodes` and `max_nodes` (DOKS runs the cluster autoscaler
//! itself), carries the label [`GROUP_LABEL`] so the platform can select it, and GPU pools carry
//! the taint DOKS puts on GPU nodes. Scaling a pool is an update; changing its size replaces it
//! (the API cannot change a pool's droplet size).

use std::collections::BTreeMap;
use std::time::Duration;

use qhub_core::config::{Config, DoSection, NodeGroup};
use qhub_core::plan::{Resource, ResourceId, Stage};
use qhub_core::provider::Ownership;
use serde_json::{Value as Json, json};

use crate::client::{KubernetesOptions, NodePoolCreate, Taint};

/// Our label on every pool's nodes, naming the config's node group.
pub const GROUP_LABEL: &str = "qhub.dev/node-group";
/// The label DOKS puts on every node, naming its pool.
pub const POOL_LABEL: &str = "doks.digitalocean.com/node-pool";
/// The kind of the cluster resource.
pub const CLUSTER: &str = "cluster";
/// The kind of a node pool resource.
pub const NODE_POOL: &str = "node_pool";
/// The group that becomes the cluster's first pool.
pub const FIRST_GROUP: &str = "general";

/// The Kubernetes resource of NVIDIA GPUs.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// How long DOKS takes (REFERENCE.md §4: a cluster 6–7 minutes; a pool a few minutes).
pub const CLUSTER_CREATE: Duration = Duration::from_secs(420);
/// How long a new pool takes to have running nodes.
pub const POOL_CREATE: Duration = Duration::from_secs(240);

/// What `desired` needs to know from DigitalOcean: the version slug `kubernetes_version`
/// resolves to (from `/v2/kubernetes/options`).
#[derive(Debug, Clone, PartialEq)]
pub struct DoFacts {
    /// The resolved version slug, e.g. `1.33.1-do.0`.
    pub version: String,
    /// The options the slug was resolved from.
    pub options: KubernetesOptions,
}

/// Why a desired state cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct DesiredError {
    /// The config key at fault, e.g. `digital_ocean.kubernetes_version`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// `(major, minor, patch, do-revision)` of a slug such as `1.33.10-do.2`.
fn slug_rank(slug: &str) -> Option<(u32, u32, u32, u32)> {
    let (k8s, rev) = slug.split_once("-do.")?;
    let mut parts = k8s.split('.').map(|p| p.parse::<u32>().ok());
    let (major, minor, patch) = (parts.next()??, parts.next()??, parts.next()??);
    Some((major, minor, patch, rev.parse().ok()?))
}

/// The version slug `asked` means: itself when it is an offered slug, `latest` the newest, a
/// `MAJOR.MINOR` or `MAJOR.MINOR.PATCH` the newest offered slug of that release (compared as
/// numbers: `1.33.10` is newer than `1.33.9`).
pub fn resolve_version(asked: &str, options: &KubernetesOptions) -> Result<String, String> {
    let asked = asked.trim();
    let offered: Vec<&str> = options.versions.iter().map(|v| v.slug.as_str()).collect();
    if offered.contains(&asked) {
        return Ok(asked.to_string());
    }
    let prefix: Option<Vec<u32>> = if asked == "latest" {
        Some(Vec::new())
    } else {
        asked
            .split('.')
            .map(|p| p.parse::<u32>().ok())
            .collect::<Option<Vec<u32>>>()
            .filter(|p| (2..=3).contains(&p.len()))
    };
    let Some(prefix) = prefix else {
        return Err(format!(
            "`{asked}` is neither a DOKS version slug nor MAJOR.MINOR[.PATCH]; offered: {}",
            offered.join(", ")
        ));
    };
    offered
        .iter()
        .filter_map(|s| slug_rank(s).map(|r| (r, *s)))
        .filter(|((ma, mi, pa, _), _)| {
            [*ma, *mi, *pa]
                .iter()
                .zip(&prefix)
                .all(|(have, want)| have == want)
        })
        .max_by_key(|(r, _)| *r)
        .map(|(_, s)| s.to_string())
        .ok_or_else(|| {
            format!(
                "DigitalOcean offers no Kubernetes {asked}; offered: {}",
                offered.join(", ")
            )
        })
}

/// The DOKS facts of a config: its version resolved against `options`.
pub fn facts(section: &DoSection, options: KubernetesOptions) -> Result<DoFacts, DesiredError> {
    let version =
        resolve_version(&section.kubernetes_version, &options).map_err(|message| DesiredError {
            key: "digital_ocean.kubernetes_version".into(),
            message,
        })?;
    Ok(DoFacts { version, options })
}

/// DigitalOcean tags are plain strings (letters, digits, `:`, `-`, `_`): the ownership marks
/// become `key:value`.
pub fn ownership_tags(ownership: &Ownership) -> Vec<String> {
    ownership
        .tags()
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect()
}

/// The ownership marks in `tags` (the inverse of [`ownership_tags`]; other tags ignored).
pub fn tags_to_marks(tags: &[String]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| t.split_once(':'))
        .filter(|(k, _)| k.starts_with("qhub-"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// True for a GPU pool: `gpu: true`, or a GPU droplet size (`gpu-…`).
pub fn is_gpu(group: &NodeGroup) -> bool {
    group.gpu || group.instance.starts_with("gpu-")
}

/// The taint DOKS puts on GPU nodes (and we ask for, so the pool says so): `nvidia.com/gpu`
/// with no value, `NoSchedule` (llm-d's DOKS guide, "GPU Node Taints").
pub fn gpu_taint() -> Taint {
    Taint {
        key: GPU_RESOURCE.into(),
        value: String::new(),
        effect: "NoSchedule".into(),
    }
}

/// A pool's name: `{project}-{namespace}-{group}`.
pub fn pool_name(prefix: &str, group: &str) -> String {
    format!("{prefix}-{group}")
}

/// The node-group keys this provider reads beyond `instance`, `min_nodes`, `max_nodes` and
/// `gpu`: extra Kubernetes `labels` (a map of strings) and `taints` (a list of
/// `{key, value, effect}`) for the pool's nodes.
pub const NODE_GROUP_KEYS: &[&str] = &["labels", "taints"];

/// The taint effects Kubernetes (and DOKS) know.
const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn extra_labels(name: &str, group: &NodeGroup) -> Result<BTreeMap<String, String>, DesiredError> {
    let key = format!("digital_ocean.node_groups.{name}.labels");
    let Some(v) = group.extra.get("labels") else {
        return Ok(BTreeMap::new());
    };
    let labels: BTreeMap<String, String> =
        serde_json::from_value(v.clone()).map_err(|_| DesiredError {
            key: key.clone(),
            message: "must be a map of label names to string values".into(),
        })?;
    if labels.contains_key(GROUP_LABEL) {
        return Err(DesiredError {
            key,
            message: format!("`{GROUP_LABEL}` is set by qhub (the group's name)"),
        });
    }
    Ok(labels)
}

fn extra_taints(name: &str, group: &NodeGroup) -> Result<Vec<Taint>, DesiredError> {
    let key = format!("digital_ocean.node_groups.{name}.taints");
    let Some(v) = group.extra.get("taints") else {
        return Ok(Vec::new());
    };
    let taints: Vec<Taint> = serde_json::from_value(v.clone()).map_err(|_| DesiredError {
        key: key.clone(),
        message: "must be a list of {key, value, effect}".into(),
    })?;
    for (i, t) in taints.iter().enumerate() {
        if !EFFECTS.contains(&t.effect.as_str()) {
            return Err(DesiredError {
                key: format!("{key}[{i}].effect"),
                message: format!(
                    "`{}` is not a taint effect ({})",
                    t.effect,
                    EFFECTS.join(", ")
                ),
            });
        }
    }
    Ok(taints)
}

/// A node pool's spec, as the plan compares it and the apply sends it: the [`NODE_POOL`]
/// resource's spec, written and read back typed (never a field looked up with a default).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PoolSpec {
    /// The droplet size slug.
    pub size: String,
    /// Whether DOKS autoscales the pool (always, for ours).
    pub auto_scale: bool,
    /// The autoscaler's lower bound.
    pub min_nodes: u32,
    /// The autoscaler's upper bound.
    pub max_nodes: u32,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Node taints, sorted.
    pub taints: Vec<Taint>,
    /// The cluster's region (a pool lives in it); absent in the cluster's first-pool payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// The cluster's spec: its region and version slug.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterSpec {
    /// The region slug, e.g. `nyc3`.
    pub region: String,
    /// The version slug, e.g. `1.33.1-do.0`.
    pub version: String,
}

/// The first pool, carried in the cluster's payload for a caller that hands no children.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FirstPool {
    /// The pool's name.
    pub name: String,
    /// Its spec.
    pub spec: PoolSpec,
}

/// The cluster's payload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterPayload {
    /// The first pool.
    pub first_pool: FirstPool,
}

/// Writes a typed spec as the plan's JSON.
pub fn to_json<T: serde::Serialize>(value: &T, key: &str) -> Result<Json, DesiredError> {
    serde_json::to_value(value).map_err(|e| DesiredError {
        key: key.to_string(),
        message: format!("cannot be written as JSON: {e}"),
    })
}

/// The pool spec compared with what is observed: the group's size and bounds, our group
/// label plus its `labels`, its `taints` plus the GPU taint on a GPU pool (sorted, as
/// observed).
pub fn pool_spec(group_name: &str, group: &NodeGroup) -> Result<PoolSpec, DesiredError> {
    let mut taints = extra_taints(group_name, group)?;
    let gpu = gpu_taint();
    if is_gpu(group)
        && !taints
            .iter()
            .any(|t| t.key == gpu.key && t.effect == gpu.effect)
    {
        taints.push(gpu);
    }
    taints.sort();
    let mut labels = extra_labels(group_name, group)?;
    labels.insert(GROUP_LABEL.into(), group_name.into());
    Ok(PoolSpec {
        size: group.instance.clone(),
        auto_scale: true,
        min_nodes: group.min_nodes,
        max_nodes: group.max_nodes,
        labels,
        taints,
        region: None,
    })
}

/// The create request of a pool from its spec: it starts at `min_nodes` (at least one: a
/// pool starts with a node, then the autoscaler may take it to zero).
pub fn pool_request(name: &str, spec: &PoolSpec, tags: &[String]) -> NodePoolCreate {
    let (min, max) = (spec.min_nodes, spec.max_nodes);
    NodePoolCreate {
        name: name.to_string(),
        size: spec.size.clone(),
        count: min.max(1).min(max.max(1)),
        tags: tags.to_vec(),
        labels: spec.labels.clone(),
        taints: spec.taints.clone(),
        auto_scale: spec.auto_scale,
        min_nodes: min,
        max_nodes: max,
    }
}

/// The node groups in the order pools are made: `general` first, then as written.
pub fn ordered_groups(section: &DoSection) -> Vec<(&String, &NodeGroup)> {
    let mut groups: Vec<(&String, &NodeGroup)> = section.node_groups.iter().collect();
    groups.sort_by_key(|(name, _)| name.as_str() != FIRST_GROUP);
    groups
}

/// The desired resources of `config` (which must have a `digital_ocean` section) with `facts`.
pub fn desired(config: &Config, facts: &DoFacts) -> Result<Vec<Resource>, DesiredError> {
    let section = config.digital_ocean.as_ref().ok_or_else(|| DesiredError {
        key: "digital_ocean".into(),
        message: "the config has no `digital_ocean` section".into(),
    })?;
    let prefix = config.resource_prefix();
    let cluster_id = ResourceId::new(CLUSTER, &prefix);
    let groups = ordered_groups(section);
    let Some((first_name, first)) = groups.first().copied() else {
        return Err(DesiredError {
            key: "digital_ocean.node_groups".into(),
            message: "DOKS needs at least one node group (the cluster's first pool)".into(),
        });
    };
    let first_pool = pool_name(&prefix, first_name);
    // A cluster cannot move regions; a version change is an upgrade (in place).
    let cluster_spec = ClusterSpec {
        region: section.region.clone(),
        version: facts.version.clone(),
    };
    let mut cluster = Resource::new(
        CLUSTER,
        &prefix,
        Stage::Infrastructure,
        to_json(&cluster_spec, "digital_ocean")?,
    )
    .replace_fields(&["region"])
    .hosts_kubernetes()
    .expected(CLUSTER_CREATE);
    // The first pool also travels with the cluster, for a caller that hands no children.
    let payload = ClusterPayload {
        first_pool: FirstPool {
            name: first_pool,
            spec: pool_spec(first_name, first)?,
        },
    };
    cluster.payload = Some(to_json(&payload, "digital_ocean.node_groups")?);
    let mut out = vec![cluster];
    for (name, group) in groups {
        let mut spec = pool_spec(name, group)?;
        // A pool lives in its cluster's region: a cluster moved to another region takes new
        // pools, and the plan says so.
        spec.region = Some(section.region.clone());
        let mut pool = Resource::new(
            NODE_POOL,
            pool_name(&prefix, name),
            Stage::Infrastructure,
            to_json(&spec, &format!("digital_ocean.node_groups.{name}"))?,
        )
        .depends_on([cluster_id.clone()])
        .replace_fields(&["size", "region"])
        .expected(POOL_CREATE);
        // DOKS creates a cluster with all its pools in one call (a cluster without a pool is
        // refused), and removes them all with it: every pool is the cluster's child. The pools
        // then come up with the control plane instead of after it (REFERENCE.md §4: 6–7
        // minutes for a cluster, more for pools added afterwards).
        pool = pool.created_with(cluster_id.clone());
        pool.payload = Some(json!({"group": name}));
        out.push(pool);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::VersionOption;

    fn options(slugs: &[&str]) -> KubernetesOptions {
        KubernetesOptions {
            versions: slugs
                .iter()
                .map(|s| VersionOption {
                    slug: (*s).into(),
                    kubernetes_version: s.split('-').next().unwrap_or_default().into(),
                })
                .collect(),
            ..KubernetesOptions::default()
        }
    }

    #[test]
    fn versions_resolve_to_the_newest_matching_slug_by_number() {
        let o = options(&["1.34.1-do.0", "1.33.9-do.2", "1.33.10-do.0", "1.33.10-do.1"]);
        assert_eq!(resolve_version("1.33", &o).unwrap(), "1.33.10-do.1");
        assert_eq!(resolve_version("1.33.9", &o).unwrap(), "1.33.9-do.2");
        assert_eq!(resolve_version("1.33.9-do.2", &o).unwrap(), "1.33.9-do.2");
        assert_eq!(resolve_version("latest", &o).unwrap(), "1.34.1-do.0");
        assert!(
            resolve_version("1.3", &o)
                .unwrap_err()
                .contains("offers no")
        );
        assert!(resolve_version("1.32", &o).is_err());
        assert!(resolve_version("one", &o).unwrap_err().contains("neither"));
    }

    fn group(extra: serde_json::Value) -> NodeGroup {
        NodeGroup {
            instance: "gpu-h100x1-80gb".into(),
            min_nodes: 0,
            max_nodes: 2,
            gpu: false,
            guest_accelerators: Vec::new(),
            extra: extra.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn extra_labels_and_taints_join_ours_and_bad_ones_are_named() {
        let spec = pool_spec(
            "gpu",
            &group(json!({"labels": {"team": "ml"}, "taints": [{"key": "a", "value": "b", "effect": "NoExecute"}]})),
        )
        .unwrap();
        let spec = to_json(&spec, "x").unwrap();
        assert_eq!(
            spec["labels"],
            json!({"qhub.dev/node-group": "gpu", "team": "ml"})
        );
        assert_eq!(
            spec["taints"],
            json!([{"key": "a", "value": "b", "effect": "NoExecute"}, {"key": "nvidia.com/gpu", "value": "", "effect": "NoSchedule"}])
        );
        let e = pool_spec(
            "gpu",
            &group(json!({"taints": [{"key": "a", "effect": "Never"}]})),
        )
        .unwrap_err();
        assert_eq!(e.key, "digital_ocean.node_groups.gpu.taints[0].effect");
        let e = pool_spec("gpu", &group(json!({"labels": ["x"]}))).unwrap_err();
        assert_eq!(e.key, "digital_ocean.node_groups.gpu.labels");
    }

    #[test]
    fn pool_specs_read_back_typed() {
        let spec = pool_spec("gpu", &group(json!({}))).unwrap();
        let id = ResourceId::new(NODE_POOL, "demo-dev-gpu");
        let written = to_json(&spec, "x").unwrap();
        let read: PoolSpec = qhub_core::provider::spec::read(&id, "spec", &written).unwrap();
        assert_eq!(read, spec);
    }

    #[test]
    fn ownership_tags_round_trip() {
        let o = Ownership {
            project: "demo".into(),
            namespace: "dev".into(),
        };
        let tags = ownership_tags(&o);
        assert!(tags.contains(&"qhub-project:demo".to_string()));
        let mut with_doks = tags.clone();
        with_doks.extend(["k8s".into(), "k8s:1234".into()]);
        assert!(o.owns(&tags_to_marks(&with_doks)));
    }
}
