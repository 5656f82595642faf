//! Activity probes (SPEC §7.1): what a probe prints, and whether it is failing.
//!
//! A probe's trimmed stdout is an instant: an integer or decimal number is Unix seconds (tmux
//! prints `#{window_activity}` so), anything else must be RFC 3339. A probe that fails (exit ≠
//! 0, timeout, output that is not an instant) gives no activity and does not hold up the poke;
//! [`ProbeHealth`] logs when an agent's probe starts failing and when it stops, not at every
//! pass.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::agent::AgentId;
use crate::clock::Millis;
use crate::units::parse_rfc3339;

/// Parses a probe's stdout into Unix milliseconds.
pub fn parse_instant(stdout: &[u8]) -> Result<Millis, String> {
    let text = std::str::from_utf8(stdout)
        .map_err(|_| "its output is not UTF-8 text".to_string())?
        .trim();
    if text.is_empty() {
        return Err("it printed nothing".into());
    }
    if text.bytes().next().is_some_and(|b| b.is_ascii_digit()) && !text.contains(['-', ':', 'T']) {
        return seconds(text).ok_or_else(|| format!("{text:?} is not a number of seconds"));
    }
    let at =
        parse_rfc3339(text).map_err(|_| format!("{text:?} is neither Unix seconds nor an RFC 3339 time"))?;
    if at < 0 {
        return Err(format!("{text:?} is before 1970"));
    }
    Ok(at)
}

/// `1767225600` or `1767225600.25` seconds as milliseconds, exactly (no floating point).
fn seconds(text: &str) -> Option<Millis> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let mut ms = 0;
    for (i, digit) in frac.bytes().take(3).enumerate() {
        ms += i64::from(digit - b'0') * [100, 10, 1][i];
    }
    secs.checked_mul(1000)?.checked_add(ms)
}

/// Which agents' probes are failing, so a failure is logged when it starts and when it ends.
#[derive(Debug, Default)]
pub struct ProbeHealth {
    failing: Mutex<HashMap<AgentId, String>>,
}

impl ProbeHealth {
    /// Notes a probe that answered.
    pub fn ok(&self, agent: &AgentId) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if failing.remove(agent).is_some() {
            tracing::info!(agent = agent.as_str(), "the activity probe answers again");
        }
    }

    /// Notes a probe that failed, logging it only when it starts failing.
    pub fn failed(&self, agent: &AgentId, why: &str) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if !failing.contains_key(agent) {
            tracing::warn!(
                agent = agent.as_str(),
                error = why,
                "the activity probe failed; counting no activity from it"
            );
            failing.insert(agent.clone(), why.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_seconds_or_rfc3339() {
        assert_eq!(parse_instant(b"1767225600\n"), Ok(1_767_225_600_000));
        assert_eq!(parse_instant(b" 1767225600.25 "), Ok(1_767_225_600_250));
        assert_eq!(parse_instant(b"1767225600.123456"), Ok(1_767_225_600_123));
        assert_eq!(parse_instant(b"2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        for bad in [&b""[..], b"soon", b"12abc", b"-5", b"1.2.3", b"\xff"] {
            assert!(parse_instant(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
