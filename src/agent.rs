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

/// An id hashes and compares as its text, so a set of ids can be asked about a `&str`.
impl std::borrow::Borrow<str> for AgentId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

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
        f.pad(&self.0)
    }
}

impl std::str::FromStr for AgentId {
    type Err = Error;

    fn from_str(s: &str) -> Result<AgentId> {
        AgentId::parse(s)
    }
}

/// An agent's settings: everything `add` and `set` may change (its escalation ladder aside,
/// whose rungs live in a table of their own: [`Rung`]).
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
    /// The activity probe (SPEC §7.1): what it prints is the agent's last activity.
    pub activity_cmd: Option<Vec<String>>,
    /// A probe value no later than the last poke plus this is the poke's own echo.
    pub echo_ms: i64,
    /// The gate (SPEC §7.2): exit 0 pokes, 1-254 skips.
    pub only_if: Option<Vec<String>>,
    /// How long an escalation holds the agent (SPEC §7.3).
    pub grace_ms: i64,
    /// At most this many escalation commands in any window of `escalate_window_ms`.
    pub escalate_limit: i64,
    pub escalate_window_ms: i64,
}

impl Default for Settings {
    /// The defaults of SPEC §2-3 and §7: geometric, 5m base, 30m max, factor 1.5, no jitter,
    /// fresh under 5m, very stale from 15m, echo 2s, grace 5m, at most 3 escalations in 6h.
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
            activity_cmd: None,
            echo_ms: 2_000,
            only_if: None,
            grace_ms: 5 * 60_000,
            escalate_limit: 3,
            escalate_window_ms: 6 * 3_600_000,
        }
    }
}

/// How errors name a setting: as the option of `add` and `set`, or as the JSON key of
/// `import` and `export` (the column name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    Options,
    Keys,
}

impl Naming {
    fn name(self, option: &'static str, key: &'static str) -> &'static str {
        match self {
            Naming::Options => option,
            Naming::Keys => key,
        }
    }
}

impl Settings {
    /// Checks the rules of SPEC §2 and §7 that tie settings together, naming options.
    pub fn validate(&self) -> Result<()> {
        self.validate_named(Naming::Options)
    }

    /// Checks the rules, naming settings as `naming` says.
    pub fn validate_named(&self, naming: Naming) -> Result<()> {
        let ms = units::format_duration;
        let n = |option, key| naming.name(option, key);
        if self.base_interval_ms <= 0 {
            return Err(Error::invalid(
                n("--base", "base_interval_ms"),
                ms(self.base_interval_ms),
                "must be more than zero",
            ));
        }
        for (what, value) in [
            (n("--base", "base_interval_ms"), self.base_interval_ms),
            (n("--max", "max_interval_ms"), self.max_interval_ms),
            (n("--fresh", "fresh_ms"), self.fresh_ms),
            (n("--very-stale", "very_stale_ms"), self.very_stale_ms),
            (n("--echo", "echo_ms"), self.echo_ms),
            (n("--grace", "grace_ms"), self.grace_ms),
        ] {
            if !(0..=MAX_DURATION_MS).contains(&value) {
                return Err(Error::invalid(what, ms(value), "must be between 0 and 10 years"));
            }
        }
        if self.max_interval_ms < self.base_interval_ms {
            return Err(Error::invalid(
                n("--max", "max_interval_ms"),
                ms(self.max_interval_ms),
                format!(
                    "must be at least {} ({})",
                    n("the base interval", "base_interval_ms"),
                    ms(self.base_interval_ms)
                ),
            ));
        }
        if !self.factor.is_finite() || self.factor < 1.0 {
            return Err(Error::invalid(
                n("--factor", "factor"),
                self.factor.to_string(),
                "must be a finite number ≥ 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(Error::invalid(
                n("--jitter", "jitter"),
                self.jitter.to_string(),
                "must be between 0 and 1",
            ));
        }
        if self.fresh_ms > self.very_stale_ms {
            return Err(Error::invalid(
                n("--fresh", "fresh_ms"),
                ms(self.fresh_ms),
                format!(
                    "must not exceed {} ({})",
                    n("--very-stale", "very_stale_ms"),
                    ms(self.very_stale_ms)
                ),
            ));
        }
        let limit = EscalateLimit {
            limit: self.escalate_limit,
            window_ms: self.escalate_window_ms,
        };
        if !limit.is_valid() {
            return Err(Error::invalid(
                n("--escalate-limit", "escalate_limit"),
                format!("{}/{}", self.escalate_limit, ms(self.escalate_window_ms)),
                EscalateLimit::RULE,
            ));
        }
        for (what, argv) in [
            (n("command", "command"), &self.command),
            (n("--activity-cmd", "activity_cmd"), &self.activity_cmd),
            (n("--only-if", "only_if"), &self.only_if),
        ] {
            if let Some(argv) = argv {
                validate_argv(what, argv)?;
            }
        }
        if let Some(path) = &self.heartbeat_file
            && let Err(rule) = heartbeat_file_rule(path)
        {
            return Err(Error::invalid(
                n("--heartbeat-file", "heartbeat_file"),
                path,
                rule,
            ));
        }
        Ok(())
    }
}

