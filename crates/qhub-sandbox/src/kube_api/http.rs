//! Request routing, responses, and the loopback HTTP server.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::api_err::ApiErr;
use super::discovery;
use super::ops::{Params, Target};
use super::select::parse_query;
use super::store::State;
use super::{KubeApi, KubeApiError, rbac};

/// The body of every response: a whole JSON document, or a watch stream.
pub(crate) type ResBody = UnsyncBoxBody<Bytes, Infallible>;

/// A JSON response with the given status code and body.
pub(crate) fn json_response_with(code: u16, body: ResBody) -> Response<ResBody> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn json_response(code: u16, v: &Value) -> Response<ResBody> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    json_response_with(code, Full::new(Bytes::from(body)).boxed_unsync())
}

fn error_response(e: &ApiErr) -> Response<ResBody> {
    json_response(e.code, &e.to_status())
}

enum Routed {
    Json(u16, Value),
    Stream(Response<ResBody>),
}

fn not_found(path: &str) -> ApiErr {
    ApiErr::not_found(format!(
        "the server could not find the requested resource ({path})"
    ))
}

fn method_not_allowed(method: &Method) -> ApiErr {
    ApiErr::new(
        405,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method})"),
    )
}

/// Resolves `[namespaces/{ns}/]{plural}[/{name}[/{subresource}]]`.
fn target(
    st: &State,
    group: &str,
    version: &str,
    rest: &[&str],
    path: &str,
) -> Result<Target, ApiErr> {
    // `/api/v1/namespaces/{name}/status` is the Namespace's own subresource, not a kind.
    let namespace_sub =
        group.is_empty() && rest.len() == 3 && matches!(rest[2], "status" | "finalize");
    let (namespace, plural, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !namespace_sub => (Some(*ns), *plural, tail),
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return Err(not_found(path)),
    };
    let rt = discovery::find(st, group, version, plural).ok_or_else(|| not_found(path))?;
    if (namespace.is_some() && !rt.namespaced) || tail.len() > 2 {
        return Err(not_found(path));
    }
    let name = tail.first().map(|s| (*s).to_string());
    if rt.namespaced && namespace.is_none() && name.is_some() {
        return Err(not_found(path));
    }
    let status = match tail.get(1) {
        None => false,
        Some(&"status") if rt.status => true,
        Some(&"scale") => {
            return Err(ApiErr::new(
                501,
                "NotImplemented",
                "the scale subresource is not implemented by the in-memory API server",
            ));
        }
        Some(_) => return Err(not_found(path)),
    };
    Ok(Target {
        rt,
        version: version.to_string(),
        namespace: namespace.map(str::to_string),
        name,
        status,
    })
}

