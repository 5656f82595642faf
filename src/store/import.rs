//! Bulk writes and reads for `poked import` and `poked export`.
//!
//! An import arrives in batches of already validated agents; each batch is one `BEGIN IMMEDIATE`
//! transaction that inserts every agent row with all of its state and its rungs, and appends one
//! log row per agent, so the log agrees with the agents table exactly as it does after `poked
//! add`: the row's `interval_ms` and `consecutive_misses` are the agent's. The row is `added`
//! also when the agent replaced an existing one (`--replace`): its whole state starts again from
//! the line, as after `add`, and the row's detail says it was a replacement; the earlier history
//! stays. Any failure rolls the whole batch back.
//!
//! The statements are prepared once per connection (`prepare_cached`) and each agent costs two
//! inserts (and one per rung): nothing is read back inside the transaction. A duplicate id is
//! found by the primary key itself rather than by a lookup before each insert.
//!
//! An export reads every agent in one statement, so it sees one consistent snapshot, and hands
//! the agents over one at a time instead of collecting a million of them in memory.

use rusqlite::{Connection, params};

use super::Store;
use super::queries::rungs;
use super::rows::{ALL_AGENTS, INSERT_AGENT, agent_from_row, with_agent_values};
use super::transitions::insert_rungs;
use crate::agent::{Agent, AgentRecord, Rung, Settings};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::log::Kind;

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportCounts {
    /// Agents that did not exist before.
    pub added: u64,
    /// Existing agents replaced (only with `replace`).
    pub replaced: u64,
}

/// Why a batch was not written, and which of its agents caused it (when one did).
#[derive(Debug)]
pub struct BatchFailure {
    /// The position in the batch of the agent that could not be written.
    pub index: Option<usize>,
    pub error: Error,
}

const INSERT_LOG: &str = "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, detail)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Inserts an agent row with all of its columns; an id that exists is [`Error::AgentExists`].
pub(super) fn insert_agent(conn: &Connection, agent: &Agent) -> Result<()> {
    let inserted = with_agent_values(agent, |values| {
        conn.prepare_cached(INSERT_AGENT)?.execute(&values[..])
    });
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate_id(&e) => Err(Error::exists(agent.id.to_string())),
        Err(e) => Err(e.into()),
    }
}

fn is_duplicate_id(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl Store {
    /// Writes a batch of validated agents with their rungs in one transaction, with their log
    /// rows (see the module doc). An id that already exists is [`Error::AgentExists`] unless
    /// `replace`, which overwrites the agent's row and ladder. `now` is the time of the log
    /// rows. On failure nothing of the batch is written.
    pub fn import_batch(
        &self,
        agents: &[AgentRecord],
        replace: bool,
        now: Millis,
    ) -> std::result::Result<ImportCounts, BatchFailure> {
        let mut failed_at = None;
        let result = self.write(|tx| {
            let conn = tx.conn();
            let mut counts = ImportCounts::default();
            let mut log = conn.prepare_cached(INSERT_LOG)?;
            // A fleet shares its settings: the log row's text is made again only when they change.
            let mut detail = Detail::default();
            for (i, AgentRecord { agent, rungs }) in agents.iter().enumerate() {
                failed_at = Some(i);
                let existed = replace
                    && conn
                        .prepare_cached("DELETE FROM agents WHERE id = ?1")?
                        .execute([agent.id.as_str()])?
                        == 1;
                insert_agent(conn, agent)?;
                if existed {
                    conn.prepare_cached("DELETE FROM rungs WHERE agent_id = ?1")?
                        .execute([agent.id.as_str()])?;
                }
                insert_rungs(conn, &agent.id, rungs)?;
                log.execute(params![
                    agent.id.as_str(),
                    now,
                    Kind::Added.as_str(),
                    agent.current_interval_ms,
                    agent.consecutive_misses,
                    detail.of(&agent.settings, rungs, agent.paused, existed)
                ])?;
                if existed {
                    counts.replaced += 1;
                } else {
                    counts.added += 1;
                }
            }
            failed_at = None;
            Ok(counts)
        });
        result.map_err(|error| BatchFailure {
            index: failed_at,
            error,
        })
    }

    /// Calls `f` with every agent and its rungs, by id, from one consistent snapshot, without
    /// holding them all in memory. An error from `f` stops the walk and is returned.
    pub fn each_agent(&self, mut f: impl FnMut(Agent, Vec<Rung>) -> Result<()>) -> Result<()> {
        self.snapshot(|conn| {
            let mut stmt = conn.prepare_cached(ALL_AGENTS)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let agent = agent_from_row(row)?;
                let ladder = rungs(conn, &agent.id)?;
                f(agent, ladder)?;
            }
            Ok(())
        })
    }
}

/// The detail of an imported agent's log row, in the form of `add`'s:
/// `imported: geometric 5m..30m ×1.5 jitter 0.2, paused`; remembered for the next agent, which
/// in a fleet usually has the same settings.
#[derive(Default)]
struct Detail {
    made_for: Option<(Settings, usize, bool, bool)>,
    text: String,
}

impl Detail {
    fn of(&mut self, s: &Settings, rungs: &[Rung], paused: bool, replaced: bool) -> &str {
        let same = self.made_for.as_ref().is_some_and(|(m, n, p, r)| {
            m == s && *n == 0 && rungs.is_empty() && *p == paused && *r == replaced
        });
        if !same {
            let how = if replaced {
                "replaced by import"
            } else {
                "imported"
            };
            self.text = format!("{how}: {}", super::transitions::describe(s, rungs, paused));
            self.made_for = Some((s.clone(), rungs.len(), paused, replaced));
        }
        &self.text
    }
}
