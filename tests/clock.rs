//! Time going wrong: instants in the future (a clock set back) count as now, and clock jumps
//! under a running daemon, run in-process on a wall clock the test moves, cause no burst of
//! pokes and no long delay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Env, ms, must, wait_for};
use crate::harness::{Auditor, inspect, poked_check, scalar};

#[test]
fn activity_in_the_future_counts_as_now() {
    const T: &str = "2026-01-01T00:00:00Z";
    let env = Env::new();
    env.ok(T, &["add", "a"]);
    env.ok(T, &["activity", "a", "--at", "2030-01-01T00:00:00Z"]);
    let last: i64 = env.value("SELECT last_activity_at FROM agents");
    assert_eq!(last, ms(T));
    env.ok("2026-01-01T00:10:00Z", &["activity", "a", "--at", "7m"]);
    let last: i64 = env.value("SELECT last_activity_at FROM agents");
    assert_eq!(last, ms("2026-01-01T00:03:00Z"));
}

/// A wall clock that runs with real time plus an offset the test changes at will.
struct JumpClock {
    start: Instant,
    base: i64,
    offset: std::sync::atomic::AtomicI64,
}

impl poked::clock::Clock for JumpClock {
    fn now(&self) -> i64 {
        self.base + self.start.elapsed().as_millis() as i64 + self.offset.load(Ordering::SeqCst)
    }
}

/// A log row and when (real time since the test began) the test first saw it.
#[derive(Debug, Clone)]
struct Seen {
    id: i64,
    agent: String,
    kind: String,
    at: i64,
    seen: Duration,
}

