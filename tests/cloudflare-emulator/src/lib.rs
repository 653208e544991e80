//! `qhub-cloudflare-emulator`: the subset of Cloudflare's API v4 that qhub uses for DNS,
//! emulated in process on loopback, for testing `qhub_core::dns::cloudflare` without an
//! account.
//!
//! What it serves, under `/client/v4` (paths and shapes as in Cloudflare's API reference,
//! developers.cloudflare.com/api/resources/dns/subresources/records): `GET /zones?name=`;
//! `GET /zones/{zone}/dns_records?name=&type=`; `POST /zones/{zone}/dns_records`; `GET`,
//! `PATCH`, `PUT` and `DELETE /zones/{zone}/dns_records/{id}`. Every answer is Cloudflare's
//! envelope (`success`, `errors[{code, message}]`, `messages`, `result`, and `result_info`
//! with `page`, `per_page`, `count`, `total_count`, `total_pages` for lists).
//!
//! It is as unkind as the real API:
//! - every request needs `Authorization: Bearer <token>`: a missing or malformed header is 400
//!   with code 6003 (`error_chain` 6111), an unknown token 403 with code 9109 ("Invalid access
//!   token"), a token without write permission writing 403 with code 10000 ("Authentication
//!   error");
//! - lists are paginated (`page`, `per_page`; zones 5..=50 default 20, records 5..=5000
//!   default 100), so a client that reads only the first page misses records;
//! - names are normalised: a record name without the zone is completed with it, `@` is the
//!   apex, answers always carry the full lower-case name;
//! - unknown body fields, unknown record types and invalid content (`A` not an IPv4 address,
//!   `CNAME` not a host name) are 400; an `A`/`AAAA` beside a `CNAME` at the same name is 400
//!   with code 81053, an identical record 400 with code 81057;
//! - faults: the shared fault plan (`qhub_emulator_kit::FaultPlan`); `throttle_next` answers
//!   the next N requests 429 with `Retry-After` and code 971.
//!
//! The error codes are those public reports show Cloudflare returning (cert-manager#4465 for
//! 9109, favonia/cloudflare-ddns#897 for 10000); where none was found the emulator picks one
//! in Cloudflare's ranges (9xxx request errors, 81xxx DNS errors).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use qhub_emulator_kit::{Before, Calls, Effect, FaultPlan, Faults, Rule, Server};
use serde_json::{Value as Json, json};

/// The token the emulator accepts by default (with read and write permission).
pub const DEFAULT_TOKEN: &str = "cf-emulator-token";

/// A DNS record held by the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Id (32 hex digits).
    pub id: String,
    /// The zone's id.
    pub zone_id: String,
    /// Type.
    pub kind: String,
    /// Full name, lower case.
    pub name: String,
    /// Value.
    pub content: String,
    /// Proxied.
    pub proxied: bool,
    /// TTL (1: automatic).
    pub ttl: u64,
    /// Comment.
    pub comment: Option<String>,
}

impl Record {
    fn json(&self, zone_name: &str) -> Json {
        json!({
            "id": self.id, "zone_id": self.zone_id, "zone_name": zone_name,
            "type": self.kind, "name": self.name, "content": self.content,
            "proxiable": true, "proxied": self.proxied, "ttl": self.ttl,
            "comment": self.comment, "tags": [], "meta": {},
            "created_on": "2026-01-01T00:00:00Z", "modified_on": "2026-01-01T00:00:00Z",
        })
    }
}

/// What the emulator has served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Every request received.
    pub requests: u64,
    /// Mutating requests carried out (POST, PATCH, PUT, DELETE that succeeded).
    pub mutations: u64,
    /// Requests refused for their token (400/403).
    pub refused: u64,
    /// 429s injected.
    pub throttled: u64,
    /// Requests by `METHOD path-template`.
    pub by_operation: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct World {
    zones: Vec<(String, String)>,
    records: Vec<Record>,
    next_id: u64,
    counters: Counters,
    faults: Faults,
}

