//! The benchmark harness: `cargo bench --bench scheduler` (about three minutes on 2 cores), or
//! `cargo bench --bench scheduler -- --quick` (under a minute, smaller sizes, the same keys).
//! `-- --only transitions,pass,import,due,history,rss,daemon` runs some of the measurements (for
//! development; the others print null).
//!
//! It compares poked with what SQLite itself needs for the same durable work, measured in the
//! same process, with the same pragmas and the same schema, interleaving the two in rounds so
//! that a machine that speeds up or slows down during the run (two cores shared with builds)
//! moves both sides alike. Each comparison is a ratio:
//!
//! - the **transition floor** is one `BEGIN IMMEDIATE`, one `UPDATE` of one agent row, one
//!   `INSERT` of one log row, `COMMIT`: the least SQLite work a transition can be (SPEC §4).
//!   `transition_ratio_*` is `Store::record_miss` per second over that; `pass_ratio_full` is the
//!   agents per second of one scheduling pass (`poked::daemon::run_pass`, a miss and a poke each)
//!   over it;
//! - the **import floor** is raw prepared `INSERT`s of the same agent rows and of the one log row
//!   each that poked must write for them, in transactions of the same batch size;
//! - the **scaling** figures are times at a large size over times at a small one, with the same
//!   number of rows in the answer.
//!
//! The daemon figures run the real `poked` binary (`CARGO_BIN_EXE_poked`, which cargo builds for
//! benchmarks as it does for integration tests). Databases live in a temporary directory that
//! is removed at the end. The full run redraws `docs/due-query.svg`; `--quick` does not.
//!
//! The last line printed is one JSON object with the headline figures; nothing here asserts a
//! timing, only that each measured operation did what it should.

use std::fmt::Write as _;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use poked::agent::AgentId;
use poked::clock::{Clock, FixedClock, Millis, SystemClock};
use poked::daemon::{PassOptions, run_pass};
use poked::random::FixedDraw;
use poked::store::{HistoryFilter, OpenOptions, Store, Synchronous};
use poked::transfer;
use poked::units::format_time;
use rusqlite::{Connection, params};

const HOUR: i64 = 3_600_000;

/// The sizes of one run.
struct Sizes {
    quick: bool,
    /// Transitions per side and round, and rounds, for FULL and NORMAL.
    full_txns: (usize, usize),
    normal_txns: (usize, usize),
    /// Agents in the pass, and rounds.
    pass_agents: usize,
    pass_rounds: usize,
    /// Agents imported (the due query's large size), in this many interleaved chunks.
    import_agents: usize,
    import_chunks: usize,
    /// Log rows of the large history.
    history_rows: usize,
    /// Seconds the daemon runs for its throughput.
    daemon_secs: u64,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                quick,
                full_txns: (100, 6),
                normal_txns: (400, 6),
                pass_agents: 2_000,
                pass_rounds: 2,
                import_agents: 100_000,
                import_chunks: 4,
                history_rows: 1_000_000,
                daemon_secs: 3,
            }
        } else {
            Sizes {
                quick,
                full_txns: (250, 20),
                normal_txns: (1_000, 20),
                pass_agents: 10_000,
                pass_rounds: 5,
                import_agents: 1_000_000,
                import_chunks: 10,
                history_rows: 10_000_000,
                daemon_secs: 10,
            }
        }
    }
}

