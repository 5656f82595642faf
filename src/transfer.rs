//! Agents as JSON lines, one object per line: what `poked export` writes and `poked import`
//! reads, and the agent object every `--json` output shares.
//!
//! # The format
//!
//! Each line is the object `poked list --json` prints for an agent, on one line: its columns
//! (`id`, `strategy`, `base_interval_ms`, `max_interval_ms`, `factor`, `jitter`, `fresh_ms`,
//! `very_stale_ms`, `current_interval_ms`, `wait_ms`, `consecutive_misses`, `last_poke_at`,
//! `last_activity_at`, `paused`, `command`, `heartbeat_file`, `activity_cmd`, `echo_ms`,
//! `only_if`, `grace_ms`, `escalate_limit`, `escalate_window_ms`, `held_until_at`,
//! `heartbeat_seen_at`, `probe_seen_at`, `created_at`, `updated_at`), its ladder `rungs` (an
//! array of `{"misses": N, "command": [...]}`), and the derived `state`, `freshness` and
//! `next_due_at`, which an import ignores. Export writes every agent by id; importing that into
//! an empty database and exporting again gives the same bytes.
//!
//! # Import
//!
//! Only `id` is required. A missing (or `null`) key takes the value `poked add` would give it:
//! the default settings, interval = base, no misses, never poked, never active, not paused, no
//! hold, created now, and a wait drawn for the interval. Each line is checked like `add` checks
//! its options, plus the state: `current_interval_ms` within `[base, max]`, `wait_ms` within
//! `[1, current_interval_ms]`, `consecutive_misses` ≥ 0. A time in the future is taken as now
//! (SPEC §3: a future timestamp never keeps an agent from coming due), except the hold, which
//! lies ahead by nature. Unknown keys are refused, so a misspelt key is not silently dropped.
//! Blank lines are skipped.
//!
//! Agents are written in batches of [`BATCH`], each one transaction with one log row per agent
//! ([`Store::import_batch`]). A bad line stops the import with an error naming its line number:
//! nothing of its batch is written, and the message says which lines before it were. An id that
//! already exists (in the database, or earlier in the input) is such an error unless
//! `replace` is given, which overwrites the agent's settings, state and ladder with the line's
//! and logs an `added` row saying it replaced the agent; its history stays.
//!
//! Parsing runs on the calling thread while a second (scoped) thread writes the previous
//! batch, so the JSON work overlaps the commits; the database is opened only once the first
//! batch has been read and checked, so an input that is bad from its first line creates no file.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::mpsc;

use serde_json::{Map, Value, json};

use crate::agent::{Agent, AgentId, AgentRecord, Naming, Rung, Settings, validate_argv, validate_ladder};
use crate::backoff;
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::random::Draw;
use crate::rules;
use crate::store::Store;
use crate::units::{format_time, parse_rfc3339};

/// Agents per transaction: large enough that the commit's cost is shared by thousands of rows,
/// small enough that one transaction holds the write lock for only a fraction of a second.
pub const BATCH: usize = 5000;

/// An instant as JSON: an RFC 3339 UTC string, or null.
pub fn time_json(at: Option<Millis>) -> Value {
    at.map_or(Value::Null, |at| Value::String(format_time(at)))
}

/// An agent (and its ladder) as the JSON object of `list --json`, `show --json` and `export`.
pub fn agent_json(agent: &Agent, rungs: &[Rung], now: Millis) -> Value {
    let s = &agent.settings;
    json!({
        "id": agent.id.as_str(),
        "state": agent.state(now).as_str(),
        "freshness": agent.freshness(now).as_str(),
        "strategy": s.strategy.as_str(),
        "base_interval_ms": s.base_interval_ms,
        "max_interval_ms": s.max_interval_ms,
        "factor": s.factor,
        "jitter": s.jitter,
        "fresh_ms": s.fresh_ms,
        "very_stale_ms": s.very_stale_ms,
        "current_interval_ms": agent.current_interval_ms,
        "wait_ms": agent.wait_ms,
        "consecutive_misses": agent.consecutive_misses,
        "last_poke_at": time_json(agent.last_poke_at),
        "last_activity_at": time_json(agent.last_activity_at),
        "paused": agent.paused,
        "command": s.command,
        "heartbeat_file": s.heartbeat_file,
        "activity_cmd": s.activity_cmd,
        "echo_ms": s.echo_ms,
        "only_if": s.only_if,
        "grace_ms": s.grace_ms,
        "escalate_limit": s.escalate_limit,
        "escalate_window_ms": s.escalate_window_ms,
        "rungs": rungs.iter().map(|r| json!({"misses": r.misses, "command": r.command})).collect::<Vec<_>>(),
        "held_until_at": time_json(agent.held_until_at),
        "heartbeat_seen_at": time_json(agent.heartbeat_seen_at),
        "probe_seen_at": time_json(agent.probe_seen_at),
        "created_at": format_time(agent.created_at),
        "updated_at": format_time(agent.updated_at),
        "next_due_at": time_json(agent.next_due_at),
    })
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Agents that did not exist before.
    pub added: u64,
    /// Existing agents overwritten (`replace`).
    pub replaced: u64,
}

