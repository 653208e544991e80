//! The deploy lock on S3: the lease of [`qhub_core::cloud::lock`] on one object (the S3 lock
//! store of [`qhub_core::cloud::s3_lock`], its calls made through the AWS SDK), written with
//! S3's conditional writes (`If-None-Match: *` to create, `If-Match: <ETag>` to replace and
//! delete; S3 answers 412 `PreconditionFailed` when another writer won and 409
//! `ConditionalRequestConflict` when a concurrent write to the key is in flight, which is
//! retried). See "Conditional writes" in the S3 user guide.
//!
//! **Where**: one lock bucket per account and region, [`bucket_name`]
//! (`qhub-locks-<account>-<region>`), key [`object_key`] (`qhub/<project>-<namespace>.lock`).
//! The bucket is made on the first write that finds it missing: tagged `qhub-managed-by:
//! qhub-rs` and `qhub-purpose: deploy-locks` (it is shared by every deployment of the account
//! and region, so it carries no project or namespace), public access blocked, SSE-S3
//! encryption on. Every call names the account as the expected bucket owner, so a bucket of
//! the same name in another account (a squatted name) is never written to.
//!
//! **Destroy**: after a destroy releases its lock, the bucket is deleted if it carries our
//! tags and is empty; when another deployment's lock is in it (that deployment is deploying
//! right now), S3 refuses (`BucketNotEmpty`) and the bucket stays for that deployment's next
//! destroy. A deploy leaves the empty bucket in place (no cost; the next deploy needs it).
//!
//! **Calls**: taking a free lock costs a `GetObject` (404) and a `PutObject`; each renewal one
//! `PutObject` (every 10 s by default); releasing it one `DeleteObject`. The first lock of an
//! account and region adds `CreateBucket`, `PutPublicAccessBlock`, `PutBucketEncryption` and
//! `PutBucketTagging`; a destroy adds `GetBucketTagging` and `DeleteBucket`.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, Tag, Tagging,
};
use qhub_core::cloud::lock::Version;
use qhub_core::cloud::s3_lock::{Condition, S3Answer, S3Objects};
use qhub_core::provider::{Ownership, ProviderError};

use crate::AwsError;

pub use qhub_core::cloud::lock::{BUCKET_PREFIX, PURPOSE, PURPOSE_KEY, object_key};

/// The lock bucket of `account` in `region`.
pub fn bucket_name(account: &str, region: &str) -> String {
    format!("{BUCKET_PREFIX}{account}-{region}")
}

/// The lock bucket's tags.
pub fn bucket_tags() -> Vec<(String, String)> {
    vec![
        (
            Ownership::MANAGED_BY_KEY.to_string(),
            Ownership::MANAGED_BY.to_string(),
        ),
        (PURPOSE_KEY.to_string(), PURPOSE.to_string()),
    ]
}

/// One deployment's lock object in the lock bucket.
#[derive(Debug, Clone)]
pub struct S3LockStore {
    s3: aws_sdk_s3::Client,
    account: String,
    region: String,
    bucket: String,
    key: String,
    emulator: bool,
}

impl S3LockStore {
    /// The lock of deployment `prefix` in `account`'s lock bucket in `region`, reached through
    /// `s3` (a client with the provider's retry policy).
    pub(crate) fn new(
        s3: aws_sdk_s3::Client,
        account: &str,
        region: &str,
        prefix: &str,
        emulator: bool,
    ) -> Self {
        Self {
            s3,
            account: account.to_string(),
            region: region.to_string(),
            bucket: bucket_name(account, region),
            key: object_key(prefix),
            emulator,
        }
    }

    fn err(&self, e: AwsError) -> ProviderError {
        e.into_provider(self.emulator)
    }

