//! Opening the database file: refusing files that are not poked's before SQLite touches them,
//! creating a new one with private modes, setting and reading back the connection pragmas, and
//! bringing the schema up to date.
//!
//! # Refusing what is not ours
//!
//! Before SQLite sees the file, poked reads its 100-byte header itself: a file that is not
//! SQLite's, belongs to another program (`application_id`), is truncated, or was written by a
//! newer poked (`user_version`) is refused with a specific error and left byte-for-byte
//! untouched (SQLite's own open succeeds on garbage and fails later, and switching a file to WAL
//! writes its header). poked creates the file itself with mode 0600 and opens it without
//! `SQLITE_OPEN_CREATE`, so SQLite never creates a database anywhere; the `-wal` and `-shm`
//! files inherit the database file's mode.
//!
//! # Read-only files
//!
//! A command that only reads opens a file it may not write (a backup on read-only media, a
//! file whose owner lets others read it) read-only. A WAL database can be read that way when
//! its `-shm` exists or can be created; when neither holds and no `-wal` holds frames, nobody
//! can be writing it, and it is opened `immutable`. Such a file must already have this
//! version's schema: upgrading it needs write access.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use rusqlite_migration::{M, Migrations};

use super::{APPLICATION_ID, BUSY_TIMEOUT, JOURNAL_SIZE_LIMIT, Synchronous, classify, space, wal_path};
use crate::error::{Error, Result};

/// The migrations, in order. Never edit a released one; append the next.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../../migrations/0001_init.sql")),
    M::up(include_str!("../../migrations/0002_supervisor.sql")),
];

/// The schema version this program writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The migrations, for applying and for validating in tests.
pub fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATIONS)
}

/// How a connection is opened: what every connection of one store shares.
#[derive(Debug, Clone)]
pub(super) struct ConnSpec {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Opened read-only (the file cannot be written by this process).
    pub read_only: bool,
    /// Opened `immutable` (read-only, and nobody can be writing it).
    pub immutable: bool,
}

impl ConnSpec {
    /// Opens and configures one more connection like the store's first.
    pub fn connect(&self) -> Result<Connection> {
        let mut conn = self.raw()?;
        self.configure(&mut conn)?;
        Ok(conn)
    }

    /// Sets and checks the pragmas of a connection opened with [`ConnSpec::flags`].
    pub fn configure(&self, conn: &mut Connection) -> Result<()> {
        configure(conn, self)
    }

    /// Read-write (or read-only), never create: poked creates the file itself.
    pub fn flags(&self) -> OpenFlags {
        let access = if self.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_EXRESCODE
    }

    fn raw(&self) -> Result<Connection> {
        let path = &self.path;
        let conn = if self.immutable {
            // The path is passed as a URI only here, percent-encoded, so no character in it can
            // be read as a URI parameter.
            let uri = format!("file:{}?immutable=1", percent_encode(path));
            Connection::open_with_flags(uri, self.flags() | OpenFlags::SQLITE_OPEN_URI)
        } else {
            Connection::open_with_flags(path, self.flags())
        };
        conn.map_err(|e| classify(path, e))
    }
}

/// Opens the first connection of a store: checks the file, configures the connection, probes
/// the schema and migrates it. `writable` says whether the caller needs to write; a reader
/// falls back to read-only access when the file cannot be written.
pub(super) fn first_connection(
    path: &Path,
    create: bool,
    writable: bool,
    synchronous: Synchronous,
) -> Result<(Connection, ConnSpec)> {
    prepare_file(path, create)?;
    check_header(path)?;
    let mut spec = ConnSpec {
        path: path.to_path_buf(),
        synchronous,
        read_only: false,
        immutable: false,
    };
    let mut conn = spec.raw()?;
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        if writable {
            return Err(Error::ReadOnly {
                path: path.to_path_buf(),
                detail: "the file is not writable by this user".into(),
            });
        }
        spec.read_only = true;
        conn = spec.raw()?;
    }
    // Look before touching: switching to WAL writes the header, so a file that is not poked's
    // is refused first.
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| classify(path, e))?;
    if let Err(e) = probe(&conn, path) {
        if !(spec.read_only && needs_immutable(&e, path)) {
            return Err(e);
        }
        spec.immutable = true;
        conn = spec.raw()?;
        probe(&conn, path)?;
    }
    configure(&mut conn, &spec)?;
    if spec.read_only {
        let version = user_version(&conn, path)?;
        if version != SCHEMA_VERSION {
            return Err(Error::ReadOnly {
                path: path.to_path_buf(),
                detail: format!(
                    "its schema (version {version}) must be upgraded to version {SCHEMA_VERSION}, which needs \
                     write access (run `poked init` as a user who may write it)"
                ),
            });
        }
    } else {
        migrate(&mut conn, path)?;
    }
    Ok((conn, spec))
}

