//! poked's state in the Prometheus text exposition format (version 0.0.4), for `poked metrics`
//! and the daemon's `/metrics` endpoint alike.
//!
//! A scrape reads three things, none of which scans the log: every agent's row
//! ([`Store::agents`]) for the gauges, the `counters` table ([`Store::counters`], kept by
//! triggers as log rows are written, so it survives restarts and prunes) for the counters, and
//! the `daemon` row for the last pass. Whether a daemon runs is whether one holds the database's
//! lock ([`crate::daemon::lock::holder`]).
//!
//! Names follow Prometheus's conventions: the `poked_` prefix, base units (seconds, never
//! milliseconds), `_total` on counters, `_timestamp_seconds` on instants. Every family is always
//! announced with its `HELP` and `TYPE` lines, samples or not, so rules can be checked against
//! any scrape. Counters of a per-agent outcome are written for every outcome the kind can have,
//! zeros included: `increase()` cannot see a series' first increment, so an alert on the first
//! held escalation needs the series to exist at zero before it.

use std::borrow::Cow;
use std::fmt::{self, Write};

use crate::agent::{Agent, StateCounts};
use crate::clock::Millis;
use crate::error::Result;
use crate::log::{Kind, Outcome};
use crate::store::{AgentCounters, Counters, Store};

/// The `Content-Type` of the exposition, for an HTTP response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Reads the store and renders every metric at `now` (the instant that decides which agents
/// are due or held).
pub fn render(store: &Store, now: Millis) -> Result<String> {
    let read = store.metrics_inputs()?;
    let daemon_up = crate::daemon::lock::holder(store.path()).is_some();
    Ok(Exposition {
        agents: &read.agents,
        counters: &read.counters,
        last_pass_at: read.daemon.and_then(|record| record.last_pass_at),
        daemon_up,
        now,
    }
    .text())
}

/// What one scrape reports.
#[derive(Debug, Clone, Copy)]
pub struct Exposition<'a> {
    /// Every agent, by id.
    pub agents: &'a [Agent],
    pub counters: &'a Counters,
    /// The daemon's last pass, if one ever ran.
    pub last_pass_at: Option<Millis>,
    /// Whether a daemon holds the database's lock.
    pub daemon_up: bool,
    pub now: Millis,
}

impl Exposition<'_> {
    /// The exposition as text.
    pub fn text(&self) -> String {
        // A 10,000-agent scrape is a few megabytes: one allocation, written in one go.
        let mut out = String::with_capacity(4096 + self.agents.len() * 1600);
        // Writing to a String cannot fail.
        let _ = self.write(&mut out);
        out
    }
}

/// An agent's `agent="…"` label, escaped once for all its samples.
struct Labelled<'a> {
    agent: &'a Agent,
    label: Cow<'a, str>,
    counters: Option<&'a AgentCounters>,
}

