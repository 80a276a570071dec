//! Shared by the benchmarks: a store with the demo CRs, and signed logs built in bulk.
#![allow(dead_code)]

use chrono::Utc;
use rusqlite::{Connection, params};
use tollgate::audit::keys::Signer;
use tollgate::audit::log::{BODY_FORMAT, DecisionRecord, entry_hash, time_text};
use tollgate::domain::change_request::parse_document;
use tollgate::domain::policy_book::PolicyBook;
use tollgate::store::local::LocalStore;
use tollgate::store::{Store, Submission};

/// The seeded demo identity that signs the benchmarks' decisions.
pub fn devi() -> Signer {
    tollgate::demo::seeded_signer("devi").expect("seeded key")
}

/// A team server on 127.0.0.1 (any port) over the SQLite store at `store`, with nothing
/// optional switched on and no per-token rate limit: one token drives every client in a
/// benchmark, and the limit (50/s by default) would measure itself, not the server.
pub fn serve_options(
    store: std::path::PathBuf,
    policy: std::path::PathBuf,
    tokens: std::path::PathBuf,
) -> tollgate::server::ServeOptions {
    tollgate::server::ServeOptions {
        database: None,
        listen: "127.0.0.1:0".into(),
        store,
        policy,
        tokens,
        tls: None,
        access_log: false,
        limits: tollgate::server::limits::Limits {
            rate_per_sec: 1e9,
            burst: 1e9,
            ..Default::default()
        },
        server_key: None,
        kpi_guard: false,
        mlflow_webhook: None,
        subscribers: Vec::new(),
    }
}

/// A fresh store whose genesis is the seeded demo policy, with the demo CRs.
pub fn setup(dir: &std::path::Path) -> (LocalStore, PolicyBook) {
    let store = LocalStore::create(&dir.join("bench.db")).expect("store");
    let book =
        tollgate::demo::seeded_genesis(&store, &tollgate::demo::seeded_policy_text(), Utc::now())
            .expect("genesis");
    // Submitted by CI, as the demo does.
    store
        .submit(&tollgate::demo::submissions(), Utc::now())
        .expect("submit");
    (store, book)
}

/// The digest of CR-1044's current revision: the CR the benchmarks decide on.
pub fn cr_1044_digest(store: &dyn Store) -> String {
    store
        .get("CR-1044")
        .expect("get")
        .expect("CR-1044 is a demo CR")
        .current
        .digest
}

/// The checklist a decision without ticks on demo CR-1044 records (what `verify`
/// re-derives), computed once.
fn cr_1044_checklist() -> Vec<tollgate::audit::log::ItemSnapshot> {
    static ONCE: std::sync::OnceLock<Vec<tollgate::audit::log::ItemSnapshot>> =
        std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let cr = tollgate::demo::change_requests()
            .into_iter()
            .find(|c| c.id == "CR-1044")
            .expect("CR-1044 is a demo CR");
        let eval = tollgate::domain::status::evaluate(&cr, "", &[], &tollgate::demo::policy());
        tollgate::audit::record_rules::checklist_snapshot(&eval, &[])
    })
    .clone()
}

/// A request-changes decision by devi on CR-1044 (revision digest `digest`), signed under
/// the policy with digest `policy_digest`.
pub fn record(
    seq: u64,
    prev: Option<String>,
    digest: &str,
    signer: &Signer,
    policy_digest: &str,
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
        checklist: cr_1044_checklist(),
        principal: "devi".into(),
        key_fingerprint: signer.fingerprint().into(),
        policy_digest: policy_digest.into(),
        at: time_text(Utc::now()),
    }
}

/// Signs and appends devi's `i`-th benchmark decision on CR-1044 through `store` (any
/// store: local, or a team server through the remote store), as `tollgate` would.
pub fn decide_once(
    store: &dyn Store,
    digest: &str,
    signer: &Signer,
    policy_digest: &str,
    i: usize,
) {
    store
        .decide("CR-1044", &mut |ctx| {
            let r = record(
                ctx.head.seq + 1,
                ctx.head.hash.clone(),
                digest,
                signer,
                policy_digest,
                i,
            );
            let body = r.body();
            let signature = signer
                .sign(body.as_bytes())
                .map_err(|e| tollgate::store::DecideError::Signing(e.to_string()))?;
            Ok(tollgate::store::NewEntry {
                body,
                signature,
                principal: "devi".into(),
            }
            .into())
        })
        .expect("decide");
}

/// A bulk writer continuing the chain of a store file (one transaction, no rule checks:
/// benchmarks build logs of a million entries this way, then verify them as `tollgate
/// verify` does).
pub struct Bulk<'c> {
    tx: rusqlite::Transaction<'c>,
    pub seq: u64,
    pub prev: Option<String>,
}

