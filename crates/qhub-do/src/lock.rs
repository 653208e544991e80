//! The deploy lock on Spaces, DigitalOcean's S3-compatible object storage: the lease of
//! [`qhub_core::cloud::lock`] on one object, written with S3 conditional writes
//! (`If-None-Match: *` to create, `If-Match: <ETag>` to replace and delete; 412
//! `PreconditionFailed` when another writer won).
//!
//! **Why it is checked**: Spaces' documentation (its S3 compatibility table) does not say
//! whether it honours conditional writes. So this store reports
//! [`LockStore::documents_conditional_writes`] as false, and every lock taken is checked on the
//! spot: a create of the existing object, a replace and a delete of a version that never
//! existed must all be refused. If Spaces carried any of them out, the record is removed and
//! the provider falls back to the local lock, saying so ([`crate::DigitalOceanProvider`]).
//!
//! **Credentials**: Spaces does not take the API token; it takes a Spaces access key
//! ([`ACCESS_KEY_ENV`], [`SECRET_KEY_ENV`], the names QHub used), which needs read and write on
//! the lock bucket (a full-access key, or one with `readwrite` on `qhub-locks-…`). Requests are
//! signed with AWS Signature Version 4 (`aws-sigv4`, for `us-east-1` as DigitalOcean's own
//! Terraform-backend guide does), path-style, with the payload's SHA-256 and no other checksum
//! header.
//!
//! **Where**: one bucket per DigitalOcean team and Spaces region, [`bucket_name`]
//! (`qhub-locks-<team uuid>-<region>`, private), object [`object_key`]
//! (`qhub/<project>-<namespace>.lock`), at
//! `https://<region>.digitaloceanspaces.com` ([`spaces_region`]: the cluster's region, or the
//! nearest one with Spaces). Spaces buckets take neither DigitalOcean tags nor bucket tags, so
//! the bucket says whose it is by its name alone.
//!
//! **Destroy leaves the bucket**: a deleted bucket's name stays reserved for a week or more,
//! so deleting it would make the next deploy of any deployment of the team fail for that
//! week. An empty bucket costs nothing beyond the Spaces subscription it needs.
//!
//! **Calls**: taking a free lock costs a `GetObject` (404), a `PutObject` and the three refused
//! checks; each renewal one `PutObject`; releasing it one `DeleteObject`. The first lock of a
//! team and region adds a failed `PutObject` (no bucket) and `CreateBucket`. Reads are retried
//! under the provider's retry policy; a write is sent again only when throttled.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use qhub_core::cloud::RetryPolicy;
use qhub_core::cloud::endpoint::is_loopback;
use qhub_core::cloud::lock::{BUCKET_PREFIX, LockStore, Version, object_key};
use qhub_core::provider::ProviderError;
use qhub_core::retry::{CallKind, retry_call};
use reqwest::{Method, StatusCode};

use crate::client::ApiStats;

/// The Spaces access key id (QHub's name for it).
pub const ACCESS_KEY_ENV: &str = "SPACES_ACCESS_KEY_ID";
/// The Spaces secret key (QHub's name for it).
pub const SECRET_KEY_ENV: &str = "SPACES_SECRET_ACCESS_KEY";
/// Overrides the Spaces endpoint (an emulator: `http://127.0.0.1:PORT`).
pub const ENDPOINT_ENV: &str = "QHUB_SPACES_ENDPOINT";
/// Overrides the Spaces region of the lock bucket.
pub const REGION_ENV: &str = "QHUB_SPACES_REGION";

/// The region requests are signed for. Spaces takes `us-east-1` whatever the bucket's region
/// (DigitalOcean's guide to Spaces as a Terraform backend signs so); the endpoint's host names
/// the region.
const SIGNING_REGION: &str = "us-east-1";

