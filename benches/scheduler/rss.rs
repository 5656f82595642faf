//! The resident memory of an idle `poked run` over the large fleet, five seconds after it
//! starts: `idle_rss_mb_1m` (VmRSS, in MB; VmHWM is shown beside it).
//!
//! A daemon that watches a million agents should not hold them in memory: it asks the database
//! for the due ones when it needs them, so its size must not grow with the fleet.

use std::time::Duration;

use poked::clock::{Clock, SystemClock};
use poked::store::Synchronous;

use crate::common::{Bench, count, raw};
use crate::daemon::start;
use crate::due::big_fleet;

pub fn run(bench: &mut Bench) {
    let rss = idle_rss(bench);
    bench.report.figure("idle_rss_mb_1m", rss);
}

fn idle_rss(bench: &mut Bench) -> Option<f64> {
    let big = big_fleet(bench);
    eprintln!("idle daemon over the large fleet…");
    let conn = raw(&big, Synchronous::Full);
    let agents = count(&conn, "SELECT count(*) FROM agents", []);
    // Make every agent far from due: the few due ones were last poked now.
    let now = SystemClock.now();
    conn.execute(
        "UPDATE agents SET last_poke_at = ?1, updated_at = ?1 WHERE next_due_at <= ?1 + 3600000",
        [now],
    )
    .expect("push due agents away");
    drop(conn);
    let mut daemon = start(bench, "idle_rss_mb_1m", &big, &[])?;
    std::thread::sleep(Duration::from_secs(5));
    if !daemon.alive() {
        let why = daemon.tail();
        bench
            .report
            .note(format!("idle_rss_mb_1m is null: `poked run` exited: {why}"));
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap_or_default();
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    let (rss, peak) = (field("VmRSS:"), field("VmHWM:"));
    daemon.stop();
    let Some(rss) = rss else {
        bench
            .report
            .note("idle_rss_mb_1m is null: no VmRSS in /proc/PID/status");
        return None;
    };
    let name = format!("idle `poked run` over {agents} agents (VmRSS after 5 s)");
    let sides = [
        format!("{rss:.1} MB"),
        format!("peak {:.1} MB", peak.unwrap_or(f64::NAN)),
    ];
    bench.report.row(name, sides, rss, "≤ 32 MB");
    Some(rss)
}