impl<'c> Bulk<'c> {
    pub fn new(conn: &'c mut Connection) -> Bulk<'c> {
        let tx = conn.transaction().expect("tx");
        let (seq, prev): (u64, Option<String>) = tx
            .query_row("SELECT seq, hash FROM log_head WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("head");
        Bulk { tx, seq, prev }
    }

    /// Appends one entry (`body` must name the next seq and the current prev).
    pub fn append(
        &mut self,
        kind: &str,
        cr_id: Option<&str>,
        principal: Option<&str>,
        body: &str,
        signature: Option<&str>,
    ) {
        let hash = entry_hash(body);
        self.tx
            .prepare_cached("INSERT INTO log (seq, kind, cr_id, principal, body, hash, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            .expect("prepare")
            .execute(params![self.seq as i64 + 1, kind, cr_id, principal, body, hash, signature])
            .expect("insert");
        self.seq += 1;
        self.prev = Some(hash);
    }

    /// Appends `n` signed decisions by devi on CR-1044.
    pub fn decisions(&mut self, signer: &Signer, digest: &str, policy_digest: &str, n: usize) {
        for i in 0..n {
            let body = record(
                self.seq + 1,
                self.prev.clone(),
                digest,
                signer,
                policy_digest,
                i,
            )
            .body();
            let sig = signer.sign(body.as_bytes()).expect("sign");
            self.append("decision", Some("CR-1044"), Some("devi"), &body, Some(&sig));
        }
    }

    pub fn tx(&self) -> &rusqlite::Transaction<'c> {
        &self.tx
    }

    pub fn commit(self) {
        self.tx
            .execute(
                "UPDATE log_head SET seq = ?1, hash = ?2 WHERE id = 1",
                params![self.seq as i64, self.prev],
            )
            .expect("head");
        self.tx.commit().expect("commit");
    }
}

/// Appends `n` signed decisions in bulk (one transaction), continuing the chain.
pub fn build_log(
    path: &std::path::Path,
    signer: &Signer,
    digest: &str,
    policy_digest: &str,
    n: usize,
) {
    let mut conn = Connection::open(path).expect("open");
    let mut bulk = Bulk::new(&mut conn);
    bulk.decisions(signer, digest, policy_digest, n);
    bulk.commit();
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
                Submission::new(cr, document)
            })
            .collect();
        store.submit(&batch, now).expect("submit");
    }
    reviewable
}

