//! The one place poked reads the time.
//!
//! Instants are UTC wall-clock Unix milliseconds ([`Millis`]). Every command and the daemon get
//! "now" from a [`Clock`]: the [`SystemClock`] in production, a [`FixedClock`] in tests and when
//! the environment variable `POKED_NOW` (RFC 3339) is set, which fixes "now" for a whole run so
//! tests and what-if replays are exact. `clippy.toml` bans every other read of the wall clock.
//! Waiting (how long to sleep) uses the monotonic clock in the daemon, never this one.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::error::{Error, Result};
use crate::units;

/// Unix time in milliseconds, UTC.
pub type Millis = i64;

/// A source of wall-clock time.
pub trait Clock: Send + Sync {
    /// The current time in Unix milliseconds.
    fn now(&self) -> Millis;

    /// Whether this clock follows the passage of real time. Only then does the daemon correct
    /// stored instants it finds in the future (the clock was set back); under a fixed clock
    /// (`POKED_NOW`, a what-if) nothing stored is ever rewritten.
    fn is_real(&self) -> bool {
        true
    }
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        // The one allowed read of the system time; everything else goes through `Clock`.
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now();
        match now.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            // A clock before 1970 is treated as the epoch rather than a panic.
            Err(_) => 0,
        }
    }
}

/// A clock that stands still until told to move (tests, `POKED_NOW`).
#[derive(Debug)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    /// A clock fixed at `at`.
    pub fn new(at: Millis) -> FixedClock {
        FixedClock(AtomicI64::new(at))
    }

    /// Moves the clock by `ms` (negative moves it back).
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: Millis) {
        self.0.store(at, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }

    fn is_real(&self) -> bool {
        false
    }
}

/// The name of the variable that fixes "now".
pub const NOW_VAR: &str = "POKED_NOW";

/// The clock for this process: fixed at `POKED_NOW` when it is set, else the system clock. Set
/// to nothing (`POKED_NOW= poked …`) it is unset, as `POKED_DB` and `POKED_SYNCHRONOUS` are.
pub fn from_env() -> Result<Arc<dyn Clock>> {
    match std::env::var_os(NOW_VAR).filter(|v| !v.is_empty()) {
        None => Ok(Arc::new(SystemClock)),
        Some(raw) => {
            let text = raw
                .into_string()
                .map_err(|v| Error::invalid(NOW_VAR, v.to_string_lossy(), "must be UTF-8"))?;
            let at = units::parse_rfc3339(&text).map_err(|rule| Error::invalid(NOW_VAR, &text, rule))?;
            Ok(Arc::new(FixedClock::new(at)))
        }
    }
}
