//! poked keeps a backoff schedule for long-running agents in one SQLite file and pokes each
//! agent when it is due.
//!
//! The contract is SPEC.md; the layout follows it:
//!
//! - [`backoff`]: the pure arithmetic of SPEC §2 (strategies, cap, jitter from a given draw);
//! - [`agent`]: ids, settings and their rules, an agent's row;
//! - [`clock`] and [`random`]: the one clock and the one random draw, both fixable in tests;
//! - [`store`]: the only module that speaks SQL: open, pragmas, migrations, transitions, queries;
//! - [`daemon`]: the scheduling pass, running commands, heartbeat files;
//! - [`cli`] and [`commands`]: the command line and one function per subcommand;
//! - [`units`]: durations and instants as text;
//! - [`error`]: the one error type and its exit codes.

pub mod agent;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod daemon;
pub mod error;
pub mod random;
pub mod store;
pub mod units;

pub use error::{Error, Result};
