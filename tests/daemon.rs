//! The daemon's life through the real binary: pokes, waking on changes, one instance per
//! database, signals, command hygiene, its status record, heartbeat files, `--retain`. (Its
//! crashes are in crashes.rs, concurrent writers in contention.rs.)

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Env, argv, assert_error, is_root, must, poked, wait_for};
use crate::harness::{Daemon, poked_through_bind_mount};

fn pokes(env: &Env, agent: &str) -> i64 {
    env.sql()
        .query_row(
            "SELECT count(*) FROM poke_log WHERE kind = 'poke' AND agent_id = ?1",
            [agent],
            |r| r.get(0),
        )
        .unwrap()
}

/// Waits for the daemon to exit, and it must exit 0.
fn exits_cleanly(daemon: &mut Daemon) {
    assert_eq!(
        daemon.exit_within(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0),
        "{}",
        daemon.log_text()
    );
}

/// A daemon whose one agent's command (`command`) is running.
fn poke_in_flight(env: &Env, command: &[&str]) -> Daemon {
    add(env, &[&["agent", "--base", "1h", "--"][..], command].concat());
    let daemon = Daemon::start(&env.db, &[]);
    let pending = "SELECT count(*) FROM poke_log WHERE outcome = 'pending'";
    assert!(wait_for(Duration::from_secs(10), || env.count(pending) == 1));
    daemon
}

fn add(env: &Env, args: &[&str]) {
    let out = env.cmd().arg("add").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "add {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pokes_new_agents_within_a_second_and_honours_hand_edits() {
    let env = Env::new();
    add(&env, &["far", "--base", "1h"]);
    let mut daemon = Daemon::start(&env.db, &[]);
    // The daemon records its pass (`last_pass_at`) once the pass's pokes are committed, and
    // then sleeps until `far` is due in an hour; a new agent must wake it.
    assert!(
        wait_for(Duration::from_secs(10), || pokes(&env, "far") == 1
            && env.count(
                "SELECT count(*) FROM daemon WHERE last_pass_at IS NOT NULL"
            ) == 1),
        "first poke"
    );
    let added = Instant::now();
    add(&env, &["new", "--base", "1h"]);
    assert!(
        wait_for(Duration::from_secs(10), || pokes(&env, "new") == 1),
        "new agent not poked"
    );
    let took = added.elapsed();
    assert!(took < Duration::from_millis(1500), "woke after {took:?}");

    // A pause by hand in SQL (as in the sqlite3 shell) is honoured without a signal. `beat`,
    // poked every 200 ms, shows the daemon's passes going on meanwhile.
    add(
        &env,
        &["soon", "--base", "1s", "--fresh", "0s", "--very-stale", "0s"],
    );
    add(
        &env,
        &["beat", "--base", "200ms", "--max", "200ms", "--fresh", "0s"],
    );
    assert!(wait_for(Duration::from_secs(10), || pokes(&env, "soon") >= 1));
    env.sql()
        .execute_batch("UPDATE agents SET paused = 1 WHERE id = 'soon'")
        .unwrap();
    // A pass that read `soon` as due before the edit may still poke it. Of two pokes of
    // `beat` after the edit, the second's pass began after the first was committed.
    let edited = env.count("SELECT max(id) FROM poke_log");
    let beats_after = |row: i64| {
        env.count(&format!(
            "SELECT count(*) FROM poke_log WHERE agent_id = 'beat' AND kind = 'poke' AND id > {row}"
        ))
    };
    assert!(
        wait_for(Duration::from_secs(10), || beats_after(edited) >= 2),
        "the daemon stopped poking"
    );
    let paused_at = pokes(&env, "soon");
    // Then passes go on until `soon` would have come due twice more.
    let due_twice = env.count("SELECT last_poke_at + 2 * wait_ms FROM agents WHERE id = 'soon'");
    let beat_since = format!(
        "SELECT count(*) FROM poke_log WHERE agent_id = 'beat' AND kind = 'poke' AND at >= {due_twice}"
    );
    assert!(
        wait_for(Duration::from_secs(20), || env.count(&beat_since) >= 1),
        "the daemon stopped poking"
    );
    assert_eq!(pokes(&env, "soon"), paused_at, "a paused agent was poked");
    assert_eq!(pokes(&env, "far"), 1, "poked twice within one wait");

    daemon.signal(libc::SIGTERM);
    exits_cleanly(&mut daemon);
    assert!(env.count("SELECT count(*) FROM daemon WHERE stopped_at IS NOT NULL") == 1);
}

