//! `poked demo`: a self-contained demonstration on a temporary database.

use std::io::Write;

use super::Context;
use crate::error::{Error, Result};

/// `poked demo [--keep] [--duration D]`.
pub fn demo(_ctx: &Context, _out: &mut dyn Write, _keep: bool, _duration: i64) -> Result<()> {
    Err(Error::Usage("the demo is being written".into()))
}
