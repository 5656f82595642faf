//! One scheduling pass: the heart of `poked run`.
//!
//! A pass finds the due agents with the indexed due query, reads their heartbeat files, and for
//! each agent still due commits the miss/poke transaction of SPEC §3 ([`Store::begin_poke`]).
//! Commands then run on worker threads, at most `concurrency` at once and never inside a
//! transaction, and each outcome is recorded in a second transaction on the same log row. A
//! slow command delays no other agent's poke: the transactions are all committed first.

use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use super::command::{CommandResult, run_command};
use super::heartbeat::Heartbeats;
use crate::clock::Clock;
use crate::error::Result;
use crate::random::Draw;
use crate::store::{PokeStarted, Store};
use crate::units::format_duration;

/// How a pass runs commands.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// At most this many commands at once.
    pub concurrency: usize,
    /// A command's process group is stopped after this long.
    pub command_timeout: Duration,
    /// Between SIGTERM and SIGKILL when a command is stopped.
    pub grace: Duration,
    /// Whether unanswered pokes count as misses in this pass (not right after a clock jump).
    pub allow_misses: bool,
}

impl Default for PassOptions {
    fn default() -> PassOptions {
        PassOptions {
            concurrency: 4,
            command_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(2),
            allow_misses: true,
        }
    }
}

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Pokes committed.
    pub pokes: usize,
    /// Misses committed.
    pub misses: usize,
    /// Activities found in heartbeat files.
    pub heartbeats: usize,
}

/// The extra environment of a poke's command.
pub fn command_env(store: &Store, poke: &PokeStarted) -> Vec<(String, String)> {
    vec![
        ("POKED_AGENT".into(), poke.agent.id.clone()),
        ("POKED_MISSES".into(), poke.agent.consecutive_misses.to_string()),
        (
            "POKED_INTERVAL_MS".into(),
            poke.agent.current_interval_ms.to_string(),
        ),
        ("POKED_POKE_ID".into(), poke.log_id.to_string()),
        ("POKED_DB".into(), store.path().display().to_string()),
    ]
}

/// Runs one poke's command (`argv`) and records its outcome on the poke's log row.
pub fn carry_out(
    store: &Store,
    poke: &PokeStarted,
    argv: &[String],
    options: &PassOptions,
    cancel: &AtomicBool,
) -> Result<CommandResult> {
    let env = command_env(store, poke);
    let mut record_pgid = |pid: u32| {
        if let Err(e) = store.set_poke_pgid(poke.log_id, pid) {
            tracing::warn!(agent = ?poke.agent.id, error = %e, "could not record the command's process group");
        }
    };
    let result = run_command(
        argv,
        &env,
        options.command_timeout,
        options.grace,
        cancel,
        &mut record_pgid,
    );
    store.finish_poke(
        poke.log_id,
        result.outcome.as_str(),
        result.exit_code,
        result.duration_ms,
        result.detail.as_deref(),
    )?;
    tracing::info!(
        agent = ?poke.agent.id,
        misses = poke.agent.consecutive_misses,
        interval = %format_duration(poke.agent.current_interval_ms),
        outcome = result.outcome.as_str(),
        duration_ms = result.duration_ms,
        "poke"
    );
    Ok(result)
}

/// Checks an agent's heartbeat file and records newer activity. Returns whether it did.
pub fn read_heartbeat(
    store: &Store,
    heartbeats: &Heartbeats,
    clock: &dyn Clock,
    draw: &dyn Draw,
    agent: &crate::agent::Agent,
) -> Result<bool> {
    let Some(path) = &agent.settings.heartbeat_file else {
        return Ok(false);
    };
    let Some(mtime) = heartbeats.mtime(&agent.id, path) else {
        return Ok(false);
    };
    let now = clock.now();
    if agent.last_activity_at.is_some_and(|last| mtime.min(now) <= last) {
        return Ok(false);
    }
    store.record_heartbeat(&agent.id, mtime, now, draw)?;
    tracing::debug!(agent = ?agent.id, "activity from heartbeat file");
    Ok(true)
}

/// Does everything due now and waits for the outcomes (`poked run --once`).
pub fn run_pass(
    store: &Store,
    clock: &dyn Clock,
    draw: &dyn Draw,
    heartbeats: &Heartbeats,
    options: &PassOptions,
    cancel: &AtomicBool,
) -> Result<PassReport> {
    let due = store.due(clock.now())?;
    let mut report = PassReport::default();
    if due.is_empty() {
        return Ok(report);
    }
    let (sender, receiver) = mpsc::channel::<PokeStarted>();
    let receiver = Mutex::new(receiver);
    let failure: Mutex<Option<crate::error::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..options.concurrency.clamp(1, due.len()) {
            scope.spawn(|| {
                loop {
                    // The lock is held only to take the next poke off the queue.
                    let next = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(poke) = next else { break };
                    let Some(argv) = &poke.agent.settings.command else { continue };
                    if let Err(e) = carry_out(store, &poke, argv, options, cancel) {
                        tracing::error!(agent = ?poke.agent.id, error = %e, "could not record a poke's outcome");
                        failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    }
                }
            });
        }
        for agent in &due {
            let mut step = || -> Result<()> {
                if read_heartbeat(store, heartbeats, clock, draw, agent)? {
                    report.heartbeats += 1;
                }
                let Some(poke) = store.begin_poke(&agent.id, clock.now(), options.allow_misses, draw)? else {
                    return Ok(());
                };
                report.pokes += 1;
                report.misses += usize::from(poke.missed);
                if poke.agent.settings.command.is_some() {
                    // The workers outlive this loop, so the receiver is alive.
                    let _ = sender.send(poke);
                } else {
                    tracing::info!(
                        agent = ?poke.agent.id,
                        misses = poke.agent.consecutive_misses,
                        interval = %format_duration(poke.agent.current_interval_ms),
                        outcome = "sent",
                        "poke"
                    );
                }
                Ok(())
            };
            if let Err(e) = step() {
                failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                break;
            }
        }
        drop(sender);
    });
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(report),
    }
}
