//! `poked run` at full speed: 2,000 command-less agents with a fixed 1 ms interval, so every
//! agent is always due and the daemon pokes as fast as it can commit. `daemon_pokes_per_s` is
//! its rate of committed pokes, `daemon_over_tx_floor` that rate over the transaction floor.
//!
//! The daemon runs as a user would run it (logging each poke at the default level, to a file).
//! Its pokes are counted in windows of about two seconds once its first poke is committed;
//! between windows it is stopped (SIGSTOP) while the floor runs for a second on its own
//! database, so the two never compete for the disk and both see the same spells of a busy
//! machine. The ratio is the median of each window against the floor just before and after it.
//! [`windowed`] is shared with the measurement of command pokes.

use std::path::Path;
use std::time::{Duration, Instant};

use poked::clock::{Clock, SystemClock};

use crate::common::{Bench, Compared, count, median, reader};
use crate::fleet::build_busy;
use crate::floor::Floor;
use crate::process::{Daemon, wait_until};

/// Agents of the busy fleet.
const BUSY_AGENTS: usize = 2_000;

/// Runs `daemon` for about `secs` seconds in windows of about two, counting `counted()` over
/// each, with `floor()` (which runs the floor for a while and returns its rate) before the
/// first and after every window while the daemon is stopped. Returns the comparison (its ratio
/// the median over windows of the window's rate over the floor's around it) and the number of
/// windows.
pub fn windowed(
    daemon: &Daemon,
    secs: u64,
    counted: &mut dyn FnMut() -> i64,
    floor: &mut dyn FnMut() -> f64,
) -> (Compared, u64) {
    let windows = secs.div_ceil(2).max(1);
    let window = Duration::from_secs_f64(secs as f64 / windows as f64);
    daemon.pause();
    let mut floor_rates = vec![floor()];
    let (mut total, mut total_time, mut ratios) = (0, 0.0, Vec::new());
    for _ in 0..windows {
        daemon.resume();
        let (start, first) = (Instant::now(), counted());
        std::thread::sleep(window);
        let (elapsed, last) = (start.elapsed().as_secs_f64(), counted());
        daemon.pause();
        floor_rates.push(floor());
        let around = floor_rates[floor_rates.len() - 2..].iter().sum::<f64>() / 2.0;
        ratios.push((last - first) as f64 / elapsed / around);
        total += last - first;
        total_time += elapsed;
    }
    daemon.resume();
    let compared = Compared {
        ratio: median(&mut ratios),
        poked_rate: total as f64 / total_time,
        floor_rate: floor_rates.iter().sum::<f64>() / floor_rates.len() as f64,
    };
    (compared, windows)
}

/// Starts `poked run ARGS` on `db`, logging to the file beside it with the extension `log`;
/// `None`, with a note naming `what`, when it cannot.
pub fn start(bench: &mut Bench, what: &str, db: &Path, args: &[&str]) -> Option<Daemon> {
    match Daemon::start(db, &db.with_extension("log"), args) {
        Ok(daemon) => Some(daemon),
        Err(e) => {
            bench
                .report
                .note(format!("{what} is null: could not start poked run: {e}"));
            None
        }
    }
}

/// Starts `poked run ARGS` on `db` and waits up to 30 s for `counted()` to pass zero. `None`,
/// with a note naming `what`, when it does not.
pub fn start_counting(
    bench: &mut Bench,
    what: &str,
    db: &Path,
    args: &[&str],
    counted: &mut dyn FnMut() -> i64,
) -> Option<Daemon> {
    let mut daemon = start(bench, what, db, args)?;
    let started = wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        counted() > 0 || !daemon.alive()
    });
    if !started || counted() == 0 {
        let why = daemon.tail();
        bench
            .report
            .note(format!("{what} is null: `poked run` made no poke: {why}"));
        return None;
    }
    Some(daemon)
}

/// Notes a daemon that died during its measurement or did not stop cleanly on SIGTERM.
pub fn stop_checked(bench: &mut Bench, what: &str, mut daemon: Daemon) {
    let alive = daemon.alive();
    let why = daemon.tail();
    let status = daemon.stop();
    if !alive {
        bench.report.note(format!(
            "{what}: `poked run` stopped during the measurement: {why}"
        ));
    } else if !status.is_some_and(|s| s.success()) {
        bench.report.note(format!(
            "{what}: `poked run` did not exit 0 on SIGTERM ({status:?})"
        ));
    }
}

pub fn run(bench: &mut Bench) {
    let secs = bench.sizes.daemon_secs;
    eprintln!("daemon for {secs} s over {BUSY_AGENTS} agents…");
    let now = SystemClock.now();
    let path = bench.path("daemon.db");
    build_busy(&path, BUSY_AGENTS, None, now);
    let mut floor = Floor::transactions_full(&bench.path("floor-daemon.db"), now);
    let watch = reader(&path);
    let mut pokes = || count(&watch, "SELECT count(*) FROM poke_log WHERE kind = 'poke'", []);
    let Some(daemon) = start_counting(bench, "daemon_pokes_per_s", &path, &[], &mut pokes) else {
        return;
    };
    let (w, windows) = windowed(&daemon, secs, &mut pokes, &mut || floor.rate_for(1.0));
    stop_checked(bench, "daemon_pokes_per_s", daemon);
    let unsent = count(
        &watch,
        "SELECT count(*) FROM poke_log WHERE kind = 'poke' AND outcome IS NOT 'sent'",
        [],
    );
    assert_eq!(unsent, 0, "a command-less poke was not recorded `sent`");
    let name = format!("`poked run` {secs} s, {BUSY_AGENTS} agents at 1 ms, full / transaction floor");
    bench.report.row(name, w.sides("pokes/s", "/s"), w.ratio, "≥ 3");
    bench.report.note(format!(
        "daemon pokes/s over the transaction floor = {:.3}: the median of {} windows, each against the \
         floor measured just before and after it while the daemon was stopped",
        w.ratio, windows
    ));
    bench.report.figure("daemon_pokes_per_s", Some(w.poked_rate));
    bench.report.figure("daemon_over_tx_floor", Some(w.ratio));
}
