//! The deploy lock on Cloud Storage: the lease of [`qhub_core::cloud::lock`] on one object,
//! written through the GCS JSON API with generation preconditions (`ifGenerationMatch=0` to
//! create, `ifGenerationMatch=<generation>` to replace and delete; GCS answers 412
//! `conditionNotMet` when another writer won). See "Request preconditions" in the Cloud
//! Storage docs. The lock's version is the object's generation.
//!
//! **Where**: one lock bucket per GCP project, [`bucket_name`] (`qhub-locks-<project id>`),
//! object [`object_name`] (`qhub/<project>-<namespace>.lock`). Bucket names are global across
//! all of GCS; project ids are globally unique too, so the name is ours unless someone else
//! took it first, which is detected (their bucket lacks our labels, or we may not read it) and
//! refused. The bucket is made on the first write that finds it missing, in the config's
//! region, with uniform bucket-level access, public access prevention enforced and the labels
//! [`bucket_labels`] (`qhub-managed-by: qhub-rs`, `qhub-purpose: deploy-locks`; it is shared by
//! every deployment of the project, so it carries no project or namespace).
//!
//! **Destroy**: after a destroy releases its lock, the bucket is deleted if it carries our
//! labels and is empty; when another deployment's lock is in it, GCS refuses (409) and the
//! bucket stays for that deployment's next destroy. A deploy leaves the empty bucket in place.
//!
//! **Calls**: taking a free lock costs a download (404) and an upload; each renewal one upload
//! (every 10 s by default); releasing it one delete. The first lock of a project adds a failed
//! upload (404: no bucket) and the bucket's creation; a destroy adds a bucket read and delete.
//! Reads go through the provider's retry policy; a write is sent again only when throttled
//! (the lock algorithm re-reads before any other retry, so no write is blindly repeated).
//!
//! GCS allows about one write per second to one object name (more is answered 429), far more
//! than the renewals need: one per [`LeaseTiming::renew_every`](qhub_core::kubernetes::lease::LeaseTiming)
//! (10 s by default). The bucket has soft delete off: each renewal replaces the object, and
//! the default 7-day soft delete would keep every replaced generation.
//!
//! **Permissions**: `storage.buckets.create`, `storage.buckets.get`, `storage.buckets.delete`,
//! `storage.objects.create`, `storage.objects.get`, `storage.objects.delete` on the project
//! (`roles/storage.admin` has them all).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use google_cloud_auth::credentials::AccessTokenCredentials;
use qhub_core::cloud::RetryPolicy;
use qhub_core::cloud::lock::{LockStore, Version};
use qhub_core::provider::{Ownership, ProviderError};
use reqwest::{Method, StatusCode};

use crate::client::ApiStats;
use crate::errors::GcpError;
use crate::rest::{GoogleReply, GoogleRest, encode};

pub use qhub_core::cloud::lock::{BUCKET_PREFIX, PURPOSE, PURPOSE_KEY};

/// Cloud Storage's own endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// The lock bucket of GCP project `project` (a project id: 6–30 lowercase letters, digits and
/// `-`, so the name stays within GCS's 63 characters).
pub fn bucket_name(project: &str) -> String {
    format!("{BUCKET_PREFIX}{project}")
}

/// The lock object's name for deployment `prefix` (`{project}-{namespace}`).
pub fn object_name(prefix: &str) -> String {
    qhub_core::cloud::lock::object_key(prefix)
}

/// The lock bucket's labels (GCS labels: lowercase keys and values).
pub fn bucket_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            Ownership::MANAGED_BY_KEY.to_string(),
            Ownership::MANAGED_BY.to_string(),
        ),
        (PURPOSE_KEY.to_string(), PURPOSE.to_string()),
    ])
}

/// One answer of Cloud Storage.
type Reply = crate::rest::Reply;

/// The object generation of an object resource in a reply's body.
fn object_generation(reply: &Reply) -> Option<String> {
    reply.json()["generation"].as_str().map(str::to_string)
}

/// One deployment's lock object in the project's lock bucket.
#[derive(Clone)]
pub struct GcsLockStore {
    rest: GoogleRest,
    endpoint: String,
    project: String,
    region: String,
    bucket: String,
    object: String,
}

impl std::fmt::Debug for GcsLockStore {
    // The token source stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsLockStore")
            .field("endpoint", &self.rest.endpoint())
            .field("bucket", &self.bucket)
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

impl GcsLockStore {
    /// The lock of deployment `prefix` in `project`'s lock bucket (made in `region` when
    /// missing), reached at `endpoint` with `tokens` (`None`: anonymous, loopback only), calls
    /// counted in `stats` and retried under `policy`.
    pub(crate) fn new(
        endpoint: &str,
        tokens: Option<AccessTokenCredentials>,
        stats: Arc<ApiStats>,
        policy: RetryPolicy,
        project: &str,
        region: &str,
        prefix: &str,
    ) -> Result<Self, GcpError> {
        let rest = GoogleRest::new("Cloud Storage", endpoint, tokens, stats, policy)?;
        Ok(Self {
            endpoint: rest.endpoint().to_string(),
            rest,
            project: project.to_string(),
            region: region.to_string(),
            bucket: bucket_name(project),
            object: object_name(prefix),
        })
    }