/// One line of the table.
struct Row {
    name: String,
    poked: String,
    floor: String,
    value: Option<f64>,
    target: &'static str,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only import,pass` runs some measurements (for development); the others report null.
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_owned).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|names| names.iter().any(|n| n == name));
    let sizes = Sizes::new(quick);
    let dir = tempfile::Builder::new()
        .prefix("poked-bench-")
        .tempdir()
        .expect("temporary directory");
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    eprintln!(
        "poked benchmark ({}), databases in {}",
        if quick { "quick" } else { "full" },
        dir.path().display()
    );

    let mut figures: Vec<(&str, Option<f64>)> = Vec::new();
    let mut full_floor = None;
    let mut figure = |key: &'static str, value: Option<f64>| figures.push((key, value));

    if wanted("transitions") {
        let (ratio, floor) = transitions(dir.path(), Synchronous::Full, sizes.full_txns, &mut rows);
        full_floor = Some(floor);
        figure("transition_ratio_full", Some(ratio));
        let (ratio, _) = transitions(dir.path(), Synchronous::Normal, sizes.normal_txns, &mut rows);
        figure("transition_ratio_normal", Some(ratio));
    }
    if wanted("pass") {
        figure("pass_ratio_full", Some(pass(dir.path(), &sizes, &mut rows)));
    }
    let t0 = SystemClock.now();
    let mut big_db = None;
    if wanted("import") {
        let (ratio, path) = import(dir.path(), &sizes, t0, &mut rows);
        big_db = Some(path);
        figure("import_ratio", Some(ratio));
    }
    let mut big = || {
        big_db
            .get_or_insert_with(|| {
                let path = dir.path().join(format!("fleet-{}.db", sizes.import_agents));
                drop(build_fleet(&path, sizes.import_agents, DUE_AGENTS, t0));
                path
            })
            .clone()
    };
    if wanted("due") {
        let path = big();
        let scaling = due_queries(dir.path(), &sizes, &path, t0, &mut rows, &mut notes);
        figure("due_query_scaling", Some(scaling));
    }
    if wanted("history") {
        figure("history_scaling", Some(history(dir.path(), &sizes, &mut rows)));
    }
    if wanted("rss") {
        let path = big();
        figure("idle_rss_mb_1m", idle_rss(&path, &mut rows, &mut notes));
    }
    if wanted("daemon") {
        let pokes = daemon_throughput(dir.path(), &sizes, full_floor, &mut rows, &mut notes);
        figure("daemon_pokes_per_s", pokes);
    }

    print_table(&rows);
    for note in &notes {
        println!("note: {note}");
    }
    println!(
        "({} run in {:.0} s; ratios are poked / floor, higher is better; scaling is large / small, lower is better)",
        if quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64()
    );
    drop(dir);
    // The last line: the figures for machines, every key always present, in a fixed order.
    let json: Vec<String> = KEYS
        .iter()
        .map(|key| {
            let value = figures.iter().find(|(k, _)| k == key).and_then(|(_, v)| *v);
            let text = match value {
                None => "null".to_string(),
                Some(v) if *key == "daemon_pokes_per_s" => format!("{:.0}", v),
                Some(v) => format!("{}", (v * 1000.0).round() / 1000.0),
            };
            format!("\"{key}\":{text}")
        })
        .collect();
    println!("{{{}}}", json.join(","));
}

/// The keys of the JSON line, in the order of the issue that asked for them.
const KEYS: [&str; 8] = [
    "transition_ratio_full",
    "transition_ratio_normal",
    "pass_ratio_full",
    "due_query_scaling",
    "history_scaling",
    "import_ratio",
    "idle_rss_mb_1m",
    "daemon_pokes_per_s",
];

// ---------------------------------------------------------------------------------------------
// Opening databases

fn open_store(path: &Path, synchronous: Synchronous) -> Store {
    Store::open(
        path,
        OpenOptions {
            create: true,
            synchronous,
            ..OpenOptions::default()
        },
    )
    .expect("open store")
}

/// A raw connection with poked's pragmas (WAL, the given synchronous, busy timeout, foreign keys,
/// journal size limit, untrusted schema) on a database poked created, so its schema is poked's.
fn raw(path: &Path, synchronous: Synchronous) -> Connection {
    drop(open_store(path, synchronous));
    let conn = Connection::open(path).expect("open raw connection");
    let level = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {level}; PRAGMA foreign_keys = ON;
         PRAGMA journal_size_limit = 16777216; PRAGMA trusted_schema = OFF;"
    ))
    .expect("pragmas");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
    conn
}

// ---------------------------------------------------------------------------------------------
// A fleet of agents, as import lines and as raw rows

/// One generated agent. Most are far from due (next due 23-24 hours after `t0`); the due ones
/// are due an hour before `t0`, poked before and never active, so a pass records a miss and a
/// poke for each.
#[derive(Clone)]
struct FleetAgent {
    id: String,
    base: i64,
    max: i64,
    current: i64,
    wait: i64,
    misses: i64,
    last_poke_at: i64,
    created_at: i64,
}

const FLEET_DETAIL: &str = "imported: geometric 1h..2d ×1.5";

/// Agent `i` of a fleet of `n` with `due` of them due, spread evenly through the ids.
fn fleet_agent(i: usize, n: usize, due: usize, t0: Millis) -> FleetAgent {
    let every = (n / due.max(1)).max(1);
    let due = due > 0 && i.is_multiple_of(every) && i / every < due;
    let current = 24 * HOUR;
    FleetAgent {
        id: format!("agent-{i:07}"),
        base: HOUR,
        max: 48 * HOUR,
        current,
        wait: current,
        misses: 3,
        last_poke_at: if due {
            t0 - 25 * HOUR
        } else {
            t0 - (i as i64 % 3_600) * 1000
        },
        created_at: t0 - 30 * 24 * HOUR,
    }
}

