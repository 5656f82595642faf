//! The poke log's vocabulary and its rows.
//!
//! Every word the schema, the output and the code share about the log is defined here once, as
//! an enum with its text form: the [`Kind`] of a `poke_log` row and the [`Outcome`] of a poke,
//! an escalation or a skip. The schema's CHECK constraints list the same words; a test holds
//! these enums against the CHECK lists SQLite actually stores, so a new word cannot be
//! half-added.

use std::fmt;
use std::str::FromStr;

use crate::agent::AgentId;
use crate::clock::Millis;

/// Defines a vocabulary enum: its variants with their text, `ALL`, `as_str`, `Display` and
/// `FromStr` (which names the accepted words when it refuses one).
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every word, in the order of the schema's CHECK list.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text stored in the database and printed.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<$name, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let words: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        format!("not a {}: use one of {}", $what, words.join(", "))
                    })
            }
        }
    };
}

vocabulary! {
    /// What a `poke_log` row records (SPEC §4).
    Kind, "log kind" {
        /// The agent was registered (or replaced by an import).
        Added = "added",
        /// Its settings changed, or a stored instant was corrected after the clock was set back.
        Updated = "updated",
        /// It was removed (its history stays).
        Removed = "removed",
        Paused = "paused",
        Resumed = "resumed",
        /// A poke was sent: its command ran, or there was none.
        Poke = "poke",
        /// A poke went unanswered.
        Miss = "miss",
        /// The agent showed activity.
        Activity = "activity",
        /// Back to base, by hand.
        Reset = "reset",
        /// The agent's gate said there was nothing to do (SPEC §7.2).
        Skip = "skip",
        /// A rung of the escalation ladder, in place of a poke (SPEC §7.3).
        Escalation = "escalation",
    }
}

vocabulary! {
    /// How a poke, an escalation or a skip ended (SPEC §3-4, §7).
    Outcome, "outcome" {
        /// Its command runs; the outcome is still to be recorded.
        Pending = "pending",
        /// The agent has no command: the poke was only recorded.
        Sent = "sent",
        /// The command exited 0.
        Ok = "ok",
        /// It exited with another code, or was killed by a signal poked did not send.
        Failed = "failed",
        /// It ran past `--command-timeout` and was stopped.
        Timeout = "timeout",
        /// It could not be started.
        Error = "error",
        /// The daemon stopped it, or died while it ran.
        Interrupted = "interrupted",
        /// An escalation over its cap: its command was not run (SPEC §7.3).
        Held = "held",
    }
}

impl Kind {
    /// Whether rows of this kind carry an outcome (pokes, escalations and skips).
    pub fn has_outcome(self) -> bool {
        matches!(self, Kind::Poke | Kind::Escalation | Kind::Skip)
    }
}

/// One row of `poke_log`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub id: i64,
    pub agent_id: AgentId,
    pub at: Millis,
    pub kind: Kind,
    /// The agent's interval after the transition.
    pub interval_ms: i64,
    /// The agent's misses in a row after the transition.
    pub consecutive_misses: i64,
    pub outcome: Option<Outcome>,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_refusals_name_the_choices() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(*kind));
        }
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(*outcome));
        }
        let err = "pokes".parse::<Kind>().unwrap_err();
        assert!(err.contains("escalation") && err.contains("skip"), "{err}");
        assert!("Pending".parse::<Outcome>().is_err());
    }
}
