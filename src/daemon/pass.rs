//! The scheduling pass: the heart of `poked run`.
//!
//! A pass finds the due agents with the indexed due query, reads their heartbeat files, and for
//! each agent still due commits the miss/poke transaction of SPEC §3 ([`Store::begin_poke`]).
//! Commands then run on worker threads, at most `concurrency` at once, never inside a
//! transaction, and each outcome is recorded in a second transaction on the same log row.
//!
//! A [`Scheduler`] owns the workers. Its [`Scheduler::pass`] never waits for a command, so a
//! slow command delays no other agent's poke; `poked run --once` is one pass followed by
//! waiting for the outcomes ([`run_pass`]), and the daemon calls the same pass each time an
//! agent comes due.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use super::command::{CommandResult, run_command};
use super::heartbeat::Heartbeats;
use crate::agent::Agent;
use crate::clock::{Clock, Millis};
use crate::error::{Error, Result};
use crate::random::Draw;
use crate::store::{PokeStarted, Store};
use crate::units::format_duration;

/// How many due agents one pass reads at a time.
const DUE_BATCH: usize = 512;

/// The most agents whose transitions the pass commits in one transaction (group commit).
pub const GROUP_COMMIT: usize = 256;

/// How a pass runs commands.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// At most this many commands at once.
    pub concurrency: usize,
    /// A command's process group is stopped after this long.
    pub command_timeout: Duration,
    /// Between SIGTERM and SIGKILL when a command is stopped.
    pub grace: Duration,
}

