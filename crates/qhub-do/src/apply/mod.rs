//! One change at a time, idempotently: a create first looks for what a lost answer or an
//! interrupted run left (DOKS names are unique, so a taken name is found and adopted, never
//! duplicated); a delete that finds nothing is done; every wait polls the cluster under a
//! deadline.
//!
//! DOKS has no operation objects: a cluster is usable when `status.state` is `running`, a pool
//! when all its nodes are.

use std::time::Duration;

use qhub_core::cloud::poll::{Poll, poll_until};
use qhub_core::plan::{Action, Change, Resource};
use qhub_core::provider::{ApplyContext, ProviderError, spec};

use crate::DigitalOceanProvider;
use crate::client::{Cluster, DoClient, ErrorClass, NodePool, NodePoolUpdate};
use crate::desired::{
    CLUSTER, ClusterPayload, ClusterSpec, NODE_POOL, PoolSpec, ownership_tags, pool_request,
};
use crate::errors::to_provider;
use crate::observe::{State, cluster_state, owned, pool_address, pool_state};

/// Longest wait for a cluster to be created, upgraded or deleted (DOKS: 6–7 minutes to
/// create; REFERENCE.md §4), with a wide margin.
pub const CLUSTER_DEADLINE: Duration = Duration::from_secs(45 * 60);
/// Longest wait for a pool's nodes.
pub const POOL_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The operations of one provider.
pub(crate) struct Ops<'a> {
    pub(crate) client: &'a DoClient,
    pub(crate) poll: Duration,
    pub(crate) ctx: &'a ApplyContext,
}

fn failed(what: &str, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::Fatal(format!("{what}: {message}"))
}

