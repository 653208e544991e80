//! The one loopback HTTP/1.1 server loop the sandbox's emulators (the Kubernetes API, the
//! Keycloak admin API) are served by: accept, serve each connection (with protocol upgrades,
//! for port-forward WebSockets), back off when accepting fails, and close every connection when
//! the server is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use http::{Request, Response};
use hyper::body::Incoming;

/// A server listening on a loopback address. Stops, closing every open connection, when
/// dropped.
#[derive(Debug)]
pub(crate) struct Loopback {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Loopback {
    /// Serves `handle` on `listener`, which must listen on a loopback address (checked by the
    /// caller, which names the error its own way). `what` names the server in logs.
    pub(crate) fn serve<H, F, B>(
        listener: tokio::net::TcpListener,
        what: &'static str,
        handle: H,
    ) -> std::io::Result<Self>
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every open connection,
            // watches and port-forwards included.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let handle = handle.clone();
                            conns.spawn(async move {
                                let service = hyper::service::service_fn(move |req| {
                                    let handle = handle.clone();
                                    async move { Ok::<_, Infallible>(handle(req).await) }
                                });
                                let io = hyper_util::rt::TokioIo::new(stream);
                                if let Err(e) = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(io, service)
                                    .with_upgrades()
                                    .await
                                {
                                    tracing::debug!(error = %e, server = what, "connection ended");
                                }
                            });
                        }
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, server = what, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        tracing::info!(%addr, server = what, "listening");
        Ok(Self { addr, task })
    }

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.task.abort();
    }
}