impl Default for PassOptions {
    fn default() -> PassOptions {
        PassOptions {
            concurrency: 4,
            command_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(2),
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
    /// Due agents left for later: all command slots were busy, or the batch was full.
    pub deferred: bool,
}

impl PassReport {
    fn add(&mut self, other: &PassReport) {
        self.pokes += other.pokes;
        self.misses += other.misses;
        self.heartbeats += other.heartbeats;
    }
}

/// A poke whose command finished.
struct Done {
    agent_id: String,
}

/// Runs passes and owns the worker threads that carry out the pokes' commands.
pub struct Scheduler<'a> {
    store: &'a Store,
    clock: &'a dyn Clock,
    draw: &'a dyn Draw,
    options: &'a PassOptions,
    heartbeats: Heartbeats,
    jobs: Option<mpsc::Sender<PokeStarted>>,
    done: mpsc::Receiver<Done>,
    in_flight: HashSet<String>,
}

/// Starts `options.concurrency` workers, runs `f` with the scheduler, then waits for every
/// command in flight before returning. `cancel` stops running commands (recorded
/// `interrupted`).
pub fn with_scheduler<T>(
    store: &Store,
    clock: &dyn Clock,
    draw: &dyn Draw,
    options: &PassOptions,
    cancel: &AtomicBool,
    f: impl FnOnce(&mut Scheduler<'_>) -> T,
) -> T {
    let (jobs, queue) = mpsc::channel::<PokeStarted>();
    let queue = Mutex::new(queue);
    let (done_tx, done) = mpsc::channel::<Done>();
    std::thread::scope(|scope| {
        for _ in 0..options.concurrency.max(1) {
            let done_tx = done_tx.clone();
            let queue = &queue;
            scope.spawn(move || {
                loop {
                    // The lock is held only to take the next poke off the queue.
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(poke) = next else { break };
                    if let Some(argv) = &poke.agent.settings.command {
                        carry_out(store, &poke, argv, options, cancel);
                    }
                    let _ = done_tx.send(Done {
                        agent_id: poke.agent.id,
                    });
                }
            });
        }
        drop(done_tx);
        let mut scheduler = Scheduler {
            store,
            clock,
            draw,
            options,
            heartbeats: Heartbeats::default(),
            jobs: Some(jobs),
            done,
            in_flight: HashSet::new(),
        };
        let value = f(&mut scheduler);
        scheduler.wait_idle();
        // Closing the queue ends the workers; the scope joins them.
        scheduler.jobs = None;
        value
    })
}

impl Scheduler<'_> {
    /// Pokes every agent due at `now` (up to one batch), without waiting for commands. Agents
    /// with a command wait for a free worker; `deferred` says some were left for later.
    /// With `allow_misses` false (the first pass after a wall-clock jump) no miss is recorded.
    pub fn pass(&mut self, now: Millis, allow_misses: bool) -> Result<PassReport> {
        self.collect_done();
        let mut report = PassReport::default();
        let due = self.store.due_batch(now, DUE_BATCH)?;
        report.deferred = due.len() == DUE_BATCH;
        for agent in &due {
            if self.in_flight.contains(&agent.id) {
                continue;
            }
            if agent.settings.command.is_some() && self.in_flight.len() >= self.options.concurrency {
                report.deferred = true;
                continue;
            }
            if self.read_heartbeat(agent)? {
                report.heartbeats += 1;
            }
            let Some(poke) = self
                .store
                .begin_poke(&agent.id, self.clock.now(), allow_misses, self.draw)?
            else {
                continue;
            };
            report.pokes += 1;
            report.misses += usize::from(poke.missed);
            if poke.agent.settings.command.is_some() {
                self.in_flight.insert(poke.agent.id.clone());
                if let Some(jobs) = &self.jobs {
                    // The workers live as long as the scheduler, so the queue is open.
                    let _ = jobs.send(poke);
                }
            } else {
                tracing::info!(
                    agent = poke.agent.id.as_str(),
                    misses = poke.agent.consecutive_misses,
                    interval = %format_duration(poke.agent.current_interval_ms),
                    outcome = "sent",
                    "poke"
                );
            }
        }
        Ok(report)
    }

    /// How many commands are running.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Waits until a command finishes or `deadline` passes; returns whether one finished.
    pub fn wait_for_done(&mut self, deadline: Instant) -> bool {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(timeout) {
            Ok(done) => {
                self.in_flight.remove(&done.agent_id);
                self.collect_done();
                true
            }
            Err(_) => false,
        }
    }

    /// Waits for every command in flight.
    pub fn wait_idle(&mut self) {
        while !self.in_flight.is_empty() {
            match self.done.recv() {
                Ok(done) => {
                    self.in_flight.remove(&done.agent_id);
                }
                Err(_) => break,
            }
        }
    }

    fn collect_done(&mut self) {
        while let Ok(done) = self.done.try_recv() {
            self.in_flight.remove(&done.agent_id);
        }
    }

    /// Checks an agent's heartbeat file and records newer activity. Returns whether it did.
    fn read_heartbeat(&self, agent: &Agent) -> Result<bool> {
        let Some(path) = &agent.settings.heartbeat_file else {
            return Ok(false);
        };
        let Some(mtime) = self.heartbeats.mtime(&agent.id, path) else {
            return Ok(false);
        };
        let now = self.clock.now();
        if agent.last_activity_at.is_some_and(|last| mtime.min(now) <= last) {
            return Ok(false);
        }
        self.store.record_heartbeat(&agent.id, mtime, now, self.draw)?;
        tracing::debug!(agent = agent.id.as_str(), "activity from heartbeat file");
        Ok(true)
    }
}

/// The extra environment of a poke's command. `POKED_DB` lets the command record activity
/// with a plain `poked activity "$POKED_AGENT"`.
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
fn carry_out(store: &Store, poke: &PokeStarted, argv: &[String], options: &PassOptions, cancel: &AtomicBool) {
    let env = command_env(store, poke);
    let mut record_pgid = |pid: u32| {
        if let Err(e) = store.set_poke_pgid(poke.log_id, pid) {
            tracing::warn!(agent = poke.agent.id.as_str(), error = %e, "could not record the command's process group");
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
    tracing::info!(
        agent = poke.agent.id.as_str(),
        misses = poke.agent.consecutive_misses,
        interval = %format_duration(poke.agent.current_interval_ms),
        outcome = result.outcome.as_str(),
        duration_ms = result.duration_ms,
        "poke"
    );
    record_outcome(store, poke, &result);
}

/// Records a command's outcome, retrying while the database is busy, full or read-only; a
/// poke whose outcome cannot be recorded stays `pending` and becomes `interrupted` when the
/// next daemon starts.
fn record_outcome(store: &Store, poke: &PokeStarted, result: &CommandResult) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=8 {
        let recorded = store.finish_poke(
            poke.log_id,
            result.outcome.as_str(),
            result.exit_code,
            result.duration_ms,
            result.detail.as_deref(),
        );
        match recorded {
            Ok(()) => return,
            Err(e) if is_transient(&e) && attempt < 8 => {
                tracing::warn!(agent = poke.agent.id.as_str(), error = %e, "cannot record a poke's outcome yet; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(agent = poke.agent.id.as_str(), error = %e, "could not record a poke's outcome");
                return;
            }
        }
    }
}

/// Errors that may go away on their own: a busy lock, a full disk, a read-only file.
pub fn is_transient(e: &Error) -> bool {
    matches!(e, Error::Busy(_) | Error::DiskFull(_) | Error::ReadOnly { .. })
}

/// Does everything due now and waits for the outcomes (`poked run --once`).
pub fn run_pass(
    store: &Store,
    clock: &dyn Clock,
    draw: &dyn Draw,
    options: &PassOptions,
    cancel: &AtomicBool,
) -> Result<PassReport> {
    let now = clock.now();
    with_scheduler(store, clock, draw, options, cancel, |scheduler| {
        let mut total = PassReport::default();
        loop {
            let report = scheduler.pass(now, true)?;
            total.add(&report);
            if !report.deferred {
                return Ok(total);
            }
            if report.pokes == 0 && !scheduler.wait_for_done(Instant::now() + Duration::from_secs(3600)) {
                return Ok(total);
            }
        }
    })
}
