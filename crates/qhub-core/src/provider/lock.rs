//! The deploy lock the engine takes ([`DeployLock`]): a cloud-side lease on an object
//! ([`crate::cloud::lock`]) in the store a provider hands out
//! ([`super::Provider::lock_store`]), else the local file lock ([`deploy_lock`]) in the folder
//! it names ([`super::Provider::lock_dir`]), which only keeps two commands on one machine apart;
//! what the engine asks for when it takes one ([`LockRequest`]); and the one place that policy
//! is applied ([`take_deploy_lock`]).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Ownership, Provider, ProviderError};
use crate::cloud::lock::{CloudLock, LockRequest};
use crate::plan::ResourceId;

/// A held deployment lock. [`release`](Self::release) lets go of it; dropping a cloud lock
/// without releasing it only stops its renewal (it then expires, as after a crash), while a
/// local lock is released when dropped.
pub struct DeployLock {
    held: Held,
}

enum Held {
    Local(#[allow(dead_code)] Box<dyn std::any::Any + Send + Sync>),
    Cloud(CloudLock),
}

impl std::fmt::Debug for DeployLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.held {
            Held::Local(_) => f.write_str("DeployLock::Local"),
            Held::Cloud(c) => f
                .debug_tuple("DeployLock::Cloud")
                .field(&c.location())
                .finish(),
        }
    }
}

impl DeployLock {
    /// A local lock: `guard` holds it until dropped.
    pub fn local(guard: impl std::any::Any + Send + Sync) -> Self {
        Self {
            held: Held::Local(Box::new(guard)),
        }
    }

    /// A cloud-side lock ([`crate::cloud::lock::acquire`]).
    pub fn cloud(lock: CloudLock) -> Self {
        Self {
            held: Held::Cloud(lock),
        }
    }

    /// Cancelled when the lock is lost (another run holds it now, or it could not be renewed):
    /// the engine then starts no new change. `None` for a local lock, which cannot be lost.
    pub fn lost(&self) -> Option<CancellationToken> {
        match &self.held {
            Held::Local(_) => None,
            Held::Cloud(c) => Some(c.lost()),
        }
    }

    /// The id naming a cloud lock in events and reports (`DeployLock` `s3://…`).
    pub fn resource(&self) -> Option<ResourceId> {
        match &self.held {
            Held::Local(_) => None,
            Held::Cloud(c) => Some(c.resource()),
        }
    }

    /// Lets go of the lock: a cloud lock's object is deleted if it is still ours.
    pub async fn release(self) {
        match self.held {
            Held::Local(guard) => drop(guard),
            Held::Cloud(c) => c.release().await,
        }
    }
}

/// What a local lock file holds while it is held: who took it, where, and since when (the
/// cloud locks' record, [`crate::cloud::lock`], says the same).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LocalLockRecord {
    /// The holder's identity (`qhub@HOST/PIDNS/PID/RAND`).
    pub holder: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The command (`deploy`, `destroy`).
    pub command: String,
    /// When it took the lock (RFC 3339).
    pub since: String,
}

impl std::fmt::Display for LocalLockRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) since {}, pid {} on {}",
            self.holder, self.command, self.since, self.pid, self.host
        )
    }
}

fn lock_file_name(ownership: &Ownership) -> String {
    format!("{}.lock", ownership.prefix())
}

/// Who holds the local lock in `dir`: the record's words, "another process" when it holds the
/// lock but wrote no record (an older qhub), `None` when the lock is free.
pub fn local_lock_holder(dir: &std::path::Path, ownership: &Ownership) -> Option<String> {
    let path = dir.join(lock_file_name(ownership));
    if !path.exists() {
        return None;
    }
    // Free if we can take it (and let go at once).
    match crate::fs::try_lock(dir, &lock_file_name(ownership)) {
        Ok(_free) => None,
        Err(crate::fs::LockError::Held(_)) => Some(describe_local(&path)),
        Err(_) => None,
    }
}

fn describe_local(path: &std::path::Path) -> String {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<LocalLockRecord>(&b).ok())
        .map_or_else(
            || "another process (no holder recorded)".to_string(),
            |r| r.to_string(),
        )
}

