//! The operator's commands: history (table, JSON, CSV, --follow), stats, next (--wait), prune,
//! check and status, through the real binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use poked::store::{HistoryFilter, OpenOptions, Store};
use serde_json::Value;

use crate::common::{Env, argv, assert_error, ms, must};

const T: &str = "2026-01-01T00:00:00Z";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A small, consistent history: `a` misses twice then shows activity, `b` is poked and its
/// command fails, `c` is removed.
///
/// 00:00 add a, b (base 1m, a command that fails), c; run (pokes a, b, c)
/// 00:05 run: a and c miss and are poked; b was due at 00:01, it misses and is poked
/// 00:06 c removed
/// 00:20 run: a misses again; b misses again
/// 00:21 activity a
fn seeded() -> Env {
    let env = Env::new();
    env.ok(T, &["add", "a"]);
    env.ok(
        T,
        &argv("add b --base 1m -- sh -c", &["echo 'no, \"sir\"' >&2; exit 7"]),
    );
    env.ok(T, &["add", "c"]);
    env.ok(T, &["run", "--once"]);
    env.ok("2026-01-01T00:05:00Z", &["run", "--once"]);
    env.ok("2026-01-01T00:06:00Z", &["rm", "c"]);
    env.ok("2026-01-01T00:20:00Z", &["run", "--once"]);
    env.ok("2026-01-01T00:21:00Z", &["activity", "a"]);
    env
}

fn field<'a>(rows: &'a Value, key: &str) -> Vec<&'a Value> {
    rows.as_array().unwrap().iter().map(|r| &r[key]).collect()
}

/// A spawned `poked` that is always killed and reaped, even when the test fails.
struct Spawned {
    child: Child,
    lines: mpsc::Receiver<String>,
    errors: mpsc::Receiver<String>,
}

