//! The one source of randomness: the jitter draw.
//!
//! Jitter needs a uniform number in `[0, 1)` now and then, not cryptographic quality, so poked
//! takes it from the standard library's randomly keyed hasher rather than adding a crate. The
//! environment variable `POKED_DRAW` pins the draw (a number in `[0, 1)`) for tests of the
//! binary; library tests pass a [`FixedDraw`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// A source of uniform numbers in `[0, 1)`.
pub trait Draw: Send + Sync {
    /// The next number in `[0, 1)`.
    fn draw(&self) -> f64;
}

/// Random draws from the standard library's randomly keyed SipHash.
#[derive(Debug, Default)]
pub struct SystemDraw {
    counter: AtomicU64,
}

impl Draw for SystemDraw {
    fn draw(&self) -> f64 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
        // The top 53 bits give an evenly spaced f64 in [0, 1).
        (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Always the same number (tests, `POKED_DRAW`).
#[derive(Debug, Clone, Copy)]
pub struct FixedDraw(pub f64);

impl Draw for FixedDraw {
    fn draw(&self) -> f64 {
        self.0
    }
}

/// The name of the variable that pins the draw.
pub const DRAW_VAR: &str = "POKED_DRAW";

/// The draw for this process: pinned by `POKED_DRAW` when set (to something), else random.
pub fn from_env() -> Result<Box<dyn Draw>> {
    match std::env::var_os(DRAW_VAR).filter(|v| !v.is_empty()) {
        None => Ok(Box::new(SystemDraw::default())),
        Some(raw) => match raw.to_str().and_then(|text| text.trim().parse::<f64>().ok()) {
            Some(x) if (0.0..1.0).contains(&x) => Ok(Box::new(FixedDraw(x))),
            _ => Err(Error::invalid(
                DRAW_VAR,
                raw.to_string_lossy(),
                "must be a number in [0, 1)",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_draws_are_in_range_and_vary() {
        let draw = SystemDraw::default();
        let xs: Vec<f64> = (0..1000).map(|_| draw.draw()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean} is not near 0.5");
        assert!(xs.windows(2).any(|w| w[0] != w[1]));
    }
}
