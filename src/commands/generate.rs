//! `poked completions SHELL` and `poked man [COMMAND]`: text generated from the clap definitions that
//! also make `--help`, so the three never disagree.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::io_err;
use crate::cli::Cli;
use poked::error::{Error, Result};

/// `poked completions SHELL`: the completion script for `shell`.
pub fn completions(out: &mut dyn Write, shell: Shell) -> Result<()> {
    let mut command = Cli::command();
    let name = command.get_name().to_string();
    clap_complete::generate(shell, &mut command, name, out);
    out.flush().map_err(io_err)
}

/// `poked man [COMMAND]`: poked(1), or the page of one command (poked-run(1)), in roff.
pub fn man(out: &mut dyn Write, command: Option<&str>) -> Result<()> {
    let mut cli = Cli::command();
    // Built, every command knows its full name (`poked-run`) for its page's title.
    cli.build();
    let page = match command {
        None => cli,
        Some(name) => cli
            .find_subcommand(name)
            .cloned()
            .ok_or_else(|| Error::invalid("command", name, "not a poked command (see `poked --help`)"))?,
    };
    clap_mangen::Man::new(page)
        .source(format!("poked {}", env!("CARGO_PKG_VERSION")))
        .render(out)
        .map_err(io_err)
}
