//! The command line: clap definitions. The `///` docs here are the `--help` text.
//!
//! Ids are taken as plain strings and checked by [`poked::agent::AgentId::parse`] before
//! anything is opened, so a strange id is reported escaped, on one line. Every other value is
//! parsed by clap with the library's own parsers, so bad input is refused (exit 2, one line)
//! before any file is opened.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use poked::agent::{EscalateLimit, Rung, split_command};
use poked::backoff::Strategy;
use poked::log::{Kind, Outcome};
use poked::units;

/// A crash-safe backoff scheduler that pokes long-running agents, with its state in one SQLite file
///
/// poked keeps a backoff schedule for long-running agents in one SQLite file and pokes each
/// agent when it is due. An agent that ignores its pokes is poked less and less often; one that
/// shows activity goes back to its base interval.
#[derive(Debug, Parser)]
#[command(name = "poked", version, max_term_width = 100)]
#[command(after_help = "Start with `poked add NAME -- COMMAND...`, then `poked run`. \
    The database is plain SQLite: `sqlite3 $(poked --print-db) 'SELECT * FROM agent_status'`.")]
pub struct Cli {
    /// The database file [default: $POKED_DB, else $XDG_STATE_HOME/poked/poked.db, else
    /// ~/.local/state/poked/poked.db]
    #[arg(long, global = true, value_name = "PATH", help_heading = "Global options")]
    pub db: Option<PathBuf>,

