//! Reading the database: agents, the due set, and the log.
//!
//! Each query is a single statement, so it reads one consistent snapshot without holding a
//! read transaction open afterwards. The due query is a range scan of the `agents_next_due`
//! index; history queries use the `poke_log` indexes on `(agent_id, at)` and `at`.
//!
//! The history query is built from only the conditions a filter uses: `(?1 IS NULL OR
//! agent_id = ?1)` would be one cached statement, but SQLite cannot use an index for a term that
//! may be switched off, so every such query would scan the whole log.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row, params, params_from_iter};

use super::Store;
use crate::agent::{Agent, Settings};
use crate::backoff::Strategy;
use crate::clock::Millis;
use crate::error::{Error, Result};

/// The columns of `agents` in the order [`agent_from_row`] reads them.
pub(super) const AGENT_COLUMNS: &str = "id, strategy, base_interval_ms, max_interval_ms, factor, jitter, fresh_ms, \
     very_stale_ms, current_interval_ms, wait_ms, consecutive_misses, last_poke_at, last_activity_at, paused, \
     command, heartbeat_file, created_at, updated_at, next_due_at";

/// Reads one `agents` row selected with [`AGENT_COLUMNS`].
pub(super) fn agent_from_row(row: &Row<'_>) -> rusqlite::Result<Agent> {
    let bad = |col: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, e.into())
    };
    let strategy: String = row.get(1)?;
    let command: Option<String> = row.get(14)?;
    let command = match command {
        None => None,
        Some(json) => Some(serde_json::from_str::<Vec<String>>(&json).map_err(|e| bad(14, e.to_string()))?),
    };
    Ok(Agent {
        id: row.get(0)?,
        settings: Settings {
            strategy: strategy.parse::<Strategy>().map_err(|e| bad(1, e))?,
            base_interval_ms: row.get(2)?,
            max_interval_ms: row.get(3)?,
            factor: row.get(4)?,
            jitter: row.get(5)?,
            fresh_ms: row.get(6)?,
            very_stale_ms: row.get(7)?,
            command,
            heartbeat_file: row.get(15)?,
        },
        current_interval_ms: row.get(8)?,
        wait_ms: row.get(9)?,
        consecutive_misses: row.get(10)?,
        last_poke_at: row.get(11)?,
        last_activity_at: row.get(12)?,
        paused: row.get(13)?,
        created_at: row.get(16)?,
        updated_at: row.get(17)?,
        next_due_at: row.get(18)?,
    })
}

/// The due query: at most `?2` agents whose `next_due_at` has come, soonest first (a negative
/// limit means all). The index on `(next_due_at, id)` serves both the range and the order.
fn due_sql() -> String {
    format!("SELECT {AGENT_COLUMNS} FROM agents WHERE next_due_at <= ?1 ORDER BY next_due_at, id LIMIT ?2")
}

/// One row of `poke_log`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub id: i64,
    pub agent_id: String,
    pub at: Millis,
    pub kind: String,
    pub interval_ms: i64,
    pub consecutive_misses: i64,
    pub outcome: Option<String>,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub detail: Option<String>,
}

pub(super) const LOG_COLUMNS: &str =
    "id, agent_id, at, kind, interval_ms, consecutive_misses, outcome, exit_code, duration_ms, detail";

pub(super) fn log_from_row(row: &Row<'_>) -> rusqlite::Result<LogRow> {
    Ok(LogRow {
        id: row.get(0)?,
        agent_id: row.get(1)?,
        at: row.get(2)?,
        kind: row.get(3)?,
        interval_ms: row.get(4)?,
        consecutive_misses: row.get(5)?,
        outcome: row.get(6)?,
        exit_code: row.get(7)?,
        duration_ms: row.get(8)?,
        detail: row.get(9)?,
    })
}

/// Which log rows to read. Every condition given must hold; an empty list allows anything.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub agent_id: Option<String>,
    /// Rows at or after this time.
    pub since: Option<Millis>,
    /// Rows at or before this time.
    pub until: Option<Millis>,
    /// Only rows of these kinds (`poke`, `miss`, ...).
    pub kinds: Vec<String>,
    /// Only rows with one of these outcomes (which only pokes have).
    pub outcomes: Vec<String>,
    /// Only rows with an id above this (for following the log).
    pub after_id: Option<i64>,
    /// The newest `limit` rows of the selection (still printed oldest first).
    pub limit: Option<i64>,
}

/// How [`log_select`] reads the rows it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogOrder {
    /// Oldest first by time, through the `poke_log` indexes (`history`).
    ByTime,
    /// By id, walking the rowid range above `after_id` only: following the log reads just the
    /// rows committed since the last look, however large the log is.
    NewRows,
}

