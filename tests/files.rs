//! Bad files and paths: another program's database, a garbage, truncated, empty or damaged
//! file, a newer schema, a directory, a read-only or another user's file, a missing database.
//! Each gives a specific error and exit 1, and the file is left as it was. (A write creates a
//! missing database and its folders, privately; a read creates nothing.)

use std::os::unix::fs::PermissionsExt;

use std::path::Path;
use std::process::Command;

use crate::common::{
    AS_NOBODY, Env, PROMPT, assert_error, is_root, must, output_within, poked, poked_under,
    read_only_for_poked, tree,
};
use crate::harness::{Rng, inspect, poked_through_bind_mount, seeded_database};

const T: &str = "2026-01-01T00:00:00Z";

fn seeded() -> Env {
    let env = Env::new();
    env.ok(T, &["add", "a", "--", "true"]);
    env.ok(T, &["add", "b"]);
    env.ok(T, &["run", "--once"]);
    env
}

#[test]
fn a_garbage_file_is_refused_untouched() {
    let env = Env::new();
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&env.db, &garbage).unwrap();
    assert_error(&env.at(T, &["list"]), 1, "not a SQLite database");
    assert_error(&env.at(T, &["add", "x"]), 1, "not a SQLite database");
    assert_eq!(std::fs::read(&env.db).unwrap(), garbage);
}

#[test]
fn a_truncated_file_is_refused_untouched() {
    let env = seeded();
    let bytes = std::fs::read(&env.db).unwrap();
    assert!(
        bytes.len() > 8192,
        "seeded database is only {} bytes",
        bytes.len()
    );
    let cut = bytes[..bytes.len() / 2].to_vec();
    std::fs::write(&env.db, &cut).unwrap();
    assert_error(&env.at(T, &["list"]), 1, "truncated");
    assert_eq!(std::fs::read(&env.db).unwrap(), cut);
}

#[test]
fn a_newer_schema_is_refused_untouched() {
    let env = seeded();
    env.sql().execute_batch("PRAGMA user_version = 99").unwrap();
    let before = env.fingerprint();
    for args in [&["list"][..], &["add", "c"], &["init"], &["run", "--once"]] {
        assert_error(&env.at(T, args), 1, "newer than this poked supports");
    }
    assert!(env.fingerprint() == before, "a too-new database was changed");
}

#[test]
fn another_programs_database_is_refused() {
    let env = Env::new();
    let conn = env.sql();
    conn.execute_batch("CREATE TABLE recipes (name TEXT); INSERT INTO recipes VALUES ('soup');")
        .unwrap();
    drop(conn);
    let before = env.fingerprint();
    assert_error(&env.at(T, &["init"]), 1, "not a poked database");
    assert!(env.fingerprint() == before);

    let other = Env::new();
    other.sql().execute_batch("PRAGMA application_id = 42").unwrap();
    assert_error(&other.at(T, &["list"]), 1, "another program");
}

#[test]
fn an_empty_file_is_initialised_by_init_only() {
    let env = Env::new();
    std::fs::write(&env.db, b"").unwrap();
    assert_error(&env.at(T, &["list"]), 1, "empty");
    assert_eq!(std::fs::metadata(&env.db).unwrap().len(), 0);
    env.ok(T, &["init"]);
    env.ok(T, &["list"]);
}

#[test]
fn a_directory_is_not_a_database() {
    let env = Env::new();
    let out = env.at(T, &["--db", env.dir.path().to_str().unwrap(), "init"]);
    assert_error(&out, 1, "directory");
}

#[test]
fn missing_folders_are_created_with_private_modes() {
    let env = Env::new();
    let db = env.dir.path().join("deep/er/poked.db");
    env.ok(T, &["--db", db.to_str().unwrap(), "add", "a"]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    // While a connection is open the -wal and -shm files exist; they inherit the file's mode.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row("SELECT count(*) FROM agents", [], |r| r.get::<_, i64>(0))
        .unwrap();
    let wal = env.dir.path().join("deep/er/poked.db-wal");
    let shm = env.dir.path().join("deep/er/poked.db-shm");
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&shm), 0o600);
}

