//! Pruning the log: `poked prune` and the daemon's `--retain`.
//!
//! [`Store::prune`] deletes in batches, each its own `BEGIN IMMEDIATE` transaction, so writers
//! wait at most one batch. It never deletes a `pending` row (the daemon still has to record its
//! outcome) nor an agent's newest row (what `check` compares the agent's state with). "Newest" is
//! by id, the order of commits: a row is deleted only when a row of the same agent with a higher
//! id and a time no earlier exists. That lookup is one seek in `poke_log_agent_at`, so a batch
//! costs about its own size, and the row with the highest id can never qualify. (A row followed
//! only by back-dated rows is kept: harmless, one extra row.) Pruning never changes the
//! counters `poked metrics` reports.

use rusqlite::params;

use super::Store;
use crate::clock::Millis;
use crate::error::Result;

/// How many log rows one prune transaction deletes by default.
pub const PRUNE_BATCH: usize = 2000;

/// A row may go when it is old, not pending, and a later row of its agent exists.
const PRUNABLE: &str = "c.at < ?1 AND c.outcome IS NOT 'pending'
     AND EXISTS (SELECT 1 FROM poke_log n
                 WHERE n.agent_id = c.agent_id AND n.at >= c.at AND n.id > c.id)";

impl Store {
    /// Deletes the log rows older than `before` (`at < before`), `batch` rows per `BEGIN
    /// IMMEDIATE` transaction, keeping every agent's newest row and every pending row.
    /// Returns how many rows were deleted, or with `dry_run` how many would be (nothing is
    /// written then).
    pub fn prune(&self, before: Millis, batch: usize, dry_run: bool) -> Result<u64> {
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
                    .conn()
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
}
