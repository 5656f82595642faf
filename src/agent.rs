//! What an agent is: its id, its settings with their rules, and its stored row.
//!
//! Everything a user can type about an agent is checked here, before anything touches the
//! database (SPEC §1-2); the schema's CHECK constraints repeat the same rules for hand edits.

use std::fmt;

use crate::backoff::Strategy;
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::units::{self, MAX_DURATION_MS};

/// The longest agent id.
pub const MAX_ID_LEN: usize = 128;

/// A validated agent id: 1 to 128 characters from `A-Z a-z 0-9 . _ - : / @`, starting with a
/// letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(String);

impl AgentId {
    /// Checks `text` against the id grammar of SPEC §1.
    pub fn parse(text: &str) -> Result<AgentId> {
        let bad = |rule: &str| Error::invalid("agent id", text, rule);
        if text.is_empty() {
            return Err(bad("must not be empty"));
        }
        if text.chars().count() > MAX_ID_LEN {
            return Err(Error::invalid(
                "agent id",
                format!("{}…", text.chars().take(32).collect::<String>()),
                format!("longer than {MAX_ID_LEN} characters ({})", text.chars().count()),
            ));
        }
        if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(bad("must start with a letter or digit"));
        }
        if let Some(c) = text.chars().find(|&c| !is_id_char(c)) {
            return Err(bad(&format!(
                "{c:?} is not allowed (use letters, digits and . _ - : / @)"
            )));
        }
        Ok(AgentId(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@')
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AgentId {
    type Err = Error;

    fn from_str(s: &str) -> Result<AgentId> {
        AgentId::parse(s)
    }
}

/// An agent's settings: everything `add` and `set` may change.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub strategy: Strategy,
    pub base_interval_ms: i64,
    pub max_interval_ms: i64,
    pub factor: f64,
    pub jitter: f64,
    pub fresh_ms: i64,
    pub very_stale_ms: i64,
    /// The argv run at each poke; `None` when the agent has no command.
    pub command: Option<Vec<String>>,
    /// An absolute path whose modification time counts as activity.
    pub heartbeat_file: Option<String>,
}

impl Default for Settings {
    /// The defaults of SPEC §2-3: geometric, 5m base, 30m max, factor 1.5, no jitter, fresh
    /// under 5m, very stale from 15m.
    fn default() -> Settings {
        Settings {
            strategy: Strategy::Geometric,
            base_interval_ms: 5 * 60_000,
            max_interval_ms: 30 * 60_000,
            factor: 1.5,
            jitter: 0.0,
            fresh_ms: 5 * 60_000,
            very_stale_ms: 15 * 60_000,
            command: None,
            heartbeat_file: None,
        }
    }
}

impl Settings {
    /// Checks the rules of SPEC §2 that tie settings together.
    pub fn validate(&self) -> Result<()> {
        let ms = units::format_duration;
        if self.base_interval_ms <= 0 {
            return Err(Error::invalid(
                "--base",
                ms(self.base_interval_ms),
                "must be more than zero",
            ));
        }
        for (what, value) in [
            ("--base", self.base_interval_ms),
            ("--max", self.max_interval_ms),
            ("--fresh", self.fresh_ms),
            ("--very-stale", self.very_stale_ms),
        ] {
            if !(0..=MAX_DURATION_MS).contains(&value) {
                return Err(Error::invalid(what, ms(value), "must be between 0 and 10 years"));
            }
        }
        if self.max_interval_ms < self.base_interval_ms {
            return Err(Error::invalid(
                "--max",
                ms(self.max_interval_ms),
                format!(
                    "must be at least the base interval ({})",
                    ms(self.base_interval_ms)
                ),
            ));
        }
        if !self.factor.is_finite() || self.factor < 1.0 {
            return Err(Error::invalid(
                "--factor",
                self.factor.to_string(),
                "must be a finite number ≥ 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(Error::invalid(
                "--jitter",
                self.jitter.to_string(),
                "must be between 0 and 1",
            ));
        }
        if self.fresh_ms > self.very_stale_ms {
            return Err(Error::invalid(
                "--fresh",
                ms(self.fresh_ms),
                format!("must not exceed --very-stale ({})", ms(self.very_stale_ms)),
            ));
        }
        if let Some(argv) = &self.command {
            validate_command(argv)?;
        }
        if let Some(path) = &self.heartbeat_file {
            validate_heartbeat_file(path)?;
        }
        Ok(())
    }
}

/// A command is a non-empty argv whose program is named and which holds no NUL byte.
pub fn validate_command(argv: &[String]) -> Result<()> {
    match argv.first() {
        None => Err(Error::invalid("command", "", "give the command after `--`")),
        Some(program) if program.is_empty() => Err(Error::invalid(
            "command",
            "",
            "the program name must not be empty",
        )),
        _ => match argv.iter().find(|word| word.contains('\0')) {
            Some(word) => Err(Error::invalid(
                "command word",
                word.clone(),
                "must not contain a NUL byte",
            )),
            None => Ok(()),
        },
    }
}

/// A heartbeat file is an absolute path without NUL bytes.
pub fn validate_heartbeat_file(path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(Error::invalid(
            "--heartbeat-file",
            path,
            "must be an absolute path",
        ));
    }
    if path.contains('\0') {
        return Err(Error::invalid(
            "--heartbeat-file",
            path,
            "must not contain a NUL byte",
        ));
    }
    Ok(())
}

/// How recently an agent showed activity (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Active less than `fresh` ago.
    Fresh,
    /// Active between `fresh` and `very stale` ago.
    Stale,
    /// Active `very stale` ago or longer, or never.
    VeryStale,
}

