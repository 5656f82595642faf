//! One command-line transition, `poked activity ID`, against the `sqlite3` shell doing the
//! same write (`BEGIN IMMEDIATE; UPDATE agents ...; INSERT INTO poke_log ...; COMMIT;` at an
//! explicit `PRAGMA synchronous=FULL`): `cli_activity_over_sqlite3` is the median, over pairs
//! run back to back (A B A B ...), of poked's wall time over the shell's.
//!
//! Scripts and agents call `poked activity` once per sign of life, so what a user pays is the
//! whole process: start, open and check the database, one transaction, exit. The shell is the
//! cheapest process that can make the same durable change. Without a `sqlite3` on PATH the key
//! is null, with a note.

use std::path::Path;
use std::process::Command;

use poked::clock::{Clock, SystemClock};

use crate::common::{Bench, count, median, reader};
use crate::fleet::{build_fleet, fleet_id};
use crate::process::{poked, timed};
use crate::report::millis;

const KEY: &str = "cli_activity_over_sqlite3";

/// Agents in the database (none of them due).
const AGENTS: usize = 1_000;

/// The shell's version of `poked activity ID` at `now` (jitter 0, so the wait is the base).
fn sqlite3(db: &Path, id: &str, now: i64) -> Command {
    let script = format!(
        "PRAGMA synchronous = FULL;
         BEGIN IMMEDIATE;
         UPDATE agents SET consecutive_misses = 0, current_interval_ms = base_interval_ms,
             wait_ms = base_interval_ms, last_activity_at = max(coalesce(last_activity_at, 0), {now}),
             updated_at = {now}
           WHERE id = '{id}';
         INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses)
           SELECT id, {now}, 'activity', current_interval_ms, 0 FROM agents WHERE id = '{id}';
         COMMIT;"
    );
    let mut command = Command::new("sqlite3");
    command
        .args(["-bail", "-batch", "-init", "/dev/null"])
        .arg(db)
        .arg(script);
    command
}

pub fn run(bench: &mut Bench) {
    let available = Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        bench.report.figure(KEY, None);
        bench.report.note(format!(
            "{KEY} is null: no `sqlite3` shell on PATH to compare with"
        ));
        return;
    }
    let pairs = bench.sizes.cli_pairs;
    eprintln!("`poked activity` against `sqlite3`, {pairs} pairs…");
    let path = bench.path("cli.db");
    drop(build_fleet(&path, AGENTS, 0, bench.t0));
    let id = fleet_id(AGENTS / 2);
    let mut ratios = Vec::with_capacity(pairs);
    let (mut poked_times, mut shell_times) = (Vec::new(), Vec::new());
    // The first pair warms the page cache and is not counted.
    for pair in 0..=pairs {
        let (poked_time, _) = timed(poked(&path).args(["activity", &id]));
        let (shell_time, _) = timed(&mut sqlite3(&path, &id, SystemClock.now()));
        if pair > 0 {
            ratios.push(poked_time.as_secs_f64() / shell_time.as_secs_f64());
            poked_times.push(poked_time.as_secs_f64());
            shell_times.push(shell_time.as_secs_f64());
        }
    }
    let landed = count(
        &reader(&path),
        "SELECT count(*) FROM poke_log WHERE agent_id = ?1 AND kind = 'activity'",
        [&id],
    );
    assert_eq!(
        landed as usize,
        2 * (pairs + 1),
        "an activity did not land in the log"
    );
    let ratio = median(&mut ratios);
    let name = format!("`poked activity ID` / `sqlite3` doing its write, {pairs} pairs, full");
    let sides = millis([median(&mut poked_times), median(&mut shell_times)]);
    bench.report.row(name, sides, ratio, "≤ 1.3");
    bench.report.figure(KEY, Some(ratio));
}
