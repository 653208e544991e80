//! The deploy lock a provider hands the engine ([`DeployLock`]): a cloud-side lease on an
//! object ([`crate::cloud::lock`]) where the provider has one, or the local file lock
//! ([`deploy_lock`]) that only keeps two commands on one machine apart; and what the engine
//! asks for when it takes one ([`LockRequest`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Ownership, ProviderError};
use crate::cloud::lock::CloudLock;
use crate::engine::events::{EventSink, NoEvents};
use crate::engine::retry::RetryPolicy;
use crate::kubernetes::lease::LeaseTiming;
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

/// What the engine asks of [`super::Provider::lock`]: who takes the lock, for what, how long
/// to wait for another holder, and where to report the wait.
#[derive(Clone)]
pub struct LockRequest {
    /// The holder's identity (default [`crate::kubernetes::lease::holder_identity`]); two
    /// runs must never share one.
    pub holder: String,
    /// The command taking it (`deploy`, `destroy`); a destroy lets the provider remove the
    /// lock's store once it is empty.
    pub command: String,
    /// How long to wait while another run holds the lock; zero fails at once.
    pub wait: Duration,
    /// The lease's duration, renewal interval and when it counts as lost (the Kubernetes
    /// stage's Lease timing).
    pub timing: LeaseTiming,
    /// Retries of failed lock calls.
    pub retry: RetryPolicy,
    /// Where the wait is reported ([`crate::engine::events::Event::Waiting`]).
    pub events: Arc<dyn EventSink>,
}

impl std::fmt::Debug for LockRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockRequest")
            .field("holder", &self.holder)
            .field("command", &self.command)
            .field("wait", &self.wait)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl LockRequest {
    /// A request for `command` by this run, failing at once when the lock is held, with the
    /// default timing and retries and no events.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            holder: crate::kubernetes::lease::holder_identity(),
            command: command.into(),
            wait: Duration::ZERO,
            timing: LeaseTiming::default(),
            retry: RetryPolicy::default(),
            events: Arc::new(NoEvents),
        }
    }
}

/// The local deploy lock of `ownership`'s deployment, in `dir` (`<prefix>.lock`): what
/// providers without a cloud-side lock use so that two qhub commands on one machine cannot
/// deploy or destroy the same deployment at once. The folder ignores itself in git (a
/// `.gitignore` of `*`), so a lock beside a config kept in a repository is never committed.
pub fn deploy_lock(
    dir: &std::path::Path,
    ownership: &Ownership,
) -> Result<DeployLock, ProviderError> {
    let lock = crate::fs::try_lock(dir, &format!("{}.lock", ownership.prefix()));
    let ignore = dir.join(".gitignore");
    if lock.is_ok() && !ignore.exists() {
        // Best effort: without it, `git status` merely shows a stray folder.
        let _ = crate::fs::write_new(&ignore, b"*\n");
    }
    match lock {
        Ok(lock) => Ok(DeployLock::local(lock)),
        Err(crate::fs::LockError::Held(path)) => Err(ProviderError::Fatal(format!(
            "another qhub command is deploying or destroying {} (lock {} is held); wait for it to finish",
            ownership.prefix(),
            path.display()
        ))),
        Err(e) => Err(ProviderError::Fatal(e.to_string())),
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
}
