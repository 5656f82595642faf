//! The harness for breaking poked on purpose and looking inside afterwards, shared by the
//! crash, contention, disk, clock and soak tests:
//!
//! - [`Daemon`]: a `poked run` with its log in a file, started once it has recorded itself,
//!   and never outliving its test; [`Guarded`] does the same for any other child;
//! - kills: [`sigkill`] and [`wait_exited`] for the kill loops' own children, a seeded
//!   [`Rng`] so a failing run can be replayed (`POKED_TEST_SEED`);
//! - inspection: a connection that leaves the files as poked left them ([`inspect`]),
//!   `integrity_check`, `poked check`, and the [`Auditor`], which replays every agent's log and
//!   compares it with the agent's row and with what the writers had acknowledged;
//! - /proc: the live processes of a database's pokes ([`poke_processes`]);
//! - [`seeded_database`], a database whose tables span many pages.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use crate::common::{poked, wait_for};

// ---------------------------------------------------------------------------------------------
// Processes.
// ---------------------------------------------------------------------------------------------

/// How long a daemon may take to start (open, migrate, recover, record itself) or to stop once
/// asked, on a loaded machine. Far above what it needs; reached only when something is wrong.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Tells apart the log files of the daemons that share a folder.
static DAEMONS: AtomicUsize = AtomicUsize::new(0);

