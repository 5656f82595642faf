//! Crashes: poked is killed on purpose, many times, and what it had acknowledged must still be
//! there, consistent, afterwards.
//!
//! - the kill -9 loop: a daemon and three writers SIGKILLed together at random moments, the
//!   file and every agent's log audited after every kill; and its negative control
//!   (`POKED_FAULT=split-transition`, debug builds only), which the same audit must catch;
//! - kills while long commands run: one poke in flight per agent, `interrupted` after the
//!   restart, no orphan process group, no poke sent again early; and a command whose process
//!   group the dead daemon never recorded, found by its poke id.
//!
//! The soak tier (tests/soak.rs) runs the same loops with bigger figures. Every test prints its
//! figures on stderr (`-- --nocapture`); a kill loop prints its random seed, and
//! `POKED_TEST_SEED=<seed>` replays its kill times.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Env, argv, must, must_words, poked, wait_for};
use crate::harness::{
    Auditor, CYCLE, Daemon, Guarded, KillGroupsOnDrop, PokeProcess, Rng, Writer, inspect, poke_processes,
    poked_check, scalar, sigkill, wait_exited,
};

// ---------------------------------------------------------------------------------------------
// The kill -9 loop and its negative control.
// ---------------------------------------------------------------------------------------------

/// The processes of one round, so the killer can SIGKILL every one of them at once. A writer
/// starts a command only while holding the lock and after checking `stop`, so no process can
/// slip in after the kill.
#[derive(Default)]
struct Registry {
    stop: bool,
    pids: HashSet<u32>,
}

/// How a kill loop went.
#[derive(Debug, Clone, Default)]
pub struct KillFigures {
    pub kills: usize,
    /// Writer commands killed before they answered.
    pub writers_killed: usize,
    /// Transitions acknowledged by the writers (their command exited 0).
    pub acknowledged: usize,
    /// Log rows replayed (the writers', the daemon's pokes and misses, the set-up).
    pub log_rows: i64,
    /// Daemon pokes in the log.
    pub daemon_pokes: i64,
    /// Pokes found `interrupted` (a daemon killed while their command ran).
    pub interrupted: i64,
    pub elapsed: Duration,
}

/// What a kill loop is asked to do.
pub struct KillLoop {
    pub kills: usize,
    /// Set `POKED_FAULT=split-transition` in every poked process (the negative control).
    pub fault: bool,
    /// Run `PRAGMA integrity_check` after every `integrity_every`-th kill (and the last).
    pub integrity_every: usize,
    /// Run `poked check` after every `check_every`-th kill (it takes a daemon restart first).
    pub check_every: usize,
}

