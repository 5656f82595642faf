//! The store: the only module that speaks SQL.
//!
//! poked keeps all of its state in one SQLite file (SPEC §4). This module opens it
//! (`open.rs`: refusing files that are not poked's, pragmas set and read back,
//! migrations), and offers every state transition ([`Tx`], and [`Store`]'s one-transition
//! methods) and every query, each in a file named for what it holds.
//!
//! # Locking and transactions
//!
//! Every connection runs in WAL mode with a busy timeout, so readers never block the writer and
//! writers queue instead of failing. Every write is one `BEGIN IMMEDIATE` transaction
//! ([`Store::write`]): taking the write lock up front means a transaction that reads and then
//! writes can never fail with `SQLITE_BUSY` halfway. Each transition updates the agent row and
//! appends its `poke_log` row in one transaction, or changes nothing; the daemon may commit the
//! transitions of many agents in one transaction (group commit), each still whole.
//!
//! # Connections
//!
//! A command that runs one transition keeps the one connection it opened the file with (no
//! pool, no second open: a command line should cost what the transaction costs). A store that
//! serves threads (the daemon) holds an r2d2 pool of connections configured alike.
//!
//! # Compatibility
//!
//! `PRAGMA user_version` is the schema version; `migrations/NNNN_name.sql` are applied in order
//! inside one transaction and never edited once released. The schema uses nothing newer than
//! SQLite 3.37 so Debian's `sqlite3` shell (3.40) can open the file.

mod check;
mod daemon;
mod follow;
mod import;
mod metrics;
mod open;
mod prune;
mod queries;
mod rows;
pub mod space;
mod stats;
mod transitions;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use scheduled_thread_pool::ScheduledThreadPool;

use crate::error::{Error, Result};

pub use check::{Breach, CheckSnapshot, PendingRow, Rule};
pub use daemon::{Correction, DaemonRecord, Watcher};
pub use follow::{FollowStart, FollowStep};
pub use import::{BatchFailure, ImportCounts};
pub use metrics::{AgentCounters, Counters, MetricsInputs};
pub use open::{ConnectionSettings, SCHEMA_VERSION, migrations};
pub use prune::PRUNE_BATCH;
pub use queries::{Decidable, Due, HistoryFilter, Streak, StreakEscalation, Unreadable, Want};
pub use stats::{LogCounts, LogSummary};
pub use transitions::{Finished, Patch, Started, Tx};

/// `PRAGMA application_id` of a poked database: "pokd" in ASCII.
pub const APPLICATION_ID: i32 = 0x706F_6B64;

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
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Create the file (and its folder) when it does not exist.
    pub create: bool,
    /// The caller only reads: a file it may not write is opened read-only instead of refused.
    pub read_only_ok: bool,
    /// The `synchronous` level of every connection.
    pub synchronous: Synchronous,
    /// How many connections the store holds (at least 1): one per thread that uses it at the
    /// same time. With 1, the connection that opened the file is the store's.
    pub connections: u32,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            create: false,
            read_only_ok: false,
            synchronous: Synchronous::Full,
            connections: 1,
        }
    }
}

/// Where a store's connections come from.
#[derive(Debug, Clone)]
enum Conns {
    /// The connection that opened the file, for one thread at a time.
    One(Arc<Mutex<Connection>>),
    /// A pool of connections configured alike.
    Pool(Pool<SqliteConnectionManager>),
}

/// A connection lent by the store.
enum Conn<'a> {
    One(MutexGuard<'a, Connection>),
    Pool(PooledConnection<SqliteConnectionManager>),
}

impl Deref for Conn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            Conn::One(conn) => conn,
            Conn::Pool(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        match self {
            Conn::One(conn) => &mut *conn,
            Conn::Pool(conn) => &mut *conn,
        }
    }
}

/// The poked database: configured connections to one file.
#[derive(Debug, Clone)]
pub struct Store {
    conns: Conns,
    spec: open::ConnSpec,
    space: space::Guard,
}

impl Store {
    /// Opens (and with `options.create`, creates) the database at `path` and brings its schema
    /// up to date.
    ///
    /// ```
    /// use poked::store::{OpenOptions, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(&dir.path().join("poked.db"), OpenOptions { create: true, ..OpenOptions::default() })?;
    /// assert_eq!(store.schema_version()?, poked::store::SCHEMA_VERSION);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: &Path, options: OpenOptions) -> Result<Store> {
        let (conn, spec) =
            open::first_connection(path, options.create, !options.read_only_ok, options.synchronous)?;
        let size = options.connections.max(1);
        if size == 1 {
            return Ok(Store {
                conns: Conns::One(Arc::new(Mutex::new(conn))),
                spec,
                space: space::Guard::default(),
            });
        }
        drop(conn);
        let init = spec.clone();
        let manager = SqliteConnectionManager::file(&spec.path)
            .with_flags(spec.flags())
            .with_init(move |conn| {
                init.configure(conn).map_err(|e| match e {
                    Error::Sqlite(e) => e,
                    other => rusqlite::Error::ToSqlConversionFailure(Box::new(other)),
                })
            });
        // Every connection is opened now, on r2d2's worker thread, and none is opened later
        // (min_idle = max_size, no lifetime limits). Waiting for a no-op job on that one thread
        // then guarantees r2d2's jobs have let go of the pool, so dropping the Store closes every
        // connection: a connection left open at exit would leave its -wal and -shm behind.
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
        Ok(Store {
            conns: Conns::Pool(pool),
            spec,
            space: space::Guard::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.spec.path
    }

    /// Whether the file was opened read-only (it cannot be written by this process).
    pub fn is_read_only(&self) -> bool {
        self.spec.read_only
    }

    /// A connection of the store.
    fn conn(&self) -> Result<Conn<'_>> {
        match &self.conns {
            // A panic while holding the connection leaves it usable: SQLite's state is its own.
            Conns::One(conn) => Ok(Conn::One(conn.lock().unwrap_or_else(|p| p.into_inner()))),
            Conns::Pool(pool) => Ok(Conn::Pool(pool.get()?)),
        }
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits it, unless `f` fails or
    /// [`Tx::abandon`]s it: then it is rolled back and nothing of it is written.
    pub fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        if self.spec.read_only {
            return Err(Error::ReadOnly {
                path: self.spec.path.clone(),
                detail: "the file is not writable by this user".into(),
            });
        }
        self.space.ensure(&self.spec.path)?;
        let mut conn = self.conn()?;
        let run = || {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut tx = Tx::new(tx);
            let value = f(&mut tx)?;
            tx.finish()?;
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

    /// Runs `f` inside one deferred read transaction (one consistent snapshot), ended before
    /// returning: a reader held open would keep the WAL from being checkpointed.
    fn snapshot<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.read(|conn| {
            let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
    }

    /// The pragmas as a connection of this store reports them (for tests and `status`).
    pub fn connection_settings(&self) -> Result<ConnectionSettings> {
        self.read(|conn| Ok(open::read_settings(conn)?))
    }

    /// `PRAGMA user_version`: the schema version of the file.
    pub fn schema_version(&self) -> Result<i64> {
        self.read(|conn| Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?))
    }

    /// Turns a raw SQLite error into the error a user should see.
    fn classify(&self, e: Error) -> Error {
        match e {
            Error::Sqlite(e) => classify(&self.spec.path, e),
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

/// The `-wal` file beside a database.
pub fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}
