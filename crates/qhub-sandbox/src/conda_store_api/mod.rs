//! An in-memory emulator of conda-store's REST API (the conda-store-server 2025.2.2 paths
//! [`qhub_core::conda_store`] uses, `conda_store_server/_internal/server/views/api.py`), served
//! on loopback HTTP at `http://127.0.0.1:PORT/conda-store`.
//!
//! Builds complete after a simulated delay ([`CondaStoreApiOptions::build_delay`]), counted from
//! their registration in wall-clock time so that separate commands agree; a specification
//! with a dependency named `unsatisfiable-*` fails to build, as a solve that finds no solution
//! does. As the real server does, it:
//! - takes tokens signed with its `AuthenticationBackend.secret` (HS256, `server/auth.py`) as
//!   `Authorization: Bearer`, and authorizes each call by the token's `role_bindings`
//!   (`{namespace}/*` patterns; `admin` may do anything in them); a call it does not authorize
//!   is 403 `request not authorized`; an environment list shows only what the token may read;
//! - refuses a specification that is not YAML (400 `Unable to parse. Invalid YAML`; this
//!   emulator parses the JSON subset of YAML, which is what qhub sends) or that
//!   `schema.CondaSpecification` refuses (400: a name outside `ALLOWED_CHARACTERS`
//!   `A-Za-z0-9-+_@$&?^~.=`, dependencies that are neither strings nor `{pip: [...]}`);
//! - answers 404 `build id does not exist` for an unknown build, and 400 `environment
//!   namespace=… name=… does not exist` to a delete of an unknown environment
//!   (`conda_store.py`, `delete_environment`);
//! - points an environment at its first build, then at each build that completes
//!   (`_internal/worker/build.py`); describes it with its specification's `description`
//!   (`api.py` `ensure_environment`).
//!
//! [`CondaStoreApi::persistent`] keeps its state in a file beside the sandbox's world.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

/// Where conda-store is served (QHub's `/conda-store`).
const PREFIX: &str = "/conda-store/api/v1";
/// conda-store's `ALLOWED_CHARACTERS` (`_internal/schema.py`).
const ALLOWED: &str = "-+_@$&?^~.=";

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct CondaStoreApiOptions {
    /// The token signing secret (`AuthenticationBackend.secret`).
    pub token_secret: String,
    /// How long a build takes.
    pub build_delay: Duration,
}

/// Request counts, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `GET`s answered (any status).
    pub reads: u64,
    /// `POST`/`PUT`/`DELETE`s answered (any status).
    pub mutating: u64,
    /// Requests refused with 401 or 403.
    pub refused: u64,
}

/// Errors opening a persistent emulator.
#[derive(Debug, thiserror::Error)]
pub enum CondaStoreApiError {
    /// The file could not be read or is not a saved emulator.
    #[error("cannot load {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    next_id: u64,
    environments: Vec<Env>,
    builds: Vec<BuildRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Env {
    id: u64,
    namespace: String,
    name: String,
    description: String,
    current_build_id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BuildRecord {
    id: u64,
    environment_id: u64,
    spec: Json,
    /// Registration time, milliseconds since the epoch.
    scheduled_ms: u64,
    /// Why it fails once built, when it does.
    failure: Option<String>,
}

struct Inner {
    state: Mutex<State>,
    path: Option<PathBuf>,
    options: Mutex<CondaStoreApiOptions>,
    reads: AtomicU64,
    mutating: AtomicU64,
    refused: AtomicU64,
}

/// The emulator. Cheap to clone (clones share the state).
#[derive(Clone)]
pub struct CondaStoreApi {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CondaStoreApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CondaStoreApi").finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

fn respond(code: u16, body: &Json) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).unwrap_or_default(),
    )));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn detail(code: u16, text: &str) -> (u16, Json) {
    (code, json!({"detail": text}))
}

