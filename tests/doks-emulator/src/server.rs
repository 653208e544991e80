//! The HTTP side: routing, bearer-token check, rate limit, spec check, faults, answers.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use qhub_emulator_kit::{After, Before, Dropped};
use serde_json::{Value as Json, json};

use crate::Shared;
use crate::state::{Account, ApiError};

/// The route of a request: DigitalOcean's `operationId` and the path's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `operationId` in the spec.
    pub operation: &'static str,
    /// `{cluster_id}`.
    pub cluster: Option<String>,
    /// `{node_pool_id}`.
    pub pool: Option<String>,
}

/// The spec's `operationId` of `method path` (`None`: not an operation the emulator serves).
pub fn operation_of(method: &str, path: &str) -> Option<&'static str> {
    route(method, path).map(|r| r.operation)
}

fn route(method: &str, path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let r = |operation, cluster: Option<&str>, pool: Option<&str>| {
        Some(Route {
            operation,
            cluster: cluster.map(str::to_string),
            pool: pool.map(str::to_string),
        })
    };
    match (method, parts.as_slice()) {
        ("GET", ["", "v2", "account"]) => r("account_get", None, None),
        ("GET", ["", "v2", "kubernetes", "options"]) => r("kubernetes_list_options", None, None),
        ("GET", ["", "v2", "kubernetes", "clusters"]) => r("kubernetes_list_clusters", None, None),
        ("POST", ["", "v2", "kubernetes", "clusters"]) => {
            r("kubernetes_create_cluster", None, None)
        }
        ("GET", ["", "v2", "kubernetes", "clusters", c]) => {
            r("kubernetes_get_cluster", Some(c), None)
        }
        ("PUT", ["", "v2", "kubernetes", "clusters", c]) => {
            r("kubernetes_update_cluster", Some(c), None)
        }
        ("DELETE", ["", "v2", "kubernetes", "clusters", c]) => {
            r("kubernetes_delete_cluster", Some(c), None)
        }
        (
            "DELETE",
            [
                "",
                "v2",
                "kubernetes",
                "clusters",
                c,
                "destroy_with_associated_resources",
                "dangerous",
            ],
        ) => r(
            "kubernetes_destroy_associatedResourcesDangerous",
            Some(c),
            None,
        ),
        ("GET", ["", "v2", "kubernetes", "clusters", c, "kubeconfig"]) => {
            r("kubernetes_get_kubeconfig", Some(c), None)
        }
        ("GET", ["", "v2", "kubernetes", "clusters", c, "credentials"]) => {
            r("kubernetes_get_credentials", Some(c), None)
        }
        ("POST", ["", "v2", "kubernetes", "clusters", c, "upgrade"]) => {
            r("kubernetes_upgrade_cluster", Some(c), None)
        }
        ("GET", ["", "v2", "kubernetes", "clusters", c, "node_pools"]) => {
            r("kubernetes_list_nodePools", Some(c), None)
        }
        ("POST", ["", "v2", "kubernetes", "clusters", c, "node_pools"]) => {
            r("kubernetes_add_nodePool", Some(c), None)
        }
        ("GET", ["", "v2", "kubernetes", "clusters", c, "node_pools", p]) => {
            r("kubernetes_get_nodePool", Some(c), Some(p))
        }
        ("PUT", ["", "v2", "kubernetes", "clusters", c, "node_pools", p]) => {
            r("kubernetes_update_nodePool", Some(c), Some(p))
        }
        ("DELETE", ["", "v2", "kubernetes", "clusters", c, "node_pools", p]) => {
            r("kubernetes_delete_nodePool", Some(c), Some(p))
        }
        _ => None,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

type Answer = Response<Full<Bytes>>;

fn json_answer(status: u16, body: &Json) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn error_answer(e: &ApiError, request_id: &str) -> Answer {
    json_answer(
        e.status,
        &json!({"id": e.id, "message": e.message, "request_id": request_id}),
    )
}

fn no_content() -> Answer {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 UTC text of a Unix time (days-from-civil inverse, Howard Hinnant's algorithm).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// Serves one request (`Err`: the connection closes without an answer).
pub(crate) async fn handle(req: Request<Incoming>, shared: &Shared) -> Result<Answer, Dropped> {
    if !shared.options.latency.is_zero() {
        tokio::time::sleep(shared.options.latency).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Dropped),
    };
    let route = route(method.as_str(), &path);
    // A delay rule's wait, taken once the world's lock is released.
    let answer_delay;
    // The world's lock is held in this block only, never across an await.
    let (r, operation) = {
        let mut w = shared.world();
        w.counters.requests += 1;
        let request_id = format!("emu-{:08}", w.counters.requests);
        let op = route.as_ref().map_or("unknown", |r| r.operation);
        *w.counters.by_operation.entry(op.to_string()).or_insert(0) += 1;
        if w.faults.is_dead() {
            return Err(Dropped);
        }
        // Rate limits (see `RateLimit`): both sliding windows forget requests older than
        // their window.
        let now = std::time::Instant::now();
        let rl = w.rate_limit;
        while w
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= rl.window)
        {
            w.sent.pop_front();
        }
        while w
            .burst
            .front()
            .is_some_and(|t| now.duration_since(*t) >= rl.burst_window)
        {
            w.burst.pop_front();
        }
        let limit = rl.limit;
        let used = u32::try_from(w.sent.len()).unwrap_or(u32::MAX);
        // When the oldest counted request expires (now, when none is counted), in whole
        // seconds rounded up: by then it has.
        let expires = |oldest: Option<&std::time::Instant>, window: std::time::Duration| {
            oldest.map_or(std::time::Duration::ZERO, |t| {
                window.saturating_sub(now.duration_since(*t))
            })
        };
        let hour_left = expires(w.sent.front(), rl.window);
        let burst_left = expires(w.burst.front(), rl.burst_window);
        let ceil_secs = |d: std::time::Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let reset_epoch = (SystemTime::now() + hour_left)
            .duration_since(UNIX_EPOCH)
            .map(ceil_secs)
            .unwrap_or(0);
        let headers = |r: &mut Answer, remaining: u32| {
            let h = r.headers_mut();
            for (k, v) in [
                ("ratelimit-limit", limit.to_string()),
                ("ratelimit-remaining", remaining.to_string()),
                ("ratelimit-reset", reset_epoch.to_string()),
            ] {
                if let Ok(v) = hyper::header::HeaderValue::from_str(&v) {
                    h.insert(k, v);
                }
            }
            if let Ok(v) = hyper::header::HeaderValue::from_str(&request_id) {
                h.insert("x-request-id", v);
            }
        };
        if let Some(expected) = &shared.options.token {
            let given = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
            if given != Some(expected.as_str()) {
                w.counters.unauthorized += 1;
                let mut r = error_answer(
                    &ApiError {
                        status: 401,
                        id: "unauthorized",
                        message: "Unable to authenticate you".into(),
                    },
                    &request_id,
                );
                headers(&mut r, limit.saturating_sub(used));
                return Ok(r);
            }
        }
        let hourly_spent = used >= limit;
        let burst_hit = u32::try_from(w.burst.len()).unwrap_or(u32::MAX) >= rl.burst_limit;
        if hourly_spent || burst_hit {
            let wait = if hourly_spent { hour_left } else { burst_left };
            if hourly_spent {
                w.counters.rate_limited += 1;
            } else {
                w.counters.burst_limited += 1;
            }
            let mut r = error_answer(
                &ApiError {
                    status: 429,
                    id: "too_many_requests",
                    message: "API Rate limit exceeded.".into(),
                },
                &request_id,
            );
            headers(&mut r, limit.saturating_sub(used));
            if let Ok(v) = hyper::header::HeaderValue::from_str(&ceil_secs(wait).max(1).to_string())
            {
                r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
            }
            return Ok(r);
        }
        w.sent.push_back(now);
        w.burst.push_back(now);
        let remaining = limit - used - 1;
        // Injected faults, before anything is done.
        let (before, delay) = w.faults.before(op);
        answer_delay = delay;
        if before == Before::Reset {
            return Err(Dropped);
        }
        if matches!(before, Before::Throttle | Before::Status(429)) {
            w.counters.throttled += 1;
            let mut r = error_answer(
                &ApiError {
                    status: 429,
                    id: "too_many_requests",
                    message: "API Rate limit exceeded.".into(),
                },
                &request_id,
            );
            headers(&mut r, remaining);
            if let Ok(v) =
                hyper::header::HeaderValue::from_str(&w.faults.plan().retry_after_secs.to_string())
            {
                r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
            }
            return Ok(r);
        }
        if let Before::ServerError | Before::Status(_) = before {
            w.counters.server_errors += 1;
            let status = match before {
                Before::Status(code) => code,
                _ if w.counters.server_errors.is_multiple_of(2) => 503,
                _ => 500,
            };
            let mut r = error_answer(
                &ApiError {
                    status,
                    id: "server_error",
                    message: "Server was unable to give you a response.".into(),
                },
                &request_id,
            );
            headers(&mut r, remaining);
            return Ok(r);
        }
        let Some(route) = route else {
            let mut r = error_answer(&ApiError::not_found(), &request_id);
            headers(&mut r, remaining);
            return Ok(r);
        };
        let parsed: Option<Json> = if body.is_empty() {
            None
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => Some(v),
                Err(e) => {
                    let mut r = error_answer(
                        &ApiError::bad_request(format!("the request body is not JSON: {e}")),
                        &request_id,
                    );
                    headers(&mut r, remaining);
                    return Ok(r);
                }
            }
        };
        if let Some(spec) = &shared.spec {
            w.counters.spec_checked += 1;
            let problems = spec.check(route.operation, &query, parsed.as_ref());
            if !problems.is_empty() {
                w.counters.spec_violations += 1;
                for p in &problems {
                    w.counters
                        .violations
                        .push(format!("{} {path}: {p}", route.operation));
                }
                let mut r = error_answer(
                    &ApiError::unprocessable(format!(
                        "the request does not conform to DigitalOcean's OpenAPI spec: {}",
                        problems.join("; ")
                    )),
                    &request_id,
                );
                headers(&mut r, remaining);
                return Ok(r);
            }
        }
        let empty = json!({});
        let body = parsed.as_ref().unwrap_or(&empty);
        let base = shared
            .options
            .links_origin
            .clone()
            .unwrap_or_else(|| shared.base_url.get().cloned().unwrap_or_default());
        let answer = dispatch(&mut w.account, &route, &query, body, &base);
        let mut r = match answer {
            Ok(r) => r,
            Err(e) => error_answer(&e, &request_id),
        };

        headers(&mut r, remaining);
        if is_mutating(&method) && r.status().is_success() {
            w.counters.mutations += 1;
            match w.faults.after_mutation() {
                After::Died => {
                    w.counters.lost += 1;
                    tracing::info!(
                        operation = route.operation,
                        "die_after: the answer is dropped"
                    );
                    return Err(Dropped);
                }
                After::Lost => {
                    w.counters.lost += 1;
                    return Err(Dropped);
                }
                After::Deliver => {}
            }
        }
        (r, route.operation)
    };
    if let Some(delay) = answer_delay {
        tokio::time::sleep(delay).await;
    }
    // The emulator's own answer against the spec's response schema: its fidelity.
    if let Some(spec) = &shared.spec
        && r.status().is_success()
        && let Ok(collected) = r.body().clone().collect().await
        && let Ok(answer) = serde_json::from_slice::<Json>(&collected.to_bytes())
    {
        let problems = spec.check_response(operation, r.status().as_u16(), &answer);
        if !problems.is_empty() {
            let mut w = shared.world();
            for p in problems {
                w.counters
                    .answer_violations
                    .push(format!("{operation} {path}: {p}"));
            }
        }
    }
    Ok(r)
}

fn find_cluster<'a>(
    account: &'a Account,
    route: &Route,
) -> Result<&'a crate::state::Cluster, ApiError> {
    account.cluster(route.cluster.as_deref().unwrap_or_default())
}