impl KubeApi {
    /// Serves one request, from the in-process client or the HTTP server. The sandbox
    /// provider wraps this in its fault-injecting tower service, so the signature and the body
    /// type (`UnsyncBoxBody<Bytes, Infallible>`) are relied on within the crate.
    pub(crate) async fn handle_request<B>(&self, req: Request<B>) -> Response<ResBody>
    where
        B: hyper::body::Body,
        B::Error: std::fmt::Display,
    {
        let (parts, body) = req.into_parts();
        let bytes = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                return error_response(&ApiErr::bad_request(format!(
                    "reading the request body: {e}"
                )));
            }
        };
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .unwrap_or_default()
        };
        let content_type = header(CONTENT_TYPE)
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let query = parse_query(parts.uri.query());
        let params = Params {
            query: &query,
            content_type: &content_type,
            user_agent: header(USER_AGENT),
        };
        let path = parts.uri.path();
        tracing::debug!(method = %parts.method, path, "kube api request");
        match self.route(&parts.method, path, &params, &bytes) {
            Ok(Routed::Json(code, v)) => json_response(code, &v),
            Ok(Routed::Stream(r)) => r,
            Err(e) => {
                tracing::debug!(method = %parts.method, path, code = e.code, message = %e.message, "kube api error");
                error_response(&e)
            }
        }
    }

    fn route(
        &self,
        method: &Method,
        path: &str,
        p: &Params,
        body: &[u8],
    ) -> Result<Routed, ApiErr> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let discovery_doc = |doc: Option<Value>| {
            if method != Method::GET {
                return Err(method_not_allowed(method));
            }
            doc.map(|d| Routed::Json(200, d))
                .ok_or_else(|| not_found(path))
        };
        match segs.as_slice() {
            ["version"] => discovery_doc(Some(discovery::version())),
            ["api"] => discovery_doc(Some(discovery::core_versions())),
            ["apis"] => discovery_doc(Some(discovery::group_list(&self.inner.lock()))),
            ["apis", g] => discovery_doc(discovery::group(&self.inner.lock(), g)),
            ["api", v] => discovery_doc(discovery::resource_list(&self.inner.lock(), "", v)),
            ["apis", g, v] => discovery_doc(discovery::resource_list(&self.inner.lock(), g, v)),
            ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"] => {
                if method != Method::POST {
                    return Err(method_not_allowed(method));
                }
                self.subject_access_review(body)
                    .map(|v| Routed::Json(201, v))
            }
            ["api", v, rest @ ..] => self.resource(method, "", v, rest, path, p, body),
            ["apis", g, v, rest @ ..] => self.resource(method, g, v, rest, path, p, body),
            _ => Err(not_found(path)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn resource(
        &self,
        method: &Method,
        group: &str,
        version: &str,
        rest: &[&str],
        path: &str,
        p: &Params,
        body: &[u8],
    ) -> Result<Routed, ApiErr> {
        if let (&Method::GET, "", ["namespaces", _, "pods", name, "log"]) = (method, group, rest) {
            let t = target(&self.inner.lock(), group, version, &rest[..4], path)?;
            let (_, pod) = self.get(&t, name)?;
            return super::pods::log(&pod, p.get("container"), p.get("tailLines")).map(|text| {
                let mut r = Response::new(Full::new(Bytes::from(text)).boxed_unsync());
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                Routed::Stream(r)
            });
        }
        let t = target(&self.inner.lock(), group, version, rest, path)?;
        let json = |r: Result<(u16, Value), ApiErr>| r.map(|(c, v)| Routed::Json(c, v));
        let watching = matches!(p.get("watch"), Some("true" | "1"));
        match (method.clone(), t.name.clone()) {
            (Method::GET, None) if watching => self.watch(t, p).map(Routed::Stream),
            (Method::GET, None) => json(self.list(&t, p)),
            (Method::GET, Some(name)) => json(self.get(&t, &name)),
            (Method::POST, None) => json(self.create(&t, p, body)),
            (Method::PUT, Some(name)) => json(self.replace(&t, p, &name, body)),
            (Method::PATCH, Some(name)) => json(self.patch(&t, p, &name, body)),
            (Method::DELETE, Some(name)) => json(self.delete(&t, p, &name, body)),
            (Method::DELETE, None) => json(self.delete_collection(&t, p, body)),
            _ => Err(method_not_allowed(method)),
        }
    }
}

