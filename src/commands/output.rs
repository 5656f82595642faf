//! How things look: one table builder, one way to print times, JSON for scripts.
//!
//! Every table is a [`Table`]: columns separated by two spaces, numbers right-aligned, no
//! borders, no trailing spaces. A table can be printed whole (widths fitted to every row) or
//! written a batch at a time (`history --follow`), keeping its widths and widening a column
//! when a later row needs it. JSON keys are the column names of SPEC §4 (see
//! [`poked::transfer::agent_json`]); times are RFC 3339 UTC strings, durations integer
//! milliseconds. The same thing has the same key in every command.

use std::io::Write;

use serde_json::{Value, json};

use super::io_err;
use poked::agent::Agent;
use poked::clock::Millis;
use poked::error::Result;
use poked::log::LogRow;
use poked::units::{format_duration, format_relative, format_time};

/// A table of text cells; see the module docs.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    widths: Vec<usize>,
    rows: Vec<Vec<String>>,
    header_written: bool,
}

impl Table {
    /// A table with these columns; the columns at `right` are right-aligned.
    pub fn new(header: &[&'static str], right: &[usize]) -> Table {
        Table {
            header: header.to_vec(),
            right: (0..header.len()).map(|i| right.contains(&i)).collect(),
            widths: header.iter().map(|h| h.chars().count()).collect(),
            rows: Vec::new(),
            header_written: false,
        }
    }

    /// Makes each column at least as wide as `widths` (for a table written in batches).
    pub fn min_widths(mut self, widths: &[usize]) -> Table {
        for (w, min) in self.widths.iter_mut().zip(widths) {
            *w = (*w).max(*min);
        }
        self
    }

    /// Adds a row (to be printed by [`Table::print`]).
    pub fn add_row(&mut self, cells: Vec<String>) {
        self.fit(&cells);
        self.rows.push(cells);
    }

    fn fit(&mut self, cells: &[String]) {
        for (w, cell) in self.widths.iter_mut().zip(cells) {
            *w = (*w).max(cell.chars().count());
        }
    }

    /// Prints the header and every row added so far.
    pub fn print(&mut self, out: &mut dyn Write) -> Result<()> {
        let rows = std::mem::take(&mut self.rows);
        self.write(out, rows)
    }

    /// Writes `rows` (and the header, the first time) with the widths so far, widened where a
    /// row needs it.
    pub fn write(&mut self, out: &mut dyn Write, rows: Vec<Vec<String>>) -> Result<()> {
        if !self.header_written {
            let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
            self.line(out, &header)?;
            self.header_written = true;
        }
        rows.iter().try_for_each(|row| {
            self.fit(row);
            self.line(out, row)
        })
    }

    fn line(&self, out: &mut dyn Write, cells: &[String]) -> Result<()> {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = " ".repeat(self.widths[i].saturating_sub(cell.chars().count()));
            if self.right[i] {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
            line.push_str("  ");
        }
        writeln!(out, "{}", line.trim_end()).map_err(io_err)
    }
}

/// Prints a JSON value, pretty, with a final newline.
pub fn print_json(out: &mut dyn Write, value: &Value) -> Result<()> {
    // Serialising a `Value` to a writer only fails on I/O errors.
    serde_json::to_writer_pretty(&mut *out, value).map_err(|e| io_err(e.into()))?;
    writeln!(out).map_err(io_err)
}

/// Prints a JSON value on one line (JSON Lines).
pub fn print_json_line(out: &mut dyn Write, value: &Value) -> Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(|e| io_err(e.into()))?;
    writeln!(out).map_err(io_err)
}

/// The agents table of `list` and `due`.
pub fn print_agents(out: &mut dyn Write, agents: &[Agent], now: Millis) -> Result<()> {
    let mut t = Table::new(
        &[
            "ID",
            "STATE",
            "INTERVAL",
            "MISSES",
            "LAST POKE",
            "LAST ACTIVITY",
            "FRESHNESS",
            "NEXT DUE",
        ],
        &[2, 3],
    );
    for a in agents {
        t.add_row(vec![
            a.id.to_string(),
            a.state(now).as_str().to_string(),
            format_duration(a.current_interval_ms),
            a.consecutive_misses.to_string(),
            time_or(a.last_poke_at, "never"),
            time_or(a.last_activity_at, "never"),
            a.freshness(now).as_str().to_string(),
            next_due(a, now),
        ]);
    }
    t.print(out)
}

/// `2026-01-01T00:11:00Z (in 5m)`, `… (held)` while a hold decides it, `-` when paused.
pub fn next_due(agent: &Agent, now: Millis) -> String {
    match agent.next_due_at {
        None => "-".into(),
        Some(at) if agent.held(now) && agent.held_until_at == Some(at) => {
            format!("{} ({}, held)", format_time(at), due_relative(at, now))
        }
        Some(at) => format!("{} ({})", format_time(at), due_relative(at, now)),
    }
}

/// The columns of a log table.
pub const LOG_HEADER: [&str; 9] = [
    "TIME", "AGENT", "KIND", "INTERVAL", "MISSES", "OUTCOME", "EXIT", "DURATION", "DETAIL",
];

/// The columns of a log table that hold numbers, right-aligned.
pub const LOG_RIGHT: [usize; 4] = [3, 4, 6, 7];

/// A log table (`show`, `history`, `demo`); numbers right-aligned.
pub fn log_table() -> Table {
    Table::new(&LOG_HEADER, &LOG_RIGHT)
}

/// One log row as the cells of a log table.
pub fn log_cells(r: &LogRow) -> Vec<String> {
    vec![
        format_time(r.at),
        r.agent_id.to_string(),
        r.kind.to_string(),
        format_duration(r.interval_ms),
        r.consecutive_misses.to_string(),
        r.outcome.map(|o| o.to_string()).unwrap_or_default(),
        r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        r.duration_ms.map(format_duration).unwrap_or_default(),
        one_line(r.detail.as_deref().unwrap_or_default()),
    ]
}

/// Prints log rows as a table.
pub fn print_log(out: &mut dyn Write, rows: &[LogRow]) -> Result<()> {
    let mut t = log_table();
    for r in rows {
        t.add_row(log_cells(r));
    }
    t.print(out)
}

/// A log row as a JSON object.
pub fn log_json(row: &LogRow) -> Value {
    json!({
        "id": row.id,
        "agent_id": row.agent_id.as_str(),
        "at": format_time(row.at),
        "kind": row.kind.as_str(),
        "interval_ms": row.interval_ms,
        "consecutive_misses": row.consecutive_misses,
        "outcome": row.outcome.map(|o| o.as_str()),
        "exit_code": row.exit_code,
        "duration_ms": row.duration_ms,
        "detail": row.detail,
    })
}

/// An instant for people, or `none` (`never`, `-`) when there is none.
pub fn time_or(at: Option<Millis>, none: &str) -> String {
    at.map_or_else(|| none.to_string(), format_time)
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

/// [`due_relative`] to the whole second, for a view redrawn once a second: a second not yet
/// over still counts ahead (`in 1s` until it is due), and `overdue by` counts whole seconds.
pub fn countdown(at: Millis, now: Millis) -> String {
    due_relative(now.saturating_add(whole_seconds(at.saturating_sub(now))), now)
}

/// A distance from now in whole seconds: one ahead rounded up, one past rounded toward zero.
pub fn whole_seconds(ms: i64) -> i64 {
    if ms > 0 {
        ms.saturating_add(999) / 1000 * 1000
    } else {
        ms / 1000 * 1000
    }
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

/// `1 agent`, `3 agents`.
pub fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    match n.into() {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}
