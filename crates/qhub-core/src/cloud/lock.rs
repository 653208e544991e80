//! The cloud-side deploy lock: a lease on one object in a store with compare-and-swap (S3
//! conditional writes, GCS generation preconditions), so that two CI runners on different
//! machines cannot deploy or destroy one deployment at once.
//!
//! The algorithm is the Kubernetes stage's Lease ([`crate::kubernetes::lease`]) on an object:
//! the same holder identity ([`crate::kubernetes::lease::holder_identity`]), the same timing
//! ([`LeaseTiming`]: duration, renewal interval, `lost_after`) and the same "lost" signal
//! (a cancellation token; the engine then starts no new change, lets those in flight finish and
//! fails saying why). What differs: a second run **waits** for a live holder (up to
//! [`LockRequest::wait`], reporting [`Event::Waiting`] with who holds it and since when) instead
//! of failing at once, because two CI runners started by one push should queue, not fail.
//!
//! - **Acquire**: read the object. Absent: create it if absent (`If-None-Match: *`). Ours (a
//!   create whose answer was lost): refresh it. Another's, expired: replace it if it is still
//!   the version read (`If-Match`). Another's, live: wait and read again. A lost race
//!   (precondition failed) means reading again.
//! - **Expired** means the holder stopped renewing for longer than the lease duration: its
//!   record stayed the same version for a whole lease duration while we watched (our own
//!   monotonic clock, so no clock skew can make a live holder look expired), or its `expires`
//!   time is more than [`STALE_AFTER_DURATIONS`] lease durations in the past by our clock (a
//!   record left long ago is taken at once; the margin covers clocks minutes apart), or its
//!   holder is a process of this machine that no longer runs. A live holder's record is never replaced or deleted.
//! - **Renew** every [`LeaseTiming::renew_every`]: replace the record if it is still our
//!   version. Precondition failed and the object is another's (or gone: someone broke the lock
//!   by hand): lost. Renewals failing for [`LeaseTiming::lost_after`] (less than the lease
//!   duration, so we stop before anyone may take it): lost.
//! - **Release**: delete the object only if it is still our version.
//!
//! Each store call may fail with a retryable [`ProviderError`]; the algorithm then reads again
//! and retries under the engine's [`RetryPolicy`] (safe: every step starts from a read, and
//! the record names its holder, so a create or replace whose answer was lost is recognised).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::ProviderError;
use crate::events::Event;
use crate::kubernetes::lease::LeaseTiming;
use crate::plan::ResourceId;
use crate::retry::{Retrier, retry};

pub use crate::retry::RetryPolicy;

/// The resource kind that names a deploy lock in events and reports.
pub const LOCK_KIND: &str = "DeployLock";

/// The environment variable that opts out of the cloud-side lock: `local` keeps only the
/// local lock file beside the config (every provider reads it).
pub const DEPLOY_LOCK_ENV: &str = "QHUB_DEPLOY_LOCK";

/// What every lock bucket's name starts with, on every cloud.
pub const BUCKET_PREFIX: &str = "qhub-locks-";

/// The tag (or label) key that says what a shared qhub resource is for.
pub const PURPOSE_KEY: &str = "qhub-purpose";

/// The value of [`PURPOSE_KEY`] on a lock bucket.
pub const PURPOSE: &str = "deploy-locks";

/// The lock object's key for deployment `prefix` (`{project}-{namespace}`), the same in every
/// cloud's lock bucket.
pub fn object_key(prefix: &str) -> String {
    format!("qhub/{prefix}.lock")
}

/// The values [`DEPLOY_LOCK_ENV`] takes: `cloud` (the provider's cloud-side lock where it has
/// one; the default) and `local` (the local file lock only). The CLI refuses any other.
pub const DEPLOY_LOCK_VALUES: [&str; 2] = ["cloud", "local"];

/// True unless [`DEPLOY_LOCK_ENV`] is `local`: whether a provider built from the environment
/// takes its cloud-side lock.
pub fn cloud_lock_from_env() -> bool {
    std::env::var(DEPLOY_LOCK_ENV)
        .ok()
        .as_deref()
        .map(str::trim)
        != Some("local")
}

