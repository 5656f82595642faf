//! `poked explain ID [--at T]`: the decision of SPEC §3 and §7 for one agent, term by term,
//! computed by the very functions the daemon decides with ([`poked::rules`]). Nothing is
//! written.

use std::io::Write;

use serde_json::json;

use super::output::{due_relative, print_json, time_or};
use super::plan::action_text;
use super::view::cap_json;
use super::{Context, io_err};
use poked::agent::AgentId;
use poked::error::Result;
use poked::rules::{self, MissConditions, Term, Terms};
use poked::transfer::time_json;
use poked::units::{format_duration, format_time};

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `poked explain ID [--at T] [--json]`.
pub fn explain(ctx: &Context, out: &mut dyn Write, id: &str, at: Option<&str>, json: bool) -> Result<()> {
    let id = AgentId::parse(id)?;
    let at = match at {
        Some(text) => ctx.parse_time("--at", text)?,
        None => ctx.now(),
    };
    let store = ctx.open_to_read()?;
    let poked::store::Decidable { agent, ladder } = store.agent_with_ladder(&id, at)?;
    let s = &agent.settings;
    let terms = Terms::of(&agent);
    let (_, winner) = terms.latest(agent.created_at);
    let next_due = rules::next_due(&agent);
    let due = next_due.is_some_and(|d| d <= at);
    // The next due pass: now when due, else at the next due time.
    let pass_at = next_due.map(|d| d.max(at));
    let conditions = MissConditions::of(&agent, pass_at.unwrap_or(at));
    let decision = match pass_at {
        Some(t) => Some(rules::decide(&agent, t, true, false, &mut ladder.clone())?),
        None => None,
    };
    let next_rung = rules::next_rung(&ladder.rungs, agent.consecutive_misses);
    let cap = ladder.cap.clone().unwrap_or(rules::Cap {
        limit: s.escalate_limit,
        window_ms: s.escalate_window_ms,
        escalations: Vec::new(),
    });
    let age = agent.last_activity_at.map(|a| at.saturating_sub(a).max(0));

    if json {
        let value = json!({
            "id": agent.id.as_str(),
            "at": format_time(at),
            "paused": agent.paused,
            "terms": {
                "p": {
                    "at": format_time(terms.p),
                    "last_poke_at": time_json(agent.last_poke_at),
                    "wait_ms": agent.wait_ms,
                    "created_at": format_time(agent.created_at),
                },
                "a": {
                    "at": time_json(terms.a),
                    "last_activity_at": time_json(agent.last_activity_at),
                    "fresh_ms": s.fresh_ms,
                },
                "h": { "at": time_json(terms.h) },
            },
            "winner": winner.as_str(),
            "next_due_at": time_json(next_due),
            "due": due,
            "freshness": {
                "state": agent.freshness(at).as_str(),
                "age_ms": age,
                "fresh_ms": s.fresh_ms,
                "very_stale_ms": s.very_stale_ms,
            },
            "next_pass": {
                "at": time_json(pass_at),
                "miss": decision.as_ref().map(|d| d.miss),
                "conditions": {
                    "poked_before": conditions.poked_before,
                    "silent_since_poke": conditions.silent_since_poke,
                    "very_stale": conditions.very_stale,
                },
                "action": decision.as_ref().map(|d| action_text(&d.action)),
            },
            "next_rung": next_rung.map(|r| json!({
                "misses": r.misses,
                "command": r.command,
                "misses_away": r.misses - agent.consecutive_misses,
            })),
            "cap": cap_json(&cap, at),
            "only_if": s.only_if,
            "activity_cmd": s.activity_cmd,
            "echo_ms": s.echo_ms,
            "heartbeat_file": s.heartbeat_file,
            "heartbeat_seen_at": time_json(agent.heartbeat_seen_at),
            "probe_seen_at": time_json(agent.probe_seen_at),
        });
        return print_json(out, &value);
    }

    let p_from = match agent.last_poke_at {
        Some(poke) => format!(
            "last poke {} + wait {}",
            format_time(poke),
            format_duration(agent.wait_ms)
        ),
        None => format!("created {} (never poked)", format_time(agent.created_at)),
    };
    let a_text = match (terms.a, agent.last_activity_at) {
        (Some(a), Some(last)) => format!(
            "{} = last activity {} + fresh {}",
            format_time(a),
            format_time(last),
            format_duration(s.fresh_ms)
        ),
        _ => "none (never active)".into(),
    };
    let h_text = match terms.h {
        None => "none (not held)".to_string(),
        Some(h) if h <= at => format!("{} (over)", format_time(h)),
        Some(h) => format!("{} (set by a skip or an escalation's grace)", format_time(h)),
    };
    let winner_text = match winner {
        Term::P => "P: the wait since the last poke",
        Term::A => "A: the agent is fresh until then",
        Term::H => "H: a hold",
    };
    let due_text = match next_due {
        None => "never: the agent is paused".to_string(),
        Some(d) => format!(
            "{} ({}), decided by {winner_text}",
            format_time(d),
            due_relative(d, at)
        ),
    };
    let freshness = format!(
        "{}: {}; fresh under {}, very stale from {}",
        agent.freshness(at).as_str(),
        age.map_or_else(
            || "never active".into(),
            |age| format!("last active {} ago", format_duration(age))
        ),
        format_duration(s.fresh_ms),
        format_duration(s.very_stale_ms)
    );
    let pass = match (&decision, pass_at) {
        (Some(d), Some(t)) => format!(
            "{} {}: miss {} (poked before: {}; silent since that poke: {}; very stale then: {}); sends {}",
            if due { "now, at" } else { "at" },
            format_time(t),
            yes(d.miss),
            yes(conditions.poked_before),
            yes(conditions.silent_since_poke),
            yes(conditions.very_stale),
            action_text(&d.action)
        ),
        _ => "none while paused".into(),
    };
    let rung = match next_rung {
        Some(r) => format!(
            "rung {} ({}), {} miss{} away",
            r.misses,
            serde_json::to_string(&r.command).unwrap_or_default(),
            r.misses - agent.consecutive_misses,
            if r.misses - agent.consecutive_misses == 1 {
                ""
            } else {
                "es"
            }
        ),
        None if ladder.rungs.is_empty() => "none (no ladder)".into(),
        None => "none left in this streak".into(),
    };
    let cap_text = format!(
        "{} of {} escalations in the {} before {}{}",
        cap.count(at),
        cap.limit,
        format_duration(cap.window_ms),
        format_time(at),
        cap.oldest_leaves_at(at).map_or_else(String::new, |t| format!(
            "; the oldest leaves the window at {}",
            format_time(t)
        ))
    );
    let argv = |a: &Option<Vec<String>>| {
        a.as_ref().map_or_else(
            || "none".to_string(),
            |a| serde_json::to_string(a).unwrap_or_default(),
        )
    };
    let lines = [
        ("agent", agent.id.to_string()),
        ("at", format_time(at)),
        ("paused", yes(agent.paused).to_string()),
        ("P (poke)", format!("{} = {p_from}", format_time(terms.p))),
        ("A (activity)", a_text),
        ("H (hold)", h_text),
        ("next due", due_text),
        ("due now", yes(due).to_string()),
        ("freshness", freshness),
        ("next pass", pass),
        ("next rung", rung),
        ("cap", cap_text),
        ("gate", argv(&s.only_if)),
        (
            "probe",
            format!("{} (echo {})", argv(&s.activity_cmd), format_duration(s.echo_ms)),
        ),
        (
            "last seen",
            format!(
                "heartbeat file {}; probe {}",
                time_or(agent.heartbeat_seen_at, "never"),
                time_or(agent.probe_seen_at, "never")
            ),
        ),
    ];
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in lines {
        writeln!(out, "{key:<width$}  {value}").map_err(io_err)?;
    }
    Ok(())
}
