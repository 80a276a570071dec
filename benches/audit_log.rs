//! Benchmark of the audit log (not a test): prints figures, asserts nothing about time.
//!
//!   cargo bench --bench audit_log
//!   TOLLGATE_BENCH_SIGN=2000 TOLLGATE_BENCH_VERIFY=100000,1000000 cargo bench --bench audit_log
//!
//! 1. sign-and-append: N decisions through `Store::decide` (rule check, SSHSIG signing,
//!    one durable SQLite transaction each), as `tollgate approve` does;
//! 2. verify: logs of 100k and 1M signed entries (built in bulk), checked by
//!    `store::verify_log` exactly as `tollgate verify` does;
//! 3. the raw ed25519 verify rate (ed25519-dalek) on this machine in the same run, for scale.

use chrono::Utc;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
use rusqlite::{Connection, params};
use std::time::Instant;
use tollgate::audit::keys::Signer;
use tollgate::audit::log::{BODY_FORMAT, DecisionRecord, entry_hash, time_text};
use tollgate::domain::change_request::parse_document;
use tollgate::domain::policy::{Policy, parse_policy};
use tollgate::store::local::LocalStore;
use tollgate::store::{NewEntry, Store, Submission, verify_log};

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

/// A fresh store with the demo CRs and a policy in which devi signs with `signer`.
fn setup(dir: &std::path::Path, signer: &Signer) -> (LocalStore, Policy) {
    let store = LocalStore::create(&dir.join("bench.db")).expect("store");
    let text = tollgate::demo::POLICY_TOML.replacen(
        "id = \"devi\"\n",
        &format!("id = \"devi\"\nkeys = [\"{}\"]\n", signer.public_key_line()),
        1,
    );
    let (policy, _) = parse_policy(&text).expect("policy");
    let batch: Vec<Submission> = tollgate::demo::FIXTURES
        .iter()
        .map(|(_, t)| {
            let (cr, document) = parse_document(t.as_bytes()).expect("fixture");
            Submission { cr, document }
        })
        .collect();
    store.submit(&batch, Utc::now()).expect("submit");
    (store, policy)
}

fn record(
    seq: u64,
    prev: Option<String>,
    digest: &str,
    signer: &Signer,
    i: usize,
) -> DecisionRecord {
    DecisionRecord {
        kind: "decision".into(),
        format: BODY_FORMAT,
        seq,
        prev,
        cr_id: "CR-1044".into(),
        cr_revision: 1,
        cr_digest: digest.into(),
        verdict: "request-changes".into(),
        role: "risk-reviewer".into(),
        rationale: format!("benchmark decision {i}: per-language FPR report still missing"),
        ticks: vec![],
        checklist: vec![],
        principal: "devi".into(),
        key_fingerprint: signer.fingerprint().into(),
        policy_digest: "sha256:bench".into(),
        at: time_text(Utc::now()),
    }
}

fn sign_and_append(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = Signer::generate("devi").expect("key");
    let (store, _) = setup(dir.path(), &signer);
    let digest = store
        .get("CR-1044")
        .expect("get")
        .expect("CR")
        .current
        .digest;
    let started = Instant::now();
    for i in 0..n {
        store
            .decide("CR-1044", &mut |ctx| {
                let r = record(ctx.head.seq + 1, ctx.head.hash.clone(), &digest, &signer, i);
                let body = r.body();
                let signature = signer
                    .sign(body.as_bytes())
                    .map_err(|e| tollgate::store::DecideError::Signing(e.to_string()))?;
                Ok(NewEntry {
                    body,
                    signature,
                    principal: "devi".into(),
                })
            })
            .expect("decide");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sign+append  {n:>9} decisions  {secs:>8.2} s  {:>10.0} decisions/s  (durable commit each, synchronous=FULL)",
        n as f64 / secs
    );
}

/// Appends `n` signed decisions in bulk (one transaction), continuing the chain.
fn build_log(path: &std::path::Path, signer: &Signer, digest: &str, n: usize) {
    let mut conn = Connection::open(path).expect("open");
    let tx = conn.transaction().expect("tx");
    let (mut seq, mut prev): (u64, Option<String>) = tx
        .query_row("SELECT seq, hash FROM log_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("head");
    {
        let mut insert = tx
            .prepare("INSERT INTO log (seq, kind, cr_id, principal, body, hash, signature) VALUES (?1, 'decision', 'CR-1044', 'devi', ?2, ?3, ?4)")
            .expect("prepare");
        for i in 0..n {
            seq += 1;
            let body = record(seq, prev.clone(), digest, signer, i).body();
            let hash = entry_hash(&body);
            let sig = signer.sign(body.as_bytes()).expect("sign");
            insert
                .execute(params![seq as i64, body, hash, sig])
                .expect("insert");
            prev = Some(hash);
        }
    }
    tx.execute(
        "UPDATE log_head SET seq = ?1, hash = ?2 WHERE id = 1",
        params![seq as i64, prev],
    )
    .expect("head");
    tx.commit().expect("commit");
}

fn verify(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = Signer::generate("devi").expect("key");
    let (store, policy) = setup(dir.path(), &signer);
    let digest = store
        .get("CR-1044")
        .expect("get")
        .expect("CR")
        .current
        .digest;
    let path = store.path().to_path_buf();
    drop(store);
    let built = Instant::now();
    build_log(&path, &signer, &digest, n);
    let build_secs = built.elapsed().as_secs_f64();
    let store = LocalStore::open(&path).expect("reopen");
    let started = Instant::now();
    let report = verify_log(&store, &policy, None).expect("verify");
    let secs = started.elapsed().as_secs_f64();
    assert!(report.ok(), "{:?}", report.first_bad);
    println!(
        "verify       {:>9} entries    {secs:>8.2} s  {:>10.0} entries/s    ({} signatures; building the log took {build_secs:.1} s)",
        report.entries,
        report.entries as f64 / secs,
        report.signatures
    );
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
    for n in env_list("TOLLGATE_BENCH_VERIFY", &[100_000, 1_000_000]) {
        verify(n);
    }
    raw_ed25519(100_000);
}