/// A read-only open fails when SQLite cannot create the `-shm`; with no `-wal` frames to lose,
/// nobody is writing the file and it can be read immutable.
fn needs_immutable(e: &Error, path: &Path) -> bool {
    let cannot_open = matches!(e, Error::Io { .. } | Error::ReadOnly { .. } | Error::Sqlite(_));
    let wal_frames = fs::metadata(wal_path(path))
        .map(|m| m.len() > 32)
        .unwrap_or(false);
    cannot_open && !wal_frames
}

/// `/a b%` → `/a%20b%25`: everything but unreserved characters and `/` escaped.
fn percent_encode(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::open(path).map_err(|e| unreadable_error(path, e))?;
    if file.metadata().map_err(io)?.len() == 0 {
        return Ok(()); // an empty file becomes a new database
    }
    let mut header = [0u8; 100];
    let got = read_up_to(&mut file, &mut header).map_err(io)?;
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
    // SQLite trusts the size in the header only while the change counter (offset 24) equals
    // the version-valid-for number (offset 92); otherwise the file's length is its size.
    let said = if be32(24) == be32(92) {
        page_size * u64::from(be32(28))
    } else {
        0
    };
    if let Some(len) = truncated(path, said).map_err(io)? {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            detail: format!("truncated: its header says {said} bytes but the file has {len}"),
        });
    }
    Ok(())
}

/// The file's length when it is shorter than the `said` bytes its header gives, with no `-wal`
/// frames to make up the difference.
///
/// A checkpoint of another process writes page 1 (the header, with the new size) before the
/// pages that lengthen the file, and once it is complete it may delete or truncate the `-wal`.
/// So the `-wal` is looked at first and the length last: a `-wal` without frames then means no
/// checkpoint was still to write anything we read. A file found short is looked at once more a
/// moment later, so that even a checkpoint of a transaction committed between our reads cannot
/// make a sound file look truncated (the kill -9 soak tier once saw that, in 5,889 kills).
fn truncated(path: &Path, said: u64) -> std::io::Result<Option<u64>> {
    let short = || -> std::io::Result<Option<u64>> {
        let wal_has_frames = fs::metadata(wal_path(path)).is_ok_and(|m| m.len() > 32);
        let len = fs::metadata(path)?.len();
        Ok((!wal_has_frames && said > len).then_some(len))
    };
    if short()?.is_none() {
        return Ok(None);
    }
    // Justified outside daemon/: a rare path, bounded, and only for a file that looks damaged.
    std::thread::sleep(Duration::from_millis(20));
    short()
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

/// Sets the connection pragmas outside any transaction and reads them all back in one
/// statement: a misspelt or refused pragma fails silently in SQLite, so poked checks that every
/// one took.
fn configure(conn: &mut Connection, spec: &ConnSpec) -> Result<()> {
    let path = &spec.path;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| classify(path, e))?;
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    let journal = if spec.read_only {
        // The mode is in the file's header; a reader cannot change it.
        conn.query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0))
            .map_err(|e| classify(path, e))?
    } else {
        set_wal(conn, path)?
    };
    if !spec.immutable && !journal.eq_ignore_ascii_case("wal") {
        return Err(pragma_error(path, "journal_mode", journal, "wal".into()));
    }
    let synchronous = spec.synchronous.pragma_value();
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
         PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}; PRAGMA trusted_schema = OFF;"
    ))
    .map_err(|e| classify(path, e))?;
    let got = read_settings(conn).map_err(|e| classify(path, e))?;
    let want = ConnectionSettings {
        journal_mode: journal,
        synchronous,
        busy_timeout_ms: BUSY_TIMEOUT.as_millis() as i64,
        foreign_keys: true,
        trusted_schema: false,
        journal_size_limit: JOURNAL_SIZE_LIMIT,
    };
    match got.differences(&want).into_iter().next() {
        Some((pragma, got, want)) => Err(pragma_error(path, pragma, got, want)),
        None => Ok(()),
    }
}

