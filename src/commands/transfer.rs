//! `poked import` and `poked export`: agents as JSON lines, one object per line.
//!
//! # The format
//!
//! Each line is the object `poked list --json` prints for an agent, on one line: `id`,
//! `strategy`, `base_interval_ms`, `max_interval_ms`, `factor`, `jitter`, `fresh_ms`,
//! `very_stale_ms`, `current_interval_ms`, `wait_ms`, `consecutive_misses`, `last_poke_at`,
//! `last_activity_at`, `paused`, `command`, `heartbeat_file`, `created_at`, `updated_at`, and the
//! derived `state`, `freshness` and `next_due_at`, which an import ignores. Export writes every
//! agent by id; importing that into an empty database and exporting again gives the same bytes.
//!
//! # Import
//!
//! Only `id` is required. A missing (or `null`) key takes the value `poked add` would give it:
//! the default settings, interval = base, no misses, never poked, never active, not paused,
//! created now, and a wait drawn for the interval. Each line is checked like `add` checks its
//! options, plus the state: `current_interval_ms` within `[base, max]`, `wait_ms` within
//! `[1, current_interval_ms]`, `consecutive_misses` ≥ 0. A time in the future is taken as now
//! (SPEC §3: a future timestamp never keeps an agent from coming due). Unknown keys are
//! refused, so a misspelt key is not silently dropped. Blank lines are skipped.
//!
//! Agents are written in batches of [`BATCH`], each one transaction with one log row per agent
//! ([`Store::import_batch`]). A bad line stops the import with an error naming its line number:
//! nothing of its batch is written, and the message says which lines before it were. An id that
//! already exists (in the database, or earlier in the input) is such an error unless
//! `--replace` is given, which overwrites the agent's settings and state with the line's and
//! logs an `added` row saying it replaced the agent; its history stays.
//!
//! Parsing runs on the calling thread while a second thread writes the previous batch, so the
//! JSON work overlaps the commits. The database is opened only once the first batch has been
//! read and checked: an input that is bad from its first line creates no file.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::mpsc;

use serde_json::{Map, Value};

use super::output::agent_json;
use super::{Context, io_err};
use crate::agent::{Agent, AgentId, Settings};
use crate::backoff;
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::random::Draw;
use crate::store::Store;
use crate::units::parse_rfc3339;

/// Agents per transaction: large enough that the commit's cost is shared by thousands of rows,
/// small enough that one transaction holds the write lock for only a fraction of a second.
pub const BATCH: usize = 5000;

/// How an import treats ids that already exist.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Overwrite existing agents instead of stopping at the first one.
    pub replace: bool,
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Agents that did not exist before.
    pub added: u64,
    /// Existing agents overwritten (`--replace`).
    pub replaced: u64,
}

/// `poked import FILE` (`-` for standard input).
pub fn import(ctx: &Context, out: &mut dyn Write, file: &str, options: ImportOptions) -> Result<()> {
    let now = ctx.now();
    let open = || ctx.open(true);
    let report = if file == "-" {
        import_from(std::io::stdin().lock(), options, now, ctx.draw.as_ref(), open)?
    } else {
        let path = PathBuf::from(file);
        let input = std::fs::File::open(&path).map_err(|source| Error::Io { path, source })?;
        import_from(
            BufReader::with_capacity(1 << 16, input),
            options,
            now,
            ctx.draw.as_ref(),
            open,
        )?
    };
    let agents = |n: u64| {
        if n == 1 {
            "1 agent".to_string()
        } else {
            format!("{n} agents")
        }
    };
    match report {
        ImportReport {
            added: 0,
            replaced: 0,
        } => writeln!(out, "nothing to import: the input holds no agents"),
        ImportReport { added, replaced: 0 } => writeln!(out, "imported {}", agents(added)),
        ImportReport { added, replaced } => writeln!(
            out,
            "imported {} ({} new, {replaced} replaced)",
            agents(added + replaced),
            added
        ),
    }
    .map_err(io_err)
}

/// `poked export`: every agent as one JSON line, by id.
pub fn export(ctx: &Context, out: &mut dyn Write) -> Result<()> {
    let store = ctx.open(false)?;
    export_to(&store, out, ctx.now())?;
    Ok(())
}

