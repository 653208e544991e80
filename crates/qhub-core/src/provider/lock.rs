//! The local deploy lock, for providers without a cloud-side lock.

use super::{Ownership, ProviderError};

/// A held deployment lock; dropping it releases the lock.
pub type DeployLock = Box<dyn std::any::Any + Send + Sync>;

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
        Ok(lock) => Ok(Box::new(lock)),
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
