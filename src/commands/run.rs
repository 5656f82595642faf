//! `poked run`: the scheduler.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{Context, io_err};
use crate::cli::RunArgs;
use crate::daemon::{Heartbeats, PassOptions, run_pass};
use crate::error::{Error, Result};

/// `poked run [--once]`.
pub fn run(ctx: &Context, out: &mut dyn Write, args: &RunArgs) -> Result<()> {
    if !args.once {
        return Err(Error::Usage(
            "only `poked run --once` (one pass) is available in this version".into(),
        ));
    }
    let store = ctx.open_with(true, u32::from(args.concurrency) + 1)?;
    let options = PassOptions {
        concurrency: usize::from(args.concurrency),
        command_timeout: Duration::from_millis(u64::try_from(args.command_timeout).unwrap_or(u64::MAX)),
        ..PassOptions::default()
    };
    let cancel = AtomicBool::new(false);
    let report = run_pass(
        &store,
        ctx.clock.as_ref(),
        ctx.draw.as_ref(),
        &Heartbeats::default(),
        &options,
        &cancel,
    )?;
    writeln!(
        out,
        "{} pokes, {} misses, {} heartbeats",
        report.pokes, report.misses, report.heartbeats
    )
    .map_err(io_err)
}
