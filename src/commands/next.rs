//! `poked next [--wait]`: the agent due soonest, and when.
//!
//! Without `--wait`, when no agent will ever come due (none, or all paused) it says so and
//! exits 0 (`null` with `--json`). With `--wait` it sleeps until the next due time (from the
//! one clock, so under a fixed `POKED_NOW` only a change to the database can wake it), looking
//! at the database whenever anyone commits, so an activity that postpones the agent, a new
//! agent or a resumed one is honoured; it then prints the agent and exits 0.

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

use super::output::{due_relative, print_json};
use super::{Context, io_err};
use poked::agent::Agent;
use poked::clock::Millis;
use poked::daemon::watch::{POLL_INTERVAL, Poll, stdout_closed};
use poked::error::Result;
use poked::store::Store;
use poked::transfer::agent_json;
use poked::units::format_time;

/// `poked next [--wait]`.
pub fn next(ctx: &Context, out: &mut dyn Write, wait: bool, json: bool) -> Result<()> {
    let store = ctx.open_to_read()?;
    if !wait {
        let agent = store.next_due()?;
        return print_next(&store, out, agent.as_ref(), ctx.now(), json);
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
                return print_next(&store, out, agent.as_ref(), now, json);
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

fn print_next(
    store: &Store,
    out: &mut dyn Write,
    agent: Option<&Agent>,
    now: Millis,
    json: bool,
) -> Result<()> {
    let (agent, due) = match agent.and_then(|a| Some((a, a.next_due_at?))) {
        Some(found) => found,
        None if json => return print_json(out, &Value::Null),
        None => {
            return writeln!(out, "no agent will come due: there are none, or all are paused")
                .map_err(io_err);
        }
    };
    if json {
        let mut value = agent_json(agent, &store.rungs(&agent.id)?, now);
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
