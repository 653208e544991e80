//! `GET /api/v1/namespaces/{ns}/pods/{name}/portforward?ports=P` over WebSocket, in the
//! `v4.channel.k8s.io` framing that kube-rs and kubectl speak: every binary message starts with
//! a channel byte (port `i` has data channel `2i` and error channel `2i+1`), and the server
//! first sends each channel its port as two little-endian bytes.
//!
//! Where the bytes go: what a test registered with [`KubeApi::forward_port`] for the pod's
//! workload (or the pod itself) and port, on loopback. Nothing registered is what a pod with
//! nothing listening gives: the error channel says the connection was refused. As the real API
//! server does, it answers 404 for a pod that does not exist, 400 for one that is not running
//! and for a request without ports, and refuses anything but a WebSocket upgrade.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::KubeApi;
use super::api_err::ApiErr;
use super::http::{ResBody, json_response_with};
use super::store::Key;

/// Run before a forwarded connection is made.
pub(crate) type OnConnect = std::sync::Arc<dyn Fn(&KubeApi) + Send + Sync>;

/// Where a workload's port is forwarded to.
#[derive(Clone)]
pub(crate) struct Forward {
    to: SocketAddr,
    on_connect: Option<OnConnect>,
}

/// The channel protocol we speak (kube-rs offers v5 and v4; port-forward needs no v5 close).
const PROTOCOL: &str = "v4.channel.k8s.io";

/// The namespace and pod of a port-forward path.
fn target(path: &str) -> Option<(&str, &str)> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", pod, "portforward"] => Some((ns, pod)),
        _ => None,
    }
}

fn error(e: &ApiErr) -> Response<ResBody> {
    let body = serde_json::to_vec(&e.to_status()).unwrap_or_default();
    json_response_with(
        e.code,
        http_body_util::Full::new(Bytes::from(body)).boxed_unsync(),
    )
}

impl KubeApi {
    /// Serves one request that came over HTTP: port-forwards here, everything else through
    /// [`KubeApi::handle_request`].
    pub(crate) async fn serve_http(&self, req: Request<Incoming>) -> Response<ResBody> {
        match target(req.uri().path()) {
            Some((ns, pod)) => {
                let (ns, pod) = (ns.to_string(), pod.to_string());
                self.port_forward(&ns, &pod, req)
                    .await
                    .unwrap_or_else(|e| error(&e))
            }
            None => self.handle_request(req).await,
        }
    }

    /// Makes what listens on `to` answer port `port` of the pods of workload `workload` (a
    /// Deployment or StatefulSet name, or a pod's own name) in `namespace`, for port-forwards.
    pub fn forward_port(&self, namespace: &str, workload: &str, port: u16, to: SocketAddr) {
        self.forward_port_with(namespace, workload, port, to, None);
    }

