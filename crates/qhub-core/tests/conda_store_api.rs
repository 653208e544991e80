//! qhub's conda-store client against the real conda-store-server 2025.2.2 (PyPI): its own
//! server application serves the REST API on loopback (sqlite, no Redis, no worker;
//! `tests/conda_store/serve_api.py`), and every call the engine's conda-store reconciler makes
//! is accepted as qhub sends it: a token qhub signs with the server's secret, registering a
//! specification (with qhub's description, which the environment then carries), listing the
//! namespace, reading the build (its specification keeps the description), deleting, deleting
//! what is gone; and a token cannot touch another namespace. This checks the sandbox's emulator
//! (`qhub_sandbox::conda_store_api`) against upstream: its tests make the same calls.
//!
//! Not checked here: builds (no worker, and conda is not on PyPI), so a registered build stays
//! QUEUED. conda-store refuses builds while no worker has reported its free disk space
//! (`conda_store_config.py`, `conda_store_validate_action`): the test configuration turns that
//! check off.
//!
//! The package lives in `.venv-conda-store` (installed by scripts/test) or the Python named by
//! `QHUB_CONDA_STORE_PYTHON`; a missing one fails the test with the command that installs it.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use qhub_core::cloud::stats::ApiStats;
use qhub_core::conda_store::{BuildStatus, CondaStoreClient, token};
use qhub_core::engine::conda_store::{description, parse_description};
use qhub_core::provider::ProviderError;
use qhub_core::retry::RetryPolicy;
use serde_json::json;

const INSTALL: &str = "python3 -m venv .venv-conda-store && .venv-conda-store/bin/pip install \
                       'conda-store-server==2025.2.2' (or run scripts/test once)";
const SECRET: &str = "a-signing-secret-of-32-bytes-or-more";

fn python() -> PathBuf {
    support::venv_python(
        "QHUB_CONDA_STORE_PYTHON",
        ".venv-conda-store",
        "conda-store-server",
        INSTALL,
    )
}

/// The server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts conda-store-server in `dir`; returns it and its API's base URL.
fn start(dir: &Path) -> (Server, String) {
    let config = dir.join("conda_store_config.py");
    std::fs::write(
        &config,
        format!(
            "c.CondaStore.store_directory = {store:?}\n\
             c.CondaStore.database_url = 'sqlite:///{db}'\n\
             c.CondaStore.upgrade_db = True\n\
             c.CondaStoreServer.address = '127.0.0.1'\n\
             c.CondaStoreServer.port = 0\n\
             c.CondaStoreServer.url_prefix = '/conda-store'\n\
             c.AuthenticationBackend.secret = {SECRET:?}\n\
             # No worker reports free disk space here (see the test's documentation).\n\
             c.CondaStore.validate_action = lambda db, conda_store, namespace, action: None\n",
            store = dir.join("store").display().to_string(),
            db = dir.join("conda-store.sqlite").display(),
        ),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conda_store/serve_api.py");
    let mut child = Command::new(python())
        .arg(script)
        .arg("--config")
        .arg(&config)
        .current_dir(dir)
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(at) = line.find("Uvicorn running on http://") {
                let addr: String = line[at + "Uvicorn running on http://".len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("conda-store-server starts within 2 minutes");
    (server, format!("http://{addr}/conda-store"))
}

fn client(base: &str, secret: &str, namespace: &str) -> CondaStoreClient {
    let token = token::mint(secret, namespace, 4_000_000_000);
    CondaStoreClient::new(
        base,
        &token,
        Arc::new(ApiStats::default()),
        RetryPolicy::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_conda_store_accepts_the_clients_calls() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (_server, base) = start(dir.path());
    println!(
        "conda-store-server up in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let c = client(&base, SECRET, "shared");
    let marked = description("environment-dask.yaml", "0123abcd");
    let spec = json!({
        "name": "dask",
        "channels": ["conda-forge"],
        "dependencies": ["python=3.11", {"pip": ["rich"]}],
        "description": marked,
    });
    let build_id = c.register("shared", &spec).await.expect("registered");
    let envs = c.environments("shared").await.unwrap();
    assert_eq!(envs.len(), 1, "{envs:?}");
    assert_eq!(envs[0].name, "dask");
    assert_eq!(envs[0].current_build_id, Some(build_id));
    assert_eq!(
        envs[0].description.as_deref().and_then(parse_description),
        Some(("environment-dask.yaml", "0123abcd"))
    );
    let build = c.build(build_id).await.unwrap();
    assert_eq!(build.status, BuildStatus::Queued);
    assert_eq!(
        build.specification.unwrap().spec["description"].as_str(),
        Some(marked.as_str())
    );
    // conda-store refuses a name outside its characters, and another namespace's writes.
    let bad = c
        .register("shared", &json!({"name": "bad name", "dependencies": []}))
        .await
        .unwrap_err();
    assert!(matches!(bad, ProviderError::Fatal(_)), "{bad}");
    let refused = c
        .register("alice", &json!({"name": "x", "dependencies": []}))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ProviderError::Unauthorized(_)),
        "{refused}"
    );
    // A token signed with another secret sees nothing.
    let stranger = client(&base, "another-secret-of-32-bytes-or-more!", "shared");
    assert!(stranger.environments("shared").await.unwrap().is_empty());
    c.delete_environment("shared", "dask").await.unwrap();
    assert!(c.environments("shared").await.unwrap().is_empty());
    c.delete_environment("shared", "dask").await.unwrap();
}
