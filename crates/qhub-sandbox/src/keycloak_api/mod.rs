//! An in-memory emulator of Keycloak's admin REST API (the Keycloak 26.x paths
//! [`qhub_core::keycloak`] uses), served on loopback HTTP at `http://127.0.0.1:PORT/auth`.
//!
//! As unkind as the real one where it matters: admin tokens (password grant on the `master`
//! realm's `admin-cli`) expire after a configurable lifetime and a missing or expired bearer
//! token gets 401; a duplicate clientId, group name, identity-provider alias or role name gets
//! 409; unknown ids get 404; ids are server-generated UUIDs; representations with fields
//! Keycloak does not know get 400; `GET /groups` is brief (no attributes) unless asked; an
//! identity provider's `clientSecret` is answered masked; `PUT /clients/{id}` ignores protocol
//! mappers. It counts requests (reads, mutations, logins, 401s) and can inject 503s at a seeded
//! rate. [`KeycloakApi::persistent`] keeps its realms in a file (the sandbox's world lives
//! beside the config), so separate commands see the same Keycloak.

mod http;
mod state;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value as Json;

pub use http::KeycloakServer;
use state::State;

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct KeycloakApiOptions {
    /// How long an admin token is accepted (Keycloak's default: 60 s).
    pub token_lifetime: Duration,
    /// The admin user of the `master` realm.
    pub admin_username: String,
    /// Its password.
    pub admin_password: String,
    /// The share of admin requests answered 503 (0.0 to 1.0).
    pub fault_rate: f64,
    /// Seed of the fault dice.
    pub seed: u64,
}

impl Default for KeycloakApiOptions {
    fn default() -> Self {
        Self {
            token_lifetime: Duration::from_secs(60),
            admin_username: "root".into(),
            admin_password: "sandbox".into(),
            fault_rate: 0.0,
            seed: 0,
        }
    }
}

/// Request counts, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Admin `GET`s answered (any status).
    pub reads: u64,
    /// Admin `POST`/`PUT`/`DELETE`s answered (any status).
    pub mutating: u64,
    /// Token requests.
    pub logins: u64,
    /// Requests refused with 401.
    pub unauthorized: u64,
    /// Requests answered with an injected 503.
    pub faults: u64,
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    mutating: AtomicU64,
    logins: AtomicU64,
    unauthorized: AtomicU64,
    faults: AtomicU64,
}

/// Errors opening or saving a persistent emulator.
#[derive(Debug, thiserror::Error)]
pub enum KeycloakApiError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a saved emulator.
    #[error("{path} is not a saved Keycloak emulator: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The file could not be written.
    #[error(transparent)]
    Save(#[from] qhub_core::fs::WriteError),
}

struct Inner {
    state: Mutex<State>,
    path: Option<PathBuf>,
    /// Admin requests still answered before the emulator "dies" (`u64::MAX`: never).
    budget: AtomicU64,
    options: Mutex<KeycloakApiOptions>,
    rng: Mutex<StdRng>,
    counters: Counters,
}

/// The emulator. Cheap to clone (clones share the state).
#[derive(Clone)]
pub struct KeycloakApi {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeycloakApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycloakApi")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl Default for KeycloakApi {
    fn default() -> Self {
        Self::new(KeycloakApiOptions::default())
    }
}

impl KeycloakApi {
    /// An emulator with only the `master` realm, in memory.
    pub fn new(options: KeycloakApiOptions) -> Self {
        Self::with_state(options, State::new(), None)
    }

