//! One daemon per database *file*, whatever path reaches it (SPEC §6).
//!
//! The lock is an OS lock (`flock`) on the database file itself, so a symlink, a relative path,
//! a hard link or a bind mount all meet the same lock: it belongs to the file's inode, not to a
//! name. The kernel drops it when the process dies, however it dies, so nothing stale ever
//! blocks a restart.
//!
//! # Never closing the descriptor
//!
//! SQLite keeps POSIX (`fcntl`) locks on the database file, and POSIX drops *all* of a
//! process's locks on a file when the process closes *any* descriptor of it: closing a
//! descriptor opened for locking would silently drop the locks of the store's connections, and
//! another process could then delete the `-wal` under them. So the descriptor of each file is
//! opened once per process, kept in a registry for the life of the process, and never closed;
//! releasing the lock is `flock(LOCK_UN)` on it. (`flock` and `fcntl` locks do not interfere on
//! Linux's local file systems.)
//!
//! Which process holds a lock is read from `/proc/locks`, which names the pid and the inode of
//! every `flock`.

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};

/// A file's identity: device and inode.
type FileId = (u64, u64);

/// The descriptor of each database file this process has locked or looked at, and whether this
/// process holds its daemon lock.
struct Entry {
    file: Arc<File>,
    held: bool,
}

fn registry() -> &'static Mutex<HashMap<FileId, Entry>> {
    static FILES: OnceLock<Mutex<HashMap<FileId, Entry>>> = OnceLock::new();
    FILES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The identity of the file at `path`.
fn file_id(path: &Path) -> std::io::Result<FileId> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// The registry's descriptor of the file at `path`, opened on first use and never closed.
fn descriptor(path: &Path) -> Result<(FileId, Arc<File>)> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let id = file_id(path).map_err(io)?;
    let mut files = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(entry) = files.get(&id) {
        return Ok((id, Arc::clone(&entry.file)));
    }
    let file = Arc::new(File::open(path).map_err(io)?);
    files.insert(
        id,
        Entry {
            file: Arc::clone(&file),
            held: false,
        },
    );
    Ok((id, file))
}

/// The held daemon lock of one database file; dropping it (or dying) releases it.
#[derive(Debug)]
pub struct DaemonLock {
    id: FileId,
    file: Arc<File>,
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        // Unlock, never close: see the module docs.
        let _ = self.file.unlock();
        let mut files = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = files.get_mut(&self.id) {
            entry.held = false;
        }
    }
}

/// Takes the daemon lock of the database file `db`, or fails naming the pid that holds it.
pub fn acquire(db: &Path) -> Result<DaemonLock> {
    let (id, file) = descriptor(db)?;
    let running = |pid: Option<u32>| Error::DaemonRunning {
        path: db.to_path_buf(),
        pid: pid.map_or_else(|| "unknown".into(), |pid| pid.to_string()),
    };
    {
        let files = registry().lock().unwrap_or_else(|p| p.into_inner());
        if files.get(&id).is_some_and(|e| e.held) {
            return Err(running(Some(std::process::id())));
        }
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(running(flock_holder(id))),
        Err(TryLockError::Error(source)) => {
            return Err(Error::Io {
                path: db.to_path_buf(),
                source,
            });
        }
    }
    let mut files = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(entry) = files.get_mut(&id) {
        entry.held = true;
    }
    Ok(DaemonLock { id, file })
}

/// The pid of the daemon holding the lock of the database file `db`, if one does (`Some(0)`
/// when one does but its pid cannot be read).
pub fn holder(db: &Path) -> Option<u32> {
    let (id, file) = descriptor(db).ok()?;
    {
        let files = registry().lock().unwrap_or_else(|p| p.into_inner());
        if files.get(&id).is_some_and(|e| e.held) {
            return Some(std::process::id());
        }
    }
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => Some(flock_holder(id).unwrap_or(0)),
        Err(TryLockError::Error(_)) => None,
    }
}

/// The pid of an exclusive `flock` on the file `id`, from `/proc/locks`: lines such as
/// `3: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF` (device in hex, inode in decimal).
fn flock_holder((dev, ino): FileId) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A blocked waiter's line starts with `->`; only a granted lock names the holder.
        let at = fields.iter().position(|f| *f == "FLOCK")?;
        if fields.first().is_some_and(|f| *f == "->") || fields.get(at + 2) != Some(&"WRITE") {
            return None;
        }
        (fields.get(at + 4)? == &want).then(|| fields.get(at + 3)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_file_whatever_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("poked.db");
        std::fs::write(&db, b"").unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        let hard = dir.path().join("hard.db");
        std::fs::hard_link(&db, &hard).unwrap();
        assert_eq!(holder(&db), None);
        let lock = acquire(&db).expect("first lock");
        assert_eq!(holder(&link), Some(std::process::id()));
        for other in [&db, &link, &hard] {
            let err = acquire(other).expect_err("a second lock of the same file");
            assert!(err.to_string().contains(&std::process::id().to_string()), "{err}");
        }
        drop(lock);
        assert_eq!(holder(&hard), None);
        acquire(&link).expect("lock again after release");
    }
}
