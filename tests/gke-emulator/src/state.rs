//! The emulated GKE world: clusters, node pools and operations of every project and location,
//! and the rules GKE enforces on them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::wire::{self, Invalid};

/// An error answer, shaped like GKE's (`{"error": {"code", "message", "status"}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub code: u16,
    /// `google.rpc.Code` name, e.g. `FAILED_PRECONDITION`.
    pub status: &'static str,
    /// Human message.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(code: u16, status: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            status,
            message: message.into(),
        }
    }

    /// 400 INVALID_ARGUMENT.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", message)
    }

    /// 404 NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", message)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message, "status": self.status}})
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        Self::invalid(e.0)
    }
}

/// How long GKE takes for an operation, in real seconds (REFERENCE.md §4: a cluster 5–10
/// minutes, node pools minutes), scaled by [`crate::Options::time_scale`].
pub fn real_seconds(op_type: &str) -> f64 {
    match op_type {
        "CREATE_CLUSTER" => 420.0,
        "DELETE_CLUSTER" => 240.0,
        "CREATE_NODE_POOL" => 150.0,
        "DELETE_NODE_POOL" => 120.0,
        "SET_NODE_POOL_SIZE" => 60.0,
        "UPDATE_CLUSTER" | "UPGRADE_NODES" => 45.0,
        _ => 10.0,
    }
}

/// One long-running operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Short id, `operation-<n>-<hex>`.
    pub id: String,
    /// Project.
    pub project: String,
    /// Location (region).
    pub location: String,
    /// The cluster it runs on.
    pub cluster: String,
    /// The node pool it targets, if any.
    pub pool: Option<String>,
    /// `Operation.Type` name.
    pub op_type: &'static str,
    /// When it started.
    pub started: Instant,
    /// How long it takes.
    pub duration: Duration,
    /// Times it was read by `operations.get`.
    pub polls: u32,
    /// Done, with the time it finished.
    pub done: Option<String>,
    /// Set when it failed: `(code, message)`.
    pub error: Option<(i64, String)>,
    /// Start time as RFC 3339 text.
    pub start_time: String,
}

/// A failure to inject into the next operation of a type.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectedFailure {
    /// `Operation.Type` name, e.g. `CREATE_CLUSTER`.
    pub op_type: String,
    /// The error message the operation ends with.
    pub message: String,
}

/// A cluster with its node pools (canonical JSON, see [`crate::wire`]).
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The `Cluster` document (without `nodePools`).
    pub doc: Map<String, Value>,
    /// `NodePool` documents by name, in creation order.
    pub pools: Vec<Map<String, Value>>,
}

/// Known regions and their zones (a few real ones; enough to reject a typo).
pub fn zones_of(region: &str) -> Option<&'static [&'static str]> {
    Some(match region {
        "us-central1" => &[
            "us-central1-a",
            "us-central1-b",
            "us-central1-c",
            "us-central1-f",
        ],
        "us-east1" => &["us-east1-b", "us-east1-c", "us-east1-d"],
        "us-west1" => &["us-west1-a", "us-west1-b", "us-west1-c"],
        "europe-west1" => &["europe-west1-b", "europe-west1-c", "europe-west1-d"],
        "europe-west4" => &["europe-west4-a", "europe-west4-b", "europe-west4-c"],
        "asia-southeast1" => &[
            "asia-southeast1-a",
            "asia-southeast1-b",
            "asia-southeast1-c",
        ],
        _ => return None,
    })
}

/// Accelerator types the emulator knows (GKE checks them against the zones' offer).
pub const ACCELERATORS: &[&str] = &[
    "nvidia-tesla-t4",
    "nvidia-tesla-v100",
    "nvidia-tesla-p100",
    "nvidia-tesla-p4",
    "nvidia-tesla-a100",
    "nvidia-a100-80gb",
    "nvidia-l4",
    "nvidia-h100-80gb",
];

/// The versions `getServerConfig` offers.
#[derive(Debug, Clone)]
pub struct Versions {
    /// Master versions, newest first.
    pub master: Vec<String>,
    /// The default.
    pub default: String,
    /// Channel name -> (default, valid versions).
    pub channels: BTreeMap<String, (String, Vec<String>)>,
}

impl Default for Versions {
    fn default() -> Self {
        let master: Vec<String> = [
            "1.34.1-gke.1431000",
            "1.33.5-gke.1201000",
            "1.33.4-gke.1350000",
            "1.32.9-gke.1108000",
            "1.31.13-gke.1023000",
        ]
        .map(String::from)
        .to_vec();
        let channels = BTreeMap::from([
            (
                "RAPID".to_string(),
                (master[0].clone(), master[..2].to_vec()),
            ),
            (
                "REGULAR".to_string(),
                (master[1].clone(), master[1..4].to_vec()),
            ),
            (
                "STABLE".to_string(),
                (master[3].clone(), master[2..].to_vec()),
            ),
        ]);
        Self {
            default: master[1].clone(),
            master,
            channels,
        }
    }
}

impl Versions {
    /// The version a request's `initialClusterVersion` resolves to (`""`, `"-"` and
    /// `"latest"` name the default/newest; `1.33` the newest 1.33 patch), as GKE resolves it.
    pub fn resolve(&self, asked: &str) -> Option<String> {
        match asked {
            "" | "-" => Some(self.default.clone()),
            "latest" => self.master.first().cloned(),
            v => self
                .master
                .iter()
                .find(|m| {
                    *m == v || m.starts_with(&format!("{v}.")) || m.starts_with(&format!("{v}-"))
                })
                .cloned(),
        }
    }
}

/// The world.
#[derive(Debug, Default)]
pub struct World {
    /// Clusters by `(project, location, name)`.
    pub clusters: BTreeMap<(String, String, String), Cluster>,
    /// Operations by short id.
    pub operations: BTreeMap<String, Operation>,
    /// Operation counter (names are unique).
    pub next_op: u64,
    /// Failures to inject into the next operations.
    pub failures: Vec<InjectedFailure>,
    /// Versions offered.
    pub versions: Versions,
    /// Compute Engine: quotas, networks, disks ([`crate::compute`]).
    pub compute: crate::compute::Compute,
    /// IAM policies set by tests, by project (Resource Manager `getIamPolicy`); a project not
    /// listed has [`default_iam_policy`].
    pub iam_policies: BTreeMap<String, Value>,
}

/// The Compute Engine default service account of every emulated project.
pub const DEFAULT_NODE_SERVICE_ACCOUNT: &str = "123456789012-compute@developer.gserviceaccount.com";

/// A project's IAM policy where automatic grants are on: the Compute Engine default service
/// account (the nodes' identity) holds Editor (GKE docs, "Use least privilege service accounts
/// for your nodes": the default service account gets the Editor role unless the organisation
/// policy `iam.automaticIamGrantsForDefaultServiceAccounts` stops it).
pub fn default_iam_policy() -> Value {
    json!({"version": 1, "etag": "BwXhqDKJ4AI=", "bindings": [
        {"role": "roles/editor", "members": [format!("serviceAccount:{DEFAULT_NODE_SERVICE_ACCOUNT}")]},
    ]})
}

/// A mutation's result: the started operation's id.
pub type Started = Result<String, ApiError>;

/// Options that shape operations.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Polls before an operation may be DONE.
    pub min_polls: u32,
    /// Real seconds times this is an operation's duration.
    pub time_scale: f64,
    /// An operation nobody polls finishes this long after its duration.
    pub abandon_after: Duration,
}

/// Sort key of a version `1.33.5-gke.1201000`.
fn version_key(v: &str) -> Vec<u64> {
    v.split(['.', '-'])
        .filter_map(|p| p.parse::<u64>().ok())
        .collect()
}

