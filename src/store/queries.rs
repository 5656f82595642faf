//! Reading agents, their ladders and the log.
//!
//! Each query is a single statement, so it reads one consistent snapshot without holding a
//! read transaction open afterwards. The due query is a range scan of the `agents_next_due`
//! index; history queries use the `poke_log` indexes on `(agent_id, at)` and `at`.
//!
//! The history query is built from only the conditions a filter uses: `(?1 IS NULL OR
//! agent_id = ?1)` would be one cached statement, but SQLite cannot use an index for a term that
//! may be switched off, so every such query would scan the whole log.

use std::collections::HashMap;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::Store;
use super::rows::{
    ACTIVITY_CMD_COLUMN, AGENT_BY_ID, ALL_AGENTS, COMMAND_COLUMN, DUE_AGENTS, DUE_COMMANDLESS_AFTER,
    LOG_COLUMNS, NEXT_DUE_AGENT, NEXT_DUE_COLUMN, ONLY_IF_COLUMN, ROWID_COLUMN, agent_from_row,
    argv_from_json, log_from_row,
};
use crate::agent::{Agent, AgentId, Rung};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::log::{Kind, LogRow, Outcome};
use crate::rules::{Cap, KnownLadder};

/// One agent, read on `conn` (inside a transaction or a snapshot, or on its own).
pub(super) fn agent_by_id(conn: &Connection, id: &AgentId) -> Result<Agent> {
    agent_and_rowid(conn, id).map(|(agent, _)| agent)
}

/// One agent and its rowid, read on `conn`.
pub(super) fn agent_and_rowid(conn: &Connection, id: &AgentId) -> Result<(Agent, i64)> {
    conn.prepare_cached(AGENT_BY_ID)?
        .query_row([id.as_str()], |row| {
            Ok((agent_from_row(row)?, row.get(ROWID_COLUMN)?))
        })
        .optional()?
        .ok_or_else(|| Error::UnknownAgent(id.to_string()))
}

/// Every agent, by id, read on `conn`.
pub(super) fn all_agents(conn: &Connection) -> Result<Vec<Agent>> {
    let mut stmt = conn.prepare_cached(ALL_AGENTS)?;
    let rows = stmt.query_map([], agent_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The agents a due query found.
#[derive(Debug, Clone, Default)]
pub struct Due {
    /// Soonest first.
    pub agents: Vec<Agent>,
    /// Rows that could not be read (a hand edit stored a command that is not a JSON array of
    /// strings, say): they do not hold up the others.
    pub unreadable: Vec<Unreadable>,
    /// Rows the query returned, decoded or not: the limit was reached when this equals it.
    pub seen: usize,
}

/// An agent row that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub id: String,
    pub reason: String,
}

/// What the caller of a due query wants of a row, asked before the row is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Read it in full.
    Take,
    /// Leave it.
    Skip,
    /// Leave it, and every later row that needs a worker: none is free.
    NoWorker,
}

/// The due agents (see [`super::Tx::due`]). `wanted(id, needs_slot)` is asked of each row
/// before it is decoded (`needs_slot`: it has a command, a probe or a gate); a row it refuses
/// still counts in [`Due::seen`], so the caller knows whether the limit was reached. Once it
/// answers [`Want::NoWorker`], the scan goes on with [`DUE_COMMANDLESS_AFTER`] from that row,
/// so the rows waiting for a worker (often most of them) are neither built nor counted. The
/// rowid of each agent taken goes into `rowids`, by id.
pub(super) fn due_rows(
    conn: &Connection,
    now: Millis,
    limit: usize,
    wanted: &mut dyn FnMut(&str, bool) -> Want,
    rowids: &mut HashMap<String, i64>,
) -> Result<Due> {
    let mut due = Due::default();
    let mut stmt = conn.prepare_cached(DUE_AGENTS)?;
    let mut rows = stmt.query([now])?;
    let mut resume_after: Option<(Millis, String)> = None;
    while due.seen < limit
        && let Some(row) = rows.next()?
    {
        due.seen += 1;
        let id = row.get_ref(0)?.as_str().unwrap_or_default();
        let needs_slot = [COMMAND_COLUMN, ACTIVITY_CMD_COLUMN, ONLY_IF_COLUMN]
            .into_iter()
            .any(|col| row.get_ref(col).is_ok_and(|v| v != ValueRef::Null));
        match wanted(id, needs_slot) {
            Want::Take => take_due_row(row, &mut due, rowids)?,
            Want::Skip => {}
            Want::NoWorker => {
                resume_after = Some((row.get(NEXT_DUE_COLUMN)?, row.get(0)?));
                break;
            }
        }
    }
    let Some((at, id)) = resume_after else {
        return Ok(due);
    };
    let mut stmt = conn.prepare_cached(DUE_COMMANDLESS_AFTER)?;
    let mut rows = stmt.query(params![now, at, id])?;
    while due.seen < limit
        && let Some(row) = rows.next()?
    {
        due.seen += 1;
        let id = row.get_ref(0)?.as_str().unwrap_or_default();
        if wanted(id, false) == Want::Take {
            take_due_row(row, &mut due, rowids)?;
        }
    }
    Ok(due)
}

