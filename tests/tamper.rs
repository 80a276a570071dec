//! Tampering with the stored log: every stored byte of a decision, and every way of
//! rearranging entries, makes `verify` fail and name the entry concerned.

mod common;

use common::{Home, assert_refusal};
use rusqlite::Connection;
use tollgate::audit::log::{LogEntry, Verifier};
use tollgate::audit::verify::{Lookups, Start};
use tollgate::store::Store;
use tollgate::store::local::LocalStore;

/// A demo store with three decisions after the genesis and the five submissions
/// (entries 7, 8, 9).
fn home_with_decisions() -> Home {
    let home = Home::demo();
    home.decide(
        "devi",
        "request-changes",
        "CR-1044",
        &["--rationale", "fairness report pending"],
    )
    .ok();
    home.decide(
        "devi",
        "approve",
        "CR-1042",
        &[
            "--tick",
            "privacy=no PII in features",
            "--tick",
            "rollback",
            "--rationale",
            "shifts explained",
        ],
    )
    .ok();
    home.decide(
        "marco",
        "reject",
        "CR-1046",
        &["--rationale", "p99 over the SLO"],
    )
    .ok();
    assert_eq!(home.verified_entries(), 9);
    home
}

/// Opens the store's SQLite file with the immutability triggers removed, as an attacker
/// with file access would.
fn raw(home: &Home) -> Connection {
    let c = Connection::open(home.store()).unwrap();
    c.execute_batch(
        "DROP TRIGGER IF EXISTS log_is_append_only; DROP TRIGGER IF EXISTS log_is_never_trimmed;",
    )
    .unwrap();
    c
}

fn verify_fails_at(home: &Home, seq: u64, problem: &str) {
    let run = home.run(&["verify"]);
    assert_refusal(
        &run,
        &[&format!("FAILED at entry {seq}"), &format!(": {problem}:")],
    );
    let json = home.run(&["verify", "--json"]);
    assert_eq!(json.code, 1);
    let v = json.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_bad"]["seq"], seq);
    assert_eq!(v["first_bad"]["problem"], problem);
}

#[test]
fn every_byte_of_every_stored_field_of_a_decision_is_protected() {
    let home = home_with_decisions();
    let store = LocalStore::open(&home.store()).unwrap();
    let requesters = store.requesters().unwrap();
    let lookup = |cr: &str, d: &str| requesters.get(&(cr.to_string(), d.to_string())).cloned();
    // Every stored revision, read once: the walk below runs once per mutated byte.
    let stored: std::collections::HashMap<
        (String, u32),
        (String, tollgate::domain::change_request::ChangeRequest),
    > = store
        .list()
        .unwrap()
        .into_iter()
        .map(|c| {
            (
                (c.current.cr.id.clone(), c.current.revision),
                (c.current.digest.clone(), c.current.cr),
            )
        })
        .collect();
    let revision = |cr: &str, rev: u32| stored.get(&(cr.to_string(), rev)).cloned();
    let entries = store.log_entries(0, 100).unwrap();
    let head = store.recorded_head().unwrap();
    let target = 8; // devi's approval, with ticks and notes

    let first_bad = |mutated: &LogEntry| -> Option<u64> {
        let mut v = Verifier::new(
            Start {
                before_genesis: None,
                expect_genesis: None,
                expect_head: None,
                now: chrono::Utc::now(),
            },
            Lookups {
                requester_of: &lookup,
                revision: &revision,
            },
        );
        for e in &entries {
            v.push(if e.seq == target { mutated } else { e });
        }
        v.finish(&head).first_bad.map(|b| b.seq)
    };
    let original = entries[target as usize - 1].clone();
    assert_eq!(first_bad(&original), None, "the untouched log verifies");

    fn flip(s: &str, i: usize) -> String {
        let mut bytes = s.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }
    let mut checked = 0;
    type Field = (
        &'static str,
        fn(&LogEntry) -> String,
        fn(&mut LogEntry, String),
    );
    let fields: [Field; 5] = [
        ("body", |e| e.body.clone(), |e, v| e.body = v),
        ("hash", |e| e.hash.clone(), |e, v| e.hash = v),
        (
            "signature",
            |e| e.signature.clone().unwrap(),
            |e, v| e.signature = Some(v),
        ),
        (
            "principal",
            |e| e.principal.clone().unwrap(),
            |e, v| e.principal = Some(v),
        ),
        (
            "cr_id",
            |e| e.cr_id.clone().unwrap(),
            |e, v| e.cr_id = Some(v),
        ),
    ];
    for (name, get, set) in fields {
        let value = get(&original);
        assert!(value.is_ascii());
        for i in 0..value.len() {
            let mut m = original.clone();
            set(&mut m, flip(&value, i));
            assert_eq!(
                first_bad(&m),
                Some(target),
                "{name} byte {i} changed and was not caught"
            );
            checked += 1;
        }
    }
    let mut m = original.clone();
    m.kind = "cr-revised".into();
    assert_eq!(first_bad(&m), Some(target));
    assert!(checked > 1000, "checked {checked} bytes");
}

