//! The operator's commands besides `history`: `stats`, `next`, `prune`, `check`, `status`.
//!
//! Each prints an aligned table or sentence for people and, with `--json`, an object or array
//! whose keys are the column names of SPEC §4 wherever a column is meant (`id`,
//! `current_interval_ms`, `next_due_at`, ...), times as RFC 3339 UTC strings and durations as
//! integer milliseconds. The README lists every key.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

use super::output::{agent_json, due_relative, print_json, print_table, table};
use super::{Context, io_err};
use crate::agent::{Agent, Freshness};
use crate::clock::Millis;
use crate::daemon::lock;
use crate::daemon::watch::{POLL_INTERVAL, Poll, stdout_closed};
use crate::error::{Error, Result};
use crate::store::{Breach, LogCounts, OUTCOMES, PRUNE_BATCH, wal_path};
use crate::units::{format_duration, format_relative, format_time};

fn time(at: Option<Millis>) -> Value {
    at.map_or(Value::Null, |at| Value::String(format_time(at)))
}

/// `poked stats`: per agent, counts from the log (in the window) beside the current state.
///
/// An agent that was removed but has log rows in the window is listed with state `removed`
/// and no current state (its history outlives it).
pub fn stats(ctx: &Context, out: &mut dyn Write, since: Option<&str>, json: bool) -> Result<()> {
    let since = since.map(|t| ctx.parse_time("--since", t)).transpose()?;
    let store = ctx.open(false)?;
    let now = ctx.now();
    let agents = store.agents()?;
    let counts = store.log_counts(since)?;
    let mut merged: BTreeMap<&str, (Option<&Agent>, Option<&LogCounts>)> = BTreeMap::new();
    for agent in &agents {
        merged.entry(agent.id.as_str()).or_default().0 = Some(agent);
    }
    for c in &counts {
        merged.entry(c.agent_id.as_str()).or_default().1 = Some(c);
    }
    let empty = LogCounts {
        outcomes: OUTCOMES.iter().map(|o| (*o, 0)).collect(),
        ..LogCounts::default()
    };

    if json {
        let rows = merged
            .iter()
            .map(|(id, (agent, counts))| {
                let c = counts.unwrap_or(&empty);
                json!({
                    "id": id,
                    "state": agent.map_or("removed", |a| a.state(now)),
                    "pokes": c.pokes,
                    "misses": c.misses,
                    "activities": c.activities,
                    "outcomes": c.outcomes,
                    "current_interval_ms": agent.map(|a| a.current_interval_ms),
                    "consecutive_misses": agent.map(|a| a.consecutive_misses),
                    "last_activity_at": time(agent.and_then(|a| a.last_activity_at)),
                    "freshness": agent.map(|a| a.freshness(now).as_str()),
                    "next_due_at": time(agent.and_then(|a| a.next_due_at)),
                })
            })
            .collect();
        return print_json(out, &Value::Array(rows));
    }
    if merged.is_empty() {
        return writeln!(out, "no agents and no log rows{}", window(since)).map_err(io_err);
    }
    let mut t = table(&[
        "ID",
        "STATE",
        "INTERVAL",
        "MISSES",
        "POKES",
        "MISSED",
        "ACTIVITIES",
        "OUTCOMES",
        "LAST ACTIVITY",
        "FRESHNESS",
        "NEXT DUE",
    ]);
    for (id, (agent, counts)) in &merged {
        let c = counts.unwrap_or(&empty);
        let outcomes: Vec<String> = c
            .outcomes
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(o, n)| format!("{n} {o}"))
            .collect();
        let current = |f: &dyn Fn(&Agent) -> String| agent.map_or_else(|| "-".to_string(), f);
        t.add_row(vec![
            id.to_string(),
            agent.map_or("removed", |a| a.state(now)).to_string(),
            current(&|a| format_duration(a.current_interval_ms)),
            current(&|a| a.consecutive_misses.to_string()),
            c.pokes.to_string(),
            c.misses.to_string(),
            c.activities.to_string(),
            if outcomes.is_empty() {
                "-".into()
            } else {
                outcomes.join(", ")
            },
            current(&|a| a.last_activity_at.map_or_else(|| "never".into(), format_time)),
            current(&|a| a.freshness(now).as_str().to_string()),
            current(&|a| match a.next_due_at {
                None => "-".into(),
                Some(at) => format!("{} ({})", format_time(at), due_relative(at, now)),
            }),
        ]);
    }
    print_table(out, &mut t, &[2, 3, 4, 5, 6])
}

fn window(since: Option<Millis>) -> String {
    since.map_or_else(String::new, |at| format!(" since {}", format_time(at)))
}

