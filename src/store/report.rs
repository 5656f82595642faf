//! The operator's queries: following the log, per-agent counts, pruning, the invariant check and
//! the figures of `poked status`.
//!
//! # Snapshots
//!
//! `check` and each step of following the log read inside one deferred read transaction, so
//! they see one consistent snapshot even while a daemon commits (a breach is never just a write
//! half seen), and they end that transaction before returning: a reader held open between polls
//! would keep the WAL from being checkpointed and make it grow without bound.
//!
//! # Pruning
//!
//! [`Store::prune`] deletes in batches, each its own `BEGIN IMMEDIATE` transaction, so writers
//! wait at most one batch. It never deletes a `pending` poke (the daemon still has to record its
//! outcome) nor an agent's newest row (what `check` compares the agent's state with). "Newest" is
//! by id, the order of commits: a row is deleted only when a row of the same agent with a higher
//! id and a time no earlier exists. That lookup is one seek in `poke_log_agent_at`, so a batch
//! costs about its own size, and the row with the highest id can never qualify. (A row followed
//! only by back-dated rows is kept: harmless, one extra row.)

use std::collections::BTreeMap;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use super::Store;
use super::queries::{HistoryFilter, LOG_COLUMNS, LogOrder, LogRow, log_from_row, log_select, query_log};
use crate::clock::Millis;
use crate::error::Result;

/// The kinds of `poke_log` rows (SPEC §4).
pub const KINDS: &[&str] = &[
    "added", "updated", "removed", "paused", "resumed", "poke", "miss", "activity", "reset",
];

/// The outcomes of a poke (SPEC §3-4).
pub const OUTCOMES: &[&str] = &[
    "pending",
    "sent",
    "ok",
    "failed",
    "timeout",
    "error",
    "interrupted",
];

/// How many log rows one prune transaction deletes by default.
pub const PRUNE_BATCH: usize = 2000;

/// What one look at the log found since the previous one.
#[derive(Debug, Clone, Default)]
pub struct FollowStep {
    /// Rows committed since the last look that match the filter, by id.
    pub rows: Vec<LogRow>,
    /// Watched rows whose outcome is no longer `pending`, as they are now.
    pub resolved: Vec<LogRow>,
    /// Watched rows that no longer exist (purged).
    pub gone: Vec<i64>,
    /// The highest id in the log at this look: the next look starts above it.
    pub last_id: i64,
}

/// One agent's counts from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCounts {
    pub agent_id: String,
    pub pokes: i64,
    pub misses: i64,
    pub activities: i64,
    /// Pokes by outcome, every outcome of [`OUTCOMES`] present (zero when none).
    pub outcomes: BTreeMap<&'static str, i64>,
}

/// One broken rule found by [`Store::check_snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    /// The agent concerned, when the rule is about one.
    pub agent_id: Option<String>,
    /// The rule's stable name (`interval_in_range`, `misses_match_log`, ...).
    pub rule: &'static str,
    /// What is wrong, for people.
    pub detail: String,
}

/// What [`Store::check_snapshot`] read in its one snapshot.
#[derive(Debug, Clone, Default)]
pub struct CheckSnapshot {
    /// Every breach of the rules that only need the database.
    pub breaches: Vec<Breach>,
    /// `(log id, agent id)` of every `pending` poke: breaches unless a daemon is alive.
    pub pending: Vec<(i64, String)>,
    pub agents: i64,
    pub log_rows: i64,
}

/// The log's size and age, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSummary {
    pub rows: i64,
    pub oldest_at: Option<Millis>,
    pub newest_at: Option<Millis>,
    pub pending: i64,
}

/// Runs `f` inside one deferred read transaction (one snapshot), ended before returning.
fn snapshot<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
}