    /// Commit durability: `full` survives power loss, `normal` is faster [env: POKED_SYNCHRONOUS]
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "LEVEL",
        help_heading = "Global options"
    )]
    pub synchronous: Option<SyncLevel>,

    /// More log output (-v, -vv)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet", help_heading = "Global options")]
    pub verbose: u8,

    /// Only errors
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,

    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT", help_heading = "Global options")]
    pub log_format: LogFormat,

    /// Print the database path poked would use, and exit
    #[arg(long, exclusive = true)]
    pub print_db: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `--synchronous` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncLevel {
    Full,
    Normal,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database, or migrate it to this version's schema (safe to repeat)
    Init,

    /// Register an agent; the command to run at each poke goes after `--`
    #[command(
        after_help = "Examples:\n  poked add hq-mayor --base 5m --max 30m -- tmux send-keys -t hq-mayor 'check your rigs' Enter\n  \
        poked add worker --tmux worker --escalate 3:'tmux send-keys -t worker C-c' \\\n      \
        --escalate 5:'sh -c \"tmux kill-session -t worker; start-worker\"' --escalate 7:'notify-human worker'"
    )]
    Add(AddArgs),

    /// Change an agent's settings; its current interval is clamped into the new [base, max]
    Set(SetArgs),

    /// Remove an agent; its history stays unless --purge
    Rm {
        /// The agent's id
        id: AgentIdArg,
        /// Also delete the agent's history
        #[arg(long)]
        purge: bool,
    },

    /// Stop poking agents until they are resumed
    Pause {
        /// The agents' ids
        #[arg(required = true)]
        ids: Vec<AgentIdArg>,
    },

    /// Start poking paused agents again
    Resume {
        /// The agents' ids
        #[arg(required = true)]
        ids: Vec<AgentIdArg>,
    },

    /// Record that an agent was poked (by hand; its command is not run)
    Poke {
        /// The agent's id
        id: AgentIdArg,
    },

    /// Record that an agent missed a poke: its interval grows
    Miss {
        /// The agent's id
        id: AgentIdArg,
    },

    /// Record that an agent showed activity: back to its base interval
    #[command(visible_alias = "heartbeat")]
    Activity {
        /// The agent's id
        id: AgentIdArg,
        /// When the activity happened: RFC 3339, or a duration meaning that long ago [default: now]
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },

    /// Put an agent back to its base interval with no misses (activity time unchanged)
    Reset {
        /// The agent's id
        id: AgentIdArg,
    },

    /// Every agent: state, interval, misses, last poke, last activity, freshness, next due
    List {
        /// Print JSON (an array of agents)
        #[arg(long)]
        json: bool,
    },

    /// One agent in full, with its recent log
    Show {
        /// The agent's id
        id: AgentIdArg,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },

    /// The agents due at a time, soonest first
    Due {
        /// RFC 3339, a duration meaning that long ago (`2h`), or `+10m` for ten minutes from
        /// now [default: now]
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        at: Option<String>,
        /// Print JSON (an array of agents)
        #[arg(long)]
        json: bool,
    },

    /// The log, oldest first: every transition, and each poke's outcome
    #[command(
        after_help = "Times are RFC 3339 or a duration meaning that long ago (`--since 2h`).\n\
        With --follow, --json prints one object per line, and a poke is printed again once its \
        outcome is recorded."
    )]
    History(HistoryArgs),

    /// Per agent: pokes, misses, activities and outcomes in the log, and the current state
    Stats {
        /// Count the log from this time on: RFC 3339, or a duration meaning that long ago
        /// [default: the whole log]
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        since: Option<String>,
        /// Print JSON (an array, one object per agent)
        #[arg(long)]
        json: bool,
    },

    /// The agent due next, and when; --wait blocks until it is due
    Next {
        /// Wait until the next agent is due (following changes to the database), then print it
        #[arg(long)]
        wait: bool,
        /// Print JSON (the agent, with `due_in_ms`; `null` when none will come due)
        #[arg(long)]
        json: bool,
    },

    /// Delete log rows older than a duration, keeping each agent's newest row and pending pokes
    Prune {
        /// Delete rows older than this (`30d`, `12h`)
        #[arg(long, required = true, value_parser = positive_duration, value_name = "DURATION", allow_hyphen_values = true)]
        older_than: i64,
        /// Only count the rows that would be deleted
        #[arg(long)]
        dry_run: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },

    /// Check the file's integrity and poked's invariants; exit 1 listing each problem
    Check {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },

    /// The database, its size, agent counts, and whether a daemon runs on it
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },

    /// Add agents from JSON lines, the format of `poked export` (one batch of 5000 per
    /// transaction; a bad line stops the import and names its line number)
    #[command(
        after_help = "Only \"id\" is required: {\"id\":\"hq-mayor\",\"base_interval_ms\":60000}. \
        Missing keys take the defaults of `poked add`."
    )]
    Import {
        /// The file of JSON lines, or `-` for standard input
        #[arg(value_name = "FILE")]
        file: String,
        /// Overwrite agents that already exist (their history stays) instead of stopping
        #[arg(long)]
        replace: bool,
    },

    /// Every agent as JSON lines, one object per line, by id (what `poked import` reads)
    Export {
        /// One JSON object per line (the only format, and the default)
        #[arg(long)]
        json_lines: bool,
    },

    /// Why an agent is (or is not) due at a time, term by term, and what its next pass does
    Explain {
        /// The agent's id
        id: AgentIdArg,
        /// The time to explain: RFC 3339, a duration ago (`2h`) or ahead (`+10m`) [default: now]
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        at: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },

    /// The agent's next due passes if it never answers and its gate stays open
    Plan {
        /// The agent's id
        id: AgentIdArg,
        /// How many passes
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000), value_name = "N")]
        count: u16,
        /// Print JSON (an array of passes)
        #[arg(long)]
        json: bool,
    },

    /// The scheduler: poke every agent when it is due
    Run(RunArgs),

    /// A full-screen live view: agents by next due with countdowns, and the newest log rows
    #[command(
        after_help = "Keys: ↑/↓ or j/k select, p pause or resume, r reset, a record activity, \
        enter the agent's details (as `poked show`), q, Esc or Ctrl-C quit.\n\
        It follows every commit within a second and needs a terminal (over ssh and in tmux too); \
        NO_COLOR turns colours off. Writes need write access to the database."
    )]
    Top,

    /// The state in the Prometheus text format: agents by state, per agent misses, intervals and
    /// due times, pokes and escalations by outcome, the daemon's last pass
    #[command(
        after_help = "For node_exporter's textfile collector, write to a temporary file and rename it:\n  \
        poked metrics > /var/lib/node_exporter/textfile/poked.prom.tmp && \\\n    \
        mv /var/lib/node_exporter/textfile/poked.prom.tmp /var/lib/node_exporter/textfile/poked.prom\n\
        `poked run --metrics-listen ADDR` serves the same at http://ADDR/metrics."
    )]
    Metrics,

    /// Print a completion script for a shell
    #[command(
        after_help = "bash: poked completions bash > ~/.local/share/bash-completion/completions/poked\n\
        zsh:  poked completions zsh > \"${fpath[1]}/_poked\"\n\
        fish: poked completions fish > ~/.config/fish/completions/poked.fish"
    )]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff): `poked man | man -l -`; `poked man run` for poked-run(1)
    Man {
        /// A command whose page to print instead of poked(1)
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },

    /// A 20-second demonstration on a temporary database: backoff and recovery at work
    Demo {
        /// Keep the demonstration's database and print its path
        #[arg(long)]
        keep: bool,
        /// How long to run
        #[arg(long, default_value = "20s", value_parser = positive_duration, value_name = "DURATION")]
        duration: i64,
    },
}