    fn bucket_url(&self) -> String {
        format!("{}/storage/v1/b/{}", self.endpoint, encode(&self.bucket))
    }

    fn object_url(&self) -> String {
        format!("{}/o/{}", self.bucket_url(), encode(&self.object))
    }

    fn upload_url(&self) -> String {
        format!(
            "{}/upload/storage/v1/b/{}/o",
            self.endpoint,
            encode(&self.bucket)
        )
    }

    /// One request under the retry policy ([`GoogleRest::send`]).
    async fn send(
        &self,
        rpc: &'static str,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<(&'static str, Vec<u8>)>,
        handled: &[u16],
    ) -> Result<Reply, ProviderError> {
        self.rest
            .send(rpc, &self.location(), method, url, query, body, handled)
            .await
    }

    /// An upload with `ifGenerationMatch={generation}`.
    async fn upload(&self, body: &[u8], generation: &str) -> Result<Upload, ProviderError> {
        let reply = self
            .send(
                "storage.objects.insert",
                Method::POST,
                &self.upload_url(),
                &[
                    ("uploadType", "media".to_string()),
                    ("name", self.object.clone()),
                    ("ifGenerationMatch", generation.to_string()),
                ],
                Some(("application/json", body.to_vec())),
                &[404, 412],
            )
            .await?;
        match reply.status.as_u16() {
            412 => Ok(Upload::Refused),
            404 => Ok(Upload::NoBucket(reply.message())),
            _ => object_generation(&reply)
                .map(Upload::Written)
                .ok_or_else(|| {
                    ProviderError::retryable(format!(
                        "storage.objects.insert {}: the answer names no generation",
                        self.location()
                    ))
                }),
        }
    }

    /// Makes the lock bucket if it is missing. A bucket another run made meanwhile is fine;
    /// one without our labels, or one we may not read (another project's), is refused.
    async fn ensure_bucket(&self) -> Result<(), ProviderError> {
        let body = serde_json::json!({
            "name": self.bucket,
            "location": self.region,
            "storageClass": "STANDARD",
            "labels": bucket_labels(),
            "iamConfiguration": {
                "uniformBucketLevelAccess": {"enabled": true},
                "publicAccessPrevention": "enforced",
            },
            // Without versioning every renewal replaces the object, and GCS's default soft
            // delete (7 days) would keep each replaced generation, billed, for a week.
            "softDeletePolicy": {"retentionDurationSeconds": "0"},
        });
        let reply = self
            .send(
                "storage.buckets.insert",
                Method::POST,
                &format!("{}/storage/v1/b", self.endpoint),
                &[("project", self.project.clone())],
                Some(("application/json", body.to_string().into_bytes())),
                &[409],
            )
            .await?;
        if reply.status.as_u16() != 409 {
            tracing::info!(bucket = %self.bucket, region = %self.region, "created the deploy lock bucket");
            return Ok(());
        }
        // Another run made it just now, or the name is someone else's.
        match self.labels().await? {
            Some(labels) if is_ours(&labels) => Ok(()),
            Some(_) => Err(ProviderError::Fatal(format!(
                "the deploy lock bucket {} exists without qhub's labels ({}: {}); refusing to use it",
                self.bucket,
                Ownership::MANAGED_BY_KEY,
                Ownership::MANAGED_BY
            ))),
            None => Err(ProviderError::retryable(format!(
                "the deploy lock bucket {} was reported to exist, then not found",
                self.bucket
            ))),
        }
    }

    /// The bucket's labels; `None` when it does not exist. A bucket we may not read is taken
    /// to be another project's (GCS bucket names are global) and refused.
    async fn labels(&self) -> Result<Option<BTreeMap<String, String>>, ProviderError> {
        let reply = self
            .send(
                "storage.buckets.get",
                Method::GET,
                &self.bucket_url(),
                &[],
                None,
                &[403, 404],
            )
            .await?;
        match reply.status.as_u16() {
            404 => Ok(None),
            403 => Err(ProviderError::Fatal(format!(
                "the deploy lock bucket name {} is taken by another project (or storage.buckets.get is not granted); qhub will not use it ({})",
                self.bucket,
                reply.message()
            ))),
            _ => Ok(Some(
                serde_json::from_value(reply.json()["labels"].clone()).unwrap_or_default(),
            )),
        }
    }
}

/// What a conditional upload did.
enum Upload {
    /// Written: the object's new generation.
    Written(Version),
    /// The precondition failed (412): another writer won, or the object is gone.
    Refused,
    /// The bucket does not exist (404), with GCS's message.
    NoBucket(String),
}

fn is_ours(labels: &BTreeMap<String, String>) -> bool {
    labels.get(Ownership::MANAGED_BY_KEY).map(String::as_str) == Some(Ownership::MANAGED_BY)
}

