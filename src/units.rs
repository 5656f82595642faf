//! Durations and instants as text: parsing what users type, printing what they read.
//!
//! Durations are written `250ms`, `90s`, `5m`, `1h30m` (humantime's grammar) and printed in the
//! compact form of SPEC §2 (`7m30s`, `16m52.5s`); the SQL views print the same form. Instants
//! are printed as RFC 3339 UTC with milliseconds only when they are not zero.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::clock::Millis;

/// The longest duration poked accepts anywhere: ten years. Anything longer is a typo, and
/// keeping every value this small means no sum of two of them can overflow.
pub const MAX_DURATION_MS: i64 = 10 * 365 * 24 * 3_600_000;

/// Parses a duration such as `250ms`, `90s`, `5m` or `1h30m` into milliseconds.
///
/// Returns the rule that was broken on failure. Zero is allowed here; callers that need a
/// positive value check it themselves.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err("must not be negative".into());
    }
    if trimmed.chars().all(|c| c.is_ascii_digit()) && !trimmed.is_empty() {
        return Err("needs a unit, e.g. 90s, 5m, 1h30m or 250ms".into());
    }
    if trimmed.contains('M') {
        return Err("M is ambiguous (humantime reads it as months): write 5m or 5min for minutes".into());
    }
    let d = humantime::parse_duration(trimmed)
        .map_err(|e| format!("{e} (write durations like 250ms, 90s, 5m, 1h30m)"))?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err("finer than a millisecond".into());
    }
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if ms > MAX_DURATION_MS {
        return Err("longer than 10 years".into());
    }
    Ok(ms)
}

/// Prints milliseconds in the compact form `1d2h3m4.5s`, `7m30s`, `250ms`.
pub fn format_duration(ms: i64) -> String {
    if ms < 0 {
        return format!("-{}", format_duration(ms.saturating_neg()));
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut out = String::new();
    let (days, hours, minutes) = (
        ms / 86_400_000,
        ms % 86_400_000 / 3_600_000,
        ms % 3_600_000 / 60_000,
    );
    let (seconds, millis) = (ms % 60_000 / 1000, ms % 1000);
    if days > 0 {
        out.push_str(&format!("{days}d"));
    }
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if millis > 0 {
        let frac = format!("{millis:03}");
        out.push_str(&format!("{seconds}.{}s", frac.trim_end_matches('0')));
    } else if seconds > 0 {
        out.push_str(&format!("{seconds}s"));
    }
    out
}

/// Parses an RFC 3339 instant (`2026-01-01T00:05:00Z`) into Unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Result<Millis, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{e} (write times as RFC 3339, e.g. 2026-01-01T00:05:00Z)"))
}

/// Parses a time given on the command line: RFC 3339, a duration meaning "that long ago"
/// (`2h`), or a duration with a leading `+` meaning "that long from now" (`+10m`, for `due`).
pub fn parse_time(text: &str, now: Millis) -> Result<Millis, String> {
    if let Ok(at) = parse_rfc3339(text) {
        if at < 0 {
            return Err("before 1970".into());
        }
        return Ok(at);
    }
    if let Some(ahead) = text.trim().strip_prefix('+') {
        return parse_duration(ahead).map(|ms| now.saturating_add(ms));
    }
    match parse_duration(text) {
        Ok(ago) => Ok(now.saturating_sub(ago)),
        Err(_) => Err(
            "not a time: write RFC 3339 (2026-01-01T00:05:00Z), a duration meaning that \
                       long ago (2h), or +DURATION for that long from now (+10m)"
                .into(),
        ),
    }
}

/// Prints an instant as RFC 3339 UTC, with milliseconds only when there are some.
pub fn format_time(at: Millis) -> String {
    match DateTime::<Utc>::from_timestamp_millis(at) {
        Some(t) if at % 1000 == 0 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => at.to_string(),
    }
}

/// Prints how far `at` is from `now`: `in 3m12s`, `40s ago`, `now`.
pub fn format_relative(at: Millis, now: Millis) -> String {
    let delta = at.saturating_sub(now);
    match delta {
        0 => "now".into(),
        d if d > 0 => format!("in {}", format_duration(round_for_people(d))),
        d => format!("{} ago", format_duration(round_for_people(d.saturating_neg()))),
    }
}

/// Rounds a duration to whole seconds once it is longer than a minute, for at-a-glance output.
fn round_for_people(ms: i64) -> i64 {
    if ms >= 60_000 { ms / 1000 * 1000 } else { ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_in_the_spec_form() {
        for (text, ms, shown) in [
            ("250ms", 250, "250ms"),
            ("90s", 90_000, "1m30s"),
            ("5m", 300_000, "5m"),
            ("1h30m", 5_400_000, "1h30m"),
            ("16m 52s 500ms", 1_012_500, "16m52.5s"),
            ("25m 18s 750ms", 1_518_750, "25m18.75s"),
            ("2d", 172_800_000, "2d"),
        ] {
            assert_eq!(parse_duration(text), Ok(ms), "{text}");
            assert_eq!(format_duration(ms), shown, "{ms}");
        }
    }

    #[test]
    fn bad_durations_are_refused() {
        for text in [
            "",
            "-5m",
            "5",
            "banana",
            "5 parsecs",
            "11y",
            "1ns",
            "99999999999999999h",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn times_parse_as_rfc3339_or_ago() {
        let now = parse_rfc3339("2026-01-01T01:00:00Z").unwrap();
        assert_eq!(parse_time("2h", now), parse_rfc3339("2025-12-31T23:00:00Z"));
        assert_eq!(parse_time("+10m", now), Ok(now + 600_000));
        assert!(parse_time("+banana", now).is_err());
        assert_eq!(parse_time("2026-01-01T00:05:00Z", now), Ok(now - 55 * 60_000));
        assert!(parse_time("banana", now).is_err());
        assert!(parse_time("0000-01-01T00:00:00Z", now).is_err());
        assert_eq!(format_time(now), "2026-01-01T01:00:00Z");
        assert_eq!(format_time(now + 250), "2026-01-01T01:00:00.250Z");
        assert_eq!(format_relative(now + 192_400, now), "in 3m12s");
        assert_eq!(format_relative(now - 40_000, now), "40s ago");
    }
}