fn valid_name(name: &str, max: usize) -> bool {
    // GKE: "must be 1-40 characters, lowercase letters, numbers and hyphens; start with a
    // letter, end with a number or a letter" (clusters; node pools likewise).
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !name.ends_with('-')
}

/// GCP label rules: keys 1–63 chars, lowercase letters, digits, `_`, `-`, starting with a
/// letter; values up to 63 of the same characters (may be empty).
pub fn check_labels(labels: &Value, path: &str) -> Result<(), ApiError> {
    let Some(map) = labels.as_object() else {
        return Ok(());
    };
    let ok = |s: &str| {
        s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    for (k, v) in map {
        let v = v.as_str().unwrap_or("\u{0}");
        if k.is_empty() || !k.starts_with(|c: char| c.is_ascii_lowercase()) || !ok(k) || !ok(v) {
            return Err(ApiError::invalid(format!(
                "Invalid value for field '{path}': label {k:?}={v:?} does not meet the label requirements"
            )));
        }
    }
    Ok(())
}

/// Kubernetes label rules, which node labels follow: a key is an optional DNS-subdomain prefix
/// and `/`, then a name of 1–63 alphanumerics, `-`, `_`, `.` starting and ending with an
/// alphanumeric; a value is empty or such a name.
pub fn check_node_labels(labels: &Value, path: &str) -> Result<(), ApiError> {
    let Some(map) = labels.as_object() else {
        return Ok(());
    };
    let name_ok = |s: &str| {
        s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    for (k, v) in map {
        let (prefix, name) = match k.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        let prefix_ok = prefix.is_none_or(|p| {
            p.len() <= 253
                && p.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                })
        });
        let v = v.as_str().unwrap_or("\u{0}");
        if !prefix_ok || !name_ok(name) || !(v.is_empty() || name_ok(v)) {
            return Err(ApiError::invalid(format!(
                "Invalid value for field '{path}': {k:?}={v:?} is not a valid Kubernetes label"
            )));
        }
    }
    Ok(())
}

