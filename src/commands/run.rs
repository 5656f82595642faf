//! `poked run`: the scheduler (see [`poked::daemon::service`]).

use std::io::Write;
use std::time::Duration;

use super::{Context, io_err};
use crate::cli::RunArgs;
use poked::daemon::{DaemonOptions, NotifyOptions, PassOptions, Shutdown, serve};
use poked::error::Result;

/// `poked run [--once] [--concurrency N] [--command-timeout D] [--retain D] [--metrics-listen ADDR]`.
///
/// The systemd variables are read here, once; the library only takes options.
pub fn run(ctx: &Context, out: &mut dyn Write, args: &RunArgs) -> Result<()> {
    let concurrency = u32::from(args.concurrency);
    // One connection per worker and one for the loop (the watcher and the metrics endpoint
    // open their own).
    let store = ctx.open_with(true, concurrency + 1)?;
    let options = DaemonOptions {
        pass: PassOptions {
            concurrency: concurrency as usize,
            command_timeout: Duration::from_millis(u64::try_from(args.command_timeout).unwrap_or(u64::MAX)),
            ..PassOptions::default()
        },
        retain_ms: args.retain,
        once: args.once,
        notify: if args.once {
            NotifyOptions::default()
        } else {
            NotifyOptions::from_env()
        },
        metrics_listen: args.metrics_listen,
    };
    let shutdown = Shutdown::new();
    let _signals = shutdown.on_signals()?;
    let report = serve(&store, ctx.clock.as_ref(), ctx.draw.as_ref(), &options, &shutdown)?;
    if args.once {
        writeln!(
            out,
            "{} pokes, {} misses, {} heartbeats{}",
            report.pokes,
            report.misses,
            report.heartbeats,
            if report.skips > 0 || report.escalations > 0 {
                format!(", {} skips, {} escalations", report.skips, report.escalations)
            } else {
                String::new()
            }
        )
        .map_err(io_err)?;
    }
    Ok(())
}
