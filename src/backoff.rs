//! The backoff rules of SPEC §2 as pure functions: no clock, no randomness, no I/O.
//!
//! Intervals are whole milliseconds. A miss grows the interval by the strategy (`fixed`: not at
//! all; `geometric`: × factor, truncated toward zero as the original Go design's
//! `time.Duration(float64(d) * factor)`; `exponential`: × 2) and then caps it at max. Growth
//! saturates instead of overflowing. Jitter shortens the wait by a fraction drawn by the caller,
//! so tests can pin the draw.

use std::fmt;
use std::str::FromStr;

/// How an agent's interval grows with each miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The interval never changes.
    Fixed,
    /// The interval is multiplied by the agent's factor.
    Geometric,
    /// The interval doubles; the factor is ignored.
    Exponential,
}

impl Strategy {
    /// The name stored in `agents.strategy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Fixed => "fixed",
            Strategy::Geometric => "geometric",
            Strategy::Exponential => "exponential",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Strategy, String> {
        match s {
            "fixed" => Ok(Strategy::Fixed),
            "geometric" => Ok(Strategy::Geometric),
            "exponential" => Ok(Strategy::Exponential),
            _ => Err("must be fixed, geometric or exponential".into()),
        }
    }
}

/// The interval after one more miss, capped at `max_ms`.
pub fn after_miss(strategy: Strategy, factor: f64, interval_ms: i64, max_ms: i64) -> i64 {
    let grown = match strategy {
        Strategy::Fixed => interval_ms,
        Strategy::Exponential => interval_ms.saturating_mul(2),
        Strategy::Geometric => {
            let product = interval_ms as f64 * factor;
            // `as` truncates toward zero and saturates; a NaN product (impossible for a
            // validated factor) saturates to max rather than collapsing to zero.
            if product.is_nan() || product >= max_ms as f64 {
                max_ms
            } else {
                product as i64
            }
        }
    };
    grown.min(max_ms)
}

/// The wait before the next poke: `interval_ms` shortened by up to `jitter` of itself.
///
/// `draw` is a uniform random number in `[0, 1)`; the wait is then uniform in
/// `[interval × (1 − jitter), interval]`, never more than the interval and never below 1 ms.
pub fn wait(interval_ms: i64, jitter: f64, draw: f64) -> i64 {
    let draw = if draw.is_finite() {
        draw.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let cut = (interval_ms as f64 * jitter * draw) as i64;
    interval_ms.saturating_sub(cut).clamp(1, interval_ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn run(strategy: Strategy, factor: f64, base: i64, max: i64, misses: usize) -> Vec<i64> {
        let mut interval = base;
        let mut seen = vec![interval];
        for _ in 0..misses {
            interval = after_miss(strategy, factor, interval, max);
            seen.push(interval);
        }
        seen
    }

    #[test]
    fn geometric_follows_the_seed_timings() {
        // 5m → 7m30s → 11m15s → 16m52.5s → 25m18.75s → 30m (capped), and it stays there.
        assert_eq!(
            run(Strategy::Geometric, 1.5, 5 * MIN, 30 * MIN, 6),
            vec![
                300_000, 450_000, 675_000, 1_012_500, 1_518_750, 1_800_000, 1_800_000
            ]
        );
    }

    #[test]
    fn geometric_truncates_toward_zero() {
        // 7 × 1.5 = 10.5 → 10; 1001 × 1.1 = 1101.1 → 1101.
        assert_eq!(after_miss(Strategy::Geometric, 1.5, 7, 1000), 10);
        assert_eq!(after_miss(Strategy::Geometric, 1.1, 1001, 10_000), 1101);
    }

    #[test]
    fn exponential_doubles_and_ignores_the_factor() {
        let with_big_factor = run(Strategy::Exponential, 7.0, MIN, 10 * MIN, 5);
        assert_eq!(
            with_big_factor,
            vec![60_000, 120_000, 240_000, 480_000, 600_000, 600_000]
        );
        assert_eq!(run(Strategy::Exponential, 1.0, MIN, 10 * MIN, 5), with_big_factor);
    }

    #[test]
    fn fixed_never_changes() {
        assert_eq!(run(Strategy::Fixed, 3.0, 5 * MIN, 30 * MIN, 4), vec![300_000; 5]);
    }

    #[test]
    fn a_miss_at_max_stays_at_max() {
        for strategy in [Strategy::Fixed, Strategy::Geometric, Strategy::Exponential] {
            assert_eq!(
                after_miss(strategy, 1.5, 30 * MIN, 30 * MIN),
                30 * MIN,
                "{strategy}"
            );
        }
    }

    #[test]
    fn a_thousand_misses_neither_overflow_nor_exceed_max() {
        for (strategy, factor) in [
            (Strategy::Geometric, 1.5),
            (Strategy::Geometric, f64::MAX),
            (Strategy::Exponential, 1.0),
        ] {
            let max = i64::MAX - 1;
            let seen = run(strategy, factor, 1000, max, 1000);
            assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{strategy} shrank");
            assert_eq!(*seen.last().unwrap(), max, "{strategy} did not saturate at max");
            assert!(seen.iter().all(|&i| (1..=max).contains(&i)));
        }
    }

    #[test]
    fn jitter_draws_within_the_interval() {
        assert_eq!(wait(300_000, 0.0, 0.99), 300_000);
        assert_eq!(wait(300_000, 0.5, 0.0), 300_000);
        assert_eq!(wait(300_000, 0.5, 0.5), 225_000);
        assert_eq!(wait(300_000, 0.5, 0.999_999), 150_001);
        assert_eq!(wait(300_000, 1.0, 0.999_999_999), 1, "never below 1 ms");
        assert_eq!(wait(300_000, 0.2, f64::NAN), 300_000);
    }

    #[test]
    fn strategies_parse_by_name_only() {
        assert_eq!("geometric".parse(), Ok(Strategy::Geometric));
        assert!("Geometric".parse::<Strategy>().is_err());
        assert!("linear".parse::<Strategy>().is_err());
    }
}
