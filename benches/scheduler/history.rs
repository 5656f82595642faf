//! `history AGENT --limit 100` (`Store::history`) on a log of 10,000 rows and on a large log,
//! with the same answer: `history_scaling` is the time on the large log over the time on the
//! small one.
//!
//! The log is append-only and grows for as long as poked runs, so reading an agent's recent
//! history must follow the `(agent_id, at)` index and cost the same on a long log as on a short
//! one.

use std::path::Path;
use std::time::Instant;

use poked::clock::{Clock, SystemClock};
use poked::store::{HistoryFilter, Synchronous};

use crate::common::{Bench, median, open_store, raw};
use crate::fleet::fill_log;
use crate::report::millis;

/// Builds a log of `n` rows (untimed): 1,000 agents take turns, and the queried agent `target`
/// has exactly 200 rows spread evenly through it, so `history target --limit 100` returns 100
/// rows at every size.
fn build_log(path: &Path, n: usize) {
    let mut conn = raw(path, Synchronous::Full);
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000;")
        .expect("build pragmas");
    let target_every = n / 200;
    let names: Vec<String> = (0..1_000).map(|i| format!("agent-{i:04}")).collect();
    let agent = |j: usize| {
        if j % target_every == target_every / 2 {
            "target"
        } else {
            names[j % names.len()].as_str()
        }
    };
    fill_log(&mut conn, n, 50_000, SystemClock.now(), agent);
}

pub fn run(bench: &mut Bench) {
    let (small_n, big_n) = (10_000, bench.sizes.history_rows);
    eprintln!("history at {small_n} and {big_n} log rows (building the log)…");
    let (small, big) = (bench.path("log-small.db"), bench.path("log-big.db"));
    build_log(&small, small_n);
    build_log(&big, big_n);
    let stores = [
        open_store(&small, Synchronous::Full),
        open_store(&big, Synchronous::Full),
    ];
    let filter = HistoryFilter {
        agent_id: Some(poked::agent::AgentId::parse("target").expect("id")),
        limit: Some(100),
        ..HistoryFilter::default()
    };
    let reps = if bench.sizes.quick { 10 } else { 30 };
    let mut times = [Vec::new(), Vec::new()];
    for rep in 0..=reps {
        for (k, store) in stores.iter().enumerate() {
            let start = Instant::now();
            let log = store.history(&filter).expect("history");
            let took = start.elapsed().as_secs_f64();
            assert_eq!(log.len(), 100);
            assert!(log.iter().all(|r| r.agent_id.as_str() == "target"));
            if rep > 0 {
                times[k].push(took);
            }
        }
        // One slow query should not keep a full run waiting for thirty of them.
        if rep >= 3 && times[1].iter().sum::<f64>() > 20.0 {
            break;
        }
    }
    let (s, b) = (median(&mut times[0]), median(&mut times[1]));
    let scaling = b / s;
    let name = format!("history target --limit 100: {big_n} / {small_n} rows");
    bench.report.row(name, millis([b, s]), scaling, "≤ 2");
    bench.report.figure("history_scaling", Some(scaling));
}
