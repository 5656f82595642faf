//! SPEC §3's worked timeline, through the real binary with `POKED_NOW` and `run --once`,
//! reading the `agents` table back after every step.

use crate::common::{Env, ms};

/// (time, what to run, interval after, misses after, next due after)
const TIMELINE: &[(&str, &str, i64, i64, &str)] = &[
    ("2026-01-01T00:00:00Z", "run", 300_000, 0, "2026-01-01T00:05:00Z"),
    ("2026-01-01T00:05:00Z", "run", 450_000, 1, "2026-01-01T00:12:30Z"),
    ("2026-01-01T00:12:30Z", "run", 675_000, 2, "2026-01-01T00:23:45Z"),
    (
        "2026-01-01T00:23:45Z",
        "run",
        1_012_500,
        3,
        "2026-01-01T00:40:37.500Z",
    ),
    (
        "2026-01-01T00:40:37.500Z",
        "run",
        1_518_750,
        4,
        "2026-01-01T01:05:56.250Z",
    ),
    (
        "2026-01-01T01:05:56.250Z",
        "run",
        1_800_000,
        5,
        "2026-01-01T01:35:56.250Z",
    ),
    (
        "2026-01-01T01:10:00Z",
        "activity",
        300_000,
        0,
        "2026-01-01T01:15:00Z",
    ),
    ("2026-01-01T01:15:00Z", "run", 300_000, 0, "2026-01-01T01:20:00Z"),
    ("2026-01-01T01:20:00Z", "run", 300_000, 0, "2026-01-01T01:25:00Z"),
    ("2026-01-01T01:25:00Z", "run", 450_000, 1, "2026-01-01T01:32:30Z"),
];

fn state(env: &Env) -> (i64, i64, Option<i64>, Option<i64>, i64) {
    env.row(
        "SELECT current_interval_ms, consecutive_misses, last_poke_at, next_due_at, wait_ms
             FROM agents WHERE id = 'hq-mayor'",
    )
}

#[test]
fn the_worked_timeline_of_spec_section_3() {
    let env = Env::new();
    env.ok("2026-01-01T00:00:00Z", &["add", "hq-mayor"]);
    let added = state(&env);
    assert_eq!(
        added,
        (300_000, 0, None, Some(ms("2026-01-01T00:00:00Z")), 300_000)
    );

    let mut last_due = ms("2026-01-01T00:00:00Z");
    for &(now, what, interval, misses, next_due) in TIMELINE {
        if what == "run" {
            // A millisecond early, nothing happens.
            let early = poked::units::format_time(ms(now) - 1);
            let before = state(&env);
            assert!(
                env.ok(&early, &["run", "--once"]).starts_with("0 pokes"),
                "poked early at {early}"
            );
            assert_eq!(state(&env), before, "state changed before {now}");
            assert_eq!(
                ms(now),
                last_due,
                "the timeline's time is not the stored next due"
            );
            env.ok(now, &["run", "--once"]);
            let (_, _, last_poke, _, _) = state(&env);
            assert_eq!(last_poke, Some(ms(now)), "no poke recorded at {now}");
        } else {
            env.ok(now, &["activity", "hq-mayor"]);
        }
        let (got_interval, got_misses, _, got_due, wait) = state(&env);
        assert_eq!(
            (got_interval, got_misses),
            (interval, misses),
            "after {what} at {now}"
        );
        assert_eq!(wait, interval, "no jitter, so the wait is the interval");
        assert_eq!(got_due, Some(ms(next_due)), "next due after {what} at {now}");
        last_due = ms(next_due);
    }

    // The log tells the same story: 9 pokes, 6 misses, 1 activity, after the `added` row.
    let kinds: Vec<String> = {
        let conn = env.sql();
        let mut stmt = conn.prepare("SELECT kind FROM poke_log ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(kinds.first().map(String::as_str), Some("added"));
    assert_eq!(
        (count("poke"), count("miss"), count("activity")),
        (9, 6, 1),
        "{kinds:?}"
    );
    let outcomes: i64 = env.value("SELECT count(*) FROM poke_log WHERE kind = 'poke' AND outcome = 'sent'");
    assert_eq!(outcomes, 9, "a poke without a command is `sent`");
}

#[test]
fn overdue_agents_after_downtime_are_poked_once() {
    let env = Env::new();
    env.ok(
        "2026-01-01T00:00:00Z",
        &["add", "a", "--base", "1m", "--max", "1h"],
    );
    env.ok("2026-01-01T00:00:00Z", &["run", "--once"]);
    // Ten hours later: one poke (and one miss), not one per missed interval.
    let out = env.ok("2026-01-01T10:00:00Z", &["run", "--once"]);
    assert!(out.starts_with("1 pokes, 1 misses"), "{out}");
    let out = env.ok("2026-01-01T10:00:00Z", &["run", "--once"]);
    assert!(out.starts_with("0 pokes"), "poked twice within one wait: {out}");
}

#[test]
fn a_fresh_agent_is_not_poked_and_commands_run_with_their_environment() {
    let env = Env::new();
    let marker = env.dir.path().join("env.txt");
    let script = format!(
        "printf '%s %s %s %s' \"$POKED_AGENT\" \"$POKED_MISSES\" \"$POKED_INTERVAL_MS\" \"$POKED_POKE_ID\" > {}",
        marker.display()
    );
    env.ok("2026-01-01T00:00:00Z", &["add", "w", "--", "sh", "-c", &script]);
    env.ok("2026-01-01T00:00:00Z", &["activity", "w"]);
    assert!(
        env.ok("2026-01-01T00:04:00Z", &["run", "--once"])
            .starts_with("0 pokes"),
        "poked a fresh agent"
    );
    assert!(
        env.ok("2026-01-01T00:05:00Z", &["run", "--once"])
            .starts_with("1 pokes")
    );
    let poke_id: i64 = env.value("SELECT id FROM poke_log WHERE kind = 'poke'");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        format!("w 0 300000 {poke_id}")
    );
    let (outcome, code): (String, i64) = env
        .sql()
        .query_row(
            "SELECT outcome, exit_code FROM poke_log WHERE id = ?1",
            [poke_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((outcome.as_str(), code), ("ok", 0));
}

#[test]
fn command_outcomes_are_recorded_on_the_poke_row() {
    let env = Env::new();
    let t = "2026-01-01T00:00:00Z";
    env.ok(
        t,
        &[
            "add",
            "fails",
            "--",
            "sh",
            "-c",
            "echo 'it broke, badly' >&2; exit 7",
        ],
    );
    env.ok(t, &["add", "slow", "--", "sleep", "30"]);
    env.ok(t, &["add", "missing", "--", "/nonexistent/program"]);
    env.ok(t, &["run", "--once", "--command-timeout", "300ms"]);
    let conn = env.sql();
    let row = |id: &str| -> (String, Option<i64>, String) {
        conn.query_row(
            "SELECT outcome, exit_code, coalesce(detail, '') FROM poke_log WHERE agent_id = ?1 AND kind = 'poke'",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    assert_eq!(row("fails"), ("failed".into(), Some(7), "it broke, badly".into()));
    let (outcome, code, _) = row("slow");
    assert_eq!((outcome.as_str(), code), ("timeout", None));
    let (outcome, _, detail) = row("missing");
    assert_eq!(outcome, "error");
    assert!(detail.contains("/nonexistent/program"), "{detail}");
}