#[test]
fn an_altered_body_is_named() {
    let home = home_with_decisions();
    raw(&home)
        .execute("UPDATE log SET body = replace(body, 'shifts explained', 'shifts explaine.') WHERE seq = 8", [])
        .unwrap();
    verify_fails_at(&home, 8, "altered");
}

#[test]
fn a_rewritten_decision_with_recomputed_hashes_fails_its_signature() {
    let home = home_with_decisions();
    let c = raw(&home);
    // Turn marco's reject into an approval and re-hash so every link still holds.
    let body: String = c
        .query_row("SELECT body FROM log WHERE seq = 9", [], |r| r.get(0))
        .unwrap();
    let forged = body.replace("\"verdict\":\"reject\"", "\"verdict\":\"approve\"");
    let hash = tollgate::audit::log::entry_hash(&forged);
    c.execute(
        "UPDATE log SET body = ?1, hash = ?2 WHERE seq = 9",
        rusqlite::params![forged, hash],
    )
    .unwrap();
    c.execute("UPDATE log_head SET hash = ?1", [hash]).unwrap();
    verify_fails_at(&home, 9, "bad-signature");
}

#[test]
fn a_signature_moved_from_another_entry_is_caught() {
    let home = home_with_decisions();
    raw(&home)
        .execute(
            "UPDATE log SET signature = (SELECT signature FROM log WHERE seq = 7) WHERE seq = 8",
            [],
        )
        .unwrap();
    verify_fails_at(&home, 8, "bad-signature");
}

/// Rewrites entry `seq`'s `prev` link to `link` and re-hashes it (the stored hash and the
/// next entry are left as an attacker who cannot sign would have to leave them).
fn relink(home: &Home, seq: u64, link: &str) {
    let c = raw(home);
    let body: String = c
        .query_row("SELECT body FROM log WHERE seq = ?1", [seq], |r| r.get(0))
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["prev"] = serde_json::json!(link);
    let body = tollgate::audit::canonical::to_canonical_string(&v);
    let hash = tollgate::audit::log::entry_hash(&body);
    c.execute(
        "UPDATE log SET body = ?1, hash = ?2 WHERE seq = ?3",
        rusqlite::params![body, hash, seq],
    )
    .unwrap();
}

