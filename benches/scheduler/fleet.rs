//! The generated data every measurement starts from: fleets of agents (as `poked export` lines,
//! imported through the library, or as the state a floor writes by hand), busy agents for the
//! daemon, and long logs written with raw batched inserts.
//!
//! Building is never timed. The library calls that build a fleet are here, in one place, so a
//! change to poked's import API is adapted once.

use std::fmt::Write as _;
use std::io::Cursor;
use std::path::Path;

use poked::clock::Millis;
use poked::random::FixedDraw;
use poked::store::{Store, Synchronous};
use poked::transfer;
use poked::units::format_time;
use rusqlite::{Connection, params};

use crate::common::{HOUR, open_store};

/// One generated agent. Most are far from due (next due 23-24 hours after `t0`); the due ones
/// are due an hour before `t0`, poked before and never active, so a pass records a miss and a
/// poke for each.
#[derive(Clone)]
pub struct FleetAgent {
    pub id: String,
    pub base: i64,
    pub max: i64,
    pub current: i64,
    pub wait: i64,
    pub misses: i64,
    pub last_poke_at: i64,
    pub created_at: i64,
}

/// Agent `i` of a fleet of `n` with `due` of them due, spread evenly through the ids.
pub fn fleet_agent(i: usize, n: usize, due: usize, t0: Millis) -> FleetAgent {
    let every = (n / due.max(1)).max(1);
    let due = due > 0 && i.is_multiple_of(every) && i / every < due;
    let current = 24 * HOUR;
    FleetAgent {
        id: fleet_id(i),
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

/// The id of agent `i` of a fleet.
pub fn fleet_id(i: usize) -> String {
    format!("agent-{i:07}")
}

impl FleetAgent {
    /// The agent as `poked export` writes it.
    pub fn line(&self, out: &mut String) {
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
}

/// The import lines of agents `range` of a fleet of `n` with `due` due.
pub fn fleet_text(range: std::ops::Range<usize>, n: usize, due: usize, t0: Millis) -> String {
    let mut text = String::with_capacity(range.len() * 600);
    for i in range {
        fleet_agent(i, n, due, t0).line(&mut text);
    }
    text
}

/// Imports `n` fleet agents, `due` of them due at `t0`, into a new database through the
/// library's import.
pub fn build_fleet(path: &Path, n: usize, due: usize, t0: Millis) -> Store {
    let store = open_store(path, Synchronous::Full);
    let mut start = 0;
    while start < n {
        let end = (start + 100_000).min(n);
        import_text(&store, &fleet_text(start..end, n, due, t0), t0);
        start = end;
    }
    store
}

/// Imports JSON lines through `poked::transfer::import_from`; returns how many
/// agents it added.
pub fn import_text(store: &Store, text: &str, t0: Millis) -> u64 {
    let opened = store.clone();
    transfer::import_from(
        Cursor::new(text.as_bytes()),
        false,
        t0,
        &FixedDraw(0.0),
        move || Ok(opened),
    )
    .expect("import")
    .added
}

/// A database of `n` agents named `busy-NNNN` with a fixed 1 ms interval, created a second
/// before `now` and never poked, so a daemon pokes each again and again as fast as it can;
/// each runs `command` (an argv) if given.
pub fn build_busy(path: &Path, n: usize, command: Option<&[&str]>, now: Millis) {
    let store = open_store(path, Synchronous::Full);
    let command = command.map_or("null".to_string(), |argv| {
        serde_json::Value::from(argv.to_vec()).to_string()
    });
    let mut text = String::new();
    for i in 0..n {
        let _ = writeln!(
            text,
            "{{\"id\":\"busy-{i:04}\",\"strategy\":\"fixed\",\"base_interval_ms\":1,\"max_interval_ms\":1,\
             \"created_at\":\"{}\",\"command\":{command}}}",
            format_time(now - 1000)
        );
    }
    assert_eq!(import_text(&store, &text, now), n as u64);
}

/// Appends `n` log rows with raw prepared inserts, `batch` rows per transaction, one a second
/// ending now, alternating a command-less poke (`sent`) and a miss; row `j` belongs to
/// `agent(j)`. For building, not for timing: the caller sets `synchronous = OFF`.
pub fn fill_log<'a>(
    conn: &mut Connection,
    n: usize,
    batch: usize,
    t0: Millis,
    agent: impl Fn(usize) -> &'a str,
) {
    let start = t0 - n as i64 * 1000;
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
            for j in i..(i + batch).min(n) {
                let (kind, outcome) = if j % 2 == 0 {
                    ("poke", Some("sent"))
                } else {
                    ("miss", None)
                };
                stmt.execute(params![agent(j), start + j as i64 * 1000, kind, outcome])
                    .expect("insert log row");
            }
        }
        tx.commit().expect("commit");
        i += batch;
    }
}
