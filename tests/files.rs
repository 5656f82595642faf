//! Bad files and paths: each gives a specific error and exit 1, and the file is left untouched.

use std::os::unix::fs::PermissionsExt;

use crate::common::{Env, assert_error};

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
    let out = env
        .cmd()
        .env("POKED_NOW", T)
        .args(["--db", env.dir.path().to_str().unwrap(), "init"])
        .output()
        .unwrap();
    assert_error(&out, 1, "directory");
}

#[test]
fn missing_folders_are_created_with_private_modes() {
    let env = Env::new();
    let db = env.dir.path().join("deep/er/poked.db");
    let out = env
        .cmd()
        .env("POKED_NOW", T)
        .args(["--db", db.to_str().unwrap(), "add", "a"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
    let out = env
        .cmd()
        .env("POKED_NOW", T)
        .args(["--db", "/proc/poked-test/poked.db", "add", "a"])
        .output()
        .unwrap();
    assert_error(&out, 1, "/proc/poked-test");
    let out = env
        .cmd()
        .args(["--db", "/nonexistent-dir/poked.db", "list"])
        .output()
        .unwrap();
    assert_error(&out, 1, "no database");
}

#[test]
fn a_read_only_database_is_refused_for_writing() {
    let env = seeded();
    let before = env.fingerprint();
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        // Root writes through file modes, so the check runs as `nobody` through setpriv.
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(assert_cmd::cargo::cargo_bin!("poked"));
        cmd
    } else {
        std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o400)).unwrap();
        std::process::Command::new(assert_cmd::cargo::cargo_bin!("poked"))
    };
    let out = cmd
        .env("POKED_DB", &env.db)
        .env("POKED_NOW", T)
        .args(["miss", "a"])
        .output()
        .expect("setpriv");
    assert_error(&out, 1, "read-only");
    assert!(env.fingerprint() == before, "a read-only database was changed");
}
