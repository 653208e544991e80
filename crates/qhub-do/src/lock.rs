//! The deploy lock on Spaces, DigitalOcean's S3-compatible object storage: the lease of
//! [`qhub_core::cloud::lock`] on one object (the S3 lock store of
//! [`qhub_core::cloud::s3_lock`], its calls signed here), written with S3 conditional writes
//! (`If-None-Match: *` to create, `If-Match: <ETag>` to replace and delete; 412
//! `PreconditionFailed` when another writer won).
//!
//! **Why it is checked**: Spaces' documentation (its S3 compatibility table) does not say
//! whether it honours conditional writes. So this store reports
//! [`S3Objects::documents_conditional_writes`] as false, and every lock taken is checked on the
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
use std::time::SystemTime;

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use qhub_core::cloud::RetryPolicy;
use qhub_core::cloud::http::{
    Auth, Body, ErrorEnvelope, HttpError, Reply, Request, RestClient, RestOptions, SetupError,
    Signer,
};
use qhub_core::cloud::lock::{BUCKET_PREFIX, Version, object_key};
use qhub_core::cloud::s3_lock::{Condition, S3Answer, S3Objects};
use qhub_core::provider::ProviderError;
use reqwest::Method;

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

/// The `<Code>` of an S3 XML error answer (empty when there is none).
fn code(reply: &Reply) -> String {
    ErrorEnvelope::s3_xml(&reply.body).code.unwrap_or_default()
}

/// An error answer in a line: `HTTP 404 NoSuchBucket: message`.
fn message(reply: &Reply) -> String {
    let envelope = ErrorEnvelope::s3_xml(&reply.body);
    let status = reply.status.as_u16();
    let present = |v: Option<String>| v.filter(|v| !v.is_empty());
    match (present(envelope.code), present(envelope.message)) {
        (None, _) => format!("HTTP {status}"),
        (Some(code), None) => format!("HTTP {status} {code}"),
        (Some(code), Some(m)) => format!("HTTP {status} {code}: {m}"),
    }
}

/// The ETag of an answer.
fn etag(reply: &Reply) -> Option<String> {
    reply.header("etag").map(str::to_string)
}

/// Signs Spaces requests with AWS Signature Version 4, for the region [`SIGNING_REGION`], the
/// payload's SHA-256 in `x-amz-content-sha256` and no other checksum header.
struct SigV4 {
    credentials: Credentials,
}

impl Signer for SigV4 {
    fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
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
            headers.iter().copied(),
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
}

/// One deployment's lock object in the team's lock bucket on Spaces.
#[derive(Clone)]
pub struct SpacesLockStore {
    rest: RestClient,
    region: String,
    bucket: String,
    key: String,
}

