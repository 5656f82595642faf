//! One scheduling pass (`poked::daemon::Scheduler::run_once`) over due command-less agents, each getting a
//! miss and a poke, against two floors measured in the same rounds:
//!
//! - `pass_over_tx_floor_full`: agents per second over the transaction floor's transactions per
//!   second (one agent per transaction is what a pass without group commit costs at best);
//! - `pass_over_batch_floor_full`: agents per second over the batched floor, raw SQLite writing
//!   the same rows for `poked::daemon::GROUP_COMMIT` agents per transaction (what a pass that
//!   commits in groups could reach).
//!
//! Both at `synchronous=FULL`, the default. Each round moves the clock on by 49 hours, so every
//! agent is due again and very stale.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use poked::clock::{Clock, FixedClock};
use poked::daemon::{PassOptions, with_scheduler};
use poked::random::FixedDraw;
use poked::store::Synchronous;

use crate::common::{Bench, Compared, HOUR, count, reader, rounds};
use crate::fleet::build_fleet;
use crate::floor::Floor;

pub fn run(bench: &mut Bench) {
    let (n, n_rounds, t0) = (bench.sizes.pass_agents, bench.sizes.pass_rounds, bench.t0);
    eprintln!("one pass over {n} due agents…");
    let mut tx_floor = Floor::transactions(&bench.path("floor-pass.db"), Synchronous::Full, n, t0);
    let mut batch_floor = Floor::batched(&bench.path("floor-pass-batch.db"), n, t0);
    let path = bench.path("pass.db");
    // Every agent due, poked before and never active: each pass records a miss and a poke.
    let store = build_fleet(&path, n, n, t0);
    let (draw, cancel, options) = (FixedDraw(0.0), AtomicBool::new(false), PassOptions::default());
    let mut pass_side = |round: usize| {
        // Each round 49 hours later: every agent is due again (the interval is at most 2 days).
        let clock = FixedClock::new(t0 + (round as i64) * 49 * HOUR);
        let start = Instant::now();
        let report = with_scheduler(&store, &clock, &draw, &options, &cancel, &cancel, |s| {
            s.run_once(clock.now())
        })
        .expect("pass");
        let took = start.elapsed();
        assert_eq!(
            (report.pokes, report.misses),
            (n, n),
            "the pass did not miss and poke every agent"
        );
        took
    };
    let mut tx_side = |_: usize| tx_floor.run(n);
    let mut batch_side = |_: usize| batch_floor.run(n);
    let times = rounds(n_rounds, &mut [&mut tx_side, &mut batch_side, &mut pass_side]);
    let pokes = count(
        &reader(&path),
        "SELECT count(*) FROM poke_log WHERE kind = 'poke' AND outcome = 'sent'",
        [],
    );
    assert_eq!(
        pokes as usize,
        n * n_rounds,
        "the log does not hold every pass's pokes"
    );
    let over_tx = Compared::new(&times[0], &times[2], n);
    let over_batch = Compared::new(&times[1], &times[2], n);
    for (floor, c, target) in [
        ("transaction", &over_tx, "≥ 3"),
        ("batched", &over_batch, "≥ 0.7"),
    ] {
        let name = format!("pass, {n} due agents (miss + poke each), full / {floor} floor");
        bench.report.row(name, c.sides("agents/s", "/s"), c.ratio, target);
    }
    bench
        .report
        .figure("pass_over_tx_floor_full", Some(over_tx.ratio));
    bench
        .report
        .figure("pass_over_batch_floor_full", Some(over_batch.ratio));
}
