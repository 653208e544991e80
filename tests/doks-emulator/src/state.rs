//! The emulated account: clusters, their node pools and the load balancers and volumes
//! Kubernetes made for them, with DOKS's rules (as unkind as the real API).
//!
//! Time is counted in polls: a new cluster stays `provisioning` for
//! [`crate::Options::provisioning_polls`] reads of it, a deleted one `deleting` for
//! [`crate::Options::deleting_polls`] reads, a resized pool's new nodes `provisioning` likewise.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};

/// An error answer, shaped like DigitalOcean's (`{"id": ..., "message": ...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// DigitalOcean's error id (`not_found`, `unprocessable_entity`, …).
    pub id: &'static str,
    /// The message.
    pub message: String,
}

impl ApiError {
    /// 404 `not_found` with DigitalOcean's message.
    pub fn not_found() -> Self {
        Self {
            status: 404,
            id: "not_found",
            message: "The resource you were accessing could not be found.".into(),
        }
    }

    /// 422 `unprocessable_entity`.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self {
            status: 422,
            id: "unprocessable_entity",
            message: message.into(),
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            id: "bad_request",
            message: message.into(),
        }
    }
}

type Result<T> = std::result::Result<T, ApiError>;

/// The lifecycle phase of a cluster, with the polls left before it moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Being created.
    Provisioning(u32),
    /// Usable.
    Running,
    /// Being upgraded to a new version.
    Upgrading(u32),
    /// Being deleted; it disappears when the count reaches zero.
    Deleting(u32),
    /// Provisioning failed: it can only be deleted.
    Error,
}

impl Phase {
    fn word(self) -> &'static str {
        match self {
            Self::Provisioning(_) => "provisioning",
            Self::Running => "running",
            Self::Upgrading(_) => "upgrading",
            Self::Deleting(_) => "deleting",
            Self::Error => "error",
        }
    }
}

/// A node pool.
#[derive(Debug, Clone)]
pub struct Pool {
    /// UUID.
    pub id: String,
    /// Name, unique in its cluster.
    pub name: String,
    /// Droplet size slug.
    pub size: String,
    /// Current node count.
    pub count: u32,
    /// The tags asked for (DOKS adds its own when answering).
    pub tags: Vec<String>,
    /// Kubernetes labels.
    pub labels: Option<Map<String, Json>>,
    /// Kubernetes taints.
    pub taints: Vec<Json>,
    /// Autoscaling.
    pub auto_scale: bool,
    /// Autoscaling minimum.
    pub min_nodes: u32,
    /// Autoscaling maximum.
    pub max_nodes: u32,
    /// Reads left before new nodes are running.
    pub polls_left: u32,
    /// New nodes are not running before this time either.
    pub not_before: Instant,
}

/// A cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// UUID.
    pub id: String,
    /// Name, unique in the account.
    pub name: String,
    /// Region slug.
    pub region: String,
    /// Version slug.
    pub version: String,
    /// The tags asked for (DOKS adds `k8s` and `k8s:<id>` when answering).
    pub tags: Vec<String>,
    /// Node pools, in creation order.
    pub pools: Vec<Pool>,
    /// Lifecycle.
    pub phase: Phase,
    /// Fields kept as sent (`ha`, `auto_upgrade`, `surge_upgrade`, `maintenance_policy`, …).
    pub extra: Map<String, Json>,
    /// Creation sequence number (for timestamps).
    pub serial: u64,
    /// The current phase does not end before this time.
    pub not_before: Instant,
    /// Provisioning ends in [`Phase::Error`].
    pub fails: bool,
}

/// A load balancer or volume Kubernetes made for a cluster (tagged `k8s:<cluster id>`), left
/// behind by a plain cluster delete and removed by `destroy_with_associated_resources`.
#[derive(Debug, Clone)]
pub struct Associated {
    /// `load_balancer` or `volume`.
    pub kind: String,
    /// The cluster it was made for.
    pub cluster_id: String,
    /// That cluster's tags (for the census after the cluster is gone).
    pub cluster_tags: Vec<String>,
}

