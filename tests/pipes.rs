//! Closed pipes: `poked ... | head -1` is a normal end.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

use crate::common::{Env, poked, tree};
use crate::harness::seeded_database;

#[test]
fn a_closed_pipe_ends_output_quietly() {
    use std::io::BufRead;
    let env = Env::new();
    seeded_database(&env.db, 300);
    for args in [
        &["history"][..],
        &["history", "--csv"],
        &["history", "--json"],
        &["list"],
        &["list", "--json"],
        &["export"],
        &["stats"],
    ] {
        // Like `poked ARGS | head -1`: read one line, close the pipe, let poked write on.
        let mut child = poked(&env.db)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "poked {args:?} printed nothing");
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "poked {args:?} | head -1: {}: {stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "poked {args:?} | head -1 complained: {stderr}");
    }
    // The same through a shell, as a user types it.
    let bin = assert_cmd::cargo::cargo_bin!("poked");
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                "'{}' history | head -1 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
                bin.display()
            ),
        ])
        .env("POKED_DB", &env.db)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    // `poked activity $'\xff'`: one clear line, exit 2, nothing touched.
    let before = tree(env.dir.path());
    let out = poked(&env.db)
        .arg("activity")
        .arg(OsStr::from_bytes(b"\xff"))
        .output()
        .unwrap();
    crate::common::assert_error(&out, 2, "utf-8");
    assert!(tree(env.dir.path()) == before);
}
