//! `qhub-doks-emulator`: DigitalOcean's Kubernetes API (DOKS, API v2) emulated in process on
//! loopback, for testing `qhub-do` without an account. Also a binary (`qhub-doks-emulator`).
//!
//! What it serves (paths and bodies as in DigitalOcean's OpenAPI spec): `GET /v2/account`
//! (the fixed [`ACCOUNT_UUID`] and [`TEAM_UUID`]); `GET /v2/kubernetes/options`; clusters (`GET`/`POST /v2/kubernetes/clusters` with
//! `page`/`per_page` pagination and `links.pages`, `GET`/`PUT`/`DELETE .../clusters/{id}`,
//! `DELETE .../destroy_with_associated_resources/dangerous`, `POST .../upgrade`); node pools
//! (`GET`/`POST .../node_pools`, `GET`/`PUT`/`DELETE .../node_pools/{id}`); `GET .../kubeconfig`
//! and `GET .../credentials`.
//!
//! It is as unkind as the real API: a new cluster is `provisioning` for a number of reads, and
//! its pools cannot be changed nor its credentials read until it is `running`; a deleted one
//! stays `deleting` (its name still taken) for a number of reads; names are unique per account
//! (clusters) and per cluster (pools); the last pool cannot be deleted; an autoscaled pool's
//! `count` must lie within `min_nodes..=max_nodes`; DOKS adds its own `k8s` tags; a plain
//! cluster delete leaves the cluster's load balancers and volumes behind. Every request needs
//! the bearer token (401 `unauthorized` otherwise); every answer carries `ratelimit-limit`,
//! `ratelimit-remaining` and `ratelimit-reset`, and a request over the budget gets 429 with
//! `retry-after`. Errors are DigitalOcean's shape: `{"id", "message", "request_id"}`.
//!
//! **Spec check**: with DigitalOcean's OpenAPI spec available ([`spec`]), every request's
//! query and body are checked against the operation's schema; a request off the spec gets 422
//! and is counted in [`Counters::spec_violations`]. The emulator's own success answers are checked against the
//! spec's response schemas too ([`Counters::answer_violations`]), so the client is tested
//! against DigitalOcean's shapes, not the emulator's idea of them.
//!
//! **Faults** ([`Faults`]): 429 with `retry-after`, 5xx, answers lost after a mutation was
//! carried out, and "die after N mutations": mutation N+1 is carried out, its answer dropped,
//! and every later request refused (the connection closed) until the faults are set again.

pub mod spec;
pub mod state;

mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

pub use qhub_emulator_kit::FaultPlan;
use qhub_emulator_kit::Server;
pub use server::operation_of;
pub use spec::Spec;
pub use state::{Account, ApiError, Catalog};

/// The account's `uuid` in `GET /v2/account` (40 hex digits, as DigitalOcean's).
pub const ACCOUNT_UUID: &str = "5fd5c3e1a2b94c0d8e7f60718293a4b5c6d7e8f9";

/// The team's `uuid` in `GET /v2/account` (the token's team context).
pub const TEAM_UUID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";

/// The token the emulator accepts by default.
pub const DEFAULT_TOKEN: &str = "dop_v1_emulator";

/// The request budget, as DigitalOcean's spec describes it (info, "Rate Limit"): 5,000
/// requests an hour, each request counting for one hour after it is made (a sliding window),
/// reported in `ratelimit-limit`, `ratelimit-remaining` and `ratelimit-reset` (when the oldest
/// request expires); and a burst limit of 250 requests a minute that no header reports, only
/// a 429 with `retry-after` once it is hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per sliding `window` (the hourly budget of the headers).
    pub limit: u32,
    /// The window of `limit` (an hour).
    pub window: Duration,
    /// Requests per sliding `burst_window` (not in the headers).
    pub burst_limit: u32,
    /// The window of `burst_limit` (a minute).
    pub burst_window: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            limit: 5000,
            window: Duration::from_secs(3600),
            burst_limit: 250,
            burst_window: Duration::from_secs(60),
        }
    }
}

impl RateLimit {
    /// A budget with no practical limit (tests that poll every millisecond).
    pub fn unlimited() -> Self {
        Self {
            limit: 1_000_000,
            window: Duration::from_secs(3600),
            burst_limit: 1_000_000,
            burst_window: Duration::from_secs(60),
        }
    }
}

