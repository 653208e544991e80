//! `qhub-gke-emulator`: an emulator of GKE's container/v1 REST API on loopback, for tests.
//!
//! It serves what qhub-gcp uses — clusters (create with node pools, get, list in a location or
//! in all (`-`), update (version, node locations, release channel), delete,
//! `setResourceLabels`), node pools (create, get, list, update, `setAutoscaling`, `setSize`,
//! `setManagement`, delete), `getServerConfig` and long-running [`Operation`](state::Operation)s —
//! and it is as unkind as GKE:
//!
//! - every mutation returns an `Operation` that is PENDING, then RUNNING, and DONE only after
//!   it was polled [`Options::min_polls`] times and its scaled duration passed
//!   ([`Options::time_scale`] times GKE's real durations, [`state::real_seconds`]); a failed one
//!   ends DONE with `error` set ([`GkeEmulator::fail_next`]);
//! - **one mutating operation per cluster at a time**: a second one is refused with 400
//!   FAILED_PRECONDITION, as GKE does, and counted in [`Counters::rejected`];
//! - a cluster is unusable while PROVISIONING (no endpoint; node pool calls refused), and can be
//!   put in ERROR ([`GkeEmulator::set_cluster_status`]);
//! - enums are accepted as names or integers, int64 as strings or numbers, and answered as GKE
//!   answers: integers when the client asks `$alt=json;enum-encoding=int` (google-cloud-rust
//!   always does), int64 as strings ([`wire`]);
//! - errors are Google's JSON (`{"error": {"code", "message", "status"}}`): 404 NOT_FOUND,
//!   409 ALREADY_EXISTS, 400 INVALID_ARGUMENT with the offending field, 401 UNAUTHENTICATED
//!   without the expected bearer token ([`Options::token`]);
//! - faults ([`Faults`]): 429 RESOURCE_EXHAUSTED and 503 UNAVAILABLE before a request is
//!   served, and "die after N mutations": the next mutation is carried out and its answer is
//!   dropped (the connection closes), after which the emulator answers nothing until the faults
//!   are set again — the client process is considered dead ([`GkeEmulator::killed`]); and lost
//!   answers: a share of the mutations is carried out and its answer dropped, the client living
//!   on.
//!
//! GKE's rules that depend on Compute Engine are kept too ([`compute`], served at the same
//! address): node counts are **per zone** (a pool in N zones starts `initialNodeCount × N`
//! nodes; `totalMinNodeCount`/`totalMaxNodeCount` are the pool's totals, exclusive with the
//! per-zone counts), the new nodes must fit the project's regional and global quotas
//! (refused 403 with GKE's "Insufficient regional quota" message), each accelerator must be
//! offered in each of its pool's zones, the cluster's network (default `default`) and
//! subnetwork must exist, and the Persistent Disks a cluster's CSI driver made
//! ([`GkeEmulator::add_pvc_disk`]) stay after the cluster is deleted.
//!
//! It also serves the subset of the Cloud Storage JSON API that the deploy lock uses
//! ([`storage`]: buckets, media uploads and downloads, deletes, `ifGenerationMatch`
//! preconditions answered 412 `conditionNotMet`), at the same address, behind the same token
//! check and the same 429/503 faults; lost answers hit its writes too, and a "dead" client gets
//! no answer from it either.
//!
//! The emulator listens on `127.0.0.1` only. Run it in-process with [`GkeEmulator::start`] or
//! as the `qhub-gke-emulator` binary.

pub mod compute;
pub mod state;
pub mod storage;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use qhub_emulator_kit::{After, Before, Calls, Dropped, Effect, FaultPlan, Rule, Server};
use serde_json::{Value, json};

