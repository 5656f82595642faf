//! Catching up after downtime: `poked run` started on a database where 100,000 command-less
//! agents are all overdue (poked before, never active, so each gets a miss and a poke).
//! `catchup_100k_s` is the time from starting the process to the last of them poked, and
//! `catchup_over_tx_floor` is agents per second over that time against the transaction floor.
//!
//! The catch-up is one long run, so to keep a drifting machine from favouring either side it is
//! cut into windows of two seconds: between windows the daemon is stopped (SIGSTOP) while the
//! floor runs for half a second on its own database, and the time counted is the daemon's
//! running time only. The floor's rate is the mean of its slices.
//!
//! This is the burst a daemon meets after a reboot or an upgrade, and SPEC §3 asks that each
//! overdue agent be poked once, not once per missed interval: the check afterwards is exactly
//! one poke and one miss per agent.

use std::time::{Duration, Instant};

use poked::clock::{Clock, SystemClock};

use crate::common::{Bench, count, reader};
use crate::daemon::{self, stop_checked};
use crate::fleet::build_fleet;
use crate::floor::Floor;
use crate::process::wait_until;

/// How long the catch-up may take before the figure is given up.
const LIMIT: Duration = Duration::from_secs(900);
/// How long the daemon may add no log row before the catch-up counts as stalled.
const STALL: Duration = Duration::from_secs(10);
/// The daemon's running time between two slices of the floor, and a slice.
const WINDOW: Duration = Duration::from_secs(2);
const FLOOR_SLICE: f64 = 0.5;

pub fn run(bench: &mut Bench) {
    let n = bench.sizes.catchup_agents;
    eprintln!("catch-up of {n} overdue agents…");
    let now = SystemClock.now();
    let path = bench.path("catchup.db");
    drop(build_fleet(&path, n, n, now));
    let mut floor = Floor::transactions_full(&bench.path("floor-catchup.db"), now);
    let watch = reader(&path);
    // Rows before the daemon: one `added` row per agent. Each agent then adds a miss and a
    // poke, so the last rowid says cheaply when to count the pokes.
    let base = count(&watch, "SELECT max(id) FROM poke_log", []);
    let last_id = || count(&watch, "SELECT max(id) FROM poke_log", []);
    let pokes = || count(&watch, "SELECT count(*) FROM poke_log WHERE kind = 'poke'", []);
    let mut floor_rates = vec![floor.rate_for(FLOOR_SLICE)];
    let Some(mut daemon) = daemon::start(bench, "catchup_100k_s", &path, &[]) else {
        return;
    };
    // The daemon's running time, window by window, with the floor between windows while it is
    // stopped. A window ends early when every agent has its miss and poke (the last rowid is
    // polled, the pokes counted only then), when the daemon dies, or when it has added no row
    // for `STALL`.
    let (mut running, mut first_poke) = (Duration::ZERO, None);
    let (mut seen, mut changed) = (base, Instant::now());
    loop {
        daemon.resume();
        let window = Instant::now();
        let ended = wait_until(WINDOW, Duration::from_millis(20), || {
            let last = last_id();
            if last != seen {
                first_poke = first_poke.or(Some(running + window.elapsed()));
                (seen, changed) = (last, Instant::now());
            }
            let stalled = last > base && changed.elapsed() > STALL;
            !daemon.alive() || stalled || (last >= base + 2 * n as i64 && pokes() >= n as i64)
        });
        running += window.elapsed();
        daemon.pause();
        floor_rates.push(floor.rate_for(FLOOR_SLICE));
        if ended || running > LIMIT {
            break;
        }
    }
    let took = running.as_secs_f64();
    let alive = daemon.alive();
    stop_checked(bench, "catchup_100k_s", daemon);
    let poked = pokes() as usize;
    if !alive || poked < n {
        bench.report.note(format!(
            "catchup_100k_s is null: {poked} of {n} agents poked when the daemon stopped, stalled for \
             {} s or ran for {} s",
            STALL.as_secs(),
            LIMIT.as_secs()
        ));
        return;
    }
    // (rows, agents) of a kind: exactly one poke and one miss for every agent.
    let rows_and_agents = |kind: &str| {
        let rows = count(&watch, "SELECT count(*) FROM poke_log WHERE kind = ?1", [kind]);
        let agents = count(
            &watch,
            "SELECT count(DISTINCT agent_id) FROM poke_log WHERE kind = ?1",
            [kind],
        );
        (rows as usize, agents as usize)
    };
    assert_eq!(
        rows_and_agents("poke"),
        (n, n),
        "not every overdue agent was poked exactly once"
    );
    assert_eq!(
        rows_and_agents("miss"),
        (n, n),
        "not every overdue agent's miss was recorded once"
    );
    let floor_rate = floor_rates.iter().sum::<f64>() / floor_rates.len() as f64;
    let rate = n as f64 / took;
    let ratio = rate / floor_rate;
    let name = format!("catch-up: `poked run` start to the last of {n} overdue agents poked");
    let sides = [
        format!("{took:.2} s, {rate:.0} agents/s"),
        format!("{floor_rate:.0} /s"),
    ];
    bench.report.row(name, sides, ratio, "≥ 3");
    if let Some(first) = first_poke {
        bench.report.note(format!(
            "catch-up: the first poke was committed {:.3} s after `poked run` started; the floor \
             is the mean of {} half-second slices between windows",
            first.as_secs_f64(),
            floor_rates.len()
        ));
    }
    bench.report.figure("catchup_100k_s", Some(took));
    bench.report.figure("catchup_over_tx_floor", Some(ratio));
}
