//! One daemon per database: an OS lock on `<db>.lock`, held for the daemon's whole life.
//!
//! The lock is `flock`-style (`std::fs::File::try_lock`): the kernel drops it when the process
//! dies, however it dies, so a stale lock file never blocks a restart and is never deleted (a
//! process that deletes a lock file another one holds breaks the lock for everyone). The file
//! holds the owner's pid as text, for the error a second daemon prints and for `poked status`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file beside a database: `<db>.lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The held lock; dropping it (or dying) releases it.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

/// Takes the daemon lock of `db`, or fails naming the pid that holds it.
pub fn acquire(db: &Path) -> Result<DaemonLock> {
    let path = lock_path(db);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::DaemonRunning {
                path: db.to_path_buf(),
                pid: read_pid(&mut file).map_or_else(|| "unknown".into(), |pid| pid.to_string()),
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(DaemonLock { _file: file })
}

/// The pid of the daemon holding `db`'s lock, if one does (`Some(0)` when it holds the lock
/// but its pid cannot be read).
pub fn holder(db: &Path) -> Option<u32> {
    let mut file = File::open(lock_path(db)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => Some(read_pid(&mut file).unwrap_or(0)),
        Err(TryLockError::Error(_)) => None,
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("poked.db");
        assert_eq!(holder(&db), None);
        let lock = acquire(&db).expect("first lock");
        assert_eq!(holder(&db), Some(std::process::id()));
        let err = acquire(&db).expect_err("second lock");
        assert!(err.to_string().contains(&std::process::id().to_string()), "{err}");
        drop(lock);
        assert_eq!(holder(&db), None);
        assert!(lock_path(&db).exists(), "the lock file is never deleted");
        acquire(&db).expect("lock again after release");
    }
}
