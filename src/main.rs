//! The `poked` binary: parse, set up logging, run, print the error once, exit with its code.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

mod cli;
mod commands;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use cli::{Cli, Command, LogFormat};
use poked::Error;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            // Help and version go to stdout; a closed pipe is not worth reporting.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("poked: {}", one_line_clap_error(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    if cli.command.is_none() && !cli.print_db {
        // A bare `poked` shows what it can do, on stderr since it did not do it.
        let _ = Cli::command().write_help(&mut std::io::stderr());
        return ExitCode::from(2);
    }
    init_logging(&cli);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = commands::run(cli, &mut out).and_then(|()| out.flush().map_err(commands_io));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("poked: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

fn commands_io(source: std::io::Error) -> Error {
    Error::Io {
        path: "<stdout>".into(),
        source,
    }
}

/// A closed stdout (`poked list | head -1`) is a normal end, not an error.
fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// clap's errors span several lines; poked's errors are one: `poked: <what went wrong>`.
fn one_line_clap_error(text: &str) -> String {
    let first_block: Vec<&str> = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let joined = first_block.join(" ");
    let joined = joined.strip_prefix("error: ").unwrap_or(&joined);
    format!("{joined} (see --help)")
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => tracing::Level::ERROR,
        // The demo prints its own story; the daemon's log lines would only repeat it.
        (false, 0) if matches!(cli.command, Some(Command::Demo { .. })) => tracing::Level::WARN,
        (false, 0) => tracing::Level::INFO,
        (false, 1) => tracing::Level::DEBUG,
        (false, _) => tracing::Level::TRACE,
    };
    use std::io::IsTerminal;
    // The migration crate announces every migration at info; poked says what matters itself.
    let filter = tracing_subscriber::EnvFilter::new(format!("{level},rusqlite_migration=warn"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_target(false);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