impl KubeApi {
    /// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`: whether a service account
    /// may do what `spec.resourceAttributes` says, answered by the RBAC evaluator
    /// ([`KubeApi::can`]) as the API server's authorizer chain answers it (Kubernetes docs,
    /// "Authorization", "Checking API access"). Users other than service accounts are denied
    /// with a reason: the sandbox knows no other identities.
    fn subject_access_review(&self, body: &[u8]) -> Result<Value, ApiErr> {
        let mut review: Value = serde_json::from_slice(body)
            .map_err(|e| ApiErr::bad_request(format!("the request body is not valid JSON: {e}")))?;
        let s = |ptr: &str| {
            review
                .pointer(ptr)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let attrs = review.pointer("/spec/resourceAttributes").cloned();
        let (allowed, reason) = match (s("/spec/user"), attrs) {
            (_, None) => {
                return Err(ApiErr::invalid(
                    "SubjectAccessReview.authorization.k8s.io \"\" is invalid: \
                     spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes \
                     or resourceAttributes must be specified (this server answers \
                     resourceAttributes only)",
                ));
            }
            (Some(user), Some(_)) => match user
                .strip_prefix("system:serviceaccount:")
                .and_then(|r| r.split_once(':'))
            {
                Some((ns, sa)) => {
                    let resource = match s("/spec/resourceAttributes/subresource") {
                        Some(sub) => format!(
                            "{}/{sub}",
                            s("/spec/resourceAttributes/resource").unwrap_or_default()
                        ),
                        None => s("/spec/resourceAttributes/resource").unwrap_or_default(),
                    };
                    let req = rbac::AccessRequest {
                        sa_namespace: ns.to_string(),
                        sa_name: sa.to_string(),
                        verb: s("/spec/resourceAttributes/verb").unwrap_or_default(),
                        group: s("/spec/resourceAttributes/group").unwrap_or_default(),
                        resource,
                        namespace: s("/spec/resourceAttributes/namespace"),
                        name: s("/spec/resourceAttributes/name"),
                    };
                    if self.can(&req) {
                        (
                            true,
                            "RBAC: allowed by the stored roles and bindings".to_string(),
                        )
                    } else {
                        (false, String::new())
                    }
                }
                None => (
                    false,
                    format!("the in-memory API server knows service accounts only, not {user}"),
                ),
            },
            (None, Some(_)) => (false, "no user given".to_string()),
        };
        if let Some(m) = review.as_object_mut() {
            m.insert(
                "apiVersion".into(),
                serde_json::json!("authorization.k8s.io/v1"),
            );
            m.insert("kind".into(), serde_json::json!("SubjectAccessReview"));
            let mut status = serde_json::json!({"allowed": allowed});
            if !reason.is_empty() {
                status["reason"] = serde_json::json!(reason);
            }
            m.insert("status".into(), status);
        }
        Ok(review)
    }
}

/// Decides who may use the HTTP face, from the request's bearer token (`None` without one):
/// `Ok(())` lets the request in, `Err(why)` answers it `401 Unauthorized` as an API server does
/// when its token authenticator (EKS's IAM authenticator webhook, say) refuses the token. A
/// test sets one to stand for the cloud's identity mapping ([`KubeApi::set_authenticator`]).
pub type Authenticator = std::sync::Arc<
    dyn Fn(Option<String>) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

impl KubeApi {
    /// Makes the HTTP face ask `authenticator` about every request's bearer token (`None`:
    /// everyone is let in, the default). The in-process client is not affected.
    pub fn set_authenticator(&self, authenticator: Option<Authenticator>) {
        *self
            .inner
            .authenticator
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = authenticator;
    }

    /// `Some(401 response)` when the authenticator refuses the request's token. A token that
    /// fails authentication is refused on every path, `/version` included: kube-apiserver's
    /// bearer-token authenticator turns "not authenticated" into an error, which the anonymous
    /// fallback does not override (k8s.io/apiserver `authentication/request/bearertoken`,
    /// `union.NewFailOnError`).
    async fn authenticate<B>(&self, req: &Request<B>) -> Option<Response<ResBody>> {
        let check = self
            .inner
            .authenticator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let token = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        match check(token).await {
            Ok(()) => None,
            Err(why) => {
                tracing::debug!(path = req.uri().path(), why, "kube api: unauthorized");
                Some(error_response(&ApiErr::new(
                    401,
                    "Unauthorized",
                    "Unauthorized",
                )))
            }
        }
    }
}

/// The in-memory API served over plain HTTP on a loopback address. Stops when dropped.
#[derive(Debug)]
pub struct Server {
    inner: crate::loopback::Loopback,
}

impl Server {
    pub(crate) async fn start(api: KubeApi, addr: SocketAddr) -> Result<Self, KubeApiError> {
        // Tests and the sandbox must never expose the API beyond this machine.
        if !addr.ip().is_loopback() {
            return Err(KubeApiError::NotLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| KubeApiError::Bind { addr, source })?;
        let inner =
            crate::loopback::Loopback::serve(listener, "in-memory Kubernetes API", move |req| {
                let api = api.clone();
                async move {
                    if let Some(refused) = api.authenticate(&req).await {
                        return refused;
                    }
                    api.serve_http(req).await
                }
            })
            .map_err(|source| KubeApiError::Bind { addr, source })?;
        Ok(Self { inner })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr()
    }

    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// A kubeconfig for this server: one cluster, context and user (no credentials), default
    /// namespace `default`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: qhub-sandbox\n  cluster:\n    server: {}\n\
             contexts:\n- name: qhub-sandbox\n  context:\n    cluster: qhub-sandbox\n    user: qhub-sandbox\n    namespace: default\n\
             current-context: qhub-sandbox\nusers:\n- name: qhub-sandbox\n  user: {{}}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Stops the server and closes every connection (the same as dropping it).
    pub fn shutdown(self) {
        drop(self);
    }
}