#[test]
fn an_unwritable_place_is_a_clear_error() {
    let env = Env::new();
    let out = env.at(T, &["--db", "/proc/poked-test/poked.db", "add", "a"]);
    assert_error(&out, 1, "/proc/poked-test");
}

/// `poked` on `db` run as `nobody` through setpriv, when the tests run as root: root reads and
/// writes whatever the file modes say, so only another user meets them.
fn as_nobody(db: &Path) -> Option<Command> {
    is_root().then(|| poked_under(&AS_NOBODY, db))
}

#[test]
fn a_read_only_database_is_refused_for_writing() {
    let env = seeded();
    let before = env.fingerprint();
    let mut cmd = poked_under(read_only_for_poked(&env), &env.db);
    let out = output_within(cmd.env("POKED_NOW", T).args(["miss", "a"]), PROMPT);
    assert_error(&out, 1, "read-only");
    assert!(env.fingerprint() == before, "a read-only database was changed");
}

/// `(page number, owner)` of every page in use, from SQLite's `dbstat`.
fn pages(db: &Path) -> Vec<(i64, String)> {
    let conn = inspect(db);
    let mut stmt = conn
        .prepare("SELECT pageno, name FROM dbstat ORDER BY pageno")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Every command that reads, and `check`.
const READS: &[&[&str]] = &[
    &["list"],
    &["list", "--json"],
    &["show", "agent-150"],
    &["history"],
    &["history", "agent-150"],
    &["stats"],
    &["due"],
    &["next"],
    &["status"],
    &["export"],
    &["check"],
];

#[test]
fn a_damaged_page_is_reported_as_corrupt_and_left_untouched() {
    let env = Env::new();
    let pristine = env.dir.path().join("pristine.db");
    seeded_database(&pristine, 300, 8);
    let all = pages(&pristine);
    let mut rng = Rng::from_env("a_damaged_page");
    // A page of each table and index, and one anywhere but the header page.
    let mut owners: Vec<String> = all.iter().map(|(_, name)| name.clone()).collect();
    owners.sort();
    owners.dedup();
    owners.retain(|name| name != "sqlite_schema");
    let mut picks: Vec<(i64, String)> = owners
        .iter()
        .map(|owner| {
            let of: Vec<_> = all.iter().filter(|(_, name)| name == owner).collect();
            of[rng.between(0, of.len() as u64 - 1) as usize].clone()
        })
        .collect();
    let interior: Vec<_> = all.iter().filter(|(page, _)| *page > 1).collect();
    picks.push(interior[rng.between(0, interior.len() as u64 - 1) as usize].clone());
    let page_size = 4096;
    let mut reported = Vec::new();
    for (page, owner) in &picks {
        let mut bytes = std::fs::read(&pristine).unwrap();
        let at = (*page as usize - 1) * page_size;
        for b in &mut bytes[at..at + page_size] {
            *b = rng.next() as u8;
        }
        std::fs::write(&env.db, &bytes).unwrap();
        let mut corrupt_seen = Vec::new();
        for args in READS
            .iter()
            .copied()
            .chain([&["activity", "agent-150"][..], &["run", "--once"]])
        {
            let before = std::fs::read(&env.db).unwrap();
            // No hang and no lock wait on a damaged page; `run --once` pokes up to 300 agents
            // first, which a loaded machine has been seen to take 2.4 s over.
            let out = output_within(poked(&env.db).args(args), PROMPT);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!("page {page} of {owner}: poked {args:?}");
            assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
            match out.status.code() {
                Some(0) => {}
                Some(1) => {
                    let line = stderr.lines().last().unwrap_or_default();
                    assert!(line.starts_with("poked: "), "{what}: {stderr}");
                    assert!(
                        line.contains("is corrupt"),
                        "{what}: not reported as corrupt: {stderr}"
                    );
                    corrupt_seen.push(args.join(" "));
                    // `run` commits each poke on its own: those before the damaged page stay.
                    if args[0] != "run" {
                        assert!(
                            std::fs::read(&env.db).unwrap() == before,
                            "{what} failed and changed the file"
                        );
                    }
                }
                other => panic!("{what}: exit {other:?}: {stderr}"),
            }
            if args[0] != "activity" && args[0] != "run" {
                assert!(
                    std::fs::read(&env.db).unwrap() == before,
                    "{what} (a read) changed the file"
                );
            }
        }
        // `check` reads every page: whatever was hit, it must say so.
        let out = poked(&env.db).arg("check").output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "page {page} of {owner}: check passed: {text}"
        );
        assert!(
            text.contains("corrupt") || text.contains("integrity"),
            "page {page}: {text}"
        );
        eprintln!(
            "page {page} of {owner}: reported by {corrupt_seen:?}\n  check: {}",
            text.trim()
        );
        reported.push((page, owner.clone(), corrupt_seen));
    }
    eprintln!(
        "damaged pages: {} of {} pages, each reported, none panicked",
        picks.len(),
        all.len()
    );
}

