//! `poked status`: the database, its size, agent counts, and whether a daemon runs on it.

use std::io::Write;

use serde_json::json;

use super::output::print_json;
use super::{Context, io_err};
use poked::agent::StateCounts;
use poked::clock::Millis;
use poked::daemon::lock;
use poked::error::Result;
use poked::log::{Kind, Outcome};
use poked::store::wal_path;
use poked::transfer::time_json;
use poked::units::{format_relative, format_time};

/// `poked status`.
pub fn status(ctx: &Context, out: &mut dyn Write, json: bool) -> Result<()> {
    let store = ctx.open_to_read()?;
    let now = ctx.now();
    let schema = store.schema_version()?;
    let agents = store.agents()?;
    let log = store.log_summary()?;
    let escalations_held = store.counters()?.sum(Kind::Escalation, Some(Outcome::Held));
    let record = store.daemon_record()?;
    let holder = lock::holder(&ctx.db);
    let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let (file_bytes, wal_bytes) = (size(&ctx.db), size(&wal_path(&ctx.db)));

    let StateCounts {
        due,
        backing_off,
        waiting,
        paused,
        held,
        fresh,
        ..
    } = StateCounts::of(&agents, now);

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
                    "held": held,
                },
                "log_rows": log.rows,
                "oldest_log_at": time_json(log.oldest_at),
                "newest_log_at": time_json(log.newest_at),
                "pending_pokes": log.pending,
                "escalations_held": escalations_held,
                "daemon": {
                    "running": holder.is_some(),
                    "pid": holder.filter(|pid| *pid != 0).map(i64::from).or(record.as_ref().map(|r| r.pid)),
                    "version": record.as_ref().map(|r| r.version.clone()),
                    "started_at": time_json(record.as_ref().map(|r| r.started_at)),
                    "last_pass_at": time_json(record.as_ref().and_then(|r| r.last_pass_at)),
                    "stopped_at": time_json(record.as_ref().and_then(|r| r.stopped_at)),
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
            "{} rows from {} to {}, {} pending; {escalations_held} escalations held by their cap",
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
                "{} total: {due} due now, {backing_off} backing off, {waiting} waiting, {paused} paused; \
                 {fresh} fresh, {held} held",
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
