//! The deploy lock on an S3-compatible store, once for every cloud that has one (S3 through the
//! AWS SDK in qhub-aws, Spaces with hand-signed SigV4 in qhub-do): the lease of
//! [`crate::cloud::lock`] on one object, written with S3's conditional writes (`If-None-Match:
//! *` to create, `If-Match: <ETag>` to replace and delete). S3 answers 412
//! `PreconditionFailed` when another writer won and 404 `NoSuchKey`/`NoSuchBucket` when the
//! object or its bucket is gone. See "Conditional writes" in the S3 user guide.
//!
//! What differs per cloud is how one call is signed and sent (the SDK's signer on AWS, SigV4
//! by hand for Spaces), and how the bucket is made and removed: an [`S3Objects`]. What S3's
//! answers mean for the lock is here, once, in the [`LockStore`] every [`S3Objects`] is: a
//! create that finds no bucket makes it and writes again; a replace or delete whose object or
//! bucket is gone did not happen; a read of either finds no lock.

use async_trait::async_trait;

use super::lock::{LockStore, Version};
use crate::error::ProviderError;

/// The condition of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition<'a> {
    /// `If-None-Match: *`: only if there is no object.
    Absent,
    /// `If-Match: <ETag>`: only if the object is still this version.
    Version(&'a str),
}

/// What S3 answered to a conditional write or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Answer {
    /// Done: the object's new ETag (empty for a delete).
    Done(Version),
    /// The condition did not hold (412), or the object is not there (`NoSuchKey`).
    Refused,
    /// The bucket is not there (`NoSuchBucket`).
    NoBucket,
}

/// One lock object in an S3-compatible store: each call signed and sent once the cloud's way
/// (retries are the implementation's, under the provider's policy). The contract of
/// [`LockStore`] applies: an error means the call failed and may or may not have been carried
/// out.
#[async_trait]
pub trait S3Objects: Send + Sync + std::fmt::Debug {
    /// The object's location for messages (`s3://bucket/key`).
    fn location(&self) -> String;

    /// `GetObject`: the body and ETag, `None` when the object or the bucket is not there.
    async fn get_object(&self) -> Result<Option<(Vec<u8>, Version)>, ProviderError>;

    /// `PutObject` of `body` under `condition`.
    async fn put_object(
        &self,
        body: &[u8],
        condition: Condition<'_>,
    ) -> Result<S3Answer, ProviderError>;

    /// `DeleteObject` if the object is still `version`.
    async fn delete_object(&self, version: &str) -> Result<S3Answer, ProviderError>;

    /// Makes the lock bucket (one made meanwhile by another run is fine; one that is not
    /// ours is an error).
    async fn create_bucket(&self) -> Result<(), ProviderError>;

    /// [`LockStore::cleanup`]: removes the bucket once a destroy released its lock, where the
    /// cloud allows (default: leaves it).
    async fn remove_bucket(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// [`LockStore::documents_conditional_writes`].
    fn documents_conditional_writes(&self) -> bool {
        true
    }
}

/// Every [`S3Objects`] is a [`LockStore`]: S3's answers with their meaning for the lock.
#[async_trait]
impl<T: S3Objects> LockStore for T {
    fn location(&self) -> String {
        S3Objects::location(self)
    }

    async fn get(&self) -> Result<Option<(Vec<u8>, Version)>, ProviderError> {
        self.get_object().await
    }

    async fn create(&self, body: &[u8]) -> Result<Option<Version>, ProviderError> {
        match self.put_object(body, Condition::Absent).await? {
            S3Answer::Done(v) => return Ok(Some(v)),
            S3Answer::Refused => return Ok(None),
            S3Answer::NoBucket => self.create_bucket().await?,
        }
        match self.put_object(body, Condition::Absent).await? {
            S3Answer::Done(v) => Ok(Some(v)),
            S3Answer::Refused => Ok(None),
            // S3 is strongly consistent, so this is a bucket deleted again at once (a racing
            // destroy): the algorithm reads and tries again.
            S3Answer::NoBucket => Err(ProviderError::retryable(format!(
                "PutObject {}: the bucket just created is not there",
                S3Objects::location(self)
            ))),
        }
    }

