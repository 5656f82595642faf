//! Defects a review found (issue 9), each pinned by a test written before its fix.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Env, assert_error, wait_for};
use crate::harness::Daemon;

fn count(env: &Env, sql: &str) -> i64 {
    env.sql().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn add(env: &Env, args: &[&str]) {
    let out = env.cmd().arg("add").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "add {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `poked run --db PATH` with no fixed time, its stderr kept.
fn run_at(env: &Env, db: &Path, cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(assert_cmd::cargo::cargo_bin!("poked"))
        .current_dir(cwd)
        .env_remove("POKED_DB")
        .env_remove("POKED_NOW")
        .env("NO_COLOR", "1")
        .arg("--db")
        .arg(db)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run poked for {}: {e}", env.db.display()))
}

#[test]
fn one_daemon_per_file_whatever_path_reaches_it() {
    let env = Env::new();
    let started = env.dir.path().join("started");
    let script = format!("touch {}; sleep 3", started.display());
    add(&env, &["slow", "--", "sh", "-c", &script]);
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
            count(
                &env,
                "SELECT count(*) FROM poke_log WHERE outcome = 'interrupted'"
            ),
            0,
            "a second daemon through {what} touched the first one's poke"
        );
    }
    // A bind mount reaches the same file through another mount point (needs root).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mount = dir.join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let poked = assert_cmd::cargo::cargo_bin!("poked");
        let script = format!(
            "mount --bind {dir} {mnt} && exec {poked} --db {mnt}/poked.db run --once",
            dir = dir.display(),
            mnt = mount.display(),
            poked = poked.display()
        );
        let out = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .env("NO_COLOR", "1")
            .env_remove("POKED_DB")
            .output()
            .unwrap();
        assert_error(&out, 1, &pid);
    } else {
        eprintln!("not root: the bind-mount case is not tried");
    }
    // The first daemon still records its poke's outcome.
    assert!(
        wait_for(Duration::from_secs(15), || count(
            &env,
            "SELECT count(*) FROM poke_log WHERE kind = 'poke' AND outcome = 'ok'"
        ) == 1),
        "the first daemon's poke did not record its outcome: {}",
        first.log_text()
    );
}

#[test]
fn a_heartbeat_file_in_the_future_counts_once() {
    let env = Env::new();
    let hb = env.dir.path().join("hb");
    std::fs::write(&hb, b"").unwrap();
    let f = std::fs::File::options().write(true).open(&hb).unwrap();
    // 2090-01-01
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(3_786_825_600))
        .unwrap();
    let hb_arg = hb.to_str().unwrap();
    env.ok("2026-01-01T00:00:00Z", &["add", "w", "--heartbeat-file", hb_arg]);
    for hour in 0..5 {
        let now = format!("2026-01-01T0{hour}:00:00Z");
        env.ok(&now, &["run", "--once"]);
    }
    assert_eq!(
        count(&env, "SELECT count(*) FROM poke_log WHERE kind = 'activity'"),
        1,
        "the same future modification time counted more than once"
    );
    // It counted as the first pass's now; the passes after it poke the agent.
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM poke_log WHERE kind = 'activity' AND at = 1767225600000"
        ),
        1
    );
    assert!(count(&env, "SELECT count(*) FROM poke_log WHERE kind = 'poke'") >= 4);
}

