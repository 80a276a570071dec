//! One contract every store passes: the embedded SQLite store, PostgreSQL (a throwaway
//! cluster), and the team server reached over HTTP on 127.0.0.1 (a real `tollgate serve`
//! on an ephemeral port) on each of them. The same test bodies run against all four.

mod common;

use chrono::{TimeZone, Utc};
use std::collections::HashMap;
use tollgate::domain::decision::Verdict;
use tollgate::domain::policy_book::PolicyBook;
use tollgate::identity::Identity;
use tollgate::store::local::LocalStore;
use tollgate::store::pg::PgStore;
use tollgate::store::remote::RemoteStore;
use tollgate::store::{DecideError, Store, VerifyOptions, verify_log};
use tollgate::workflow::{
    DecisionRequest, RollbackRequest, authorise_rollback, exceptions, sign_decision,
};

/// Which store a test body runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The embedded SQLite store.
    Sqlite,
    /// A PostgreSQL database on the test binary's throwaway cluster.
    Postgres,
    /// A team server on an SQLite store, over HTTP.
    RemoteSqlite,
    /// A team server on PostgreSQL, over HTTP.
    RemotePostgres,
}

/// A store under test, reachable as any principal.
struct Fixture {
    _dir: tempfile::TempDir,
    /// The policy history: the seeded demo policy, adopted as the genesis.
    book: PolicyBook,
    /// Where the store lives: the SQLite file, or the database URL.
    path: std::path::PathBuf,
    database: Option<String>,
    remote: Option<(String, HashMap<String, String>)>,
}

impl Fixture {
    /// A fixture whose genesis is the seeded demo policy with `extra` appended.
    fn with_policy(kind: Kind, extra: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let database =
            matches!(kind, Kind::Postgres | Kind::RemotePostgres).then(common::pg::database);
        let seeded: Box<dyn Store> = match &database {
            Some(url) => Box::new(PgStore::create(url).unwrap()),
            None => Box::new(LocalStore::create(&path).unwrap()),
        };
        let book = tollgate::demo::seeded_genesis(
            seeded.as_ref(),
            &format!("{}{extra}", tollgate::demo::seeded_policy_text()),
            Utc::now(),
        )
        .unwrap();
        let policy_path = dir.path().join("t.policy.toml");
        std::fs::write(&policy_path, &book.current().text).unwrap();
        let remote = matches!(kind, Kind::RemoteSqlite | Kind::RemotePostgres).then(|| {
            let tokens_path = dir.path().join("t.tokens.toml");
            let tokens: HashMap<String, String> = tollgate::demo::PRINCIPALS
                .iter()
                .map(|p| {
                    let token = match &database {
                        Some(url) => tollgate::server::tokens::add_to_database(
                            &PgStore::open(url).unwrap(),
                            p,
                            "test",
                            Utc::now(),
                        )
                        .unwrap(),
                        None => tollgate::server::tokens::add(&tokens_path, p, "test", Utc::now())
                            .unwrap(),
                    };
                    (p.to_string(), token.0)
                })
                .collect();
            let opts = tollgate::server::ServeOptions {
                database: database.clone(),
                listen: "127.0.0.1:0".into(),
                store: path.clone(),
                policy: policy_path.clone(),
                tokens: tokens_path,
                tls: None,
                access_log: false,
                limits: Default::default(),
                server_key: None,
                kpi_guard: false,
                mlflow_webhook: None,
                subscribers: Vec::new(),
            };
            let addr = tollgate::server::start_in_background(opts).unwrap();
            (format!("http://{addr}"), tokens)
        });
        Fixture {
            _dir: dir,
            book,
            path,
            database,
            remote,
        }
    }

    /// The store as `who` sees it.
    fn store(&self, who: &str) -> Box<dyn Store> {
        match (&self.remote, &self.database) {
            // Each caller gets its own connection, as separate processes would.
            (Some((url, tokens)), _) => Box::new(RemoteStore::connect(url, &tokens[who]).unwrap()),
            (None, Some(url)) => Box::new(PgStore::open(url).unwrap()),
            (None, None) => Box::new(LocalStore::open(&self.path).unwrap()),
        }
    }

