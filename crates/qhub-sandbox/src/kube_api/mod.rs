//! The sandbox's in-memory Kubernetes API server.
//!
//! One implementation with two faces: [`KubeApi::client`] puts it in-process behind a real
//! [`kube::Client`] (a tower service, no sockets), and [`KubeApi::serve`] puts it on loopback
//! HTTP with a kubeconfig for tests and tools. Both share the same store.
//!
//! What it does, like a real API server, as far as kube-rs clients and our apply engine need:
//! discovery (`/version`, `/api`, `/apis`, resource lists, CRD-defined kinds once their CRD
//! exists); get, list (label and field selectors), create, replace (resourceVersion
//! preconditions), delete (namespace, CRD and ownerReference cascades); server-side apply
//! with `metadata.managedFields`, conflicts and pruning; JSON merge, strategic merge (as
//! merge) and JSON patches; the `/status` subresource; watches; simulated controllers that
//! write status (ready immediately, after a delay, or never) and run one Running, Ready pod per
//! ready replica of a Deployment or StatefulSet; port-forwards to those pods over WebSocket
//! (over loopback HTTP only), to what a test registered with [`KubeApi::forward_port`].
//!
//! What a real API server enforces for what the platform sends, each rule in its own file
//! citing its source: server defaults nobody owns (`defaults.rs`: Deployment strategy,
//! Service ports, PodSpec), the validation they make reachable (a `Recreate` strategy with a
//! defaulted `rollingUpdate`), immutable fields (`immutable.rs`: 422 with the server's words),
//! the `PersistentVolumeClaimResize` admission plugin (`admission.rs`), structural pruning of
//! custom objects to their CRD's schema (`crds.rs`), and RBAC evaluated on
//! request ([`KubeApi::can`], `rbac.rs`) for the platform's service accounts, also served as
//! `SubjectAccessReview` (`http.rs`). Pod Security
//! admission by namespace label (`pod_security.rs`: refused pods, and the `ReplicaFailure`
//! condition of a Deployment whose pods are refused).
//!
//! What takes time, as in a cluster: a new CRD is `Established` only after
//! [`KubeApi::set_crd_established_after`] (default [`CRD_ESTABLISHED_AFTER`]); until then its
//! kind is missing from discovery and requests for it answer 404 (`discovery.rs`). Deletes wait
//! for finalizers (`finalizers.rs`): a Namespace goes `Terminating`, its contents are deleted
//! and it goes once empty, refusing new content with 403 meanwhile; a claim carries
//! `kubernetes.io/pvc-protection` until no pod uses it; a LoadBalancer Service carries
//! `service.kubernetes.io/load-balancer-cleanup` until the emulated cloud releases its load
//! balancer ([`KubeApi::set_finalize_after`], default [`FINALIZE_AFTER`]). An EndpointSlice
//! controller lists the ready pods each Service selects (`endpoints.rs`).
//!
//! What it does not: authentication (unless a test sets an authenticator for the HTTP face,
//! [`KubeApi::set_authenticator`], as a cloud's token webhook would), authorization of its own clients, other admission
//! (no namespace-existence check, no schema validation), the `foregroundDeletion` and
//! `orphan` finalizers (foreground deletes remove the owner at once and collect its
//! dependants), a CRD's own `customresourcecleanup` finalizer (its objects go with it at
//! once), conversion between versions, associative-list merging in apply (lists are atomic),
//! the `scale` subresource (501), pagination (`limit` is ignored, everything comes in
//! one page), YAML apply bodies that are not JSON (415), aggregated discovery,
//! `nonResourceAttributes` in SubjectAccessReviews, users other than service accounts.

mod admission;
mod api_err;
mod controllers;
mod crds;
mod defaults;
mod discovery;
mod endpoints;
mod finalizers;
mod http;
mod immutable;
mod ops;
mod patch;
pub(crate) mod pod_security;
mod pods;
mod port_forward;
pub mod rbac;
mod select;
mod ssa;
mod store;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde_json::Value;

