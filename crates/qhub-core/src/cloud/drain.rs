//! Before the network (or the cluster) goes: delete every `type: LoadBalancer` Service through
//! the cluster and wait until they are gone. The cloud controller deletes a Service's load
//! balancer before it lets the Service go, and while a load balancer exists the cloud refuses
//! to delete the subnets and network it lives in (QHub's destroys left ELBs and VPCs behind:
//! nebari #144, #502).

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams};

use super::poll::{Poll, poll_until};
use crate::provider::{Ownership, Provider, ProviderError};

/// The `namespace/name` of every LoadBalancer Service.
pub async fn load_balancer_services(
    client: &kube::Client,
) -> Result<Vec<(String, String)>, ProviderError> {
    let list = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| ProviderError::retryable(format!("listing Services: {e}")))?;
    Ok(list
        .items
        .into_iter()
        .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        .filter_map(|s| Some((s.metadata.namespace?, s.metadata.name?)))
        .collect())
}

/// Deletes every LoadBalancer Service and waits (polling every `interval`, for at most
/// `deadline`) until none is left. Returns how many it deleted.
pub async fn drain_load_balancers(
    client: &kube::Client,
    interval: Duration,
    deadline: Duration,
) -> Result<usize, ProviderError> {
    let services = load_balancer_services(client).await?;
    for (namespace, name) in &services {
        tracing::info!(%namespace, %name, "deleting LoadBalancer service");
        let api = Api::<Service>::namespaced(client.clone(), namespace);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(ProviderError::retryable(format!(
                    "deleting Service {namespace}/{name}: {e}"
                )));
            }
        }
    }
    if !services.is_empty() {
        poll_until(
            "LoadBalancer services to be deleted",
            deadline,
            interval,
            || async {
                let left = load_balancer_services(client).await?;
                Ok(if left.is_empty() {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("{} left", left.len()))
                })
            },
        )
        .await?;
    }
    Ok(services.len())
}

/// [`drain_load_balancers`] through the provider's own cluster access, as a provider's cluster
/// (or network) delete calls it first. Nothing to drain, with a log line, when the provider
/// hands out no cluster access here (an emulator without a kubeconfig override) or the cluster
/// cannot be used (absent, creating, failed: no Service of ours can have made a load balancer
/// that a usable API would let us delete).
pub async fn drain_through(
    provider: &dyn Provider,
    ownership: &Ownership,
    interval: Duration,
    deadline: Duration,
) -> Result<usize, ProviderError> {
    if !provider.capabilities().cluster_access {
        tracing::warn!(
            provider = provider.name(),
            "no cluster access here: LoadBalancer Services were not deleted through the cluster"
        );
        return Ok(0);
    }
    let access = match provider.cluster_access(ownership).await {
        Ok(access) => access,
        Err(ProviderError::NoCluster(why)) => {
            tracing::info!(%why, "no usable cluster: no LoadBalancer Service to delete through it");
            return Ok(0);
        }
        Err(ProviderError::NotSupported(why)) => {
            tracing::warn!(%why, "LoadBalancer Services were not deleted through the cluster");
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let client = access.client().await?;
    let drained = drain_load_balancers(&client, interval, deadline).await?;
    tracing::info!(services = drained, "LoadBalancer Services drained");
    Ok(drained)
}
