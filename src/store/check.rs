//! `poked check`: SQLite's integrity check and poked's invariants, each agent's state held
//! against its log.
//!
//! Everything is read inside one deferred read transaction, so a daemon committing meanwhile
//! never causes a false breach (a breach is never just a write half seen), and the transaction
//! ends before returning.
//!
//! What the log determines, and so what is compared: misses in a row (the `miss` rows since the
//! last activity, reset or `added` row), interval and misses (the newest row records them),
//! last poke (the newest `poke` row, or escalation whose command ran), last activity (the
//! latest `activity` row), and paused (the newest `paused`/`resumed` row, else the `added`
//! row). A clock correction (an `updated` row saying `clock set back: moved X from T to now`)
//! moves an instant back as it did the agent's. A rule is skipped for an agent when the row it
//! starts from is gone (pruned), and last poke and last activity are not compared for an agent
//! imported with them (its `added` row does not hold them) until its log sets them again.

use rusqlite::Connection;

use super::Store;
use super::transitions::{CLOCK_SET_BACK, PAUSED_NOTE};
use crate::clock::Millis;
use crate::error::Result;
use crate::log::{Kind, Outcome};
use crate::units::{format_duration, format_time};

/// The rules `poked check` holds the file to, by their stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// SQLite's `integrity_check` says `ok`.
    Integrity,
    /// base ≤ current interval ≤ max.
    IntervalInRange,
    /// 1 ms ≤ wait ≤ current interval.
    WaitInRange,
    /// misses in a row ≥ 0.
    MissesNotNegative,
    /// misses in a row = the `miss` rows since the last activity, reset or `added` row.
    MissesMatchLog,
    /// the newest log row has the agent's interval and misses.
    LatestLogMatchesState,
    /// last poke = the newest poke (or escalation that ran).
    LastPokeMatchesLog,
    /// last activity = the latest activity row.
    LastActivityMatchesLog,
    /// paused = the newest pause, resume or `added` row.
    PausedMatchesLog,
    /// no pending row without a daemon to finish it.
    PendingWithoutDaemon,
}

impl Rule {
    /// The rule's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Integrity => "integrity",
            Rule::IntervalInRange => "interval_in_range",
            Rule::WaitInRange => "wait_in_range",
            Rule::MissesNotNegative => "misses_not_negative",
            Rule::MissesMatchLog => "misses_match_log",
            Rule::LatestLogMatchesState => "latest_log_matches_state",
            Rule::LastPokeMatchesLog => "last_poke_matches_log",
            Rule::LastActivityMatchesLog => "last_activity_matches_log",
            Rule::PausedMatchesLog => "paused_matches_log",
            Rule::PendingWithoutDaemon => "pending_without_daemon",
        }
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    /// The agent concerned, when the rule is about one.
    pub agent_id: Option<String>,
    pub rule: Rule,
    /// What is wrong, for people.
    pub detail: String,
}

/// A pending row: a breach unless a daemon is alive to finish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRow {
    pub log_id: i64,
    pub agent_id: String,
}

/// What [`Store::check_snapshot`] read in its one snapshot.
#[derive(Debug, Clone, Default)]
pub struct CheckSnapshot {
    /// Every breach of the rules that only need the database.
    pub breaches: Vec<Breach>,
    /// Every pending row: breaches unless a daemon is alive (not the store's to know).
    pub pending: Vec<PendingRow>,
    pub agents: i64,
    pub log_rows: i64,
}

impl Store {
    /// `PRAGMA integrity_check` and poked's invariants, all read in one snapshot.
    pub fn check_snapshot(&self) -> Result<CheckSnapshot> {
        self.snapshot(read_invariants)
    }

    /// Which of `ids` are still pending now (a fresh read, after a daemon may have finished
    /// them).
    pub fn still_pending(&self, ids: &[i64]) -> Result<Vec<i64>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT outcome = 'pending' FROM poke_log WHERE id = ?1")?;
            let mut still = Vec::new();
            for &id in ids {
                if stmt.query_row([id], |row| row.get::<_, bool>(0)).unwrap_or(false) {
                    still.push(id);
                }
            }
            Ok(still)
        })
    }
}

fn breach(agent: Option<String>, rule: Rule, detail: String) -> Breach {
    Breach {
        agent_id: agent,
        rule,
        detail,
    }
}

