//! The integration tests: one binary that drives the real `poked` executable (and, where a test
//! needs to reach inside, the library). Each test owns a temporary directory with its database.

mod bad_input;
mod common;
mod daemon;
mod defects;
mod explain;
mod files;
mod operator;
mod reliability;
mod soak;
mod migration;
mod store;
mod supervisor;
mod timeline;
mod tmux;
mod transfer;
mod views;