impl Store {
    /// Whether `id` is an agent or has log rows (the history of a removed agent stays).
    pub fn agent_known(&self, id: &str) -> Result<bool> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM agents WHERE id = ?1)
                         OR EXISTS (SELECT 1 FROM poke_log WHERE agent_id = ?1)",
                )?
                .query_row([id], |row| row.get(0))?)
        })
    }

    /// The start of following the log, read in one snapshot: the rows `filter` selects (as
    /// [`Store::history`] returns them), the highest log id (0 for an empty log), and the ids of
    /// the `pending` pokes that match `filter`'s agent, kinds and time (whatever its outcomes or
    /// limit), whose outcomes are still to come.
    pub fn follow_start(&self, filter: &HistoryFilter) -> Result<(Vec<LogRow>, i64, Vec<i64>)> {
        self.read(|conn| {
            snapshot(conn, |conn| {
                let rows = query_log(conn, filter)?;
                let last_id: i64 = conn
                    .prepare_cached("SELECT coalesce(max(id), 0) FROM poke_log")?
                    .query_row([], |row| row.get(0))?;
                let watch = HistoryFilter {
                    outcomes: vec!["pending".into()],
                    limit: None,
                    after_id: None,
                    ..filter.clone()
                };
                let (sql, args) = log_select(&watch, LogOrder::ByTime);
                let mut stmt = conn.prepare_cached(&sql)?;
                let ids = stmt.query_map(params_from_iter(args), |row| row.get(0))?;
                Ok((rows, last_id, ids.collect::<rusqlite::Result<Vec<i64>>>()?))
            })
        })
    }

    /// One look at the log for `history --follow`, in one snapshot: the rows above `after_id`
    /// matching `filter` (its outcomes and limit ignored: the caller filters outcomes itself,
    /// because a row may match only once its outcome is recorded), and the current state of the
    /// `watched` rows (pokes that were pending).
    pub fn follow_step(&self, filter: &HistoryFilter, after_id: i64, watched: &[i64]) -> Result<FollowStep> {
        self.read(|conn| {
            snapshot(conn, |conn| {
                let last_id: i64 = conn
                    .prepare_cached("SELECT coalesce(max(id), 0) FROM poke_log")?
                    .query_row([], |row| row.get(0))?;
                let mut step = FollowStep {
                    last_id: last_id.max(after_id),
                    ..FollowStep::default()
                };
                if last_id > after_id {
                    let new = HistoryFilter {
                        outcomes: Vec::new(),
                        limit: None,
                        after_id: Some(after_id),
                        ..filter.clone()
                    };
                    let (sql, args) = log_select(&new, LogOrder::NewRows);
                    let mut stmt = conn.prepare_cached(&sql)?;
                    let rows = stmt.query_map(params_from_iter(args), log_from_row)?;
                    step.rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                }
                let mut one =
                    conn.prepare_cached(&format!("SELECT {LOG_COLUMNS} FROM poke_log WHERE id = ?1"))?;
                for &id in watched {
                    match one.query_row([id], log_from_row).optional()? {
                        None => step.gone.push(id),
                        Some(row) if row.outcome.as_deref() != Some("pending") => step.resolved.push(row),
                        Some(_) => {}
                    }
                }
                Ok(step)
            })
        })
    }

    /// Per agent with log rows at or after `since` (all rows without it): pokes, misses,
    /// activities and pokes by outcome, by agent id.
    pub fn log_counts(&self, since: Option<Millis>) -> Result<Vec<LogCounts>> {
        self.read(|conn| {
            let counts: String = OUTCOMES
                .iter()
                .map(|o| format!(", count(*) FILTER (WHERE outcome = '{o}')"))
                .collect();
            let window = if since.is_some() { " WHERE at >= ?1" } else { "" };
            let sql = format!(
                "SELECT agent_id, count(*) FILTER (WHERE kind = 'poke'), count(*) FILTER (WHERE kind = 'miss'),
                        count(*) FILTER (WHERE kind = 'activity'){counts}
                 FROM poke_log{window} GROUP BY agent_id ORDER BY agent_id"
            );
            let args: Vec<Value> = since.into_iter().map(Value::from).collect();
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), |row| {
                let mut outcomes = BTreeMap::new();
                for (i, outcome) in OUTCOMES.iter().enumerate() {
                    outcomes.insert(*outcome, row.get(4 + i)?);
                }
                Ok(LogCounts {
                    agent_id: row.get(0)?,
                    pokes: row.get(1)?,
                    misses: row.get(2)?,
                    activities: row.get(3)?,
                    outcomes,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Deletes the log rows older than `before` (`at < before`), `batch` rows per `BEGIN
    /// IMMEDIATE` transaction, keeping every agent's newest row and every `pending` poke.
    /// Returns how many rows were deleted, or with `dry_run` how many would be (nothing is
    /// written then).
    pub fn prune(&self, before: Millis, batch: usize, dry_run: bool) -> Result<u64> {
        // A row may go when it is old, not pending, and a later row of its agent exists (by id,
        // at a time no earlier: one index seek; see the module docs).
        const PRUNABLE: &str = "c.at < ?1 AND c.outcome IS NOT 'pending'
             AND EXISTS (SELECT 1 FROM poke_log n
                         WHERE n.agent_id = c.agent_id AND n.at >= c.at AND n.id > c.id)";
        if dry_run {
            return self.read(|conn| {
                let n: i64 = conn
                    .prepare_cached(&format!("SELECT count(*) FROM poke_log c WHERE {PRUNABLE}"))?
                    .query_row([before], |row| row.get(0))?;
                Ok(u64::try_from(n).unwrap_or(0))
            });
        }
        let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let mut total = 0u64;
        loop {
            let deleted = self.write(|tx| {
                Ok(tx
                    .prepare_cached(&format!(
                        "DELETE FROM poke_log WHERE id IN
                             (SELECT c.id FROM poke_log c WHERE {PRUNABLE} ORDER BY c.at LIMIT ?2)"
                    ))?
                    .execute(params![before, batch])?)
            })?;
            total += deleted as u64;
            if (deleted as i64) < batch {
                return Ok(total);
            }
        }
    }

    /// `PRAGMA integrity_check` and poked's invariants, all read in one snapshot. Whether a
    /// daemon is alive is not the store's to know, so `pending` pokes are returned for the caller
    /// to judge.
    pub fn check_snapshot(&self) -> Result<CheckSnapshot> {
        self.read(|conn| snapshot(conn, read_invariants))
    }

    /// Which of `ids` are still `pending` pokes now (a fresh read, after a daemon may have
    /// finished them).
    pub fn still_pending(&self, ids: &[i64]) -> Result<Vec<i64>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT outcome = 'pending' FROM poke_log WHERE id = ?1")?;
            let mut still = Vec::new();
            for &id in ids {
                if stmt.query_row([id], |row| row.get::<_, bool>(0)).optional()? == Some(true) {
                    still.push(id);
                }
            }
            Ok(still)
        })
    }

    /// The log's row count, oldest and newest time and pending pokes.
    pub fn log_summary(&self) -> Result<LogSummary> {
        self.read(|conn| {
            snapshot(conn, |conn| {
                let (rows, oldest_at, newest_at) =
                    conn.query_row("SELECT count(*), min(at), max(at) FROM poke_log", [], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })?;
                let pending = conn.query_row(
                    "SELECT count(*) FROM poke_log WHERE outcome = 'pending'",
                    [],
                    |row| row.get(0),
                )?;
                Ok(LogSummary {
                    rows,
                    oldest_at,
                    newest_at,
                    pending,
                })
            })
        })
    }

    /// `PRAGMA user_version`: the schema version of the file.
    pub fn schema_version(&self) -> Result<i64> {
        self.read(|conn| Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?))
    }
}

