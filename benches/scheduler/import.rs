//! `poked import` of a large fleet (JSON lines, through `poked::transfer`) against the
//! import floor, raw prepared `INSERT`s of the same rows in transactions of the same size:
//! `import_ratio`.
//!
//! Importing is how a large fleet arrives, and poked's figure includes reading and checking
//! every line, which the floor does not. The imported database is kept: the due query and the
//! idle daemon use it as their large fleet.

use std::time::Instant;

use poked::store::Synchronous;
use poked::transfer;

use crate::common::{Bench, Compared, open_store, raw, rounds};
use crate::due::DUE_AGENTS;
use crate::fleet::{fleet_agent, fleet_text, import_text};
use crate::floor::import_floor;

pub fn run(bench: &mut Bench) {
    let (n, chunks, t0) = (bench.sizes.import_agents, bench.sizes.import_chunks, bench.t0);
    eprintln!("import of {n} agents…");
    let path = bench.path(&format!("fleet-{n}.db"));
    let store = open_store(&path, Synchronous::Full);
    let mut floor = raw(&bench.path("floor-import.db"), Synchronous::Full);
    let chunk = n / chunks;
    let range = |c: usize| c * chunk..(c + 1) * chunk;
    let mut import_side = |c: usize| {
        let text = fleet_text(range(c), n, DUE_AGENTS, t0);
        let start = Instant::now();
        let added = import_text(&store, &text, t0);
        let took = start.elapsed();
        assert_eq!(added, chunk as u64, "the import did not add every agent");
        took
    };
    let mut floor_side = |c: usize| {
        let agents: Vec<_> = range(c).map(|i| fleet_agent(i, n, DUE_AGENTS, t0)).collect();
        import_floor(&mut floor, &agents, t0, transfer::BATCH)
    };
    let times = rounds(chunks, &mut [&mut import_side, &mut floor_side]);
    let c = Compared::new(&times[1], &times[0], chunk);
    let name = format!("import of {n} agents (JSON lines)");
    bench
        .report
        .row(name, c.sides("rows/s", "rows/s"), c.ratio, "≥ 0.7");
    bench.report.figure("import_ratio", Some(c.ratio));
    bench.big_fleet = Some(path);
}