/// `poked next [--wait]`.
///
/// Without `--wait`, when no agent will ever come due (none, or all paused) it says so and
/// exits 0 (`null` with `--json`). With `--wait` it sleeps until the next due time (from the
/// one clock, so under a fixed `POKED_NOW` only a change to the database can wake it), looking
/// at the database whenever anyone commits, so an activity that postpones the agent, a new
/// agent or a resumed one is honoured; it then prints the agent and exits 0.
pub fn next(ctx: &Context, out: &mut dyn Write, wait: bool, json: bool) -> Result<()> {
    let store = ctx.open_with(false, if wait { 2 } else { 1 })?;
    if !wait {
        let agent = store.next_due()?;
        return print_next(out, agent.as_ref(), ctx.now(), json);
    }
    let mut poll = Poll::new(&store, false)?;
    let mut agent = store.next_due()?;
    let mut announced = None;
    loop {
        let now = ctx.now();
        let due = agent.as_ref().and_then(|a| a.next_due_at);
        let waiting_for = agent.as_ref().map(|a| (a.id.clone(), due));
        if announced.as_ref() != Some(&waiting_for) {
            match &waiting_for {
                Some((id, Some(due))) => {
                    tracing::debug!(agent = %id, due_at = %format_time(*due), "next: waiting until it is due");
                }
                _ => tracing::debug!("next: no agent will come due; waiting for a change"),
            }
            announced = Some(waiting_for);
        }
        if due.is_some_and(|due| due <= now) {
            // Make sure nothing changed it since the last look before announcing it.
            agent = store.next_due()?;
            if agent
                .as_ref()
                .and_then(|a| a.next_due_at)
                .is_some_and(|due| due <= now)
            {
                return print_next(out, agent.as_ref(), now, json);
            }
            continue;
        }
        if stdout_closed() {
            return Ok(());
        }
        let sleep = due.map_or(POLL_INTERVAL, |due| {
            Duration::from_millis(u64::try_from(due - now).unwrap_or(0)).min(POLL_INTERVAL)
        });
        if poll.wait(sleep)? {
            agent = store.next_due()?;
        }
    }
}

fn print_next(out: &mut dyn Write, agent: Option<&Agent>, now: Millis, json: bool) -> Result<()> {
    let (agent, due) = match agent.and_then(|a| Some((a, a.next_due_at?))) {
        Some(found) => found,
        None if json => return print_json(out, &Value::Null),
        None => {
            return writeln!(out, "no agent will come due: there are none, or all are paused")
                .map_err(io_err);
        }
    };
    if json {
        let mut value = agent_json(agent, now);
        value["due_in_ms"] = json!(due.saturating_sub(now));
        return print_json(out, &value);
    }
    writeln!(
        out,
        "{} is due at {} ({})",
        agent.id,
        format_time(due),
        due_relative(due, now)
    )
    .map_err(io_err)
}

/// `poked prune --older-than D [--dry-run]`.
pub fn prune(ctx: &Context, out: &mut dyn Write, older_than: i64, dry_run: bool, json: bool) -> Result<()> {
    let before = ctx.now().saturating_sub(older_than);
    let store = ctx.open(false)?;
    let rows = store.prune(before, PRUNE_BATCH, dry_run)?;
    if json {
        return print_json(
            out,
            &json!({
                "rows": rows,
                "dry_run": dry_run,
                "older_than_ms": older_than,
                "cutoff_at": format_time(before),
            }),
        );
    }
    let rows_text = match rows {
        1 => "1 log row".to_string(),
        n => format!("{n} log rows"),
    };
    writeln!(
        out,
        "{} {rows_text} older than {} ({}); each agent's newest row and pending pokes are kept",
        if dry_run { "would delete" } else { "deleted" },
        format_duration(older_than),
        format_time(before),
    )
    .map_err(io_err)
}

/// `poked check`: integrity and invariants; exit 1 listing every problem.
///
/// The invariants are read in one snapshot. A `pending` poke is a problem only when no daemon
/// holds the database before and after that snapshot and the poke is still pending in a fresh
/// read afterwards, so a daemon starting, poking or stopping meanwhile is never a false alarm.
pub fn check(ctx: &Context, out: &mut dyn Write, json: bool) -> Result<()> {
    let store = ctx.open(false)?;
    let daemon_before = lock::holder(&ctx.db);
    let snap = store.check_snapshot()?;
    let daemon_after = lock::holder(&ctx.db);
    let mut problems = snap.breaches;
    if daemon_before.is_none() && daemon_after.is_none() && !snap.pending.is_empty() {
        let ids: Vec<i64> = snap.pending.iter().map(|(id, _)| *id).collect();
        let still = store.still_pending(&ids)?;
        for (id, agent) in snap.pending.into_iter().filter(|(id, _)| still.contains(id)) {
            problems.push(Breach {
                agent_id: Some(agent),
                rule: "pending_without_daemon",
                detail: format!(
                    "poke {id} is pending but no daemon runs on this database \
                     (the next `poked run` marks it interrupted)"
                ),
            });
        }
    }
    if json {
        print_json(
            out,
            &json!({
                "ok": problems.is_empty(),
                "agents_checked": snap.agents,
                "log_rows": snap.log_rows,
                "problems": problems.iter().map(|b| json!({
                    "agent_id": b.agent_id,
                    "rule": b.rule,
                    "detail": b.detail,
                })).collect::<Vec<_>>(),
            }),
        )?;
    } else if problems.is_empty() {
        writeln!(
            out,
            "ok: the file is intact and poked's invariants hold ({} agents, {} log rows)",
            snap.agents, snap.log_rows
        )
        .map_err(io_err)?;
    } else {
        let mut t = table(&["AGENT", "RULE", "PROBLEM"]);
        for b in &problems {
            t.add_row(vec![
                b.agent_id.clone().unwrap_or_else(|| "-".into()),
                b.rule.to_string(),
                b.detail.clone(),
            ]);
        }
        print_table(out, &mut t, &[])?;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        out.flush().map_err(io_err)?;
        Err(Error::CheckFailed(problems.len()))
    }
}