    async fn replace(&self, body: &[u8], version: &str) -> Result<Option<Version>, ProviderError> {
        match self.put_object(body, Condition::Version(version)).await? {
            S3Answer::Done(v) => Ok(Some(v)),
            // Another writer won, or the object (or its whole bucket) is gone.
            S3Answer::Refused | S3Answer::NoBucket => Ok(None),
        }
    }

    async fn delete(&self, version: &str) -> Result<bool, ProviderError> {
        Ok(matches!(
            self.delete_object(version).await?,
            S3Answer::Done(_)
        ))
    }

    async fn cleanup(&self) -> Result<(), ProviderError> {
        self.remove_bucket().await
    }

    fn documents_conditional_writes(&self) -> bool {
        S3Objects::documents_conditional_writes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Whether the bucket exists, the object and its version, and the calls made.
    type BucketState = (bool, Option<(Vec<u8>, u32)>, Vec<String>);

    /// A bucket in memory that answers as S3 does, recording the calls.
    #[derive(Debug, Default)]
    struct Bucket {
        state: Mutex<BucketState>,
    }

    #[async_trait]
    impl S3Objects for Bucket {
        fn location(&self) -> String {
            "s3://b/k".into()
        }
        async fn get_object(&self) -> Result<Option<(Vec<u8>, Version)>, ProviderError> {
            let s = self.state.lock().unwrap();
            Ok(s.1.as_ref().map(|(b, v)| (b.clone(), v.to_string())))
        }
        async fn put_object(
            &self,
            body: &[u8],
            condition: Condition<'_>,
        ) -> Result<S3Answer, ProviderError> {
            let mut s = self.state.lock().unwrap();
            s.2.push(format!("put {condition:?}"));
            if !s.0 {
                return Ok(S3Answer::NoBucket);
            }
            let holds = match (condition, &s.1) {
                (Condition::Absent, None) => true,
                (Condition::Version(v), Some((_, have))) => v == have.to_string(),
                _ => false,
            };
            if !holds {
                return Ok(S3Answer::Refused);
            }
            let next = s.1.as_ref().map_or(1, |(_, v)| v + 1);
            s.1 = Some((body.to_vec(), next));
            Ok(S3Answer::Done(next.to_string()))
        }
        async fn delete_object(&self, version: &str) -> Result<S3Answer, ProviderError> {
            let mut s = self.state.lock().unwrap();
            s.2.push("delete".into());
            match &s.1 {
                Some((_, v)) if v.to_string() == version => {
                    s.1 = None;
                    Ok(S3Answer::Done(String::new()))
                }
                _ => Ok(S3Answer::Refused),
            }
        }
        async fn create_bucket(&self) -> Result<(), ProviderError> {
            let mut s = self.state.lock().unwrap();
            s.2.push("create bucket".into());
            s.0 = true;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_create_without_a_bucket_makes_it_and_conditions_hold() {
        let store = Bucket::default();
        assert_eq!(LockStore::get(&store).await.unwrap(), None);
        // No bucket yet: it is made and the write sent again.
        assert_eq!(store.create(b"a").await.unwrap(), Some("1".into()));
        assert_eq!(
            store.state.lock().unwrap().2,
            ["put Absent", "create bucket", "put Absent"]
        );
        // The object exists: a second create is refused.
        assert_eq!(store.create(b"b").await.unwrap(), None);
        // Replace and delete only the version read.
        assert_eq!(store.replace(b"c", "7").await.unwrap(), None);
        assert_eq!(store.replace(b"c", "1").await.unwrap(), Some("2".into()));
        assert!(!store.delete("1").await.unwrap());
        assert!(store.delete("2").await.unwrap());
        assert_eq!(LockStore::get(&store).await.unwrap(), None);
        assert!(LockStore::documents_conditional_writes(&store));
        store.cleanup().await.unwrap();
    }
}
