//! Kubernetes load balancers, removed before the cluster goes.
//!
//! A `type: LoadBalancer` Service makes GKE's service controller create a forwarding rule, a
//! target pool or backend service, a health check and firewall rules in the project. They carry
//! no label of ours, and deleting the cluster does not delete them (QHub left load balancers
//! behind, nebari-dev/nebari#144). Deleting the Services through the cluster first lets the
//! controller remove them: it holds each Service (finalizer
//! `service.kubernetes.io/load-balancer-cleanup`) until its load balancer is gone, so waiting
//! for the Services to disappear waits for the cleanup.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams};
use qhub_core::provider::ProviderError;

fn retryable(message: String) -> ProviderError {
    ProviderError::Retryable {
        message,
        retry_after: None,
    }
}

async fn load_balancers(client: &kube::Client) -> Result<Vec<(String, String)>, ProviderError> {
    let list = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| retryable(format!("listing Services: {e}")))?;
    Ok(list
        .items
        .into_iter()
        .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        .filter_map(|s| Some((s.metadata.namespace?, s.metadata.name?)))
        .collect())
}

/// Deletes every LoadBalancer Service and waits (up to `deadline`) until they are gone.
/// Returns how many there were.
pub async fn drain_load_balancers(
    client: &kube::Client,
    deadline: Duration,
) -> Result<usize, ProviderError> {
    let services = load_balancers(client).await?;
    for (namespace, name) in &services {
        tracing::info!(%namespace, %name, "deleting LoadBalancer Service before the cluster");
        match Api::<Service>::namespaced(client.clone(), namespace)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(retryable(format!(
                    "deleting Service {namespace}/{name}: {e}"
                )));
            }
        }
    }
    let started = Instant::now();
    while !services.is_empty() && !load_balancers(client).await?.is_empty() {
        if started.elapsed() > deadline {
            return Err(retryable(format!(
                "LoadBalancer Services still present after {deadline:?}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(services.len())
}
