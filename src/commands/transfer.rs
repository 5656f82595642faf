//! `poked import` and `poked export` (the format and its rules: [`poked::transfer`]).

use std::io::{BufReader, Write};
use std::path::PathBuf;

use super::output::plural;
use super::{Context, io_err};
use poked::error::{Error, Result};
use poked::transfer::{ImportReport, export_to, import_from};

/// `poked import FILE` (`-` for standard input).
pub fn import(ctx: &Context, out: &mut dyn Write, file: &str, replace: bool) -> Result<()> {
    let now = ctx.now();
    let open = || ctx.open(true);
    let report = if file == "-" {
        import_from(std::io::stdin().lock(), replace, now, ctx.draw.as_ref(), open)?
    } else {
        let path = PathBuf::from(file);
        let input = std::fs::File::open(&path).map_err(|source| Error::Io { path, source })?;
        import_from(
            BufReader::with_capacity(1 << 16, input),
            replace,
            now,
            ctx.draw.as_ref(),
            open,
        )?
    };
    match report {
        ImportReport {
            added: 0,
            replaced: 0,
        } => writeln!(out, "nothing to import: the input holds no agents"),
        ImportReport { added, replaced: 0 } => writeln!(out, "imported {}", plural(added, "agent", "agents")),
        ImportReport { added, replaced } => writeln!(
            out,
            "imported {} ({added} new, {replaced} replaced)",
            plural(added + replaced, "agent", "agents"),
        ),
    }
    .map_err(io_err)
}

/// `poked export`: every agent as one JSON line, by id.
pub fn export(ctx: &Context, out: &mut dyn Write) -> Result<()> {
    let store = ctx.open_to_read()?;
    export_to(&store, out, ctx.now())?;
    Ok(())
}