/// A command is a non-empty argv whose program is named and which holds no NUL byte.
pub fn validate_command(argv: &[String]) -> Result<()> {
    validate_argv("command", argv)
}

/// Checks the argv of the option `what` (`command`, `--only-if`, ...).
pub fn validate_argv(what: &'static str, argv: &[String]) -> Result<()> {
    match argv.first() {
        None => Err(Error::invalid(what, "", "must name a program to run")),
        Some(program) if program.is_empty() => {
            Err(Error::invalid(what, "", "the program name must not be empty"))
        }
        _ => match argv.iter().find(|word| word.contains('\0')) {
            Some(word) => Err(Error::invalid(what, word.clone(), "must not contain a NUL byte")),
            None => Ok(()),
        },
    }
}

/// Splits a command given as one string (`--only-if 'bd ready --quiet'`) into words as a shell
/// would (quotes, backslashes), without running a shell: write `sh -c '...'` for one.
pub fn split_command(what: &'static str, text: &str) -> Result<Vec<String>> {
    let words = shell_words::split(text)
        .map_err(|_| Error::invalid(what, text, "has an unbalanced quote or a trailing backslash"))?;
    if words.is_empty() {
        return Err(Error::invalid(what, text, "must name a program to run"));
    }
    validate_argv(what, &words)?;
    Ok(words)
}

/// One rung of an escalation ladder (SPEC §7.3): when a miss brings the misses in a row to
/// exactly `misses`, `command` runs instead of the poke.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rung {
    pub misses: i64,
    pub command: Vec<String>,
}

impl Rung {
    /// Parses `N:COMMAND` (`3:'tmux kill-session -t w'`).
    pub fn parse(text: &str) -> Result<Rung> {
        let bad = |rule: &str| Error::invalid("--escalate", text, rule);
        let Some((n, command)) = text.split_once(':') else {
            return Err(bad("must be N:COMMAND, e.g. 3:'tmux kill-session -t w'"));
        };
        let misses = match n.trim().parse::<i64>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(bad(
                    "N must be a whole number ≥ 1: the misses in a row that fire it",
                ));
            }
        };
        if command.trim().is_empty() {
            return Err(bad("the command after N: is empty"));
        }
        let command = shell_words::split(command)
            .map_err(|_| bad("its command has an unbalanced quote or a trailing backslash"))?;
        validate_argv("--escalate", &command)?;
        Ok(Rung { misses, command })
    }
}

