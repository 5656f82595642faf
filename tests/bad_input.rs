//! Bad input: a bad id, duration, factor, fraction, time or option exits 2 (an unknown agent 3,
//! a taken id 1) with one clear line naming the value, at once, and no file below the test's
//! folder is created or changed; ids and values are checked before any file is opened, so a
//! missing database is not created either.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use crate::common::{Env, assert_error, must, output_within, poked, tree};

/// Runs poked with `args` in `home` (its working folder, `HOME` and `POKED_DB`'s folder) and
/// checks a refusal: exit `code`, one line on stderr, `needle` in it, nothing on stdout, no
/// panic, an answer within 2 s, and no file below `home` created or changed.
fn refused(home: &Path, db: &Path, args: &[&OsStr], code: i32, needle: &str) {
    refused_with(home, db, &[], args, code, needle);
}

/// [`refused`] with variables set in poked's environment.
fn refused_with(home: &Path, db: &Path, vars: &[(&str, &str)], args: &[&OsStr], code: i32, needle: &str) {
    let before = tree(home);
    let out = output_within(
        poked(db)
            .current_dir(home)
            .env("HOME", home)
            .envs(vars.iter().copied())
            .args(args),
        Duration::from_secs(2),
    );
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
    assert!(tree(home) == before, "poked {shown:?} created or changed a file");
}

/// `refused` for arguments that are all UTF-8.
fn refused_str(home: &Path, db: &Path, args: &[&str], code: i32, needle: &str) {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    refused(home, db, &args, code, needle);
}

/// A database with one agent `a` (whose command succeeds), poked once: what a refusal must
/// leave as it is.
fn one_poked_agent() -> Env {
    let env = Env::new();
    must(&env.db, &["add", "a", "--", "true"]);
    must(&env.db, &["run", "--once"]);
    env
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
    let env = one_poked_agent();
    let home = env.dir.path();
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
    let env = one_poked_agent();
    let home = env.dir.path();
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
        ("banana", "banana"),
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
    // Each bad value given to `add` on a missing database creates nothing either.
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("state/poked.db");
    let mut cases = 0;
    for (option, table) in [
        ("--base", durations),
        ("--factor", factors),
        ("--jitter", jitters),
    ] {
        for (value, needle) in table {
            refused_str(home, &env.db, &["add", "b", option, value], 2, needle);
            refused_str(home, &env.db, &["set", "a", option, value], 2, needle);
            refused_str(empty.path(), &missing, &["add", "b", option, value], 2, needle);
            cases += 3;
        }
    }
    for option in ["--max", "--fresh", "--very-stale"] {
        for (value, needle) in durations
            .iter()
            .filter(|(v, _)| !v.ends_with('s') || v.contains('.'))
        {
            let needle = if *needle == "--base" { option } else { needle };
            refused_str(home, &env.db, &["set", "a", option, value], 2, needle);
            cases += 1;
        }
    }
    // Combinations that break a rule between settings, and the other commands' values.
    for (args, needle) in [
        (
            &["add", "b", "--base", "1h", "--max", "1m"][..],
            "at least the base",
        ),
        (&["add", "b", "--max", "1m"], "at least the base"),
        (
            &["add", "b", "--fresh", "10m", "--very-stale", "5m"],
            "--very-stale",
        ),
        (&["set", "a", "--max", "1ms"], "at least the base"),
        // `set --base` above the max raises the max, as `add` does; an explicit max does not.
        (&["set", "a", "--base", "1h", "--max", "30m"], "at least the base"),
        (
            &["set", "a", "--fresh", "1h", "--very-stale", "15m"],
            "--very-stale",
        ),
        (&["set", "a"], "nothing to change"),
        (
            &["set", "a", "--strategy", "Geometric"],
            "fixed, geometric or exponential",
        ),
        (
            &["add", "b", "--strategy", "linear"],
            "fixed, geometric or exponential",
        ),
        (&["add", "b", "--heartbeat-file", ""], "absolute"),
        (&["add", "b", "--heartbeat-file", "hb"], "absolute"),
        (&["add", "b", "--heartbeat-file", "relative/hb"], "absolute"),
        (&["add", "b", "--", ""], "must not be empty"),
        (&["activity", "a", "--at", "yesterday"], "--at"),
        (&["pause", "a", "bad id"], "' '"),
        (&["due", "--at", "banana"], "banana"),
        (&["history", "--since", "99999y"], "--since"),
        (&["history", "--since", "banana"], "banana"),
        (&["history", "--until", "banana"], "banana"),
        (
            &[
                "history",
                "--since",
                "2026-01-01T00:10:00Z",
                "--until",
                "2026-01-01T00:05:00Z",
            ],
            "before --since",
        ),
        (&["history", "--limit", "0"], "--limit"),
        (&["history", "--limit", "-1"], "-1"),
        (&["history", "--limit", "many"], "many"),
        (&["history", "--kind", "nonsense"], "nonsense"),
        (&["history", "--outcome", "nonsense"], "nonsense"),
        (&["history", "--follow", "--until", "1h"], "--until"),
        (&["history", "--json", "--csv"], "--csv"),
        (&["stats", "--since", "banana"], "banana"),
        (&["prune", "--older-than", "0s"], "more than zero"),
        (&["prune", "--older-than", "-1d"], "-1d"),
        (&["prune", "--older-than", "banana"], "banana"),
        (&["prune"], "--older-than"),
        (&["run", "--once", "--concurrency", "0"], "--concurrency"),
        (&["run", "--once", "--concurrency", "100000"], "--concurrency"),
        (&["run", "--once", "--command-timeout", "0s"], "more than zero"),
        (
            &["run", "--once", "--command-timeout", "99999999999h"],
            "10 years",
        ),
        (&["frobnicate"], "frobnicate"),
        (&["run", "--metrics-listen", "nonsense"], "nonsense"),
        (&["run", "--metrics-listen", "127.0.0.1:99999"], "127.0.0.1:99999"),
        (&["run", "--metrics-listen", "example.com:80"], "IP:PORT"),
        (&["run", "--once", "--metrics-listen", "127.0.0.1:0"], "--once"),
        (&["completions", "tcsh"], "tcsh"),
        (&["completions"], "<SHELL>"),
        (&["man", "frobnicate"], "frobnicate"),
    ] {
        refused_str(home, &env.db, args, 2, needle);
        cases += 1;
    }
    eprintln!("bad values: {cases} refusals, each exit 2, one line, nothing changed or created");
}

