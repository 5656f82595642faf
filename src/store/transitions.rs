//! Every state transition of SPEC §2-3 and §7: the agent row changed and its `poke_log` rows
//! appended in one `BEGIN IMMEDIATE` transaction, or nothing at all.
//!
//! [`Tx`] is that transaction: [`Store::write`] opens one, lends it to a closure and commits it.
//! The daemon's pass uses one `Tx` for many agents (group commit); [`Store`]'s methods here
//! (`add`, `record_miss`, ...) are one transition each. What changes is decided and computed by
//! [`crate::rules`]; the time and the jitter draw are passed in, so nothing here reads a clock
//! or a random source. A transition on an unknown agent is [`Error::UnknownAgent`], never a
//! silent no-op.

use std::cell::RefCell;
use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

use super::Store;
use super::rows::{SAVE_AGENT, SAVED_VALUES, argv_from_json, argv_json, with_agent_values};
use crate::agent::{Agent, AgentId, Rung, Settings, validate_ladder};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::log::{Kind, Outcome};
use crate::random::Draw;
use crate::rules::{self, Action, Cap, Decision, Ladder, Reading, Source};
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
    /// `Some(None)` removes the activity probe.
    pub activity_cmd: Option<Option<Vec<String>>>,
    pub echo_ms: Option<i64>,
    /// `Some(None)` removes the gate.
    pub only_if: Option<Option<Vec<String>>>,
    pub grace_ms: Option<i64>,
    /// `(K, W)` of `--escalate-limit`.
    pub escalate_limit: Option<(i64, i64)>,
    /// A new ladder (`Some(vec![])` removes it).
    pub rungs: Option<Vec<Rung>>,
}

impl Patch {
    /// Whether the patch changes nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == Patch::default()
    }

    /// The settings after the patch. A new base above the current max raises the max (unless a
    /// max is given), and a new fresh above the current very stale raises that, as `add` does.
    fn apply(&self, to: &Settings) -> Settings {
        let mut s = to.clone();
        // Each field the patch names replaces the setting's.
        macro_rules! take {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field {
                    s.$field = v.clone();
                }
            )*};
        }
        take!(
            strategy,
            base_interval_ms,
            max_interval_ms,
            factor,
            jitter,
            fresh_ms,
            very_stale_ms
        );
        take!(command, heartbeat_file, activity_cmd, echo_ms, only_if, grace_ms);
        if let Some((limit, window)) = self.escalate_limit {
            s.escalate_limit = limit;
            s.escalate_window_ms = window;
        }
        if self.max_interval_ms.is_none() {
            s.max_interval_ms = s.max_interval_ms.max(s.base_interval_ms);
        }
        if self.very_stale_ms.is_none() {
            s.very_stale_ms = s.very_stale_ms.max(s.fresh_ms);
        }
        s
    }
}

/// A poke or an escalation the pass has committed and must now carry out.
#[derive(Debug, Clone)]
pub struct Started {
    /// The log row whose outcome is still to come (`pending`), or the `sent` poke row.
    pub log_id: i64,
    /// `poke` or `escalation`.
    pub kind: Kind,
    /// The agent as it is after the transition.
    pub agent: Agent,
    /// The rung that fires, for an escalation.
    pub rung: Option<i64>,
    /// What to run: the agent's command, or the rung's; `None` when the poke is only recorded.
    pub command: Option<Vec<String>>,
    /// Whether a miss was recorded first.
    pub missed: bool,
}

/// How a command ended, to be recorded on its pending row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub log_id: i64,
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub duration_ms: i64,
    /// Appended to the row's detail (after what the pass noted, if anything).
    pub detail: Option<String>,
}

/// A log row to append.
struct Entry {
    kind: Kind,
    at: Millis,
    outcome: Option<Outcome>,
    exit_code: Option<i32>,
    duration_ms: Option<i64>,
    detail: Option<String>,
}

impl Entry {
    fn new(kind: Kind, at: Millis) -> Entry {
        Entry {
            kind,
            at,
            outcome: None,
            exit_code: None,
            duration_ms: None,
            detail: None,
        }
    }

