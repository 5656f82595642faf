//! SPEC §7 through the real binary: the escalation ladder and its cap, the gate, activity
//! probes, and their bad input. Time is fixed with `POKED_NOW` and the passes are
//! `poked run --once`, as in the §3 timeline.

use std::path::PathBuf;

use crate::common::{Env, argv, assert_error, ms};

const T0: &str = "2026-01-01T00:00:00Z";

fn at(hms: &str) -> String {
    format!("2026-01-01T{hms}Z")
}

/// `(misses, interval_ms, next_due_at, held_until_at)` of the agent.
fn state(env: &Env, id: &str) -> (i64, i64, Option<i64>, Option<i64>) {
    env.sql()
        .query_row(
            "SELECT consecutive_misses, current_interval_ms, next_due_at, held_until_at FROM agents WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
}

/// The log rows after `after_id`: `(kind, outcome, detail)`.
fn rows_after(env: &Env, after_id: i64) -> Vec<(String, Option<String>, Option<String>)> {
    let conn = env.sql();
    let mut stmt = conn
        .prepare("SELECT kind, outcome, detail FROM poke_log WHERE id > ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([after_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn max_id(env: &Env) -> i64 {
    env.value("SELECT coalesce(max(id), 0) FROM poke_log")
}

/// A new `w` with the fixed strategy, `flags` (words) and an activity probe that prints the
/// file returned (missing until the test writes it).
fn probe_env(flags: &str) -> (Env, PathBuf) {
    let env = Env::new();
    let value = env.dir.path().join("value");
    let probe = format!("cat {}", value.display());
    let words = format!("add w --strategy fixed {flags} --activity-cmd");
    env.ok(T0, &argv(&words, &[&probe]));
    (env, value)
}

/// The rung commands append `rung $POKED_RUNG` to a file, so the test sees each one run.
fn ladder_env() -> (Env, String) {
    let env = Env::new();
    let fired = env.dir.path().join("fired");
    let rung = |n: u32| format!("{n}:sh -c 'echo rung $POKED_RUNG >> {}'", fired.display());
    env.ok(T0, &["add", "w", "--escalate", &rung(3), "--escalate", &rung(5)]);
    (env, fired.display().to_string())
}

#[test]
fn the_worked_timeline_of_spec_section_7_3() {
    let (env, fired) = ladder_env();
    let m = 60_000;
    // (time, what the pass logs, misses, interval after, next due)
    let steps: [(&str, &[&str], i64, i64, i64); 8] = [
        ("00:00:00", &["poke"], 0, 5 * m, ms(&at("00:05:00"))),
        (
            "00:05:00",
            &["miss", "poke"],
            1,
            7 * m + 30_000,
            ms(&at("00:12:30")),
        ),
        (
            "00:12:30",
            &["miss", "poke"],
            2,
            11 * m + 15_000,
            ms(&at("00:23:45")),
        ),
        (
            "00:23:45",
            &["miss", "escalation"],
            3,
            16 * m + 52_500,
            ms(&at("00:40:37.5")),
        ),
        ("00:30:00", &["activity"], 0, 5 * m, ms(&at("00:35:00"))),
        ("00:35:00", &["poke"], 0, 5 * m, ms(&at("00:40:00"))),
        ("00:40:00", &["poke"], 0, 5 * m, ms(&at("00:45:00"))),
        (
            "00:45:00",
            &["miss", "poke"],
            1,
            7 * m + 30_000,
            ms(&at("00:52:30")),
        ),
    ];
    for (time, kinds, misses, interval, next_due) in steps {
        let before = max_id(&env);
        if kinds == ["activity"] {
            env.ok(&at(time), &["activity", "w"]);
        } else {
            env.ok(&at(time), &["run", "--once"]);
        }
        let rows = rows_after(&env, before);
        let got: Vec<&str> = rows.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(got, kinds, "at {time}");
        let (m_, i, due, _) = state(&env, "w");
        assert_eq!((m_, i, due), (misses, interval, Some(next_due)), "at {time}");
        if time == "00:23:45" {
            let (_, outcome, detail) = &rows[1];
            assert_eq!(
                outcome.as_deref(),
                Some("ok"),
                "the rung's outcome lands on its row"
            );
            assert!(
                detail.as_deref().is_some_and(|d| d.starts_with("rung 3")),
                "{detail:?}"
            );
            assert_eq!(
                state(&env, "w").3,
                Some(ms(&at("00:28:45"))),
                "held for the grace"
            );
            assert_eq!(std::fs::read_to_string(&fired).unwrap(), "rung 3\n");
        }
    }
    // Only rung 3 ran, once.
    assert_eq!(std::fs::read_to_string(&fired).unwrap(), "rung 3\n");
    let check = env.at(&at("00:46:00"), &["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// Drives an agent (fresh and very stale 0s, rung 3) from an answered pass at `start` (minutes
/// after 00:00) to its third miss in a row; returns the time of that third miss's pass.
fn third_miss(env: &Env, start: i64) -> String {
    let t = |offset_ms: i64| {
        let at = ms(T0) + start * 60_000 + offset_ms;
        poked::units::format_time(at)
    };
    for offset in [0, 300_000, 750_000, 1_425_000] {
        env.ok(&t(offset), &["run", "--once"]);
    }
    t(1_425_000)
}

#[test]
fn the_cap_holds_a_rung_slides_and_reset_clears_it() {
    let env = Env::new();
    let fired = env.dir.path().join("fired");
    let rung = format!("3:sh -c 'echo x >> {}'", fired.display());
    let words = "add w --escalate-limit 1/6h --grace 0s --fresh 0s --very-stale 0s --escalate";
    env.ok(T0, &argv(words, &[&rung]));
    third_miss(&env, 0);
    assert_eq!(std::fs::read_to_string(&fired).unwrap().lines().count(), 1);
    // A new streak reaches 3 within six hours: held, and a plain poke instead.
    env.ok(&at("01:00:00"), &["activity", "w"]);
    let before = max_id(&env);
    third_miss(&env, 60);
    let rows = rows_after(&env, before);
    let held: Vec<_> = rows.iter().filter(|(k, _, _)| k == "escalation").collect();
    assert_eq!(held.len(), 1, "{rows:?}");
    assert_eq!(held[0].1.as_deref(), Some("held"));
    assert!(
        held[0].2.as_deref().is_some_and(|d| d.contains("cap")),
        "{held:?}"
    );
    let last = rows.last().unwrap();
    assert_eq!(last.0, "poke", "poked instead: {rows:?}");
    assert_eq!(
        std::fs::read_to_string(&fired).unwrap().lines().count(),
        1,
        "a held rung does not run"
    );
    // `reset` clears the cap at once: the next streak's rung runs, well inside the window.
    env.ok(&at("02:00:00"), &["reset", "w"]);
    env.ok(&at("02:00:00"), &["activity", "w"]);
    third_miss(&env, 120);
    assert_eq!(
        std::fs::read_to_string(&fired).unwrap().lines().count(),
        2,
        "reset did not clear the cap"
    );
    // The window slides: six hours after the last escalation, one more may run.
    env.ok(&at("03:00:00"), &["activity", "w"]);
    third_miss(&env, 180);
    assert_eq!(
        std::fs::read_to_string(&fired).unwrap().lines().count(),
        2,
        "held inside the window"
    );
    env.ok(&at("10:00:00"), &["activity", "w"]);
    third_miss(&env, 600);
    assert_eq!(
        std::fs::read_to_string(&fired).unwrap().lines().count(),
        3,
        "the window did not slide"
    );
}

#[test]
fn a_gate_skips_for_one_wait_never_escalates_and_the_unanswered_poke_counts_once() {
    let env = Env::new();
    let open = env.dir.path().join("open");
    let gate = format!("sh -c 'echo nothing to do >&2; test -e {}'", open.display());
    env.ok(T0, &["add", "w", "--only-if", &gate]);
    std::fs::write(&open, "").unwrap();
    env.ok(T0, &["run", "--once"]);
    assert_eq!(env.count("SELECT count(*) FROM poke_log WHERE kind = 'poke'"), 1);
    std::fs::remove_file(&open).unwrap();
    // Due at 00:05, very stale at 00:15: the gate says skip, twice.
    let before = max_id(&env);
    env.ok(&at("00:15:00"), &["run", "--once"]);
    let rows = rows_after(&env, before);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "skip");
    assert_eq!(rows[0].2.as_deref(), Some("nothing to do"));
    let (exit, misses, held): (i64, i64, i64) = env.row(
        "SELECT l.exit_code, a.consecutive_misses, a.held_until_at FROM poke_log l, agents a
             WHERE l.kind = 'skip'",
    );
    assert_eq!((exit, misses), (1, 0), "a skip is not a miss");
    assert_eq!(held, ms(&at("00:20:00")), "held for one wait");
    env.ok(&at("00:18:00"), &["run", "--once"]);
    assert_eq!(max_id(&env), before + 1, "held: nothing happens before 00:20");
    env.ok(&at("00:20:00"), &["run", "--once"]);
    assert_eq!(rows_after(&env, before).len(), 2, "skipped again at 00:20");
    // The gate opens: the poke at 00:00 was never answered, so one miss, then the poke.
    std::fs::write(&open, "").unwrap();
    let before = max_id(&env);
    env.ok(&at("00:25:00"), &["run", "--once"]);
    let kinds: Vec<String> = rows_after(&env, before).into_iter().map(|r| r.0).collect();
    assert_eq!(kinds, ["miss", "poke"]);
    assert_eq!(state(&env, "w").0, 1, "one miss, however many skips");
}

#[test]
fn a_gate_error_pokes_anyway_and_fires_no_rung_in_that_streak() {
    let env = Env::new();
    let fired = env.dir.path().join("fired");
    let mode = env.dir.path().join("mode");
    std::fs::write(&mode, "0").unwrap();
    let gate = format!("sh -c 'exit $(cat {})'", mode.display());
    let rung = format!("2:sh -c 'echo x >> {}'", fired.display());
    let words = "add w --fresh 0s --very-stale 0s --only-if";
    env.ok(T0, &argv(words, &[&gate, "--escalate", &rung]));
    env.ok(T0, &["run", "--once"]);
    env.ok(&at("00:05:00"), &["run", "--once"]);
    assert_eq!(state(&env, "w").0, 1);
    // Misses reach 2 while the gate is broken (exit 255): a poke, noted, and no rung.
    std::fs::write(&mode, "255").unwrap();
    let before = max_id(&env);
    env.ok(&at("00:12:30"), &["run", "--once"]);
    let rows = rows_after(&env, before);
    let kinds: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(kinds, ["miss", "poke"]);
    let detail = rows[1].2.clone().unwrap_or_default();
    assert!(
        detail.contains("gate error (exit 255)") && detail.contains("rung 2 not fired"),
        "{detail}"
    );
    assert!(!fired.exists(), "a rung ran on a broken gate");
    // The gate works again; the streak goes on past rung 2 without firing it.
    std::fs::write(&mode, "0").unwrap();
    env.ok(&at("00:23:45"), &["run", "--once"]);
    assert_eq!(state(&env, "w").0, 3);
    assert!(!fired.exists(), "the unfired rung was fired later in its streak");
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE kind = 'escalation'"),
        0
    );
}

#[test]
fn a_probe_counts_when_its_value_changes_and_not_its_own_echo() {
    let (env, value) = probe_env("--fresh 1m --very-stale 1m");
    // The probe says 23:50, before the agent was added: a value never seen, so activity then
    // (long ago: the agent is very stale and poked at once).
    std::fs::write(&value, "1767224999.999\n").unwrap();
    env.ok(T0, &["run", "--once"]);
    let acts = || env.count("SELECT count(*) FROM poke_log WHERE kind = 'activity'");
    let pokes = || env.count("SELECT count(*) FROM poke_log WHERE kind = 'poke'");
    let (a0, p0) = (acts(), pokes());
    assert_eq!((a0, p0), (1, 1));
    let first: i64 = env.value("SELECT at FROM poke_log WHERE kind = 'activity'");
    assert_eq!(first, ms("2025-12-31T23:49:59.999Z"));
    // The same value again, at every pass: never counted again.
    for t in ["00:10:00", "00:20:00", "00:30:00"] {
        env.ok(&at(t), &["run", "--once"]);
    }
    assert_eq!(acts(), a0, "an unchanged value counted again");
    assert!(pokes() >= p0 + 3, "the agent was not poked");
    // The poke's own echo (within 2 s of the last poke) is seen but is no answer.
    let last_poke: i64 = env.value("SELECT last_poke_at FROM agents");
    std::fs::write(&value, format!("{}.5\n", (last_poke + 1000) / 1000)).unwrap();
    env.ok(&at("00:40:00"), &["run", "--once"]);
    assert_eq!(acts(), a0, "the echo counted as an answer");
    let seen: Option<i64> = env.value("SELECT probe_seen_at FROM agents");
    assert_eq!(seen, Some(last_poke + 1500), "the echo is remembered as seen");
    // Output after the echo window is an answer: activity, back to base.
    std::fs::write(&value, "2026-01-01T00:45:00Z").unwrap();
    env.ok(&at("00:50:00"), &["run", "--once"]);
    assert_eq!(acts(), a0 + 1);
    let last_activity: i64 = env.value("SELECT last_activity_at FROM agents");
    assert_eq!(last_activity, ms(&at("00:45:00")));
}

#[test]
fn a_failing_probe_does_not_hold_up_the_poke_and_is_logged_when_it_starts_and_stops() {
    let (env, value) = probe_env("--base 1m --fresh 0s --very-stale 0s");
    let mut logs = String::new();
    for i in 0..3 {
        let out = env.at(&format!("2026-01-01T00:0{i}:00Z"), &["run", "--once"]);
        assert!(out.status.success());
        logs.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE kind = 'poke'"),
        3,
        "pokes went ahead"
    );
    // Each `run --once` is a new process, so each says it once; within one process it would
    // be once in all (the daemon test below).
    assert_eq!(logs.matches("activity probe failed").count(), 3, "{logs}");
    std::fs::write(&value, "not a time").unwrap();
    let out = env.at(&at("00:03:00"), &["run", "--once"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a time"));
}

#[test]
fn bad_supervisor_options_exit_2_naming_the_value_and_create_nothing() {
    let env = Env::new();
    // `COMMAND w OPTIONS` must fail naming the value.
    for (command, options, needle) in [
        ("add", &["--escalate", "0:x"][..], "0:x"),
        ("add", &["--escalate", "x"], "'x'"),
        ("add", &["--escalate", "3:"], "3:"),
        (
            "add",
            &["--escalate", "3:a", "--escalate", "3:b"],
            "same number of misses",
        ),
        ("add", &["--escalate", "3:'unbalanced"], "unbalanced"),
        ("add", &["--only-if", "sh -c 'oops"], "unbalanced"),
        ("add", &["--escalate-limit", "0/1h"], "0/1h"),
        ("add", &["--escalate-limit", "3/0s"], "3/0s"),
        ("add", &["--escalate-limit", "3"], "'3'"),
        ("add", &["--grace", "-1s"], "-1s"),
        ("add", &["--echo", "banana"], "banana"),
        ("add", &["--only-if", ""], "--only-if"),
        ("add", &["--activity-cmd", "  "], "--activity-cmd"),
        ("add", &["--tmux", ""], "--tmux"),
        ("add", &["--message", "hi"], "--tmux"),
        ("set", &["--tmux", "s", "--no-command"], "--no-command"),
    ] {
        let args = [&[command, "w"][..], options].concat();
        let out = env.at(T0, &args);
        assert_error(&out, 2, needle);
        assert!(!env.db.exists(), "{args:?} created the database");
    }
}

#[test]
fn set_replaces_and_removes_the_ladder_gate_and_probe() {
    let env = Env::new();
    let words = "add w --escalate 3:a --escalate 5:b --only-if true --activity-cmd";
    env.ok(T0, &argv(words, &["date +%s"]));
    assert_eq!(env.count("SELECT count(*) FROM rungs"), 2);
    env.ok(T0, &["set", "w", "--escalate", "2:c"]);
    let rungs: String = env.value("SELECT group_concat(misses || command) FROM rungs");
    assert_eq!(rungs, "2[\"c\"]");
    env.ok(
        T0,
        &["set", "w", "--no-escalate", "--no-only-if", "--no-activity-cmd"],
    );
    assert_eq!(env.count("SELECT count(*) FROM rungs"), 0);
    assert_eq!(
        env.count("SELECT count(*) FROM agents WHERE only_if IS NULL AND activity_cmd IS NULL"),
        1
    );
    let detail: String =
        env.value("SELECT detail FROM poke_log WHERE kind = 'updated' ORDER BY id DESC LIMIT 1");
    assert!(
        detail.contains("ladder 2:c → none") && detail.contains("gate true → none"),
        "{detail}"
    );
    // The rungs go with the agent.
    env.ok(T0, &["set", "w", "--escalate", "4:d"]);
    env.ok(T0, &["rm", "w"]);
    assert_eq!(env.count("SELECT count(*) FROM rungs"), 0);
}

#[test]
fn the_operator_commands_show_skips_escalations_holds_and_the_streak() {
    let env = Env::new();
    let open = env.dir.path().join("open");
    env.ok(
        T0,
        &["add", "g", "--only-if", &format!("test -e {}", open.display())],
    );
    let words = "add e --escalate 1:true --escalate 2:false --escalate-limit 1/6h --fresh 0s --very-stale 0s";
    env.ok(T0, &argv(words, &[]));
    // 00:00: e poked, g skipped (held one wait); 00:05: e's miss 1 fires rung 1; 00:12:30 (after
    // the 5m grace): miss 2 reaches rung 2, held by the cap.
    for t in ["00:00:00", "00:05:00", "00:12:30"] {
        env.ok(&at(t), &["run", "--once"]);
    }
    let stats: serde_json::Value =
        serde_json::from_str(&env.ok(&at("00:13:00"), &["stats", "--json"])).unwrap();
    let e = &stats[0];
    assert_eq!(e["id"], "e");
    assert_eq!(e["escalations"]["ok"], 1);
    assert_eq!(e["escalations"]["held"], 1);
    let g = &stats[1];
    assert_eq!(g["skips"], 3, "{g}");
    let history = env.ok(
        &at("00:13:00"),
        &["history", "--kind", "skip", "--kind", "escalation", "--csv"],
    );
    let kinds: Vec<&str> = history
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["skip", "escalation", "skip", "escalation", "skip"],
        "{history}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&at("00:13:00"), &["status", "--json"])).unwrap();
    assert_eq!(status["agents"]["held"], 1, "g is held by its skip");
    assert_eq!(status["escalations_held"], 1);
    let show = env.ok(&at("00:13:00"), &["show", "e"]);
    let ladder = show.lines().find(|l| l.starts_with("ladder")).unwrap();
    assert!(
        ladder.contains("1: [\"true\"] (this streak: 2026-01-01T00:05:00Z, ok)"),
        "{ladder}"
    );
    assert!(
        ladder.contains("2: [\"false\"] (this streak: 2026-01-01T00:12:30Z, held)"),
        "{ladder}"
    );
    let escalations = show.lines().find(|l| l.starts_with("escalations")).unwrap();
    assert!(escalations.contains("1 of 1 in the last 6h"), "{escalations}");
    let shown: serde_json::Value =
        serde_json::from_str(&env.ok(&at("00:13:00"), &["show", "g", "--json"])).unwrap();
    assert_eq!(shown["held_until_at"], "2026-01-01T00:17:30Z");
    let check = env.at(&at("00:13:00"), &["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