#[test]
fn a_second_daemon_is_refused_naming_the_first() {
    let env = Env::new();
    add(&env, &["a", "--base", "1h"]);
    let daemon = Daemon::start(&env.db, &[]);
    let out = env.cmd().arg("run").output().unwrap();
    crate::common::assert_error(&out, 1, &format!("pid {}", daemon.pid()));
    let out = env.cmd().args(["run", "--once"]).output().unwrap();
    crate::common::assert_error(&out, 1, "already runs");
}

#[test]
fn sigterm_waits_for_pokes_in_flight_and_leaves_none_pending() {
    let env = Env::new();
    let mut daemon = poke_in_flight(&env, &["sleep", "1"]);
    daemon.signal(libc::SIGTERM);
    exits_cleanly(&mut daemon);
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE outcome = 'pending'"),
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE outcome = 'ok'"),
        1,
        "the poke in flight was not recorded"
    );
}

#[test]
fn a_second_sigint_interrupts_commands_in_flight() {
    let env = Env::new();
    let mut daemon = poke_in_flight(&env, &["sleep", "600"]);
    daemon.signal(libc::SIGINT);
    // The daemon has heard the signal, ended its loop, and waits for the command.
    assert!(
        daemon.wait_for_log("waiting for the commands in flight", 1, Duration::from_secs(10)),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.running(), "one SIGINT must wait for the command");
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE outcome = 'pending'"),
        1
    );
    daemon.signal(libc::SIGINT);
    exits_cleanly(&mut daemon);
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE outcome = 'interrupted'"),
        1
    );
}