    fn with(mut self, outcome: Outcome, detail: Option<String>) -> Entry {
        self.outcome = Some(outcome);
        self.detail = detail;
        self
    }
}

/// The statement of [`Tx::save_state`], finding the row by `$row`.
macro_rules! save_state {
    ($row:literal) => {
        concat!(
            "UPDATE agents SET current_interval_ms = ?2, wait_ms = ?3, consecutive_misses = ?4,
                 last_poke_at = ?5, last_activity_at = ?6, paused = ?7, held_until_at = ?8,
                 heartbeat_seen_at = ?9, probe_seen_at = ?10, updated_at = ?11 WHERE ",
            $row
        )
    };
}

/// [`Tx::save_state`] by id.
const SAVE_STATE: &str = save_state!("id = ?1");

/// [`Tx::save_state`] by the rowid the agent was read at (?12), its id checked.
const SAVE_STATE_BY_ROWID: &str = save_state!("rowid = ?12 AND id = ?1");

/// One write transaction (`BEGIN IMMEDIATE`), lent by [`Store::write`].
pub struct Tx<'c> {
    tx: Transaction<'c>,
    abandoned: bool,
    /// The connection's count of rows written, when the transaction began.
    changes_at_begin: u64,
    /// The rowid of each agent this transaction read, by id: a transition writes the row back
    /// by it, rather than looking its id up in the index again (that second lookup was a
    /// twentieth of a transition when the disk does not flush).
    rowids: RefCell<HashMap<String, i64>>,
}

