//! The read commands of this stage: list, show, due.

use std::io::Write;

use serde_json::Value;

use super::output::{agent_json, due_relative, log_json, print_agents, print_json, print_log};
use super::{Context, io_err};
use crate::agent::AgentId;
use crate::error::Result;
use crate::store::HistoryFilter;
use crate::units::{format_duration, format_time};

/// How many log rows `show` prints.
const SHOW_LOG_ROWS: i64 = 10;

/// `poked list`.
pub fn list(ctx: &Context, out: &mut dyn Write, json: bool) -> Result<()> {
    let store = ctx.open(false)?;
    let agents = store.agents()?;
    let now = ctx.now();
    if json {
        return print_json(
            out,
            &Value::Array(agents.iter().map(|a| agent_json(a, now)).collect()),
        );
    }
    if agents.is_empty() {
        return writeln!(out, "no agents yet (add one with `poked add ID -- COMMAND...`)").map_err(io_err);
    }
    print_agents(out, &agents, now)
}

/// `poked due`.
pub fn due(ctx: &Context, out: &mut dyn Write, at: Option<&str>, json: bool) -> Result<()> {
    let at = match at {
        Some(text) => ctx.parse_time("--at", text)?,
        None => ctx.now(),
    };
    let store = ctx.open(false)?;
    let agents = store.due(at)?;
    if json {
        return print_json(
            out,
            &Value::Array(agents.iter().map(|a| agent_json(a, at)).collect()),
        );
    }
    if agents.is_empty() {
        return writeln!(out, "no agent is due at {}", format_time(at)).map_err(io_err);
    }
    print_agents(out, &agents, at)
}

/// `poked show`.
pub fn show(ctx: &Context, out: &mut dyn Write, id: &str, json: bool) -> Result<()> {
    let id = AgentId::parse(id)?;
    let store = ctx.open(false)?;
    let agent = store.agent(id.as_str())?;
    let log = store.history(&HistoryFilter {
        agent_id: Some(id.to_string()),
        limit: Some(SHOW_LOG_ROWS),
        ..HistoryFilter::default()
    })?;
    let now = ctx.now();
    if json {
        let mut value = agent_json(&agent, now);
        value["recent_log"] = Value::Array(log.iter().map(log_json).collect());
        return print_json(out, &value);
    }
    let s = &agent.settings;
    let time = |at: Option<i64>| at.map_or_else(|| "never".to_string(), format_time);
    let mut lines = vec![
        ("id", agent.id.clone()),
        ("state", agent.state(now).to_string()),
        ("freshness", agent.freshness(now).as_str().to_string()),
        (
            "interval",
            format!(
                "{} (wait {}), {} {}..{} ×{}",
                format_duration(agent.current_interval_ms),
                format_duration(agent.wait_ms),
                s.strategy,
                format_duration(s.base_interval_ms),
                format_duration(s.max_interval_ms),
                s.factor
            ),
        ),
        ("jitter", s.jitter.to_string()),
        ("misses in a row", agent.consecutive_misses.to_string()),
        (
            "fresh / very stale",
            format!(
                "{} / {}",
                format_duration(s.fresh_ms),
                format_duration(s.very_stale_ms)
            ),
        ),
        ("last poke", time(agent.last_poke_at)),
        ("last activity", time(agent.last_activity_at)),
        (
            "next due",
            agent.next_due_at.map_or_else(
                || "- (paused)".into(),
                |at| format!("{} ({})", format_time(at), due_relative(at, now)),
            ),
        ),
        (
            "command",
            s.command.as_ref().map_or_else(
                || "none (pokes are only recorded)".into(),
                |argv| serde_json::to_string(argv).unwrap_or_default(),
            ),
        ),
        (
            "heartbeat file",
            s.heartbeat_file.clone().unwrap_or_else(|| "none".into()),
        ),
        ("created", format_time(agent.created_at)),
    ];
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in lines.drain(..) {
        writeln!(out, "{key:<width$}  {value}").map_err(io_err)?;
    }
    writeln!(out).map_err(io_err)?;
    if log.is_empty() {
        writeln!(out, "no log rows").map_err(io_err)
    } else {
        print_log(out, &log)
    }
}
