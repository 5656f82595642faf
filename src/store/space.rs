//! Disk space: poked stops writing before the disk is full, and keeps the `-wal` bounded.
//!
//! # The free-space guard
//!
//! Every write transaction, and every migration, first asks the file system holding the
//! database (a store that last found 64 MiB or more asks again after 100 ms, see `Guard`)
//! how much space is available to unprivileged users (`statvfs`'s `f_bavail`, so the
//! blocks ext4 reserves for root stay for the system even when poked runs as root). Below
//! [`MIN_FREE`] the write is refused with [`Error::DiskFull`] before SQLite touches anything:
//! the transition does not happen, the command exits 1 with a clear message, the daemon logs
//! it once and retries, and reads keep working because the headroom is still there for the
//! `-shm` index and the read transactions' locks. Without the guard, a write that runs the disk
//! dry can fail halfway through extending the `-wal` or `-shm`, and SQLite has been seen to die
//! with SIGBUS when it later maps a `-shm` it could not allocate on a full ext4 volume.
//!
//! The threshold is a fixed 1 MiB rather than a multiple of the `-wal`'s size: a `-wal` is
//! rewritten from its start after each complete checkpoint, so its size says how large it once
//! grew, not how much new space the next write needs. One transition adds a handful of 4 KiB
//! pages to the `-wal` (and at most as many to the database when they are checkpointed), a
//! prune batch a few hundred KiB; 1 MiB leaves room for that, the `-shm` (32 KiB per 4096
//! `-wal` frames) and a checkpoint, and is small enough to be meaningless on any real disk.
//!
//! When the space cannot be measured (an unusual file system, a missing folder) the guard lets
//! the write go ahead: SQLite's own error is then the answer, classified as [`Error::DiskFull`]
//! when the disk turns out to be full.
//!
//! # A bounded `-wal`
//!
//! `PRAGMA journal_size_limit` truncates the `-wal` only when a writer restarts it, which needs
//! a complete checkpoint first. A reader that holds a snapshot for a long time stops
//! checkpoints and lets the `-wal` grow past the limit; after it ends, nothing may write for a
//! long time on a quiet database. [`Store::shrink_wal`] lets the daemon bring the file back
//! under the limit as soon as the readers are gone.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{BUSY_TIMEOUT, JOURNAL_SIZE_LIMIT, Store, wal_path};
use crate::error::{Error, Result};

/// Below this much available space on the database's file system, poked starts no write.
pub const MIN_FREE: u64 = 1024 * 1024;

/// Bytes available to unprivileged users on the file system holding `path` (a file or a
/// folder that exists), or `None` when it cannot be measured.
pub fn available(path: &Path) -> Option<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct, used as an
    // out-parameter.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a valid out-parameter.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between libc targets
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Bytes available on the file system holding the database `db` (measured at its folder,
/// which exists even before the file does).
fn available_beside(db: &Path) -> Option<u64> {
    let dir = match db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    available(dir)
}

/// Whether the file system holding the database `db` has less than [`MIN_FREE`] available.
pub fn nearly_full(db: &Path) -> bool {
    available_beside(db).is_some_and(|free| free < MIN_FREE)
}

/// Refuses to start a write on a nearly full disk (see the module docs).
pub fn ensure_space(db: &Path) -> Result<()> {
    if nearly_full(db) {
        return Err(Error::DiskFull(db.to_path_buf()));
    }
    Ok(())
}

/// With at least this much available, the next [`RECHECK`] of writes need not ask again.
const PLENTY: u64 = 64 * 1024 * 1024;

/// How long a measurement of [`PLENTY`] holds. Even a `-wal` that a long reader keeps from
/// being reset grows by at most a few hundred MB/s, so 64 MiB cannot be used up in 100 ms.
const RECHECK: Duration = Duration::from_millis(100);

/// The free-space guard of one [`Store`]: [`ensure_space`] before every write, except that a
/// disk found to have [`PLENTY`] available is not asked again for [`RECHECK`] (a `statvfs`
/// per transition was a measurable part of a transition at `synchronous=NORMAL`). Near the
/// threshold every write asks.
/// A store's clones share it.
#[derive(Debug, Default, Clone)]
pub(super) struct Guard {
    plenty_until: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Guard {
    pub(super) fn ensure(&self, db: &Path) -> Result<()> {
        let mut until = self.plenty_until.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if until.is_some_and(|until| now < until) {
            return Ok(());
        }
        let free = available_beside(db);
        *until = free.filter(|&free| free >= PLENTY).map(|_| now + RECHECK);
        if free.is_some_and(|free| free < MIN_FREE) {
            return Err(Error::DiskFull(db.to_path_buf()));
        }
        Ok(())
    }
}

impl Store {
    /// The size of the `-wal` file in bytes (0 when there is none).
    pub fn wal_size(&self) -> u64 {
        std::fs::metadata(wal_path(self.path())).map_or(0, |m| m.len())
    }

    /// Whether the `-wal` has grown past `journal_size_limit`.
    pub fn wal_over_limit(&self) -> bool {
        self.wal_size() > JOURNAL_SIZE_LIMIT as u64
    }

    /// Checkpoints the whole `-wal` into the database and truncates it to zero bytes, if no
    /// reader or writer is in the way right now; never waits for one. Returns whether the
    /// `-wal` is now back under the size limit.
    pub fn shrink_wal(&self) -> Result<bool> {
        let conn = self.conn()?;
        conn.busy_timeout(Duration::ZERO)?;
        let done = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0));
        conn.busy_timeout(BUSY_TIMEOUT)?;
        match done {
            Ok(_) => {}
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {}
            Err(e) => return Err(self.classify(Error::Sqlite(e))),
        }
        Ok(!self.wal_over_limit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_the_free_space_of_an_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available(dir.path()).is_some_and(|free| free > 0));
        assert_eq!(available(&dir.path().join("missing/folder")), None);
        // An unmeasurable place is not called full: SQLite's own error answers there.
        assert!(!nearly_full(&dir.path().join("missing/folder/poked.db")));
    }
}