impl Freshness {
    /// The word used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Stale => "stale",
            Freshness::VeryStale => "very stale",
        }
    }
}

/// One row of `agents`.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: String,
    pub settings: Settings,
    pub current_interval_ms: i64,
    pub wait_ms: i64,
    pub consecutive_misses: i64,
    pub last_poke_at: Option<Millis>,
    pub last_activity_at: Option<Millis>,
    pub paused: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub next_due_at: Option<Millis>,
}

impl Agent {
    /// The agent's freshness at `now`. An activity in the future (the clock was set back)
    /// counts as now.
    pub fn freshness(&self, now: Millis) -> Freshness {
        let Some(at) = self.last_activity_at else {
            return Freshness::VeryStale;
        };
        let age = now.saturating_sub(at).max(0);
        if age < self.settings.fresh_ms {
            Freshness::Fresh
        } else if age < self.settings.very_stale_ms {
            Freshness::Stale
        } else {
            Freshness::VeryStale
        }
    }

    /// Whether a poke now would follow an unanswered poke: poked before, and no activity since.
    pub fn unanswered(&self) -> bool {
        match (self.last_poke_at, self.last_activity_at) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(poke), Some(activity)) => activity <= poke,
        }
    }

    /// A one-word state for lists: `paused`, `due`, `backing off` or `waiting`.
    pub fn state(&self, now: Millis) -> &'static str {
        match self.next_due_at {
            None => "paused",
            Some(due) if due <= now => "due",
            Some(_) if self.consecutive_misses > 0 => "backing off",
            Some(_) => "waiting",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_grammar() {
        for good in [
            "hq-mayor",
            "gt-gastown-witness",
            "gastown/crew/max",
            "mayor/",
            "a",
            "9@x:y.z_w",
        ] {
            assert!(AgentId::parse(good).is_ok(), "{good:?} was refused");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "-rf",
            "a b",
            "a\nb",
            "a\tb",
            "é",
            "a\u{202e}b",
            &long,
        ] {
            assert!(AgentId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(AgentId::parse(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn settings_rules_hold() {
        assert!(Settings::default().validate().is_ok());
        let cases: Vec<(&str, Settings)> = vec![
            (
                "zero base",
                Settings {
                    base_interval_ms: 0,
                    ..Settings::default()
                },
            ),
            (
                "max < base",
                Settings {
                    max_interval_ms: 1000,
                    ..Settings::default()
                },
            ),
            (
                "nan factor",
                Settings {
                    factor: f64::NAN,
                    ..Settings::default()
                },
            ),
            (
                "inf factor",
                Settings {
                    factor: f64::INFINITY,
                    ..Settings::default()
                },
            ),
            (
                "factor < 1",
                Settings {
                    factor: 0.5,
                    ..Settings::default()
                },
            ),
            (
                "jitter > 1",
                Settings {
                    jitter: 1.5,
                    ..Settings::default()
                },
            ),
            (
                "jitter nan",
                Settings {
                    jitter: f64::NAN,
                    ..Settings::default()
                },
            ),
            (
                "fresh > very stale",
                Settings {
                    fresh_ms: 20 * 60_000,
                    ..Settings::default()
                },
            ),
            (
                "relative heartbeat",
                Settings {
                    heartbeat_file: Some("hb".into()),
                    ..Settings::default()
                },
            ),
            (
                "empty command",
                Settings {
                    command: Some(vec![]),
                    ..Settings::default()
                },
            ),
        ];
        for (name, settings) in cases {
            let err = settings.validate().expect_err(name);
            assert_eq!(err.exit_code(), 2, "{name}");
        }
    }
}