/// `poked status`.
pub fn status(ctx: &Context, out: &mut dyn Write, json: bool) -> Result<()> {
    let store = ctx.open(false)?;
    let now = ctx.now();
    let schema = store.schema_version()?;
    let agents = store.agents()?;
    let log = store.log_summary()?;
    let record = store.daemon_record()?;
    let holder = lock::holder(&ctx.db);
    let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let (file_bytes, wal_bytes) = (size(&ctx.db), size(&wal_path(&ctx.db)));

    let count = |f: &dyn Fn(&Agent) -> bool| agents.iter().filter(|a| f(a)).count();
    let due = count(&|a| a.state(now) == "due");
    let backing_off = count(&|a| a.state(now) == "backing off");
    let waiting = count(&|a| a.state(now) == "waiting");
    let paused = count(&|a| a.paused);
    let fresh = count(&|a| a.freshness(now) == Freshness::Fresh);

    if json {
        return print_json(
            out,
            &json!({
                "database": ctx.db.display().to_string(),
                "schema_version": schema,
                "file_bytes": file_bytes,
                "wal_bytes": wal_bytes,
                "agents": {
                    "total": agents.len(),
                    "due": due,
                    "backing_off": backing_off,
                    "waiting": waiting,
                    "paused": paused,
                    "fresh": fresh,
                },
                "log_rows": log.rows,
                "oldest_log_at": time(log.oldest_at),
                "newest_log_at": time(log.newest_at),
                "pending_pokes": log.pending,
                "daemon": {
                    "running": holder.is_some(),
                    "pid": holder.filter(|pid| *pid != 0).map(i64::from).or(record.as_ref().map(|r| r.pid)),
                    "version": record.as_ref().map(|r| r.version.clone()),
                    "started_at": time(record.as_ref().map(|r| r.started_at)),
                    "last_pass_at": time(record.as_ref().and_then(|r| r.last_pass_at)),
                    "stopped_at": time(record.as_ref().and_then(|r| r.stopped_at)),
                },
            }),
        );
    }

    let ago = |at: Millis| format!("{} ({})", format_time(at), format_relative(at, now));
    let daemon = match (holder, &record) {
        (Some(pid), Some(r)) => {
            let pid = if pid == 0 {
                r.pid.to_string()
            } else {
                pid.to_string()
            };
            let pass = r
                .last_pass_at
                .map_or_else(|| "no pass yet".into(), |at| format!("last pass {}", ago(at)));
            format!(
                "running, pid {pid} (poked {}), started {}, {pass}",
                r.version,
                ago(r.started_at)
            )
        }
        (Some(pid), None) => format!("running, pid {pid} (it has not recorded itself yet)"),
        (None, None) => "no daemon is running".into(),
        (None, Some(r)) => match r.stopped_at {
            Some(at) => format!(
                "no daemon is running (the last one, pid {}, stopped {})",
                r.pid,
                ago(at)
            ),
            None => format!(
                "no daemon is running (the last one, pid {}, started {}, did not stop cleanly)",
                r.pid,
                ago(r.started_at)
            ),
        },
    };
    let log_text = match (log.oldest_at, log.newest_at) {
        (Some(old), Some(new)) => format!(
            "{} rows from {} to {}, {} pending",
            log.rows,
            format_time(old),
            format_time(new),
            log.pending
        ),
        _ => "empty".into(),
    };
    let lines = [
        ("database", ctx.db.display().to_string()),
        ("schema", format!("version {schema}")),
        (
            "size",
            format!("{} file, {} WAL", bytes(file_bytes), bytes(wal_bytes)),
        ),
        (
            "agents",
            format!(
                "{} total: {due} due now, {backing_off} backing off, {waiting} waiting, {paused} paused; {fresh} fresh",
                agents.len()
            ),
        ),
        ("log", log_text),
        ("daemon", daemon),
    ];
    for (key, value) in lines {
        writeln!(out, "{key:<10}{value}").map_err(io_err)?;
    }
    Ok(())
}

/// `4.0 KiB`, `512 B`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
