//! A small typed client of Cloudflare's API v4, for the one record a deployment needs.
//!
//! - **Auth**: `Authorization: Bearer $CLOUDFLARE_TOKEN` (an API token with Zone:DNS:Edit on
//!   the zone, and Zone:Zone:Read to find it), kept in a [`SecretString`] that prints `***`
//!   and is never logged. The token is never sent over plain HTTP to a non-loopback host.
//! - **Endpoint**: `QHUB_CLOUDFLARE_API_URL` (default [`DEFAULT_API_URL`]), for emulators.
//! - **Calls** (paths as in Cloudflare's API reference, developers.cloudflare.com/api):
//!   `GET /zones?name=` to find the zone, walking up the labels of the domain
//!   (`a.b.example.com`, then `b.example.com`, then `example.com`); `GET
//!   /zones/{zone}/dns_records?name=` (paginated, `page`/`per_page`/`result_info`); `POST`,
//!   `PATCH` and `DELETE /zones/{zone}/dns_records/{id}`.
//! - **Retries** through [`crate::retry::retry_call`]: reads, `PATCH` and `DELETE` of
//!   a record by id (idempotent) after any retryable failure; a `POST` (create) only when
//!   refused with 429, since after a 5xx it may have been carried out. `Retry-After` is
//!   honoured.
//! - **Errors**: Cloudflare's envelope (`success`, `errors[{code, message}]`) is parsed into
//!   [`DnsError`]; a refused token says which permission the token needs, a missing zone says
//!   which names were looked up.
//! - **Ownership**: records qhub writes carry the comment [`super::owner_comment`]. A record of
//!   the same type and name is the record the deployment needs and is updated in place; a
//!   record of the other type (`A` where a `CNAME` must go, or the reverse) is deleted only
//!   when it carries our comment, otherwise the apply stops and says what to do. On destroy
//!   only the records of the name that carry our comment are deleted
//!   ([`Cloudflare::delete_owned`]). Nothing else is ever touched.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::{DnsError, Outcome};
use crate::cloud::http::{
    Auth, BearerToken, Body, HttpError, Reply, Request, RestClient, RestOptions, SetupError,
};
use crate::cloud::stats::ApiStats;
use crate::keycloak::SecretString;
use crate::kubernetes::endpoints::DnsRecord;
use crate::retry::{CallKind, RetryPolicy};

/// Cloudflare's API.
pub const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";
/// The variable overriding the API endpoint (an emulator).
pub const API_URL_ENV: &str = "QHUB_CLOUDFLARE_API_URL";
/// The variable holding the API token (QHub's name for it).
pub const TOKEN_ENV: &str = "CLOUDFLARE_TOKEN";

/// How the client behaves.
#[derive(Clone)]
pub struct CloudflareOptions {
    /// The API endpoint, with its `/client/v4`.
    pub base_url: String,
    /// The API token.
    pub token: SecretString,
    /// The retry policy of every call; the engine's by default.
    pub retry: RetryPolicy,
    /// Records per page of a list (Cloudflare: 5..=5000000, default 100).
    pub per_page: u32,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl fmt::Debug for CloudflareOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudflareOptions")
            .field("base_url", &self.base_url)
            .field("token", &"***")
            .field("per_page", &self.per_page)
            .finish_non_exhaustive()
    }
}

impl CloudflareOptions {
    /// Options for `token` at the default endpoint.
    pub fn new(token: SecretString) -> Self {
        Self {
            base_url: DEFAULT_API_URL.into(),
            token,
            retry: RetryPolicy::default(),
            per_page: 100,
            timeout: Duration::from_secs(30),
        }
    }

    /// Options from the environment: [`TOKEN_ENV`] (required) and [`API_URL_ENV`].
    pub fn from_env() -> Result<Self, DnsError> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let token = var(TOKEN_ENV).ok_or(DnsError::MissingToken { var: TOKEN_ENV })?;
        let mut options = Self::new(SecretString::new(token.trim()));
        if let Some(url) = var(API_URL_ENV) {
            options.base_url = url;
        }
        Ok(options)
    }
}