impl FleetAgent {
    /// The agent as `poked export` writes it.
    fn line(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "{{\"base_interval_ms\":{},\"command\":null,\"consecutive_misses\":{},\"created_at\":\"{}\",\
             \"current_interval_ms\":{},\"factor\":1.5,\"fresh_ms\":300000,\"freshness\":\"very stale\",\
             \"heartbeat_file\":null,\"id\":\"{}\",\"jitter\":0.0,\"last_activity_at\":null,\
             \"last_poke_at\":\"{}\",\"max_interval_ms\":{},\"next_due_at\":\"{}\",\"paused\":false,\
             \"state\":\"backing off\",\"strategy\":\"geometric\",\"updated_at\":\"{}\",\
             \"very_stale_ms\":900000,\"wait_ms\":{}}}",
            self.base,
            self.misses,
            format_time(self.created_at),
            self.current,
            self.id,
            format_time(self.last_poke_at),
            self.max,
            format_time(self.last_poke_at + self.wait),
            format_time(self.last_poke_at),
            self.wait
        );
    }

    /// Inserts the agent and its log row with raw prepared statements (the import floor).
    fn insert_raw(
        &self,
        agents: &mut rusqlite::Statement<'_>,
        log: &mut rusqlite::Statement<'_>,
        now: Millis,
    ) {
        agents
            .execute(params![
                self.id,
                self.base,
                self.max,
                self.current,
                self.wait,
                self.misses,
                self.last_poke_at,
                self.created_at
            ])
            .expect("insert agent");
        log.execute(params![self.id, now, self.current, self.misses, FLEET_DETAIL])
            .expect("insert log row");
    }
}

const FLOOR_INSERT_AGENT: &str =
    "INSERT INTO agents (id, strategy, base_interval_ms, max_interval_ms, factor,
         jitter, fresh_ms, very_stale_ms, current_interval_ms, wait_ms, consecutive_misses, last_poke_at,
         last_activity_at, paused, command, heartbeat_file, created_at, updated_at)
     VALUES (?1, 'geometric', ?2, ?3, 1.5, 0.0, 300000, 900000, ?4, ?5, ?6, ?7, NULL, 0, NULL, NULL, ?8, ?7)";

const FLOOR_INSERT_LOG: &str =
    "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, detail)
     VALUES (?1, ?2, 'added', ?3, ?4, ?5)";

/// Imports `n` fleet agents into a new database through the library's import (untimed setup).
fn build_fleet(path: &Path, n: usize, due: usize, t0: Millis) -> Store {
    let store = open_store(path, Synchronous::Full);
    let mut start = 0;
    while start < n {
        let end = (start + 100_000).min(n);
        let mut text = String::new();
        for i in start..end {
            fleet_agent(i, n, due, t0).line(&mut text);
        }
        import_text(&store, &text, t0);
        start = end;
    }
    store
}

fn import_text(store: &Store, text: &str, t0: Millis) -> transfer::ImportReport {
    let opened = store.clone();
    transfer::import_from(
        Cursor::new(text.as_bytes()),
        false,
        t0,
        &FixedDraw(0.0),
        move || Ok(opened),
    )
    .expect("import")
}

// ---------------------------------------------------------------------------------------------
// Transitions against the floor

/// The floor: one `BEGIN IMMEDIATE`, one `UPDATE` of one agent row, one `INSERT` of one log
/// row, `COMMIT`. The update writes what a miss writes, so the index on `next_due_at` moves as
/// it does for poked.
struct Floor {
    conn: Connection,
    agents: Vec<FleetAgent>,
    next: usize,
    now: Millis,
}

impl Floor {
    fn new(path: &Path, synchronous: Synchronous, agents: usize, now: Millis) -> Floor {
        let store = build_fleet(path, agents, agents, now);
        drop(store);
        let fleet = (0..agents).map(|i| fleet_agent(i, agents, agents, now)).collect();
        Floor {
            conn: raw(path, synchronous),
            agents: fleet,
            next: 0,
            now,
        }
    }