fn now_text() -> String {
    // Times only need to be well-formed RFC 3339; the emulator does not promise real clocks.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A fake PEM CA (base64 of the PEM, as GKE gives `clusterCaCertificate`).
fn fake_ca(name: &str) -> String {
    use std::fmt::Write as _;
    // Not a real certificate: the emulator's endpoint is not a real API server either.
    let mut body = String::new();
    for b in format!("qhub-gke-emulator CA for {name}").bytes() {
        let _ = write!(body, "{b:02x}");
    }
    let pem = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
    b64(pem.as_bytes())
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn label_fingerprint(labels: &Value) -> String {
    // GKE's fingerprint is an opaque hash of the labels; FNV-1a of their JSON will do.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in labels.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

impl World {
    fn cluster_path(p: &str, l: &str, c: &str) -> String {
        format!("projects/{p}/locations/{l}/clusters/{c}")
    }

    /// Finishes every operation whose time has come; applies its effect.
    pub fn advance(&mut self, timing: Timing) {
        let ids: Vec<String> = self
            .operations
            .values()
            .filter(|o| o.done.is_none())
            .map(|o| o.id.clone())
            .collect();
        for id in ids {
            let Some(op) = self.operations.get(&id) else {
                continue;
            };
            let elapsed = op.started.elapsed();
            let ready = elapsed >= op.duration
                && (op.polls >= timing.min_polls || elapsed >= op.duration + timing.abandon_after);
            if ready {
                self.finish(&id);
            }
        }
    }

    fn finish(&mut self, id: &str) {
        let Some(op) = self.operations.get_mut(id) else {
            return;
        };
        op.done = Some(now_text());
        let op = op.clone();
        let key = (op.project.clone(), op.location.clone(), op.cluster.clone());
        let failed = op.error.is_some();
        let versions = self.versions.clone();
        let Some(cluster) = self.clusters.get_mut(&key) else {
            return;
        };
        let set_pool_status = |c: &mut Cluster, pool: &str, status: &str| {
            if let Some(p) = c
                .pools
                .iter_mut()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(pool))
            {
                p.insert("status".into(), json!(status));
            }
        };
        match op.op_type {
            "CREATE_CLUSTER" => {
                if failed {
                    cluster.doc.insert("status".into(), json!("ERROR"));
                    let message = op.error.map(|e| e.1).unwrap_or_default();
                    cluster.doc.insert("statusMessage".into(), json!(message));
                    // `conditions` replaced the deprecated `statusMessage`; GKE sends both.
                    cluster.doc.insert(
                        "conditions".into(),
                        json!([{"code": "GCE_QUOTA_EXCEEDED", "message": message, "canonicalCode": 8}]),
                    );
                    for p in &mut cluster.pools {
                        p.insert("status".into(), json!("ERROR"));
                    }
                    return;
                }
                let version = cluster
                    .doc
                    .get("currentMasterVersion")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .unwrap_or(versions.default);
                let n = self.next_op;
                cluster.doc.insert("status".into(), json!("RUNNING"));
                cluster.doc.insert(
                    "endpoint".into(),
                    json!(format!("10.{}.{}.2", (n / 250) % 250, n % 250)),
                );
                let name = op.cluster.clone();
                cluster.doc.insert(
                    "masterAuth".into(),
                    json!({"clusterCaCertificate": fake_ca(&name)}),
                );
                cluster
                    .doc
                    .insert("currentNodeVersion".into(), json!(version));
                for p in &mut cluster.pools {
                    p.insert("status".into(), json!("RUNNING"));
                    p.insert("version".into(), json!(version));
                }
            }
            "DELETE_CLUSTER" => {
                if !failed {
                    self.clusters.remove(&key);
                }
            }
            "CREATE_NODE_POOL" => {
                if let Some(pool) = &op.pool {
                    set_pool_status(cluster, pool, if failed { "ERROR" } else { "RUNNING" });
                }
                cluster.doc.insert("status".into(), json!("RUNNING"));
            }
            "DELETE_NODE_POOL" => {
                if let Some(pool) = &op.pool
                    && !failed
                {
                    cluster
                        .pools
                        .retain(|p| p.get("name").and_then(Value::as_str) != Some(pool.as_str()));
                }
                cluster.doc.insert("status".into(), json!("RUNNING"));
            }
            _ => {
                if let Some(pool) = &op.pool {
                    set_pool_status(
                        cluster,
                        pool,
                        if failed {
                            "RUNNING_WITH_ERROR"
                        } else {
                            "RUNNING"
                        },
                    );
                }
                if cluster.doc.get("status").and_then(Value::as_str) == Some("RECONCILING") {
                    cluster.doc.insert("status".into(), json!("RUNNING"));
                }
            }
        }
    }

    /// The operation still running on a cluster, if any (GKE allows one at a time).
    pub fn running_on(&self, p: &str, l: &str, c: &str) -> Option<&Operation> {
        self.operations
            .values()
            .find(|o| o.done.is_none() && o.project == p && o.location == l && o.cluster == c)
    }

    fn start(
        &mut self,
        timing: Timing,
        (p, l, c): (&str, &str, &str),
        pool: Option<&str>,
        op_type: &'static str,
    ) -> String {
        self.next_op += 1;
        let n = self.next_op;
        let id = format!(
            "operation-{}-{:08x}",
            1_700_000_000_000u64 + n,
            (n.wrapping_mul(2_654_435_761)) as u32
        );
        let error = self
            .failures
            .iter()
            .position(|f| f.op_type == op_type)
            .map(|i| self.failures.remove(i))
            // google.rpc.Code 13 INTERNAL, as GKE reports a failed operation.
            .map(|f| (13, f.message));
        let duration =
            Duration::from_secs_f64((real_seconds(op_type) * timing.time_scale).max(0.0));
        self.operations.insert(
            id.clone(),
            Operation {
                id: id.clone(),
                project: p.into(),
                location: l.into(),
                cluster: c.into(),
                pool: pool.map(String::from),
                op_type,
                started: Instant::now(),
                duration,
                polls: 0,
                done: None,
                error,
                start_time: now_text(),
            },
        );
        id
    }

    /// The `Operation` document.
    pub fn operation_doc(&self, id: &str, timing: Timing) -> Option<Value> {
        let o = self.operations.get(id)?;
        let status = match (&o.done, o.polls, o.started.elapsed()) {
            (Some(_), _, _) => "DONE",
            (None, 0, e) if e < o.duration / 4 || o.duration.is_zero() && timing.min_polls > 0 => {
                "PENDING"
            }
            _ => "RUNNING",
        };
        let cluster_path = Self::cluster_path(&o.project, &o.location, &o.cluster);
        let target = match &o.pool {
            Some(p) => format!("{cluster_path}/nodePools/{p}"),
            None => cluster_path,
        };
        let mut doc = json!({
            "name": o.id,
            "zone": o.location,
            "operationType": o.op_type,
            "status": status,
            "selfLink": format!("https://container.googleapis.com/v1/projects/{}/locations/{}/operations/{}", o.project, o.location, o.id),
            "targetLink": format!("https://container.googleapis.com/v1/{target}"),
            "location": format!("https://container.googleapis.com/v1/projects/{}/locations/{}", o.project, o.location),
            "startTime": o.start_time,
        });
        if let Some(end) = &o.done {
            doc["endTime"] = json!(end);
            if let Some((code, message)) = &o.error {
                doc["error"] = json!({"code": code, "message": message});
                doc["statusMessage"] = json!(message);
            }
        }
        Some(doc)
    }

    fn cluster_mut(&mut self, p: &str, l: &str, c: &str) -> Result<&mut Cluster, ApiError> {
        self.clusters
            .get_mut(&(p.into(), l.into(), c.into()))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Not found: projects/{p}/locations/{l}/clusters/{c}."
                ))
            })
    }

    /// GKE's one-mutating-operation-per-cluster rule.
    pub fn busy(&self, p: &str, l: &str, c: &str) -> Result<(), ApiError> {
        if let Some(o) = self.running_on(p, l, c) {
            let doing = match o.op_type {
                "CREATE_CLUSTER" => "creating cluster",
                "DELETE_CLUSTER" => "deleting cluster",
                "CREATE_NODE_POOL" => "creating node pool",
                "DELETE_NODE_POOL" => "deleting node pool",
                _ => "updating cluster",
            };
            // GKE's wording, e.g. "Operation operation-… is currently creating cluster x.
            // Please wait and try again once it is done."
            return Err(ApiError::new(
                400,
                "FAILED_PRECONDITION",
                format!(
                    "Operation {} is currently {doing} {c}. Please wait and try again once it is done.",
                    o.id
                ),
            ));
        }
        Ok(())
    }

    fn check_location(p: &str, l: &str) -> Result<&'static [&'static str], ApiError> {
        let _ = p;
        zones_of(l).ok_or_else(|| {
            ApiError::invalid(format!("Location \"{l}\" is not a valid GKE location."))
        })
    }

    fn check_pool(pool: &Map<String, Value>, path: &str, zones: &[&str]) -> Result<(), ApiError> {
        let name = pool.get("name").and_then(Value::as_str).unwrap_or("");
        if !valid_name(name, 40) {
            return Err(ApiError::invalid(format!(
                "Invalid value for field '{path}.name': {name:?}. Must be 1-40 lowercase letters, numbers and hyphens, starting with a letter."
            )));
        }
        if let Some(a) = pool.get("autoscaling").and_then(Value::as_object)
            && a.get("enabled").and_then(Value::as_bool) == Some(true)
            // Total counts are checked by `check_pool_zones`.
            && !a.contains_key("totalMinNodeCount")
            && !a.contains_key("totalMaxNodeCount")
        {
            let min = a.get("minNodeCount").and_then(Value::as_i64).unwrap_or(0);
            let max = a.get("maxNodeCount").and_then(Value::as_i64).unwrap_or(0);
            if min < 0 || max < 1 || min > max {
                return Err(ApiError::invalid(format!(
                    "Invalid value for field '{path}.autoscaling': min_node_count={min}, max_node_count={max}; need 0 <= min <= max and max >= 1."
                )));
            }
        }
        let config = pool.get("config").and_then(Value::as_object);
        if let Some(c) = config {
            check_node_labels(
                c.get("labels").unwrap_or(&Value::Null),
                &format!("{path}.config.labels"),
            )?;
            for a in c
                .get("accelerators")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let t = a
                    .get("acceleratorType")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !ACCELERATORS.contains(&t) {
                    return Err(ApiError::invalid(format!(
                        "Accelerator type \"{t}\" does not exist in zone {}.",
                        zones.first().copied().unwrap_or("?")
                    )));
                }
                let n = a
                    .get("acceleratorCount")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or(0);
                if n < 1 {
                    return Err(ApiError::invalid(format!(
                        "Invalid value for field '{path}.config.accelerators.accelerator_count': {n}."
                    )));
                }
            }
            if c.get("preemptible").and_then(Value::as_bool) == Some(true)
                && c.get("spot").and_then(Value::as_bool) == Some(true)
            {
                return Err(ApiError::invalid(format!(
                    "Invalid value for field '{path}.config': preemptible and spot cannot both be set."
                )));
            }
        }
        for z in pool
            .get("locations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let z = z.as_str().unwrap_or("");
            if !zones.contains(&z) {
                return Err(ApiError::invalid(format!(
                    "Invalid value for field '{path}.locations': zone \"{z}\" is not in the cluster's region."
                )));
            }
        }
        Ok(())
    }

    fn pool_defaults(pool: &mut Map<String, Value>, cluster_path: &str, locations: &Value) {
        let name = pool
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        pool.insert("status".into(), json!("PROVISIONING"));
        pool.insert(
            "selfLink".into(),
            json!(format!(
                "https://container.googleapis.com/v1/{cluster_path}/nodePools/{name}"
            )),
        );
        if !pool.contains_key("locations") {
            pool.insert("locations".into(), locations.clone());
        }
        let config = pool
            .entry("config")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        let mut config = config;
        config.entry("machineType").or_insert(json!("e2-medium"));
        config.entry("diskSizeGb").or_insert(json!(100));
        config.entry("imageType").or_insert(json!("COS_CONTAINERD"));
        pool.insert("config".into(), Value::Object(config));
        pool.entry("management").or_insert(json!({}));
        pool.insert(
            "instanceGroupUrls".into(),
            json!([format!("https://www.googleapis.com/compute/v1/projects/x/zones/y/instanceGroupManagers/gke-{name}-grp")]),
        );
    }

    /// `clusters.create`.
    pub fn create_cluster(&mut self, timing: Timing, p: &str, l: &str, body: Value) -> Started {
        let zones = Self::check_location(p, l)?;
        let mut cluster = match body.get("cluster") {
            Some(Value::Object(c)) => c.clone(),
            _ => return Err(ApiError::invalid("Cluster is required.")),
        };
        wire::normalize_cluster(&mut cluster, "cluster")?;
        let name = cluster
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !valid_name(&name, 40) {
            return Err(ApiError::invalid(format!(
                "Invalid value for field 'cluster.name': {name:?}. Must be 1-40 lowercase letters, numbers and hyphens, starting with a letter."
            )));
        }
        if self
            .clusters
            .contains_key(&(p.into(), l.into(), name.clone()))
        {
            return Err(ApiError::new(
                409,
                "ALREADY_EXISTS",
                format!("Already exists: projects/{p}/locations/{l}/clusters/{name}."),
            ));
        }
        check_labels(
            cluster.get("resourceLabels").unwrap_or(&Value::Null),
            "cluster.resource_labels",
        )?;
        let asked = cluster
            .get("initialClusterVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let version = self.versions.resolve(&asked).ok_or_else(|| {
            ApiError::invalid(format!("Master version \"{asked}\" is unsupported."))
        })?;
        if let Some(ch) = cluster
            .get("releaseChannel")
            .and_then(|r| r.get("channel"))
            .and_then(Value::as_str)
            && let Some((_, valid)) = self.versions.channels.get(ch)
            && !valid.contains(&version)
        {
            return Err(ApiError::invalid(format!(
                "Version \"{version}\" is not available in release channel {ch}."
            )));
        }
        let locations = match cluster.get("locations") {
            Some(Value::Array(z)) if !z.is_empty() => {
                for zone in z {
                    let zone = zone.as_str().unwrap_or("");
                    if !zones.contains(&zone) {
                        return Err(ApiError::invalid(format!(
                            "Invalid value for field 'cluster.locations': zone \"{zone}\" is not in region {l}."
                        )));
                    }
                }
                Value::Array(z.clone())
            }
            // A regional cluster's nodes go to three of the region's zones by default.
            _ => json!(zones.iter().take(3).collect::<Vec<_>>()),
        };
        let mut pools: Vec<Map<String, Value>> = Vec::new();
        if let Some(list) = cluster.remove("nodePools") {
            for (i, p) in list.as_array().into_iter().flatten().enumerate() {
                let pool = p.as_object().cloned().unwrap_or_default();
                Self::check_pool(&pool, &format!("cluster.node_pools[{i}]"), zones)?;
                if pools.iter().any(|q| q.get("name") == pool.get("name")) {
                    return Err(ApiError::invalid(format!(
                        "Node pool names must be unique: {} is used twice.",
                        pool.get("name").unwrap_or(&Value::Null)
                    )));
                }
                pools.push(pool);
            }
        }
        let initial = cluster
            .get("initialNodeCount")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if pools.is_empty() && initial < 1 {
            return Err(ApiError::invalid(
                "Cluster.initial_node_count must be greater than zero.",
            ));
        }
        if !pools.is_empty() && (initial > 0 || cluster.contains_key("nodeConfig")) {
            return Err(ApiError::invalid(
                "Cluster.node_pools and Cluster.initial_node_count/node_config are mutually exclusive.",
            ));
        }
        if pools.is_empty() {
            let mut pool = Map::new();
            pool.insert("name".into(), json!("default-pool"));
            pool.insert("initialNodeCount".into(), json!(initial));
            if let Some(nc) = cluster.remove("nodeConfig") {
                pool.insert("config".into(), nc);
            }
            pools.push(pool);
        }
        let cluster_path = Self::cluster_path(p, l, &name);
        for pool in &mut pools {
            Self::pool_defaults(pool, &cluster_path, &locations);
            pool.insert("version".into(), json!(version));
        }
        let (network, subnetwork) = self.check_network(p, l, &cluster)?;
        let mut demand = Demand::new();
        for (i, pool) in pools.iter().enumerate() {
            Self::check_pool_zones(l, pool, &locations, &format!("cluster.node_pools[{i}]"))?;
            pool_demand(l, pool, &locations, &mut demand);
        }
        self.check_quota(p, &demand)?;
        cluster.insert("network".into(), json!(network));
        cluster.insert("subnetwork".into(), json!(subnetwork));
        cluster.remove("initialClusterVersion");
        cluster.insert("location".into(), json!(l));
        cluster.insert("zone".into(), json!(l));
        cluster.insert("locations".into(), locations);
        cluster.insert("status".into(), json!("PROVISIONING"));
        cluster.insert("currentMasterVersion".into(), json!(version));
        cluster.insert("initialClusterVersion".into(), json!(version));
        cluster.insert(
            "selfLink".into(),
            json!(format!(
                "https://container.googleapis.com/v1/{cluster_path}"
            )),
        );
        cluster.insert("createTime".into(), json!(now_text()));
        let labels = cluster.get("resourceLabels").cloned().unwrap_or(json!({}));
        cluster.insert("labelFingerprint".into(), json!(label_fingerprint(&labels)));
        cluster
            .entry("releaseChannel")
            .or_insert(json!({"channel": "REGULAR"}));
        self.clusters.insert(
            (p.into(), l.into(), name.clone()),
            Cluster {
                doc: cluster,
                pools,
            },
        );
        Ok(self.start(timing, (p, l, &name), None, "CREATE_CLUSTER"))
    }

    /// `clusters.get`: the document with its pools.
    pub fn cluster_doc(&self, p: &str, l: &str, c: &str) -> Result<Value, ApiError> {
        let cluster = self
            .clusters
            .get(&(p.into(), l.into(), c.into()))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Not found: projects/{p}/locations/{l}/clusters/{c}."
                ))
            })?;
        let mut doc = cluster.doc.clone();
        let locations = doc.get("locations").cloned().unwrap_or(json!([]));
        // Cluster.currentNodeCount (deprecated, still answered): nodes in all pools.
        let nodes: i64 = cluster
            .pools
            .iter()
            .map(|p| pool_nodes(p, &locations))
            .sum();
        doc.insert("currentNodeCount".into(), json!(nodes));
        doc.insert(
            "nodePools".into(),
            Value::Array(cluster.pools.iter().cloned().map(Value::Object).collect()),
        );
        Ok(Value::Object(doc))
    }

    /// `clusters.list`.
    pub fn list_clusters(&self, p: &str, l: &str) -> Result<Value, ApiError> {
        // GKE accepts `-` for "every location".
        if l != "-" {
            Self::check_location(p, l)?;
        }
        let clusters: Vec<Value> = self
            .clusters
            .keys()
            .filter(|(cp, cl, _)| cp == p && (l == "-" || cl == l))
            .filter_map(|(cp, cl, c)| self.cluster_doc(cp, cl, c).ok())
            .collect();
        Ok(json!({"clusters": clusters}))
    }

    /// `clusters.delete`.
    pub fn delete_cluster(&mut self, timing: Timing, p: &str, l: &str, c: &str) -> Started {
        self.cluster_mut(p, l, c)?;
        self.busy(p, l, c)?;
        let cluster = self.cluster_mut(p, l, c)?;
        cluster.doc.insert("status".into(), json!("STOPPING"));
        for pool in &mut cluster.pools {
            pool.insert("status".into(), json!("STOPPING"));
        }
        Ok(self.start(timing, (p, l, c), None, "DELETE_CLUSTER"))
    }

    fn require_running(&mut self, p: &str, l: &str, c: &str) -> Result<(), ApiError> {
        let status = self
            .cluster_mut(p, l, c)?
            .doc
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if status != "RUNNING" && status != "RECONCILING" {
            return Err(ApiError::new(
                400,
                "FAILED_PRECONDITION",
                format!(
                    "Cluster {c} is in status {status}; it must be RUNNING for this operation."
                ),
            ));
        }
        Ok(())
    }

    /// `clusters.update`: `desiredMasterVersion` (an upgrade: GKE cannot downgrade),
    /// `desiredLocations`, `desiredReleaseChannel`; one field per call, as GKE wants.
    pub fn update_cluster(
        &mut self,
        timing: Timing,
        p: &str,
        l: &str,
        c: &str,
        body: Value,
    ) -> Started {
        let zones = Self::check_location(p, l)?;
        self.cluster_mut(p, l, c)?;
        self.busy(p, l, c)?;
        self.require_running(p, l, c)?;
        let update = body
            .get("update")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let fields: Vec<&String> = update.keys().collect();
        if fields.len() != 1 {
            return Err(ApiError::invalid(format!(
                "Exactly one update can be applied to a cluster with each request, got {fields:?}."
            )));
        }
        let versions = self.versions.clone();
        let cluster = self.cluster_mut(p, l, c)?;
        let op_type = if let Some(v) = update.get("desiredMasterVersion").and_then(Value::as_str) {
            let target = versions.resolve(v).ok_or_else(|| {
                ApiError::invalid(format!("Master version \"{v}\" is unsupported."))
            })?;
            let current = cluster
                .doc
                .get("currentMasterVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if version_key(&target) < version_key(&current) {
                return Err(ApiError::invalid(format!(
                    "Master cannot be downgraded from \"{current}\" to \"{target}\"."
                )));
            }
            cluster
                .doc
                .insert("currentMasterVersion".into(), json!(target));
            "UPGRADE_MASTER"
        } else if let Some(z) = update.get("desiredLocations").and_then(Value::as_array) {
            for zone in z {
                let zone = zone.as_str().unwrap_or("");
                if !zones.contains(&zone) {
                    return Err(ApiError::invalid(format!(
                        "Invalid value for field 'update.desired_locations': zone \"{zone}\" is not in region {l}."
                    )));
                }
            }
            cluster
                .doc
                .insert("locations".into(), Value::Array(z.clone()));
            "UPDATE_CLUSTER"
        } else if let Some(r) = update.get("desiredReleaseChannel") {
            let mut r = r.as_object().cloned().unwrap_or_default();
            if let Some(ch) = r.get("channel") {
                let name =
                    wire::enum_in(&wire::CHANNEL, "update.desired_release_channel.channel", ch)?;
                r.insert("channel".into(), json!(name));
            }
            cluster
                .doc
                .insert("releaseChannel".into(), Value::Object(r));
            "UPDATE_CLUSTER"
        } else {
            return Err(ApiError::invalid(format!(
                "Update {fields:?} is not supported by the emulator."
            )));
        };
        cluster.doc.insert("status".into(), json!("RECONCILING"));
        Ok(self.start(timing, (p, l, c), None, op_type))
    }

    /// GKE upgrading a cluster by itself (release channel auto-upgrade): control plane and
    /// nodes move to `version`. False when there is no such cluster.
    pub fn auto_upgrade(&mut self, p: &str, l: &str, c: &str, version: &str) -> bool {
        let Ok(cluster) = self.cluster_mut(p, l, c) else {
            return false;
        };
        cluster
            .doc
            .insert("currentMasterVersion".into(), json!(version));
        cluster
            .doc
            .insert("currentNodeVersion".into(), json!(version));
        for pool in &mut cluster.pools {
            pool.insert("version".into(), json!(version));
        }
        true
    }

    /// `clusters.setResourceLabels`.
    pub fn set_labels(
        &mut self,
        timing: Timing,
        p: &str,
        l: &str,
        c: &str,
        body: Value,
    ) -> Started {
        self.cluster_mut(p, l, c)?;
        self.busy(p, l, c)?;
        self.require_running(p, l, c)?;
        let labels = body.get("resourceLabels").cloned().unwrap_or(json!({}));
        check_labels(&labels, "resource_labels")?;
        let cluster = self.cluster_mut(p, l, c)?;
        let fp = body
            .get("labelFingerprint")
            .and_then(Value::as_str)
            .unwrap_or("");
        let current = cluster
            .doc
            .get("labelFingerprint")
            .and_then(Value::as_str)
            .unwrap_or("");
        if fp != current {
            // GKE's optimistic locking: the fingerprint read with the cluster must match.
            return Err(ApiError::new(
                400,
                "FAILED_PRECONDITION",
                "Labels could not be set due to fingerprint mismatch.",
            ));
        }
        cluster
            .doc
            .insert("labelFingerprint".into(), json!(label_fingerprint(&labels)));
        cluster.doc.insert("resourceLabels".into(), labels);
        Ok(self.start(timing, (p, l, c), None, "SET_LABELS"))
    }

    fn pool_mut<'a>(
        cluster: &'a mut Cluster,
        p: &str,
        l: &str,
        c: &str,
        np: &str,
    ) -> Result<&'a mut Map<String, Value>, ApiError> {
        cluster
            .pools
            .iter_mut()
            .find(|x| x.get("name").and_then(Value::as_str) == Some(np))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Not found: projects/{p}/locations/{l}/clusters/{c}/nodePools/{np}."
                ))
            })
    }

    /// `nodePools.get`.
    pub fn pool_doc(&mut self, p: &str, l: &str, c: &str, np: &str) -> Result<Value, ApiError> {
        let cluster = self.cluster_mut(p, l, c)?;
        Ok(Value::Object(Self::pool_mut(cluster, p, l, c, np)?.clone()))
    }

    /// `nodePools.list`.
    pub fn list_pools(&mut self, p: &str, l: &str, c: &str) -> Result<Value, ApiError> {
        let cluster = self.cluster_mut(p, l, c)?;
        Ok(
            json!({"nodePools": cluster.pools.iter().cloned().map(Value::Object).collect::<Vec<_>>()}),
        )
    }

    /// `nodePools.create`.
    pub fn create_pool(
        &mut self,
        timing: Timing,
        p: &str,
        l: &str,
        c: &str,
        body: Value,
    ) -> Started {
        let zones = Self::check_location(p, l)?;
        self.cluster_mut(p, l, c)?;
        self.busy(p, l, c)?;
        self.require_running(p, l, c)?;
        let mut pool = match body.get("nodePool") {
            Some(Value::Object(x)) => x.clone(),
            _ => return Err(ApiError::invalid("Node_pool is required.")),
        };
        wire::normalize_pool(&mut pool, "node_pool")?;
        Self::check_pool(&pool, "node_pool", zones)?;
        let name = pool
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let cluster_path = Self::cluster_path(p, l, c);
        let cluster = self.cluster_mut(p, l, c)?;
        if cluster
            .pools
            .iter()
            .any(|x| x.get("name").and_then(Value::as_str) == Some(&name))
        {
            return Err(ApiError::new(
                409,
                "ALREADY_EXISTS",
                format!("Already exists: {cluster_path}/nodePools/{name}."),
            ));
        }
        let locations = cluster.doc.get("locations").cloned().unwrap_or(json!([]));
        let version = cluster
            .doc
            .get("currentMasterVersion")
            .cloned()
            .unwrap_or(json!(""));
        Self::pool_defaults(&mut pool, &cluster_path, &locations);
        pool.insert("version".into(), version);
        Self::check_pool_zones(l, &pool, &locations, "node_pool")?;
        let mut demand = Demand::new();
        pool_demand(l, &pool, &locations, &mut demand);
        self.check_quota(p, &demand)?;
        let cluster = self.cluster_mut(p, l, c)?;
        cluster.pools.push(pool);
        cluster.doc.insert("status".into(), json!("RECONCILING"));
        Ok(self.start(timing, (p, l, c), Some(&name), "CREATE_NODE_POOL"))
    }

    /// `nodePools.delete`.
    pub fn delete_pool(&mut self, timing: Timing, p: &str, l: &str, c: &str, np: &str) -> Started {
        let cluster = self.cluster_mut(p, l, c)?;
        Self::pool_mut(cluster, p, l, c, np)?;
        self.busy(p, l, c)?;
        let cluster = self.cluster_mut(p, l, c)?;
        Self::pool_mut(cluster, p, l, c, np)?.insert("status".into(), json!("STOPPING"));
        cluster.doc.insert("status".into(), json!("RECONCILING"));
        Ok(self.start(timing, (p, l, c), Some(np), "DELETE_NODE_POOL"))
    }

    /// A node pool mutation: `update`, `setAutoscaling`, `setSize`, `setManagement`.
    pub fn mutate_pool(
        &mut self,
        timing: Timing,
        (p, l, c, np): (&str, &str, &str, &str),
        verb: &str,
        body: Value,
    ) -> Started {
        let zones = Self::check_location(p, l)?;
        let cluster = self.cluster_mut(p, l, c)?;
        Self::pool_mut(cluster, p, l, c, np)?;
        self.busy(p, l, c)?;
        self.require_running(p, l, c)?;
        let cluster = self.cluster_mut(p, l, c)?;
        let pool = Self::pool_mut(cluster, p, l, c, np)?;
        let op_type = match verb {
            "setAutoscaling" => {
                let mut a = body
                    .get("autoscaling")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                wire::normalize_autoscaling(&mut a, "autoscaling")?;
                let mut candidate = pool.clone();
                candidate.insert("autoscaling".into(), Value::Object(a.clone()));
                Self::check_pool(&candidate, "node_pool", zones)?;
                pool.insert("autoscaling".into(), Value::Object(a));
                "UPDATE_CLUSTER"
            }
            "setSize" => {
                let n = wire::int32_in("node_count", body.get("nodeCount").unwrap_or(&json!(0)))?;
                if n < 0 {
                    return Err(ApiError::invalid("node_count must be >= 0."));
                }
                pool.insert("currentNodeCount".into(), json!(n));
                "SET_NODE_POOL_SIZE"
            }
            "setManagement" => {
                let m = body.get("management").cloned().unwrap_or(json!({}));
                pool.insert("management".into(), m);
                "SET_NODE_POOL_MANAGEMENT"
            }
            "update" => {
                let mut body = body.as_object().cloned().unwrap_or_default();
                // UpdateNodePoolRequest: `node_version` and `image_type` are "Required" in
                // cluster_service.proto; the current values leave the nodes as they are.
                for (field, key) in [("node_version", "nodeVersion"), ("image_type", "imageType")] {
                    if body
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                    {
                        return Err(ApiError::invalid(format!("{field} is required.")));
                    }
                }
                // UpdateNodePoolRequest: `labels` and `taints` are wrapper messages
                // (NodeLabels{labels}, NodeTaints{taints}); absent means "unchanged".
                let mut config = pool
                    .get("config")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                if let Some(labels) = body.remove("labels") {
                    let labels = labels.get("labels").cloned().unwrap_or(json!({}));
                    check_node_labels(&labels, "labels")?;
                    config.insert("labels".into(), labels);
                }
                if let Some(taints) = body.remove("taints") {
                    let mut wrapper = Map::new();
                    wrapper.insert(
                        "taints".into(),
                        taints.get("taints").cloned().unwrap_or(json!([])),
                    );
                    wire::normalize_node_config(&mut wrapper, "taints")?;
                    config.insert(
                        "taints".into(),
                        wrapper.remove("taints").unwrap_or(json!([])),
                    );
                }
                if let Some(t) = body
                    .remove("machineType")
                    .and_then(|v| v.as_str().map(String::from))
                    && !t.is_empty()
                {
                    config.insert("machineType".into(), json!(t));
                }
                if let Some(Value::Array(z)) = body.remove("locations")
                    && !z.is_empty()
                {
                    pool.insert("locations".into(), Value::Array(z));
                }
                let pool = Self::pool_mut(self.cluster_mut(p, l, c)?, p, l, c, np)?;
                pool.insert("config".into(), Value::Object(config));
                "UPGRADE_NODES"
            }
            other => {
                return Err(ApiError::not_found(format!(
                    "Method not found: nodePools:{other}"
                )));
            }
        };
        let pool = Self::pool_mut(self.cluster_mut(p, l, c)?, p, l, c, np)?;
        pool.insert("status".into(), json!("RECONCILING"));
        Ok(self.start(timing, (p, l, c), Some(np), op_type))
    }

    /// `getServerConfig`.
    pub fn server_config(&self, p: &str, l: &str) -> Result<Value, ApiError> {
        Self::check_location(p, l)?;
        let v = &self.versions;
        let channels: Vec<Value> = v
            .channels
            .iter()
            .map(|(name, (default, valid))| {
                json!({"channel": name, "defaultVersion": default, "validVersions": valid})
            })
            .collect();
        Ok(json!({
            "defaultClusterVersion": v.default,
            "validMasterVersions": v.master,
            "validNodeVersions": v.master,
            "defaultImageType": "COS_CONTAINERD",
            "validImageTypes": ["COS_CONTAINERD", "UBUNTU_CONTAINERD"],
            "channels": channels,
        }))
    }
}

