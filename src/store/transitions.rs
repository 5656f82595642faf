//! Every state transition of SPEC §2-3, each one `BEGIN IMMEDIATE` transaction that changes the
//! agent row and appends its `poke_log` row, or changes nothing.
//!
//! The arithmetic comes from [`crate::backoff`]; the time and the jitter draw are passed in, so
//! nothing here reads a clock or a random source. A transition on an unknown agent is
//! [`Error::UnknownAgent`], never a silent no-op.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Store;
use super::queries::{AGENT_COLUMNS, agent_from_row};
use crate::agent::{Agent, AgentId, Freshness, Settings};
use crate::backoff;
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::random::Draw;
use crate::units::format_duration;

/// Changes asked for by `poked set`; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patch {
    pub strategy: Option<crate::backoff::Strategy>,
    pub base_interval_ms: Option<i64>,
    pub max_interval_ms: Option<i64>,
    pub factor: Option<f64>,
    pub jitter: Option<f64>,
    pub fresh_ms: Option<i64>,
    pub very_stale_ms: Option<i64>,
    /// `Some(None)` removes the command.
    pub command: Option<Option<Vec<String>>>,
    /// `Some(None)` removes the heartbeat file.
    pub heartbeat_file: Option<Option<String>>,
}

impl Patch {
    /// Whether the patch changes nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == Patch::default()
    }

    fn apply(&self, to: &Settings) -> Settings {
        let mut s = to.clone();
        if let Some(v) = self.strategy {
            s.strategy = v;
        }
        if let Some(v) = self.base_interval_ms {
            s.base_interval_ms = v;
        }
        if let Some(v) = self.max_interval_ms {
            s.max_interval_ms = v;
        }
        if let Some(v) = self.factor {
            s.factor = v;
        }
        if let Some(v) = self.jitter {
            s.jitter = v;
        }
        if let Some(v) = self.fresh_ms {
            s.fresh_ms = v;
        }
        if let Some(v) = self.very_stale_ms {
            s.very_stale_ms = v;
        }
        if let Some(v) = &self.command {
            s.command = v.clone();
        }
        if let Some(v) = &self.heartbeat_file {
            s.heartbeat_file = v.clone();
        }
        s
    }
}

/// A poke the scheduler has committed and must now carry out.
#[derive(Debug, Clone)]
pub struct PokeStarted {
    /// The `poke_log` row whose outcome is still to be recorded.
    pub log_id: i64,
    /// The agent as it is after the poke (and the miss, if there was one).
    pub agent: Agent,
    /// Whether this pass also recorded a miss.
    pub missed: bool,
}

/// The kinds of `poke_log` rows.
const ADDED: &str = "added";
const UPDATED: &str = "updated";
const REMOVED: &str = "removed";
const PAUSED: &str = "paused";
const RESUMED: &str = "resumed";
const POKE: &str = "poke";
const MISS: &str = "miss";
const ACTIVITY: &str = "activity";
const RESET: &str = "reset";

/// A log row to append.
struct Entry<'a> {
    kind: &'static str,
    at: Millis,
    outcome: Option<&'a str>,
    detail: Option<String>,
}

impl Entry<'_> {
    fn new(kind: &'static str, at: Millis) -> Entry<'static> {
        Entry {
            kind,
            at,
            outcome: None,
            detail: None,
        }
    }
}

fn append(tx: &Transaction<'_>, agent: &Agent, entry: Entry<'_>) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        agent.id,
        entry.at,
        entry.kind,
        agent.current_interval_ms,
        agent.consecutive_misses,
        entry.outcome,
        entry.detail
    ])?;
    Ok(tx.last_insert_rowid())
}

fn load(tx: &Transaction<'_>, id: &str) -> Result<Agent> {
    tx.prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"))?
        .query_row([id], agent_from_row)
        .optional()?
        .ok_or_else(|| Error::UnknownAgent(id.to_owned()))
}

/// The `agents.command` column: the argv as a JSON array of strings.
pub(super) fn command_json(command: &Option<Vec<String>>) -> Option<String> {
    // Building a JSON value from strings and printing it cannot fail, unlike `to_string`'s
    // general signature suggests.
    command
        .as_ref()
        .map(|argv| serde_json::Value::from(argv.clone()).to_string())
}