/// Whether `bindings` (a token's `role_bindings`) make its bearer admin of `namespace`, or at
/// least able to read it (`read`).
fn allowed(bindings: &Json, namespace: &str, read: bool) -> bool {
    let Some(map) = bindings.as_object() else {
        return false;
    };
    map.iter().any(|(arn, roles)| {
        let ns_pattern = arn.split('/').next().unwrap_or_default();
        let matches = ns_pattern == "*" || ns_pattern == namespace;
        let roles: Vec<&str> = roles
            .as_array()
            .map(|r| r.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        matches
            && (roles.contains(&"admin")
                || (read
                    && roles
                        .iter()
                        .any(|r| ["viewer", "developer", "editor"].contains(r))))
    })
}

/// `schema.CondaSpecification`'s checks of what qhub sends, as conda-store words them.
fn validate(spec: &Json) -> Result<(), String> {
    let Some(doc) = spec.as_object() else {
        return Err("Input should be a valid dictionary (type=model_type, loc=())".into());
    };
    let name = doc.get("name").and_then(Json::as_str).unwrap_or_default();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ALLOWED.contains(c))
    {
        return Err(format!(
            "String should match pattern '^[A-Za-z0-9-+_@$&?^~.=]+$' (type=string_pattern_mismatch, loc=('name',)): {name:?}"
        ));
    }
    for d in doc
        .get("dependencies")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let ok = d.is_string()
            || d.get("pip")
                .and_then(Json::as_array)
                .is_some_and(|p| p.iter().all(Json::is_string));
        if !ok {
            return Err(format!(
                "Input should be a valid string (type=string_type, loc=('dependencies',)): {d}"
            ));
        }
    }
    Ok(())
}