    fn identity(&self, who: &str) -> Identity {
        tollgate::demo::seeded_identity(who).unwrap()
    }

    fn verified(&self, store: &dyn Store) -> bool {
        verify_log(store, &VerifyOptions::default()).unwrap().ok()
    }

    fn decide(
        &self,
        who: &str,
        cr: &str,
        verdict: Verdict,
        role: &str,
        ticks: &[&str],
        digest: Option<String>,
    ) -> Result<u64, DecideError> {
        let request = DecisionRequest {
            cr_id: cr.into(),
            verdict,
            role: role.into(),
            rationale: format!("{who}: evidence reviewed"),
            ticks: ticks
                .iter()
                .map(|t| tollgate::domain::checklist::Tick {
                    item: t.to_string(),
                    note: None,
                })
                .collect(),
            expect_digest: digest,
        };
        sign_decision(
            self.store(who).as_ref(),
            &self.book,
            &self.identity(who),
            &request,
            Utc::now(),
        )
        .map(|e| e.decision.seq)
    }
}

/// Runs a test body against every kind of store.
fn both(test: fn(&Fixture)) {
    both_with("", test)
}

/// [`both`] with `extra` appended to the genesis policy.
fn both_with(extra: &str, test: fn(&Fixture)) {
    for kind in [
        Kind::Sqlite,
        Kind::Postgres,
        Kind::RemoteSqlite,
        Kind::RemotePostgres,
    ] {
        eprintln!("store contract on {kind:?}");
        test(&Fixture::with_policy(kind, extra));
    }
}

fn submit_fixtures(f: &Fixture) {
    let outcomes = f
        .store("ci")
        .submit(&tollgate::demo::submissions(), Utc::now())
        .unwrap();
    assert_eq!(outcomes.len(), 5);
}

#[test]
fn submissions_revisions_and_reads() {
    both(|f| {
        let store = f.store("ci");
        submit_fixtures(f);
        let again = store
            .submit(&tollgate::demo::submissions(), Utc::now())
            .unwrap();
        assert!(
            again
                .iter()
                .all(|o| matches!(o, tollgate::store::SubmitOutcome::Unchanged { .. }))
        );
        let mut revised = tollgate::demo::submissions().remove(0);
        revised.document["summary"] = serde_json::json!("revised summary");
        let out = store.submit(&[revised], Utc::now()).unwrap();
        assert!(matches!(
            &out[0],
            tollgate::store::SubmitOutcome::Revised { revision: 2, .. }
        ));
        let list = store.list().unwrap();
        assert_eq!(list.len(), 5);
        let page = store.list_page(Some("CR-1043"), 2).unwrap();
        let ids: Vec<&str> = page.iter().map(|c| c.current.cr.id.as_str()).collect();
        assert_eq!(ids, ["CR-1044", "CR-1045"]);
        let cr = store.get("CR-1042").unwrap().unwrap();
        assert_eq!(cr.revision_count, 2);
        assert_eq!(cr.current.document["summary"], "revised summary");
        // Revision 1 is still the original document, revision 2 the new one.
        let original = tollgate::demo::submissions().remove(0);
        let first = store.revision("CR-1042", 1).unwrap().unwrap();
        assert_eq!(first.document, original.document);
        assert_ne!(first.digest, cr.current.digest);
        assert_eq!(
            store.revision("CR-1042", 2).unwrap().unwrap().digest,
            cr.current.digest
        );
        assert!(store.revision("CR-1042", 9).unwrap().is_none());
        assert!(store.get("CR-9999").unwrap().is_none());
        assert_eq!(store.revisions("CR-1042").unwrap().len(), 2);
        assert_eq!(store.submission_times().unwrap().len(), 5);
        assert_eq!(store.requesters().unwrap().len(), 6);
        assert_eq!(
            store.recorded_head().unwrap().seq,
            7,
            "the genesis, five submissions and one revision"
        );
        assert_eq!(store.log_entries(0, 3).unwrap().len(), 3);
        assert_eq!(store.log_entries(3, 100).unwrap()[0].seq, 4);
    });
}