/// A version no store ever hands out: the conditional-write check replaces and deletes "if
/// the object is still this version", which must be refused.
const NEVER_A_VERSION: &str = "\"qhub-conditional-write-check\"";

/// How many lease durations past its `expires` time (by this machine's clock) a record is
/// taken over without watching it for a lease duration first: ten minutes with the default
/// lease, far more than the clock skew of NTP-synchronised machines.
pub const STALE_AFTER_DURATIONS: u32 = 10;

/// A version of the lock object, as the store reports it (an S3 ETag, a GCS generation).
pub type Version = String;

/// One object with compare-and-swap: what the lock algorithm needs from a cloud's storage.
///
/// Contract: every write is conditional and atomic. `Ok(None)`/`Ok(false)` means the
/// precondition failed (another writer won, or the object is not there); an error means the
/// call failed and may or may not have been carried out (a retryable error is retried after a
/// fresh [`get`](Self::get)).
#[async_trait]
pub trait LockStore: Send + Sync + std::fmt::Debug {
    /// Where the object lives, for messages (`s3://bucket/qhub/demo-dev.lock`).
    fn location(&self) -> String;

    /// The object's body and version, or `None` when it does not exist.
    async fn get(&self) -> Result<Option<(Vec<u8>, Version)>, ProviderError>;

    /// Creates the object if it does not exist: its new version, or `None` when it exists.
    async fn create(&self, body: &[u8]) -> Result<Option<Version>, ProviderError>;

    /// Replaces the object if it is still `version`: its new version, or `None` when it
    /// changed or is gone.
    async fn replace(&self, body: &[u8], version: &str) -> Result<Option<Version>, ProviderError>;

    /// Deletes the object if it is still `version`: `false` when it changed or is gone.
    async fn delete(&self, version: &str) -> Result<bool, ProviderError>;

    /// Called after a destroy released its lock: removes what holds the lock objects (a
    /// bucket) when nothing else uses it. Default: nothing.
    async fn cleanup(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Whether the store's own documentation promises the conditional writes this trait
    /// needs (S3 and Cloud Storage do). When it does not (an S3-compatible store whose
    /// documentation is silent), [`acquire`] checks them on the lock it just took: a create of
    /// the existing object, and a replace and a delete of a version that never existed, must
    /// all be refused. A store that carries any of them out cannot hold a lock: `acquire` then
    /// removes its record and fails with [`ProviderError::NotSupported`]. Costs three calls
    /// per lock taken. Default: true.
    fn documents_conditional_writes(&self) -> bool {
        true
    }
}

/// The lock object's body (JSON): who holds the lock, for which deployment and command, and
/// its times (RFC 3339, UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// The holder's identity (`qhub@HOST/PIDNS/PID/RAND`).
    pub holder: String,
    /// The deployment (`{project}-{namespace}`).
    pub deployment: String,
    /// The command holding it (`deploy`, `destroy`).
    pub command: String,
    /// When the holder took it.
    pub acquired: String,
    /// When the holder last renewed it.
    pub renewed: String,
    /// When it expires unless renewed (`renewed` + the lease duration).
    pub expires: String,
}

impl LockRecord {
    fn new(request: &LockRequest, deployment: &str, acquired: Timestamp) -> Self {
        let now = Timestamp::now();
        Self {
            holder: request.holder.clone(),
            deployment: deployment.to_string(),
            command: request.command.clone(),
            acquired: acquired.to_string(),
            renewed: now.to_string(),
            expires: now
                .checked_add(signed(request.timing.duration))
                .unwrap_or(now)
                .to_string(),
        }
    }