pub use http::{Authenticator, Server};
use store::{Key, State};

/// Errors of the in-memory API itself (request errors are Kubernetes `Status` responses).
#[derive(Debug, thiserror::Error)]
pub enum KubeApiError {
    /// The saved store could not be read.
    #[error("reading the Kubernetes object store {path}: {source}")]
    Read {
        /// The store file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The saved store is not a store this server wrote.
    #[error(
        "the Kubernetes object store {path} is damaged: {message}; move it away to start empty"
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The store could not be saved.
    #[error("saving the Kubernetes object store: {0}")]
    Save(#[from] qhub_core::fs::WriteError),
    /// The server may only listen on loopback.
    #[error("the in-memory Kubernetes API listens on loopback addresses only, not {0}")]
    NotLoopback(SocketAddr),
    /// The listening socket could not be opened.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// How long a new CRD takes to become Established by default: long enough that a client which
/// applies custom objects before their CRD is served sees the 404 a real API server answers
/// (the naming and establishing controllers run after the create returns), short enough to
/// keep tests fast.
pub const CRD_ESTABLISHED_AFTER: Duration = Duration::from_millis(100);

/// How long, by default, the controllers that remove finalizers take: the namespace
/// controller's pass over a namespace being deleted, the cloud's release of a LoadBalancer
/// Service's load balancer ([`KubeApi::set_finalize_after`]).
pub const FINALIZE_AFTER: Duration = Duration::from_millis(100);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn is_crd_key(key: &Key) -> bool {
    key.group == "apiextensions.k8s.io" && key.kind == "CustomResourceDefinition"
}

/// The in-memory Kubernetes API. Cloning is cheap and shares the store.
#[derive(Clone)]
pub struct KubeApi {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    events: tokio::sync::broadcast::Sender<Arc<store::Event>>,
    path: Option<PathBuf>,
    mutations: AtomicU64,
    ready_after_nanos: AtomicU64,
    crd_established_after_nanos: AtomicU64,
    auto_ready: AtomicBool,
    /// Whether a finalizer sweep is scheduled.
    sweep_scheduled: AtomicBool,
    /// The client writes a saved store had made before it was loaded.
    saved_writes: u64,
    /// Where port-forwards to a workload's (or pod's) port go: (namespace, name, port).
    forwards: Mutex<BTreeMap<(String, String, u16), port_forward::Forward>>,
    /// Who may use the HTTP face ([`KubeApi::set_authenticator`]); everyone when unset.
    authenticator: Mutex<Option<http::Authenticator>>,
    /// Each stored object's JSON as last saved, with the resourceVersion it was saved at: a
    /// save serializes only what changed since ([`store::State::put`] gives every write a new
    /// resourceVersion). Serializing the whole store on every write made a deploy of the
    /// platform spend most of its time here (a 780 KB store, some 160 writes).
    saved_objects: Mutex<BTreeMap<Key, (String, Vec<u8>)>>,
}

impl Inner {
    fn new(state: State, path: Option<PathBuf>, saved_writes: u64) -> Self {
        // A watcher more than this many events behind gets a 410 and re-lists.
        let (events, _) = tokio::sync::broadcast::channel(1024);
        Self {
            state: Mutex::new(state),
            events,
            path,
            mutations: AtomicU64::new(0),
            ready_after_nanos: AtomicU64::new(0),
            crd_established_after_nanos: AtomicU64::new(nanos(CRD_ESTABLISHED_AFTER)),
            auto_ready: AtomicBool::new(true),
            sweep_scheduled: AtomicBool::new(false),
            saved_writes,
            forwards: Mutex::default(),
            authenticator: Mutex::default(),
            saved_objects: Mutex::default(),
        }
    }

    /// The store. A panic elsewhere while holding the lock must not take the server down
    /// with it, so poisoning is ignored (every write leaves the map consistent).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn auto_ready(&self) -> bool {
        self.auto_ready.load(Ordering::Relaxed)
    }

    fn ready_after(&self) -> Duration {
        Duration::from_nanos(self.ready_after_nanos.load(Ordering::Relaxed))
    }

    /// How long the simulated controller of `key`'s kind takes.
    fn delay_for(&self, key: &Key) -> Duration {
        if is_crd_key(key) {
            Duration::from_nanos(self.crd_established_after_nanos.load(Ordering::Relaxed))
        } else {
            self.ready_after()
        }
    }

    /// Whether the simulated controller of `key`'s kind runs at all: `set_auto_ready(false)`
    /// stops the workload controllers, never the API server's own establishing controller.
    fn runs(&self, key: &Key) -> bool {
        self.auto_ready() || is_crd_key(key)
    }

    fn save(&self, st: &State) -> Result<(), KubeApiError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KubeApiError::Read {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // Client writes over the store's life (not the controllers'), for tests that count
        // what separate processes changed.
        let writes = self.saved_writes + self.mutations.load(Ordering::Relaxed);
        let mut cache = self.saved_objects.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|key, _| st.objects.contains_key(key));
        let mut bytes = Vec::with_capacity(cache.values().map(|(_, b)| b.len() + 2).sum());
        bytes.extend_from_slice(
            format!(
                "{{\"resourceVersion\":{},\"writes\":{writes},\"objects\":[",
                st.rv
            )
            .as_bytes(),
        );
        for (i, (key, obj)) in st.objects.iter().enumerate() {
            let rv = store::str_at(obj, &["metadata", "resourceVersion"]).unwrap_or_default();
            let fresh = cache.get(key).is_some_and(|(saved_rv, _)| saved_rv == rv);
            if !fresh {
                let json = serde_json::to_vec(obj).unwrap_or_default();
                cache.insert(key.clone(), (rv.to_string(), json));
            }
            if i > 0 {
                bytes.push(b',');
            }
            if let Some((_, json)) = cache.get(key) {
                bytes.extend_from_slice(json);
            }
        }
        bytes.extend_from_slice(b"]}\n");
        qhub_core::fs::replace(path, &bytes)?;
        Ok(())
    }

    /// Makes a workload ready after the configured delay, unless it changed meanwhile.
    fn schedule_ready(inner: &Arc<Inner>, key: Key, stored: &Value) {
        let uid = store::str_at(stored, &["metadata", "uid"])
            .unwrap_or_default()
            .to_string();
        let generation = stored.pointer("/metadata/generation").cloned();
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let delay = inner.delay_for(&key);
        let fire = move || {
            if let Some(inner) = weak.upgrade() {
                KubeApi { inner }.mark_ready(&key, &uid, generation.as_ref());
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(delay).await;
                    fire();
                });
            }
            // Used from synchronous code: a plain thread keeps the promise of readiness.
            Err(_) => {
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    fire();
                });
            }
        }
    }
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("KubeApi")
            .field("objects", &st.objects.len())
            .field("resource_version", &st.rv)
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Default for KubeApi {
    fn default() -> Self {
        Self::new()
    }
}

