//! Several processes writing one store at once: every acknowledged submission is there,
//! and revisions of the same CR get distinct, consecutive numbers.

mod common;

use common::{Home, fixture_json};
use serde_json::json;

#[test]
fn eight_processes_submitting_at_once_lose_nothing() {
    let home = Home::demo();
    let mut files = Vec::new();
    for i in 0..8 {
        let mut own = fixture_json("CR-1045");
        own["id"] = json!(format!("CR-30{i:02}"));
        let mut shared = fixture_json("CR-1042");
        shared["summary"] = json!(format!("revision written by process {i}"));
        files.push((
            home.write_json(&format!("own-{i}.json"), &own),
            home.write_json(&format!("shared-{i}.json"), &shared),
        ));
    }
    let children: Vec<_> = files
        .iter()
        .map(|(own, shared)| {
            home.command(&["submit", "--json", own, shared])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn tollgate")
        })
        .collect();
    let mut revisions = Vec::new();
    for child in children {
        let run: common::Run = child.wait_with_output().unwrap().into();
        let outcomes = run.ok().json();
        assert_eq!(outcomes[0]["outcome"], "created");
        assert_eq!(outcomes[1]["outcome"], "revised");
        revisions.push(outcomes[1]["revision"].as_u64().unwrap());
    }
    revisions.sort();
    assert_eq!(
        revisions,
        (2..=9).collect::<Vec<u64>>(),
        "each writer got its own revision"
    );

    let stored = home.stored();
    assert_eq!(stored.len(), 5 + 8);
    assert!(stored.contains(&("CR-1042".to_string(), 9)));
    let shown = home.run(&["show", "CR-1042", "--json"]).ok().json();
    assert_eq!(shown["revisions"].as_array().unwrap().len(), 9);
}
