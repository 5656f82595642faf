//! Running one command (a poke, an escalation, a probe or a gate), with strict process
//! hygiene.
//!
//! This module owns everything between "here is an argv" and "here is what happened": spawning
//! the program directly (no shell) with stdin on `/dev/null`, putting it in a process group of
//! its own so that the whole tree it forks can be signalled at once, draining stdout and stderr
//! on one helper thread so a chatty command can neither deadlock on a full pipe nor grow our
//! memory (only the first [`STDOUT_CAP`] bytes of stdout, for a probe's answer, and the first
//! [`DETAIL_CAP`] bytes of stderr are kept), enforcing the timeout and the caller's cancel flag
//! with a SIGTERM → grace → SIGKILL sequence aimed at the whole group, and always reaping the
//! child. Commands never see the systemd variables meant for poked itself (`NOTIFY_SOCKET`,
//! `WATCHDOG_*`, `LISTEN_*`).
//!
//! Design notes:
//!
//! * A waiter thread blocks in `waitid(..., WEXITED | WNOWAIT)`: it learns that the group
//!   leader has exited *without reaping it*. The leader stays a zombie until the very end, so
//!   its pid — which is also the pgid — cannot be recycled while we still send signals to
//!   `-pgid`. Only after the final SIGKILL to the group is the leader reaped with
//!   [`Child::wait`].
//! * The poke owns its process group: whatever way the leader ends (normal exit included),
//!   leftover members of the group get SIGTERM, up to `grace` to go (we stop waiting early once
//!   the leader has exited and both pipes are closed), then SIGKILL.
//! * Processes that left the group (`setsid`) are out of reach and may keep our pipes open.
//!   The pipe reader `poll`s both pipes in short slices and looks at a stop flag between them,
//!   so after a short drain we tell it to stop and wait for it: no thread of a command outlives
//!   the daemon's interest in it.
//! * On timeout or cancel, `exit_code` reports the leader's real status: `None` when it died
//!   from a signal (the usual case), `Some(code)` when it exited with a code during the grace
//!   period (e.g. from a SIGTERM handler).

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
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

/// How long to keep draining pipes after the group has been killed and the
/// leader reaped. Only processes that escaped the group can hold them open.
const PIPE_DRAIN: Duration = Duration::from_millis(500);

/// Size of the read buffer used by the pipe reader.
const READ_CHUNK: usize = 8192;

