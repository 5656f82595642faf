//! poked keeps a backoff schedule for long-running agents in one SQLite file and pokes each
//! agent when it is due; it backs off when an agent stops answering, snaps back when it shows
//! activity, and acts harder (an escalation ladder) when it stays silent.
//!
//! This library is everything but the command line, so another Rust program can embed poked:
//!
//! - [`store::Store`]: the database (open, every transition, every query); the only SQL;
//! - [`rules`]: the one decision (when an agent is due, a miss, a poke or a rung) as pure
//!   functions, shared by the daemon, `explain` and `plan`;
//! - [`backoff`]: the arithmetic of SPEC §2 (strategies, cap, jitter from a given draw);
//! - [`agent`]: ids, settings and their rules, an agent's row; [`log`]: the log's vocabulary;
//! - [`clock`] and [`random`]: the one clock and the one random draw, both fixable in tests;
//! - [`daemon`]: the scheduling loop ([`daemon::serve`]) with signal handling the embedder opts
//!   into, running commands, heartbeat files and probes;
//! - [`metrics`]: the state in the Prometheus text format (`poked metrics`, `/metrics`);
//! - [`transfer`]: agents as JSON lines (import and export);
//! - [`units`]: durations and instants as text; [`error`]: the one error type.
//!
//! `examples/embed.rs` shows the seed design's `BackoffManager` calls done with this library.
//!
//! ```
//! use poked::agent::{AgentId, Settings};
//! use poked::clock::{Clock, FixedClock};
//! use poked::random::FixedDraw;
//! use poked::store::{OpenOptions, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(&dir.path().join("poked.db"), OpenOptions { create: true, ..OpenOptions::default() })?;
//! let clock = FixedClock::new(0);
//! let id = AgentId::parse("worker-1")?;
//! store.add(&id, &Settings::default(), &[], false, clock.now(), &FixedDraw(0.0))?;
//! let agent = store.record_miss(&id, clock.now(), &FixedDraw(0.0))?;
//! assert_eq!(agent.current_interval_ms, 450_000); // 5m × 1.5
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod agent;
pub mod backoff;
pub mod clock;
pub mod daemon;
pub mod error;
pub mod log;
pub mod metrics;
pub mod random;
pub mod rules;
pub mod store;
pub mod transfer;
pub mod units;

pub use error::{Error, Result};