#[test]
fn decisions_are_checked_signed_and_chained() {
    both(|f| {
        submit_fixtures(f);
        f.decide(
            "devi",
            "CR-1042",
            Verdict::Approve,
            "risk-reviewer",
            &["privacy", "rollback"],
            None,
        )
        .unwrap();
        f.decide(
            "kai",
            "CR-1042",
            Verdict::Approve,
            "data-reviewer",
            &[],
            None,
        )
        .unwrap();
        let store = f.store("sofia");
        assert_eq!(store.decisions("CR-1042").unwrap().len(), 2);
        assert_eq!(store.decision_entries("CR-1042").unwrap().len(), 2);
        assert_eq!(store.all_decisions().unwrap()["CR-1042"].len(), 2);
        let summaries = store.decision_summaries(0, 10).unwrap();
        assert_eq!(
            summaries
                .iter()
                .map(|s| s.principal.as_str())
                .collect::<Vec<_>>(),
            ["devi", "kai"]
        );
        assert!(f.verified(store.as_ref()));
    });
}

/// The queue's rows (as `list`, the TUI and the server read them), filtered by status
/// and risk: exactly the unfiltered rows that match, in small pages and large, from a
/// cold cache, a warm one, and after a decision moved a CR (the store's record of each
/// CR's last entry moves with the log, so the cached row is not used).
#[test]
fn the_queue_follows_the_log_and_its_filters_agree() {
    use tollgate::workflow::queue::SummaryPages;
    both(|f| {
        submit_fixtures(f);
        let store = f.store("sofia");
        // Small pages (stale rows' documents read by range) and large ones (a few read
        // one by one), and as the server reads them, keeping rows in memory across the
        // whole test (so rows kept before the decision are offered after it): the same
        // rows every way.
        let memory = tollgate::workflow::row_memory::RowMemory::default();
        let rows = |status: Option<&str>, risk: Option<&str>| -> Vec<(String, String, String)> {
            let read = |page: usize, remember: bool| -> Vec<(String, String, String)> {
                let pages = SummaryPages::new(store.as_ref(), &f.book, None)
                    .page_size(page)
                    .only(status, risk);
                let pages = if remember {
                    pages.remembering(&memory)
                } else {
                    pages
                };
                pages
                    .flat_map(|page| page.unwrap())
                    .map(|s| (s.cr_id, s.status, s.risk))
                    .collect()
            };
            let small = read(2, false);
            let what = format!("status {status:?} risk {risk:?}");
            assert_eq!(read(64, false), small, "{what}");
            assert_eq!(read(2, true), small, "{what}, remembered");
            assert_eq!(read(64, true), small, "{what}, remembered");
            small
        };
        let agree = |when: &str| {
            let all = rows(None, None);
            assert_eq!(all.len(), 5, "{when}: {all:?}");
            for status in ["pending", "approved", "rejected", "changes-requested"] {
                let want: Vec<_> = all.iter().filter(|r| r.1 == status).cloned().collect();
                assert_eq!(rows(Some(status), None), want, "{when}: status {status}");
            }
            for risk in ["low", "medium", "high"] {
                let want: Vec<_> = all.iter().filter(|r| r.2 == risk).cloned().collect();
                assert_eq!(rows(None, Some(risk)), want, "{when}: risk {risk}");
                let both: Vec<_> = want.iter().filter(|r| r.1 == "pending").cloned().collect();
                assert_eq!(
                    rows(Some("pending"), Some(risk)),
                    both,
                    "{when}: pending {risk}"
                );
            }
            all
        };
        // Filtered before anything is cached, then from the cache.
        assert!(rows(Some("changes-requested"), None).is_empty());
        let before = agree("cold");
        assert_eq!(agree("warm"), before);
        let was = before.iter().find(|r| r.0 == "CR-1042").unwrap();
        assert_eq!(was.1, "pending");
        f.decide(
            "devi",
            "CR-1042",
            Verdict::RequestChanges,
            "risk-reviewer",
            &[],
            None,
        )
        .unwrap();
        let after = agree("after a decision");
        let now = after.iter().find(|r| r.0 == "CR-1042").unwrap();
        assert_eq!(now.1, "changes-requested", "{after:?}");
        assert_eq!(
            rows(Some("changes-requested"), None),
            vec![now.clone()],
            "the decision moved CR-1042 out of the cached pending rows"
        );
    });
}

