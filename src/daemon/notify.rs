//! The systemd notify protocol (`sd_notify(3)`), for `poked run` under `Type=notify`.
//!
//! The daemon tells its service manager four things through a datagram socket: `READY=1` once
//! the database is open and recovery is done, `STATUS=` a one-line summary whenever it changes,
//! `WATCHDOG=1` at half the watchdog interval, and `STOPPING=1` when it starts to shut down. The
//! watchdog pings come from the daemon's loop itself ([`super::service`] wakes in time to send
//! each one), never from a helper thread: a loop that is stuck stops pinging, and systemd
//! restarts it.
//!
//! # The embedder is in control
//!
//! Nothing here reads the environment except [`NotifyOptions::from_env`], which the `poked run`
//! command calls once; a program that embeds the daemon passes [`NotifyOptions`] of its own (or
//! none). The messages are `sd-notify`'s [`NotifyState`]s; they are sent on a socket this module
//! owns, so its path comes from the options, and an abstract socket (`@name`) works too.
//!
//! # Failures
//!
//! Notifications are a courtesy to the service manager, never a reason to stop poking. A
//! malformed `WATCHDOG_USEC` or `NOTIFY_SOCKET` is a warning from `from_env`; a socket that
//! cannot be reached is a warning at the first failed send, and again only after a send has
//! worked since. Sends never block: the socket is non-blocking, so a manager that stops reading
//! cannot stall the loop.
//!
//! Commands the daemon runs never see `NOTIFY_SOCKET`, `WATCHDOG_*` or `LISTEN_*`
//! ([`super::command`] removes them), so a poke cannot speak for poked.

use std::ffi::{OsStr, OsString};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Where to send notifications, and the watchdog systemd asked for. The default sends nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyOptions {
    /// The service manager's socket: a path, or `@name` for an abstract socket (`NOTIFY_SOCKET`).
    pub socket: Option<OsString>,
    /// The watchdog interval (`WATCHDOG_USEC`): the daemon pings at half of it.
    pub watchdog: Option<Duration>,
}

impl NotifyOptions {
    /// The options systemd gives a service: `NOTIFY_SOCKET`, and `WATCHDOG_USEC` when
    /// `WATCHDOG_PID` is unset or names this process. A malformed value is logged as a warning
    /// and left out; the daemon runs on without it.
    pub fn from_env() -> NotifyOptions {
        NotifyOptions::from_vars(|name| std::env::var_os(name), std::process::id())
    }

    /// [`NotifyOptions::from_env`] over any source of variables, for process `pid`.
    fn from_vars(var: impl Fn(&str) -> Option<OsString>, pid: u32) -> NotifyOptions {
        let socket = var("NOTIFY_SOCKET").filter(|s| !s.is_empty());
        let socket = socket.filter(|s| {
            let ok = matches!(s.as_bytes().first(), Some(b'/' | b'@'));
            if !ok {
                tracing::warn!(
                    NOTIFY_SOCKET = %s.to_string_lossy(),
                    "ignoring NOTIFY_SOCKET: not an absolute path or an abstract socket (@name); \
                     systemd will not hear from poked"
                );
            }
            ok
        });
        let for_us = match var("WATCHDOG_PID") {
            None => true,
            Some(text) => match text.to_str().and_then(|t| t.trim().parse::<u32>().ok()) {
                Some(p) => p == pid,
                None => {
                    tracing::warn!(
                        WATCHDOG_PID = %text.to_string_lossy(),
                        "ignoring the watchdog: WATCHDOG_PID is not a process id"
                    );
                    false
                }
            },
        };
        let watchdog = match var("WATCHDOG_USEC").filter(|_| for_us) {
            None => None,
            Some(text) => match text.to_str().and_then(|t| t.trim().parse::<u64>().ok()) {
                Some(usec) if usec > 0 => Some(Duration::from_micros(usec)),
                _ => {
                    tracing::warn!(
                        WATCHDOG_USEC = %text.to_string_lossy(),
                        "ignoring WATCHDOG_USEC: not a positive whole number of microseconds; \
                         no watchdog pings"
                    );
                    None
                }
            },
        };
        NotifyOptions { socket, watchdog }
    }
}

/// The daemon's side of the protocol: sends what changed, and pings the watchdog when due.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    /// Half the watchdog interval.
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,
    /// The last status line sent.
    status: Option<String>,
    /// Whether the last send failed (its warning was logged).
    failing: bool,
}

/// The socket notifications go out on, and where to.
#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    address: SocketAddr,
    /// `NOTIFY_SOCKET` as given, for messages.
    shown: String,
}

