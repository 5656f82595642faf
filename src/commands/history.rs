//! `poked history`: the log as a table, JSON or CSV, and `--follow`.
//!
//! # Formats
//!
//! The table has one line per row (control characters in a detail are shown escaped). `--json`
//! is an array of objects with the keys of [`log_json`]; `--csv` has a header row of the same
//! keys and quotes fields as RFC 4180 says (CRLF line ends; a field holding a comma, a quote, CR
//! or LF is quoted and its quotes doubled), so any detail survives a CSV parser.
//!
//! # Following
//!
//! `--follow` prints the selection, then every new row that matches as it is committed, by any
//! process. A poke is committed `pending` and its outcome recorded later: the row is printed
//! when it appears and again once its outcome is known (with `--outcome`, only the versions that
//! match). A JSON array cannot be streamed, so with `--follow`, `--json` prints one object per
//! line. `--limit N` shows the newest N rows first, as `tail -n N -f` does; `--until` is refused,
//! since no new row could match it. It ends with exit 0 on SIGINT, SIGTERM or a closed stdout.
//! (New rows are found by id, which `AUTOINCREMENT` never gives out twice, even after a purge.)

use std::io::Write;

use serde_json::Value;

use super::output::{Table, log_cells, log_json, log_table, print_json, print_json_line, print_log};
use super::{Context, io_err};
use crate::cli::HistoryArgs;
use poked::agent::AgentId;
use poked::daemon::watch::{POLL_INTERVAL, Poll, stdout_closed};
use poked::error::{Error, Result};
use poked::log::{LogRow, Outcome};
use poked::store::{HistoryFilter, Store};
use poked::units::format_time;

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Csv,
}

/// Widths that fit most rows, so a followed log stays aligned as rows arrive: a time with
/// milliseconds, `interrupted`, a `16m52.5s` interval.
const FOLLOW_WIDTHS: [usize; 9] = [24, 12, 10, 9, 6, 11, 4, 8, 0];

/// `poked history`.
pub fn history(ctx: &Context, out: &mut dyn Write, args: &HistoryArgs) -> Result<()> {
    let id = args.id.as_deref().map(AgentId::parse).transpose()?;
    let since = args
        .since
        .as_deref()
        .map(|t| ctx.parse_time("--since", t))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| ctx.parse_time("--until", t))
        .transpose()?;
    if let (Some(since), Some(until), Some(text)) = (since, until, args.until.as_deref())
        && until < since
    {
        return Err(Error::invalid(
            "--until",
            text,
            format!("is before --since ({})", format_time(since)),
        ));
    }
    let format = match (args.json, args.csv) {
        (true, _) => Format::Json,
        (_, true) => Format::Csv,
        _ => Format::Table,
    };
    let filter = HistoryFilter {
        agent_id: id.clone(),
        since,
        until,
        kinds: args.kind.clone(),
        outcomes: args.outcome.clone(),
        after_id: None,
        limit: args.limit,
    };
    let store = ctx.open_to_read()?;
    if let Some(id) = &id
        && !store.agent_known(id)?
    {
        return Err(Error::UnknownAgent(id.to_string()));
    }
    if args.follow {
        return follow(&store, out, &filter, format);
    }
    let rows = store.history(&filter)?;
    match format {
        Format::Json => print_json(out, &Value::Array(rows.iter().map(log_json).collect())),
        Format::Csv => {
            write_csv_header(out)?;
            rows.iter().try_for_each(|row| write_csv_row(out, row))
        }
        Format::Table if rows.is_empty() => writeln!(out, "no log rows match").map_err(io_err),
        Format::Table => print_log(out, &rows),
    }
}

/// Writes rows in `format`; `table` keeps its widths from one batch to the next.
fn write_rows(out: &mut dyn Write, table: &mut Table, format: Format, rows: &[LogRow]) -> Result<()> {
    match format {
        Format::Table => table.write(out, rows.iter().map(log_cells).collect()),
        Format::Csv => rows.iter().try_for_each(|row| write_csv_row(out, row)),
        Format::Json => rows
            .iter()
            .try_for_each(|row| print_json_line(out, &log_json(row))),
    }
}

/// `--follow`: the selection, then new rows until a signal or a closed stdout.
fn follow(store: &Store, out: &mut dyn Write, filter: &HistoryFilter, format: Format) -> Result<()> {
    // The watcher starts before the first read, so a commit after that read is always noticed.
    let mut poll = Poll::new(store, true)?;
    let start = store.follow_start(filter)?;
    let (mut last_id, mut watched) = (start.last_id, start.pending);
    let mut table = log_table().min_widths(&FOLLOW_WIDTHS);
    if format == Format::Csv {
        write_csv_header(out)?;
    }
    if format == Format::Table || !start.rows.is_empty() {
        write_rows(out, &mut table, format, &start.rows)?;
    }
    out.flush().map_err(io_err)?;
    let wanted = |row: &LogRow| {
        filter.outcomes.is_empty() || row.outcome.as_ref().is_some_and(|o| filter.outcomes.contains(o))
    };
    loop {
        if poll.stopped() || stdout_closed() {
            return Ok(());
        }
        if !poll.wait(POLL_INTERVAL)? {
            continue;
        }
        let step = store.follow_step(filter, last_id, &watched)?;
        last_id = step.last_id;
        watched.retain(|id| !step.gone.contains(id) && !step.resolved.iter().any(|r| r.id == *id));
        let mut show: Vec<LogRow> = step.resolved.into_iter().filter(|r| wanted(r)).collect();
        for row in step.rows {
            if row.outcome == Some(Outcome::Pending) {
                watched.push(row.id);
            }
            if wanted(&row) {
                show.push(row);
            }
        }
        if show.is_empty() {
            continue;
        }
        write_rows(out, &mut table, format, &show)?;
        out.flush().map_err(io_err)?;
    }
}

/// The CSV columns: the keys of the JSON objects, in the same order.
const CSV_HEADER: [&str; 10] = [
    "id",
    "agent_id",
    "at",
    "kind",
    "interval_ms",
    "consecutive_misses",
    "outcome",
    "exit_code",
    "duration_ms",
    "detail",
];

fn write_csv_header(out: &mut dyn Write) -> Result<()> {
    write_csv_record(out, &CSV_HEADER.map(String::from))
}

fn write_csv_row(out: &mut dyn Write, row: &LogRow) -> Result<()> {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    write_csv_record(
        out,
        &[
            row.id.to_string(),
            row.agent_id.to_string(),
            format_time(row.at),
            row.kind.to_string(),
            row.interval_ms.to_string(),
            row.consecutive_misses.to_string(),
            row.outcome.map(|o| o.to_string()).unwrap_or_default(),
            opt(row.exit_code),
            opt(row.duration_ms),
            row.detail.clone().unwrap_or_default(),
        ],
    )
}

/// One RFC 4180 record: fields holding a comma, quote, CR or LF are quoted, quotes doubled;
/// CRLF at the end.
fn write_csv_record(out: &mut dyn Write, fields: &[String]) -> Result<()> {
    let mut line = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            line.push('"');
            line.push_str(&field.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(field);
        }
    }
    line.push_str("\r\n");
    out.write_all(line.as_bytes()).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut out = Vec::new();
        write_csv_record(
            &mut out,
            &[
                "plain".into(),
                "a,b".into(),
                "say \"hi\"".into(),
                "two\nlines".into(),
                String::new(),
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n"
        );
    }
}