/// The regions Spaces is offered in.
pub const SPACES_REGIONS: &[&str] = &[
    "nyc3", "sfo2", "sfo3", "ams3", "sgp1", "fra1", "syd1", "blr1", "lon1", "tor1", "atl1",
];

/// The Spaces region for a cluster in `region`: the same region when it has Spaces, else the
/// nearest that has (`nyc1`/`nyc2` → `nyc3`, `sfo1` → `sfo3`, `ams2` → `ams3`); an unknown
/// region is used as it is ([`REGION_ENV`] overrides).
pub fn spaces_region(region: &str) -> String {
    let region = region.trim().to_ascii_lowercase();
    if SPACES_REGIONS.contains(&region.as_str()) {
        return region;
    }
    match region.as_str() {
        "nyc1" | "nyc2" => "nyc3".into(),
        "sfo1" => "sfo3".into(),
        "ams2" => "ams3".into(),
        _ => region,
    }
}

/// The lock bucket of team (or user) `owner` in Spaces region `region`: at most 63
/// characters of lowercase letters, digits and `-`, as Spaces' bucket names must be.
pub fn bucket_name(owner: &str, region: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let region = clean(region);
    let room = 63 - BUCKET_PREFIX.len() - 1 - region.len().min(20);
    let owner: String = clean(owner).chars().take(room).collect();
    format!("{BUCKET_PREFIX}{owner}-{region}")
}

/// A Spaces access key, and where Spaces is.
#[derive(Clone)]
pub struct SpacesOptions {
    /// The access key id.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
    /// The endpoint (`None`: `https://<region>.digitaloceanspaces.com`).
    pub endpoint: Option<String>,
    /// The Spaces region (`None`: from the cluster's region, [`spaces_region`]).
    pub region: Option<String>,
}

impl std::fmt::Debug for SpacesOptions {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpacesOptions")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish()
    }
}

impl SpacesOptions {
    /// The key from [`ACCESS_KEY_ENV`] and [`SECRET_KEY_ENV`] (`None` when neither is set;
    /// an error naming the missing one when only one is), the endpoint from [`ENDPOINT_ENV`]
    /// and the region from [`REGION_ENV`].
    pub fn from_env() -> Result<Option<Self>, ProviderError> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        match (var(ACCESS_KEY_ENV), var(SECRET_KEY_ENV)) {
            (None, None) => Ok(None),
            (Some(access_key), Some(secret_key)) => Ok(Some(Self {
                access_key: access_key.trim().to_string(),
                secret_key: secret_key.trim().to_string(),
                endpoint: var(ENDPOINT_ENV),
                region: var(REGION_ENV),
            })),
            (Some(_), None) => Err(ProviderError::Fatal(format!(
                "{ACCESS_KEY_ENV} is set but {SECRET_KEY_ENV} is not: set both (a Spaces access key) for the deploy lock on Spaces, or neither"
            ))),
            (None, Some(_)) => Err(ProviderError::Fatal(format!(
                "{SECRET_KEY_ENV} is set but {ACCESS_KEY_ENV} is not: set both (a Spaces access key) for the deploy lock on Spaces, or neither"
            ))),
        }
    }
}

/// One answer: status, ETag and body.
struct Reply {
    status: StatusCode,
    etag: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    /// The `<Code>` of an S3 XML error body.
    fn code(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(code, _)| code.trim().to_string())
            .unwrap_or_default()
    }

    fn message(&self) -> String {
        let code = self.code();
        let text = String::from_utf8_lossy(&self.body);
        let message = text
            .split_once("<Message>")
            .and_then(|(_, rest)| rest.split_once("</Message>"))
            .map(|(m, _)| m.trim().to_string())
            .unwrap_or_default();
        match (code.is_empty(), message.is_empty()) {
            (true, _) => format!("HTTP {}", self.status.as_u16()),
            (false, true) => format!("HTTP {} {code}", self.status.as_u16()),
            (false, false) => format!("HTTP {} {code}: {message}", self.status.as_u16()),
        }
    }
}