/// The daemon plus three writers, SIGKILLed together at a random 5-150 ms, then audited.
/// Returns the figures, or the kill number and the breach the audit found.
pub fn kill_loop(spec: &KillLoop, name: &str) -> Result<KillFigures, (usize, String)> {
    let started = Instant::now();
    let env = Env::new();
    let db = env.db.clone();
    let mut rng = Rng::from_env(name);
    // Writer agents: poked by the daemon every 50 ms, never very stale (so the daemon records
    // no miss for them and every miss, activity and hand poke in their log is a writer's).
    let mut writers = Vec::new();
    for i in 0..3 {
        let agent = format!("w{i}");
        must_words(
            &db,
            &format!("add {agent} --base 50ms --max 1s --fresh 0s --very-stale 24h"),
        );
        must(&db, &["activity", &agent]);
        writers.push(Writer {
            agent,
            ..Writer::default()
        });
    }
    // Daemon-only agents: never active, so every poke after the first also records a miss;
    // `c0` runs a command, so kills leave pending pokes for the next daemon to recover.
    let daemon_only = "--base 100ms --max 400ms --fresh 0s --very-stale 0s";
    must_words(&db, &format!("add d0 --strategy exponential {daemon_only}"));
    must_words(&db, &format!("add c0 {daemon_only} -- true"));
    // A supervised agent: a probe (whose values are the pokes' echoes), a gate that skips
    // about one pass in three, and a ladder whose rungs fire in its one long streak, so skips,
    // escalations and seen values are in the mix the audit replays.
    must(
        &db,
        &[
            "add",
            "s0",
            "--base",
            "100ms",
            "--max",
            "400ms",
            "--fresh",
            "0s",
            "--very-stale",
            "0s",
            "--activity-cmd",
            "date +%s",
            "--only-if",
            "sh -c 'test $(( $(date +%N) % 3 )) -ne 0'",
            "--escalate",
            "2:true",
            "--escalate",
            "5:true",
            "--grace",
            "0s",
            "--",
            "true",
        ],
    );
    let mut auditor = Auditor::new(&db);
    let daemon_log = env.dir.path().join("daemon.log");
    let mut figures = KillFigures::default();

    for kill in 1..=spec.kills {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let mut daemon = {
            let mut reg = registry.lock().unwrap();
            let mut cmd = poked(&db);
            if spec.fault {
                cmd.env("POKED_FAULT", "split-transition");
            }
            let child = cmd
                .arg("run")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&daemon_log).unwrap())
                .spawn()
                .expect("start daemon");
            reg.pids.insert(child.id());
            child
        };
        let threads: Vec<_> = writers
            .iter()
            .cloned()
            .map(|mut w| {
                let registry = Arc::clone(&registry);
                let db = db.clone();
                let fault = spec.fault;
                std::thread::spawn(move || -> Result<Writer, String> {
                    loop {
                        let kind = CYCLE[w.acked % 3];
                        let child = {
                            let mut reg = registry.lock().unwrap();
                            if reg.stop {
                                return Ok(w);
                            }
                            let mut cmd = poked(&db);
                            if fault {
                                cmd.env("POKED_FAULT", "split-transition");
                            }
                            let child = cmd
                                .args([kind, &w.agent])
                                .stdout(Stdio::null())
                                .stderr(Stdio::piped())
                                .spawn()
                                .expect("start writer");
                            reg.pids.insert(child.id());
                            child
                        };
                        w.attempts += 1;
                        let pid = child.id();
                        wait_exited(pid);
                        registry.lock().unwrap().pids.remove(&pid);
                        let out = child.wait_with_output().expect("reap writer");
                        if out.status.success() {
                            w.acked += 1;
                        } else if out.status.code().is_none() {
                            w.killed += 1;
                        } else {
                            return Err(format!(
                                "poked {kind} {} failed without being killed: {}: {}",
                                w.agent,
                                out.status,
                                String::from_utf8_lossy(&out.stderr).trim()
                            ));
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.between(5, 150)));
        {
            let mut reg = registry.lock().unwrap();
            reg.stop = true;
            for &pid in &reg.pids {
                sigkill(pid);
            }
        }
        daemon.wait().expect("reap daemon");
        figures.kills += 1;
        for (slot, thread) in writers.iter_mut().zip(threads) {
            match thread.join().expect("writer thread") {
                Ok(w) => *slot = w,
                Err(e) => return Err((kill, e)),
            }
        }
        let check_integrity = kill % spec.integrity_every == 0 || kill == spec.kills;
        auditor.audit(&writers, check_integrity).map_err(|e| (kill, e))?;
        if kill % spec.check_every == 0 || kill == spec.kills {
            // A daemon that recovers and stops cleanly (SIGTERM, exit 0) leaves no poke
            // `pending` for `poked check` to report.
            Daemon::try_start(&db, &[])
                .and_then(Daemon::stop)
                .map_err(|e| (kill, e))?;
            poked_check(&db).map_err(|e| (kill, e))?;
            auditor.audit(&writers, false).map_err(|e| (kill, e))?;
        }
    }
    figures.writers_killed = writers.iter().map(|w| w.killed).sum();
    figures.acknowledged = writers.iter().map(|w| w.acked).sum();
    figures.log_rows = auditor.rows;
    figures.daemon_pokes = scalar(
        &db,
        "SELECT count(*) FROM poke_log WHERE kind = 'poke' AND detail IS NOT 'recorded by hand'",
    );
    figures.interrupted = scalar(&db, "SELECT count(*) FROM poke_log WHERE outcome = 'interrupted'");
    figures.elapsed = started.elapsed();
    Ok(figures)
}

#[test]
fn kill_9_loop_loses_nothing_acknowledged() {
    let f = kill_loop_without_fault(300, 1, 100, "kill_9_loop_loses_nothing_acknowledged");
    eprintln!("kill -9 loop: {f:?}, lost: 0");
    assert!(
        f.writers_killed > 0,
        "no kill hit a writer: the loop proves nothing"
    );
    assert!(
        f.daemon_pokes > 0,
        "the daemon never poked: the loop proves nothing"
    );
}

/// [`kill_loop`] without the fault: `kills` kills, `PRAGMA integrity_check` after every
/// `integrity_every`-th and `poked check` after every `check_every`-th. A breach fails the test.
pub fn kill_loop_without_fault(
    kills: usize,
    integrity_every: usize,
    check_every: usize,
    name: &str,
) -> KillFigures {
    let spec = KillLoop {
        kills,
        fault: false,
        integrity_every,
        check_every,
    };
    kill_loop(&spec, name).unwrap_or_else(|(kill, breach)| panic!("after kill {kill}: {breach}"))
}

/// The same loop with a fault that commits the agent row and its log row in two transactions
/// must find a breach, in every run: a crash test never seen to fail proves nothing.
#[test]
fn kill_9_loop_detects_a_split_transition() {
    negative_control(3, 100, "negative control");
}

/// The kill loop with `POKED_FAULT=split-transition`, `runs` times with up to `kills` kills
/// each: every run must report a breach. Skipped (with a line on stderr) in release builds,
/// which do not have the fault.
pub fn negative_control(runs: usize, kills: usize, name: &str) {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the split-transition fault exists only in debug builds");
        return;
    }
    let mut found_after = Vec::new();
    for run in 0..runs {
        let spec = KillLoop {
            kills,
            fault: true,
            integrity_every: kills,
            check_every: kills,
        };
        match kill_loop(&spec, &format!("{name} run {run}")) {
            Ok(f) => panic!(
                "{name} run {run}: the split-transition fault went unnoticed in {} kills: {f:?}",
                f.kills
            ),
            Err((kill, breach)) => {
                eprintln!("{name} run {run}: breach found after kill {kill}: {breach}");
                found_after.push(kill);
            }
        }
    }
    eprintln!("{name}: detected in {runs} of {runs} runs, after kills {found_after:?}");
}

// ---------------------------------------------------------------------------------------------
// Kills while long commands run.
// ---------------------------------------------------------------------------------------------

/// Agents with two of their commands (probe, gate, poke, escalation: each its own process
/// group) alive at once.
pub fn doubled_pokes(procs: &[PokeProcess]) -> Vec<String> {
    let mut by_agent: HashMap<&str, HashSet<(i32, i64)>> = HashMap::new();
    for p in procs {
        by_agent.entry(&p.agent).or_default().insert((p.pgid, p.poke_id));
    }
    let mut doubled: Vec<String> = by_agent
        .into_iter()
        .filter(|(_, commands)| commands.len() > 1)
        .map(|(agent, commands)| format!("{agent}: (process group, poke) {commands:?}"))
        .collect();
    doubled.sort();
    doubled
}

#[derive(Debug, Default)]
pub struct PokeKillFigures {
    pub kills: usize,
    /// Pokes in flight when their daemon was killed.
    pub in_flight_at_kill: usize,
    /// Of those, recorded `interrupted` after the restart.
    pub recorded_interrupted: usize,
    /// Process groups of pokes in flight still alive after their daemon's death (so that the
    /// restart has something to stop).
    pub groups_outliving_daemon: usize,
    /// Process groups of interrupted pokes stopped by the restarted daemon.
    pub groups_stopped: usize,
    /// Successive pokes of one agent, each found at least one wait after the one before.
    pub pokes_spaced: usize,
    /// Looks at /proc by the watcher thread, none of which saw two pokes of one agent alive.
    pub scans: usize,
    pub elapsed: Duration,
}

/// Kills the daemon `kills` times while its agents' long commands run; checks after every
/// kill that the commands outlived it, after every restart that the interrupted pokes are
/// recorded and their process groups are gone, all along (a thread watching /proc) that no
/// agent ever has two pokes' commands alive, and at the end that no agent was poked again
/// before its wait was over (a restart does not send an interrupted poke again).
pub fn kill_during_pokes(kills: usize, agents: usize, name: &str) -> Result<PokeKillFigures, String> {
    let started = Instant::now();
    let env = Env::new();
    let db = env.db.clone();
    let mut rng = Rng::from_env(name);
    for i in 0..agents {
        let agent = &format!("long-{i}");
        let add = format!("add {agent} --base 200ms --max 400ms --fresh 0s --very-stale 0s");
        let mut args: Vec<&str> = add.split_whitespace().collect();
        // Every other agent also has a slow probe and a slow gate, run before its poke: the
        // watcher sees that an agent never has two of its commands alive, across kills too.
        if i % 2 == 1 {
            args.extend([
                "--activity-cmd",
                "sh -c 'sleep 0.2; date +%s'",
                "--only-if",
                "sleep 0.2",
            ]);
        }
        args.extend(["--", "sh", "-c", "sleep 600 & sleep 600"]);
        must(&db, &args);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let scans = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, scans, db) = (Arc::clone(&stop), Arc::clone(&scans), db.clone());
        std::thread::spawn(move || -> Result<(), String> {
            while !stop.load(Ordering::SeqCst) {
                let doubled = doubled_pokes(&poke_processes(&db));
                if !doubled.is_empty() {
                    return Err(format!("two pokes in flight at once for {doubled:?}"));
                }
                scans.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        })
    };
    let _cleanup = KillGroupsOnDrop(db.clone());
    let mut figures = PokeKillFigures::default();
    let mut previous: Vec<(i64, i64)> = Vec::new(); // (log id, pgid) in flight at the last kill
    let result = (|| -> Result<(), String> {
        for kill in 1..=kills {
            let daemon = Daemon::try_start(&db, &["--command-timeout", "5s"])
                .map_err(|e| format!("kill {kill}: {e}"))?;
            // Recovery runs before the daemon records itself: the last kill's pokes are settled.
            for (log_id, pgid) in previous.drain(..) {
                let outcome: String = inspect(&db)
                    .query_row("SELECT outcome FROM poke_log WHERE id = ?1", [log_id], |r| {
                        r.get(0)
                    })
                    .map_err(|e| e.to_string())?;
                if outcome != "interrupted" {
                    return Err(format!(
                        "kill {kill}: poke {log_id} left in flight is {outcome:?}"
                    ));
                }
                figures.recorded_interrupted += 1;
                let gone = wait_for(Duration::from_secs(5), || {
                    poke_processes(&db).iter().all(|p| p.pgid != pgid as i32)
                });
                if !gone {
                    return Err(format!(
                        "kill {kill}: the process group {pgid} of interrupted poke {log_id} survived the restart"
                    ));
                }
                figures.groups_stopped += 1;
            }
            // Kill while at least one pending poke's command runs, at a random moment of the
            // pokes' lives.
            let pending = |db: &std::path::Path| -> Vec<i64> {
                let conn = inspect(db);
                let mut stmt = conn
                    .prepare("SELECT id FROM poke_log WHERE outcome = 'pending'")
                    .unwrap();
                stmt.query_map([], |r| r.get(0))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap()
            };
            let running = wait_for(Duration::from_secs(10), || {
                let pending = pending(&db);
                poke_processes(&db).iter().any(|p| pending.contains(&p.poke_id))
            });
            if !running {
                return Err(format!("kill {kill}: no poke started"));
            }
            std::thread::sleep(Duration::from_millis(rng.between(0, 300)));
            daemon.kill();
            figures.kills += 1;
            // A command's process group is its own: the daemon's death does not end it, and
            // the restarted daemon must. (A poke committed just before the kill may not have
            // started its command yet: it has no process, and nothing to stop.)
            let alive = poke_processes(&db);
            previous = pending(&db)
                .into_iter()
                .map(|id| {
                    let pgid = alive
                        .iter()
                        .find(|p| p.poke_id == id)
                        .map_or(0, |p| i64::from(p.pgid));
                    (id, pgid)
                })
                .collect();
            figures.in_flight_at_kill += previous.len();
            figures.groups_outliving_daemon += previous.iter().filter(|(_, pgid)| *pgid > 0).count();
            if previous.iter().all(|(_, pgid)| *pgid == 0) {
                return Err(format!(
                    "kill {kill}: no command of a pending poke outlived its daemon"
                ));
            }
        }
        // The second SIGTERM interrupts the commands in flight, so the stop is prompt.
        Daemon::try_start(&db, &[])?.stop_now()?;
        for (log_id, _) in &previous {
            let outcome: String = inspect(&db)
                .query_row("SELECT outcome FROM poke_log WHERE id = ?1", [log_id], |r| {
                    r.get(0)
                })
                .unwrap();
            if outcome != "interrupted" {
                return Err(format!("last kill: poke {log_id} left in flight is {outcome:?}"));
            }
            figures.recorded_interrupted += 1;
        }
        if !wait_for(Duration::from_secs(5), || poke_processes(&db).is_empty()) {
            return Err(format!("commands survived the end: {:?}", poke_processes(&db)));
        }
        // No agent is poked twice within one wait (jitter 0: the wait is the interval its poke
        // row records), least of all right after a restart recovered its interrupted poke.
        let conn = inspect(&db);
        let mut stmt = conn
            .prepare(
                "SELECT agent_id, id, at, interval_ms, lead(at) OVER (PARTITION BY agent_id ORDER BY id)
                 FROM poke_log WHERE kind = 'poke'",
            )
            .unwrap();
        let pokes: Vec<(String, i64, i64, i64, Option<i64>)> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for (agent, id, at, wait, next) in pokes {
            let Some(next) = next else { continue };
            if next < at + wait {
                return Err(format!(
                    "{agent} was poked again {} ms after poke {id}, before its wait of {wait} ms",
                    next - at
                ));
            }
            figures.pokes_spaced += 1;
        }
        poked_check(&db)
    })();
    stop.store(true, Ordering::SeqCst);
    let watched = watcher.join().expect("watcher thread");
    result?;
    watched?;
    figures.scans = scans.load(Ordering::SeqCst);
    figures.elapsed = started.elapsed();
    Ok(figures)
}

/// The 50 kills (the soak tier runs 50 with three agents). A restart is quick: start-up
/// recovery counts a group whose members have all exited as gone, without waiting for init to
/// reap their zombies.
#[test]
fn kills_during_pokes_leave_no_double_poke_and_no_orphan() {
    let f = kill_during_pokes(50, 2, "kills_during_pokes").unwrap_or_else(|e| panic!("{e}"));
    eprintln!("kill during a poke: {f:?}");
    assert_eq!(f.kills, 50);
    assert!(f.in_flight_at_kill >= 50, "{f:?}");
    assert_eq!(f.recorded_interrupted, f.in_flight_at_kill);
    assert!(f.groups_outliving_daemon >= 50, "{f:?}");
    assert!(f.pokes_spaced >= 50, "{f:?}");
}

#[test]
fn recovery_leaves_alone_a_process_that_only_shares_poked_db() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    must(&env.db, &["add", "a", "--base", "1h"]);
    // A shell that exports POKED_DB (and POKED_AGENT) so its hooks can run `poked activity`,
    // or a job started from it, in a process group of its own: not a command of poked's, and
    // a daemon starting up must leave it running (it once stopped it as a leftover probe).
    let mut shell_job = Guarded::new(
        Command::new("sleep")
            .arg("600")
            .env("POKED_DB", &env.db)
            .env("POKED_AGENT", "a")
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    must(&env.db, &["run", "--once"]);
    let alive = shell_job.running();
    drop(shell_job);
    assert!(
        alive,
        "a daemon starting up stopped a process that only had POKED_DB set"
    );
}

#[test]
fn recovery_finds_a_command_whose_group_was_never_recorded() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    must(&env.db, &["add", "a", "--base", "1h"]);
    // A daemon that died between starting a command and recording its process group leaves a
    // pending poke with no pgid, and a live command that carries the poke in its environment.
    let conn = env.sql();
    conn.execute_batch(
        "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, outcome)
         VALUES ('a', 0, 'poke', 3600000, 0, 'pending')",
    )
    .unwrap();
    let poke_id = conn.last_insert_rowid();
    drop(conn);
    let mut orphan = Command::new("sleep")
        .arg("600")
        .env("POKED_POKE_ID", poke_id.to_string())
        .env("POKED_DB", &env.db)
        .process_group(0)
        .spawn()
        .unwrap();
    // An unrelated process with another poke id must be left alone.
    let mut bystander = Command::new("sleep")
        .arg("600")
        .env("POKED_POKE_ID", (poke_id + 1000).to_string())
        .env("POKED_DB", &env.db)
        .process_group(0)
        .spawn()
        .unwrap();
    // Something the command started to outlive it, in a session of its own (a tmux server,
    // say): never poked's to stop, whatever its environment says.
    let mut detached = Command::new("setsid")
        .args(["sleep", "600"])
        .env("POKED_POKE_ID", poke_id.to_string())
        .env("POKED_DB", &env.db)
        .spawn()
        .unwrap();
    must(&env.db, &["run", "--once"]);
    let stopped = wait_for(Duration::from_secs(5), || orphan.try_wait().unwrap().is_some());
    let bystander_alive = bystander.try_wait().unwrap().is_none();
    let detached_alive = detached.try_wait().unwrap().is_none();
    for child in [&mut orphan, &mut bystander, &mut detached] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(stopped, "the interrupted poke's command survived recovery");
    assert!(bystander_alive, "recovery stopped a process of another poke");
    assert!(
        detached_alive,
        "recovery stopped a process in a session of its own"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE outcome = 'interrupted'"),
        1
    );
}