    fn body(&self) -> Result<Vec<u8>, ProviderError> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| ProviderError::Fatal(format!("writing the lock record: {e}")))
    }

    fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }

    /// True when the record expired more than `grace` ago by this machine's clock.
    fn expired_long_ago(&self, grace: Duration) -> bool {
        self.expires
            .parse::<Timestamp>()
            .ok()
            .and_then(|e| e.checked_add(signed(grace)).ok())
            .is_some_and(|limit| Timestamp::now() > limit)
    }
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// A held cloud lock: renewed in the background; [`release`](Self::release) deletes it.
/// Dropping it only stops the renewal (the lock then expires, as after a crash), like the
/// Kubernetes stage's [`crate::kubernetes::lease::LeaseGuard`].
#[derive(Debug)]
pub struct CloudLock {
    store: Arc<dyn LockStore>,
    holder: String,
    version: Arc<Mutex<Version>>,
    renew: tokio::task::JoinHandle<()>,
    lost: CancellationToken,
    cleanup: bool,
}

impl Drop for CloudLock {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

impl CloudLock {
    /// Cancelled when the lock is lost: another run holds it now, or it could not be renewed
    /// for [`LeaseTiming::lost_after`]. The holder must then start no new change.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Where the lock object lives.
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// The id that names this lock in events and reports.
    pub fn resource(&self) -> ResourceId {
        ResourceId::new(LOCK_KIND, self.location())
    }

    /// Stops renewing and deletes the lock object if it is still ours (never another's); after
    /// a destroy, lets the store remove what holds lock objects ([`LockStore::cleanup`]).
    /// Failures are logged: the lock then expires by itself.
    pub async fn release(self) {
        self.renew.abort();
        let version = self.version.lock().map(|v| v.clone()).unwrap_or_default();
        let mut version = version;
        // A renewal cut short may have gone through after all: then the record is ours under
        // a newer version; read it and try once more.
        for _ in 0..3 {
            match self.store.delete(&version).await {
                Ok(true) => {
                    tracing::debug!(lock = %self.location(), "released the deploy lock");
                    break;
                }
                Ok(false) => match self.store.get().await {
                    Ok(Some((body, v)))
                        if LockRecord::parse(&body).is_some_and(|r| r.holder == self.holder) =>
                    {
                        version = v;
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, lock = %self.location(), "releasing the deploy lock failed; it expires by itself");
                        break;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, lock = %self.location(), "releasing the deploy lock failed; it expires by itself");
                    break;
                }
            }
        }
        if self.cleanup
            && let Err(e) = self.store.cleanup().await
        {
            tracing::warn!(error = %e, "removing the lock store after the destroy failed");
        }
    }
}

/// What one look at the lock found.
enum Look {
    /// We hold it now, at this version.
    Taken(Version),
    /// A live holder has it (its record, or `None` when unreadable).
    Held(Option<LockRecord>),
    /// Someone else wrote first: look again at once.
    Raced,
}