/// `poked add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The agent's id: letters, digits and . _ - : / @, starting with a letter or digit
    pub id: AgentIdArg,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Register it paused: it is not poked until `poked resume`
    #[arg(long)]
    pub paused: bool,
    /// The command run at each poke, without a shell (argv)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `poked set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The agent's id
    pub id: AgentIdArg,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Remove the agent's command (pokes are then only recorded)
    #[arg(long, conflicts_with_all = ["command", "tmux"])]
    pub no_command: bool,
    /// Stop watching a heartbeat file
    #[arg(long, conflicts_with = "heartbeat_file")]
    pub no_heartbeat_file: bool,
    /// Remove the activity probe
    #[arg(long, conflicts_with_all = ["activity_cmd", "tmux"])]
    pub no_activity_cmd: bool,
    /// Remove the gate
    #[arg(long, conflicts_with = "only_if")]
    pub no_only_if: bool,
    /// Remove the escalation ladder
    #[arg(long, conflicts_with = "escalate")]
    pub no_escalate: bool,
    /// A new command to run at each poke, without a shell (argv)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Options of `poked run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Do everything due now, wait for the outcomes, and exit
    #[arg(long)]
    pub once: bool,
    /// At most this many commands running at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256), value_name = "N")]
    pub concurrency: u16,
    /// Kill a command (its whole process group) after this long
    #[arg(long, default_value = "30s", value_parser = positive_duration, value_name = "DURATION", allow_hyphen_values = true)]
    pub command_timeout: i64,
    /// Prune log rows older than this, in small batches, about once an hour
    #[arg(long, value_parser = positive_duration, value_name = "DURATION", allow_hyphen_values = true)]
    pub retain: Option<i64>,
    /// Serve `poked metrics` at http://ADDR/metrics: IP:PORT, [IPv6]:PORT, localhost:PORT, or
    /// :PORT for every interface
    #[arg(long, value_name = "ADDR", value_parser = poked::daemon::endpoint::parse_address, conflicts_with = "once")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Options of `poked history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this agent's rows (a removed agent's history stays until pruned or purged)
    pub id: Option<AgentIdArg>,
    /// Rows at or after this time: RFC 3339, or a duration meaning that long ago
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Rows at or before this time (not with --follow)
    #[arg(
        long,
        value_name = "TIME",
        allow_hyphen_values = true,
        conflicts_with = "follow"
    )]
    pub until: Option<String>,
    /// Only rows of this kind; repeat for several
    #[arg(long, value_name = "KIND", value_parser = PossibleValuesParser::new(Kind::ALL.iter().map(|k| k.as_str())).map(|s| s.parse::<Kind>().unwrap_or(Kind::Poke)))]
    pub kind: Vec<Kind>,
    /// Only pokes, escalations and skips with this outcome; repeat for several
    #[arg(long, value_name = "OUTCOME", value_parser = PossibleValuesParser::new(Outcome::ALL.iter().map(|o| o.as_str())).map(|s| s.parse::<Outcome>().unwrap_or(Outcome::Ok)))]
    pub outcome: Vec<Outcome>,
    /// Only the newest N rows of the selection, still printed oldest first
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..), allow_hyphen_values = true)]
    pub limit: Option<i64>,
    /// Print JSON: an array of log rows (with --follow, one object per line)
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV (RFC 4180: CRLF line ends, quoted where needed) with a header row
    #[arg(long)]
    pub csv: bool,
    /// After the selection, print each new row as it is committed, until interrupted
    #[arg(long)]
    pub follow: bool,
}

