//! The counters behind `poked metrics`: per agent, how many log rows of each kind and final
//! outcome there have been.
//!
//! They live in the `counters` table, kept by triggers on `poke_log` in the same transaction as
//! each row (a pending row counts once its outcome is recorded), so they survive a restart, a
//! prune and a purge of other agents, and reading them never scans the log.

use std::collections::BTreeMap;

use super::Store;
use crate::agent::AgentId;
use crate::error::Result;
use crate::log::{Kind, Outcome};

/// One agent's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentCounters {
    /// Rows by kind and final outcome (`None` for kinds without one).
    pub rows: BTreeMap<(Kind, Option<Outcome>), i64>,
}

impl AgentCounters {
    /// How many rows of `kind` with `outcome`.
    pub fn get(&self, kind: Kind, outcome: Option<Outcome>) -> i64 {
        self.rows.get(&(kind, outcome)).copied().unwrap_or(0)
    }

    /// How many rows of `kind`, whatever their outcome.
    pub fn total(&self, kind: Kind) -> i64 {
        self.rows
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The counters of every existing agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub agents: BTreeMap<AgentId, AgentCounters>,
}

impl Counters {
    /// The sum over all agents of rows of `kind` with `outcome`.
    pub fn sum(&self, kind: Kind, outcome: Option<Outcome>) -> i64 {
        self.agents.values().map(|c| c.get(kind, outcome)).sum()
    }
}

/// The counters of every existing agent, read on `conn`.
fn read_counters(conn: &rusqlite::Connection) -> Result<Counters> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.agent_id, c.kind, c.outcome, c.n FROM counters c
         JOIN agents a ON a.id = c.agent_id ORDER BY c.agent_id",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Counters::default();
    while let Some(row) = rows.next()? {
        let (id, kind, outcome): (String, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let (Ok(id), Ok(kind)) = (AgentId::parse(&id), kind.parse::<Kind>()) else {
            continue;
        };
        let outcome = if outcome.is_empty() {
            None
        } else {
            outcome.parse::<Outcome>().ok()
        };
        *out.agents
            .entry(id)
            .or_default()
            .rows
            .entry((kind, outcome))
            .or_default() += row.get::<_, i64>(3)?;
    }
    Ok(out)
}

/// What a scrape reads, from one snapshot: a commit between its reads cannot show a counter
/// ahead of the agent row that the same transition changed.
#[derive(Debug, Clone)]
pub struct MetricsInputs {
    pub agents: Vec<crate::agent::Agent>,
    pub counters: Counters,
    pub daemon: Option<super::DaemonRecord>,
}

impl Store {
    /// The counters of every existing agent (removed agents' counters are kept for when the id
    /// comes back, but not reported).
    pub fn counters(&self) -> Result<Counters> {
        self.read(read_counters)
    }

    /// The agents, their counters and the daemon row, in one snapshot (for a scrape).
    pub fn metrics_inputs(&self) -> Result<MetricsInputs> {
        self.snapshot(|conn| {
            Ok(MetricsInputs {
                agents: super::queries::all_agents(conn)?,
                counters: read_counters(conn)?,
                daemon: super::daemon::read_daemon_record(conn)?,
            })
        })
    }
}