fn read_invariants(conn: &Connection) -> Result<CheckSnapshot> {
    let mut snap = CheckSnapshot::default();
    let breach = |agent: Option<String>, rule: &'static str, detail: String| Breach {
        agent_id: agent,
        rule,
        detail,
    };

    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let lines = stmt.query_map([], |row| row.get::<_, String>(0))?;
    for line in lines {
        let line = line?;
        if line != "ok" {
            snap.breaches.push(breach(None, "integrity", line));
        }
    }

    snap.agents = conn.query_row("SELECT count(*) FROM agents", [], |row| row.get(0))?;
    snap.log_rows = conn.query_row("SELECT count(*) FROM poke_log", [], |row| row.get(0))?;

    let ms = crate::units::format_duration;
    let mut stmt = conn.prepare(
        "SELECT id, current_interval_ms, base_interval_ms, max_interval_ms, wait_ms, consecutive_misses
         FROM agents ORDER BY id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, i64>(5)?,
        ))
    })?;
    for row in rows {
        let (id, interval, base, max, wait, misses) = row?;
        if !(base..=max).contains(&interval) {
            snap.breaches.push(breach(
                Some(id.clone()),
                "interval_in_range",
                format!(
                    "current_interval_ms {interval} ({}) is outside [base, max] = [{}, {}]",
                    ms(interval),
                    ms(base),
                    ms(max)
                ),
            ));
        }
        if !(1..=interval.max(1)).contains(&wait) {
            snap.breaches.push(breach(
                Some(id.clone()),
                "wait_in_range",
                format!("wait_ms {wait} is outside [1 ms, interval] = [1, {interval}]"),
            ));
        }
        if misses < 0 {
            snap.breaches.push(breach(
                Some(id),
                "misses_not_negative",
                format!("consecutive_misses is {misses}"),
            ));
        }
    }

    // Misses in a row against the log: the anchor's own count (0 for add, activity and reset;
    // an imported agent's `added` row carries the misses it came with) plus the `miss` rows
    // after it. Only when that row is still there (prune may have taken it).
    let mut stmt = conn.prepare(
        "SELECT a.id, a.consecutive_misses, anchor.id, anchor.kind,
                anchor.consecutive_misses + (SELECT count(*) FROM poke_log m
                 WHERE m.agent_id = a.id AND m.kind = 'miss' AND m.id > anchor.id)
         FROM agents a
         JOIN poke_log anchor ON anchor.id = (
             SELECT max(l.id) FROM poke_log l
             WHERE l.agent_id = a.id AND l.kind IN ('activity', 'reset', 'added'))
         ORDER BY a.id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, i64>(4)?,
        ))
    })?;
    for row in rows {
        let (id, misses, anchor, kind, logged) = row?;
        if misses != logged {
            snap.breaches.push(breach(
                Some(id),
                "misses_match_log",
                format!(
                    "consecutive_misses is {misses} but the log has {logged} miss rows since its `{kind}` row {anchor}"
                ),
            ));
        }
    }

    // The newest row (by id: the last transition committed) records the state it left.
    let mut stmt = conn.prepare(
        "SELECT a.id, a.current_interval_ms, a.consecutive_misses, l.id, l.kind, l.interval_ms,
                l.consecutive_misses
         FROM agents a
         JOIN poke_log l ON l.id = (SELECT max(x.id) FROM poke_log x WHERE x.agent_id = a.id)
         WHERE l.interval_ms IS NOT a.current_interval_ms
            OR l.consecutive_misses IS NOT a.consecutive_misses
         ORDER BY a.id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, i64>(5)?,
            row.get::<_, i64>(6)?,
        ))
    })?;
    for row in rows {
        let (id, interval, misses, log_id, kind, log_interval, log_misses) = row?;
        snap.breaches.push(breach(
            Some(id),
            "latest_log_matches_state",
            format!(
                "its newest log row {log_id} (`{kind}`) has interval {} and {log_misses} misses; \
                 the agent has interval {} and {misses} misses",
                ms(log_interval),
                ms(interval)
            ),
        ));
    }

    let mut stmt = conn.prepare("SELECT id, agent_id FROM poke_log WHERE outcome = 'pending' ORDER BY id")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    snap.pending = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(snap)
}