#[test]
fn a_link_to_the_wrong_entry_is_named_a_broken_link() {
    // A link to a hash no entry has.
    let home = home_with_decisions();
    relink(&home, 8, &tollgate::audit::log::entry_hash("{}"));
    verify_fails_at(&home, 8, "broken-link");
    let run = home.run(&["verify"]);
    assert!(
        run.stdout.contains("but the previous entry's hash is")
            || run.stderr.contains("but the previous entry's hash is"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    // A link to an earlier entry than the one before it: named as reordering.
    let home = home_with_decisions();
    let first: String = raw(&home)
        .query_row("SELECT hash FROM log WHERE seq = 1", [], |r| r.get(0))
        .unwrap();
    relink(&home, 8, &first);
    verify_fails_at(&home, 8, "broken-link");
    let run = home.run(&["verify"]);
    assert!(
        format!("{}{}", run.stdout, run.stderr)
            .contains("links to entry 1 instead of entry 7: entries were reordered"),
        "{}{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn reordered_entries_are_caught() {
    let home = home_with_decisions();
    raw(&home)
        .execute_batch("UPDATE log SET seq = 100 WHERE seq = 7; UPDATE log SET seq = 7 WHERE seq = 8; UPDATE log SET seq = 8 WHERE seq = 100;")
        .unwrap();
    verify_fails_at(&home, 7, "reordered");
}

#[test]
fn a_deleted_entry_is_named() {
    let home = home_with_decisions();
    raw(&home)
        .execute("DELETE FROM log WHERE seq = 7", [])
        .unwrap();
    verify_fails_at(&home, 7, "missing");
}

#[test]
fn a_cut_tail_is_caught_against_the_recorded_head_and_an_auditors_noted_head() {
    let home = home_with_decisions();
    let noted: String = raw(&home)
        .query_row("SELECT hash FROM log WHERE seq = 9", [], |r| r.get(0))
        .unwrap();
    raw(&home)
        .execute("DELETE FROM log WHERE seq = 9", [])
        .unwrap();
    verify_fails_at(&home, 9, "truncated");
    // An attacker who also rewinds the recorded head leaves a chain that verifies; the
    // CR's recorded last entry still points at the cut one, which verify names (once:
    // it is set from the log again)...
    raw(&home)
        .execute(
            "UPDATE log_head SET seq = 8, hash = (SELECT hash FROM log WHERE seq = 8)",
            [],
        )
        .unwrap();
    assert_refusal(
        &home.run(&["verify"]),
        &[
            "the recorded last log entry of",
            "entries were cut from the log",
        ],
    );
    home.verified_entries();
    // ...and a noted head catches it for good.
    let run = home.run(&["verify", "--expect-head", &noted]);
    assert_refusal(
        &run,
        &[
            "truncated",
            &format!("the expected head {noted} is not in the log"),
        ],
    );
}

#[test]
fn editing_the_policy_file_neither_breaks_nor_forges_the_log() {
    let home = home_with_decisions();
    // Removing devi's key from the file: her earlier signatures still verify, because
    // the policy in force is the log's, not the file's.
    let path = home.path("tollgate.policy.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("id = \"devi\"\nkeys = [").unwrap();
    let line_start = start + "id = \"devi\"\n".len();
    let line_end = line_start + text[line_start..].find('\n').unwrap();
    std::fs::write(
        &path,
        format!("{}{}", &text[..line_start], &text[line_end + 1..]),
    )
    .unwrap();
    assert_eq!(home.verified_entries(), 9);
    // An entry signed with a key the policy in force does not list, forced into the store
    // in devi's name: named as signed by an unknown key.
    use tollgate::audit::keys::Signer;
    use tollgate::audit::log::{BODY_FORMAT, DecisionRecord, time_text};
    use tollgate::store::NewEntry;
    let store = LocalStore::open(&home.store()).unwrap();
    let mallory = Signer::generate("mallory").unwrap();
    let in_force = policy_digest(&store);
    store
        .decide("CR-1042", &mut |ctx| {
            let record = DecisionRecord {
                kind: "decision".into(),
                format: BODY_FORMAT,
                seq: ctx.head.seq + 1,
                prev: ctx.head.hash.clone(),
                cr_id: "CR-1042".into(),
                cr_revision: ctx.current.revision,
                cr_digest: ctx.current.digest.clone(),
                verdict: "approve".into(),
                role: "risk-reviewer".into(),
                rationale: "looks fine".into(),
                ticks: vec![],
                checklist: vec![],
                principal: "devi".into(),
                key_fingerprint: mallory.fingerprint().into(),
                policy_digest: in_force.clone(),
                at: time_text(chrono::Utc::now()),
            };
            let body = record.body();
            Ok(NewEntry {
                signature: mallory.sign(body.as_bytes()).unwrap(),
                body,
                principal: "devi".into(),
            }
            .into())
        })
        .unwrap();
    verify_fails_at(&home, 10, "unknown-key");
}

#[test]
fn the_store_itself_refuses_to_rewrite_or_trim_the_log() {
    let home = home_with_decisions();
    let c = Connection::open(home.store()).unwrap();
    let err = c
        .execute("UPDATE log SET body = 'x' WHERE seq = 6", [])
        .unwrap_err();
    assert!(err.to_string().contains("log entries are immutable"));
    let err = c.execute("DELETE FROM log WHERE seq = 8", []).unwrap_err();
    assert!(err.to_string().contains("never deleted"));
    home.verified_entries();
}

/// A client that skips the rules (but signs correctly) is caught by `verify`.
fn append_unchecked(home: &Home, who: &str, cr_id: &str, role: &str) {
    use tollgate::audit::keys::Signer;
    use tollgate::audit::log::{BODY_FORMAT, DecisionRecord, time_text};
    use tollgate::store::NewEntry;
    let store = LocalStore::open(&home.store()).unwrap();
    let key = home.path(&format!("tollgate.demo-keys/{who}"));
    let signer = Signer::load(&key, || Err("no passphrase".into())).unwrap();
    let in_force = policy_digest(&store);
    store
        .decide(cr_id, &mut |ctx| {
            let record = DecisionRecord {
                kind: "decision".into(),
                format: BODY_FORMAT,
                seq: ctx.head.seq + 1,
                prev: ctx.head.hash.clone(),
                cr_id: cr_id.into(),
                cr_revision: ctx.current.revision,
                cr_digest: ctx.current.digest.clone(),
                verdict: "approve".into(),
                role: role.into(),
                rationale: "self-service".into(),
                ticks: vec![],
                checklist: vec![],
                principal: who.into(),
                key_fingerprint: signer.fingerprint().into(),
                policy_digest: in_force.clone(),
                at: time_text(chrono::Utc::now()),
            };
            let body = record.body();
            Ok(NewEntry {
                signature: signer.sign(body.as_bytes()).unwrap(),
                body,
                principal: who.into(),
            }
            .into())
        })
        .unwrap();
}

/// The digest of the policy in force in `store`'s log.
fn policy_digest(store: &LocalStore) -> String {
    let entries = store.policy_entries(0).unwrap();
    tollgate::audit::policy_log::version_from_entry(entries.last().unwrap())
        .unwrap()
        .digest
}

#[test]
fn verify_reapplies_the_policy_to_correctly_signed_decisions() {
    let home = Home::demo();
    append_unchecked(&home, "priya", "CR-1042", "requester");
    let run = home.run(&["verify"]);
    assert_refusal(
        &run,
        &[
            "FAILED at entry 7",
            "policy-violation",
            "priya decided on their own change request CR-1042",
        ],
    );

    let home = Home::demo();
    append_unchecked(&home, "devi", "CR-1042", "approver");
    let run = home.run(&["verify"]);
    assert_refusal(
        &run,
        &[
            "FAILED at entry 7",
            "policy-violation",
            "devi signed as approver but does not hold that role",
        ],
    );
    // The queue does not count it either.
    let list = home.run(&["list", "--json"]).ok().json();
    assert_eq!(list[0]["signoffs"]["obtained"], 0);
}

#[test]
fn verify_catches_an_emergency_bypass_signed_by_someone_off_the_roster() {
    use tollgate::audit::emergency::{AuthorisationRecord, ExceptionTerms};
    use tollgate::audit::keys::Signer;
    use tollgate::audit::log::EntryKind;
    use tollgate::store::NewEntry;
    let home = Home::demo();
    let store = LocalStore::open(&home.store()).unwrap();
    let signer =
        Signer::load(&home.path("tollgate.demo-keys/devi"), || Err("none".into())).unwrap();
    let in_force = policy_digest(&store);
    store
        .append_emergency(&mut |ctx| {
            let head = &ctx.head;
            let record = AuthorisationRecord {
                kind: "emergency-authorised".into(),
                format: 1,
                seq: head.seq + 1,
                prev: head.hash.clone(),
                incident: "INC-9".into(),
                subject: "recommender".into(),
                environment: "prod".into(),
                from_version: "8".into(),
                to_version: "7".into(),
                reason: "self-authorised".into(),
                exception: ExceptionTerms {
                    id: None,
                    opened_at: "2026-11-25T10:00:00.000000Z".into(),
                    expires_at: "2026-11-25T14:00:00.000000Z".into(),
                    review_due: "2026-11-27T10:00:00.000000Z".into(),
                },
                linked: None,
                principal: "devi".into(),
                key_fingerprint: signer.fingerprint().into(),
                policy_digest: in_force.clone(),
                at: "2026-11-25T10:00:00.000000Z".into(),
            };
            let body = record.body();
            Ok((
                EntryKind::EmergencyAuthorised,
                NewEntry {
                    signature: signer.sign(body.as_bytes()).unwrap(),
                    body,
                    principal: "devi".into(),
                },
            ))
        })
        .unwrap();
    let run = home.run(&["verify"]);
    assert_refusal(
        &run,
        &[
            "FAILED at entry 7 (emergency-authorised)",
            "policy-violation",
            "not on the on-call roster",
        ],
    );
}

#[test]
fn deleting_every_signed_entry_and_rechaining_the_rest_does_not_pass() {
    let home = home_with_decisions();
    // What an auditor pins (`policy show` prints it).
    let genesis = home.run(&["policy", "show", "--json"]).ok().json()["genesis"]["hash"]
        .as_str()
        .expect("policy show names the genesis hash")
        .to_string();
    // One submission without a key: the only unsigned entry there is.
    let mut doc = common::fixture_json("CR-1045");
    doc["id"] = serde_json::json!("CR-2400");
    let file = home.write_json("cr.json", &doc);
    home.run(&["submit", &file]).ok();
    assert_eq!(home.run(&["verify", "--json"]).ok().json()["unsigned"], 1);
    // The attacker drops every signed entry and re-chains what is left.
    let c = raw(&home);
    c.execute("DELETE FROM log WHERE signature IS NOT NULL", [])
        .unwrap();
    let rows: Vec<(i64, String)> = {
        let mut stmt = c.prepare("SELECT seq, body FROM log ORDER BY seq").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(rows.len(), 1, "only the unsigned submission is left");
    let mut prev: Option<String> = None;
    for (i, (seq, body)) in rows.iter().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["seq"] = serde_json::json!(i + 1);
        v["prev"] = serde_json::json!(prev);
        let body = tollgate::audit::canonical::to_canonical_string(&v);
        let hash = tollgate::audit::log::entry_hash(&body);
        c.execute(
            "UPDATE log SET seq = ?1, body = ?2, hash = ?3 WHERE seq = ?4",
            rusqlite::params![i as i64 + 1, body, hash, seq],
        )
        .unwrap();
        prev = Some(hash);
    }
    c.execute(
        "UPDATE log_head SET seq = ?1, hash = ?2",
        rusqlite::params![rows.len() as i64, prev],
    )
    .unwrap();
    drop(c);
    // The CRs' recorded last entries point at entries that are gone: named once.
    assert_refusal(
        &home.run(&["verify"]),
        &[
            "the recorded last log entry of",
            "\"CR-1042\"",
            "entries were cut from the log",
        ],
    );
    // Read alone, the file then cannot tell it from a store made before policies were
    // logged: verify says how little it proves...
    let run = home.run(&["verify"]).ok();
    assert!(
        run.stdout.contains("0 signatures")
            && run.stdout.contains("WARNING: no policy in the log")
            && run.stdout.contains("WARNING: 1 unsigned entry"),
        "{}",
        run.stdout
    );
    // ...and the genesis an auditor pinned catches it.
    let pinned = home.run(&["verify", "--expect-genesis", &genesis]);
    assert_refusal(&pinned, &["genesis-mismatch", &genesis]);
}

#[test]
fn a_rewritten_revision_is_refused_on_read_and_named_by_verify() {
    let home = home_with_decisions();
    let c = raw(&home);
    c.execute_batch(
        "DROP TRIGGER revisions_are_immutable;
         UPDATE revisions SET document = replace(document, 'two new velocity features', 'no new features') WHERE cr_id = 'CR-1042';",
    )
    .unwrap();
    let edited: String = c
        .query_row(
            "SELECT document FROM revisions WHERE cr_id = 'CR-1042'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(edited.contains("no new features"), "the edit must land");
    drop(c);
    let shown = home.run(&["show", "CR-1042"]);
    assert_eq!(shown.code, 3, "{}", shown.stdout);
    assert!(
        shown.stderr.contains("CR-1042 revision 1 is damaged")
            && shown.stderr.contains("the stored revision was rewritten"),
        "{}",
        shown.stderr
    );
    let run = home.run(&["verify"]);
    assert_refusal(
        &run,
        &["altered", "CR-1042 revision 1 as stored is not the content"],
    );
}
