//! Health through the front door: each listed service asked through the load balancer, with
//! the domain as Host and TLS server name, and its answer compared with what a healthy one is.
//!
//! Each component declares its check where it lists its URL ([`Route::listed`] for an HTTP
//! route, [`Built::listed`] for a TCP entrypoint): the path and what a healthy answer is
//! ([`Check`]). [`run`] asks them all at once, each retried until its deadline, and returns one
//! [`Row`] per check: what `qhub deploy`'s final check fails on and what `qhub status` prints.
//!
//! [`Route::listed`]: super::components::Route::listed
//! [`Built::listed`]: super::components::Built::listed

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value as Json;
use tokio::io::AsyncReadExt as _;

use super::endpoints::ServiceUrl;

/// The port jupyterhub-ssh's SSH server answers on through the load balancer (QHub's
/// `ssh` entrypoint; sftp is 8023).
pub const SSH_PORT: u16 = 8022;

/// What an SSH server's identification string starts with (RFC 4253 §4.2: `SSH-protoversion-
/// softwareversion`, protocol version 2.0; lines before it are allowed and skipped).
pub const SSH_BANNER: &str = "SSH-2.0-";

/// A top-level field of a JSON answer that a healthy service sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The key is present.
    Present(String),
    /// The key holds this string.
    Equals(String, String),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Present(k) => write!(f, "`{k}`"),
            Self::Equals(k, v) => write!(f, "`{k}: {v}`"),
        }
    }
}

/// How a listed service is checked, and what a healthy answer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `GET path` on the domain (the URL's scheme and port): healthy when the status is
    /// `status` and, when `json` is not empty, the body is a JSON object with those fields.
    Http {
        /// The path asked (`/hub/health`).
        path: String,
        /// The status a healthy service answers.
        status: u16,
        /// Fields the JSON body must have (none: the body is not read).
        json: Vec<Field>,
    },
    /// A TCP connection to `port` of the load balancer: healthy when the server's first line
    /// that starts with `SSH-` starts with `prefix` (a server speaks first: SSH's banner).
    Banner {
        /// The URL scheme shown (`ssh`).
        scheme: String,
        /// The load balancer's port.
        port: u16,
        /// What the banner starts with.
        prefix: String,
    },
}

impl Check {
    /// `GET path` answering 200.
    pub fn http(path: impl Into<String>) -> Self {
        Self::Http {
            path: path.into(),
            status: 200,
            json: Vec::new(),
        }
    }

    /// Also requires the JSON body to have `key`.
    #[must_use]
    pub fn json_has(self, key: impl Into<String>) -> Self {
        self.with_field(Field::Present(key.into()))
    }

    /// Also requires the JSON body's `key` to be the string `value`.
    #[must_use]
    pub fn json_equals(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.with_field(Field::Equals(key.into(), value.into()))
    }

    fn with_field(mut self, field: Field) -> Self {
        if let Self::Http { json, .. } = &mut self {
            json.push(field);
        }
        self
    }

    /// A TCP banner check on `port`, shown as `scheme://domain:port`.
    pub fn banner(scheme: impl Into<String>, port: u16, prefix: impl Into<String>) -> Self {
        Self::Banner {
            scheme: scheme.into(),
            port,
            prefix: prefix.into(),
        }
    }

    /// Whether it is an HTTP check (one that goes through an IngressRoute).
    pub fn is_http(&self) -> bool {
        matches!(self, Self::Http { .. })
    }

    /// What a healthy answer is, in words (`GET /hub/health answers 200`).
    pub fn expected(&self) -> String {
        match self {
            Self::Http { path, status, json } if json.is_empty() => {
                format!("GET {path} answers {status}")
            }
            Self::Http { path, status, json } => format!(
                "GET {path} answers {status} with JSON {}",
                json.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            Self::Banner { port, prefix, .. } => {
                format!("TCP {port} sends a banner starting `{prefix}`")
            }
        }
    }
}

impl From<&str> for Check {
    fn from(path: &str) -> Self {
        Self::http(path)
    }
}

impl From<String> for Check {
    fn from(path: String) -> Self {
        Self::http(path)
    }
}

/// jupyterhub-ssh's check: the SSH banner on [`SSH_PORT`].
pub fn ssh_banner() -> Check {
    Check::banner("ssh", SSH_PORT, SSH_BANNER)
}

/// Where the checks go: the load balancer's address (an IP or a host name), and ports to use
/// instead of the URLs' own (tests reach a loopback stand-in on ports the OS chose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The load balancer's address.
    pub address: String,
    /// The URL's port (443, 80, 8022) → the port asked instead.
    pub ports: BTreeMap<u16, u16>,
}

impl Via {
    /// The load balancer at `address`, on the URLs' own ports.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            ports: BTreeMap::new(),
        }
    }

    /// Asks `to` where a URL's port is `from`.
    #[must_use]
    pub fn port(mut self, from: u16, to: u16) -> Self {
        self.ports.insert(from, to);
        self
    }

    fn map(&self, port: u16) -> u16 {
        self.ports.get(&port).copied().unwrap_or(port)
    }
}

