//! Running one command (a poke, an escalation, a probe or a gate), with strict process
//! hygiene.
//!
//! This module owns everything between "here is an argv" and "here is what happened": spawning
//! the program directly (no shell) with stdin on `/dev/null`, putting it in a process group of
//! its own so that the whole tree it forks can be signalled at once, draining stdout and stderr
//! so a chatty command can neither deadlock on a full pipe nor grow our memory (only the first
//! [`STDOUT_CAP`] bytes of stdout, for a probe's answer, and the first [`DETAIL_CAP`] bytes of
//! stderr are kept), enforcing the timeout and the caller's cancel flag with a SIGTERM → grace
//! → SIGKILL sequence aimed at the whole group, and always reaping the child. Commands never
//! see the systemd variables meant for poked itself (`NOTIFY_SOCKET`, `WATCHDOG_*`,
//! `LISTEN_*`).
//!
//! Design notes:
//!
//! * The calling thread does all the watching with one `poll(2)` over the leader's pidfd and
//!   both pipes: no helper thread, channel or lock per command (two threads per command cost
//!   more than the bookkeeping of the poke itself). A pidfd becomes readable when the leader
//!   exits and does *not* reap it: the leader stays a zombie until the very end, so its pid —
//!   which is also the pgid — cannot be recycled while we still send signals to `-pgid`. Only
//!   after the final SIGKILL to the group is the leader reaped with [`Child::wait`]. On a
//!   kernel without pidfds (before Linux 5.3) the loop asks `waitid(WNOHANG | WNOWAIT)`
//!   instead, every 5 ms at most.
//! * The poke owns its process group: whatever way the leader ends (normal exit included),
//!   leftover members of the group get SIGTERM, up to `grace` to go (we stop waiting early once
//!   the leader has exited and both pipes are closed), then SIGKILL.
//! * Processes that left the group (`setsid`) are out of reach and may keep our pipes open:
//!   after a short drain once the leader is reaped, we stop reading them and close our ends.
//! * On timeout or cancel, `exit_code` reports the leader's real status: `None` when it died
//!   from a signal (the usual case), `Some(code)` when it exited with a code during the grace
//!   period (e.g. from a SIGTERM handler).

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::log::Outcome;

/// What happened when a command ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// How it ended: `ok`, `failed`, `timeout`, `error` or `interrupted`.
    pub outcome: Outcome,
    /// `Some(code)` when the leader exited normally; `None` if it was killed
    /// by a signal or never started.
    pub exit_code: Option<i32>,
    /// Wall time from spawn to reap, in milliseconds.
    pub duration_ms: i64,
    /// Notes (timeout, signal, errors) and the captured stderr, if any.
    pub detail: Option<String>,
    /// The first [`STDOUT_CAP`] bytes of stdout.
    pub stdout: Vec<u8>,
}

/// Maximum bytes of stderr kept in `detail`.
pub const DETAIL_CAP: usize = 1024;

/// Maximum bytes of stdout kept (a probe prints one instant).
pub const STDOUT_CAP: usize = 4096;

/// Longest single wait between two looks at the cancel flag.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// Longest single wait between two looks at the leader when the kernel gives no pidfd.
const NO_PIDFD_SLICE: Duration = Duration::from_millis(5);

/// How long to keep draining pipes after the group has been killed and the
/// leader reaped. Only processes that escaped the group can hold them open.
const PIPE_DRAIN: Duration = Duration::from_millis(500);

/// Size of the read buffer.
const READ_CHUNK: usize = 8192;

/// The variables of poked's own supervisor, never passed on to a command.
fn inherited_only_by_poked(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name == b"NOTIFY_SOCKET" || name.starts_with(b"WATCHDOG_") || name.starts_with(b"LISTEN_")
}

/// The names of such variables in poked's environment, looked for once: poked never changes
/// its own environment, and copying it at every spawn cost more than the rest of the set-up.
fn only_for_poked() -> &'static [OsString] {
    static NAMES: OnceLock<Vec<OsString>> = OnceLock::new();
    NAMES.get_or_init(|| {
        std::env::vars_os()
            .map(|(name, _)| name)
            .filter(|name| inherited_only_by_poked(name))
            .collect()
    })
}

