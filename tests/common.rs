//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use tempfile::TempDir;

/// A temporary directory with a database path in it.
pub struct Env {
    pub dir: TempDir,
    pub db: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("poked.db");
        Env { dir, db }
    }

    /// `poked` on this database with no fixed time and no inherited poked variables.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("poked"));
        for var in ["POKED_NOW", "POKED_DRAW", "POKED_SYNCHRONOUS", "XDG_STATE_HOME"] {
            cmd.env_remove(var);
        }
        cmd.env("POKED_DB", &self.db).env("NO_COLOR", "1");
        cmd
    }

    /// `poked ARGS` at the fixed time `now` (RFC 3339).
    pub fn at(&self, now: &str, args: &[&str]) -> Output {
        self.cmd()
            .env("POKED_NOW", now)
            .args(args)
            .output()
            .expect("run poked")
    }

    /// Like [`Env::at`], and the command must succeed.
    pub fn ok(&self, now: &str, args: &[&str]) -> String {
        let out = self.at(now, args);
        assert!(
            out.status.success(),
            "poked {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// A raw connection for reading back what poked wrote.
    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).expect("open db")
    }

    /// The database and its WAL, hashed, to prove a command changed nothing.
    pub fn fingerprint(&self) -> Vec<(String, Option<Vec<u8>>)> {
        fingerprint(&self.db)
    }
}

/// The bytes of a database file and its `-wal`/`-shm`-less companions (missing ones as None).
pub fn fingerprint(db: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    ["", "-wal"]
        .iter()
        .map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            let bytes = std::fs::read(PathBuf::from(name)).ok();
            (suffix.to_string(), bytes)
        })
        .collect()
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn ms(rfc3339: &str) -> i64 {
    poked::units::parse_rfc3339(rfc3339).expect("valid time")
}

/// Asserts a failed run: the exit code, one line on stderr starting `poked: `, and that the
/// line mentions `needle`.
pub fn assert_error(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "wrong exit code; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "error is not one line: {stderr:?}");
    assert!(
        stderr.starts_with("poked: "),
        "error does not start with `poked: `: {stderr:?}"
    );
    assert!(
        stderr.to_lowercase().contains(&needle.to_lowercase()),
        "error {stderr:?} does not mention {needle:?}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if check() {
            return true;
        }
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
