//! One transition, `Store::record_miss`, against the transaction floor, at `synchronous=FULL`
//! and `NORMAL`: `transition_ratio_full` and `transition_ratio_normal`.
//!
//! This is poked's smallest unit of durable work, so the ratio says how much poked adds to what
//! SQLite must do anyway: with FULL a disk flush hides most of it, with NORMAL the CPU poked
//! spends beyond the floor's one `UPDATE` and one `INSERT` shows.

use std::time::{Duration, Instant};

use poked::agent::AgentId;
use poked::random::FixedDraw;
use poked::store::Synchronous;

use crate::common::{Bench, Compared, open_store, rounds, sync_label};
use crate::fleet::{build_fleet, fleet_id};
use crate::floor::{FLOOR_AGENTS, Floor};

pub fn run(bench: &mut Bench) {
    let ratio = transitions(bench, Synchronous::Full, bench.sizes.full_txns);
    bench.report.figure("transition_ratio_full", Some(ratio));
    let ratio = transitions(bench, Synchronous::Normal, bench.sizes.normal_txns);
    bench.report.figure("transition_ratio_normal", Some(ratio));
}

/// `Store::record_miss` against the floor, alternating rounds of `per_round` transactions.
fn transitions(bench: &mut Bench, synchronous: Synchronous, (per_round, n_rounds): (usize, usize)) -> f64 {
    let label = sync_label(synchronous);
    eprintln!("transitions, synchronous={label}…");
    let now = bench.t0;
    let mut floor = Floor::transactions(
        &bench.path(&format!("floor-{label}.db")),
        synchronous,
        FLOOR_AGENTS,
        now,
    );
    let path = bench.path(&format!("transitions-{label}.db"));
    drop(build_fleet(&path, FLOOR_AGENTS, FLOOR_AGENTS, now));
    // The library's side: one miss per agent in turn.
    let store = open_store(&path, synchronous);
    let ids: Vec<AgentId> = (0..FLOOR_AGENTS)
        .map(|i| AgentId::parse(&fleet_id(i)).expect("id"))
        .collect();
    let draw = FixedDraw(0.0);
    // Every generated agent starts with 3 misses; each miss must add one.
    let mut misses = vec![3; FLOOR_AGENTS];
    let (mut at, mut next) = (now, 0);
    let mut poked_run = |n: usize| {
        let start = Instant::now();
        for _ in 0..n {
            at += 1;
            let k = next % ids.len();
            next += 1;
            let agent = store.record_miss(&ids[k], at, &draw).expect("miss");
            misses[k] += 1;
            assert_eq!(agent.consecutive_misses, misses[k], "the miss was not recorded");
        }
        start.elapsed()
    };
    // One warm-up round each, not counted.
    floor.run(per_round / 4);
    poked_run(per_round / 4);
    let mut floor_side = |_: usize| floor.run(per_round);
    let mut poked_side = |_: usize| -> Duration { poked_run(per_round) };
    let times = rounds(n_rounds, &mut [&mut floor_side, &mut poked_side]);
    let c = Compared::new(&times[0], &times[1], per_round);
    let name = format!("transition (miss), synchronous={label}");
    bench.report.row(name, c.sides("/s", "/s"), c.ratio, "≥ 0.9");
    c.ratio
}