#[test]
fn command_timeout_kills_the_whole_group_and_caps_output() {
    let env = Env::new();
    let pidfile = env.dir.path().join("group.pid");
    let script = format!("echo $$ > {}; sleep 600 & sleep 600", pidfile.display());
    add(&env, &["hang", "--base", "1h", "--", "sh", "-c", &script]);
    add(
        &env,
        &argv("chatty --base 1h -- sh -c", &["yes 'error: too much' >&2"]),
    );
    let started = Instant::now();
    let out = env
        .cmd()
        .args(["run", "--once", "--command-timeout", "1s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    let pgid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || unsafe { libc::kill(-pgid, 0) } != 0),
        "a process of the timed-out command survived"
    );
    let (outcome, detail_len): (String, i64) =
        env.row("SELECT outcome, length(detail) FROM poke_log WHERE agent_id = 'chatty' AND kind = 'poke'");
    assert_eq!(outcome, "timeout");
    assert!(
        (10..=1200).contains(&detail_len),
        "stderr kept: {detail_len} characters"
    );
}

#[test]
fn status_record_and_heartbeat_files() {
    use poked::clock::{Clock, SystemClock};
    let env = Env::new();
    let hb = env.dir.path().join("hb");
    std::fs::write(&hb, b"").unwrap();
    let words = "watched --base 1s --fresh 1s --very-stale 2s --heartbeat-file";
    add(&env, &argv(words, &[hb.to_str().unwrap()]));
    add(&env, &["tick", "--base", "1s", "--max", "1s", "--fresh", "0s"]);
    let launched = SystemClock.now();
    let daemon = Daemon::start(&env.db, &[]);
    // The heartbeat file's modification time counts as activity when the agent comes due.
    let touch = || {
        let f = std::fs::File::options().write(true).open(&hb).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000))
            .unwrap();
    };
    touch();
    assert!(
        wait_for(Duration::from_secs(10), || env
            .count("SELECT count(*) FROM poke_log WHERE kind = 'activity'")
            >= 1),
        "{}",
        daemon.log_text()
    );
    // A modification time in the future counts as now: the agent is fresh, not fresh forever.
    let last: i64 = env.value("SELECT last_activity_at FROM agents");
    assert!(last < 4_000_000_000_000, "a future mtime was stored as is");

    // The daemon's record of itself, as `poked status --json` shows it: this pid, running,
    // started after the test launched it, a pass since.
    let record = || -> serde_json::Value {
        let out = env.cmd().args(["status", "--json"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["daemon"].clone()
    };
    let time = |value: &serde_json::Value| -> i64 {
        let text = value.as_str().unwrap_or_else(|| panic!("not a time: {value}"));
        poked::units::parse_rfc3339(text).unwrap()
    };
    let running = record();
    assert_eq!(running["running"], true, "{running}");
    assert_eq!(running["pid"], daemon.pid(), "{running}");
    assert!(running["stopped_at"].is_null(), "{running}");
    let (started, last_pass) = (time(&running["started_at"]), time(&running["last_pass_at"]));
    assert!(
        launched <= started && started <= last_pass && last_pass <= SystemClock.now(),
        "{running}"
    );
    // The last pass moves on with the pokes (`tick` is due every second).
    let passed_since = format!("SELECT count(*) FROM daemon WHERE last_pass_at > {last_pass}");
    assert!(
        wait_for(Duration::from_secs(10), || env.count(&passed_since) == 1),
        "{}",
        daemon.log_text()
    );
    let later = record();
    assert_eq!(later["running"], true, "{later}");
    assert!(time(&later["last_pass_at"]) > last_pass, "{later}");
    // Stopped: the record says so, and when.
    daemon.stop().unwrap();
    let stopped = record();
    assert_eq!(stopped["running"], false, "{stopped}");
    assert_eq!(stopped["pid"], running["pid"], "{stopped}");
    assert_eq!(stopped["started_at"], running["started_at"], "{stopped}");
    assert!(
        time(&stopped["stopped_at"]) >= time(&stopped["last_pass_at"]),
        "{stopped}"
    );
}

#[test]
fn a_command_slower_than_its_wait_does_not_make_the_daemon_spin() {
    let env = Env::new();
    add(
        &env,
        &argv("slow --base 200ms --fresh 0s --very-stale 0s -- sleep 3", &[]),
    );
    let daemon = Daemon::start(&env.db, &[]);
    assert!(wait_for(Duration::from_secs(5), || env
        .count("SELECT count(*) FROM poke_log WHERE outcome = 'pending'")
        == 1));
    let ticks = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.pid())).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let (poke, at): (i64, i64) = env.row("SELECT id, at FROM poke_log WHERE outcome = 'pending'");
    let before = ticks();
    // The window ends when the command's outcome lands on its row, three seconds on.
    let finished = format!("SELECT count(*) FROM poke_log WHERE id = {poke} AND outcome = 'ok'");
    assert!(
        wait_for(Duration::from_secs(20), || env.count(&finished) == 1),
        "the command's outcome was not recorded"
    );
    let used = ticks() - before;
    let ran = env.count(&format!("SELECT duration_ms FROM poke_log WHERE id = {poke}"));
    assert!(ran >= 3000, "the command ran only {ran} ms");
    // Clock ticks are 10 ms: a spinning loop would use about 300 in three seconds.
    assert!(
        used < 50,
        "the daemon used {used} ticks in {ran} ms while a command ran"
    );
    // Every later poke began after the command had ended.
    let early = env.count(&format!(
        "SELECT count(*) FROM poke_log WHERE agent_id = 'slow' AND kind = 'poke' AND id > {poke}
         AND at < {at} + {ran}"
    ));
    assert_eq!(early, 0, "poked again while its poke was in flight");
}

/// Makes a trigger write each `last_pass_at` the daemon records into a table `passes` (`at`).
fn count_pass_records(env: &Env) {
    env.sql()
        .execute_batch(
            "CREATE TABLE passes (at INTEGER);
             CREATE TRIGGER count_passes AFTER UPDATE OF last_pass_at ON daemon
             BEGIN INSERT INTO passes VALUES (new.last_pass_at); END;",
        )
        .unwrap();
}

