//! What the daemon keeps about itself, and the cheap queries its loop runs.
//!
//! The `daemon` table holds one row: the running (or last) daemon's pid, version, start time,
//! last pass and stop time, so `poked status` can tell whether one is alive and how recently it
//! worked. These writes are bookkeeping, not agent transitions, so they append no log row. A
//! correction of instants left in the future by a clock set back is a transition, and is
//! logged ([`Store::correct_future`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::Store;
use crate::clock::Millis;
use crate::error::Result;

/// The `daemon` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonRecord {
    pub pid: i64,
    pub version: String,
    pub started_at: Millis,
    pub last_pass_at: Option<Millis>,
    pub stopped_at: Option<Millis>,
}

/// A connection of its own that notices commits by anyone, its own process included.
pub struct Watcher {
    conn: Connection,
}

impl Watcher {
    /// `PRAGMA data_version` of the watcher's connection: it changes whenever another
    /// connection (any process, or another connection of this one) commits.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?)
    }
}

/// An agent whose stored instants lay in the future and were moved to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    pub agent_id: String,
    /// What moved from what, as logged.
    pub detail: String,
}

impl super::Tx<'_> {
    /// Records the time of the daemon's latest pass, inside the pass's own transaction.
    pub fn record_pass(&self, now: Millis) -> Result<()> {
        self.conn()
            .prepare_cached("UPDATE daemon SET last_pass_at = ?1 WHERE singleton = 1")?
            .execute([now])?;
        Ok(())
    }
}

impl Store {
    /// Records that a daemon started.
    pub fn daemon_started(&self, pid: u32, version: &str, now: Millis) -> Result<()> {
        self.write(|tx| {
            tx.conn().execute(
                "INSERT OR REPLACE INTO daemon (singleton, pid, version, started_at, last_pass_at, stopped_at)
                 VALUES (1, ?1, ?2, ?3, NULL, NULL)",
                params![pid, version, now],
            )?;
            Ok(())
        })
    }

    /// Records the time of the daemon's latest pass.
    pub fn daemon_pass(&self, now: Millis) -> Result<()> {
        self.write(|tx| tx.record_pass(now))
    }

    /// Records that the daemon stopped cleanly.
    pub fn daemon_stopped(&self, now: Millis) -> Result<()> {
        self.write(|tx| {
            tx.conn()
                .execute("UPDATE daemon SET stopped_at = ?1 WHERE singleton = 1", [now])?;
            Ok(())
        })
    }

    /// The daemon row, if a daemon ever ran on this database.
    pub fn daemon_record(&self) -> Result<Option<DaemonRecord>> {
        self.read(read_daemon_record)
    }

    /// The earliest `next_due_at`, paused agents aside (one index lookup).
    pub fn earliest_due(&self) -> Result<Option<Millis>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT min(next_due_at) FROM agents")?
                .query_row([], |row| row.get(0))?)
        })
    }

    /// Moves every stored instant that lies more than `slack` after `now` back to `now` (a
    /// hold: past any hold poked could have set), each agent's correction one logged `updated`
    /// transition saying what moved from what (SPEC §3): after the wall clock was set back, an
    /// instant "in the future" must not keep an agent fresh or undue for the length of the
    /// jump.
    pub fn correct_future(&self, now: Millis, slack: Millis) -> Result<Vec<Correction>> {
        self.write(|tx| {
            let ids: Vec<String> = {
                let mut stmt = tx.conn().prepare_cached(
                    "SELECT id FROM agents
                     WHERE last_poke_at > ?1 OR last_activity_at > ?1 OR created_at > ?1
                        OR held_until_at > ?1 + max(grace_ms, max_interval_ms)",
                )?;
                let rows = stmt.query_map([now.saturating_add(slack)], |row| row.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut out = Vec::new();
            for id in ids {
                let Ok(id) = crate::agent::AgentId::parse(&id) else {
                    continue;
                };
                let mut agent = tx.agent(&id)?;
                if let Some(detail) = tx.correct_future(&mut agent, now, slack)? {
                    out.push(Correction {
                        agent_id: id.to_string(),
                        detail,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Copies the WAL back into the database; `truncate` also empties the `-wal` file. A
    /// checkpoint that cannot finish because a reader is busy is not an error: it is retried.
    pub fn checkpoint(&self, truncate: bool) -> Result<()> {
        let sql = if truncate {
            "PRAGMA wal_checkpoint(TRUNCATE)"
        } else {
            "PRAGMA wal_checkpoint(PASSIVE)"
        };
        self.read(|conn| {
            conn.query_row(sql, [], |_| Ok(()))?;
            Ok(())
        })
    }

    /// A connection of its own for noticing changes.
    pub fn watcher(&self) -> Result<Watcher> {
        Ok(Watcher {
            conn: self.spec.connect()?,
        })
    }
}

/// The daemon row, read on `conn`.
pub(super) fn read_daemon_record(conn: &rusqlite::Connection) -> Result<Option<DaemonRecord>> {
    Ok(conn
        .query_row(
            "SELECT pid, version, started_at, last_pass_at, stopped_at FROM daemon WHERE singleton = 1",
            [],
            |row| {
                let (pid, version, started_at, last_pass_at, stopped_at) = TryFrom::try_from(row)?;
                Ok(DaemonRecord {
                    pid,
                    version,
                    started_at,
                    last_pass_at,
                    stopped_at,
                })
            },
        )
        .optional()?)
}