/// The `SELECT` for `filter`, with its parameters. Only the conditions in use appear, so the
/// agent + time case is a range of `poke_log_agent_at` and the time-only case a range of
/// `poke_log_at`. For [`LogOrder::NewRows`] the other conditions are written `+column`, which
/// keeps SQLite from choosing their indexes over the (short) rowid range.
pub(super) fn log_select(filter: &HistoryFilter, order: LogOrder) -> (String, Vec<Value>) {
    let mut args: Vec<Value> = Vec::new();
    let mut bind = |value: Value| {
        args.push(value);
        format!("?{}", args.len())
    };
    let col = |name: &str| match order {
        LogOrder::ByTime => name.to_string(),
        LogOrder::NewRows => format!("+{name}"),
    };
    let mut terms = Vec::new();
    if let Some(after) = filter.after_id {
        terms.push(format!("id > {}", bind(after.into())));
    }
    if let Some(agent) = &filter.agent_id {
        terms.push(format!("{} = {}", col("agent_id"), bind(agent.clone().into())));
    }
    if let Some(since) = filter.since {
        terms.push(format!("{} >= {}", col("at"), bind(since.into())));
    }
    if let Some(until) = filter.until {
        terms.push(format!("{} <= {}", col("at"), bind(until.into())));
    }
    for (name, values) in [("kind", &filter.kinds), ("outcome", &filter.outcomes)] {
        if !values.is_empty() {
            let list: Vec<String> = values.iter().map(|v| bind(v.clone().into())).collect();
            terms.push(format!("{} IN ({})", col(name), list.join(", ")));
        }
    }
    let conditions = if terms.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", terms.join(" AND "))
    };
    let sql = match (order, filter.limit) {
        (LogOrder::NewRows, _) => format!("SELECT {LOG_COLUMNS} FROM poke_log{conditions} ORDER BY id"),
        (LogOrder::ByTime, None) => {
            format!("SELECT {LOG_COLUMNS} FROM poke_log{conditions} ORDER BY at, id")
        }
        // The newest rows, read newest first straight off the index; [`query_log`] turns them
        // around (no sort in SQL).
        (LogOrder::ByTime, Some(limit)) => {
            let limit = bind(limit.into());
            format!("SELECT {LOG_COLUMNS} FROM poke_log{conditions} ORDER BY at DESC, id DESC LIMIT {limit}")
        }
    };
    (sql, args)
}

/// The rows `filter` selects, oldest first (see [`Store::history`]).
pub(super) fn query_log(conn: &rusqlite::Connection, filter: &HistoryFilter) -> Result<Vec<LogRow>> {
    let (sql, args) = log_select(filter, LogOrder::ByTime);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), log_from_row)?;
    let mut rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    if filter.limit.is_some() {
        rows.reverse();
    }
    Ok(rows)
}

impl Store {
    /// One agent.
    pub fn agent(&self, id: &str) -> Result<Agent> {
        self.read(|conn| {
            conn.prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"))?
                .query_row([id], agent_from_row)
                .optional()?
                .ok_or_else(|| Error::UnknownAgent(id.to_owned()))
        })
    }

    /// Every agent, by id.
    pub fn agents(&self) -> Result<Vec<Agent>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY id"))?;
            let rows = stmt.query_map([], agent_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The agents due at `at`, soonest first (an index range scan).
    pub fn due(&self, at: Millis) -> Result<Vec<Agent>> {
        self.due_batch(at, usize::MAX)
    }

    /// At most `limit` agents due at `at`, soonest first, so a daemon catching up on a million
    /// overdue agents works through them in bounded batches.
    pub fn due_batch(&self, at: Millis, limit: usize) -> Result<Vec<Agent>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&due_sql())?;
            let limit = i64::try_from(limit).unwrap_or(-1);
            let rows = stmt.query_map(params![at, limit], agent_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The agent due soonest, paused agents aside.
    pub fn next_due(&self) -> Result<Option<Agent>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {AGENT_COLUMNS} FROM agents WHERE next_due_at IS NOT NULL ORDER BY next_due_at, id LIMIT 1"
                ))?
                .query_row([], agent_from_row)
                .optional()?)
        })
    }

    /// `EXPLAIN QUERY PLAN` of the due query, one line per step (for tests and `check`).
    pub fn due_query_plan(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", due_sql()))?;
            let rows = stmt.query_map([0i64, 512], |row| row.get::<_, String>(3))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Log rows matching `filter`, oldest first (by time, then id); with a limit, the newest
    /// `limit` of them, still oldest first.
    pub fn history(&self, filter: &HistoryFilter) -> Result<Vec<LogRow>> {
        self.read(|conn| query_log(conn, filter))
    }

    /// `EXPLAIN QUERY PLAN` of [`Store::history`] for `filter`, one line per step (for tests).
    pub fn history_plan(&self, filter: &HistoryFilter) -> Result<Vec<String>> {
        self.read(|conn| {
            let (sql, args) = log_select(filter, LogOrder::ByTime);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let rows = stmt.query_map(params_from_iter(args), |row| row.get::<_, String>(3))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}