/// Writes every agent of `store` to `out` as JSON lines; returns how many.
pub fn export_to(store: &Store, out: &mut dyn Write, now: Millis) -> Result<u64> {
    let mut count = 0;
    store.each_agent(|agent, rungs| {
        let stdout = |source| Error::Io {
            path: "<stdout>".into(),
            source,
        };
        // Serialising a `Value` to a writer only fails on I/O errors.
        serde_json::to_writer(&mut *out, &agent_json(&agent, &rungs, now)).map_err(|e| stdout(e.into()))?;
        out.write_all(b"\n").map_err(stdout)?;
        count += 1;
        Ok(())
    })?;
    Ok(count)
}

/// A batch of parsed agents with the line number of each.
struct Batch {
    lines: Vec<u64>,
    agents: Vec<AgentRecord>,
}

/// Imports JSON lines from `input` (see the module doc). `open` is called once the first batch
/// has been checked, so bad input opens (and creates) nothing. `now` is the import's time: the
/// default for missing times, the cap for future ones, and the time of the log rows.
pub fn import_from(
    mut input: impl BufRead,
    replace: bool,
    now: Millis,
    draw: &dyn Draw,
    open: impl FnOnce() -> Result<Store> + Send,
) -> Result<ImportReport> {
    // What the writer has committed: the report so far and the last line it covers.
    struct Written {
        report: ImportReport,
        through_line: u64,
    }
    let (sender, receiver) = mpsc::sync_channel::<Batch>(1);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> (Written, Result<()>) {
            let mut written = Written {
                report: ImportReport::default(),
                through_line: 0,
            };
            let mut store: Option<Store> = None;
            let mut open = Some(open);
            for batch in receiver {
                if store.is_none() {
                    let Some(open) = open.take() else { break };
                    match open() {
                        Ok(opened) => store = Some(opened),
                        Err(e) => return (written, Err(e)),
                    }
                }
                let Some(store) = &store else { break };
                match store.import_batch(&batch.agents, replace, now) {
                    Ok(counts) => {
                        written.report.added += counts.added;
                        written.report.replaced += counts.replaced;
                        written.through_line = batch.lines.last().copied().unwrap_or(written.through_line);
                    }
                    Err(failure) => {
                        let error = match failure.index {
                            Some(i) => {
                                let error = match failure.error {
                                    Error::AgentExists { id, .. } => Error::AgentExists {
                                        id,
                                        hint: "give --replace to overwrite it",
                                    },
                                    other => other,
                                };
                                line_error(batch.lines[i], error, &written.report, batch.lines[0])
                            }
                            None => failure.error,
                        };
                        return (written, Err(error));
                    }
                }
            }
            (written, Ok(()))
        });

        let parsed = read_batches(&mut input, now, draw, |batch| sender.send(batch).is_ok());
        drop(sender);
        // The writer only stops early on an error, which is then the first one in the input.
        let (written, wrote) = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        wrote?;
        match parsed {
            Ok(()) => Ok(written.report),
            Err(ParseFailure::Line { line, error }) => {
                Err(line_error(line, error, &written.report, written.through_line + 1))
            }
            Err(ParseFailure::Io(e)) => Err(e),
        }
    })
}

/// A line that could not be read or checked.
enum ParseFailure {
    Line { line: u64, error: Error },
    Io(Error),
}

/// Reads `input` line by line into batches of [`BATCH`] agents and hands each to `send`, which
/// returns false when the writer has stopped.
fn read_batches(
    input: &mut impl BufRead,
    now: Millis,
    draw: &dyn Draw,
    mut send: impl FnMut(Batch) -> bool,
) -> std::result::Result<(), ParseFailure> {
    let new_batch = || Batch {
        lines: Vec::with_capacity(BATCH),
        agents: Vec::with_capacity(BATCH),
    };
    let mut batch = new_batch();
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf).map_err(|source| {
            ParseFailure::Io(Error::Io {
                path: PathBuf::from("<import input>"),
                source,
            })
        })?;
        if n == 0 {
            break;
        }
        line += 1;
        let text = std::str::from_utf8(&buf).map_err(|_| ParseFailure::Line {
            line,
            error: Error::Usage("not UTF-8 text".into()),
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let agent = parse_line(text, now, draw).map_err(|error| ParseFailure::Line { line, error })?;
        batch.lines.push(line);
        batch.agents.push(agent);
        if batch.agents.len() == BATCH && !send(std::mem::replace(&mut batch, new_batch())) {
            return Ok(());
        }
    }
    if !batch.agents.is_empty() {
        send(batch);
    }
    Ok(())
}