    /// [`KubeApi::forward_port`], running `on_connect` before each forwarded connection is
    /// made (what the process in the pod reads from the cluster when it starts, say).
    pub(crate) fn forward_port_with(
        &self,
        namespace: &str,
        workload: &str,
        port: u16,
        to: SocketAddr,
        on_connect: Option<OnConnect>,
    ) {
        self.inner
            .forwards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                (namespace.to_string(), workload.to_string(), port),
                Forward { to, on_connect },
            );
    }

    fn backend(
        &self,
        namespace: &str,
        pod: &str,
        owner: Option<&str>,
        port: u16,
    ) -> Option<Forward> {
        let forwards = self
            .inner
            .forwards
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        [Some(pod), owner].into_iter().flatten().find_map(|name| {
            forwards
                .get(&(namespace.to_string(), name.to_string(), port))
                .cloned()
        })
    }

    async fn port_forward(
        &self,
        namespace: &str,
        name: &str,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, ApiErr> {
        if req.method() != http::Method::GET && req.method() != http::Method::POST {
            return Err(ApiErr::new(
                405,
                "MethodNotAllowed",
                "port-forward takes GET",
            ));
        }
        let pod = self
            .inner
            .lock()
            .objects
            .get(&Key {
                group: String::new(),
                kind: "Pod".into(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
            .cloned()
            .ok_or_else(|| ApiErr::not_found(format!("pods \"{name}\" not found")))?;
        if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
            return Err(ApiErr::bad_request(format!(
                "pod {name} is not running and cannot be port-forwarded"
            )));
        }
        let query = super::select::parse_query(req.uri().query());
        let ports: Vec<u16> = query
            .iter()
            .filter(|(k, _)| k == "ports")
            .flat_map(|(_, v)| {
                v.split(',')
                    .map(str::trim)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| ApiErr::bad_request(format!("invalid port {p:?}")))
            })
            .collect::<Result<_, _>>()?;
        if ports.is_empty() {
            return Err(ApiErr::bad_request("at least 1 port must be specified"));
        }
        let header = |n| {
            req.headers()
                .get(n)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let upgrade = header(UPGRADE).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let key = header(SEC_WEBSOCKET_KEY).map(str::to_string);
        let (true, Some(key)) = (upgrade, key) else {
            return Err(ApiErr::bad_request(
                "Upgrade request required: port-forward is served over WebSocket only",
            ));
        };
        let offered = header(SEC_WEBSOCKET_PROTOCOL).unwrap_or_default();
        if !offered.split(',').any(|p| p.trim() == PROTOCOL) {
            return Err(ApiErr::bad_request(format!(
                "none of the offered subprotocols ({offered:?}) is supported; expected {PROTOCOL}"
            )));
        }
        let owner = super::pods::owner_name(&pod).map(str::to_string);
        let backends: Vec<(u16, Option<SocketAddr>)> = ports
            .iter()
            .map(|p| {
                let forward = self.backend(namespace, name, owner.as_deref(), *p);
                if let Some(hook) = forward.as_ref().and_then(|f| f.on_connect.as_ref()) {
                    hook(self);
                }
                (*p, forward.map(|f| f.to))
            })
            .collect();
        let pod_name = name.to_string();
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let io = hyper_util::rt::TokioIo::new(upgraded);
                    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                    forward(ws, &pod_name, backends).await;
                }
                Err(e) => tracing::debug!(error = %e, "port-forward upgrade failed"),
            }
        });
        let mut res = Response::new(Empty::new().boxed_unsync());
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(PROTOCOL));
        if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            h.insert(SEC_WEBSOCKET_ACCEPT, v);
        }
        Ok(res)
    }
}

/// One message on `channel`.
fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bin = Vec::with_capacity(data.len() + 1);
    bin.push(channel);
    bin.extend_from_slice(data);
    Message::binary(bin)
}

/// Carries bytes between the WebSocket and each port's backend until either side closes.
async fn forward<S>(ws: WebSocketStream<S>, pod: &str, backends: Vec<(u16, Option<SocketAddr>)>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(16);
    let mut writers = Vec::new();
    for (i, (port, backend)) in backends.into_iter().enumerate() {
        let (data, err) = (2 * i as u8, 2 * i as u8 + 1);
        for ch in [data, err] {
            if sink.send(frame(ch, &port.to_le_bytes())).await.is_err() {
                return;
            }
        }
        let conn = match backend {
            Some(addr) => tokio::net::TcpStream::connect(addr).await.ok(),
            None => None,
        };
        let Some(conn) = conn else {
            let message = format!(
                "error forwarding port {port} to pod {pod}: dial tcp4 127.0.0.1:{port}: connect: connection refused"
            );
            let _ = sink.send(frame(err, message.as_bytes())).await;
            writers.push(None);
            continue;
        };
        let (mut read, write) = conn.into_split();
        writers.push(Some(write));
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(frame(data, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // The pod closed its side: the client sees the stream end.
            let _ = tx.send(Message::Close(None)).await;
        });
    }
    drop(tx);
    if writers.iter().all(Option::is_none) {
        let _ = sink.send(Message::Close(None)).await;
        return;
    }
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(m) => {
                    let close = m.is_close();
                    if sink.send(m).await.is_err() || close {
                        break;
                    }
                }
                None => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Binary(bytes))) if bytes.len() > 1 => {
                    let ch = usize::from(bytes[0]);
                    if ch % 2 == 0
                        && let Some(Some(w)) = writers.get_mut(ch / 2)
                        && w.write_all(&bytes[1..]).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(m)) if m.is_close() => break,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    for w in writers.iter_mut().flatten() {
        let _ = w.shutdown().await;
    }
}