impl Ops<'_> {
    fn tags(&self) -> Vec<String> {
        ownership_tags(&self.ctx.ownership)
    }

    /// The cluster named `name` (by `id` when known), including one being deleted.
    pub(crate) async fn find_cluster(
        &self,
        name: &str,
        id: Option<&str>,
    ) -> Result<Option<Cluster>, ProviderError> {
        if let Some(id) = id {
            match self.client.get_cluster(id).await {
                Ok(c) if c.name == name => return Ok(Some(c)),
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(to_provider(&format!("reading cluster {name}"), e)),
            }
        }
        // No cluster is an empty list: a 404 of the list itself (an endpoint or proxy that does
        // not serve it) says nothing about the cluster, and must not let a delete pass as "gone
        // already" (the engine's reading of a NotFound out of a delete).
        let all = self.client.list_clusters().await.map_err(|e| {
            match to_provider(&format!("listing clusters to find {name}"), e) {
                ProviderError::NotFound(m) => ProviderError::Fatal(format!(
                    "{m}: the list itself was not found, which says nothing about cluster {name}"
                )),
                other => other,
            }
        })?;
        Ok(all.into_iter().find(|c| c.name == name))
    }

    async fn get_cluster(&self, what: &str, id: &str) -> Result<Option<Cluster>, ProviderError> {
        match self.client.get_cluster(id).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(to_provider(what, e)),
        }
    }

    /// Waits until the cluster is running.
    async fn cluster_running(&self, name: &str, id: &str) -> Result<Cluster, ProviderError> {
        let what = format!("cluster {name}");
        poll_until(&what, CLUSTER_DEADLINE, self.poll, || async {
            let Some(c) = self.get_cluster(&what, id).await? else {
                return Err(failed(&what, "disappeared while waiting for it"));
            };
            match cluster_state(&c) {
                State::Ready => Ok(Poll::Ready(c)),
                State::Pending(why) => Ok(Poll::Pending(why)),
                State::Failed(why) => Err(failed(&what, why)),
                State::Deleting => Err(failed(&what, "is being deleted")),
            }
        })
        .await
    }

    /// Waits until the cluster is gone.
    async fn cluster_gone(&self, name: &str, id: &str) -> Result<(), ProviderError> {
        let what = format!("deleting cluster {name}");
        poll_until(&what, CLUSTER_DEADLINE, self.poll, || async {
            Ok(match self.get_cluster(&what, id).await? {
                None => Poll::Ready(()),
                Some(c) if c.status.state == "deleted" => Poll::Ready(()),
                Some(c) => Poll::Pending(format!("cluster is {}", c.status.state)),
            })
        })
        .await
    }

    /// Waits until the pool's nodes are running.
    async fn pool_running(&self, cluster: &str, id: &str, pool: &str) -> Result<(), ProviderError> {
        let what = format!("node pool {pool}");
        poll_until(&what, POOL_DEADLINE, self.poll, || async {
            let Some(c) = self.get_cluster(&what, id).await? else {
                return Err(failed(&what, format!("cluster {cluster} disappeared")));
            };
            let Some(p) = c.node_pools.iter().find(|p| p.name == pool) else {
                return Err(failed(&what, "disappeared while waiting for it"));
            };
            match pool_state(&c, p) {
                State::Ready => Ok(Poll::Ready(())),
                State::Pending(why) => Ok(Poll::Pending(why)),
                State::Failed(why) => Err(failed(&what, why)),
                State::Deleting => Err(failed(&what, "its cluster is being deleted")),
            }
        })
        .await
    }

    /// Waits until the pool is gone (or its cluster is).
    async fn pool_gone(&self, cluster: &str, id: &str, pool: &str) -> Result<(), ProviderError> {
        let what = format!("deleting node pool {pool}");
        poll_until(&what, POOL_DEADLINE, self.poll, || async {
            Ok(match self.get_cluster(&what, id).await? {
                Some(c) if c.node_pools.iter().any(|p| p.name == pool) => {
                    Poll::Pending(format!("node pool of cluster {cluster} still listed"))
                }
                _ => Poll::Ready(()),
            })
        })
        .await
    }

    fn check_owned(&self, what: &str, tags: &[String]) -> Result<(), ProviderError> {
        if owned(&self.ctx.ownership, tags) {
            Ok(())
        } else {
            Err(failed(
                what,
                "exists and is not owned by this deployment (its qhub tags differ); refusing to touch it",
            ))
        }
    }

    /// Creates (or adopts) the cluster, with its first pool, and waits until it runs.
    pub(crate) async fn create_cluster(&self, desired: &Resource) -> Result<(), ProviderError> {
        let name = &desired.id.name;
        let what = format!("creating cluster {name}");
        let spec: ClusterSpec = spec::read(&desired.id, "spec", &desired.spec)?;
        let tags = self.tags();
        // The pools the engine hands over (every pool, `general` first), or the first pool
        // the desired cluster names.
        let children = self
            .ctx
            .children
            .iter()
            .filter(|c| c.id.kind == NODE_POOL)
            .map(|c| {
                let pool: PoolSpec = spec::read(&c.id, "spec", &c.spec)?;
                Ok(pool_request(&c.id.name, &pool, &tags))
            })
            .collect::<Result<Vec<_>, ProviderError>>()?;
        let node_pools = if !children.is_empty() {
            children
        } else {
            let payload = desired
                .payload
                .as_ref()
                .ok_or_else(|| failed(&what, "the desired cluster names no first node pool"))?;
            let payload: ClusterPayload = spec::read(&desired.id, "payload", payload)?;
            let first = payload.first_pool;
            vec![pool_request(&first.name, &first.spec, &tags)]
        };
        // A few rounds at most: a name held by a cluster being deleted frees up once it is
        // gone; a create refused for a taken name finds the cluster on the next look.
        for _ in 0..3 {
            if let Some(c) = self.find_cluster(name, None).await? {
                self.check_owned(&what, &c.tags)?;
                if cluster_state(&c) == State::Deleting {
                    tracing::info!(cluster = %name, "waiting for the previous cluster of this name to be deleted");
                    self.cluster_gone(name, &c.id).await?;
                    continue;
                }
                tracing::info!(cluster = %name, id = %c.id, "adopting the existing cluster");
                self.cluster_running(name, &c.id).await?;
                return Ok(());
            }
            let request = crate::client::ClusterCreate {
                name: name.clone(),
                region: spec.region.clone(),
                version: spec.version.clone(),
                tags: tags.clone(),
                node_pools: node_pools.clone(),
            };
            match self.client.create_cluster(&request).await {
                Ok(c) => {
                    self.cluster_running(name, &c.id).await?;
                    return Ok(());
                }
                Err(e) if e.class() == ErrorClass::AlreadyExists => continue,
                Err(e) => return Err(to_provider(&what, e)),
            }
        }
        Err(ProviderError::conflict(format!(
            "{what}: the name stayed taken"
        )))
    }

    /// Upgrades the cluster to the desired version.
    pub(crate) async fn upgrade_cluster(&self, change: &Change) -> Result<(), ProviderError> {
        let name = &change.id.name;
        let what = format!("upgrading cluster {name}");
        let desired = change
            .desired
            .as_ref()
            .ok_or_else(|| failed(&what, "no desired state"))?;
        let spec: ClusterSpec = spec::read(&desired.id, "spec", &desired.spec)?;
        let to = spec.version.as_str();
        let id = change.observed.as_ref().and_then(|o| o.cloud_id.clone());
        let Some(c) = self.find_cluster(name, id.as_deref()).await? else {
            return Err(failed(&what, "the cluster does not exist"));
        };
        self.check_owned(&what, &c.tags)?;
        if c.version != to {
            let c = self.cluster_running(name, &c.id).await?;
            if c.version != to {
                self.client
                    .upgrade_cluster(&c.id, to)
                    .await
                    .map_err(|e| to_provider(&what, e))?;
            }
        }
        self.cluster_running(name, &c.id).await.map(|_| ())
    }

    /// Deletes the cluster with its load balancers and volumes, and waits until it is gone.
    pub(crate) async fn delete_cluster(
        &self,
        name: &str,
        id: Option<&str>,
    ) -> Result<(), ProviderError> {
        let what = format!("deleting cluster {name}");
        let Some(c) = self.find_cluster(name, id).await? else {
            return Ok(());
        };
        self.check_owned(&what, &c.tags)?;
        if cluster_state(&c) != State::Deleting {
            match self.client.destroy_cluster(&c.id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(to_provider(&what, e)),
            }
        }
        self.cluster_gone(name, &c.id).await
    }

    /// The running, owned cluster a pool belongs to (`None`: it does not exist, or is being
    /// deleted).
    async fn pool_cluster(
        &self,
        what: &str,
        cluster: &str,
        id: Option<&str>,
    ) -> Result<Option<Cluster>, ProviderError> {
        let Some(c) = self.find_cluster(cluster, id).await? else {
            return Ok(None);
        };
        self.check_owned(what, &c.tags)?;
        if cluster_state(&c) == State::Deleting {
            return Ok(None);
        }
        // Pools cannot change while the cluster provisions or upgrades.
        self.cluster_running(cluster, &c.id).await.map(Some)
    }

    /// Creates (or adopts) a pool and waits for its nodes.
    pub(crate) async fn create_pool(
        &self,
        cluster: &str,
        desired: &Resource,
    ) -> Result<(), ProviderError> {
        let name = &desired.id.name;
        let what = format!("creating node pool {name}");
        let spec: PoolSpec = spec::read(&desired.id, "spec", &desired.spec)?;
        for _ in 0..2 {
            let Some(c) = self.pool_cluster(&what, cluster, None).await? else {
                return Err(ProviderError::conflict(format!(
                    "{what}: cluster {cluster} does not exist (yet)"
                )));
            };
            if let Some(p) = c.node_pools.iter().find(|p| p.name == *name) {
                self.check_owned(&what, &p.tags)?;
                // Made by the cluster's create call, a lost answer or an interrupted run.
                if crate::observe::pool_spec(&c, p) != spec {
                    self.update_pool_to(&c, p, &spec).await?;
                }
                return self.pool_running(cluster, &c.id, name).await;
            }
            let request = pool_request(name, &spec, &self.tags());
            match self.client.add_node_pool(&c.id, &request).await {
                Ok(_) => return self.pool_running(cluster, &c.id, name).await,
                Err(e) if e.class() == ErrorClass::AlreadyExists => continue,
                Err(e) => return Err(to_provider(&what, e)),
            }
        }
        Err(ProviderError::retryable(format!(
            "{what}: the name is taken but the pool was not found"
        )))
    }

    /// Sends a pool's new bounds, labels and taints, keeping its current node count (within
    /// the new bounds: the autoscaler owns the count, and the API requires one).
    async fn update_pool_to(
        &self,
        c: &Cluster,
        p: &NodePool,
        spec: &PoolSpec,
    ) -> Result<(), ProviderError> {
        let what = format!("updating node pool {}", p.name);
        let want = pool_request(&p.name, spec, &self.tags());
        if want.size != p.size {
            return Err(failed(
                &what,
                format!(
                    "its size is {}, not {}: a pool's size cannot change in place",
                    p.size, want.size
                ),
            ));
        }
        let count = if want.auto_scale {
            p.count
                .clamp(want.min_nodes, want.max_nodes.max(want.min_nodes))
        } else {
            p.count
        };
        let update = NodePoolUpdate {
            name: p.name.clone(),
            count,
            tags: want.tags,
            labels: want.labels,
            taints: want.taints,
            auto_scale: want.auto_scale,
            min_nodes: want.min_nodes,
            max_nodes: want.max_nodes,
        };
        self.client
            .update_node_pool(&c.id, &p.id, &update)
            .await
            .map(|_| ())
            .map_err(|e| to_provider(&what, e))
    }

    /// Updates a pool in place (scaling bounds, labels, taints).
    pub(crate) async fn update_pool(
        &self,
        cluster: &str,
        change: &Change,
    ) -> Result<(), ProviderError> {
        let name = &change.id.name;
        let what = format!("updating node pool {name}");
        let desired = change
            .desired
            .as_ref()
            .ok_or_else(|| failed(&what, "no desired state"))?;
        let cluster_id = match &change.observed {
            Some(o) => pool_address(o)?.map(|a| a.cluster_id),
            None => None,
        };
        let Some(c) = self
            .pool_cluster(&what, cluster, cluster_id.as_deref())
            .await?
        else {
            return Err(failed(&what, format!("cluster {cluster} does not exist")));
        };
        let Some(p) = c.node_pools.iter().find(|p| p.name == *name) else {
            return Err(ProviderError::retryable(format!(
                "{what}: the pool does not exist any more"
            )));
        };
        self.check_owned(&what, &p.tags)?;
        let spec: PoolSpec = spec::read(&desired.id, "spec", &desired.spec)?;
        self.update_pool_to(&c, p, &spec).await?;
        self.pool_running(cluster, &c.id, name).await
    }

    /// Deletes a pool. The cluster's last pool cannot be deleted (DOKS refuses): it goes with
    /// its cluster, whose delete follows in the same plan.
    pub(crate) async fn delete_pool(
        &self,
        cluster: &str,
        name: &str,
        cluster_id: Option<&str>,
    ) -> Result<(), ProviderError> {
        let what = format!("deleting node pool {name}");
        let Some(c) = self.pool_cluster(&what, cluster, cluster_id).await? else {
            return Ok(());
        };
        let Some(p) = c.node_pools.iter().find(|p| p.name == name) else {
            return Ok(());
        };
        self.check_owned(&what, &p.tags)?;
        if c.node_pools.len() == 1 {
            tracing::info!(
                pool = name,
                cluster,
                "the last node pool of a cluster goes with the cluster"
            );
            return Ok(());
        }
        match self.client.delete_node_pool(&c.id, &p.id).await {
            // DOKS drains and deletes the nodes first: done when the pool is gone.
            Ok(()) => self.pool_gone(cluster, &c.id, name).await,
            Err(e) if e.is_not_found() => Ok(()),
            // Another pool of the cluster was deleted at the same time, and this one is now
            // the last.
            Err(e) if is_last_pool_refusal(&e) => {
                tracing::info!(
                    pool = name,
                    cluster,
                    "the last node pool of a cluster goes with the cluster"
                );
                Ok(())
            }
            Err(e) => Err(to_provider(&what, e)),
        }
    }
}

