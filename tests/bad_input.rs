//! Bad input: every case exits 2 (3 for an unknown agent) with one clear line, and the database
//! is byte-for-byte unchanged; ids are checked before any file is created.

use crate::common::{Env, assert_error};

const T: &str = "2026-01-01T00:00:00Z";

#[test]
fn bad_values_change_nothing() {
    let env = Env::new();
    env.ok(T, &["add", "a", "--", "true"]);
    env.ok(T, &["run", "--once"]);
    let long = "x".repeat(129);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["add", ""], 2, "empty"),
        (vec!["add", "."], 2, "letter or digit"),
        (vec!["add", "../x"], 2, "letter or digit"),
        (vec!["add", "/etc/passwd"], 2, "letter or digit"),
        (vec!["add", "a b"], 2, "' '"),
        (vec!["add", "a\nb"], 2, "\\n"),
        (vec!["add", "a\u{1b}[31mb"], 2, "\\u{1b}"),
        (vec!["add", "a\u{202e}b"], 2, "\\u{202e}"),
        (vec!["add", "'; DROP TABLE agents;--"], 2, "letter or digit"),
        (vec!["add", "$(id)"], 2, "letter or digit"),
        (vec!["add", &long], 2, "longer than 128"),
        (vec!["add", "-rf"], 2, "-r"),
        (vec!["add", "b", "--base", "0s"], 2, "more than zero"),
        (vec!["add", "b", "--base", "-5m"], 2, "--base"),
        (vec!["add", "b", "--base", "5"], 2, "unit"),
        (vec!["add", "b", "--base", "banana"], 2, "banana"),
        (vec!["add", "b", "--base", "20y"], 2, "10 years"),
        (vec!["add", "b", "--max", "1m"], 2, "at least the base"),
        (vec!["add", "b", "--factor", "nan"], 2, "finite"),
        (vec!["add", "b", "--factor", "inf"], 2, "finite"),
        (vec!["add", "b", "--factor", "0.5"], 2, "≥ 1"),
        (vec!["add", "b", "--jitter", "1.5"], 2, "between 0 and 1"),
        (vec!["add", "b", "--jitter", "-0.1"], 2, "--jitter"),
        (
            vec!["add", "b", "--fresh", "20m", "--very-stale", "10m"],
            2,
            "--very-stale",
        ),
        (
            vec!["add", "b", "--strategy", "linear"],
            2,
            "fixed, geometric or exponential",
        ),
        (vec!["add", "b", "--heartbeat-file", "relative/hb"], 2, "absolute"),
        (vec!["add", "a"], 1, "already exists"),
        (vec!["set", "a"], 2, "nothing to change"),
        (vec!["set", "a", "--max", "1m"], 2, "at least the base"),
        (vec!["set", "a", "--base", "1h"], 2, "at least the base"),
        (vec!["set", "a", "--fresh", "1h"], 2, "--very-stale"),
        (vec!["set", "nobody", "--base", "1m"], 3, "unknown agent"),
        (vec!["miss", "nobody"], 3, "unknown agent"),
        (vec!["rm", "nobody"], 3, "unknown agent"),
        (vec!["pause", "a", "nobody"], 3, "unknown agent"),
        (vec!["pause", "a", "bad id"], 2, "' '"),
        (vec!["activity", "a", "--at", "yesterday-ish"], 2, "--at"),
        (vec!["due", "--at", "banana"], 2, "banana"),
        (vec!["run", "--once", "--concurrency", "0"], 2, "--concurrency"),
        (
            vec!["run", "--once", "--command-timeout", "0s"],
            2,
            "more than zero",
        ),
        (vec!["frobnicate"], 2, "frobnicate"),
    ];
    for (args, code, needle) in cases {
        let before = env.fingerprint();
        let out = env.at(T, &args);
        assert_error(&out, code, needle);
        let after = env.fingerprint();
        for (b, a) in before.iter().zip(&after) {
            assert!(
                b == a,
                "poked {args:?} changed {}{}: {:?} vs {:?}",
                env.db.display(),
                b.0,
                b.1.as_ref().map(Vec::len),
                a.1.as_ref().map(Vec::len)
            );
        }
    }
    // `pause a nobody` paused nothing: the agents are paused in one transaction or not at all.
    let paused: i64 = env
        .sql()
        .query_row("SELECT paused FROM agents WHERE id = 'a'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(paused, 0);
}

#[test]
fn invalid_utf8_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let out = env
        .cmd()
        .arg("add")
        .arg(std::ffi::OsStr::from_bytes(b"a\xffb"))
        .output()
        .unwrap();
    assert_error(&out, 2, "utf-8");
    assert!(!env.db.exists(), "a bad id created the database");
}

#[test]
fn bad_ids_create_no_file() {
    let env = Env::new();
    for id in ["", "..", "a b", "a\tb", "a\rb"] {
        let out = env.at(T, &["add", id]);
        assert_error(&out, 2, "agent id");
    }
    let out = env.at(T, &["add", "ok", "--factor", "nan"]);
    assert_error(&out, 2, "--factor");
    assert!(!env.db.exists(), "bad input created the database");
    assert_eq!(
        std::fs::read_dir(env.dir.path()).unwrap().count(),
        0,
        "bad input created a file"
    );
}

#[test]
fn read_commands_need_an_existing_database() {
    let env = Env::new();
    let out = env.at(T, &["list"]);
    assert_error(&out, 1, "no database");
    assert!(!env.db.exists());
}
