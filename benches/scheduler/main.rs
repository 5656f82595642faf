//! The benchmark harness: `cargo bench --bench scheduler` (ten minutes or more on 2 cores), or
//! `cargo bench --bench scheduler -- --quick` (smaller sizes, the same keys). `-- --only
//! pass,daemon` runs some of the measurements (for development; the others print null), and
//! `-- --write-chart` redraws `docs/due-query.svg`, which a run otherwise leaves alone.
//!
//! Every figure compares poked with a baseline measured in the same run, interleaved with it so
//! that a machine that speeds up or slows down (two cores shared with builds) moves both alike:
//! SQLite's own floor for the same durable work, spawning the same process, the `sqlite3` shell,
//! or poked itself at a small size. Each measurement is a module that says what it measures and
//! why; [`common`] holds the sizes and the rounds, [`floor`] the SQLite floors, [`process`] the
//! running of the `poked` binary. Nothing asserts a timing, only that each measured operation
//! did what it should; a measurement whose check fails gives null and the run exits 1.
//!
//! The last line printed is one JSON object with every key.

mod catchup;
mod chart;
mod cli;
mod commands;
mod common;
mod daemon;
mod due;
mod explain;
mod fleet;
mod floor;
mod history;
mod import;
mod metrics;
mod migrate;
mod pass;
mod process;
mod report;
mod rss;
mod transitions;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use common::{Bench, Sizes};

/// A measurement: its `--only` name, the JSON keys it sets, and the function that runs it.
type Measurement = (&'static str, &'static [&'static str], fn(&mut Bench));

/// Every measurement in the order they run; the JSON keys follow the same order.
#[rustfmt::skip]
const MEASUREMENTS: &[Measurement] = &[
    ("transitions", &["transition_ratio_full", "transition_ratio_normal"], transitions::run),
    ("pass", &["pass_over_tx_floor_full", "pass_over_batch_floor_full"], pass::run),
    ("import", &["import_ratio"], import::run),
    ("due", &["due_query_scaling"], due::run),
    ("history", &["history_scaling"], history::run),
    ("rss", &["idle_rss_mb_1m"], rss::run),
    ("daemon", &["daemon_pokes_per_s", "daemon_over_tx_floor"], daemon::run),
    ("commands", &["command_pokes_over_spawn_floor"], commands::run),
    ("catchup", &["catchup_100k_s", "catchup_over_tx_floor"], catchup::run),
    ("cli", &["cli_activity_over_sqlite3"], cli::run),
    ("migrate", &["migrate_10m_s"], migrate::run),
    ("explain", &["explain_ms_100k"], explain::run),
    ("metrics", &["metrics_scrape_ms_10k"], metrics::run),
];

const USAGE: &str = "usage: cargo bench --bench scheduler -- [--quick] [--only NAME,...] [--write-chart]";

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut quick, mut write_chart, mut only) = (false, false, None::<Vec<String>>);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--write-chart" => write_chart = true,
            "--only" => {
                only = args
                    .next()
                    .map(|list| list.split(',').map(str::to_owned).collect())
            }
            // cargo bench passes --bench to every benchmark binary.
            "--bench" => {}
            other => exit_usage(&format!("unknown argument {other:?}")),
        }
    }
    let names: Vec<&str> = MEASUREMENTS.iter().map(|m| m.0).collect();
    if let Some(unknown) = only.iter().flatten().find(|n| !names.contains(&n.as_str())) {
        exit_usage(&format!(
            "no measurement {unknown:?}; there are {}",
            names.join(",")
        ));
    }

    let mut bench = Bench::new(Sizes::new(quick), write_chart);
    let started = Instant::now();
    let run = if quick { "quick" } else { "full" };
    eprintln!(
        "poked benchmark ({run}), databases in {}",
        bench.dir.path().display()
    );
    let mut failed = false;
    for &(name, keys, measure) in MEASUREMENTS {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            bench.report.note(format!("{} not run (--only)", keys.join(", ")));
            continue;
        }
        // A failed check ends this measurement (its processes are stopped as the stack
        // unwinds), nulls its keys and fails the run, but the others still report.
        if catch_unwind(AssertUnwindSafe(|| measure(&mut bench))).is_err() {
            failed = true;
            for key in keys {
                bench.report.figure(key, None);
            }
            bench.report.note(format!(
                "{} null: the {name} measurement failed (see above)",
                keys.join(", ")
            ));
        }
    }
    let keys: Vec<&str> = MEASUREMENTS.iter().flat_map(|m| m.1.iter().copied()).collect();
    let summary = format!(
        "({run} run in {:.0} s; each value is poked over its baseline, or large over small size; \
         the target says which way is better)",
        started.elapsed().as_secs_f64()
    );
    let Bench { dir, report, .. } = bench;
    drop(dir);
    report.print(&keys, &summary);
    if failed {
        std::process::exit(1);
    }
}

fn exit_usage(problem: &str) -> ! {
    eprintln!("scheduler bench: {problem}\n{USAGE}");
    std::process::exit(2);
}