/// What the account offers (`/v2/kubernetes/options`).
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Region slugs.
    pub regions: Vec<String>,
    /// Version slugs, newest first, with their Kubernetes versions.
    pub versions: Vec<(String, String)>,
    /// Droplet size slugs.
    pub sizes: Vec<String>,
}

impl Default for Catalog {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect();
        Self {
            regions: s(&[
                "nyc1", "nyc3", "sfo3", "ams3", "fra1", "lon1", "sgp1", "tor1", "blr1", "syd1",
                "atl1",
            ]),
            // 1.33.10 after 1.33.9: slugs must be compared as numbers, not text.
            versions: [
                ("1.34.1-do.0", "1.34.1"),
                ("1.33.10-do.1", "1.33.10"),
                ("1.33.10-do.0", "1.33.10"),
                ("1.33.9-do.2", "1.33.9"),
                ("1.32.12-do.0", "1.32.12"),
            ]
            .iter()
            .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
            .collect(),
            sizes: s(&[
                "s-1vcpu-2gb",
                "s-2vcpu-4gb",
                "s-4vcpu-8gb",
                "s-8vcpu-16gb",
                "g-2vcpu-8gb",
                "g-4vcpu-16gb",
                "g-8vcpu-32gb",
                "g-16vcpu-64gb",
                "c-4",
                "c-8",
                "m-4vcpu-32gb",
                "gpu-h100x1-80gb",
                "gpu-l40sx1-48gb",
            ]),
        }
    }
}

/// The account.
#[derive(Debug, Default)]
pub struct Account {
    /// Clusters by id, in creation order of ids.
    pub clusters: BTreeMap<String, Cluster>,
    /// Load balancers and volumes of clusters.
    pub associated: Vec<Associated>,
    /// What the account offers.
    pub catalog: Catalog,
    next: u64,
    /// Reads a new cluster or resized pool takes to become ready.
    pub provisioning_polls: u32,
    /// Reads a deleted cluster stays visible (`deleting`).
    pub deleting_polls: u32,
    /// Least time a cluster takes to create or upgrade (scaled from DOKS's 6–7 minutes).
    pub cluster_time: Duration,
    /// Least time new nodes of a pool take.
    pub pool_time: Duration,
    /// Least time a cluster takes to delete.
    pub delete_time: Duration,
    /// The next cluster created fails to provision.
    pub fail_next_cluster: bool,
}

/// `(major, minor, patch, do-revision)` of a slug such as `1.33.10-do.2` (numbers, not text:
/// `1.33.10` is newer than `1.33.9`).
fn version_rank(slug: &str) -> Vec<u32> {
    slug.replace("-do.", ".")
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

/// DigitalOcean tags: letters, numbers, colons, dashes and underscores, at most 255 characters.
fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 255
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_'))
}

fn as_u32(v: Option<&Json>, what: &str) -> Result<Option<u32>> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| ApiError::unprocessable(format!("{what} must be a whole number"))),
    }
}

