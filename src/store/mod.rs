//! The store: the only module that speaks SQL.
//!
//! poked keeps all of its state in one SQLite file (SPEC §4). This module opens it, sets and
//! verifies the connection pragmas, applies the migrations, and offers every state transition
//! ([`transitions`]) and every query ([`queries`]) as a method of [`Store`].
//!
//! # Opening
//!
//! Before SQLite sees the file, poked reads its 100-byte header itself: a file that is not
//! SQLite's, belongs to another program (`application_id`), is truncated, or was written by a
//! newer poked (`user_version`) is refused with a specific error and left byte-for-byte
//! untouched (SQLite's own open succeeds on garbage and fails later, and switching a file to WAL
//! writes its header). poked creates the file itself with mode 0600 and opens it without
//! `SQLITE_OPEN_CREATE`, so SQLite never creates a database anywhere; the `-wal` and `-shm`
//! files inherit the database file's mode.
//!
//! # Locking and transactions
//!
//! Every connection runs in WAL mode with a busy timeout, so readers never block the writer and
//! writers queue instead of failing. Every write is one `BEGIN IMMEDIATE` transaction: taking the
//! write lock up front means a transaction that reads and then writes can never fail with
//! `SQLITE_BUSY` halfway. Each transition updates the agent row and appends its `poke_log` row in
//! that one transaction, or changes nothing.
//!
//! # Compatibility
//!
//! `PRAGMA user_version` is the schema version; `migrations/NNNN_name.sql` are applied in order
//! inside one transaction and never edited once released. The schema uses nothing newer than
//! SQLite 3.37 so Debian's `sqlite3` shell (3.40) can open the file.

mod daemon;
mod import;
mod queries;
mod report;
pub mod space;
mod transitions;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use rusqlite_migration::{M, Migrations};
use scheduled_thread_pool::ScheduledThreadPool;

use crate::error::{Error, Result};

pub use daemon::{DaemonRecord, Watcher};
pub use import::{BatchFailure, ImportCounts};
pub use queries::{HistoryFilter, LogRow};
pub use report::{Breach, CheckSnapshot, FollowStep, KINDS, LogCounts, LogSummary, OUTCOMES, PRUNE_BATCH};
pub use transitions::{Patch, PokeStarted};

/// `PRAGMA application_id` of a poked database: "pokd" in ASCII.
pub const APPLICATION_ID: i32 = 0x706F_6B64;

/// The migrations, in order. Never edit a released one; append the next.
const MIGRATIONS: &[M<'static>] = &[M::up(include_str!("../../migrations/0001_init.sql"))];

/// The schema version this program writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a connection waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The size the `-wal` file is truncated back to after a checkpoint.
const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

/// `PRAGMA synchronous`: how hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// A committed transition survives power loss (the default).
    #[default]
    Full,
    /// Faster; still consistent, but the last transitions may be lost on power loss.
    Normal,
}

impl Synchronous {
    fn pragma_value(self) -> i64 {
        match self {
            Synchronous::Full => 2,
            Synchronous::Normal => 1,
        }
    }
}

/// How to open the database.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Create the file (and its folder) when it does not exist.
    pub create: bool,
    /// The `synchronous` level of every connection.
    pub synchronous: Synchronous,
    /// How many connections the pool holds (at least 1): one per thread that uses the store
    /// at the same time.
    pub connections: u32,
}

/// The poked database: a pool of configured connections to one file.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool<SqliteConnectionManager>,
    path: PathBuf,
}

impl Store {
    /// Opens (and with `options.create`, creates) the database at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path, options: OpenOptions) -> Result<Store> {
        let path = path.to_path_buf();
        prepare_file(&path, options.create)?;
        check_header(&path)?;

        let mut conn = open_connection(&path)?;
        // Look before touching: switching to WAL writes the header, so a file that is not
        // poked's is refused first.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| classify(&path, e))?;
        probe(&conn, &path)?;
        configure(&mut conn, &path, options.synchronous)?;
        migrate(&mut conn, &path)?;
        drop(conn);