/// An unknown agent exits 3 and a taken id 1, changing nothing; `pause` with one unknown id
/// among known ones pauses none of them (one transaction).
#[test]
fn unknown_agents_and_taken_ids_are_refused_and_change_nothing() {
    let env = one_poked_agent();
    let home = env.dir.path();
    for (args, code, needle) in [
        (&["add", "a"][..], 1, "already exists"),
        (&["set", "nobody", "--base", "1m"], 3, "unknown agent"),
        (&["miss", "nobody"], 3, "unknown agent"),
        (&["activity", "nobody"], 3, "unknown agent"),
        (&["rm", "nobody"], 3, "unknown agent"),
        (&["show", "nobody"], 3, "unknown agent"),
        (&["pause", "a", "nobody"], 3, "unknown agent"),
    ] {
        refused_str(home, &env.db, args, code, needle);
    }
    assert_eq!(env.count("SELECT paused FROM agents WHERE id = 'a'"), 0);
}

/// A metrics address another process holds: one line, exit 1, before the daemon recovers or
/// pokes anything: the database is not touched.
#[test]
fn a_metrics_port_in_use_is_refused_before_anything_is_poked() {
    let env = Env::new();
    let home = env.dir.path();
    must(&env.db, &["add", "due-now", "--", "true"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let needle = format!("cannot listen on {address} for metrics: address already in use");
    refused_str(home, &env.db, &["run", "--metrics-listen", &address], 1, &needle);
    let pokes = "SELECT count(*) FROM poke_log WHERE kind = 'poke'";
    assert_eq!(env.count(pokes), 0, "poked although it could not listen");
}

#[test]
fn bad_environment_values_are_refused_and_set_to_nothing_mean_unset() {
    let env = one_poked_agent();
    let home = env.dir.path();
    let activity: Vec<&OsStr> = ["activity", "a"].iter().map(OsStr::new).collect();
    for (var, value) in [
        ("POKED_NOW", "yesterday"),
        ("POKED_NOW", "2026-13-01T00:00:00Z"),
        ("POKED_DRAW", "1.5"),
        ("POKED_DRAW", "nan"),
        ("POKED_DRAW", "-0.1"),
        ("POKED_SYNCHRONOUS", "off"),
    ] {
        refused_with(home, &env.db, &[(var, value)], &activity, 2, var);
    }
    // `POKED_NOW= poked …` clears a variable for one command, as it does POKED_DB.
    for var in ["POKED_NOW", "POKED_DRAW", "POKED_SYNCHRONOUS"] {
        env.cmd().env(var, "").args(["activity", "a"]).assert().success();
    }
}

// Defects a review found (issue 9), each pinned by a test written before its fix.

#[test]
fn an_existing_id_has_one_exit_code_everywhere() {
    let env = Env::new();
    must(&env.db, &["add", "w"]);
    let by_add = env.cmd().args(["add", "w"]).output().unwrap();
    let by_import = env
        .cmd()
        .args(["import", "-"])
        .write_stdin("{\"id\":\"w\"}\n")
        .output()
        .unwrap();
    assert_error(&by_add, 1, "already exists");
    assert_error(&by_import, 1, "already exists");
}