pub use state::{ApiError, InjectedFailure, Versions};

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bearer token every request must carry; `None` accepts anonymous requests.
    pub token: Option<String>,
    /// How many times an operation must be polled before it is DONE (default 2).
    pub min_polls: u32,
    /// GKE's real operation durations are multiplied by this (default 0: no wait).
    pub time_scale: f64,
    /// An operation nobody polls finishes this long after its duration (default 200 ms), so
    /// that an operation a "dead" client abandoned still ends, as on GKE.
    pub abandon_after: Duration,
    /// Projects that exist; a request for another gets 403 PERMISSION_DENIED as on GKE
    /// (`None`: every project exists).
    pub projects: Option<Vec<String>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            token: None,
            min_polls: 2,
            time_scale: 0.0,
            abandon_after: Duration::from_millis(200),
            projects: None,
        }
    }
}

/// Faults to inject: the shorthand of a [`FaultPlan`] this emulator's tests write
/// ([`GkeEmulator::set_fault_plan`] takes the plan itself, rules included).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Share of requests answered 429 RESOURCE_EXHAUSTED without being served.
    pub throttle_rate: f64,
    /// Share of requests answered 503 UNAVAILABLE without being served.
    pub error_rate: f64,
    /// After this many mutations (counted from when the faults were set), the next one is
    /// carried out and its answer dropped; the emulator then plays dead.
    pub die_after: Option<u64>,
    /// Seed of the fault draws.
    pub seed: u64,
    /// Share of the mutations carried out whose answer is lost (the connection closes without
    /// one); unlike "die after", the emulator keeps serving.
    pub lost_rate: f64,
    /// Routes (named as in [`Counters::by_route`], e.g. `GET operations`) answered 404
    /// NOT_FOUND without being served: an endpoint that lacks one call, or a proxy that
    /// refuses it, to check that a NotFound of one call is not taken for the absence of
    /// another object.
    pub not_found_routes: Vec<String>,
}

impl From<Faults> for FaultPlan {
    fn from(f: Faults) -> Self {
        FaultPlan {
            seed: f.seed,
            throttle_rate: f.throttle_rate,
            error_rate: f.error_rate,
            lost_rate: f.lost_rate,
            die_after: f.die_after,
            retry_after_secs: 0,
            rules: f
                .not_found_routes
                .into_iter()
                .map(|route| Rule::new(route, Calls::Every, Effect::Status(404)))
                .collect(),
        }
    }
}

/// What the emulator has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Every request received.
    pub requests: u64,
    /// Mutating requests that were carried out (an operation started).
    pub mutations: u64,
    /// Mutating requests refused because another operation was running on the cluster.
    pub rejected: u64,
    /// `operations.get` requests.
    pub polls: u64,
    /// Requests answered with an injected 429.
    pub throttled: u64,
    /// Requests answered with an injected 503.
    pub server_errors: u64,
    /// Answers dropped by "die after".
    pub dropped: u64,
    /// Answers of carried-out mutations lost by [`Faults::lost_rate`].
    pub lost: u64,
    /// Requests refused for want of a valid bearer token.
    pub unauthenticated: u64,
    /// Requests by `METHOD route` (`POST clusters`, `GET operations/*`, `POST upload/o`…).
    pub by_route: BTreeMap<String, u64>,
    /// Cloud Storage requests that changed something (bucket or object created, replaced or
    /// deleted); not counted in [`Self::mutations`], which are GKE operations.
    pub storage_writes: u64,
}

#[derive(Debug)]
struct Inner {
    options: Options,
    world: state::World,
    storage: storage::Storage,
    counters: Counters,
    faults: qhub_emulator_kit::Faults,
}

impl Inner {
    fn timing(&self) -> state::Timing {
        state::Timing {
            min_polls: self.options.min_polls,
            time_scale: self.options.time_scale,
            abandon_after: self.options.abandon_after,
        }
    }
}

/// A running emulator; dropping it stops the server.
#[derive(Debug)]
pub struct GkeEmulator {
    inner: Arc<Mutex<Inner>>,
    server: Server,
}

/// An answer, or none at all (the connection closes: a lost answer, "die after").
type Answer = Result<Response<Full<Bytes>>, Dropped>;

impl GkeEmulator {
    /// Starts an emulator on `127.0.0.1:0`.
    pub async fn start(options: Options) -> std::io::Result<Self> {
        Self::start_on(0, options).await
    }

