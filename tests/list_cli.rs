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
    // Pretty-printed as before: one array, two-space indents, fields in their order.
    assert!(
        run.stdout
            .starts_with("[\n  {\n    \"id\": \"CR-1042\",\n    \"revision\": 1,")
    );
    assert!(run.stdout.ends_with("\n  }\n]\n"));

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