/// A `poked run` started by a test, its stderr in a log file. Dropping it stops it as a user
/// would, with SIGTERM and, once the first was heard, a second that stops the commands in
/// flight; SIGKILL only if that does not work. It is always reaped: no daemon or command
/// outlives its test.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `poked run ARGS` on `db`, its log beside the database, and returns once the
    /// daemon has recorded itself in the `daemon` table.
    pub fn start(db: &Path, args: &[&str]) -> Daemon {
        Daemon::try_start(db, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Daemon::start`], with a failure to start as an error.
    pub fn try_start(db: &Path, args: &[&str]) -> Result<Daemon, String> {
        let folder = db.parent().expect("the database's folder");
        Daemon::try_start_logging_in(db, args, folder)
    }

    /// Like [`Daemon::start`], with these variables added to the daemon's environment.
    pub fn start_with_env(db: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let folder = db.parent().expect("the database's folder");
        let daemon = Daemon::spawn(db, args, env, folder).unwrap_or_else(|e| panic!("{e}"));
        daemon.recorded(db).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Daemon::try_start`], with the log in `log_dir`.
    pub fn try_start_logging_in(db: &Path, args: &[&str], log_dir: &Path) -> Result<Daemon, String> {
        Daemon::spawn(db, args, &[], log_dir)?.recorded(db)
    }

    /// Starts `poked run ARGS` on `db` with `env` added, its log in `log_dir`, and returns at
    /// once (a test that watches the start itself).
    pub fn spawn(db: &Path, args: &[&str], env: &[(&str, &str)], log_dir: &Path) -> Result<Daemon, String> {
        let log = log_dir.join(format!("daemon-{}.log", DAEMONS.fetch_add(1, Ordering::SeqCst)));
        let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = poked(db)
            .arg("run")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start poked run: {e}"))?;
        Ok(Daemon {
            child: Some(child),
            log,
        })
    }

    /// This daemon, once it has recorded itself in the `daemon` table of `db`.
    fn recorded(mut self, db: &Path) -> Result<Daemon, String> {
        let daemon = &mut self;
        let pid = i64::from(daemon.pid());
        wait_for(PATIENCE, || recorded_daemon(db) == Some(pid) || !daemon.running());
        if recorded_daemon(db) == Some(pid) {
            Ok(self)
        } else {
            Err(format!(
                "the daemon did not record itself within {PATIENCE:?}: {}",
                daemon.log_text()
            ))
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` to the daemon unless it has been seen to exit (and reaped with that: its
    /// pid may belong to another process by now).
    pub fn signal(&mut self, signal: i32) {
        if let Some(child) = self.child.as_mut()
            && child.try_wait().unwrap().is_none()
        {
            // SAFETY: kill(2) on our own child, not reaped yet, so its pid is still ours.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// Whether it has not exited.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// Waits at most `within` for it to exit.
    pub fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let mut status = None;
        wait_for(within, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        status
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits at most `within` until `times` lines of the log contain `needle`.
    pub fn wait_for_log(&self, needle: &str, times: usize, within: Duration) -> bool {
        wait_for(within, || {
            self.log_text().lines().filter(|l| l.contains(needle)).count() >= times
        })
    }

    /// SIGTERM, then exit 0 within [`PATIENCE`] (after the commands in flight end).
    pub fn stop(mut self) -> Result<(), String> {
        self.signal(libc::SIGTERM);
        self.expect_clean_exit()
    }

    /// Two SIGTERMs, the second once the daemon has logged the first: it stops the commands
    /// in flight (recorded `interrupted`) and exits 0 at once.
    pub fn stop_now(mut self) -> Result<(), String> {
        self.signal_twice(libc::SIGTERM);
        self.expect_clean_exit()
    }

    /// SIGKILL, and reaped: a crash.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `signal`, and once the daemon has logged that it is stopping (or has exited), `signal`
    /// again.
    pub fn signal_twice(&mut self, signal: i32) {
        self.signal(signal);
        let log = self.log.clone();
        if let Some(child) = self.child.as_mut() {
            wait_for(PATIENCE, || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                text.contains("stopping: no new pokes") || child.try_wait().unwrap().is_some()
            });
        }
        self.signal(signal);
    }

    fn expect_clean_exit(&mut self) -> Result<(), String> {
        match self.exit_within(PATIENCE) {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("the daemon ended with {status}: {}", self.log_text())),
            None => Err(format!(
                "the daemon did not stop within {PATIENCE:?}: {}",
                self.log_text()
            )),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.running() {
            self.signal_twice(libc::SIGTERM);
            if self.exit_within(Duration::from_secs(10)).is_none() {
                self.signal(libc::SIGKILL);
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// Runs `poked --db MOUNT/poked.db ARGS` (words) in a mount namespace of its own, where `dir`
/// is bound at `mount` with `mount --bind OPTIONS` (root only): the same file through another
/// path. `NO_COLOR` and `env` are set, `POKED_DB` is not.
pub fn poked_through_bind_mount(
    dir: &Path,
    mount: &Path,
    options: &str,
    args: &str,
    env: &[(&str, &str)],
) -> Output {
    let poked = assert_cmd::cargo::cargo_bin!("poked");
    let script = format!(
        "mount --bind {options} {dir} {mnt} && exec {poked} --db {mnt}/poked.db {args}",
        dir = dir.display(),
        mnt = mount.display(),
        poked = poked.display()
    );
    Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .env_remove("POKED_DB")
        .output()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Kills and randomness.
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `POKED_TEST_SEED`, else at random; the seed is printed.
    pub fn from_env(test: &str) -> Rng {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::env::var("POKED_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish()
            });
        eprintln!("{test}: POKED_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// SIGKILL to a process this test started and has not reaped yet.
pub fn sigkill(pid: u32) {
    // SAFETY: kill(2) on a pid that is our own unreaped child (the registry guarantees it).
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// Blocks until the child `pid` has exited, without reaping it: its pid stays ours (a zombie)
/// until `Child::wait`, so it can never be recycled while the killer may still signal it.
pub fn wait_exited(pid: u32) {
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with WNOWAIT only observes its state.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Looking inside.
// ---------------------------------------------------------------------------------------------

/// The pid recorded by the running daemon of `db`, if one is recorded as running.
pub fn recorded_daemon(db: &Path) -> Option<i64> {
    let conn = Connection::open(db).ok()?;
    quiet_close(&conn);
    conn.query_row("SELECT pid FROM daemon WHERE stopped_at IS NULL", [], |r| {
        r.get(0)
    })
    .ok()
}

/// A test's own connection must not checkpoint when it closes: the files stay as poked left
/// them for the next poked process to find.
fn quiet_close(conn: &Connection) {
    let _ = conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
}

/// A connection for checking what poked wrote.
pub fn inspect(db: &Path) -> Connection {
    let conn = Connection::open(db).expect("open db");
    quiet_close(&conn);
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// One integer from `sql`.
pub fn scalar(db: &Path, sql: &str) -> i64 {
    inspect(db).query_row(sql, [], |r| r.get(0)).unwrap()
}

/// `PRAGMA integrity_check` must say exactly `ok`.
pub fn integrity(conn: &Connection) -> Result<(), String> {
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| e.to_string())?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(|e| e.to_string())?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| e.to_string())?;
    if lines == ["ok"] {
        Ok(())
    } else {
        Err(format!("integrity_check: {lines:?}"))
    }
}

/// `poked check` must exit 0 and say ok.
pub fn poked_check(db: &Path) -> Result<(), String> {
    let out = poked(db).arg("check").output().expect("run poked check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.starts_with("ok") {
        Ok(())
    } else {
        Err(format!("poked check: {}: {text}", out.status))
    }
}

// ---------------------------------------------------------------------------------------------
// The log auditor: replays every agent's log and compares it with the agent's state.
// ---------------------------------------------------------------------------------------------

/// The transitions a writer cycles through; an acknowledged transition number `n` is
/// `CYCLE[n % 3]`. Neighbours differ, so a transition retried after a kill collapses into one.
pub const CYCLE: [&str; 3] = ["activity", "miss", "poke"];

/// One writer process slot: its own agent and what it had acknowledged.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    pub agent: String,
    /// Transitions whose command exited 0.
    pub acked: usize,
    /// Commands started.
    pub attempts: usize,
    /// Commands killed before they answered.
    pub killed: usize,
}

/// What the auditor keeps about one agent between audits (the log is append-only, so each
/// audit reads only the rows committed since the previous one).
#[derive(Debug, Clone, Default)]
struct Replay {
    interval: i64,
    misses: i64,
    last_poke_at: Option<i64>,
    last_activity_at: Option<i64>,
    /// For writer agents: the writer's transitions in log order, repeats collapsed.
    sequence: Vec<&'static str>,
}

/// Replays the log incrementally and checks every agent against it.
pub struct Auditor {
    db: PathBuf,
    /// Log rows up to this id were replayed.
    seen: i64,
    /// Rows at or below this id belong to the set-up, not to the writers' sequences.
    setup: i64,
    agents: HashMap<String, Replay>,
    pub rows: i64,
}

/// An agent's settings, read once.
struct Settings {
    strategy: poked::backoff::Strategy,
    base: i64,
    max: i64,
    factor: f64,
}

impl Auditor {
    pub fn new(db: &Path) -> Auditor {
        let setup = scalar(db, "SELECT coalesce(max(id), 0) FROM poke_log");
        Auditor {
            db: db.to_path_buf(),
            seen: 0,
            setup,
            agents: HashMap::new(),
            rows: 0,
        }
    }

    /// Checks the file's integrity (when `integrity_check`), replays the new log rows, and
    /// compares each agent's row with its replayed log; with `writers`, also that every
    /// acknowledged transition is in the log, in order, and nothing else of theirs is.
    /// Returns the number of acknowledged transitions missing (0), or what is broken.
    pub fn audit(&mut self, writers: &[Writer], integrity_check: bool) -> Result<(), String> {
        let conn = inspect(&self.db);
        if integrity_check {
            integrity(&conn)?;
        }
        let tx = conn.unchecked_transaction().map_err(|e| e.to_string())?;
        let mut settings = HashMap::new();
        {
            let mut stmt = tx
                .prepare("SELECT id, strategy, base_interval_ms, max_interval_ms, factor FROM agents")
                .map_err(|e| e.to_string())?;
            let rows = stmt
                .query_map([], |r| <(String, String, i64, i64, f64)>::try_from(r))
                .map_err(|e| e.to_string())?;
            for row in rows {
                let (id, strategy, base, max, factor) = row.map_err(|e| e.to_string())?;
                let strategy = strategy.parse().map_err(|e: String| e)?;
                settings.insert(
                    id,
                    Settings {
                        strategy,
                        base,
                        max,
                        factor,
                    },
                );
            }
        }
        let writer_agents: HashSet<&str> = writers.iter().map(|w| w.agent.as_str()).collect();
        {
            let mut stmt = tx
                .prepare(
                    "SELECT id, agent_id, at, kind, interval_ms, consecutive_misses, detail, outcome
                     FROM poke_log WHERE id > ?1 ORDER BY id",
                )
                .map_err(|e| e.to_string())?;
            let mut rows = stmt.query([self.seen]).map_err(|e| e.to_string())?;
            while let Some(row) = rows.next().map_err(|e| e.to_string())? {
                let id: i64 = row.get(0).unwrap();
                let agent: String = row.get(1).unwrap();
                let at: i64 = row.get(2).unwrap();
                let kind: String = row.get(3).unwrap();
                let interval: i64 = row.get(4).unwrap();
                let misses: i64 = row.get(5).unwrap();
                let detail: Option<String> = row.get(6).unwrap();
                let outcome: Option<String> = row.get(7).unwrap();
                self.seen = id;
                self.rows += 1;
                let s = settings
                    .get(&agent)
                    .ok_or_else(|| format!("log row {id} names {agent:?}, which is not an agent"))?;
                let replay = self.agents.entry(agent.clone()).or_default();
                let writer_kind = match kind.as_str() {
                    "added" => {
                        replay.interval = s.base;
                        replay.misses = 0;
                        None
                    }
                    "activity" | "reset" => {
                        replay.interval = s.base;
                        replay.misses = 0;
                        if kind == "activity" {
                            replay.last_activity_at = Some(replay.last_activity_at.map_or(at, |l| l.max(at)));
                            Some(CYCLE[0])
                        } else {
                            None
                        }
                    }
                    "miss" => {
                        replay.interval =
                            poked::backoff::after_miss(s.strategy, s.factor, replay.interval, s.max);
                        replay.misses += 1;
                        Some(CYCLE[1])
                    }
                    "poke" => {
                        replay.last_poke_at = Some(at);
                        (detail.as_deref() == Some("recorded by hand")).then_some(CYCLE[2])
                    }
                    // An escalation is a stronger poke, unless its cap held it (a poke follows).
                    "escalation" => {
                        if outcome.as_deref() != Some("held") {
                            replay.last_poke_at = Some(at);
                        }
                        None
                    }
                    // A skip only holds the agent.
                    "skip" | "paused" | "resumed" => None,
                    // A correction after the clock was set back moves what it names to its time.
                    "updated"
                        if detail
                            .as_deref()
                            .is_some_and(|d| d.starts_with("clock set back:")) =>
                    {
                        let d = detail.as_deref().unwrap_or_default();
                        if d.contains("last_poke_at") {
                            replay.last_poke_at = replay.last_poke_at.map(|p| p.min(at));
                        }
                        if d.contains("last_activity_at") {
                            replay.last_activity_at = replay.last_activity_at.map(|a| a.min(at));
                        }
                        None
                    }
                    other => return Err(format!("log row {id}: unexpected kind {other:?}")),
                };
                if (interval, misses) != (replay.interval, replay.misses) {
                    return Err(format!(
                        "log row {id} ({kind} of {agent}) says interval {interval} and {misses} misses; \
                         replaying the log gives {} and {}",
                        replay.interval, replay.misses
                    ));
                }
                if let Some(k) = writer_kind
                    && id > self.setup
                    && writer_agents.contains(agent.as_str())
                    && replay.sequence.last() != Some(&k)
                {
                    replay.sequence.push(k);
                }
            }
        }
        // Every agent's row must be what its log says.
        let mut stmt = tx
            .prepare(
                "SELECT id, current_interval_ms, consecutive_misses, wait_ms, last_poke_at,
                        last_activity_at, jitter FROM agents",
            )
            .map_err(|e| e.to_string())?;
        type AgentRow = (String, i64, i64, i64, Option<i64>, Option<i64>, f64);
        let rows = stmt
            .query_map([], |r| AgentRow::try_from(r))
            .map_err(|e| e.to_string())?;
        for row in rows {
            let (id, interval, misses, wait, last_poke, last_activity, jitter) =
                row.map_err(|e| e.to_string())?;
            let replay = self
                .agents
                .get(&id)
                .ok_or_else(|| format!("agent {id} has no log at all"))?;
            let logged = (
                replay.interval,
                replay.misses,
                replay.last_poke_at,
                replay.last_activity_at,
            );
            if (interval, misses, last_poke, last_activity) != logged {
                return Err(format!(
                    "agent {id} has (interval, misses, last poke, last activity) = \
                     {:?} but its log says {logged:?}",
                    (interval, misses, last_poke, last_activity)
                ));
            }
            if jitter == 0.0 && wait != interval {
                return Err(format!(
                    "agent {id}: wait {wait} ms differs from its interval {interval} ms"
                ));
            }
        }
        // At most one poke in flight per agent.
        let doubled: Option<String> = tx
            .query_row(
                "SELECT agent_id FROM poke_log WHERE outcome = 'pending' GROUP BY agent_id HAVING count(*) > 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| e.to_string())?;
        if let Some(agent) = doubled {
            return Err(format!("agent {agent} has two pokes pending at once"));
        }
        drop(stmt);
        drop(tx);
        // Every acknowledged transition is there, in order, and nothing the writers did not
        // start: the log holds the first `acked` transitions, or one more (committed, then
        // killed before it could answer).
        for w in writers {
            let got = self
                .agents
                .get(&w.agent)
                .map(|r| r.sequence.as_slice())
                .unwrap_or_default();
            let expected = |n: usize| (0..n).map(|i| CYCLE[i % 3]).collect::<Vec<_>>();
            if got != expected(w.acked).as_slice() && got != expected(w.acked + 1).as_slice() {
                let matched = got
                    .iter()
                    .zip(expected(w.acked))
                    .take_while(|(a, b)| **a == *b)
                    .count();
                return Err(format!(
                    "writer {}: {} transitions acknowledged, the log holds {} of them in order \
                     ({} lost) and {} in all",
                    w.agent,
                    w.acked,
                    matched,
                    w.acked - matched,
                    got.len()
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The processes of pokes, from /proc.
// ---------------------------------------------------------------------------------------------

/// A live (not zombie) process running one of an agent's commands for the database `db`: a
/// poke's or an escalation's (with its log row's id), or a probe or a gate (without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PokeProcess {
    pub pid: i32,
    /// Each command runs in a process group of its own: the group names the command.
    pub pgid: i32,
    pub agent: String,
    /// The log row of a poke or an escalation; -1 for a probe or a gate.
    pub poke_id: i64,
}

/// Every live process whose environment says it runs a command of `db` (poked sets `POKED_DB`
/// and `POKED_AGENT` for each, and `POKED_POKE_ID` for pokes and escalations). Zombies are
/// dead: they are skipped.
pub fn poke_processes(db: &Path) -> Vec<PokeProcess> {
    let want = [b"POKED_DB=".as_slice(), db.as_os_str().as_bytes()].concat();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if !vars.contains(&want.as_slice()) {
            continue;
        }
        let var = |name: &str| {
            vars.iter()
                .find_map(|v| v.strip_prefix(name.as_bytes()))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let Some(agent) = var("POKED_AGENT=") else {
            continue;
        };
        let poke_id = var("POKED_POKE_ID=").unwrap_or_else(|| "-1".into());
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
            continue;
        }
        found.push(PokeProcess {
            pid,
            pgid: fields.get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
            agent,
            poke_id: poke_id.parse().unwrap_or(-1),
        });
    }
    found
}

/// On the way out, even a failing one: SIGKILL to the process groups still running pokes of
/// this test's database (only its own commands carry that path).
pub struct KillGroupsOnDrop(pub PathBuf);

impl Drop for KillGroupsOnDrop {
    fn drop(&mut self) {
        for p in poke_processes(&self.0) {
            if p.pgid > 1 {
                // SAFETY: a process group of a command this test's daemon started.
                unsafe { libc::kill(-p.pgid, libc::SIGKILL) };
            }
        }
    }
}

/// A child that is SIGKILLed and reaped if the test lets go of it early (a failed check),
/// so no daemon outlives its test.
pub struct Guarded(Option<Child>);

impl Guarded {
    pub fn new(child: Child) -> Guarded {
        Guarded(Some(child))
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Whether it has not exited.
    pub fn running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// The child, no longer guarded.
    pub fn take(mut self) -> Child {
        self.0.take().expect("child")
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------------------------

/// A database with `agents` agents (`agent-000`, ...) and `transitions` misses and activities
/// each, written through the library (fast), so every table and index spans several pages.
pub fn seeded_database(db: &Path, agents: usize, transitions: i64) {
    use poked::agent::{AgentId, Settings};
    use poked::random::FixedDraw;
    use poked::store::{OpenOptions, Store, Synchronous};
    let store = Store::open(
        db,
        OpenOptions {
            create: true,
            synchronous: Synchronous::Normal,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let draw = FixedDraw(0.5);
    let t0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    for i in 0..agents {
        let id = AgentId::parse(&format!("agent-{i:03}")).unwrap();
        store
            .add(&id, &Settings::default(), &[], false, t0, &draw)
            .unwrap();
        for k in 0..transitions {
            let at = t0 + (k + 1) * 60_000;
            if k % 3 == 2 {
                store.record_activity(&id, at, at, &draw).unwrap();
            } else {
                store.record_miss(&id, at, &draw).unwrap();
            }
        }
    }
    store.checkpoint(true).unwrap();
}