/// A missing database, in an existing folder or a missing one: every command that needs it
/// says so at once, naming the path, and creates neither the file nor its folder.
#[test]
fn read_commands_in_a_missing_folder_say_so_and_create_nothing() {
    let env = Env::new();
    for db in [
        env.dir.path().join("poked.db"),
        env.dir.path().join("no/such/folder/poked.db"),
    ] {
        for args in READS
            .iter()
            .copied()
            .chain([&["activity", "a"][..], &["rm", "a"], &["pause", "a"]])
        {
            let out = output_within(poked(&db).current_dir(env.dir.path()).args(args), PROMPT);
            assert_error(&out, 1, "no database at");
            assert_error(&out, 1, &db.display().to_string());
        }
    }
    assert_eq!(
        std::fs::read_dir(env.dir.path()).unwrap().count(),
        0,
        "a file or folder was created"
    );
}

#[test]
fn a_database_owned_by_another_user_is_refused_untouched() {
    let env = Env::new();
    must(&env.db, &["add", "a"]);
    // The folder is open to all, the file is root's with mode 0600 (as poked creates it).
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = tree(env.dir.path());
    for args in READS
        .iter()
        .copied()
        .chain([&["activity", "a"][..], &["add", "b"], &["init"]])
    {
        let Some(mut cmd) = as_nobody(&env.db) else {
            eprintln!("skipped: not root, so no other user to try as");
            return;
        };
        let out = output_within(cmd.args(args), PROMPT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_error(&out, 1, &env.db.display().to_string());
        assert!(
            stderr.contains("permission denied") || stderr.contains("owned by"),
            "poked {args:?} as nobody: {stderr}"
        );
    }
    assert!(
        tree(env.dir.path()) == before,
        "another user's attempt changed the folder"
    );
}

// Defects a review found (issue 9), each pinned by a test written before its fix.

#[test]
fn read_commands_work_on_a_read_only_database() {
    if !is_root() {
        eprintln!("not root: a read-only bind mount cannot be made; skipped");
        return;
    }
    let env = Env::new();
    env.ok("2026-01-01T00:00:00Z", &["add", "w"]);
    env.ok("2026-01-01T00:00:00Z", &["run", "--once"]);
    let dir = env.dir.path();
    let ro = dir.join("ro");
    std::fs::create_dir(&ro).unwrap();
    let before = env.fingerprint();
    for (args, want) in [
        ("list", Some(0)),
        ("show w", Some(0)),
        ("history", Some(0)),
        ("stats", Some(0)),
        ("status", Some(0)),
        ("check", Some(0)),
        ("activity w", Some(1)),
    ] {
        let now = [("POKED_NOW", "2026-01-01T00:01:00Z")];
        let out = poked_through_bind_mount(dir, &ro, "-o ro", args, &now);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), want, "{args}: {stderr}");
        if want == Some(1) {
            assert_error(&out, 1, "read-only");
        }
    }
    assert_eq!(
        env.fingerprint(),
        before,
        "a read command on a read-only file changed it"
    );
}
