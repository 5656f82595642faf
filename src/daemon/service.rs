//! `poked run`: the long-running scheduler.
//!
//! # Life
//!
//! The daemon takes the database's lock ([`super::lock`]), recovers the pokes a dead daemon
//! left `pending` ([`super::recover`]), moves stored instants that lie in the future back to now,
//! records itself in the `daemon` row, and then loops: one pass ([`Scheduler::pass`]) for
//! everything due, then sleep until the earliest `next_due_at`. On SIGTERM or SIGINT it starts
//! no new poke, waits for the commands in flight (each bounded by `--command-timeout`), records
//! them, checkpoints the WAL and exits 0; a second signal stops the commands in flight (recorded
//! `interrupted`) and exits promptly.
//!
//! # Time
//!
//! Persisted times are wall-clock ([`Clock`]); waiting uses the monotonic clock. While asleep the
//! daemon checks `PRAGMA data_version` on a connection of its own every 200 ms, a lookup of a
//! few microseconds, so a new agent, an activity from another process or a hand edit in `sqlite3`
//! wakes it within a second without any signal; nothing is polled beyond that and no pass runs
//! unless something is due or changed. A wall clock that moves much further than the monotonic
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::pass::{PassOptions, PassReport, Scheduler, is_transient, run_pass, with_scheduler};
use super::{lock, recover};
use crate::clock::{Clock, Millis};
use crate::error::{Error, Result};
use crate::random::Draw;
use crate::store::{Store, Watcher};
use crate::units::format_duration;

/// How often a sleeping daemon looks for changes and signals.
const POLL: Duration = Duration::from_millis(200);
/// The longest single sleep when nothing is due at all.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// A difference between wall and monotonic time larger than this is a clock jump.
const JUMP: i64 = 30_000;
/// How far ahead of the daemon's `now` a stored instant may lie before it counts as written
/// by a clock that was later set back. The clamp reads `now` before it waits for the write
/// lock, so a transition another process commits meanwhile carries a slightly later time; it
/// is the truth, not a clock error, and must not be rewritten (the reliability suite's kill
/// loop caught activity times moved back a few milliseconds, out of step with their log rows).
/// It also delays every agent by as much after the clock is set back, so it is kept small:
/// 250 ms is still far longer than any poked write holds the lock.
const FUTURE_SLACK: i64 = 250;
/// How often an idle daemon refreshes its `last_pass_at` and checkpoints the WAL.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
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
}

/// Runs the daemon (or one pass with `once`) until SIGINT or SIGTERM asks it to stop.
pub fn serve(
    store: &Store,
    clock: &dyn Clock,
    draw: &dyn Draw,
    options: &DaemonOptions,
) -> Result<PassReport> {
    serve_until(store, clock, draw, options, Arc::new(AtomicBool::new(false)))
}

