//! `poked import` and `poked export`: the round trip, batches and bad lines, stdin, defaults,
//! existing ids.

use serde_json::Value;

use crate::common::{Env, assert_error};

const T: &str = "2026-01-01T00:00:00Z";
const LATER: &str = "2026-01-01T01:00:00Z";

/// A database with agents in every kind of state: a command with awkward words, a heartbeat
/// file, jitter, paused, misses, activity, a poke, and a supervised agent with a probe (a value
/// seen), a gate (a skip's hold), a ladder and its cap.
fn fleet() -> Env {
    let env = Env::new();
    let heartbeat = env.dir.path().join("no-such-heartbeat");
    env.ok(
        T,
        &[
            "add",
            "gastown/crew/max",
            "--strategy",
            "exponential",
            "--base",
            "90s",
            "--max",
            "1h",
            "--jitter",
            "0.25",
            "--fresh",
            "1m",
            "--very-stale",
            "10m",
            "--heartbeat-file",
            heartbeat.to_str().unwrap(),
            "--",
            "true",
            "it's \"quoted\", ok",
            "Enter",
        ],
    );
    env.ok(T, &["add", "hq-mayor", "--paused"]);
    env.ok(T, &["add", "a@b:c.d_e-f", "--strategy", "fixed"]);
    env.ok(
        T,
        &[
            "add",
            "sup",
            "--activity-cmd",
            "echo 1767225000",
            "--echo",
            "5s",
            "--only-if",
            "sh -c 'exit 3'",
            "--grace",
            "1m",
            "--escalate",
            "2:tmux kill-session -t 'sup x'",
            "--escalate",
            "4:notify \"a human\"",
            "--escalate-limit",
            "2/3h",
        ],
    );
    env.ok("2026-01-01T00:05:00Z", &["run", "--once"]);
    env.ok("2026-01-01T00:20:00Z", &["miss", "a@b:c.d_e-f"]);
    env.ok("2026-01-01T00:30:00Z", &["activity", "gastown/crew/max"]);
    env
}

fn export(env: &Env, now: &str) -> String {
    env.ok(now, &["export"])
}

fn import_stdin(env: &Env, now: &str, args: &[&str], input: &str) -> std::process::Output {
    env.cmd()
        .env("POKED_NOW", now)
        .args(args)
        .write_stdin(input)
        .output()
        .expect("run poked")
}

fn agent_count(env: &Env) -> i64 {
    env.value("SELECT count(*) FROM agents")
}

#[test]
fn export_then_import_into_a_fresh_database_round_trips() {
    let source = fleet();
    let first = export(&source, LATER);
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 4, "{first}");
    // By id, one object per line, with the keys of `list --json`.
    let ids: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("JSON line")["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["a@b:c.d_e-f", "gastown/crew/max", "hq-mayor", "sup"]);
    let sup: Value = serde_json::from_str(lines[3]).unwrap();
    assert_eq!(
        sup["rungs"][1]["command"],
        serde_json::json!(["notify", "a human"])
    );
    assert!(
        sup["held_until_at"].is_string() && sup["probe_seen_at"].is_string(),
        "{sup}"
    );
    let listed: Value = serde_json::from_str(&source.ok(LATER, &["list", "--json"])).unwrap();
    let exported: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed, Value::Array(exported), "export differs from list --json");

    let file = source.dir.path().join("fleet.jsonl");
    std::fs::write(&file, &first).unwrap();
    let target = Env::new();
    let out = target.ok(LATER, &["import", file.to_str().unwrap()]);
    assert_eq!(out.trim(), "imported 4 agents");
    assert_eq!(
        export(&target, LATER),
        first,
        "export → import → export changed something"
    );

    // One `added` row per agent, carrying the agent's interval and misses: the newest row of
    // each agent records the state it left, as after `add`.
    let log: Vec<(String, String, i64, i64)> = target
        .sql()
        .prepare("SELECT agent_id, kind, interval_ms, consecutive_misses FROM poke_log ORDER BY agent_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        log,
        vec![
            ("a@b:c.d_e-f".to_string(), "added".to_string(), 300_000, 1),
            ("gastown/crew/max".to_string(), "added".to_string(), 90_000, 0),
            ("hq-mayor".to_string(), "added".to_string(), 300_000, 0),
            ("sup".to_string(), "added".to_string(), 300_000, 0),
        ]
    );
    // And `check` agrees: an imported agent's misses are anchored on its `added` row.
    target.ok(LATER, &["check"]);
}

#[test]
fn a_bad_line_in_a_batch_writes_nothing_and_names_its_line() {
    let env = Env::new();
    env.ok(T, &["add", "existing"]);
    let before = env.fingerprint();
    let mut text = String::new();
    for i in 1..=9 {
        if i == 6 {
            text.push_str("{\"id\":\"bad\",\"base_interval_ms\":600000,\"max_interval_ms\":60000}\n");
        } else {
            text.push_str(&format!("{{\"id\":\"agent-{i}\"}}\n"));
        }
    }
    let file = env.dir.path().join("bad.jsonl");
    std::fs::write(&file, &text).unwrap();
    let out = env.at(T, &["import", file.to_str().unwrap()]);
    assert_error(&out, 2, "line 6");
    assert_error(&out, 2, "max_interval_ms");
    assert_eq!(env.fingerprint(), before, "a refused import changed the database");
    assert_eq!(agent_count(&env), 1);
}

