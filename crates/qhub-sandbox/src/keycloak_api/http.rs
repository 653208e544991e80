//! Routing, authentication, fault injection and the loopback HTTP server.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value as Json, json};

use super::KeycloakApi;
use super::state::{Answer, Err, Res, State, uuid};

/// Where Keycloak is served (QHub's `/auth`).
const PREFIX: &str = "/auth";
const TOKEN_PATH: &str = "/realms/master/protocol/openid-connect/token";

fn respond(code: u16, body: Option<&Json>, location: Option<&str>) -> Response<Full<Bytes>> {
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap_or_default())
        .unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if body.is_some() {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        r.headers_mut().insert(LOCATION, l);
    }
    r
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn method_not_allowed() -> Err {
    Err {
        code: 405,
        body: json!({"error": "HTTP 405 Method Not Allowed"}),
    }
}

impl KeycloakApi {
    /// Serves one request.
    pub(super) async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body,
        B::Error: std::fmt::Display,
    {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                return respond(
                    400,
                    Some(&json!({"error": format!("reading the body: {e}")})),
                    None,
                );
            }
        };
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1")
            .to_string();
        let base = format!("http://{host}{PREFIX}");
        let Some(path) = parts.uri.path().strip_prefix(PREFIX) else {
            return respond(
                404,
                Some(&json!({"error": "Unable to find matching target resource method"})),
                None,
            );
        };
        let query = pairs(parts.uri.query().unwrap_or(""));
        if path == TOKEN_PATH {
            return self.token(&parts.method, &body);
        }
        let Some(admin) = path.strip_prefix("/admin/realms") else {
            return respond(
                404,
                Some(&json!({"error": "Unable to find matching target resource method"})),
                None,
            );
        };
        let counters = &self.inner.counters;
        if parts.method == Method::GET {
            counters.reads.fetch_add(1, Ordering::SeqCst);
        } else {
            counters.mutating.fetch_add(1, Ordering::SeqCst);
        }
        let options = self.options();
        if self.roll_fault(options.fault_rate) {
            counters.faults.fetch_add(1, Ordering::SeqCst);
            let mut r = respond(503, Some(&json!({"error": "Service Unavailable"})), None);
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        let bearer = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::to_string);
        let mut st = self.lock();
        let now = Instant::now();
        st.tokens.retain(|_, until| *until > now);
        if bearer.is_none_or(|t| !st.tokens.contains_key(&t)) {
            counters.unauthorized.fetch_add(1, Ordering::SeqCst);
            return respond(401, Some(&json!({"error": "HTTP 401 Unauthorized"})), None);
        }
        let segs: Vec<String> = admin
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let mut result = route(&mut st, &parts.method, &segs, &body, &base, &query);
        if parts.method != Method::GET
            && result.is_ok()
            && let Err(e) = self.save(&st)
        {
            tracing::warn!(error = %e, "keycloak emulator could not save its state");
            result = Err(Err {
                code: 500,
                body: json!({"error": format!("saving the emulator's state: {e}")}),
            });
        }
        drop(st);
        match result {
            Ok(Answer {
                code,
                body,
                location,
            }) => respond(code, body.as_ref(), location.as_deref()),
            Err(e) => {
                tracing::debug!(method = %parts.method, path, code = e.code, "keycloak emulator error");
                respond(e.code, Some(&e.body), None)
            }
        }
    }

    fn token(&self, method: &Method, body: &[u8]) -> Response<Full<Bytes>> {
        if method != Method::POST {
            return respond(
                405,
                Some(&json!({"error": "HTTP 405 Method Not Allowed"})),
                None,
            );
        }
        self.inner.counters.logins.fetch_add(1, Ordering::SeqCst);
        let form = pairs(&String::from_utf8_lossy(body));
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        if get("grant_type") != Some("password") {
            return respond(
                400,
                Some(
                    &json!({"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"}),
                ),
                None,
            );
        }
        if get("client_id") != Some("admin-cli") {
            return respond(
                401,
                Some(
                    &json!({"error": "invalid_client", "error_description": "Invalid client or Invalid client credentials"}),
                ),
                None,
            );
        }
        let options = self.options();
        if get("username") != Some(options.admin_username.as_str())
            || get("password") != Some(options.admin_password.as_str())
        {
            return respond(
                401,
                Some(
                    &json!({"error": "invalid_grant", "error_description": "Invalid user credentials"}),
                ),
                None,
            );
        }
        let token = format!("{}{}", uuid(), uuid()).replace('-', "");
        let lifetime = options.token_lifetime;
        self.lock()
            .tokens
            .insert(token.clone(), Instant::now() + lifetime);
        respond(
            200,
            Some(&json!({
                "access_token": token,
                // Whole seconds, as Keycloak; at least 1 so a client does not spin.
                "expires_in": lifetime.as_secs().max(1),
                "refresh_expires_in": 1800,
                "token_type": "Bearer",
                "scope": "profile email",
            })),
            None,
        )
    }
}