/// Takes the lock in `store` for `deployment`, waiting up to [`LockRequest::wait`] while a
/// live holder has it (reporting [`Event::Waiting`] on [`LockRequest::events`]), and taking
/// over an expired one. Fails naming the holder and since when once the wait is over.
pub async fn acquire(
    store: Arc<dyn LockStore>,
    deployment: &str,
    request: &LockRequest,
) -> Result<CloudLock, ProviderError> {
    let timing = request.timing;
    let resource = ResourceId::new(LOCK_KIND, store.location());
    let started = Instant::now();
    let deadline = started + request.wait;
    let acquired = Timestamp::now();
    let mut retrier = Retrier::new(request.retry);
    // The version we watch for expiry, since when, and the last holder we reported.
    let mut watched: Option<(Version, Instant)> = None;
    let mut reported: Option<(String, Instant)> = None;
    let version = loop {
        let look = look(&*store, deployment, request, acquired, &mut watched).await;
        match look {
            Ok(Look::Taken(v)) => break v,
            Ok(Look::Raced) => continue,
            Ok(Look::Held(record)) => {
                let who = describe(record.as_ref());
                let now = Instant::now();
                if now >= deadline {
                    return Err(ProviderError::Fatal(format!(
                        "the deploy lock {} is held by {who}; waited {:.0?} for it (raise --lock-timeout to wait longer; a holder that stopped renewing loses it after {:.0?}, see the producers' guide to break a stale lock)",
                        store.location(),
                        request.wait,
                        timing.duration
                    )));
                }
                let holder = record
                    .as_ref()
                    .map(|r| r.holder.clone())
                    .unwrap_or_default();
                let due = reported.as_ref().is_none_or(|(h, at)| {
                    *h != holder || now.duration_since(*at) >= Duration::from_secs(30)
                });
                if due {
                    let left = deadline.saturating_duration_since(now);
                    tracing::info!(lock = %store.location(), "waiting for the deploy lock: {who}");
                    request.events.emit(&Event::Waiting {
                        stage: None,
                        resource: resource.clone(),
                        detail: format!("held by {who}; waiting up to {left:.0?} more"),
                    });
                    reported = Some((holder, now));
                }
                let pause = timing
                    .renew_every
                    .min(deadline.saturating_duration_since(now));
                tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
            }
            Err(e) => match retrier.next_delay(&e) {
                Some(delay)
                    if Instant::now() + delay < deadline.max(started + timing.lost_after) =>
                {
                    tracing::info!(error = %e, ?delay, "taking the deploy lock failed; trying again");
                    tokio::time::sleep(delay).await;
                }
                _ => return Err(e),
            },
        }
    };
    let version = if store.documents_conditional_writes() {
        version
    } else {
        let mine = LockRecord::new(request, deployment, acquired).body()?;
        match check_conditional_writes(&*store, &mine, version.clone(), request).await {
            Ok(v) => v,
            Err(e) => {
                // A check that could not be made: let go of the lock rather than leave it to
                // expire (a check that failed has removed it already).
                if !matches!(e, ProviderError::NotSupported(_)) {
                    let _ = store.delete(&version).await;
                }
                return Err(e);
            }
        }
    };
    tracing::info!(lock = %store.location(), holder = %request.holder, "took the deploy lock");
    let version = Arc::new(Mutex::new(version));
    let lost = CancellationToken::new();
    let renew = tokio::spawn(renew(
        store.clone(),
        deployment.to_string(),
        request.clone(),
        acquired,
        version.clone(),
        lost.clone(),
    ));
    Ok(CloudLock {
        store,
        holder: request.holder.clone(),
        version,
        renew,
        lost,
        cleanup: request.command == "destroy",
    })
}

/// Checks, on the lock just taken at `version` (holding `mine`), that the store refuses what
/// it must ([`LockStore::documents_conditional_writes`]): creating the existing object,
/// replacing or deleting a version that never existed. Each probe would only rewrite (or
/// remove) our own record. Returns the version to renew from; when a probe was carried out,
/// removes what is left of our record and fails with [`ProviderError::NotSupported`].
async fn check_conditional_writes(
    store: &dyn LockStore,
    mine: &[u8],
    version: Version,
    request: &LockRequest,
) -> Result<Version, ProviderError> {
    let what = format!("checking conditional writes on {}", store.location());
    let ignored = if let Some(v) = retry(&request.retry, &what, || store.create(mine)).await? {
        Some(("If-None-Match: * (a create of an existing object)", v))
    } else if let Some(v) = retry(&request.retry, &what, || {
        store.replace(mine, NEVER_A_VERSION)
    })
    .await?
    {
        Some((
            "If-Match on a write (a replace of a version that never existed)",
            v,
        ))
    } else if retry(&request.retry, &what, || store.delete(NEVER_A_VERSION)).await? {
        Some((
            "If-Match on a delete (a delete of a version that never existed)",
            String::new(),
        ))
    } else {
        None
    };
    let Some((condition, left)) = ignored else {
        tracing::debug!(lock = %store.location(), "the lock store honours conditional writes");
        return Ok(version);
    };
    // Take our record away again: whatever version it has now, it is ours.
    for v in [left, version] {
        if !v.is_empty()
            && let Err(e) = store.delete(&v).await
        {
            tracing::warn!(error = %e, lock = %store.location(), "removing the lock record after the check failed");
        }
    }
    if let Ok(Some((body, v))) = store.get().await
        && LockRecord::parse(&body).is_some_and(|r| r.holder == request.holder)
    {
        let _ = store.delete(&v).await;
    }
    Err(ProviderError::NotSupported(format!(
        "the lock store {} ignored a conditional write ({condition}): it cannot hold a deploy lock",
        store.location()
    )))
}

