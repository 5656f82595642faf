//! Running the real `poked` binary (`CARGO_BIN_EXE_poked`, which cargo builds for benchmarks as
//! it does for integration tests) with a clean environment, and a guard for a daemon that is
//! always stopped and reaped: on the normal path by SIGTERM, and on any other (an early return,
//! a failed check) by its `Drop`, which kills it and waits for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// `poked ARGS` on the database `db`, without the variables that would change how it runs.
pub fn poked(db: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_poked"));
    command
        .env("POKED_DB", db)
        .env_remove("POKED_NOW")
        .env_remove("POKED_DRAW")
        .env_remove("POKED_SYNCHRONOUS")
        .env_remove("POKED_FAULT")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null());
    command
}

/// Runs a process to its end (so it is reaped); returns its wall time and what it printed,
/// failing on a non-zero exit.
pub fn timed(command: &mut Command) -> (Duration, Output) {
    let start = Instant::now();
    let output: Output = command.output().expect("run a process");
    let took = start.elapsed();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    (took, output)
}

/// A running `poked run`, its log on a file.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `poked run ARGS` on `db`, logging (at the default level, as a user would run it)
    /// to `log`.
    pub fn start(db: &Path, log: &Path, args: &[&str]) -> std::io::Result<Daemon> {
        let stderr = std::fs::File::create(log)?;
        let child = poked(db)
            .arg("run")
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        Ok(Daemon {
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on the pid of a child this process started and has not reaped
            // yet (it is reaped only when `child` is taken), so the pid cannot be reused.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// Stops the daemon in its tracks (SIGSTOP), so a floor can run alone.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last line of its log, to say why it stopped.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().last().unwrap_or("").trim().to_string()
    }

    /// Asks it to stop (SIGTERM), waits up to 30 seconds, then kills it; returns how it ended,
    /// `None` if it had to be killed.
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.resume();
        self.signal(libc::SIGTERM);
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too; waiting reaps it.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `done` every `every` until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}
