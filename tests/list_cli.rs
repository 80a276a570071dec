//! `tollgate list` reads the store a page at a time and streams `--json`: across page
//! boundaries nothing is lost or repeated, filters apply to every page, and the JSON is
//! the same document a whole-list encoder would write.

mod common;

use common::{Home, fixture_json};
use serde_json::Value;
use tollgate::domain::change_request::parse_document;
use tollgate::store::local::LocalStore;
use tollgate::store::{Store, Submission};

/// The demo store plus `n` more CRs made from the fixtures (ids CR-500000 upwards).
fn home_with(n: usize) -> Home {
    let home = Home::demo();
    let store = LocalStore::open(&home.store()).unwrap();
    let templates: Vec<Value> = ["CR-1042", "CR-1043", "CR-1044", "CR-1045", "CR-1046"]
        .iter()
        .map(|id| fixture_json(id))
        .collect();
    let batch: Vec<Submission> = (0..n)
        .map(|i| {
            let mut doc = templates[i % templates.len()].clone();
            doc["id"] = Value::from(format!("CR-{}", 500_000 + i));
            let (cr, document) = parse_document(doc.to_string().as_bytes()).unwrap();
            Submission::new(cr, document)
        })
        .collect();
    store.submit(&batch, chrono::Utc::now()).unwrap();
    home
}

#[test]
fn list_streams_every_page_once_and_filters_each() {
    // More than one page (2,000 per page) and not a multiple of it.
    let home = home_with(4_100);
    let run = home.run(&["list", "--json"]).ok();
    let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rows.len(), 4_105, "the demo's five and the 4,100 added");
    let mut ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let listed = ids.clone();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4_105, "no CR twice");
    assert_eq!(listed, ids, "in id order, as before");
    // One array, one row per line (fields in their documented order), so it streams.
    assert!(
        run.stdout
            .starts_with("[\n  {\"id\":\"CR-1042\",\"revision\":1,")
    );
    assert!(run.stdout.ends_with("}\n]\n"));
    assert_eq!(run.stdout.lines().count(), 4_105 + 2);

    // Filters apply on every page: every fifth CR is CR-1043's data gate.
    let data = home.run(&["list", "--gate", "data", "--json"]).ok().json();
    let data = data.as_array().unwrap();
    assert_eq!(data.len(), 1 + 4_100 / 5);
    assert!(data.iter().all(|r| r["gate"] == "data"));
    let blocked = home
        .run(&["list", "--status", "pending", "--gate", "deployment"])
        .ok();
    let table_rows = blocked
        .stdout
        .lines()
        .filter(|l| l.starts_with("CR-"))
        .count();
    assert_eq!(table_rows, 1 + 4_100 / 5, "{}", blocked.stdout);

    // Nothing matching: an empty JSON array, and a sentence for people.
    let none = home.run(&["list", "--risk", "critical", "--json"]);
    let none = if none.code == 0 {
        none.stdout
    } else {
        String::new()
    };
    if !none.is_empty() {
        assert_eq!(none, "[]\n");
    }
}