/// A zone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Zone {
    /// Cloudflare's id.
    pub id: String,
    /// Its name (`example.com`).
    pub name: String,
}

/// A DNS record as Cloudflare returns it (the fields qhub reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Record {
    /// Cloudflare's id.
    pub id: String,
    /// `A`, `AAAA`, `CNAME`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The full name.
    pub name: String,
    /// The value.
    pub content: String,
    /// Whether Cloudflare's proxy answers for it.
    #[serde(default)]
    pub proxied: bool,
    /// Its comment.
    #[serde(default)]
    pub comment: Option<String>,
}

impl Record {
    /// True when the record carries `comment` (ours).
    pub fn is_owned(&self, comment: &str) -> bool {
        self.comment.as_deref() == Some(comment)
    }
}

/// What is at the name: the records of the kinds that matter for an `A`/`CNAME`.
#[derive(Debug, Clone)]
pub struct Found {
    /// The zone.
    pub zone: Zone,
    /// `A`, `AAAA` and `CNAME` records of the name.
    pub records: Vec<Record>,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    #[serde(default)]
    result: Json,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct ApiMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct ResultInfo {
    #[serde(default)]
    page: u32,
    #[serde(default)]
    total_pages: Option<u32>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    per_page: Option<u32>,
}

/// The Cloudflare client. Cheap to clone.
#[derive(Clone)]
pub struct Cloudflare {
    rest: RestClient,
    options: CloudflareOptions,
}

impl fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cloudflare")
            .field("base", &self.rest.endpoint())
            .finish_non_exhaustive()
    }
}

/// One attempt's outcome as a [`DnsError`]: the envelope of a success; a refused token as
/// [`DnsError::Refused`] naming `domain`; any other error answer with Cloudflare's codes.
fn judge(
    outcome: Result<Reply, HttpError>,
    what: &str,
    domain: &str,
) -> Result<Envelope, DnsError> {
    let transport = |message: String| DnsError::Transport {
        what: what.into(),
        message,
    };
    let res = match outcome {
        Ok(res) => res,
        // reqwest's message without the URL: the zone's path is no one's business in a log.
        Err(HttpError::Transport { source, .. } | HttpError::Body { source }) => {
            return Err(transport(source.without_url().to_string()));
        }
        Err(e) => return Err(transport(e.to_string())),
    };
    let status = res.status;
    let retry_after = res.retry_after();
    let envelope: Option<Envelope> = serde_json::from_slice(&res.body).ok();
    if status.is_success() && envelope.as_ref().is_some_and(|e| e.success) {
        return envelope.ok_or_else(|| DnsError::Decode {
            what: what.into(),
            message: "no body".into(),
        });
    }
    let errors: Vec<(i64, String)> = envelope
        .map(|e| e.errors.into_iter().map(|m| (m.code, m.message)).collect())
        .unwrap_or_default();
    let errors = if errors.is_empty() {
        vec![(
            0,
            status
                .canonical_reason()
                .unwrap_or("unknown error")
                .to_string(),
        )]
    } else {
        errors
    };
    // Cloudflare answers a malformed or unknown token with 400 + 6003/6111, 401 or 403 +
    // 9109 ("Invalid access token"), and a token without the permission with 403 + 10000
    // ("Authentication error") — as reported in cert-manager#4465 and favonia/
    // cloudflare-ddns#897; the API reference documents the envelope, not the codes.
    let header_error = status == StatusCode::BAD_REQUEST
        && errors.iter().any(|(c, _)| matches!(c, 6003 | 6111 | 9106));
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN || header_error {
        return Err(DnsError::Refused {
            what: what.into(),
            message: super::join(&errors),
            domain: domain.into(),
        });
    }
    Err(DnsError::Api {
        what: what.into(),
        status: status.as_u16(),
        errors,
        retry_after,
    })
}

/// The zone names that may hold `name`, longest first, down to two labels.
pub fn zone_candidates(name: &str) -> Vec<String> {
    let name = normalise(name);
    let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
    (0..labels.len().saturating_sub(1))
        .map(|i| labels[i..].join("."))
        .collect()
}

