//! Start-up recovery: pokes a dead daemon left `pending`, and their commands.
//!
//! A daemon killed while a command ran leaves its poke (or escalation) `pending`. The next
//! daemon marks each such row `interrupted` (the agent is then not poked again before its next
//! due time, and an interrupted rung is not run again in its streak: a poke is sent at most
//! once) and stops the command's process group if it is still alive. The commands are found by
//! what poked puts in every command's environment: `POKED_POKE_ID` (or `POKED_CHECK` for a
//! probe or a gate) and `POKED_DB`, compared by the file `POKED_DB` names (so a command started
//! through another path to the same file is found too), not by a process group recorded
//! anywhere: a group id may since have been reused by an unrelated process (after a reboot,
//! say). `POKED_DB` alone marks nothing: shells and agents export it for their hooks. Recovery runs only under the daemon lock, so
//! it never touches the pokes of another live daemon.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::store::Store;

/// Marks a dead daemon's pending pokes `interrupted` and stops their leftover commands, and
/// those of its probes and gates. Returns how many pokes were recovered.
pub fn recover(store: &Store, grace: Duration) -> Result<usize> {
    let pending = store.interrupt_pending("the daemon stopped before the command finished")?;
    for p in &pending {
        tracing::warn!(
            agent = p.agent_id.as_str(),
            poke = p.log_id,
            kind = p.kind.as_str(),
            "left pending by a stopped daemon: recorded as interrupted"
        );
    }
    let Some(db) = file_id(store.path()) else {
        return Ok(pending.len());
    };
    let wanted: BTreeSet<i64> = pending.iter().map(|p| p.log_id).collect();
    for (pgid, leftover) in leftover_groups(db, &wanted) {
        tracing::warn!(
            agent = leftover.agent.as_str(),
            pgid,
            what = leftover.what(),
            "stopping a command left running by a stopped daemon"
        );
        stop_group(pgid, grace);
    }
    Ok(pending.len())
}

/// A file's identity: device and inode.
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// A command of the database's agents found running.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leftover {
    agent: String,
    /// The poke's (or escalation's) log row; `None` for a probe or a gate.
    poke: Option<i64>,
}

impl Leftover {
    fn what(&self) -> &'static str {
        if self.poke.is_some() {
            "the command of an interrupted poke"
        } else {
            "a probe or a gate"
        }
    }
}

/// The process groups of live commands of the database file `db` that a dead daemon left: the
/// commands of the interrupted `pokes`, and every probe and gate (no daemon holds the file, so
/// none is anyone's). One pass over /proc. A group that is its own session's (a process that
/// detached itself with `setsid`, such as a tmux server a command started) is never stopped:
/// poked starts each command in a group of its own inside its own session, so such a group is
/// not a command of poked's but something a command started to outlive it.
fn leftover_groups(db: (u64, u64), pokes: &BTreeSet<i64>) -> BTreeMap<i32, Leftover> {
    let mut groups = BTreeMap::new();
    // SAFETY: getpgrp has no preconditions.
    let own = unsafe { libc::getpgrp() };
    for pid in all_pids() {
        if is_zombie(pid) {
            continue;
        }
        let Some(found) = command_of(pid, db) else {
            continue;
        };
        if found.poke.is_some_and(|poke| !pokes.contains(&poke)) {
            continue;
        }
        let Some((pgid, session)) = process_group(pid).zip(session(pid)) else {
            continue;
        };
        // A group id of 0 or 1 would signal far more than the command, and our own group
        // would take this daemon down with it.
        if pgid > 1 && pgid != own && pgid != session {
            groups.entry(pgid).or_insert(found);
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

/// The agent and poke a process runs a command for, if its environment says it runs one for
/// the database file `db`: `POKED_DB` names that file, and `POKED_POKE_ID` (a poke or a rung)
/// or `POKED_CHECK` (a probe or a gate) says it is a command poked started.
fn command_of(pid: i32, db: (u64, u64)) -> Option<Leftover> {
    use std::os::unix::ffi::OsStrExt;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let mut poke = None;
    let mut check = false;
    let mut agent = None;
    let mut same_db = false;
    for var in environ.split(|b| *b == 0) {
        if let Some(value) = var.strip_prefix(b"POKED_POKE_ID=") {
            poke = std::str::from_utf8(value).ok()?.parse().ok();
        } else if var.starts_with(b"POKED_CHECK=") {
            check = true;
        } else if let Some(value) = var.strip_prefix(b"POKED_AGENT=") {
            agent = Some(String::from_utf8_lossy(value).into_owned());
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
    // POKED_DB alone is no mark: a user's shell or an agent's session exports it for its hooks.
    let ours = same_db && (poke.is_some() || check);
    let agent = agent.unwrap_or_else(|| "?".into());
    Some(Leftover { agent, poke }).filter(|_| ours)
}

/// The pids whose process group is `pgid`, from /proc.
fn group_members(pgid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|pid| process_group(*pid) == Some(pgid))
        .collect()
}

/// Field `n` (counted from 3, the state) of /proc/PID/stat, after the parenthesised command
/// name, which may hold spaces.
fn stat_field(pid: i32, n: usize) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(n - 3)?.parse().ok()
}

/// The process group (field 5 of /proc/PID/stat).
fn process_group(pid: i32) -> Option<i32> {
    stat_field(pid, 5)
}

/// The session (field 6 of /proc/PID/stat).
fn session(pid: i32) -> Option<i32> {
    stat_field(pid, 6)
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
