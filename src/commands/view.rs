//! The agents as they stand: `list`, `due` and `show`.

use std::collections::HashMap;
use std::io::Write;

use serde_json::{Value, json};

use super::output::{due_relative, log_json, next_due, print_agents, print_json, print_log, time_or};
use super::{Context, io_err};
use poked::agent::{Agent, AgentId, Rung};
use poked::clock::Millis;
use poked::error::Result;
use poked::log::LogRow;
use poked::rules::{Cap, KnownLadder};
use poked::store::{HistoryFilter, Store, Streak};
use poked::transfer::agent_json;
use poked::units::{format_duration, format_time};

/// How many log rows `show` prints.
const SHOW_LOG_ROWS: i64 = 10;

/// Agents as a JSON array, each with its rungs.
fn agents_json(store: &Store, agents: &[Agent], now: Millis) -> Result<Value> {
    let mut rungs: HashMap<AgentId, Vec<Rung>> = store.all_rungs()?;
    Ok(Value::Array(
        agents
            .iter()
            .map(|a| agent_json(a, &rungs.remove(&a.id).unwrap_or_default(), now))
            .collect(),
    ))
}

/// `poked list`.
pub fn list(ctx: &Context, out: &mut dyn Write, json: bool) -> Result<()> {
    let store = ctx.open_to_read()?;
    let agents = store.agents()?;
    let now = ctx.now();
    if json {
        return print_json(out, &agents_json(&store, &agents, now)?);
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
    let store = ctx.open_to_read()?;
    let agents = store.due(at)?;
    if json {
        return print_json(out, &agents_json(&store, &agents, at)?);
    }
    if agents.is_empty() {
        return writeln!(out, "no agent is due at {}", format_time(at)).map_err(io_err);
    }
    print_agents(out, &agents, at)
}

/// `poked show`.
pub fn show(ctx: &Context, out: &mut dyn Write, id: &str, json: bool) -> Result<()> {
    let id = AgentId::parse(id)?;
    let store = ctx.open_to_read()?;
    let now = ctx.now();
    let shown = Shown::read(&store, &id, now)?;
    if json {
        let mut value = agent_json(&shown.agent, &shown.ladder.rungs, now);
        value["streak_escalations"] = streak_json(&shown.streak);
        value["cap"] = cap_json(&shown.cap, now);
        value["recent_log"] = Value::Array(shown.log.iter().map(log_json).collect());
        return print_json(out, &value);
    }
    shown.print(out, now)
}

/// One agent as `show` prints it, read in one go: `show` prints it once, `top`'s details pane
/// again at every tick (its relative times move).
#[derive(Debug, Clone)]
pub struct Shown {
    pub agent: Agent,
    pub ladder: KnownLadder,
    pub streak: Streak,
    pub log: Vec<LogRow>,
    pub cap: Cap,
}

impl Shown {
    /// Reads the agent, its ladder, cap and streak, and its newest log rows.
    pub fn read(store: &Store, id: &AgentId, now: Millis) -> Result<Shown> {
        let poked::store::Decidable { agent, ladder } = store.agent_with_ladder(id, now)?;
        let streak = store.streak(id)?;
        let log = store.history(&HistoryFilter {
            agent_id: Some(id.clone()),
            limit: Some(SHOW_LOG_ROWS),
            ..HistoryFilter::default()
        })?;
        let cap = ladder.cap.clone().unwrap_or(Cap {
            limit: agent.settings.escalate_limit,
            window_ms: agent.settings.escalate_window_ms,
            escalations: Vec::new(),
        });
        Ok(Shown {
            agent,
            ladder,
            streak,
            log,
            cap,
        })
    }

    /// The text form: one `key  value` line per field, a blank line, the log table.
    pub fn print(&self, out: &mut dyn Write, now: Millis) -> Result<()> {
        let lines = self.fields(now);
        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in lines {
            writeln!(out, "{key:<width$}  {value}").map_err(io_err)?;
        }
        writeln!(out).map_err(io_err)?;
        if self.log.is_empty() {
            writeln!(out, "no log rows").map_err(io_err)
        } else {
            print_log(out, &self.log)
        }
    }

    fn fields(&self, now: Millis) -> Vec<(&'static str, String)> {
        let Shown {
            agent,
            ladder,
            streak,
            cap,
            ..
        } = self;
        let s = &agent.settings;
        let argv = |argv: &Option<Vec<String>>, none: &str| {
            argv.as_ref().map_or_else(
                || none.to_string(),
                |argv| serde_json::to_string(argv).unwrap_or_default(),
            )
        };
        let mut lines = vec![
            ("id", agent.id.to_string()),
            ("state", agent.state(now).as_str().to_string()),
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
            ("last poke", time_or(agent.last_poke_at, "never")),
            ("last activity", time_or(agent.last_activity_at, "never")),
            (
                "next due",
                match agent.next_due_at {
                    None => "- (paused)".into(),
                    Some(_) => next_due(agent, now),
                },
            ),
        ];
        // What SPEC §7 adds is shown where the agent uses it, so a plain agent reads plainly.
        if let Some(at) = agent.held_until_at {
            lines.push(("held until", hold(at, now)));
        }
        lines.push(("command", argv(&s.command, "none (pokes are only recorded)")));
        lines.push(("heartbeat file", heartbeat(agent)));
        if s.activity_cmd.is_some() {
            lines.push(("activity probe", probe(agent)));
        }
        if s.only_if.is_some() {
            lines.push(("gate", argv(&s.only_if, "")));
        }
        if !ladder.rungs.is_empty() || cap.count(now) > 0 {
            lines.push(("ladder", ladder_text(&ladder.rungs, streak)));
            lines.push((
                "escalations",
                format!(
                    "{} of {} in the last {}{}; grace {}",
                    cap.count(now),
                    cap.limit,
                    format_duration(cap.window_ms),
                    cap.oldest_leaves_at(now).map_or_else(String::new, |at| format!(
                        " (the oldest leaves at {})",
                        format_time(at)
                    )),
                    format_duration(s.grace_ms)
                ),
            ));
        }
        lines.push(("created", format_time(agent.created_at)));
        lines
    }
}

fn hold(at: Millis, now: Millis) -> String {
    if at > now {
        format!("{} ({})", format_time(at), due_relative(at, now))
    } else {
        format!("{} (over)", format_time(at))
    }
}

fn heartbeat(agent: &Agent) -> String {
    match &agent.settings.heartbeat_file {
        None => "none".into(),
        Some(path) => format!("{path} (last seen {})", time_or(agent.heartbeat_seen_at, "never")),
    }
}

fn probe(agent: &Agent) -> String {
    match &agent.settings.activity_cmd {
        None => "none".into(),
        Some(argv) => format!(
            "{} (echo {}; last value {})",
            serde_json::to_string(argv).unwrap_or_default(),
            format_duration(agent.settings.echo_ms),
            time_or(agent.probe_seen_at, "never seen")
        ),
    }
}

/// `3: ["tmux",...] (fired 00:23:45, ok); 5: [...]`.
fn ladder_text(rungs: &[Rung], streak: &Streak) -> String {
    if rungs.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = rungs
        .iter()
        .map(|r| {
            let fired = streak
                .escalations
                .iter()
                .find(|e| e.rung == r.misses)
                .map_or_else(String::new, |e| {
                    let outcome = e.outcome.map_or_else(String::new, |o| format!(", {o}"));
                    format!(" (this streak: {}{outcome})", format_time(e.at))
                });
            format!(
                "{}: {}{fired}",
                r.misses,
                serde_json::to_string(&r.command).unwrap_or_default()
            )
        })
        .collect();
    parts.join("; ")
}

fn streak_json(streak: &Streak) -> Value {
    Value::Array(
        streak
            .escalations
            .iter()
            .map(|e| json!({"rung": e.rung, "outcome": e.outcome.map(|o| o.as_str()), "at": format_time(e.at)}))
            .collect(),
    )
}

/// The cap at `now`, for `show --json` and `explain --json`.
pub fn cap_json(cap: &Cap, now: Millis) -> Value {
    json!({
        "count": cap.count(now),
        "limit": cap.limit,
        "window_ms": cap.window_ms,
        "oldest_leaves_at": poked::transfer::time_json(cap.oldest_leaves_at(now)),
    })
}
