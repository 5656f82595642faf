//! The SQLite floors: what SQLite itself needs for the durable work poked does, written by hand
//! with rusqlite on the same schema (a database poked created) with the same pragmas, so poked's
//! figures can be given as a ratio to them.
//!
//! - The **transaction floor** ([`Floor::transactions`]) is one transition as cheaply as SQLite
//!   can commit it (SPEC §4): `BEGIN IMMEDIATE`, one `UPDATE` of one agent row, one `INSERT` of
//!   one log row, `COMMIT`. The update writes what a miss writes, so the index on `next_due_at`
//!   moves as it does for poked. With `synchronous=FULL` it is bound by one disk flush per commit.
//! - The **batched floor** ([`Floor::batched`]) writes the rows of a scheduling pass (the agent
//!   `UPDATE`, the `miss` and the `poke` log rows) for `poked::daemon::GROUP_COMMIT` agents per
//!   transaction: what a pass could cost if it committed its agents in groups.
//! - The **import floor** ([`import_floor`]) is raw prepared `INSERT`s of the agent rows and the
//!   one `added` log row each, in transactions of the import's batch size.

use std::path::Path;
use std::time::{Duration, Instant};

use poked::backoff::{Strategy, after_miss};
use poked::clock::Millis;
use poked::store::Synchronous;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use crate::common::raw;
use crate::fleet::{FleetAgent, build_fleet, fleet_agent};

/// Agents of the transaction floor's database, taken in turn.
pub const FLOOR_AGENTS: usize = 1_000;

/// A floor's own database of due agents, whose state it carries forward in Rust.
pub struct Floor {
    conn: Connection,
    agents: Vec<FleetAgent>,
    next: usize,
    now: Millis,
    /// Agents per transaction: 1 for the transaction floor.
    group: usize,
    /// Whether each agent is also poked (the batched floor: last poke set, a `poke` row).
    poke: bool,
}

impl Floor {
    /// The transaction floor over `agents` due agents.
    pub fn transactions(path: &Path, synchronous: Synchronous, agents: usize, now: Millis) -> Floor {
        Floor::new(path, synchronous, agents, now, 1, false)
    }

    /// The transaction floor at `synchronous=FULL` (poked's default) over [`FLOOR_AGENTS`]
    /// agents: the baseline of the daemon's figures.
    pub fn transactions_full(path: &Path, now: Millis) -> Floor {
        Floor::transactions(path, Synchronous::Full, FLOOR_AGENTS, now)
    }

    /// The batched floor over `agents` due agents, with poked's pragmas at synchronous=FULL.
    pub fn batched(path: &Path, agents: usize, now: Millis) -> Floor {
        Floor::new(
            path,
            Synchronous::Full,
            agents,
            now,
            poked::daemon::GROUP_COMMIT,
            true,
        )
    }

    fn new(path: &Path, synchronous: Synchronous, n: usize, now: Millis, group: usize, poke: bool) -> Floor {
        drop(build_fleet(path, n, n, now));
        Floor {
            conn: raw(path, synchronous),
            agents: (0..n).map(|i| fleet_agent(i, n, n, now)).collect(),
            next: 0,
            now,
            group,
            poke,
        }
    }

    /// One agent's rows: a miss (and with `poke`, the poke), with the arithmetic of SPEC §2.
    fn write_agent(tx: &Transaction<'_>, a: &mut FleetAgent, now: Millis, poke: bool) {
        a.misses += 1;
        a.current = after_miss(Strategy::Geometric, 1.5, a.current, a.max);
        a.wait = a.current;
        let changed = if poke {
            a.last_poke_at = now;
            tx.prepare_cached(
                "UPDATE agents SET current_interval_ms = ?2, wait_ms = ?3, consecutive_misses = ?4,
                     last_poke_at = ?5, updated_at = ?5 WHERE id = ?1",
            )
            .expect("prepare")
            .execute(params![a.id, a.current, a.wait, a.misses, now])
        } else {
            tx.prepare_cached(
                "UPDATE agents SET current_interval_ms = ?2, wait_ms = ?3, consecutive_misses = ?4,
                     updated_at = ?5 WHERE id = ?1",
            )
            .expect("prepare")
            .execute(params![a.id, a.current, a.wait, a.misses, now])
        };
        assert_eq!(changed.expect("update"), 1);
        let mut log = tx
            .prepare_cached(
                "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .expect("prepare");
        log.execute(params![a.id, now, "miss", a.current, a.misses, None::<&str>])
            .expect("insert");
        if poke {
            log.execute(params![a.id, now, "poke", a.current, a.misses, Some("sent")])
                .expect("insert");
        }
    }

    /// One transaction over the next `group` agents (fewer if `limit` says so).
    fn transaction(&mut self, limit: usize) {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("begin");
        for _ in 0..self.group.min(limit) {
            let i = self.next % self.agents.len();
            self.next += 1;
            self.now += 1;
            Floor::write_agent(&tx, &mut self.agents[i], self.now, self.poke);
        }
        tx.commit().expect("commit");
    }

    /// Does the floor's work for `n` agents; returns the time it took.
    pub fn run(&mut self, n: usize) -> Duration {
        let start = Instant::now();
        let mut left = n;
        while left > 0 {
            self.transaction(left);
            left -= self.group.min(left);
        }
        start.elapsed()
    }

    /// Agents per second over about `secs` seconds.
    pub fn rate_for(&mut self, secs: f64) -> f64 {
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed().as_secs_f64() < secs {
            self.transaction(usize::MAX);
            n += self.group;
        }
        n as f64 / start.elapsed().as_secs_f64()
    }
}

/// The import floor: inserts `agents` and one `added` log row each at `now`, `batch` agents per
/// transaction, with raw prepared statements. Returns the time it took.
pub fn import_floor(conn: &mut Connection, agents: &[FleetAgent], now: Millis, batch: usize) -> Duration {
    let start = Instant::now();
    for group in agents.chunks(batch) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("begin");
        {
            let mut insert = tx.prepare_cached(INSERT_AGENT).expect("prepare");
            let mut log = tx.prepare_cached(INSERT_ADDED).expect("prepare");
            for a in group {
                let row = params![
                    a.id,
                    a.base,
                    a.max,
                    a.current,
                    a.wait,
                    a.misses,
                    a.last_poke_at,
                    a.created_at
                ];
                insert.execute(row).expect("insert agent");
                log.execute(params![a.id, now, a.current, a.misses, ADDED_DETAIL])
                    .expect("insert log row");
            }
        }
        tx.commit().expect("commit");
    }
    start.elapsed()
}

/// A generated agent's row, with poked's defaults for what the fleet does not vary.
const INSERT_AGENT: &str = "INSERT INTO agents (id, strategy, base_interval_ms, max_interval_ms, factor,
         jitter, fresh_ms, very_stale_ms, current_interval_ms, wait_ms, consecutive_misses, last_poke_at,
         last_activity_at, paused, command, heartbeat_file, created_at, updated_at)
     VALUES (?1, 'geometric', ?2, ?3, 1.5, 0.0, 300000, 900000, ?4, ?5, ?6, ?7, NULL, 0, NULL, NULL, ?8, ?7)";

const INSERT_ADDED: &str =
    "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, detail)
     VALUES (?1, ?2, 'added', ?3, ?4, ?5)";

/// What poked's import writes as the detail of an imported agent's `added` row.
const ADDED_DETAIL: &str = "imported: geometric 1h..2d ×1.5";