/// Twenty agents whose command records its start and then sleeps; a signal after the first
/// commands start must stop the pass: no more pokes committed, no command started.
fn signal_mid_pass(args: &[&str], signals: usize) {
    let env = Env::new();
    let starts = env.dir.path().join("starts");
    std::fs::create_dir(&starts).unwrap();
    for i in 0..20 {
        let script = format!("touch {}/$POKED_AGENT; sleep 2", starts.display());
        add(&env, &[&format!("a{i:02}"), "--", "sh", "-c", &script]);
    }
    let mut child = Command::new(assert_cmd::cargo::cargo_bin!("poked"))
        .env("POKED_DB", &env.db)
        .env_remove("POKED_NOW")
        .env("NO_COLOR", "1")
        .arg("run")
        .args(args)
        .args(["--concurrency", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = || std::fs::read_dir(&starts).unwrap().count();
    assert!(wait_for(Duration::from_secs(10), || started() >= 1));
    for _ in 0..signals {
        // SAFETY: signalling our own child, not yet reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = wait_for(Duration::from_secs(20), || child.try_wait().unwrap().is_some());
    if !ok {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(ok, "poked run {args:?} did not stop: {stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
    let pokes = count(&env, "SELECT count(*) FROM poke_log WHERE kind = 'poke'");
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
        count(&env, "SELECT count(*) FROM poke_log WHERE outcome = 'pending'"),
        0,
        "in-flight pokes are recorded"
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM agents WHERE last_poke_at IS NOT NULL"),
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
        &[
            "w",
            "--base",
            "1s",
            "--fresh",
            "0s",
            "--very-stale",
            "0s",
            "--",
            "sh",
            "-c",
            &script,
        ],
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
    // The outcome cannot be written: the daemon says so (once) and keeps trying.
    assert!(
        wait_for(Duration::from_secs(10), || daemon.log_text().contains("outcome")),
        "{}",
        daemon.log_text()
    );
    env.sql().execute_batch("DELETE FROM hold_outcomes").unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || count(
            &env,
            "SELECT count(*) FROM poke_log WHERE kind = 'poke' AND outcome = 'ok'"
        ) >= 2),
        "the outcome was not retried, or the agent was not poked again: {}",
        daemon.log_text()
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM poke_log WHERE outcome = 'pending' AND id < (SELECT max(id) FROM poke_log)"
        ),
        0
    );
}

#[test]
fn a_fixed_clock_never_rewrites_stored_times() {
    let env = Env::new();
    add(&env, &["w"]);
    env.sql()
        .execute_batch("UPDATE agents SET last_activity_at = created_at")
        .unwrap();
    let before: (i64, i64) = env
        .sql()
        .query_row("SELECT created_at, last_activity_at FROM agents", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    env.ok("2025-06-01T00:00:00Z", &["run", "--once"]);
    let after: (i64, i64) = env
        .sql()
        .query_row("SELECT created_at, last_activity_at FROM agents", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(before, after, "POKED_NOW rewrote stored instants");
    assert_eq!(
        count(&env, "SELECT count(*) FROM poke_log WHERE kind = 'updated'"),
        0
    );
}

#[test]
fn instants_in_the_future_are_corrected_with_a_logged_transition() {
    let env = Env::new();
    add(&env, &["w"]);
    // A pass ran while the clock was a day ahead; then the clock was set back.
    let created: i64 = env
        .sql()
        .query_row("SELECT created_at FROM agents", [], |r| r.get(0))
        .unwrap();
    let ahead = poked::units::format_time(created + 86_400_000);
    env.ok(&ahead, &["run", "--once"]);
    env.ok(&ahead, &["pause", "w"]);
    let out = env.cmd().args(["run", "--once"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (poke, _): (i64, i64) = env
        .sql()
        .query_row("SELECT last_poke_at, created_at FROM agents", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(
        poke < created + 86_400_000,
        "the future last poke was not corrected"
    );
    let detail: String = env
        .sql()
        .query_row(
            "SELECT detail FROM poke_log WHERE kind = 'updated' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("a logged correction");
    assert!(detail.contains("last_poke_at"), "{detail}");
    let check = env.cmd().arg("check").output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn check_compares_last_poke_last_activity_and_paused_with_the_log() {
    for (edit, rule) in [
        (
            "UPDATE agents SET last_poke_at = last_poke_at - 1000",
            "last_poke_matches_log",
        ),
        (
            "UPDATE agents SET last_activity_at = 1",
            "last_activity_matches_log",
        ),
        ("UPDATE agents SET paused = 1", "paused_matches_log"),
    ] {
        let env = Env::new();
        env.ok("2026-01-01T00:00:00Z", &["add", "w"]);
        env.ok("2026-01-01T00:00:00Z", &["run", "--once"]);
        env.ok("2026-01-01T00:01:00Z", &["activity", "w"]);
        env.ok("2026-01-01T00:02:00Z", &["check"]);
        env.sql().execute_batch(edit).unwrap();
        let out = env.at("2026-01-01T00:02:00Z", &["check"]);
        assert_eq!(out.status.code(), Some(1), "{edit}: check passed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(rule), "{edit}: {stdout}");
    }
}

#[test]
fn an_existing_id_has_one_exit_code_everywhere() {
    let env = Env::new();
    add(&env, &["w"]);
    let by_add = env.cmd().args(["add", "w"]).output().unwrap();
    let by_import = env
        .cmd()
        .args(["import", "-"])
        .write_stdin("{\"id\":\"w\"}\n")
        .output()
        .unwrap();
    assert_error(&by_add, 1, "already exists");
    assert_error(&by_import, 1, "already exists");
}

#[test]
fn set_raises_max_and_very_stale_as_add_does() {
    let env = Env::new();
    add(&env, &["w"]);
    let out = env
        .cmd()
        .args(["set", "w", "--base", "40m", "--fresh", "20m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (max, very_stale): (i64, i64) = env
        .sql()
        .query_row("SELECT max_interval_ms, very_stale_ms FROM agents", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((max, very_stale), (40 * 60_000, 20 * 60_000));
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
fn read_commands_work_on_a_read_only_database() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: a read-only bind mount cannot be made; skipped");
        return;
    }
    let env = Env::new();
    env.ok("2026-01-01T00:00:00Z", &["add", "w"]);
    env.ok("2026-01-01T00:00:00Z", &["run", "--once"]);
    let dir = env.dir.path();
    let ro = dir.join("ro");
    std::fs::create_dir(&ro).unwrap();
    let poked = assert_cmd::cargo::cargo_bin!("poked");
    let before = env.fingerprint();
    for (args, want) in [
        ("list", Some(0)),
        ("show w", Some(0)),
        ("history", Some(0)),
        ("stats", Some(0)),
        ("status", Some(0)),
        ("check", Some(0)),
        ("activity w", Some(1)),
    ] {
        let script = format!(
            "mount --bind -o ro {dir} {ro} && exec {poked} --db {ro}/poked.db {args}",
            dir = dir.display(),
            ro = ro.display(),
            poked = poked.display()
        );
        let out = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .env("NO_COLOR", "1")
            .env("POKED_NOW", "2026-01-01T00:01:00Z")
            .env_remove("POKED_DB")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), want, "{args}: {stderr}");
        if want == Some(1) {
            assert_error(&out, 1, "read-only");
        }
    }
    assert_eq!(
        env.fingerprint(),
        before,
        "a read command on a read-only file changed it"
    );
}