fn strings(v: Option<&Json>) -> Vec<String> {
    v.and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Account {
    /// An empty account with `catalog`.
    pub fn new(catalog: Catalog, provisioning_polls: u32, deleting_polls: u32) -> Self {
        Self {
            catalog,
            provisioning_polls,
            deleting_polls,
            ..Self::default()
        }
    }

    fn uuid(&mut self, kind: u32) -> String {
        self.next += 1;
        format!("{kind:08x}-0000-4000-8000-{:012x}", self.next)
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.clusters.clear();
        self.associated.clear();
    }

    /// The cluster with `id`, not yet gone.
    pub fn cluster(&self, id: &str) -> Result<&Cluster> {
        self.clusters.get(id).ok_or_else(ApiError::not_found)
    }

    fn cluster_mut(&mut self, id: &str) -> Result<&mut Cluster> {
        self.clusters.get_mut(id).ok_or_else(ApiError::not_found)
    }

    /// One read of a cluster passes: provisioning and deleting move on.
    pub fn tick(&mut self, id: &str) {
        let gone = match self.clusters.get_mut(id) {
            None => return,
            Some(c) => {
                // The last read ends the phase only once its time has passed too.
                let due = Instant::now() >= c.not_before;
                c.phase = match c.phase {
                    Phase::Provisioning(n) if n <= 1 && due && c.fails => Phase::Error,
                    Phase::Provisioning(n) | Phase::Upgrading(n) if n <= 1 && due => Phase::Running,
                    Phase::Provisioning(n) => Phase::Provisioning(n.saturating_sub(1).max(1)),
                    Phase::Upgrading(n) => Phase::Upgrading(n.saturating_sub(1).max(1)),
                    Phase::Deleting(n) if n <= 1 && due => Phase::Deleting(0),
                    Phase::Deleting(n) => Phase::Deleting(n.saturating_sub(1).max(1)),
                    Phase::Running => Phase::Running,
                    Phase::Error => Phase::Error,
                };
                if c.phase == Phase::Running {
                    for p in &mut c.pools {
                        p.polls_left = p.polls_left.saturating_sub(1);
                    }
                }
                c.phase == Phase::Deleting(0)
            }
        };
        if gone {
            self.clusters.remove(id);
        }
    }

    /// One read of every cluster (a list).
    pub fn tick_all(&mut self) {
        let ids: Vec<String> = self.clusters.keys().cloned().collect();
        for id in ids {
            self.tick(&id);
        }
    }

    fn check_size(&self, size: &str, at: &str) -> Result<()> {
        if self.catalog.sizes.iter().any(|s| s == size) {
            Ok(())
        } else {
            Err(ApiError::unprocessable(format!(
                "{at}: size `{size}` is not a valid Kubernetes node size"
            )))
        }
    }

    /// A pool from a request body (create), checked.
    fn pool_from(&mut self, body: &Json, at: &str) -> Result<Pool> {
        let name = body
            .get("name")
            .and_then(Json::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::unprocessable(format!("{at}: name is required")))?
            .to_string();
        let size = body
            .get("size")
            .and_then(Json::as_str)
            .ok_or_else(|| ApiError::unprocessable(format!("{at}: size is required")))?
            .to_string();
        self.check_size(&size, at)?;
        let mut pool = Pool {
            id: self.uuid(2),
            name,
            size,
            count: 0,
            tags: Vec::new(),
            labels: None,
            taints: Vec::new(),
            auto_scale: false,
            min_nodes: 0,
            max_nodes: 0,
            polls_left: self.provisioning_polls,
            not_before: Instant::now() + self.pool_time,
        };
        apply_pool_fields(&mut pool, body, at)?;
        Ok(pool)
    }

    /// `POST /v2/kubernetes/clusters`.
    pub fn create_cluster(&mut self, body: &Json) -> Result<String> {
        let name = body
            .get("name")
            .and_then(Json::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::unprocessable("name is required"))?
            .to_string();
        if self.clusters.values().any(|c| c.name == name) {
            return Err(ApiError::unprocessable(format!(
                "a cluster with the name `{name}` already exists in this account"
            )));
        }
        let region = body
            .get("region")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        if !self.catalog.regions.contains(&region) {
            return Err(ApiError::unprocessable(format!(
                "region `{region}` is not a valid Kubernetes region"
            )));
        }
        let asked = body
            .get("version")
            .and_then(Json::as_str)
            .unwrap_or_default();
        // The spec (`cluster.version`): a slug, a minor version for the newest slug within it,
        // or `latest`.
        let newest = |prefix: &str| {
            self.catalog
                .versions
                .iter()
                .filter(|(_, k8s)| prefix.is_empty() || k8s.starts_with(&format!("{prefix}.")))
                .max_by_key(|(slug, _)| version_rank(slug))
                .map(|(slug, _)| slug.clone())
        };
        let minor =
            asked.split('.').count() == 2 && asked.split('.').all(|p| p.parse::<u32>().is_ok());
        let version = if self.catalog.versions.iter().any(|v| v.0 == asked) {
            Some(asked.to_string())
        } else if asked == "latest" {
            newest("")
        } else if minor {
            newest(asked)
        } else {
            None
        };
        let Some(version) = version else {
            return Err(ApiError::unprocessable(format!(
                "version `{asked}` is not a supported Kubernetes version"
            )));
        };
        let tags = strings(body.get("tags"));
        if let Some(bad) = tags.iter().find(|t| !valid_tag(t)) {
            return Err(ApiError::unprocessable(format!(
                "tag `{bad}` is invalid: tags may contain letters, numbers, colons, dashes and underscores"
            )));
        }
        let requested = body
            .get("node_pools")
            .and_then(Json::as_array)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ApiError::unprocessable("a cluster needs at least one node pool"))?
            .clone();
        let mut pools = Vec::new();
        for (i, p) in requested.iter().enumerate() {
            let pool = self.pool_from(p, &format!("node_pools[{i}]"))?;
            if pools.iter().any(|q: &Pool| q.name == pool.name) {
                return Err(ApiError::unprocessable(format!(
                    "node pool name `{}` is used twice",
                    pool.name
                )));
            }
            pools.push(pool);
        }
        let mut extra = Map::new();
        for key in [
            "ha",
            "auto_upgrade",
            "surge_upgrade",
            "maintenance_policy",
            "vpc_uuid",
        ] {
            if let Some(v) = body.get(key) {
                extra.insert(key.into(), v.clone());
            }
        }
        let id = self.uuid(1);
        self.next += 1;
        let serial = self.next;
        self.clusters.insert(
            id.clone(),
            Cluster {
                id: id.clone(),
                name,
                region,
                version,
                tags,
                pools,
                phase: if self.provisioning_polls == 0
                    && self.cluster_time.is_zero()
                    && !self.fail_next_cluster
                {
                    Phase::Running
                } else {
                    Phase::Provisioning(self.provisioning_polls.max(1))
                },
                extra,
                serial,
                not_before: Instant::now() + self.cluster_time,
                fails: std::mem::take(&mut self.fail_next_cluster),
            },
        );
        Ok(id)
    }

    /// `PUT /v2/kubernetes/clusters/{id}`.
    pub fn update_cluster(&mut self, id: &str, body: &Json) -> Result<()> {
        let name = body
            .get("name")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        if self.clusters.values().any(|c| c.name == name && c.id != id) {
            return Err(ApiError::unprocessable(format!(
                "a cluster with the name `{name}` already exists in this account"
            )));
        }
        let c = self.cluster_mut(id)?;
        if matches!(c.phase, Phase::Deleting(_)) {
            return Err(ApiError::not_found());
        }
        c.name = name;
        if let Some(t) = body.get("tags") {
            c.tags = strings(Some(t));
        }
        for key in ["ha", "auto_upgrade", "surge_upgrade", "maintenance_policy"] {
            if let Some(v) = body.get(key) {
                c.extra.insert(key.into(), v.clone());
            }
        }
        Ok(())
    }

    /// `POST /v2/kubernetes/clusters/{id}/upgrade`.
    pub fn upgrade_cluster(&mut self, id: &str, body: &Json) -> Result<()> {
        let to = body
            .get("version")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let polls = self.provisioning_polls;
        let time = self.cluster_time;
        let versions = self.catalog.versions.clone();
        let c = self.cluster_mut(id)?;
        if c.phase != Phase::Running {
            return Err(busy(c));
        }
        let rank = |slug: &str| versions.iter().position(|v| v.0 == slug);
        match (rank(&to), rank(&c.version)) {
            // Newest first: a smaller position is a newer version.
            (Some(new), Some(old)) if new < old => {}
            (Some(0), None) => {}
            _ => {
                return Err(ApiError::unprocessable(format!(
                    "cluster cannot be upgraded from {} to {to}",
                    c.version
                )));
            }
        }
        c.version = to;
        c.phase = if polls == 0 && time.is_zero() {
            Phase::Running
        } else {
            Phase::Upgrading(polls.max(1))
        };
        c.not_before = Instant::now() + time;
        Ok(())
    }

    /// `DELETE /v2/kubernetes/clusters/{id}` (`associated`: with its load balancers and
    /// volumes).
    pub fn delete_cluster(&mut self, id: &str, associated: bool) -> Result<()> {
        let polls = self.deleting_polls;
        let time = self.delete_time;
        let c = self.cluster_mut(id)?;
        if matches!(c.phase, Phase::Deleting(_)) {
            return Err(ApiError::not_found());
        }
        c.phase = Phase::Deleting(polls.max(1));
        c.not_before = Instant::now() + time;
        if polls == 0 && time.is_zero() {
            self.clusters.remove(id);
        }
        if associated {
            self.associated.retain(|a| a.cluster_id != id);
        }
        Ok(())
    }

    /// `POST /v2/kubernetes/clusters/{id}/node_pools`.
    pub fn add_pool(&mut self, cluster_id: &str, body: &Json) -> Result<String> {
        {
            let c = self.cluster(cluster_id)?;
            if c.phase != Phase::Running {
                return Err(busy(c));
            }
        }
        let pool = self.pool_from(body, "node pool")?;
        let c = self.cluster_mut(cluster_id)?;
        if c.pools.iter().any(|p| p.name == pool.name) {
            return Err(ApiError::unprocessable(format!(
                "a node pool with the name `{}` already exists in this cluster",
                pool.name
            )));
        }
        let id = pool.id.clone();
        c.pools.push(pool);
        Ok(id)
    }

    /// `PUT /v2/kubernetes/clusters/{id}/node_pools/{pool}`.
    pub fn update_pool(&mut self, cluster_id: &str, pool_id: &str, body: &Json) -> Result<()> {
        let polls = self.provisioning_polls;
        let time = self.pool_time;
        let c = self.cluster_mut(cluster_id)?;
        if c.phase != Phase::Running {
            return Err(busy(c));
        }
        let name = body
            .get("name")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        if c.pools.iter().any(|p| p.name == name && p.id != pool_id) {
            return Err(ApiError::unprocessable(format!(
                "a node pool with the name `{name}` already exists in this cluster"
            )));
        }
        let pool = c
            .pools
            .iter_mut()
            .find(|p| p.id == pool_id)
            .ok_or_else(ApiError::not_found)?;
        let mut updated = pool.clone();
        updated.name = name;
        apply_pool_fields(&mut updated, body, "node pool")?;
        if updated.count > pool.count {
            updated.polls_left = polls;
            updated.not_before = Instant::now() + time;
        }
        *pool = updated;
        Ok(())
    }

    /// `DELETE /v2/kubernetes/clusters/{id}/node_pools/{pool}`.
    pub fn delete_pool(&mut self, cluster_id: &str, pool_id: &str) -> Result<()> {
        let c = self.cluster_mut(cluster_id)?;
        if c.phase != Phase::Running {
            return Err(busy(c));
        }
        let i = c
            .pools
            .iter()
            .position(|p| p.id == pool_id)
            .ok_or_else(ApiError::not_found)?;
        if c.pools.len() == 1 {
            return Err(ApiError::unprocessable(
                "a cluster must have at least one node pool: the last one cannot be deleted",
            ));
        }
        c.pools.remove(i);
        Ok(())
    }

    /// Adds a load balancer (as a Service of type LoadBalancer would) to the cluster named
    /// `name`, for destroy tests. False when there is no such cluster.
    pub fn add_associated(&mut self, cluster_name: &str, kind: &str) -> bool {
        let Some(c) = self.clusters.values().find(|c| c.name == cluster_name) else {
            return false;
        };
        let a = Associated {
            kind: kind.into(),
            cluster_id: c.id.clone(),
            cluster_tags: c.tags.clone(),
        };
        self.associated.push(a);
        true
    }

    /// Resources whose tags include every one of `tags`, by kind: `cluster`, `node_pool`, and
    /// the `load_balancer`s and `volume`s of such clusters (even after the cluster is gone).
    pub fn census(&self, tags: &[String]) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        let has = |t: &[String]| tags.iter().all(|x| t.contains(x));
        for c in self.clusters.values().filter(|c| has(&c.tags)) {
            *out.entry("cluster".to_string()).or_insert(0) += 1;
            *out.entry("node_pool".to_string()).or_insert(0) += c.pools.len();
        }
        for a in self.associated.iter().filter(|a| has(&a.cluster_tags)) {
            *out.entry(a.kind.clone()).or_insert(0) += 1;
        }
        out
    }

    /// The JSON of a pool, as the API answers it.
    pub fn pool_json(cluster: &Cluster, pool: &Pool) -> Json {
        let state = if cluster.phase == Phase::Running
            && pool.polls_left == 0
            && Instant::now() >= pool.not_before
        {
            "running"
        } else {
            "provisioning"
        };
        let mut tags = pool.tags.clone();
        for t in [
            "k8s".to_string(),
            format!("k8s:{}", cluster.id),
            // The spec (`kubernetes_node_pool_base.tags`): `k8s`, `k8s-worker`, `k8s:<id>`.
            "k8s-worker".into(),
        ] {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let nodes: Vec<Json> = (0..pool.count)
            .map(|i| {
                json!({
                    "id": format!("{}-{i:04}", &pool.id[..pool.id.len() - 4]),
                    "name": format!("{}-{i}", pool.name),
                    "status": {"state": state},
                    "droplet_id": format!("{}", 100_000 + i),
                    "created_at": "2026-11-29T00:00:00Z",
                    "updated_at": "2026-11-29T00:00:00Z",
                })
            })
            .collect();
        json!({
            "id": pool.id,
            "name": pool.name,
            "size": pool.size,
            "count": pool.count,
            "tags": tags,
            "labels": pool.labels,
            "taints": pool.taints,
            "auto_scale": pool.auto_scale,
            "min_nodes": pool.min_nodes,
            "max_nodes": pool.max_nodes,
            "nodes": nodes,
        })
    }

    /// The JSON of a cluster, as the API answers it.
    pub fn cluster_json(cluster: &Cluster) -> Json {
        let mut tags = cluster.tags.clone();
        for t in ["k8s".to_string(), format!("k8s:{}", cluster.id)] {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let running = cluster.phase == Phase::Running;
        let mut out = json!({
            "id": cluster.id,
            "name": cluster.name,
            "region": cluster.region,
            "version": cluster.version,
            "cluster_subnet": "10.244.0.0/16",
            "service_subnet": "10.245.0.0/16",
            "vpc_uuid": cluster.extra.get("vpc_uuid").cloned().unwrap_or_else(|| json!("c33931f2-a26a-4e61-b85c-4e95a2ec431b")),
            "ipv4": if running { json!("203.0.113.10") } else { json!("") },
            "endpoint": if running { json!(format!("https://{}.k8s.ondigitalocean.com", cluster.id)) } else { json!("") },
            "tags": tags,
            "node_pools": cluster.pools.iter().map(|p| Self::pool_json(cluster, p)).collect::<Vec<_>>(),
            "maintenance_policy": {"start_time": "00:00", "duration": "4h0m0s", "day": "any"},
            "auto_upgrade": false,
            "surge_upgrade": false,
            "ha": false,
            "registry_enabled": false,
            "status": {"state": cluster.phase.word(), "message": match cluster.phase {
                Phase::Provisioning(_) => "provisioning",
                Phase::Running => "",
                Phase::Upgrading(_) => "upgrading",
                Phase::Deleting(_) => "deleting",
                Phase::Error => "the control plane failed to provision",
            }},
            "created_at": format!("2026-11-29T00:{:02}:{:02}Z", (cluster.serial / 60) % 60, cluster.serial % 60),
            "updated_at": format!("2026-11-29T00:{:02}:{:02}Z", (cluster.serial / 60) % 60, cluster.serial % 60),
        });
        if let Some(o) = out.as_object_mut() {
            for (k, v) in &cluster.extra {
                if k != "vpc_uuid" {
                    o.insert(k.clone(), v.clone());
                }
            }
        }
        out
    }
}

/// The refusal of a change while the cluster is busy.
fn busy(c: &Cluster) -> ApiError {
    ApiError::unprocessable(format!(
        "cluster {} is {}: its node pools can only be changed while it is running",
        c.id,
        c.phase.word()
    ))
}

/// Applies the mutable fields of a pool request (create or update), with DOKS's rules:
/// autoscaling needs `min_nodes <= count <= max_nodes` and `max_nodes >= 1`; a fixed pool
/// needs at least one node.
fn apply_pool_fields(pool: &mut Pool, body: &Json, at: &str) -> Result<()> {
    if let Some(count) = as_u32(body.get("count"), &format!("{at}: count"))? {
        pool.count = count;
    } else {
        return Err(ApiError::unprocessable(format!("{at}: count is required")));
    }
    if let Some(t) = body.get("tags") {
        pool.tags = strings(Some(t));
        if let Some(bad) = pool.tags.iter().find(|t| !valid_tag(t)) {
            return Err(ApiError::unprocessable(format!(
                "{at}: tag `{bad}` is invalid"
            )));
        }
    }
    if let Some(l) = body.get("labels") {
        pool.labels = match l {
            Json::Null => None,
            Json::Object(m) => {
                if m.values().any(|v| !v.is_string()) {
                    return Err(ApiError::unprocessable(format!(
                        "{at}: label values must be strings"
                    )));
                }
                Some(m.clone())
            }
            _ => return Err(ApiError::unprocessable(format!("{at}: labels"))),
        };
    }
    if let Some(t) = body.get("taints") {
        pool.taints = t.as_array().cloned().unwrap_or_default();
    }
    if let Some(a) = body.get("auto_scale") {
        pool.auto_scale = a.as_bool().unwrap_or(false);
    }
    if let Some(n) = as_u32(body.get("min_nodes"), &format!("{at}: min_nodes"))? {
        pool.min_nodes = n;
    }
    if let Some(n) = as_u32(body.get("max_nodes"), &format!("{at}: max_nodes"))? {
        pool.max_nodes = n;
    }
    if pool.auto_scale {
        if pool.max_nodes < 1 || pool.min_nodes > pool.max_nodes {
            return Err(ApiError::unprocessable(format!(
                "{at}: autoscaling needs 0 <= min_nodes <= max_nodes and max_nodes >= 1 (got {}..{})",
                pool.min_nodes, pool.max_nodes
            )));
        }
        if pool.count < pool.min_nodes || pool.count > pool.max_nodes {
            return Err(ApiError::unprocessable(format!(
                "{at}: count {} must lie between min_nodes {} and max_nodes {}",
                pool.count, pool.min_nodes, pool.max_nodes
            )));
        }
    } else if pool.count < 1 {
        return Err(ApiError::unprocessable(format!(
            "{at}: a node pool without autoscaling needs at least one node"
        )));
    }
    Ok(())
}
