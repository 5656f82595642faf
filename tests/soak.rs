//! The soak tier: the crash and contention scenarios of tests/crashes.rs and
//! tests/contention.rs with the issue's full figures. Too slow for every `cargo test` (about an
//! hour on two cores), so ignored by default; run it with
//!
//! ```text
//! cargo test --release -- --ignored --nocapture --test-threads 1
//! ```
//!
//! (`--release` is faster, but the negative control needs a debug build and says so when
//! skipped; drop `--release` to include it.) Each test prints its figures on stderr.

use std::time::Duration;

use crate::contention::{contention, simultaneous_creation};
use crate::crashes::{kill_during_pokes, kill_loop_without_fault, negative_control};

#[test]
#[ignore = "soak tier: 10,000 kills, about 20 minutes"]
fn soak_kill_9_loop_10_000_kills() {
    let f = kill_loop_without_fault(10_000, 50, 1000, "soak_kill_9_loop");
    eprintln!("soak kill -9 loop: {f:?}, lost: 0");
    assert!(f.writers_killed > 1000 && f.daemon_pokes > 0, "{f:?}");
}

#[test]
#[ignore = "soak tier: the negative control, 20 runs"]
fn soak_negative_control_20_runs() {
    negative_control(20, 300, "soak negative control");
}

#[test]
#[ignore = "soak tier: 50 kills during pokes of three agents, about 5 minutes"]
fn soak_kills_during_pokes() {
    let f = kill_during_pokes(50, 3, "soak_kills_during_pokes").unwrap_or_else(|e| panic!("{e}"));
    eprintln!("soak kill during a poke: {f:?}");
    assert!(
        f.in_flight_at_kill >= 50 && f.recorded_interrupted == f.in_flight_at_kill,
        "{f:?}"
    );
}

#[test]
#[ignore = "soak tier: 8 processes x 500 transitions on one agent"]
fn soak_contention_8_x_500() {
    let f = contention(8, 500).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("soak contention: {f:?}");
    assert_eq!((f.transitions, f.failures), (4000, 0));
}

#[test]
#[ignore = "soak tier: 100 simultaneous creations"]
fn soak_simultaneous_creation_100_rounds() {
    let took: Duration = simultaneous_creation(100).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("soak simultaneous creation: 100 rounds of 5 processes, 0 failures, {took:?}");
}