#[test]
fn clock_jumps_cause_no_burst_and_no_long_delay() {
    use poked::agent::{AgentId, Settings};
    use poked::backoff::Strategy;
    use poked::clock::Clock;
    use poked::daemon::{DaemonOptions, Shutdown, serve};
    use poked::random::FixedDraw;
    use poked::store::{OpenOptions, Store};
    const BASE: i64 = 1000;
    const MAX: i64 = 3000;
    let env = Env::new();
    let clock = Arc::new(JumpClock {
        start: Instant::now(),
        base: 1_767_225_600_000,
        offset: std::sync::atomic::AtomicI64::new(0),
    });
    let store = Store::open(
        &env.db,
        OpenOptions {
            create: true,
            connections: 8,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let draw = FixedDraw(0.5);
    let agents = ["j0", "j1", "j2", "j3"];
    for id in agents {
        let settings = Settings {
            strategy: Strategy::Geometric,
            base_interval_ms: BASE,
            max_interval_ms: MAX,
            factor: 2.0,
            fresh_ms: 0,
            very_stale_ms: 0,
            ..Settings::default()
        };
        store
            .add(
                &AgentId::parse(id).unwrap(),
                &settings,
                &[],
                false,
                clock.now(),
                &draw,
            )
            .unwrap();
    }
    // The test's eyes: every new log row, with the real time it appeared. It looks once more
    // after the daemon has stopped, so it has every row the test waited for.
    let stop = Shutdown::new();
    let daemon_gone = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (db, daemon_gone, start) = (env.db.clone(), Arc::clone(&daemon_gone), clock.start);
        std::thread::spawn(move || {
            let conn = inspect(&db);
            let mut last = 0;
            let mut rows = Vec::new();
            loop {
                let last_look = daemon_gone.load(Ordering::SeqCst);
                let mut stmt = conn
                    .prepare_cached("SELECT id, agent_id, kind, at FROM poke_log WHERE id > ?1 ORDER BY id")
                    .unwrap();
                let new: Vec<Seen> = stmt
                    .query_map([last], |r| {
                        Ok(Seen {
                            id: r.get(0)?,
                            agent: r.get(1)?,
                            kind: r.get(2)?,
                            at: r.get(3)?,
                            seen: start.elapsed(),
                        })
                    })
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                for row in new {
                    last = row.id;
                    rows.push(row);
                }
                if last_look {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            rows
        })
    };
    let daemon = {
        let (store, clock, stop) = (store.clone(), Arc::clone(&clock), stop.clone());
        std::thread::spawn(move || {
            serve(
                &store,
                clock.as_ref(),
                &FixedDraw(0.5),
                &DaemonOptions::default(),
                &stop,
            )
        })
    };
    // Each jump comes right after a pass, when the daemon has just gone to sleep for as long
    // as it can: the worst moment. That is when every agent has been poked anew and none is
    // left to poke (the agents drift apart by the milliseconds between their pokes, so one
    // round of pokes may take a few passes).
    let newest_row = || scalar(&env.db, "SELECT coalesce(max(id), 0) FROM poke_log");
    let all_poked_after = |row: i64, times: i64| {
        let sql = format!(
            "SELECT count(*) FROM (SELECT agent_id FROM poke_log WHERE kind = 'poke' AND id > {row}
             GROUP BY agent_id HAVING count(*) >= {times})"
        );
        wait_for(Duration::from_secs(20), || {
            scalar(&env.db, &sql) == agents.len() as i64
        })
    };
    let round_over = format!(
        "SELECT min(next_due_at) - max(last_poke_at) > {} FROM agents",
        BASE / 2
    );
    let right_after_a_pass = || {
        let row = newest_row();
        assert!(
            all_poked_after(row, 1)
                && wait_for(Duration::from_secs(20), || scalar(&env.db, &round_over) == 1),
            "the daemon stopped poking"
        );
    };
    // Let every agent back off to its max interval, so the daemon sleeps for as long as it
    // can between passes.
    let at_max = format!("SELECT count(*) FROM agents WHERE current_interval_ms = {MAX}");
    assert!(
        wait_for(Duration::from_secs(20), || scalar(&env.db, &at_max)
            == agents.len() as i64),
        "the agents never reached their max interval"
    );
    right_after_a_pass();
    clock.offset.fetch_add(2 * 3_600_000, Ordering::SeqCst);
    let (forward, forward_at, forward_row) = (clock.start.elapsed(), clock.now(), newest_row());
    // The catch-up pass, and the one after it.
    assert!(all_poked_after(forward_row, 1), "no catch-up after +2h");
    right_after_a_pass();
    clock.offset.fetch_sub(24 * 3_600_000, Ordering::SeqCst);
    let (back, back_at, back_row) = (clock.start.elapsed(), clock.now(), newest_row());
    // Two pokes of every agent after the clock went back: the first is the delay that counts,
    // the second shows no burst follows it.
    assert!(all_poked_after(back_row, 2), "not poked twice after -1 day");
    stop.stop();
    let report = daemon.join().unwrap().expect("the daemon failed");
    daemon_gone.store(true, Ordering::SeqCst);
    let rows = watcher.join().unwrap();
    drop(store);

    let bound = Duration::from_millis((MAX + 1000) as u64);
    let mut delays = Vec::new();
    for agent in agents {
        let mine: Vec<&Seen> = rows.iter().filter(|r| r.agent == agent).collect();
        // The rows committed after a jump: nothing was due around either jump, so the log's
        // newest row at the jump divides before from after.
        let within = |r: &Seen, (from, to): (i64, i64)| r.id > from && r.id <= to;
        let pokes = |rows: (i64, i64)| -> Vec<&Seen> {
            mine.iter()
                .copied()
                .filter(|r| r.kind == "poke" && within(r, rows))
                .collect()
        };
        let (forward_rows, back_rows) = ((forward_row, back_row), (back_row, i64::MAX));
        // The pokes after the jump `jump` at `jumped` (the log's `rows`), and the first one's
        // delay, which must be within max + 1 s.
        let after_jump = |rows: (i64, i64), jumped: Duration, jump: &str| {
            let after = pokes(rows);
            let first = after
                .first()
                .unwrap_or_else(|| panic!("{agent}: never poked after the {jump} jump: {mine:#?}"));
            let delay = first.seen - jumped;
            assert!(
                delay <= bound,
                "{agent}: first poke {delay:?} after the {jump} jump"
            );
            (after, delay)
        };
        // +2h: one catch-up poke within max + 1 s, and it records no miss.
        let (after_forward, forward_delay) = after_jump(forward_rows, forward, "+2h");
        let misses_in_catch_up = mine
            .iter()
            .filter(|r| r.kind == "miss" && r.at >= forward_at && r.at < forward_at + BASE)
            .count();
        assert_eq!(
            misses_in_catch_up, 0,
            "{agent}: the first pass after +2h recorded misses: {mine:#?}"
        );
        // -1 day: poked again within max + 1 s, not a day later.
        let (after_back, back_delay) = after_jump(back_rows, back, "-1 day");
        delays.push((agent, forward_delay, back_delay));
        // Never two pokes within one wait (at least the base), on either side of either jump.
        for window in [&after_forward, &after_back] {
            for pair in window.windows(2) {
                assert!(
                    pair[1].at - pair[0].at >= BASE,
                    "{agent}: two pokes {} ms apart",
                    pair[1].at - pair[0].at
                );
            }
        }
        // No burst of misses: at most one per poke after each jump.
        for rows in [forward_rows, back_rows] {
            let misses = mine
                .iter()
                .filter(|r| r.kind == "miss" && within(r, rows))
                .count();
            assert!(
                misses <= pokes(rows).len(),
                "{agent}: {misses} misses in a burst: {mine:#?}"
            );
        }
    }
    assert!(back_at < forward_at, "the clock did not go back");
    poked_check(&env.db).unwrap();
    Auditor::new(&env.db).audit(&[], true).unwrap();
    eprintln!(
        "clock jumps: +2h and -1 day under a running daemon: {} pokes, {} misses, 4 agents each \
         poked once on catching up and within {bound:?} of each jump",
        report.pokes, report.misses
    );
    eprintln!("clock jumps: (agent, first poke after +2h, first poke after -1 day): {delays:?}");
}

// Defects a review found (issue 9), each pinned by a test written before its fix.

#[test]
fn a_heartbeat_file_in_the_future_counts_once() {
    let env = Env::new();
    let hb = env.dir.path().join("hb");
    std::fs::write(&hb, b"").unwrap();
    let f = std::fs::File::options().write(true).open(&hb).unwrap();
    // 2090-01-01
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(3_786_825_600))
        .unwrap();
    let hb_arg = hb.to_str().unwrap();
    env.ok("2026-01-01T00:00:00Z", &["add", "w", "--heartbeat-file", hb_arg]);
    for hour in 0..5 {
        let now = format!("2026-01-01T0{hour}:00:00Z");
        env.ok(&now, &["run", "--once"]);
    }
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE kind = 'activity'"),
        1,
        "the same future modification time counted more than once"
    );
    // It counted as the first pass's now; the passes after it poke the agent.
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE kind = 'activity' AND at = 1767225600000"),
        1
    );
    assert!(env.count("SELECT count(*) FROM poke_log WHERE kind = 'poke'") >= 4);
}