/// DOKS's refusal to delete a cluster's last pool (a 422 naming it).
fn is_last_pool_refusal(e: &crate::client::DoError) -> bool {
    match e {
        crate::client::DoError::Api {
            status: 422,
            message,
            ..
        } => {
            let m = message.to_ascii_lowercase();
            m.contains("last") || m.contains("at least one node pool")
        }
        _ => false,
    }
}

/// The cluster a pool change belongs to (its dependency).
fn cluster_of(change: &Change) -> Result<String, ProviderError> {
    change
        .depends_on()
        .iter()
        .find(|d| d.kind == CLUSTER)
        .map(|d| d.name.clone())
        .ok_or_else(|| failed(&change.id.to_string(), "names no cluster"))
}

/// Applies one change.
pub async fn apply(
    provider: &DigitalOceanProvider,
    change: &Change,
    ctx: &ApplyContext,
) -> Result<(), ProviderError> {
    let ops = Ops {
        client: provider.client(),
        poll: provider.poll(),
        ctx,
    };
    let desired = || {
        change
            .desired
            .as_ref()
            .ok_or_else(|| failed(&change.id.to_string(), "the change has no desired state"))
    };
    let observed_id = change.observed.as_ref().and_then(|o| o.cloud_id.clone());
    match (change.id.kind.as_str(), change.action) {
        (CLUSTER, Action::Create) => ops.create_cluster(desired()?).await,
        (CLUSTER, Action::Update) => ops.upgrade_cluster(change).await,
        (CLUSTER, Action::Replace) => {
            ops.delete_cluster(&change.id.name, observed_id.as_deref())
                .await?;
            ops.create_cluster(desired()?).await
        }
        (CLUSTER, Action::Delete) => {
            ops.delete_cluster(&change.id.name, observed_id.as_deref())
                .await
        }
        (NODE_POOL, action) => {
            let cluster = cluster_of(change)?;
            let cluster_id = match &change.observed {
                Some(o) => pool_address(o)?.map(|a| a.cluster_id),
                None => None,
            };
            match action {
                Action::Create => ops.create_pool(&cluster, desired()?).await,
                Action::Update => ops.update_pool(&cluster, change).await,
                Action::Replace => {
                    let Some(c) = ops.find_cluster(&cluster, cluster_id.as_deref()).await? else {
                        return Err(failed(&change.id.to_string(), "the cluster does not exist"));
                    };
                    if cluster_id.as_deref().is_some_and(|old| old != c.id) {
                        // The cluster was replaced in this plan: the old pool went with the old
                        // cluster, and the first pool may already exist in the new one.
                        return ops.create_pool(&cluster, desired()?).await;
                    }
                    if c.node_pools.len() == 1 && c.node_pools[0].name == change.id.name {
                        return Err(ProviderError::NotSupported(format!(
                            "{}: replacing the only node pool of a cluster (DOKS refuses to delete a cluster's last pool); add another node group first",
                            change.id
                        )));
                    }
                    ops.delete_pool(&cluster, &change.id.name, cluster_id.as_deref())
                        .await?;
                    ops.create_pool(&cluster, desired()?).await
                }
                Action::Delete => {
                    ops.delete_pool(&cluster, &change.id.name, cluster_id.as_deref())
                        .await
                }
                Action::Wait => Ok(()),
            }
        }
        // The engine waits by observing; a provider never gets a Wait.
        (_, Action::Wait) => Ok(()),
        (kind, _) => Err(ProviderError::NotSupported(format!(
            "the DigitalOcean provider has no resources of kind `{kind}`"
        ))),
    }
}
