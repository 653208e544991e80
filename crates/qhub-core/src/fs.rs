//! Crash-safe file writes: a file we write is either absent, or complete; never half-written.
//! A new file is readable by its owner only (0600): configs hold a root password, kubeconfigs
//! and backups may hold credentials. A replaced file keeps its mode.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors of the file helpers.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The target exists and we never overwrite it.
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// An I/O error on the named path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn temp_beside(path: &Path, contents: &[u8]) -> Result<PathBuf, WriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for attempt in 0..100u32 {
        let tmp = dir.join(format!(".{name}.tmp-{}-{attempt}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        match options.open(&tmp) {
            Ok(mut f) => {
                let written = f.write_all(contents).and_then(|()| f.sync_all());
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(io(&tmp)(e));
                }
                return Ok(tmp);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&tmp)(e)),
        }
    }
    Err(WriteError::Io {
        path: dir,
        source: std::io::Error::other("could not create a temporary file"),
    })
}

/// Writes a new file atomically; fails with [`WriteError::Exists`] if `path` exists (checked
/// atomically with a hard link, so two racing writers cannot both win).
pub fn write_new(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    if path.exists() {
        return Err(WriteError::Exists(path.to_path_buf()));
    }
    let tmp = temp_beside(path, contents)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(WriteError::Exists(path.to_path_buf()))
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Replaces a file atomically (write beside it, then rename over it), keeping its mode; a new
/// file is created 0600.
pub fn replace(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let tmp = temp_beside(path, contents)?;
    if let Ok(meta) = std::fs::metadata(path)
        && let Err(e) = std::fs::set_permissions(&tmp, meta.permissions())
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_new_refuses_to_overwrite_and_leaves_no_temp_files() {
        let dir = std::env::temp_dir().join(format!("qhub-fs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.yaml");
        let _ = std::fs::remove_file(&f);
        write_new(&f, b"one").unwrap();
        assert!(matches!(write_new(&f, b"two"), Err(WriteError::Exists(_))));
        assert_eq!(std::fs::read(&f).unwrap(), b"one");
        replace(&f, b"three").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"three");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn new_files_are_private_and_a_rewrite_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let config = dir.path().join("qhub-config.yaml");
        write_new(&config, b"password: x").unwrap();
        assert_eq!(mode(&config), 0o600);
        let kubeconfig = dir.path().join("kubeconfig");
        replace(&kubeconfig, b"token").unwrap();
        assert_eq!(mode(&kubeconfig), 0o600);
        // A file the user opened up keeps its mode when we rewrite it.
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace(&config, b"password: y").unwrap();
        assert_eq!(mode(&config), 0o640);
    }
}

/// A held advisory lock on a file (released when dropped, or when the process dies, even by
/// SIGKILL: the kernel drops it with the file descriptor, so a killed run never leaves a stale
/// lock).
#[derive(Debug)]
pub struct FileLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl FileLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the lock file's content with `text` (who holds it), while it is held.
    pub fn record(&mut self, text: &[u8]) -> std::io::Result<()> {
        use std::io::{Seek as _, Write as _};
        self._file.set_len(0)?;
        self._file.seek(std::io::SeekFrom::Start(0))?;
        self._file.write_all(text)?;
        self._file.flush()
    }
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("lock {} is held by another process", .0.display())]
    Held(PathBuf),
    /// The lock file could not be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// Takes the lock `dir/name` without waiting, creating `dir` and the file as needed.
pub fn try_lock(dir: &Path, name: &str) -> Result<FileLock, LockError> {
    let path = dir.join(name);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(FileLock { _file: file, path }),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held(path)),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}