impl<'c> Tx<'c> {
    pub(super) fn new(tx: Transaction<'c>) -> Tx<'c> {
        let changes_at_begin = tx.total_changes();
        Tx {
            tx,
            abandoned: false,
            changes_at_begin,
            rowids: RefCell::default(),
        }
    }

    /// Whether a statement of this transaction inserted, updated or deleted a row.
    pub fn wrote(&self) -> bool {
        self.tx.total_changes() != self.changes_at_begin
    }

    /// Commits, or rolls back when abandoned.
    pub(super) fn finish(self) -> Result<()> {
        if self.abandoned {
            self.tx.rollback()?;
        } else {
            self.tx.commit()?;
        }
        Ok(())
    }

    /// Rolls the whole transaction back when it ends: nothing of it is written (the daemon's
    /// pass does this when a stop signal arrives before it commits).
    pub fn abandon(&mut self) {
        self.abandoned = true;
    }

    /// Whether SQLite rolled the transaction back by itself (after a full disk or an I/O
    /// error): nothing more may be written in it, or it would be written outside a transaction.
    pub fn rolled_back(&self) -> bool {
        self.tx.is_autocommit()
    }

    /// The connection of the transaction, for the queries of sibling modules.
    pub(super) fn conn(&self) -> &rusqlite::Connection {
        &self.tx
    }

    /// One agent.
    pub fn agent(&self, id: &AgentId) -> Result<Agent> {
        let (agent, rowid) = super::queries::agent_and_rowid(&self.tx, id)?;
        self.rowids
            .borrow_mut()
            .insert(agent.id.as_str().to_owned(), rowid);
        Ok(agent)
    }

    /// At most `limit` agents due at `now`, soonest first (an index range scan), of which only
    /// those `wanted` are read in full. A row that cannot be read does not hold up the others:
    /// it is returned apart.
    pub fn due(
        &self,
        now: Millis,
        limit: usize,
        wanted: &mut dyn FnMut(&str, bool) -> super::queries::Want,
    ) -> Result<super::queries::Due> {
        super::queries::due_rows(&self.tx, now, limit, wanted, &mut self.rowids.borrow_mut())
    }

    /// Whether the agent has a poke or an escalation whose outcome is still to come.
    pub fn in_flight(&self, id: &AgentId) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM poke_log WHERE outcome = 'pending' AND agent_id = ?1)",
            )?
            .query_row([id.as_str()], |row| row.get(0))?)
    }

    /// The agents with a poke or an escalation whose outcome is still to come (one look at
    /// the partial index of pending rows, for a whole pass).
    pub fn pending_agents(&self) -> Result<std::collections::HashSet<String>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT DISTINCT agent_id FROM poke_log WHERE outcome = 'pending'")?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether any agent has a ladder (when none has, a pass need not look for rungs).
    pub fn any_ladder(&self) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM rungs)")?
            .query_row([], |row| row.get(0))?)
    }

    /// The agent's ladder, for [`rules::decide`], read inside this transaction.
    pub fn ladder<'t>(&'t self, agent: &'t Agent) -> TxLadder<'t, 'c> {
        TxLadder { tx: self, agent }
    }

    /// Writes back the state columns a transition changes — never the settings, so their
    /// CHECK constraints are not evaluated again; exactly one row must change.
    ///
    /// The row is found by the rowid this transaction read it at, its id checked; by its id
    /// when that finds none (an agent not read by this transaction, or whose row was replaced
    /// since).
    fn save_state(&self, agent: &Agent) -> Result<()> {
        let rowid = self.rowids.borrow().get(agent.id.as_str()).copied();
        let values = params![
            agent.id.as_str(),
            agent.current_interval_ms,
            agent.wait_ms,
            agent.consecutive_misses,
            agent.last_poke_at,
            agent.last_activity_at,
            agent.paused,
            agent.held_until_at,
            agent.heartbeat_seen_at,
            agent.probe_seen_at,
            agent.updated_at,
            rowid,
        ];
        let mut changed = match rowid {
            Some(_) => self.tx.prepare_cached(SAVE_STATE_BY_ROWID)?.execute(values)?,
            None => 0,
        };
        if changed == 0 {
            // Without the rowid (?12).
            changed = self.tx.prepare_cached(SAVE_STATE)?.execute(&values[..11])?;
        }
        if changed != 1 {
            return Err(Error::UnknownAgent(agent.id.to_string()));
        }
        #[cfg(debug_assertions)]
        faults::split_transition(&self.tx)?;
        Ok(())
    }

    /// Writes every mutable column back ([`SAVE_AGENT`]); exactly one row must change.
    fn save(&self, agent: &Agent) -> Result<()> {
        let changed = with_agent_values(agent, |values| {
            self.tx
                .prepare_cached(SAVE_AGENT)?
                .execute(&values[..SAVED_VALUES])
        })?;
        if changed != 1 {
            return Err(Error::UnknownAgent(agent.id.to_string()));
        }
        #[cfg(debug_assertions)]
        faults::split_transition(&self.tx)?;
        Ok(())
    }

    /// Appends a log row recording `agent`'s interval and misses; returns its id.
    fn append(&self, agent: &Agent, entry: Entry) -> Result<i64> {
        self.tx
            .prepare_cached(
                "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, outcome,
                     exit_code, duration_ms, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                agent.id.as_str(),
                entry.at,
                entry.kind.as_str(),
                agent.current_interval_ms,
                agent.consecutive_misses,
                entry.outcome.map(Outcome::as_str),
                entry.exit_code,
                entry.duration_ms,
                entry.detail
            ])?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Appends a row of `kind` after saving the agent's new state: one whole transition.
    fn transition(&self, agent: &mut Agent, entry: Entry) -> Result<i64> {
        self.save_state(agent)?;
        agent.next_due_at = rules::next_due(agent);
        self.append(agent, entry)
    }

    /// The agent's rungs, by misses.
    pub fn rungs(&self, id: &AgentId) -> Result<Vec<Rung>> {
        super::queries::rungs(&self.tx, id)
    }

    /// Replaces the agent's rungs.
    fn set_rungs(&self, id: &AgentId, rungs: &[Rung]) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM rungs WHERE agent_id = ?1")?
            .execute([id.as_str()])?;
        insert_rungs(&self.tx, id, rungs)
    }

    /// Judges a value read from one of the agent's activity sources (SPEC §3) and records what
    /// it means: the value as seen when it is new, and an activity when it counts.
    pub fn read_source(
        &self,
        agent: &mut Agent,
        source: Source,
        value: Millis,
        now: Millis,
        draw: &dyn Draw,
    ) -> Result<Reading> {
        let reading = rules::read_source(source, value, agent, now);
        if !reading.is_new() {
            return Ok(reading);
        }
        match source {
            Source::HeartbeatFile => agent.heartbeat_seen_at = Some(value),
            Source::Probe => agent.probe_seen_at = Some(value),
        }
        match reading {
            Reading::Activity(at) => {
                let at = rules::activity(agent, at, now, draw);
                self.transition(agent, Entry::new(Kind::Activity, at))?;
            }
            _ => self.save_state(agent)?,
        }
        Ok(reading)
    }

    /// The due pass's transition for one agent (SPEC §3, §7.3): the decided miss, then the
    /// poke, or the escalation in its place; a rung held by its cap is logged `held` before the
    /// poke that replaces it. `note` (a gate error) is kept in the poke's detail.
    pub fn begin(
        &self,
        agent: &mut Agent,
        decision: &Decision,
        now: Millis,
        draw: &dyn Draw,
        note: Option<String>,
    ) -> Result<Started> {
        if let Some(after_miss) = rules::apply(agent, decision, now, draw) {
            self.append(&after_miss, Entry::new(Kind::Miss, now))?;
        }
        self.save_state(agent)?;
        agent.next_due_at = rules::next_due(agent);
        let pending_or_sent = |command: &Option<Vec<String>>| {
            if command.is_some() {
                Outcome::Pending
            } else {
                Outcome::Sent
            }
        };
        let join = |a: Option<String>, b: String| Some(a.map_or(b.clone(), |a| format!("{a}; {b}")));
        let (kind, rung, command, detail) = match &decision.action {
            Action::Escalate(rung) => (
                Kind::Escalation,
                Some(rung.misses),
                Some(rung.command.clone()),
                Some(format!("rung {}", rung.misses)),
            ),
            Action::Held(rung) => {
                let cap = self.ladder(agent).cap(now)?;
                let held = format!(
                    "rung {} held by its cap: {} of {} escalations in the last {}",
                    rung.misses,
                    cap.count(now),
                    cap.limit,
                    format_duration(cap.window_ms)
                );
                self.append(
                    agent,
                    Entry::new(Kind::Escalation, now).with(Outcome::Held, Some(held)),
                )?;
                let instead = format!("instead of rung {}, held by its cap", rung.misses);
                (
                    Kind::Poke,
                    None,
                    agent.settings.command.clone(),
                    join(note, instead),
                )
            }
            Action::Unfired(rung) => {
                let unfired = format!("rung {} not fired: the gate failed", rung.misses);
                (
                    Kind::Poke,
                    None,
                    agent.settings.command.clone(),
                    join(note, unfired),
                )
            }
            Action::Poke => (Kind::Poke, None, agent.settings.command.clone(), note),
        };
        let log_id = self.append(
            agent,
            Entry::new(kind, now).with(pending_or_sent(&command), detail),
        )?;
        Ok(Started {
            log_id,
            kind,
            agent: agent.clone(),
            rung,
            command,
            missed: decision.miss,
        })
    }

    /// A skip (SPEC §7.2): the gate said there is nothing to do. Held for one wait; the row
    /// keeps the gate's exit code, duration and the first KiB of its stderr.
    pub fn skip(&self, agent: &mut Agent, gate: &Finished, now: Millis, draw: &dyn Draw) -> Result<()> {
        rules::skip(agent, now, draw);
        let mut entry = Entry::new(Kind::Skip, now).with(gate.outcome, gate.detail.clone());
        entry.exit_code = gate.exit_code;
        entry.duration_ms = Some(gate.duration_ms.max(0));
        self.transition(agent, entry)?;
        Ok(())
    }

    /// Records how a command ended on its pending row; `false` when the row is gone (purged) or
    /// no longer pending (nothing to record). The row's detail keeps what the pass noted.
    pub fn finish_command(&self, f: &Finished) -> Result<bool> {
        let changed = self
            .tx
            .prepare_cached(
                "UPDATE poke_log SET outcome = ?2, exit_code = ?3, duration_ms = ?4,
                     detail = CASE WHEN ?5 IS NULL THEN detail
                                   WHEN detail IS NULL THEN ?5
                                   ELSE detail || '; ' || ?5 END
                 WHERE id = ?1 AND outcome = 'pending'",
            )?
            .execute(params![
                f.log_id,
                f.outcome.as_str(),
                f.exit_code,
                f.duration_ms.max(0),
                f.detail
            ])?;
        Ok(changed == 1)
    }

    /// Marks every pending row `interrupted` (a daemon died before recording it); returns them.
    pub fn interrupt_pending(&self, detail: &str) -> Result<Vec<Interrupted>> {
        let mut stmt = self.tx.prepare_cached(
            "UPDATE poke_log SET outcome = 'interrupted', detail = ?1
             WHERE outcome = 'pending'
             RETURNING id, agent_id, kind",
        )?;
        let rows = stmt.query_map([detail], |row| {
            let agent: String = row.get(1)?;
            let kind: String = row.get(2)?;
            Ok((row.get(0)?, agent, kind))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (log_id, agent, kind) = row?;
            out.push(Interrupted {
                log_id,
                agent_id: agent,
                kind: kind.parse().unwrap_or(Kind::Poke),
            });
        }
        Ok(out)
    }

    /// Moves the agent's stored instants that lie more than `slack` after `now` back to `now`
    /// (the clock was set back), as one logged `updated` transition saying what moved from what
    /// (SPEC §3). A hold further ahead than any hold poked could have set is moved too. Returns
    /// the detail, or `None` when nothing lay in the future.
    pub fn correct_future(&self, agent: &mut Agent, now: Millis, slack: Millis) -> Result<Option<String>> {
        let longest_hold = now
            .saturating_add(slack)
            .saturating_add(agent.settings.grace_ms.max(agent.settings.max_interval_ms));
        let mut moved = Vec::new();
        let mut fix = |name: &str, at: &mut Option<Millis>, limit: Millis| {
            if let Some(t) = *at
                && t > limit
            {
                moved.push(format!("{name} from {}", crate::units::format_time(t)));
                *at = Some(now);
            }
        };
        let limit = now.saturating_add(slack);
        fix("last_poke_at", &mut agent.last_poke_at, limit);
        fix("last_activity_at", &mut agent.last_activity_at, limit);
        fix("held_until_at", &mut agent.held_until_at, longest_hold);
        let mut created = Some(agent.created_at);
        fix("created_at", &mut created, limit);
        if moved.is_empty() {
            return Ok(None);
        }
        agent.created_at = created.unwrap_or(now);
        agent.updated_at = now;
        self.tx
            .prepare_cached("UPDATE agents SET created_at = ?2 WHERE id = ?1")?
            .execute(params![agent.id.as_str(), agent.created_at])?;
        let detail = format!("{CLOCK_SET_BACK} moved {} to now", moved.join(", "));
        let mut entry = Entry::new(Kind::Updated, now);
        entry.detail = Some(detail.clone());
        self.transition(agent, entry)?;
        Ok(Some(detail))
    }
}

