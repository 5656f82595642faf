//! The commands that change agents: init, add, set, rm, pause, resume, and the transitions
//! recorded by hand (poke, miss, activity, reset).
//!
//! Every value is checked before the database is opened, so bad input never creates a file.

use std::io::Write;

use super::{Context, io_err, parse_ids};
use crate::cli::{AddArgs, SetArgs, SettingsArgs};
use poked::agent::{
    Agent, AgentId, Settings, TMUX_MESSAGE, Tmux, tmux, validate_command, validate_heartbeat_file,
    validate_ladder,
};
use poked::error::{Error, Result};
use poked::store::{Patch, SCHEMA_VERSION};
use poked::units::{format_duration, format_relative, format_time};

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
pub fn add(ctx: &Context, out: &mut dyn Write, args: AddArgs) -> Result<()> {
    let id = AgentId::parse(&args.id)?;
    let a = &args.settings;
    let defaults = Settings::default();
    let tmux = tmux_parts(a)?;
    let (tmux_command, tmux_probe) = (tmux.clone().map(|t| t.command), tmux.map(|t| t.probe));
    let settings = Settings {
        strategy: a.strategy.unwrap_or(defaults.strategy),
        base_interval_ms: a.base.unwrap_or(defaults.base_interval_ms),
        // A base above the default max (or fresh above the default very stale) raises the
        // default to match, so `poked add x --base 1h` works without also giving --max.
        max_interval_ms: a.max.unwrap_or(defaults.max_interval_ms.max(a.base.unwrap_or(0))),
        factor: a.factor.unwrap_or(defaults.factor),
        jitter: a.jitter.unwrap_or(defaults.jitter),
        fresh_ms: a.fresh.unwrap_or(defaults.fresh_ms),
        very_stale_ms: a
            .very_stale
            .unwrap_or(defaults.very_stale_ms.max(a.fresh.unwrap_or(0))),
        command: (!args.command.is_empty())
            .then_some(args.command)
            .or(tmux_command),
        heartbeat_file: a.heartbeat_file.clone(),
        activity_cmd: a.activity_cmd.clone().map(|c| c.0).or(tmux_probe),
        echo_ms: a.echo.unwrap_or(defaults.echo_ms),
        only_if: a.only_if.clone().map(|c| c.0),
        grace_ms: a.grace.unwrap_or(defaults.grace_ms),
        escalate_limit: a.escalate_limit.map_or(defaults.escalate_limit, |l| l.limit),
        escalate_window_ms: a
            .escalate_limit
            .map_or(defaults.escalate_window_ms, |l| l.window_ms),
    };
    settings.validate()?;
    let rungs = validate_ladder(a.escalate.clone())?;
    let store = ctx.open(true)?;
    let agent = store.add(&id, &settings, &rungs, args.paused, ctx.now(), ctx.draw.as_ref())?;
    writeln!(out, "added {}: {}", agent.id, summary(&agent, ctx.now())).map_err(io_err)
}

/// What `--tmux SESSION [--message TEXT]` stands for, when given.
fn tmux_parts(a: &SettingsArgs) -> Result<Option<Tmux>> {
    a.tmux
        .as_deref()
        .map(|session| tmux(session, a.message.as_deref().unwrap_or(TMUX_MESSAGE)))
        .transpose()
}

/// `poked set`.
pub fn set(ctx: &Context, out: &mut dyn Write, args: SetArgs) -> Result<()> {
    let id = AgentId::parse(&args.id)?;
    let a = &args.settings;
    if !args.command.is_empty() {
        validate_command(&args.command)?;
    }
    if let Some(path) = &a.heartbeat_file {
        validate_heartbeat_file(path)?;
    }
    let rungs = if args.no_escalate {
        Some(Vec::new())
    } else if a.escalate.is_empty() {
        None
    } else {
        Some(validate_ladder(a.escalate.clone())?)
    };
    let tmux = tmux_parts(a)?;
    let (tmux_command, tmux_probe) = (tmux.clone().map(|t| t.command), tmux.map(|t| t.probe));
    let either = |remove: bool, explicit: Option<Vec<String>>, tmux: Option<Vec<String>>| {
        if remove {
            Some(None)
        } else {
            explicit.or(tmux).map(Some)
        }
    };
    let patch = Patch {
        strategy: a.strategy,
        base_interval_ms: a.base,
        max_interval_ms: a.max,
        factor: a.factor,
        jitter: a.jitter,
        fresh_ms: a.fresh,
        very_stale_ms: a.very_stale,
        command: either(
            args.no_command,
            (!args.command.is_empty()).then(|| args.command.clone()),
            tmux_command,
        ),
        heartbeat_file: if args.no_heartbeat_file {
            Some(None)
        } else {
            a.heartbeat_file.clone().map(Some)
        },
        activity_cmd: either(
            args.no_activity_cmd,
            a.activity_cmd.clone().map(|c| c.0),
            tmux_probe,
        ),
        echo_ms: a.echo,
        only_if: either(args.no_only_if, a.only_if.clone().map(|c| c.0), None),
        grace_ms: a.grace,
        escalate_limit: a.escalate_limit.map(|l| (l.limit, l.window_ms)),
        rungs,
    };
    if patch.is_empty() {
        return Err(Error::Usage(format!(
            "nothing to change for {id}: give at least one option (see `poked set --help`)"
        )));
    }
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
pub(super) fn summary(agent: &Agent, now: i64) -> String {
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