/// Writes every mutable column of `agent` back; exactly one row must change. One statement,
/// not a settings update followed by [`save_state`]: a new max below the old interval would
/// break the interval's CHECK between the two.
fn save(tx: &Transaction<'_>, agent: &Agent) -> Result<Agent> {
    let s = &agent.settings;
    let command = command_json(&s.command);
    let changed = tx
        .prepare_cached(
            "UPDATE agents SET strategy = ?2, base_interval_ms = ?3, max_interval_ms = ?4, factor = ?5,
                 jitter = ?6, fresh_ms = ?7, very_stale_ms = ?8, current_interval_ms = ?9,
                 wait_ms = ?10, consecutive_misses = ?11, last_poke_at = ?12,
                 last_activity_at = ?13, paused = ?14, command = ?15, heartbeat_file = ?16,
                 updated_at = ?17
             WHERE id = ?1",
        )?
        .execute(params![
            agent.id,
            s.strategy.as_str(),
            s.base_interval_ms,
            s.max_interval_ms,
            s.factor,
            s.jitter,
            s.fresh_ms,
            s.very_stale_ms,
            agent.current_interval_ms,
            agent.wait_ms,
            agent.consecutive_misses,
            agent.last_poke_at,
            agent.last_activity_at,
            agent.paused,
            command,
            s.heartbeat_file,
            agent.updated_at,
        ])?;
    if changed != 1 {
        return Err(Error::UnknownAgent(agent.id.clone()));
    }
    #[cfg(debug_assertions)]
    split_transition_fault(tx)?;
    load(tx, &agent.id)
}

/// Writes back the columns a transition changes — never the settings, so their CHECK
/// constraints are not evaluated again — and reads back the recomputed `next_due_at`; exactly
/// one row must change. (`RETURNING next_due_at` measured slower: SQLite buffers it in a
/// temporary B-tree.) Every transition but `set` uses this.
fn save_state(tx: &Transaction<'_>, agent: &Agent) -> Result<Agent> {
    let changed = tx
        .prepare_cached(
            "UPDATE agents SET current_interval_ms = ?2, wait_ms = ?3, consecutive_misses = ?4,
                 last_poke_at = ?5, last_activity_at = ?6, paused = ?7, updated_at = ?8
             WHERE id = ?1",
        )?
        .execute(params![
            agent.id,
            agent.current_interval_ms,
            agent.wait_ms,
            agent.consecutive_misses,
            agent.last_poke_at,
            agent.last_activity_at,
            agent.paused,
            agent.updated_at,
        ])?;
    if changed != 1 {
        return Err(Error::UnknownAgent(agent.id.clone()));
    }
    #[cfg(debug_assertions)]
    split_transition_fault(tx)?;
    let next_due_at = tx
        .prepare_cached("SELECT next_due_at FROM agents WHERE id = ?1")?
        .query_row([&agent.id], |row| row.get(0))?;
    Ok(Agent {
        next_due_at,
        ..agent.clone()
    })
}

/// The crash suite's negative control (tests/reliability.rs), compiled into debug builds only:
/// with `POKED_FAULT=split-transition`, the agent row is committed on its own and the log row
/// follows in a second transaction 20 ms later, so a kill in between leaves a state change
/// without its log row, which the suite must detect. Release builds cannot honour it.
#[cfg(debug_assertions)]
fn split_transition_fault(tx: &Transaction<'_>) -> Result<()> {
    if std::env::var_os("POKED_FAULT").is_some_and(|v| v == "split-transition") {
        tx.execute_batch("COMMIT")?;
        std::thread::sleep(std::time::Duration::from_millis(20));
        tx.execute_batch("BEGIN IMMEDIATE")?;
    }
    Ok(())
}

/// Sets the interval and draws a new wait for it (SPEC §2: the wait is set again whenever the
/// interval changes).
fn set_interval(agent: &mut Agent, interval_ms: i64, draw: &dyn Draw) {
    agent.current_interval_ms = interval_ms;
    agent.wait_ms = backoff::wait(interval_ms, agent.settings.jitter, draw.draw());
}

fn miss(agent: &mut Agent, now: Millis, draw: &dyn Draw) {
    let s = &agent.settings;
    let grown = backoff::after_miss(s.strategy, s.factor, agent.current_interval_ms, s.max_interval_ms);
    agent.consecutive_misses = agent.consecutive_misses.saturating_add(1);
    set_interval(agent, grown, draw);
    agent.updated_at = now;
}

