//! `poked init` upgrading a version-1 database that holds 10,000 agents and 10,000,000 log rows
//! (1,000,000 with `--quick`) to the current schema: `migrate_10m_s`, in seconds, the wall time
//! of the whole process.
//!
//! SPEC §7.5 promises that a database with ten million log rows upgrades in under a minute, and
//! the next migration rebuilds `poke_log`. The version-1 file is built here straight from
//! `migrations/0001_init.sql`, not through poked, so it stays a version-1 file whatever the
//! current schema is. While the schema is still version 1, `poked init` has nothing to do and
//! the figure is the cost of opening and checking the file; a note says so. Afterwards the
//! schema version must be the current one and no agent or log row may be lost.

use std::path::Path;

use poked::store::SCHEMA_VERSION;
use rusqlite::Connection;

use crate::common::{Bench, count};
use crate::fleet::{fill_log, fleet_agent, fleet_id};
use crate::floor::import_floor;
use crate::process::{poked, timed};

/// The first schema, as released.
const SCHEMA_V1: &str = include_str!("../../migrations/0001_init.sql");

/// Agents of the version-1 database.
const AGENTS: usize = 10_000;

/// Builds the version-1 database (untimed, with `synchronous = OFF`): the agents with their
/// `added` rows, then `rows` log rows in one transaction. It is left in WAL mode, as poked
/// leaves its files.
fn build_v1(path: &Path, rows: usize, t0: i64) {
    let mut conn = Connection::open(path).expect("create the version-1 database");
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000;")
        .expect("build pragmas");
    conn.execute_batch(SCHEMA_V1).expect("schema version 1");
    conn.execute_batch("PRAGMA user_version = 1;")
        .expect("user_version");
    let agents: Vec<_> = (0..AGENTS).map(|i| fleet_agent(i, AGENTS, 0, t0)).collect();
    import_floor(&mut conn, &agents, t0, AGENTS);
    let ids: Vec<String> = (0..AGENTS).map(fleet_id).collect();
    fill_log(&mut conn, rows, rows, t0, |j| ids[j % AGENTS].as_str());
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
}

/// (schema version, agents, log rows) of the file.
fn contents(path: &Path) -> (i64, i64, i64) {
    let conn = Connection::open(path).expect("open the migrated database");
    (
        count(&conn, "PRAGMA user_version", []),
        count(&conn, "SELECT count(*) FROM agents", []),
        count(&conn, "SELECT count(*) FROM poke_log", []),
    )
}

pub fn run(bench: &mut Bench) {
    let rows = bench.sizes.migrate_rows;
    eprintln!("`poked init` on a version-1 database of {rows} log rows (building it)…");
    let path = bench.path("v1.db");
    build_v1(&path, rows, bench.t0);
    let before = contents(&path);
    assert_eq!(
        before,
        (1, AGENTS as i64, (AGENTS + rows) as i64),
        "the version-1 database"
    );
    let (took, output) = timed(poked(&path).arg("init"));
    let took = took.as_secs_f64();
    let after = contents(&path);
    assert_eq!(
        after,
        (SCHEMA_VERSION, before.1, before.2),
        "`poked init` did not upgrade the database with every row ({})",
        String::from_utf8_lossy(&output.stdout).trim()
    );
    let name = format!("`poked init` upgrading schema 1 to {SCHEMA_VERSION}, {rows} log rows");
    bench
        .report
        .row(name, [format!("{took:.2} s"), String::new()], took, "≤ 60 s");
    if bench.sizes.quick {
        bench.report.note(format!(
            "migrate_10m_s was measured on {rows} log rows (--quick), not 10,000,000"
        ));
    }
    if SCHEMA_VERSION == 1 {
        bench.report.note(
            "migrate_10m_s: the schema is still version 1, so `poked init` had nothing to migrate; \
             the figure is starting poked and opening and checking the file",
        );
    }
    bench.report.figure("migrate_10m_s", Some(took));
}