#[test]
fn the_rules_hold_whoever_holds_the_store() {
    both(|f| {
        submit_fixtures(f);
        let err = f
            .decide("priya", "CR-1042", Verdict::Reject, "requester", &[], None)
            .unwrap_err();
        assert!(err.to_string().contains("priya requested CR-1042"), "{err}");
        let err = f
            .decide(
                "marco",
                "CR-1046",
                Verdict::Approve,
                "ops-reviewer",
                &["rollback"],
                None,
            )
            .unwrap_err();
        assert!(err.to_string().contains("blocking"), "{err}");
        let err = f
            .decide(
                "devi",
                "CR-1042",
                Verdict::Approve,
                "risk-reviewer",
                &["privacy", "rollback"],
                Some("sha256:old".into()),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("changed since you reviewed it"),
            "{err}"
        );
        assert_eq!(
            f.store("sofia").recorded_head().unwrap().seq,
            6,
            "nothing appended after the genesis and the five submissions"
        );
    });
}

/// A KPI guard for churn-predictor whose check always reads a regression.
const REGRESSING_GUARD: &str = "\n[[kpi]]\nsubject = \"churn-predictor\"\ncommand = [\"printf\", \"retention=%s\\\\n\", \"0.5\"]\nthresholds = [{ metric = \"retention\", min = 0.9 }]\n";