        let synchronous = options.synchronous;
        let init_path = path.clone();
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(open_flags())
            .with_init(move |conn| {
                configure(conn, &init_path, synchronous).map_err(|e| match e {
                    Error::Sqlite(e) => e,
                    other => rusqlite::Error::ToSqlConversionFailure(Box::new(other)),
                })
            });
        // Every connection is opened now, on r2d2's worker thread, and none is opened later
        // (min_idle = max_size, no lifetime limits). Waiting for a no-op job on that one thread
        // then guarantees r2d2's jobs have let go of the pool, so dropping the Store closes every
        // connection: a connection left open at exit would leave its -wal and -shm behind.
        let size = options.connections.max(1);
        let threads = Arc::new(ScheduledThreadPool::new(1));
        let pool = Pool::builder()
            .max_size(size)
            .min_idle(Some(size))
            .max_lifetime(None)
            .idle_timeout(None)
            .thread_pool(Arc::clone(&threads))
            .connection_timeout(BUSY_TIMEOUT)
            // r2d2_sqlite's check is `execute_batch("")` at every checkout: a cost on every
            // transition for a local file that cannot go stale.
            .test_on_check_out(false)
            .build(manager)?;
        let (done, wait) = std::sync::mpsc::channel();
        threads.execute(move || {
            let _ = done.send(());
        });
        let _ = wait.recv();
        Ok(Store { pool, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection from the pool.
    fn conn(&self) -> Result<PooledConnection<SqliteConnectionManager>> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits; any error rolls it back.
    fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        space::ensure_space(&self.path)?;
        let mut conn = self.conn()?;
        let run = || {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run().map_err(|e| self.classify(e))
    }

    /// Runs `f` with a connection for reading (each statement is its own snapshot unless `f`
    /// opens a transaction).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn()?;
        f(&conn).map_err(|e| self.classify(e))
    }

    /// Turns a raw SQLite error into the error a user should see.
    fn classify(&self, e: Error) -> Error {
        match e {
            Error::Sqlite(e) => classify(&self.path, e),
            other => other,
        }
    }
}

/// Maps SQLite's error codes onto poked's errors, naming the file.
fn classify(path: &Path, e: rusqlite::Error) -> Error {
    let Some(code) = e.sqlite_error_code() else {
        return Error::Sqlite(e);
    };
    let path = path.to_path_buf();
    // An I/O error on a nearly full disk (ENOSPC while growing the -shm, say) is a full disk.
    if matches!(code, ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) && space::nearly_full(&path) {
        return Error::DiskFull(path);
    }
    match code {
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::Busy(path),
        ErrorCode::DiskFull => Error::DiskFull(path),
        ErrorCode::ReadOnly => Error::ReadOnly {
            path,
            detail: "cannot write to it (check the permissions of the file and its folder)".into(),
        },
        ErrorCode::NotADatabase => Error::NotPoked {
            path,
            reason: "not a SQLite database".into(),
        },
        ErrorCode::DatabaseCorrupt => Error::Corrupt {
            path,
            detail: e.to_string(),
        },
        ErrorCode::CannotOpen => Error::Io {
            path,
            source: std::io::Error::other(e.to_string()),
        },
        _ => Error::Sqlite(e),
    }
}

/// Read-write, no create (poked creates the file itself), no URI tricks, no symlink surprises.
fn open_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_EXRESCODE
}

/// Makes sure a file to open exists: creates it (mode 0600) and its folder (mode 0700) when
/// allowed, refuses a missing file, a folder or an empty file otherwise.
fn prepare_file(path: &Path, create: bool) -> Result<()> {
    let io = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(Error::NotPoked {
            path: path.to_path_buf(),
            reason: "it is a directory (give the path of a file with --db)".into(),
        }),
        Ok(meta) if meta.len() == 0 && !create => Err(Error::NotPoked {
            path: path.to_path_buf(),
            reason: "the file is empty (run `poked init` to create a database in it)".into(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Err(Error::NoDatabase(path.to_path_buf()));
            }
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| writable_error(parent, e))?;
            }
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => Ok(()),
                // Another process created it first: fine, it is opened like any other.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(writable_error(path, e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

fn writable_error(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => Error::ReadOnly {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        _ => Error::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// A file this user may not open for reading: say whose it is rather than call it read-only.
fn unreadable_error(path: &Path, e: std::io::Error) -> Error {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(path) {
        Ok(meta) if e.kind() == std::io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            path: path.to_path_buf(),
            detail: format!(
                "it belongs to uid {} with mode {:04o} and this is uid {}; \
                 run poked as its owner or change its permissions",
                meta.uid(),
                meta.mode() & 0o7777,
                // SAFETY: geteuid has no preconditions and cannot fail.
                unsafe { libc::geteuid() }
            ),
        },
        _ => writable_error(path, e),
    }
}

/// Reads the SQLite header without SQLite, so a file that is not ours is refused untouched.
fn check_header(path: &Path) -> Result<()> {
    let not_poked = |reason: String| Error::NotPoked {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = fs::File::open(path).map_err(|e| unreadable_error(path, e))?;
    let len = file
        .metadata()
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if len == 0 {
        return Ok(()); // an empty file becomes a new database
    }
    let mut header = [0u8; 100];
    let got = read_up_to(&mut file, &mut header).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if got < 100 || &header[..16] != b"SQLite format 3\0" {
        return Err(not_poked(
            "not a SQLite database (its header is not SQLite's)".into(),
        ));
    }
    let be32 = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let application_id = be32(68) as i32;
    let user_version = be32(60) as i32 as i64;
    if application_id != 0 && application_id != APPLICATION_ID {
        return Err(not_poked(format!(
            "it belongs to another program (application_id {application_id:#x})"
        )));
    }
    if user_version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found: user_version,
            supported: SCHEMA_VERSION,
        });
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    let page_count = u64::from(be32(28));
    let wal = wal_path(path);
    let wal_has_frames = fs::metadata(&wal).map(|m| m.len() > 32).unwrap_or(false);
    if !wal_has_frames && page_count > 0 && page_size * page_count > len {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "truncated: its header says {} bytes but the file has {len}",
                page_size * page_count
            ),
        });
    }
    Ok(())
}