/// The local deploy lock of `ownership`'s deployment, in `dir` (`<prefix>.lock`): what
/// providers without a cloud-side lock use so that two qhub commands on one machine cannot
/// deploy or destroy the same deployment at once. The folder ignores itself in git (a
/// `.gitignore` of `*`), so a lock beside a config kept in a repository is never committed.
/// Fails at once when another process holds it; [`local_lock`] waits.
pub fn deploy_lock(
    dir: &std::path::Path,
    ownership: &Ownership,
) -> Result<DeployLock, ProviderError> {
    take_local(dir, ownership, &LockRequest::new("deploy")).map_err(|held| held.error(None))
}

/// Why [`take_local`] did not take the lock.
enum NotTaken {
    Held(std::path::PathBuf),
    Failed(ProviderError),
}

impl NotTaken {
    fn error(self, waited: Option<Duration>) -> ProviderError {
        match self {
            NotTaken::Failed(e) => e,
            NotTaken::Held(path) => ProviderError::Fatal(format!(
                "the deploy lock {} is held by {}{}; wait for that run to finish{}",
                path.display(),
                describe_local(&path),
                waited.map_or_else(String::new, |w| format!("; waited {w:.0?} for it")),
                if waited.is_some() {
                    " (raise --lock-timeout to wait longer)"
                } else {
                    ""
                }
            )),
        }
    }
}

fn take_local(
    dir: &std::path::Path,
    ownership: &Ownership,
    request: &LockRequest,
) -> Result<DeployLock, NotTaken> {
    let lock = crate::fs::try_lock(dir, &lock_file_name(ownership));
    let ignore = dir.join(".gitignore");
    if lock.is_ok() && !ignore.exists() {
        // Best effort: without it, `git status` merely shows a stray folder.
        let _ = crate::fs::write_new(&ignore, b"*\n");
    }
    match lock {
        Ok(mut lock) => {
            let record = LocalLockRecord {
                holder: request.holder.clone(),
                host: crate::kubernetes::lease::host_name(),
                pid: std::process::id(),
                command: request.command.clone(),
                since: crate::events::now_rfc3339(),
            };
            // Best effort: a lock without its record still excludes; the waiter then says
            // "another process".
            if let Ok(text) = serde_json::to_vec(&record) {
                let _ = lock.record(&text);
            }
            Ok(DeployLock::local(lock))
        }
        Err(crate::fs::LockError::Held(path)) => Err(NotTaken::Held(path)),
        Err(e) => Err(NotTaken::Failed(ProviderError::Fatal(e.to_string()))),
    }
}

/// [`deploy_lock`], waiting up to [`LockRequest::wait`] while another process holds it and
/// reporting the wait ([`crate::events::Event::Waiting`], naming the holder) on
/// [`LockRequest::events`] when it starts, when the holder changes, and every 30 s.
pub async fn local_lock(
    dir: &std::path::Path,
    ownership: &Ownership,
    request: &LockRequest,
) -> Result<DeployLock, ProviderError> {
    use crate::events::Event;
    let start = std::time::Instant::now();
    let mut reported: Option<(String, std::time::Instant)> = None;
    loop {
        let path = match take_local(dir, ownership, request) {
            Ok(lock) => return Ok(lock),
            Err(NotTaken::Failed(e)) => return Err(e),
            Err(NotTaken::Held(path)) => path,
        };
        let waited = start.elapsed();
        if waited >= request.wait {
            return Err(NotTaken::Held(path).error(Some(waited)));
        }
        let who = describe_local(&path);
        let due = reported
            .as_ref()
            .is_none_or(|(h, at)| *h != who || at.elapsed() >= Duration::from_secs(30));
        if due {
            request.events.emit(&Event::Waiting {
                stage: None,
                resource: ResourceId::new("DeployLock", path.display().to_string()),
                detail: format!(
                    "held by {who}; waiting up to {:.0?} more",
                    request.wait.saturating_sub(waited)
                ),
            });
            reported = Some((who, std::time::Instant::now()));
        }
        let pause = Duration::from_millis(250).min(request.wait.saturating_sub(waited));
        tokio::time::sleep(pause).await;
    }
}