#[test]
fn a_pass_with_nothing_to_do_commits_nothing() {
    // Every pass wakes the daemon's change watcher, its own commits included, so a pass that
    // recorded its time whatever it did woke the next one: the daemon went on committing (and
    // flushing) its `last_pass_at` in a loop after every poke. A trigger counts those records.
    let env = Env::new();
    add(&env, &argv("slow --base 1h -- sleep 2", &[]));
    count_pass_records(&env);
    let daemon = Daemon::start(&env.db, &[]);
    let pending = "SELECT count(*) FROM poke_log WHERE outcome = 'pending'";
    assert!(wait_for(Duration::from_secs(10), || env.count(pending) == 1));
    let before = env.count("SELECT count(*) FROM passes");
    assert!(
        before >= 1,
        "the pass that poked recorded no pass time: the trigger counts nothing"
    );
    // The window ends when the command's outcome lands on its row, two seconds on.
    let ok = "SELECT count(*) FROM poke_log WHERE kind = 'poke' AND outcome = 'ok'";
    assert!(wait_for(Duration::from_secs(20), || env.count(ok) == 1));
    let during = env.count("SELECT count(*) FROM passes") - before;
    // At most the pass that recorded the outcome, and the first pass's refresh of an idle
    // daemon's record if it came after the poke was seen.
    assert!(
        during <= 2,
        "the daemon recorded {during} passes while nothing but one command happened\n{}",
        daemon.log_text()
    );
}

#[test]
fn a_busy_daemon_records_its_pass_time_about_once_a_second() {
    // The `daemon` row is a page of its own: written by every pass, it was about a tenth of
    // what each commit of a busy daemon flushed, for a time `status` shows to the second.
    let env = Env::new();
    add(
        &env,
        &["fast", "--base", "10ms", "--max", "10ms", "--fresh", "0s"],
    );
    count_pass_records(&env);
    let _daemon = Daemon::start(&env.db, &[]);
    // Three seconds of pokes, by the log's own times.
    let first = "SELECT min(at) FROM poke_log WHERE agent_id = 'fast' AND kind = 'poke'";
    let span = format!(
        "SELECT coalesce(max(at) - ({first}), 0) FROM poke_log WHERE agent_id = 'fast' AND kind = 'poke'"
    );
    assert!(wait_for(Duration::from_secs(30), || env.count(&span) >= 3000));
    let start = env.count(first);
    let window = |table: &str| {
        env.count(&format!(
            "SELECT count(*) FROM {table} WHERE at >= {start} AND at < {start} + 3000"
        ))
    };
    let (rows, passes) = (window("poke_log"), window("passes"));
    assert!(rows >= 30, "only {rows} log rows in three seconds");
    // One a second, and the first pass's.
    assert!(
        passes <= 4,
        "{passes} pass times recorded in three seconds of {rows} log rows"
    );
}

#[test]
fn retain_prunes_old_log_rows_but_keeps_each_agents_newest() {
    let env = Env::new();
    let three_hours_ago =
        poked::units::format_time(poked::units::parse_rfc3339(&chrono_now()).unwrap() - 3 * 3_600_000);
    for args in [
        &["add", "old", "--base", "1h", "--max", "2h"][..],
        &["miss", "old"],
        &["miss", "old"],
    ] {
        env.ok(&three_hours_ago, args);
    }
    env.ok(&three_hours_ago, &["add", "gone", "--base", "1h"]);
    env.ok(&three_hours_ago, &["rm", "gone"]);
    assert_eq!(env.count("SELECT count(*) FROM poke_log"), 5);
    let _daemon = Daemon::start(&env.db, &["--retain", "1h"]);
    // `old` is overdue, so it gets a new poke (and miss); every row from three hours ago then
    // goes, except `gone`'s newest (its `removed` row), which is evidence of its end.
    assert!(
        wait_for(Duration::from_secs(5), || env.count(&format!(
            "SELECT count(*) FROM poke_log WHERE at <= {}",
            poked::units::parse_rfc3339(&three_hours_ago).unwrap()
        )) == 1),
        "old rows were not pruned"
    );
    let kept: String = env.value("SELECT kind FROM poke_log WHERE agent_id = 'gone'");
    assert_eq!(kept, "removed");
    assert!(pokes(&env, "old") >= 1);
}