fn read_invariants(conn: &Connection) -> Result<CheckSnapshot> {
    let mut snap = CheckSnapshot::default();
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    for line in stmt.query_map([], |row| row.get::<_, String>(0))? {
        let line = line?;
        if line != "ok" {
            snap.breaches.push(breach(None, Rule::Integrity, line));
        }
    }
    snap.agents = conn.query_row("SELECT count(*) FROM agents", [], |row| row.get(0))?;
    snap.log_rows = conn.query_row("SELECT count(*) FROM poke_log", [], |row| row.get(0))?;
    ranges(conn, &mut snap.breaches)?;
    misses_against_log(conn, &mut snap.breaches)?;
    newest_row_against_state(conn, &mut snap.breaches)?;
    instants_against_log(conn, &mut snap.breaches)?;
    let mut stmt = conn.prepare("SELECT id, agent_id FROM poke_log WHERE outcome = 'pending' ORDER BY id")?;
    let rows = stmt.query_map([], |row| {
        Ok(PendingRow {
            log_id: row.get(0)?,
            agent_id: row.get(1)?,
        })
    })?;
    snap.pending = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(snap)
}

/// Interval, wait and misses within their ranges.
fn ranges(conn: &Connection, out: &mut Vec<Breach>) -> Result<()> {
    let ms = format_duration;
    let mut stmt = conn.prepare(
        "SELECT id, current_interval_ms, base_interval_ms, max_interval_ms, wait_ms, consecutive_misses
         FROM agents ORDER BY id",
    )?;
    let rows = stmt.query_map([], |row| <(String, i64, i64, i64, i64, i64)>::try_from(row))?;
    for row in rows {
        let (id, interval, base, max, wait, misses) = row?;
        if !(base..=max).contains(&interval) {
            out.push(breach(
                Some(id.clone()),
                Rule::IntervalInRange,
                format!(
                    "current_interval_ms {interval} ({}) is outside [base, max] = [{}, {}]",
                    ms(interval),
                    ms(base),
                    ms(max)
                ),
            ));
        }
        if !(1..=interval.max(1)).contains(&wait) {
            out.push(breach(
                Some(id.clone()),
                Rule::WaitInRange,
                format!("wait_ms {wait} is outside [1 ms, interval] = [1, {interval}]"),
            ));
        }
        if misses < 0 {
            out.push(breach(
                Some(id),
                Rule::MissesNotNegative,
                format!("consecutive_misses is {misses}"),
            ));
        }
    }
    Ok(())
}

/// Misses in a row against the log: the anchor's own count (0 for add, activity and reset; an
/// imported agent's `added` row carries the misses it came with) plus the `miss` rows after it.
/// Only when that row is still there (prune may have taken it).
fn misses_against_log(conn: &Connection, out: &mut Vec<Breach>) -> Result<()> {
    let mut stmt = conn.prepare(
        "SELECT a.id, a.consecutive_misses, anchor.id, anchor.kind,
                anchor.consecutive_misses + (SELECT count(*) FROM poke_log m
                 WHERE m.agent_id = a.id AND m.kind = 'miss' AND m.id > anchor.id)
         FROM agents a
         JOIN poke_log anchor ON anchor.id = (
             SELECT max(l.id) FROM poke_log l
             WHERE l.agent_id = a.id AND l.kind IN ('activity', 'reset', 'added'))
         ORDER BY a.id",
    )?;
    let rows = stmt.query_map([], |row| <(String, i64, i64, String, i64)>::try_from(row))?;
    for row in rows {
        let (id, misses, anchor, kind, logged) = row?;
        if misses != logged {
            out.push(breach(
                Some(id),
                Rule::MissesMatchLog,
                format!(
                    "consecutive_misses is {misses} but the log has {logged} miss rows since its `{kind}` row {anchor}"
                ),
            ));
        }
    }
    Ok(())
}

/// The newest row (by id: the last transition committed) records the state it left.
fn newest_row_against_state(conn: &Connection, out: &mut Vec<Breach>) -> Result<()> {
    let ms = format_duration;
    let mut stmt = conn.prepare(
        "SELECT a.id, a.current_interval_ms, a.consecutive_misses, l.id, l.kind, l.interval_ms,
                l.consecutive_misses
         FROM agents a
         JOIN poke_log l ON l.id = (SELECT max(x.id) FROM poke_log x WHERE x.agent_id = a.id)
         WHERE l.interval_ms IS NOT a.current_interval_ms
            OR l.consecutive_misses IS NOT a.consecutive_misses
         ORDER BY a.id",
    )?;
    let rows = stmt.query_map([], |row| {
        <(String, i64, i64, i64, String, i64, i64)>::try_from(row)
    })?;
    for row in rows {
        let (id, interval, misses, log_id, kind, log_interval, log_misses) = row?;
        out.push(breach(
            Some(id),
            Rule::LatestLogMatchesState,
            format!(
                "its newest log row {log_id} (`{kind}`) has interval {} and {log_misses} misses; \
                 the agent has interval {} and {misses} misses",
                ms(log_interval),
                ms(interval)
            ),
        ));
    }
    Ok(())
}