    fn transaction(&mut self) {
        let i = self.next % self.agents.len();
        self.next += 1;
        self.now += 1;
        let a = &mut self.agents[i];
        a.misses += 1;
        a.current = poked::backoff::after_miss(poked::backoff::Strategy::Geometric, 1.5, a.current, a.max);
        a.wait = a.current;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .expect("begin");
        let changed = tx
            .prepare_cached(
                "UPDATE agents SET current_interval_ms = ?2, wait_ms = ?3, consecutive_misses = ?4,
                     updated_at = ?5 WHERE id = ?1",
            )
            .expect("prepare")
            .execute(params![a.id, a.current, a.wait, a.misses, self.now])
            .expect("update");
        assert_eq!(changed, 1);
        tx.prepare_cached(
            "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses)
             VALUES (?1, ?2, 'miss', ?3, ?4)",
        )
        .expect("prepare")
        .execute(params![a.id, self.now, a.current, a.misses])
        .expect("insert");
        tx.commit().expect("commit");
    }

    /// Runs `n` floor transactions; returns the time they took.
    fn run(&mut self, n: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            self.transaction();
        }
        start.elapsed()
    }

    /// Transactions per second over about `secs` seconds.
    fn rate_for(&mut self, secs: f64) -> f64 {
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed().as_secs_f64() < secs {
            self.transaction();
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    }
}

const TRANSITION_AGENTS: usize = 1_000;

/// Times of the same amount of work by the floor and by poked, round by round. The ratio is the
/// median of the rounds' ratios: each round compares two runs made side by side, so a slow
/// spell of the machine (a neighbour's build, a burst of disk flushes) moves both of its halves,
/// and a round it hit only on one side is outvoted.
#[derive(Default)]
struct Paired {
    floor: Duration,
    poked: Duration,
    ratios: Vec<f64>,
}

impl Paired {
    fn add(&mut self, floor: Duration, poked: Duration) {
        self.floor += floor;
        self.poked += poked;
        self.ratios.push(floor.as_secs_f64() / poked.as_secs_f64());
    }

    /// poked's rate over the floor's (the floor's time over poked's for the same work).
    fn ratio(&mut self) -> f64 {
        median(&mut self.ratios)
    }
}

/// `Store::record_miss` against the floor, alternating rounds. Returns (ratio, floor rate).
fn transitions(
    dir: &Path,
    synchronous: Synchronous,
    (per_round, rounds): (usize, usize),
    rows: &mut Vec<Row>,
) -> (f64, f64) {
    let label = match synchronous {
        Synchronous::Full => "full",
        Synchronous::Normal => "normal",
    };
    eprintln!("transitions, synchronous={label}…");
    let now = SystemClock.now();
    let mut floor = Floor::new(
        &dir.join(format!("floor-{label}.db")),
        synchronous,
        TRANSITION_AGENTS,
        now,
    );
    let path = dir.join(format!("transitions-{label}.db"));
    drop(build_fleet(&path, TRANSITION_AGENTS, TRANSITION_AGENTS, now));
    let store = open_store(&path, synchronous);
    let ids: Vec<AgentId> = (0..TRANSITION_AGENTS)
        .map(|i| AgentId::parse(&format!("agent-{i:07}")).expect("id"))
        .collect();
    let draw = FixedDraw(0.0);
    let mut at = now;
    let mut next = 0;
    let mut poked_run = |n: usize| {
        let start = Instant::now();
        for _ in 0..n {
            at += 1;
            store
                .record_miss(&ids[next % ids.len()], at, &draw)
                .expect("miss");
            next += 1;
        }
        start.elapsed()
    };
    // One warm-up round each, not counted.
    floor.run(per_round / 4);
    poked_run(per_round / 4);
    let mut paired = Paired::default();
    for round in 0..rounds {
        if round % 2 == 0 {
            let floor_time = floor.run(per_round);
            paired.add(floor_time, poked_run(per_round));
        } else {
            let poked_time = poked_run(per_round);
            paired.add(floor.run(per_round), poked_time);
        }
    }
    let n = (per_round * rounds) as f64;
    let (floor_rate, poked_rate) = (n / paired.floor.as_secs_f64(), n / paired.poked.as_secs_f64());
    let ratio = paired.ratio();
    rows.push(Row {
        name: format!("transition (miss), synchronous={label}"),
        poked: format!("{poked_rate:.0} /s"),
        floor: format!("{floor_rate:.0} /s"),
        value: Some(ratio),
        target: "≥ 0.9",
    });
    (ratio, floor_rate)
}

// ---------------------------------------------------------------------------------------------
// One scheduling pass against the floor

