//! `poked metrics`: the state in the Prometheus text format (see [`poked::metrics`]), the same
//! text the daemon serves at `/metrics`.

use std::io::Write;

use super::{Context, io_err};
use poked::error::Result;

/// `poked metrics`.
pub fn metrics(ctx: &Context, out: &mut dyn Write) -> Result<()> {
    let store = ctx.open_to_read()?;
    let text = poked::metrics::render(&store, ctx.now())?;
    out.write_all(text.as_bytes()).map_err(io_err)
}