/// Writes every agent of `store` to `out` as JSON lines; returns how many.
pub fn export_to(store: &Store, out: &mut dyn Write, now: Millis) -> Result<u64> {
    let mut count = 0;
    store.each_agent(|agent| {
        // Serialising a `Value` to a writer only fails on I/O errors.
        serde_json::to_writer(&mut *out, &agent_json(&agent, now)).map_err(|e| io_err(e.into()))?;
        out.write_all(b"\n").map_err(io_err)?;
        count += 1;
        Ok(())
    })?;
    Ok(count)
}

/// A batch of parsed agents with the line number of each.
struct Batch {
    lines: Vec<u64>,
    agents: Vec<Agent>,
}

/// Imports JSON lines from `input` (see the module doc); the library function behind
/// `poked import`. `open` is called once the first batch has been checked, so bad input opens
/// (and creates) nothing. `now` is the import's time: the default for missing times, the cap
/// for future ones, and the time of the log rows.
pub fn import_from(
    mut input: impl BufRead,
    options: ImportOptions,
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
            let mut store = None;
            let mut open = Some(open);
            for batch in receiver {
                let store = match (&store, open.take()) {
                    (Some(store), _) => store,
                    (None, Some(open)) => match open() {
                        Ok(opened) => store.insert(opened),
                        Err(e) => return (written, Err(e)),
                    },
                    (None, None) => unreachable!("the store is opened with the first batch"),
                };
                match store.import_batch(&batch.agents, options.replace, now) {
                    Ok(counts) => {
                        written.report.added += counts.added;
                        written.report.replaced += counts.replaced;
                        written.through_line = batch.lines.last().copied().unwrap_or(written.through_line);
                    }
                    Err(failure) => {
                        let error = match failure.index {
                            Some(i) => {
                                let line = batch.lines[i];
                                let error = match failure.error {
                                    Error::AgentExists(id) => Error::Usage(format!(
                                        "agent {id:?} already exists; give --replace to overwrite it"
                                    )),
                                    other => other,
                                };
                                line_error(line, error, &written.report, batch.lines[0])
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
    let note = if committed == 0 {
        "nothing was imported".to_string()
    } else {
        format!(
            "the {committed} agents of lines 1-{} were imported; nothing from line {batch_start} on was",
            batch_start - 1
        )
    };
    Error::Usage(format!("line {line}: {error} ({note})"))
}

/// Parses and checks one line into the agent to insert (see the module doc for the rules).
pub fn parse_line(text: &str, now: Millis, draw: &dyn Draw) -> Result<Agent> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| Error::Usage(format!("not a JSON object: {e}")))?;
    let Value::Object(map) = value else {
        return Err(Error::Usage("not a JSON object".into()));
    };
    agent_from_map(map, now, draw)
}

fn agent_from_map(map: Map<String, Value>, now: Millis, draw: &dyn Draw) -> Result<Agent> {
    let mut id = None;
    let mut settings = Settings::default();
    let mut current_interval_ms = None;
    let mut wait_ms = None;
    let mut consecutive_misses = 0;
    let mut last_poke_at = None;
    let mut last_activity_at = None;
    let mut paused = false;
    let mut created_at = None;
    let mut updated_at = None;
    for (key, value) in map {
        if value.is_null() {
            // null means "not given": the default (which for the times is "never").
            if key == "id" {
                return Err(Error::Usage("\"id\" must not be null".into()));
            }
            known_key(&key)?;
            continue;
        }
        match key.as_str() {
            "id" => id = Some(AgentId::parse(string("id", &value)?)?),
            "strategy" => {
                let text = string("strategy", &value)?;
                settings.strategy = text
                    .parse()
                    .map_err(|rule: String| Error::invalid("strategy", text, rule))?;
            }
            "base_interval_ms" => settings.base_interval_ms = millis("base_interval_ms", &value)?,
            "max_interval_ms" => settings.max_interval_ms = millis("max_interval_ms", &value)?,
            "fresh_ms" => settings.fresh_ms = millis("fresh_ms", &value)?,
            "very_stale_ms" => settings.very_stale_ms = millis("very_stale_ms", &value)?,
            "factor" => settings.factor = number("factor", &value)?,
            "jitter" => settings.jitter = number("jitter", &value)?,
            "command" => settings.command = Some(argv(&value)?),
            "heartbeat_file" => settings.heartbeat_file = Some(string("heartbeat_file", &value)?.to_owned()),
            "current_interval_ms" => current_interval_ms = Some(millis("current_interval_ms", &value)?),
            "wait_ms" => wait_ms = Some(millis("wait_ms", &value)?),
            "consecutive_misses" => consecutive_misses = millis("consecutive_misses", &value)?,
            "paused" => {
                paused = value
                    .as_bool()
                    .ok_or_else(|| Error::invalid("paused", value.to_string(), "must be true or false"))?
            }
            "last_poke_at" => last_poke_at = Some(time("last_poke_at", &value, now)?),
            "last_activity_at" => last_activity_at = Some(time("last_activity_at", &value, now)?),
            "created_at" => created_at = Some(time("created_at", &value, now)?),
            "updated_at" => updated_at = Some(time("updated_at", &value, now)?),
            other => known_key(other)?,
        }
    }
    let id = id.ok_or_else(|| Error::Usage("missing \"id\"".into()))?;
    settings.validate().map_err(|e| name_keys(e, id.as_str()))?;
    let in_agent = |e: Error| Error::Usage(format!("agent {:?}: {e}", id.as_str()));
    let current = current_interval_ms.unwrap_or(settings.base_interval_ms);
    if !(settings.base_interval_ms..=settings.max_interval_ms).contains(&current) {
        return Err(in_agent(Error::invalid(
            "current_interval_ms",
            current.to_string(),
            format!(
                "must be between base_interval_ms ({}) and max_interval_ms ({})",
                settings.base_interval_ms, settings.max_interval_ms
            ),
        )));
    }
    let wait = match wait_ms {
        Some(wait) if !(1..=current).contains(&wait) => {
            return Err(in_agent(Error::invalid(
                "wait_ms",
                wait.to_string(),
                format!("must be between 1 and current_interval_ms ({current})"),
            )));
        }
        Some(wait) => wait,
        None => backoff::wait(current, settings.jitter, draw.draw()),
    };
    Ok(Agent {
        id: id.as_str().to_owned(),
        settings,
        current_interval_ms: current,
        wait_ms: wait,
        consecutive_misses,
        last_poke_at,
        last_activity_at,
        paused,
        created_at: created_at.unwrap_or(now),
        updated_at: updated_at.unwrap_or(now),
        next_due_at: None,
    })
}

/// Accepts the derived keys (ignored) and refuses anything that is not a key of the format.
fn known_key(key: &str) -> Result<()> {
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
        "created_at",
        "updated_at",
        "state",
        "freshness",
        "next_due_at",
    ];
    if KEYS.contains(&key) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "unknown key {key:?} (the keys are those of `poked list --json`)"
        )))
    }
}

