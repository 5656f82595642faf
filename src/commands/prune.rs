//! `poked prune --older-than D [--dry-run]`: deletes old log rows, in batches.

use std::io::Write;

use serde_json::json;

use super::output::{plural, print_json};
use super::{Context, io_err};
use poked::error::Result;
use poked::store::PRUNE_BATCH;
use poked::units::{format_duration, format_time};

/// `poked prune --older-than D [--dry-run]`.
pub fn prune(ctx: &Context, out: &mut dyn Write, older_than: i64, dry_run: bool, json: bool) -> Result<()> {
    let before = ctx.now().saturating_sub(older_than);
    let store = if dry_run {
        ctx.open_to_read()?
    } else {
        ctx.open(false)?
    };
    let rows = store.prune(before, PRUNE_BATCH, dry_run)?;
    if json {
        return print_json(
            out,
            &json!({
                "rows": rows,
                "dry_run": dry_run,
                "older_than_ms": older_than,
                "cutoff_at": format_time(before),
            }),
        );
    }
    writeln!(
        out,
        "{} {} older than {} ({}); each agent's newest row and pending pokes are kept",
        if dry_run { "would delete" } else { "deleted" },
        plural(rows, "log row", "log rows"),
        format_duration(older_than),
        format_time(before),
    )
    .map_err(io_err)
}
