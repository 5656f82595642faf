//! What the daemon keeps about itself, and the cheap queries its loop runs.
//!
//! The `daemon` table holds one row: the running (or last) daemon's pid, version, start time,
//! last pass and stop time, so `poked status` can tell whether one is alive and how recently it
//! worked. These writes are bookkeeping, not agent transitions, so they append no log row.

use rusqlite::OptionalExtension;
use rusqlite::params;

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

/// A connection kept by the daemon to notice commits by anyone, itself included.
pub struct Watcher {
    conn: r2d2::PooledConnection<r2d2_sqlite::SqliteConnectionManager>,
}

impl Watcher {
    /// `PRAGMA data_version` of the watcher's connection: it changes whenever another
    /// connection (any process, or another connection of this one) commits.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self.conn.query_row("PRAGMA data_version", [], |row| row.get(0))?)
    }
}

impl Store {
    /// Records that a daemon started.
    pub fn daemon_started(&self, pid: u32, version: &str, now: Millis) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO daemon (singleton, pid, version, started_at, last_pass_at, stopped_at)
                 VALUES (1, ?1, ?2, ?3, NULL, NULL)",
                params![pid, version, now],
            )?;
            Ok(())
        })
    }

    /// Records the time of the daemon's latest pass.
    pub fn daemon_pass(&self, now: Millis) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached("UPDATE daemon SET last_pass_at = ?1 WHERE singleton = 1")?
                .execute([now])?;
            Ok(())
        })
    }

    /// Records that the daemon stopped cleanly.
    pub fn daemon_stopped(&self, now: Millis) -> Result<()> {
        self.write(|tx| {
            tx.execute("UPDATE daemon SET stopped_at = ?1 WHERE singleton = 1", [now])?;
            Ok(())
        })
    }

    /// The daemon row, if a daemon ever ran on this database.
    pub fn daemon_record(&self) -> Result<Option<DaemonRecord>> {
        self.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT pid, version, started_at, last_pass_at, stopped_at FROM daemon WHERE singleton = 1",
                    [],
                    |row| {
                        Ok(DaemonRecord {
                            pid: row.get(0)?,
                            version: row.get(1)?,
                            started_at: row.get(2)?,
                            last_pass_at: row.get(3)?,
                            stopped_at: row.get(4)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    /// The earliest `next_due_at`, paused agents aside (one index lookup).
    pub fn earliest_due(&self) -> Result<Option<Millis>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT min(next_due_at) FROM agents")?
                .query_row([], |row| row.get(0))?)
        })
    }

    /// Moves every stored instant that lies after `now` back to `now`: after the wall clock was
    /// set back, a last poke or activity "in the future" must not keep an agent fresh or
    /// undue for the length of the jump (SPEC §3). Returns how many agents were corrected.
    /// A clock correction, not a backoff transition: no log row.
    pub fn clamp_future(&self, now: Millis) -> Result<usize> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE agents SET
                     last_poke_at = min(last_poke_at, ?1),
                     last_activity_at = min(last_activity_at, ?1),
                     created_at = min(created_at, ?1)
                 WHERE last_poke_at > ?1 OR last_activity_at > ?1 OR created_at > ?1",
                [now],
            )?)
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

    /// A connection of its own for noticing changes; it holds one pool slot for its life.
    pub fn watcher(&self) -> Result<Watcher> {
        Ok(Watcher { conn: self.conn()? })
    }
}