/// Whether requests are checked against DigitalOcean's OpenAPI spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecCheck {
    /// The spec file must exist; starting fails otherwise (the default: a test that checks
    /// nothing must not pass as if it had).
    Required(std::path::PathBuf),
    /// No check.
    Off,
}

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bearer token required (`None`: any request is accepted, as an anonymous endpoint).
    pub token: Option<String>,
    /// Reads of a new cluster (or of a resized pool) before it is running.
    pub provisioning_polls: u32,
    /// Reads of a deleted cluster before it is gone.
    pub deleting_polls: u32,
    /// Least time a cluster takes to create or upgrade (DOKS: 6–7 minutes; scale it).
    pub cluster_time: Duration,
    /// Least time a new pool's nodes take.
    pub pool_time: Duration,
    /// Least time a cluster takes to delete.
    pub delete_time: Duration,
    /// The request budget.
    pub rate_limit: RateLimit,
    /// Added to every answer (the cloud's own latency, scaled).
    pub latency: Duration,
    /// The spec check.
    pub spec: SpecCheck,
    /// Regions, versions and sizes offered.
    pub catalog: Catalog,
    /// The origin of the `links.pages` URLs (default: the emulator's own). A test sets another
    /// to check that a client does not follow a page link to a foreign host with its token.
    pub links_origin: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            token: Some(DEFAULT_TOKEN.into()),
            provisioning_polls: 3,
            deleting_polls: 1,
            cluster_time: Duration::ZERO,
            pool_time: Duration::ZERO,
            delete_time: Duration::ZERO,
            rate_limit: RateLimit::default(),
            latency: Duration::ZERO,
            spec: SpecCheck::Required(spec::path_from_env()),
            catalog: Catalog::default(),
            links_origin: None,
        }
    }
}

/// Faults to inject, switchable at run time ([`DoksEmulator::set_faults`]): the shorthand of
/// a [`FaultPlan`] this emulator's tests write ([`DoksEmulator::set_fault_plan`] takes the
/// plan itself, rules included).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Share of requests answered 429 (with `retry-after`) before doing anything.
    pub throttle_rate: f64,
    /// Share of requests answered 500/503 before doing anything.
    pub error_rate: f64,
    /// Share of successful mutations whose answer is lost (the connection is closed).
    pub lost_rate: f64,
    /// After this many successful mutations, the next one is carried out, its answer dropped,
    /// and the emulator refuses everything after it (a process that died mid-call).
    pub die_after: Option<u64>,
    /// The `retry-after` of injected 429s, in seconds.
    pub retry_after_secs: u64,
    /// Seed of the fault draws.
    pub seed: u64,
}

impl From<Faults> for FaultPlan {
    fn from(f: Faults) -> Self {
        FaultPlan {
            seed: f.seed,
            throttle_rate: f.throttle_rate,
            error_rate: f.error_rate,
            lost_rate: f.lost_rate,
            die_after: f.die_after,
            retry_after_secs: f.retry_after_secs,
            rules: Vec::new(),
        }
    }
}

/// What the emulator has served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Every request received.
    pub requests: u64,
    /// Mutating requests carried out (their answer may have been lost).
    pub mutations: u64,
    /// Requests refused for being off the spec (422).
    pub spec_violations: u64,
    /// Requests checked against the spec.
    pub spec_checked: u64,
    /// 429s answered because the hourly budget was spent.
    pub rate_limited: u64,
    /// 429s answered because the burst limit was hit.
    pub burst_limited: u64,
    /// 429s injected.
    pub throttled: u64,
    /// 5xx injected.
    pub server_errors: u64,
    /// Answers dropped after the mutation was carried out (lost or died).
    pub lost: u64,
    /// 401s.
    pub unauthorized: u64,
    /// Requests by operation id.
    pub by_operation: BTreeMap<String, u64>,
    /// The spec violations, as `operation: problem` lines.
    pub violations: Vec<String>,
    /// Answers of the emulator itself that the spec's response schemas reject (a fidelity
    /// check of the emulator, not of the client).
    pub answer_violations: Vec<String>,
}

/// The emulator's mutable state.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) account: Account,
    pub(crate) counters: Counters,
    pub(crate) faults: qhub_emulator_kit::Faults,
    /// When each request of the last `window` was made (the hourly budget).
    pub(crate) sent: std::collections::VecDeque<std::time::Instant>,
    /// When each request of the last `burst_window` was made.
    pub(crate) burst: std::collections::VecDeque<std::time::Instant>,
    pub(crate) rate_limit: RateLimit,
}

pub(crate) struct Shared {
    pub(crate) world: Mutex<World>,
    pub(crate) options: Options,
    pub(crate) spec: Option<Arc<Spec>>,
    /// `http://127.0.0.1:PORT`, set once listening.
    pub(crate) base_url: Arc<OnceLock<String>>,
}