/// `qhub@host/… (deploy) since 2026-…Z, last renewed 2026-…Z`.
fn describe(record: Option<&LockRecord>) -> String {
    match record {
        Some(r) => format!(
            "{} ({}) since {}, last renewed {}",
            r.holder, r.command, r.acquired, r.renewed
        ),
        None => "an unreadable lock record".into(),
    }
}

/// One look: read, then take the lock if it is free, ours or expired.
async fn look(
    store: &dyn LockStore,
    deployment: &str,
    request: &LockRequest,
    acquired: Timestamp,
    watched: &mut Option<(Version, Instant)>,
) -> Result<Look, ProviderError> {
    let mine = LockRecord::new(request, deployment, acquired).body()?;
    let Some((body, version)) = store.get().await? else {
        return Ok(match store.create(&mine).await? {
            Some(v) => Look::Taken(v),
            None => Look::Raced,
        });
    };
    let record = LockRecord::parse(&body);
    if record.as_ref().is_some_and(|r| r.holder == request.holder) {
        // Ours already: a create or takeover whose answer was lost.
        return Ok(match store.replace(&mine, &version).await? {
            Some(v) => Look::Taken(v),
            None => Look::Raced,
        });
    }
    let now = Instant::now();
    let since = match watched {
        Some((v, since)) if *v == version => *since,
        _ => {
            *watched = Some((version.clone(), now));
            now
        }
    };
    let duration = request.timing.duration;
    let expired = now.duration_since(since) >= duration
        || record.as_ref().is_some_and(|r| {
            r.expired_long_ago(duration * STALE_AFTER_DURATIONS)
                || crate::kubernetes::lease::holder_is_dead(&r.holder)
        });
    if !expired {
        return Ok(Look::Held(record));
    }
    match store.replace(&mine, &version).await? {
        Some(v) => {
            tracing::warn!(
                lock = %store.location(),
                "took over the deploy lock from {}, which stopped renewing it",
                describe(record.as_ref())
            );
            Ok(Look::Taken(v))
        }
        None => Ok(Look::Raced),
    }
}

/// What one renewal found.
enum Renewal {
    Renewed(Version),
    Taken(String),
}

/// Renews the lock every [`LeaseTiming::renew_every`] while it is ours; cancels `lost` when
/// another holder has it (or it is gone) or no renewal succeeded for
/// [`LeaseTiming::lost_after`].
async fn renew(
    store: Arc<dyn LockStore>,
    deployment: String,
    request: LockRequest,
    acquired: Timestamp,
    version: Arc<Mutex<Version>>,
    lost: CancellationToken,
) {
    let timing: LeaseTiming = request.timing;
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(timing.renew_every).await;
        // Each round retries quickly; the lock is lost only when it is another's or no round
        // succeeded for `lost_after` (the Lease's rule).
        let mut retrier = Retrier::new(request.retry);
        loop {
            let current = version.lock().map(|v| v.clone()).unwrap_or_default();
            match renew_once(&*store, &deployment, &request, acquired, &current).await {
                Ok(Renewal::Renewed(v)) => {
                    if let Ok(mut slot) = version.lock() {
                        *slot = v;
                    }
                    renewed = Instant::now();
                    break;
                }
                Ok(Renewal::Taken(other)) => {
                    tracing::error!(
                        lock = %store.location(),
                        "the deploy lock was taken by {other}"
                    );
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, lock = %store.location(), "renewing the deploy lock failed");
                    if renewed.elapsed() >= timing.lost_after {
                        tracing::error!(
                            lock = %store.location(),
                            "the deploy lock was not renewed for {:?}: it counts as lost",
                            renewed.elapsed()
                        );
                        lost.cancel();
                        return;
                    }
                    let Some(delay) = retrier.next_delay(&e) else {
                        break;
                    };
                    tokio::time::sleep(delay.min(timing.renew_every)).await;
                }
            }
        }
    }
}

