//! `tollgate list` benchmark (not a test): prints figures, asserts nothing about time.
//!
//!   cargo bench --bench list                       # 100,000 CRs
//!   TOLLGATE_BENCH_CRS=20000 cargo bench --bench list
//!
//! With N change requests in a local store, runs the real (release) binary as a user
//! would — `list --json`, `list --gate data`, `list` — and reports each run's wall time,
//! peak resident memory (the child's, from wait4) and output size.

mod support;

use std::process::{Command, Stdio};
use std::time::Instant;
use tollgate::store::local::LocalStore;

/// Runs `tollgate ARGS` on the store at `store`: seconds, peak RSS in MiB, output bytes.
// The child is reaped with wait4 (for its resource usage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run(store: &std::path::Path, args: &[&str]) -> (f64, f64, usize) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .env("TOLLGATE_STORE", store)
        .env("TOLLGATE_NOW", "2026-11-25T10:00:00Z")
        .env("HOME", store.parent().unwrap_or(store))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tollgate runs");
    let mut out = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        std::io::Read::read_to_end(&mut stdout, &mut out).expect("read output");
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is a plain C struct that wait4 fills; pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 on the child");
    let secs = started.elapsed().as_secs_f64();
    (secs, usage.ru_maxrss as f64 / 1024.0, out.len())
}

fn main() {
    let n = support::cr_count(100_000);
    let now = support::fixed_now();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let store = LocalStore::create(&path).expect("store");
    tollgate::demo::seeded_genesis(&store, &tollgate::demo::seeded_policy_text(), now)
        .expect("genesis");
    let built = Instant::now();
    support::submit_synthetic(&store, n, now);
    drop(store);
    println!(
        "tollgate list benchmark: {n} change requests (store built in {:.1} s), release binary",
        built.elapsed().as_secs_f64()
    );
    for args in [
        &["list", "--json"][..],
        &["list", "--gate", "data"],
        &["list", "--gate", "data", "--json"],
        &["list"],
    ] {
        let (secs, rss, bytes) = run(&path, args);
        println!(
            "{:<32} {:>8.0} ms   peak RSS {:>7.1} MiB   {:>6.1} MiB out",
            format!("tollgate {}", args.join(" ")),
            secs * 1000.0,
            rss,
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
}