/// A name as Cloudflare compares it: lower case, no trailing dot.
pub fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn is_address_kind(kind: &str) -> bool {
    matches!(kind, "A" | "AAAA" | "CNAME")
}

impl Cloudflare {
    /// A client with `options`, counting its calls into `stats`.
    pub fn new(options: CloudflareOptions, stats: Arc<ApiStats>) -> Result<Self, DnsError> {
        let base = options.base_url.trim_end_matches('/').to_string();
        let mut rest_options = RestOptions::new(
            "Cloudflare",
            base.as_str(),
            Auth::Bearer(Arc::new(BearerToken::new(options.token.expose()))),
        );
        rest_options.timeout = options.timeout;
        rest_options.connect_timeout = None;
        let rest = RestClient::new(rest_options, stats, options.retry).map_err(|e| {
            DnsError::Setup(match e {
                SetupError::NotAUrl { reason, .. } => {
                    format!("{API_URL_ENV}={base} is not a URL: {reason}")
                }
                SetupError::PlainHttp { .. } => format!(
                    "{API_URL_ENV}={base} is plain HTTP: the token would travel unencrypted; use https"
                ),
                SetupError::Scheme { scheme } => {
                    format!("{API_URL_ENV}: unsupported scheme `{scheme}`")
                }
                other => format!("cannot build the HTTP client: {other}"),
            })
        })?;
        Ok(Self { rest, options })
    }