/// How the detail of a clock correction begins (`check` knows it by this).
pub(super) const CLOCK_SET_BACK: &str = "clock set back:";

/// A pending row a dead daemon left, now marked `interrupted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    pub log_id: i64,
    pub agent_id: String,
    pub kind: Kind,
}

/// An agent's ladder read inside a transaction (see [`Tx::ladder`]).
pub struct TxLadder<'t, 'c> {
    tx: &'t Tx<'c>,
    agent: &'t Agent,
}

impl Ladder for TxLadder<'_, '_> {
    fn rung(&mut self, misses: i64) -> Result<Option<Rung>> {
        let command: Option<String> = self
            .tx
            .tx
            .prepare_cached("SELECT command FROM rungs WHERE agent_id = ?1 AND misses = ?2")?
            .query_row(params![self.agent.id.as_str(), misses], |row| row.get(0))
            .optional()?;
        command
            .map(|json| {
                argv_from_json(&json)
                    .map(|command| Rung { misses, command })
                    .map_err(|e| Error::invalid("rung", json, e))
            })
            .transpose()
    }

    fn cap(&mut self, now: Millis) -> Result<Cap> {
        super::queries::cap(self.tx.conn(), self.agent, now)
    }
}

/// Inserts rungs for an agent.
pub(super) fn insert_rungs(tx: &rusqlite::Connection, id: &AgentId, rungs: &[Rung]) -> Result<()> {
    let mut insert =
        tx.prepare_cached("INSERT INTO rungs (agent_id, misses, command) VALUES (?1, ?2, ?3)")?;
    for rung in rungs {
        insert.execute(params![id.as_str(), rung.misses, argv_json(&rung.command)])?;
    }
    Ok(())
}

