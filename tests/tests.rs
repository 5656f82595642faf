//! The integration tests: one binary that drives the real `poked` executable (and, where a test
//! needs to reach inside, the library). Each test owns a temporary directory with its database.
//!
//! By topic: `crashes`, `contention`, `disk`, `files`, `clock`, `pipes`, `bad_input`, the daemon's
//! life (`daemon`), the worked timelines (`timeline`), probes, gates and the escalation ladder
//! (`supervisor`), real tmux sessions (`tmux`), the live view in a terminal (`top`), `explain`
//! and `plan` (`explain`), upgrading old databases (`migration`), the operator's commands
//! (`operator`), import and export (`transfer`), what people see (`views`), the store through
//! the library (`store`), and the soak tier (`soak`, ignored by default). `common` holds the
//! small helpers, `harness` the machinery for breaking poked on purpose and looking inside.

mod bad_input;
mod clock;
mod common;
mod contention;
mod crashes;
mod daemon;
mod disk;
mod explain;
mod files;
mod generate;
mod harness;
mod metrics;
mod migration;
mod operator;
mod pipes;
mod soak;
mod store;
mod supervisor;
mod systemd;
mod timeline;
mod tmux;
mod top;
mod transfer;
mod views;