fn pragma_error(path: &Path, pragma: &'static str, got: String, want: String) -> Error {
    Error::Pragma {
        path: path.to_path_buf(),
        pragma,
        got,
        want,
    }
}

/// The pragmas poked sets on every connection, as a connection reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub journal_mode: String,
    /// 2 is FULL, 1 NORMAL.
    pub synchronous: i64,
    pub busy_timeout_ms: i64,
    pub foreign_keys: bool,
    pub trusted_schema: bool,
    pub journal_size_limit: i64,
}

impl ConnectionSettings {
    /// The pragmas that differ from `want`: `(name, got, want)`.
    fn differences(&self, want: &ConnectionSettings) -> Vec<(&'static str, String, String)> {
        #[rustfmt::skip]
        let pairs = [
            ("journal_mode", self.journal_mode.clone(), want.journal_mode.clone()),
            ("synchronous", self.synchronous.to_string(), want.synchronous.to_string()),
            ("busy_timeout", self.busy_timeout_ms.to_string(), want.busy_timeout_ms.to_string()),
            ("foreign_keys", self.foreign_keys.to_string(), want.foreign_keys.to_string()),
            ("trusted_schema", self.trusted_schema.to_string(), want.trusted_schema.to_string()),
            ("journal_size_limit", self.journal_size_limit.to_string(), want.journal_size_limit.to_string()),
        ];
        pairs
            .into_iter()
            .filter(|(_, got, want)| !got.eq_ignore_ascii_case(want))
            .collect()
    }
}

/// Reads the connection's pragmas in one statement.
pub(super) fn read_settings(conn: &Connection) -> rusqlite::Result<ConnectionSettings> {
    conn.query_row(
        "SELECT (SELECT journal_mode FROM pragma_journal_mode), (SELECT synchronous FROM pragma_synchronous),
                (SELECT timeout FROM pragma_busy_timeout), (SELECT foreign_keys FROM pragma_foreign_keys),
                (SELECT trusted_schema FROM pragma_trusted_schema),
                (SELECT journal_size_limit FROM pragma_journal_size_limit)",
        [],
        |row| {
            Ok(ConnectionSettings {
                journal_mode: row.get(0)?,
                synchronous: row.get(1)?,
                busy_timeout_ms: row.get(2)?,
                foreign_keys: row.get(3)?,
                trusted_schema: row.get(4)?,
                journal_size_limit: row.get(5)?,
            })
        },
    )
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
                // Justified outside daemon/: the one retry loop of opening a brand-new file,
                // bounded by the busy timeout.
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(classify(path, e)),
        }
    }
}

fn user_version(conn: &Connection, path: &Path) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| classify(path, e))
}

/// Touches the schema so a damaged file is reported now, not at the first real query.
fn probe(conn: &Connection, path: &Path) -> Result<()> {
    let (tables, application_id, user_version): (i64, i32, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM sqlite_schema), (SELECT application_id FROM pragma_application_id),
                    (SELECT user_version FROM pragma_user_version)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
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

/// Applies the pending migrations in one IMMEDIATE transaction (the connection's default); the
/// first one also stamps the file with poked's `application_id`. A large log is copied while
/// upgrading, so the page cache is made large for the duration.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let current = user_version(conn, path)?;
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    space::ensure_space(path)?;
    conn.execute_batch("PRAGMA cache_size = -262144")
        .map_err(|e| classify(path, e))?;
    let result = migrations().to_latest(conn);
    conn.execute_batch("PRAGMA cache_size = -2000")
        .map_err(|e| classify(path, e))?;
    if let Err(e) = result {
        // Another process may have migrated between our read and our transaction.
        if user_version(conn, path)? != SCHEMA_VERSION {
            return Err(match e {
                rusqlite_migration::Error::RusqliteError { err, .. } => match classify(path, err) {
                    Error::Sqlite(e) => Error::Migration {
                        path: path.to_path_buf(),
                        detail: format!("{} (the file is unchanged)", crate::error::sqlite_message(&e)),
                    },
                    other => other,
                },
                other => Error::Migration {
                    path: path.to_path_buf(),
                    detail: other.to_string(),
                },
            });
        }
    }
    Ok(())
}