/// Sends each line `from` gives to the returned channel, on a thread of its own.
fn line_channel(from: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

impl Spawned {
    fn new(env: &Env, now: Option<&str>, args: &[&str]) -> Spawned {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("poked"));
        for var in ["POKED_NOW", "POKED_DRAW", "POKED_SYNCHRONOUS", "XDG_STATE_HOME"] {
            cmd.env_remove(var);
        }
        if let Some(now) = now {
            cmd.env("POKED_NOW", now);
        }
        let mut child = cmd
            .env("POKED_DB", &env.db)
            .env("NO_COLOR", "1")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn poked");
        let lines = line_channel(child.stdout.take().unwrap());
        let errors = line_channel(child.stderr.take().unwrap());
        Spawned { child, lines, errors }
    }

    /// Waits (at most `within`) for a line on stderr that contains every one of `needles`.
    fn wait_for_log(&self, needles: &[&str], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.errors.recv_timeout(left) {
                Ok(line) if needles.iter().all(|n| line.contains(n)) => return,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needles:?} within {within:?}: {e}"),
            }
        }
    }

    fn line(&self, within: Duration) -> String {
        self.lines
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("no line within {within:?}: {e}"))
    }

    /// Waits at most `within` for the process to exit, and returns its whole stdout (the rest
    /// of it, after the lines already taken).
    fn output(&mut self, within: Duration) -> String {
        let status = self.exit(within);
        assert_eq!(status.code(), Some(0), "stderr: {}", self.stderr());
        // The reader thread ends at end of file; it cannot take long once the process is gone.
        let mut text = String::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    }

    /// Waits at most `within` for the process to exit, and returns its status.
    fn exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "poked did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it wrote to stderr so far (call after it exited).
    fn stderr(&self) -> String {
        self.errors.try_iter().collect::<Vec<_>>().join("\n")
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with the pid of a child we have not reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill failed");
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn history_selects_oldest_first_and_filters() {
    let env = seeded();
    let now = "2026-01-01T00:30:00Z";

    let all = json(&env.ok(now, &["history", "--json"]));
    let ids: Vec<i64> = field(&all, "id").iter().map(|v| v.as_i64().unwrap()).collect();
    let total = env.count("SELECT count(*) FROM poke_log");
    assert_eq!(ids.len() as i64, total);
    let ats: Vec<&str> = field(&all, "at").iter().map(|v| v.as_str().unwrap()).collect();
    assert!(ats.windows(2).all(|w| w[0] <= w[1]), "oldest first: {ats:?}");
    assert_eq!(ats[0], T);
    assert_eq!(*ats.last().unwrap(), "2026-01-01T00:21:00Z");

    // One agent, kinds and outcomes.
    let b = json(&env.ok(now, &["history", "b", "--kind", "poke", "--json"]));
    assert_eq!(field(&b, "outcome"), vec!["failed"; 3]);
    assert_eq!(field(&b, "exit_code"), vec![7; 3]);
    assert_eq!(b[0]["detail"], "no, \"sir\"");
    let misses = json(&env.ok(
        now,
        &["history", "--kind", "miss", "--kind", "activity", "--json"],
    ));
    let agents_kinds: Vec<(String, String)> = misses
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["agent_id"].as_str().unwrap().into(),
                r["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = agents_kinds
        .iter()
        .map(|(a, k)| (a.as_str(), k.as_str()))
        .collect();
    assert_eq!(
        pairs,
        // By time, then id: within one pass, the agent due first (b, due since 00:01) first.
        vec![
            ("b", "miss"),
            ("a", "miss"),
            ("c", "miss"),
            ("b", "miss"),
            ("a", "miss"),
            ("a", "activity")
        ]
    );
    let sent = json(&env.ok(now, &["history", "--outcome", "sent", "--json"]));
    assert_eq!(field(&sent, "agent_id"), vec!["a", "c", "a", "c", "a"]);

    // Time windows, absolute and relative; both ends inclusive.
    let window = json(&env.ok(
        now,
        &[
            "history",
            "--since",
            "2026-01-01T00:05:00Z",
            "--until",
            "2026-01-01T00:06:00Z",
            "--json",
        ],
    ));
    let kinds: Vec<&str> = field(&window, "kind")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["miss", "poke", "miss", "poke", "miss", "poke", "removed"]
    );
    let recent = json(&env.ok(now, &["history", "--since", "10m", "--json"]));
    assert!(
        field(&recent, "at")
            .iter()
            .all(|at| at.as_str().unwrap() >= "2026-01-01T00:20:00Z"),
        "{recent}"
    );
    assert_eq!(recent.as_array().unwrap().len(), 5, "{recent}");

    // --limit: the newest N, still oldest first.
    let last2 = json(&env.ok(now, &["history", "a", "--limit", "2", "--json"]));
    assert_eq!(field(&last2, "kind"), vec!["poke", "activity"]);
    assert_eq!(
        field(&last2, "at"),
        vec!["2026-01-01T00:20:00Z", "2026-01-01T00:21:00Z"]
    );

    // A removed agent keeps its history; an unknown one is an error.
    let c = json(&env.ok(now, &["history", "c", "--json"]));
    assert_eq!(c.as_array().unwrap().last().unwrap()["kind"], "removed");
    assert_error(&env.at(now, &["history", "nobody"]), 3, "nobody");
    assert_eq!(
        env.ok(now, &["history", "a", "--since", "1m"]).trim(),
        "no log rows match"
    );

    // The table: a header, one line per row, aligned columns.
    let table = env.ok(now, &["history", "b", "--limit", "2"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("OUTCOME"),
        "{table}"
    );
    assert!(lines[2].starts_with("2026-01-01T00:20:00Z  b "), "{table}");
    assert!(
        lines[2].contains("failed") && lines[2].ends_with(r#"no, "sir""#),
        "{table}"
    );
    let kind_col = lines[0].find("KIND").unwrap();
    assert_eq!(&lines[1][kind_col..kind_col + 4], "miss", "{table}");
    assert_eq!(&lines[2][kind_col..kind_col + 4], "poke", "{table}");
}

#[test]
fn history_csv_round_trips_awkward_details() {
    let env = seeded();
    let awkward = "comma, \"quoted\" and\nnew line\r\nand CRLF, trailing \"";
    env.sql()
        .execute(
            "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, outcome, exit_code,
                                   duration_ms, detail)
             VALUES ('a', ?1, 'poke', 300000, 0, 'failed', 1, 12, ?2)",
            rusqlite::params![ms("2026-01-01T00:22:00Z"), awkward],
        )
        .unwrap();
    let now = "2026-01-01T00:30:00Z";
    let text = env.ok(now, &["history", "--csv"]);
    assert!(text.starts_with(
        "id,agent_id,at,kind,interval_ms,consecutive_misses,outcome,exit_code,duration_ms,detail\r\n"
    ));
    let expected = json(&env.ok(now, &["history", "--json"]));
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), expected.as_array().unwrap().len());
    for (record, want) in records.iter().zip(expected.as_array().unwrap()) {
        for (key, got) in header.iter().zip(record.iter()) {
            let want = match &want[key] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(got, want, "column {key}");
        }
    }
    let last = records.last().unwrap();
    assert_eq!(&last[9], awkward);
    assert_eq!(&last[2], "2026-01-01T00:22:00Z");
    // The command's stderr (a comma, quotes and a newline) also survives.
    assert!(records.iter().any(|r| &r[9] == "no, \"sir\""));
}