    /// Makes the lock bucket if it is missing: tagged, public access blocked, encrypted. A
    /// bucket another run made meanwhile is fine; one without our tags is refused.
    async fn ensure_bucket(&self) -> Result<(), ProviderError> {
        let tags: Vec<Tag> = bucket_tags()
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<_, _>>()
            .map_err(|e| ProviderError::Fatal(format!("building the lock bucket's tags: {e}")))?;
        let mut config = CreateBucketConfiguration::builder().set_tags(Some(tags.clone()));
        // us-east-1 is the one region that takes no location constraint.
        if self.region != "us-east-1" {
            config =
                config.location_constraint(BucketLocationConstraint::from(self.region.as_str()));
        }
        let created = self
            .s3
            .create_bucket()
            .bucket(&self.bucket)
            .create_bucket_configuration(config.build())
            .send()
            .await;
        match created {
            Ok(_) => tracing::info!(bucket = %self.bucket, "created the deploy lock bucket"),
            Err(e) => {
                let e = AwsError::from_sdk("CreateBucket", e);
                match e.code.as_deref() {
                    Some("BucketAlreadyOwnedByYou") => {
                        // Another run made it just now, or a run died before configuring it.
                        if self.has_our_tags().await? == Some(false) {
                            return Err(ProviderError::Fatal(format!(
                                "the deploy lock bucket {} exists without qhub's tags ({}: {}); refusing to use it",
                                self.bucket,
                                Ownership::MANAGED_BY_KEY,
                                Ownership::MANAGED_BY
                            )));
                        }
                    }
                    Some("BucketAlreadyExists") => {
                        return Err(ProviderError::Fatal(format!(
                            "the deploy lock bucket name {} is taken by another AWS account; qhub will not use it",
                            self.bucket
                        )));
                    }
                    _ => return Err(self.err(e)),
                }
            }
        }
        self.s3
            .put_public_access_block()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.account)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.err(AwsError::from_sdk("PutPublicAccessBlock", e)))?;
        let sse = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::Aes256)
            .build()
            .map_err(|e| ProviderError::Fatal(format!("building the encryption rule: {e}")))?;
        self.s3
            .put_bucket_encryption()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.account)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(sse)
                            .build(),
                    )
                    .build()
                    .map_err(|e| {
                        ProviderError::Fatal(format!("building the encryption rule: {e}"))
                    })?,
            )
            .send()
            .await
            .map_err(|e| self.err(AwsError::from_sdk("PutBucketEncryption", e)))?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tags))
            .build()
            .map_err(|e| ProviderError::Fatal(format!("building the lock bucket's tags: {e}")))?;
        self.s3
            .put_bucket_tagging()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.account)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| self.err(AwsError::from_sdk("PutBucketTagging", e)))?;
        Ok(())
    }

    /// Whether the bucket carries our tags: `None` when it has no tags at all (a bucket whose
    /// maker died before tagging it), `Some(false)` when it has others.
    async fn has_our_tags(&self) -> Result<Option<bool>, ProviderError> {
        match self
            .s3
            .get_bucket_tagging()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.account)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.tag_set().iter().any(|t| {
                t.key() == Ownership::MANAGED_BY_KEY && t.value() == Ownership::MANAGED_BY
            }))),
            Err(e) => {
                let e = AwsError::from_sdk("GetBucketTagging", e);
                match e.code.as_deref() {
                    Some("NoSuchTagSet") => Ok(None),
                    Some("NoSuchBucket") => Err(ProviderError::NotFound(e.to_string())),
                    _ => Err(self.err(e)),
                }
            }
        }
    }

    /// A conditional write: `Ok(None)` when the precondition failed (412), or the bucket or
    /// object is gone.
    async fn put(
        &self,
        body: &[u8],
        condition: Condition<'_>,
    ) -> Result<Result<Option<Version>, AwsError>, ProviderError> {
        let mut put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .expected_bucket_owner(&self.account)
            .content_type("application/json")
            .body(ByteStream::from(body.to_vec()));
        put = match condition {
            Condition::Version(etag) => put.if_match(etag),
            Condition::Absent => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(out) => Ok(Ok(Some(out.e_tag().unwrap_or_default().to_string()))),
            Err(e) => {
                let e = AwsError::from_sdk("PutObject", e);
                if is_precondition_failed(&e) || e.code.as_deref() == Some("NoSuchKey") {
                    Ok(Ok(None))
                } else {
                    Ok(Err(e))
                }
            }
        }
    }
}

