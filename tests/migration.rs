//! Upgrading a database written by an older poked (SPEC §4, §7.5): in place, in one
//! transaction, every row and id kept.

use rusqlite::Connection;

use crate::common::{Env, all_rows, assert_error, ms};

/// A version-1 database as the first poked wrote it: two agents (one paused, one with a
/// command and a heartbeat file), the history of a removed one, and a finished poke.
fn version_1(env: &Env) {
    let conn = Connection::open(&env.db).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
    conn.execute_batch(include_str!("../migrations/0001_init.sql"))
        .unwrap();
    conn.execute_batch("PRAGMA user_version = 1").unwrap();
    let t0 = ms("2026-01-01T00:00:00Z");
    conn.execute_batch(&format!(
        "INSERT INTO agents (id, strategy, base_interval_ms, max_interval_ms, factor, jitter, fresh_ms,
             very_stale_ms, current_interval_ms, wait_ms, consecutive_misses, last_poke_at, last_activity_at,
             paused, command, heartbeat_file, created_at, updated_at)
         VALUES ('hq-mayor', 'geometric', 300000, 1800000, 1.5, 0.0, 300000, 900000, 450000, 450000, 1,
                 {t5}, NULL, 0, '[\"tmux\",\"send-keys\",\"-t\",\"hq\",\"hi\",\"Enter\"]', '/run/hq.hb', {t0}, {t5}),
                ('nightly', 'fixed', 3600000, 3600000, 1.5, 0.0, 300000, 900000, 3600000, 3600000, 0,
                 NULL, NULL, 1, NULL, NULL, {t0}, {t0});
         INSERT INTO poke_log (id, agent_id, at, kind, interval_ms, consecutive_misses, outcome, exit_code, duration_ms, detail, pgid)
         VALUES (1, 'hq-mayor', {t0}, 'added', 300000, 0, NULL, NULL, NULL, 'geometric 5m..30m ×1.5', NULL),
                (2, 'nightly', {t0}, 'added', 3600000, 0, NULL, NULL, NULL, 'fixed 1h..1h ×1.5, paused', NULL),
                (3, 'hq-mayor', {t0}, 'poke', 300000, 0, 'ok', 0, 12, NULL, NULL),
                (4, 'gone', {t0}, 'added', 300000, 0, NULL, NULL, NULL, 'geometric 5m..30m ×1.5', NULL),
                (5, 'gone', {t0}, 'poke', 300000, 0, 'sent', NULL, NULL, NULL, NULL),
                (6, 'gone', {t0}, 'removed', 300000, 0, NULL, NULL, NULL, NULL, NULL),
                (7, 'hq-mayor', {t5}, 'miss', 450000, 1, NULL, NULL, NULL, NULL, NULL),
                (8, 'hq-mayor', {t5}, 'poke', 450000, 1, 'failed', 1, 7, 'no server', 4242);",
        t5 = t0 + 300_000
    ))
    .unwrap();
}

/// A log row: id, agent, kind, outcome, detail.
type Row = (i64, String, String, Option<String>, Option<String>);

fn rows(conn: &Connection) -> Vec<Row> {
    all_rows(
        conn,
        "SELECT id, agent_id, kind, outcome, detail FROM poke_log ORDER BY id",
    )
}

/// An agent: id, interval, next due, paused.
type Agent = (String, i64, Option<i64>, bool);

fn agents(conn: &Connection) -> Vec<Agent> {
    all_rows(
        conn,
        "SELECT id, current_interval_ms, next_due_at, paused FROM agents ORDER BY id",
    )
}

#[test]
fn a_version_1_database_is_upgraded_in_place_keeping_every_row() {
    let env = Env::new();
    version_1(&env);
    let before = rows(&env.sql());
    let agents_before = agents(&env.sql());
    let out = env.ok("2026-01-01T00:06:00Z", &["init"]);
    assert!(
        out.contains(&format!("schema version {}", poked::store::SCHEMA_VERSION)),
        "{out}"
    );
    let conn = env.sql();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, poked::store::SCHEMA_VERSION);
    assert_eq!(rows(&conn), before, "log rows changed");
    assert_eq!(agents(&conn), agents_before, "agents changed");
    let (echo, grace, limit, window, held): (i64, i64, i64, i64, Option<i64>) = conn
        .query_row(
            "SELECT echo_ms, grace_ms, escalate_limit, escalate_window_ms, held_until_at FROM agents WHERE id = 'hq-mayor'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        (echo, grace, limit, window, held),
        (2000, 300_000, 3, 21_600_000, None)
    );
    // The process group column, which nothing read (recovery finds commands by their
    // environment) and which cost every poke a third flushed transaction, is gone.
    let pgid: i64 = env.value("SELECT count(*) FROM pragma_table_info('poke_log') WHERE name = 'pgid'");
    assert_eq!(pgid, 0, "poke_log still has its pgid column");
    // The counters start from the log as it stood.
    let pokes: i64 = conn
        .query_row(
            "SELECT n FROM counters WHERE agent_id = 'hq-mayor' AND kind = 'poke' AND outcome = 'ok'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pokes, 1);
    let metrics_rows: i64 = conn
        .query_row("SELECT sum(n) FROM counters", [], |r| r.get(0))
        .unwrap();
    assert_eq!(metrics_rows, 8);
    let check = env.at("2026-01-01T00:06:00Z", &["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // The upgraded file works: a transition, and ids are never given out again after a purge.
    env.ok("2026-01-01T00:06:00Z", &["activity", "hq-mayor"]);
    let newest: i64 = env.value("SELECT max(id) FROM poke_log");
    assert_eq!(newest, 9);
    env.ok("2026-01-01T00:06:00Z", &["rm", "hq-mayor", "--purge"]);
    env.ok("2026-01-01T00:06:00Z", &["resume", "nightly"]);
    let next: i64 = env.value("SELECT max(id) FROM poke_log");
    assert_eq!(next, 10, "an id was given out again after a purge");
}

#[test]
fn a_migration_that_fails_changes_nothing() {
    let env = Env::new();
    version_1(&env);
    // A table of the name the migration creates makes it fail halfway.
    env.sql().execute_batch("CREATE TABLE counters (x)").unwrap();
    let before = rows(&env.sql());
    let out = env.at("2026-01-01T00:06:00Z", &["list"]);
    assert_error(&out, 1, "counters");
    let conn = env.sql();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 1, "a failed migration changed the schema version");
    assert_eq!(rows(&conn), before);
    let agents: i64 = conn
        .query_row("SELECT count(*) FROM agents", [], |r| r.get(0))
        .unwrap();
    assert_eq!(agents, 2);
}