/// What a conditional write found.
enum Write {
    Written(Version),
    Refused,
    NoBucket,
}

/// One deployment's lock object in the team's lock bucket on Spaces.
#[derive(Clone)]
pub struct SpacesLockStore {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: Credentials,
    stats: Arc<ApiStats>,
    policy: RetryPolicy,
    bucket: String,
    key: String,
}

impl std::fmt::Debug for SpacesLockStore {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpacesLockStore")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl SpacesLockStore {
    /// The lock of deployment `prefix` in `owner`'s lock bucket, for a cluster in
    /// `cluster_region`, with `options`' key; calls counted in `stats` and retried under
    /// `policy`. A plain-HTTP endpoint must be loopback (an emulator): the key signs every
    /// request, and Spaces itself is HTTPS only.
    pub fn new(
        options: &SpacesOptions,
        owner: &str,
        cluster_region: &str,
        prefix: &str,
        stats: Arc<ApiStats>,
        policy: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        let region = options
            .region
            .clone()
            .unwrap_or_else(|| spaces_region(cluster_region));
        let endpoint = options
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://{region}.digitaloceanspaces.com"));
        let endpoint = endpoint.trim_end_matches('/').to_string();
        if endpoint.starts_with("http://") && !is_loopback(&endpoint) {
            return Err(ProviderError::Fatal(format!(
                "{ENDPOINT_ENV}={endpoint} is plain HTTP and not loopback; use https"
            )));
        }
        qhub_core::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("qhub-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Fatal(format!("building the Spaces client: {e}")))?;
        Ok(Self {
            http,
            endpoint,
            credentials: Credentials::new(
                &options.access_key,
                &options.secret_key,
                None,
                None,
                "spaces",
            ),
            bucket: bucket_name(owner, &region),
            region,
            stats,
            policy,
            key: object_key(prefix),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn bucket_url(&self) -> String {
        format!("{}/{}", self.endpoint, self.bucket)
    }

    fn object_url(&self) -> String {
        format!("{}/{}", self.bucket_url(), self.key)
    }

    /// Signs and sends one request once; every status comes back to the caller, transport
    /// failures are retryable errors.
    async fn send_once(
        &self,
        rpc: &'static str,
        method: Method,
        url: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> Result<Reply, ProviderError> {
        self.stats.record(rpc, !ApiStats::is_read_only(rpc));
        let what = format!("{rpc} {}", self.location());
        let signed = self
            .sign(method.as_str(), url, headers, body)
            .map_err(|e| ProviderError::Fatal(format!("{what}: signing the request: {e}")))?;
        let mut req = self.http.request(method, url).body(body.to_vec());
        for (name, value) in headers.iter().map(|(n, v)| (*n, v.as_str())) {
            req = req.header(name, value);
        }
        for (name, value) in &signed {
            req = req.header(name.as_str(), value.as_str());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ProviderError::retryable(format!("{what}: no answer from Spaces: {e}")))?;
        let status = resp.status();
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .bytes()
            .await
            .map_err(|e| {
                ProviderError::retryable(format!("{what}: the answer could not be read: {e}"))
            })?
            .to_vec();
        tracing::debug!(rpc, status = status.as_u16(), "Spaces call");
        Ok(Reply { status, etag, body })
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-content-sha256`) for a request.
    fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        let identity = self.credentials.clone().into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(SIGNING_REGION)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(n, v)| (*n, v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect())
    }

    /// [`Self::send_once`] under the retry policy (a read after any retryable failure, a
    /// write only when throttled); statuses in `handled` and successes come back, any other
    /// status is an error of its class.
    async fn send(
        &self,
        rpc: &'static str,
        method: Method,
        url: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
        handled: &[u16],
    ) -> Result<Reply, ProviderError> {
        let what = format!("{rpc} {}", self.location());
        retry_call(
            &self.policy,
            Some(&self.stats),
            &what,
            CallKind::of(rpc),
            || async {
                let reply = self
                    .send_once(rpc, method.clone(), url, headers, body)
                    .await?;
                if reply.status.is_success() || handled.contains(&reply.status.as_u16()) {
                    Ok(reply)
                } else {
                    Err(classify(&what, &reply))
                }
            },
        )
        .await
    }

    /// A PUT of the lock object with `condition` (`If-None-Match: *` or `If-Match: <ETag>`).
    async fn put(
        &self,
        body: &[u8],
        condition: (&'static str, String),
    ) -> Result<Write, ProviderError> {
        let headers = [
            condition,
            ("content-type", "application/json".to_string()),
            ("x-amz-acl", "private".to_string()),
        ];
        let reply = self
            .send(
                "PutObject",
                Method::PUT,
                &self.object_url(),
                &headers,
                body,
                &[404, 412],
            )
            .await?;
        match reply.status.as_u16() {
            412 => Ok(Write::Refused),
            404 if reply.code() == "NoSuchBucket" => Ok(Write::NoBucket),
            // An `If-Match` write of an object that is gone.
            404 => Ok(Write::Refused),
            _ => reply.etag.map(Write::Written).ok_or_else(|| {
                ProviderError::Fatal(format!(
                    "PutObject {}: Spaces answered without an ETag",
                    self.location()
                ))
            }),
        }
    }

    /// Makes the private lock bucket (another run making it meanwhile is fine).
    async fn create_bucket(&self) -> Result<(), ProviderError> {
        let reply = self
            .send(
                "CreateBucket",
                Method::PUT,
                &self.bucket_url(),
                &[("x-amz-acl", "private".to_string())],
                &[],
                &[409],
            )
            .await?;
        if reply.status.is_success() {
            tracing::info!(bucket = %self.bucket, "created the deploy lock bucket on Spaces");
            return Ok(());
        }
        match reply.code().as_str() {
            "BucketAlreadyOwnedByYou" => Ok(()),
            _ => Err(ProviderError::Fatal(format!(
                "the deploy lock bucket {} cannot be created ({}): the name is taken, by another account or by a bucket of this team that is pending deletion (Spaces keeps a deleted bucket's name for a week or more; cancel the deletion in the control panel), or set QHUB_DEPLOY_LOCK=local to keep the local lock",
                self.bucket,
                reply.message()
            ))),
        }
    }
}

/// The contract's class of a Spaces error answer.
fn classify(what: &str, reply: &Reply) -> ProviderError {
    let message = format!("{what}: {}", reply.message());
    let code = reply.code();
    match reply.status.as_u16() {
        429 => ProviderError::Throttled {
            message,
            retry_after: None,
        },
        503 if code == "SlowDown" => ProviderError::Throttled {
            message,
            retry_after: None,
        },
        401 | 403 => ProviderError::Unauthorized(format!(
            "{message} (check {ACCESS_KEY_ENV}/{SECRET_KEY_ENV}: a Spaces access key with read and write on the lock bucket)"
        )),
        404 => ProviderError::NotFound(message),
        // Another write to the same key is in flight: S3 asks to try again.
        409 if code == "ConditionalRequestConflict" => ProviderError::retryable(message),
        501 => ProviderError::NotSupported(message),
        408 | 500.. => ProviderError::retryable(message),
        _ => ProviderError::Fatal(message),
    }
}

#[async_trait]
impl LockStore for SpacesLockStore {
    fn location(&self) -> String {
        format!("spaces://{}/{}/{}", self.region, self.bucket, self.key)
    }

    async fn get(&self) -> Result<Option<(Vec<u8>, Version)>, ProviderError> {
        let reply = self
            .send(
                "GetObject",
                Method::GET,
                &self.object_url(),
                &[],
                &[],
                &[404],
            )
            .await?;
        if reply.status.as_u16() == 404 {
            return Ok(None);
        }
        let etag = reply.etag.clone().unwrap_or_default();
        Ok(Some((reply.body, etag)))
    }

    async fn create(&self, body: &[u8]) -> Result<Option<Version>, ProviderError> {
        let condition = || ("if-none-match", "*".to_string());
        match self.put(body, condition()).await? {
            Write::Written(v) => Ok(Some(v)),
            Write::Refused => Ok(None),
            Write::NoBucket => {
                self.create_bucket().await?;
                match self.put(body, condition()).await? {
                    Write::Written(v) => Ok(Some(v)),
                    Write::Refused => Ok(None),
                    Write::NoBucket => Err(ProviderError::retryable(format!(
                        "PutObject {}: the bucket just created is not there yet",
                        self.location()
                    ))),
                }
            }
        }
    }

    async fn replace(&self, body: &[u8], version: &str) -> Result<Option<Version>, ProviderError> {
        match self.put(body, ("if-match", version.to_string())).await? {
            Write::Written(v) => Ok(Some(v)),
            Write::Refused | Write::NoBucket => Ok(None),
        }
    }

    async fn delete(&self, version: &str) -> Result<bool, ProviderError> {
        let reply = self
            .send(
                "DeleteObject",
                Method::DELETE,
                &self.object_url(),
                &[("if-match", version.to_string())],
                &[],
                &[404, 412],
            )
            .await?;
        Ok(reply.status.is_success())
    }

    fn documents_conditional_writes(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_lives_in_one_bucket_per_team_and_spaces_region() {
        let b = bucket_name("5df3e3004a17e242b7c20ca6c9fc25b701a47ece", "fra1");
        assert_eq!(
            b,
            "qhub-locks-5df3e3004a17e242b7c20ca6c9fc25b701a47ece-fra1"
        );
        // A longer or odd owner id still gives a valid name: at most 63 characters of
        // lowercase letters, digits and `-`.
        let long = bucket_name(&"AB-cd_".repeat(30), "nyc3");
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with("-nyc3"));
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_eq!(spaces_region("nyc1"), "nyc3");
        assert_eq!(spaces_region("SFO3"), "sfo3");
        assert_eq!(spaces_region("ams2"), "ams3");
        assert_eq!(spaces_region("lon1"), "lon1");
    }

    #[test]
    fn s3_error_codes_are_read_and_classified() {
        let reply = |status: u16, code: &str| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            etag: None,
            body: format!(
                "<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>"
            )
            .into_bytes(),
        };
        assert_eq!(reply(404, "NoSuchBucket").code(), "NoSuchBucket");
        assert_eq!(
            reply(404, "NoSuchBucket").message(),
            "HTTP 404 NoSuchBucket: m"
        );
        assert!(matches!(
            classify("x", &reply(503, "SlowDown")),
            ProviderError::Throttled { .. }
        ));
        assert!(matches!(
            classify("x", &reply(409, "ConditionalRequestConflict")),
            ProviderError::Retryable { .. }
        ));
        assert!(matches!(
            classify("x", &reply(501, "NotImplemented")),
            ProviderError::NotSupported(_)
        ));
        match classify("x", &reply(403, "SignatureDoesNotMatch")) {
            ProviderError::Unauthorized(m) => assert!(m.contains(ACCESS_KEY_ENV), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_secret_key_never_shows_in_debug_output() {
        let o = SpacesOptions {
            access_key: "DO00EXAMPLE".into(),
            secret_key: "very-secret".into(),
            endpoint: None,
            region: None,
        };
        let store = SpacesLockStore::new(
            &o,
            "team",
            "nyc1",
            "demo-dev",
            Arc::default(),
            RetryPolicy::default(),
        )
        .unwrap();
        assert!(!format!("{o:?}{store:?}").contains("very-secret"));
        assert_eq!(
            store.location(),
            "spaces://nyc3/qhub-locks-team-nyc3/qhub/demo-dev.lock"
        );
    }
}
