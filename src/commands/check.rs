//! `poked check`: integrity and invariants; exit 1 listing every problem.
//!
//! The invariants are read in one snapshot. A `pending` row is a problem only when no daemon
//! holds the database before and after that snapshot and the row is still pending in a fresh
//! read afterwards, so a daemon starting, poking or stopping meanwhile is never a false alarm.

use std::io::Write;

use serde_json::json;

use super::output::{Table, print_json};
use super::{Context, io_err};
use poked::daemon::lock;
use poked::error::{Error, Result};
use poked::store::{Breach, Rule};

/// `poked check`.
pub fn check(ctx: &Context, out: &mut dyn Write, json: bool) -> Result<()> {
    let store = ctx.open_to_read()?;
    let daemon_before = lock::holder(&ctx.db);
    let snap = store.check_snapshot()?;
    let daemon_after = lock::holder(&ctx.db);
    let mut problems = snap.breaches;
    if daemon_before.is_none() && daemon_after.is_none() && !snap.pending.is_empty() {
        let ids: Vec<i64> = snap.pending.iter().map(|p| p.log_id).collect();
        let still = store.still_pending(&ids)?;
        for p in snap.pending.into_iter().filter(|p| still.contains(&p.log_id)) {
            problems.push(Breach {
                agent_id: Some(p.agent_id),
                rule: Rule::PendingWithoutDaemon,
                detail: format!(
                    "row {} is pending but no daemon runs on this database \
                     (the next `poked run` marks it interrupted)",
                    p.log_id
                ),
            });
        }
    }
    if json {
        print_json(
            out,
            &json!({
                "ok": problems.is_empty(),
                "agents_checked": snap.agents,
                "log_rows": snap.log_rows,
                "problems": problems.iter().map(|b| json!({
                    "agent_id": b.agent_id,
                    "rule": b.rule.as_str(),
                    "detail": b.detail,
                })).collect::<Vec<_>>(),
            }),
        )?;
    } else if problems.is_empty() {
        writeln!(
            out,
            "ok: the file is intact and poked's invariants hold ({} agents, {} log rows)",
            snap.agents, snap.log_rows
        )
        .map_err(io_err)?;
    } else {
        let mut t = Table::new(&["AGENT", "RULE", "PROBLEM"], &[]);
        for b in &problems {
            t.add_row(vec![
                b.agent_id.clone().unwrap_or_else(|| "-".into()),
                b.rule.as_str().to_string(),
                b.detail.clone(),
            ]);
        }
        t.print(out)?;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        out.flush().map_err(io_err)?;
        Err(Error::CheckFailed(problems.len()))
    }
}