impl World {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{:032x}", 0xcf00_0000_u64 + self.next_id)
    }
}

struct Shared {
    world: Mutex<World>,
    tokens: Vec<String>,
    read_only_tokens: Vec<String>,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running emulator. Dropping it stops the server.
pub struct CloudflareEmulator {
    shared: Arc<Shared>,
    server: Server,
}

impl std::fmt::Debug for CloudflareEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudflareEmulator")
            .field("addr", &self.server.addr())
            .finish()
    }
}

/// How the emulator starts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Zones of the account, by name.
    pub zones: Vec<String>,
    /// Tokens allowed to read and write.
    pub tokens: Vec<String>,
    /// Tokens allowed to read only (a write is 403, code 10000).
    pub read_only_tokens: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            zones: vec!["example.com".into()],
            tokens: vec![DEFAULT_TOKEN.into()],
            read_only_tokens: Vec::new(),
        }
    }
}

impl CloudflareEmulator {
    /// Starts an emulator on `127.0.0.1` at a free port (within a Tokio runtime).
    pub async fn start(options: Options) -> std::io::Result<Self> {
        let mut world = World::default();
        for z in &options.zones {
            let id = world.id();
            world.zones.push((id, z.to_ascii_lowercase()));
        }
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            tokens: options.tokens,
            read_only_tokens: options.read_only_tokens,
        });
        let served = shared.clone();
        let server = Server::start_infallible("Cloudflare emulator", 0, move |req| {
            let shared = served.clone();
            async move { handle(req, &shared).await }
        })
        .await?;
        Ok(Self { shared, server })
    }

    /// `http://127.0.0.1:PORT/client/v4`: what `QHUB_CLOUDFLARE_API_URL` should be.
    pub fn url(&self) -> String {
        format!("{}/client/v4", self.server.url())
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.shared.world().counters.clone()
    }

    /// Mutating requests carried out so far.
    pub fn mutations(&self) -> u64 {
        self.shared.world().counters.mutations
    }

    /// Every record held.
    pub fn records(&self) -> Vec<Record> {
        self.shared.world().records.clone()
    }

    /// Adds a record directly (one a test arranges: someone else's), returning its id. The
    /// name must be a full name in one of the zones.
    pub fn insert(&self, kind: &str, name: &str, content: &str, comment: Option<&str>) -> String {
        let mut w = self.shared.world();
        let name = name.to_ascii_lowercase();
        let zone_id = w
            .zones
            .iter()
            .find(|(_, z)| name == *z || name.ends_with(&format!(".{z}")))
            .map(|(id, _)| id.clone())
            .unwrap_or_default();
        let id = w.id();
        w.records.push(Record {
            id: id.clone(),
            zone_id,
            kind: kind.into(),
            name,
            content: content.into(),
            proxied: false,
            ttl: 1,
            comment: comment.map(str::to_string),
        });
        id
    }

    /// Changes a record's value directly (an edit made by hand in Cloudflare's dashboard).
    pub fn set_content(&self, id: &str, content: &str) {
        let mut w = self.shared.world();
        if let Some(r) = w.records.iter_mut().find(|r| r.id == id) {
            r.content = content.into();
        }
    }

    /// Answers the next `n` requests with 429 and `Retry-After: retry_after_secs`.
    pub fn throttle_next(&self, n: u32, retry_after_secs: u64) {
        self.set_fault_plan(FaultPlan {
            retry_after_secs,
            rules: vec![Rule::new(
                "*",
                Calls::First(u64::from(n)),
                Effect::Status(429),
            )],
            ..FaultPlan::default()
        });
    }

    /// Puts `plan` in force (calls counted from now; routes are named `METHOD path-template`
    /// as in [`Counters::by_operation`]). A drawn or ruled 429 is Cloudflare's code 971 with
    /// the plan's `Retry-After`; another status is answered with code 1000.
    pub fn set_fault_plan(&self, plan: FaultPlan) {
        self.shared.world().faults.set(plan);
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, body: Json) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn ok(result: Json) -> Answer {
    answer(
        StatusCode::OK,
        json!({"success": true, "errors": [], "messages": [], "result": result}),
    )
}