/// Runs `argv` (no shell) and reports how it went. See the module docs.
///
/// `on_spawn` is called with the child's pid (which is also its pgid) right
/// after a successful spawn.
pub fn run_command(
    argv: &[String],
    env: &[(String, OsString)],
    timeout: Duration,
    grace: Duration,
    cancel: &AtomicBool,
    on_spawn: &mut dyn FnMut(u32),
) -> CommandResult {
    let Some((program, args)) = argv.split_first() else {
        return not_run(Outcome::Error, "empty command", 0);
    };
    if cancel.load(Ordering::SeqCst) {
        return not_run(Outcome::Interrupted, "stopped before its command started", 0);
    }

    let mut command = Command::new(program);
    for name in only_for_poked() {
        command.env_remove(name);
    }
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);

    let start = Instant::now();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            return not_run(
                Outcome::Error,
                &format!("could not start `{program}`: {err}"),
                millis(start.elapsed()),
            );
        }
    };
    let pid = child.id();
    on_spawn(pid);
    // `Child::id` is a `pid_t` widened to `u32`, so this round-trips exactly.
    let pgid = pid as libc::pid_t;
    let mut watch = Watch::new(&mut child, pgid);

    let deadline = start.checked_add(timeout);
    let end = loop {
        if watch.exited {
            break match watch.wait_error.take() {
                Some(err) => End::WaitFailed(err),
                None => End::Exited,
            };
        }
        if cancel.load(Ordering::SeqCst) {
            break End::Cancelled;
        }
        let Some(slice) = slice_until(deadline) else {
            break End::TimedOut;
        };
        watch.step(slice);
    };

    // Clean up the group. If the leader has exited it is still an unreaped
    // zombie, which keeps `pgid` from being reused while we signal it.
    if !matches!(end, End::Exited) {
        tracing::debug!(pgid, reason = ?end, "terminating process group");
    }
    signal_group(pgid, libc::SIGTERM);
    let grace_deadline = Instant::now().checked_add(grace);
    watch.until(grace_deadline, |w| w.exited && w.pipes_closed());
    signal_group(pgid, libc::SIGKILL);
    // SIGKILL cannot be ignored, so the leader's exit is now imminent.
    watch.until(None, |w| w.exited);
    let status = child.wait();
    let duration_ms = millis(start.elapsed());
    watch.until(Instant::now().checked_add(PIPE_DRAIN), Watch::pipes_closed);
    if !watch.pipes_closed() {
        // Only a process that escaped the group can still hold the pipes: stop reading them.
        tracing::debug!(
            pgid,
            "pipes still open after the group was killed; no longer reading them"
        );
    }
    let capture = watch.capture;

    let status = match status {
        Ok(status) => status,
        Err(err) => {
            let note = format!("could not wait for `{program}`: {err}");
            return finish(Outcome::Error, None, duration_ms, vec![note], capture);
        }
    };
    let exit_code = status.code();
    let (outcome, notes) = match end {
        End::Exited => exited_outcome(status),
        End::TimedOut => (Outcome::Timeout, vec![format!("timed out after {timeout:?}")]),
        End::Cancelled => (Outcome::Interrupted, vec!["interrupted".to_owned()]),
        End::WaitFailed(err) => (
            Outcome::Error,
            vec![format!("could not wait for `{program}`: {err}")],
        ),
    };
    let exit_code = if outcome == Outcome::Error {
        None
    } else {
        exit_code
    };
    finish(outcome, exit_code, duration_ms, notes, capture)
}

/// Why supervision of a running leader stopped.
#[derive(Debug)]
enum End {
    Exited,
    TimedOut,
    Cancelled,
    WaitFailed(io::Error),
}

/// Outcome and notes for a leader that exited on its own.
fn exited_outcome(status: ExitStatus) -> (Outcome, Vec<String>) {
    if status.success() {
        return (Outcome::Ok, Vec::new());
    }
    if status.code().is_some() {
        return (Outcome::Failed, Vec::new());
    }
    let note = match status.signal() {
        Some(signal) if status.core_dumped() => {
            format!("killed by signal {signal} (core dumped)")
        }
        Some(signal) => format!("killed by signal {signal}"),
        None => format!("ended abnormally ({status})"),
    };
    (Outcome::Failed, vec![note])
}

/// A result for a command that never ran.
fn not_run(outcome: Outcome, detail: &str, duration_ms: i64) -> CommandResult {
    CommandResult {
        outcome,
        exit_code: None,
        duration_ms,
        detail: Some(detail.to_owned()),
        stdout: Vec::new(),
    }
}

