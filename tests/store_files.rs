//! What tollgate does with the file it is pointed at: an empty or foreign file is refused
//! untouched (never given a schema without `init`), and a store that cannot be written is
//! still read and verified, with writes refused saying why.

mod common;

use common::Home;
use std::path::{Path, PathBuf};
use std::process::Command;

fn sha(path: &Path) -> String {
    tollgate::audit::canonical::sha256_digest(&std::fs::read(path).unwrap())
}

#[test]
fn an_empty_or_foreign_file_is_refused_untouched() {
    let home = Home::new();
    let store = home.store();
    let cases: [(&str, &[u8]); 2] = [
        ("the file is empty", b""),
        ("it is not an SQLite database", b"id,title\nCR-1,hello\n"),
    ];
    for (why, bytes) in cases {
        std::fs::write(&store, bytes).unwrap();
        for args in [&["verify"][..], &["list"], &["history"]] {
            let run = home.run(args);
            assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
            assert!(
                run.stderr.contains("is not a tollgate store") && run.stderr.contains(why),
                "{args:?}: {}",
                run.stderr
            );
        }
        assert_eq!(std::fs::read(&store).unwrap(), bytes, "{why}: file changed");
    }
    // Another program's SQLite database.
    std::fs::remove_file(&store).unwrap();
    {
        let c = rusqlite::Connection::open(&store).unwrap();
        c.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
    }
    let before = sha(&store);
    let run = home.run(&["verify"]);
    assert!(
        run.stderr
            .contains("an SQLite database without tollgate's schema"),
        "{}",
        run.stderr
    );
    assert_eq!(sha(&store), before, "foreign database changed");
}

/// Makes `dir` and the store in it unwritable for the duration: `chattr +i` (which binds
/// root too) or, where that is not available, permissions (which bind everyone else).
struct ReadOnly {
    paths: Vec<PathBuf>,
    immutable: bool,
}

impl ReadOnly {
    fn new(paths: Vec<PathBuf>) -> ReadOnly {
        let immutable = Command::new("chattr")
            .arg("+i")
            .args(&paths)
            .status()
            .is_ok_and(|s| s.success());
        if !immutable {
            use std::os::unix::fs::PermissionsExt;
            for p in &paths {
                let mode = if p.is_dir() { 0o555 } else { 0o444 };
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        let probe = paths[0].join(".probe");
        assert!(
            std::fs::write(&probe, b"x").is_err(),
            "could not make {} read-only (chattr +i and chmod both failed to)",
            paths[0].display()
        );
        ReadOnly { paths, immutable }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.immutable {
            let _ = Command::new("chattr").arg("-i").args(&self.paths).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            for p in &self.paths {
                let mode = if p.is_dir() { 0o755 } else { 0o644 };
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
            }
        }
    }
}

#[test]
fn a_store_that_cannot_be_written_is_still_read_and_verified() {
    let home = Home::demo();
    // A cleanly closed store: no -wal / -shm files beside it.
    for extra in ["tollgate.db-wal", "tollgate.db-shm"] {
        assert!(!home.path(extra).exists(), "{extra} left behind");
    }
    let before = sha(&home.store());
    let dir = home.path("");
    let _guard = ReadOnly::new(vec![dir.clone(), home.store()]);
    let verify = home.run(&["verify"]).ok();
    assert!(verify.stdout.contains("log verified"), "{}", verify.stdout);
    home.run(&["list"]).ok();
    home.run(&["history"]).ok();
    let write = home.decide(
        "devi",
        "request-changes",
        "CR-1045",
        &["--rationale", "p99"],
    );
    assert_eq!(write.code, 3, "{}", write.stderr);
    assert!(
        write.stderr.contains("readonly database") || write.stderr.contains("read-only"),
        "{}",
        write.stderr
    );
    assert!(!write.stderr.contains("is this a tollgate store"));
    assert_eq!(sha(&home.store()), before);
}

#[test]
fn a_write_the_disk_refuses_says_what_failed_and_loses_nothing() {
    // A file-size limit (ulimit -f, SIGXFSZ ignored) stands in for a full disk: writes past
    // it fail with EFBIG, as they would with ENOSPC.
    let home = Home::demo();
    let mut refused = None;
    for blocks in (16..=512).step_by(16) {
        let before = home.verified_entries();
        let script = format!(
            "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" --as devi request-changes CR-1045 --rationale 'p99 {blocks}'"
        );
        let out: common::Run = Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_tollgate")])
            .env("TOLLGATE_HOME", home.path(""))
            .env_remove("TOLLGATE_STORE")
            .env_remove("TOLLGATE_REMOTE")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
            .into();
        if out.code != 0 {
            assert_eq!(out.code, 3, "{}", out.stderr);
            assert!(
                out.stderr.contains("disk I/O error") || out.stderr.contains("disk is full"),
                "{}",
                out.stderr
            );
            assert!(
                !out.stderr.contains("is this a tollgate store"),
                "{}",
                out.stderr
            );
            assert_eq!(home.verified_entries(), before, "nothing half-written");
            refused = Some(blocks);
            break;
        }
    }
    assert!(
        refused.is_some(),
        "no file-size limit up to 256 KiB stopped a write"
    );
}