    /// Sets the retry policy of every call.
    #[must_use]
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = policy;
        self.rest = self.rest.with_policy(policy);
        self
    }

    /// The calls made so far (by operation, mutating counted apart).
    pub fn stats(&self) -> &Arc<ApiStats> {
        self.rest.stats()
    }

    /// Sends one call under the retry policy and returns the envelope of a success.
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Json>,
        what: &str,
        domain: &str,
    ) -> Result<Envelope, DnsError> {
        let url = self.rest.url(path_and_query);
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        let op: Vec<&str> = path
            .split('/')
            .map(|s| if s.len() == 32 { "{id}" } else { s })
            .collect();
        let operation = format!("{method} {}", op.join("/"));
        let mut request = Request::new(&operation, method.clone(), &url);
        request.mutating = method != Method::GET;
        // A create is the one call that is not idempotent.
        request.retry = if method == Method::POST {
            CallKind::Mutation
        } else {
            CallKind::Read
        };
        if let Some(b) = body {
            request.body = Body::Json(b);
        }
        self.rest
            .send(what, &request, |outcome| judge(outcome, what, domain))
            .await
    }

    /// Every item of a paginated list at `path` (which carries its own query).
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        max_per_page: u32,
        what: &str,
        domain: &str,
    ) -> Result<Vec<T>, DnsError> {
        let mut out = Vec::new();
        // Bounded: 1,000 pages is more than any zone holds for one name.
        for page in 1..=1000u32 {
            let sep = if path.contains('?') { '&' } else { '?' };
            let q = format!(
                "{path}{sep}page={page}&per_page={}",
                self.options.per_page.clamp(5, max_per_page)
            );
            let env = self.call(Method::GET, &q, None, what, domain).await?;
            let items: Vec<T> =
                serde_json::from_value(env.result).map_err(|e| DnsError::Decode {
                    what: what.into(),
                    message: e.to_string(),
                })?;
            let got = items.len();
            out.extend(items);
            let more = match env.result_info {
                Some(ResultInfo {
                    total_pages: Some(total),
                    page: p,
                    ..
                }) => p.max(page) < total,
                Some(ResultInfo {
                    count, per_page, ..
                }) => {
                    let per = per_page.unwrap_or(self.options.per_page) as usize;
                    count.map_or(got, |c| c as usize) >= per && got > 0
                }
                None => false,
            };
            if !more {
                return Ok(out);
            }
        }
        Ok(out)
    }

    /// The zone holding `name`: the longest of its parent names that is a zone of the
    /// account, looked up one at a time.
    pub async fn find_zone(&self, name: &str) -> Result<Zone, DnsError> {
        let tried = zone_candidates(name);
        for candidate in &tried {
            let what = format!("looking up zone {candidate}");
            let zones: Vec<Zone> = self
                // Zones: at most 50 a page (the API reference's `per_page` for List Zones).
                .list(&format!("/zones?name={candidate}"), 50, &what, name)
                .await?;
            if let Some(z) = zones.into_iter().find(|z| normalise(&z.name) == *candidate) {
                return Ok(z);
            }
        }
        Err(DnsError::ZoneNotFound {
            domain: normalise(name),
            tried,
        })
    }

    /// The zone and the `A`/`AAAA`/`CNAME` records of `name`.
    pub async fn lookup(&self, name: &str) -> Result<Found, DnsError> {
        let name = normalise(name);
        let zone = self.find_zone(&name).await?;
        let records: Vec<Record> = self
            .list(
                &format!("/zones/{}/dns_records?name={name}", zone.id),
                5000,
                &format!("listing the DNS records of {name}"),
                &name,
            )
            .await?;
        let records = records
            .into_iter()
            .filter(|r| normalise(&r.name) == name && is_address_kind(&r.kind))
            .collect();
        Ok(Found { zone, records })
    }

    /// Makes `want` exist in Cloudflare: created, updated in place, or unchanged (nothing
    /// written). A record of the other type at the name is deleted first when it carries
    /// `comment`; otherwise nothing is changed and the error says what to do.
    pub async fn ensure(&self, want: &DnsRecord, comment: &str) -> Result<Outcome, DnsError> {
        let name = normalise(&want.name);
        let found = self.lookup(&name).await?;
        let zone = &found.zone;
        let same: Vec<&Record> = found
            .records
            .iter()
            .filter(|r| r.kind == want.kind)
            .collect();
        // A CNAME cannot share its name with any record; an A may sit beside an AAAA.
        let blocking: Vec<&Record> = found
            .records
            .iter()
            .filter(|r| r.kind != want.kind && (want.kind == "CNAME" || r.kind == "CNAME"))
            .collect();
        if let Some(foreign) = blocking.iter().find(|r| !r.is_owned(comment)) {
            return Err(DnsError::Conflict(format!(
                "Cloudflare already has {} {} -> {} in zone {}, not made by qhub (its comment is not `{comment}`); the deployment needs {} {name} -> {}. Delete that record in Cloudflare (or give it the comment `{comment}` to let qhub replace it), then re-run",
                foreign.kind, foreign.name, foreign.content, zone.name, want.kind, want.value
            )));
        }
        if same.len() > 1 {
            return Err(DnsError::Conflict(format!(
                "Cloudflare has {} {} records for {name} in zone {}; qhub manages exactly one. Delete the extra ones in Cloudflare, then re-run",
                same.len(),
                want.kind,
                zone.name
            )));
        }
        // Let's Encrypt prefers IPv6: an AAAA beside our A that points elsewhere makes its
        // validation fail (letsencrypt.org/docs/ipv6-support). Not ours to delete: say so.
        for other in found.records.iter().filter(|r| r.kind == "AAAA") {
            tracing::warn!(
                record = %other.name,
                content = %other.content,
                "an AAAA record stands beside the A record qhub manages; Let's Encrypt validates over IPv6 first, so it must reach the same load balancer (or be deleted)"
            );
        }
        let body = json!({
            "type": want.kind,
            "name": name,
            "content": want.value,
            "proxied": false,
            "ttl": 1,
            "comment": comment,
        });
        let mut replaced = false;
        for old in blocking {
            tracing::info!(record = %old.name, kind = %old.kind, "deleting our record of the other type");
            self.call(
                Method::DELETE,
                &format!("/zones/{}/dns_records/{}", zone.id, old.id),
                None,
                &format!("deleting {} {}", old.kind, old.name),
                &name,
            )
            .await?;
            replaced = true;
        }
        if let Some(existing) = same.first() {
            let matches = existing.content.eq_ignore_ascii_case(&want.value) && !existing.proxied;
            if matches && existing.is_owned(comment) {
                return Ok(Outcome::Unchanged);
            }
            if matches {
                // The right value already, made by someone else: leave it as it is.
                return Ok(Outcome::Unchanged);
            }
            tracing::info!(record = %name, from = %existing.content, to = %want.value, "updating the DNS record");
            self.call(
                Method::PATCH,
                &format!("/zones/{}/dns_records/{}", zone.id, existing.id),
                Some(&body),
                &format!("updating {} {name}", want.kind),
                &name,
            )
            .await?;
            return Ok(Outcome::Updated);
        }
        tracing::info!(record = %name, value = %want.value, "creating the DNS record");
        let created = self
            .call(
                Method::POST,
                &format!("/zones/{}/dns_records", zone.id),
                Some(&body),
                &format!("creating {} {name}", want.kind),
                &name,
            )
            .await;
        match created {
            Ok(_) => Ok(if replaced {
                Outcome::Replaced
            } else {
                Outcome::Created
            }),
            // 81057 "Record already exists": an earlier create whose answer was lost.
            Err(DnsError::Api { errors, .. }) if errors.iter().any(|(c, _)| *c == 81057) => {
                Ok(Outcome::Created)
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the `A`/`AAAA`/`CNAME` records of `name` that carry `comment` (the ones qhub
    /// wrote for this deployment); every other record is left as it is and returned in
    /// [`Deleted::kept`]. Idempotent: nothing ours at the name deletes nothing, and a record
    /// already gone when its `DELETE` arrives (404, code 81044) counts as deleted.
    pub async fn delete_owned(&self, name: &str, comment: &str) -> Result<Deleted, DnsError> {
        let name = normalise(name);
        let found = self.lookup(&name).await?;
        let (ours, kept): (Vec<Record>, Vec<Record>) =
            found.records.into_iter().partition(|r| r.is_owned(comment));
        let zone = found.zone;
        for r in &ours {
            tracing::info!(record = %r.name, kind = %r.kind, "deleting the DNS record qhub wrote");
            let deleted = self
                .call(
                    Method::DELETE,
                    &format!("/zones/{}/dns_records/{}", zone.id, r.id),
                    None,
                    &format!("deleting {} {}", r.kind, r.name),
                    &name,
                )
                .await;
            match deleted {
                Ok(_) => {}
                // 81044 "Record does not exist.": deleted meanwhile (an earlier try whose
                // answer was lost).
                Err(DnsError::Api {
                    status: 404,
                    errors,
                    ..
                }) if errors.iter().any(|(c, _)| *c == 81044) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Deleted {
            zone,
            deleted: ours,
            kept,
        })
    }
}

/// What [`Cloudflare::delete_owned`] did at a name.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// The zone.
    pub zone: Zone,
    /// The records deleted (they carried our comment).
    pub deleted: Vec<Record>,
    /// The `A`/`AAAA`/`CNAME` records at the name left in place: they do not carry our
    /// comment, so they are not ours.
    pub kept: Vec<Record>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_candidates_walk_up_the_labels() {
        assert_eq!(
            zone_candidates("A.b.Example.com."),
            ["a.b.example.com", "b.example.com", "example.com"]
        );
        assert_eq!(zone_candidates("example.com"), ["example.com"]);
        assert!(zone_candidates("localhost").is_empty());
    }

    #[test]
    fn plain_http_to_a_remote_host_is_refused_and_the_token_is_not_printed() {
        let mut o = CloudflareOptions::new(SecretString::new("cf-secret-token"));
        o.base_url = "http://api.example.net/client/v4".into();
        let e = Cloudflare::new(o.clone(), Arc::default()).unwrap_err();
        assert!(e.to_string().contains("plain HTTP"), "{e}");
        assert!(!format!("{o:?}").contains("cf-secret-token"));
        o.base_url = "http://127.0.0.1:1/client/v4".into();
        let c = Cloudflare::new(o, Arc::default()).unwrap();
        assert!(!format!("{c:?}").contains("cf-secret-token"));
    }
}
