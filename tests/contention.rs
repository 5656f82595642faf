//! Contention: many processes writing at once queue for the lock instead of failing, and no
//! update is lost, on a busy database and on one that does not exist yet.
//!
//! The soak tier (tests/soak.rs) runs the same scenarios with bigger figures.

use std::os::unix::ffi::OsStrExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, must, must_words, poked, poked_under, wait_for};
use crate::harness::{Daemon, Guarded, inspect, integrity, poked_check, recorded_daemon, scalar};

#[derive(Debug, Default)]
pub struct ContentionFigures {
    pub processes: usize,
    pub transitions: usize,
    pub failures: usize,
    pub daemon_pokes: i64,
    /// Pokes of the busy agents committed between the writers' first and last miss.
    pub pokes_during_writes: i64,
    pub elapsed: Duration,
}

/// The daemon (busy poking 20 agents every 100 ms) plus `processes` processes recording
/// `each` misses on the same agent: every command must succeed (no "database is locked" or
/// "busy" reaches a user) and no update may be lost: the agent's miss count is the exact total,
/// and the log's miss rows count 1, 2, 3, ... in commit order. The daemon's pokes committed
/// while the writers wrote are counted, to show it competed for the lock all along.
pub fn contention(processes: usize, each: usize) -> Result<ContentionFigures, String> {
    let started = Instant::now();
    let env = Env::new();
    let db = env.db.clone();
    for i in 0..20 {
        must_words(
            &db,
            &format!("add busy-{i:02} --base 100ms --max 200ms --fresh 0s --very-stale 0s"),
        );
    }
    // Never very stale: every miss of `target` is a writer's; the daemon only pokes it.
    must_words(
        &db,
        "add target --base 100ms --max 1h --strategy fixed --fresh 0s --very-stale 24h",
    );
    must(&db, &["activity", "target"]);
    let daemon = Daemon::try_start(&db, &[])?;
    let writers: Vec<_> = (0..processes)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for _ in 0..each {
                    let out = poked(&db).args(["miss", "target"]).output().unwrap();
                    if !out.status.success() {
                        failures.push(String::from_utf8_lossy(&out.stderr).trim().to_owned());
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let stopped = daemon.stop();
    if !failures.is_empty() {
        return Err(format!(
            "{} of the writers' commands failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        ));
    }
    stopped?;
    let total = processes * each;
    let conn = inspect(&db);
    let misses: i64 = conn
        .query_row(
            "SELECT consecutive_misses FROM agents WHERE id = 'target'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let logged: Vec<i64> = conn
        .prepare(
            "SELECT consecutive_misses FROM poke_log WHERE agent_id = 'target' AND kind = 'miss' ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let expected: Vec<i64> = (1..=total as i64).collect();
    if misses != total as i64 || logged != expected {
        return Err(format!(
            "lost updates: {total} misses acknowledged, the agent counts {misses}, the log has {} rows",
            logged.len()
        ));
    }
    integrity(&conn)?;
    poked_check(&db)?;
    Ok(ContentionFigures {
        processes,
        transitions: total,
        failures: 0,
        daemon_pokes: scalar(&db, "SELECT count(*) FROM poke_log WHERE kind = 'poke'"),
        pokes_during_writes: scalar(
            &db,
            "SELECT count(*) FROM poke_log WHERE kind = 'poke' AND agent_id LIKE 'busy-%'
             AND id BETWEEN (SELECT min(id) FROM poke_log WHERE agent_id = 'target' AND kind = 'miss')
                        AND (SELECT max(id) FROM poke_log WHERE agent_id = 'target' AND kind = 'miss')",
        ),
        elapsed: started.elapsed(),
    })
}

/// A database that does not exist yet, created at the same instant by the daemon and four
/// CLIs, `rounds` times: every process must succeed, and the file must be a sound poked
/// database with the four agents. Returns the number of failed processes (none).
pub fn simultaneous_creation(rounds: usize) -> Result<Duration, String> {
    let started = Instant::now();
    let env = Env::new();
    for round in 0..rounds {
        let db = env.dir.path().join(format!("new-{round}/poked.db"));
        // Everyone waits at one gate, a FIFO: each shell blocks reading it, and once all five
        // are there the test writes five lines, one per process, so they start together.
        let gate = env.dir.path().join(format!("gate-{round}"));
        let path = std::ffi::CString::new(gate.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
        // Opened read-write, so neither side blocks in open and late readers still find a line.
        let mut gate_fd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&gate)
            .unwrap();
        // The shell waits at the gate, then becomes `poked ARGS`.
        let sh = |args: &[&str]| {
            let gate = gate.to_str().unwrap();
            poked_under(&["sh", "-c", "read _ < \"$0\"; exec \"$@\"", gate], &db)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn sh")
        };
        let daemon = Guarded::new(sh(&["run"]));
        let clis: Vec<Child> = (0..4)
            .map(|i| sh(&["add", &format!("agent-{i}"), "--base", "1h"]))
            .collect();
        let pids: Vec<u32> = clis.iter().map(Child::id).chain([daemon.id()]).collect();
        let at_gate = |pid: u32| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|fds| {
                    fds.flatten()
                        .any(|fd| std::fs::read_link(fd.path()).ok().as_deref() == Some(&gate))
                })
                .unwrap_or(false)
        };
        assert!(
            wait_for(Duration::from_secs(10), || pids.iter().all(|&pid| at_gate(pid))),
            "the processes did not reach the gate"
        );
        use std::io::Write;
        gate_fd.write_all(b"go\ngo\ngo\ngo\ngo\n").unwrap();
        let mut failures = Vec::new();
        for cli in clis {
            let out = cli.wait_with_output().unwrap();
            if !out.status.success() {
                failures.push(String::from_utf8_lossy(&out.stderr).trim().to_owned());
            }
        }
        let pid = i64::from(daemon.id());
        let up = wait_for(Duration::from_secs(20), || recorded_daemon(&db) == Some(pid));
        // SAFETY: SIGTERM to our own unreaped child (the shell exec'd poked).
        unsafe { libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM) };
        let out = daemon.take().wait_with_output().unwrap();
        drop(gate_fd);
        if !up || !out.status.success() {
            failures.push(format!(
                "daemon ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        if !failures.is_empty() {
            return Err(format!("round {round}: {failures:?}"));
        }
        let agents = scalar(&db, "SELECT count(*) FROM agents");
        if agents != 4 {
            return Err(format!("round {round}: {agents} agents instead of 4"));
        }
        poked_check(&db).map_err(|e| format!("round {round}: {e}"))?;
    }
    Ok(started.elapsed())
}

#[test]
fn eight_processes_on_one_agent_lose_no_update() {
    let f = contention(8, 100).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "contention: {} misses from {} processes, {} failures, miss count exact; {} daemon pokes, \
         {} of them during the writes; {:?}",
        f.transitions, f.processes, f.failures, f.daemon_pokes, f.pokes_during_writes, f.elapsed
    );
    assert_eq!((f.processes, f.transitions, f.failures), (8, 800, 0));
    // Twenty busy agents due every 100-200 ms, for the second or more the writes take: each
    // is poked at least once while the writers write, or the daemon was not competing.
    assert!(f.pokes_during_writes >= 20, "the daemon was idle: {f:?}");
}

#[test]
fn five_processes_creating_one_database_at_once_all_succeed() {
    let took = simultaneous_creation(20).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("simultaneous creation: 20 rounds of 5 processes, 0 failures, {took:?}");
}
