//! `poked run`: the long-running scheduler.
//!
//! # Life
//!
//! The daemon takes the database file's lock ([`super::lock`]), recovers the pokes a dead daemon
//! left `pending` ([`super::recover`]), moves stored instants that lie in the future back to now
//! (each correction a logged transition, and never under a fixed clock), records itself in the
//! `daemon` row, and then loops: one pass ([`Scheduler::pass`]) for everything due, then sleep
//! until the earliest `next_due_at`, or a minute at most: an idle daemon still refreshes its
//! `last_pass_at`, so `poked status` and an alert on a stale last pass can tell it lives. With
//! `--metrics-listen` the address is bound right after the lock, before anything is recovered
//! or poked, and [`super::endpoint`] serves it from a thread of its own. Under systemd
//! ([`DaemonOptions::notify`]) it says `READY=1` once it has recorded itself, keeps a one-line
//! `STATUS=` current, pings the watchdog from the loop, and says `STOPPING=1` on the way out
//! ([`super::notify`]). When [`Shutdown::stop`] is called (by SIGTERM or SIGINT,
//! when the embedder opts into [`Shutdown::on_signals`]), it commits no further poke and starts
//! no further command, even in the middle of a pass, waits for the commands in flight (each
//! bounded by `--command-timeout`), records them, checkpoints the WAL and returns; a second stop
//! also stops the commands in flight (recorded `interrupted`).
//!
//! # Time
//!
//! Persisted times are wall-clock ([`Clock`]); waiting uses the monotonic clock. While asleep the
//! daemon checks `PRAGMA data_version` on a connection of its own every 200 ms, a lookup of a
//! few microseconds, so a new agent, an activity from another process or a hand edit in `sqlite3`
//! wakes it within a second without any signal; nothing is polled beyond that and no pass runs
//! unless something is due or changed, or a minute went by. With a watchdog, the sleep also
//! ends in time for each ping, which the loop sends itself. A wall clock that moves much further than the monotonic
//! clock (suspend and resume, an NTP step) is logged once and the pass right after it records no
//! misses, so a laptop lid does not turn into a miss for every agent. A wall clock set back is
//! handled by moving future instants back to now.
//!
//! # Errors
//!
//! A busy, full or read-only database is logged once and retried with a growing delay (up to ten
//! seconds) while the daemon keeps running; any other database error ends the daemon with a
//! non-zero exit so its supervisor restarts it on a fresh connection. A transition is never
//! assumed to have happened: each one is a transaction that either committed or did not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::notify::{Notifier, NotifyOptions};
use super::pass::{PassOptions, PassReport, Scheduler, is_transient, with_scheduler};
use super::{endpoint, lock, recover};
use crate::agent::StateCounts;
use crate::clock::{Clock, Millis};
use crate::error::{Error, Result};
use crate::random::Draw;
use crate::store::{Store, Watcher};
use crate::units::{format_duration, format_time};

/// How often a sleeping daemon looks for changes and signals.
const POLL: Duration = Duration::from_millis(200);
/// A difference between wall and monotonic time larger than this is a clock jump.
const JUMP: i64 = 30_000;
/// How far ahead of the daemon's `now` a stored instant may lie before it counts as written
/// by a clock that was later set back. The correction reads `now` before it waits for the
/// write lock, so a transition another process commits meanwhile carries a slightly later
/// time; it is the truth, not a clock error, and must not be rewritten (the reliability suite's
/// kill loop caught activity times moved back a few milliseconds, out of step with their log
/// rows). It also delays every agent by as much after the clock is set back, so it is kept
/// small: 250 ms is still far longer than any poked write holds the lock.
const FUTURE_SLACK: i64 = 250;
/// How often an idle daemon refreshes its `last_pass_at` and checkpoints the WAL: the longest
/// sleep, even when nothing is due.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// The systemd status line is worked out at most this often (it reads every agent).
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How often `--retain` prunes the log.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Log rows deleted per transaction by `--retain`.
const PRUNE_BATCH: usize = 1000;
/// The longest delay between retries of a failing database.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// How `poked run` runs.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Commands: concurrency, timeout, grace.
    pub pass: PassOptions,
    /// Prune log rows older than this many milliseconds, about hourly.
    pub retain_ms: Option<i64>,
    /// Do everything due now, wait for the outcomes, and return.
    pub once: bool,
    /// Where to send systemd notifications, and the watchdog (default: none). Not with `once`.
    pub notify: NotifyOptions,
    /// Serve `/metrics` at this address ([`super::endpoint`]). It is bound before anything is
    /// recovered or poked, so an address in use ends [`serve`] at once with
    /// [`Error::Listen`]; the endpoint reads on a connection of its own. Not with `once`.
    pub metrics_listen: Option<SocketAddr>,
}