/// Like [`serve`], and it also stops when `stop` is set (the demo stops its daemon this way).
pub fn serve_until(
    store: &Store,
    clock: &dyn Clock,
    draw: &dyn Draw,
    options: &DaemonOptions,
    stop: Arc<AtomicBool>,
) -> Result<PassReport> {
    let _lock = lock::acquire(store.path())?;
    let signals = SignalFlags::install(stop)?;
    let recovered = recover::recover(store, options.pass.grace)?;
    if recovered > 0 {
        tracing::warn!(
            pokes = recovered,
            "recovered pokes left pending by a stopped daemon"
        );
    }
    let clamped = store.clamp_future(clock.now().saturating_add(FUTURE_SLACK))?;
    if clamped > 0 {
        tracing::warn!(
            agents = clamped,
            "times in the future (was the clock set back?) were moved to now"
        );
    }
    if options.once {
        return run_pass(store, clock, draw, &options.pass, &signals.cancel);
    }
    store.daemon_started(std::process::id(), env!("CARGO_PKG_VERSION"), clock.now())?;
    tracing::info!(db = %store.path().display(), pid = std::process::id(), "poked daemon started");
    let watcher = store.watcher()?;
    let result = with_scheduler(store, clock, draw, &options.pass, &signals.cancel, |scheduler| {
        let mut daemon = Daemon {
            store,
            clock,
            options,
            watcher: &watcher,
            stop: &signals.stop,
            total: PassReport::default(),
            wall: clock.now(),
            mono: Instant::now(),
            last_record: None,
            last_prune: None,
            failing: None,
            wal_looked: None,
        };
        let result = daemon.run(scheduler);
        if result.is_ok() && scheduler.in_flight() > 0 {
            tracing::info!(
                commands = scheduler.in_flight(),
                "waiting for the commands in flight"
            );
        }
        result.map(|()| daemon.total)
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

/// SIGINT/SIGTERM set `stop`; a second one also sets `cancel`. The handler thread only sets
/// flags; the loop finishes what it started.
struct SignalFlags {
    stop: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SignalFlags {
    fn install(stop: Arc<AtomicBool>) -> Result<SignalFlags> {
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(|source| Error::Io {
            path: "signal handlers".into(),
            source,
        })?;
        let cancel = Arc::new(AtomicBool::new(false));
        let handle = signals.handle();
        let (stop_flag, cancel_flag) = (Arc::clone(&stop), Arc::clone(&cancel));
        let thread = std::thread::spawn(move || {
            for signal in signals.forever() {
                if stop_flag.swap(true, Ordering::SeqCst) {
                    tracing::warn!(signal, "second signal: stopping the commands in flight");
                    cancel_flag.store(true, Ordering::SeqCst);
                } else {
                    tracing::info!(signal, "stopping: no new pokes; waiting for those in flight");
                }
            }
        });
        Ok(SignalFlags {
            stop,
            cancel,
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for SignalFlags {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The loop's state.
struct Daemon<'a> {
    store: &'a Store,
    clock: &'a dyn Clock,
    options: &'a DaemonOptions,
    watcher: &'a Watcher,
    stop: &'a AtomicBool,
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
}

impl Daemon<'_> {
    fn run(&mut self, scheduler: &mut Scheduler<'_>) -> Result<()> {
        while !self.stop.load(Ordering::SeqCst) {
            let version = self.watcher.data_version()?;
            let report = match self.step(scheduler) {
                Ok(report) => report,
                Err(e) if is_transient(&e) => {
                    let delay = self
                        .failing
                        .map_or(Duration::from_secs(1), |d| (d * 2).min(MAX_RETRY));
                    if self.failing.is_none() {
                        tracing::error!(error = %e, "the database is unavailable; retrying until it recovers");
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
            // Our own commits must not wake us: only changes made after this pass count.
            let seen = if report.pokes > 0 || report.heartbeats > 0 {
                self.watcher.data_version()?
            } else {
                version
            };
            if report.deferred {
                if scheduler.in_flight() >= self.options.pass.concurrency {
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
                    Instant::now() + Duration::from_millis(ms).min(MAX_SLEEP)
                }
                None => Instant::now() + MAX_SLEEP,
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
        self.total.pokes += report.pokes;
        self.total.misses += report.misses;
        let idle_long = self.last_record.is_none_or(|at| at.elapsed() >= HOUSEKEEPING);
        if report.pokes > 0 || idle_long {
            self.store.daemon_pass(now)?;
            if idle_long {
                self.store.checkpoint(false)?;
            }
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
            let clamped = self.store.clamp_future(now.saturating_add(FUTURE_SLACK))?;
            if clamped > 0 {
                tracing::warn!(
                    agents = clamped,
                    "the wall clock was set back: times in the future were moved to now"
                );
            }
        }
        Ok(true)
    }

    /// Sleeps until `deadline`, a stop signal, or (with `seen`) a change to the database.
    fn sleep(&mut self, scheduler: &mut Scheduler<'_>, deadline: Instant, seen: Option<i64>) -> Result<()> {
        while !self.stop.load(Ordering::SeqCst) {
            if let Some(seen) = seen
                && self.watcher.data_version()? != seen
            {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            scheduler.wait_for_done((now + POLL).min(deadline));
            self.keep_wal_bounded();
            if self.clock_jumped() {
                break;
            }
        }
        Ok(())
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