/// What a set of node pools asks of the project's quotas: `(scope, metric) -> amount`, the
/// scope a region or `global`.
pub type Demand = BTreeMap<(String, String), f64>;

/// The zones a pool's nodes run in: its own `locations`, else the cluster's.
fn pool_zones(pool: &Map<String, Value>, cluster_locations: &Value) -> Vec<String> {
    let own = pool
        .get("locations")
        .and_then(Value::as_array)
        .filter(|z| !z.is_empty());
    own.or_else(|| cluster_locations.as_array())
        .into_iter()
        .flatten()
        .filter_map(|z| z.as_str().map(String::from))
        .collect()
}

/// How many nodes a pool has: GKE's `initialNodeCount` is **per zone**, so a pool in N zones
/// starts `initialNodeCount × N` nodes ("initial_node_count … in each of the node pool's
/// zones", NodePool reference; the hivemq example of issue #48 there: 3 nodes × 3 zones ×
/// 8 vCPUs asked 72 CPUs).
pub fn pool_nodes(pool: &Map<String, Value>, cluster_locations: &Value) -> i64 {
    let per_zone = pool
        .get("initialNodeCount")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    per_zone * pool_zones(pool, cluster_locations).len() as i64
}

fn add(demand: &mut Demand, scope: &str, metric: &str, amount: f64) {
    if amount > 0.0 {
        *demand
            .entry((scope.to_string(), metric.to_string()))
            .or_insert(0.0) += amount;
    }
}