#[test]
fn an_escalation_in_flight_at_a_crash_is_interrupted_and_not_run_again_in_its_streak() {
    let env = Env::new();
    let db = env.db.clone();
    let _cleanup = KillGroupsOnDrop(db.clone());
    let fired = env.dir.path().join("fired");
    let rung = format!("1:sh -c 'echo x >> {}; sleep 600'", fired.display());
    let words = "add w --base 100ms --max 200ms --fresh 0s --very-stale 0s --grace 0s --escalate";
    must(&db, &argv(words, &[&rung]));
    let daemon = Daemon::start(&db, &[]);
    // The first miss fires rung 1, whose command then runs for ten minutes.
    let escalation_running = || {
        scalar(
            &db,
            "SELECT count(*) FROM poke_log WHERE kind = 'escalation' AND outcome = 'pending'",
        ) == 1
            && poke_processes(&db).iter().any(|p| p.agent == "w")
    };
    assert!(
        wait_for(Duration::from_secs(10), escalation_running),
        "{}",
        daemon.log_text()
    );
    daemon.kill();
    assert!(wait_for(Duration::from_secs(5), || std::fs::read_to_string(
        &fired
    )
    .is_ok_and(|t| t == "x\n")));
    // The restart records it interrupted, stops its command, and the streak goes on past the
    // rung without running it again.
    let daemon = Daemon::start(&db, &[]);
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM poke_log WHERE kind = 'escalation' AND outcome = 'interrupted'"
        ),
        1
    );
    assert!(
        wait_for(Duration::from_secs(10), || scalar(
            &db,
            "SELECT consecutive_misses FROM agents"
        ) >= 3),
        "{}",
        daemon.log_text()
    );
    assert!(
        wait_for(Duration::from_secs(5), || poke_processes(&db).is_empty()),
        "the rung's command survived"
    );
    daemon.stop().unwrap();
    assert_eq!(
        std::fs::read_to_string(&fired).unwrap(),
        "x\n",
        "the rung ran again in its streak"
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM poke_log WHERE kind = 'escalation'"),
        1
    );
}
