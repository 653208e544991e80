//! conda-store's environments as a reconciler of the Kubernetes stage: every entry of the
//! config's `environments` is an environment of conda-store's namespace
//! `conda_store.default_namespace`, registered and built through conda-store's REST API
//! ([`crate::conda_store`]) once the conda-store server runs, and a deploy waits for the builds.
//!
//! - **One writer.** The reconciler is the only writer of these environments: the worker's
//!   `CondaStoreWorker.watch_paths` (QHub 0.4.5's mechanism, which registered the specs of a
//!   mounted ConfigMap every minute) is not configured, since two writers of one environment
//!   would each register their own specification and flip its current build between them, and
//!   a deploy could neither wait for the build nor say that it failed.
//! - **What is ours.** An environment registered from the config carries a description that
//!   starts with [`MARK`] and names its `environments` entry and the hash of its specification
//!   ([`description`]). The plan lists only the marked environments of the config's namespace:
//!   users' environments (in their own namespaces, in `global`, or unmarked in the config's
//!   namespace) are never listed, so never updated or deleted; the API token cannot touch
//!   another namespace anyway ([`crate::conda_store::token`]).
//! - **Changes.** Create when the config has an environment conda-store lacks; update when the
//!   specification hash of the environment's current build (the last that completed, or the
//!   first) differs from the config's, or its current build failed; delete a marked environment
//!   no longer in the config. Comparing hashes from the description, not specifications,
//!   because conda-store adds its own packages and channels to what it stores.
//! - **Waiting.** Each create or update waits for its build under the change's deadline, with
//!   progress events; a failed build fails the change with the environment's name, conda-store's
//!   reason and the URL of the build's log.
//! - **Where conda-store answers**: `QHUB_CONDA_STORE_URL`; what the provider serves
//!   ([`crate::provider::Provider::conda_store_url`], the sandbox's emulator); a port-forward to
//!   the server's pods through the cluster's API server; the deployment's
//!   `https://{domain}/conda-store`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::identity::read_key;
use super::reconciler::{PlanContext, Reconciler, Scope};
use super::{Engine, EngineError};
use crate::conda_store::{self, BuildStatus, CondaStoreClient};
use crate::config::Config;
use crate::events::Event;
use crate::kubernetes::components::conda_store as component;
use crate::kubernetes::components::conda_store::config::{default_namespace, environment_json};
use crate::kubernetes::port_forward::PortForward;
use crate::plan::{self, Action, Change, ResourceId, ResourceState, Stage};
use crate::provider::{Ownership, Provider, ProviderError};

/// The plan kind of an environment (named `namespace/name`).
pub const KIND: &str = "CondaStoreEnvironment";
/// How the description of an environment qhub registered begins.
pub const MARK: &str = "qhub-rs: qhub-config.yaml environments.";
/// What separates the entry's file name from the specification hash in the description.
const HASH_SEPARATOR: &str = ", specification sha256:";
/// How long a build is expected to take: conda solves and downloads (the change's deadline is
/// a multiple of it).
const EXPECTED_BUILD: Duration = Duration::from_secs(10 * 60);
/// How long a minted API token lives: longer than any apply waits for a build.
const TOKEN_LIFETIME: Duration = Duration::from_secs(6 * 60 * 60);

/// The note of a plan that leaves the environments out.
pub(crate) const NOT_REACHABLE: &str = "conda-store's environments are not registered: this provider hands out no cluster access to reach conda-store's API through. Set QHUB_CONDA_STORE_URL to it (e.g. `kubectl -n NAMESPACE port-forward svc/conda-store-server 5000` and QHUB_CONDA_STORE_URL=http://127.0.0.1:5000/conda-store) and deploy again";

/// The description of an environment registered from `environments.<file>` whose
/// specification hashes to `hash`.
pub fn description(file: &str, hash: &str) -> String {
    format!("{MARK}{file}{HASH_SEPARATOR}{hash}")
}

/// The entry's file name and the hash a description written by [`description`] holds.
pub fn parse_description(text: &str) -> Option<(&str, &str)> {
    text.strip_prefix(MARK)?.rsplit_once(HASH_SEPARATOR)
}