/// Decodes a due row into `due` and its rowid into `rowids`, or notes it unreadable.
fn take_due_row(row: &rusqlite::Row<'_>, due: &mut Due, rowids: &mut HashMap<String, i64>) -> Result<()> {
    match agent_from_row(row) {
        Ok(agent) => {
            rowids.insert(agent.id.as_str().to_owned(), row.get(ROWID_COLUMN)?);
            due.agents.push(agent);
        }
        Err(e) => due.unreadable.push(Unreadable {
            id: row.get(0)?,
            reason: e.to_string(),
        }),
    }
    Ok(())
}

/// An agent's rungs, by misses.
pub(super) fn rungs(conn: &Connection, id: &AgentId) -> Result<Vec<Rung>> {
    let mut stmt =
        conn.prepare_cached("SELECT misses, command FROM rungs WHERE agent_id = ?1 ORDER BY misses")?;
    let rows = stmt.query_map([id.as_str()], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (misses, json) = row?;
        let command = argv_from_json(&json).map_err(|e| Error::invalid("rung", json.clone(), e))?;
        out.push(Rung { misses, command });
    }
    Ok(out)
}

/// The escalations that count against the agent's cap at `now` (SPEC §7.3): those whose
/// command ran (not `held`) in the window ending at `now`, after the agent's last `reset` or
/// `added` row. Both lookups are ranges of `poke_log_agent_at` no longer than the window.
pub(super) fn cap(conn: &Connection, agent: &Agent, now: Millis) -> Result<Cap> {
    let start = now.saturating_sub(agent.settings.escalate_window_ms);
    let mut stmt = conn.prepare_cached(
        "SELECT e.at FROM poke_log e
         WHERE e.agent_id = ?1 AND e.at > ?2 AND e.at <= ?3 AND e.kind = 'escalation'
           AND e.outcome IS NOT 'held'
           AND e.id > coalesce((SELECT max(r.id) FROM poke_log r
                                WHERE r.agent_id = ?1 AND r.at >= ?2
                                  AND (r.kind = 'reset' OR r.kind = 'added')), 0)
         ORDER BY e.at",
    )?;
    let rows = stmt.query_map(params![agent.id.as_str(), start, now], |row| row.get(0))?;
    Ok(Cap {
        limit: agent.settings.escalate_limit,
        window_ms: agent.settings.escalate_window_ms,
        escalations: rows.collect::<rusqlite::Result<Vec<Millis>>>()?,
    })
}

/// What the log says about the agent's current streak of misses (SPEC §7.3, for `show`): the
/// escalation rows since its last activity, reset or `added` row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Streak {
    /// The escalations of this streak, oldest first.
    pub escalations: Vec<StreakEscalation>,
}

/// One escalation of a streak: the rung, how it ended, when.
#[derive(Debug, Clone, PartialEq)]
pub struct StreakEscalation {
    pub rung: i64,
    pub outcome: Option<Outcome>,
    pub at: Millis,
}

/// An agent with all its decision needs from the log (see [`Store::agent_with_ladder`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Decidable {
    pub agent: Agent,
    pub ladder: KnownLadder,
}

