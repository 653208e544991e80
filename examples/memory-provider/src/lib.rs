//! An example in-house provider, written against `qhub-core` only: a small in-memory "cloud"
//! with clusters and node pools, shaped like GKE and DOKS (pools are created inside the
//! cluster's create call and deleted with it; one operation per cluster at a time). It is what
//! `docs/writing-a-provider.md` walks through, and it passes the conformance suite
//! (`tests/conformance.rs`).
//!
//! It serves `provider: sandbox` configs (their `sandbox` section has the shape of a cloud
//! section), the way an in-house provider for a private cloud would replace a built-in one
//! through [`qhub_core::provider::ProviderRegistry::register`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use qhub_core::config::Config;
use qhub_core::plan::{Action, Change, Observed, Resource, ResourceId, ResourceState, Stage};
use qhub_core::provider::{
    ApplyContext, Capabilities, Facts, Ownership, Preflight, Provider, ProviderError,
};
use serde_json::{Value as Json, json};

/// One resource of the in-memory cloud.
#[derive(Debug, Clone)]
pub struct Item {
    /// `cluster` or `pool`.
    pub kind: String,
    /// Its spec.
    pub spec: Json,
    /// Its tags (our ownership marks).
    pub tags: BTreeMap<String, String>,
    /// `failed` or `running`.
    pub state: String,
}

/// The in-memory cloud: resources by `kind/name`, and counters.
#[derive(Debug, Default)]
pub struct Cloud {
    /// Resources by `kind/name`.
    pub items: BTreeMap<String, Item>,
    /// Mutating calls served.
    pub mutations: u64,
    /// Mutating calls refused because the cluster was busy.
    pub rejected: u64,
    /// A cluster operation is in progress.
    pub busy: bool,
    /// The next cluster create ends in a failed state (a test knob).
    pub fail_next_cluster: bool,
}

/// The provider: a handle on a shared [`Cloud`].
#[derive(Debug, Clone)]
pub struct MemoryProvider {
    cloud: Arc<Mutex<Cloud>>,
    /// How long one cloud operation takes.
    latency: Duration,
}

/// The kinds this provider manages.
pub const CLUSTER: &str = "cluster";
/// A node pool.
pub const POOL: &str = "pool";

