//! Following the log (`history --follow`): the rows committed since the last look, and the
//! outcomes of pokes that were pending.
//!
//! Each look reads inside one deferred read transaction, so it sees one consistent snapshot
//! even while a daemon commits, and ends that transaction before returning: a reader held open
//! between polls would keep the WAL from being checkpointed and make it grow without bound.
//! New rows are found by id, which `AUTOINCREMENT` never gives out twice, even after a purge.

use rusqlite::OptionalExtension;

use super::Store;
use super::queries::{HistoryFilter, LogOrder, query_log, select_log};
use super::rows::{LOG_COLUMNS, log_from_row};
use crate::error::Result;
use crate::log::{LogRow, Outcome};

/// Where following starts, read in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct FollowStart {
    /// The rows the filter selects, as [`Store::history`] returns them.
    pub rows: Vec<LogRow>,
    /// The highest log id (0 for an empty log): the next look starts above it.
    pub last_id: i64,
    /// The pending rows that match the filter's agent, kinds and time (whatever its outcomes or
    /// limit), whose outcomes are still to come.
    pub pending: Vec<i64>,
}

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

fn max_id(conn: &rusqlite::Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT coalesce(max(id), 0) FROM poke_log")?
        .query_row([], |row| row.get(0))?)
}

impl Store {
    /// The start of following the log (see [`FollowStart`]).
    pub fn follow_start(&self, filter: &HistoryFilter) -> Result<FollowStart> {
        self.snapshot(|conn| {
            let watch = HistoryFilter {
                outcomes: vec![Outcome::Pending],
                limit: None,
                after_id: None,
                ..filter.clone()
            };
            Ok(FollowStart {
                rows: query_log(conn, filter)?,
                last_id: max_id(conn)?,
                pending: select_log(conn, &watch, LogOrder::ByTime)?
                    .into_iter()
                    .map(|row| row.id)
                    .collect(),
            })
        })
    }

    /// One look at the log, in one snapshot: the rows above `after_id` matching `filter` (its
    /// outcomes and limit ignored: the caller filters outcomes itself, because a row may match
    /// only once its outcome is recorded), and the current state of the `watched` rows.
    pub fn follow_step(&self, filter: &HistoryFilter, after_id: i64, watched: &[i64]) -> Result<FollowStep> {
        self.snapshot(|conn| {
            let last_id = max_id(conn)?;
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
                step.rows = select_log(conn, &new, LogOrder::NewRows)?;
            }
            let mut one =
                conn.prepare_cached(&format!("SELECT {LOG_COLUMNS} FROM poke_log WHERE id = ?1"))?;
            for &id in watched {
                match one.query_row([id], log_from_row).optional()? {
                    None => step.gone.push(id),
                    Some(row) if row.outcome != Some(Outcome::Pending) => step.resolved.push(row),
                    Some(_) => {}
                }
            }
            Ok(step)
        })
    }
}
