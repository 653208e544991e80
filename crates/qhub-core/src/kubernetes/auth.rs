//! Kubernetes clients whose bearer token is minted by the provider, per request.
//!
//! Managed clusters hand out short-lived tokens (an EKS token is a presigned STS URL that the
//! API server accepts for 15 minutes). A deploy can run longer than that, and the deploy lease
//! is renewed in the background for as long as it runs, so a token minted once at connect time
//! would go stale mid-apply. A client built by [`client_with_token`] asks its [`TokenSource`]
//! for the token of every request instead; the source caches it and mints a new one well before
//! it expires, so no request ever carries a stale token and no credential is written to disk.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use http::{HeaderValue, Request, header::AUTHORIZATION};
use kube::client::Body;
use tower::{BoxError, Service};

use crate::provider::ProviderError;

/// Mints bearer tokens for one cluster.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A token valid now and for a while yet (the source decides how long it reuses one).
    async fn token(&self) -> Result<String, ProviderError>;
}

/// Where a cluster's API server is and how to trust it.
#[derive(Clone)]
pub struct ClusterEndpoint {
    /// `https://…`: the API server.
    pub server: String,
    /// The cluster's CA certificate(s), PEM; empty for the system's roots.
    pub ca_pem: Vec<u8>,
}

impl fmt::Debug for ClusterEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterEndpoint")
            .field("server", &self.server)
            .field("ca_pem_bytes", &self.ca_pem.len())
            .finish()
    }
}

/// The DER certificates in a PEM bundle.
fn pem_to_der(pem: &[u8]) -> Result<Vec<Vec<u8>>, ProviderError> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN CERTIFICATE") {
            body = Some(String::new());
        } else if line.starts_with("-----END CERTIFICATE") {
            let b64 = body.take().unwrap_or_default();
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| {
                    ProviderError::Fatal(format!("the cluster CA is not valid PEM: {e}"))
                })?;
            out.push(der);
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    if out.is_empty() {
        return Err(ProviderError::Fatal(
            "the cluster CA holds no PEM certificate".into(),
        ));
    }
    Ok(out)
}

/// A client for `endpoint` that sends `Authorization: Bearer <token>` with a token from `source`
/// on every request.
pub fn client_with_token(
    endpoint: &ClusterEndpoint,
    source: Arc<dyn TokenSource>,
) -> Result<kube::Client, ProviderError> {
    crate::tls::install_crypto_provider();
    let url = endpoint.server.parse::<http::Uri>().map_err(|e| {
        ProviderError::Fatal(format!(
            "the cluster endpoint `{}` is not a URL: {e}",
            endpoint.server
        ))
    })?;
    let mut config = kube::Config::new(url);
    // No CA: the system's roots (or plain http on loopback, an emulated cluster).
    if !endpoint.ca_pem.is_empty() {
        config.root_cert = Some(pem_to_der(&endpoint.ca_pem)?);
    }
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| ProviderError::Fatal(format!("cannot build a Kubernetes client: {e}")))?;
    Ok(builder
        // The boxed stack is not Clone; a buffer makes it so (each request takes its own
        // handle while its token is fetched).
        .with_layer(&tower::buffer::BufferLayer::new(64))
        .with_layer(&BearerLayer(source))
        .build())
}

/// Adds the bearer token (see [`client_with_token`]).
#[derive(Debug, Clone)]
struct BearerLayer(Arc<dyn TokenSource>);

impl<S> tower::Layer<S> for BearerLayer {
    type Service = Bearer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bearer {
            inner,
            source: self.0.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Bearer<S> {
    inner: S,
    source: Arc<dyn TokenSource>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<Request<Body>> for Bearer<S>
where
    S: Service<Request<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // The ready handle goes with this request; a fresh clone waits for the next.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let source = self.source.clone();
        Box::pin(async move {
            let token = source.token().await.map_err(BoxError::from)?;
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| BoxError::from("the minted token is not a valid header value"))?;
            value.set_sensitive(true);
            req.headers_mut().insert(AUTHORIZATION, value);
            inner.call(req).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl TokenSource for Counting {
        async fn token(&self) -> Result<String, ProviderError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(format!("token-{n}"))
        }
    }

    #[tokio::test]
    async fn every_request_carries_a_token_from_the_source() {
        let source = Arc::new(Counting::default());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorder = {
            let seen = seen.clone();
            tower::service_fn(move |req: Request<Body>| {
                let seen = seen.clone();
                async move {
                    let auth = req
                        .headers()
                        .get(AUTHORIZATION)
                        .map(|v| v.to_str().unwrap_or_default().to_string());
                    seen.lock().unwrap().push(auth);
                    Ok::<_, BoxError>(http::Response::new(Body::empty()))
                }
            })
        };
        use tower::{Layer as _, ServiceExt as _};
        let mut svc = BearerLayer(source.clone()).layer(recorder);
        for _ in 0..3 {
            let req = Request::builder().uri("/api").body(Body::empty()).unwrap();
            svc.ready().await.unwrap().call(req).await.unwrap();
        }
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                Some("Bearer token-0".to_string()),
                Some("Bearer token-1".to_string()),
                Some("Bearer token-2".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn a_token_failure_fails_the_request_without_sending_it() {
        #[derive(Debug)]
        struct Broken;
        #[async_trait]
        impl TokenSource for Broken {
            async fn token(&self) -> Result<String, ProviderError> {
                Err(ProviderError::Unauthorized("no credentials".into()))
            }
        }
        let sent = Arc::new(AtomicUsize::new(0));
        let inner = {
            let sent = sent.clone();
            tower::service_fn(move |_req: Request<Body>| {
                sent.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, BoxError>(http::Response::new(Body::empty())) }
            })
        };
        use tower::{Layer as _, ServiceExt as _};
        let svc = BearerLayer(Arc::new(Broken)).layer(inner);
        let req = Request::builder().uri("/api").body(Body::empty()).unwrap();
        let err = svc.oneshot(req).await.unwrap_err();
        assert!(err.to_string().contains("no credentials"), "{err}");
        assert_eq!(sent.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn pem_bundles_are_decoded_and_garbage_is_refused() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAEC\nAwQ=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_to_der(pem).unwrap(), vec![vec![0, 1, 2, 3, 4]]);
        assert!(pem_to_der(b"not a certificate").is_err());
    }
}