/// How long the checks may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Each check is retried until this long after the start (all run at once).
    pub deadline: Duration,
    /// The wait between two tries of a check.
    pub poll: Duration,
    /// The longest one try may take (a service that accepts and never answers).
    pub attempt: Duration,
}

impl Timing {
    /// Retries for `deadline`, every 2 seconds, each try at most 10 seconds.
    pub fn within(deadline: Duration) -> Self {
        Self {
            deadline,
            poll: Duration::from_secs(2),
            attempt: Duration::from_secs(10),
        }
    }
}

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It answered as a healthy service does.
    Healthy,
    /// It did not, by the deadline.
    Unhealthy,
    /// It was not asked (the load balancer cannot be reached from here; see the report).
    NotRun,
}

impl Outcome {
    /// The word printed (`healthy`, `UNHEALTHY`, `not run`).
    pub fn word(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "UNHEALTHY",
            Self::NotRun => "not run",
        }
    }
}

/// One row of the health table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The component that declared the check.
    pub component: String,
    /// Its URL.
    pub url: String,
    /// What a healthy answer is ([`Check::expected`]).
    pub check: String,
    /// The result.
    pub result: Outcome,
    /// What answered, when it was not healthy (`null` otherwise).
    pub answered: Option<String>,
    /// How long the last try took, in seconds (`null` when not run).
    pub latency_secs: Option<f64>,
}

impl Row {
    /// A row for a check that was not run.
    pub fn not_run(url: &ServiceUrl) -> Self {
        Self {
            component: url.component.clone(),
            url: url.url.clone(),
            check: url.check.expected(),
            result: Outcome::NotRun,
            answered: None,
            latency_secs: None,
        }
    }
}

/// The health table and whether it was run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// Whether the checks were asked through the load balancer.
    pub ran: bool,
    /// Why they were not (`null` when they ran).
    pub skipped: Option<String>,
    /// One row per check.
    pub checks: Vec<Row>,
}

impl HealthReport {
    /// Every check listed as not run, because of `why`.
    pub fn skipped(urls: &[ServiceUrl], why: impl Into<String>) -> Self {
        Self {
            ran: false,
            skipped: Some(why.into()),
            checks: urls.iter().map(Row::not_run).collect(),
        }
    }
}

/// The host, port and path of a URL (`https://a.example.com/auth/` → (`a.example.com`, 443,
/// `/auth/`)).
fn host_port(url: &str) -> (String, Option<u16>) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().ok()),
        None => (authority.to_string(), None),
    }
}

/// At most 200 characters of a body, on one line.
fn excerpt(body: &str) -> String {
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    match trimmed.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &trimmed[..i]),
        None => trimmed.to_string(),
    }
}

/// What is wrong with a JSON body, or `None` when it has every field.
fn json_mismatch(body: &str, fields: &[Field]) -> Option<String> {
    let Ok(doc) = serde_json::from_str::<Json>(body) else {
        return Some(format!("a body that is not JSON: {}", excerpt(body)));
    };
    let bad = fields.iter().find(|f| match f {
        Field::Present(k) => doc.get(k).is_none(),
        Field::Equals(k, v) => doc.get(k).and_then(Json::as_str) != Some(v.as_str()),
    })?;
    let key = match bad {
        Field::Present(k) | Field::Equals(k, _) => k,
    };
    Some(match doc.get(key) {
        None => format!("JSON without `{key}`: {}", excerpt(body)),
        Some(v) => format!("JSON with `{key}: {v}`"),
    })
}

/// One try of an HTTP check: `Ok(())` when healthy, else what answered.
async fn try_http(
    url: &ServiceUrl,
    path: &str,
    status: u16,
    json: &[Field],
    via: &Via,
    attempt: Duration,
) -> Result<(), String> {
    let https = url.url.starts_with("https://");
    let (host, own) = host_port(&url.url);
    let port = via.map(own.unwrap_or(if https { 443 } else { 80 }));
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((via.address.as_str(), port))
        .await
        .map_err(|e| format!("resolving the load balancer {}: {e}", via.address))?
        .collect();
    let client = reqwest::Client::builder()
        .timeout(attempt)
        // A new Let's Encrypt certificate may still be on its way: the service is checked, not
        // the certificate.
        .tls_danger_accept_invalid_certs(true)
        .resolve_to_addrs(&host, &addrs)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    let scheme = if https { "https" } else { "http" };
    let target = format!("{scheme}://{host}:{port}{path}");
    let answer = client.get(&target).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {}s", attempt.as_secs_f64())
        } else {
            // reqwest's own text is "error sending request"; the cause says why.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    })?;
    let code = answer.status();
    let body = if json.is_empty() && code.as_u16() == status {
        String::new()
    } else {
        match tokio::time::timeout(attempt, answer.text()).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => format!("(the body could not be read: {e})"),
            Err(_) => format!("(no body within {}s)", attempt.as_secs_f64()),
        }
    };
    if code.as_u16() != status {
        let detail = excerpt(&body);
        return Err(if detail.is_empty() {
            format!("{code}")
        } else {
            format!("{code}: {detail}")
        });
    }
    match json_mismatch(&body, json) {
        Some(m) if !json.is_empty() => Err(format!("{code} with {m}")),
        _ => Ok(()),
    }
}