/// The current wall-clock time as RFC 3339: the daemon under test runs on the real clock.
#[allow(clippy::disallowed_methods)]
fn chrono_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    poked::units::format_time(now.as_millis() as i64)
}

// Defects a review found (issue 9), each pinned by a test written before its fix.

/// `poked run --db PATH` with no fixed time, its stderr kept.
fn run_at(env: &Env, db: &Path, cwd: &Path, args: &[&str]) -> std::process::Output {
    poked(db)
        .current_dir(cwd)
        .env_remove("POKED_DB")
        .arg("--db")
        .arg(db)
        .arg("run")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run poked for {}: {e}", env.db.display()))
}

#[test]
fn one_daemon_per_file_whatever_path_reaches_it() {
    let env = Env::new();
    let started = env.dir.path().join("started");
    let script = format!("touch {}; sleep 3", started.display());
    must(&env.db, &["add", "slow", "--", "sh", "-c", &script]);
    let first = Daemon::start(&env.db, &[]);
    assert!(
        wait_for(Duration::from_secs(10), || started.exists()),
        "the first daemon's poke did not start: {}",
        first.log_text()
    );
    let pid = first.pid().to_string();
    let dir = env.dir.path();
    let link = dir.join("link.db");
    std::os::unix::fs::symlink(&env.db, &link).unwrap();
    let hard = dir.join("hard.db");
    std::fs::hard_link(&env.db, &hard).unwrap();
    let relative = Path::new("poked.db");
    for (what, db) in [
        ("a symlink", link.as_path()),
        ("a relative path", relative),
        ("a hard link", &hard),
    ] {
        let out = run_at(&env, db, dir, &["--once"]);
        assert_error(&out, 1, &pid);
        assert_eq!(
            env.count("SELECT count(*) FROM poke_log WHERE outcome = 'interrupted'"),
            0,
            "a second daemon through {what} touched the first one's poke"
        );
    }
    // A bind mount reaches the same file through another mount point (needs root).
    if is_root() {
        let mount = dir.join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let out = poked_through_bind_mount(dir, &mount, "", "run --once", &[]);
        assert_error(&out, 1, &pid);
    } else {
        eprintln!("not root: the bind-mount case is not tried");
    }
    // The first daemon still records its poke's outcome.
    assert!(
        wait_for(Duration::from_secs(15), || env.count(
            "SELECT count(*) FROM poke_log WHERE kind = 'poke' AND outcome = 'ok'"
        ) == 1),
        "the first daemon's poke did not record its outcome: {}",
        first.log_text()
    );
}

/// Twenty agents whose command records its start and then sleeps; a signal after the first
/// commands start must stop the pass: no more pokes committed, no command started.
fn signal_mid_pass(args: &[&str], signals: usize) {
    let env = Env::new();
    let starts = env.dir.path().join("starts");
    std::fs::create_dir(&starts).unwrap();
    for i in 0..20 {
        let script = format!("touch {}/$POKED_AGENT; sleep 2", starts.display());
        must(&env.db, &["add", &format!("a{i:02}"), "--", "sh", "-c", &script]);
    }
    let args = [args, &["--concurrency", "2"]].concat();
    let mut daemon = Daemon::spawn(&env.db, &args, &[], env.dir.path()).unwrap();
    let started = || std::fs::read_dir(&starts).unwrap().count();
    assert!(wait_for(Duration::from_secs(10), || started() >= 1));
    match signals {
        1 => daemon.signal(libc::SIGTERM),
        _ => daemon.signal_twice(libc::SIGTERM),
    }
    let status = daemon.exit_within(Duration::from_secs(20));
    let stderr = daemon.log_text();
    assert!(status.is_some(), "poked run {args:?} did not stop: {stderr}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");
    let pokes = env.count("SELECT count(*) FROM poke_log WHERE kind = 'poke'");
    assert!(
        pokes <= 2,
        "{pokes} pokes committed after the signal (concurrency 2): {stderr}"
    );
    assert_eq!(
        pokes as usize,
        started(),
        "every committed poke's command ran, and no other: {stderr}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE outcome = 'pending'"),
        0,
        "in-flight pokes are recorded"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM agents WHERE last_poke_at IS NOT NULL"),
        pokes,
        "an agent whose poke was not sent kept its schedule"
    );
}