/// The backoff settings shared by `add` and `set`.
#[derive(Debug, Args, Default)]
pub struct SettingsArgs {
    /// How the interval grows with each miss [default: geometric]
    #[arg(long, value_parser = parse_strategy, value_name = "fixed|geometric|exponential")]
    pub strategy: Option<Strategy>,
    /// The interval after activity [default: 5m]
    #[arg(long, value_parser = positive_duration, value_name = "DURATION", allow_hyphen_values = true)]
    pub base: Option<i64>,
    /// The longest interval [default: 30m]
    #[arg(long, value_parser = positive_duration, value_name = "DURATION", allow_hyphen_values = true)]
    pub max: Option<i64>,
    /// Growth per miss for `geometric`, a finite number ≥ 1 [default: 1.5]
    #[arg(long, value_parser = parse_factor, value_name = "NUMBER", allow_hyphen_values = true)]
    pub factor: Option<f64>,
    /// Shorten each wait by a random fraction up to this, 0 to 1 [default: 0]
    #[arg(long, value_parser = parse_jitter, value_name = "FRACTION", allow_hyphen_values = true)]
    pub jitter: Option<f64>,
    /// Activity more recent than this means fresh: no poke [default: 5m]
    #[arg(long, value_parser = any_duration, value_name = "DURATION", allow_hyphen_values = true)]
    pub fresh: Option<i64>,
    /// No activity for this long means very stale: an unanswered poke is a miss [default: 15m]
    #[arg(long, value_parser = any_duration, value_name = "DURATION", allow_hyphen_values = true)]
    pub very_stale: Option<i64>,
    /// An absolute path whose modification time counts as activity
    #[arg(long, value_name = "PATH")]
    pub heartbeat_file: Option<String>,
    /// A command, run when the agent is due, that prints its last activity (Unix seconds or
    /// RFC 3339); counted when it changes
    #[arg(long, value_parser = parse_activity_cmd, value_name = "CMD", help_heading = "Probe, gate and escalation")]
    pub activity_cmd: Option<CommandLine>,
    /// A probe value no later than the last poke plus this is the poke's own echo [default: 2s]
    #[arg(long, value_parser = any_duration, value_name = "DURATION", allow_hyphen_values = true, help_heading = "Probe, gate and escalation")]
    pub echo: Option<i64>,
    /// A gate run when the agent is due: exit 0 pokes, 1-254 skips (held one wait), anything
    /// else pokes anyway and fires no rung
    #[arg(long, value_parser = parse_only_if, value_name = "CMD", help_heading = "Probe, gate and escalation")]
    pub only_if: Option<CommandLine>,
    /// Run CMD instead of the poke when misses in a row reach N (repeat for a ladder)
    #[arg(long, value_parser = parse_rung, value_name = "N:CMD", help_heading = "Probe, gate and escalation")]
    pub escalate: Vec<Rung>,
    /// After an escalation, hold the agent this long [default: 5m]
    #[arg(long, value_parser = any_duration, value_name = "DURATION", allow_hyphen_values = true, help_heading = "Probe, gate and escalation")]
    pub grace: Option<i64>,
    /// At most K escalations in any window W; `poked reset` clears it [default: 3/6h]
    #[arg(long, value_parser = parse_escalate_limit, value_name = "K/W", allow_hyphen_values = true, help_heading = "Probe, gate and escalation")]
    pub escalate_limit: Option<EscalateLimit>,
    /// Poke a tmux session: the command types the message and Enter, the probe reads the
    /// window's activity (an explicit command or --activity-cmd wins)
    #[arg(long, value_parser = parse_tmux, value_name = "SESSION", help_heading = "Probe, gate and escalation")]
    pub tmux: Option<String>,
    /// The text --tmux types [default: HEARTBEAT]
    #[arg(
        long,
        requires = "tmux",
        value_name = "TEXT",
        help_heading = "Probe, gate and escalation"
    )]
    pub message: Option<String>,
}

/// A command given as one string, split into words as a shell would (`--only-if 'bd ready'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine(pub Vec<String>);

fn parse_activity_cmd(text: &str) -> Result<CommandLine, String> {
    split_command("--activity-cmd", text)
        .map(CommandLine)
        .map_err(rule)
}

fn parse_only_if(text: &str) -> Result<CommandLine, String> {
    split_command("--only-if", text).map(CommandLine).map_err(rule)
}

fn parse_rung(text: &str) -> Result<Rung, String> {
    Rung::parse(text).map_err(rule)
}

fn parse_escalate_limit(text: &str) -> Result<EscalateLimit, String> {
    EscalateLimit::parse(text).map_err(rule)
}

fn parse_tmux(text: &str) -> Result<String, String> {
    poked::agent::tmux(text, poked::agent::TMUX_MESSAGE)
        .map(|_| text.to_string())
        .map_err(rule)
}

/// The rule a library error states, for clap's `invalid value '…' for '--opt': <rule>`.
fn rule(e: poked::Error) -> String {
    match e {
        poked::Error::InvalidValue { rule, .. } => rule,
        other => other.to_string(),
    }
}

/// An agent id as typed; checked by [`AgentId::parse`] before anything opens, so the error can
/// show a strange id escaped on one line.
pub type AgentIdArg = String;

fn positive_duration(text: &str) -> Result<i64, String> {
    match units::parse_duration(text)? {
        0 => Err("must be more than zero".into()),
        ms => Ok(ms),
    }
}

fn any_duration(text: &str) -> Result<i64, String> {
    units::parse_duration(text)
}

fn parse_strategy(text: &str) -> Result<Strategy, String> {
    text.parse()
}

fn parse_factor(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 1.0 => Ok(f),
        Ok(_) => Err("must be a finite number ≥ 1".into()),
        Err(_) => Err("not a number".into()),
    }
}

fn parse_jitter(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        Ok(_) => Err("must be between 0 and 1".into()),
        Err(_) => Err("not a number".into()),
    }
}