/// `line 7: <error> (nothing was imported)`, saying which lines before it were imported.
fn line_error(line: u64, error: Error, done: &ImportReport, batch_start: u64) -> Error {
    let committed = done.added + done.replaced;
    let written = if committed == 0 {
        "nothing was imported".to_string()
    } else {
        format!(
            "the {committed} agents of lines 1-{} were imported; nothing from line {batch_start} on was",
            batch_start - 1
        )
    };
    Error::AtLine {
        line,
        source: Box::new(error),
        written,
    }
}

/// Parses and checks one line into the agent to insert and its ladder (see the module doc).
pub fn parse_line(text: &str, now: Millis, draw: &dyn Draw) -> Result<AgentRecord> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| Error::Usage(format!("not a JSON object: {e}")))?;
    let Value::Object(map) = value else {
        return Err(Error::Usage("not a JSON object".into()));
    };
    agent_from_map(map, now, draw)
}

/// The keys of the format; `state`, `freshness` and `next_due_at` are derived and ignored.
const KEYS: &[&str] = &[
    "id",
    "strategy",
    "base_interval_ms",
    "max_interval_ms",
    "factor",
    "jitter",
    "fresh_ms",
    "very_stale_ms",
    "current_interval_ms",
    "wait_ms",
    "consecutive_misses",
    "last_poke_at",
    "last_activity_at",
    "paused",
    "command",
    "heartbeat_file",
    "activity_cmd",
    "echo_ms",
    "only_if",
    "grace_ms",
    "escalate_limit",
    "escalate_window_ms",
    "rungs",
    "held_until_at",
    "heartbeat_seen_at",
    "probe_seen_at",
    "created_at",
    "updated_at",
    "state",
    "freshness",
    "next_due_at",
];

fn agent_from_map(map: Map<String, Value>, now: Millis, draw: &dyn Draw) -> Result<AgentRecord> {
    let id = match map.get("id") {
        Some(Value::String(id)) => AgentId::parse(id)?,
        Some(Value::Null) => return Err(Error::Usage("\"id\" must not be null".into())),
        Some(other) => return Err(Error::invalid("id", other.to_string(), "must be a string")),
        None => return Err(Error::Usage("missing \"id\"".into())),
    };
    let name = id.to_string();
    let in_agent = |e: Error| Error::InAgent {
        id: name.clone(),
        source: Box::new(e),
    };
    let mut line = Line::default();
    for (key, value) in &map {
        if !KEYS.contains(&key.as_str()) {
            return Err(Error::Usage(format!(
                "unknown key {key:?} (the keys are those of `poked list --json`)"
            )));
        }
        // null means "not given": the default (which for the times is "never").
        if !value.is_null() {
            line.read(key, value, now).map_err(in_agent)?;
        }
    }
    line.into_agent(id, now, draw).map_err(in_agent)
}

/// What one line says, key by key.
#[derive(Default)]
struct Line {
    settings: Settings,
    rungs: Vec<Rung>,
    current_interval_ms: Option<i64>,
    wait_ms: Option<i64>,
    consecutive_misses: i64,
    paused: bool,
    times: [Option<Millis>; 7],
}

/// The instants a line may hold, in the order of [`Line::times`].
const TIMES: [&str; 7] = [
    "last_poke_at",
    "last_activity_at",
    "held_until_at",
    "heartbeat_seen_at",
    "probe_seen_at",
    "created_at",
    "updated_at",
];

