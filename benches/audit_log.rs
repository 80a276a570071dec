//! Benchmark of the audit log (not a test): prints figures, asserts nothing about time.
//!
//!   cargo bench --bench audit_log
//!   TOLLGATE_BENCH_SIGN=2000 TOLLGATE_BENCH_VERIFY=100000,1000000 cargo bench --bench audit_log
//!
//! 1. sign-and-append: N decisions through `Store::decide` (rule check, SSHSIG signing,
//!    one durable SQLite transaction each), as `tollgate approve` does;
//! 2. verify: logs of 100k and 1M signed entries (built in bulk), checked by
//!    `store::verify_log` exactly as `tollgate verify` does;
//! 3. the same with a policy change every 10,000 entries (a `policy`-gate CR, two lead
//!    approvals and the adoption, then every later entry judged by the new version), to
//!    compare the rates: both logs verified in turns, three rounds each, medians compared
//!    (`TOLLGATE_BENCH_POLICY_EVERY` changes the interval, `TOLLGATE_BENCH_ROUNDS` the rounds);
//! 4. the raw ed25519 verify rate (ed25519-dalek) on this machine in the same run, for scale.

mod support;

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
use std::time::Instant;
use support::{devi, setup, store_with_policy_changes, store_with_signed_log};
use tollgate::store::local::LocalStore;
use tollgate::store::{VerifyOptions, verify_log};

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn sign_and_append(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = devi();
    let (store, book) = setup(dir.path());
    let policy_digest = book.current().digest.clone();
    let digest = support::cr_1044_digest(&store);
    let started = Instant::now();
    for i in 0..n {
        support::decide_once(&store, &digest, &signer, &policy_digest, i);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sign+append  {n:>9} decisions  {secs:>8.2} s  {:>10.0} decisions/s  (durable commit each, synchronous=FULL)",
        n as f64 / secs
    );
}

/// Verifies the store at `path` as `tollgate verify` does; returns the entries per second.
fn verify_store(path: &std::path::Path, label: &str, note: &str) -> f64 {
    let store = LocalStore::open(path).expect("reopen");
    let started = Instant::now();
    let report = verify_log(&store, &VerifyOptions::default()).expect("verify");
    let secs = started.elapsed().as_secs_f64();
    assert!(report.ok(), "{:?}", report.first_bad);
    let rate = report.entries as f64 / secs;
    println!(
        "{label:<12} {:>9} entries    {secs:>8.2} s  {rate:>10.0} entries/s    ({} signatures, {} policy version(s){note})",
        report.entries,
        report.signatures,
        report.policies.len()
    );
    rate
}

/// Verification of a log of `n` entries without and with a policy change every `every`
/// entries. Both logs are built first, then verified in turns (`rounds` each), so noise
/// on this machine falls on both alike; returns the median rates.
fn verify_both(n: usize, every: usize, rounds: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain_dir = dir.path().join("plain");
    let pol_dir = dir.path().join("pol");
    std::fs::create_dir_all(&plain_dir).expect("dir");
    std::fs::create_dir_all(&pol_dir).expect("dir");
    let (plain, plain_secs) = store_with_signed_log(&plain_dir, n);
    let (changing, changes, pol_secs) = store_with_policy_changes(&pol_dir, n, every);
    println!(
        "built {n} signed entries in {plain_secs:.1} s; with a policy change every {every} entries ({changes} in all) in {pol_secs:.1} s"
    );
    let mut rates = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let note = format!(", round {round} of {rounds}");
        rates.0.push(verify_store(&plain, "verify", &note));
        rates.1.push(verify_store(&changing, "verify+pol", &note));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(rates.0), median(rates.1))
}

fn raw_ed25519(n: usize) {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let msg = [42u8; 700]; // about the size of a decision body
    let sig = key.sign(&msg);
    let vk = key.verifying_key();
    let started = Instant::now();
    for _ in 0..n {
        vk.verify(&msg, &sig).expect("valid");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "raw ed25519  {n:>9} verifies   {secs:>8.2} s  {:>10.0} verifies/s   (ed25519-dalek, 700-byte message, one core)",
        n as f64 / secs
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    println!(
        "tollgate audit-log benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for n in env_list("TOLLGATE_BENCH_SIGN", &[2_000]) {
        sign_and_append(n);
    }
    let every = env_list("TOLLGATE_BENCH_POLICY_EVERY", &[10_000])
        .first()
        .copied()
        .unwrap_or(10_000);
    let rounds = env_list("TOLLGATE_BENCH_ROUNDS", &[3])
        .first()
        .copied()
        .unwrap_or(3)
        .max(1);
    for n in env_list("TOLLGATE_BENCH_VERIFY", &[100_000, 1_000_000]) {
        let (plain, changing) = verify_both(n, every, rounds);
        println!(
            "median of {rounds}: {plain:.0} entries/s without, {changing:.0} with policy changes: {:+.1} %",
            (changing / plain - 1.0) * 100.0
        );
    }
    raw_ed25519(100_000);
}