impl Store {
    /// Registers a new agent with its ladder: interval = base, no misses, never poked, so due
    /// at once.
    pub fn add(
        &self,
        id: &AgentId,
        settings: &Settings,
        rungs: &[Rung],
        paused: bool,
        now: Millis,
        draw: &dyn Draw,
    ) -> Result<Agent> {
        settings.validate()?;
        let rungs = validate_ladder(rungs.to_vec())?;
        self.write(|tx| {
            let exists: bool = tx
                .tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM agents WHERE id = ?1)")?
                .query_row([id.as_str()], |row| row.get(0))?;
            if exists {
                return Err(Error::exists(id.to_string()));
            }
            let mut agent = Agent {
                id: id.clone(),
                settings: settings.clone(),
                current_interval_ms: settings.base_interval_ms,
                wait_ms: crate::backoff::wait(settings.base_interval_ms, settings.jitter, draw.draw()),
                consecutive_misses: 0,
                last_poke_at: None,
                last_activity_at: None,
                paused,
                held_until_at: None,
                heartbeat_seen_at: None,
                probe_seen_at: None,
                created_at: now,
                updated_at: now,
                next_due_at: None,
            };
            agent.next_due_at = rules::next_due(&agent);
            super::import::insert_agent(&tx.tx, &agent)?;
            insert_rungs(&tx.tx, id, &rungs)?;
            let mut entry = Entry::new(Kind::Added, now);
            entry.detail = Some(describe(settings, &rungs, paused));
            tx.append(&agent, entry)?;
            Ok(agent)
        })
    }

    /// Changes an agent's settings (and with `patch.rungs`, its ladder). The current interval
    /// is clamped into the new `[base, max]` and the wait drawn again. Returns `None` when
    /// nothing would change.
    pub fn set(&self, id: &AgentId, patch: &Patch, now: Millis, draw: &dyn Draw) -> Result<Option<Agent>> {
        if patch.is_empty() {
            return Err(Error::Usage(format!(
                "nothing to change for {id}: give at least one option (see `poked set --help`)"
            )));
        }
        let new_rungs = patch.rungs.clone().map(validate_ladder).transpose()?;
        self.write(|tx| {
            let before = tx.agent(id)?;
            let old_rungs = tx.rungs(id)?;
            let settings = patch.apply(&before.settings);
            settings.validate()?;
            let rungs = new_rungs.unwrap_or_else(|| old_rungs.clone());
            if settings == before.settings && rungs == old_rungs {
                return Ok(None);
            }
            let mut agent = before.clone();
            agent.settings = settings;
            let clamped = agent
                .current_interval_ms
                .clamp(agent.settings.base_interval_ms, agent.settings.max_interval_ms);
            agent.current_interval_ms = clamped;
            agent.wait_ms = crate::backoff::wait(clamped, agent.settings.jitter, draw.draw());
            agent.updated_at = now;
            tx.save(&agent)?;
            agent.next_due_at = rules::next_due(&agent);
            if rungs != old_rungs {
                tx.set_rungs(id, &rungs)?;
            }
            let mut entry = Entry::new(Kind::Updated, now);
            entry.detail = Some(changes(&before.settings, &old_rungs, &agent.settings, &rungs));
            tx.append(&agent, entry)?;
            Ok(Some(agent))
        })
    }

    /// Removes an agent and its ladder. Its history stays unless `purge`, which deletes that
    /// (and its counters) too. Returns the number of log rows purged.
    pub fn remove(&self, id: &AgentId, purge: bool, now: Millis) -> Result<usize> {
        self.write(|tx| {
            let agent = tx.agent(id)?;
            tx.tx
                .prepare_cached("DELETE FROM agents WHERE id = ?1")?
                .execute([id.as_str()])?;
            tx.tx
                .prepare_cached("DELETE FROM rungs WHERE agent_id = ?1")?
                .execute([id.as_str()])?;
            if purge {
                tx.tx
                    .prepare_cached("DELETE FROM counters WHERE agent_id = ?1")?
                    .execute([id.as_str()])?;
                let rows = tx
                    .tx
                    .prepare_cached("DELETE FROM poke_log WHERE agent_id = ?1")?
                    .execute([id.as_str()])?;
                return Ok(rows);
            }
            tx.append(&agent, Entry::new(Kind::Removed, now))?;
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
                let mut agent = tx.agent(id)?;
                if agent.paused == paused {
                    changed.push(false);
                    continue;
                }
                agent.paused = paused;
                agent.updated_at = now;
                let kind = if paused { Kind::Paused } else { Kind::Resumed };
                tx.transition(&mut agent, Entry::new(kind, now))?;
                changed.push(true);
            }
            Ok(changed)
        })
    }

    /// Records a poke made outside the daemon: last poke = now, a new wait drawn.
    pub fn record_poke(&self, id: &AgentId, now: Millis, draw: &dyn Draw) -> Result<Agent> {
        self.manual(id, |agent| {
            rules::poke(agent, now, draw);
            Entry::new(Kind::Poke, now).with(Outcome::Sent, Some("recorded by hand".into()))
        })
    }

    /// Records a miss: misses + 1, the interval grows by the strategy, capped at max.
    pub fn record_miss(&self, id: &AgentId, now: Millis, draw: &dyn Draw) -> Result<Agent> {
        self.manual(id, |agent| {
            rules::miss(agent, now, draw);
            Entry::new(Kind::Miss, now)
        })
    }

    /// Records activity at `at` (a time in the future counts as now): misses = 0, interval =
    /// base. The last activity never moves backwards; the row is stamped with the activity's
    /// time.
    pub fn record_activity(&self, id: &AgentId, at: Millis, now: Millis, draw: &dyn Draw) -> Result<Agent> {
        self.manual(id, |agent| {
            let at = rules::activity(agent, at, now, draw);
            Entry::new(Kind::Activity, at)
        })
    }

    /// Records a reset: misses = 0, interval = base, any hold lifted, and the cap's count
    /// starts again; the activity time is unchanged.
    pub fn record_reset(&self, id: &AgentId, now: Millis, draw: &dyn Draw) -> Result<Agent> {
        self.manual(id, |agent| {
            rules::reset(agent, now, draw);
            Entry::new(Kind::Reset, now)
        })
    }

    /// One transition by hand: load, change, save, log.
    fn manual(&self, id: &AgentId, change: impl FnOnce(&mut Agent) -> Entry) -> Result<Agent> {
        self.write(|tx| {
            let mut agent = tx.agent(id)?;
            let entry = change(&mut agent);
            tx.transition(&mut agent, entry)?;
            Ok(agent)
        })
    }

    /// Records how commands ended, in one transaction; returns, for each, whether its row was
    /// still pending (a purged row has nothing to record).
    pub fn finish_commands(&self, finished: &[Finished]) -> Result<Vec<bool>> {
        self.write(|tx| finished.iter().map(|f| tx.finish_command(f)).collect())
    }

    /// Marks every pending row `interrupted` (a daemon died before recording it) and returns
    /// them.
    pub fn interrupt_pending(&self, detail: &str) -> Result<Vec<Interrupted>> {
        self.write(|tx| tx.interrupt_pending(detail))
    }
}

