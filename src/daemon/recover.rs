//! Start-up recovery: pokes a dead daemon left `pending`, and their commands.
//!
//! A daemon killed while a command ran leaves its poke `pending` with the command's process
//! group recorded. The next daemon marks each such poke `interrupted` (the agent is then not
//! poked again before its next due time: a poke is sent at most once) and stops the group if it
//! is still alive. A process group id can be reused after a reboot, so a group is only signalled
//! when one of its members carries that very poke in its environment (`POKED_POKE_ID` and
//! `POKED_DB`, set by poked for every command).

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::store::Store;

/// Marks a dead daemon's pending pokes `interrupted` and stops their leftover commands.
/// Returns how many pokes were recovered.
pub fn recover(store: &Store, grace: Duration) -> Result<usize> {
    let pending = store.interrupt_pending("the daemon stopped before the command finished")?;
    for (log_id, agent_id, pgid) in &pending {
        tracing::warn!(
            agent = agent_id.as_str(),
            poke = log_id,
            "poke left pending by a stopped daemon: recorded as interrupted"
        );
        let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) else {
            continue;
        };
        let marker = format!("POKED_POKE_ID={log_id}");
        let db = format!("POKED_DB={}", store.path().display());
        if group_members(pgid)
            .iter()
            .any(|pid| environ_has(*pid, &marker, &db))
        {
            tracing::warn!(
                agent = agent_id.as_str(),
                pgid,
                "stopping the leftover command of an interrupted poke"
            );
            stop_group(pgid, grace);
        }
    }
    Ok(pending.len())
}

/// The pids whose process group is `pgid`, from /proc.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| process_group(*pid) == Some(pgid))
        .collect()
}

/// Field 5 of /proc/PID/stat (after the parenthesised command name, which may hold spaces).
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(2)?.parse().ok()
}

/// Whether a process has exited and only waits to be reaped (state `Z` or `X` in
/// /proc/PID/stat); a process that is gone altogether counts too.
fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_none_or(|state| state == "Z" || state == "X")
}

fn environ_has(pid: i32, marker: &str, db: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    vars.contains(&marker.as_bytes()) && vars.contains(&db.as_bytes())
}

/// SIGTERM to the group, up to `grace` for it to go, then SIGKILL.
fn stop_group(pgid: i32, grace: Duration) {
    // SAFETY: kill(2) with a negative pid signals a process group; pgid > 1 was checked, so
    // this can never signal every process (-1) or our own group (0).
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let started = Instant::now();
    while started.elapsed() < grace {
        // A group whose members have all exited is gone, even while its zombies wait for
        // their new parent (often init, which may reap them seconds later) to collect them.
        if group_members(pgid).iter().all(|pid| is_zombie(*pid)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_process_group_of_this_process() {
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() };
        assert_eq!(process_group(std::process::id() as i32), Some(own));
        assert!(group_members(own).contains(&(std::process::id() as i32)));
    }
}