fn route(
    st: &mut State,
    method: &Method,
    segs: &[&str],
    body: &[u8],
    base: &str,
    query: &[(String, String)],
) -> Res {
    use Method as M;
    let q = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let m = method.clone();
    match segs {
        [] => match m {
            M::GET => st.list_realms(),
            M::POST => st.create_realm(body, base),
            _ => Err(method_not_allowed()),
        },
        [r] => match m {
            M::GET => st.get_realm(r),
            M::PUT => st.update_realm(r, body),
            M::DELETE => st.delete_realm(r),
            _ => Err(method_not_allowed()),
        },
        [r, "groups"] => match m {
            M::GET => st.list_groups(r, q("briefRepresentation") != Some("false")),
            M::POST => st.create_group(r, body, base),
            _ => Err(method_not_allowed()),
        },
        [r, "groups", id] => match m {
            M::GET => st.get_group(r, id),
            M::PUT => st.update_group(r, id, body),
            M::DELETE => st.delete_group(r, id),
            _ => Err(method_not_allowed()),
        },
        [r, "groups", id, "role-mappings"] => match m {
            M::GET => st.group_mappings(r, id),
            _ => Err(method_not_allowed()),
        },
        [r, "groups", id, "role-mappings", "clients", cid] => match m {
            M::GET => st.group_client_mappings(r, id, cid),
            M::POST => st.change_group_client_mappings(r, id, cid, body, true),
            M::DELETE => st.change_group_client_mappings(r, id, cid, body, false),
            _ => Err(method_not_allowed()),
        },
        [r, "default-groups"] => match m {
            M::GET => st.list_default_groups(r),
            _ => Err(method_not_allowed()),
        },
        [r, "default-groups", id] => match m {
            M::PUT => st.add_default_group(r, id),
            M::DELETE => st.remove_default_group(r, id),
            _ => Err(method_not_allowed()),
        },
        [r, "clients"] => match m {
            M::GET => st.list_clients(r, q("clientId")),
            M::POST => st.create_client(r, body, base),
            _ => Err(method_not_allowed()),
        },
        [r, "clients", id] => match m {
            M::GET => st.get_client(r, id),
            M::PUT => st.update_client(r, id, body),
            M::DELETE => st.delete_client(r, id),
            _ => Err(method_not_allowed()),
        },
        [r, "clients", id, "client-secret"] => match m {
            M::GET => st.client_secret(r, id),
            _ => Err(method_not_allowed()),
        },
        [r, "clients", id, "roles"] => match m {
            M::GET => st.list_client_roles(r, id),
            M::POST => st.create_client_role(r, id, body, base),
            _ => Err(method_not_allowed()),
        },
        [r, "clients", id, "roles", name] => match m {
            M::GET => st.get_client_role(r, id, name),
            M::DELETE => st.delete_client_role(r, id, name),
            _ => Err(method_not_allowed()),
        },
        [r, "clients", id, "protocol-mappers", "models"] => match m {
            M::GET => st.list_mappers(r, id),
            M::POST => st.create_mapper(r, id, body, base),
            _ => Err(method_not_allowed()),
        },
        [r, "clients", id, "protocol-mappers", "models", mid] => match m {
            M::PUT => st.update_mapper(r, id, mid, body),
            M::DELETE => st.delete_mapper(r, id, mid),
            _ => Err(method_not_allowed()),
        },
        [r, "users"] => match m {
            M::GET => {
                let number =
                    |k: &str, default: usize| q(k).and_then(|v| v.parse().ok()).unwrap_or(default);
                st.list_users(
                    r,
                    q("username"),
                    q("exact") == Some("true"),
                    number("first", 0),
                    number("max", 100),
                )
            }
            M::POST => st.create_user(r, body, base),
            _ => Err(method_not_allowed()),
        },
        [r, "users", id] => match m {
            M::GET => st.get_user(r, id),
            M::DELETE => st.delete_user(r, id),
            _ => Err(method_not_allowed()),
        },
        [r, "users", id, "reset-password"] => match m {
            M::PUT => st.reset_password(r, id, body),
            _ => Err(method_not_allowed()),
        },
        [r, "users", id, "groups"] => match m {
            M::GET => st.user_groups(r, id),
            _ => Err(method_not_allowed()),
        },
        [r, "users", id, "groups", gid] => match m {
            M::PUT => st.change_user_group(r, id, gid, true),
            M::DELETE => st.change_user_group(r, id, gid, false),
            _ => Err(method_not_allowed()),
        },
        [r, "identity-provider", "instances"] => match m {
            M::GET => st.list_idps(r),
            M::POST => st.create_idp(r, body, base),
            _ => Err(method_not_allowed()),
        },
        [r, "identity-provider", "instances", alias] => match m {
            M::GET => st.get_idp(r, alias),
            M::PUT => st.update_idp(r, alias, body),
            M::DELETE => st.delete_idp(r, alias),
            _ => Err(method_not_allowed()),
        },
        _ => Err(Err::not_found("the requested resource")),
    }
}

/// The emulator served over plain HTTP on a loopback address. Stops when dropped.
#[derive(Debug)]
pub struct KeycloakServer {
    inner: crate::loopback::Loopback,
}

impl KeycloakServer {
    pub(super) async fn start(api: KeycloakApi) -> std::io::Result<Self> {
        // Tests and the sandbox never expose the emulator beyond this machine.
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let inner = crate::loopback::Loopback::serve(
            listener,
            "Keycloak admin API emulator",
            move |req| {
                let api = api.clone();
                async move { api.handle(req).await }
            },
        )?;
        Ok(Self { inner })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr()
    }

    /// The base URL to give the admin client: `http://127.0.0.1:PORT/auth`.
    pub fn url(&self) -> String {
        format!("http://{}{PREFIX}", self.addr())
    }
}