/// A one-line summary of an agent's settings for its `added` log row.
pub(super) fn describe(s: &Settings, rungs: &[Rung], paused: bool) -> String {
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
    if s.activity_cmd.is_some() {
        text.push_str(", probe");
    }
    if s.only_if.is_some() {
        text.push_str(", gate");
    }
    if !rungs.is_empty() {
        let at: Vec<String> = rungs.iter().map(|r| r.misses.to_string()).collect();
        text.push_str(&format!(", rungs at {}", at.join(",")));
    }
    if paused {
        text.push_str(PAUSED_NOTE);
    }
    text
}

/// How an `added` row's detail says the agent started paused (`check` knows it by this).
pub(super) const PAUSED_NOTE: &str = ", paused";

/// What `set` changed, for its `updated` log row: `base 5m → 1m, factor 1.5 → 2`.
fn changes(before: &Settings, old_rungs: &[Rung], after: &Settings, new_rungs: &[Rung]) -> String {
    let mut parts = Vec::new();
    let mut note = |name: &str, a: String, b: String| {
        if a != b {
            parts.push(format!("{name} {a} → {b}"));
        }
    };
    let ms = |v: i64| format_duration(v);
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    let argv = |v: &Option<Vec<String>>| v.as_ref().map_or("none".into(), |a| a.join(" "));
    let ladder = |rungs: &[Rung]| {
        if rungs.is_empty() {
            return "none".to_string();
        }
        let parts: Vec<String> = rungs
            .iter()
            .map(|r| format!("{}:{}", r.misses, r.command.join(" ")))
            .collect();
        parts.join(", ")
    };
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
    note(
        "activity probe",
        argv(&before.activity_cmd),
        argv(&after.activity_cmd),
    );
    note("echo", ms(before.echo_ms), ms(after.echo_ms));
    note("gate", argv(&before.only_if), argv(&after.only_if));
    note("grace", ms(before.grace_ms), ms(after.grace_ms));
    note(
        "escalate limit",
        format!("{}/{}", before.escalate_limit, ms(before.escalate_window_ms)),
        format!("{}/{}", after.escalate_limit, ms(after.escalate_window_ms)),
    );
    note("ladder", ladder(old_rungs), ladder(new_rungs));
    parts.join(", ")
}

