//! The library's one error type.
//!
//! Each variant means something to a user and carries the id, path or value involved, so `main`
//! can print it once as `poked: <message>` and map it to the exit codes of SPEC §5
//! (see [`Error::exit_code`]). Messages are lowercase with no trailing period.

use std::path::PathBuf;

/// Everything that can go wrong in poked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value given by the user breaks a rule (exit 2).
    #[error("invalid {what} {value:?}: {rule}")]
    InvalidValue {
        what: &'static str,
        value: String,
        rule: String,
    },

    /// A request that cannot be carried out as asked (exit 2).
    #[error("{0}")]
    Usage(String),

    /// No agent with this id (exit 3).
    #[error("unknown agent {0:?} (see `poked list`)")]
    UnknownAgent(String),

    /// `add` (or `import` without `--replace`) of an id that is already registered.
    #[error("agent {id:?} already exists ({hint})")]
    AgentExists { id: String, hint: &'static str },

    /// Something wrong with one agent of several (an import line's agent).
    #[error("agent {id:?}: {source}")]
    InAgent {
        id: String,
        #[source]
        source: Box<Error>,
    },

    /// Something wrong at one line of an input (`import`): the line, the error, and what was
    /// written before it.
    #[error("line {line}: {source} ({written})")]
    AtLine {
        line: u64,
        #[source]
        source: Box<Error>,
        written: String,
    },

    /// A row's outcome was already recorded (or the row is gone): nothing to record.
    #[error("log row {0} is no longer pending; its outcome was not recorded")]
    NotPending(i64),

    /// The database has not been created yet.
    #[error("no database at {} (create it with `poked init` or `poked add`)", .0.display())]
    NoDatabase(PathBuf),

    /// The file is a SQLite database of some other program, or not a database at all.
    #[error("{} is not a poked database: {reason}", path.display())]
    NotPoked { path: PathBuf, reason: String },

    /// The file is damaged. (Not "left untouched": `run` may have committed transitions on sound
    /// pages before it reached the damaged one.)
    #[error(
        "database {} is corrupt: {detail} (restore a backup, or salvage it with `sqlite3 {} .recover`)",
        path.display(),
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },

    /// Written by a newer poked; refused untouched.
    #[error(
        "database {} has schema version {found}, newer than this poked supports ({supported}); upgrade poked",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    /// The file exists but this user may not even read it.
    #[error("cannot open database {}: permission denied ({detail})", path.display())]
    PermissionDenied { path: PathBuf, detail: String },

    /// The file or its folder cannot be written.
    #[error("database {} is read-only: {detail}", path.display())]
    ReadOnly { path: PathBuf, detail: String },

    /// The disk holding the database is full.
    #[error("disk full writing {} (free some space and try again)", .0.display())]
    DiskFull(PathBuf),

    /// Another process held the database longer than the busy timeout.
    #[error("database {} is busy (another process held its lock too long)", .0.display())]
    Busy(PathBuf),

    /// A schema migration failed; the database was left as it was.
    #[error("cannot migrate {}: {detail}", path.display())]
    Migration { path: PathBuf, detail: String },

    /// A connection setting did not take effect.
    #[error("database {}: pragma {pragma} is {got:?}, expected {want:?}", path.display())]
    Pragma {
        path: PathBuf,
        pragma: &'static str,
        got: String,
        want: String,
    },

    /// Another daemon already runs on this database.
    #[error("another poked daemon (pid {pid}) already runs on {}", path.display())]
    DaemonRunning { path: PathBuf, pid: String },

    /// The metrics address cannot be listened on (a port in use, an address of another machine).
    #[error("cannot listen on {address} for metrics: {source}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// `poked check` found broken rules (listed on stdout).
    #[error("check found {0} problem{s}", s = if *.0 == 1 { "" } else { "s" })]
    CheckFailed(usize),

    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Any other SQLite failure.
    #[error("database error: {}", sqlite_message(.0))]
    Sqlite(#[from] rusqlite::Error),

    /// The connection pool could not hand out a connection.
    #[error("database connection: {0}")]
    Pool(#[from] r2d2::Error),
}

impl Error {
    /// The process exit code of SPEC §5: 2 bad usage or value, 3 unknown agent, 1 otherwise.
    /// An error about one agent or one line has the exit code of what went wrong there.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::InvalidValue { .. } | Error::Usage(_) => 2,
            Error::UnknownAgent(_) => 3,
            Error::InAgent { source, .. } | Error::AtLine { source, .. } => source.exit_code(),
            _ => 1,
        }
    }

    /// [`Error::AgentExists`] as `add` reports it.
    pub fn exists(id: impl Into<String>) -> Error {
        Error::AgentExists {
            id: id.into(),
            hint: "use `poked set` to change it",
        }
    }

    /// Shorthand for [`Error::InvalidValue`].
    pub fn invalid(what: &'static str, value: impl Into<String>, rule: impl Into<String>) -> Error {
        Error::InvalidValue {
            what,
            value: value.into(),
            rule: rule.into(),
        }
    }
}

/// What SQLite said, on one line (rusqlite's own text of a failed statement includes the whole
/// statement, over many lines).
pub fn sqlite_message(e: &rusqlite::Error) -> String {
    let text = match e {
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or_default().to_string()
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_error_has_one_exit_code_wherever_it_arises() {
        let exists = || Error::exists("x");
        assert_eq!(exists().exit_code(), 1);
        let at_line = Error::AtLine {
            line: 3,
            source: Box::new(exists()),
            written: "nothing written".into(),
        };
        assert_eq!(at_line.exit_code(), 1, "import's taken id exits as add's does");
        assert_eq!(Error::NotPending(7).exit_code(), 1, "not a usage error");
        assert_eq!(Error::invalid("id", "x y", "no spaces").exit_code(), 2);
        assert_eq!(Error::UnknownAgent("x".into()).exit_code(), 3);
    }
}