#[test]
fn a_fixed_clock_never_rewrites_stored_times() {
    let env = Env::new();
    must(&env.db, &["add", "w"]);
    env.sql()
        .execute_batch("UPDATE agents SET last_activity_at = created_at")
        .unwrap();
    let before: (i64, i64) = env.row("SELECT created_at, last_activity_at FROM agents");
    env.ok("2025-06-01T00:00:00Z", &["run", "--once"]);
    let after: (i64, i64) = env.row("SELECT created_at, last_activity_at FROM agents");
    assert_eq!(before, after, "POKED_NOW rewrote stored instants");
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE kind = 'updated'"),
        0
    );
}

#[test]
fn instants_in_the_future_are_corrected_with_a_logged_transition() {
    let env = Env::new();
    must(&env.db, &["add", "w"]);
    // A pass ran while the clock was a day ahead; then the clock was set back.
    let created: i64 = env.value("SELECT created_at FROM agents");
    let ahead = poked::units::format_time(created + 86_400_000);
    env.ok(&ahead, &["run", "--once"]);
    env.ok(&ahead, &["pause", "w"]);
    let out = env.cmd().args(["run", "--once"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (poke, _): (i64, i64) = env.row("SELECT last_poke_at, created_at FROM agents");
    assert!(
        poke < created + 86_400_000,
        "the future last poke was not corrected"
    );
    let detail: String =
        env.value("SELECT detail FROM poke_log WHERE kind = 'updated' ORDER BY id DESC LIMIT 1");
    assert!(detail.contains("last_poke_at"), "{detail}");
    let check = env.cmd().arg("check").output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
