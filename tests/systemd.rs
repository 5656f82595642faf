//! `poked run` under systemd (SPEC §8): the notify protocol spoken to a real datagram socket that
//! stands in for systemd's, the watchdog's cadence and its silence when the loop is stopped, the
//! environment of the commands it runs, bad systemd variables, and the unit file itself.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{Env, must, wait_for, which};
use crate::harness::{Daemon, PATIENCE, poke_processes};

/// A stand-in for systemd's notify socket, bound in the test's folder.
pub struct Manager {
    socket: UnixDatagram,
    pub path: PathBuf,
}

/// One notification and when it arrived.
#[derive(Debug, Clone)]
pub struct Message {
    pub at: Instant,
    pub text: String,
}

impl Manager {
    pub fn bind(dir: &Path) -> Manager {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Manager { socket, path }
    }

    /// `NOTIFY_SOCKET` for a daemon that should speak to this manager.
    pub fn env(&self) -> (&'static str, &str) {
        ("NOTIFY_SOCKET", self.path.to_str().expect("a UTF-8 temp path"))
    }

    /// The next notification, if one arrives within `within`.
    pub fn next(&self, within: Duration) -> Option<Message> {
        self.socket.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(Message {
            at: Instant::now(),
            text: String::from_utf8_lossy(&buf[..n]).into_owned(),
        })
    }

    /// Every notification up to and including the first that contains `needle`, which must
    /// come within `within`.
    pub fn until(&self, needle: &str, within: Duration) -> Vec<Message> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .next(left.max(Duration::from_millis(1)))
                .unwrap_or_else(|| panic!("no {needle:?} within {within:?}; got {seen:?}"));
            let found = message.text.contains(needle);
            seen.push(message);
            if found {
                return seen;
            }
        }
    }

    /// Reads and drops whatever is queued.
    pub fn drain(&self) -> Vec<Message> {
        let mut got = Vec::new();
        while let Some(message) = self.next(Duration::from_millis(1)) {
            got.push(message);
        }
        got
    }
}

fn watchdogs(messages: &[Message]) -> Vec<Instant> {
    messages
        .iter()
        .filter(|m| m.text.lines().any(|l| l == "WATCHDOG=1"))
        .map(|m| m.at)
        .collect()
}

/// The state letter of process `pid` in /proc (`T` when stopped).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[test]
fn ready_comes_once_the_database_is_recovered_then_status_then_stopping() {
    let env = Env::new();
    // A poke left pending by a daemon that died: recovery marks it interrupted before READY.
    must(&env.db, &["add", "slow", "--base", "1h", "--", "sleep", "30"]);
    let crashed = Daemon::start(&env.db, &[]);
    let pending = "SELECT count(*) FROM poke_log WHERE outcome = 'pending'";
    assert!(wait_for(PATIENCE, || env.count(pending) == 1));
    crashed.kill();
    for p in poke_processes(&env.db) {
        // SAFETY: the process group of the command this test's daemon started.
        unsafe { libc::kill(-p.pgid, libc::SIGKILL) };
    }
    must(&env.db, &["add", "quick", "--base", "1h"]);

    let manager = Manager::bind(env.dir.path());
    let folder = env.dir.path();
    // Recovery cannot write while this transaction holds the write lock: no READY meanwhile.
    let blocker = env.sql();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut daemon = Daemon::spawn(&env.db, &[], &[manager.env()], folder).unwrap();
    let early = manager.next(Duration::from_secs(1));
    assert!(early.is_none(), "{early:?} while recovery waited for the lock");
    blocker.execute_batch("ROLLBACK").unwrap();
    let ready = manager.next(PATIENCE).expect("a first notification");
    // At READY=1 the database is usable: recovered, and the daemon recorded.
    let (pending_now, interrupted, recorded) = (
        env.count(pending),
        env.count("SELECT count(*) FROM poke_log WHERE outcome = 'interrupted'"),
        env.count("SELECT coalesce(max(pid), 0) FROM daemon WHERE stopped_at IS NULL"),
    );
    assert_eq!(ready.text, "READY=1\n", "{}", daemon.log_text());
    assert_eq!((pending_now, interrupted), (0, 1), "READY before recovery");
    assert_eq!(
        recorded,
        i64::from(daemon.pid()),
        "READY before the daemon recorded itself"
    );

    // Then a status line, once the first pass is done: `quick` was poked, `slow` is not due.
    let status = manager.until("STATUS=", PATIENCE);
    let line = &status.last().unwrap().text;
    assert!(
        line.starts_with("STATUS=2 agents: 0 due, 0 backing off, 0 held, 0 paused; last pass 20"),
        "{line:?}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE kind = 'poke' AND agent_id = 'quick'"),
        1
    );

    let pid = daemon.pid();
    daemon.signal(libc::SIGTERM);
    let rest = manager.until("STOPPING=1", PATIENCE);
    assert!(rest.last().unwrap().text.contains("STATUS=stopping"), "{rest:?}");
    daemon.stop().unwrap();
    assert!(
        watchdogs(&[&status[..], &rest[..]].concat()).is_empty(),
        "pinged without WATCHDOG_USEC"
    );
    assert!(
        manager.drain().is_empty(),
        "a notification after pid {pid} stopped"
    );
}