fn pass(dir: &Path, sizes: &Sizes, rows: &mut Vec<Row>) -> f64 {
    let n = sizes.pass_agents;
    eprintln!("one pass over {n} due agents…");
    let t0 = SystemClock.now();
    let mut floor = Floor::new(&dir.join("floor-pass.db"), Synchronous::Full, n, t0);
    let path = dir.join("pass.db");
    // Every agent due, poked before and never active: each pass records a miss and a poke.
    let store = build_fleet(&path, n, n, t0);
    let draw = FixedDraw(0.0);
    let cancel = AtomicBool::new(false);
    let options = PassOptions::default();
    let mut paired = Paired::default();
    let run_one = |round: usize| {
        // A day later each round: every agent is due again (the interval is at most 2 days, and
        // the first round's agents were last poked 25 hours before t0).
        let clock = FixedClock::new(t0 + (round as i64) * 49 * HOUR);
        let start = Instant::now();
        let report = run_pass(&store, &clock, &draw, &options, &cancel, &cancel).expect("pass");
        let took = start.elapsed();
        assert_eq!(
            (report.pokes, report.misses),
            (n, n),
            "the pass did not miss and poke every agent"
        );
        took
    };
    for round in 0..sizes.pass_rounds {
        if round % 2 == 0 {
            let floor_time = floor.run(n);
            paired.add(floor_time, run_one(round));
        } else {
            let pass_time = run_one(round);
            paired.add(floor.run(n), pass_time);
        }
    }
    let total = (n * sizes.pass_rounds) as f64;
    let (floor_rate, pass_rate) = (
        total / paired.floor.as_secs_f64(),
        total / paired.poked.as_secs_f64(),
    );
    let ratio = paired.ratio();
    rows.push(Row {
        name: format!("pass over {n} due agents (miss + poke each), full"),
        poked: format!("{pass_rate:.0} agents/s"),
        floor: format!("{floor_rate:.0} /s"),
        value: Some(ratio),
        target: "≥ 0.9",
    });
    ratio
}

// ---------------------------------------------------------------------------------------------
// Import against the floor

/// Imports the large fleet through `poked::commands::transfer::import_from`, chunk by chunk,
/// alternating with the raw floor into another database. Returns (ratio, the imported
/// database, which has `DUE_AGENTS` agents due at `t0`).
fn import(dir: &Path, sizes: &Sizes, t0: Millis, rows: &mut Vec<Row>) -> (f64, PathBuf) {
    let n = sizes.import_agents;
    eprintln!("import of {n} agents…");
    let path = dir.join(format!("fleet-{n}.db"));
    let store = open_store(&path, Synchronous::Full);
    let floor_path = dir.join("floor-import.db");
    let mut floor = raw(&floor_path, Synchronous::Full);
    let chunk = n / sizes.import_chunks;
    let mut paired = Paired::default();
    for c in 0..sizes.import_chunks {
        let range = c * chunk..(c + 1) * chunk;
        let agents: Vec<FleetAgent> = range.map(|i| fleet_agent(i, n, DUE_AGENTS, t0)).collect();
        let mut text = String::with_capacity(agents.len() * 600);
        for a in &agents {
            a.line(&mut text);
        }
        let run_import = || {
            let start = Instant::now();
            let report = import_text(&store, &text, t0);
            let took = start.elapsed();
            assert_eq!(report.added, agents.len() as u64);
            took
        };
        let mut run_floor = || {
            let start = Instant::now();
            for batch in agents.chunks(transfer::BATCH) {
                let tx = floor
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .expect("begin");
                {
                    let mut agents = tx.prepare_cached(FLOOR_INSERT_AGENT).expect("prepare");
                    let mut log = tx.prepare_cached(FLOOR_INSERT_LOG).expect("prepare");
                    for a in batch {
                        a.insert_raw(&mut agents, &mut log, t0);
                    }
                }
                tx.commit().expect("commit");
            }
            start.elapsed()
        };
        if c % 2 == 0 {
            let import_time = run_import();
            paired.add(run_floor(), import_time);
        } else {
            let floor_time = run_floor();
            paired.add(floor_time, run_import());
        }
    }
    let total = (chunk * sizes.import_chunks) as f64;
    let (import_rate, floor_rate) = (
        total / paired.poked.as_secs_f64(),
        total / paired.floor.as_secs_f64(),
    );
    let ratio = paired.ratio();
    rows.push(Row {
        name: format!("import of {n} agents (JSON lines)"),
        poked: format!("{import_rate:.0} rows/s"),
        floor: format!("{floor_rate:.0} rows/s"),
        value: Some(ratio),
        target: "≥ 0.7",
    });
    (ratio, path)
}