    /// Starts an emulator on `127.0.0.1:port`.
    pub async fn start_on(port: u16, options: Options) -> std::io::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner {
            options,
            world: state::World::default(),
            storage: storage::Storage::default(),
            counters: Counters::default(),
            // The draws this emulator's tests chose their seeds with.
            faults: qhub_emulator_kit::Faults::with_draws(
                FaultPlan::default(),
                qhub_emulator_kit::Draws::XorshiftStarErrorsFirst,
            ),
        }));
        let shared = inner.clone();
        let server = Server::start("GKE emulator", port, move |req| {
            let inner = shared.clone();
            async move { handle(req, &inner).await }
        })
        .await?;
        Ok(Self { inner, server })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a handler panicked; the state is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://127.0.0.1:PORT`, the endpoint to give the client.
    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    /// The address listened on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    /// Sets the faults (and revives a "dead" client: the mutation count restarts at 0).
    pub fn set_faults(&self, faults: Faults) {
        self.set_fault_plan(faults.into());
    }

    /// Puts `plan` in force (and revives a "dead" client). Rules name routes as
    /// [`Counters::by_route`] does; a ruled 429 is RESOURCE_EXHAUSTED, 503 UNAVAILABLE, 404
    /// NOT_FOUND ("not served here").
    pub fn set_fault_plan(&self, plan: FaultPlan) {
        self.lock().faults.set(plan);
    }

    /// True once "die after" dropped an answer (until the faults are set again).
    pub fn killed(&self) -> bool {
        self.lock().faults.is_dead()
    }

    /// Changes the operation timing.
    pub fn set_timing(&self, min_polls: u32, time_scale: f64) {
        let mut inner = self.lock();
        inner.options.min_polls = min_polls;
        inner.options.time_scale = time_scale;
    }

    /// Makes the next operation of `op_type` (e.g. `CREATE_CLUSTER`) fail with `message`; a
    /// failed cluster creation leaves the cluster in ERROR, as GKE does.
    pub fn fail_next(&self, op_type: &str, message: &str) {
        self.lock().world.failures.push(InjectedFailure {
            op_type: op_type.into(),
            message: message.into(),
        });
    }

    /// Forces a cluster's status (e.g. `ERROR`, `DEGRADED`); false when there is no such cluster.
    pub fn set_cluster_status(
        &self,
        project: &str,
        location: &str,
        name: &str,
        status: &str,
    ) -> bool {
        let mut inner = self.lock();
        match inner
            .world
            .clusters
            .get_mut(&(project.into(), location.into(), name.into()))
        {
            Some(c) => {
                c.doc.insert("status".into(), json!(status));
                true
            }
            None => false,
        }
    }

    /// GKE upgrading a cluster by itself (a release channel's auto-upgrade) to `version`;
    /// false when there is no such cluster.
    pub fn auto_upgrade(&self, project: &str, location: &str, name: &str, version: &str) -> bool {
        self.lock()
            .world
            .auto_upgrade(project, location, name, version)
    }

    /// Empties the world (clusters, operations, injected failures, buckets, disks); counters,
    /// quotas and networks stay.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.storage = storage::Storage::default();
        let versions = inner.world.versions.clone();
        // What a test configured (quotas, networks) stays; disks go with the world.
        let mut compute = inner.world.compute.clone();
        compute.disks.clear();
        inner.world = state::World {
            versions,
            compute,
            ..state::World::default()
        };
        inner.faults.revive();
    }

    /// Replaces the versions `getServerConfig` offers.
    pub fn set_versions(&self, versions: Versions) {
        self.lock().world.versions = versions;
    }

    /// Every cluster, as GKE would return it (canonical form), with its project and location.
    pub fn clusters(&self) -> Vec<(String, String, Value)> {
        let mut inner = self.lock();
        let timing = inner.timing();
        inner.world.advance(timing);
        let keys: Vec<_> = inner.world.clusters.keys().cloned().collect();
        keys.into_iter()
            .filter_map(|(p, l, c)| {
                let doc = inner.world.cluster_doc(&p, &l, &c).ok()?;
                Some((p, l, doc))
            })
            .collect()
    }

    /// Every Cloud Storage bucket: its name, labels and object names.
    pub fn buckets(&self) -> Vec<(String, BTreeMap<String, String>, Vec<String>)> {
        self.lock()
            .storage
            .buckets
            .iter()
            .map(|(n, b)| {
                (
                    n.clone(),
                    b.labels.clone(),
                    b.objects.keys().cloned().collect(),
                )
            })
            .collect()
    }

    /// A bucket's resource, as `storage.buckets.get` answers it.
    pub fn bucket(&self, name: &str) -> Option<Value> {
        let mut inner = self.lock();
        let segments = ["storage", "v1", "b", name];
        match inner
            .storage
            .serve("GET", &segments, &BTreeMap::new(), b"", None, None)
            .reply
        {
            Ok(storage::Reply::Json(v)) => Some(v),
            _ => None,
        }
    }

    /// An object's bytes, if it exists.
    pub fn object(&self, bucket: &str, name: &str) -> Option<Vec<u8>> {
        self.lock()
            .storage
            .buckets
            .get(bucket)
            .and_then(|b| b.objects.get(name))
            .map(|o| o.data.clone())
    }

    /// Writes an object unconditionally, with a new generation (a test's "another runner's
    /// record"); false when the bucket does not exist.
    pub fn put_object(&self, bucket: &str, name: &str, data: &[u8]) -> bool {
        let mut inner = self.lock();
        let query: BTreeMap<String, String> = [("uploadType", "media"), ("name", name)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let segments = ["upload", "storage", "v1", "b", bucket, "o"];
        inner
            .storage
            .serve(
                "POST",
                &segments,
                &query,
                data,
                Some("application/json"),
                None,
            )
            .reply
            .is_ok()
    }

    /// Sets a quota limit of `project`: `scope` is a region or `global` (e.g. `CPUS` in
    /// `us-central1`, `GPUS_ALL_REGIONS` in `global`).
    pub fn set_quota(&self, project: &str, scope: &str, metric: &str, limit: f64) {
        self.lock()
            .world
            .compute
            .quotas
            .entry((project.into(), scope.into()))
            .or_default()
            .insert(metric.into(), limit);
    }

    /// Replaces the IAM policy of `project` ([`state::default_iam_policy`] by default).
    pub fn set_iam_policy(&self, project: &str, policy: Value) {
        self.lock()
            .world
            .iam_policies
            .insert(project.into(), policy);
    }

    /// Replaces the networks of `project` (by default it has the auto-mode `default`).
    pub fn set_networks(&self, project: &str, networks: Vec<compute::Network>) {
        self.lock()
            .world
            .compute
            .networks
            .insert(project.into(), networks);
    }

    /// What the CSI driver of cluster `(project, location, name)` does for a
    /// PersistentVolumeClaim `(namespace, claim)`: a Persistent Disk in `zone`
    /// ([`state::World::add_pvc_disk`]). False when there is no such cluster.
    pub fn add_pvc_disk(
        &self,
        cluster: (&str, &str, &str),
        zone: &str,
        claim: (&str, &str),
        size_gb: u64,
    ) -> bool {
        self.lock()
            .world
            .add_pvc_disk(cluster, zone, claim, size_gb)
    }

    /// Every Persistent Disk: `(project, zone, name)` with its resource.
    pub fn disks(&self) -> Vec<((String, String, String), Value)> {
        self.lock()
            .world
            .compute
            .disks
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Operations not yet DONE.
    pub fn running_operations(&self) -> usize {
        let mut inner = self.lock();
        let timing = inner.timing();
        inner.world.advance(timing);
        inner
            .world
            .operations
            .values()
            .filter(|o| o.done.is_none())
            .count()
    }
}

fn answer(status: u16, body: &Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    Ok(r)
}

fn error(e: &ApiError) -> Answer {
    answer(e.code, &e.body())
}

/// Percent-decodes a query string (enough for `$alt=json;enum-encoding=int`).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The route name of a path, for counters: `clusters`, `clusters/*`, `nodePools/*:setSize`…
fn route_name(rest: &[&str]) -> String {
    rest.iter()
        .enumerate()
        .map(|(i, s)| {
            if i % 2 == 1 {
                match s.split_once(':') {
                    Some((_, verb)) => format!("*:{verb}"),
                    None => "*".to_string(),
                }
            } else {
                (*s).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Serves a Cloud Storage request ([`storage`]): path segments and query values are
/// percent-decoded one by one (an object name's `/` travels as `%2F`).
fn serve_storage(
    inner: &mut Inner,
    method: &Method,
    segments: &[&str],
    raw_query: &str,
    body: &[u8],
    content_type: Option<String>,
) -> Answer {
    let decoded: Vec<String> = segments.iter().map(|s| decode(s)).collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let query: BTreeMap<String, String> = raw_query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    let projects = inner.options.projects.clone();
    let served = inner.storage.serve(
        method.as_str(),
        &segments,
        &query,
        body,
        content_type.as_deref(),
        projects.as_deref(),
    );
    if served.wrote {
        inner.counters.storage_writes += 1;
        if inner.faults.lose() {
            inner.counters.lost += 1;
            tracing::debug!(path = %segments.join("/"), "storage answer lost");
            return Err(Dropped);
        }
    }
    match served.reply {
        Ok(storage::Reply::Json(v)) => answer(200, &v),
        Ok(storage::Reply::Empty) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
        Ok(storage::Reply::Media {
            data,
            generation,
            content_type,
        }) => {
            let mut r = Response::new(Full::new(Bytes::from(data)));
            let headers = r.headers_mut();
            if let Ok(v) = hyper::header::HeaderValue::from_str(&content_type) {
                headers.insert(hyper::header::CONTENT_TYPE, v);
            }
            headers.insert("x-goog-generation", generation.into());
            headers.insert(
                "x-goog-metageneration",
                hyper::header::HeaderValue::from_static("1"),
            );
            Ok(r)
        }
        Err(e) => answer(e.code, &e.body()),
    }
}

/// Serves a Compute Engine request ([`compute`]).
fn serve_compute(inner: &mut Inner, method: &Method, segments: &[&str], raw_query: &str) -> Answer {
    let decoded: Vec<String> = segments.iter().map(|s| decode(s)).collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let query: BTreeMap<String, String> = raw_query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    let (Some(&"projects"), Some(project)) = (segments.get(2), segments.get(3)) else {
        let e = compute::ComputeError::new(404, "notFound", "Not Found");
        return answer(e.code, &e.body());
    };
    if let Some(projects) = &inner.options.projects
        && !projects.iter().any(|p| p == project)
    {
        let e = compute::ComputeError::new(
            403,
            "forbidden",
            format!("Required 'compute.projects.get' permission for 'projects/{project}'"),
        );
        return answer(e.code, &e.body());
    }
    let timing = inner.timing();
    inner.world.advance(timing);
    match inner
        .world
        .serve_compute(method.as_str(), project, &segments[4..], &query)
    {
        Ok(v) => answer(200, &v),
        Err(e) => answer(e.code, &e.body()),
    }
}

async fn handle(req: Request<Incoming>, shared: &Arc<Mutex<Inner>>) -> Answer {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query = decode(&raw_query);
    let ints = query.contains("enum-encoding=int");
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(&ApiError::invalid("Unreadable body.")),
    };
    let segments: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let gcs = storage::is_storage(&segments);
    let gce = compute::is_compute(&segments);
    let route = if gcs {
        storage::route(method.as_str(), &segments)
    } else if gce {
        format!(
            "{method} compute/{}",
            route_name(segments.get(4..).unwrap_or_default())
        )
    } else {
        format!(
            "{method} {}",
            route_name(segments.get(5..).unwrap_or_default())
        )
    };
    // The state's lock is not held across the fault plan's delay.
    let (before, delay) = {
        let mut inner = shared.lock().unwrap_or_else(|e| e.into_inner());
        inner.counters.requests += 1;
        if inner.faults.is_dead() {
            // The client "died": nothing it sends is served any more.
            inner.counters.dropped += 1;
            return Err(Dropped);
        }
        *inner.counters.by_route.entry(route.clone()).or_insert(0) += 1;
        if let Some(token) = &inner.options.token {
            let ok =
                auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) == Some(token.as_str());
            if !ok {
                inner.counters.unauthenticated += 1;
                return error(&ApiError::new(
                    401,
                    "UNAUTHENTICATED",
                    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                ));
            }
        }
        // Faults before anything is served.
        inner.faults.before(&route)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut inner = shared.lock().unwrap_or_else(|e| e.into_inner());
    match before {
        Before::Serve => {}
        Before::Reset => return Err(Dropped),
        Before::Status(404) => {
            return error(&ApiError::not_found(format!(
                "Not found: {route} is not served here (fault injection)."
            )));
        }
        Before::ServerError | Before::Status(503) => {
            inner.counters.server_errors += 1;
            return error(&ApiError::new(
                503,
                "UNAVAILABLE",
                "The service is currently unavailable.",
            ));
        }
        Before::Throttle | Before::Status(429) => {
            inner.counters.throttled += 1;
            return error(&ApiError::new(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Mutate requests' and limit 'Mutate requests per minute per region'.",
            ));
        }
        Before::Status(code) => {
            return error(&ApiError::new(
                code,
                "INTERNAL",
                "Internal error (fault injection).",
            ));
        }
    }
    if gcs {
        return serve_storage(
            &mut inner,
            &method,
            &segments,
            &raw_query,
            &body,
            content_type,
        );
    }
    if gce {
        return serve_compute(&mut inner, &method, &segments, &raw_query);
    }
    // Resource Manager: `POST /v1/projects/P:getIamPolicy`.
    if let (&Method::POST, ["v1", "projects", target]) = (&method, segments.as_slice())
        && let Some(project) = target.strip_suffix(":getIamPolicy")
    {
        let policy = inner
            .world
            .iam_policies
            .get(project)
            .cloned()
            .unwrap_or_else(state::default_iam_policy);
        return answer(200, &policy);
    }
    let timing = inner.timing();
    inner.world.advance(timing);
    let (Some(&"v1"), Some(&"projects"), Some(project), Some(&"locations"), Some(location)) = (
        segments.first(),
        segments.get(1),
        segments.get(2),
        segments.get(3),
        segments.get(4),
    ) else {
        return error(&ApiError::not_found(format!(
            "The requested URL {path} was not found."
        )));
    };
    let (project, location) = (project.to_string(), location.to_string());
    if let Some(projects) = &inner.options.projects
        && !projects.contains(&project)
    {
        return error(&ApiError::new(
            403,
            "PERMISSION_DENIED",
            format!("Permission denied on resource project {project}."),
        ));
    }
    let rest: Vec<String> = segments[5..].iter().map(|s| s.to_string()).collect();
    let json_body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(&ApiError::invalid(format!(
                    "Invalid JSON payload received. {e}"
                )));
            }
        }
    };
    let p = project.as_str();
    let l = location.as_str();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let world = &mut inner.world;
    use wire::Kind;
    // Reads answer documents; mutations answer an Operation.
    let read = |r: Result<Value, ApiError>, kind: Kind| -> Answer {
        match r {
            Ok(mut v) => {
                match kind {
                    Kind::Other => {
                        for key in ["clusters", "nodePools", "operations"] {
                            let item = match key {
                                "clusters" => Kind::Cluster,
                                "nodePools" => Kind::NodePool,
                                _ => Kind::Operation,
                            };
                            if let Some(list) = v.get_mut(key).and_then(Value::as_array_mut) {
                                for x in list {
                                    wire::encode(item, x, ints);
                                }
                            }
                        }
                    }
                    k => wire::encode(k, &mut v, ints),
                }
                answer(200, &v)
            }
            Err(e) => error(&e),
        }
    };
    let started: state::Started = match (&method, rest.as_slice()) {
        (&Method::GET, ["serverConfig"]) => {
            return read(world.server_config(p, l), Kind::ServerConfig);
        }
        (&Method::GET, ["clusters"]) => return read(world.list_clusters(p, l), Kind::Other),
        (&Method::POST, ["clusters"]) => world.create_cluster(timing, p, l, json_body),
        (&Method::GET, ["clusters", c]) => return read(world.cluster_doc(p, l, c), Kind::Cluster),
        (&Method::DELETE, ["clusters", c]) => world.delete_cluster(timing, p, l, c),
        (&Method::PUT, ["clusters", c]) => world.update_cluster(timing, p, l, c, json_body),
        (&Method::POST, ["clusters", c]) if c.ends_with(":setResourceLabels") => {
            let c = c.trim_end_matches(":setResourceLabels");
            world.set_labels(timing, p, l, c, json_body)
        }
        (&Method::GET, ["clusters", c, "nodePools"]) => {
            return read(world.list_pools(p, l, c), Kind::Other);
        }
        (&Method::POST, ["clusters", c, "nodePools"]) => {
            world.create_pool(timing, p, l, c, json_body)
        }
        (&Method::GET, ["clusters", c, "nodePools", np]) => {
            return read(world.pool_doc(p, l, c, np), Kind::NodePool);
        }
        (&Method::PUT, ["clusters", c, "nodePools", np]) => {
            world.mutate_pool(timing, (p, l, c, np), "update", json_body)
        }
        (&Method::DELETE, ["clusters", c, "nodePools", np]) => {
            world.delete_pool(timing, p, l, c, np)
        }
        (&Method::POST, ["clusters", c, "nodePools", np]) if np.contains(':') => {
            let (np, verb) = np.split_once(':').unwrap_or((np, ""));
            world.mutate_pool(timing, (p, l, c, np), verb, json_body)
        }
        (&Method::GET, ["operations", id]) => {
            if let Some(op) = world.operations.get_mut(*id)
                && op.project == p
            {
                op.polls += 1;
            }
            world.advance(timing);
            let doc = world.operation_doc(id, timing).ok_or_else(|| {
                ApiError::not_found(format!(
                    "Not found: projects/{p}/locations/{l}/operations/{id}."
                ))
            });
            inner.counters.polls += 1;
            return read(doc, Kind::Operation);
        }
        (&Method::GET, ["operations"]) => {
            let ids: Vec<String> = world
                .operations
                .values()
                .filter(|o| o.project == p && (l == "-" || o.location == l))
                .map(|o| o.id.clone())
                .collect();
            let ops: Vec<Value> = ids
                .iter()
                .filter_map(|id| world.operation_doc(id, timing))
                .collect();
            return read(Ok(json!({"operations": ops})), Kind::Other);
        }
        _ => {
            return error(&ApiError::not_found(format!(
                "The requested URL {path} was not found on this server ({method})."
            )));
        }
    };
    match started {
        Ok(id) => {
            inner.counters.mutations += 1;
            let doc = inner
                .world
                .operation_doc(&id, timing)
                .unwrap_or(Value::Null);
            match inner.faults.after_mutation() {
                After::Died => {
                    // Carried out; the answer is lost and the client is dead.
                    inner.counters.dropped += 1;
                    tracing::debug!(operation = %id, "die-after: answer dropped");
                    return Err(Dropped);
                }
                After::Lost => {
                    inner.counters.lost += 1;
                    tracing::debug!(operation = %id, "answer lost");
                    return Err(Dropped);
                }
                After::Deliver => {}
            }
            let mut doc = doc;
            wire::encode(Kind::Operation, &mut doc, ints);
            answer(200, &doc)
        }
        Err(e) => {
            if e.status == "FAILED_PRECONDITION" && e.message.contains("Please wait and try again")
            {
                inner.counters.rejected += 1;
            }
            error(&e)
        }
    }
}
