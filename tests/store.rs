//! The store through the library: reopening, atomic transitions, the due query's plan,
//! migrations.

use poked::agent::{AgentId, Rung, Settings};
use poked::backoff::Strategy;
use poked::random::FixedDraw;
use std::sync::atomic::AtomicBool;

use poked::clock::FixedClock;
use poked::daemon::{PassOptions, Scheduler, with_scheduler};
use poked::log::Kind;
use poked::store::{HistoryFilter, OpenOptions, Store};

use crate::common::{Env, fingerprint, ms};

fn open(env: &Env) -> Store {
    Store::open(
        &env.db,
        OpenOptions {
            create: true,
            ..OpenOptions::default()
        },
    )
    .expect("open store")
}

/// A new database, created through the library, and the store on it.
fn new_store() -> (Env, Store) {
    let env = Env::new();
    let store = open(&env);
    (env, store)
}

fn id(text: &str) -> AgentId {
    AgentId::parse(text).unwrap()
}

#[test]
fn close_and_reopen_keeps_every_field() {
    let env = Env::new();
    let draw = FixedDraw(0.5);
    let t0 = ms("2026-01-01T00:00:00Z");
    let settings = Settings {
        strategy: Strategy::Exponential,
        base_interval_ms: 90_000,
        max_interval_ms: 3_600_000,
        factor: 1.25,
        jitter: 0.2,
        fresh_ms: 60_000,
        very_stale_ms: 600_000,
        command: Some(vec![
            "tmux".into(),
            "send-keys".into(),
            "it's \"quoted\", ok".into(),
            "Enter".into(),
        ]),
        heartbeat_file: Some("/tmp/hb".into()),
        activity_cmd: Some(vec!["date".into(), "+%s".into()]),
        echo_ms: 5_000,
        only_if: Some(vec!["bd".into(), "ready".into()]),
        grace_ms: 60_000,
        escalate_limit: 2,
        escalate_window_ms: 3_600_000,
    };
    let ladder = [
        poked::agent::Rung {
            misses: 2,
            command: vec!["tmux".into(), "kill-session".into()],
        },
        poked::agent::Rung {
            misses: 4,
            command: vec!["notify".into(), "a human".into()],
        },
    ];
    let before = {
        let store = open(&env);
        store
            .add(&id("gastown/crew/max"), &settings, &ladder, false, t0, &draw)
            .unwrap();
        store
            .record_poke(&id("gastown/crew/max"), t0 + 1000, &draw)
            .unwrap();
        store
            .record_miss(&id("gastown/crew/max"), t0 + 2000, &draw)
            .unwrap();
        store
            .record_activity(&id("gastown/crew/max"), t0 + 1500, t0 + 3000, &draw)
            .unwrap();
        store
            .record_miss(&id("gastown/crew/max"), t0 + 4000, &draw)
            .unwrap();
        store
            .set_paused(&id("gastown/crew/max"), true, t0 + 5000)
            .unwrap();
        store.agent(&id("gastown/crew/max")).unwrap()
    };
    let after = open(&env).agent(&id("gastown/crew/max")).unwrap();
    assert_eq!(after, before);
    assert_eq!(after.settings, settings);
    assert_eq!(after.current_interval_ms, 180_000, "exponential doubles 90s");
    assert_eq!(after.wait_ms, 162_000, "jitter 0.2 with draw 0.5 takes 10%");
    assert_eq!(after.last_activity_at, Some(t0 + 1500));
    assert_eq!(after.last_poke_at, Some(t0 + 1000));
    assert!(after.paused);
    assert_eq!(after.next_due_at, None, "paused agents are never due");
    assert_eq!(open(&env).rungs(&id("gastown/crew/max")).unwrap(), ladder);
}