impl Line {
    fn read(&mut self, key: &str, value: &Value, now: Millis) -> Result<()> {
        let s = &mut self.settings;
        match key {
            "strategy" => {
                let text = string("strategy", value)?;
                s.strategy = text
                    .parse()
                    .map_err(|rule: String| Error::invalid("strategy", text, rule))?;
            }
            "base_interval_ms" => s.base_interval_ms = whole("base_interval_ms", value)?,
            "max_interval_ms" => s.max_interval_ms = whole("max_interval_ms", value)?,
            "fresh_ms" => s.fresh_ms = whole("fresh_ms", value)?,
            "very_stale_ms" => s.very_stale_ms = whole("very_stale_ms", value)?,
            "echo_ms" => s.echo_ms = whole("echo_ms", value)?,
            "grace_ms" => s.grace_ms = whole("grace_ms", value)?,
            "escalate_limit" => s.escalate_limit = whole("escalate_limit", value)?,
            "escalate_window_ms" => s.escalate_window_ms = whole("escalate_window_ms", value)?,
            "factor" => s.factor = number("factor", value)?,
            "jitter" => s.jitter = number("jitter", value)?,
            "command" => s.command = Some(argv("command", value)?),
            "activity_cmd" => s.activity_cmd = Some(argv("activity_cmd", value)?),
            "only_if" => s.only_if = Some(argv("only_if", value)?),
            "heartbeat_file" => s.heartbeat_file = Some(string("heartbeat_file", value)?.to_owned()),
            "rungs" => self.rungs = rungs(value)?,
            "current_interval_ms" => self.current_interval_ms = Some(whole("current_interval_ms", value)?),
            "wait_ms" => self.wait_ms = Some(whole("wait_ms", value)?),
            "consecutive_misses" => self.consecutive_misses = whole("consecutive_misses", value)?,
            "paused" => {
                self.paused = value
                    .as_bool()
                    .ok_or_else(|| Error::invalid("paused", value.to_string(), "must be true or false"))?
            }
            key => {
                if let Some(i) = TIMES.iter().position(|t| *t == key) {
                    let at = time(TIMES[i], value)?;
                    // A hold lies ahead by nature; any other instant in the future is now.
                    self.times[i] = Some(if key == "held_until_at" { at } else { at.min(now) });
                }
            }
        }
        Ok(())
    }

    fn into_agent(self, id: AgentId, now: Millis, draw: &dyn Draw) -> Result<AgentRecord> {
        let settings = self.settings;
        settings.validate_named(Naming::Keys)?;
        let rungs = validate_ladder(self.rungs)?;
        let current = self.current_interval_ms.unwrap_or(settings.base_interval_ms);
        if !(settings.base_interval_ms..=settings.max_interval_ms).contains(&current) {
            return Err(Error::invalid(
                "current_interval_ms",
                current.to_string(),
                format!(
                    "must be between base_interval_ms ({}) and max_interval_ms ({})",
                    settings.base_interval_ms, settings.max_interval_ms
                ),
            ));
        }
        let wait = match self.wait_ms {
            Some(wait) if !(1..=current).contains(&wait) => {
                return Err(Error::invalid(
                    "wait_ms",
                    wait.to_string(),
                    format!("must be between 1 and current_interval_ms ({current})"),
                ));
            }
            Some(wait) => wait,
            None => backoff::wait(current, settings.jitter, draw.draw()),
        };
        let [
            last_poke_at,
            last_activity_at,
            held_until_at,
            heartbeat_seen_at,
            probe_seen_at,
            created,
            updated,
        ] = self.times;
        let mut agent = Agent {
            id,
            settings,
            current_interval_ms: current,
            wait_ms: wait,
            consecutive_misses: self.consecutive_misses,
            last_poke_at,
            last_activity_at,
            paused: self.paused,
            held_until_at,
            heartbeat_seen_at,
            probe_seen_at,
            created_at: created.unwrap_or(now),
            updated_at: updated.unwrap_or(now),
            next_due_at: None,
        };
        agent.next_due_at = rules::next_due(&agent);
        Ok(AgentRecord { agent, rungs })
    }
}

fn string<'a>(what: &'static str, value: &'a Value) -> Result<&'a str> {
    value
        .as_str()
        .ok_or_else(|| Error::invalid(what, value.to_string(), "must be a string"))
}

/// A whole, non-negative number (milliseconds or a count).
fn whole(what: &'static str, value: &Value) -> Result<i64> {
    match value.as_i64() {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(Error::invalid(
            what,
            value.to_string(),
            "must be a whole number ≥ 0",
        )),
    }
}

fn number(what: &'static str, value: &Value) -> Result<f64> {
    value
        .as_f64()
        .ok_or_else(|| Error::invalid(what, value.to_string(), "must be a number"))
}

fn argv(what: &'static str, value: &Value) -> Result<Vec<String>> {
    let words = value
        .as_array()
        .and_then(|words| {
            words
                .iter()
                .map(|w| w.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| Error::invalid(what, value.to_string(), "must be an array of strings or null"))?;
    validate_argv(what, &words)?;
    Ok(words)
}

fn rungs(value: &Value) -> Result<Vec<Rung>> {
    let bad = || {
        Error::invalid(
            "rungs",
            value.to_string(),
            "must be an array of {\"misses\": N, \"command\": [...]}",
        )
    };
    let items = value.as_array().ok_or_else(bad)?;
    items
        .iter()
        .map(|item| {
            let misses = item.get("misses").and_then(Value::as_i64).ok_or_else(bad)?;
            let command = argv("rungs", item.get("command").ok_or_else(bad)?)?;
            Ok(Rung { misses, command })
        })
        .collect()
}

/// An RFC 3339 time.
fn time(what: &'static str, value: &Value) -> Result<Millis> {
    let text = string(what, value)?;
    parse_rfc3339(text).map_err(|rule| Error::invalid(what, text, rule))
}
