//! One function per subcommand, and the formatting of what they print.
//!
//! [`run`] resolves the database path, the clock and the jitter draw once, then hands the
//! parsed command to its function. Output goes to a `Write` so a closed pipe is an ordinary
//! error that `main` turns into a quiet exit.

mod agents;
mod check;
mod demo;
mod explain;
mod generate;
mod history;
mod metrics;
mod next;
mod output;
mod plan;
mod prune;
mod run;
mod stats;
mod status;
mod top;
mod transfer;
mod view;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::{Cli, Command, SyncLevel};
use poked::agent::AgentId;
use poked::clock::{self, Clock, Millis};
use poked::error::{Error, Result};
use poked::random::{self, Draw};
use poked::store::{OpenOptions, Store, Synchronous};
use poked::units;

/// What every command needs: where the database is, the time, and the jitter draw.
pub struct Context {
    pub db: PathBuf,
    pub synchronous: Synchronous,
    pub clock: Arc<dyn Clock>,
    pub draw: Box<dyn Draw>,
}

impl Context {
    /// The context for this process, from the global options and the environment.
    pub fn from_cli(cli: &Cli) -> Result<Context> {
        Ok(Context {
            db: database_path(cli.db.clone())?,
            synchronous: synchronous(cli.synchronous)?,
            clock: clock::from_env()?,
            draw: random::from_env()?,
        })
    }

    /// Opens an existing database (or creates it, with `create`) to write to it.
    pub fn open(&self, create: bool) -> Result<Store> {
        self.open_with(create, 1)
    }

    /// Opens the database with `connections`, for commands that use threads.
    pub fn open_with(&self, create: bool, connections: u32) -> Result<Store> {
        Store::open(
            &self.db,
            OpenOptions {
                create,
                read_only_ok: false,
                synchronous: self.synchronous,
                connections,
            },
        )
    }

    /// Opens an existing database to read it: one this user may not write (a backup on
    /// read-only media) is opened read-only.
    pub fn open_to_read(&self) -> Result<Store> {
        Store::open(
            &self.db,
            OpenOptions {
                create: false,
                read_only_ok: true,
                synchronous: self.synchronous,
                connections: 1,
            },
        )
    }

    /// "Now", from the one clock.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Parses a `--at`/`--since` style time relative to now.
    pub fn parse_time(&self, what: &'static str, text: &str) -> Result<Millis> {
        units::parse_time(text, self.now()).map_err(|rule| Error::invalid(what, text, rule))
    }
}

/// Runs the parsed command line, printing to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    // Text made from the command line's definitions needs no database, clock or environment.
    match cli.command {
        Some(Command::Completions { shell }) => return generate::completions(out, shell),
        Some(Command::Man { command }) => return generate::man(out, command.as_deref()),
        _ => {}
    }
    let ctx = Context::from_cli(&cli)?;
    if cli.print_db {
        writeln!(out, "{}", ctx.db.display()).map_err(io_err)?;
        return Ok(());
    }
    let Some(command) = cli.command else {
        return Err(Error::Usage("no command given (see `poked --help`)".into()));
    };
    match command {
        Command::Init => agents::init(&ctx, out),
        Command::Add(args) => agents::add(&ctx, out, args),
        Command::Set(args) => agents::set(&ctx, out, args),
        Command::Rm { id, purge } => agents::rm(&ctx, out, &id, purge),
        Command::Pause { ids } => agents::pause(&ctx, out, &ids, true),
        Command::Resume { ids } => agents::pause(&ctx, out, &ids, false),
        Command::Poke { id } => agents::transition(&ctx, out, &id, agents::Manual::Poke),
        Command::Miss { id } => agents::transition(&ctx, out, &id, agents::Manual::Miss),
        Command::Activity { id, at } => agents::transition(&ctx, out, &id, agents::Manual::Activity(at)),
        Command::Reset { id } => agents::transition(&ctx, out, &id, agents::Manual::Reset),
        Command::List { json } => view::list(&ctx, out, json),
        Command::Show { id, json } => view::show(&ctx, out, &id, json),
        Command::Due { at, json } => view::due(&ctx, out, at.as_deref(), json),
        Command::History(args) => history::history(&ctx, out, &args),
        Command::Stats { since, json } => stats::stats(&ctx, out, since.as_deref(), json),
        Command::Next { wait, json } => next::next(&ctx, out, wait, json),
        Command::Prune {
            older_than,
            dry_run,
            json,
        } => prune::prune(&ctx, out, older_than, dry_run, json),
        Command::Check { json } => check::check(&ctx, out, json),
        Command::Status { json } => status::status(&ctx, out, json),
        Command::Import { file, replace } => transfer::import(&ctx, out, &file, replace),
        Command::Export { json_lines: _ } => transfer::export(&ctx, out),
        Command::Explain { id, at, json } => explain::explain(&ctx, out, &id, at.as_deref(), json),
        Command::Plan { id, count, json } => plan::plan(&ctx, out, &id, usize::from(count), json),
        Command::Run(args) => run::run(&ctx, out, &args),
        Command::Metrics => metrics::metrics(&ctx, out),
        Command::Completions { shell } => generate::completions(out, shell),
        Command::Man { command } => generate::man(out, command.as_deref()),
        Command::Demo { keep, duration } => demo::demo(&ctx, out, keep, duration),
        Command::Top => top::top(&ctx),
    }
}

/// Checks ids before anything is opened, so bad input never creates or changes a file.
fn parse_ids(ids: &[String]) -> Result<Vec<AgentId>> {
    ids.iter().map(|id| AgentId::parse(id)).collect()
}

/// Writing to stdout failed (usually a closed pipe); `main` ends quietly on a broken pipe.
pub(crate) fn io_err(source: std::io::Error) -> Error {
    Error::Io {
        path: PathBuf::from("<stdout>"),
        source,
    }
}

/// `--db`, else `$POKED_DB`, else `$XDG_STATE_HOME/poked/poked.db`, else
/// `~/.local/state/poked/poked.db`.
pub fn database_path(flag: Option<PathBuf>) -> Result<PathBuf> {
    let nonempty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(path) = flag.or_else(|| nonempty("POKED_DB")) {
        if path.as_os_str().is_empty() {
            return Err(Error::invalid("--db", "", "must not be empty"));
        }
        return Ok(path);
    }
    if let Some(state) = nonempty("XDG_STATE_HOME").filter(|p| p.is_absolute()) {
        return Ok(state.join("poked").join("poked.db"));
    }
    match nonempty("HOME") {
        Some(home) => Ok(home.join(".local/state/poked/poked.db")),
        None => Err(Error::Usage(
            "no database path: set --db, $POKED_DB or $HOME".into(),
        )),
    }
}

fn synchronous(flag: Option<SyncLevel>) -> Result<Synchronous> {
    let level = match flag {
        Some(level) => level,
        None => match std::env::var("POKED_SYNCHRONOUS") {
            Err(_) => return Ok(Synchronous::Full),
            Ok(text) => match text.to_ascii_lowercase().as_str() {
                "full" | "" => SyncLevel::Full,
                "normal" => SyncLevel::Normal,
                _ => {
                    return Err(Error::invalid(
                        "POKED_SYNCHRONOUS",
                        text,
                        "must be full or normal",
                    ));
                }
            },
        },
    };
    Ok(match level {
        SyncLevel::Full => Synchronous::Full,
        SyncLevel::Normal => Synchronous::Normal,
    })
}