impl KubeApi {
    /// An empty API server, in memory only.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner::new(State::default(), None, 0)),
        }
    }

    /// An API server whose store lives in `path`: loaded from it if it exists, saved to it
    /// (atomically) after every change.
    ///
    /// Workloads saved while waiting for their simulated readiness are ready when loaded: the
    /// delay has passed while nobody was looking.
    pub fn persistent(path: &Path) -> Result<Self, KubeApiError> {
        let state = match std::fs::read(path) {
            Ok(bytes) => {
                let corrupt = |message: String| KubeApiError::Corrupt {
                    path: path.to_path_buf(),
                    message,
                };
                let saved: Value =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                let mut state = State::from_saved(&saved).map_err(|m| corrupt(m.to_string()))?;
                let stamp = ops::now();
                let mut woken = Vec::new();
                let refused: Vec<Key> = state
                    .objects
                    .iter()
                    .filter(|(k, o)| pod_security::workload_refusal(&state, k, o).is_some())
                    .map(|(k, _)| k.clone())
                    .collect();
                for (key, obj) in state.objects.iter_mut() {
                    if controllers::delayed(key, obj) && !refused.contains(key) {
                        controllers::reconcile(key, obj, true, &stamp);
                        woken.push((key.clone(), obj.clone()));
                    }
                }
                // Their pods run too.
                for (key, obj) in woken {
                    pods::sync(&mut state, &key, &obj, &stamp);
                }
                state.pending.clear();
                let writes = saved.get("writes").and_then(Value::as_u64).unwrap_or(0);
                (state, writes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (State::default(), 0),
            Err(source) => {
                return Err(KubeApiError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let (state, writes) = state;
        let api = Self {
            inner: Arc::new(Inner::new(state, Some(path.to_path_buf()), writes)),
        };
        {
            // Deletes saved while their finalizers waited are done: the time has passed.
            let mut st = api.inner.lock();
            api.settle(&mut st);
            if !std::mem::take(&mut st.pending).is_empty() {
                api.inner.save(&st)?;
            }
        }
        Ok(api)
    }

    /// A [`kube::Client`] talking to this server in-process, default namespace `default`.
    /// Must be called within a Tokio runtime (the client's buffer runs on it).
    pub fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: ::http::Request<kube::client::Body>| {
            let api = api.clone();
            async move { Ok::<_, std::convert::Infallible>(api.handle_request(req).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Serves this API over plain HTTP on a loopback address (port 0 picks a free port).
    pub async fn serve(&self, addr: SocketAddr) -> Result<Server, KubeApiError> {
        Server::start(self.clone(), addr).await
    }

    /// How many requests changed the stored objects (creates, updates and patches that
    /// changed something, deletes). No-op applies and simulated controllers do not count.
    pub fn mutations(&self) -> u64 {
        self.inner.mutations.load(Ordering::Relaxed)
    }

    /// Simulated controllers make workloads ready this long after they change (default: at
    /// once).
    pub fn set_ready_after(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.inner.ready_after_nanos.store(nanos, Ordering::Relaxed);
    }

    /// A new CRD's kind is served (and the CRD `Established`) this long after it is created
    /// (default [`CRD_ESTABLISHED_AFTER`]; zero: at once). Until then requests for its
    /// resources answer 404, as a real API server's do.
    pub fn set_crd_established_after(&self, d: Duration) {
        self.inner
            .crd_established_after_nanos
            .store(nanos(d), Ordering::Relaxed);
    }

    /// The namespace controller's pass over a namespace being deleted and the cloud's release
    /// of a deleted LoadBalancer Service's load balancer take this long (default
    /// [`FINALIZE_AFTER`]); until then the object is visible with its `deletionTimestamp`.
    pub fn set_finalize_after(&self, d: Duration) {
        self.inner.lock().finalize_after = Some(d);
    }

    /// With `false`, workloads (Deployments, StatefulSets, DaemonSets, Jobs, LoadBalancer
    /// Services, PVCs) never become ready, to test rollout deadlines.
    pub fn set_auto_ready(&self, on: bool) {
        self.inner.auto_ready.store(on, Ordering::Relaxed);
    }

    /// The value of `key` in Secret `namespace/name` (from `data`, or `stringData` as
    /// written), if the Secret and the key exist.
    pub fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        use base64::Engine as _;
        let st = self.inner.lock();
        let secret = st.objects.get(&Key {
            group: String::new(),
            kind: "Secret".into(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        })?;
        if let Some(v) = secret
            .pointer(&format!("/stringData/{key}"))
            .and_then(Value::as_str)
        {
            return Some(v.to_string());
        }
        secret
            .pointer(&format!("/data/{key}"))
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// A snapshot of every stored object.
    pub fn objects(&self) -> Vec<Value> {
        self.inner.lock().objects.values().cloned().collect()
    }

    /// Changes a stored object in place, as another actor's write would (a hand edit, a
    /// failing probe flipping a pod's condition), without going through a client: for tests
    /// that must change the cluster at an exact moment, e.g. from an event sink. `group` is
    /// `""` for the core group. Returns false when the object does not exist.
    pub fn edit(
        &self,
        group: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> bool {
        let key = Key {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let mut st = self.inner.lock();
        let Some(mut obj) = st.objects.get(&key).cloned() else {
            return false;
        };
        change(&mut obj);
        st.put(key, obj);
        self.settle(&mut st);
        for ev in std::mem::take(&mut st.pending) {
            let _ = self.inner.events.send(ev);
        }
        if let Err(e) = self.inner.save(&st) {
            tracing::error!(error = %e, "could not save the Kubernetes object store");
        }
        true
    }

    /// Whether the stored RBAC objects allow `req`, as a `SubjectAccessReview` would answer
    /// ([`rbac`]).
    pub fn can(&self, req: &rbac::AccessRequest) -> bool {
        rbac::allows(&self.objects(), req)
    }

    /// What the controllers do after a change: remove the finalizers whose work is done and
    /// the objects they held ([`finalizers`]), keep EndpointSlices in line with ready pods;
    /// and wake up later when a finalizer waits on time.
    pub(crate) fn settle(&self, st: &mut State) {
        let now = std::time::Instant::now();
        let mut waiting = false;
        // Each removal can free something else (a pod gone frees its claim, the last object
        // gone empties its namespace): run until nothing moves.
        for _ in 0..64 {
            let due = st.due.clone();
            let (gone, wait) = finalizers::sweep(st, &due, now);
            waiting = wait;
            if gone.is_empty() {
                break;
            }
            let mut deleted = std::collections::BTreeSet::new();
            for key in gone {
                Self::remove_now(st, &key, &mut deleted);
            }
            Self::collect_garbage(st, deleted);
        }
        endpoints::sync(st);
        if waiting {
            self.schedule_sweep(st);
        }
    }

    fn schedule_sweep(&self, st: &State) {
        if self.inner.sweep_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let now = std::time::Instant::now();
        let next = st
            .due
            .values()
            .filter(|t| **t > now)
            .min()
            .map_or(Duration::from_millis(10), |t| *t - now);
        let weak = Arc::downgrade(&self.inner);
        let fire = move || {
            if let Some(inner) = weak.upgrade() {
                inner.sweep_scheduled.store(false, Ordering::Release);
                let api = KubeApi { inner };
                let mut st = api.inner.lock();
                api.settle(&mut st);
                let pending = std::mem::take(&mut st.pending);
                if !pending.is_empty() {
                    for ev in pending {
                        let _ = api.inner.events.send(ev);
                    }
                    if let Err(e) = api.inner.save(&st) {
                        tracing::error!(error = %e, "could not save the Kubernetes object store");
                    }
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(next).await;
                    fire();
                });
            }
            Err(_) => {
                std::thread::spawn(move || {
                    std::thread::sleep(next);
                    fire();
                });
            }
        }
    }

    /// The delayed controller step: marks the workload ready if it is still the one that
    /// was scheduled.
    fn mark_ready(&self, key: &Key, uid: &str, generation: Option<&Value>) {
        if !self.inner.runs(key) {
            return;
        }
        let mut st = self.inner.lock();
        let Some(live) = st.objects.get(key).cloned() else {
            return;
        };
        if store::str_at(&live, &["metadata", "uid"]) != Some(uid)
            || live.pointer("/metadata/generation") != generation
        {
            return;
        }
        let mut new = live.clone();
        controllers::reconcile(key, &mut new, true, &ops::now());
        if new != live {
            let stored = st.put(key.clone(), new);
            pods::sync(&mut st, key, &stored, &ops::now());
            self.settle(&mut st);
            let pending = std::mem::take(&mut st.pending);
            for ev in pending {
                let _ = self.inner.events.send(ev);
            }
            if let Err(e) = self.inner.save(&st) {
                tracing::error!(error = %e, "could not save the Kubernetes object store");
            }
        }
    }
}
