//! `poked plan ID [--count N]`: the next due passes if the agent never answers and its gate
//! stays open, computed from its stored state by the same rules the daemon decides with
//! ([`poked::rules::plan`]). Nothing is written.

use std::io::Write;

use serde_json::{Value, json};

use super::output::{Table, print_json};
use super::{Context, io_err};
use poked::agent::AgentId;
use poked::error::Result;
use poked::rules::{Action, PlanStep, plan as plan_steps};
use poked::units::{format_duration, format_time};

/// What a planned pass sends, in words: `poke`, `escalation rung 3`, `escalation held (rung 5)`.
pub fn action_text(action: &Action) -> String {
    match action {
        Action::Poke => "poke".into(),
        Action::Escalate(rung) => format!("escalation rung {}", rung.misses),
        Action::Held(rung) => format!("escalation held (rung {}), poke", rung.misses),
        Action::Unfired(rung) => format!("poke (rung {} not fired: the gate failed)", rung.misses),
    }
}

fn step_json(step: &PlanStep) -> Value {
    let (rung, held) = match &step.action {
        Action::Poke => (None, false),
        Action::Escalate(r) | Action::Unfired(r) => (Some(r.misses), false),
        Action::Held(r) => (Some(r.misses), true),
    };
    json!({
        "at": format_time(step.at),
        "earliest_at": format_time(step.earliest_at),
        "consecutive_misses": step.misses,
        "interval_ms": step.interval_ms,
        "wait_min_ms": step.wait_min_ms,
        "wait_max_ms": step.interval_ms,
        "action": action_text(&step.action),
        "rung": rung,
        "held": held,
    })
}

/// `poked plan ID [--count N] [--json]`.
pub fn plan(ctx: &Context, out: &mut dyn Write, id: &str, count: usize, json: bool) -> Result<()> {
    let id = AgentId::parse(id)?;
    let store = ctx.open_to_read()?;
    let now = ctx.now();
    let poked::store::Decidable { agent, ladder } = store.agent_with_ladder(&id, now)?;
    let steps = plan_steps(&agent, &ladder, now, count)?;
    if json {
        return print_json(out, &Value::Array(steps.iter().map(step_json).collect()));
    }
    if agent.paused {
        return writeln!(out, "{id} is paused: it is not poked until `poked resume {id}`").map_err(io_err);
    }
    // With jitter, each time is a range (every wait at its shortest .. at its longest) and the
    // wait drawn at each pass lies in a range too.
    let jitter = agent.settings.jitter > 0.0;
    let mut t = if jitter {
        Table::new(&["TIME", "MISSES", "INTERVAL", "WAIT", "ACTION"], &[1, 2, 3])
    } else {
        Table::new(&["TIME", "MISSES", "INTERVAL", "ACTION"], &[1, 2])
    };
    for s in &steps {
        let mut row = vec![
            if s.earliest_at != s.at {
                format!("{} .. {}", format_time(s.earliest_at), format_time(s.at))
            } else {
                format_time(s.at)
            },
            s.misses.to_string(),
            format_duration(s.interval_ms),
        ];
        if jitter {
            row.push(format!(
                "{}..{}",
                format_duration(s.wait_min_ms),
                format_duration(s.interval_ms)
            ));
        }
        row.push(action_text(&s.action));
        t.add_row(row);
    }
    t.print(out)
}
