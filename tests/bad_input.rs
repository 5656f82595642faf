//! Bad input: every case exits 2 (3 for an unknown agent) with one clear line, and the database
//! is byte-for-byte unchanged; ids are checked before any file is created.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Env, assert_error, must, poked, tree};

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

// ---------------------------------------------------------------------------------------------
// 5. Bad ids and values.
// ---------------------------------------------------------------------------------------------

/// Runs poked with `args` in `home` (its working folder, `HOME` and `POKED_DB`'s folder) and
/// checks a refusal: exit `code`, one line on stderr, `needle` in it, no panic, within a
/// second, and no file below `home` created or changed.
fn refused(home: &Path, db: &Path, args: &[&OsStr], code: i32, needle: &str) {
    let before = tree(home);
    let started = Instant::now();
    let out = poked(db)
        .current_dir(home)
        .env("HOME", home)
        .args(args)
        .output()
        .unwrap();
    let took = started.elapsed();
    let shown: Vec<_> = args
        .iter()
        .map(|a| a.to_string_lossy().chars().take(40).collect::<String>())
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "poked {shown:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "poked {shown:?}: not one line: {stderr:?}"
    );
    assert!(stderr.starts_with("poked: "), "poked {shown:?}: {stderr:?}");
    assert!(
        stderr.to_lowercase().contains(&needle.to_lowercase()),
        "poked {shown:?}: {stderr:?} does not say {needle:?}"
    );
    assert!(
        !stderr.contains("panicked") && out.stdout.is_empty(),
        "poked {shown:?}: {stderr}"
    );
    assert!(took < Duration::from_secs(2), "poked {shown:?} took {took:?}");
    assert!(tree(home) == before, "poked {shown:?} created or changed a file");
}

/// The bad ids of issue 5 and more, as raw bytes (some are not UTF-8).
fn bad_ids() -> Vec<(Vec<u8>, &'static str)> {
    let text = |s: &str| s.as_bytes().to_vec();
    vec![
        (text(""), "empty"),
        (text("."), "letter or digit"),
        (text(".."), "letter or digit"),
        (text("../x"), "letter or digit"),
        (text("a\u{7f}b"), "\\u{7f}"),
        (text("/etc/passwd"), "letter or digit"),
        (text("a\nb"), "'\\n'"),
        (text("a\rb"), "'\\r'"),
        (text("a\tb"), "'\\t'"),
        (text("\u{1b}[31mred"), "letter or digit"),
        (text("a\u{1b}]0;owned\u{7}"), "\\u{1b}"),
        (text("a\u{202e}b"), "\\u{202e}"),
        (text("a\u{200b}b"), "\\u{200b}"),
        (text("\u{feff}a"), "letter or digit"),
        (text("ａｂ"), "letter or digit"),
        (text("é"), "letter or digit"),
        (text("-rf"), "letter or digit"),
        (text("--help"), "letter or digit"),
        (text("'; DROP TABLE agents;--"), "letter or digit"),
        (text("a'; DROP TABLE agents;--"), "agent id"),
        (text("$(id)"), "letter or digit"),
        (text("a`id`"), "'`'"),
        (text("a b"), "' '"),
        (text("a%s%n"), "'%'"),
        (text("a*"), "'*'"),
        (text("a\\b"), "'\\\\'"),
        (text(&"x".repeat(129)), "longer than 128"),
        (text(&"x".repeat(10_000)), "longer than 128"),
        (b"a\xffb".to_vec(), "utf-8"),
        (b"\xff".to_vec(), "utf-8"),
        (b"\xc3\x28".to_vec(), "utf-8"),
    ]
}

