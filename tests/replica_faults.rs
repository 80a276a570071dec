//! Faults on a team of two replicas sharing one PostgreSQL database: 20 reviewers sign 10
//! decisions each, spread over both replicas, while one replica is killed with SIGKILL
//! and restarted and then the database restarts in immediate mode (a crash). Every
//! acknowledged decision must be in the log exactly once, the chain must verify, and
//! clients carry on without being restarted. A database that is down answers 503 with a
//! clear message, never a panic, and the same replica serves again once it is back.
//!
//! Its own test binary: it restarts the cluster the binary owns.

mod common;

use chrono::Utc;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tollgate::audit::keys::Signer;
use tollgate::domain::decision::Verdict;
use tollgate::identity::Identity;
use tollgate::store::pg::PgStore;
use tollgate::store::remote::RemoteStore;
use tollgate::store::{Store, VerifyOptions, verify_log};
use tollgate::workflow::{DecisionRequest, sign_decision};

const REVIEWERS: usize = 20;
const DECISIONS_EACH: usize = 10;

/// Waits until `done()` or panics after `limit` naming `what`.
fn wait_for(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn acknowledged_decisions_survive_a_killed_replica_and_a_database_crash() {
    let cluster = common::pg::cluster();
    let url = cluster.database();
    // The demo policy plus 20 reviewers, each with a key made now.
    let reviewers: Vec<(String, Signer)> = (0..REVIEWERS)
        .map(|i| {
            let id = format!("rev{i:02}");
            let key = Signer::generate(&format!("{id}@test")).unwrap();
            (id, key)
        })
        .collect();
    let mut text = tollgate::demo::seeded_policy_text();
    for (id, key) in &reviewers {
        text.push_str(&format!(
            "\n[[principals]]\nid = \"{id}\"\nname = \"Reviewer {id}\"\nroles = [\"ops-reviewer\"]\nkeys = [\"{}\"]\n",
            key.public_key_line()
        ));
    }
    let store = PgStore::create(&url).unwrap();
    let book = tollgate::demo::seeded_genesis(&store, &text, Utc::now()).unwrap();
    store
        .submit(&tollgate::demo::submissions(), Utc::now())
        .unwrap();
    let tokens: HashMap<String, String> = reviewers
        .iter()
        .map(|(id, _)| {
            let (token, _) =
                tollgate::server::tokens::add_to_database(&store, id, "test", Utc::now()).unwrap();
            (id.clone(), token)
        })
        .collect();

    let home = common::Home::new();
    let mut a = home.serve_database(&url, "127.0.0.1:0");
    let b = home.serve_database(&url, "127.0.0.1:0");
    let urls = [a.url.clone(), b.url.clone()];

    let acknowledged: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());
    let retried = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for (i, (id, key)) in reviewers.into_iter().enumerate() {
            let (url, token) = (&urls[i % 2], &tokens[&id]);
            let (book, acknowledged, retried, done) = (&book, &acknowledged, &retried, &done);
            let who = Identity {
                signer: key,
                principal: book.policy().principal(&id).unwrap().clone(),
                key_path: "generated".into(),
            };
            scope.spawn(move || {
                // One client for the whole run: it must recover by itself.
                let client = RemoteStore::connect(url, token).unwrap();
                for j in 0..DECISIONS_EACH {
                    // Spread over the five CRs, as a team's reviewers would be.
                    let request = DecisionRequest {
                        cr_id: format!("CR-104{}", 2 + (i + j) % 5),
                        verdict: Verdict::RequestChanges,
                        role: "ops-reviewer".into(),
                        rationale: format!("{id} decision {j}"),
                        ticks: vec![],
                        expect_digest: None,
                    };
                    let started = Instant::now();
                    loop {
                        // A failed attempt's outcome is unknown to the reviewer, who tries
                        // again (as `outbox --flush` does); the server's content dedup
                        // makes that safe.
                        match sign_decision(&client, book, &who, &request, Utc::now()) {
                            Ok(appended) => {
                                acknowledged
                                    .lock()
                                    .unwrap()
                                    .push((request.rationale.clone(), appended.decision.seq));
                                break;
                            }
                            Err(e) => {
                                assert!(
                                    started.elapsed() < Duration::from_secs(90),
                                    "{id} could not record decision {j}: {e}"
                                );
                                retried.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(200));
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }

        // A quarter in: replica A is killed outright and started again on its port.
        wait_for("50 decisions", Duration::from_secs(120), || {
            done.load(Ordering::SeqCst) >= 50
        });
        let listen = a.listen();
        a.child.kill().unwrap();
        a.child.wait().unwrap();
        a = home.serve_database(&url, &listen);
        // Past half: the database crashes and comes back (immediate shutdown, recovery).
        wait_for("120 decisions", Duration::from_secs(120), || {
            done.load(Ordering::SeqCst) >= 120
        });
        cluster.pg_ctl(&["restart", "-m", "immediate", "-w"]);
    });

    let acknowledged = acknowledged.into_inner().unwrap();
    assert_eq!(acknowledged.len(), REVIEWERS * DECISIONS_EACH);
    let store = PgStore::open(&url).unwrap();
    let entries: Vec<_> = (2..7)
        .flat_map(|n| store.decision_entries(&format!("CR-104{n}")).unwrap())
        .collect();
    let mut times: HashMap<String, Vec<u64>> = HashMap::new();
    for e in &entries {
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        times
            .entry(body["rationale"].as_str().unwrap().to_string())
            .or_default()
            .push(e.seq);
    }
    for (rationale, seq) in &acknowledged {
        assert_eq!(
            times.get(rationale),
            Some(&vec![*seq]),
            "{rationale:?} was acknowledged at entry {seq} but the log holds it at {:?}",
            times.get(rationale)
        );
    }
    assert_eq!(
        entries.len(),
        REVIEWERS * DECISIONS_EACH,
        "unacknowledged decisions in the log"
    );
    let report = verify_log(&store, &VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.first_bad);
    eprintln!(
        "{} decisions acknowledged, {} attempts retried after a fault",
        acknowledged.len(),
        retried.load(Ordering::SeqCst)
    );

    // The database down: a clear 503 from a replica that stays up, then service again.
    let token = &tokens["rev00"];
    let queue = |url: &str| {
        reqwest::blocking::Client::new()
            .get(format!("{url}/v1/queue"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(30))
            .send()
            .unwrap()
    };
    // A TUI watching replica B while the database is down and back.
    let mut watching = RemoteStore::connect(&b.url, token)
        .unwrap()
        .head_listener()
        .unwrap()
        .expect("the replica streams its head");
    cluster.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    let down = queue(&b.url);
    assert_eq!(down.status(), 503);
    let body: serde_json::Value = down.json().unwrap();
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("unavailable") && message.contains("PostgreSQL is running"),
        "{body}"
    );
    cluster.pg_ctl(&["start", "-w"]);
    assert_eq!(queue(&b.url).status(), 200);
    assert_eq!(queue(&a.url).status(), 200);

    // The replica listens to the database again: a CR stored straight into it (as a CLI
    // on the database would) reaches B's watcher, whose stream never closed.
    let mut doc = common::fixture_json("CR-1045");
    doc["id"] = "CR-3001".into();
    let (cr, document) =
        tollgate::domain::change_request::parse_document(doc.to_string().as_bytes()).unwrap();
    wait_for(
        "the CR stored after the restart",
        Duration::from_secs(30),
        || {
            store
                .submit(
                    &[tollgate::store::Submission::new(
                        cr.clone(),
                        document.clone(),
                    )],
                    Utc::now(),
                )
                .is_ok()
        },
    );
    let stored = store.recorded_head().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match watching.wait(Duration::from_secs(1)).unwrap() {
            Some(h) if h == stored => break,
            _ => assert!(Instant::now() < deadline, "the watcher never heard of it"),
        }
    }
}