fn error(status: StatusCode, code: i64, message: &str) -> Answer {
    answer(
        status,
        json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null}),
    )
}

fn query(uri: &hyper::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.replace("%2E", ".").replace("%40", "@"))
        })
        .collect()
}

/// One page of `items`, with `result_info`.
fn page(items: Vec<Json>, q: &BTreeMap<String, String>, default: usize, max: usize) -> Answer {
    let per_page = match q.get("per_page").map(|v| v.parse::<usize>()) {
        None => default,
        Some(Ok(n)) if (5..=max).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                1004,
                &format!("per_page must be between 5 and {max}"),
            );
        }
    };
    let page = match q.get("page").map(|v| v.parse::<usize>()) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, 1004, "page must be at least 1"),
    };
    let total = items.len();
    let slice: Vec<Json> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    answer(
        StatusCode::OK,
        json!({
            "success": true, "errors": [], "messages": [],
            "result": slice,
            "result_info": {"page": page, "per_page": per_page, "count": slice.len(),
                "total_count": total, "total_pages": total.div_ceil(per_page).max(1)},
        }),
    )
}

fn template(method: &str, path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .map(|s| if s.len() == 32 { "{id}" } else { s })
        .collect();
    format!("{method} {}", parts.join("/"))
}

async fn handle(req: Request<Incoming>, shared: &Shared) -> Answer {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let q = query(req.uri());
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut w = shared.world();
    w.counters.requests += 1;
    let route = template(&method, &path);
    *w.counters.by_operation.entry(route.clone()).or_default() += 1;
    let (before, _) = w.faults.before(&route);
    if let Before::Status(code) = before
        && code != 429
    {
        return error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            1000,
            "injected fault",
        );
    }
    if matches!(before, Before::Throttle | Before::Status(429)) {
        w.counters.throttled += 1;
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            971,
            "Please wait and consider throttling your request speed",
        );
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from(w.faults.plan().retry_after_secs),
        );
        return r;
    }
    let token = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
    let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
        w.counters.refused += 1;
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"success": false, "messages": [], "result": null, "errors": [{"code": 6003,
                "message": "Invalid request headers",
                "error_chain": [{"code": 6111, "message": "Invalid format for Authorization header"}]}]}),
        );
    };
    let writer = shared.tokens.iter().any(|t| t == token);
    let reader = writer || shared.read_only_tokens.iter().any(|t| t == token);
    if !reader {
        w.counters.refused += 1;
        return error(StatusCode::FORBIDDEN, 9109, "Invalid access token");
    }
    let mutating = method != "GET";
    if mutating && !writer {
        w.counters.refused += 1;
        return error(StatusCode::FORBIDDEN, 10000, "Authentication error");
    }
    let Some(rest) = path.strip_prefix("/client/v4") else {
        return error(StatusCode::NOT_FOUND, 7003, "Could not route to this path");
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let response = match (method.as_str(), parts.as_slice()) {
        ("GET", ["", "zones"]) => {
            let name = q.get("name").map(|n| n.to_ascii_lowercase());
            let items: Vec<Json> = w
                .zones
                .iter()
                .filter(|(_, z)| name.as_ref().is_none_or(|n| n == z))
                .map(|(id, z)| json!({"id": id, "name": z, "status": "active", "paused": false, "type": "full"}))
                .collect();
            page(items, &q, 20, 50)
        }
        (_, ["", "zones", zone, "dns_records", rest @ ..]) => {
            let Some(zone_name) = w
                .zones
                .iter()
                .find(|(id, _)| id == zone)
                .map(|(_, n)| n.clone())
            else {
                return error(
                    StatusCode::NOT_FOUND,
                    7003,
                    "Could not route to /zones/{zone}: the zone identifier is invalid",
                );
            };
            records(&mut w, &method, zone, &zone_name, rest, &q, &body)
        }
        _ => error(StatusCode::NOT_FOUND, 7003, "Could not route to this path"),
    };
    if mutating && response.status().is_success() {
        w.counters.mutations += 1;
    }
    response
}

