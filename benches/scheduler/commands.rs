//! `poked run --concurrency 4` over agents whose command is `true`, always due: the rate of
//! pokes whose command ran and whose outcome was recorded, over the rate at which four threads
//! can spawn and wait for `/bin/true` with no database at all: `command_pokes_over_spawn_floor`.
//!
//! Most real pokes run a command (`tmux send-keys`), and then a poke is a transaction, a spawn,
//! and a second transaction for the outcome. The spawn floor is what the operating system needs
//! for the process alone, so the ratio says what poked's bookkeeping around each command costs.
//! The daemon and the floor take turns in windows, as in [`crate::daemon`].

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use poked::clock::{Clock, SystemClock};

use crate::common::{Bench, count, reader};
use crate::daemon::{start_counting, stop_checked, windowed};
use crate::fleet::build_busy;

/// Commands at once, for the daemon and the floor alike (poked's default).
const CONCURRENCY: usize = 4;

/// Agents running `true`; more than the concurrency, so a free worker always finds one due.
const AGENTS: usize = 200;

/// Pokes whose command finished and whose outcome was recorded.
const FINISHED: &str = "SELECT count(*) FROM poke_log WHERE kind = 'poke'
     AND outcome IN ('ok', 'failed', 'timeout', 'error', 'interrupted')";

/// Spawns and waits for `/bin/true` on `CONCURRENCY` threads for about `secs` seconds; returns
/// processes per second.
fn spawn_rate_for(secs: f64) -> f64 {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let spawned: usize = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                scope.spawn(move || {
                    let mut n = 0;
                    while Instant::now() < deadline {
                        let status = Command::new("/bin/true")
                            .stdin(Stdio::null())
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status()
                            .expect("spawn /bin/true");
                        assert!(status.success(), "/bin/true failed");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("spawning thread"))
            .sum()
    });
    spawned as f64 / start.elapsed().as_secs_f64()
}

pub fn run(bench: &mut Bench) {
    let secs = bench.sizes.daemon_secs;
    eprintln!("daemon running `true` for {secs} s over {AGENTS} agents…");
    let path = bench.path("commands.db");
    build_busy(&path, AGENTS, Some(&["true"]), SystemClock.now());
    let watch = reader(&path);
    let mut finished = || count(&watch, FINISHED, []);
    let key = "command_pokes_over_spawn_floor";
    let concurrency = CONCURRENCY.to_string();
    let args = ["--concurrency", concurrency.as_str()];
    let Some(daemon) = start_counting(bench, key, &path, &args, &mut finished) else {
        return;
    };
    let (w, _) = windowed(&daemon, secs, &mut finished, &mut || spawn_rate_for(1.0));
    stop_checked(bench, key, daemon);
    let outcomes = |sql: &str| count(&watch, sql, []);
    let ok = outcomes("SELECT count(*) FROM poke_log WHERE kind = 'poke' AND outcome = 'ok'");
    let finished = outcomes(FINISHED);
    assert!(ok > 0, "no command recorded `ok`");
    assert_eq!(ok, finished, "a poke of `true` did not end `ok`");
    let name = format!("`poked run` {secs} s, {AGENTS} agents running `true` / spawning `true`");
    bench
        .report
        .row(name, w.sides("pokes/s", "spawns/s"), w.ratio, "≥ 0.7");
    bench.report.figure(key, Some(w.ratio));
}
