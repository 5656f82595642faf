//! Closed pipes: `poked ... | head -1` is a normal end, exit 0 with nothing on stderr.
//!
//! A command meets the closed pipe only if it still has output to write once the reader has
//! gone; output that fits in the pipe's buffer is written before `head` exits and no error ever
//! comes. So every command here prints well over the 64 KiB a pipe holds, and the test checks
//! that it did. `history --follow` is also tried with nothing left to print: it must notice
//! the reader leaving without writing anything.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{Env, poked, wait_for};
use crate::harness::seeded_database;

/// "Now" for every command, so two runs of one command print the same.
const T: &str = "2026-01-01T01:00:00Z";

/// What a Linux pipe holds before its writer blocks.
const PIPE_BUFFER: usize = 64 * 1024;

/// Each command must print at least this much: four pipe buffers, far more than the pipe,
/// `head`'s read and poked's own output buffer hold together.
const PLENTY: usize = 4 * PIPE_BUFFER;

/// How long a pipeline may take; it ends in milliseconds unless poked misses the closed pipe.
const PATIENCE: Duration = Duration::from_secs(10);

/// A database whose every listing is long: 3,000 agents (a line of `list` or `stats` each)
/// with two log rows each, and `big`, whose command alone is a 282 KiB script, for `show`.
fn seed(env: &Env) {
    use poked::agent::{AgentId, Settings};
    use poked::random::FixedDraw;
    use poked::store::{OpenOptions, Store};
    seeded_database(&env.db, 3000, 1);
    let store = Store::open(&env.db, OpenOptions::default()).unwrap();
    let script = (0..6000)
        .map(|i| format!("tmux send-keys -t worker-{i:04} 'check in' Enter\n"))
        .collect::<String>();
    let settings = Settings {
        command: Some(vec!["sh".into(), "-c".into(), script]),
        ..Settings::default()
    };
    let big = AgentId::parse("big").unwrap();
    store
        .add(&big, &settings, &[], false, 1_767_225_600_000, &FixedDraw(0.5))
        .unwrap();
}

/// What `poked ARGS` prints, up to [`PLENTY`] bytes; a command still printing or following
/// then is stopped. Fails if it prints nothing more for [`PATIENCE`] before that.
fn first_bytes(env: &Env, args: &[&str]) -> Vec<u8> {
    let mut child = poked(&env.db)
        .env("POKED_NOW", T)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.take(PLENTY as u64).read_to_end(&mut bytes);
        bytes
    });
    let read = wait_for(PATIENCE, || reader.is_finished());
    let _ = child.kill();
    let _ = child.wait();
    let bytes = reader.join().unwrap();
    assert!(
        read,
        "poked {args:?} stopped printing after {} bytes",
        bytes.len()
    );
    bytes
}

/// `bash -c 'set -o pipefail; poked ARGS | head -1'`, as a user types it (pipefail makes
/// poked's exit status the pipeline's), in a process group of its own that is killed if it
/// does not end within [`PATIENCE`].
fn piped_into_head(env: &Env, args: &[&str]) -> Output {
    let mut child = Command::new("bash")
        .args(["-c", "set -o pipefail; \"$0\" \"$@\" | head -1"])
        .arg(assert_cmd::cargo::cargo_bin!("poked"))
        .args(args)
        .env("POKED_DB", &env.db)
        .env("POKED_NOW", T)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    if !wait_for(PATIENCE, || child.try_wait().unwrap().is_some()) {
        // SAFETY: the process group of the pipeline this test started.
        unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = child.wait();
        panic!("`poked {args:?} | head -1` did not end within {PATIENCE:?}");
    }
    child.wait_with_output().unwrap()
}

/// What `poked ARGS | head -1` printed, once it has ended with exit 0 and nothing on stderr.
fn quiet_end(env: &Env, args: &[&str]) -> Vec<u8> {
    let out = piped_into_head(env, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "poked {args:?} | head -1: {}: {stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "poked {args:?} | head -1 complained: {stderr}");
    out.stdout
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let env = Env::new();
    seed(&env);
    let commands: &[&[&str]] = &[
        &["history"],
        &["history", "--csv"],
        &["history", "--json"],
        &["history", "--follow"],
        &["history", "--follow", "--csv"],
        &["list"],
        &["list", "--json"],
        &["due"],
        &["due", "--json"],
        &["stats"],
        &["export"],
        &["show", "big"],
        &["show", "big", "--json"],
    ];
    for args in commands {
        let printed = first_bytes(&env, args);
        assert!(
            printed.len() >= PLENTY,
            "poked {args:?} prints only {} bytes: it would never meet the closed pipe",
            printed.len()
        );
        let first_line = printed.split_inclusive(|b| *b == b'\n').next().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&quiet_end(&env, args)),
            String::from_utf8_lossy(first_line),
            "poked {args:?} | head -1"
        );
    }
    // A follow that has printed all there is writes nothing more, so no write can fail: it
    // must notice that its reader left.
    for args in [
        &["history", "--follow", "--limit", "2"][..],
        &["history", "--follow", "--json", "--limit", "2"],
    ] {
        let head = quiet_end(&env, args);
        assert_eq!(head.iter().filter(|b| **b == b'\n').count(), 1);
    }
    eprintln!(
        "closed pipes: {} commands each printing at least {} KiB, and an idle follow, piped into \
         head -1: exit 0, stderr empty",
        commands.len(),
        PLENTY / 1024
    );
}