#[test]
fn sigterm_in_the_middle_of_a_once_pass_starts_nothing_more() {
    signal_mid_pass(&["--once"], 1);
}

#[test]
fn sigterm_in_the_middle_of_a_daemon_pass_starts_nothing_more() {
    signal_mid_pass(&[], 1);
}

#[test]
fn two_signals_in_the_middle_of_a_pass_commit_no_poke_that_never_ran() {
    signal_mid_pass(&["--once"], 2);
}

#[test]
fn an_outcome_that_cannot_be_written_for_a_while_is_retried_until_recorded() {
    let env = Env::new();
    let ran = env.dir.path().join("ran");
    let script = format!("echo x >> {}", ran.display());
    add(
        &env,
        &argv("w --base 1s --fresh 0s --very-stale 0s -- sh -c", &[&script]),
    );
    // A trigger that refuses outcome updates while `hold_outcomes` has a row.
    env.sql()
        .execute_batch(
            "CREATE TABLE hold_outcomes (x); INSERT INTO hold_outcomes VALUES (1);
             CREATE TRIGGER hold BEFORE UPDATE OF outcome ON poke_log
             WHEN EXISTS (SELECT 1 FROM hold_outcomes)
             BEGIN SELECT RAISE(ABORT, 'outcomes held by the test'); END;",
        )
        .unwrap();
    let daemon = Daemon::start(&env.db, &[]);
    assert!(wait_for(Duration::from_secs(10), || ran.exists()));
    // The outcome cannot be written: the daemon says so (once) and keeps trying. (Waiting for
    // just "outcome" would be met by the line every finished command logs.)
    let refused = "cannot record a command's outcome yet";
    assert!(
        daemon.wait_for_log(refused, 1, Duration::from_secs(10)),
        "{}",
        daemon.log_text()
    );
    env.sql().execute_batch("DELETE FROM hold_outcomes").unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || env.count(
            "SELECT count(*) FROM poke_log WHERE kind = 'poke' AND outcome = 'ok'"
        ) >= 2),
        "the outcome was not retried, or the agent was not poked again: {}",
        daemon.log_text()
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM poke_log WHERE outcome = 'pending' AND id < (SELECT max(id) FROM poke_log)"
        ),
        0
    );
    assert_eq!(
        daemon.log_text().matches(refused).count(),
        1,
        "{}",
        daemon.log_text()
    );
}

#[test]
fn a_command_gets_the_database_path_byte_for_byte() {
    let env = Env::new();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.db");
    let db = env.dir.path().join(name);
    let seen = env.dir.path().join("seen");
    let script = format!("printf %s \"$POKED_DB\" > {}", seen.display());
    let out = env
        .cmd()
        .env("POKED_DB", &db)
        .args(["add", "w", "--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = env
        .cmd()
        .env("POKED_DB", &db)
        .args(["run", "--once"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&seen).unwrap(), db.as_os_str().as_bytes());
}

#[test]
fn the_stop_line_counts_the_pokes_of_agents_with_a_probe_or_a_gate() {
    // Agents with a probe or a gate are poked by the workers, which commit their own
    // transitions: the daemon's last line must count those pokes too.
    let env = Env::new();
    add(
        &env,
        &["gated", "--base", "1h", "--only-if", "true", "--", "true"],
    );
    add(&env, &["plain", "--base", "1h", "--", "true"]);
    let mut daemon = Daemon::start(&env.db, &[]);
    let settled = "SELECT count(*) FROM poke_log WHERE kind = 'poke' AND outcome = 'ok'";
    assert!(
        wait_for(Duration::from_secs(10), || env.count(settled) == 2),
        "{}",
        daemon.log_text()
    );
    daemon.signal(libc::SIGTERM);
    exits_cleanly(&mut daemon);
    let log = daemon.log_text();
    let last = log
        .lines()
        .rfind(|line| line.contains("poked daemon stopped"))
        .unwrap_or_else(|| panic!("no stop line in:\n{log}"));
    assert!(last.contains("pokes=2"), "{last}");
}