#[test]
fn history_queries_use_the_log_indexes() {
    let env = seeded();
    let store = Store::open(&env.db, OpenOptions::default()).unwrap();
    let plan = |filter: HistoryFilter| store.history_plan(&filter).unwrap().join("\n");
    let since = Some(ms(T));
    let agent = Some(poked::agent::AgentId::parse("a").unwrap());
    let by_agent = (
        "agent + time",
        "USING INDEX poke_log_agent_at (agent_id=? AND at>?",
    );
    let by_time = ("time only", "USING INDEX poke_log_at (at>?");
    for ((what, index), filter) in [
        (
            by_agent,
            HistoryFilter {
                agent_id: agent.clone(),
                since,
                ..HistoryFilter::default()
            },
        ),
        (
            by_agent,
            HistoryFilter {
                agent_id: agent.clone(),
                since,
                until: Some(ms(T) + 1),
                kinds: vec![poked::log::Kind::Poke, poked::log::Kind::Miss],
                limit: Some(5),
                ..HistoryFilter::default()
            },
        ),
        (
            by_time,
            HistoryFilter {
                since,
                ..HistoryFilter::default()
            },
        ),
        (
            by_time,
            HistoryFilter {
                since,
                until: Some(ms(T) + 1),
                outcomes: vec![poked::log::Outcome::Ok],
                limit: Some(5),
                ..HistoryFilter::default()
            },
        ),
    ] {
        let plan = plan(filter);
        assert!(plan.contains(index), "{what}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "sorted by the index: {plan}");
    }
}

#[test]
fn history_follow_prints_rows_from_other_processes_and_stops_on_sigint() {
    let env = Env::new();
    env.ok(T, &["add", "a"]);
    env.ok(T, &["add", "other"]);
    let mut follow = Spawned::new(&env, Some(T), &["history", "a", "--follow", "--json"]);
    let first = json(&follow.line(Duration::from_secs(10)));
    assert_eq!(
        (first["agent_id"].as_str(), first["kind"].as_str()),
        (Some("a"), Some("added"))
    );

    // A row from another process shows up within a second of its commit; other agents' rows
    // do not show up at all.
    env.ok(T, &["miss", "other"]);
    env.ok("2026-01-01T00:01:00Z", &["miss", "a"]);
    let committed = Instant::now();
    let row = json(&follow.line(Duration::from_secs(1)));
    assert!(committed.elapsed() < Duration::from_secs(1));
    assert_eq!(
        (row["kind"].as_str(), row["consecutive_misses"].as_i64()),
        (Some("miss"), Some(1))
    );
    assert_eq!(row["at"], "2026-01-01T00:01:00Z");

    // A pending poke is printed, then printed again once its outcome is recorded.
    let pending_id = {
        let conn = env.sql();
        conn.execute(
            "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, outcome)
             VALUES ('a', ?1, 'poke', 450000, 1, 'pending')",
            [ms("2026-01-01T00:02:00Z")],
        )
        .unwrap();
        conn.last_insert_rowid()
    };
    let row = json(&follow.line(Duration::from_secs(2)));
    assert_eq!(
        (row["id"].as_i64(), row["outcome"].as_str()),
        (Some(pending_id), Some("pending"))
    );
    env.sql()
        .execute(
            "UPDATE poke_log SET outcome = 'ok', exit_code = 0, duration_ms = 5 WHERE id = ?1",
            [pending_id],
        )
        .unwrap();
    let row = json(&follow.line(Duration::from_secs(2)));
    assert_eq!(
        (row["id"].as_i64(), row["outcome"].as_str()),
        (Some(pending_id), Some("ok"))
    );

    // It holds no read transaction between polls: a TRUNCATE checkpoint (which must wait for
    // every reader of an older snapshot) completes and empties the WAL.
    let conn = env.sql();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let (busy, _, _): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0, "a reader blocked the checkpoint");

    follow.signal(libc::SIGINT);
    let status = follow.exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "stderr: {}", follow.stderr());
    assert!(
        follow.lines.recv_timeout(Duration::from_millis(200)).is_err(),
        "extra output"
    );
}