/// How a running daemon is asked to stop. The first [`Shutdown::stop`] ends it after the
/// commands in flight; a second one also stops those commands.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    stop: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
}

impl Shutdown {
    /// A shutdown not yet asked for.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks the daemon to stop; asked again, to stop its commands in flight too.
    pub fn stop(&self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            self.cancel.store(true, Ordering::SeqCst);
        }
    }

    /// Whether a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Lets SIGINT and SIGTERM call [`Shutdown::stop`] for as long as the guard lives (the
    /// handler thread only sets flags; the loop finishes what it started).
    pub fn on_signals(&self) -> Result<SignalGuard> {
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(|source| Error::Io {
            path: "signal handlers".into(),
            source,
        })?;
        let handle = signals.handle();
        let shutdown = self.clone();
        let thread = std::thread::spawn(move || {
            for signal in signals.forever() {
                if shutdown.is_stopping() {
                    tracing::warn!(signal, "second signal: stopping the commands in flight");
                } else {
                    tracing::info!(signal, "stopping: no new pokes; waiting for those in flight");
                }
                shutdown.stop();
            }
        });
        Ok(SignalGuard {
            handle,
            thread: Some(thread),
        })
    }
}

/// Signal handling installed by [`Shutdown::on_signals`]; dropping it uninstalls it.
pub struct SignalGuard {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs the daemon (or one pass with `options.once`) until `shutdown` asks it to stop.
///
/// ```no_run
/// use poked::clock::SystemClock;
/// use poked::daemon::{DaemonOptions, Shutdown, serve};
/// use poked::random::SystemDraw;
/// use poked::store::{OpenOptions, Store};
///
/// let store = Store::open("poked.db".as_ref(), OpenOptions { create: true, connections: 8, ..OpenOptions::default() })?;
/// let shutdown = Shutdown::new();
/// let _signals = shutdown.on_signals()?; // opt in: SIGINT/SIGTERM stop it
/// serve(&store, &SystemClock, &SystemDraw::default(), &DaemonOptions::default(), &shutdown)?;
/// # Ok::<(), poked::Error>(())
/// ```
pub fn serve(
    store: &Store,
    clock: &dyn Clock,
    draw: &dyn Draw,
    options: &DaemonOptions,
    shutdown: &Shutdown,
) -> Result<PassReport> {
    let _lock = lock::acquire(store.path())?;
    let listener = match options.metrics_listen {
        Some(address) if !options.once => Some(endpoint::bind(address)?),
        _ => None,
    };
    let recovered = recover::recover(store, options.pass.grace)?;
    if recovered > 0 {
        tracing::warn!(
            pokes = recovered,
            "recovered pokes left pending by a stopped daemon"
        );
    }
    correct_future(store, clock, clock.now())?;
    let (stop, cancel) = (&*shutdown.stop, &*shutdown.cancel);
    if options.once {
        let now = clock.now();
        return with_scheduler(store, clock, draw, &options.pass, stop, cancel, |s| {
            s.run_once(now)
        });
    }
    store.daemon_started(std::process::id(), env!("CARGO_PKG_VERSION"), clock.now())?;
    tracing::info!(db = %store.path().display(), pid = std::process::id(), "poked daemon started");
    let watcher = store.watcher()?;
    let mut notifier = Notifier::new(&options.notify);
    let endpoint_stop = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        if let Some(listener) = listener {
            let endpoint_stop = &endpoint_stop;
            scope.spawn(move || endpoint::serve(listener, store, clock, endpoint_stop));
        }
        notifier.ready();
        let result = with_scheduler(store, clock, draw, &options.pass, stop, cancel, |scheduler| {
            let mut daemon = Daemon {
                store,
                clock,
                options,
                watcher: &watcher,
                stop,
                notifier: &mut notifier,
                total: PassReport::default(),
                wall: clock.now(),
                mono: Instant::now(),
                last_record: None,
                last_prune: None,
                failing: None,
                wal_looked: None,
                unreported_pass: None,
                status_at: None,
                status_gap: STATUS_EVERY,
            };
            scheduler.record_passes();
            let result = daemon.run(scheduler);
            let in_flight = scheduler.in_flight();
            if result.is_ok() && in_flight > 0 {
                tracing::info!(commands = in_flight, "waiting for the commands in flight");
            }
            daemon.notifier.stopping(&match &result {
                Ok(()) if in_flight > 0 => format!("stopping: waiting for {in_flight} commands in flight"),
                Ok(()) => "stopping".to_string(),
                Err(e) => format!("stopping on an error: {e}"),
            });
            // Waited for here rather than after this closure, so that the transitions the
            // workers committed (agents with a probe or a gate) are in the total.
            scheduler.finish(cancel);
            result.map(|()| {
                let mut total = daemon.total;
                total.add(scheduler.worker_report());
                total
            })
        });
        endpoint_stop.store(true, Ordering::SeqCst);
        result
    });
    if let Err(e) = store.checkpoint(true) {
        tracing::warn!(error = %e, "could not checkpoint the WAL on the way out");
    }
    if let Err(e) = store.daemon_stopped(clock.now()) {
        tracing::warn!(error = %e, "could not record the daemon's stop");
    }
    match &result {
        Ok(total) => tracing::info!(pokes = total.pokes, misses = total.misses, "poked daemon stopped"),
        Err(e) => tracing::error!(error = %e, "poked daemon stopped on an error"),
    }
    result
}