/// The quota a pool's nodes take in `region`: vCPUs against the machine family's metric
/// (and `CPUS_ALL_REGIONS`), GPUs against the accelerator's (`PREEMPTIBLE_…` for spot and
/// preemptible VMs) and `GPUS_ALL_REGIONS`.
pub fn pool_demand(
    region: &str,
    pool: &Map<String, Value>,
    cluster_locations: &Value,
    demand: &mut Demand,
) {
    let nodes = pool_nodes(pool, cluster_locations) as f64;
    if nodes <= 0.0 {
        return;
    }
    let config = pool.get("config").and_then(Value::as_object);
    let machine = config
        .and_then(|c| c.get("machineType"))
        .and_then(Value::as_str)
        .unwrap_or("e2-medium");
    let cpus = f64::from(crate::compute::guest_cpus(machine).unwrap_or(2));
    add(
        demand,
        region,
        crate::compute::cpu_metric(machine),
        nodes * cpus,
    );
    add(demand, "global", "CPUS_ALL_REGIONS", nodes * cpus);
    let spot = config.is_some_and(|c| {
        c.get("spot").and_then(Value::as_bool) == Some(true)
            || c.get("preemptible").and_then(Value::as_bool) == Some(true)
    });
    for a in config
        .and_then(|c| c.get("accelerators"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = a
            .get("acceleratorType")
            .and_then(Value::as_str)
            .unwrap_or("");
        let count = a
            .get("acceleratorCount")
            .and_then(|c| wire::int64_in("acceleratorCount", c).ok())
            .unwrap_or(0) as f64;
        if let Some(metric) = crate::compute::gpu_metric(kind) {
            let metric = if spot {
                format!("PREEMPTIBLE_{metric}")
            } else {
                metric.to_string()
            };
            add(demand, region, &metric, nodes * count);
            add(demand, "global", "GPUS_ALL_REGIONS", nodes * count);
        }
    }
}

impl World {
    /// What the project's clusters use now, by `(scope, metric)`.
    pub fn usage(&self, p: &str) -> Demand {
        let mut used = Demand::new();
        for ((cp, cl, _), c) in &self.clusters {
            if cp != p {
                continue;
            }
            let locations = c.doc.get("locations").cloned().unwrap_or(json!([]));
            for pool in &c.pools {
                pool_demand(cl, pool, &locations, &mut used);
            }
        }
        used
    }

    /// GKE's quota check of a create: every quota the new nodes would exceed, in GKE's words
    /// (403 PERMISSION_DENIED, numbered when several: GoogleCloudPlatform/cloud-ops-sandbox#44,
    /// googlecodelabs/feedback#950 — "Insufficient regional quota to satisfy request: resource
    /// "CPUS": request requires '12.0' and is short '4.0'. project has a quota of '8.0' with
    /// '8.0' available. View and manage quotas at `https://console.cloud.google.com/iam-admin/
    /// quotas?usage=USED&project=P`.").
    pub fn check_quota(&self, p: &str, demand: &Demand) -> Result<(), ApiError> {
        let used = self.usage(p);
        let mut short = Vec::new();
        for ((scope, metric), need) in demand {
            let Some(limit) = self.compute.limit(p, scope, metric) else {
                continue;
            };
            let in_use = used
                .get(&(scope.clone(), metric.clone()))
                .copied()
                .unwrap_or(0.0);
            let available = (limit - in_use).max(0.0);
            if *need > available {
                let kind = if scope == "global" {
                    "project"
                } else {
                    "regional"
                };
                short.push(format!(
                    "Insufficient {kind} quota to satisfy request: resource \"{metric}\": request requires '{need:.1}' and is short '{:.1}'. project has a quota of '{limit:.1}' with '{available:.1}' available. View and manage quotas at https://console.cloud.google.com/iam-admin/quotas?usage=USED&project={p}.",
                    need - available
                ));
            }
        }
        match short.len() {
            0 => Ok(()),
            1 => Err(ApiError::new(403, "PERMISSION_DENIED", short.remove(0))),
            _ => Err(ApiError::new(
                403,
                "PERMISSION_DENIED",
                short
                    .iter()
                    .enumerate()
                    .map(|(i, s)| format!("\n\t({}) {s}", i + 1))
                    .collect::<String>(),
            )),
        }
    }

    /// GKE's checks of a pool against the zones it would run in: autoscaling's per-zone and
    /// total counts are exclusive ("The total_*_node_count fields are mutually exclusive with
    /// the *_node_count fields", NodePoolAutoscaling reference), and each accelerator must be
    /// offered in each zone (issue 26 of qhub-rs: a regional cluster's GPU pool without
    /// `locations` fails with "Accelerator type … does not exist in zone …").
    pub fn check_pool_zones(
        region: &str,
        pool: &Map<String, Value>,
        cluster_locations: &Value,
        path: &str,
    ) -> Result<(), ApiError> {
        if let Some(a) = pool.get("autoscaling").and_then(Value::as_object) {
            let per_zone = a.contains_key("minNodeCount") || a.contains_key("maxNodeCount");
            let total = a.contains_key("totalMinNodeCount") || a.contains_key("totalMaxNodeCount");
            if per_zone && total {
                return Err(ApiError::invalid(format!(
                    "Invalid value for field '{path}.autoscaling': total_min_node_count/total_max_node_count and min_node_count/max_node_count are mutually exclusive."
                )));
            }
            if total {
                let min = a
                    .get("totalMinNodeCount")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let max = a
                    .get("totalMaxNodeCount")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if min < 0 || max < 1 || min > max {
                    return Err(ApiError::invalid(format!(
                        "Invalid value for field '{path}.autoscaling': total_min_node_count={min}, total_max_node_count={max}; need 0 <= min <= max and max >= 1."
                    )));
                }
            }
        }
        let zones = pool_zones(pool, cluster_locations);
        for a in pool
            .get("config")
            .and_then(|c| c.get("accelerators"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let kind = a
                .get("acceleratorType")
                .and_then(Value::as_str)
                .unwrap_or("");
            let offered = crate::compute::accelerator_zones(region, kind);
            if let Some(z) = zones.iter().find(|z| !offered.contains(&z.as_str())) {
                return Err(ApiError::invalid(format!(
                    "Accelerator type \"{kind}\" does not exist in zone {z}."
                )));
            }
        }
        Ok(())
    }

    /// GKE's network check of a create: the network (default `default`) must exist, in GKE's
    /// words when it does not (`Project "P" has no network named "default".`, 400:
    /// kubeflow/examples#537, googlecloudrobotics/core#339), and so must the subnetwork in the
    /// cluster's region. Returns the names the cluster records.
    pub fn check_network(
        &self,
        p: &str,
        region: &str,
        cluster: &Map<String, Value>,
    ) -> Result<(String, String), ApiError> {
        let short = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| s.rsplit('/').next().unwrap_or(s).to_string())
        };
        let network = short(cluster.get("network")).unwrap_or_else(|| "default".into());
        let Some(net) = self.compute.network(p, &network) else {
            return Err(ApiError::invalid(format!(
                "Project \"{p}\" has no network named \"{network}\"."
            )));
        };
        let subnetwork = match short(cluster.get("subnetwork")) {
            Some(s) => s,
            None if net.auto_subnetworks => network.clone(),
            None => {
                return Err(ApiError::invalid(format!(
                    "Network \"{network}\" is a custom mode network; a subnetwork in {region} must be specified."
                )));
            }
        };
        if !net.has_subnetwork(region, &subnetwork) {
            return Err(ApiError::invalid(format!(
                "Subnetwork \"projects/{p}/regions/{region}/subnetworks/{subnetwork}\" is not valid for Network \"{network}\"."
            )));
        }
        Ok((network, subnetwork))
    }

    /// A Persistent Disk the cluster's CSI driver made for a PersistentVolumeClaim, as GKE's
    /// driver makes it: the claim in the description (`kubernetes.io/created-for/pvc/name`…,
    /// gcp-compute-persistent-disk-csi-driver pkg/parameters/constants.go), the label
    /// `goog-gke-volume`, the cluster's name and location labels and the cluster's resource
    /// labels (GKE propagates them; seen on a GKE PD in the wild: `goog-gke-volume`,
    /// `goog-k8s-cluster-name`, `goog-k8s-cluster-location` beside the cluster's own labels).
    /// False when there is no such cluster.
    pub fn add_pvc_disk(
        &mut self,
        (p, l, c): (&str, &str, &str),
        zone: &str,
        (namespace, claim): (&str, &str),
        size_gb: u64,
    ) -> bool {
        let Some(cluster) = self.clusters.get(&(p.into(), l.into(), c.into())) else {
            return false;
        };
        let mut labels = cluster
            .doc
            .get("resourceLabels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        labels.insert("goog-gke-volume".into(), json!(""));
        labels.insert("goog-k8s-cluster-name".into(), json!(c));
        labels.insert("goog-k8s-cluster-location".into(), json!(l));
        let n = self.compute.disks.len() + 1;
        let name = format!("pvc-{n:08x}-0000-4000-8000-{:012x}", n * 7919);
        let description = json!({
            "kubernetes.io/created-for/pv/name": name,
            "kubernetes.io/created-for/pvc/name": claim,
            "kubernetes.io/created-for/pvc/namespace": namespace,
            "storage.gke.io/created-by": "pd.csi.storage.gke.io",
        })
        .to_string();
        let doc = json!({
            "kind": "compute#disk",
            "name": name,
            "sizeGb": size_gb.to_string(),
            "zone": format!("https://www.googleapis.com/compute/v1/projects/{p}/zones/{zone}"),
            "type": format!("https://www.googleapis.com/compute/v1/projects/{p}/zones/{zone}/diskTypes/pd-balanced"),
            "status": "READY",
            "description": description,
            "labels": labels,
            "selfLink": format!("https://www.googleapis.com/compute/v1/projects/{p}/zones/{zone}/disks/{name}"),
        });
        self.compute
            .disks
            .insert((p.into(), zone.into(), name), doc);
        true
    }

    /// True while a cluster whose CSI driver made the disk still runs (its node may hold it).
    fn disk_in_use(&self, p: &str, disk: &Value) -> bool {
        let name = disk["labels"]["goog-k8s-cluster-name"].as_str();
        let location = disk["labels"]["goog-k8s-cluster-location"].as_str();
        match (name, location) {
            (Some(n), Some(l)) => {
                self.clusters
                    .contains_key(&(p.to_string(), l.to_string(), n.to_string()))
            }
            _ => false,
        }
    }

    /// `GET regions/R`: its zones and quotas (limit and usage per metric).
    pub fn region_doc(&self, p: &str, r: &str) -> Result<Value, crate::compute::ComputeError> {
        let Some(zones) = zones_of(r) else {
            return Err(crate::compute::ComputeError::not_found(&format!(
                "projects/{p}/regions/{r}"
            )));
        };
        Ok(json!({
            "kind": "compute#region",
            "name": r,
            "status": "UP",
            "zones": zones.iter().map(|z| format!("https://www.googleapis.com/compute/v1/projects/{p}/zones/{z}")).collect::<Vec<_>>(),
            "quotas": self.quota_docs(p, r),
        }))
    }

    fn quota_docs(&self, p: &str, scope: &str) -> Vec<Value> {
        let used = self.usage(p);
        self.compute
            .limits(p, scope)
            .into_iter()
            .map(|(metric, limit)| {
                let usage = used
                    .get(&(scope.to_string(), metric.clone()))
                    .copied()
                    .unwrap_or(0.0);
                json!({"metric": metric, "limit": limit, "usage": usage})
            })
            .collect()
    }

    /// Serves a Compute Engine request ([`crate::compute`]); `segments` start after
    /// `compute/v1/projects/P`.
    pub fn serve_compute(
        &mut self,
        method: &str,
        p: &str,
        rest: &[&str],
        query: &BTreeMap<String, String>,
    ) -> Result<Value, crate::compute::ComputeError> {
        use crate::compute::{ComputeError, guest_cpus};
        match (method, rest) {
            ("GET", []) => Ok(json!({
                "kind": "compute#project",
                "name": p,
                "defaultServiceAccount": DEFAULT_NODE_SERVICE_ACCOUNT,
                "quotas": self.quota_docs(p, "global"),
            })),
            ("GET", ["regions", r]) => self.region_doc(p, r),
            ("GET", ["zones", z, "machineTypes", m]) => {
                let known_zone = z
                    .rsplit_once('-')
                    .and_then(|(r, _)| zones_of(r))
                    .is_some_and(|zs| zs.contains(z));
                match guest_cpus(m).filter(|_| known_zone) {
                    Some(cpus) => Ok(json!({
                        "kind": "compute#machineType",
                        "name": m,
                        "zone": z,
                        "guestCpus": cpus,
                    })),
                    None => Err(ComputeError::not_found(&format!(
                        "projects/{p}/zones/{z}/machineTypes/{m}"
                    ))),
                }
            }
            ("GET", ["aggregated", "acceleratorTypes"]) => {
                let mut items = serde_json::Map::new();
                for region in [
                    "us-central1",
                    "us-east1",
                    "us-west1",
                    "europe-west1",
                    "europe-west4",
                    "asia-southeast1",
                ] {
                    for zone in zones_of(region).unwrap_or(&[]) {
                        let types: Vec<Value> = ACCELERATORS
                            .iter()
                            .filter(|a| crate::compute::accelerator_zones(region, a).contains(zone))
                            .map(|a| json!({"kind": "compute#acceleratorType", "name": a, "zone": format!("https://www.googleapis.com/compute/v1/projects/{p}/zones/{zone}"), "maximumCardsPerInstance": 4}))
                            .collect();
                        let entry = if types.is_empty() {
                            json!({"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope 'zones/…' on this page."}})
                        } else {
                            json!({"acceleratorTypes": types})
                        };
                        items.insert(format!("zones/{zone}"), entry);
                    }
                }
                Ok(json!({"kind": "compute#acceleratorTypeAggregatedList", "items": items}))
            }
            ("GET", ["global", "networks", n]) => match self.compute.network(p, n) {
                Some(net) => Ok(json!({
                    "kind": "compute#network",
                    "name": net.name,
                    "autoCreateSubnetworks": net.auto_subnetworks,
                    "selfLink": format!("https://www.googleapis.com/compute/v1/projects/{p}/global/networks/{n}"),
                })),
                None => Err(ComputeError::not_found(&format!(
                    "projects/{p}/global/networks/{n}"
                ))),
            },
            ("GET", ["regions", r, "subnetworks", s]) => {
                let found = self
                    .compute
                    .networks_of(p)
                    .into_iter()
                    .find(|n| n.has_subnetwork(r, s));
                match found {
                    Some(net) => Ok(json!({
                        "kind": "compute#subnetwork",
                        "name": s,
                        "region": r,
                        "network": format!("https://www.googleapis.com/compute/v1/projects/{p}/global/networks/{}", net.name),
                    })),
                    None => Err(ComputeError::not_found(&format!(
                        "projects/{p}/regions/{r}/subnetworks/{s}"
                    ))),
                }
            }
            ("GET", ["aggregated", "disks"]) => Ok(self
                .compute
                .aggregated_disks(p, query.get("filter").map(String::as_str))),
            ("DELETE", ["zones", z, "disks", d]) => {
                let in_use = self
                    .compute
                    .disks
                    .get(&(p.to_string(), z.to_string(), d.to_string()))
                    .is_some_and(|disk| self.disk_in_use(p, disk));
                self.compute.delete_disk(p, z, d, in_use)
            }
            ("GET", ["zones", z, "operations", o]) => match self.compute.operations.get(*o) {
                Some((op_p, op_z, target)) if op_p == p && op_z == z => Ok(json!({
                    "kind": "compute#operation",
                    "name": o,
                    "status": "DONE",
                    "progress": 100,
                    "targetLink": target,
                })),
                _ => Err(ComputeError::not_found(&format!(
                    "projects/{p}/zones/{z}/operations/{o}"
                ))),
            },
            _ => Err(ComputeError::new(
                404,
                "notFound",
                format!(
                    "The emulator does not serve {method} compute/v1/projects/{p}/{}",
                    rest.join("/")
                ),
            )),
        }
    }
}