/// Why a specification cannot be solved: a dependency named `unsatisfiable-*`.
fn unsolvable(spec: &Json) -> Option<String> {
    spec["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .find(|d| d.starts_with("unsatisfiable-"))
        .map(|d| format!("conda-lock could not solve the environment: nothing provides {d}"))
}

impl CondaStoreApi {
    /// An emulator in memory.
    pub fn new(options: CondaStoreApiOptions) -> Self {
        Self::with_state(options, State::default(), None)
    }

    /// An emulator whose state lives in `path` (loaded if it exists, saved after every change).
    pub fn persistent(
        options: CondaStoreApiOptions,
        path: &Path,
    ) -> Result<Self, CondaStoreApiError> {
        let state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| CondaStoreApiError::Load {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                return Err(CondaStoreApiError::Load {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
            }
        };
        Ok(Self::with_state(options, state, Some(path.to_path_buf())))
    }

    fn with_state(options: CondaStoreApiOptions, state: State, path: Option<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                path,
                options: Mutex::new(options),
                reads: AtomicU64::new(0),
                mutating: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn options(&self) -> CondaStoreApiOptions {
        self.inner
            .options
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the token signing secret (the deployment's Secret, read again as it may change).
    pub fn set_token_secret(&self, secret: &str) {
        self.inner
            .options
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .token_secret = secret.to_string();
    }

    /// The requests answered so far.
    pub fn counts(&self) -> Counts {
        Counts {
            reads: self.inner.reads.load(Ordering::SeqCst),
            mutating: self.inner.mutating.load(Ordering::SeqCst),
            refused: self.inner.refused.load(Ordering::SeqCst),
        }
    }

    /// The environments (`namespace/name` and description), for tests.
    pub fn environments(&self) -> Vec<(String, String)> {
        self.lock()
            .environments
            .iter()
            .map(|e| (format!("{}/{}", e.namespace, e.name), e.description.clone()))
            .collect()
    }

    /// Registers `spec` in `namespace` as a user would through the UI (no token checks), for
    /// tests. Returns the build id.
    pub fn register_as_user(&self, namespace: &str, spec: &Json) -> u64 {
        let mut st = self.lock();
        let id = Self::register(&mut st, namespace, spec);
        self.save(&st);
        id
    }

    fn save(&self, st: &State) {
        if let Some(path) = &self.inner.path {
            let bytes = serde_json::to_vec(st).unwrap_or_default();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Err(e) = qhub_core::fs::replace(path, &bytes) {
                tracing::warn!(error = %e, "saving the conda-store emulator's state");
            }
        }
    }

    /// The status of `b` now, and its status info.
    fn status(&self, b: &BuildRecord) -> (&'static str, Option<String>) {
        let delay = u64::try_from(self.options().build_delay.as_millis()).unwrap_or(u64::MAX);
        if now_ms() < b.scheduled_ms.saturating_add(delay) {
            return ("BUILDING", None);
        }
        match &b.failure {
            Some(why) => ("FAILED", Some(why.clone())),
            None => ("COMPLETED", None),
        }
    }

    /// Points every environment at its newest completed build (the worker does so as a build
    /// completes).
    fn settle(&self, st: &mut State) {
        let completed: Vec<(u64, u64)> = st
            .builds
            .iter()
            .filter(|b| self.status(b).0 == "COMPLETED")
            .map(|b| (b.environment_id, b.id))
            .collect();
        for e in &mut st.environments {
            if let Some(newest) = completed
                .iter()
                .filter(|(env, _)| *env == e.id)
                .map(|(_, b)| *b)
                .max()
                && newest > e.current_build_id
            {
                e.current_build_id = newest;
            }
        }
    }

    fn register(st: &mut State, namespace: &str, spec: &Json) -> u64 {
        let name = spec["name"].as_str().unwrap_or_default().to_string();
        let description = spec["description"].as_str().unwrap_or_default().to_string();
        st.next_id += 1;
        let build_id = st.next_id;
        let env_id = match st
            .environments
            .iter_mut()
            .find(|e| e.namespace == namespace && e.name == name)
        {
            Some(e) => {
                if !description.is_empty() {
                    e.description = description;
                }
                e.id
            }
            None => {
                st.next_id += 1;
                let id = st.next_id;
                st.environments.push(Env {
                    id,
                    namespace: namespace.to_string(),
                    name,
                    description,
                    current_build_id: build_id,
                });
                id
            }
        };
        st.builds.push(BuildRecord {
            id: build_id,
            environment_id: env_id,
            spec: spec.clone(),
            scheduled_ms: now_ms(),
            failure: unsolvable(spec),
        });
        build_id
    }

    fn build_json(&self, st: &State, b: &BuildRecord) -> Json {
        let (status, info) = self.status(b);
        json!({
            "id": b.id,
            "environment_id": b.environment_id,
            "status": status,
            "status_info": info,
            "size": 0,
            "specification": {"id": b.id, "name": b.spec["name"], "spec": b.spec, "sha256": ""},
            "environment": st.environments.iter().find(|e| e.id == b.environment_id).map(|e| e.name.clone()),
        })
    }

    /// Serves one request.
    async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body,
        B::Error: std::fmt::Display,
    {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        if parts.method == Method::GET {
            self.inner.reads.fetch_add(1, Ordering::SeqCst);
        } else {
            self.inner.mutating.fetch_add(1, Ordering::SeqCst);
        }
        let secret = self.options().token_secret;
        let claims = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .and_then(|t| qhub_core::conda_store::token::verify(&secret, t))
            .filter(|c| c["exp"].as_u64().is_some_and(|exp| exp * 1000 > now_ms()));
        let bindings = claims
            .as_ref()
            .map(|c| c["role_bindings"].clone())
            .unwrap_or(Json::Null);
        let query: BTreeMap<String, String> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let path = parts.uri.path().to_string();
        let (code, answer) = self.route(&parts.method, &path, &query, &body, &bindings);
        if code == 401 || code == 403 {
            self.inner.refused.fetch_add(1, Ordering::SeqCst);
        }
        respond(code, &answer)
    }

    fn route(
        &self,
        method: &Method,
        path: &str,
        query: &BTreeMap<String, String>,
        body: &[u8],
        bindings: &Json,
    ) -> (u16, Json) {
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return detail(404, "Not Found");
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let mut st = self.lock();
        self.settle(&mut st);
        match (method, segments.as_slice()) {
            (&Method::GET, []) => (
                200,
                json!({"status": "ok", "data": {"version": "2025.2.2"}}),
            ),
            (&Method::GET, ["environment"]) => {
                let page: usize = query
                    .get("page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(1)
                    .max(1);
                let size: usize = query
                    .get("size")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(100)
                    .clamp(1, 100);
                let visible: Vec<&Env> = st
                    .environments
                    .iter()
                    .filter(|e| query.get("namespace").is_none_or(|n| *n == e.namespace))
                    .filter(|e| allowed(bindings, &e.namespace, true))
                    .collect();
                let data: Vec<Json> = visible
                    .iter()
                    .skip((page - 1) * size)
                    .take(size)
                    .map(|e| {
                        json!({
                            "id": e.id,
                            "namespace": {"id": 0, "name": e.namespace},
                            "name": e.name,
                            "current_build_id": e.current_build_id,
                            "description": e.description,
                        })
                    })
                    .collect();
                (
                    200,
                    json!({"status": "ok", "data": data, "page": page, "size": size, "count": visible.len()}),
                )
            }
            (&Method::GET, ["build", id]) => {
                let Some(b) = id
                    .parse::<u64>()
                    .ok()
                    .and_then(|id| st.builds.iter().find(|b| b.id == id))
                else {
                    return detail(404, "build id does not exist");
                };
                let ns = st
                    .environments
                    .iter()
                    .find(|e| e.id == b.environment_id)
                    .map(|e| e.namespace.clone())
                    .unwrap_or_default();
                if !allowed(bindings, &ns, true) {
                    return detail(403, "request not authorized");
                }
                (
                    200,
                    json!({"status": "ok", "data": self.build_json(&st, b)}),
                )
            }
            (&Method::POST, ["specification"]) => {
                let Ok(request) = serde_json::from_slice::<Json>(body) else {
                    return detail(422, "the body is not JSON");
                };
                let namespace = request["namespace"]
                    .as_str()
                    .unwrap_or("global")
                    .to_string();
                let Some(spec) = request["specification"]
                    .as_str()
                    .and_then(|s| serde_json::from_str::<Json>(s).ok())
                else {
                    return detail(400, "Unable to parse. Invalid YAML");
                };
                if let Err(e) = validate(&spec) {
                    return detail(400, &e);
                }
                if !allowed(bindings, &namespace, false) {
                    return detail(403, "request not authorized");
                }
                let build_id = Self::register(&mut st, &namespace, &spec);
                self.save(&st);
                (200, json!({"status": "ok", "data": {"build_id": build_id}}))
            }
            (&Method::DELETE, ["environment", namespace, name]) => {
                if !allowed(bindings, namespace, false) {
                    return detail(403, "request not authorized");
                }
                let Some(env) = st
                    .environments
                    .iter()
                    .position(|e| e.namespace == *namespace && e.name == *name)
                else {
                    return detail(
                        400,
                        &format!("environment namespace={namespace} name={name} does not exist"),
                    );
                };
                let removed = st.environments.remove(env);
                st.builds.retain(|b| b.environment_id != removed.id);
                self.save(&st);
                (200, json!({"status": "ok"}))
            }
            _ => detail(404, "Not Found"),
        }
    }

    /// Serves the emulator on a free loopback port. Stops when the server is dropped.
    pub async fn serve(&self) -> std::io::Result<CondaStoreServer> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let api = self.clone();
        let inner =
            crate::loopback::Loopback::serve(listener, "conda-store API emulator", move |req| {
                let api = api.clone();
                async move { api.handle(req).await }
            })?;
        Ok(CondaStoreServer { inner })
    }
}

/// Runs a new emulator (builds complete at once) "inside" the in-memory cluster `kube`, as the
/// conda-store of the deployment in `namespace`: port-forwards to the server's port on its pods
/// reach it, and each first takes the token signing secret from the deployment's Secret, as
/// the server reads it from its environment. Stops when the returned server is dropped.
pub async fn run_in_cluster(
    kube: &crate::kube_api::KubeApi,
    namespace: &str,
) -> std::io::Result<(CondaStoreApi, CondaStoreServer)> {
    use qhub_core::kubernetes::components::conda_store as component;
    let api = CondaStoreApi::new(CondaStoreApiOptions {
        token_secret: String::new(),
        build_delay: Duration::ZERO,
    });
    let server = api.serve().await?;
    let cs = api.clone();
    let ns = namespace.to_string();
    kube.forward_port_with(
        namespace,
        component::SERVER,
        u16::try_from(component::PORT).unwrap_or(5000),
        server.inner.addr(),
        Some(Arc::new(move |kube: &crate::kube_api::KubeApi| {
            if let Some(s) = kube.secret_value(&ns, component::SECRET, "token-secret") {
                cs.set_token_secret(&s);
            }
        })),
    );
    Ok((api, server))
}

/// The emulator's loopback server. Stops when dropped.
#[derive(Debug)]
pub struct CondaStoreServer {
    inner: crate::loopback::Loopback,
}

impl CondaStoreServer {
    /// The base URL to give the client: `http://127.0.0.1:PORT/conda-store`.
    pub fn url(&self) -> String {
        format!("http://{}/conda-store", self.inner.addr())
    }
}
