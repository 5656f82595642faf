//! `poked run`: the scheduler (see [`crate::daemon::service`]).

use std::io::Write;
use std::time::Duration;

use super::{Context, io_err};
use crate::cli::RunArgs;
use crate::daemon::{DaemonOptions, PassOptions, serve};
use crate::error::Result;

/// `poked run [--once] [--concurrency N] [--command-timeout D] [--retain D]`.
pub fn run(ctx: &Context, out: &mut dyn Write, args: &RunArgs) -> Result<()> {
    let concurrency = u32::from(args.concurrency);
    // One connection per worker, one for the loop, one for watching changes, one spare.
    let store = ctx.open_with(true, concurrency + 3)?;
    let options = DaemonOptions {
        pass: PassOptions {
            concurrency: concurrency as usize,
            command_timeout: Duration::from_millis(u64::try_from(args.command_timeout).unwrap_or(u64::MAX)),
            ..PassOptions::default()
        },
        retain_ms: args.retain,
        once: args.once,
    };
    let report = serve(&store, ctx.clock.as_ref(), ctx.draw.as_ref(), &options)?;
    if args.once {
        writeln!(
            out,
            "{} pokes, {} misses, {} heartbeats",
            report.pokes, report.misses, report.heartbeats
        )
        .map_err(io_err)?;
    }
    Ok(())
}