#[async_trait]
impl LockStore for GcsLockStore {
    fn location(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.object)
    }

    async fn get(&self) -> Result<Option<(Vec<u8>, Version)>, ProviderError> {
        let reply = self
            .send(
                "storage.objects.get",
                Method::GET,
                &self.object_url(),
                &[("alt", "media".to_string())],
                None,
                &[404],
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            // No object, or no bucket at all.
            return Ok(None);
        }
        if let Some(generation) = reply.generation() {
            return Ok(Some((reply.body.to_vec(), generation)));
        }
        // GCS names the generation of a media download in `x-goog-generation`; should a proxy
        // drop the header, read the metadata, then that very generation's bytes.
        let meta = self
            .send(
                "storage.objects.get",
                Method::GET,
                &self.object_url(),
                &[],
                None,
                &[404],
            )
            .await?;
        if meta.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let generation = object_generation(&meta).ok_or_else(|| {
            ProviderError::retryable(format!(
                "storage.objects.get {}: the answer names no generation",
                self.location()
            ))
        })?;
        let pinned = self
            .send(
                "storage.objects.get",
                Method::GET,
                &self.object_url(),
                &[
                    ("alt", "media".to_string()),
                    ("generation", generation.clone()),
                ],
                None,
                &[404],
            )
            .await?;
        if pinned.status == StatusCode::NOT_FOUND {
            // Replaced or deleted between the two reads: the algorithm reads again.
            return Err(ProviderError::retryable(format!(
                "storage.objects.get {}: generation {generation} changed while read",
                self.location()
            )));
        }
        Ok(Some((pinned.body.to_vec(), generation)))
    }

    async fn create(&self, body: &[u8]) -> Result<Option<Version>, ProviderError> {
        let mut upload = self.upload(body, "0").await?;
        if matches!(upload, Upload::NoBucket(_)) {
            self.ensure_bucket().await?;
            upload = self.upload(body, "0").await?;
        }
        match upload {
            Upload::Written(v) => Ok(Some(v)),
            Upload::Refused => Ok(None),
            // Deleted by a destroy of another deployment between our two calls: try again.
            Upload::NoBucket(message) => Err(ProviderError::retryable(format!(
                "storage.objects.insert {}: {message}",
                self.location()
            ))),
        }
    }

    async fn replace(&self, body: &[u8], version: &str) -> Result<Option<Version>, ProviderError> {
        match self.upload(body, version).await? {
            Upload::Written(v) => Ok(Some(v)),
            // A missing bucket means the object is gone too.
            Upload::Refused | Upload::NoBucket(_) => Ok(None),
        }
    }

    async fn delete(&self, version: &str) -> Result<bool, ProviderError> {
        let reply = self
            .send(
                "storage.objects.delete",
                Method::DELETE,
                &self.object_url(),
                &[("ifGenerationMatch", version.to_string())],
                None,
                &[404, 412],
            )
            .await?;
        Ok(reply.status.is_success())
    }

    async fn cleanup(&self) -> Result<(), ProviderError> {
        match self.labels().await? {
            None => return Ok(()),
            Some(labels) if !is_ours(&labels) => {
                tracing::warn!(bucket = %self.bucket, "the lock bucket lacks qhub's labels; left in place");
                return Ok(());
            }
            Some(_) => {}
        }
        let reply = self
            .send(
                "storage.buckets.delete",
                Method::DELETE,
                &self.bucket_url(),
                &[],
                None,
                &[404, 409],
            )
            .await?;
        match reply.status.as_u16() {
            // Another deployment of this project holds its lock in it.
            409 => {
                tracing::info!(bucket = %self.bucket, "the lock bucket holds other deployments' locks; left in place")
            }
            404 => {}
            _ => tracing::info!(bucket = %self.bucket, "deleted the empty deploy lock bucket"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_lives_in_one_bucket_per_project() {
        // The longest project id GCP allows (30 characters).
        let b = bucket_name("a-project-id-of-thirty-chars-x");
        assert_eq!(b, "qhub-locks-a-project-id-of-thirty-chars-x");
        // GCS bucket names: 3 to 63 characters, lowercase letters, digits, `-`.
        assert!(b.len() <= 63);
        assert!(
            b.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_eq!(object_name("demo-dev"), "qhub/demo-dev.lock");
        assert_eq!(encode("qhub/demo-dev.lock"), "qhub%2Fdemo-dev.lock");
        let labels = bucket_labels();
        assert_eq!(labels["qhub-managed-by"], "qhub-rs");
        assert_eq!(labels["qhub-purpose"], "deploy-locks");
        // GCS labels: lowercase keys and values.
        assert!(
            labels
                .iter()
                .all(|(k, v)| *k == k.to_lowercase() && *v == v.to_lowercase())
        );
    }

    #[test]
    fn anonymous_credentials_reach_only_a_loopback_endpoint() {
        let stats = Arc::new(ApiStats::default());
        let store = |endpoint: &str| {
            GcsLockStore::new(
                endpoint,
                None,
                stats.clone(),
                RetryPolicy::default(),
                "p",
                "us-central1",
                "demo-dev",
            )
        };
        assert!(store("http://127.0.0.1:9").is_ok());
        let e = store(DEFAULT_ENDPOINT).unwrap_err();
        assert!(matches!(e, GcpError::Credentials(_)), "{e}");
    }
}
