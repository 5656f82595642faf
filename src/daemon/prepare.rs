//! The work for a due agent with an activity probe or a gate (SPEC §7.1-7.2), done on a worker
//! because it runs commands before the decision.
//!
//! 1. Run the probe (when the agent has one) and read the heartbeat file; one transaction
//!    records the values as seen and the activity, when one counts. An agent no longer due
//!    (it answered) stops here.
//! 2. Run the gate (when the agent has one). Exit 0 goes on; exit 1-254 commits a **skip** (held
//!    for one wait; not a miss); exit 255, a signal, a timeout or a command that cannot start is
//!    a **gate error**: the poke goes ahead, noted, and this pass fires no rung.
//! 3. One transaction decides and commits the miss and the poke (or the rung), as the pass does
//!    for every other agent; then the command runs.
//!
//! Without a gate, steps 1 and 3 share one transaction. Each transaction loads the agent again
//! and checks that it is still due. After a stop signal no further command starts and nothing
//! more is committed.

use std::sync::atomic::{AtomicBool, Ordering};

use super::command::CommandResult;
use super::heartbeat::Heartbeats;
use super::pass::{
    Done, PassOptions, PassReport, RunsFor, carry_out, command_env, finished, log_sent, run_with,
};
use super::probe::{ProbeHealth, parse_instant};
use crate::agent::Agent;
use crate::clock::{Clock, Millis};
use crate::error::Result;
use crate::log::Outcome;
use crate::random::Draw;
use crate::rules::{self, Reading, Source};
use crate::store::{Finished, Started, Store, Tx};

/// What every worker shares.
pub(super) struct Shared<'a> {
    pub store: &'a Store,
    pub clock: &'a dyn Clock,
    pub draw: &'a dyn Draw,
    pub options: &'a PassOptions,
    pub stop: &'a AtomicBool,
    pub cancel: &'a AtomicBool,
    pub heartbeats: &'a Heartbeats,
    pub probes: &'a ProbeHealth,
}

/// What the gate said.
enum Gate {
    /// No gate, or it exited 0.
    Open,
    /// It exited 1-254: nothing to do.
    Skip(Finished),
    /// Exit 255, a signal, a timeout, or it could not start.
    Error(String),
}

/// Probes, gates and pokes `agent` (see the module docs). Never fails: an error is logged and
/// the agent is tried again at a later pass.
pub(super) fn prepare(shared: &Shared<'_>, agent: Agent, allow_miss: bool) -> Done {
    let id = agent.id.clone();
    let mut report = PassReport::default();
    let finished = match steps(shared, agent, allow_miss, &mut report) {
        Ok(Some(poke)) if poke.command.is_some() => Some(carry_out(shared, &poke)),
        Ok(Some(poke)) => {
            log_sent(&poke);
            None
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(agent = id.as_str(), error = %e, "could not poke this agent; trying again at its next pass");
            None
        }
    };
    Done {
        agent: id,
        finished,
        report,
    }
}

fn steps(
    shared: &Shared<'_>,
    agent: Agent,
    allow_miss: bool,
    report: &mut PassReport,
) -> Result<Option<Started>> {
    let stopped = || shared.stop.load(Ordering::SeqCst);
    if stopped() {
        return Ok(None);
    }
    let probe = agent
        .settings
        .activity_cmd
        .as_ref()
        .and_then(|argv| run_probe(shared, &agent, argv));
    let mtime = agent
        .settings
        .heartbeat_file
        .as_deref()
        .and_then(|path| shared.heartbeats.mtime(&agent.id, path));
    let sources = [(Source::Probe, probe), (Source::HeartbeatFile, mtime)];
    let Some(argv) = agent.settings.only_if.clone() else {
        return shared.store.write(|tx| {
            let now = shared.clock.now();
            let Some(mut agent) = still_due(tx, &agent, now, &sources, shared.draw, report)? else {
                return Ok(None);
            };
            begin(tx, &mut agent, now, allow_miss, None, shared, report)
        });
    };
    let due = shared.store.write(|tx| {
        let now = shared.clock.now();
        still_due(tx, &agent, now, &sources, shared.draw, report)
    })?;
    let Some(agent) = due else {
        return Ok(None);
    };
    if stopped() {
        return Ok(None);
    }
    let gate = run_gate(shared, &agent, &argv);
    if shared.cancel.load(Ordering::SeqCst) {
        return Ok(None);
    }
    shared.store.write(|tx| {
        let now = shared.clock.now();
        let Some(mut agent) = still_due(tx, &agent, now, &[], shared.draw, report)? else {
            return Ok(None);
        };
        match gate {
            Gate::Skip(result) => {
                if stopped() {
                    tx.abandon();
                    return Ok(None);
                }
                tx.skip(&mut agent, &result, now, shared.draw)?;
                report.skips += 1;
                tracing::info!(
                    agent = agent.id.as_str(),
                    exit_code = result.exit_code,
                    "skip: the gate says there is nothing to do"
                );
                Ok(None)
            }
            Gate::Open => begin(tx, &mut agent, now, allow_miss, None, shared, report),
            Gate::Error(why) => begin(tx, &mut agent, now, allow_miss, Some(why), shared, report),
        }
    })
}

