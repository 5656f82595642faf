//! The disk: durability settings, a full disk refused cleanly, and a `-wal` that stays
//! bounded after a long reader.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Env, must, poked, wait_for};
use crate::harness::{Auditor, Daemon, inspect, integrity, poked_check, scalar};

// ---------------------------------------------------------------------------------------------
// Durability settings.
// ---------------------------------------------------------------------------------------------

/// Power loss cannot be simulated here; what the suite can check is that a commit waits for
/// the disk by default (`synchronous = FULL`): the store sets it on every connection and reads
/// it back, refusing to run when it did not take.
#[test]
fn commits_wait_for_the_disk_by_default() {
    use poked::store::{OpenOptions, Synchronous};
    assert_eq!(OpenOptions::default().synchronous, Synchronous::Full);
    assert_eq!(Synchronous::default(), Synchronous::Full);
}

#[test]
fn connection_pragmas_are_in_force() {
    use poked::store::{OpenOptions, Store};
    let env = Env::new();
    let store = Store::open(
        &env.db,
        OpenOptions {
            create: true,
            ..OpenOptions::default()
        },
    )
    .expect("open store");
    // The store checks these on every connection; the journal mode is also visible from outside.
    drop(store);
    let mode: String = env.value("PRAGMA journal_mode");
    assert_eq!(mode, "wal");
}

// ---------------------------------------------------------------------------------------------
// A full disk.
// ---------------------------------------------------------------------------------------------

/// A small tmpfs mounted for one test, unmounted when dropped.
pub struct SmallDisk {
    pub dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (as `mount -o size=`) on a new temporary folder, or says why
    /// it cannot (not root, no mount in this sandbox).
    pub fn mount(size: &str) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(SmallDisk { dir })
    }

    pub fn available(&self) -> u64 {
        poked::store::space::available(self.dir.path()).expect("statvfs")
    }

    /// Writes a filler file until at most `leave` bytes are available (0: until ENOSPC).
    pub fn fill(&self, name: &str, leave: u64) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.dir.path().join(name)).unwrap();
        let chunk = vec![0x5a_u8; 16 * 1024];
        loop {
            let free = self.available();
            if free <= leave || (leave == 0 && free == 0) {
                break;
            }
            let n = (free - leave).min(chunk.len() as u64) as usize;
            if file.write_all(&chunk[..n]).is_err() {
                break;
            }
        }
        let _ = file.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// The daemon's passes on a full disk write nothing, and the test sees each try happen: with
/// `-v` the daemon says at debug level each time it tries the database again (the error itself
/// is logged once). Each phase waits for two more tries after the disk filled, which proves
/// passes were refused, instead of sleeping and hoping one was.
#[test]
fn a_full_disk_refuses_writes_clearly_and_the_daemon_rides_it_out() {
    let disk = match SmallDisk::mount("8m") {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("skipped: cannot mount a small tmpfs for the full-disk test ({why})");
            return;
        }
    };
    let outside = tempfile::tempdir().unwrap();
    let db = disk.dir.path().join("poked.db");
    must(&db, &["add", "a"]);
    must(
        &db,
        &[
            "add",
            "tick",
            "--base",
            "1s",
            "--max",
            "1s",
            "--fresh",
            "0s",
            "--very-stale",
            "1h",
        ],
    );
    let ticks = || {
        scalar(
            &db,
            "SELECT count(*) FROM poke_log WHERE agent_id = 'tick' AND kind = 'poke'",
        )
    };
    let rows = || scalar(&db, "SELECT count(*) FROM poke_log");
    // Its log is off the full disk too, or the lines the test waits for could not be written.
    // With -v it says each time it tries the database again (the error itself only once).
    let mut daemon = Daemon::try_start_logging_in(&db, &["-v"], outside.path()).unwrap();
    const RETRY: &str = "the database is still unavailable";
    let retries = |daemon: &Daemon| daemon.log_text().lines().filter(|l| l.contains(RETRY)).count();
    assert!(
        wait_for(Duration::from_secs(10), || ticks() >= 2),
        "the daemon does not poke: {}",
        daemon.log_text()
    );

    // Below the guard's threshold, then with not a byte left.
    let reads: [&[&str]; 5] = [
        &["list"],
        &["show", "a"],
        &["history", "--limit", "5"],
        &["status"],
        &["check"],
    ];
    let mut written = None;
    for (phase, leave) in [
        ("below the threshold", poked::store::space::MIN_FREE / 2),
        ("completely full", 0),
    ] {
        disk.fill(&format!("filler-{}", leave), leave);
        assert!(disk.available() <= leave, "{phase}: could not fill the disk");
        let before = crate::common::fingerprint(&db);
        let started = Instant::now();
        for transition in ["activity", "miss", "poke", "reset"] {
            let out = poked(&db).args([transition, "a"]).output().unwrap();
            crate::common::assert_error(&out, 1, "disk full");
        }
        let out = poked(&db).args(["add", "b"]).output().unwrap();
        crate::common::assert_error(&out, 1, "disk full");
        assert!(
            crate::common::fingerprint(&db) == before,
            "{phase}: a refused write changed the file"
        );
        for args in reads {
            let out = poked(&db).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{phase}: poked {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{phase}: slow refusals"
        );
        // What the daemon had written when the disk filled (a pass it began just before may
        // still have committed), and two more tries of its after that, which wrote nothing.
        let written = *written.get_or_insert_with(rows);
        let tried = retries(&daemon);
        assert!(
            wait_for(Duration::from_secs(30), || retries(&daemon) >= tried + 2),
            "{phase}: the daemon stopped trying: {}",
            daemon.log_text()
        );
        assert_eq!(rows(), written, "{phase}: the daemon wrote on a full disk");
        assert!(
            daemon.running(),
            "{phase}: the daemon died: {}",
            daemon.log_text()
        );
    }
    let text = daemon.log_text();
    assert_eq!(
        text.matches("disk full").count(),
        1,
        "logged more than once: {text}"
    );

    // Space comes back: the daemon resumes on its own (its retry delay is a few seconds by
    // now), and writes work again.
    for leave in [poked::store::space::MIN_FREE / 2, 0] {
        std::fs::remove_file(disk.dir.path().join(format!("filler-{leave}"))).unwrap();
    }
    let freed = ticks();
    assert!(
        wait_for(Duration::from_secs(20), || ticks() > freed),
        "the daemon did not resume: {}",
        daemon.log_text()
    );
    assert!(daemon.running());
    must(&db, &["activity", "a"]);
    daemon.stop().unwrap();
    integrity(&inspect(&db)).unwrap();
    poked_check(&db).unwrap();
    Auditor::new(&db).audit(&[], true).unwrap();
    eprintln!(
        "full disk: refused with exit 1 at {} KiB and at 0 bytes free; reads fine; the daemon's \
         passes wrote nothing, it logged it once and resumed",
        poked::store::space::MIN_FREE / 2048
    );
}