impl std::fmt::Debug for SpacesLockStore {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpacesLockStore")
            .field("endpoint", &self.rest.endpoint())
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
        let signer = SigV4 {
            credentials: Credentials::new(
                &options.access_key,
                &options.secret_key,
                None,
                None,
                "spaces",
            ),
        };
        let rest = RestClient::new(
            RestOptions::new("Spaces", endpoint.as_str(), Auth::Signed(Arc::new(signer))),
            stats,
            policy,
        )
        .map_err(|e| match e {
            SetupError::PlainHttp { endpoint } => ProviderError::Fatal(format!(
                "{ENDPOINT_ENV}={endpoint} is plain HTTP and not loopback; use https"
            )),
            other => ProviderError::Fatal(format!("building the Spaces client: {other}")),
        })?;
        Ok(Self {
            rest,
            bucket: bucket_name(owner, &region),
            region,
            key: object_key(prefix),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn bucket_url(&self) -> String {
        self.rest.url(&format!("/{}", self.bucket))
    }

    fn object_url(&self) -> String {
        format!("{}/{}", self.bucket_url(), self.key)
    }

    /// Sends one request under the retry policy (a read after any retryable failure, a
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
        let what = format!("{rpc} {}", S3Objects::location(self));
        let mut request = Request::new(rpc, method, url);
        request.headers = headers;
        // Every request carries its (possibly empty) payload: its SHA-256 is signed.
        request.body = Body::Bytes(body);
        self.rest
            .send(&what, &request, |outcome| {
                let reply = outcome.map_err(|e| match e {
                    e @ (HttpError::Transport { .. } | HttpError::Body { .. }) => {
                        ProviderError::retryable(format!("{what}: {e}"))
                    }
                    e => ProviderError::Fatal(format!("{what}: {e}")),
                })?;
                tracing::debug!(rpc, status = reply.status.as_u16(), "Spaces call");
                if reply.status.is_success() || handled.contains(&reply.status.as_u16()) {
                    Ok(reply)
                } else {
                    Err(classify(&what, &reply))
                }
            })
            .await
    }

    /// A PUT of the lock object with `condition` (`If-None-Match: *` or `If-Match: <ETag>`).
    async fn put(&self, body: &[u8], condition: Condition<'_>) -> Result<S3Answer, ProviderError> {
        let condition = match condition {
            Condition::Absent => ("if-none-match", "*".to_string()),
            Condition::Version(etag) => ("if-match", etag.to_string()),
        };
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
            412 => Ok(S3Answer::Refused),
            404 if code(&reply) == "NoSuchBucket" => Ok(S3Answer::NoBucket),
            // An `If-Match` write of an object that is gone.
            404 => Ok(S3Answer::Refused),
            _ => etag(&reply).map(S3Answer::Done).ok_or_else(|| {
                ProviderError::Fatal(format!(
                    "PutObject {}: Spaces answered without an ETag",
                    S3Objects::location(self)
                ))
            }),
        }
    }

    /// Makes the private lock bucket (another run making it meanwhile is fine).
    async fn make_bucket(&self) -> Result<(), ProviderError> {
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
        match code(&reply).as_str() {
            "BucketAlreadyOwnedByYou" => Ok(()),
            _ => Err(ProviderError::Fatal(format!(
                "the deploy lock bucket {} cannot be created ({}): the name is taken, by another account or by a bucket of this team that is pending deletion (Spaces keeps a deleted bucket's name for a week or more; cancel the deletion in the control panel), or set QHUB_DEPLOY_LOCK=local to keep the local lock",
                self.bucket,
                message(&reply)
            ))),
        }
    }
}

/// The contract's class of a Spaces error answer.
fn classify(what: &str, reply: &Reply) -> ProviderError {
    let message = format!("{what}: {}", message(reply));
    let code = code(reply);
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
impl S3Objects for SpacesLockStore {
    fn location(&self) -> String {
        format!("spaces://{}/{}/{}", self.region, self.bucket, self.key)
    }

    async fn get_object(&self) -> Result<Option<(Vec<u8>, Version)>, ProviderError> {
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
        let etag = etag(&reply).unwrap_or_default();
        Ok(Some((reply.body.to_vec(), etag)))
    }

    async fn put_object(
        &self,
        body: &[u8],
        condition: Condition<'_>,
    ) -> Result<S3Answer, ProviderError> {
        self.put(body, condition).await
    }

    async fn delete_object(&self, version: &str) -> Result<S3Answer, ProviderError> {
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
        Ok(if reply.status.is_success() {
            S3Answer::Done(String::new())
        } else {
            S3Answer::Refused
        })
    }

    async fn create_bucket(&self) -> Result<(), ProviderError> {
        self.make_bucket().await
    }

    fn documents_conditional_writes(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

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
            headers: Default::default(),
            body: format!(
                "<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>"
            )
            .into(),
        };
        assert_eq!(super::code(&reply(404, "NoSuchBucket")), "NoSuchBucket");
        assert_eq!(
            super::message(&reply(404, "NoSuchBucket")),
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