// ---------------------------------------------------------------------------------------------
// The due query at growing sizes

/// Agents due at `t0` in every due-query database.
const DUE_AGENTS: usize = 300;

fn due_queries(
    dir: &Path,
    sizes: &Sizes,
    big: &Path,
    t0: Millis,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> f64 {
    let big_n = sizes.import_agents;
    let mut counts = vec![1_000];
    while counts.last().is_some_and(|&c| c * 10 < big_n) {
        counts.push(counts.last().map_or(1_000, |c| c * 10));
    }
    eprintln!("due query at {counts:?} and {big_n} agents…");
    let mut stores: Vec<(usize, Store)> = counts
        .iter()
        .map(|&c| {
            (
                c,
                build_fleet(&dir.join(format!("fleet-{c}.db")), c, DUE_AGENTS, t0),
            )
        })
        .collect();
    stores.push((big_n, open_store(big, Synchronous::Full)));
    let reps = if sizes.quick { 30 } else { 100 };
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); stores.len()];
    for rep in 0..=reps {
        for (k, (_, store)) in stores.iter().enumerate() {
            let start = Instant::now();
            let due = store.due(t0).expect("due");
            let earliest = store.earliest_due().expect("earliest due");
            let took = start.elapsed().as_secs_f64();
            assert_eq!(due.len(), DUE_AGENTS, "wrong number of due agents");
            assert!(earliest.is_some_and(|e| e <= t0));
            if rep > 0 {
                times[k].push(took);
            }
        }
    }
    let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    let (small, large) = (medians[0], medians[medians.len() - 1]);
    let scaling = large / small;
    rows.push(Row {
        name: format!("due query ({DUE_AGENTS} due): {big_n} / 1000 agents"),
        poked: format!("{:.3} ms", large * 1e3),
        floor: format!("{:.3} ms", small * 1e3),
        value: Some(scaling),
        target: "≤ 2",
    });
    let points: Vec<(f64, f64)> = stores
        .iter()
        .zip(&medians)
        .map(|((n, _), t)| (*n as f64, t * 1e3))
        .collect();
    notes.push(format!(
        "due query median ms by agent count: {}",
        points
            .iter()
            .map(|(n, ms)| format!("{n:.0}: {ms:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if !sizes.quick {
        let svg = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/due-query.svg");
        match draw_chart(&svg, &points) {
            Ok(()) => notes.push(format!("chart written to {}", svg.display())),
            Err(e) => notes.push(format!("chart not written: {e}")),
        }
    }
    scaling
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Due-query time against agent count, log-scaled agents, as an SVG (text as `<text>`
/// elements, so no font files are needed).
fn draw_chart(path: &Path, points: &[(f64, f64)]) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let top = points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.25;
    let root = SVGBackend::new(path, (640, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("poked: finding {DUE_AGENTS} due agents and the next due time"),
            ("sans-serif", 18),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((800f64..1_250_000f64).log_scale(), 0f64..top.max(0.1))?;
    chart
        .configure_mesh()
        .x_desc("agents in the database")
        .y_desc("milliseconds (median)")
        .x_label_formatter(&|x| match *x {
            x if x >= 1e6 => format!("{:.0}M", x / 1e6),
            x if x >= 1e3 => format!("{:.0}k", x / 1e3),
            x => format!("{x:.0}"),
        })
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()?;
    chart.draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2)))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;
    root.present()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// History at growing log sizes

/// Builds a log of `n` rows with raw batched inserts (untimed setup): 1,000 agents take turns,
/// and the queried agent `target` has exactly 200 rows spread evenly through it, so
/// `history target --limit 100` returns 100 rows at every size.
fn build_log(path: &Path, n: usize) {
    let conn = raw(path, Synchronous::Full);
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000;")
        .expect("build pragmas");
    let mut conn = conn;
    let t0 = SystemClock.now() - n as i64 * 1000;
    let target_every = n / 200;
    let names: Vec<String> = (0..1_000).map(|i| format!("agent-{i:04}")).collect();
    let mut i = 0;
    while i < n {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .expect("begin");
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO poke_log (agent_id, at, kind, interval_ms, consecutive_misses, outcome)
                     VALUES (?1, ?2, ?3, 300000, 0, ?4)",
                )
                .expect("prepare");
            for j in i..(i + 50_000).min(n) {
                let agent = if j % target_every == target_every / 2 {
                    "target"
                } else {
                    names[j % names.len()].as_str()
                };
                let (kind, outcome) = if j % 2 == 0 {
                    ("poke", Some("sent"))
                } else {
                    ("miss", None)
                };
                stmt.execute(params![agent, t0 + j as i64 * 1000, kind, outcome])
                    .expect("insert log row");
            }
        }
        tx.commit().expect("commit");
        i += 50_000;
    }
}

fn history(dir: &Path, sizes: &Sizes, rows: &mut Vec<Row>) -> f64 {
    let (small_n, big_n) = (10_000, sizes.history_rows);
    eprintln!("history at {small_n} and {big_n} log rows (building the log)…");
    let small = dir.join("log-small.db");
    let big = dir.join("log-big.db");
    build_log(&small, small_n);
    build_log(&big, big_n);
    let stores = [
        open_store(&small, Synchronous::Full),
        open_store(&big, Synchronous::Full),
    ];
    let filter = HistoryFilter {
        agent_id: Some(poked::agent::AgentId::parse("target").unwrap()),
        limit: Some(100),
        ..HistoryFilter::default()
    };
    let reps = if sizes.quick { 10 } else { 30 };
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
    rows.push(Row {
        name: format!("history target --limit 100: {big_n} / {small_n} rows"),
        poked: format!("{:.3} ms", b * 1e3),
        floor: format!("{:.3} ms", s * 1e3),
        value: Some(scaling),
        target: "≤ 2",
    });
    scaling
}

// ---------------------------------------------------------------------------------------------
// The daemon

fn poked_daemon(db: &Path, log: &Path) -> std::io::Result<Child> {
    let stderr = std::fs::File::create(log)?;
    Command::new(env!("CARGO_BIN_EXE_poked"))
        .arg("run")
        .env("POKED_DB", db)
        .env_remove("POKED_NOW")
        .env_remove("POKED_DRAW")
        .env_remove("POKED_SYNCHRONOUS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
}

/// Asks the daemon to stop (SIGTERM) and waits for it, killing it after 30 seconds.
fn stop(mut child: Child) {
    // SAFETY: kill(2) on the pid of a child this process started and has not reaped yet.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().last().unwrap_or("").trim().to_string()
}

/// VmRSS (and VmHWM) of an idle `poked run` over the large fleet, a few seconds after it starts.
fn idle_rss(big: &Path, rows: &mut Vec<Row>, notes: &mut Vec<String>) -> Option<f64> {
    eprintln!("idle daemon over the large fleet…");
    let conn = raw(big, Synchronous::Full);
    let agents: i64 = conn
        .query_row("SELECT count(*) FROM agents", [], |r| r.get(0))
        .expect("count");
    // Make every agent far from due: the few due ones were last poked now.
    let now = SystemClock.now();
    conn.execute(
        "UPDATE agents SET last_poke_at = ?1, updated_at = ?1 WHERE next_due_at <= ?1 + 3600000",
        [now],
    )
    .expect("push due agents away");
    drop(conn);
    let log = big.with_extension("daemon.log");
    let mut child = match poked_daemon(big, &log) {
        Ok(child) => child,
        Err(e) => {
            notes.push(format!("idle_rss_mb_1m: could not start poked run: {e}"));
            return None;
        }
    };
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(5));
    if let Ok(Some(status)) = child.try_wait() {
        notes.push(format!(
            "idle_rss_mb_1m is null: `poked run` exited ({status}): {}",
            tail(&log)
        ));
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    let (rss, peak) = (field("VmRSS:"), field("VmHWM:"));
    stop(child);
    let rss = rss?;
    rows.push(Row {
        name: format!("idle `poked run` over {agents} agents (VmRSS after 5 s)"),
        poked: format!("{rss:.1} MB"),
        floor: format!("peak {:.1} MB", peak.unwrap_or(f64::NAN)),
        value: Some(rss),
        target: "≤ 32 MB",
    });
    Some(rss)
}

/// Pokes committed per second by `poked run` over 2,000 command-less agents with a 1 ms interval,
/// counted over a window that starts once the daemon has made its first poke; and that over the
/// FULL floor measured just before and just after.
fn daemon_throughput(
    dir: &Path,
    sizes: &Sizes,
    full_floor: Option<f64>,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> Option<f64> {
    eprintln!("daemon for {} s over 2000 agents…", sizes.daemon_secs);
    let now = SystemClock.now();
    let path = dir.join("daemon.db");
    let store = open_store(&path, Synchronous::Full);
    let mut text = String::new();
    for i in 0..2_000 {
        let _ = writeln!(
            text,
            "{{\"id\":\"busy-{i:04}\",\"strategy\":\"fixed\",\"base_interval_ms\":1,\"max_interval_ms\":1,\
             \"created_at\":\"{}\"}}",
            format_time(now - 1000)
        );
    }
    import_text(&store, &text, now);
    drop(store);
    let mut floor = Floor::new(
        &dir.join("floor-daemon.db"),
        Synchronous::Full,
        TRANSITION_AGENTS,
        now,
    );
    let log = dir.join("daemon.log");
    let mut child = match poked_daemon(&path, &log) {
        Ok(child) => child,
        Err(e) => {
            notes.push(format!("daemon_pokes_per_s: could not start poked run: {e}"));
            return None;
        }
    };
    let reader =
        Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("reader");
    reader
        .busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    let pokes = || -> i64 {
        reader
            .query_row("SELECT count(*) FROM poke_log WHERE kind = 'poke'", [], |r| {
                r.get(0)
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while pokes() == 0 {
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            notes.push(format!(
                "daemon_pokes_per_s is null: `poked run` made no poke: {}",
                tail(&log)
            ));
            stop(child);
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Windows of the daemon's work alternate with slices of the floor: the daemon is stopped
    // (SIGSTOP) while the floor runs on its own database, and continued (SIGCONT) after, so the
    // two never compete for the disk and both see the same spells of a busy machine.
    let signal = |sig: i32| {
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped yet.
        unsafe {
            libc::kill(child.id() as i32, sig);
        }
    };
    let windows = sizes.daemon_secs.div_ceil(2).max(1);
    let window = Duration::from_secs_f64(sizes.daemon_secs as f64 / windows as f64);
    signal(libc::SIGSTOP);
    let mut floor_rates = vec![floor.rate_for(1.0)];
    let (mut total_pokes, mut total_time, mut ratios) = (0, 0.0, Vec::new());
    for _ in 0..windows {
        signal(libc::SIGCONT);
        let (start, first) = (Instant::now(), pokes());
        std::thread::sleep(window);
        let (elapsed, last) = (start.elapsed().as_secs_f64(), pokes());
        signal(libc::SIGSTOP);
        floor_rates.push(floor.rate_for(1.0));
        let rate = (last - first) as f64 / elapsed;
        let around = floor_rates[floor_rates.len() - 2..].iter().sum::<f64>() / 2.0;
        ratios.push(rate / around);
        total_pokes += last - first;
        total_time += elapsed;
    }
    signal(libc::SIGCONT);
    let alive = matches!(child.try_wait(), Ok(None));
    stop(child);
    if !alive {
        notes.push(format!(
            "`poked run` stopped during the measurement: {}",
            tail(&log)
        ));
    }
    let rate = total_pokes as f64 / total_time;
    let floor_rate = floor_rates.iter().sum::<f64>() / floor_rates.len() as f64;
    let ratio = median(&mut ratios);
    rows.push(Row {
        name: format!("`poked run` {} s, 2000 agents at 1 ms, full", sizes.daemon_secs),
        poked: format!("{rate:.0} pokes/s"),
        floor: format!("{floor_rate:.0} /s"),
        value: Some(ratio),
        target: "≥ 0.8",
    });
    let earlier = full_floor.map_or(String::new(), |f| {
        format!("; {:.3} against the transition floor measured earlier", rate / f)
    });
    notes.push(format!(
        "daemon pokes/s over the FULL floor = {ratio:.3} (the median of {windows} windows, each against the \
         floor measured just before and after it while the daemon was stopped{earlier})"
    ));
    Some(rate)
}

// ---------------------------------------------------------------------------------------------
// Output

fn print_table(rows: &[Row]) {
    let widths = [
        rows.iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(11),
        rows.iter()
            .map(|r| r.poked.chars().count())
            .max()
            .unwrap_or(0)
            .max(5),
        rows.iter()
            .map(|r| r.floor.chars().count())
            .max()
            .unwrap_or(0)
            .max(17),
    ];
    println!();
    println!(
        "{:<w0$}  {:>w1$}  {:>w2$}  {:>8}  target",
        "measurement",
        "poked",
        "floor / small size",
        "value",
        w0 = widths[0],
        w1 = widths[1],
        w2 = widths[2]
    );
    for r in rows {
        println!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>8}  {}",
            r.name,
            r.poked,
            r.floor,
            r.value.map_or("-".into(), |v| format!("{v:.3}")),
            r.target,
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
}
