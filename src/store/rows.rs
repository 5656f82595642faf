//! How rows of `agents`, `rungs` and `poke_log` become Rust values and back: the column lists
//! every query selects, and the JSON argv arrays commands are stored as.

use rusqlite::types::Type;
use rusqlite::{Row, ToSql};

use crate::agent::{Agent, AgentId, Settings};
use crate::log::LogRow;

/// The columns of `agents` in the order [`agent_from_row`] reads them (a macro, so the
/// statements below are put together at compile time rather than at every call).
macro_rules! agent_columns {
    () => {
        "id, strategy, base_interval_ms, max_interval_ms, factor, jitter, fresh_ms, \
         very_stale_ms, current_interval_ms, wait_ms, consecutive_misses, last_poke_at, last_activity_at, paused, \
         command, heartbeat_file, created_at, updated_at, next_due_at, activity_cmd, echo_ms, only_if, grace_ms, \
         escalate_limit, escalate_window_ms, held_until_at, heartbeat_seen_at, probe_seen_at, rowid"
    };
}

/// One agent by id.
pub(super) const AGENT_BY_ID: &str = concat!("SELECT ", agent_columns!(), " FROM agents WHERE id = ?1");

/// Every agent, by id.
pub(super) const ALL_AGENTS: &str = concat!("SELECT ", agent_columns!(), " FROM agents ORDER BY id");

/// The agents due at `?1`, soonest first: a range scan of `agents_next_due`, read as far as
/// the caller wants. No `LIMIT ?`: SQLite plans a statement again whenever a bound limit
/// changes, and that re-preparing cost the daemon's pass more than reading its rows.
pub(super) const DUE_AGENTS: &str = concat!(
    "SELECT ",
    agent_columns!(),
    " FROM agents WHERE next_due_at <= ?1 ORDER BY next_due_at, id"
);

/// The agents due at `?1` that need no worker (no command, probe or gate) and come after
/// `(?2, ?3)` in the order of [`DUE_AGENTS`]: where a pass goes on once its workers are all
/// taken. SQLite skips the others itself, without building their rows.
pub(super) const DUE_COMMANDLESS_AFTER: &str = concat!(
    "SELECT ",
    agent_columns!(),
    " FROM agents WHERE next_due_at <= ?1 AND (next_due_at, id) > (?2, ?3)",
    " AND command IS NULL AND activity_cmd IS NULL AND only_if IS NULL",
    " ORDER BY next_due_at, id"
);

/// The agent due soonest, paused agents aside.
pub(super) const NEXT_DUE_AGENT: &str = concat!(
    "SELECT ",
    agent_columns!(),
    " FROM agents WHERE next_due_at IS NOT NULL ORDER BY next_due_at, id LIMIT 1"
);

fn bad(col: usize, ty: Type, e: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, ty, e.into().into())
}

/// Reads the argv stored as JSON in column `col`.
pub(super) fn argv_at(row: &Row<'_>, col: usize) -> rusqlite::Result<Option<Vec<String>>> {
    let json: Option<String> = row.get(col)?;
    json.map(|text| argv_from_json(&text).map_err(|e| bad(col, Type::Text, e)))
        .transpose()
}

/// An argv from its stored JSON array of strings.
pub(super) fn argv_from_json(text: &str) -> Result<Vec<String>, String> {
    serde_json::from_str::<Vec<String>>(text).map_err(|e| format!("not a JSON array of strings ({e})"))
}

/// An argv as the JSON array of strings it is stored as.
pub(super) fn argv_json(argv: &[String]) -> String {
    // A JSON value built from strings always prints.
    serde_json::Value::from(argv.to_vec()).to_string()
}

/// [`argv_json`] of an optional argv.
pub(super) fn opt_argv_json(argv: &Option<Vec<String>>) -> Option<String> {
    argv.as_deref().map(argv_json)
}

/// Inserts a whole `agents` row; the values are [`with_agent_values`]'.
pub(super) const INSERT_AGENT: &str = "INSERT INTO agents (id, updated_at, strategy, base_interval_ms,
         max_interval_ms, factor, jitter, fresh_ms, very_stale_ms, command, heartbeat_file,
         activity_cmd, echo_ms, only_if, grace_ms, escalate_limit, escalate_window_ms,
         current_interval_ms, wait_ms, consecutive_misses, last_poke_at, last_activity_at, paused,
         held_until_at, heartbeat_seen_at, probe_seen_at, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
             ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)";

/// Writes every mutable column of one `agents` row back (all but `created_at`): the values are
/// the first [`SAVED_VALUES`] of [`with_agent_values`]'. One statement, so a new max below the
/// old interval never breaks the interval's CHECK between a settings and a state update.
pub(super) const SAVE_AGENT: &str = "UPDATE agents SET updated_at = ?2, strategy = ?3,
         base_interval_ms = ?4, max_interval_ms = ?5, factor = ?6, jitter = ?7, fresh_ms = ?8,
         very_stale_ms = ?9, command = ?10, heartbeat_file = ?11, activity_cmd = ?12, echo_ms = ?13,
         only_if = ?14, grace_ms = ?15, escalate_limit = ?16, escalate_window_ms = ?17,
         current_interval_ms = ?18, wait_ms = ?19, consecutive_misses = ?20, last_poke_at = ?21,
         last_activity_at = ?22, paused = ?23, held_until_at = ?24, heartbeat_seen_at = ?25,
         probe_seen_at = ?26
     WHERE id = ?1";

