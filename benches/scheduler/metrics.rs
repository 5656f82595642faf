//! One scrape of the metrics (what `poked metrics` and the daemon's `/metrics` do:
//! [`poked::metrics::render`]) on a database of 10,000 agents and 10,000,000 log rows
//! (`--quick`: 1,000,000, said in a note): SPEC §8 wants a scrape that never scans the log, and
//! issue 14 puts the bar at 100 ms. `metrics_scrape_ms_10k` is the median of 21 scrapes after
//! two that warm the cache.
//!
//! The database is built first: the schema through poked, then the rows in bulk with
//! `synchronous = OFF`, the counters kept by poked's own triggers as each row goes in.

use std::path::Path;
use std::time::Instant;

use poked::clock::{Clock, SystemClock};
use poked::store::{OpenOptions, Store, Synchronous};

use crate::common::Bench;

const KEY: &str = "metrics_scrape_ms_10k";
const AGENTS: i64 = 10_000;
/// Log rows per transaction while building.
const CHUNK: i64 = 500_000;
const ROUNDS: usize = 21;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

pub fn run(bench: &mut Bench) {
    let rows: i64 = if bench.sizes.quick { 1_000_000 } else { 10_000_000 };
    eprintln!("metrics scrape over {AGENTS} agents and {rows} log rows (building them)…");
    let db = bench.path("metrics.db");
    build(&db, rows).expect("build the metrics database");
    let store = Store::open(&db, OpenOptions::default()).expect("open");
    let now = SystemClock.now();
    let mut bytes = 0;
    for _ in 0..2 {
        bytes = poked::metrics::render(&store, now).expect("scrape").len();
    }
    let mut times: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let text = poked::metrics::render(&store, now).expect("scrape");
            assert!(
                text.contains("poked_pokes_total{"),
                "a scrape without the counters"
            );
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[ROUNDS / 2];
    let name = format!(
        "one metrics scrape, {AGENTS} agents, {rows} log rows ({:.1} MiB)",
        bytes as f64 / 1_048_576.0
    );
    let sides = [format!("{median:.1} ms"), format!("{:.1} ms fastest", times[0])];
    bench.report.row(name, sides, median, "≤ 100 ms");
    bench.report.figure(KEY, Some(median));
    if rows != 10_000_000 {
        bench.report.note(format!(
            "{KEY} was measured on {rows} log rows (--quick), not 10,000,000"
        ));
    }
}

/// The database: poked's schema, [`AGENTS`] agents in every state, and `log_rows` log rows
/// of every kind that has a counter, spread over the agents.
fn build(db: &Path, log_rows: i64) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    drop(Store::open(
        db,
        OpenOptions {
            create: true,
            synchronous: Synchronous::Normal,
            ..OpenOptions::default()
        },
    )?);
    let mut conn = rusqlite::Connection::open(db)?;
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000;")?;
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO agents (id, strategy, base_interval_ms, max_interval_ms, factor, jitter,
                             fresh_ms, very_stale_ms, current_interval_ms, wait_ms,
                             consecutive_misses, last_poke_at, last_activity_at, paused, command,
                             held_until_at, created_at, updated_at)
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
         SELECT printf('agent-%05d', i), 'geometric', 300000, 1800000, 1.5, 0.0, 300000, 900000,
                300000 + (i % 4) * 375000, 300000 + (i % 4) * 375000, i % 5, ?2 + i * 1000,
                CASE WHEN i % 3 = 0 THEN NULL ELSE ?2 END, i % 50 = 0, '[\"true\"]',
                CASE WHEN i % 7 = 0 THEN ?2 + 3600000 END, ?2, ?2
         FROM n",
        [AGENTS, T0],
    )?;
    tx.commit()?;
    for start in (0..log_rows).step_by(CHUNK as usize) {
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, outcome)
             WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2)
             SELECT printf('agent-%05d', i % ?3), ?4 + i * 100,
                    CASE i % 10 WHEN 6 THEN 'miss' WHEN 7 THEN 'miss' WHEN 8 THEN 'activity'
                                WHEN 9 THEN 'escalation' ELSE 'poke' END,
                    300000, 0,
                    CASE i % 10 WHEN 6 THEN NULL WHEN 7 THEN NULL WHEN 8 THEN NULL
                                WHEN 9 THEN (CASE WHEN i % 3 = 0 THEN 'held' ELSE 'ok' END)
                                ELSE (CASE i % 20 WHEN 1 THEN 'failed' WHEN 3 THEN 'timeout' ELSE 'ok' END)
                    END
             FROM n",
            [start, (start + CHUNK).min(log_rows), AGENTS, T0],
        )?;
        tx.commit()?;
        eprintln!(
            "built {} of {log_rows} log rows ({:.0} s)",
            (start + CHUNK).min(log_rows),
            started.elapsed().as_secs_f64()
        );
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    eprintln!(
        "built {} in {:.0} s",
        db.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
