//! Before the network (or the cluster) goes: delete every `type: LoadBalancer` Service through
//! the cluster and wait until they are gone. The cloud controller deletes a Service's load
//! balancer before it lets the Service go, and while a load balancer exists the cloud refuses
//! to delete the subnets and network it lives in (QHub's destroys left ELBs and VPCs behind:
//! nebari #144, #502).

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams};

use super::poll::{Poll, poll_until};
use crate::provider::ProviderError;

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