/// One renewal: replace our version; when that fails, read who has it.
async fn renew_once(
    store: &dyn LockStore,
    deployment: &str,
    request: &LockRequest,
    acquired: Timestamp,
    version: &str,
) -> Result<Renewal, ProviderError> {
    let mine = LockRecord::new(request, deployment, acquired).body()?;
    if let Some(v) = store.replace(&mine, version).await? {
        return Ok(Renewal::Renewed(v));
    }
    match store.get().await? {
        None => Ok(Renewal::Taken(
            "nobody: the lock object was deleted".to_string(),
        )),
        Some((body, v)) => match LockRecord::parse(&body) {
            // Our own renewal whose answer was lost went through: carry on from it.
            Some(r) if r.holder == request.holder => Ok(Renewal::Renewed(v)),
            other => Ok(Renewal::Taken(describe(other.as_ref()))),
        },
    }
}

mod request;
pub use request::LockRequest;

// The in-memory store is a test double: compiled for the conformance suite and this crate's
// tests only, kept at its old path (`cloud::lock::MemoryStore`).
#[cfg(any(test, feature = "conformance"))]
mod memory;
#[cfg(any(test, feature = "conformance"))]
pub use memory::MemoryStore;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CollectEvents;
    use crate::retry::Budget;

    fn timing() -> LeaseTiming {
        LeaseTiming {
            duration: Duration::from_secs(60),
            renew_every: Duration::from_secs(10),
            lost_after: Duration::from_secs(40),
        }
    }

    fn request(holder: &str, wait: Duration) -> (LockRequest, Arc<CollectEvents>) {
        let events = Arc::new(CollectEvents::default());
        let mut r = LockRequest::new("deploy");
        r.holder = holder.into();
        r.wait = wait;
        r.timing = timing();
        r.retry = RetryPolicy::uniform(Budget::attempts(
            5,
            Duration::from_millis(100),
            Duration::from_secs(1),
        ));
        r.events = events.clone();
        (r, events)
    }

    fn waits(events: &CollectEvents) -> Vec<String> {
        events.waits_on(LOCK_KIND)
    }

    fn foreign(holder: &str, renewed: Timestamp) -> Vec<u8> {
        serde_json::to_vec(&LockRecord {
            holder: holder.into(),
            deployment: "demo-dev".into(),
            command: "deploy".into(),
            acquired: renewed.to_string(),
            renewed: renewed.to_string(),
            expires: (renewed + SignedDuration::from_secs(60)).to_string(),
        })
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_free_lock_is_taken_renewed_and_released() {
        let store = Arc::new(MemoryStore::new());
        let (req, _) = request("qhub@a/-/1/01", Duration::ZERO);
        let lock = acquire(store.clone(), "demo-dev", &req).await.unwrap();
        let first = store.record().unwrap();
        assert_eq!(first.holder, "qhub@a/-/1/01");
        assert_eq!(first.deployment, "demo-dev");
        assert_eq!(first.command, "deploy");
        let body = store.body().unwrap();
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_ne!(store.body().unwrap(), body, "renewed");
        assert!(!lock.lost().is_cancelled());
        lock.release().await;
        assert!(store.body().is_none(), "released");
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_ignores_conditional_writes_is_refused_and_left_empty() {
        let store = Arc::new(MemoryStore::undocumented(true));
        let (req, _) = request("qhub@a/-/1/01", Duration::ZERO);
        let err = acquire(store.clone(), "demo-dev", &req).await.unwrap_err();
        match &err {
            ProviderError::NotSupported(m) => {
                assert!(m.contains("memory://lock"), "{m}");
                assert!(m.contains("If-None-Match"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert!(store.body().is_none(), "our record is removed again");
        // A store whose documentation is silent but that honours the conditions: three more
        // calls (the refused create, replace and delete), and the lock works as usual.
        let careful = Arc::new(MemoryStore::undocumented(false));
        let lock = acquire(careful.clone(), "demo-dev", &req).await.unwrap();
        assert_eq!(careful.calls(), 2 + 3);
        assert_eq!(careful.record().unwrap().holder, "qhub@a/-/1/01");
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(
            !lock.lost().is_cancelled(),
            "renewed from the right version"
        );
        lock.release().await;
        assert!(careful.body().is_none());
        // A check that cannot be made (its call fails past its retries) lets go of the lock
        // at once instead of leaving it to expire.
        let flaky = Arc::new(MemoryStore::undocumented(false));
        let (mut quick, _) = request("qhub@a/-/1/01", Duration::ZERO);
        quick.retry = RetryPolicy::uniform(Budget::attempts(
            1,
            Duration::from_millis(1),
            Duration::from_millis(1),
        ));
        // Calls 1 and 2 take the lock (a read, a create); call 3, the check's create, fails.
        flaky.fail_calls(3, 1);
        let err = acquire(flaky.clone(), "demo-dev", &quick)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert!(flaky.body().is_none(), "the lock was let go");
        // A store that documents them is not checked.
        let documented = Arc::new(MemoryStore::new());
        let lock = acquire(documented.clone(), "demo-dev", &req).await.unwrap();
        assert_eq!(documented.calls(), 2);
        lock.release().await;
    }

    #[tokio::test(start_paused = true)]
    async fn two_concurrent_acquirers_take_turns() {
        let store = Arc::new(MemoryStore::new());
        let (a, _) = request("qhub@a/-/1/01", Duration::from_secs(600));
        let (b, b_events) = request("qhub@b/-/2/02", Duration::from_secs(600));
        let (sa, sb) = (store.clone(), store.clone());
        let mut ta = tokio::spawn(async move { acquire(sa, "demo-dev", &a).await });
        let mut tb = tokio::spawn(async move { acquire(sb, "demo-dev", &b).await });
        // One of them has it; the other waits (and says so) however long the first holds it.
        let (a_won, won) = tokio::select! {
            r = &mut ta => (true, r),
            r = &mut tb => (false, r),
        };
        let first = won.unwrap().unwrap();
        let second = if a_won { tb } else { ta };
        let holder = store.record().unwrap().holder;
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(store.record().unwrap().holder, holder, "still the first");
        assert!(!second.is_finished(), "the second still waits");
        assert!(!first.lost().is_cancelled());
        first.release().await;
        let second = second.await.unwrap().unwrap();
        assert_ne!(store.record().unwrap().holder, holder);
        if holder == "qhub@a/-/1/01" {
            let w = waits(&b_events);
            assert!(
                !w.is_empty() && w[0].contains("held by qhub@a/-/1/01 (deploy) since"),
                "{w:?}"
            );
        }
        second.release().await;
        assert!(store.body().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_holder_is_never_taken_over_and_the_waiter_gives_up_naming_it() {
        let store = Arc::new(MemoryStore::new());
        let (a, _) = request("qhub@a/-/1/01", Duration::ZERO);
        let held = acquire(store.clone(), "demo-dev", &a).await.unwrap();
        let (b, events) = request("qhub@b/-/2/02", Duration::from_secs(200));
        let err = acquire(store.clone(), "demo-dev", &b)
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("held by qhub@a/-/1/01 (deploy) since"),
            "{err}"
        );
        assert!(err.contains("--lock-timeout"), "{err}");
        assert_eq!(store.record().unwrap().holder, "qhub@a/-/1/01");
        assert!(!held.lost().is_cancelled());
        // Progress, not one line per poll: at most one event per 30 s.
        let w = waits(&events);
        assert!((2..=8).contains(&w.len()), "{w:?}");
        held.release().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_holder_is_taken_over_after_one_lease_duration_unchanged() {
        let store = Arc::new(MemoryStore::new());
        // A crashed holder on another machine whose record looks fresh by the wall clock.
        store.put(&foreign("qhub@crashed/-/9/09", Timestamp::now()));
        let (b, events) = request("qhub@b/-/2/02", Duration::from_secs(600));
        let start = Instant::now();
        let lock = acquire(store.clone(), "demo-dev", &b).await.unwrap();
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(60) && waited <= Duration::from_secs(75),
            "{waited:?}"
        );
        assert_eq!(store.record().unwrap().holder, "qhub@b/-/2/02");
        assert!(waits(&events)[0].contains("qhub@crashed/-/9/09"));
        lock.release().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_that_expired_long_ago_is_taken_at_once() {
        let store = Arc::new(MemoryStore::new());
        let old = Timestamp::now() - SignedDuration::from_hours(1);
        store.put(&foreign("qhub@crashed/-/9/09", old));
        let (b, events) = request("qhub@b/-/2/02", Duration::ZERO);
        let lock = acquire(store.clone(), "demo-dev", &b).await.unwrap();
        assert_eq!(store.record().unwrap().holder, "qhub@b/-/2/02");
        assert!(waits(&events).is_empty());
        lock.release().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewing_holder_with_a_clock_minutes_behind_is_never_taken_over() {
        let store = Arc::new(MemoryStore::new());
        // Another machine whose clock is five minutes slow: by ours its record expired long
        // ago, but it keeps renewing, so the version keeps changing.
        let writer = store.clone();
        let holder = tokio::spawn(async move {
            loop {
                let skewed = Timestamp::now() - SignedDuration::from_mins(5);
                writer.put(&foreign("qhub@slow/-/5/05", skewed));
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
        tokio::task::yield_now().await;
        let (b, _) = request("qhub@b/-/2/02", Duration::from_secs(300));
        let err = acquire(store.clone(), "demo-dev", &b)
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("qhub@slow/-/5/05"), "{err}");
        assert_eq!(store.record().unwrap().holder, "qhub@slow/-/5/05");
        holder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_lock_taken_by_another_run_is_lost_and_not_deleted_on_release() {
        let store = Arc::new(MemoryStore::new());
        let (a, _) = request("qhub@a/-/1/01", Duration::ZERO);
        let lock = acquire(store.clone(), "demo-dev", &a).await.unwrap();
        let lost = lock.lost();
        store.put(&foreign("qhub@other/-/3/03", Timestamp::now()));
        tokio::time::timeout(Duration::from_secs(30), lost.cancelled())
            .await
            .expect("lost at the next renewal");
        lock.release().await;
        assert_eq!(
            store.record().unwrap().holder,
            "qhub@other/-/3/03",
            "another's record is never deleted"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_failing_past_lost_after_lose_the_lock_and_brief_failures_do_not() {
        let store = Arc::new(MemoryStore::new());
        let (a, _) = request("qhub@a/-/1/01", Duration::ZERO);
        let lock = acquire(store.clone(), "demo-dev", &a).await.unwrap();
        let lost = lock.lost();
        store.fail_next(2);
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert!(!lost.is_cancelled(), "two failed calls are retried");
        store.fail_next(u32::MAX);
        tokio::time::timeout(Duration::from_secs(60), lost.cancelled())
            .await
            .expect("lost after lost_after without a renewal");
        store.fail_next(0);
        assert_eq!(store.record().unwrap().holder, "qhub@a/-/1/01");
        lock.release().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_whose_answer_was_lost_is_recognised_as_ours() {
        let store = Arc::new(MemoryStore::new());
        let (a, _) = request("qhub@a/-/1/01", Duration::ZERO);
        // The create goes through but its answer is lost: the retry reads our own record.
        store.lose_next_write();
        let lock = acquire(store.clone(), "demo-dev", &a).await.unwrap();
        assert_eq!(store.record().unwrap().holder, "qhub@a/-/1/01");
        lock.release().await;
        assert!(store.body().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_record_is_waited_out_like_any_other() {
        let store = Arc::new(MemoryStore::new());
        store.put(b"not json");
        let (b, events) = request("qhub@b/-/2/02", Duration::from_secs(30));
        let err = acquire(store.clone(), "demo-dev", &b)
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("unreadable"), "{err}");
        assert!(!waits(&events).is_empty());
        assert_eq!(store.body().unwrap(), b"not json");
    }
}