/// Assembles the final result, joining `notes` and the captured stderr.
fn finish(
    outcome: Outcome,
    exit_code: Option<i32>,
    duration_ms: i64,
    mut notes: Vec<String>,
    captured: Capture,
) -> CommandResult {
    if let Some(err) = &captured.read_error {
        notes.push(format!("reading its output failed: {err}"));
    }
    if let Some(text) = render_stderr(&captured.stderr, captured.stderr_truncated) {
        notes.push(text);
    }
    CommandResult {
        outcome,
        exit_code,
        duration_ms,
        detail: if notes.is_empty() {
            None
        } else {
            Some(notes.join("; "))
        },
        stdout: captured.stdout,
    }
}

/// The next wait: what is left before `deadline` (`None`: no deadline), at most
/// [`POLL_SLICE`]; `None` once the deadline has passed.
fn slice_until(deadline: Option<Instant>) -> Option<Duration> {
    let Some(deadline) = deadline else {
        return Some(POLL_SLICE);
    };
    let left = deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())?;
    Some(left.min(POLL_SLICE))
}

fn millis(elapsed: Duration) -> i64 {
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// Sends `signal` to every process in group `pgid`; errors (usually ESRCH,
/// the group is already gone) are ignored.
fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // `kill(-1)` would hit every process we may signal and `kill(-0)` our own
    // group: never let a bogus pgid get that far.
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// A descriptor that becomes readable when process `pid` (our unreaped child) exits, or `None`
/// when the kernel has no pidfds.
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    #[cfg(test)]
    if tests::NO_PIDFD.get() {
        return None;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: the descriptor was just created and nothing else owns it.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// Whether process `pid` (our child) has exited, without reaping it.
fn has_exited(pid: libc::pid_t) -> io::Result<bool> {
    let id = libc::id_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: siginfo_t is a plain C struct for which all-zeroes is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t for the whole call.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                id,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        if rc == 0 {
            // With WNOHANG and no exited child, `si_pid` stays zero.
            // SAFETY: waitid filled `info` (or left it zeroed).
            return Ok(unsafe { info.si_pid() } != 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The first bytes of stdout and stderr, as read so far.
#[derive(Default)]
struct Capture {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stderr_truncated: bool,
    read_error: Option<String>,
}

/// Watching one child: its exit and both of its pipes, from the calling thread.
struct Watch {
    pid: libc::pid_t,
    /// Readable once the leader exits; `None` without pidfds (then `waitid` is asked).
    pidfd: Option<OwnedFd>,
    /// The leader has exited (a zombie, not reaped yet), or waiting for it failed.
    exited: bool,
    wait_error: Option<io::Error>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    capture: Capture,
}

impl Watch {
    fn new(child: &mut Child, pid: libc::pid_t) -> Watch {
        Watch {
            pid,
            pidfd: pidfd_open(pid),
            exited: false,
            wait_error: None,
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            capture: Capture::default(),
        }
    }

    fn pipes_closed(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }

    /// Waits up to `timeout` for the leader to exit or output to arrive, and takes in what came.
    fn step(&mut self, timeout: Duration) {
        let running = !self.exited;
        let pidfd = self.pidfd.as_ref().filter(|_| running).map(AsRawFd::as_raw_fd);
        let timeout = if running && pidfd.is_none() {
            timeout.min(NO_PIDFD_SLICE)
        } else {
            timeout
        };
        let fd = |fd: Option<RawFd>| libc::pollfd {
            fd: fd.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [
            fd(pidfd),
            fd(self.stdout.as_ref().map(AsRawFd::as_raw_fd)),
            fd(self.stderr.as_ref().map(AsRawFd::as_raw_fd)),
        ];
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // Round up, so a wait of a fraction of a millisecond is not a busy loop.
        let millis = millis.saturating_add(i32::from(timeout.subsec_nanos() % 1_000_000 != 0));
        // SAFETY: three valid `pollfd`s that live across the call (a negative fd is ignored).
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 3, millis) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                // poll(2) on valid descriptors fails only for want of memory: stop reading.
                self.capture.read_error = Some(err.to_string());
                self.stdout = None;
                self.stderr = None;
            }
            return;
        }
        if fds[1].revents != 0 {
            read_into(&mut self.stdout, &mut self.capture, false);
        }
        if fds[2].revents != 0 {
            read_into(&mut self.stderr, &mut self.capture, true);
        }
        if !running {
            return;
        }
        if pidfd.is_some() {
            self.exited = fds[0].revents != 0;
        } else {
            match has_exited(self.pid) {
                Ok(exited) => self.exited = exited,
                Err(err) => {
                    self.exited = true;
                    self.wait_error = Some(err);
                }
            }
        }
    }

    /// Steps until `done` holds or `deadline` passes (`None`: no deadline).
    fn until(&mut self, deadline: Option<Instant>, done: impl Fn(&Self) -> bool) {
        loop {
            if done(self) {
                return;
            }
            let Some(slice) = slice_until(deadline) else {
                return;
            };
            self.step(slice);
        }
    }
}

/// Reads what one ready pipe holds into the capture; closes it at end of file or on an error.
fn read_into<R: Read>(pipe: &mut Option<R>, capture: &mut Capture, is_stderr: bool) {
    let Some(reader) = pipe else { return };
    let mut chunk = [0u8; READ_CHUNK];
    match reader.read(&mut chunk) {
        Ok(0) => *pipe = None,
        Ok(n) => keep(capture, is_stderr, &chunk[..n]),
        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
        Err(err) => {
            capture.read_error = Some(err.to_string());
            *pipe = None;
        }
    }
}

/// Keeps what fits of `bytes` in the capture of stdout or stderr.
fn keep(captured: &mut Capture, is_stderr: bool, bytes: &[u8]) {
    let (buf, cap) = if is_stderr {
        (&mut captured.stderr, DETAIL_CAP)
    } else {
        (&mut captured.stdout, STDOUT_CAP)
    };
    let room = cap.saturating_sub(buf.len());
    let take = room.min(bytes.len());
    buf.extend_from_slice(&bytes[..take]);
    if is_stderr && take < bytes.len() {
        captured.stderr_truncated = true;
    }
}

/// Turns captured stderr into text for `detail`: at most `DETAIL_CAP` bytes,
/// lossily decoded, trailing whitespace trimmed, and marked when truncated.
fn render_stderr(bytes: &[u8], truncated: bool) -> Option<String> {
    let bytes = if truncated {
        without_partial_char(bytes)
    } else {
        bytes
    };
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    let mut truncated = truncated;
    if text.len() > DETAIL_CAP {
        // Replacement characters take 3 bytes each, so lossy decoding can
        // grow the text; cut it back at a char boundary.
        let mut cut = DETAIL_CAP;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        truncated = true;
    }
    let text = text.trim_end();
    match (text.is_empty(), truncated) {
        (true, false) => None,
        (true, true) => Some("[stderr truncated]".to_owned()),
        (false, false) => Some(text.to_owned()),
        (false, true) => Some(format!("{text} [stderr truncated]")),
    }
}

/// Drops a UTF-8 sequence left incomplete at the end of `bytes` by the cap.
fn without_partial_char(bytes: &[u8]) -> &[u8] {
    for back in 1..=bytes.len().min(4) {
        let index = bytes.len() - back;
        let byte = bytes[index];
        if byte & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead byte
        }
        let needed = match byte {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return bytes, // not UTF-8 at all; lossy decoding copes
        };
        return if needed > back { &bytes[..index] } else { bytes };
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    const SECOND: Duration = Duration::from_secs(1);
    const GRACE: Duration = Duration::from_millis(500);

    thread_local! {
        /// Makes this thread's commands run as on a kernel without pidfds.
        pub(super) static NO_PIDFD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    struct Run {
        result: CommandResult,
        pgid: Option<libc::pid_t>,
        elapsed: Duration,
    }

    fn run_with(argv: &[&str], env: &[(&str, &str)], timeout: Duration, cancel: &AtomicBool) -> Run {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let mut pgid = None;
        let started = Instant::now();
        let result = run_command(&argv, &env, timeout, GRACE, cancel, &mut |pid| {
            pgid = Some(pid as libc::pid_t)
        });
        Run {
            result,
            pgid,
            elapsed: started.elapsed(),
        }
    }

    fn run(argv: &[&str], timeout: Duration) -> Run {
        run_with(argv, &[], timeout, &AtomicBool::new(false))
    }

    /// Waits (a few seconds at most) for group `pgid` to have no members at
    /// all. Orphaned grandchildren are reaped by PID 1, not by us, and stay
    /// zombie members of the group until it gets to them; the sandbox's PID 1
    /// takes up to ~2 s. A surviving process never lets this succeed. On
    /// failure the group is killed so the test leaves nothing behind.
    fn assert_group_gone(pgid: libc::pid_t) {
        assert!(pgid > 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // SAFETY: kill(2) with signal 0 only checks for existence.
            let rc = unsafe { libc::kill(-pgid, 0) };
            if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                return;
            }
            if Instant::now() >= deadline {
                // SAFETY: as above; clean up before failing.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                panic!("process group {pgid} still exists");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn exit_codes_map_to_ok_and_failed() {
        let ok = run(&["true"], SECOND * 5);
        assert_eq!(ok.result.outcome, Outcome::Ok);
        assert_eq!(ok.result.exit_code, Some(0));
        assert_eq!(ok.result.detail, None);

        let failed = run(&["sh", "-c", "exit 3"], SECOND * 5);
        assert_eq!(failed.result.outcome, Outcome::Failed);
        assert_eq!(failed.result.exit_code, Some(3));
        assert_eq!(failed.result.outcome.as_str(), "failed");
    }

    #[test]
    fn missing_program_is_an_error() {
        let run = run(&["poked-no-such-program-xyz", "arg"], SECOND * 5);
        assert_eq!(run.result.outcome, Outcome::Error);
        assert_eq!(run.result.exit_code, None);
        assert_eq!(run.pgid, None, "on_spawn must not be called");
        let detail = run.result.detail.unwrap();
        assert!(
            detail.starts_with("could not start `poked-no-such-program-xyz`: "),
            "{detail}"
        );
        assert!(detail.contains("os error 2"), "{detail}");
    }

    #[test]
    fn empty_argv_is_an_error() {
        let result = run_command(&[], &[], SECOND, GRACE, &AtomicBool::new(false), &mut |_| {
            panic!("nothing to spawn")
        });
        assert_eq!(result.outcome, Outcome::Error);
        assert_eq!(result.detail.as_deref(), Some("empty command"));
    }

    #[test]
    fn stderr_is_captured() {
        let run = run(&["sh", "-c", "echo out; echo oops >&2; exit 1"], SECOND * 5);
        assert_eq!(run.result.outcome, Outcome::Failed);
        assert_eq!(run.result.exit_code, Some(1));
        assert_eq!(run.result.detail.as_deref(), Some("oops"));
    }

    #[test]
    fn stderr_is_capped() {
        let run = run(
            &["sh", "-c", "yes 0123456789abcdef | head -c 1000000 >&2"],
            SECOND * 5,
        );
        assert_eq!(run.result.outcome, Outcome::Ok);
        let detail = run.result.detail.unwrap();
        assert!(detail.len() <= DETAIL_CAP + 32, "{} bytes", detail.len());
        assert!(detail.len() >= DETAIL_CAP - 32, "{} bytes", detail.len());
        assert!(detail.starts_with("0123456789abcdef\n"), "{detail}");
        assert!(detail.ends_with(" [stderr truncated]"), "{detail}");
    }

    #[test]
    fn stdout_is_drained() {
        // 5 MB is far more than a pipe buffer: an undrained stdout would
        // block the writer until the timeout.
        let run = run(&["sh", "-c", "yes | head -c 5000000"], SECOND * 10);
        assert_eq!(run.result.outcome, Outcome::Ok);
        assert!(run.elapsed < SECOND * 5, "{:?}", run.elapsed);
    }

    #[test]
    fn stdout_flood_times_out_and_group_dies() {
        let run = run(&["yes"], SECOND);
        assert_eq!(run.result.outcome, Outcome::Timeout);
        assert_eq!(run.result.exit_code, None);
        assert_eq!(run.result.detail.as_deref(), Some("timed out after 1s"));
        assert!(run.elapsed >= SECOND, "{:?}", run.elapsed);
        assert!(run.elapsed < SECOND * 4, "{:?}", run.elapsed);
        assert_group_gone(run.pgid.unwrap());
    }

    #[test]
    fn timeout_kills_whole_process_group() {
        let run = run(&["sh", "-c", "sleep 600 & sleep 600"], SECOND);
        let pgid = run.pgid.unwrap();
        assert_eq!(run.result.outcome, Outcome::Timeout);
        assert_eq!(run.result.outcome.as_str(), "timeout");
        assert!(run.elapsed < SECOND * 3, "{:?}", run.elapsed);
        assert!(run.result.duration_ms >= 1000, "{:?}", run.result);
        assert_group_gone(pgid);
    }

    #[test]
    fn timeout_kills_group_members_that_ignore_sigterm() {
        // Every member ignores SIGTERM (an ignored disposition survives
        // fork and exec): only the final SIGKILL to the group ends them.
        let run = run(
            &[
                "sh",
                "-c",
                "trap '' TERM; sh -c 'trap \"\" TERM; sleep 600' & sleep 600",
            ],
            SECOND,
        );
        assert_eq!(run.result.outcome, Outcome::Timeout);
        assert!(run.elapsed < SECOND * 4, "{:?}", run.elapsed);
        assert_group_gone(run.pgid.unwrap());
    }

    #[test]
    fn leftover_background_processes_are_cleaned_up() {
        let run = run(&["sh", "-c", "sleep 600 & exit 0"], SECOND * 10);
        assert_eq!(run.result.outcome, Outcome::Ok);
        assert_eq!(run.result.exit_code, Some(0));
        assert!(run.elapsed < SECOND * 3, "{:?}", run.elapsed);
        assert_group_gone(run.pgid.unwrap());
    }

    #[test]
    fn stdin_is_dev_null() {
        let script = if cfg!(target_os = "linux") {
            r#"cat && test "$(readlink /proc/self/fd/0)" = /dev/null"#
        } else {
            "cat"
        };
        let run = run(&["sh", "-c", script], SECOND * 5);
        assert_eq!(run.result.outcome, Outcome::Ok, "{:?}", run.result);
        assert!(run.elapsed < SECOND * 2, "{:?}", run.elapsed);
    }

    #[test]
    fn env_is_passed_on_top_of_parent_env() {
        let run = run_with(
            &["sh", "-c", r#"test "$POKED_AGENT" = mayor && test -n "$PATH""#],
            &[("POKED_AGENT", "mayor")],
            SECOND * 5,
            &AtomicBool::new(false),
        );
        assert_eq!(run.result.outcome, Outcome::Ok, "{:?}", run.result);
    }

    #[test]
    fn cancel_interrupts() {
        let cancel = AtomicBool::new(false);
        let run = thread::scope(|scope| {
            scope.spawn(|| {
                thread::sleep(Duration::from_millis(200));
                cancel.store(true, Ordering::SeqCst);
            });
            run_with(&["sleep", "600"], &[], SECOND * 60, &cancel)
        });
        assert_eq!(run.result.outcome, Outcome::Interrupted);
        assert_eq!(run.result.outcome.as_str(), "interrupted");
        assert_eq!(run.result.exit_code, None);
        assert!(run.elapsed >= Duration::from_millis(200), "{:?}", run.elapsed);
        assert!(run.elapsed < SECOND * 2, "{:?}", run.elapsed);
        assert_group_gone(run.pgid.unwrap());
    }

    #[test]
    fn cancel_before_start_runs_nothing() {
        let result = run_command(
            &["true".to_owned()],
            &[],
            SECOND,
            GRACE,
            &AtomicBool::new(true),
            &mut |_| panic!("must not spawn"),
        );
        assert_eq!(result.outcome, Outcome::Interrupted);
    }

    #[test]
    fn duration_is_plausible() {
        let run = run(&["sleep", "0.2"], SECOND * 5);
        assert_eq!(run.result.outcome, Outcome::Ok);
        let ms = run.result.duration_ms;
        assert!((150..=5000).contains(&ms), "{ms}");
    }

    #[test]
    fn foreign_signal_is_failed_with_signal_number() {
        let run = run(&["sh", "-c", "echo dying >&2; kill -9 $$"], SECOND * 5);
        assert_eq!(run.result.outcome, Outcome::Failed);
        assert_eq!(run.result.exit_code, None);
        assert_eq!(run.result.detail.as_deref(), Some("killed by signal 9; dying"));
    }

    #[test]
    fn on_spawn_gets_pid_that_leads_its_own_group() {
        let mut seen = None;
        let result = run_command(
            &["sleep".to_owned(), "0.1".to_owned()],
            &[],
            SECOND * 5,
            GRACE,
            &AtomicBool::new(false),
            &mut |pid| {
                let pid = pid as libc::pid_t;
                // SAFETY: getpgid(2) has no memory-safety preconditions; the
                // child is not reaped yet, so `pid` is still ours.
                seen = Some((pid, unsafe { libc::getpgid(pid) }));
            },
        );
        assert_eq!(result.outcome, Outcome::Ok);
        let (pid, pgid) = seen.unwrap();
        assert_eq!(pid, pgid, "child must lead its own process group");
        // SAFETY: getpgrp(2) has no preconditions.
        assert_ne!(pgid, unsafe { libc::getpgrp() });
    }

    #[test]
    fn an_escaped_process_holding_the_pipes_does_not_hold_the_command() {
        // `setsid` leaves the group (and its pid is `$!`: not being a group leader, it does not
        // fork), keeping our stdout and stderr open; poked stops reading after a short drain.
        let run = run(&["sh", "-c", "setsid sleep 600 & echo $!"], SECOND * 10);
        let escaped: libc::pid_t = String::from_utf8_lossy(&run.result.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pid in {:?}", run.result));
        // SAFETY: kill(2) has no memory-safety preconditions; signal 0 only checks existence.
        let alive = unsafe { libc::kill(escaped, 0) } == 0;
        // SAFETY: as above; the escaped process is ours to clean up.
        unsafe { libc::kill(escaped, libc::SIGKILL) };
        assert!(alive, "the escaped process was not running");
        assert_eq!(run.result.outcome, Outcome::Ok, "{:?}", run.result);
        assert!(run.elapsed < SECOND * 5, "{:?}", run.elapsed);
    }

    #[test]
    fn without_pidfds_commands_are_watched_alike() {
        NO_PIDFD.set(true);
        let ok = run(&["sh", "-c", "echo out; echo err >&2"], SECOND * 5);
        assert_eq!(ok.result.outcome, Outcome::Ok, "{:?}", ok.result);
        assert_eq!(ok.result.stdout, b"out\n");
        assert_eq!(ok.result.detail.as_deref(), Some("err"));
        assert!(ok.elapsed < SECOND * 3, "{:?}", ok.elapsed);

        let failed = run(&["sh", "-c", "exit 3"], SECOND * 5);
        assert_eq!(failed.result.exit_code, Some(3));

        let drained = run(&["sh", "-c", "yes | head -c 5000000"], SECOND * 10);
        assert_eq!(drained.result.outcome, Outcome::Ok);

        let slow = run(&["sh", "-c", "sleep 600 & sleep 600"], SECOND);
        assert_eq!(slow.result.outcome, Outcome::Timeout);
        assert!(slow.elapsed < SECOND * 3, "{:?}", slow.elapsed);
        assert_group_gone(slow.pgid.unwrap());
    }

    #[test]
    fn render_cuts_at_char_boundary() {
        // 1023 ASCII bytes, then 'é' (2 bytes) split by the cap.
        let mut bytes = vec![b'a'; DETAIL_CAP - 1];
        bytes.push(0xC3);
        let text = render_stderr(&bytes, true).unwrap();
        assert_eq!(text, format!("{} [stderr truncated]", "a".repeat(DETAIL_CAP - 1)));

        // A complete 4-byte char at the end is kept.
        let mut bytes = vec![b'a'; DETAIL_CAP - 4];
        bytes.extend_from_slice("🦀".as_bytes());
        let text = render_stderr(&bytes, true).unwrap();
        assert!(text.starts_with(&"a".repeat(DETAIL_CAP - 4)));
        assert!(text.contains('🦀'), "{text}");

        // A 3-byte char cut after 2 bytes is dropped.
        let mut bytes = b"ab".to_vec();
        bytes.extend_from_slice(&"€".as_bytes()[..2]);
        assert_eq!(render_stderr(&bytes, true).unwrap(), "ab [stderr truncated]");
    }

    #[test]
    fn render_trims_and_bounds_invalid_utf8() {
        assert_eq!(render_stderr(b"  oops \n\n", false).unwrap(), "  oops");
        assert_eq!(render_stderr(b" \n", false), None);
        assert_eq!(render_stderr(b"", false), None);
        // Each invalid byte becomes a 3-byte U+FFFD: the text is re-capped.
        let text = render_stderr(&[0xFF; DETAIL_CAP], false).unwrap();
        assert!(text.len() <= DETAIL_CAP + " [stderr truncated]".len());
        assert!(text.ends_with(" [stderr truncated]"));
    }
}