#[test]
fn a_transition_that_fails_halfway_changes_nothing() {
    let env = Env::new();
    let draw = FixedDraw(0.0);
    let store = open(&env);
    store
        .add(&id("a"), &Settings::default(), &[], false, 0, &draw)
        .unwrap();
    // The log insert of a miss fails after the agent row was already updated in the same
    // transaction: the whole transition must roll back.
    env.sql()
        .execute_batch(
            "CREATE TRIGGER fail_miss BEFORE INSERT ON poke_log WHEN NEW.kind = 'miss'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let before = store.agent(&id("a")).unwrap();
    let rows = |env: &Env| env.value::<i64>("SELECT count(*) FROM poke_log");
    let log_before = rows(&env);
    let err = store
        .record_miss(&id("a"), 1000, &draw)
        .expect_err("the injected failure");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(store.agent(&id("a")).unwrap(), before);
    assert_eq!(rows(&env), log_before);
    // A transition the trigger lets through still works.
    let after = store.record_poke(&id("a"), 2000, &draw).unwrap();
    assert_eq!(after.last_poke_at, Some(2000));
}

#[test]
fn transitions_on_unknown_agents_are_errors() {
    let (_env, store) = new_store();
    let draw = FixedDraw(0.0);
    let nobody = id("nobody");
    assert_eq!(store.record_miss(&nobody, 0, &draw).unwrap_err().exit_code(), 3);
    assert_eq!(store.record_poke(&nobody, 0, &draw).unwrap_err().exit_code(), 3);
    assert_eq!(store.record_reset(&nobody, 0, &draw).unwrap_err().exit_code(), 3);
    assert_eq!(
        store
            .record_activity(&nobody, 0, 0, &draw)
            .unwrap_err()
            .exit_code(),
        3
    );
    assert_eq!(store.set_paused(&nobody, true, 0).unwrap_err().exit_code(), 3);
    assert_eq!(store.remove(&nobody, false, 0).unwrap_err().exit_code(), 3);
}

#[test]
fn the_due_query_uses_the_index() {
    let (_env, store) = new_store();
    let plans = store.due_query_plans().unwrap();
    assert_eq!(plans.len(), 2, "the due query and its command-less continuation");
    for plan in plans {
        assert!(plan.contains("INDEX agents_next_due"), "due query plan: {plan}");
        assert!(!plan.contains("SCAN agents"), "due query scans the table: {plan}");
        assert!(
            !plan.contains("TEMP B-TREE"),
            "due query sorts instead of reading the index in order: {plan}"
        );
    }
}

/// Runs `f` with a scheduler of one worker at `now` (jitter draw 0), then waits for its
/// commands and records their outcomes.
fn with_one_worker<T>(store: &Store, now: i64, f: impl FnOnce(&mut Scheduler<'_>) -> T) -> T {
    let options = PassOptions {
        concurrency: 1,
        ..PassOptions::default()
    };
    let (stop, cancel) = (AtomicBool::new(false), AtomicBool::new(false));
    with_scheduler(
        store,
        &FixedClock::new(now),
        &FixedDraw(0.0),
        &options,
        &stop,
        &cancel,
        f,
    )
}

#[test]
fn a_pass_with_every_worker_taken_still_pokes_the_agents_that_need_none() {
    // Three agents with a command fall due first, then two without: with one worker, a pass
    // starts one command and still commits the pokes that need no worker, due after the rest.
    let (_env, store) = new_store();
    let draw = FixedDraw(0.0);
    let with_command = Settings {
        command: Some(vec!["true".to_string()]),
        ..Settings::default()
    };
    for (i, name) in ["c1", "c2", "c3", "p1", "p2"].into_iter().enumerate() {
        let settings = if name.starts_with('c') {
            &with_command
        } else {
            &Settings::default()
        };
        store
            .add(&id(name), settings, &[], false, i as i64, &draw)
            .unwrap();
    }
    let now = 3_600_000 * 24;
    let report = with_one_worker(&store, now, |s| s.pass(now, true).unwrap());
    assert_eq!(report.pokes, 3, "{report:?}");
    assert!(report.deferred, "two agents wait for the worker: {report:?}");
    let poked: Vec<String> = store
        .history(&HistoryFilter {
            kinds: vec![Kind::Poke],
            ..HistoryFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|row| row.agent_id.to_string())
        .collect();
    let mut poked = poked;
    poked.sort();
    assert_eq!(poked, ["c1", "p1", "p2"]);
}

#[test]
fn an_escalation_of_an_agent_without_a_command_waits_for_a_worker() {
    // Two agents with a ladder but no command of their own reach their rung in the same pass.
    // The due scan kept no worker for them (they need none to be poked), yet the rung runs a
    // command: with one worker, one escalation is committed and started, and the other waits
    // for the next pass instead of being committed to wait in the queue (its time logged
    // before its command could start).
    let (_env, store) = new_store();
    let draw = FixedDraw(0.0);
    let rung = Rung::parse("1:true").unwrap();
    for name in ["e1", "e2"] {
        store
            .add(
                &id(name),
                &Settings::default(),
                std::slice::from_ref(&rung),
                false,
                0,
                &draw,
            )
            .unwrap();
        store.record_poke(&id(name), 1_000, &draw).unwrap();
    }
    // A day later both pokes went unanswered: each pass records a miss and reaches rung 1.
    let now = 3_600_000 * 24;
    let escalations = |store: &Store| {
        store
            .history(&HistoryFilter {
                kinds: vec![Kind::Escalation],
                ..HistoryFilter::default()
            })
            .unwrap()
            .len()
    };
    let first = with_one_worker(&store, now, |s| {
        let report = s.pass(now, true).unwrap();
        (report, escalations(&store))
    });
    assert_eq!(first.1, 1, "one worker, one escalation committed: {:?}", first.0);
    assert!(
        first.0.deferred,
        "the other agent waits for the worker: {:?}",
        first.0
    );
    // The next pass, once the worker is free, escalates the other.
    let report = with_one_worker(&store, now, |s| s.pass(now, true).unwrap());
    assert_eq!((report.escalations, escalations(&store)), (1, 2), "{report:?}");
}

#[test]
fn the_schema_refuses_impossible_hand_edits() {
    let (env, store) = new_store();
    store
        .add(&id("a"), &Settings::default(), &[], false, 0, &FixedDraw(0.0))
        .unwrap();
    let conn = env.sql();
    for edit in [
        "UPDATE agents SET base_interval_ms = 0",
        "UPDATE agents SET max_interval_ms = 1000",
        "UPDATE agents SET factor = 0.5",
        "UPDATE agents SET factor = 9e999",
        "UPDATE agents SET jitter = 2",
        "UPDATE agents SET fresh_ms = very_stale_ms + 1",
        "UPDATE agents SET current_interval_ms = max_interval_ms + 1",
        "UPDATE agents SET wait_ms = 0",
        "UPDATE agents SET consecutive_misses = -1",
        "UPDATE agents SET paused = 2",
        "UPDATE agents SET strategy = 'linear'",
        "UPDATE agents SET command = 'tmux'",
        "UPDATE agents SET heartbeat_file = 'relative'",
        "UPDATE agents SET id = 'a b'",
        "UPDATE poke_log SET kind = 'poke'",
        "UPDATE poke_log SET at = 5",
        "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses) VALUES ('a', 0, 'poke', 1, 0)",
        "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, outcome) VALUES ('a', 0, 'miss', 1, 0, 'ok')",
    ] {
        assert!(conn.execute_batch(edit).is_err(), "the schema accepted: {edit}");
    }
    // A legitimate hand edit is accepted and the generated column follows it.
    conn.execute_batch("UPDATE agents SET paused = 1").unwrap();
    assert_eq!(store.agent(&id("a")).unwrap().next_due_at, None);
}

#[test]
fn migrations_validate_and_opening_twice_is_a_no_op() {
    poked::store::migrations()
        .validate()
        .expect("migrations validate");
    let env = Env::new();
    drop(open(&env));
    let first = fingerprint(&env.db);
    drop(open(&env));
    assert!(
        fingerprint(&env.db) == first,
        "opening an up-to-date database changed it"
    );
    let (version, app_id): (i64, i64) =
        env.row("SELECT user_version, application_id FROM pragma_user_version, pragma_application_id");
    assert_eq!(version, poked::store::SCHEMA_VERSION);
    assert_eq!(app_id, i64::from(poked::store::APPLICATION_ID));
}

#[test]
fn set_clamps_the_interval_and_logs_the_change() {
    let (env, store) = new_store();
    let draw = FixedDraw(0.0);
    store
        .add(&id("a"), &Settings::default(), &[], false, 0, &draw)
        .unwrap();
    for t in 1..=4 {
        store.record_miss(&id("a"), t, &draw).unwrap();
    }
    assert_eq!(store.agent(&id("a")).unwrap().current_interval_ms, 1_518_750);
    let patch = poked::store::Patch {
        max_interval_ms: Some(600_000),
        ..Default::default()
    };
    let after = store.set(&id("a"), &patch, 10, &draw).unwrap().expect("changed");
    assert_eq!((after.current_interval_ms, after.wait_ms), (600_000, 600_000));
    let detail: String = env.value("SELECT detail FROM poke_log WHERE kind = 'updated'");
    assert_eq!(detail, "max 30m → 10m");
    assert_eq!(
        store.set(&id("a"), &patch, 11, &draw).unwrap(),
        None,
        "no change, no row"
    );
}

#[test]
fn remove_keeps_history_unless_purged() {
    let (env, store) = new_store();
    let draw = FixedDraw(0.0);
    let count = |agent: &str| {
        env.sql()
            .query_row(
                "SELECT count(*) FROM poke_log WHERE agent_id = ?1",
                [agent],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
    };
    for name in ["keep", "purge"] {
        store
            .add(&id(name), &Settings::default(), &[], false, 0, &draw)
            .unwrap();
        store.record_poke(&id(name), 1, &draw).unwrap();
    }
    store.remove(&id("keep"), false, 2).unwrap();
    assert_eq!(count("keep"), 3, "added, poke, removed");
    assert_eq!(store.remove(&id("purge"), true, 2).unwrap(), 2);
    assert_eq!(count("purge"), 0);
    assert!(store.agents().unwrap().is_empty());
}

#[test]
fn the_embedding_example_keeps_its_backoff_across_restarts() {
    // `cargo test` builds the examples beside the binaries it tests.
    let poked = assert_cmd::cargo::cargo_bin!("poked");
    let example = poked.parent().unwrap().join("examples/embed");
    if !example.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing: `cargo test` builds it",
            example.display()
        );
        eprintln!("examples/embed is not built (run `cargo test`, not only `--test tests`): skipped");
        return;
    }
    let env = Env::new();
    let run = || {
        let out = std::process::Command::new(&example)
            .arg(&env.db)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(
        first.contains("gastown-witness interval at start: 300000 ms"),
        "{first}"
    );
    assert!(
        first.contains("gastown-witness interval now: 450000 ms"),
        "{first}"
    );
    // A restart continues the backoff instead of starting from scratch.
    let second = run();
    assert!(
        second.contains("gastown-witness interval at start: 450000 ms"),
        "{second}"
    );
    assert!(second.contains("stats: gastown-witness 675000 ms"), "{second}");
    assert!(second.contains("stats: mayor 300000 ms"), "{second}");
}

#[test]
fn the_vocabulary_matches_the_schema_checks() {
    use poked::log::{Kind, Outcome};
    use std::collections::BTreeSet;
    let (env, store) = new_store();
    drop(store);
    let sql: String = env.value("SELECT sql FROM sqlite_schema WHERE name = 'poke_log'");
    // The words a column's own CHECK lists: `column = 'word'` from its definition to its end.
    let listed = |column: &str| -> BTreeSet<String> {
        let start = sql
            .find(&format!("\n    {column} "))
            .unwrap_or_else(|| panic!("no {column} column in {sql}"));
        let definition = &sql[start..];
        let definition = &definition[..definition.find("),\n").expect("the end of the CHECK")];
        definition
            .split(&format!("{column} = '"))
            .skip(1)
            .map(|rest| rest[..rest.find('\'').unwrap()].to_string())
            .collect()
    };
    let kinds: BTreeSet<String> = Kind::ALL.iter().map(|k| k.as_str().to_string()).collect();
    let outcomes: BTreeSet<String> = Outcome::ALL.iter().map(|o| o.as_str().to_string()).collect();
    assert_eq!(
        listed("kind"),
        kinds,
        "the kinds in the schema and in poked::log::Kind differ"
    );
    assert_eq!(
        listed("outcome"),
        outcomes,
        "the outcomes in the schema and in poked::log::Outcome differ"
    );
    // And SQLite holds to them: every word goes in, a new one does not.
    let mut conn = env.sql();
    let tx = conn.transaction().unwrap();
    let insert = |kind: &str, outcome: Option<&str>| {
        tx.execute(
            "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, outcome)
             VALUES ('x', 0, ?1, 1, 0, ?2)",
            rusqlite::params![kind, outcome],
        )
    };
    for kind in Kind::ALL {
        let has_outcome = matches!(kind, Kind::Poke | Kind::Escalation | Kind::Skip);
        insert(kind.as_str(), has_outcome.then_some("sent")).unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    for outcome in Outcome::ALL {
        insert("poke", Some(outcome.as_str())).unwrap_or_else(|e| panic!("{outcome}: {e}"));
    }
    assert!(
        insert("nudge", None).is_err(),
        "a kind poked does not know went in"
    );
    assert!(
        insert("poke", Some("lost")).is_err(),
        "an outcome poked does not know went in"
    );
}
