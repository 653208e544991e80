//! The one loopback HTTP/1.1 server of the emulators.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use hyper::body::Incoming;
use hyper::{Request, Response};

/// The answer a handler chose not to give: the server closes the connection without one, as
/// a lost answer or a process that died mid-call looks to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("answer dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

/// A server on `127.0.0.1`; dropping it stops accepting and closes every open connection.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serves `handle` on `127.0.0.1:port` (0: any free port); `name` names the server in
    /// logs. A handler's `Err(Dropped)` closes the connection without an answer. Must be
    /// called within a Tokio runtime.
    pub async fn start<H, F, B>(name: &'static str, port: u16, handle: H) -> std::io::Result<Self>
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<Response<B>, Dropped>> + Send + 'static,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Self::start_at(name, SocketAddr::from((Ipv4Addr::LOCALHOST, port)), handle).await
    }

    /// Serves `handle` on `addr`, which must be a loopback address (anything else is
    /// refused with `InvalidInput`).
    pub async fn start_at<H, F, B>(
        name: &'static str,
        addr: SocketAddr,
        handle: H,
    ) -> std::io::Result<Self>
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<Response<B>, Dropped>> + Send + 'static,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{name} listens on loopback only, not {addr}"),
            ));
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every open connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let handle = handle.clone();
                            conns.spawn(async move {
                                let service = hyper::service::service_fn(handle);
                                // A client hanging up, or an answer dropped on purpose, ends
                                // the connection.
                                let io = hyper_util::rt::TokioIo::new(stream);
                                if let Err(e) = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(io, service)
                                    .await
                                {
                                    tracing::debug!(error = %e, server = name, "connection ended");
                                }
                            });
                        }
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, server = name, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        tracing::debug!(%addr, server = name, "listening");
        Ok(Self { addr, task })
    }

    /// Like [`Self::start`] for a handler that always answers.
    pub async fn start_infallible<H, F, B>(
        name: &'static str,
        port: u16,
        handle: H,
    ) -> std::io::Result<Self>
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Self::start(name, port, move |req| {
            let answer = handle(req);
            async move { Ok::<_, Dropped>(answer.await) }
        })
        .await
    }

    /// The address listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        answer
    }

    #[tokio::test]
    async fn serves_on_loopback_drops_answers_and_stops_when_dropped() {
        let server = Server::start("test", 0, |req: Request<Incoming>| async move {
            if req.uri().path() == "/drop" {
                Err(Dropped)
            } else {
                Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))
            }
        })
        .await
        .unwrap();
        let addr = server.addr();
        assert!(addr.ip().is_loopback());
        assert_eq!(server.url(), format!("http://{addr}"));
        let answer = get(addr, "/").await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"));
        assert_eq!(get(addr, "/drop").await, "", "closed without an answer");
        drop(server);
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn refuses_an_address_that_is_not_loopback() {
        let e = Server::start_infallible("test", 0, |_req: Request<Incoming>| async {
            Response::new(Full::new(Bytes::new()))
        })
        .await
        .map(|s| s.addr());
        assert!(e.is_ok());
        let e = Server::start_at(
            "test",
            SocketAddr::from(([0, 0, 0, 0], 0)),
            |_req: Request<Incoming>| async { Ok(Response::new(Full::new(Bytes::new()))) },
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("loopback only"), "{e}");
    }
}