#[test]
fn history_follow_table_and_csv_keep_one_header() {
    let env = Env::new();
    env.ok(T, &["add", "a"]);
    let follow = Spawned::new(&env, Some(T), &["history", "--follow"]);
    let header = follow.line(Duration::from_secs(10));
    assert!(
        header.starts_with("TIME") && header.contains("DURATION"),
        "{header}"
    );
    let added = follow.line(Duration::from_secs(2));
    env.ok(T, &["miss", "a"]);
    let miss = follow.line(Duration::from_secs(2));
    assert!(
        added.contains(" added ") && miss.contains(" miss "),
        "{added}\n{miss}"
    );
    assert_eq!(added.find(" a "), miss.find(" a "), "columns stay aligned");
    assert_eq!(
        added.find(" 5m ").map(|i| i + 3),
        miss.find("7m30s").map(|i| i + 5),
        "intervals right-aligned in one column"
    );
    drop(follow);

    let follow = Spawned::new(&env, Some(T), &["history", "--follow", "--csv", "--limit", "1"]);
    // (`lines()` drops the CR of each CRLF.)
    assert_eq!(
        follow.line(Duration::from_secs(10)),
        "id,agent_id,at,kind,interval_ms,consecutive_misses,outcome,exit_code,duration_ms,detail"
    );
    assert!(
        follow.line(Duration::from_secs(2)).starts_with("2,a,"),
        "only the newest row first"
    );
    env.ok(T, &["reset", "a"]);
    assert!(
        follow
            .line(Duration::from_secs(2))
            .starts_with("3,a,2026-01-01T00:00:00Z,reset,300000,0,")
    );
}