/// Which log rows to read. Every condition given must hold; an empty list allows anything.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub agent_id: Option<AgentId>,
    /// Rows at or after this time.
    pub since: Option<Millis>,
    /// Rows at or before this time.
    pub until: Option<Millis>,
    /// Only rows of these kinds.
    pub kinds: Vec<Kind>,
    /// Only rows with one of these outcomes (which only pokes, escalations and skips have).
    pub outcomes: Vec<Outcome>,
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
        terms.push(format!(
            "{} = {}",
            col("agent_id"),
            bind(agent.as_str().to_owned().into())
        ));
    }
    if let Some(since) = filter.since {
        terms.push(format!("{} >= {}", col("at"), bind(since.into())));
    }
    if let Some(until) = filter.until {
        terms.push(format!("{} <= {}", col("at"), bind(until.into())));
    }
    let kinds: Vec<&str> = filter.kinds.iter().map(|k| k.as_str()).collect();
    let outcomes: Vec<&str> = filter.outcomes.iter().map(|o| o.as_str()).collect();
    for (name, values) in [("kind", kinds), ("outcome", outcomes)] {
        if !values.is_empty() {
            let list: Vec<String> = values.iter().map(|v| bind(v.to_string().into())).collect();
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

/// Runs a log `SELECT` built by [`log_select`].
pub(super) fn select_log(conn: &Connection, filter: &HistoryFilter, order: LogOrder) -> Result<Vec<LogRow>> {
    let (sql, args) = log_select(filter, order);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), log_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The rows `filter` selects, oldest first (see [`Store::history`]).
pub(super) fn query_log(conn: &Connection, filter: &HistoryFilter) -> Result<Vec<LogRow>> {
    let mut rows = select_log(conn, filter, LogOrder::ByTime)?;
    if filter.limit.is_some() {
        rows.reverse();
    }
    Ok(rows)
}

impl Store {
    /// One agent.
    pub fn agent(&self, id: &AgentId) -> Result<Agent> {
        self.read(|conn| agent_by_id(conn, id))
    }

    /// Every agent, by id.
    pub fn agents(&self) -> Result<Vec<Agent>> {
        self.read(all_agents)
    }

    /// The agents due at `at`, soonest first (an index range scan).
    pub fn due(&self, at: Millis) -> Result<Vec<Agent>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(DUE_AGENTS)?;
            let rows = stmt.query_map([at], agent_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The agent due soonest, paused agents aside.
    pub fn next_due(&self) -> Result<Option<Agent>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(NEXT_DUE_AGENT)?
                .query_row([], agent_from_row)
                .optional()?)
        })
    }

    /// `EXPLAIN QUERY PLAN` of the due query and of its command-less continuation (see
    /// [`super::Tx::due`]), each plan's steps one line apiece (for tests).
    pub fn due_query_plans(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let plan = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<String> {
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let rows = stmt.query_map(params, |row| row.get::<_, String>(3))?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.join("\n"))
            };
            Ok(vec![
                plan(DUE_AGENTS, &[&0i64])?,
                plan(DUE_COMMANDLESS_AFTER, &[&0i64, &0i64, &""])?,
            ])
        })
    }

    /// The agent's rungs, by misses.
    pub fn rungs(&self, id: &AgentId) -> Result<Vec<Rung>> {
        self.read(|conn| rungs(conn, id))
    }

    /// Every agent's rungs, by agent.
    pub fn all_rungs(&self) -> Result<std::collections::HashMap<AgentId, Vec<Rung>>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT agent_id, misses, command FROM rungs ORDER BY agent_id, misses")?;
            let mut rows = stmt.query([])?;
            let mut out: std::collections::HashMap<AgentId, Vec<Rung>> = std::collections::HashMap::new();
            while let Some(row) = rows.next()? {
                let (id, misses, json): (String, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
                let (Ok(id), Ok(command)) = (AgentId::parse(&id), argv_from_json(&json)) else {
                    continue;
                };
                out.entry(id).or_default().push(Rung { misses, command });
            }
            Ok(out)
        })
    }

    /// The agent's cap as of `now` (its recent escalations), for an agent already read.
    pub fn cap(&self, agent: &Agent, now: Millis) -> Result<Cap> {
        self.read(|conn| cap(conn, agent, now))
    }

    /// The agent, its ladder and its cap as of `now`, in one snapshot: what `explain` and
    /// `plan` decide from.
    pub fn agent_with_ladder(&self, id: &AgentId, now: Millis) -> Result<Decidable> {
        self.snapshot(|conn| {
            let agent = agent_by_id(conn, id)?;
            let ladder = KnownLadder {
                rungs: rungs(conn, id)?,
                cap: Some(cap(conn, &agent, now)?),
            };
            Ok(Decidable { agent, ladder })
        })
    }

    /// The escalations of the agent's current streak (since its last activity, reset or
    /// `added` row).
    pub fn streak(&self, id: &AgentId) -> Result<Streak> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT e.detail, e.outcome, e.at FROM poke_log e
                 WHERE e.agent_id = ?1 AND e.kind = 'escalation'
                   AND e.id > coalesce((SELECT max(r.id) FROM poke_log r WHERE r.agent_id = ?1
                                        AND (r.kind = 'activity' OR r.kind = 'reset' OR r.kind = 'added')), 0)
                 ORDER BY e.id",
            )?;
            let rows = stmt.query_map([id.as_str()], |row| {
                let detail: Option<String> = row.get(0)?;
                let outcome: Option<String> = row.get(1)?;
                Ok((detail, outcome, row.get::<_, Millis>(2)?))
            })?;
            let mut streak = Streak::default();
            for row in rows {
                let (detail, outcome, at) = row?;
                // The detail starts `rung N`.
                let rung = detail
                    .as_deref()
                    .and_then(|d| d.strip_prefix("rung "))
                    .and_then(|d| d.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                streak.escalations.push(StreakEscalation {
                    rung,
                    outcome: outcome.and_then(|o| o.parse().ok()),
                    at,
                });
            }
            Ok(streak)
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

    /// Whether `id` is an agent or has log rows (the history of a removed agent stays).
    pub fn agent_known(&self, id: &AgentId) -> Result<bool> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM agents WHERE id = ?1)
                         OR EXISTS (SELECT 1 FROM poke_log WHERE agent_id = ?1)",
                )?
                .query_row([id.as_str()], |row| row.get(0))?)
        })
    }
}