/// A store at `dir/bench.db` whose genesis is the seeded demo policy, with `n` synthetic
/// CRs (closed again): its path and the seconds the CRs took to submit.
pub fn synthetic_store(
    dir: &std::path::Path,
    n: usize,
    now: chrono::DateTime<Utc>,
) -> (std::path::PathBuf, f64) {
    let path = dir.join("bench.db");
    let store = LocalStore::create(&path).expect("store");
    tollgate::demo::seeded_genesis(&store, &tollgate::demo::seeded_policy_text(), now)
        .expect("genesis");
    let built = std::time::Instant::now();
    submit_synthetic(&store, n, now);
    (path, built.elapsed().as_secs_f64())
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

/// Starts the peak resident memory count again from now (Linux: `clear_refs` 5), so a
/// peak read later is that of what came after, not of building the fixture.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident memory of this process so far, in MiB.
pub fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// A store with the demo CRs and `n` signed decisions on CR-1044 (built in bulk, closed
/// again): its path and the seconds the log took to build.
pub fn store_with_signed_log(dir: &std::path::Path, n: usize) -> (std::path::PathBuf, f64) {
    let (store, book) = setup(dir);
    let digest = cr_1044_digest(&store);
    let path = store.path().to_path_buf();
    drop(store);
    let built = std::time::Instant::now();
    build_log(&path, &devi(), &digest, &book.current().digest, n);
    (path, built.elapsed().as_secs_f64())
}

/// The policy history of a store, read from its log.
pub fn book_of(store: &dyn Store) -> PolicyBook {
    tollgate::audit::policy_log::extend_book(None, &store.policy_entries(0).expect("policy"))
        .expect("history")
        .expect("a genesis")
}

/// Like [`store_with_signed_log`], but every `every` entries the policy changes: a
/// `policy`-gate CR (proposed by marco) gets its two lead approvals (lena, sofia) and the
/// adoption sofia's approval makes due, exactly as `tollgate policy propose` and `approve`
/// record them; the decisions after it are signed under the new policy. Returns the path,
/// the number of policy changes and the seconds it took to build.
pub fn store_with_policy_changes(
    dir: &std::path::Path,
    n: usize,
    every: usize,
) -> (std::path::PathBuf, usize, f64) {
    use tollgate::audit::canonical::{digest as doc_digest, sha256_digest, to_canonical_string};
    use tollgate::audit::log::{EntryKind, submission_body};
    use tollgate::audit::policy_log::AdoptionRecord;
    use tollgate::domain::policy_change::{ProposalInput, proposal_document};
    let (store, mut book) = setup(dir);
    let digest = cr_1044_digest(&store);
    let path = store.path().to_path_buf();
    drop(store);
    let built = std::time::Instant::now();
    let (devi, lena, sofia) = (
        devi(),
        tollgate::demo::seeded_signer("lena").expect("lena"),
        tollgate::demo::seeded_signer("sofia").expect("sofia"),
    );
    let mut conn = Connection::open(&path).expect("open");
    let mut bulk = Bulk::new(&mut conn);
    let mut written = 0;
    let mut changes = 0;
    while written < n {
        let batch = every.min(n - written);
        bulk.decisions(&devi, &digest, &book.current().digest, batch);
        written += batch;
        if written >= n {
            break;
        }
        // A policy change: propose, two lead approvals, adoption.
        changes += 1;
        let now = Utc::now();
        let at = time_text(now);
        let id = format!("POL-{}", changes + 1);
        let text = tollgate::demo::seeded_policy_text()
            .replace("high = 24\n", &format!("high = {}\n", 24 + changes));
        let document = proposal_document(
            &ProposalInput {
                id: &id,
                proposer: "marco",
                text: &text,
                rationale: "benchmark: lengthen the high-risk observation window",
                changes: &[],
                at: now,
            },
            &book,
        );
        let cr_digest = doc_digest(&document);
        let tx = bulk.tx();
        tx.execute(
            "INSERT INTO change_requests (id, current_revision, first_submitted_at) VALUES (?1, 1, ?2)",
            params![id, at],
        )
        .expect("cr");
        tx.execute(
            "INSERT INTO revisions (cr_id, revision, digest, document, submitted_at) VALUES (?1, 1, ?2, ?3, ?4)",
            params![id, cr_digest, to_canonical_string(&document), at],
        )
        .expect("revision");
        let body = submission_body(
            EntryKind::CrSubmitted,
            bulk.seq + 1,
            bulk.prev.as_deref(),
            tollgate::audit::log::SubmissionFacts {
                cr_id: &id,
                revision: 1,
                digest: &cr_digest,
                at: now,
                submitter: Some("unknown"),
                signed_by: None,
            },
        );
        bulk.append("cr-submitted", Some(&id), None, &body, None);
        // The checklist `verify` re-derives for these approvals (no ticks).
        let typed = tollgate::domain::change_request::from_value(&document).expect("proposal");
        let checklist = tollgate::audit::record_rules::checklist_snapshot(
            &tollgate::domain::status::evaluate_in(&typed, &cr_digest, &[], &book),
            &[],
        );
        for (who, signer) in [("lena", &lena), ("sofia", &sofia)] {
            let record = DecisionRecord {
                kind: "decision".into(),
                format: BODY_FORMAT,
                seq: bulk.seq + 1,
                prev: bulk.prev.clone(),
                cr_id: id.clone(),
                cr_revision: 1,
                cr_digest: cr_digest.clone(),
                verdict: "approve".into(),
                role: "lead".into(),
                rationale: "benchmark policy change".into(),
                ticks: vec![],
                checklist: checklist.clone(),
                principal: who.into(),
                key_fingerprint: signer.fingerprint().into(),
                policy_digest: book.current().digest.clone(),
                at: at.clone(),
            };
            let body = record.body();
            let sig = signer.sign(body.as_bytes()).expect("sign");
            bulk.append("decision", Some(&id), Some(who), &body, Some(&sig));
        }
        let adoption = AdoptionRecord {
            kind: "policy-adopted".into(),
            format: BODY_FORMAT,
            seq: bulk.seq + 1,
            prev: bulk.prev.clone(),
            version: book.current().version + 1,
            policy_text: text.clone(),
            policy_digest: sha256_digest(text.as_bytes()),
            allowed_signers: tollgate::audit::keys::allowed_signers(
                &tollgate::domain::policy::parse_policy(&text)
                    .expect("policy")
                    .0,
            ),
            previous_digest: Some(book.current().digest.clone()),
            cr_id: Some(id.clone()),
            cr_revision: Some(1),
            cr_digest: Some(cr_digest.clone()),
            migration: false,
            principal: "sofia".into(),
            key_fingerprint: sofia.fingerprint().into(),
            at: at.clone(),
        };
        let body = adoption.body();
        let sig = sofia.sign(body.as_bytes()).expect("sign");
        bulk.append(
            "policy-adopted",
            Some(&id),
            Some("sofia"),
            &body,
            Some(&sig),
        );
        let entry = tollgate::store::LogEntry {
            seq: bulk.seq,
            kind: "policy-adopted".into(),
            body,
            hash: bulk.prev.clone().expect("hash"),
            signature: Some(sig),
            principal: Some("sofia".into()),
            cr_id: Some(id),
            received_at: None,
        };
        book = tollgate::audit::policy_log::extend_book(Some(book), &[entry])
            .expect("adoption reads")
            .expect("history");
    }
    bulk.commit();
    drop(conn);
    (path, changes, built.elapsed().as_secs_f64())
}