/// Moves stored instants that lie in the future back to now, each a logged transition, and
/// only on a clock that follows real time (a what-if never changes real data).
fn correct_future(store: &Store, clock: &dyn Clock, now: Millis) -> Result<()> {
    if !clock.is_real() {
        return Ok(());
    }
    for c in store.correct_future(now, FUTURE_SLACK)? {
        tracing::warn!(
            agent = c.agent_id.as_str(),
            detail = c.detail.as_str(),
            "times in the future (was the clock set back?) were moved to now"
        );
    }
    Ok(())
}

/// The loop's state.
struct Daemon<'a> {
    store: &'a Store,
    clock: &'a dyn Clock,
    options: &'a DaemonOptions,
    watcher: &'a Watcher,
    stop: &'a AtomicBool,
    notifier: &'a mut Notifier,
    total: PassReport,
    /// Wall and monotonic time at the previous pass, to notice clock jumps.
    wall: Millis,
    mono: Instant,
    last_record: Option<Instant>,
    last_prune: Option<Instant>,
    /// While the database is failing: the current retry delay.
    failing: Option<Duration>,
    /// When the size of the `-wal` was last looked at.
    wal_looked: Option<Instant>,
    /// The time of the latest pass not yet in the systemd status line.
    unreported_pass: Option<Millis>,
    /// When the status line was last worked out.
    status_at: Option<Instant>,
    /// The least time between two status lines.
    status_gap: Duration,
}

