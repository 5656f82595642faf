//! Small helpers every topic uses: a temporary database, running `poked` on it, bounded waits,
//! snapshots that prove a command changed nothing, and a private tmux server (`tmux`, `top`).
//! The heavier machinery for breaking poked on purpose (daemons, kills, the log auditor, /proc
//! scans) is in `harness.rs`.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

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
    pub fn cmd(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(poked(&self.db))
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

    /// One integer from `sql`.
    pub fn count(&self, sql: &str) -> i64 {
        self.value(sql)
    }

    /// The first column of the one row `sql` returns.
    pub fn value<T: rusqlite::types::FromSql>(&self, sql: &str) -> T {
        self.sql()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The one row `sql` returns, as a tuple of its columns.
    pub fn row<T>(&self, sql: &str) -> T
    where
        T: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>,
    {
        self.sql()
            .query_row(sql, [], |r| T::try_from(r))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The database and its WAL, hashed, to prove a command changed nothing.
    pub fn fingerprint(&self) -> Vec<(String, Option<Vec<u8>>)> {
        fingerprint(&self.db)
    }
}

/// Every row `sql` returns on `conn`, each as a tuple of its columns.
pub fn all_rows<T>(conn: &rusqlite::Connection, sql: &str) -> Vec<T>
where
    T: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>,
{
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    stmt.query_map([], |r| T::try_from(r))
        .and_then(Iterator::collect)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `poked` on `db`, with no fixed time, no inherited poked variables and stdin closed.
pub fn poked(db: &Path) -> std::process::Command {
    poked_under(&[], db)
}

/// Like [`poked`], started through `wrapper`, a program and its first arguments to which the
/// path of `poked` is appended (`setpriv --reuid=65534 ...`, `sh -c 'exec "$@"' ...`).
pub fn poked_under(wrapper: &[&str], db: &Path) -> std::process::Command {
    let bin = assert_cmd::cargo::cargo_bin!("poked");
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args).arg(bin);
            cmd
        }
        None => std::process::Command::new(bin),
    };
    for var in [
        "POKED_NOW",
        "POKED_DRAW",
        "POKED_SYNCHRONOUS",
        "POKED_FAULT",
        "XDG_STATE_HOME",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("POKED_DB", db).env("NO_COLOR", "1").stdin(Stdio::null());
    cmd
}

/// Runs `poked ARGS` on `db` and insists on success.
pub fn must(db: &Path, args: &[&str]) -> String {
    let out = poked(db).args(args).output().expect("run poked");
    assert!(
        out.status.success(),
        "poked {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`must`] with the arguments written as one line of words, none of which has a space.
pub fn must_words(db: &Path, words: &str) -> String {
    must(db, &words.split_whitespace().collect::<Vec<_>>())
}

/// Command-line arguments: `words` split at white space (none of them has a space), then `rest`
/// as they are (a command, a message, a path).
pub fn argv<'a>(words: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    words.split_whitespace().chain(rest.iter().copied()).collect()
}

/// How long a command that should answer at once (a refusal, a read of a small file) may
/// take: far above the milliseconds it needs even on a loaded machine, and below the 10 s a
/// writer waits for a busy lock, so a command that waited for one fails.
pub const PROMPT: Duration = Duration::from_secs(5);

/// Runs `cmd` to its end, which must come within `within`: a command that should answer at
/// once (a refusal, a read) but waits on a lock or hangs fails here instead of stalling the
/// suite. Output is collected as it comes, so a chatty command cannot block on a full pipe.
pub fn output_within(cmd: &mut std::process::Command, within: Duration) -> Output {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let read = |mut from: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = from.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    // Most commands end in milliseconds: look often at first, then less.
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {within:?}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
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

/// Every file and folder below `dir`, with the files' bytes, to prove a command created or
/// changed nothing there.
pub fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.push((path.clone(), Vec::new()));
                todo.push(path);
            } else {
                found.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    found.sort();
    found
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

/// Runs `poked` as `nobody` (uid 65534), for [`poked_under`].
pub const AS_NOBODY: [&str; 4] = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

/// Whether the tests run as root, who reads and writes whatever the file modes say: only
/// another user ([`AS_NOBODY`]) meets them.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Makes `env`'s database one that `poked` may read but not write, and returns the wrapper to
/// run it under ([`poked_under`]): as root, `nobody`, who may read the file and its folder but
/// not write them; otherwise no wrapper, and the file loses its write bit.
pub fn read_only_for_poked(env: &Env) -> &'static [&'static str] {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    if is_root() {
        mode(env.dir.path(), 0o755);
        mode(&env.db, 0o644);
        &AS_NOBODY
    } else {
        mode(&env.db, 0o400);
        &[]
    }
}

/// A private tmux server; killed on drop.
pub struct Tmux {
    dir: PathBuf,
}

impl Tmux {
    /// A server in `dir`, or `None` (after saying why) when tmux is missing outside CI.
    pub fn start(dir: &Path) -> Option<Tmux> {
        let found = std::process::Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "tmux is missing, and CI must run the tmux tests (.ci/run installs it)"
            );
            eprintln!("tmux is not installed: skipping this test (CI installs it)");
            return None;
        }
        let dir = dir.join("tmux");
        std::fs::create_dir(&dir).unwrap();
        Some(Tmux { dir })
    }

    pub fn cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("tmux");
        cmd.env("TMUX_TMPDIR", &self.dir).env_remove("TMUX");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// What the session's pane shows.
    pub fn pane(&self, session: &str) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", session])
            .output()
            .unwrap();
        // A pane that is gone must not read as an empty screen.
        assert!(
            out.status.success(),
            "tmux capture-pane -t {session}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits at most `within` until the session's pane shows `text`.
    pub fn shows_within(&self, session: &str, text: &str, within: Duration) -> bool {
        wait_for(within, || self.pane(session).contains(text))
    }

    /// `poked ARGS` that reaches this server.
    pub fn poked(&self, env: &Env, args: &[&str]) -> String {
        let out = env
            .cmd()
            .env("TMUX_TMPDIR", &self.dir)
            .env_remove("TMUX")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "poked {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// The path of `program` on `PATH`, if it is installed.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// A tool a test drives (`groff`, `promtool`): its path, or `None` after saying the test is
/// skipped. Under CI (`CI` set) a missing tool is a failure: `.ci/run` installs `package`.
pub fn tool(program: &str, package: &str) -> Option<PathBuf> {
    let found = which(program);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is missing, and CI must run this test (.ci/run installs {package})"
        );
        eprintln!("skipped: {program} is not installed here (CI installs {package})");
    }
    found
}
