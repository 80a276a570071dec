//! `tollgate list` benchmark (not a test): prints figures, asserts nothing about time.
//!
//!   cargo bench --bench list                       # 100,000 CRs
//!   TOLLGATE_BENCH_CRS=20000 cargo bench --bench list
//!
//! With N change requests in a local store, runs the real (release) binary as a user
//! would — `list --json` (cold, then with the queue summaries cached), `list --gate data`,
//! `list` — and reports each run's wall time, peak resident memory (the child's, from
//! wait4) and output size.

mod support;

use std::process::{Command, Stdio};
use std::time::Instant;

/// Runs `tollgate ARGS` on the store at `store`: seconds, peak RSS in MiB, output bytes.
///
/// The peak memory is measured by GNU time around the binary: a child's own `wait4`
/// figure would count the pages it shared with this (large) process before its exec.
fn run(store: &std::path::Path, args: &[&str]) -> (f64, f64, usize) {
    let report = store.with_extension("rss");
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .env("TOLLGATE_STORE", store)
        .env("TOLLGATE_NOW", "2026-11-25T10:00:00Z")
        .env("HOME", store.parent().unwrap_or(store))
        .stderr(Stdio::null())
        .output()
        .expect("GNU time (apt-get install time) runs tollgate");
    let secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "tollgate {args:?} failed");
    let kib: f64 = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| t.trim().lines().last().and_then(|l| l.trim().parse().ok()))
        .expect("GNU time's report");
    (secs, kib / 1024.0, out.stdout.len())
}

fn main() {
    let n = support::cr_count(100_000);
    let now = support::fixed_now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, built) = support::synthetic_store(dir.path(), n, now);
    println!(
        "tollgate list benchmark: {n} change requests (store built in {built:.1} s), release binary"
    );
    // The first listing evaluates every CR and caches the rows; the rest read the cache.
    for args in [
        &["list", "--json"][..],
        &["list", "--json"],
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
    // Keep the store to look into (`TOLLGATE_BENCH_KEEP=/tmp/list.db`).
    if let Some(keep) = std::env::var_os("TOLLGATE_BENCH_KEEP") {
        std::fs::copy(&path, keep).expect("copy the store");
    }
}