const FIELDS: &[&str] = &[
    "type", "name", "content", "ttl", "proxied", "comment", "tags", "priority", "settings", "data",
    "id",
];
const TYPES: &[&str] = &[
    "A", "AAAA", "CAA", "CERT", "CNAME", "DNSKEY", "DS", "HTTPS", "LOC", "MX", "NAPTR", "NS",
    "PTR", "SMIMEA", "SRV", "SSHFP", "SVCB", "TLSA", "TXT", "URI",
];

fn full_name(name: &str, zone: &str) -> String {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if n == "@" || n.is_empty() {
        zone.to_string()
    } else if n == zone || n.ends_with(&format!(".{zone}")) {
        n
    } else {
        format!("{n}.{zone}")
    }
}

fn is_host(s: &str) -> bool {
    let s = s.trim_end_matches('.');
    !s.is_empty()
        && s.len() <= 253
        && s.parse::<IpAddr>().is_err()
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Checks a record body; `partial` for PATCH. Returns the merged record, or the code and
/// message of a 400.
fn check(
    body: &Json,
    base: Option<&Record>,
    zone: &str,
    partial: bool,
) -> Result<Record, (i64, String)> {
    let bad = |code, m: &str| Err((code, m.to_string()));
    let Some(obj) = body.as_object() else {
        return bad(9207, "Request body is invalid.");
    };
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return bad(
            9207,
            &format!("Request body is invalid: unknown field `{k}`"),
        );
    }
    let s = |k: &str| obj.get(k).and_then(Json::as_str).map(str::to_string);
    let mut r = base.cloned().unwrap_or(Record {
        id: String::new(),
        zone_id: String::new(),
        kind: String::new(),
        name: String::new(),
        content: String::new(),
        proxied: false,
        ttl: 1,
        comment: None,
    });
    for k in ["type", "name", "content"] {
        if !partial && s(k).is_none() {
            return bad(9000 + 5, &format!("DNS record {k} is required"));
        }
    }
    if let Some(t) = s("type") {
        if !TYPES.contains(&t.as_str()) {
            return bad(9004, &format!("Invalid DNS record type `{t}`"));
        }
        r.kind = t;
    }
    if let Some(n) = s("name") {
        r.name = full_name(&n, zone);
    }
    if !(r.name == zone || r.name.ends_with(&format!(".{zone}"))) {
        return bad(9005, "DNS record name is not in the zone");
    }
    if let Some(c) = s("content") {
        r.content = c;
    }
    let valid = match r.kind.as_str() {
        "A" => r.content.parse::<Ipv4Addr>().is_ok(),
        "AAAA" => r.content.parse::<Ipv6Addr>().is_ok(),
        "CNAME" => is_host(&r.content),
        _ => !r.content.is_empty(),
    };
    if !valid {
        return bad(
            9005,
            &format!("Content for {} record is invalid: `{}`", r.kind, r.content),
        );
    }
    if r.kind == "CNAME" {
        r.content = r.content.trim_end_matches('.').to_ascii_lowercase();
    }
    match obj.get("proxied") {
        None | Some(Json::Null) => {}
        Some(Json::Bool(b)) => r.proxied = *b,
        Some(_) => return bad(9003, "proxied must be a boolean"),
    }
    match obj.get("ttl") {
        None => {}
        Some(t) => match t.as_u64() {
            Some(t) if t == 1 || (60..=86400).contains(&t) => r.ttl = t,
            _ => {
                return bad(
                    9021,
                    "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.",
                );
            }
        },
    }
    match obj.get("comment") {
        None => {}
        Some(Json::Null) => r.comment = None,
        Some(Json::String(c)) if c.chars().count() <= 100 => r.comment = Some(c.clone()),
        Some(_) => {
            return bad(
                9910,
                "DNS record comment is invalid or longer than 100 characters",
            );
        }
    }
    Ok(r)
}