fn key(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

fn fatal(message: impl Into<String>) -> ProviderError {
    ProviderError::Fatal(message.into())
}

impl MemoryProvider {
    /// A provider over `cloud`, whose operations take `latency`.
    pub fn new(cloud: Arc<Mutex<Cloud>>, latency: Duration) -> Self {
        Self { cloud, latency }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Cloud>, ProviderError> {
        self.cloud
            .lock()
            .map_err(|_| fatal("the cloud's lock is poisoned"))
    }

    /// Claims the cluster for one operation, or refuses as busy (the engine's serial groups
    /// must make this never happen).
    fn begin(&self) -> Result<(), ProviderError> {
        let mut cloud = self.lock()?;
        if cloud.busy {
            cloud.rejected += 1;
            return Err(ProviderError::conflict("another operation is in progress"));
        }
        cloud.busy = true;
        Ok(())
    }

    fn end(&self) {
        if let Ok(mut cloud) = self.cloud.lock() {
            cloud.busy = false;
        }
    }

    /// Creates or updates one resource from its desired spec.
    fn put(cloud: &mut Cloud, r: &Resource, o: &Ownership) -> Result<(), ProviderError> {
        let k = key(&r.id.kind, &r.id.name);
        if let Some(existing) = cloud.items.get(&k)
            && !o.owns(&existing.tags)
        {
            return Err(fatal(format!("{} exists and is not ours", r.id)));
        }
        let failed = r.id.kind == CLUSTER && std::mem::take(&mut cloud.fail_next_cluster);
        cloud.items.insert(
            k,
            Item {
                kind: r.id.kind.clone(),
                spec: r.spec.clone(),
                tags: o.tags(),
                state: if failed { "failed" } else { "running" }.into(),
            },
        );
        cloud.mutations += 1;
        if failed {
            return Err(fatal(format!("{} failed to provision", r.id)));
        }
        Ok(())
    }

    async fn change(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        tokio::time::sleep(self.latency).await;
        let mut cloud = self.lock()?;
        let id = &change.id;
        let k = key(&id.kind, &id.name);
        match change.action {
            Action::Create | Action::Update | Action::Replace => {
                let desired = change
                    .desired
                    .as_ref()
                    .ok_or_else(|| fatal(format!("{id}: no desired resource")))?;
                // A child whose parent made it already: adopt, make no call.
                if change.action == Action::Create
                    && cloud.items.get(&k).is_some_and(|i| i.spec == desired.spec)
                {
                    return Ok(());
                }
                if change.action == Action::Replace && id.kind == CLUSTER {
                    cloud.items.retain(|_, i| i.kind != POOL);
                }
                Self::put(&mut cloud, desired, &ctx.ownership)?;
                // The cluster's create call makes the pools created with it.
                for child in &ctx.children {
                    Self::put(&mut cloud, child, &ctx.ownership)?;
                }
                Ok(())
            }
            Action::Delete => {
                if cloud.items.remove(&k).is_none() {
                    return Err(ProviderError::NotFound(id.to_string()));
                }
                if id.kind == CLUSTER {
                    // Pools go with their cluster.
                    cloud.items.retain(|_, i| i.kind != POOL);
                }
                cloud.mutations += 1;
                Ok(())
            }
            Action::Wait => Err(ProviderError::NotSupported(
                "the engine waits for resources itself".into(),
            )),
        }
    }
}

#[async_trait]
impl Provider for MemoryProvider {
    fn name(&self) -> &str {
        "sandbox"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            infrastructure: true,
            cluster_access: false,
            scale_to_zero: true,
            gpu: false,
        }
    }

    fn node_group_keys(&self) -> &'static [&'static str] {
        &["spot"]
    }

    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError> {
        match &config.sandbox {
            Some(_) => Ok(Preflight::default()),
            None => Err(fatal("the config has no `sandbox` section")),
        }
    }

    fn desired(&self, config: &Config, _facts: &Facts) -> Result<Vec<Resource>, ProviderError> {
        let section = config
            .sandbox
            .as_ref()
            .ok_or_else(|| fatal("the config has no `sandbox` section"))?;
        let prefix = config.resource_prefix();
        let cluster = ResourceId::new(CLUSTER, &prefix);
        let group = format!("cluster/{prefix}");
        let mut out = vec![
            Resource::new(
                CLUSTER,
                &prefix,
                Stage::Infrastructure,
                json!({"version": section.kubernetes_version}),
            )
            .serial_group(&group)
            .hosts_kubernetes()
            .expected(self.latency),
        ];
        for (name, g) in &section.node_groups {
            out.push(
                Resource::new(
                    POOL,
                    format!("{prefix}-{name}"),
                    Stage::Infrastructure,
                    json!({"size": g.instance, "min": g.min_nodes, "max": g.max_nodes}),
                )
                .replace_fields(&["size"])
                .created_with(cluster.clone())
                .serial_group(&group)
                .expected(self.latency),
            );
        }
        Ok(out)
    }

    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        let cloud = self.lock()?;
        let cluster = ResourceId::new(CLUSTER, ownership.prefix());
        let group = format!("cluster/{}", ownership.prefix());
        Ok(cloud
            .items
            .iter()
            .filter(|(_, i)| ownership.owns(&i.tags))
            .map(|(k, i)| {
                let name = k.split_once('/').map_or(k.as_str(), |(_, n)| n);
                let state = match i.state.as_str() {
                    "failed" => ResourceState::Failed(format!("{} failed to provision", i.kind)),
                    _ => ResourceState::Ready,
                };
                let mut o = Observed::new(
                    ResourceId::new(&i.kind, name),
                    Stage::Infrastructure,
                    i.spec.clone(),
                    state,
                );
                o.serial_group = Some(group.clone());
                if i.kind == POOL {
                    o.depends_on = vec![cluster.clone()];
                    o.created_with = Some(cluster.clone());
                }
                o
            })
            .collect())
    }

    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        self.begin()?;
        let result = self.change(change, ctx).await;
        self.end();
        result
    }
}