/// How many of [`with_agent_values`]' values [`SAVE_AGENT`] takes.
pub(super) const SAVED_VALUES: usize = 26;

/// Calls `f` with an agent's column values in the order [`INSERT_AGENT`] and [`SAVE_AGENT`]
/// bind them (`created_at` last).
pub(super) fn with_agent_values<T>(agent: &Agent, f: impl FnOnce(&[&dyn ToSql; 27]) -> T) -> T {
    let s = &agent.settings;
    let (command, activity_cmd, only_if) = (
        opt_argv_json(&s.command),
        opt_argv_json(&s.activity_cmd),
        opt_argv_json(&s.only_if),
    );
    f(&[
        &agent.id.as_str(),
        &agent.updated_at,
        &s.strategy.as_str(),
        &s.base_interval_ms,
        &s.max_interval_ms,
        &s.factor,
        &s.jitter,
        &s.fresh_ms,
        &s.very_stale_ms,
        &command,
        &s.heartbeat_file,
        &activity_cmd,
        &s.echo_ms,
        &only_if,
        &s.grace_ms,
        &s.escalate_limit,
        &s.escalate_window_ms,
        &agent.current_interval_ms,
        &agent.wait_ms,
        &agent.consecutive_misses,
        &agent.last_poke_at,
        &agent.last_activity_at,
        &agent.paused,
        &agent.held_until_at,
        &agent.heartbeat_seen_at,
        &agent.probe_seen_at,
        &agent.created_at,
    ])
}

/// Where `agent_columns!` puts the due time, the command, the probe and the gate.
pub(super) const NEXT_DUE_COLUMN: usize = 18;
pub(super) const COMMAND_COLUMN: usize = 14;
pub(super) const ACTIVITY_CMD_COLUMN: usize = 19;
pub(super) const ONLY_IF_COLUMN: usize = 21;
/// The row's rowid, last: a transaction writes an agent it read back by it ([`super::Tx`]).
pub(super) const ROWID_COLUMN: usize = 28;

/// Reads one `agents` row selected with `agent_columns!` (the statements above).
pub(super) fn agent_from_row(row: &Row<'_>) -> rusqlite::Result<Agent> {
    let id: String = row.get(0)?;
    let strategy: String = row.get(1)?;
    Ok(Agent {
        id: AgentId::parse(&id).map_err(|e| bad(0, Type::Text, e.to_string()))?,
        settings: Settings {
            strategy: strategy.parse().map_err(|e: String| bad(1, Type::Text, e))?,
            base_interval_ms: row.get(2)?,
            max_interval_ms: row.get(3)?,
            factor: row.get(4)?,
            jitter: row.get(5)?,
            fresh_ms: row.get(6)?,
            very_stale_ms: row.get(7)?,
            command: argv_at(row, COMMAND_COLUMN)?,
            heartbeat_file: row.get(15)?,
            activity_cmd: argv_at(row, ACTIVITY_CMD_COLUMN)?,
            echo_ms: row.get(20)?,
            only_if: argv_at(row, ONLY_IF_COLUMN)?,
            grace_ms: row.get(22)?,
            escalate_limit: row.get(23)?,
            escalate_window_ms: row.get(24)?,
        },
        current_interval_ms: row.get(8)?,
        wait_ms: row.get(9)?,
        consecutive_misses: row.get(10)?,
        last_poke_at: row.get(11)?,
        last_activity_at: row.get(12)?,
        paused: row.get(13)?,
        held_until_at: row.get(25)?,
        heartbeat_seen_at: row.get(26)?,
        probe_seen_at: row.get(27)?,
        created_at: row.get(16)?,
        updated_at: row.get(17)?,
        next_due_at: row.get(18)?,
    })
}

/// The columns of `poke_log` in the order [`log_from_row`] reads them.
pub(super) const LOG_COLUMNS: &str =
    "id, agent_id, at, kind, interval_ms, consecutive_misses, outcome, exit_code, duration_ms, detail";

/// Reads one `poke_log` row selected with [`LOG_COLUMNS`].
pub(super) fn log_from_row(row: &Row<'_>) -> rusqlite::Result<LogRow> {
    let agent_id: String = row.get(1)?;
    let kind: String = row.get(3)?;
    let outcome: Option<String> = row.get(6)?;
    Ok(LogRow {
        id: row.get(0)?,
        agent_id: AgentId::parse(&agent_id).map_err(|e| bad(1, Type::Text, e.to_string()))?,
        at: row.get(2)?,
        kind: kind.parse().map_err(|e: String| bad(3, Type::Text, e))?,
        interval_ms: row.get(4)?,
        consecutive_misses: row.get(5)?,
        outcome: outcome
            .map(|o| o.parse().map_err(|e: String| bad(6, Type::Text, e)))
            .transpose()?,
        exit_code: row.get(7)?,
        duration_ms: row.get(8)?,
        detail: row.get(9)?,
    })
}