/// Loads the agent again, records what its sources show, and returns it if it is still due and
/// has nothing in flight.
fn still_due(
    tx: &mut Tx<'_>,
    agent: &Agent,
    now: Millis,
    sources: &[(Source, Option<Millis>)],
    draw: &dyn Draw,
    report: &mut PassReport,
) -> Result<Option<Agent>> {
    let mut agent = tx.agent(&agent.id)?;
    if agent.next_due_at.is_none_or(|due| due > now) {
        return Ok(None);
    }
    for (source, value) in sources {
        if let Some(value) = value
            && let Reading::Activity(_) = tx.read_source(&mut agent, *source, *value, now, draw)?
        {
            report.heartbeats += 1;
            tracing::debug!(agent = agent.id.as_str(), source = source.as_str(), "activity");
        }
    }
    if agent.next_due_at.is_none_or(|due| due > now) || tx.in_flight(&agent.id)? {
        return Ok(None);
    }
    Ok(Some(agent))
}

/// Decides and commits the poke (or the rung), unless a stop signal arrived.
fn begin(
    tx: &mut Tx<'_>,
    agent: &mut Agent,
    now: Millis,
    allow_miss: bool,
    gate_error: Option<String>,
    shared: &Shared<'_>,
    report: &mut PassReport,
) -> Result<Option<Started>> {
    if shared.stop.load(Ordering::SeqCst) {
        tx.abandon();
        return Ok(None);
    }
    let decision = rules::decide(
        agent,
        now,
        allow_miss,
        gate_error.is_some(),
        &mut tx.ladder(agent),
    )?;
    let poke = tx.begin(agent, &decision, now, shared.draw, gate_error)?;
    report.pokes += 1;
    report.misses += usize::from(poke.missed);
    report.escalations += usize::from(poke.kind == crate::log::Kind::Escalation);
    Ok(Some(poke))
}

/// Runs a probe or a gate (`what`) with the agent's environment and the command timeout.
fn run_check(shared: &Shared<'_>, agent: &Agent, argv: &[String], what: &'static str) -> CommandResult {
    run_with(
        shared,
        argv,
        &command_env(shared.store, agent, RunsFor::Check(what)),
    )
}

/// Runs the probe; its instant, or `None` (logged when it starts failing).
fn run_probe(shared: &Shared<'_>, agent: &Agent, argv: &[String]) -> Option<Millis> {
    let result = run_check(shared, agent, argv, "probe");
    let value = match result.outcome {
        Outcome::Ok => parse_instant(&result.stdout),
        _ => Err(format!(
            "{}{}",
            result.outcome,
            result.detail.map_or_else(String::new, |d| format!(": {d}"))
        )),
    };
    match value {
        Ok(at) => {
            shared.probes.ok(&agent.id);
            Some(at)
        }
        Err(why) => {
            shared.probes.failed(&agent.id, &why);
            None
        }
    }
}

/// Runs the gate and says what it means (SPEC §7.2).
fn run_gate(shared: &Shared<'_>, agent: &Agent, argv: &[String]) -> Gate {
    let result = run_check(shared, agent, argv, "gate");
    match (result.outcome, result.exit_code) {
        (Outcome::Ok, _) => Gate::Open,
        (Outcome::Failed, Some(1..=254)) => Gate::Skip(finished(0, &result)),
        (outcome, code) => {
            let how = match code {
                Some(code) => format!("exit {code}"),
                None => outcome.to_string(),
            };
            let why = format!(
                "gate error ({how}){}",
                result.detail.map_or_else(String::new, |d| format!(": {d}"))
            );
            tracing::warn!(agent = agent.id.as_str(), error = %why, "the gate failed; poking anyway, and no rung fires");
            Gate::Error(why)
        }
    }
}