/// Checks a ladder (distinct rungs, each at ≥ 1 miss with a valid command) and returns it
/// sorted by misses.
pub fn validate_ladder(mut rungs: Vec<Rung>) -> Result<Vec<Rung>> {
    rungs.sort();
    for rung in &rungs {
        if rung.misses < 1 {
            return Err(Error::invalid(
                "--escalate",
                rung.misses.to_string(),
                "N must be a whole number ≥ 1",
            ));
        }
        validate_argv("--escalate", &rung.command)?;
    }
    if let Some(pair) = rungs.windows(2).find(|w| w[0].misses == w[1].misses) {
        return Err(Error::invalid(
            "--escalate",
            pair[0].misses.to_string(),
            "two rungs fire at the same number of misses",
        ));
    }
    Ok(rungs)
}

/// `--escalate-limit K/W`: at most K escalation commands in any window of W.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalateLimit {
    pub limit: i64,
    pub window_ms: i64,
}

impl EscalateLimit {
    /// The most escalations a cap may allow in its window.
    pub const MAX_LIMIT: i64 = 1000;
    const RULE: &'static str = "must be K/WINDOW with K from 1 to 1000 and a window above zero, e.g. 3/6h";

    /// Parses `K/W` (`3/6h`).
    pub fn parse(text: &str) -> Result<EscalateLimit> {
        let bad = || Error::invalid("--escalate-limit", text, EscalateLimit::RULE);
        let (k, w) = text.split_once('/').ok_or_else(bad)?;
        let limit = EscalateLimit {
            limit: k.trim().parse::<i64>().map_err(|_| bad())?,
            window_ms: units::parse_duration(w).map_err(|_| bad())?,
        };
        if !limit.is_valid() {
            return Err(bad());
        }
        Ok(limit)
    }

    fn is_valid(&self) -> bool {
        (1..=EscalateLimit::MAX_LIMIT).contains(&self.limit)
            && (1..=MAX_DURATION_MS).contains(&self.window_ms)
    }
}

/// The text `--tmux` types when no `--message` is given.
pub const TMUX_MESSAGE: &str = "HEARTBEAT";

/// What `--tmux SESSION` stands for (SPEC §7.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmux {
    /// Types the message into the session and presses Enter, in one tmux invocation.
    pub command: Vec<String>,
    /// Prints the time of the window's last activity (Unix seconds).
    pub probe: Vec<String>,
}

/// The tmux shorthand of SPEC §7.4: the command that types `message` into `session` and presses
/// Enter (one tmux invocation), and the probe that reads the window's last activity.
pub fn tmux(session: &str, message: &str) -> Result<Tmux> {
    if session.trim().is_empty() {
        return Err(Error::invalid("--tmux", session, "must name a tmux session"));
    }
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let command = words(&[
        "tmux",
        "send-keys",
        "-t",
        session,
        "-l",
        message,
        ";",
        "send-keys",
        "-t",
        session,
        "Enter",
    ]);
    let probe = words(&[
        "tmux",
        "display-message",
        "-p",
        "-t",
        session,
        "#{window_activity}",
    ]);
    validate_argv("--tmux", &command)?;
    Ok(Tmux { command, probe })
}

/// A heartbeat file is an absolute path without NUL bytes.
pub fn validate_heartbeat_file(path: &str) -> Result<()> {
    heartbeat_file_rule(path).map_err(|rule| Error::invalid("--heartbeat-file", path, rule))
}

fn heartbeat_file_rule(path: &str) -> std::result::Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must be an absolute path");
    }
    if path.contains('\0') {
        return Err("must not contain a NUL byte");
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

/// An agent's one-word state in lists (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not poked until resumed.
    Paused,
    /// Its next due time has come.
    Due,
    /// Waiting, after misses.
    BackingOff,
    /// Waiting, with no misses.
    Waiting,
}

impl State {
    /// The word used in output and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Paused => "paused",
            State::Due => "due",
            State::BackingOff => "backing off",
            State::Waiting => "waiting",
        }
    }
}

