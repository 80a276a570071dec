//! After approval, at scale (not a test): prints figures, asserts nothing about time.
//!
//!   cargo bench --bench rollout        # TOLLGATE_BENCH_CRS=100 canaries, TOLLGATE_BENCH_PASSES=20
//!
//! N low-risk CRs (each its own subject) are submitted by CI, approved, and put in canary
//! by an operator (the demo policy's deployment command runs for each); then the KPI
//! guard takes P passes over them ten minutes apart (one `cat` of a KPI file per reading,
//! signed, appended). Printed: the time a stage takes to record, one guard pass per
//! canary (first and last: KPI readings are read by their CR's index, so the log's growing
//! pile of them should not slow an append), what reading every rollout costs a queue load
//! and one CR's rollout with its readings a detail screen once N×P readings are in the
//! log, and a whole-log `verify` over them.

use std::time::Instant;
use tollgate::store::local::LocalStore;
use tollgate::store::{Store, Submission, SubmittedBy, VerifyOptions, verify_log};
use tollgate::workflow::rollout::{
    StageRequest, due_readings, guard_once, record_stage, rollouts, rollouts_with_readings,
};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}

fn main() {
    let (n, passes) = (
        env("TOLLGATE_BENCH_CRS", 100),
        env("TOLLGATE_BENCH_PASSES", 20),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let kpi = dir.path().join("kpi.txt");
    std::fs::write(&kpi, "retention=0.95\n").expect("kpi file");
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-25T08:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let store = LocalStore::create(&dir.path().join("bench.db")).expect("store");
    let text = format!(
        "{}\n[[kpi]]\ncommand = [\"cat\", \"{}\"]\ninterval_minutes = 10\nthresholds = [{{ metric = \"retention\", min = 0.9 }}]\n",
        tollgate::demo::seeded_policy_text(),
        kpi.display()
    );
    let book = tollgate::demo::seeded_genesis(&store, &text, t0).expect("genesis");
    let fixture = tollgate::demo::FIXTURES
        .iter()
        .find(|(name, _)| *name == "CR-1045.json")
        .expect("fixture")
        .1;
    let ci = tollgate::demo::seeded_signer("ci").expect("ci");
    let batch: Vec<Submission> = (0..n)
        .map(|i| {
            let mut doc: serde_json::Value = serde_json::from_str(fixture).expect("json");
            doc["id"] = format!("CR-B{i:05}").into();
            doc["subject"]["name"] = format!("svc-{i}").into();
            doc["checks"]
                .as_array_mut()
                .expect("checks")
                .push(serde_json::json!({"id": "latency", "status": "pass"}));
            let (cr, document) =
                tollgate::domain::change_request::parse_document(doc.to_string().as_bytes())
                    .expect("cr");
            Submission::new(cr, document).by(SubmittedBy::principal("ci", ci.clone()))
        })
        .collect();
    store.submit(&batch, t0).expect("submit");
    let devi = tollgate::demo::seeded_identity("devi").expect("devi");
    let marco = tollgate::demo::seeded_identity("marco").expect("marco");
    let guard = tollgate::demo::seeded_identity("guard").expect("guard");
    let ids: Vec<String> = (0..n).map(|i| format!("CR-B{i:05}")).collect();
    for id in &ids {
        tollgate::workflow::sign_decision(
            &store,
            &book,
            &devi,
            &tollgate::workflow::DecisionRequest {
                cr_id: id.clone(),
                verdict: tollgate::domain::decision::Verdict::Approve,
                role: "risk-reviewer".into(),
                rationale: "within 1 %".into(),
                ticks: ["privacy", "rollback"]
                    .map(|t| tollgate::domain::checklist::Tick {
                        item: t.into(),
                        note: None,
                    })
                    .to_vec(),
                expect_digest: None,
            },
            t0,
        )
        .expect("approval");
    }
    let started = Instant::now();
    for id in &ids {
        record_stage(
            &store,
            &book,
            &marco,
            &StageRequest {
                cr_id: id.clone(),
                stage: tollgate::domain::rollout::Stage::Canary,
                traffic: 10,
                note: String::new(),
            },
            t0,
            &mut |_| {},
        )
        .expect("canary");
    }
    let stage_ms = started.elapsed().as_secs_f64() * 1000.0 / n as f64;
    println!(
        "{n} canaries recorded: {stage_ms:.1} ms each (rules, the deployment command, signing, one transaction; the last with {n} rollouts in the log)"
    );
    let mut pass_ms = Vec::new();
    for p in 0..passes {
        let now = t0 + chrono::Duration::minutes(10 * (p as i64 + 1));
        let started = Instant::now();
        let due = due_readings(&store, &book, now).expect("due");
        assert_eq!(due.len(), n, "every canary is due each pass");
        for id in &due {
            guard_once(&store, &book, &guard, id, now, &mut |_| {}).expect("reading");
        }
        pass_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "guard passes over {n} canaries: first {:.0} ms ({:.1} ms a canary), last {:.0} ms ({:.1} ms a canary, {} readings in the log before it)",
        pass_ms[0],
        pass_ms[0] / n as f64,
        pass_ms[passes - 1],
        pass_ms[passes - 1] / n as f64,
        n * (passes - 1)
    );
    let started = Instant::now();
    let all = rollouts(&store).expect("rollouts");
    let readers_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "every rollout read back ({} CRs; stages, drills, rollbacks): {readers_ms:.1} ms — what each queue load pays",
        all.crs.len()
    );
    let started = Instant::now();
    let one = rollouts_with_readings(&store, &ids[0]).expect("one CR's");
    let one_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "one CR's rollout with its {} readings ({} in the log): {one_ms:.1} ms — what the detail screen and `show` pay",
        one.of(&ids[0]).map_or(0, |r| r.readings.len()),
        n * passes
    );
    let started = Instant::now();
    let report = verify_log(
        &store,
        &VerifyOptions {
            now: Some(t0 + chrono::Duration::days(1)),
            ..Default::default()
        },
    )
    .expect("verify");
    assert!(report.ok(), "{:?}", report.first_bad);
    println!(
        "verify: {} entries in {:.2} s",
        report.entries,
        started.elapsed().as_secs_f64()
    );
}