fn poke(agent: &mut Agent, now: Millis, draw: &dyn Draw) {
    agent.last_poke_at = Some(now);
    agent.wait_ms = backoff::wait(agent.current_interval_ms, agent.settings.jitter, draw.draw());
    agent.updated_at = now;
}

fn back_to_base(agent: &mut Agent, now: Millis, draw: &dyn Draw) {
    agent.consecutive_misses = 0;
    set_interval(agent, agent.settings.base_interval_ms, draw);
    agent.updated_at = now;
}

impl Store {
    /// Registers a new agent: interval = base, no misses, never poked, so due at once.
    pub fn add(
        &self,
        id: &AgentId,
        settings: &Settings,
        paused: bool,
        now: Millis,
        draw: &dyn Draw,
    ) -> Result<Agent> {
        settings.validate()?;
        self.write(|tx| {
            let exists: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM agents WHERE id = ?1)")?
                .query_row([id.as_str()], |row| row.get(0))?;
            if exists {
                return Err(Error::AgentExists(id.to_string()));
            }
            let command = command_json(&settings.command);
            let wait = backoff::wait(settings.base_interval_ms, settings.jitter, draw.draw());
            tx.prepare_cached(
                "INSERT INTO agents (id, strategy, base_interval_ms, max_interval_ms, factor, jitter,
                     fresh_ms, very_stale_ms, current_interval_ms, wait_ms, consecutive_misses,
                     paused, command, heartbeat_file, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?3, ?9, 0, ?10, ?11, ?12, ?13, ?13)",
            )?
            .execute(params![
                id.as_str(),
                settings.strategy.as_str(),
                settings.base_interval_ms,
                settings.max_interval_ms,
                settings.factor,
                settings.jitter,
                settings.fresh_ms,
                settings.very_stale_ms,
                wait,
                paused,
                command,
                settings.heartbeat_file,
                now,
            ])?;
            let agent = load(tx, id.as_str())?;
            let mut entry = Entry::new(ADDED, now);
            entry.detail = Some(describe(settings, paused));
            append(tx, &agent, entry)?;
            Ok(agent)
        })
    }

    /// Changes an agent's settings. The current interval is clamped into the new
    /// `[base, max]` and the wait drawn again. Returns `None` when nothing would change.
    pub fn set(&self, id: &AgentId, patch: &Patch, now: Millis, draw: &dyn Draw) -> Result<Option<Agent>> {
        if patch.is_empty() {
            return Err(Error::Usage(format!(
                "nothing to change for {id}: give at least one option (see `poked set --help`)"
            )));
        }
        self.write(|tx| {
            let before = load(tx, id.as_str())?;
            let settings = patch.apply(&before.settings);
            settings.validate()?;
            if settings == before.settings {
                return Ok(None);
            }
            let mut agent = before.clone();
            agent.settings = settings;
            let clamped = agent
                .current_interval_ms
                .clamp(agent.settings.base_interval_ms, agent.settings.max_interval_ms);
            set_interval(&mut agent, clamped, draw);
            agent.updated_at = now;
            let agent = save(tx, &agent)?;
            let mut entry = Entry::new(UPDATED, now);
            entry.detail = Some(changes(&before.settings, &agent.settings));
            append(tx, &agent, entry)?;
            Ok(Some(agent))
        })
    }

    /// Removes an agent. Its history stays unless `purge`, which deletes that too. Returns the
    /// number of log rows purged.
    pub fn remove(&self, id: &AgentId, purge: bool, now: Millis) -> Result<usize> {
        self.write(|tx| {
            let agent = load(tx, id.as_str())?;
            tx.prepare_cached("DELETE FROM agents WHERE id = ?1")?
                .execute([id.as_str()])?;
            if purge {
                let rows = tx
                    .prepare_cached("DELETE FROM poke_log WHERE agent_id = ?1")?
                    .execute([id.as_str()])?;
                return Ok(rows);
            }
            append(tx, &agent, Entry::new(REMOVED, now))?;
            Ok(0)
        })
    }

    /// Pauses (`true`) or resumes (`false`) an agent. Returns `false` when it already was.
    pub fn set_paused(&self, id: &AgentId, paused: bool, now: Millis) -> Result<bool> {
        Ok(self.set_paused_all(std::slice::from_ref(id), paused, now)?[0])
    }

    /// Pauses or resumes several agents in one transaction: all of them, or none when one id
    /// is unknown. Returns, for each, whether it changed.
    pub fn set_paused_all(&self, ids: &[AgentId], paused: bool, now: Millis) -> Result<Vec<bool>> {
        self.write(|tx| {
            let mut changed = Vec::with_capacity(ids.len());
            for id in ids {
                let mut agent = load(tx, id.as_str())?;
                if agent.paused == paused {
                    changed.push(false);
                    continue;
                }
                agent.paused = paused;
                agent.updated_at = now;
                let agent = save_state(tx, &agent)?;
                append(tx, &agent, Entry::new(if paused { PAUSED } else { RESUMED }, now))?;
                changed.push(true);
            }
            Ok(changed)
        })
    }

    /// Records a poke made outside the daemon: last poke = now, a new wait drawn.
    pub fn record_poke(&self, id: &AgentId, now: Millis, draw: &dyn Draw) -> Result<Agent> {
        self.write(|tx| {
            let mut agent = load(tx, id.as_str())?;
            poke(&mut agent, now, draw);
            let agent = save_state(tx, &agent)?;
            let mut entry = Entry::new(POKE, now);
            entry.outcome = Some("sent");
            entry.detail = Some("recorded by hand".into());
            append(tx, &agent, entry)?;
            Ok(agent)
        })
    }

    /// Records a miss: misses + 1, the interval grows by the strategy, capped at max.
    pub fn record_miss(&self, id: &AgentId, now: Millis, draw: &dyn Draw) -> Result<Agent> {
        self.write(|tx| {
            let mut agent = load(tx, id.as_str())?;
            miss(&mut agent, now, draw);
            let agent = save_state(tx, &agent)?;
            append(tx, &agent, Entry::new(MISS, now))?;
            Ok(agent)
        })
    }

    /// Records activity at `at` (a time in the future counts as now): misses = 0, interval =
    /// base. The last activity never moves backwards.
    pub fn record_activity(&self, id: &AgentId, at: Millis, now: Millis, draw: &dyn Draw) -> Result<Agent> {
        self.write(|tx| {
            let agent = load(tx, id.as_str())?;
            activity(tx, agent, at, now, draw)
        })
    }

    /// Records activity seen in a heartbeat file, only if it is newer than the last activity
    /// the agent already has. Returns the agent as it is afterwards.
    pub fn record_heartbeat(&self, id: &str, mtime: Millis, now: Millis, draw: &dyn Draw) -> Result<Agent> {
        self.write(|tx| {
            let agent = load(tx, id)?;
            if agent.last_activity_at.is_some_and(|last| mtime.min(now) <= last) {
                return Ok(agent);
            }
            activity(tx, agent, mtime, now, draw)
        })
    }

    /// Records a reset: misses = 0, interval = base; the activity time is unchanged.
    pub fn record_reset(&self, id: &AgentId, now: Millis, draw: &dyn Draw) -> Result<Agent> {
        self.write(|tx| {
            let mut agent = load(tx, id.as_str())?;
            back_to_base(&mut agent, now, draw);
            let agent = save_state(tx, &agent)?;
            append(tx, &agent, Entry::new(RESET, now))?;
            Ok(agent)
        })
    }

    /// The scheduler's transaction for one due agent (SPEC §3): re-checks that the agent is still
    /// due and has no poke in flight, records a miss when the previous poke went unanswered and
    /// the agent is very stale (unless `allow_miss` is false), then the poke itself with outcome
    /// `pending` (`sent` when the agent has no command). Returns `None` when the agent is no
    /// longer due.
    pub fn begin_poke(
        &self,
        id: &str,
        now: Millis,
        allow_miss: bool,
        draw: &dyn Draw,
    ) -> Result<Option<PokeStarted>> {
        self.write(|tx| {
            let Some(mut agent) = tx
                .prepare_cached(&format!(
                    "SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1 AND next_due_at <= ?2"
                ))?
                .query_row(params![id, now], agent_from_row)
                .optional()?
            else {
                return Ok(None);
            };
            let in_flight: bool = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM poke_log WHERE outcome = 'pending' AND agent_id = ?1)",
                )?
                .query_row([id], |row| row.get(0))?;
            if in_flight {
                return Ok(None);
            }
            let missed = allow_miss && agent.unanswered() && agent.freshness(now) == Freshness::VeryStale;
            if missed {
                miss(&mut agent, now, draw);
                let after_miss = agent.clone();
                append(tx, &after_miss, Entry::new(MISS, now))?;
            }
            poke(&mut agent, now, draw);
            let agent = save_state(tx, &agent)?;
            let mut entry = Entry::new(POKE, now);
            entry.outcome = Some(if agent.settings.command.is_some() {
                "pending"
            } else {
                "sent"
            });
            let log_id = append(tx, &agent, entry)?;
            Ok(Some(PokeStarted {
                log_id,
                agent,
                missed,
            }))
        })
    }

    /// Records how a poke's command ended on its (still `pending`) log row.
    pub fn finish_poke(
        &self,
        log_id: i64,
        outcome: &str,
        exit_code: Option<i32>,
        duration_ms: i64,
        detail: Option<&str>,
    ) -> Result<()> {
        self.write(|tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE poke_log SET outcome = ?2, exit_code = ?3, duration_ms = ?4, detail = ?5, pgid = NULL
                     WHERE id = ?1 AND outcome = 'pending'",
                )?
                .execute(params![log_id, outcome, exit_code, duration_ms.max(0), detail])?;
            if changed != 1 {
                return Err(Error::Usage(format!("poke {log_id} is no longer pending; its outcome was not recorded")));
            }
            Ok(())
        })
    }

    /// Remembers the process group of a poke's running command, so a daemon restarted after a
    /// crash can stop it.
    pub fn set_poke_pgid(&self, log_id: i64, pgid: u32) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached("UPDATE poke_log SET pgid = ?2 WHERE id = ?1 AND outcome = 'pending'")?
                .execute(params![log_id, pgid])?;
            Ok(())
        })
    }

    /// Marks every `pending` poke as `interrupted` (a daemon died before recording it) and
    /// returns `(log id, agent id, process group)` of each.
    pub fn interrupt_pending(&self, detail: &str) -> Result<Vec<(i64, String, Option<i64>)>> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                // RETURNING gives the new row, so the process group is kept (for the
                // caller to stop it, and as a record of what ran).
                "UPDATE poke_log SET outcome = 'interrupted', detail = ?1
                 WHERE outcome = 'pending'
                 RETURNING id, agent_id, pgid",
            )?;
            let rows = stmt.query_map([detail], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

fn activity(
    tx: &Transaction<'_>,
    mut agent: Agent,
    at: Millis,
    now: Millis,
    draw: &dyn Draw,
) -> Result<Agent> {
    let at = at.min(now);
    back_to_base(&mut agent, now, draw);
    agent.last_activity_at = Some(agent.last_activity_at.map_or(at, |last| last.max(at)));
    let agent = save_state(tx, &agent)?;
    append(tx, &agent, Entry::new(ACTIVITY, at))?;
    Ok(agent)
}

/// A one-line summary of an agent's settings for its `added` log row.
fn describe(s: &Settings, paused: bool) -> String {
    let mut text = format!(
        "{} {}..{} ×{}",
        s.strategy,
        format_duration(s.base_interval_ms),
        format_duration(s.max_interval_ms),
        s.factor
    );
    if s.jitter > 0.0 {
        text.push_str(&format!(" jitter {}", s.jitter));
    }
    if paused {
        text.push_str(", paused");
    }
    text
}

/// What `set` changed, for its `updated` log row: `base 5m → 1m, factor 1.5 → 2`.
fn changes(before: &Settings, after: &Settings) -> String {
    let mut parts = Vec::new();
    let mut note = |name: &str, a: String, b: String| {
        if a != b {
            parts.push(format!("{name} {a} → {b}"));
        }
    };
    let ms = |v: i64| format_duration(v);
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    let argv = |v: &Option<Vec<String>>| v.as_ref().map_or("none".into(), |a| a.join(" "));
    note(
        "strategy",
        before.strategy.to_string(),
        after.strategy.to_string(),
    );
    note("base", ms(before.base_interval_ms), ms(after.base_interval_ms));
    note("max", ms(before.max_interval_ms), ms(after.max_interval_ms));
    note("factor", before.factor.to_string(), after.factor.to_string());
    note("jitter", before.jitter.to_string(), after.jitter.to_string());
    note("fresh", ms(before.fresh_ms), ms(after.fresh_ms));
    note("very stale", ms(before.very_stale_ms), ms(after.very_stale_ms));
    note("command", argv(&before.command), argv(&after.command));
    note(
        "heartbeat file",
        opt(&before.heartbeat_file),
        opt(&after.heartbeat_file),
    );
    parts.join(", ")
}
