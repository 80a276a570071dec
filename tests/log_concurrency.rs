//! Many writers and hard crashes: the log stays one valid chain holding every decision
//! that was acknowledged.

mod common;

use common::Home;
use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Hashes of the entries tollgate acknowledged in `text` ("log entry N (sha256:...)").
fn acknowledged(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split("(sha256:").nth(1))
        .filter_map(|rest| rest.split(')').next())
        .filter(|h| h.len() == 64)
        .map(|h| format!("sha256:{h}"))
        .collect()
}

fn logged_hashes(home: &Home) -> HashSet<String> {
    home.run(&["log", "export"])
        .ok()
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["hash"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// A shell loop making `n` decisions as `who` on `cr`, one tollgate process each.
fn loop_script(home: &Home, who: &str, cr: &str, n: usize, out: &str) -> Command {
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do i=$((i+1)); \"$0\" --as {who} request-changes {cr} --rationale \"round $i\" >> {out} || exit 1; done"
    );
    let mut c = Command::new("sh");
    common::without_tollgate_env(&mut c)
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_tollgate"))
        .env("TOLLGATE_HOME", home.dir.path())
        .stdin(Stdio::null());
    c
}

#[test]
fn eight_processes_appending_at_once_make_one_valid_chain() {
    let home = Home::demo();
    let writers = [
        ("kai", "CR-1042"),
        ("devi", "CR-1042"),
        ("marco", "CR-1042"),
        ("lena", "CR-1042"),
        ("sofia", "CR-1042"),
        ("kai", "CR-1044"),
        ("devi", "CR-1044"),
        ("marco", "CR-1044"),
    ];
    let per_writer = 10;
    let mut children = Vec::new();
    for (i, (who, cr)) in writers.iter().enumerate() {
        let out = home
            .path(&format!("acks-{i}"))
            .to_string_lossy()
            .into_owned();
        children.push((
            loop_script(&home, who, cr, per_writer, &out)
                .spawn()
                .unwrap(),
            out,
        ));
    }
    let mut acks = Vec::new();
    for (mut child, out) in children {
        assert!(child.wait().unwrap().success(), "a writer failed");
        acks.extend(acknowledged(&std::fs::read_to_string(out).unwrap()));
    }
    assert_eq!(
        acks.len(),
        writers.len() * per_writer,
        "every decision was acknowledged"
    );
    assert_eq!(
        home.verified_entries(),
        common::DEMO_ENTRIES + (writers.len() * per_writer) as u64
    );
    let logged = logged_hashes(&home);
    for h in &acks {
        assert!(
            logged.contains(h),
            "acknowledged entry {h} is missing from the log"
        );
    }
}

#[test]
fn a_writer_killed_with_sigkill_leaves_a_store_that_verifies() {
    let home = Home::demo();
    let out = home.path("acks").to_string_lossy().into_owned();
    let mut expected_min = 0;
    for round in 0..8 {
        let mut child = loop_script(&home, "devi", "CR-1044", 1000, &out)
            .process_group(0)
            .spawn()
            .unwrap();
        // Let it acknowledge a few decisions, then kill the whole group mid-flight.
        let wanted = expected_min + 3 + round;
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged(&std::fs::read_to_string(&out).unwrap_or_default()).len() < wanted {
            assert!(Instant::now() < deadline, "the writer made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        let status = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = child.wait();
        let acks = acknowledged(&std::fs::read_to_string(&out).unwrap());
        expected_min = acks.len();
        // The store opens, verifies, and holds every acknowledged decision.
        let entries = home.verified_entries();
        assert!(entries >= common::DEMO_ENTRIES + acks.len() as u64);
        let logged = logged_hashes(&home);
        for h in &acks {
            assert!(
                logged.contains(h),
                "round {round}: acknowledged {h} was lost"
            );
        }
    }
}