fn dispatch(
    account: &mut Account,
    route: &Route,
    query: &[(String, String)],
    body: &Json,
    base: &str,
) -> Result<Answer, ApiError> {
    let cluster_id = route.cluster.clone().unwrap_or_default();
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    match route.operation {
        "account_get" => Ok(json_answer(
            200,
            &json!({"account": {
                "droplet_limit": 25,
                "floating_ip_limit": 3,
                "email": "producer@example.com",
                "uuid": crate::ACCOUNT_UUID,
                "email_verified": true,
                "status": "active",
                "status_message": "",
                "team": {"uuid": crate::TEAM_UUID, "name": "Emulated team"},
            }}),
        )),
        "kubernetes_list_options" => {
            let c = &account.catalog;
            Ok(json_answer(
                200,
                &json!({"options": {
                    "regions": c.regions.iter().map(|r| json!({"name": r.to_uppercase(), "slug": r})).collect::<Vec<_>>(),
                    "versions": c.versions.iter().map(|(s, k)| json!({"slug": s, "kubernetes_version": k, "supported_features": ["cluster-autoscaler", "docr-integration", "ha-control-plane", "token-authentication"]})).collect::<Vec<_>>(),
                    "sizes": c.sizes.iter().map(|s| json!({"name": s, "slug": s})).collect::<Vec<_>>(),
                }}),
            ))
        }
        "kubernetes_list_clusters" => {
            account.tick_all();
            let per_page: usize = q("per_page").and_then(|v| v.parse().ok()).unwrap_or(20);
            let page: usize = q("page").and_then(|v| v.parse().ok()).unwrap_or(1);
            let all: Vec<&crate::state::Cluster> = account.clusters.values().collect();
            let total = all.len();
            let pages = total.div_ceil(per_page.max(1)).max(1);
            let items: Vec<Json> = all
                .iter()
                .skip((page.max(1) - 1) * per_page)
                .take(per_page)
                .map(|c| Account::cluster_json(c))
                .collect();
            let link =
                |p: usize| format!("{base}/v2/kubernetes/clusters?page={p}&per_page={per_page}");
            let mut links = serde_json::Map::new();
            if page > 1 {
                links.insert("first".into(), json!(link(1)));
                links.insert("prev".into(), json!(link(page - 1)));
            }
            if page < pages {
                links.insert("next".into(), json!(link(page + 1)));
                links.insert("last".into(), json!(link(pages)));
            }
            Ok(json_answer(
                200,
                &json!({"kubernetes_clusters": items, "meta": {"total": total}, "links": {"pages": links}}),
            ))
        }
        "kubernetes_create_cluster" => {
            let id = account.create_cluster(body)?;
            let c = account.cluster(&id)?;
            Ok(json_answer(
                201,
                &json!({"kubernetes_cluster": Account::cluster_json(c)}),
            ))
        }
        "kubernetes_get_cluster" => {
            account.tick(&cluster_id);
            let c = find_cluster(account, route)?;
            Ok(json_answer(
                200,
                &json!({"kubernetes_cluster": Account::cluster_json(c)}),
            ))
        }
        "kubernetes_update_cluster" => {
            account.update_cluster(&cluster_id, body)?;
            let c = find_cluster(account, route)?;
            Ok(json_answer(
                202,
                &json!({"kubernetes_cluster": Account::cluster_json(c)}),
            ))
        }
        "kubernetes_upgrade_cluster" => {
            account.upgrade_cluster(&cluster_id, body)?;
            Ok(no_content_with(202))
        }
        "kubernetes_delete_cluster" => {
            account.delete_cluster(&cluster_id, false)?;
            Ok(no_content())
        }
        "kubernetes_destroy_associatedResourcesDangerous" => {
            account.delete_cluster(&cluster_id, true)?;
            Ok(no_content())
        }
        "kubernetes_get_kubeconfig" | "kubernetes_get_credentials" => {
            let c = find_cluster(account, route)?;
            if c.phase != crate::state::Phase::Running {
                return Err(ApiError::unprocessable(format!(
                    "cluster {} is not running yet: its credentials are not available",
                    c.id
                )));
            }
            // DigitalOcean's default token lifetime is seven days.
            let expiry: u64 = q("expiry_seconds")
                .and_then(|v| v.parse().ok())
                .filter(|s| *s > 0)
                .unwrap_or(7 * 24 * 3600);
            let now = epoch_secs(SystemTime::now());
            let expires = now + expiry;
            let token = format!("emulator-token-{}-{now}", &c.id[c.id.len() - 6..]);
            let server = format!("https://{}.k8s.ondigitalocean.com", c.id);
            // base64 of "-----BEGIN CERTIFICATE-----\nemulator\n-----END CERTIFICATE-----\n"
            let ca = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmVtdWxhdG9yCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K";
            if route.operation == "kubernetes_get_credentials" {
                Ok(json_answer(
                    200,
                    &json!({
                        "server": server, "certificate_authority_data": ca,
                        "client_certificate_data": null, "client_key_data": null,
                        "token": token, "expires_at": rfc3339(expires),
                    }),
                ))
            } else {
                let name = format!("do-{}-{}", c.region, c.name);
                let text = format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: {name}\ncontexts:\n- context:\n    cluster: {name}\n    user: {name}-admin\n  name: {name}\ncurrent-context: {name}\nusers:\n- name: {name}-admin\n  user:\n    token: {token}\n"
                );
                let mut r = Response::new(Full::new(Bytes::from(text)));
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/yaml"),
                );
                Ok(r)
            }
        }
        "kubernetes_list_nodePools" => {
            account.tick(&cluster_id);
            let c = find_cluster(account, route)?;
            Ok(json_answer(
                200,
                &json!({"node_pools": c.pools.iter().map(|p| Account::pool_json(c, p)).collect::<Vec<_>>()}),
            ))
        }
        "kubernetes_add_nodePool" => {
            let id = account.add_pool(&cluster_id, body)?;
            let c = find_cluster(account, route)?;
            let p = c
                .pools
                .iter()
                .find(|p| p.id == id)
                .ok_or_else(ApiError::not_found)?;
            Ok(json_answer(
                201,
                &json!({"node_pool": Account::pool_json(c, p)}),
            ))
        }
        "kubernetes_get_nodePool" => {
            account.tick(&cluster_id);
            let c = find_cluster(account, route)?;
            let p = c
                .pools
                .iter()
                .find(|p| Some(&p.id) == route.pool.as_ref())
                .ok_or_else(ApiError::not_found)?;
            Ok(json_answer(
                200,
                &json!({"node_pool": Account::pool_json(c, p)}),
            ))
        }
        "kubernetes_update_nodePool" => {
            let pool = route.pool.clone().unwrap_or_default();
            account.update_pool(&cluster_id, &pool, body)?;
            let c = find_cluster(account, route)?;
            let p = c
                .pools
                .iter()
                .find(|p| p.id == pool)
                .ok_or_else(ApiError::not_found)?;
            Ok(json_answer(
                202,
                &json!({"node_pool": Account::pool_json(c, p)}),
            ))
        }
        "kubernetes_delete_nodePool" => {
            let pool = route.pool.clone().unwrap_or_default();
            account.delete_pool(&cluster_id, &pool)?;
            Ok(no_content())
        }
        _ => Err(ApiError::not_found()),
    }
}

fn no_content_with(status: u16) -> Answer {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_times() {
        assert_eq!(
            operation_of(
                "DELETE",
                "/v2/kubernetes/clusters/x/destroy_with_associated_resources/dangerous"
            ),
            Some("kubernetes_destroy_associatedResourcesDangerous")
        );
        assert_eq!(operation_of("GET", "/v2/droplets"), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_798_502_400), "2026-12-29T00:00:00Z");
        assert_eq!(
            parse_query(Some("a=%zz%aé")),
            vec![("a".into(), "%zz%aé".into())]
        );
        assert_eq!(
            parse_query(Some("page=2&tag_name=a%3Ab")),
            vec![
                ("page".into(), "2".into()),
                ("tag_name".into(), "a:b".into())
            ]
        );
    }
}