/// `Settings::validate` names the options of `add`; an import names its keys instead.
fn name_keys(e: Error, id: &str) -> Error {
    let e = match e {
        Error::InvalidValue { what, value, rule } => {
            let what = match what {
                "--base" => "base_interval_ms",
                "--max" => "max_interval_ms",
                "--factor" => "factor",
                "--jitter" => "jitter",
                "--fresh" => "fresh_ms",
                "--very-stale" => "very_stale_ms",
                "--heartbeat-file" => "heartbeat_file",
                other => other,
            };
            let rule = rule
                .replace("--very-stale", "very_stale_ms")
                .replace("the base interval", "base_interval_ms");
            Error::InvalidValue { what, value, rule }
        }
        other => other,
    };
    Error::Usage(format!("agent {id:?}: {e}"))
}

fn string<'a>(what: &'static str, value: &'a Value) -> Result<&'a str> {
    value
        .as_str()
        .ok_or_else(|| Error::invalid(what, value.to_string(), "must be a string"))
}

/// A whole, non-negative number (milliseconds or a count).
fn millis(what: &'static str, value: &Value) -> Result<i64> {
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

fn argv(value: &Value) -> Result<Vec<String>> {
    let words = value
        .as_array()
        .and_then(|words| {
            words
                .iter()
                .map(|w| w.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| {
            Error::invalid(
                "command",
                value.to_string(),
                "must be an array of strings or null",
            )
        })?;
    crate::agent::validate_command(&words)?;
    Ok(words)
}

/// An RFC 3339 time; one in the future is taken as `now`.
fn time(what: &'static str, value: &Value, now: Millis) -> Result<Millis> {
    let text = string(what, value)?;
    let at = parse_rfc3339(text).map_err(|rule| Error::invalid(what, text, rule))?;
    Ok(at.min(now))
}