/// The id of a deployment's conda-store server Deployment.
fn server_id(config: &Config) -> ResourceId {
    ResourceId::new(
        "Deployment.apps",
        format!("{}/{}", config.namespace, component::SERVER),
    )
}

/// The id of the worker Deployment (it builds).
fn worker_id(config: &Config) -> ResourceId {
    ResourceId::new(
        "Deployment.apps",
        format!("{}/{}", config.namespace, component::WORKER),
    )
}

/// The environments the config wants, each with the specification to register (its payload).
pub(crate) fn desired(config: &Config) -> Result<Vec<plan::Resource>, ProviderError> {
    let namespace = default_namespace(config);
    let mut out: Vec<plan::Resource> = Vec::new();
    let mut files: std::collections::BTreeMap<String, &str> = Default::default();
    for (file, env) in &config.environments {
        if let Some(other) = files.insert(env.name.clone(), file) {
            return Err(ProviderError::Fatal(format!(
                "environments.{other} and environments.{file} both name conda environment `{}`: conda-store keeps one environment per name in namespace {namespace}",
                env.name
            )));
        }
        let spec = environment_json(env);
        let hash = hex(&Sha256::digest(spec.to_string().as_bytes()));
        let mut registered = spec.clone();
        if let Some(doc) = registered.as_object_mut() {
            doc.insert("description".into(), json!(description(file, &hash)));
        }
        let mut r = plan::Resource::new(
            KIND,
            format!("{namespace}/{}", env.name),
            Stage::Kubernetes,
            json!({
                "namespace": namespace,
                "environment": env.name,
                "source": format!("environments.{file}"),
                "specification_sha256": hash,
            }),
        );
        r.depends_on = vec![server_id(config), worker_id(config)];
        r.expected_duration = EXPECTED_BUILD;
        r.payload = Some(registered);
        out.push(r);
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What exists of them: the marked environments of the config's namespace, each with its
/// current build's state and the specification hash that build was registered with.
pub(crate) async fn observe(
    client: &CondaStoreClient,
    config: &Config,
) -> Result<Vec<plan::Observed>, ProviderError> {
    let namespace = default_namespace(config);
    let mut out = Vec::new();
    for env in client.environments(namespace).await? {
        let Some((file, _)) = env.description.as_deref().and_then(parse_description) else {
            // Not registered from a config: someone else's, left alone.
            continue;
        };
        let (state, built_hash, build_id) = match env.current_build_id {
            Some(id) => {
                let build = client.build(id).await?;
                let hash = build
                    .specification
                    .as_ref()
                    .and_then(|s| s.spec["description"].as_str())
                    .and_then(parse_description)
                    .map(|(_, h)| h.to_string());
                let info = build.status_info.clone().unwrap_or_default();
                let state = match build.status {
                    BuildStatus::Completed => ResourceState::Ready,
                    BuildStatus::Queued | BuildStatus::Building => {
                        ResourceState::Pending(format!("conda-store build {id} {:?}", build.status))
                    }
                    BuildStatus::Failed | BuildStatus::Canceled => ResourceState::Failed(format!(
                        "conda-store build {id} {:?}: {info}",
                        build.status
                    )),
                };
                (state, hash, Some(id))
            }
            None => (
                ResourceState::Pending("conda-store has not built it yet".into()),
                None,
                None,
            ),
        };
        let mut o = plan::Observed::new(
            ResourceId::new(KIND, format!("{namespace}/{}", env.name)),
            Stage::Kubernetes,
            json!({
                "namespace": namespace,
                "environment": env.name,
                "source": format!("environments.{file}"),
                "specification_sha256": built_hash,
            }),
            state,
        );
        o.depends_on = vec![server_id(config), worker_id(config)];
        o.cloud_id = Some(env.id.to_string());
        o.payload = build_id.map(|id| json!({"build_id": id}));
        out.push(o);
    }
    Ok(out)
}

/// Whether conda-store's server runs: its Deployment is among the observed objects, ready.
fn running(config: &Config, observed: &[plan::Observed]) -> bool {
    let id = server_id(config);
    observed
        .iter()
        .any(|o| o.id == id && o.state == ResourceState::Ready)
}

/// Whether the engine can reach conda-store's API.
fn reachable(provider: &dyn Provider) -> bool {
    provider.serves_conda_store()
        || provider.capabilities().cluster_access
        || conda_store::url_from_env().is_some()
}

/// The deployment's public conda-store URL (where build logs are linked).
fn public_base(config: &Config) -> String {
    let scheme = if crate::kubernetes::components::ingress::tls::enabled(config) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}{}", config.domain, component::PATH)
}

/// A client of the deployment's conda-store, and the port-forward it goes through (if any).
#[derive(Debug)]
pub(crate) struct Connection {
    client: CondaStoreClient,
    _tunnel: Option<PortForward>,
}

/// Connects to the deployment's conda-store with a token signed by its own secret, read from
/// the component's Secret through `cluster`.
pub(crate) async fn connect(
    provider: &dyn Provider,
    ownership: &Ownership,
    config: &Config,
    retry: crate::retry::RetryPolicy,
    cluster: Option<kube::Client>,
) -> Result<Connection, ProviderError> {
    let secret = match &cluster {
        Some(c) => read_key(c, &config.namespace, component::SECRET, "token-secret").await?,
        None => None,
    }
    .ok_or_else(|| {
        ProviderError::Fatal(format!(
            "cannot sign a conda-store API token: the Secret {}/{} (key token-secret) {}",
            config.namespace,
            component::SECRET,
            if cluster.is_some() {
                "does not exist yet; deploy again"
            } else {
                "can only be read with cluster access, which this provider hands out none of"
            }
        ))
    })?;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(TOKEN_LIFETIME)
        .as_secs();
    let token = conda_store::token::mint(&secret, default_namespace(config), exp);
    let from_env = conda_store::url_from_env();
    let served = match from_env {
        Some(_) => None,
        None => provider.conda_store_url(ownership).await?,
    };
    let (base, tunnel) = match (from_env, served, cluster) {
        (Some(url), _, _) | (None, Some(url), _) => (url, None),
        (None, None, Some(client)) => {
            let selector = crate::kubernetes::components::selector(component::SERVER)
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let port = u16::try_from(component::PORT).unwrap_or(5000);
            let tunnel = PortForward::start(client, &config.namespace, &selector, port).await?;
            let url = format!("http://{}{}", tunnel.addr(), component::PATH);
            (url, Some(tunnel))
        }
        (None, None, None) => (public_base(config), None),
    };
    let client = CondaStoreClient::new(
        &base,
        &token,
        Arc::new(crate::cloud::stats::ApiStats::default()),
        retry,
    )?;
    Ok(Connection {
        client,
        _tunnel: tunnel,
    })
}

/// conda-store's environments.
#[derive(Debug, Default)]
pub(crate) struct Environments {
    /// The connection, made on the first change of an apply.
    connection: tokio::sync::OnceCell<Connection>,
}

#[async_trait]
impl Reconciler for Environments {
    fn owns(&self, id: &ResourceId) -> bool {
        id.kind == KIND
    }

    async fn plan(&self, engine: &Engine, cx: &mut PlanContext<'_>) -> Result<(), EngineError> {
        if !cx.objects.iter().any(|r| r.id == server_id(cx.config)) {
            // conda-store is not deployed: a disabled conda-store's environments go with its
            // database.
            return Ok(());
        }
        if !cx.offline && !reachable(&**engine.provider()) {
            cx.notes.push(NOT_REACHABLE.to_string());
            return Ok(());
        }
        let desired = desired(cx.config).map_err(|source| EngineError::Provider {
            what: "computing conda-store's environments".into(),
            source,
        })?;
        cx.desired.extend(desired);
        if running(cx.config, &cx.objects_observed) {
            let kube = cx.applier.as_ref().map(|a| a.client());
            let observed = engine
                .read("observing conda-store's environments", || async {
                    let connection = connect(
                        &**engine.provider(),
                        cx.ownership,
                        cx.config,
                        engine.options().retry,
                        kube.clone(),
                    )
                    .await?;
                    observe(&connection.client, cx.config).await
                })
                .await?;
            cx.observed.extend(observed);
        }
        Ok(())
    }

    async fn apply(
        &self,
        scope: &Scope,
        change: &Change,
        deadline: Duration,
    ) -> Result<(), ProviderError> {
        let started = Instant::now();
        let connection = self
            .connection
            .get_or_try_init(|| async {
                let cluster = scope.cluster().await?;
                let kube = cluster.as_ref().map(|c| c.applier.client());
                connect(
                    &*scope.provider,
                    &scope.ownership,
                    &scope.config,
                    scope.options.retry,
                    kube,
                )
                .await
            })
            .await?;
        let client = &connection.client;
        let (namespace, name) =
            change.id.name.split_once('/').ok_or_else(|| {
                ProviderError::Fatal(format!("{}: not namespace/name", change.id))
            })?;
        if change.action == Action::Delete {
            return client.delete_environment(namespace, name).await;
        }
        let build_id = match (change.action, &change.desired) {
            (Action::Wait, _) => change
                .observed
                .as_ref()
                .and_then(|o| o.payload.as_ref())
                .and_then(|p| p["build_id"].as_u64()),
            (_, Some(desired)) => {
                let spec = desired.payload.as_ref().ok_or_else(|| {
                    ProviderError::Fatal(format!("{}: no specification planned", change.id))
                })?;
                Some(client.register(namespace, spec).await?)
            }
            _ => None,
        };
        let Some(build_id) = build_id else {
            return Ok(());
        };
        let source = change
            .desired
            .as_ref()
            .map(|d| &d.spec)
            .or(change.observed.as_ref().map(|o| &o.spec))
            .and_then(|s| s["source"].as_str())
            .unwrap_or("environments")
            .to_string();
        wait_for_build(scope, client, change, &source, build_id, started, deadline).await
    }
}

/// Waits for build `build_id` of `change`'s environment until `deadline` (from `started`),
/// emitting progress; a failed build is an error naming the environment, the config entry,
/// conda-store's reason and the build's log.
async fn wait_for_build(
    scope: &Scope,
    client: &CondaStoreClient,
    change: &Change,
    source: &str,
    build_id: u64,
    started: Instant,
    deadline: Duration,
) -> Result<(), ProviderError> {
    let longest = scope.options.poll_interval.max(Duration::from_millis(200));
    let mut pause = Duration::from_millis(200).min(longest);
    loop {
        let build = client.build(build_id).await?;
        match build.status {
            BuildStatus::Completed => return Ok(()),
            BuildStatus::Failed | BuildStatus::Canceled => {
                return Err(ProviderError::Fatal(format!(
                    "conda-store could not build environment {} (qhub-config.yaml {source}): build {build_id} {:?}{}; its log: {}",
                    change.id.name,
                    build.status,
                    build
                        .status_info
                        .as_deref()
                        .filter(|s| !s.trim().is_empty())
                        .map(|s| format!(": {}", s.trim()))
                        .unwrap_or_default(),
                    CondaStoreClient::log_url(&public_base(&scope.config), build_id),
                )));
            }
            BuildStatus::Queued | BuildStatus::Building => {}
        }
        let elapsed = started.elapsed();
        if elapsed >= deadline {
            return Err(ProviderError::Fatal(format!(
                "conda-store's build {build_id} of environment {} (qhub-config.yaml {source}) is still {:?} after {:.0}s; it goes on in conda-store: see {}",
                change.id.name,
                build.status,
                elapsed.as_secs_f64(),
                CondaStoreClient::log_url(&public_base(&scope.config), build_id),
            )));
        }
        scope.events.emit(&Event::Waiting {
            stage: Some(Stage::Kubernetes),
            resource: change.id.clone(),
            detail: format!(
                "conda-store build {build_id} {:?} ({:.0}s)",
                build.status,
                elapsed.as_secs_f64()
            ),
        });
        tokio::time::sleep(pause.min(deadline.saturating_sub(elapsed))).await;
        pause = (pause * 2).min(longest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_names_the_entry_and_the_hash() {
        let d = description("environment-dask.yaml", "abc123");
        assert_eq!(
            parse_description(&d),
            Some(("environment-dask.yaml", "abc123"))
        );
        assert_eq!(parse_description("my own environment"), None);
    }
}