/// Takes `ownership`'s deploy lock with `provider`'s hooks, the one policy for every
/// provider: the cloud lock in the store [`Provider::lock_store`] hands out; else (no store)
/// the local lock in [`Provider::lock_dir`]; else `Ok(None)` (the Kubernetes stage then relies
/// on its Lease). A store that does not document conditional writes
/// ([`crate::cloud::lock::LockStore::documents_conditional_writes`], Spaces) and fails the check of them
/// ([`ProviderError::NotSupported`]) falls back to the local lock, saying so; any other error
/// of the cloud lock fails the run (never a silent fallback that would let two CI runners in).
pub async fn take_deploy_lock(
    provider: &dyn Provider,
    ownership: &Ownership,
    request: &LockRequest,
) -> Result<Option<DeployLock>, ProviderError> {
    if let Some(store) = provider.lock_store(ownership).await? {
        let checked = !store.documents_conditional_writes();
        match crate::cloud::lock::acquire(store, &ownership.prefix(), request).await {
            Ok(held) => return Ok(Some(DeployLock::cloud(held))),
            Err(ProviderError::NotSupported(why)) if checked => tracing::warn!(
                "no cloud-side deploy lock: {why}; keeping the local lock only (two CI runners could deploy this config at once)"
            ),
            Err(e) => return Err(e),
        }
    }
    match provider.lock_dir() {
        Some(dir) => local_lock(&dir, ownership, request).await.map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deploy_lock_excludes_a_second_holder_and_ignores_itself_in_git() {
        let dir = tempfile::tempdir().unwrap();
        let lock_dir = dir.path().join(".qhub");
        let o = Ownership {
            project: "demo".into(),
            namespace: "dev".into(),
        };
        let held = deploy_lock(&lock_dir, &o).expect("first holder");
        let err = deploy_lock(&lock_dir, &o).map(|_| ()).unwrap_err();
        assert!(
            err.to_string().contains("demo-dev") && err.to_string().contains("is held"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(lock_dir.join(".gitignore")).unwrap(),
            "*\n"
        );
        drop(held);
        deploy_lock(&lock_dir, &o).expect("free again once dropped");
    }

    #[tokio::test]
    async fn the_local_lock_records_its_holder_and_a_second_run_waits_for_it() {
        use crate::events::{CollectEvents, Event};
        let dir = tempfile::tempdir().unwrap();
        let o = Ownership {
            project: "demo".into(),
            namespace: "dev".into(),
        };
        let mut first = LockRequest::new("deploy");
        first.holder = "qhub@first/1/2/3".into();
        let held = local_lock(dir.path(), &o, &first).await.unwrap();
        let holder = local_lock_holder(dir.path(), &o).expect("held");
        assert!(
            holder.contains("qhub@first/1/2/3")
                && holder.contains(&format!("pid {}", std::process::id()))
                && holder.contains("deploy")
                && holder.contains(" since 20"),
            "{holder}"
        );
        // Waiting 0: fails at once naming the holder.
        let mut second = LockRequest::new("destroy");
        let err = local_lock(dir.path(), &o, &second).await.unwrap_err();
        assert!(err.to_string().contains("qhub@first/1/2/3"), "{err}");
        // Waiting longer: reports the wait, and takes the lock once it is released.
        let events = std::sync::Arc::new(CollectEvents::default());
        second.wait = Duration::from_secs(30);
        second.events = events.clone();
        let releaser = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            held.release().await;
        });
        let taken = local_lock(dir.path(), &o, &second)
            .await
            .expect("taken after the wait");
        releaser.await.unwrap();
        let waits = events.waits_on("DeployLock");
        assert!(
            waits
                .first()
                .is_some_and(|w| w.contains("held by qhub@first/1/2/3")),
            "{waits:?}"
        );
        assert!(matches!(
            events.events().first(),
            Some(Event::Waiting { stage: None, .. })
        ));
        assert!(local_lock_holder(dir.path(), &o).is_some_and(|h| h.contains("destroy")));
        drop(taken);
        assert_eq!(local_lock_holder(dir.path(), &o), None);
    }
}
