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
//!    compare the rates (`TOLLGATE_BENCH_POLICY_EVERY` changes the interval);
//! 4. the raw ed25519 verify rate (ed25519-dalek) on this machine in the same run, for scale.

mod support;

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
use std::time::Instant;
use support::{devi, record, setup, store_with_policy_changes, store_with_signed_log};
use tollgate::store::local::LocalStore;
use tollgate::store::{NewEntry, Store, VerifyOptions, verify_log};

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
        store
            .decide("CR-1044", &mut |ctx| {
                let r = record(
                    ctx.head.seq + 1,
                    ctx.head.hash.clone(),
                    &digest,
                    &signer,
                    &policy_digest,
                    i,
                );
                let body = r.body();
                let signature = signer
                    .sign(body.as_bytes())
                    .map_err(|e| tollgate::store::DecideError::Signing(e.to_string()))?;
                Ok(NewEntry {
                    body,
                    signature,
                    principal: "devi".into(),
                }
                .into())
            })
            .expect("decide");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sign+append  {n:>9} decisions  {secs:>8.2} s  {:>10.0} decisions/s  (durable commit each, synchronous=FULL)",
        n as f64 / secs
    );
}

/// Verifies the store at `path` as `tollgate verify` does; returns the entries per second.
fn verify_store(path: &std::path::Path, label: &str, build: String) -> f64 {
    let store = LocalStore::open(path).expect("reopen");
    let started = Instant::now();
    let report = verify_log(&store, &VerifyOptions::default()).expect("verify");
    let secs = started.elapsed().as_secs_f64();
    assert!(report.ok(), "{:?}", report.first_bad);
    let rate = report.entries as f64 / secs;
    println!(
        "{label:<12} {:>9} entries    {secs:>8.2} s  {rate:>10.0} entries/s    ({} signatures, {} policy version(s); {build})",
        report.entries,
        report.signatures,
        report.policies.len()
    );
    rate
}

fn verify(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, build_secs) = store_with_signed_log(dir.path(), n);
    verify_store(
        &path,
        "verify",
        format!("building the log took {build_secs:.1} s"),
    )
}

fn verify_with_policy_changes(n: usize, every: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, changes, build_secs) = store_with_policy_changes(dir.path(), n, every);
    verify_store(
        &path,
        "verify+pol",
        format!(
            "a policy change every {every} entries, {changes} in all; building took {build_secs:.1} s"
        ),
    )
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
    for n in env_list("TOLLGATE_BENCH_VERIFY", &[100_000, 1_000_000]) {
        let plain = verify(n);
        let changing = verify_with_policy_changes(n, every);
        println!(
            "             with policy changes: {:+.1} % of the rate without",
            (changing / plain - 1.0) * 100.0
        );
    }
    raw_ed25519(100_000);
}