impl Exposition<'_> {
    fn write(&self, out: &mut String) -> fmt::Result {
        let agents: Vec<Labelled<'_>> = self
            .agents
            .iter()
            .map(|agent| Labelled {
                agent,
                label: escape_label(agent.id.as_str()),
                counters: self.counters.agents.get(&agent.id),
            })
            .collect();

        let counts = StateCounts::of(self.agents, self.now);
        family(
            out,
            "poked_agents",
            "gauge",
            "Agents by state: due, backing_off, waiting, paused; held counts the agents a skip or an \
             escalation holds, each also counted in its state.",
        )?;
        for (state, n) in [
            ("due", counts.due),
            ("backing_off", counts.backing_off),
            ("waiting", counts.waiting),
            ("paused", counts.paused),
            ("held", counts.held),
        ] {
            writeln!(out, "poked_agents{{state=\"{state}\"}} {n}")?;
        }

        let gauges: [(&str, &str, Gauge); 6] = [
            (
                "poked_agent_consecutive_misses",
                "Misses in a row since the agent's last activity or reset.",
                |a, _| Some(Value::Count(a.consecutive_misses)),
            ),
            (
                "poked_agent_interval_seconds",
                "The agent's current backoff interval.",
                |a, _| Some(Value::Seconds(a.current_interval_ms)),
            ),
            (
                "poked_agent_max_interval_seconds",
                "The agent's longest interval, the cap of its backoff.",
                |a, _| Some(Value::Seconds(a.settings.max_interval_ms)),
            ),
            (
                "poked_agent_next_due_timestamp_seconds",
                "When the agent is next due (no sample while it is paused).",
                |a, _| a.next_due_at.map(Value::Seconds),
            ),
            (
                "poked_agent_last_activity_timestamp_seconds",
                "The agent's last activity (no sample if it never showed any).",
                |a, _| a.last_activity_at.map(Value::Seconds),
            ),
            (
                "poked_agent_held_until_timestamp_seconds",
                "Until when a skip or an escalation's grace holds the agent (a sample only while held).",
                |a, now| {
                    (!a.paused && a.held(now))
                        .then_some(a.held_until_at)
                        .flatten()
                        .map(Value::Seconds)
                },
            ),
        ];
        for (name, help, value) in gauges {
            family(out, name, "gauge", help)?;
            for a in &agents {
                if let Some(v) = value(a.agent, self.now) {
                    writeln!(out, "{name}{{agent=\"{}\"}} {v}", a.label)?;
                }
            }
        }

        for (name, kind, help) in [
            (
                "poked_pokes_total",
                Kind::Poke,
                "Pokes by outcome, each counted once its outcome is recorded.",
            ),
            (
                "poked_escalations_total",
                Kind::Escalation,
                "Escalations by outcome; held: the cap held the rung and a poke went out instead.",
            ),
        ] {
            family(out, name, "counter", help)?;
            for a in &agents {
                for &outcome in Outcome::ALL {
                    let n = a.counters.map_or(0, |c| c.get(kind, Some(outcome)));
                    if n > 0 || possible(kind, outcome) {
                        writeln!(out, "{name}{{agent=\"{}\",outcome=\"{outcome}\"}} {n}", a.label)?;
                    }
                }
            }
        }
        for (name, kind, help) in [
            (
                "poked_skips_total",
                Kind::Skip,
                "Pokes skipped because the agent's gate said there was nothing to do.",
            ),
            ("poked_misses_total", Kind::Miss, "Pokes that went unanswered."),
        ] {
            family(out, name, "counter", help)?;
            for a in &agents {
                let n = a.counters.map_or(0, |c| c.total(kind));
                writeln!(out, "{name}{{agent=\"{}\"}} {n}", a.label)?;
            }
        }

        family(
            out,
            "poked_daemon_up",
            "gauge",
            "1 while a poked daemon holds this database's lock, else 0.",
        )?;
        writeln!(out, "poked_daemon_up {}", u8::from(self.daemon_up))?;
        family(
            out,
            "poked_daemon_last_pass_timestamp_seconds",
            "gauge",
            "When the daemon last ran a scheduling pass (no sample if none ever ran).",
        )?;
        if let Some(at) = self.last_pass_at {
            writeln!(
                out,
                "poked_daemon_last_pass_timestamp_seconds {}",
                Value::Seconds(at)
            )?;
        }
        family(
            out,
            "poked_build_info",
            "gauge",
            "The version of poked that wrote these metrics; the value is always 1.",
        )?;
        writeln!(
            out,
            "poked_build_info{{version=\"{}\"}} 1",
            escape_label(env!("CARGO_PKG_VERSION"))
        )
    }
}

/// Whether `kind` can end with `outcome`: those series are written even at zero. (A poke is
/// never held by a cap; an escalation always has a command, so it is never merely sent; no
/// count includes a pending row.)
fn possible(kind: Kind, outcome: Outcome) -> bool {
    match outcome {
        Outcome::Pending => false,
        Outcome::Held => kind == Kind::Escalation,
        Outcome::Sent => kind == Kind::Poke,
        _ => true,
    }
}

/// A family's `HELP` and `TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}")
}

/// A per-agent gauge: the agent's value at an instant, if it has one.
type Gauge = fn(&Agent, Millis) -> Option<Value>;

/// A sample's value.
#[derive(Debug, Clone, Copy)]
enum Value {
    Count(i64),
    /// Milliseconds, written as seconds with no more digits than they need.
    Seconds(i64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Count(n) => write!(f, "{n}"),
            Value::Seconds(ms) => {
                let sign = if ms < 0 { "-" } else { "" };
                let ms = ms.unsigned_abs();
                let (whole, frac) = (ms / 1000, ms % 1000);
                if frac == 0 {
                    write!(f, "{sign}{whole}")
                } else {
                    let digits = format!("{frac:03}");
                    write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
                }
            }
        }
    }
}

/// A label value as the text format writes it: backslash, double quote and line feed escaped as
/// `\\`, `\"` and `\n`.
pub fn escape_label(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_as_the_format_says() {
        assert_eq!(escape_label("gastown/crew/max"), "gastown/crew/max");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn milliseconds_are_written_as_seconds() {
        let text = |ms| Value::Seconds(ms).to_string();
        assert_eq!(text(1_012_500), "1012.5");
        assert_eq!(text(300_000), "300");
        assert_eq!(text(1_795_975_515_982), "1795975515.982");
        assert_eq!(text(5), "0.005");
        assert_eq!(text(-1_500), "-1.5");
    }
}
