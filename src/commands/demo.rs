//! `poked demo`: a self-contained demonstration on a temporary database.
//!
//! Three agents with second-scale intervals: `eager` answers every poke (its command runs
//! `poked activity` for itself), `flaky` answers every other poke, `silent` never answers. The
//! daemon runs in this process for about 20 seconds while the log is printed as it grows; then
//! the agents and the history. A new user sees backoff and recovery at work.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::output::{one_line, print_agents, print_log};
use super::{Context, io_err};
use poked::agent::{AgentId, Settings};
use poked::clock::{Clock, SystemClock};
use poked::daemon::watch::Poll;
use poked::daemon::{DaemonOptions, PassOptions, Shutdown, serve};
use poked::error::{Error, Result};
use poked::log::{Kind, LogRow};
use poked::random::SystemDraw;
use poked::store::{HistoryFilter, OpenOptions, Store, Synchronous};
use poked::units::format_duration;

/// `poked demo [--keep] [--duration D]`.
pub fn demo(_ctx: &Context, out: &mut dyn Write, keep: bool, duration_ms: i64) -> Result<()> {
    let dir = demo_dir()?;
    let result = run_demo(&dir, out, keep, duration_ms);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn demo_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("poked-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

fn run_demo(dir: &Path, out: &mut dyn Write, keep: bool, duration_ms: i64) -> Result<()> {
    let db = dir.join("demo.db");
    // The demo always runs on the real clock: under POKED_NOW nothing would ever come due.
    let clock = SystemClock;
    let draw = SystemDraw::default();
    let store = Store::open(
        &db,
        OpenOptions {
            create: true,
            read_only_ok: false,
            synchronous: Synchronous::Normal,
            connections: 5,
        },
    )?;
    let poked = std::env::current_exe().map_err(|source| Error::Io {
        path: "poked executable".into(),
        source,
    })?;
    let poked = poked.display().to_string();
    let toggle = dir.join("flaky.answered-last-time").display().to_string();
    let settings = |command: Vec<&str>| Settings {
        base_interval_ms: 1000,
        max_interval_ms: 6000,
        fresh_ms: 500,
        very_stale_ms: 1000,
        command: Some(command.into_iter().map(String::from).collect()),
        ..Settings::default()
    };
    let agents = [
        (
            "eager",
            settings(vec![&poked, "activity", "eager"]),
            "answers every poke",
        ),
        (
            "flaky",
            settings(vec![
                "sh",
                "-c",
                "if [ -e \"$1\" ]; then rm \"$1\"; else touch \"$1\"; exec \"$0\" activity flaky; fi",
                &poked,
                &toggle,
            ]),
            "answers every other poke",
        ),
        ("silent", settings(vec!["true"]), "never answers"),
    ];
    writeln!(
        out,
        "poked demo: three agents, base 1s, max 6s, factor 1.5, very stale after 1s"
    )
    .map_err(io_err)?;
    for (id, settings, what) in &agents {
        store.add(&AgentId::parse(id)?, settings, &[], false, clock.now(), &draw)?;
        writeln!(out, "  {id:<7} {what}").map_err(io_err)?;
    }
    writeln!(
        out,
        "running the daemon for {} (Ctrl-C ends it early)...\n",
        format_duration(duration_ms)
    )
    .map_err(io_err)?;
    out.flush().map_err(io_err)?;

    let shutdown = Shutdown::new();
    let _signals = shutdown.on_signals()?;
    let started = clock.now();
    let options = DaemonOptions {
        pass: PassOptions {
            concurrency: 3,
            command_timeout: Duration::from_secs(5),
            ..PassOptions::default()
        },
        ..DaemonOptions::default()
    };
    let daemon_result = std::thread::scope(|scope| {
        let daemon = scope.spawn(|| serve(&store, &clock, &draw, &options, &shutdown));
        let shown = narrate(&store, out, &shutdown, started, duration_ms);
        if !shutdown.is_stopping() {
            shutdown.stop();
        }
        let result = daemon
            .join()
            .unwrap_or_else(|_| Err(Error::Usage("the demo's daemon panicked".into())));
        shown.and(result)
    });
    daemon_result?;

    writeln!(out, "\nThe agents now (`poked list`):\n").map_err(io_err)?;
    print_agents(out, &store.agents()?, clock.now())?;
    writeln!(
        out,
        "\nThe history of `silent` (`poked history silent`): its interval grows with each miss\n"
    )
    .map_err(io_err)?;
    let silent = store.history(&HistoryFilter {
        agent_id: Some(AgentId::parse("silent")?),
        ..HistoryFilter::default()
    })?;
    print_log(out, &silent)?;
    if keep {
        writeln!(out, "\nThe database is kept: {}", db.display()).map_err(io_err)?;
        writeln!(out, "  sqlite3 {} 'SELECT * FROM agent_status'", db.display()).map_err(io_err)?;
    } else {
        writeln!(
            out,
            "\n(`poked demo --keep` keeps the database to explore with sqlite3)"
        )
        .map_err(io_err)?;
    }
    Ok(())
}

/// Prints each new log row as it is committed, until the time is up or a stop is asked for.
fn narrate(
    store: &Store,
    out: &mut dyn Write,
    shutdown: &Shutdown,
    started: i64,
    duration_ms: i64,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_millis(u64::try_from(duration_ms).unwrap_or(0));
    let mut poll = Poll::new(store, false)?;
    let mut last_id = 0;
    while Instant::now() < deadline && !shutdown.is_stopping() {
        if !poll.wait(
            deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200)),
        )? {
            continue;
        }
        let rows = store.history(&HistoryFilter {
            after_id: Some(last_id),
            ..HistoryFilter::default()
        })?;
        for row in rows {
            last_id = last_id.max(row.id);
            if let Some(line) = describe(&row, started) {
                writeln!(out, "{line}").map_err(io_err)?;
            }
        }
        out.flush().map_err(io_err)?;
    }
    Ok(())
}

/// One event as a sentence, or `None` for rows that are not worth a line.
fn describe(row: &LogRow, started: i64) -> Option<String> {
    let at = format!("{:>6.1}s", (row.at - started) as f64 / 1000.0);
    let interval = format_duration(row.interval_ms);
    let what = match row.kind {
        Kind::Added => return None,
        Kind::Poke => format!("poked; next poke in {interval} unless it answers"),
        Kind::Miss => format!(
            "missed: {} in a row, interval grows to {interval}",
            row.consecutive_misses
        ),
        Kind::Activity => format!("answered: interval back to {interval}"),
        kind => format!("{kind} {}", one_line(row.detail.as_deref().unwrap_or(""))),
    };
    Some(format!("{at}  {:<7} {what}", row.agent_id))
}
