//! What every provider finds beside the config the same way: the kubeconfig override
//! ([`KUBECONFIG_ENV`]) and the folder of the local deploy lock ([`LOCK_DIR`]). One place for
//! both names, so that no provider spells them again.

use std::path::{Path, PathBuf};

use super::ProviderError;

/// The variable naming a kubeconfig for cluster access instead of the one the provider mints
/// (an emulator's cluster, or an operator's own access); relative to the config's folder when
/// not absolute.
pub const KUBECONFIG_ENV: &str = "QHUB_KUBECONFIG";

/// The folder beside the config that holds the local deploy lock
/// ([`super::lock::deploy_lock`]).
pub const LOCK_DIR: &str = ".qhub";

/// The kubeconfig override [`KUBECONFIG_ENV`] names, resolved against `dir` (the config's
/// folder); `None` when it is unset or blank.
pub fn kubeconfig_override(dir: &Path) -> Option<PathBuf> {
    std::env::var(KUBECONFIG_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|k| dir.join(k))
}

/// The local deploy lock's folder for a config in `dir`.
pub fn lock_dir(dir: &Path) -> PathBuf {
    dir.join(LOCK_DIR)
}

/// Reads the kubeconfig override at `path`, saying which file could not be read.
pub fn read_kubeconfig_override(path: &Path) -> Result<String, ProviderError> {
    std::fs::read_to_string(path).map_err(|e| {
        ProviderError::Fatal(format!(
            "cannot read the kubeconfig override {}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_folder_sits_beside_the_config_and_a_missing_override_says_which_file() {
        assert_eq!(
            lock_dir(Path::new("/deploy")),
            PathBuf::from("/deploy/.qhub")
        );
        let err = read_kubeconfig_override(Path::new("/nonexistent/kubeconfig")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
    }
}
