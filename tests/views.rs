//! What people see: the tables, JSON, the sqlite3 views.

use crate::common::Env;

const T: &str = "2026-01-01T00:00:00Z";

#[test]
fn sqlite3_shell_reads_both_views() {
    let env = Env::new();
    env.ok(
        T,
        &[
            "add",
            "hq-mayor",
            "--escalate",
            "1:true",
            "--escalate",
            "3:notify 'a human'",
            "--grace",
            "90s",
        ],
    );
    env.ok(T, &["run", "--once"]);
    env.ok("2026-01-01T00:05:00Z", &["run", "--once"]);
    let shell = std::process::Command::new("sqlite3")
        .arg(&env.db)
        .arg(
            "SELECT id, interval, misses, last_poke, next_due, held_until, grace, escalate_limit, rungs FROM agent_status; \
             SELECT agent_id, kind, interval, outcome FROM poke_history ORDER BY id;",
        )
        .output();
    let out = match shell {
        Ok(out) => out,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: no sqlite3 shell here ({e}); CI installs it");
            return;
        }
        Err(e) => panic!("sqlite3 shell is required in CI: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            "hq-mayor|7m30s|1|2026-01-01T00:05:00.000Z|2026-01-01T00:12:30.000Z|2026-01-01T00:06:30.000Z|1m30s|3/6h|1:[\"true\"] 3:[\"notify\",\"a human\"]",
            "hq-mayor|added|5m|",
            "hq-mayor|poke|5m|sent",
            "hq-mayor|miss|7m30s|",
            "hq-mayor|escalation|7m30s|ok",
        ]
    );
}

#[test]
fn list_and_show_print_tables_and_json() {
    let env = Env::new();
    env.ok(T, &["add", "b", "--base", "90s", "--", "echo", "hi"]);
    env.ok(T, &["add", "a"]);
    env.ok(T, &["run", "--once"]);
    env.ok("2026-01-01T00:01:30Z", &["miss", "b"]);

    let table = env.ok("2026-01-01T00:01:30Z", &["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("NEXT DUE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("a ") && lines[2].starts_with("b "),
        "sorted by id: {table}"
    );
    assert!(
        lines[2].contains("2m15s") && lines[2].contains("backing off"),
        "{table}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&env.ok("2026-01-01T00:01:30Z", &["list", "--json"])).unwrap();
    let b = &json[1];
    assert_eq!(b["id"], "b");
    assert_eq!(b["current_interval_ms"], 135_000);
    assert_eq!(b["consecutive_misses"], 1);
    assert_eq!(b["last_poke_at"], "2026-01-01T00:00:00Z");
    assert_eq!(
        b["next_due_at"], "2026-01-01T00:02:15Z",
        "last poke + the grown wait"
    );
    assert_eq!(b["command"], serde_json::json!(["echo", "hi"]));
    assert_eq!(b["paused"], false);

    let show: serde_json::Value = serde_json::from_str(&env.ok(T, &["show", "b", "--json"])).unwrap();
    let kinds: Vec<&str> = show["recent_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["added", "poke", "miss"]);
    assert_eq!(show["recent_log"][1]["outcome"], "ok");
    let text = env.ok(T, &["show", "b"]);
    assert!(text.contains("misses in a row     1"), "{text}");
}

#[test]
fn due_lists_agents_due_at_a_time_soonest_first() {
    let env = Env::new();
    env.ok(T, &["add", "slow", "--base", "10m", "--max", "1h"]);
    env.ok(T, &["add", "fast", "--base", "1m"]);
    env.ok(T, &["add", "held", "--paused"]);
    env.ok(T, &["run", "--once"]);
    let due = |at: &str| -> Vec<String> {
        let json: serde_json::Value =
            serde_json::from_str(&env.ok(T, &["due", "--at", at, "--json"])).unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(due("2026-01-01T00:00:59Z").is_empty());
    assert_eq!(due("2026-01-01T00:01:00Z"), vec!["fast"]);
    assert_eq!(due("2026-01-01T02:00:00Z"), vec!["fast", "slow"]);
    assert!(env.ok(T, &["due"]).contains("no agent is due"));
}

#[test]
fn pause_and_resume_are_logged_once() {
    let env = Env::new();
    env.ok(T, &["add", "a"]);
    assert_eq!(env.ok(T, &["pause", "a"]).trim(), "a: paused");
    assert_eq!(env.ok(T, &["pause", "a"]).trim(), "a: already paused");
    assert!(
        env.ok(T, &["run", "--once"]).starts_with("0 pokes"),
        "a paused agent was poked"
    );
    assert_eq!(env.ok(T, &["resume", "a"]).trim(), "a: resumed");
    assert!(env.ok(T, &["run", "--once"]).starts_with("1 pokes"));
    let kinds: i64 = env.value("SELECT count(*) FROM poke_log WHERE kind IN ('paused', 'resumed')");
    assert_eq!(kinds, 2);
}