/// What an agent's log says its last poke, last activity and paused flag are, folded over its
/// rows since its newest `added` row.
#[derive(Debug, Default)]
struct Replay {
    /// The newest `added` row was seen (not pruned).
    anchored: bool,
    /// That row came from an import, which may have set the instants without a row.
    imported: bool,
    paused: bool,
    last_poke: Option<Millis>,
    last_activity: Option<Millis>,
}

impl Replay {
    fn row(&mut self, kind: Kind, at: Millis, outcome: Option<Outcome>, detail: Option<&str>) {
        let detail = detail.unwrap_or("");
        match kind {
            Kind::Added => {
                *self = Replay {
                    anchored: true,
                    imported: detail.starts_with("imported") || detail.starts_with("replaced by import"),
                    paused: detail.ends_with(PAUSED_NOTE),
                    ..Replay::default()
                }
            }
            Kind::Poke => self.last_poke = Some(at),
            Kind::Escalation if outcome != Some(Outcome::Held) => self.last_poke = Some(at),
            Kind::Activity => self.last_activity = Some(self.last_activity.map_or(at, |a| a.max(at))),
            Kind::Paused => self.paused = true,
            Kind::Resumed => self.paused = false,
            Kind::Updated if detail.starts_with(CLOCK_SET_BACK) => {
                let moved = |field: &str, value: &mut Option<Millis>| {
                    if detail.contains(field) {
                        *value = value.map(|v| v.min(at));
                    }
                };
                moved("last_poke_at", &mut self.last_poke);
                moved("last_activity_at", &mut self.last_activity);
            }
            _ => {}
        }
    }
}

/// Last poke, last activity and paused against a replay of each agent's log.
fn instants_against_log(conn: &Connection, out: &mut Vec<Breach>) -> Result<()> {
    let mut agents =
        conn.prepare("SELECT id, last_poke_at, last_activity_at, paused FROM agents ORDER BY id")?;
    let mut log = conn.prepare(
        "SELECT kind, at, outcome, detail FROM poke_log
         WHERE agent_id = ?1 AND id >= coalesce((SELECT max(id) FROM poke_log
                                                 WHERE agent_id = ?1 AND kind = 'added'), 0)
           AND kind IN ('added', 'poke', 'escalation', 'activity', 'paused', 'resumed', 'updated')
         ORDER BY id",
    )?;
    let rows = agents.query_map([], |row| {
        <(String, Option<Millis>, Option<Millis>, bool)>::try_from(row)
    })?;
    let show = |at: Option<Millis>| at.map_or_else(|| "never".to_string(), format_time);
    for row in rows {
        let (id, last_poke, last_activity, paused) = row?;
        let mut replay = Replay::default();
        let mut rows = log.query([&id])?;
        while let Some(r) = rows.next()? {
            let kind: String = r.get(0)?;
            let outcome: Option<String> = r.get(2)?;
            let detail: Option<String> = r.get(3)?;
            if let Ok(kind) = kind.parse() {
                replay.row(
                    kind,
                    r.get(1)?,
                    outcome.and_then(|o| o.parse().ok()),
                    detail.as_deref(),
                );
            }
        }
        if !replay.anchored {
            continue;
        }
        if replay.paused != paused {
            out.push(breach(
                Some(id.clone()),
                Rule::PausedMatchesLog,
                format!("paused is {paused} but the log says {}", replay.paused),
            ));
        }
        let mut compare = |rule: Rule, name: &str, stored: Option<Millis>, logged: Option<Millis>| {
            if stored != logged && !(replay.imported && logged.is_none()) {
                out.push(breach(
                    Some(id.clone()),
                    rule,
                    format!("{name} is {} but the log says {}", show(stored), show(logged)),
                ));
            }
        };
        compare(
            Rule::LastPokeMatchesLog,
            "last_poke_at",
            last_poke,
            replay.last_poke,
        );
        if !replay.imported {
            compare(
                Rule::LastActivityMatchesLog,
                "last_activity_at",
                last_activity,
                replay.last_activity,
            );
        }
    }
    Ok(())
}