fn read_up_to(file: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// The `-wal` file beside a database.
pub fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, open_flags()).map_err(|e| classify(path, e))?;
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(Error::ReadOnly {
            path: path.to_path_buf(),
            detail: "the file is not writable by this user".into(),
        });
    }
    Ok(conn)
}

/// Sets the connection pragmas outside any transaction and reads each back: a misspelt or
/// refused pragma fails silently in SQLite, so poked checks that every one took.
fn configure(conn: &mut Connection, path: &Path, synchronous: Synchronous) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| classify(path, e))?;
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    let check = |pragma: &'static str, got: String, want: String| {
        if got.eq_ignore_ascii_case(&want) {
            Ok(())
        } else {
            Err(Error::Pragma {
                path: path.to_path_buf(),
                pragma,
                got,
                want,
            })
        }
    };
    let get = |sql: &str| -> Result<String> {
        conn.query_row(sql, [], |row| row.get::<_, rusqlite::types::Value>(0))
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .map_err(|e| classify(path, e))
    };
    check(
        "busy_timeout",
        get("PRAGMA busy_timeout")?,
        BUSY_TIMEOUT.as_millis().to_string(),
    )?;
    check("journal_mode", set_wal(conn, path)?, "wal".into())?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}; \
         PRAGMA trusted_schema = OFF;",
        synchronous.pragma_value()
    ))
    .map_err(|e| classify(path, e))?;
    check(
        "synchronous",
        get("PRAGMA synchronous")?,
        synchronous.pragma_value().to_string(),
    )?;
    check("foreign_keys", get("PRAGMA foreign_keys")?, "1".into())?;
    check(
        "journal_size_limit",
        get("PRAGMA journal_size_limit")?,
        JOURNAL_SIZE_LIMIT.to_string(),
    )?;
    check("trusted_schema", get("PRAGMA trusted_schema")?, "0".into())?;
    Ok(())
}

/// Switches to WAL. On a brand-new file this needs the write lock and SQLite can report busy
/// without calling the busy handler, so it is retried for as long as the busy timeout.
fn set_wal(conn: &Connection, path: &Path) -> Result<String> {
    let started = std::time::Instant::now();
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get::<_, String>(0)) {
            Ok(mode) => return Ok(mode),
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(classify(path, e)),
        }
    }
}

/// Touches the schema so a damaged file is reported now, not at the first real query.
fn probe(conn: &Connection, path: &Path) -> Result<()> {
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .map_err(|e| classify(path, e))?;
    let application_id: i32 = conn
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .map_err(|e| classify(path, e))?;
    let user_version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| classify(path, e))?;
    if application_id != 0 && application_id != APPLICATION_ID {
        return Err(Error::NotPoked {
            path: path.to_path_buf(),
            reason: format!("it belongs to another program (application_id {application_id:#x})"),
        });
    }
    if application_id == 0 && tables > 0 {
        return Err(Error::NotPoked {
            path: path.to_path_buf(),
            reason: "it holds tables of another program".into(),
        });
    }
    if user_version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found: user_version,
            supported: SCHEMA_VERSION,
        });
    }
    if tables > 0 {
        // Read every table's root page, so a damaged schema or root shows up now.
        conn.query_row(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM agents LIMIT 1)) \
                  + (SELECT count(*) FROM (SELECT 1 FROM poke_log LIMIT 1))",
            [],
            |row| row.get::<_, i64>(0),
        )
        .map_err(|e| classify(path, e))?;
    }
    Ok(())
}

/// The migrations, for applying and for validating in tests.
pub fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATIONS)
}

/// Applies the pending migrations in one IMMEDIATE transaction (the connection's default); the
/// first one also stamps the file with poked's `application_id`.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| classify(path, e))?;
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    space::ensure_space(path)?;
    let result = migrations().to_latest(conn);
    if let Err(e) = result {
        // Another process may have migrated between our read and our transaction.
        let now: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| classify(path, e))?;
        if now != SCHEMA_VERSION {
            return Err(match e {
                rusqlite_migration::Error::RusqliteError { err, .. } => classify(path, err),
                other => Error::Migration {
                    path: path.to_path_buf(),
                    detail: other.to_string(),
                },
            });
        }
    }
    Ok(())
}