    /// An emulator whose realms live in `path`: loaded from it if it exists, saved to it
    /// (atomically, mode 0600: it holds client secrets) after every change. Tokens are not
    /// kept: a new process logs in again, as with a restarted Keycloak.
    pub fn persistent(options: KeycloakApiOptions, path: &Path) -> Result<Self, KeycloakApiError> {
        let state = match std::fs::read(path) {
            Ok(bytes) => {
                State::from_saved(&bytes).map_err(|message| KeycloakApiError::Corrupt {
                    path: path.to_path_buf(),
                    message,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::new(),
            Err(source) => {
                return Err(KeycloakApiError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(Self::with_state(options, state, Some(path.to_path_buf())))
    }

    fn with_state(options: KeycloakApiOptions, state: State, path: Option<PathBuf>) -> Self {
        let rng = StdRng::seed_from_u64(options.seed);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                path,
                budget: AtomicU64::new(u64::MAX),
                options: Mutex::new(options),
                rng: Mutex::new(rng),
                counters: Counters::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the emulator down; every write leaves it consistent.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn options(&self) -> KeycloakApiOptions {
        self.inner
            .options
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serves the emulator on a free loopback port; the server's [`KeycloakServer::url`] is the
    /// base URL to give the admin client. Stops when the server is dropped.
    pub async fn serve(&self) -> std::io::Result<KeycloakServer> {
        KeycloakServer::start(self.clone()).await
    }

    /// Runs this emulator "inside" the in-memory cluster `kube`, as the Keycloak of the
    /// deployment in `namespace`: port-forwards to Keycloak's HTTP port on its pods reach it,
    /// and each first sets the admin from the deployment's admin Secret, as Keycloak
    /// bootstraps its admin from its environment. Stops when the returned server is dropped.
    pub async fn run_in_cluster(
        &self,
        kube: &crate::kube_api::KubeApi,
        namespace: &str,
    ) -> std::io::Result<KeycloakServer> {
        use qhub_core::kubernetes::components::keycloak as component;
        let server = self.serve().await?;
        let kc = self.clone();
        let ns = namespace.to_string();
        kube.forward_port_with(
            namespace,
            component::NAME,
            u16::try_from(component::HTTP_PORT).unwrap_or(8080),
            server.addr(),
            Some(Arc::new(move |kube: &crate::kube_api::KubeApi| {
                if let Some(p) = kube.secret_value(&ns, component::ADMIN_SECRET, "password") {
                    kc.set_admin(component::ADMIN_USER, &p);
                }
            })),
        );
        Ok(server)
    }

    /// Sets the `master` realm admin's credentials (what Keycloak bootstraps from its
    /// environment when it starts): the sandbox takes them from the deployment's Secret.
    pub fn set_admin(&self, username: &str, password: &str) {
        let mut options = self.inner.options.lock().unwrap_or_else(|e| e.into_inner());
        options.admin_username = username.to_string();
        options.admin_password = password.to_string();
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        let c = &self.inner.counters;
        Counts {
            reads: c.reads.load(Ordering::SeqCst),
            mutating: c.mutating.load(Ordering::SeqCst),
            logins: c.logins.load(Ordering::SeqCst),
            unauthorized: c.unauthorized.load(Ordering::SeqCst),
            faults: c.faults.load(Ordering::SeqCst),
        }
    }

    /// Sets the share of admin requests answered 503.
    pub fn set_fault_rate(&self, rate: f64) {
        self.inner
            .options
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fault_rate = rate.clamp(0.0, 1.0);
    }

    /// Answers the next `n` admin requests, then 503 to every one (Keycloak died mid-run)
    /// until called again; `None` lifts it.
    pub fn set_fail_after(&self, n: Option<u64>) {
        self.inner
            .budget
            .store(n.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Sets how long new tokens live.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.inner
            .options
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .token_lifetime = lifetime;
    }

    /// Makes every token issued so far expire now (a revocation, or a long pause).
    pub fn expire_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// The stored representation of client `client_id` in `realm` (secret included).
    pub fn client(&self, realm: &str, client_id: &str) -> Option<Json> {
        let st = self.lock();
        let r = st.realms.get(realm)?;
        r.clients
            .values()
            .find(|c| c.rep["clientId"] == client_id)
            .map(|c| c.rep.clone())
    }

    /// Edits client `client_id` in `realm` out of band (as a person in the admin console
    /// would): `edit` changes its stored representation. Not counted. False when absent.
    pub fn edit_client(&self, realm: &str, client_id: &str, edit: impl FnOnce(&mut Json)) -> bool {
        let mut st = self.lock();
        let Some(r) = st.realms.get_mut(realm) else {
            return false;
        };
        match r
            .clients
            .values_mut()
            .find(|c| c.rep["clientId"] == client_id)
        {
            Some(c) => {
                edit(&mut c.rep);
                true
            }
            None => false,
        }
    }

    /// The stored identity provider `alias` in `realm` (its secret unmasked).
    pub fn identity_provider(&self, realm: &str, alias: &str) -> Option<Json> {
        self.lock().realms.get(realm)?.idps.get(alias).cloned()
    }

    /// Names of the top-level groups of `realm`.
    pub fn group_names(&self, realm: &str) -> Vec<String> {
        self.lock()
            .realms
            .get(realm)
            .map(|r| {
                r.groups
                    .values()
                    .filter_map(|g| g["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether user `username` of `realm` has the password `password` (the emulator keeps
    /// its hash only).
    pub fn password_matches(&self, realm: &str, username: &str, password: &str) -> bool {
        let st = self.lock();
        let Some(r) = st.realms.get(realm) else {
            return false;
        };
        r.users
            .iter()
            .find(|(_, u)| u["username"] == username)
            .and_then(|(id, _)| r.passwords.get(id))
            .is_some_and(|h| *h == state::password_hash(password))
    }

    /// Saves the realms, when persistent.
    fn save(&self, st: &State) -> Result<(), KeycloakApiError> {
        let Some(path) = &self.inner.path else {
            return Ok(());
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KeycloakApiError::Read {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        qhub_core::fs::replace(path, &st.to_saved())?;
        Ok(())
    }

    fn roll_fault(&self, rate: f64) -> bool {
        let alive = self
            .inner
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| match b {
                u64::MAX => Some(b),
                0 => None,
                b => Some(b - 1),
            })
            .is_ok();
        if !alive {
            return true;
        }
        if rate <= 0.0 {
            return false;
        }
        let mut rng = self.inner.rng.lock().unwrap_or_else(|e| e.into_inner());
        rand::Rng::random_bool(&mut *rng, rate.min(1.0))
    }
}

#[cfg(test)]
mod tests;