// ---------------------------------------------------------------------------------------------
// The -wal stays bounded.
// ---------------------------------------------------------------------------------------------

/// `journal_size_limit` of src/store/mod.rs.
const WAL_LIMIT: u64 = 16 * 1024 * 1024;

#[test]
fn the_wal_shrinks_back_under_its_limit_soon_after_a_long_reader_ends() {
    use poked::agent::AgentId;
    use poked::random::FixedDraw;
    use poked::store::{OpenOptions, Store, Synchronous};
    let env = Env::new();
    let db = env.db.clone();
    must(&db, &["add", "w", "--base", "1h"]);
    let daemon = Daemon::start(&db, &[]);
    let wal = poked::store::wal_path(&db);
    let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());

    // A reader holds one snapshot (as a `sqlite3` shell left in a transaction would) while
    // thousands of transitions are committed: no checkpoint can pass it, so the -wal grows.
    let reader = inspect(&db);
    reader.execute_batch("BEGIN").unwrap();
    let rows: i64 = reader
        .query_row("SELECT count(*) FROM poke_log", [], |r| r.get(0))
        .unwrap();
    let writer = Store::open(
        &db,
        OpenOptions {
            create: false,
            synchronous: Synchronous::Normal,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let id = AgentId::parse("w").unwrap();
    let draw = FixedDraw(0.5);
    let started = Instant::now();
    let mut transitions = 0;
    while transitions < 3000 || wal_size() < 2 * WAL_LIMIT {
        let now = 1_900_000_000_000 + transitions;
        writer.record_activity(&id, now, now, &draw).unwrap();
        transitions += 1;
        assert!(
            transitions < 30_000,
            "the -wal does not grow: {} bytes",
            wal_size()
        );
    }
    drop(writer);
    let grown = wal_size();
    let still: i64 = reader
        .query_row("SELECT count(*) FROM poke_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(still, rows, "the reader's snapshot moved");
    drop(reader); // ends its transaction
    let ended = Instant::now();
    // Nothing writes any more: bringing the -wal back is the daemon's job.
    assert!(
        wait_for(Duration::from_secs(10), || wal_size() <= WAL_LIMIT),
        "the -wal is still {} bytes {:?} after the reader ended",
        wal_size(),
        ended.elapsed()
    );
    let shrunk_after = ended.elapsed();
    eprintln!(
        "wal: {transitions} transitions in {:?} behind a reader grew it to {} MiB; \
         back to {} KiB {shrunk_after:?} after the reader ended",
        ended - started,
        grown >> 20,
        wal_size() >> 10
    );
    daemon.stop().unwrap();
    poked_check(&db).unwrap();
}
