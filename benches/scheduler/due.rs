//! The due query at growing fleet sizes, 1,000 agents up to the imported large fleet, always
//! with the same 300 agents due: `due_query_scaling` is the time at the large size over the time
//! at 1,000 agents.
//!
//! Every pass of the daemon starts with this query (the due agents and the earliest next due
//! time), so it must be an index range scan whose cost follows the agents due, not the agents
//! held. With `--write-chart` the medians are drawn into `docs/due-query.svg`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use poked::store::Synchronous;

use crate::chart;
use crate::common::{Bench, median, open_store};
use crate::fleet::build_fleet;
use crate::report::millis;

/// Agents due at `t0` in every due-query database.
pub const DUE_AGENTS: usize = 300;

/// The large fleet: the one the import measurement built, or one built now.
pub fn big_fleet(bench: &mut Bench) -> PathBuf {
    if let Some(path) = &bench.big_fleet {
        return path.clone();
    }
    let n = bench.sizes.import_agents;
    let path = bench.path(&format!("fleet-{n}.db"));
    eprintln!("building a fleet of {n} agents…");
    drop(build_fleet(&path, n, DUE_AGENTS, bench.t0));
    bench.big_fleet = Some(path.clone());
    path
}

pub fn run(bench: &mut Bench) {
    let big = big_fleet(bench);
    let (big_n, t0) = (bench.sizes.import_agents, bench.t0);
    let mut counts = vec![1_000];
    while counts.last().is_some_and(|&c| c * 10 < big_n) {
        counts.push(counts.last().map_or(1_000, |c| c * 10));
    }
    eprintln!("due query at {counts:?} and {big_n} agents…");
    let mut stores: Vec<_> = counts
        .iter()
        .map(|&c| {
            (
                c,
                build_fleet(&bench.path(&format!("fleet-{c}.db")), c, DUE_AGENTS, t0),
            )
        })
        .collect();
    stores.push((big_n, open_store(&big, Synchronous::Full)));
    let reps = if bench.sizes.quick { 30 } else { 100 };
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); stores.len()];
    for rep in 0..=reps {
        for (k, (_, store)) in stores.iter().enumerate() {
            let start = Instant::now();
            let due = store.due(t0).expect("due");
            let earliest = store.earliest_due().expect("earliest due");
            let took = start.elapsed().as_secs_f64();
            assert_eq!(due.len(), DUE_AGENTS, "wrong number of due agents");
            assert!(earliest.is_some_and(|e| e <= t0));
            // The first repetition warms the caches and is not counted.
            if rep > 0 {
                times[k].push(took);
            }
        }
    }
    let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    let (small, large) = (medians[0], medians[medians.len() - 1]);
    let scaling = large / small;
    let name = format!("due query ({DUE_AGENTS} due): {big_n} / 1000 agents");
    bench.report.row(name, millis([large, small]), scaling, "≤ 2");
    bench.report.figure("due_query_scaling", Some(scaling));
    let points: Vec<(f64, f64)> = stores
        .iter()
        .zip(&medians)
        .map(|((n, _), t)| (*n as f64, t * 1e3))
        .collect();
    let listed: Vec<String> = points.iter().map(|(n, ms)| format!("{n:.0}: {ms:.3}")).collect();
    bench.report.note(format!(
        "due query median ms by agent count: {}",
        listed.join(", ")
    ));
    if bench.write_chart {
        let svg = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/due-query.svg");
        match chart::draw(&svg, &points, DUE_AGENTS) {
            Ok(()) => bench.report.note(format!("chart written to {}", svg.display())),
            Err(e) => bench.report.note(format!("chart not written: {e}")),
        }
    }
}
