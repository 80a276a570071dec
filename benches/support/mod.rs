//! Shared by the benchmarks: a store with the demo CRs, and signed logs built in bulk.
#![allow(dead_code)]

use chrono::Utc;
use rusqlite::{Connection, params};
use tollgate::audit::keys::Signer;
use tollgate::audit::log::{BODY_FORMAT, DecisionRecord, entry_hash, time_text};
use tollgate::domain::change_request::parse_document;
use tollgate::domain::policy::{Policy, parse_policy};
use tollgate::store::local::LocalStore;
use tollgate::store::{Store, Submission};

/// A fresh store with the demo CRs and a policy in which devi signs with `signer`.
pub fn setup(dir: &std::path::Path, signer: &Signer) -> (LocalStore, Policy) {
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

pub fn record(
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

/// Appends `n` signed decisions in bulk (one transaction), continuing the chain.
pub fn build_log(path: &std::path::Path, signer: &Signer, digest: &str, n: usize) {
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
