//! A loopback port that reaches a port of a workload's pods through the API server, as
//! `kubectl port-forward` does: how qhub talks to in-cluster services that are not (or not
//! yet) reachable from outside, such as Keycloak's admin API before the domain resolves or its
//! certificate is issued.
//!
//! It needs only the cluster credentials qhub already has (RBAC `pods/portforward`, which
//! cluster administrators hold), no DNS and no load balancer. Each local connection is its own
//! port-forward stream (a WebSocket to `pods/{name}/portforward`); a pod that went away is
//! replaced by another ready pod of the workload for the next connection.

use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;

use crate::provider::ProviderError;

/// A port on 127.0.0.1 forwarded to a port of a workload's pods. Stops, closing its
/// connections, when dropped.
#[derive(Debug)]
pub struct PortForward {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// Where connections are forwarded to.
#[derive(Debug)]
struct Target {
    pods: kube::Api<Pod>,
    namespace: String,
    selector: String,
    port: u16,
}

impl Target {
    /// The name of a running, ready pod matching the selector.
    async fn pick(&self) -> Result<String, ProviderError> {
        let list = self
            .pods
            .list(&ListParams::default().labels(&self.selector))
            .await
            .map_err(|source| {
                ProviderError::from(super::KubeError::Api {
                    what: format!(
                        "listing the pods ({}) in namespace {} to port-forward to",
                        self.selector, self.namespace
                    ),
                    source,
                })
            })?;
        list.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
            .find_map(|p| p.metadata.name.clone())
            .ok_or_else(|| {
                ProviderError::retryable(format!(
                    "no running, ready pod ({}) in namespace {} to port-forward to",
                    self.selector, self.namespace
                ))
            })
    }

    /// Opens a port-forward stream to `pod`.
    async fn open(&self, pod: &str) -> Result<tokio::io::DuplexStream, kube::Error> {
        let mut forwarder = self.pods.portforward(pod, &[self.port]).await?;
        forwarder.take_stream(self.port).ok_or_else(|| {
            kube::Error::Service(
                format!(
                    "the port-forward to pod {pod} has no stream for port {}",
                    self.port
                )
                .into(),
            )
        })
    }
}

/// Whether a pod runs and reports Ready.
fn ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl PortForward {
    /// Forwards a new port on 127.0.0.1 to `port` of the running, ready pods matching the
    /// label `selector` in `namespace`. Fails (retryably) when no such pod runs now.
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        selector: &str,
        port: u16,
    ) -> Result<Self, ProviderError> {
        let target = Arc::new(Target {
            pods: kube::Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            selector: selector.to_string(),
            port,
        });
        let first = target.pick().await?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| ProviderError::Fatal(format!("opening a local port to forward: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ProviderError::Fatal(format!("opening a local port to forward: {e}")))?;
        tracing::debug!(%addr, namespace, selector, port, pod = %first, "port-forward listening");
        let task = tokio::spawn(async move {
            let pod = Arc::new(tokio::sync::Mutex::new(first));
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((conn, _)) => {
                            let (target, pod) = (target.clone(), pod.clone());
                            conns.spawn(async move { serve(conn, &target, &pod).await });
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "port-forward accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Self { addr, task })
    }

    /// The local address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Carries one local connection to the pod (a fresh pod when the last one is gone).
async fn serve(mut conn: tokio::net::TcpStream, target: &Target, pod: &tokio::sync::Mutex<String>) {
    let current = pod.lock().await.clone();
    let stream = match target.open(&current).await {
        Ok(s) => Ok(s),
        Err(first) => {
            tracing::debug!(pod = %current, error = %first, "port-forward failed; picking a pod again");
            match target.pick().await {
                Ok(next) => {
                    *pod.lock().await = next.clone();
                    target.open(&next).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match stream {
        Ok(mut remote) => {
            if let Err(e) = tokio::io::copy_bidirectional(&mut conn, &mut remote).await {
                tracing::debug!(error = %e, "port-forward connection ended");
            }
        }
        // The local client sees its connection closed and retries as it would after any
        // dropped connection.
        Err(e) => tracing::warn!(error = %e, "port-forward to {} failed", target.selector),
    }
}
