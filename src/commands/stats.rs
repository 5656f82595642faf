//! `poked stats`: per agent, the log's counts in a window beside the current state.
//!
//! An agent that was removed but has log rows in the window is listed with state `removed`
//! and no current state (its history outlives it).

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};

use super::output::{Table, next_due, print_json, time_or};
use super::{Context, io_err};
use poked::agent::Agent;
use poked::clock::Millis;
use poked::error::Result;
use poked::log::Outcome;
use poked::store::LogCounts;
use poked::transfer::time_json;
use poked::units::{format_duration, format_time};

/// `{"ok": 3, "failed": 1, ...}` with every outcome present.
fn by_outcome(counts: &BTreeMap<Outcome, i64>) -> Value {
    Value::Object(
        counts
            .iter()
            .map(|(o, n)| (o.as_str().to_string(), json!(n)))
            .collect(),
    )
}

/// `3 ok, 1 failed`, or `-`.
fn outcomes_text(counts: &BTreeMap<Outcome, i64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(o, n)| format!("{n} {o}"))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// `poked stats [--since T]`.
pub fn stats(ctx: &Context, out: &mut dyn Write, since: Option<&str>, json: bool) -> Result<()> {
    let since = since.map(|t| ctx.parse_time("--since", t)).transpose()?;
    let store = ctx.open_to_read()?;
    let now = ctx.now();
    let agents = store.agents()?;
    let mut merged: BTreeMap<String, (Option<&Agent>, LogCounts)> = BTreeMap::new();
    for c in store.log_counts(since)? {
        merged.insert(c.agent_id.to_string(), (None, c));
    }
    for agent in &agents {
        merged
            .entry(agent.id.to_string())
            .or_insert_with(|| (None, LogCounts::zero(agent.id.clone())))
            .0 = Some(agent);
    }

    if json {
        let rows = merged
            .iter()
            .map(|(id, (agent, c))| {
                json!({
                    "id": id,
                    "state": agent.map_or("removed", |a| a.state(now).as_str()),
                    "pokes": c.pokes,
                    "misses": c.misses,
                    "activities": c.activities,
                    "skips": c.skips,
                    "outcomes": by_outcome(&c.outcomes),
                    "escalations": by_outcome(&c.escalations),
                    "current_interval_ms": agent.map(|a| a.current_interval_ms),
                    "consecutive_misses": agent.map(|a| a.consecutive_misses),
                    "last_activity_at": time_json(agent.and_then(|a| a.last_activity_at)),
                    "freshness": agent.map(|a| a.freshness(now).as_str()),
                    "next_due_at": time_json(agent.and_then(|a| a.next_due_at)),
                })
            })
            .collect();
        return print_json(out, &Value::Array(rows));
    }
    if merged.is_empty() {
        return writeln!(out, "no agents and no log rows{}", window(since)).map_err(io_err);
    }
    let mut t = Table::new(
        &[
            "ID",
            "STATE",
            "INTERVAL",
            "MISSES",
            "POKES",
            "MISSED",
            "ACTIVITIES",
            "SKIPS",
            "OUTCOMES",
            "ESCALATIONS",
            "LAST ACTIVITY",
            "FRESHNESS",
            "NEXT DUE",
        ],
        &[2, 3, 4, 5, 6, 7],
    );
    for (id, (agent, c)) in &merged {
        let current = |f: &dyn Fn(&Agent) -> String| agent.map_or_else(|| "-".to_string(), f);
        t.add_row(vec![
            id.to_string(),
            agent.map_or("removed", |a| a.state(now).as_str()).to_string(),
            current(&|a| format_duration(a.current_interval_ms)),
            current(&|a| a.consecutive_misses.to_string()),
            c.pokes.to_string(),
            c.misses.to_string(),
            c.activities.to_string(),
            c.skips.to_string(),
            outcomes_text(&c.outcomes),
            outcomes_text(&c.escalations),
            current(&|a| time_or(a.last_activity_at, "never")),
            current(&|a| a.freshness(now).as_str().to_string()),
            current(&|a| next_due(a, now)),
        ]);
    }
    t.print(out)
}

fn window(since: Option<Millis>) -> String {
    since.map_or_else(String::new, |at| format!(" since {}", format_time(at)))
}