/// S3's answer to a conditional write whose condition did not hold.
fn is_precondition_failed(e: &AwsError) -> bool {
    e.status == Some(412) || e.code.as_deref() == Some("PreconditionFailed")
}

#[async_trait]
impl S3Objects for S3LockStore {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    async fn get_object(&self) -> Result<Option<(Vec<u8>, Version)>, ProviderError> {
        let got = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .expected_bucket_owner(&self.account)
            .send()
            .await;
        match got {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                let body = out.body.collect().await.map_err(|e| {
                    ProviderError::retryable(format!(
                        "GetObject {}: {e}",
                        S3Objects::location(self)
                    ))
                })?;
                Ok(Some((body.into_bytes().to_vec(), etag)))
            }
            Err(e) => {
                let e = AwsError::from_sdk("GetObject", e);
                match e.code.as_deref() {
                    Some("NoSuchKey" | "NoSuchBucket") => Ok(None),
                    _ => Err(self.err(e)),
                }
            }
        }
    }

    async fn put_object(
        &self,
        body: &[u8],
        condition: Condition<'_>,
    ) -> Result<S3Answer, ProviderError> {
        match self.put(body, condition).await? {
            Ok(Some(v)) => Ok(S3Answer::Done(v)),
            Ok(None) => Ok(S3Answer::Refused),
            Err(e) if e.code.as_deref() == Some("NoSuchBucket") => Ok(S3Answer::NoBucket),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn delete_object(&self, version: &str) -> Result<S3Answer, ProviderError> {
        let deleted = self
            .s3
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .expected_bucket_owner(&self.account)
            .if_match(version)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(S3Answer::Done(String::new())),
            Err(e) => {
                let e = AwsError::from_sdk("DeleteObject", e);
                if is_precondition_failed(&e)
                    || matches!(e.code.as_deref(), Some("NoSuchKey" | "NoSuchBucket"))
                {
                    Ok(S3Answer::Refused)
                } else {
                    Err(self.err(e))
                }
            }
        }
    }

    async fn create_bucket(&self) -> Result<(), ProviderError> {
        self.ensure_bucket().await
    }

    async fn remove_bucket(&self) -> Result<(), ProviderError> {
        match self.has_our_tags().await {
            Ok(Some(true)) => {}
            Ok(_) => {
                tracing::warn!(bucket = %self.bucket, "the lock bucket lacks qhub's tags; left in place");
                return Ok(());
            }
            Err(ProviderError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        let deleted = self
            .s3
            .delete_bucket()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.account)
            .send()
            .await;
        match deleted {
            Ok(_) => {
                tracing::info!(bucket = %self.bucket, "deleted the empty deploy lock bucket");
                Ok(())
            }
            Err(e) => {
                let e = AwsError::from_sdk("DeleteBucket", e);
                match e.code.as_deref() {
                    // Another deployment of this account and region holds its lock in it.
                    Some("BucketNotEmpty") => {
                        tracing::info!(bucket = %self.bucket, "the lock bucket holds other deployments' locks; left in place");
                        Ok(())
                    }
                    Some("NoSuchBucket") => Ok(()),
                    _ => Err(self.err(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_lives_in_one_bucket_per_account_and_region() {
        let b = bucket_name("123456789012", "ap-southeast-2");
        assert_eq!(b, "qhub-locks-123456789012-ap-southeast-2");
        // S3 bucket names: at most 63 characters, lowercase letters, digits and `-`.
        assert!(b.len() <= 63);
        assert!(
            b.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_eq!(object_key("demo-dev"), "qhub/demo-dev.lock");
        assert!(bucket_tags().contains(&("qhub-managed-by".into(), "qhub-rs".into())));
    }
}