#[test]
fn the_loop_pings_the_watchdog_at_half_of_watchdog_usec_and_not_while_stopped() {
    let env = Env::new();
    must(&env.db, &["add", "a", "--base", "1h"]);
    let manager = Manager::bind(env.dir.path());
    let cadence = |usec: &str, pings: usize| {
        let daemon = Daemon::start_with_env(&env.db, &[], &[manager.env(), ("WATCHDOG_USEC", usec)]);
        let mut got = Vec::new();
        while watchdogs(&got).len() < pings {
            got.extend(manager.until("WATCHDOG=1", PATIENCE));
        }
        let times = watchdogs(&got);
        let span = *times.last().unwrap() - times[0];
        // The mean gap: one late ping (a busy machine) moves a single gap, not the mean.
        (daemon, span / u32::try_from(pings - 1).unwrap())
    };

    // 1 s asks for a ping every 500 ms: not the loop's 200 ms look at the database.
    let (slow, gap) = cadence("1000000", 6);
    assert!(
        (Duration::from_millis(450)..Duration::from_millis(700)).contains(&gap),
        "WATCHDOG_USEC=1000000: a ping every {gap:?}"
    );
    slow.stop().unwrap();
    manager.drain();

    // 100 ms asks for a ping every 50 ms: the sleep must wake for each, well before its next
    // 200 ms look at the database.
    let (mut daemon, gap) = cadence("100000", 21);
    assert!(
        (Duration::from_millis(45)..Duration::from_millis(140)).contains(&gap),
        "WATCHDOG_USEC=100000: a ping every {gap:?}"
    );

    // A stopped loop sends nothing (for 1.5 s, 15 times the interval): systemd would see the
    // silence and restart it.
    daemon.signal(libc::SIGSTOP);
    assert!(wait_for(PATIENCE, || process_state(daemon.pid()) == Some('T')));
    manager.drain();
    let silence = manager.next(Duration::from_millis(1500));
    daemon.signal(libc::SIGCONT);
    assert!(silence.is_none(), "a notification while stopped: {silence:?}");
    // And the pings come back when it goes on.
    manager.until("WATCHDOG=1", Duration::from_secs(2));
    daemon.stop().unwrap();
}

