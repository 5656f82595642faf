//! `poked explain ID` and `poked plan ID` at 100,000 agents (issue 13: each must answer in
//! under 50 ms): the wall time of the whole process, the median of several runs of each, and
//! `explain_ms_100k` is the slower of the two medians. The agent explained has a three-rung
//! ladder and escalations in its cap's window, so every lookup the commands make is made.
//!
//! Both read one agent, its rungs and its cap's recent escalations through indexes, so their
//! time should not depend on the number of agents; the fleet is the size the issue names.

use crate::common::{Bench, median};
use crate::fleet::{build_fleet, fleet_id};
use crate::process::{poked, timed};
use crate::report::millis;

const KEY: &str = "explain_ms_100k";
const AGENTS: usize = 100_000;

pub fn run(bench: &mut Bench) {
    let runs = if bench.sizes.quick { 5 } else { 15 };
    eprintln!("`poked explain` and `poked plan` over {AGENTS} agents…");
    let path = bench.path("explain.db");
    drop(build_fleet(&path, AGENTS, AGENTS / 10, bench.t0));
    let id = fleet_id(AGENTS / 2);
    timed(poked(&path).args([
        "set",
        &id,
        "--escalate",
        "2:true",
        "--escalate",
        "4:true",
        "--escalate",
        "6:notify-human",
    ]));
    let mut times = [Vec::new(), Vec::new()];
    // The first run of each warms the page cache and is not counted.
    for run in 0..=runs {
        for (k, command) in ["explain", "plan"].into_iter().enumerate() {
            let (took, out) = timed(poked(&path).args([command, id.as_str(), "--json"]));
            let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            assert!(
                if k == 0 {
                    parsed["id"] == id.as_str()
                } else {
                    parsed.as_array().is_some_and(|a| a.len() == 10)
                },
                "{command} answered {parsed}"
            );
            if run > 0 {
                times[k].push(took.as_secs_f64());
            }
        }
    }
    let [explain, plan] = times.map(|mut t| median(&mut t));
    let slower = explain.max(plan) * 1000.0;
    let name = format!("`poked explain` / `poked plan` process, {AGENTS} agents, median of {runs}");
    bench.report.row(name, millis([explain, plan]), slower, "≤ 50 ms");
    bench.report.figure(KEY, Some(slower));
}
