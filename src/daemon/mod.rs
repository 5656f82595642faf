//! The scheduler: everything that sleeps, spawns or waits lives here.
//!
//! [`pass::run_pass`] is one scheduling pass (SPEC §3): `poked run --once` calls it directly.
//! [`command`] runs one agent's command with process-group hygiene, and [`heartbeat`] reads
//! heartbeat files.

pub mod command;
pub mod heartbeat;
pub mod lock;
pub mod pass;

pub use heartbeat::Heartbeats;
pub use pass::{PassOptions, PassReport, run_pass};