#[test]
fn a_rollout_its_readings_a_guard_rollback_and_a_drill_hold_in_every_store() {
    use tollgate::workflow::rollout::{
        DrillRequest, StageRequest, guard_once, record_stage, rollouts, run_drill,
    };
    both_with(REGRESSING_GUARD, |f| {
        submit_fixtures(f);
        // CR-2045: a low-risk change to churn-predictor in staging (no freeze there).
        let mut doc = common::low_risk_cr("CR-2045", "jonas", "model");
        doc["subject"]["environment"] = "staging".into();
        let (cr, document) =
            tollgate::domain::change_request::parse_document(doc.to_string().as_bytes()).unwrap();
        let by = tollgate::store::SubmittedBy::principal(
            "ci",
            tollgate::demo::seeded_signer("ci").unwrap(),
        );
        f.store("ci")
            .submit(
                &[tollgate::store::Submission::new(cr, document).by(by)],
                Utc::now(),
            )
            .unwrap();
        f.decide(
            "devi",
            "CR-2045",
            Verdict::Approve,
            "risk-reviewer",
            &["privacy", "rollback"],
            None,
        )
        .unwrap();
        let stage = record_stage(
            f.store("marco").as_ref(),
            &f.book,
            &f.identity("marco"),
            &StageRequest {
                cr_id: "CR-2045".into(),
                stage: tollgate::domain::rollout::Stage::Canary,
                traffic: 10,
                note: String::new(),
            },
            Utc::now(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(stage.deploy.unwrap().1.exit_status, Some(0));
        let store = f.store("guard");
        let action = guard_once(
            store.as_ref(),
            &f.book,
            &f.identity("guard"),
            "CR-2045",
            Utc::now(),
            &mut |_| {},
        )
        .unwrap();
        let (auth, _) = action.rollback.expect("on the roster").unwrap();
        assert_eq!(store.kpi_readings("CR-2045").unwrap().len(), 1);
        // Readings are not among the operations entries.
        assert!(
            store
                .emergency_entries()
                .unwrap()
                .iter()
                .all(|e| e.kind != "kpi-reading")
        );
        let after = rollouts(store.as_ref()).unwrap();
        let incident = format!("AUTO-CR-2045-{}", action.reading.seq);
        assert_eq!(
            after
                .of("CR-2045")
                .unwrap()
                .rolled_back
                .as_ref()
                .unwrap()
                .incident,
            incident
        );
        assert_eq!(
            exceptions(store.as_ref()).unwrap().exceptions[0].incident,
            incident
        );
        // The same reading is acted on once, whoever holds the store.
        let again = RollbackRequest {
            subject: "churn-predictor".into(),
            environment: "staging".into(),
            from_version: "21".into(),
            to_version: "22".into(),
            incident: incident.clone(),
            reason: "again".into(),
        };
        let refused = authorise_rollback(
            store.as_ref(),
            &f.book,
            &f.identity("guard"),
            &again,
            Utc::now(),
        );
        assert!(refused.is_err(), "{auth:?}");
        // A drill in staging with the demo policy's command.
        run_drill(
            f.store("marco").as_ref(),
            &f.book,
            &f.identity("marco"),
            &DrillRequest {
                subject: "recommender".into(),
                environment: "staging".into(),
                from_version: "8".into(),
                to_version: "7".into(),
            },
            Utc::now(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(rollouts(store.as_ref()).unwrap().drills.len(), 1);
        assert!(f.verified(store.as_ref()));
    });
}

#[test]
fn emergencies_open_exceptions() {
    both(|f| {
        submit_fixtures(f);
        let request = RollbackRequest {
            subject: "recommender".into(),
            environment: "prod".into(),
            from_version: "8".into(),
            to_version: "7".into(),
            incident: "INC-2291".into(),
            reason: "conversion -10%".into(),
        };
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let store = f.store("lena");
        authorise_rollback(store.as_ref(), &f.book, &f.identity("lena"), &request, now).unwrap();
        let refused = authorise_rollback(
            f.store("devi").as_ref(),
            &f.book,
            &f.identity("devi"),
            &request,
            now,
        );
        assert!(refused.unwrap_err().to_string().contains("on-call"));
        let derived = exceptions(store.as_ref()).unwrap();
        assert_eq!(derived.exceptions.len(), 1);
        assert_eq!(derived.exceptions[0].incident, "INC-2291");
        let live = derived.live.get("recommender", "prod").unwrap();
        assert_eq!(
            (live.from_version.as_str(), live.to_version.as_str()),
            ("8", "7")
        );

        // The same rollback again is refused through every store: 7 is live.
        let again = RollbackRequest {
            incident: "INC-2292".into(),
            ..request.clone()
        };
        let refused = authorise_rollback(store.as_ref(), &f.book, &f.identity("lena"), &again, now);
        assert!(
            matches!(&refused, Err(DecideError::Refused(r)) if r.rule == "rollback-stale"),
            "{refused:?}"
        );

        // Subject changes: every submission after a position, with its subject, in order.
        let all = store.subject_changes(0).unwrap();
        assert_eq!(all.len(), 5);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        let rec = all.iter().find(|c| c.cr_id == "CR-1046").unwrap();
        assert_eq!(
            (rec.subject.as_str(), rec.environment.as_str()),
            ("recommender", "prod")
        );
        assert_eq!(
            store.subject_changes(rec.seq).unwrap().len(),
            all.iter().filter(|c| c.seq > rec.seq).count()
        );
        assert!(f.verified(store.as_ref()));
    });
}

#[test]
fn concurrent_deciders_through_one_store_make_one_valid_chain() {
    both(|f| {
        submit_fixtures(f);
        std::thread::scope(|scope| {
            for (who, cr, role) in [
                ("devi", "CR-1044", "risk-reviewer"),
                ("kai", "CR-1042", "data-reviewer"),
                ("marco", "CR-1046", "ops-reviewer"),
                ("sofia", "CR-1043", "approver"),
            ] {
                scope.spawn(move || {
                    for _ in 0..5 {
                        f.decide(who, cr, Verdict::RequestChanges, role, &[], None)
                            .unwrap();
                    }
                });
            }
        });
        let store = f.store("sofia");
        assert_eq!(store.recorded_head().unwrap().seq, 1 + 5 + 20);
        assert!(f.verified(store.as_ref()));
    });
}
