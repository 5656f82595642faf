//! The commands that change agents: init, add, set, rm, pause, resume, and the transitions
//! recorded by hand (poke, miss, activity, reset).
//!
//! Every value is checked before the database is opened, so bad input never creates a file.

use std::io::Write;

use super::{Context, io_err, parse_ids};
use crate::agent::{Agent, AgentId, Settings, validate_command, validate_heartbeat_file};
use crate::cli::SettingsArgs;
use crate::error::Result;
use crate::store::{Patch, SCHEMA_VERSION};
use crate::units::{format_duration, format_relative, format_time};

/// `poked init`.
pub fn init(ctx: &Context, out: &mut dyn Write) -> Result<()> {
    let store = ctx.open(true)?;
    writeln!(
        out,
        "database {} is ready (schema version {SCHEMA_VERSION})",
        store.path().display()
    )
    .map_err(io_err)
}

/// `poked add`.
pub fn add(
    ctx: &Context,
    out: &mut dyn Write,
    id: &str,
    args: &SettingsArgs,
    paused: bool,
    command: Vec<String>,
) -> Result<()> {
    let id = AgentId::parse(id)?;
    let defaults = Settings::default();
    let settings = Settings {
        strategy: args.strategy.unwrap_or(defaults.strategy),
        base_interval_ms: args.base.unwrap_or(defaults.base_interval_ms),
        // A base above the default max (or fresh above the default very stale) raises the
        // default to match, so `poked add x --base 1h` works without also giving --max.
        max_interval_ms: args
            .max
            .unwrap_or(defaults.max_interval_ms.max(args.base.unwrap_or(0))),
        factor: args.factor.unwrap_or(defaults.factor),
        jitter: args.jitter.unwrap_or(defaults.jitter),
        fresh_ms: args.fresh.unwrap_or(defaults.fresh_ms),
        very_stale_ms: args
            .very_stale
            .unwrap_or(defaults.very_stale_ms.max(args.fresh.unwrap_or(0))),
        command: (!command.is_empty()).then_some(command),
        heartbeat_file: args.heartbeat_file.clone(),
    };
    settings.validate()?;
    let store = ctx.open(true)?;
    let agent = store.add(&id, &settings, paused, ctx.now(), ctx.draw.as_ref())?;
    writeln!(out, "added {}: {}", agent.id, summary(&agent, ctx.now())).map_err(io_err)
}

/// `poked set`.
#[allow(clippy::too_many_arguments)]
pub fn set(
    ctx: &Context,
    out: &mut dyn Write,
    id: &str,
    args: &SettingsArgs,
    no_command: bool,
    no_heartbeat_file: bool,
    command: Vec<String>,
) -> Result<()> {
    let id = AgentId::parse(id)?;
    if !command.is_empty() {
        validate_command(&command)?;
    }
    if let Some(path) = &args.heartbeat_file {
        validate_heartbeat_file(path)?;
    }
    let patch = Patch {
        strategy: args.strategy,
        base_interval_ms: args.base,
        max_interval_ms: args.max,
        factor: args.factor,
        jitter: args.jitter,
        fresh_ms: args.fresh,
        very_stale_ms: args.very_stale,
        command: if no_command {
            Some(None)
        } else {
            (!command.is_empty()).then_some(Some(command))
        },
        heartbeat_file: if no_heartbeat_file {
            Some(None)
        } else {
            args.heartbeat_file.clone().map(Some)
        },
    };
    let store = ctx.open(false)?;
    match store.set(&id, &patch, ctx.now(), ctx.draw.as_ref())? {
        Some(agent) => writeln!(out, "updated {}: {}", agent.id, summary(&agent, ctx.now())),
        None => writeln!(out, "{id}: unchanged"),
    }
    .map_err(io_err)
}

/// `poked rm`.
pub fn rm(ctx: &Context, out: &mut dyn Write, id: &str, purge: bool) -> Result<()> {
    let id = AgentId::parse(id)?;
    let store = ctx.open(false)?;
    let purged = store.remove(&id, purge, ctx.now())?;
    if purge {
        writeln!(out, "removed {id} and {purged} log rows")
    } else {
        writeln!(
            out,
            "removed {id} (its history stays; `poked rm --purge` deletes it)"
        )
    }
    .map_err(io_err)
}

/// `poked pause` and `poked resume`: all the agents in one transaction, or none.
pub fn pause(ctx: &Context, out: &mut dyn Write, ids: &[String], paused: bool) -> Result<()> {
    let ids = parse_ids(ids)?;
    let store = ctx.open(false)?;
    let (done, already) = if paused {
        ("paused", "already paused")
    } else {
        ("resumed", "not paused")
    };
    let changed = store.set_paused_all(&ids, paused, ctx.now())?;
    for (id, changed) in ids.iter().zip(changed) {
        writeln!(out, "{id}: {}", if changed { done } else { already }).map_err(io_err)?;
    }
    Ok(())
}

/// A transition recorded by hand.
pub enum Manual {
    Poke,
    Miss,
    /// With the `--at` text, if given.
    Activity(Option<String>),
    Reset,
}

/// `poked poke|miss|activity|reset`.
pub fn transition(ctx: &Context, out: &mut dyn Write, id: &str, what: Manual) -> Result<()> {
    let id = AgentId::parse(id)?;
    let now = ctx.now();
    let at = match &what {
        Manual::Activity(Some(text)) => Some(ctx.parse_time("--at", text)?),
        _ => None,
    };
    let store = ctx.open(false)?;
    let draw = ctx.draw.as_ref();
    let (word, agent) = match what {
        Manual::Poke => ("poke", store.record_poke(&id, now, draw)?),
        Manual::Miss => ("miss", store.record_miss(&id, now, draw)?),
        Manual::Activity(_) => (
            "activity",
            store.record_activity(&id, at.unwrap_or(now), now, draw)?,
        ),
        Manual::Reset => ("reset", store.record_reset(&id, now, draw)?),
    };
    writeln!(out, "{}: {word} recorded; {}", agent.id, summary(&agent, now)).map_err(io_err)
}

/// `interval 7m30s, 1 miss, next due 2026-01-01T00:12:30Z (in 7m30s)`.
fn summary(agent: &Agent, now: i64) -> String {
    let due = match agent.next_due_at {
        None => "paused".to_string(),
        Some(at) if at <= now => "due now".to_string(),
        Some(at) => format!("next due {} ({})", format_time(at), format_relative(at, now)),
    };
    let misses = match agent.consecutive_misses {
        1 => "1 miss".to_string(),
        n => format!("{n} misses"),
    };
    format!(
        "interval {}, {misses}, {due}",
        format_duration(agent.current_interval_ms)
    )
}