impl Daemon<'_> {
    fn run(&mut self, scheduler: &mut Scheduler<'_>) -> Result<()> {
        while !self.stop.load(Ordering::SeqCst) {
            self.notifier.keep_alive();
            let report = match self.step(scheduler) {
                Ok(report) => report,
                Err(e) if is_transient(&e) => {
                    let delay = self
                        .failing
                        .map_or(Duration::from_secs(1), |d| (d * 2).min(MAX_RETRY));
                    if self.failing.is_none() {
                        tracing::error!(error = %e, "the database is unavailable; retrying until it recovers");
                    } else {
                        tracing::debug!(retry_in = ?delay, "the database is still unavailable");
                    }
                    self.failing = Some(delay);
                    self.sleep(scheduler, Instant::now() + delay, None)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if self.failing.take().is_some() {
                tracing::info!("the database is available again");
            }
            // Commits from now on wake the sleep below. Read after the pass, because the
            // watcher cannot tell the pass's own commit from another process's: read before
            // it, every pass that wrote woke us to one more with nothing to do (a third of the
            // passes of a busy daemon). Another process cannot commit during the pass, which
            // holds the write lock throughout; what it commits after the pass and before this
            // read is in what the due time below is read from, or waits for the next look
            // (at most `POLL`) when something is due already.
            let seen = self.watcher.data_version()?;
            if report.unrecorded > 0 {
                // Outcomes the database refused: try again soon, whatever is due.
                self.sleep(scheduler, Instant::now() + Duration::from_secs(1), Some(seen))?;
                continue;
            }
            if report.deferred {
                if scheduler.running() >= self.options.pass.concurrency {
                    self.sleep(scheduler, Instant::now() + POLL, Some(seen))?;
                }
                continue;
            }
            let deadline = match self.store.earliest_due()? {
                // Due already yet not poked by this pass: its poke is still in flight (a command
                // slower than the agent's wait). Its end wakes us; meanwhile, no spinning.
                Some(at) if at <= self.clock.now() => Instant::now() + POLL,
                Some(at) => {
                    let ms = u64::try_from(at.saturating_sub(self.clock.now())).unwrap_or(0);
                    Instant::now() + Duration::from_millis(ms).min(HOUSEKEEPING)
                }
                None => Instant::now() + HOUSEKEEPING,
            };
            self.sleep(scheduler, deadline, Some(seen))?;
        }
        Ok(())
    }

    /// One pass plus the housekeeping due with it.
    fn step(&mut self, scheduler: &mut Scheduler<'_>) -> Result<PassReport> {
        let now = self.clock.now();
        let allow_misses = self.check_clock(now)?;
        let report = scheduler.pass(now, allow_misses)?;
        self.total.add(&report);
        self.unreported_pass = Some(now);
        // A pass that wrote something recorded its time in its own transaction, at most once a
        // second; an idle daemon refreshes it (and checkpoints the WAL) about once a minute.
        let idle_long = self.last_record.is_none_or(|at| at.elapsed() >= HOUSEKEEPING);
        if idle_long {
            self.store.daemon_pass(now)?;
            self.store.checkpoint(false)?;
            self.last_record = Some(Instant::now());
        }
        if let Some(retain) = self.options.retain_ms
            && self.last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
        {
            let pruned = self.store.prune(now.saturating_sub(retain), PRUNE_BATCH, false)?;
            if pruned > 0 {
                tracing::info!(rows = pruned, older_than = %format_duration(retain), "pruned the log");
            }
            self.last_prune = Some(Instant::now());
        }
        Ok(report)
    }

    /// Compares how far the wall clock and the monotonic clock moved since the last pass.
    /// Returns whether this pass may record misses.
    fn check_clock(&mut self, now: Millis) -> Result<bool> {
        let mono_now = Instant::now();
        let mono_ms = i64::try_from(mono_now.duration_since(self.mono).as_millis()).unwrap_or(i64::MAX);
        let wall_ms = now.saturating_sub(self.wall);
        self.wall = now;
        self.mono = mono_now;
        if wall_ms.saturating_sub(mono_ms) > JUMP {
            tracing::warn!(
                jump = %format_duration(wall_ms - mono_ms),
                "the wall clock jumped forward (suspend or clock step): this pass records no misses"
            );
            return Ok(false);
        }
        if mono_ms.saturating_sub(wall_ms) > JUMP {
            tracing::warn!("the wall clock was set back");
            correct_future(self.store, self.clock, now)?;
        }
        Ok(true)
    }

    /// Sleeps until `deadline`, a stop signal, a command finishing (its outcome is to be
    /// recorded), or (with `seen`) a change to the database.
    fn sleep(&mut self, scheduler: &mut Scheduler<'_>, deadline: Instant, seen: Option<i64>) -> Result<()> {
        while !self.stop.load(Ordering::SeqCst) {
            self.notifier.keep_alive();
            self.report_status();
            if let Some(seen) = seen
                && self.watcher.data_version()? != seen
            {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Awake again in time for the next watchdog ping, if there is one.
            let wake = (now + POLL).min(deadline);
            let wake = self.notifier.next_ping().map_or(wake, |ping| wake.min(ping));
            if scheduler.wait_for_done(wake) {
                break;
            }
            self.keep_wal_bounded();
            if self.clock_jumped() {
                break;
            }
        }
        Ok(())
    }

    /// Sends systemd a new status line (agents due, backing off, held and paused; the last pass)
    /// when a pass ran since the last one, at most every [`STATUS_EVERY`] (less often when
    /// reading the agents takes long); the notifier sends it only if it changed.
    fn report_status(&mut self) {
        let Some(pass_at) = self.unreported_pass else {
            return;
        };
        if !self.notifier.is_enabled() || self.status_at.is_some_and(|at| at.elapsed() < self.status_gap) {
            return;
        }
        let reading = Instant::now();
        let agents = match self.store.agents() {
            Ok(agents) => agents,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the agents for the status line");
                return;
            }
        };
        let c = StateCounts::of(&agents, self.clock.now());
        let line = format!(
            "{} agent{}: {} due, {} backing off, {} held, {} paused; last pass {}",
            c.total,
            if c.total == 1 { "" } else { "s" },
            c.due,
            c.backing_off,
            c.held,
            c.paused,
            // To the second: a line that changes at every pass would say nothing new.
            format_time(pass_at - pass_at.rem_euclid(1000)),
        );
        self.notifier.status(&line);
        self.unreported_pass = None;
        // Reading every agent is the loop's time: on a large fleet, look less often, so the
        // line never takes more than a twentieth of it.
        self.status_gap = STATUS_EVERY.max(reading.elapsed() * 20);
        self.status_at = Some(Instant::now());
    }

    /// Whether the wall clock moved more than [`JUMP`] away from the monotonic clock since the
    /// last pass. The sleep then ends at once so [`Daemon::check_clock`] deals with the jump:
    /// waiting for the next due time instead kept agents waiting after the clock was set back
    /// (the future instants are moved to now only at that pass, and each agent then waits a
    /// whole interval more): the reliability suite saw 6.5 s for a 3 s max interval.
    fn clock_jumped(&self) -> bool {
        let mono_ms = i64::try_from(self.mono.elapsed().as_millis()).unwrap_or(i64::MAX);
        let wall_ms = self.clock.now().saturating_sub(self.wall);
        wall_ms.saturating_sub(mono_ms).saturating_abs() > JUMP
    }

    /// At most once a second, a look at the size of the `-wal` (one `stat`); when it is past
    /// `journal_size_limit`, a checkpoint that truncates it, if no reader is in the way.
    ///
    /// SQLite trims the `-wal` only when a writer restarts it after a complete checkpoint, so
    /// after a long reader (a `sqlite3` shell left in a transaction) let it grow, a quiet
    /// database kept it that large until the next writes, up to two minutes on an idle daemon
    /// (the reliability suite watched 32 MiB stay for 10 s and more). Never fatal: a failure
    /// is tried again a second later.
    fn keep_wal_bounded(&mut self) {
        if self
            .wal_looked
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.wal_looked = Some(Instant::now());
        if !self.store.wal_over_limit() {
            return;
        }
        let size = self.store.wal_size();
        match self.store.shrink_wal() {
            Ok(true) => tracing::info!(
                wal_mib = size >> 20,
                "the -wal had grown past its limit behind a long reader: checkpointed and truncated"
            ),
            Ok(false) => tracing::debug!(
                wal_mib = size >> 20,
                "the -wal is past its limit; a reader is in the way"
            ),
            Err(e) => tracing::debug!(error = %e, "could not checkpoint the -wal"),
        }
    }
}