impl Shared {
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock leaves the state as it was: keep serving it.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running emulator. Dropping it stops the server.
pub struct DoksEmulator {
    shared: Arc<Shared>,
    server: Server,
}

impl std::fmt::Debug for DoksEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoksEmulator")
            .field("addr", &self.server.addr())
            .finish()
    }
}

/// Why the emulator could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The spec, parsed once per process per path (3 MB of YAML).
fn load_spec(path: &std::path::Path) -> Result<Arc<Spec>, String> {
    type Cache = Mutex<BTreeMap<std::path::PathBuf, Result<Arc<Spec>, String>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    cache
        .entry(path.to_path_buf())
        .or_insert_with(|| Spec::load(path).map(Arc::new).map_err(|e| e.to_string()))
        .clone()
}

impl DoksEmulator {
    /// Starts an emulator on `127.0.0.1` at a free port (must be called within a Tokio
    /// runtime).
    pub async fn start(options: Options) -> Result<Self, StartError> {
        Self::start_on(options, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts an emulator on `addr`, which must be a loopback address.
    pub async fn start_on(options: Options, addr: SocketAddr) -> Result<Self, StartError> {
        if !addr.ip().is_loopback() {
            return Err(StartError(format!(
                "the emulator listens on loopback only, not {addr}"
            )));
        }
        let spec = match &options.spec {
            SpecCheck::Off => None,
            SpecCheck::Required(path) => Some(load_spec(path).map_err(StartError)?),
        };
        // The port is known once listening: the handler reads the base URL from here.
        let base_url = Arc::new(OnceLock::new());
        let shared = Arc::new(Shared {
            world: Mutex::new(World {
                account: {
                    let mut a = Account::new(
                        options.catalog.clone(),
                        options.provisioning_polls,
                        options.deleting_polls,
                    );
                    a.cluster_time = options.cluster_time;
                    a.pool_time = options.pool_time;
                    a.delete_time = options.delete_time;
                    a
                },
                counters: Counters::default(),
                faults: qhub_emulator_kit::Faults::default(),
                sent: Default::default(),
                burst: Default::default(),
                rate_limit: options.rate_limit,
            }),
            options,
            spec,
            base_url: base_url.clone(),
        });
        let served = shared.clone();
        let server = Server::start_at("DOKS emulator", addr, move |req| {
            let shared = served.clone();
            async move { server::handle(req, &shared).await }
        })
        .await
        .map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))?;
        let _ = base_url.set(server.url());
        Ok(Self { shared, server })
    }

    /// `http://127.0.0.1:PORT`: what `DIGITALOCEAN_API_URL` should be.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The token it accepts.
    pub fn token(&self) -> Option<String> {
        self.shared.options.token.clone()
    }

    /// True when requests are checked against the spec.
    pub fn spec_checked(&self) -> bool {
        self.shared.spec.is_some()
    }

    /// Sets the faults, and revives an emulator that "died".
    pub fn set_faults(&self, faults: Faults) {
        self.set_fault_plan(faults.into());
    }

    /// Puts `plan` in force, and revives an emulator that "died". Rules name routes by
    /// operation id (as [`Counters::by_operation`]); a ruled 429 carries the plan's
    /// `retry-after`.
    pub fn set_fault_plan(&self, plan: FaultPlan) {
        self.shared.world().faults.set(plan);
    }

    /// True once a `die_after` fault fired.
    pub fn is_dead(&self) -> bool {
        self.shared.world().faults.is_dead()
    }

    /// Reads a new cluster takes to provision from now on.
    pub fn set_provisioning_polls(&self, polls: u32) {
        self.shared.world().account.provisioning_polls = polls;
    }

    /// The next cluster created fails to provision (ends in state `error`).
    pub fn fail_next_cluster(&self, fail: bool) {
        self.shared.world().account.fail_next_cluster = fail;
    }

    /// Changes the request budget (and forgets the requests made so far).
    pub fn set_rate_limit(&self, rate_limit: RateLimit) {
        let mut w = self.shared.world();
        w.rate_limit = rate_limit;
        w.sent.clear();
        w.burst.clear();
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.shared.world().counters.clone()
    }

    /// Empties the account (counters are kept: they count since the start).
    pub fn reset(&self) {
        let mut w = self.shared.world();
        w.account.clear();
        w.faults.revive();
    }

    /// Resources carrying every one of `tags`, by kind (see [`Account::census`]).
    pub fn census(&self, tags: &[String]) -> BTreeMap<String, usize> {
        self.shared.world().account.census(tags)
    }

    /// Runs `f` on the account (to inspect or arrange state in tests).
    pub fn with_account<T>(&self, f: impl FnOnce(&mut Account) -> T) -> T {
        f(&mut self.shared.world().account)
    }
}
