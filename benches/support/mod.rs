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

/// Submits `n` synthetic CRs made from the fixtures in turn (CR-100000 upwards, varied
/// titles, subjects and ages), in batches of 10,000. Returns the ids made from CR-1044,
/// a model-gate CR the seeded risk reviewer devi may send back.
pub fn submit_synthetic(store: &LocalStore, n: usize, now: chrono::DateTime<Utc>) -> Vec<String> {
    let templates: Vec<serde_json::Value> = tollgate::demo::FIXTURES
        .iter()
        .map(|(_, t)| serde_json::from_str(t).expect("fixture"))
        .collect();
    let names = [
        "fraud-detector",
        "spam-classifier",
        "churn-predictor",
        "recommender",
        "payments_v3",
        "ltv-model",
        "search-ranker",
    ];
    let mut reviewable = Vec::new();
    for chunk in 0..n.div_ceil(10_000) {
        let batch: Vec<Submission> = (chunk * 10_000..((chunk + 1) * 10_000).min(n))
            .map(|i| {
                let mut doc = templates[i % templates.len()].clone();
                let id = format!("CR-{:06}", 100_000 + i);
                if tollgate::demo::FIXTURES[i % templates.len()].0 == "CR-1044.json" {
                    reviewable.push(id.clone());
                }
                doc["id"] = serde_json::json!(id);
                doc["title"] = serde_json::json!(format!("{} change {i}", names[i % names.len()]));
                doc["subject"]["name"] = serde_json::json!(names[(i / 5) % names.len()]);
                doc["created_at"] = serde_json::json!(
                    (now - chrono::Duration::minutes((i % 20_000) as i64)).to_rfc3339()
                );
                let (cr, document) = parse_document(doc.to_string().as_bytes()).expect("valid");
                Submission { cr, document }
            })
            .collect();
        store.submit(&batch, now).expect("submit");
    }
    reviewable
}

/// `TOLLGATE_BENCH_CRS` when set, so a quick run can use fewer CRs than the default.
pub fn cr_count(default: usize) -> usize {
    std::env::var("TOLLGATE_BENCH_CRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fixed "now", so ages and deadlines are the same in every run.
pub fn fixed_now() -> chrono::DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
        .single()
        .expect("valid time")
}

/// A `/proc/self/status` memory field (`VmHWM:` peak, `VmRSS:` now) in MiB.
pub fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The peak resident memory of this process so far, in MiB.
pub fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// A store with the demo CRs and `n` signed decisions on CR-1044 (built in bulk, closed
/// again): its path, the policy that verifies it, and the seconds the log took to build.
pub fn store_with_signed_log(
    dir: &std::path::Path,
    signer: &Signer,
    n: usize,
) -> (std::path::PathBuf, Policy, f64) {
    let (store, policy) = setup(dir, signer);
    let digest = store
        .get("CR-1044")
        .expect("get")
        .expect("CR")
        .current
        .digest;
    let path = store.path().to_path_buf();
    drop(store);
    let built = std::time::Instant::now();
    build_log(&path, signer, &digest, n);
    (path, policy, built.elapsed().as_secs_f64())
}