/// One try of a banner check.
async fn try_banner(port: u16, prefix: &str, via: &Via, attempt: Duration) -> Result<(), String> {
    let port = via.map(port);
    let read = async {
        let mut stream = tokio::net::TcpStream::connect((via.address.as_str(), port))
            .await
            .map_err(|e| format!("connecting to port {port}: {e}"))?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("reading the banner: {e}"))?;
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).to_string();
            // RFC 4253 §4.2: lines before the identification string are allowed.
            let complete: Vec<&str> = text.split("\r\n").collect();
            let (lines, _partial) = complete.split_at(complete.len() - 1);
            if let Some(id) = lines.iter().find(|l| l.starts_with("SSH-")) {
                return if id.starts_with(prefix) {
                    Ok(())
                } else {
                    Err(format!("the banner `{}`", excerpt(id)))
                };
            }
            if n == 0 || seen.len() > 1024 {
                return Err(if seen.is_empty() {
                    "the connection closed without a banner".to_string()
                } else {
                    format!("no banner line, only `{}`", excerpt(&text))
                });
            }
        }
    };
    match tokio::time::timeout(attempt, read).await {
        Ok(r) => r,
        Err(_) => Err(format!("no banner within {}s", attempt.as_secs_f64())),
    }
}

/// Runs one check until healthy or `timing.deadline` (from `start`).
async fn run_one(
    url: &ServiceUrl,
    via: &Via,
    timing: Timing,
    start: Instant,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Row {
    let mut last = String::new();
    loop {
        let left = timing.deadline.saturating_sub(start.elapsed());
        let attempt = timing.attempt.min(left).max(Duration::from_millis(100));
        let tried = Instant::now();
        let outcome = match &url.check {
            Check::Http { path, status, json } => {
                try_http(url, path, *status, json, via, attempt).await
            }
            Check::Banner { port, prefix, .. } => try_banner(*port, prefix, via, attempt).await,
        };
        let latency = Some(tried.elapsed().as_secs_f64());
        let row = |result, answered| Row {
            component: url.component.clone(),
            url: url.url.clone(),
            check: url.check.expected(),
            result,
            answered,
            latency_secs: latency,
        };
        match outcome {
            Ok(()) => return row(Outcome::Healthy, None),
            Err(detail) => {
                if start.elapsed() + timing.poll >= timing.deadline {
                    return row(Outcome::Unhealthy, Some(detail));
                }
                if detail != last {
                    progress(&format!(
                        "{} ({}): {detail}; trying again",
                        url.url, url.component
                    ));
                    last = detail;
                }
                tokio::time::sleep(timing.poll).await;
            }
        }
    }
}

/// Runs every check of `urls` through the load balancer `via`, all at once, each retried until
/// healthy or the deadline. `progress` hears each new unhealthy answer while waiting.
pub async fn run(
    urls: &[ServiceUrl],
    via: &Via,
    timing: Timing,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> HealthReport {
    crate::tls::install_crypto_provider();
    let start = Instant::now();
    let checks = futures::future::join_all(
        urls.iter()
            .map(|u| run_one(u, via, timing, start, progress)),
    )
    .await;
    HealthReport {
        ran: true,
        skipped: None,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_answer_reads_as_english() {
        assert_eq!(
            Check::http("/hub/health").expected(),
            "GET /hub/health answers 200"
        );
        assert_eq!(
            Check::http("/x")
                .json_has("version")
                .json_equals("status", "ok")
                .expected(),
            "GET /x answers 200 with JSON `version` and `status: ok`"
        );
        assert_eq!(
            ssh_banner().expected(),
            "TCP 8022 sends a banner starting `SSH-2.0-`"
        );
    }

    #[test]
    fn a_json_body_is_compared_field_by_field() {
        let fields = [Field::Equals("status".into(), "ok".into())];
        assert_eq!(json_mismatch(r#"{"status": "ok"}"#, &fields), None);
        assert_eq!(
            json_mismatch(r#"{"status": "error"}"#, &fields).unwrap(),
            "JSON with `status: \"error\"`"
        );
        assert!(
            json_mismatch("<html>", &fields)
                .unwrap()
                .contains("not JSON")
        );
        assert!(
            json_mismatch("{}", &[Field::Present("version".into())])
                .unwrap()
                .contains("without `version`")
        );
        assert_eq!(
            host_port("ssh://demo.example.com:8022"),
            ("demo.example.com".into(), Some(8022))
        );
        assert_eq!(
            host_port("https://demo.example.com/hub/"),
            ("demo.example.com".into(), None)
        );
    }
}