#[test]
fn commands_never_see_the_variables_systemd_meant_for_poked() {
    let env = Env::new();
    let dump = env.dir.path().join("env.txt");
    let script = format!("env > {}.tmp && mv {0}.tmp {0}", dump.display());
    must(&env.db, &["add", "a", "--base", "1h", "--", "sh", "-c", &script]);
    let manager = Manager::bind(env.dir.path());
    let daemon = Daemon::start_with_env(
        &env.db,
        &[],
        &[
            manager.env(),
            ("WATCHDOG_USEC", "30000000"),
            ("WATCHDOG_PID", "1"),
            ("LISTEN_FDS", "1"),
            ("LISTEN_PID", "1"),
            ("LISTEN_FDNAMES", "metrics"),
            ("POKED_TEST_INHERITED", "yes"),
        ],
    );
    let done = "SELECT count(*) FROM poke_log WHERE agent_id = 'a' AND outcome = 'ok'";
    assert!(
        wait_for(PATIENCE, || env.count(done) == 1),
        "{}",
        daemon.log_text()
    );
    daemon.stop().unwrap();
    let text = std::fs::read_to_string(&dump).unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, _)| n)
        .collect();
    for leaked in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    ] {
        assert!(!names.contains(&leaked), "the command saw {leaked}: {text}");
    }
    // The rest of the environment is inherited, and poked's own variables are added.
    for kept in ["POKED_TEST_INHERITED", "POKED_AGENT", "POKED_POKE_ID", "PATH"] {
        assert!(names.contains(&kept), "the command did not see {kept}: {text}");
    }
}

#[test]
fn bad_systemd_variables_are_a_warning_once_and_the_daemon_runs_on() {
    let env = Env::new();
    must(
        &env.db,
        &[
            "add", "beat", "--base", "200ms", "--max", "200ms", "--fresh", "0s",
        ],
    );
    // Runs a daemon with `vars` until it has poked five more times, and returns its log.
    let log_of_five_pokes = |vars: &[(&str, &str)]| {
        let pokes = || env.count("SELECT count(*) FROM poke_log WHERE kind = 'poke'");
        let daemon = Daemon::start_with_env(&env.db, &[], vars);
        let before = pokes();
        assert!(
            wait_for(PATIENCE, || pokes() >= before + 5),
            "{}",
            daemon.log_text()
        );
        let log = daemon.log_text();
        daemon.stop().unwrap();
        log
    };

    // WATCHDOG_USEC=abc: no watchdog, one warning, and everything else as usual.
    let manager = Manager::bind(env.dir.path());
    let log = log_of_five_pokes(&[manager.env(), ("WATCHDOG_USEC", "abc")]);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WATCHDOG_USEC")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("abc"),
        "{log}"
    );
    let got = manager.drain();
    assert!(got.iter().any(|m| m.text == "READY=1\n"), "{got:?}");
    assert!(
        watchdogs(&got).is_empty(),
        "pinged with WATCHDOG_USEC=abc: {got:?}"
    );

    // NOTIFY_SOCKET naming nothing, with pings due every 50 ms: one warning for them all.
    let nothing = env.dir.path().join("no-such.sock");
    let log = log_of_five_pokes(&[
        ("NOTIFY_SOCKET", nothing.to_str().unwrap()),
        ("WATCHDOG_USEC", "100000"),
    ]);
    let warnings = log
        .lines()
        .filter(|l| l.contains("cannot notify systemd"))
        .count();
    assert_eq!(warnings, 1, "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn the_unit_file_is_a_notify_service_with_a_watchdog() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/poked.service")).unwrap();
    let settings: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=%h/.cargo/bin/poked run",
    ] {
        assert!(settings.contains(&line), "no {line:?} in contrib/poked.service");
    }
    let watchdog = settings
        .iter()
        .find_map(|l| l.strip_prefix("WatchdogSec="))
        .expect("WatchdogSec=");
    assert!(
        humantime::parse_duration(watchdog).is_ok(),
        "WatchdogSec={watchdog}"
    );
    // systemd's own check, where it is installed, of the unit with this build's poked.
    // (Not installed by CI: a container has no use for systemd but this check.)
    let Some(verify) = which("systemd-analyze") else {
        eprintln!("skipped systemd-analyze verify: not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poked.service");
    let poked = assert_cmd::cargo::cargo_bin!("poked");
    std::fs::write(
        &path,
        unit.replace("%h/.cargo/bin/poked", poked.to_str().unwrap()),
    )
    .unwrap();
    let out = std::process::Command::new(verify)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{}: {stderr}",
        out.status
    );
}
