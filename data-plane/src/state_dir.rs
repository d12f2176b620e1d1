//! The node's state directory: the last good snapshot and the trace spool,
//! so a restart while every control plane is down still routes and loses no
//! traces. A lock file keeps two data planes from sharing one directory.

use std::fs::{File, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "lock";
const SNAPSHOT_FILE: &str = "snapshot.pb";
const SPOOL_DIR: &str = "spool";

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("--state-dir {path}: cannot create it: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("--state-dir {path}: cannot lock it: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error(
        "--state-dir {path}: another data plane is using it (its lock is held); give each node its own directory"
    )]
    Held { path: PathBuf },
}

/// Holds the directory's lock for as long as it lives.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Creates the directory if needed and takes its lock. Blocking.
    pub fn open(path: &Path) -> Result<Self, StateDirError> {
        std::fs::create_dir_all(path).map_err(|source| StateDirError::Create {
            path: path.to_owned(),
            source,
        })?;
        let lock_error = |source| StateDirError::Lock {
            path: path.to_owned(),
            source,
        };
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(LOCK_FILE))
            .map_err(lock_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StateDirError::Held {
                    path: path.to_owned(),
                });
            }
            Err(TryLockError::Error(source)) => return Err(lock_error(source)),
        }
        Ok(Self {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshot_file(&self) -> PathBuf {
        self.path.join(SNAPSHOT_FILE)
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.path.join(SPOOL_DIR)
    }
}

/// Replaces `path` with `bytes` so a reader sees the old file or the new one,
/// never a torn one: a temporary file in the same directory, fsynced, renamed.
/// Blocking.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable only once the directory is synced.
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T, F>(work: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state");
        let first = StateDir::open(&path).unwrap();
        let second = StateDir::open(&path).unwrap_err();
        assert!(matches!(&second, StateDirError::Held { path: p } if *p == path));
        assert!(second.to_string().starts_with("--state-dir "), "{second}");
        drop(first);
        assert!(StateDir::open(&path).is_ok());
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.pb");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f.pb"]);
    }
}
