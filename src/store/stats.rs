//! Counting the log for `stats` and `status`: per agent, its rows by kind and outcome in a
//! window, and the log's size and age.

use std::collections::BTreeMap;

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::Store;
use crate::agent::AgentId;
use crate::clock::Millis;
use crate::error::Result;
use crate::log::{Kind, Outcome};

/// One agent's counts from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCounts {
    pub agent_id: AgentId,
    pub pokes: i64,
    pub misses: i64,
    pub activities: i64,
    pub skips: i64,
    /// Pokes by outcome, every outcome a poke can have present (zero when none).
    pub outcomes: BTreeMap<Outcome, i64>,
    /// Escalations by outcome, every outcome an escalation can have present.
    pub escalations: BTreeMap<Outcome, i64>,
}

impl LogCounts {
    /// No rows at all for `agent_id`.
    pub fn zero(agent_id: AgentId) -> LogCounts {
        LogCounts {
            agent_id,
            pokes: 0,
            misses: 0,
            activities: 0,
            skips: 0,
            outcomes: POKE_OUTCOMES.iter().map(|o| (*o, 0)).collect(),
            escalations: ESCALATION_OUTCOMES.iter().map(|o| (*o, 0)).collect(),
        }
    }

    /// How many escalations there were, whatever their outcome.
    pub fn escalations_total(&self) -> i64 {
        self.escalations.values().sum()
    }
}

/// The outcomes a poke can have.
pub const POKE_OUTCOMES: &[Outcome] = &[
    Outcome::Pending,
    Outcome::Sent,
    Outcome::Ok,
    Outcome::Failed,
    Outcome::Timeout,
    Outcome::Error,
    Outcome::Interrupted,
];

/// The outcomes an escalation can have (never `sent`: a rung always has a command).
pub const ESCALATION_OUTCOMES: &[Outcome] = &[
    Outcome::Pending,
    Outcome::Ok,
    Outcome::Failed,
    Outcome::Timeout,
    Outcome::Error,
    Outcome::Interrupted,
    Outcome::Held,
];

/// The log's size and age, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSummary {
    pub rows: i64,
    pub oldest_at: Option<Millis>,
    pub newest_at: Option<Millis>,
    pub pending: i64,
}

impl Store {
    /// Per agent with log rows at or after `since` (all rows without it): its rows by kind and
    /// outcome, by agent id.
    pub fn log_counts(&self, since: Option<Millis>) -> Result<Vec<LogCounts>> {
        self.read(|conn| {
            let window = if since.is_some() { " WHERE at >= ?1" } else { "" };
            let sql = format!(
                "SELECT agent_id, kind, coalesce(outcome, ''), count(*) FROM poke_log{window}
                 GROUP BY agent_id, kind, outcome ORDER BY agent_id"
            );
            let args: Vec<Value> = since.into_iter().map(Value::from).collect();
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args))?;
            let mut out: Vec<LogCounts> = Vec::new();
            while let Some(row) = rows.next()? {
                let id: String = row.get(0)?;
                let (kind, outcome): (String, String) = (row.get(1)?, row.get(2)?);
                let n: i64 = row.get(3)?;
                if out.last().is_none_or(|c| c.agent_id.as_str() != id) {
                    // Ids in the log were checked when written; a hand-written bad one is shown
                    // as it is rather than failing the whole count.
                    let Ok(agent_id) = AgentId::parse(&id) else {
                        continue;
                    };
                    out.push(LogCounts::zero(agent_id));
                }
                let Some(counts) = out.last_mut() else { continue };
                let outcome = outcome.parse::<Outcome>().ok();
                match kind.parse::<Kind>() {
                    Ok(Kind::Poke) => {
                        counts.pokes += n;
                        if let Some(o) = outcome {
                            *counts.outcomes.entry(o).or_default() += n;
                        }
                    }
                    Ok(Kind::Escalation) => {
                        if let Some(o) = outcome {
                            *counts.escalations.entry(o).or_default() += n;
                        }
                    }
                    Ok(Kind::Miss) => counts.misses += n,
                    Ok(Kind::Activity) => counts.activities += n,
                    Ok(Kind::Skip) => counts.skips += n,
                    _ => {}
                }
            }
            Ok(out)
        })
    }

    /// The log's row count, oldest and newest time and pending rows.
    pub fn log_summary(&self) -> Result<LogSummary> {
        self.snapshot(|conn| {
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
    }
}