/// Whether `r` may stand beside the zone's other records (Cloudflare's rules).
fn conflict(records: &[Record], r: &Record) -> Option<Answer> {
    let same_name = records
        .iter()
        .filter(|o| o.zone_id == r.zone_id && o.name == r.name && o.id != r.id);
    for o in same_name {
        let address = |k: &str| matches!(k, "A" | "AAAA");
        if (r.kind == "CNAME" && (address(&o.kind) || o.kind == "CNAME"))
            || (address(&r.kind) && o.kind == "CNAME")
        {
            return Some(error(
                StatusCode::BAD_REQUEST,
                81053,
                "An A, AAAA, or CNAME record with that host already exists.",
            ));
        }
        if o.kind == r.kind && o.content == r.content {
            return Some(error(
                StatusCode::BAD_REQUEST,
                81057,
                "Record already exists.",
            ));
        }
    }
    None
}

fn records(
    w: &mut World,
    method: &str,
    zone: &str,
    zone_name: &str,
    rest: &[&str],
    q: &BTreeMap<String, String>,
    body: &Bytes,
) -> Answer {
    let parsed: Json = if body.is_empty() {
        Json::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(j) => j,
            Err(_) => return error(StatusCode::BAD_REQUEST, 9207, "Request body is invalid."),
        }
    };
    match (method, rest) {
        ("GET", []) => {
            if let Some(k) = q.keys().find(|k| {
                !["name", "type", "page", "per_page", "content", "comment"].contains(&k.as_str())
            }) {
                return error(
                    StatusCode::BAD_REQUEST,
                    9207,
                    &format!("unknown filter `{k}`"),
                );
            }
            let name = q.get("name").map(|n| full_name(n, zone_name));
            let items: Vec<Json> = w
                .records
                .iter()
                .filter(|r| r.zone_id == zone)
                .filter(|r| name.as_ref().is_none_or(|n| *n == r.name))
                .filter(|r| q.get("type").is_none_or(|t| *t == r.kind))
                .map(|r| r.json(zone_name))
                .collect();
            page(items, q, 100, 5000)
        }
        ("POST", []) => {
            let mut r = match check(&parsed, None, zone_name, false) {
                Ok(r) => r,
                Err((code, m)) => return error(StatusCode::BAD_REQUEST, code, &m),
            };
            r.zone_id = zone.to_string();
            if let Some(a) = conflict(&w.records, &r) {
                return a;
            }
            r.id = w.id();
            w.records.push(r.clone());
            ok(r.json(zone_name))
        }
        (m, [id]) => {
            let Some(i) = w
                .records
                .iter()
                .position(|r| r.id == *id && r.zone_id == zone)
            else {
                return error(StatusCode::NOT_FOUND, 81044, "Record does not exist.");
            };
            match m {
                "GET" => ok(w.records[i].json(zone_name)),
                "DELETE" => {
                    let r = w.records.remove(i);
                    ok(json!({"id": r.id}))
                }
                "PATCH" | "PUT" => {
                    let base = (m == "PATCH").then(|| w.records[i].clone());
                    let mut r = match check(&parsed, base.as_ref(), zone_name, m == "PATCH") {
                        Ok(r) => r,
                        Err((code, m)) => return error(StatusCode::BAD_REQUEST, code, &m),
                    };
                    r.id = w.records[i].id.clone();
                    r.zone_id = zone.to_string();
                    if let Some(a) = conflict(&w.records, &r) {
                        return a;
                    }
                    w.records[i] = r.clone();
                    ok(r.json(zone_name))
                }
                _ => error(StatusCode::METHOD_NOT_ALLOWED, 10405, "Method not allowed"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, 7003, "Could not route to this path"),
    }
}
