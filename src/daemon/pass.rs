//! The scheduling pass: the heart of `poked run`.
//!
//! A pass commits, in **one** `BEGIN IMMEDIATE` transaction (group commit), the outcomes of the
//! commands that finished since the last pass and the transitions of up to [`GROUP_COMMIT`] due
//! agents: for each, its heartbeat file is read ([`crate::rules::read_source`]), and when it is
//! still due, the miss, the poke or the rung that [`crate::rules::decide`] chooses is written.
//! Each agent's transition stays whole with its log rows; a kill before the commit loses the
//! uncommitted batch and nothing acknowledged. Only after the commit are the commands handed to
//! the workers, so a command never starts before its transition has committed. A single due
//! agent waits for no company: the pass takes what is due now and commits it at once.
//!
//! An agent with an activity probe or a gate needs commands run *before* its decision, so the
//! pass hands it to a worker instead (`prepare.rs`): the worker runs the probe, records what it
//! saw, runs the gate, and commits a skip or the poke in a transaction of its own, then runs the
//! poke's command. Probes, gates, pokes and escalations all count against `concurrency`, and an
//! agent is never handed to two workers at once, so it never has two commands running.
//!
//! After SIGTERM or SIGINT (`stop`) a pass commits no transition and starts nothing: a pass
//! under way when the signal arrives rolls its whole transaction back instead of committing it,
//! and records the outcomes it held in a transaction of their own. Commands in flight finish and are recorded;
//! a second signal (`cancel`) stops them (recorded `interrupted`).
//!
//! An outcome that cannot be written (a trigger refusing it, a full disk, a long lock) stays
//! queued and is retried at every pass until it is recorded; its agent counts as in flight
//! meanwhile, so it is never poked twice, and is poked again at its next due time once the
//! outcome is in.

use std::collections::HashSet;
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::command::{CommandResult, run_command};
use super::heartbeat::Heartbeats;
use super::jobs::{JobQueue, Jobs};
use super::prepare::{Shared, prepare};
use super::probe::ProbeHealth;
use crate::agent::{Agent, AgentId};
use crate::clock::{Clock, Millis};
use crate::error::{Error, Result};
use crate::log::{Kind, Outcome};
use crate::random::Draw;
use crate::rules::{self, Action, KnownLadder, Reading, Source};
use crate::store::{Finished, Started, Store, Want};
use crate::units::format_duration;

/// The most agents whose transitions one pass commits in one transaction (group commit).
///
/// Chosen by measurement (`cargo bench --bench scheduler`, pass over 10,000 due agents): the
/// rate grows with the batch while the fsync dominates and flattens past a few hundred, where
/// one transaction holds the write lock for about 10 ms; larger batches only make other writers
/// wait longer.
pub const GROUP_COMMIT: usize = 256;

/// A busy daemon's passes record their time (`last_pass_at`) at most this often: the row is a
/// page of its own in every commit otherwise, about a tenth of what a poke writes, for a time
/// `poked status` shows to the second.
const RECORD_PASS_EVERY: Duration = Duration::from_secs(1);

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

/// What passes did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Pokes and escalations committed.
    pub pokes: usize,
    /// Misses committed.
    pub misses: usize,
    /// Activities found in heartbeat files and probes.
    pub heartbeats: usize,
    /// Skips committed (the gate said there was nothing to do).
    pub skips: usize,
    /// Escalations committed (among `pokes`), held ones included.
    pub escalations: usize,
    /// Due agents left for later: all command slots were busy, or the batch was full.
    pub deferred: bool,
    /// Outcomes still waiting to be written (the database refused them so far).
    pub unrecorded: usize,
}

impl PassReport {
    /// Adds the counts of `other`.
    pub fn add(&mut self, other: &PassReport) {
        self.pokes += other.pokes;
        self.misses += other.misses;
        self.heartbeats += other.heartbeats;
        self.skips += other.skips;
        self.escalations += other.escalations;
    }

    fn started(&mut self, started: &Started) {
        self.pokes += 1;
        self.misses += usize::from(started.missed);
        self.escalations += usize::from(started.kind == Kind::Escalation);
    }
}

/// Work for a worker.
pub(super) enum Job {
    /// Run a committed poke's or escalation's command.
    Run(Started),
    /// Probe, gate and poke an agent (see [`prepare`]).
    Prepare { agent: Agent, allow_miss: bool },
}

/// What a worker reports when its job is done.
pub(super) struct Done {
    pub agent: AgentId,
    /// The outcome to record, when a command ran.
    pub finished: Option<Finished>,
    /// What the job committed itself (a prepared agent's transitions).
    pub report: PassReport,
}