#[test]
fn bad_ids_are_refused_by_every_command_and_change_nothing() {
    let env = Env::new();
    let home = env.dir.path();
    must(&env.db, &["add", "a", "--", "true"]);
    must(&env.db, &["run", "--once"]);
    let ids = bad_ids();
    assert!(ids.len() >= 25);
    let mut cases = 0;
    for (id, needle) in &ids {
        let id = OsStr::from_bytes(id);
        let os = |s: &'static str| OsStr::new(s);
        // After `--` an id can start with `-`; `add` and `set` take a command there, so their
        // id comes first and one starting with `-` is an unknown option (also exit 2).
        let add_needle = if id.as_bytes().starts_with(b"-") {
            "unexpected argument"
        } else {
            needle
        };
        // `add --help` and `set --help` ask for help (checked below), so they are not refusals.
        let help = id.as_bytes() == b"--help";
        if !help {
            refused(home, &env.db, &[os("add"), id], 2, add_needle);
            refused(
                home,
                &env.db,
                &[os("set"), id, os("--base"), os("1m")],
                2,
                add_needle,
            );
        }
        for command in [
            "activity",
            "heartbeat",
            "poke",
            "miss",
            "reset",
            "rm",
            "show",
            "pause",
            "resume",
        ] {
            refused(home, &env.db, &[os(command), os("--"), id], 2, needle);
        }
        refused(home, &env.db, &[os("history"), os("--"), id], 2, needle);
        cases += if help { 10 } else { 12 };
    }
    // On a database that does not exist, a bad id creates nothing either.
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("state/poked.db");
    for (id, needle) in &ids {
        let id = OsStr::from_bytes(id);
        let add_needle = if id.as_bytes().starts_with(b"-") {
            "unexpected argument"
        } else {
            needle
        };
        if id.as_bytes() != b"--help" {
            refused(empty.path(), &missing, &[OsStr::new("add"), id], 2, add_needle);
            cases += 1;
        }
        refused(
            empty.path(),
            &missing,
            &[OsStr::new("activity"), OsStr::new("--"), id],
            2,
            needle,
        );
        cases += 1;
    }
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    // `--help` as an option is a request for help, not an id: usage on stdout, exit 0,
    // nothing created. As an id (after `--`) it is refused above.
    let before = tree(empty.path());
    let out = poked(&missing)
        .current_dir(empty.path())
        .args(["add", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Usage"));
    assert!(tree(empty.path()) == before);
    eprintln!(
        "bad ids: {} ids, {cases} refusals, each exit 2, one line, nothing changed",
        ids.len()
    );
}

#[test]
fn bad_durations_factors_and_fractions_are_refused_and_change_nothing() {
    let env = Env::new();
    let home = env.dir.path();
    must(&env.db, &["add", "a", "--", "true"]);
    must(&env.db, &["run", "--once"]);
    let durations: &[(&str, &str)] = &[
        ("", "empty"),
        (" ", "empty"),
        ("0", "unit"),
        ("5", "unit"),
        ("-5m", "negative"),
        ("5x", "unknown time unit"),
        ("1.5.5m", "--base"),
        ("5m5", "unit"),
        ("1h-30m", "--base"),
        ("NaN", "--base"),
        ("inf", "--base"),
        ("+5m", "--base"),
        ("0x10s", "--base"),
        ("1e3s", "--base"),
        ("١٢m", "--base"),
        ("💥", "--base"),
        ("0.5ms", "finer than a millisecond"),
        ("1ns", "finer than a millisecond"),
        ("11y", "longer than 10 years"),
        ("3651d", "longer than 10 years"),
        ("9223372036854775807ms", "too large"),
        ("99999999999999999999h", "too large"),
        ("0s", "more than zero"),
        ("0ms", "more than zero"),
    ];
    let factors: &[(&str, &str)] = &[
        ("", "not a number"),
        ("nan", "finite"),
        ("inf", "finite"),
        ("-inf", "finite"),
        ("infinity", "finite"),
        ("1e309", "finite"),
        ("-1", "≥ 1"),
        ("0", "≥ 1"),
        ("0.999", "≥ 1"),
        ("1e-400", "≥ 1"),
        ("1,5", "not a number"),
        ("0x10", "not a number"),
        ("1.5.5", "not a number"),
        ("1.5x", "not a number"),
        ("٣", "not a number"),
    ];
    let jitters: &[(&str, &str)] = &[
        ("nan", "between 0 and 1"),
        ("-0.1", "between 0 and 1"),
        ("1.0001", "between 0 and 1"),
        ("2", "between 0 and 1"),
        ("inf", "between 0 and 1"),
        ("", "not a number"),
    ];
    let mut cases = 0;
    for (option, table) in [
        ("--base", durations),
        ("--factor", factors),
        ("--jitter", jitters),
    ] {
        for (value, needle) in table {
            for prefix in [&["add", "b"][..], &["set", "a"]] {
                let args: Vec<&OsStr> = prefix
                    .iter()
                    .chain([&option, value])
                    .map(|s| OsStr::new(*s))
                    .collect();
                refused(home, &env.db, &args, 2, needle);
                cases += 1;
            }
        }
    }
    for option in ["--max", "--fresh", "--very-stale"] {
        for (value, needle) in durations
            .iter()
            .filter(|(v, _)| !v.ends_with('s') || v.contains('.'))
        {
            let needle = if *needle == "--base" { option } else { needle };
            let args: Vec<&OsStr> = ["set", "a", option, *value].into_iter().map(OsStr::new).collect();
            refused(home, &env.db, &args, 2, needle);
            cases += 1;
        }
    }
    // Combinations that break a rule between settings.
    for (args, needle) in [
        (
            &["add", "b", "--base", "1h", "--max", "1m"][..],
            "at least the base",
        ),
        (
            &["add", "b", "--fresh", "10m", "--very-stale", "5m"],
            "--very-stale",
        ),
        (&["set", "a", "--max", "1ms"], "at least the base"),
        (
            &["set", "a", "--strategy", "Geometric"],
            "fixed, geometric or exponential",
        ),
        (&["add", "b", "--heartbeat-file", ""], "absolute"),
        (&["add", "b", "--heartbeat-file", "hb"], "absolute"),
        (&["add", "b", "--", ""], "must not be empty"),
        (&["activity", "a", "--at", "yesterday"], "--at"),
        (&["history", "--since", "99999y"], "--since"),
        (&["history", "--limit", "0"], "--limit"),
        (&["prune", "--older-than", "0s"], "more than zero"),
        (&["run", "--once", "--concurrency", "100000"], "--concurrency"),
        (
            &["run", "--once", "--command-timeout", "99999999999h"],
            "10 years",
        ),
    ] {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        refused(home, &env.db, &args, 2, needle);
        cases += 1;
    }
    eprintln!("bad values: {cases} refusals, each exit 2, one line, nothing changed");
}
