//! Clock jumps: the daemon runs in-process on a wall clock the test moves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Env, wait_for};
use crate::harness::{Auditor, inspect, poked_check, scalar};

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
    use poked::daemon::{DaemonOptions, serve_until};
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
            .add(&AgentId::parse(id).unwrap(), &settings, false, clock.now(), &draw)
            .unwrap();
    }
    // The test's eyes: every new log row, with the real time it appeared.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (db, stop, start) = (env.db.clone(), Arc::clone(&stop), clock.start);
        std::thread::spawn(move || {
            let conn = inspect(&db);
            let mut last = 0;
            let mut rows = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let mut stmt = conn
                    .prepare_cached("SELECT id, agent_id, kind, at FROM poke_log WHERE id > ?1 ORDER BY id")
                    .unwrap();
                let new: Vec<(i64, Seen)> = stmt
                    .query_map([last], |r| {
                        Ok((
                            r.get(0)?,
                            Seen {
                                agent: r.get(1)?,
                                kind: r.get(2)?,
                                at: r.get(3)?,
                                seen: start.elapsed(),
                            },
                        ))
                    })
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                for (id, row) in new {
                    last = id;
                    rows.push(row);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            rows
        })
    };
    let daemon = {
        let (store, clock, stop) = (store.clone(), Arc::clone(&clock), Arc::clone(&stop));
        std::thread::spawn(move || {
            serve_until(
                &store,
                clock.as_ref(),
                &FixedDraw(0.5),
                &DaemonOptions::default(),
                stop,
            )
        })
    };
    // Each jump comes right after a pass, when the daemon has just gone to sleep for as long
    // as it can: the worst moment.
    let pokes = || scalar(&env.db, "SELECT count(*) FROM poke_log WHERE kind = 'poke'");
    let right_after_a_pass = |settle: Duration| {
        std::thread::sleep(settle);
        let seen = pokes();
        assert!(
            wait_for(Duration::from_secs(10), || pokes() > seen),
            "the daemon stopped poking"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    right_after_a_pass(Duration::from_secs(3));
    clock.offset.fetch_add(2 * 3_600_000, Ordering::SeqCst);
    let (forward, forward_at) = (clock.start.elapsed(), clock.now());
    right_after_a_pass(Duration::from_secs(3));
    clock.offset.fetch_sub(24 * 3_600_000, Ordering::SeqCst);
    let (back, back_at) = (clock.start.elapsed(), clock.now());
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::SeqCst);
    let report = daemon.join().unwrap().expect("the daemon failed");
    let rows = watcher.join().unwrap();
    drop(store);

    let bound = Duration::from_millis((MAX + 1000) as u64);
    let mut delays = Vec::new();
    for agent in agents {
        let mine: Vec<&Seen> = rows.iter().filter(|r| r.agent == agent).collect();
        let pokes = |from: Duration, to: Duration| -> Vec<&Seen> {
            mine.iter()
                .copied()
                .filter(|r| r.kind == "poke" && r.seen > from && r.seen <= to)
                .collect()
        };
        // +2h: one catch-up poke within max + 1 s, and it records no miss.
        let after_forward = pokes(forward, back);
        let first = after_forward
            .first()
            .unwrap_or_else(|| panic!("{agent}: never poked after the +2h jump: {mine:#?}"));
        assert!(
            first.seen - forward <= bound,
            "{agent}: catch-up poke {:?} after the jump",
            first.seen - forward
        );
        let misses_in_catch_up = mine
            .iter()
            .filter(|r| r.kind == "miss" && r.at >= forward_at && r.at < forward_at + BASE)
            .count();
        assert_eq!(
            misses_in_catch_up, 0,
            "{agent}: the first pass after +2h recorded misses: {mine:#?}"
        );
        // -1 day: poked again within max + 1 s, not a day later.
        let after_back = pokes(back, Duration::MAX);
        let first = after_back
            .first()
            .unwrap_or_else(|| panic!("{agent}: never poked after the -1 day jump: {mine:#?}"));
        assert!(
            first.seen - back <= bound,
            "{agent}: poked {:?} after the clock went back",
            first.seen - back
        );
        delays.push((agent, after_forward[0].seen - forward, first.seen - back));
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
        for (from, to) in [(forward, back), (back, Duration::MAX)] {
            let misses = mine
                .iter()
                .filter(|r| r.kind == "miss" && r.seen > from && r.seen <= to)
                .count();
            assert!(
                misses <= pokes(from, to).len(),
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
