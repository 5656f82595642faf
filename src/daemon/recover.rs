//! Start-up recovery: pokes a dead daemon left `pending`, and their commands.
//!
//! A daemon killed while a command ran leaves its poke (or escalation) `pending`. The next
//! daemon marks each such row `interrupted` (the agent is then not poked again before its next
//! due time, and an interrupted rung is not run again in its streak: a poke is sent at most
//! once) and stops the command's process group if it is still alive. The commands are found by
//! what poked puts in every command's environment, `POKED_POKE_ID` and `POKED_DB`, compared by
//! the file `POKED_DB` names (so a command started through another path to the same file is
//! found too), not by a process group recorded anywhere: a group id may since have been reused
//! by an unrelated process (after a reboot, say). Recovery runs only under the daemon lock, so
//! it never touches the pokes of another live daemon.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::store::Store;

/// Marks a dead daemon's pending pokes `interrupted` and stops their leftover commands.
/// Returns how many pokes were recovered.
pub fn recover(store: &Store, grace: Duration) -> Result<usize> {
    let pending = store.interrupt_pending("the daemon stopped before the command finished")?;
    if pending.is_empty() {
        return Ok(0);
    }
    let Some(db) = file_id(store.path()) else {
        return Ok(pending.len());
    };
    let wanted: BTreeSet<i64> = pending.iter().map(|p| p.log_id).collect();
    let groups = leftover_groups(db, &wanted);
    for p in &pending {
        tracing::warn!(
            agent = p.agent_id.as_str(),
            poke = p.log_id,
            kind = p.kind.as_str(),
            "left pending by a stopped daemon: recorded as interrupted"
        );
        for &pgid in groups.get(&p.log_id).into_iter().flatten() {
            tracing::warn!(
                agent = p.agent_id.as_str(),
                pgid,
                "stopping the leftover command of an interrupted poke"
            );
            stop_group(pgid, grace);
        }
    }
    Ok(pending.len())
}

/// A file's identity: device and inode.
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The process groups of live processes whose environment names one of `pokes` of the
/// database file `db`, by poke: one pass over /proc.
fn leftover_groups(db: (u64, u64), pokes: &BTreeSet<i64>) -> BTreeMap<i64, BTreeSet<i32>> {
    let mut groups: BTreeMap<i64, BTreeSet<i32>> = BTreeMap::new();
    for pid in all_pids() {
        if is_zombie(pid) {
            continue;
        }
        let Some(poke) = poke_of(pid, db).filter(|poke| pokes.contains(poke)) else {
            continue;
        };
        // A group id of 0 or 1 would signal far more than the command, and our own group
        // would take this daemon down with it.
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() };
        if let Some(pgid) = process_group(pid).filter(|pgid| *pgid > 1 && *pgid != own) {
            groups.entry(poke).or_default().insert(pgid);
        }
    }
    groups
}

/// Every pid in /proc.
fn all_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// The poke a process runs for, if its environment says it runs one for the database file
/// `db`.
fn poke_of(pid: i32, db: (u64, u64)) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let mut poke = None;
    let mut same_db = false;
    for var in environ.split(|b| *b == 0) {
        if let Some(value) = var.strip_prefix(b"POKED_POKE_ID=") {
            poke = std::str::from_utf8(value).ok()?.parse().ok();
        } else if let Some(value) = var.strip_prefix(b"POKED_DB=") {
            // A relative POKED_DB is relative to the command's own working directory.
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(value));
            let path = if path.is_relative() {
                std::path::PathBuf::from(format!("/proc/{pid}/cwd")).join(path)
            } else {
                path.to_path_buf()
            };
            same_db = file_id(&path) == Some(db);
        }
    }
    poke.filter(|_| same_db)
}

/// The pids whose process group is `pgid`, from /proc.
fn group_members(pgid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
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