/// Runs passes and owns the worker threads that carry out the commands.
pub struct Scheduler<'a> {
    store: &'a Store,
    draw: &'a dyn Draw,
    options: &'a PassOptions,
    stop: &'a AtomicBool,
    heartbeats: &'a Heartbeats,
    /// Where jobs go to the workers; `None` once closed.
    jobs: Option<Jobs<'a, Job>>,
    done: mpsc::Receiver<Done>,
    /// Agents with a job or an unrecorded outcome: never given a second one.
    in_flight: HashSet<AgentId>,
    /// Outcomes not yet written.
    unrecorded: Vec<(AgentId, Finished)>,
    /// Whether writing outcomes is failing (logged when it starts and when it ends).
    recording_failed: bool,
    /// What the workers committed.
    workers: PassReport,
    /// Agent rows that could not be read, already logged.
    unreadable: HashSet<String>,
    /// Whether passes record their time in the `daemon` row (the daemon's passes do).
    record_passes: bool,
    /// When a pass last recorded its time (committed).
    pass_recorded: Option<Instant>,
}

/// Starts `options.concurrency` workers, runs `f` with the scheduler, then waits for every
/// command in flight and records its outcome before returning. `stop` makes passes commit and
/// start nothing; `cancel` stops running commands (recorded `interrupted`).
#[allow(clippy::too_many_arguments)]
pub fn with_scheduler<T>(
    store: &Store,
    clock: &dyn Clock,
    draw: &dyn Draw,
    options: &PassOptions,
    stop: &AtomicBool,
    cancel: &AtomicBool,
    f: impl FnOnce(&mut Scheduler<'_>) -> T,
) -> T {
    let queue = JobQueue::new();
    let (done_tx, done) = mpsc::channel::<Done>();
    let heartbeats = Heartbeats::default();
    let probes = ProbeHealth::default();
    let shared = Shared {
        store,
        clock,
        draw,
        options,
        stop,
        cancel,
        heartbeats: &heartbeats,
        probes: &probes,
    };
    std::thread::scope(|scope| {
        for _ in 0..options.concurrency.max(1) {
            let done_tx = done_tx.clone();
            let (queue, shared) = (&queue, &shared);
            scope.spawn(move || {
                while let Some(job) = queue.next() {
                    let done = match job {
                        Job::Run(started) => Done {
                            agent: started.agent.id.clone(),
                            finished: Some(carry_out(shared, &started)),
                            report: PassReport::default(),
                        },
                        Job::Prepare { agent, allow_miss } => prepare(shared, agent, allow_miss),
                    };
                    let _ = done_tx.send(done);
                }
            });
        }
        drop(done_tx);
        let mut scheduler = Scheduler {
            store,
            draw,
            options,
            stop,
            heartbeats: &heartbeats,
            jobs: Some(Jobs(&queue)),
            done,
            in_flight: HashSet::new(),
            unrecorded: Vec::new(),
            recording_failed: false,
            workers: PassReport::default(),
            unreadable: HashSet::new(),
            record_passes: false,
            pass_recorded: None,
        };
        let value = f(&mut scheduler);
        scheduler.finish(cancel);
        // Closing the queue ends the workers; the scope joins them.
        scheduler.jobs = None;
        value
    })
}

impl Scheduler<'_> {
    /// Does everything due at `now` and waits for the outcomes (`poked run --once`). A stop
    /// (SIGTERM or SIGINT) ends it early: nothing more is committed or started, and what runs
    /// is recorded.
    pub fn run_once(&mut self, now: Millis) -> Result<PassReport> {
        let mut total = PassReport::default();
        loop {
            let report = self.pass(now, true)?;
            total.add(&report);
            if self.stop.load(Ordering::SeqCst) || !report.deferred {
                break;
            }
            if report.pokes == 0 && !self.wait_for_done(Instant::now() + Duration::from_secs(3600)) {
                break;
            }
        }
        // The prepared agents' transitions are committed by the workers: wait for them.
        while self.running() > 0 {
            self.wait_for_done(Instant::now() + Duration::from_secs(3600));
        }
        total.add(self.worker_report());
        Ok(total)
    }

    /// One pass at `now` (see the module docs), without waiting for commands. With
    /// `allow_misses` false (the first pass after a wall-clock jump) no miss is recorded.
    pub fn pass(&mut self, now: Millis, allow_misses: bool) -> Result<PassReport> {
        self.collect_done();
        let stopping = self.stop.load(Ordering::SeqCst);
        // An outcome waiting to be recorded holds its agent but no slot: this pass records it
        // and may start the next command in the same commit.
        let free = self.options.concurrency.saturating_sub(self.running());
        let mut report = PassReport::default();
        let mut started: Vec<Started> = Vec::new();
        let mut prepared: Vec<Agent> = Vec::new();
        let mut recorded: Vec<usize> = Vec::new();
        let mut refused: Option<Error> = None;
        let mut unreadable = Vec::new();
        let mut sent: Vec<Started> = Vec::new();
        let mut interrupted = false;
        let (store, draw, stop, heartbeats) = (self.store, self.draw, self.stop, self.heartbeats);
        let (in_flight, unrecorded) = (&self.in_flight, &self.unrecorded);
        let record_pass = self.record_passes
            && self
                .pass_recorded
                .is_none_or(|at| at.elapsed() >= RECORD_PASS_EVERY);
        let mut recorded_now = false;
        let result = store.write(|tx| {
            for (i, (_, finished)) in unrecorded.iter().enumerate() {
                match tx.finish_command(finished) {
                    Ok(_) => recorded.push(i),
                    // A refused statement leaves the transaction open: the others still go in.
                    Err(e) if !tx.rolled_back() => refused = Some(e),
                    Err(e) => return Err(e),
                }
            }
            if stopping {
                return Ok(());
            }
            // Rows are decoded only for agents this pass can act on: not those in flight, and
            // no more that need a worker (a command, a probe, a gate) than there are free.
            let (mut slots, mut over) = (free, false);
            let due = tx.due(now, GROUP_COMMIT, &mut |id, needs_slot| {
                if in_flight.contains(id) {
                    return Want::Skip;
                }
                if needs_slot {
                    if slots == 0 {
                        over = true;
                        return Want::NoWorker;
                    }
                    slots -= 1;
                }
                Want::Take
            })?;
            let (pending, any_ladder) = (tx.pending_agents()?, tx.any_ladder()?);
            report.deferred = due.seen == GROUP_COMMIT || over;
            unreadable = due.unreadable;
            // The callback above already left out the agents in flight and kept no more that
            // need a worker than there are free.
            for mut agent in due.agents {
                let s = &agent.settings;
                if s.activity_cmd.is_some() || s.only_if.is_some() {
                    prepared.push(agent);
                    continue;
                }
                if let Some(path) = agent.settings.heartbeat_file.clone()
                    && let Some(mtime) = heartbeats.mtime(&agent.id, &path)
                {
                    let reading = tx.read_source(&mut agent, Source::HeartbeatFile, mtime, now, draw)?;
                    if let Reading::Activity(_) = reading {
                        report.heartbeats += 1;
                        tracing::debug!(agent = agent.id.as_str(), "activity from heartbeat file");
                    }
                    if agent.next_due_at.is_none_or(|due| due > now) {
                        continue;
                    }
                }
                if pending.contains(agent.id.as_str()) {
                    continue;
                }
                // With no ladder anywhere, the pass need not look for rungs.
                let decision = if any_ladder {
                    rules::decide(&agent, now, allow_misses, false, &mut tx.ladder(&agent))?
                } else {
                    rules::decide(&agent, now, allow_misses, false, &mut KnownLadder::default())?
                };
                // A rung runs a command even for an agent without one, which the due scan
                // kept no worker for: it takes one now, or waits for the next pass.
                if matches!(decision.action, Action::Escalate(_)) && agent.settings.command.is_none() {
                    if slots == 0 {
                        report.deferred = true;
                        continue;
                    }
                    slots -= 1;
                }
                let poke = tx.begin(&mut agent, &decision, now, draw, None)?;
                report.started(&poke);
                if poke.command.is_some() {
                    started.push(poke);
                } else {
                    sent.push(poke);
                }
            }
            if stop.load(Ordering::SeqCst) {
                // A signal arrived during the pass: none of it is committed (the outcomes are
                // recorded on their own below).
                tx.abandon();
                interrupted = true;
                return Ok(());
            }
            // Only a pass that wrote something records its time: the daemon's watcher sees
            // every commit, its own included, so a pass of nothing that committed would wake
            // the next one, and so on (an idle daemon refreshes its record itself).
            if record_pass && tx.wrote() {
                tx.record_pass(now)?;
                recorded_now = true;
            }
            Ok(())
        });
        for row in unreadable {
            if self.unreadable.insert(row.id.clone()) {
                tracing::error!(agent = row.id.as_str(), error = %row.reason, "cannot read this agent's row; it is not poked until it is fixed");
            }
        }
        result?;
        if recorded_now {
            self.pass_recorded = Some(Instant::now());
        }
        if interrupted {
            self.record_outcomes()?;
            return Ok(PassReport {
                unrecorded: self.unrecorded.len(),
                ..PassReport::default()
            });
        }
        self.recorded(&recorded, refused);
        report.unrecorded = self.unrecorded.len();
        sent.iter().for_each(log_sent);
        for poke in started {
            self.in_flight.insert(poke.agent.id.clone());
            self.send(Job::Run(poke));
        }
        for agent in prepared {
            self.in_flight.insert(agent.id.clone());
            self.send(Job::Prepare {
                agent,
                allow_miss: allow_misses,
            });
        }
        Ok(report)
    }

    /// Forgets the outcomes at `recorded` (committed), and notes whether writing them fails.
    fn recorded(&mut self, recorded: &[usize], refused: Option<Error>) {
        let mut i = 0;
        self.unrecorded.retain(|(agent, _)| {
            let keep = !recorded.contains(&i);
            if !keep {
                self.in_flight.remove(agent);
            }
            i += 1;
            keep
        });
        match refused {
            Some(e) if !self.recording_failed => {
                self.recording_failed = true;
                tracing::error!(error = %e, waiting = self.unrecorded.len(), "cannot record a command's outcome yet; retrying until it is");
            }
            None if self.recording_failed && self.unrecorded.is_empty() => {
                self.recording_failed = false;
                tracing::info!("the outcomes that could not be recorded are recorded now");
            }
            _ => {}
        }
    }

    fn send(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            jobs.push(job);
        }
    }

    /// Makes passes that write record their time in the `daemon` row, in the pass's own
    /// transaction, at most once a second.
    pub fn record_passes(&mut self) {
        self.record_passes = true;
    }

    /// How many agents have a command running or an outcome not yet recorded.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// How many jobs the workers have (commands running or about to): the slots in use.
    pub fn running(&self) -> usize {
        self.in_flight.len().saturating_sub(self.unrecorded.len())
    }

    /// What the workers committed for agents with a probe or a gate.
    pub fn worker_report(&self) -> &PassReport {
        &self.workers
    }

    /// Waits until a job finishes or `deadline` passes; returns whether one finished.
    pub fn wait_for_done(&mut self, deadline: Instant) -> bool {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(timeout) {
            Ok(done) => {
                self.handle(done);
                self.collect_done();
                true
            }
            Err(_) => false,
        }
    }

    fn collect_done(&mut self) {
        while let Ok(done) = self.done.try_recv() {
            self.handle(done);
        }
    }

    fn handle(&mut self, done: Done) {
        self.workers.add(&done.report);
        match done.finished {
            Some(finished) => self.unrecorded.push((done.agent, finished)),
            None => {
                self.in_flight.remove(&done.agent);
            }
        }
    }

    /// Writes the outcomes waiting to be recorded, in one transaction.
    fn record_outcomes(&mut self) -> Result<()> {
        if self.unrecorded.is_empty() {
            return Ok(());
        }
        let mut recorded = Vec::new();
        let mut refused = None;
        let unrecorded = &self.unrecorded;
        self.store.write(|tx| {
            for (i, (_, finished)) in unrecorded.iter().enumerate() {
                match tx.finish_command(finished) {
                    Ok(_) => recorded.push(i),
                    Err(e) if !tx.rolled_back() => refused = Some(e),
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
        self.recorded(&recorded, refused);
        Ok(())
    }

    /// Waits for every job in flight and records every outcome, retrying a refused outcome
    /// until it is recorded; after `cancel` (a second signal) a refused outcome is given up
    /// after a few more tries (it stays `pending`, and the next daemon records it
    /// `interrupted`). With nothing in flight it returns at once, so a caller may wait here
    /// before [`with_scheduler`] does (the daemon does, to count what the workers committed).
    pub(super) fn finish(&mut self, cancel: &AtomicBool) {
        let mut delay = Duration::from_millis(100);
        let mut tries_after_cancel = 0;
        loop {
            self.collect_done();
            match self.record_outcomes() {
                Ok(()) if self.unrecorded.is_empty() => delay = Duration::from_millis(100),
                Ok(()) => {}
                Err(e) if !self.recording_failed => {
                    self.recording_failed = true;
                    tracing::error!(error = %e, "cannot record the outcomes of the commands in flight yet; retrying");
                }
                Err(_) => {}
            }
            let jobs_left = self.running() > 0;
            if !jobs_left && self.unrecorded.is_empty() {
                return;
            }
            if !jobs_left && cancel.load(Ordering::SeqCst) {
                tries_after_cancel += 1;
                if tries_after_cancel > 5 {
                    tracing::error!(
                        outcomes = self.unrecorded.len(),
                        "gave up recording outcomes after the second signal; the next daemon records them interrupted"
                    );
                    return;
                }
            }
            let wait = if self.unrecorded.is_empty() {
                Duration::from_secs(3600)
            } else {
                delay = (delay * 2).min(Duration::from_secs(5));
                delay
            };
            self.wait_for_done(Instant::now() + wait);
        }
    }
}

/// What a command runs for, which its environment says.
pub(super) enum RunsFor<'a> {
    /// A committed poke or rung: `POKED_POKE_ID` (and `POKED_RUNG`).
    Poke(&'a Started),
    /// A probe or a gate (`"probe"`, `"gate"`): `POKED_CHECK`.
    Check(&'static str),
}

/// The extra environment of an agent's commands (SPEC §6, §7.3). `POKED_DB` lets a command
/// record activity with a plain `poked activity "$POKED_AGENT"`; it is the database path as
/// given, byte for byte. `POKED_POKE_ID` or `POKED_CHECK` marks the process as one poked
/// started: a later daemon's recovery stops only processes so marked (`POKED_DB` alone marks
/// nothing, shells and agents export it for their hooks).
pub(super) fn command_env(store: &Store, agent: &Agent, runs_for: RunsFor<'_>) -> Vec<(String, OsString)> {
    let mut env = vec![
        ("POKED_AGENT".to_string(), OsString::from(agent.id.as_str())),
        (
            "POKED_MISSES".to_string(),
            agent.consecutive_misses.to_string().into(),
        ),
        (
            "POKED_INTERVAL_MS".to_string(),
            agent.current_interval_ms.to_string().into(),
        ),
        ("POKED_DB".to_string(), store.path().as_os_str().to_owned()),
    ];
    match runs_for {
        RunsFor::Poke(poke) => {
            env.push(("POKED_POKE_ID".to_string(), poke.log_id.to_string().into()));
            if let Some(rung) = poke.rung {
                env.push(("POKED_RUNG".to_string(), rung.to_string().into()));
            }
        }
        RunsFor::Check(what) => env.push(("POKED_CHECK".to_string(), what.into())),
    }
    env
}

/// Runs one of an agent's commands with the daemon's timeout, grace and cancel flag.
pub(super) fn run_with(shared: &Shared<'_>, argv: &[String], env: &[(String, OsString)]) -> CommandResult {
    run_command(
        argv,
        env,
        shared.options.command_timeout,
        shared.options.grace,
        shared.cancel,
        &mut |_| {},
    )
}

/// Runs a committed poke's or escalation's command and says how it ended.
pub(super) fn carry_out(shared: &Shared<'_>, poke: &Started) -> Finished {
    let Some(argv) = &poke.command else {
        // Pokes without a command are `sent` when committed; nothing runs.
        return finished(
            poke.log_id,
            &CommandResult {
                outcome: Outcome::Sent,
                exit_code: None,
                duration_ms: 0,
                detail: None,
                stdout: Vec::new(),
            },
        );
    };
    let env = command_env(shared.store, &poke.agent, RunsFor::Poke(poke));
    let result = run_with(shared, argv, &env);
    tracing::info!(
        agent = poke.agent.id.as_str(),
        misses = poke.agent.consecutive_misses,
        interval = %format_duration(poke.agent.current_interval_ms),
        rung = poke.rung,
        outcome = result.outcome.as_str(),
        duration_ms = result.duration_ms,
        "{}",
        poke.kind
    );
    finished(poke.log_id, &result)
}

/// The outcome of a command, for its row.
pub(super) fn finished(log_id: i64, result: &CommandResult) -> Finished {
    Finished {
        log_id,
        outcome: result.outcome,
        exit_code: result.exit_code,
        duration_ms: result.duration_ms,
        detail: result.detail.clone(),
    }
}

/// Logs a poke that had no command to run.
pub(super) fn log_sent(poke: &Started) {
    tracing::info!(
        agent = poke.agent.id.as_str(),
        misses = poke.agent.consecutive_misses,
        interval = %format_duration(poke.agent.current_interval_ms),
        outcome = "sent",
        "poke"
    );
}

/// Errors that may go away on their own: a busy lock, a full disk, a read-only file.
pub fn is_transient(e: &Error) -> bool {
    matches!(e, Error::Busy(_) | Error::DiskFull(_) | Error::ReadOnly { .. })
}
