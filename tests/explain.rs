//! `poked explain` and `poked plan` (SPEC §8): the daemon's own decision, spelt out and
//! projected, and a simulated run that lands where the plan said.

use serde_json::Value;

use crate::common::{Env, argv, ms};

const T0: &str = "2026-01-01T00:00:00Z";

/// A two-rung ladder whose commands have spaces, as `add` flags.
const LADDER: [&str; 4] = ["--escalate", "3:tmux-restart w", "--escalate", "5:notify-human w"];

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("JSON output")
}

fn plan(env: &Env, now: &str, id: &str, count: &str) -> Vec<Value> {
    match json(&env.ok(now, &["plan", id, "--count", count, "--json"])) {
        Value::Array(steps) => steps,
        other => panic!("not an array: {other}"),
    }
}

#[test]
fn plan_lists_the_spec_timelines() {
    let env = Env::new();
    env.ok(T0, &["add", "d"]);
    let steps = plan(&env, T0, "d", "6");
    let at: Vec<&str> = steps.iter().map(|s| s["at"].as_str().unwrap()).collect();
    assert_eq!(
        at,
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:05:00Z",
            "2026-01-01T00:12:30Z",
            "2026-01-01T00:23:45Z",
            "2026-01-01T00:40:37.500Z",
            "2026-01-01T01:05:56.250Z"
        ]
    );
    let intervals: Vec<i64> = steps.iter().map(|s| s["interval_ms"].as_i64().unwrap()).collect();
    assert_eq!(
        intervals,
        [300_000, 450_000, 675_000, 1_012_500, 1_518_750, 1_800_000]
    );
    env.ok(T0, &argv("add l --escalate-limit 1/6h", &LADDER));
    let actions: Vec<String> = plan(&env, T0, "l", "7")
        .iter()
        .map(|s| s["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        [
            "poke",
            "poke",
            "poke",
            "escalation rung 3",
            "poke",
            "escalation held (rung 5), poke",
            "poke"
        ]
    );
    // The table says the same.
    let table = env.ok(T0, &["plan", "l", "--count", "4"]);
    assert!(
        table
            .lines()
            .nth(4)
            .is_some_and(|l| l.starts_with("2026-01-01T00:23:45Z") && l.ends_with("escalation rung 3")),
        "{table}"
    );
}

#[test]
fn a_simulated_run_lands_where_the_plan_said() {
    let env = Env::new();
    let words = "add w --escalate 2:true --escalate 4:true --escalate-limit 1/1h --grace 1m";
    env.ok(T0, &argv(words, &[]));
    let steps = plan(&env, T0, "w", "8");
    for step in &steps {
        let at = step["at"].as_str().unwrap();
        let before = poked::units::format_time(ms(at) - 1);
        let due = json(&env.ok(&before, &["due", "--json"]));
        assert_eq!(due, Value::Array(vec![]), "due before the plan said, at {before}");
        env.ok(at, &["run", "--once"]);
        let (kind, outcome, misses, interval): (String, Option<String>, i64, i64) = env.row(
            "SELECT kind, outcome, consecutive_misses, interval_ms FROM poke_log
                 WHERE kind IN ('poke', 'escalation') AND outcome IS NOT 'held' ORDER BY id DESC LIMIT 1",
        );
        let planned = step["action"].as_str().unwrap();
        let sent = match (kind.as_str(), step["held"].as_bool().unwrap()) {
            ("escalation", _) => "escalation rung",
            (_, true) => "escalation held",
            _ => "poke",
        };
        assert!(
            planned.starts_with(sent),
            "at {at}: planned {planned}, did {kind} ({outcome:?})"
        );
        assert_eq!(misses, step["consecutive_misses"].as_i64().unwrap(), "at {at}");
        assert_eq!(interval, step["interval_ms"].as_i64().unwrap(), "at {at}");
        let held: i64 = env
            .sql()
            .query_row(
                "SELECT count(*) FROM poke_log WHERE outcome = 'held' AND at = ?1",
                [ms(at)],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(held == 1, step["held"].as_bool().unwrap(), "at {at}");
    }
}

#[test]
fn explain_spells_out_the_terms_the_pass_and_the_ladder_and_writes_nothing() {
    let env = Env::new();
    env.ok(T0, &argv("add w", &LADDER));
    for t in ["00:00:00", "00:05:00", "00:12:30", "00:23:45"] {
        env.ok(&format!("2026-01-01T{t}Z"), &["run", "--once"]);
    }
    let before = env.fingerprint();
    let e = json(&env.ok("2026-01-01T00:25:00Z", &["explain", "w", "--json"]));
    assert_eq!(e["terms"]["p"]["at"], "2026-01-01T00:40:37.500Z");
    assert_eq!(e["terms"]["h"]["at"], "2026-01-01T00:28:45Z");
    assert_eq!(e["terms"]["a"]["at"], Value::Null);
    assert_eq!(e["winner"], "P");
    assert_eq!(e["due"], false);
    assert_eq!(e["next_pass"]["at"], "2026-01-01T00:40:37.500Z");
    assert_eq!(e["next_pass"]["miss"], true);
    assert_eq!(e["next_pass"]["conditions"]["very_stale"], true);
    assert_eq!(e["next_pass"]["action"], "poke");
    assert_eq!(e["next_rung"]["misses"], 5);
    assert_eq!(e["next_rung"]["misses_away"], 2);
    assert_eq!(e["cap"]["count"], 1);
    assert_eq!(e["cap"]["oldest_leaves_at"], "2026-01-01T06:23:45Z");
    let text = env.ok(
        "2026-01-01T00:25:00Z",
        &["explain", "w", "--at", "2026-01-01T00:41:00Z"],
    );
    let due_now = text
        .lines()
        .find(|l| l.starts_with("due now"))
        .unwrap_or_default();
    assert!(due_now.ends_with("yes"), "{text}");
    assert!(text.contains("rung 5"), "{text}");
    assert_eq!(env.fingerprint(), before, "explain wrote to the database");
}