#[test]
fn a_closed_pipe_ends_list_quietly() {
    let home = home_with(2_500);
    let out = home
        .command(&["list", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            drop(child.stdout.take());
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The row of `id` in `list --json`.
fn row(home: &Home, id: &str) -> Value {
    let rows = home.run(&["list", "--json"]).ok().json();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .unwrap()
}

fn cached(home: &Home) -> i64 {
    let c = rusqlite::Connection::open(home.store()).unwrap();
    c.query_row("SELECT COUNT(*) FROM cr_summaries", [], |r| r.get(0))
        .unwrap()
}

/// The queue's cached summaries are keyed by what they were computed from: a decision,
/// CI evidence, a new revision and an adopted policy each make `list` show the CR as it
/// now stands, never the cached row.
#[test]
fn cached_queue_rows_follow_decisions_evidence_revisions_and_policy() {
    let home = Home::demo();
    let before = row(&home, "CR-1045");
    assert_eq!(cached(&home), 5, "a listing caches every row");
    assert_eq!(row(&home, "CR-1045"), before, "the cached row is the row");

    // A decision.
    home.decide(
        "kai",
        "request-changes",
        "CR-1045",
        &["--rationale", "add the latency check"],
    )
    .ok();
    let after = row(&home, "CR-1045");
    assert_eq!(after["status"], "changes-requested", "{after}");

    // CI evidence on another CR.
    let blocked = row(&home, "CR-1043");
    assert_eq!(blocked["checks"]["fail"], 1);
    home.run(&[
        "--as",
        "ci",
        "evidence",
        "CR-1043",
        "backward_compatibility",
        "pass",
    ])
    .ok();
    let passed = row(&home, "CR-1043");
    assert_eq!(passed["checks"]["fail"], 0, "{passed}");

    // A new revision.
    let mut revised = fixture_json("CR-1044");
    revised["title"] = Value::from("spam-classifier v5, threshold 0.75");
    let file = home.write_json("revised.json", &revised);
    home.run(&["--as", "ci", "submit", &file]).ok();
    let r = row(&home, "CR-1044");
    assert_eq!(
        (r["revision"].as_u64(), r["title"].as_str()),
        (Some(2), Some("spam-classifier v5, threshold 0.75"))
    );

    // An adopted policy: every row is computed again under it.
    let text = home.policy_text().replace(
        "[observation_hours]\nlow = 1",
        "[observation_hours]\nlow = 2",
    );
    home.adopt_policy(&text, "longer observation for low risk");
    home.run(&["list"]).ok();
    let c = rusqlite::Connection::open(home.store()).unwrap();
    let bases: Vec<String> = c
        .prepare("SELECT basis FROM cr_summaries")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let policy_seq = home.run(&["policy", "show", "--json"]).ok().json()["seq"].clone();
    assert!(
        bases
            .iter()
            .all(|b| b.contains(&format!("policy {policy_seq}"))),
        "{bases:?} (policy entry {policy_seq})"
    );
}

/// Trust nothing the store says without the log: `list` uses a cached row while its key
/// holds, so a row forged in the database (here CR-1045 made to look approved) would be
/// shown — `verify` re-derives every cached row, names the forged one, drops it, and the
/// next listing shows what the log says.
#[test]
fn verify_names_a_forged_cached_queue_row_and_drops_it() {
    let home = Home::demo();
    home.run(&["list"]).ok();
    let c = rusqlite::Connection::open(home.store()).unwrap();
    let forged = c
        .execute(
            "UPDATE cr_summaries SET status = 'approved',
                row = replace(row, '\"status\":\"pending\"', '\"status\":\"approved\"')
             WHERE cr_id = 'CR-1045'",
            [],
        )
        .unwrap();
    assert_eq!(forged, 1);
    assert_eq!(
        row(&home, "CR-1045")["status"],
        "approved",
        "the forgery shows"
    );
    common::assert_refusal(
        &home.run(&["verify"]),
        &[
            "verification FAILED",
            "the cached queue row of \"CR-1045\" did not match what the log says",
        ],
    );
    assert_eq!(row(&home, "CR-1045")["status"], "pending");
    home.run(&["verify"]).ok();
}

/// Each CR's recorded last log entry keys its cached row: set back by hand (here to
/// before a decision), it makes `list` show the row from before the decision. `verify`
/// names the CR, sets the position from the log again, and the next listing shows what
/// the log says.
#[test]
fn verify_names_a_forged_last_log_entry_and_sets_it_from_the_log() {
    let home = Home::demo();
    home.run(&["list"]).ok();
    let c = rusqlite::Connection::open(home.store()).unwrap();
    let before: i64 = c
        .query_row(
            "SELECT last_seq FROM change_requests WHERE id = 'CR-1045'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    home.decide(
        "kai",
        "request-changes",
        "CR-1045",
        &["--rationale", "add the latency check"],
    )
    .ok();
    let forged = c
        .execute(
            "UPDATE change_requests SET last_seq = ?1 WHERE id = 'CR-1045'",
            [before],
        )
        .unwrap();
    assert_eq!(forged, 1);
    assert_eq!(
        row(&home, "CR-1045")["status"],
        "pending",
        "the forgery shows the row from before the decision"
    );
    common::assert_refusal(
        &home.run(&["verify"]),
        &[
            "verification FAILED",
            "the recorded last log entry of \"CR-1045\" did not match the log",
        ],
    );
    assert_eq!(row(&home, "CR-1045")["status"], "changes-requested");
    home.run(&["verify"]).ok();
}
