//! Waiting for the database to change, for `history --follow`, `next --wait` and `top`.
//!
//! A [`Watcher`] connection's `PRAGMA data_version` changes whenever anyone commits, so a wait
//! checks it every [`POLL_INTERVAL`] and only then reads rows. Neither the check nor the sleep
//! holds a read transaction: a reader left open between polls would pin the WAL and keep it
//! from being checkpointed. It lives here with the rest of poked's waiting (STYLE: nothing
//! sleeps outside `daemon/`), though its users are read commands.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::store::{Store, Watcher};

/// How often a wait looks at `data_version`: a change is seen within this long.
pub const POLL_INTERVAL: Duration = Duration::from_millis(150);

/// Noticing commits by any process, and (optionally) SIGINT/SIGTERM.
pub struct Poll {
    watcher: Watcher,
    version: i64,
    stop: Arc<AtomicBool>,
}

impl Poll {
    /// Starts watching `store` (which needs a free connection in its pool for this). With
    /// `signals`, SIGINT and SIGTERM set [`Poll::stopped`] instead of killing the process; a
    /// second SIGINT still kills it at once, in case a write to a stuck pipe never returns.
    pub fn new(store: &Store, signals: bool) -> Result<Poll> {
        let stop = Arc::new(AtomicBool::new(false));
        if signals {
            use signal_hook::consts::{SIGINT, SIGTERM};
            let register = || -> std::io::Result<()> {
                signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&stop))?;
                signal_hook::flag::register(SIGINT, Arc::clone(&stop))?;
                signal_hook::flag::register(SIGTERM, Arc::clone(&stop))?;
                Ok(())
            };
            register().map_err(|source| Error::Io {
                path: "<signal handler>".into(),
                source,
            })?;
        }
        let watcher = store.watcher()?;
        let version = watcher.data_version()?;
        Ok(Poll {
            watcher,
            version,
            stop,
        })
    }

    /// Whether SIGINT or SIGTERM arrived.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps for `wait` (in steps of at most [`POLL_INTERVAL`]) or until the database changes
    /// or a signal arrives, whichever comes first. Returns whether the database changed since
    /// the previous call (or since [`Poll::new`]).
    pub fn wait(&mut self, wait: Duration) -> Result<bool> {
        let woke = self.wait_or(wait, |step| {
            std::thread::sleep(step);
            Ok(false)
        })?;
        Ok(woke == Woke::Changed)
    }

    /// Like [`Poll::wait`], but each step waits in `step` instead of sleeping: `step(d)` waits
    /// at most `d` for something else (a key on a terminal, for `top`) and says whether it
    /// came, which ends the wait too.
    pub fn wait_or(
        &mut self,
        wait: Duration,
        mut step: impl FnMut(Duration) -> Result<bool>,
    ) -> Result<Woke> {
        let until = Instant::now() + wait;
        loop {
            let version = self.watcher.data_version()?;
            if version != self.version {
                self.version = version;
                return Ok(Woke::Changed);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stopped() {
                return Ok(Woke::Elapsed);
            }
            if step(left.min(POLL_INTERVAL))? {
                return Ok(Woke::Ready);
            }
        }
    }
}

/// Why [`Poll::wait_or`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// Someone committed.
    Changed,
    /// What `step` waited for came.
    Ready,
    /// The wait is over, or a signal arrived ([`Poll::stopped`] tells which).
    Elapsed,
}

/// Whether the reader of stdout has gone (`poked history --follow | head -3` after `head`
/// exits). A command that waits writes nothing while nothing happens, so it would never hear
/// of a closed pipe from a failed write; `poll(2)` reports `POLLERR` on a pipe whose reading end
/// is closed (and `POLLHUP` on a hung-up terminal or socket).
pub fn stdout_closed() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid `pollfd` that lives across the call, and a zero timeout.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