/// The variables of poked's own supervisor, never passed on to a command.
fn inherited_only_by_poked(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name == b"NOTIFY_SOCKET" || name.starts_with(b"WATCHDOG_") || name.starts_with(b"LISTEN_")
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
    for (name, _) in std::env::vars_os() {
        if inherited_only_by_poked(&name) {
            command.env_remove(name);
        }
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

    let Supervisor {
        mut tracker,
        capture,
        stop_reader,
        helper_error,
    } = Supervisor::start(&mut child, pgid);

    if let Some(err) = helper_error {
        // Without all helpers we cannot supervise safely: kill and reap.
        signal_group(pgid, libc::SIGKILL);
        tracker.wait_until(None, |t| t.waiter_done);
        let _ = child.wait();
        let duration_ms = millis(start.elapsed());
        stop_reader.store(true, Ordering::SeqCst);
        tracker.wait_until(Instant::now().checked_add(PIPE_DRAIN), |t| t.readers_open == 0);
        let note = format!("could not start helper thread: {err}");
        return finish(Outcome::Error, None, duration_ms, vec![note], &capture);
    }

    let deadline = start.checked_add(timeout);
    let end = loop {
        if tracker.waiter_done {
            break match tracker.wait_error.take() {
                Some(err) => End::WaitFailed(err),
                None => End::Exited,
            };
        }
        if cancel.load(Ordering::SeqCst) {
            break End::Cancelled;
        }
        let slice = match deadline {
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    break End::TimedOut;
                }
                (deadline - now).min(POLL_SLICE)
            }
            None => POLL_SLICE,
        };
        tracker.pump(Some(slice));
    };

    // Clean up the group. If the leader has exited it is still an unreaped
    // zombie, which keeps `pgid` from being reused while we signal it.
    if !matches!(end, End::Exited) {
        tracing::debug!(pgid, reason = ?end, "terminating process group");
    }
    signal_group(pgid, libc::SIGTERM);
    let grace_deadline = Instant::now().checked_add(grace);
    tracker.wait_until(grace_deadline, |t| t.waiter_done && t.readers_open == 0);
    signal_group(pgid, libc::SIGKILL);
    // SIGKILL cannot be ignored, so the leader's exit is now imminent.
    tracker.wait_until(None, |t| t.waiter_done);
    let status = child.wait();
    let duration_ms = millis(start.elapsed());
    tracker.wait_until(Instant::now().checked_add(PIPE_DRAIN), |t| t.readers_open == 0);
    if tracker.readers_open > 0 {
        // Only a process that escaped the group can still hold the pipes: stop reading them.
        tracing::debug!(
            pgid,
            "pipes still open after the group was killed; no longer reading them"
        );
        stop_reader.store(true, Ordering::SeqCst);
        tracker.wait_until(None, |t| t.readers_open == 0);
    }

    let status = match status {
        Ok(status) => status,
        Err(err) => {
            let note = format!("could not wait for `{program}`: {err}");
            return finish(Outcome::Error, None, duration_ms, vec![note], &capture);
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
    finish(outcome, exit_code, duration_ms, notes, &capture)
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
    capture: &Mutex<Capture>,
) -> CommandResult {
    let captured = lock(capture);
    if let Some(err) = &captured.read_error {
        notes.push(format!("reading its output failed: {err}"));
    }
    if let Some(text) = render_stderr(&captured.stderr, captured.stderr_truncated) {
        notes.push(text);
    }
    let stdout = captured.stdout.clone();
    drop(captured);
    CommandResult {
        outcome,
        exit_code,
        duration_ms,
        detail: if notes.is_empty() {
            None
        } else {
            Some(notes.join("; "))
        },
        stdout,
    }
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

/// Blocks until process `pid` (our child) has exited, without reaping it.
fn wait_for_exit(pid: libc::pid_t) -> io::Result<()> {
    let id = libc::id_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: siginfo_t is a plain C struct for which all-zeroes is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t for the whole call.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Messages from the helper threads.
enum Event {
    /// The waiter thread is done: the leader exited (`Ok`, not yet reaped),
    /// or waiting failed.
    LeaderExited(io::Result<()>),
    /// The pipe reader is done: both pipes reached EOF, an error, or it was told to stop.
    ReaderDone,
}

/// What the helper threads have reported so far.
struct Tracker {
    rx: Receiver<Event>,
    waiter_done: bool,
    wait_error: Option<io::Error>,
    readers_open: usize,
}

impl Tracker {
    /// Handles at most one event, waiting up to `timeout` (forever if `None`).
    fn pump(&mut self, timeout: Option<Duration>) {
        let event = match timeout {
            Some(timeout) => match self.rx.recv_timeout(timeout) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => return self.all_gone(),
            },
            None => match self.rx.recv() {
                Ok(event) => event,
                Err(_) => return self.all_gone(),
            },
        };
        match event {
            Event::LeaderExited(result) => {
                self.waiter_done = true;
                self.wait_error = result.err();
            }
            Event::ReaderDone => self.readers_open = self.readers_open.saturating_sub(1),
        }
    }

    /// Every helper has finished and dropped its sender.
    fn all_gone(&mut self) {
        self.waiter_done = true;
        self.readers_open = 0;
    }

    /// Pumps events until `done` holds or `deadline` passes (`None`: no
    /// deadline). Returns whether `done` holds.
    fn wait_until(&mut self, deadline: Option<Instant>, done: impl Fn(&Self) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.pump(Some(deadline - now));
                }
                None => self.pump(None),
            }
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

fn lock(capture: &Mutex<Capture>) -> MutexGuard<'_, Capture> {
    // The reader never panics while holding the lock, and the data stays
    // meaningful even if it did.
    capture.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The helper threads watching one child.
struct Supervisor {
    tracker: Tracker,
    capture: Arc<Mutex<Capture>>,
    /// Tells the pipe reader to stop reading (pipes held open by an escaped process).
    stop_reader: Arc<AtomicBool>,
    helper_error: Option<io::Error>,
}

impl Supervisor {
    /// Starts the waiter and the pipe reader. On failure `helper_error` is
    /// set; whatever did start keeps reporting through the tracker.
    fn start(child: &mut Child, pgid: libc::pid_t) -> Supervisor {
        let (tx, rx) = mpsc::channel();
        let capture = Arc::new(Mutex::new(Capture::default()));
        let stop_reader = Arc::new(AtomicBool::new(false));
        let mut tracker = Tracker {
            rx,
            waiter_done: true,
            wait_error: None,
            readers_open: 0,
        };
        let mut helper_error = None;

        let waiter_tx = tx.clone();
        match spawn_helper("poked-wait", move || {
            let _ = waiter_tx.send(Event::LeaderExited(wait_for_exit(pgid)));
        }) {
            Ok(()) => tracker.waiter_done = false,
            Err(err) => helper_error = Some(err),
        }

        if let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) {
            let reader_capture = Arc::clone(&capture);
            let stop = Arc::clone(&stop_reader);
            match spawn_helper("poked-pipes", move || {
                read_pipes(stdout, stderr, &reader_capture, &stop);
                let _ = tx.send(Event::ReaderDone);
            }) {
                Ok(()) => tracker.readers_open = 1,
                Err(err) => helper_error = helper_error.or(Some(err)),
            }
        }

        Supervisor {
            tracker,
            capture,
            stop_reader,
            helper_error,
        }
    }
}

fn spawn_helper(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map(|_detached| ())
}

/// Reads both pipes until both reach EOF or `stop` is set, keeping the first [`STDOUT_CAP`]
/// bytes of stdout and [`DETAIL_CAP`] bytes of stderr and discarding the rest. `poll` waits
/// at most [`POLL_SLICE`] at a time, so `stop` is honoured promptly.
fn read_pipes(mut stdout: ChildStdout, mut stderr: ChildStderr, capture: &Mutex<Capture>, stop: &AtomicBool) {
    let mut open = [true, true];
    let mut chunk = [0u8; READ_CHUNK];
    while open.iter().any(|o| *o) && !stop.load(Ordering::SeqCst) {
        let mut fds = [
            libc::pollfd {
                fd: if open[0] { stdout.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if open[1] { stderr.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid `pollfd`s that live across the call (a negative fd is ignored).
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, POLL_SLICE.as_millis() as libc::c_int) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            lock(capture).read_error = Some(err.to_string());
            return;
        }
        for (i, fd) in fds.iter().enumerate() {
            if !open[i] || fd.revents == 0 {
                continue;
            }
            let read = if i == 0 {
                stdout.read(&mut chunk)
            } else {
                stderr.read(&mut chunk)
            };
            match read {
                Ok(0) => open[i] = false,
                Ok(n) => keep(&mut lock(capture), i == 1, &chunk[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    lock(capture).read_error = Some(err.to_string());
                    open[i] = false;
                }
            }
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

    const SECOND: Duration = Duration::from_secs(1);
    const GRACE: Duration = Duration::from_millis(500);

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