/// Faults for the crash suite's negative control, compiled into debug builds only and kept
/// apart from the transitions' main path.
#[cfg(debug_assertions)]
mod faults {
    use rusqlite::Transaction;

    use crate::error::Result;

    /// With `POKED_FAULT=split-transition`, the agent row is committed on its own and the log
    /// row follows in a second transaction 20 ms later, so a kill in between leaves a state
    /// change without its log row, which the suite must detect. Release builds cannot honour it.
    pub fn split_transition(tx: &Transaction<'_>) -> Result<()> {
        if std::env::var_os("POKED_FAULT").is_some_and(|v| v == "split-transition") {
            tx.execute_batch("COMMIT")?;
            // The fault's point is the window between the two commits.
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.execute_batch("BEGIN IMMEDIATE")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::FixedDraw;
    use crate::store::OpenOptions;

    #[test]
    fn a_transition_writes_the_agent_it_read_even_when_its_row_moved() {
        let dir = tempfile::tempdir().unwrap();
        let options = OpenOptions {
            create: true,
            ..OpenOptions::default()
        };
        let store = Store::open(&dir.path().join("poked.db"), options).unwrap();
        let (a, b) = (AgentId::parse("a").unwrap(), AgentId::parse("b").unwrap());
        let draw = FixedDraw(0.0);
        for id in [&a, &b] {
            store.add(id, &Settings::default(), &[], false, 0, &draw).unwrap();
        }
        store
            .write(|tx| {
                let mut agent = tx.agent(&a)?;
                // After the read, `a` moves to another rowid and `b` takes the one `a` was read
                // at: the write must find `a`, and leave `b` alone.
                let read_at: i64 = tx.rowids.borrow()["a"];
                tx.conn()
                    .execute("UPDATE agents SET rowid = 1000 WHERE id = 'a'", [])?;
                tx.conn()
                    .execute("UPDATE agents SET rowid = ?1 WHERE id = 'b'", [read_at])?;
                rules::miss(&mut agent, 10, &draw);
                tx.transition(&mut agent, Entry::new(Kind::Miss, 10))?;
                Ok(())
            })
            .unwrap();
        assert_eq!(store.agent(&a).unwrap().consecutive_misses, 1);
        assert_eq!(store.agent(&b).unwrap().consecutive_misses, 0, "b was written");
    }
}
