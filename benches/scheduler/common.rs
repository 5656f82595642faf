//! What every measurement shares: the sizes of a run, the run's context (its temporary
//! directory, its start time, the report being filled), opening databases with poked's pragmas,
//! and the interleaved rounds that turn two sides' times into one ratio.
//!
//! Timings on a shared two-core machine drift during a run, so no figure is a time on its own:
//! each is poked's work against a baseline measured in the same process, in rounds that
//! alternate which side goes first, and the ratio is the median of the rounds' ratios.

use std::path::{Path, PathBuf};
use std::time::Duration;

use poked::clock::{Clock, Millis, SystemClock};
use poked::store::{OpenOptions, Store, Synchronous};
use rusqlite::{Connection, OpenFlags};

use crate::report::Report;

pub const HOUR: i64 = 3_600_000;

/// The sizes of one run: `--quick` keeps every measurement but makes it smaller.
pub struct Sizes {
    pub quick: bool,
    /// Transitions per side and round, and rounds, for FULL and NORMAL.
    pub full_txns: (usize, usize),
    pub normal_txns: (usize, usize),
    /// Agents in the pass, and rounds.
    pub pass_agents: usize,
    pub pass_rounds: usize,
    /// Agents imported (the due query's large size), in this many interleaved chunks.
    pub import_agents: usize,
    pub import_chunks: usize,
    /// Log rows of the large history.
    pub history_rows: usize,
    /// Seconds the daemon runs for each of its throughputs.
    pub daemon_secs: u64,
    /// Overdue agents the daemon catches up with.
    pub catchup_agents: usize,
    /// Pairs of `poked activity` and `sqlite3` runs.
    pub cli_pairs: usize,
    /// Log rows of the version-1 database that `poked init` upgrades.
    pub migrate_rows: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        let pick = |quick_size: usize, full_size: usize| if quick { quick_size } else { full_size };
        Sizes {
            quick,
            full_txns: (pick(100, 250), pick(6, 20)),
            normal_txns: (pick(400, 1_000), pick(6, 20)),
            pass_agents: pick(2_000, 10_000),
            pass_rounds: pick(3, 5),
            import_agents: pick(100_000, 1_000_000),
            import_chunks: pick(4, 10),
            history_rows: pick(1_000_000, 10_000_000),
            daemon_secs: pick(3, 10) as u64,
            catchup_agents: 100_000,
            cli_pairs: pick(10, 30),
            migrate_rows: pick(1_000_000, 10_000_000),
        }
    }
}

/// One run: where its databases live, its sizes, its start and what it has found so far.
pub struct Bench {
    pub dir: tempfile::TempDir,
    pub sizes: Sizes,
    /// "Now" for the generated fleets: the due agents are due an hour before it.
    pub t0: Millis,
    /// Redraw `docs/due-query.svg` (`--write-chart`).
    pub write_chart: bool,
    pub report: Report,
    /// The imported large fleet, shared by the due query and the idle daemon.
    pub big_fleet: Option<PathBuf>,
}

impl Bench {
    pub fn new(sizes: Sizes, write_chart: bool) -> Bench {
        Bench {
            dir: tempfile::Builder::new()
                .prefix("poked-bench-")
                .tempdir()
                .expect("temporary directory"),
            sizes,
            t0: SystemClock.now(),
            write_chart,
            report: Report::default(),
            big_fleet: None,
        }
    }

    /// A file in the run's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A store with one connection, created if missing.
pub fn open_store(path: &Path, synchronous: Synchronous) -> Store {
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

pub fn sync_label(synchronous: Synchronous) -> &'static str {
    match synchronous {
        Synchronous::Full => "full",
        Synchronous::Normal => "normal",
    }
}

/// A raw connection with poked's pragmas (WAL, the given synchronous, busy timeout, foreign keys,
/// journal size limit, untrusted schema) on a database poked created, so its schema is poked's.
pub fn raw(path: &Path, synchronous: Synchronous) -> Connection {
    drop(open_store(path, synchronous));
    let conn = Connection::open(path).expect("open raw connection");
    let level = sync_label(synchronous).to_uppercase();
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

/// A read-only connection, to watch a database another process writes.
pub fn reader(path: &Path) -> Connection {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("reader");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    conn
}

/// The one integer a query returns (a count), 0 if it cannot be read right now.
pub fn count(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> i64 {
    conn.query_row(sql, params, |r| r.get(0)).unwrap_or(0)
}

/// The median; of an even number of values, the mean of the middle two.
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len().is_multiple_of(2) {
        (xs[mid - 1] + xs[mid]) / 2.0
    } else {
        xs[mid]
    }
}

/// One side of an interleaved comparison: given the round, does that round's work and returns
/// how long it took.
pub type Side<'a> = &'a mut dyn FnMut(usize) -> Duration;

/// Runs every side once per round, rotating which side goes first, so a slow spell of the
/// machine (a neighbour's build, a burst of disk flushes) falls on each side alike. Returns each
/// side's times, round by round.
pub fn rounds(rounds: usize, sides: &mut [Side<'_>]) -> Vec<Vec<Duration>> {
    let mut times = vec![Vec::with_capacity(rounds); sides.len()];
    for round in 0..rounds {
        for k in 0..sides.len() {
            let side = (round + k) % sides.len();
            times[side].push((sides[side])(round));
        }
    }
    times
}

/// poked against a floor that did the same work in the same rounds.
pub struct Compared {
    /// The median of the rounds' ratios (the floor's time over poked's, so poked's rate over
    /// the floor's): a round that a slow spell hit on one side only is outvoted.
    pub ratio: f64,
    /// Work per second over all rounds.
    pub poked_rate: f64,
    pub floor_rate: f64,
}

impl Compared {
    /// The table's two figures: the rates, in their units (`rows/s`).
    pub fn sides(&self, poked_unit: &str, floor_unit: &str) -> [String; 2] {
        [
            format!("{:.0} {poked_unit}", self.poked_rate),
            format!("{:.0} {floor_unit}", self.floor_rate),
        ]
    }

    /// `work` is the amount of work of one round (transactions, agents, rows).
    pub fn new(floor: &[Duration], poked: &[Duration], work: usize) -> Compared {
        let mut ratios: Vec<f64> = floor
            .iter()
            .zip(poked)
            .map(|(f, p)| f.as_secs_f64() / p.as_secs_f64())
            .collect();
        let rate =
            |times: &[Duration]| (work * times.len()) as f64 / times.iter().sum::<Duration>().as_secs_f64();
        Compared {
            ratio: median(&mut ratios),
            poked_rate: rate(poked),
            floor_rate: rate(floor),
        }
    }
}
