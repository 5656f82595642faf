//! How agents and log rows look: aligned tables for people, JSON for scripts.
//!
//! JSON keys are the column names of SPEC §4; times are RFC 3339 UTC strings, durations integer
//! milliseconds. The same thing has the same key in every command.

use std::io::Write;

use comfy_table::{CellAlignment, Table, presets};
use serde_json::{Value, json};

use super::io_err;
use crate::agent::Agent;
use crate::clock::Millis;
use crate::error::Result;
use crate::store::LogRow;
use crate::units::{format_duration, format_relative, format_time};

fn time(at: Option<Millis>) -> Value {
    at.map_or(Value::Null, |at| Value::String(format_time(at)))
}

/// An agent as a JSON object.
pub fn agent_json(agent: &Agent, now: Millis) -> Value {
    let s = &agent.settings;
    json!({
        "id": agent.id,
        "state": agent.state(now),
        "freshness": agent.freshness(now).as_str(),
        "strategy": s.strategy.as_str(),
        "base_interval_ms": s.base_interval_ms,
        "max_interval_ms": s.max_interval_ms,
        "factor": s.factor,
        "jitter": s.jitter,
        "fresh_ms": s.fresh_ms,
        "very_stale_ms": s.very_stale_ms,
        "current_interval_ms": agent.current_interval_ms,
        "wait_ms": agent.wait_ms,
        "consecutive_misses": agent.consecutive_misses,
        "last_poke_at": time(agent.last_poke_at),
        "last_activity_at": time(agent.last_activity_at),
        "paused": agent.paused,
        "command": s.command,
        "heartbeat_file": s.heartbeat_file,
        "created_at": format_time(agent.created_at),
        "updated_at": format_time(agent.updated_at),
        "next_due_at": time(agent.next_due_at),
    })
}

/// A log row as a JSON object.
pub fn log_json(row: &LogRow) -> Value {
    json!({
        "id": row.id,
        "agent_id": row.agent_id,
        "at": format_time(row.at),
        "kind": row.kind,
        "interval_ms": row.interval_ms,
        "consecutive_misses": row.consecutive_misses,
        "outcome": row.outcome,
        "exit_code": row.exit_code,
        "duration_ms": row.duration_ms,
        "detail": row.detail,
    })
}

/// Prints a JSON value, pretty, with a final newline.
pub fn print_json(out: &mut dyn Write, value: &Value) -> Result<()> {
    // Serialising a `Value` to a writer only fails on I/O errors.
    serde_json::to_writer_pretty(&mut *out, value).map_err(|e| io_err(e.into()))?;
    writeln!(out).map_err(io_err)
}

/// A table with a header, columns aligned, no borders.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_header(header.iter().copied());
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// Prints a table built by [`table`], trimming the padding at the end of each line.
pub fn print_table(out: &mut dyn Write, table: &mut Table, right_aligned: &[usize]) -> Result<()> {
    for &i in right_aligned {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    for line in table.lines() {
        writeln!(out, "{}", line.trim_end()).map_err(io_err)?;
    }
    Ok(())
}

/// The agents table of `list` and `due`.
pub fn print_agents(out: &mut dyn Write, agents: &[Agent], now: Millis) -> Result<()> {
    let mut t = table(&[
        "ID",
        "STATE",
        "INTERVAL",
        "MISSES",
        "LAST POKE",
        "LAST ACTIVITY",
        "FRESHNESS",
        "NEXT DUE",
    ]);
    for a in agents {
        t.add_row(vec![
            a.id.clone(),
            a.state(now).to_string(),
            format_duration(a.current_interval_ms),
            a.consecutive_misses.to_string(),
            opt_time(a.last_poke_at),
            opt_time(a.last_activity_at),
            a.freshness(now).as_str().to_string(),
            match a.next_due_at {
                None => "-".into(),
                Some(at) => format!("{} ({})", format_time(at), due_relative(at, now)),
            },
        ]);
    }
    print_table(out, &mut t, &[2, 3])
}

/// The columns of a log table.
pub const LOG_HEADER: [&str; 9] = [
    "TIME", "AGENT", "KIND", "INTERVAL", "MISSES", "OUTCOME", "EXIT", "DURATION", "DETAIL",
];

/// One log row as the cells of a log table, in the order of [`LOG_HEADER`].
pub fn log_cells(r: &LogRow) -> [String; 9] {
    [
        format_time(r.at),
        r.agent_id.clone(),
        r.kind.clone(),
        format_duration(r.interval_ms),
        r.consecutive_misses.to_string(),
        r.outcome.clone().unwrap_or_default(),
        r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        r.duration_ms.map(format_duration).unwrap_or_default(),
        one_line(r.detail.as_deref().unwrap_or_default()),
    ]
}

/// The log table of `show` and `history`.
pub fn print_log(out: &mut dyn Write, rows: &[LogRow]) -> Result<()> {
    let mut t = table(&LOG_HEADER);
    for r in rows {
        t.add_row(log_cells(r).to_vec());
    }
    print_table(out, &mut t, &[3, 4, 6, 7])
}

/// `in 3m12s`, `overdue by 40s`, `now`.
pub fn due_relative(at: Millis, now: Millis) -> String {
    if at < now {
        format!(
            "overdue by {}",
            format_relative(now, at).trim_start_matches("in ")
        )
    } else {
        format_relative(at, now)
    }
}

fn opt_time(at: Option<Millis>) -> String {
    at.map_or_else(|| "never".into(), format_time)
}

/// Keeps a table on one line per row: control characters shown escaped, long text cut.
pub fn one_line(text: &str) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if escaped.chars().count() > 60 {
        format!("{}…", escaped.chars().take(59).collect::<String>())
    } else {
        escaped
    }
}