impl Notifier {
    /// A notifier for `options`; with no socket, every call does nothing.
    pub fn new(options: &NotifyOptions) -> Notifier {
        let target = options
            .socket
            .as_deref()
            .and_then(|path| match Target::new(path) {
                Ok(target) => Some(target),
                Err(e) => {
                    tracing::warn!(
                        NOTIFY_SOCKET = %path.to_string_lossy(),
                        error = %e,
                        "cannot use the notify socket; systemd will not hear from poked"
                    );
                    None
                }
            });
        let ping_every = target
            .as_ref()
            .and(options.watchdog)
            .map(|interval| (interval / 2).max(Duration::from_millis(1)));
        Notifier {
            next_ping: ping_every.map(|_| Instant::now()),
            target,
            ping_every,
            status: None,
            failing: false,
        }
    }

    /// Whether notifications go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: the database is open and recovered; the daemon is about to start poking.
    pub fn ready(&mut self) {
        self.send(&[NotifyState::Ready]);
    }

    /// `STATUS=line`, unless it is the line sent last.
    pub fn status(&mut self, line: &str) {
        if self.target.is_none() || self.status.as_deref() == Some(line) {
            return;
        }
        self.send(&[NotifyState::Status(line)]);
        self.status = Some(line.to_string());
    }

    /// When the next watchdog ping is due (`None` without a watchdog): the loop must be awake
    /// then.
    pub fn next_ping(&self) -> Option<Instant> {
        self.next_ping
    }

    /// `WATCHDOG=1` if one is due: called by the loop whenever it is awake.
    pub fn keep_alive(&mut self) {
        let (Some(due), Some(every)) = (self.next_ping, self.ping_every) else {
            return;
        };
        let now = Instant::now();
        if now >= due {
            self.send(&[NotifyState::Watchdog]);
            self.next_ping = Some(now + every);
        }
    }

    /// `STOPPING=1` with a last status line: the daemon is shutting down; no more pings.
    pub fn stopping(&mut self, line: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(line)]);
        self.next_ping = None;
    }

    fn send(&mut self, states: &[NotifyState<'_>]) {
        let Some(target) = &self.target else {
            return;
        };
        let mut message = String::new();
        for state in states {
            // A status line is one line: a newline would start another assignment.
            message.push_str(&state.to_string().replace('\n', " "));
            message.push('\n');
        }
        match target.socket.send_to_addr(message.as_bytes(), &target.address) {
            Ok(_) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!(NOTIFY_SOCKET = %target.shown, "the notify socket works again");
                }
            }
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(
                    NOTIFY_SOCKET = %target.shown,
                    error = %e,
                    "cannot notify systemd; poked runs on without it"
                );
            }
            Err(e) => tracing::debug!(error = %e, "cannot notify systemd"),
        }
    }
}

impl Target {
    fn new(path: &OsStr) -> std::io::Result<Target> {
        let address = match path.as_bytes().strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(path)?,
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Target {
            socket,
            address,
            shown: path.to_string_lossy().into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(vars: &[(&str, &str)], pid: u32) -> NotifyOptions {
        NotifyOptions::from_vars(
            |name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| OsString::from(v))
            },
            pid,
        )
    }

    #[test]
    fn the_environment_of_a_service_is_read_as_systemd_means_it() {
        let sock = ("NOTIFY_SOCKET", "/run/systemd/notify");
        assert_eq!(options(&[], 7), NotifyOptions::default());
        let full = options(&[sock, ("WATCHDOG_USEC", "400000"), ("WATCHDOG_PID", "7")], 7);
        assert_eq!(full.socket.as_deref(), Some(OsStr::new("/run/systemd/notify")));
        assert_eq!(full.watchdog, Some(Duration::from_millis(400)));
        // A watchdog meant for another process is not ours.
        assert_eq!(
            options(&[sock, ("WATCHDOG_USEC", "400000"), ("WATCHDOG_PID", "8")], 7).watchdog,
            None
        );
        // Bad values are left out, not fatal.
        for bad in ["abc", "0", "-5", ""] {
            assert_eq!(
                options(&[sock, ("WATCHDOG_USEC", bad)], 7).watchdog,
                None,
                "{bad:?}"
            );
        }
        assert_eq!(options(&[("NOTIFY_SOCKET", "relative/path")], 7).socket, None);
        assert_eq!(
            options(&[("NOTIFY_SOCKET", "@abstract")], 7).socket.as_deref(),
            Some(OsStr::new("@abstract"))
        );
    }

    #[test]
    fn a_status_line_is_sent_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        manager.set_nonblocking(true).unwrap();
        let mut notifier = Notifier::new(&NotifyOptions {
            socket: Some(path.into_os_string()),
            watchdog: None,
        });
        notifier.status("1 agents");
        notifier.status("1 agents");
        notifier.status("2 agents\nsecond line");
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = manager.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(got, ["STATUS=1 agents\n", "STATUS=2 agents second line\n"]);
    }
}