/// How many agents are in each [`State`] at one instant, and how many are held: the counts that
/// `poked status`, `poked metrics` and the daemon's systemd status line all report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub total: usize,
    pub due: usize,
    pub backing_off: usize,
    pub waiting: usize,
    pub paused: usize,
    /// Not paused, and kept from being due by a skip's or an escalation's hold (each of these is
    /// also counted in its state).
    pub held: usize,
    /// Active less than `fresh` ago (also counted in its state).
    pub fresh: usize,
}

impl StateCounts {
    /// The counts of `agents` at `now`.
    pub fn of<'a>(agents: impl IntoIterator<Item = &'a Agent>, now: Millis) -> StateCounts {
        let mut counts = StateCounts::default();
        for agent in agents {
            counts.total += 1;
            match agent.state(now) {
                State::Due => counts.due += 1,
                State::BackingOff => counts.backing_off += 1,
                State::Waiting => counts.waiting += 1,
                State::Paused => counts.paused += 1,
            }
            counts.held += usize::from(!agent.paused && agent.held(now));
            counts.fresh += usize::from(agent.freshness(now) == Freshness::Fresh);
        }
        counts
    }
}

/// An agent with its escalation ladder: what `add`, `import` and `export` carry.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub agent: Agent,
    pub rungs: Vec<Rung>,
}

/// One row of `agents`.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: AgentId,
    pub settings: Settings,
    pub current_interval_ms: i64,
    pub wait_ms: i64,
    pub consecutive_misses: i64,
    pub last_poke_at: Option<Millis>,
    pub last_activity_at: Option<Millis>,
    pub paused: bool,
    /// H of SPEC §3: not due before this (a skip's or an escalation's hold).
    pub held_until_at: Option<Millis>,
    /// The last modification time seen on the heartbeat file, counted or not.
    pub heartbeat_seen_at: Option<Millis>,
    /// The last value seen from the activity probe, counted or not.
    pub probe_seen_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Computed by SQLite from the other columns (SPEC §3); see [`crate::rules::next_due`].
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

    /// The agent's state at `now`.
    pub fn state(&self, now: Millis) -> State {
        match self.next_due_at {
            None => State::Paused,
            Some(due) if due <= now => State::Due,
            Some(_) if self.consecutive_misses > 0 => State::BackingOff,
            Some(_) => State::Waiting,
        }
    }

    /// Whether a hold (a skip's or an escalation's) keeps the agent from being due at `now`.
    pub fn held(&self, now: Millis) -> bool {
        self.held_until_at.is_some_and(|until| until > now)
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
        // Tables and the demo pad ids to a width.
        assert_eq!(format!("{:<7}|", AgentId::parse("eager").unwrap()), "eager  |");
    }

    #[test]
    fn settings_rules_hold() {
        assert!(Settings::default().validate().is_ok());
        let with = |change: fn(&mut Settings)| {
            let mut settings = Settings::default();
            change(&mut settings);
            settings
        };
        let cases: Vec<(&str, Settings)> = vec![
            ("zero base", with(|s| s.base_interval_ms = 0)),
            ("max < base", with(|s| s.max_interval_ms = 1000)),
            ("nan factor", with(|s| s.factor = f64::NAN)),
            ("inf factor", with(|s| s.factor = f64::INFINITY)),
            ("factor < 1", with(|s| s.factor = 0.5)),
            ("jitter > 1", with(|s| s.jitter = 1.5)),
            ("jitter nan", with(|s| s.jitter = f64::NAN)),
            ("fresh > very stale", with(|s| s.fresh_ms = 20 * 60_000)),
            (
                "relative heartbeat",
                with(|s| s.heartbeat_file = Some("hb".into())),
            ),
            ("empty command", with(|s| s.command = Some(vec![]))),
        ];
        for (name, settings) in cases {
            let err = settings.validate().expect_err(name);
            assert_eq!(err.exit_code(), 2, "{name}");
        }
    }
}