#[test]
fn a_bad_line_in_a_later_batch_keeps_the_batches_before_it() {
    let env = Env::new();
    let batch = poked::transfer::BATCH;
    let mut text = String::new();
    for i in 1..=batch + 10 {
        if i == batch + 3 {
            text.push_str("{\"id\":\"x\",\"wait_ms\":0}\n");
        } else {
            text.push_str(&format!("{{\"id\":\"agent-{i:05}\"}}\n"));
        }
    }
    let out = import_stdin(&env, T, &["import", "-"], &text);
    let line = format!("line {}", batch + 3);
    assert_error(&out, 2, &line);
    assert_error(
        &out,
        2,
        &format!("the {batch} agents of lines 1-{batch} were imported"),
    );
    assert_eq!(agent_count(&env), batch as i64);
    env.ok(T, &["check"]);
}

#[test]
fn stdin_is_read_with_a_dash() {
    let env = Env::new();
    let out = import_stdin(
        &env,
        T,
        &["import", "-"],
        "{\"id\":\"one\"}\n\n{\"id\":\"two\",\"command\":[\"echo\",\"hi\"],\"paused\":true}\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "imported 2 agents");
    let two: Value = serde_json::from_str(&env.ok(T, &["show", "two", "--json"])).unwrap();
    assert_eq!(two["command"], serde_json::json!(["echo", "hi"]));
    assert_eq!(two["paused"], Value::Bool(true));
    assert_eq!(two["next_due_at"], Value::Null);
}

#[test]
fn a_line_with_only_an_id_takes_the_defaults_of_add() {
    let env = Env::new();
    env.ok(T, &["add", "added"]);
    let out = import_stdin(&env, T, &["import", "-"], "{\"id\":\"imported\"}\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let agents: Value = serde_json::from_str(&env.ok(T, &["list", "--json"])).unwrap();
    let mut added = agents[0].clone();
    let imported = agents[1].clone();
    assert_eq!(added["id"], "added");
    added["id"] = Value::from("imported");
    assert_eq!(imported, added, "an import of {{\"id\"}} differs from `add`");
    assert_eq!(imported["current_interval_ms"], 300_000);
    assert_eq!(imported["state"], "due");
}

#[test]
fn an_existing_id_stops_the_import_unless_replace() {
    let env = Env::new();
    env.ok(T, &["add", "mayor", "--base", "1m"]);
    env.ok(T, &["miss", "mayor"]);
    let before = env.fingerprint();
    let line =
        "{\"id\":\"new\"}\n{\"id\":\"mayor\",\"base_interval_ms\":120000,\"max_interval_ms\":600000}\n";
    let out = import_stdin(&env, T, &["import", "-"], line);
    assert_error(&out, 1, "line 2: agent \"mayor\" already exists");
    assert_eq!(env.fingerprint(), before);

    let out = import_stdin(&env, LATER, &["import", "-", "--replace"], line);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "imported 2 agents (1 new, 1 replaced)"
    );
    let mayor: Value = serde_json::from_str(&env.ok(LATER, &["show", "mayor", "--json"])).unwrap();
    assert_eq!(mayor["base_interval_ms"], 120_000);
    assert_eq!(mayor["current_interval_ms"], 120_000);
    assert_eq!(mayor["consecutive_misses"], 0);
    let kinds: Vec<String> = env
        .sql()
        .prepare("SELECT kind FROM poke_log WHERE agent_id = 'mayor' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kinds, ["added", "miss", "added"], "the history must stay");
    env.ok(LATER, &["check"]);
}

#[test]
fn bad_lines_are_named_and_a_bad_first_batch_creates_no_file() {
    for (input, needle) in [
        ("not json\n", "line 1: not a JSON object"),
        ("[1, 2]\n", "line 1: not a JSON object"),
        ("{\"base_interval_ms\":1000}\n", "missing \"id\""),
        ("{\"id\":\"a b\"}\n", "invalid agent id"),
        ("{\"id\":\"x\",\"bogus\":1}\n", "unknown key \"bogus\""),
        ("{\"id\":\"x\",\"strategy\":\"linear\"}\n", "strategy"),
        ("{\"id\":\"x\",\"base_interval_ms\":1.5}\n", "base_interval_ms"),
        ("{\"id\":\"x\",\"consecutive_misses\":-1}\n", "consecutive_misses"),
        (
            "{\"id\":\"x\",\"current_interval_ms\":1}\n",
            "current_interval_ms",
        ),
        ("{\"id\":\"x\",\"wait_ms\":400000}\n", "wait_ms"),
        ("{\"id\":\"x\",\"command\":[]}\n", "command"),
        ("{\"id\":\"x\",\"heartbeat_file\":\"rel\"}\n", "heartbeat_file"),
        ("{\"id\":\"x\",\"last_poke_at\":\"yesterday\"}\n", "last_poke_at"),
        ("{\"id\":\"ok\"}\n{\"id\":\"x\",\"paused\":\"yes\"}\n", "line 2"),
    ] {
        let env = Env::new();
        let out = import_stdin(&env, T, &["import", "-"], input);
        assert_error(&out, 2, needle);
        assert!(!env.db.exists(), "{input:?} created the database");
    }
}

#[test]
fn times_in_the_future_are_taken_as_now() {
    let env = Env::new();
    let line =
        "{\"id\":\"x\",\"last_poke_at\":\"2030-01-01T00:00:00Z\",\"created_at\":\"2030-01-01T00:00:00Z\"}\n";
    let out = import_stdin(&env, T, &["import", "-"], line);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let x: Value = serde_json::from_str(&env.ok(T, &["show", "x", "--json"])).unwrap();
    assert_eq!(x["last_poke_at"], T);
    assert_eq!(x["created_at"], T);
    assert_eq!(x["next_due_at"], "2026-01-01T00:05:00Z");
}

#[test]
fn export_needs_a_database_and_prints_nothing_for_none() {
    let env = Env::new();
    assert_error(&env.at(T, &["export"]), 1, "no database");
    env.ok(T, &["init"]);
    assert_eq!(env.ok(T, &["export", "--json-lines"]), "");
}