#[test]
fn stats_count_the_log_per_agent() {
    let env = seeded();
    let now = "2026-01-01T00:23:00Z";
    let stats = json(&env.ok(now, &["stats", "--json"]));
    assert_eq!(field(&stats, "id"), vec!["a", "b", "c"]);
    let (a, b, c) = (&stats[0], &stats[1], &stats[2]);
    assert_eq!(a["state"], "waiting");
    assert_eq!(
        (
            a["pokes"].as_i64(),
            a["misses"].as_i64(),
            a["activities"].as_i64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(a["outcomes"]["sent"], 3);
    assert_eq!(a["outcomes"]["ok"], 0);
    assert_eq!(a["current_interval_ms"], 300_000);
    assert_eq!(a["consecutive_misses"], 0);
    assert_eq!(a["last_activity_at"], "2026-01-01T00:21:00Z");
    assert_eq!(a["freshness"], "fresh");
    assert_eq!(a["next_due_at"], "2026-01-01T00:26:00Z");
    assert_eq!(b["state"], "due");
    assert_eq!(b["outcomes"]["failed"], 3);
    assert_eq!(b["misses"], 2);
    assert_eq!(b["consecutive_misses"], 2);
    assert_eq!(b["current_interval_ms"], 135_000);
    assert_eq!(c["state"], "removed");
    assert_eq!(c["pokes"], 2);
    assert_eq!(c["current_interval_ms"], Value::Null);

    // A window counts only the rows in it; an agent with none still shows its state.
    let recent = json(&env.ok(now, &["stats", "--since", "2026-01-01T00:20:00Z", "--json"]));
    assert_eq!(field(&recent, "id"), vec!["a", "b"], "c has no rows since 00:20");
    assert_eq!(
        (recent[0]["pokes"].as_i64(), recent[0]["misses"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(recent[1]["outcomes"]["failed"], 1);

    let table = env.ok(now, &["stats"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("OUTCOMES"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("b ") && lines[2].contains("3 failed") && lines[2].contains("2m15s"),
        "{table}"
    );
    assert!(
        lines[3].starts_with("c ") && lines[3].contains("removed") && lines[3].contains("2 sent"),
        "{table}"
    );
}

#[test]
fn next_names_the_soonest_agent_and_when() {
    let env = Env::new();
    env.ok(T, &["init"]);
    assert_eq!(
        env.ok(T, &["next"]).trim(),
        "no agent will come due: there are none, or all are paused"
    );
    assert_eq!(env.ok(T, &["next", "--json"]).trim(), "null");
    env.ok(T, &["add", "slow", "--base", "10m", "--max", "1h"]);
    env.ok(T, &["add", "fast", "--base", "192s"]);
    env.ok(T, &["run", "--once"]);
    assert_eq!(
        env.ok(T, &["next"]).trim(),
        "fast is due at 2026-01-01T00:03:12Z (in 3m12s)"
    );
    assert_eq!(
        env.ok("2026-01-01T00:03:52Z", &["next"]).trim(),
        "fast is due at 2026-01-01T00:03:12Z (overdue by 40s)"
    );
    let next = json(&env.ok("2026-01-01T00:03:52Z", &["next", "--json"]));
    assert_eq!(next["id"], "fast");
    assert_eq!(next["due_in_ms"], -40_000);
    assert_eq!(next["next_due_at"], "2026-01-01T00:03:12Z");
    assert_eq!(next["current_interval_ms"], 192_000);
    env.ok(T, &["pause", "fast"]);
    assert!(
        env.ok(T, &["next"])
            .starts_with("slow is due at 2026-01-01T00:10:00Z")
    );
    env.ok(T, &["pause", "slow"]);
    assert_eq!(env.ok(T, &["next", "--json"]).trim(), "null");
}

#[test]
fn next_wait_returns_when_due_and_when_an_agent_appears() {
    let env = Env::new();
    env.ok(T, &["init"]);
    // No agent: it waits for one to appear (added now, so due at once).
    let mut wait = Spawned::new(&env, None, &["-v", "next", "--wait", "--json"]);
    wait.wait_for_log(&["no agent will come due"], Duration::from_secs(10));
    assert!(wait.child.try_wait().unwrap().is_none(), "returned with no agent");
    let out = env
        .cmd()
        .args(["add", "a", "--base", "2s", "--fresh", "1s"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let found = json(&wait.output(Duration::from_secs(3)));
    assert_eq!(found["id"], "a");

    // Poked now, so due in 2 s: it returns then, not before and not much later.
    let out = env.cmd().args(["poke", "a"]).output().unwrap();
    assert!(out.status.success());
    let mut wait = Spawned::new(&env, None, &["next", "--wait", "--json"]);
    let found = json(&wait.output(Duration::from_secs(10)));
    assert_eq!(found["id"], "a");
    let due_in = found["due_in_ms"].as_i64().unwrap();
    assert!(
        (-1000..=0).contains(&due_in),
        "printed {due_in} ms from its due time"
    );
}

#[test]
fn next_wait_honours_an_activity_that_postpones_the_agent() {
    let env = Env::new();
    let run = |args: &[&str]| {
        let out = env.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Poked now: due in 2 s. An activity now moves that to activity + 4 s (fresh).
    run(&["add", "a", "--base", "2s", "--fresh", "4s", "--very-stale", "10s"]);
    run(&["poke", "a"]);
    let poked_at: i64 = env.count("SELECT last_poke_at FROM agents");
    let mut wait = Spawned::new(&env, None, &["-v", "next", "--wait", "--json"]);
    // It has read the first due time before the activity changes it.
    wait.wait_for_log(&["waiting until it is due", "agent=a"], Duration::from_secs(2));
    run(&["activity", "a"]);
    let active_at: i64 = env.count("SELECT last_activity_at FROM agents");
    assert!(
        active_at < poked_at + 2000,
        "the activity came after the first due time; the machine is too slow for this test"
    );
    let found = json(&wait.output(Duration::from_secs(15)));
    let due = ms(found["next_due_at"].as_str().unwrap());
    assert_eq!(due, active_at + 4000, "the postponed due time");
    assert!(
        found["due_in_ms"].as_i64().unwrap() <= 0,
        "printed before it was due"
    );
}

/// Rows by hand: `(agent, at, kind, outcome)`.
fn insert_rows(env: &Env, rows: &[(&str, i64, &str, Option<&str>)]) {
    let mut conn = env.sql();
    let tx = conn.transaction().unwrap();
    for (agent, at, kind, outcome) in rows {
        tx.execute(
            "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, outcome)
             VALUES (?1, ?2, ?3, 300000, 0, ?4)",
            rusqlite::params![agent, at, kind, outcome],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn prune_keeps_each_agents_newest_row_and_pending_pokes() {
    let env = seeded(); // everything at 2026-01-01, 00:00 to 00:21
    let day = 86_400_000;
    let old = ms(T) - 30 * day;
    // A removed agent with 4500 old rows (more than one batch), an old pending poke, and an
    // agent whose only row is old.
    let mut rows: Vec<(&str, i64, &str, Option<&str>)> =
        (0..4500).map(|i| ("ghost", old + i, "miss", None)).collect();
    rows.push(("ghost", old + 5000, "poke", Some("pending")));
    rows.push(("lonely", old, "removed", None));
    rows.push(("ghost", old + 6000, "removed", None));
    insert_rows(&env, &rows);
    let total = env.count("SELECT count(*) FROM poke_log");
    let now = "2026-01-01T00:30:00Z";

    // --dry-run counts and changes nothing.
    let before = env.fingerprint();
    let dry = json(&env.ok(now, &["prune", "--older-than", "7d", "--dry-run", "--json"]));
    assert_eq!(dry["rows"], 4500, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["cutoff_at"], "2025-12-25T00:30:00Z");
    assert!(before == env.fingerprint(), "--dry-run wrote to the database");

    let text = env.ok(now, &["prune", "--older-than", "7d"]);
    assert!(
        text.starts_with("deleted 4500 log rows older than 7d (2025-12-25T00:30:00Z)"),
        "{text}"
    );
    assert_eq!(env.count("SELECT count(*) FROM poke_log"), total - 4500);
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE outcome = 'pending'"),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE agent_id = 'lonely'"),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE agent_id = 'ghost' AND kind = 'removed'"),
        1,
        "ghost's newest row stays"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE kind = 'miss' AND at < 1767225600000"),
        0
    );

    // Pruning everything older than a minute keeps each agent's newest row, and check still
    // finds every agent's state in agreement with it.
    let out = json(&env.ok("2026-01-01T01:00:00Z", &["prune", "--older-than", "1m", "--json"]));
    let newest: i64 = env.count("SELECT count(*) FROM poke_log l WHERE l.id = (SELECT max(id) FROM poke_log x WHERE x.agent_id = l.agent_id)",
    );
    let agents_in_log = env.count("SELECT count(DISTINCT agent_id) FROM poke_log");
    assert_eq!(agents_in_log, 5, "a, b, c, ghost and lonely");
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log") - 1,
        newest,
        "{out}: all but the pending poke are newest rows"
    );
    assert_eq!(
        out["rows"].as_i64().unwrap(),
        total - 4500 - env.count("SELECT count(*) FROM poke_log")
    );
    // The pending poke is ghost's, so check reports it (no daemon) and nothing else.
    let check = json(&String::from_utf8(env.at(now, &["check", "--json"]).stdout).unwrap());
    assert_eq!(
        field(&check["problems"], "rule"),
        vec!["pending_without_daemon"],
        "{check}"
    );
}

/// A fresh database with `seeded`'s history, corrupted by `sql`; `check --json` must exit 1 and
/// report exactly `rules` (agent, rule).
fn assert_check_finds(sql: &str, expected: &[(&str, &str)]) {
    let env = seeded();
    let now = "2026-01-01T00:30:00Z";
    let clean = env.at(now, &["check"]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "before corrupting: {}",
        String::from_utf8_lossy(&clean.stdout)
    );
    {
        let conn = env.sql();
        conn.execute_batch(sql).unwrap();
    }
    let out = env.at(now, &["check", "--json"]);
    assert_error(&out, 1, &format!("check found {} problem", expected.len()));
    let report = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(report["ok"], false);
    let found: Vec<(String, String)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["agent_id"].as_str().unwrap_or("-").into(),
                p["rule"].as_str().unwrap().into(),
            )
        })
        .collect();
    let found: Vec<(&str, &str)> = found.iter().map(|(a, r)| (a.as_str(), r.as_str())).collect();
    assert_eq!(found, expected, "after {sql}");
    let text = String::from_utf8(env.at(now, &["check"]).stdout).unwrap();
    for (agent, rule) in expected {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{agent} ")) && l.contains(rule)),
            "{rule} for {agent} not in:\n{text}"
        );
    }
}

#[test]
fn check_is_clean_on_a_consistent_database() {
    let env = seeded();
    let text = env.ok("2026-01-01T00:30:00Z", &["check"]);
    let rows = env.count("SELECT count(*) FROM poke_log");
    assert_eq!(
        text.trim(),
        format!("ok: the file is intact and poked's invariants hold (2 agents, {rows} log rows)")
    );
    let report = json(&env.ok("2026-01-01T00:30:00Z", &["check", "--json"]));
    assert_eq!(report["ok"], true);
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(report["agents_checked"], 2);
    assert_eq!(report["log_rows"], env.count("SELECT count(*) FROM poke_log"));
}

// Rows that break a CHECK constraint can only be written with the constraints switched off;
// `PRAGMA integrity_check` then reports the constraint too (without naming the row), and poked's
// own rules name the agent.

#[test]
fn check_names_an_interval_outside_base_and_max() {
    assert_check_finds(
        "PRAGMA ignore_check_constraints = ON;
         UPDATE agents SET current_interval_ms = max_interval_ms + 1 WHERE id = 'b';",
        &[
            ("-", "integrity"),
            ("b", "interval_in_range"),
            ("b", "latest_log_matches_state"),
        ],
    );
}

#[test]
fn check_names_negative_misses() {
    assert_check_finds(
        "PRAGMA ignore_check_constraints = ON;
         UPDATE agents SET consecutive_misses = -1 WHERE id = 'a';",
        &[
            ("-", "integrity"),
            ("a", "misses_not_negative"),
            ("a", "misses_match_log"),
            ("a", "latest_log_matches_state"),
        ],
    );
}

#[test]
fn check_names_a_wait_outside_its_interval() {
    assert_check_finds(
        "PRAGMA ignore_check_constraints = ON; UPDATE agents SET wait_ms = 0 WHERE id = 'a';",
        &[("-", "integrity"), ("a", "wait_in_range")],
    );
}

#[test]
fn check_names_misses_that_disagree_with_the_log() {
    // A hand edit of the counter: the log and the newest row both disagree.
    assert_check_finds(
        "UPDATE agents SET consecutive_misses = 3 WHERE id = 'b';",
        &[("b", "misses_match_log"), ("b", "latest_log_matches_state")],
    );
    // A lost miss row: the counter no longer matches the log, the newest row still does.
    assert_check_finds(
        "DELETE FROM poke_log WHERE id = (SELECT min(id) FROM poke_log WHERE agent_id = 'b' AND kind = 'miss');",
        &[("b", "misses_match_log")],
    );
}

#[test]
fn check_skips_the_miss_count_when_its_anchor_was_pruned() {
    let env = seeded();
    // b's only anchor is its `added` row; without it the count cannot be judged.
    env.sql()
        .execute("DELETE FROM poke_log WHERE agent_id = 'b' AND kind = 'added'", [])
        .unwrap();
    let text = env.ok("2026-01-01T00:30:00Z", &["check"]);
    assert!(text.starts_with("ok:"), "{text}");
}

#[test]
fn check_names_a_newest_row_that_disagrees_with_the_state() {
    assert_check_finds(
        "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses)
         VALUES ('a', 1767226000000, 'updated', 999999, 0);",
        &[("a", "latest_log_matches_state")],
    );
}

#[test]
fn check_names_a_pending_poke_without_a_daemon() {
    // The row agrees with a's state, so the only problem is that nobody will finish it.
    assert_check_finds(
        "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, outcome)
         VALUES ('a', 1767226000000, 'poke', 300000, 0, 'pending');
         UPDATE agents SET last_poke_at = 1767226000000 WHERE id = 'a';",
        &[("a", "pending_without_daemon")],
    );
}

#[test]
fn check_accepts_a_pending_poke_while_a_daemon_holds_the_database() {
    let env = seeded();
    insert_rows(
        &env,
        &[("a", ms("2026-01-01T00:22:00Z"), "poke", Some("pending"))],
    );
    // As the daemon writes it: the poke row and the agent's last poke together.
    env.sql()
        .execute(
            "UPDATE agents SET last_poke_at = ?1 WHERE id = 'a'",
            [ms("2026-01-01T00:22:00Z")],
        )
        .unwrap();
    let out = env.at("2026-01-01T00:30:00Z", &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let lock = poked::daemon::lock::acquire(&env.db).unwrap();
    let text = env.ok("2026-01-01T00:30:00Z", &["check"]);
    assert!(text.starts_with("ok:"), "{text}");
    drop(lock);
}

#[test]
fn check_reports_a_damaged_file() {
    let env = seeded();
    {
        // Declare the `at` index over another column: its entries no longer match the table.
        let conn = env.sql();
        conn.execute_batch(
            "PRAGMA writable_schema = ON;
             UPDATE sqlite_schema SET sql = 'CREATE INDEX poke_log_at ON poke_log (agent_id)'
             WHERE name = 'poke_log_at';",
        )
        .unwrap();
    }
    let out = env.at("2026-01-01T00:30:00Z", &["check"]);
    assert_error(&out, 1, "check found");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("- ") && l.contains("integrity") && l.contains("poke_log_at")),
        "{text}"
    );
}

#[test]
fn status_reports_the_file_agents_and_daemon() {
    let env = seeded();
    env.ok(T, &["add", "held", "--paused"]);
    let now = "2026-01-01T00:22:00Z";
    let status = json(&env.ok(now, &["status", "--json"]));
    assert_eq!(status["database"], env.db.display().to_string());
    assert_eq!(status["schema_version"], poked::store::SCHEMA_VERSION);
    assert_eq!(status["file_bytes"], std::fs::metadata(&env.db).unwrap().len());
    assert!(status["wal_bytes"].is_u64());
    // a: active at 00:21, so fresh and waiting until 00:26; b: 2 misses, due at 00:22:15, so
    // backing off; held: paused.
    assert_eq!(
        status["agents"],
        serde_json::json!({"total": 3, "due": 0, "backing_off": 1, "waiting": 1, "paused": 1, "fresh": 1, "held": 0})
    );
    assert_eq!(status["log_rows"], env.count("SELECT count(*) FROM poke_log"));
    assert_eq!(status["oldest_log_at"], T);
    assert_eq!(status["pending_pokes"], 0);
    assert_eq!(status["daemon"]["running"], false);
    assert_eq!(status["daemon"]["pid"], Value::Null);
    let text = env.ok(now, &["status"]);
    assert!(text.contains("daemon    no daemon is running"), "{text}");
    assert!(
        text.contains("agents    3 total: 0 due now, 1 backing off, 1 waiting, 1 paused; 1 fresh"),
        "{text}"
    );

    // A daemon that holds the lock and has recorded itself.
    let store = Store::open(&env.db, OpenOptions::default()).unwrap();
    let lock = poked::daemon::lock::acquire(&env.db).unwrap();
    store
        .daemon_started(std::process::id(), "9.9.9", ms("2026-01-01T00:10:00Z"))
        .unwrap();
    store.daemon_pass(ms("2026-01-01T00:21:50Z")).unwrap();
    let status = json(&env.ok(now, &["status", "--json"]));
    assert_eq!(status["daemon"]["running"], true);
    assert_eq!(status["daemon"]["pid"], std::process::id());
    assert_eq!(status["daemon"]["version"], "9.9.9");
    assert_eq!(status["daemon"]["last_pass_at"], "2026-01-01T00:21:50Z");
    let text = env.ok(now, &["status"]);
    assert!(
        text.contains(&format!(
            "daemon    running, pid {} (poked 9.9.9), started 2026-01-01T00:10:00Z (12m ago)",
            std::process::id()
        )),
        "{text}"
    );
    assert!(
        text.contains("last pass 2026-01-01T00:21:50Z (10s ago)"),
        "{text}"
    );
    // It died without recording a stop.
    drop(lock);
    let text = env.ok(now, &["status"]);
    assert!(text.contains("no daemon is running (the last one, pid"), "{text}");
    assert!(text.contains("did not stop cleanly"), "{text}");
}

#[test]
fn json_keys_mean_the_same_in_every_command() {
    let env = seeded();
    let now = "2026-01-01T00:30:00Z";
    let list = json(&env.ok(now, &["list", "--json"]));
    let stats = json(&env.ok(now, &["stats", "--json"]));
    let next = json(&env.ok(now, &["next", "--json"]));
    let show = json(&env.ok(now, &["show", "b", "--json"]));
    let history = json(&env.ok(now, &["history", "b", "--limit", "1", "--json"]));
    let b_list = &list[1];
    assert_eq!(b_list["id"], "b");
    for key in [
        "id",
        "state",
        "current_interval_ms",
        "consecutive_misses",
        "last_activity_at",
        "freshness",
        "next_due_at",
    ] {
        assert_eq!(stats[1][key], b_list[key], "stats {key}");
        assert_eq!(show[key], b_list[key], "show {key}");
    }
    assert_eq!(next["id"], "b", "b is the one due");
    for key in b_list.as_object().unwrap().keys() {
        assert_eq!(next[key], b_list[key], "next {key}");
    }
    assert_eq!(
        history[0],
        show["recent_log"].as_array().unwrap().last().unwrap().clone()
    );
}

#[test]
fn check_and_prune_during_writes_report_no_false_breach() {
    let env = Env::new();
    env.ok(T, &["add", "a"]);
    env.ok(T, &["add", "b"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, stop) = (env.db.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let store = Store::open(
                &db,
                OpenOptions {
                    synchronous: poked::store::Synchronous::Normal,
                    ..OpenOptions::default()
                },
            )
            .unwrap();
            let draw = poked::random::FixedDraw(0.0);
            let mut n = 0i64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for id in ["a", "b"] {
                    let id = poked::agent::AgentId::parse(id).unwrap();
                    let at = ms(T) + n;
                    match n % 4 {
                        0 | 1 => store.record_miss(&id, at, &draw).unwrap(),
                        2 => store.record_poke(&id, at, &draw).unwrap(),
                        _ => store.record_activity(&id, at, at, &draw).unwrap(),
                    };
                }
                n += 1;
            }
            n
        })
    };
    let mut results = Vec::new();
    for i in 0..6 {
        results.push(env.at("2026-01-02T00:00:00Z", &["check"]));
        if i % 2 == 1 {
            results.push(env.at("2026-01-02T00:00:00Z", &["prune", "--older-than", "1s"]));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let transitions = writer.join().unwrap();
    assert!(transitions > 10, "the writer barely ran ({transitions} rounds)");
    for out in results {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(env.ok("2026-01-02T00:00:00Z", &["check"]).starts_with("ok:"));
}

// Defects a review found (issue 9), each pinned by a test written before its fix.

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
fn set_raises_max_and_very_stale_as_add_does() {
    let env = Env::new();
    must(&env.db, &["add", "w"]);
    let out = env
        .cmd()
        .args(["set", "w", "--base", "40m", "--fresh", "20m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (max, very_stale): (i64, i64) = env.row("SELECT max_interval_ms, very_stale_ms FROM agents");
    assert_eq!((max, very_stale), (40 * 60_000, 20 * 60_000));
}
