//! The scheduler: everything that sleeps, spawns or waits lives here.
//!
//! [`service::serve`] is `poked run`: the lock, start-up recovery, the optional signal
//! handling and the loop that sleeps until the next agent is due. [`pass`] is one scheduling
//! pass (SPEC §3), the heart of both the loop and `poked run --once`, with `prepare` for the
//! agents whose probe or gate runs before the decision. [`command`] runs one command with
//! process-group hygiene, [`heartbeat`] reads heartbeat files, [`probe`] reads what probes
//! print, [`lock`] keeps one daemon per database file and [`recover`] cleans up after a daemon
//! that died. [`notify`] speaks systemd's notify protocol and [`endpoint`] serves `/metrics`.
//! [`watch`] is the waiting of the commands that follow the database (`history --follow`,
//! `next --wait`).

pub mod command;
pub mod endpoint;
pub mod heartbeat;
mod jobs;
pub mod lock;
pub mod notify;
pub mod pass;
mod prepare;
pub mod probe;
pub mod recover;
pub mod service;
pub mod watch;

pub use heartbeat::Heartbeats;
pub use notify::{Notifier, NotifyOptions};
pub use pass::{GROUP_COMMIT, PassOptions, PassReport, Scheduler, with_scheduler};
pub use service::{DaemonOptions, Shutdown, SignalGuard, serve};
