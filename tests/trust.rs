//! Trust nothing a client says: correctly signed entries (made with `ssh-keygen -Y sign -n
//! tollgate`) that break a rule are refused by the server with the rule named, and when
//! forced straight into a store, `verify` names them — while every reader carries on.

mod common;

use common::site::{Site, http};
use common::{Home, assert_refusal, now_text, ssh_fingerprint};
use serde_json::{Value, json};
use tollgate::audit::canonical::to_canonical_string;

/// An `emergency-authorised` body by `who` as the next entry, with the policy's terms
/// for a bypass signed now (4 h lifetime, review due in 48 h), then `edit` applied.
fn authorisation(site: &Site, who: &str, edit: impl FnOnce(&mut Value)) -> String {
    let (seq, prev) = site.home.head();
    let now = chrono::Utc::now();
    let t = tollgate::audit::log::time_text;
    let mut v = json!({
        "type": "emergency-authorised", "format": 1, "seq": seq + 1, "prev": prev,
        "incident": "INC-7", "subject": "recommender", "environment": "prod",
        "from_version": "8", "to_version": "7", "reason": "conversion -10%",
        "exception": {"id": null, "opened_at": t(now), "expires_at": t(now + chrono::Duration::hours(4)),
                      "review_due": t(now + chrono::Duration::hours(48))},
        "linked": null, "principal": who,
        "key_fingerprint": ssh_fingerprint(&site.home.demo_key(who)),
        "policy_digest": site.in_force(), "at": t(now),
    });
    edit(&mut v);
    to_canonical_string(&v)
}

fn outcome(site: &Site, who: &str, authorisation: &str) -> String {
    let (seq, prev) = site.home.head();
    to_canonical_string(&json!({
        "type": "rollback-executed", "format": 1, "seq": seq + 1, "prev": prev,
        "incident": "INC-7", "authorisation": authorisation, "command": ["true"],
        "exit_status": 0, "timed_out": false, "duration_ms": 5,
        "output_digest": tollgate::audit::canonical::sha256_digest(b""), "output_tail": "",
        "principal": who, "key_fingerprint": ssh_fingerprint(&site.home.demo_key(who)),
        "at": now_text(),
    }))
}

fn review(site: &Site, who: &str, exception: &str) -> String {
    let (seq, prev) = site.home.head();
    to_canonical_string(&json!({
        "type": "post-incident-review", "format": 1, "seq": seq + 1, "prev": prev,
        "incident": "INC-7", "exceptions": [exception],
        "root_cause": "my own bypass was fine", "follow_ups": "none needed",
        "policy_changes": "none",
        "principal": who, "key_fingerprint": ssh_fingerprint(&site.home.demo_key(who)),
        "at": now_text(),
    }))
}

fn assert_refused(answer: &(u16, Value), status: u16, rule: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["rule"], rule, "{}", answer.1);
}

#[test]
fn an_authorisation_with_the_clients_own_terms_is_refused_and_named() {
    let site = Site::new();
    let never_due = authorisation(&site, "lena", |v| {
        v["exception"]["expires_at"] = json!("2099-01-01T00:00:00.000000Z");
        v["exception"]["review_due"] = json!("2099-01-01T00:00:00.000000Z");
    });
    let answer = site.post("/v1/emergency", "emergency-authorised", "lena", &never_due);
    assert_refused(&answer, 403, "exception-terms");
    let entries = site.home.verified_entries();

    let seq = site.force("emergency-authorised", None, "lena", &never_due);
    assert_eq!(seq, entries + 1);
    assert_refusal(
        &site.home.run(&["verify"]),
        &[&format!("FAILED at entry {seq}"), "[exception-terms]"],
    );
}

#[test]
fn an_authorisation_without_a_subject_never_reaches_the_log_and_readers_survive_a_forced_one() {
    let site = Site::new();
    let broken = authorisation(&site, "lena", |v| {
        v.as_object_mut().unwrap().remove("subject");
    });
    let answer = site.post("/v1/emergency", "emergency-authorised", "lena", &broken);
    assert_eq!(answer.0, 422, "{}", answer.1);
    assert!(
        answer.1["message"]
            .as_str()
            .unwrap()
            .contains("missing field `subject`"),
        "{}",
        answer.1
    );
    let seq = site.force("emergency-authorised", None, "lena", &broken);
    assert_refusal(
        &site.home.run(&["verify"]),
        &[&format!("FAILED at entry {seq}"), "malformed", "subject"],
    );
    // Every reader carries on, saying which entry it left out; history shows the whole
    // table and marks what follows the bad entry, exiting 1 as for any broken log.
    let history = site.home.run(&["history"]);
    assert_eq!(history.code, 1, "{}", history.stderr);
    assert!(
        history.stdout.contains("decisions shown"),
        "{}",
        history.stdout
    );
    assert!(
        history
            .stderr
            .contains(&format!("AUDIT LOG BROKEN at entry {seq}"))
    );
    for args in [
        &["list"][..],
        &["exceptions"],
        &["health"],
        &["list", "--json"],
    ] {
        let run = site.home.run(args).ok();
        assert!(
            run.stderr.contains(&format!(
                "1 emergency log entry left out as untrusted (entry {seq}"
            )) || run.stdout.contains(&format!("(entry {seq}")),
            "{args:?}: {}{}",
            run.stdout,
            run.stderr
        );
    }
}

#[test]
fn outcomes_and_reviews_belong_to_the_people_the_rules_say() {
    let site = Site::new();
    let auth = authorisation(&site, "lena", |_| {});
    let answer = site.post("/v1/emergency", "emergency-authorised", "lena", &auth);
    assert_eq!(answer.0, 201, "{}", answer.1);
    let auth_hash = answer.1["hash"].as_str().unwrap().to_string();

    // marco is on call too, but did not authorise this rollback.
    let not_his = outcome(&site, "marco", &auth_hash);
    assert_refused(
        &site.post("/v1/emergency", "rollback-executed", "marco", &not_his),
        403,
        "rollback-not-authoriser",
    );
    let nowhere = outcome(&site, "lena", "sha256:0000");
    assert_refused(
        &site.post("/v1/emergency", "rollback-executed", "lena", &nowhere),
        403,
        "rollback-authorisation",
    );
    // lena holds the lead role, but reviewing her own bypass closes her own exception.
    let own = review(&site, "lena", &auth_hash);
    assert_refused(
        &site.post("/v1/emergency", "post-incident-review", "lena", &own),
        403,
        "independent-review",
    );
    let good = outcome(&site, "lena", &auth_hash);
    assert_eq!(
        site.post("/v1/emergency", "rollback-executed", "lena", &good)
            .0,
        201
    );

    // Forced into the store, verify names the self-review.
    let seq = site.force(
        "post-incident-review",
        None,
        "lena",
        &review(&site, "lena", &auth_hash),
    );
    assert_refusal(
        &site.home.run(&["verify"]),
        &[&format!("FAILED at entry {seq}"), "[independent-review]"],
    );
    // ...and the exception stays open for everyone reading it.
    let ex = site.home.run(&["exceptions", "--json"]).ok().json();
    assert_eq!(ex[0]["state"], "active", "{ex}");
}

/// A decision on `cr` by `who`, correct in every field (the revision shown, the checklist
/// tollgate evaluates, the policy in force, signed now), then `edit` applied.
#[test]
fn a_decision_stating_false_facts_is_refused_and_named() {
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 5] = [
        ("decision-revision", |v| v["cr_revision"] = json!(99)),
        ("signed-before-submission", |v| {
            v["at"] = json!("2020-01-01T00:00:00.000000Z")
        }),
        ("signed-in-future", |v| {
            v["at"] = json!("2999-01-01T00:00:00.000000Z")
        }),
        ("checklist-mismatch", |v| {
            v["checklist"][4]["state"] = json!("pass")
        }),
        ("policy-digest", |v| v["policy_digest"] = json!("sha256:00")),
    ];
    for (rule, edit) in cases {
        let site = Site::new();
        let good = site.decision("marco", "CR-1045", |_| {});
        let bad = site.decision("marco", "CR-1045", edit);
        assert_ne!(good, bad);
        let answer = site.post("/v1/decisions", "decision", "marco", &bad);
        assert_refused(&answer, 403, rule);
        let seq = site.force("decision", Some("CR-1045"), "marco", &bad);
        let verify = site.home.run(&["verify"]);
        assert_refusal(
            &verify,
            &[&format!("FAILED at entry {seq}"), "policy-violation"],
        );
        if rule != "policy-digest" {
            assert!(verify.stderr.contains(rule), "{rule}: {}", verify.stderr);
        }
        // Readers carry on: history lists every decision, marking what follows the bad
        // entry as unverified (or leaving out, named, one that names no stored revision);
        // health and show work as before.
        let history = site.home.run(&["history"]);
        let marked =
            history.stdout.contains(&format!("{seq:<6}")) && history.stdout.contains("UNVERIFIED");
        let left_out = history
            .stderr
            .contains(&format!("left out as untrusted (entry {seq}"));
        assert!(
            history.stdout.contains("decisions shown") && (marked || left_out),
            "{rule}: {}{}",
            history.stdout,
            history.stderr
        );
        for args in [&["health"][..], &["show", "CR-1045"]] {
            let run = site.home.run(args);
            assert_eq!(run.code, 0, "{rule} {args:?}: {}{}", run.stdout, run.stderr);
        }
    }
}

#[test]
fn json_with_a_member_named_twice_is_refused_wherever_it_is_read() {
    let site = Site::new();
    let good = site.decision("marco", "CR-1045", |_| {});
    // The same body with "rationale" given twice: a reader of the raw text may see either.
    let twice = good.replacen(
        "\"rationale\":\"p99 latency\"",
        "\"rationale\":\"looks fine\",\"rationale\":\"p99 latency\"",
        1,
    );
    assert_ne!(good, twice);
    let answer = site.post("/v1/decisions", "decision", "marco", &twice);
    assert_eq!(answer.0, 422, "{}", answer.1);
    assert!(
        answer.1["message"]
            .as_str()
            .unwrap()
            .contains("$.rationale: the name appears twice"),
        "{}",
        answer.1
    );
    // A change request document, from a file.
    let mut doc = common::fixture_json("CR-1045");
    doc["id"] = json!("CR-2001");
    let text = serde_json::to_string_pretty(&doc).unwrap().replacen(
        "\n  \"title\":",
        "\n  \"title\": \"harmless\",\n  \"title\":",
        1,
    );
    let file = site.home.write("twice.json", text.as_bytes());
    let run = site.home.run(&["submit", &file]);
    assert_refusal(&run, &["twice.json", "$.title", "appears twice"]);
}

#[test]
fn one_key_under_two_principals_is_refused_wherever_a_policy_is_read() {
    let home = Home::demo();
    let key_of = |who: &str| {
        std::fs::read_to_string(home.path(&format!("tollgate.demo-keys/{who}.pub")))
            .unwrap()
            .trim()
            .to_string()
    };
    // devi's key also listed for marco (with another comment): one person, two sign-offs.
    let devi = key_of("devi");
    let marco = key_of("marco");
    let text = home
        .policy_text()
        .replace(&marco, &devi.replace("devi@tollgate-demo", "marco@laptop"));
    assert_ne!(text, home.policy_text());
    let file = home.write("twice.toml", text.as_bytes());
    assert_refusal(
        &home.run(&["policy", "check", &file]),
        &["keys[0]", "the same public key is already devi's"],
    );
    assert_refusal(
        &home.run(&[
            "--as",
            "lena",
            "policy",
            "propose",
            &file,
            "--rationale",
            "x",
        ]),
        &["the same public key is already devi's"],
    );
    // A fresh store cannot start from it either.
    let fresh = Home::new();
    let key = home.demo_key("lena");
    let policy = fresh.write("tollgate.policy.toml", text.as_bytes());
    let run = fresh.run(&["--policy", &policy, "--key", key.to_str().unwrap(), "init"]);
    assert_refusal(&run, &["the same public key is already devi's"]);
    assert!(!fresh.store().exists(), "no store is created");
}

/// Submits `doc` to the site's server with `who`'s token.
fn submit_remote(site: &Site, who: &str, doc: &Value) -> (u16, Value) {
    let r = http()
        .post(format!("{}/v1/change-requests", site.server.url))
        .bearer_auth(&site.tokens[who])
        .json(doc)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn the_submitter_counts_as_requester_whatever_the_document_names() {
    let site = Site::with_tokens(&["jonas", "marco"]);
    // jonas's token, a document naming priya as requester.
    let mut doc = common::fixture_json("CR-1043");
    doc["id"] = json!("CR-2100");
    doc["requester"] = json!("priya");
    let (status, answer) = submit_remote(&site, "jonas", &doc);
    assert_eq!(status, 201, "{answer}");
    // jonas holds data-reviewer, the role CR-2100's data gate needs; he still cannot
    // decide on what he submitted.
    let own = site.decision("jonas", "CR-2100", |v| {
        v["role"] = json!("data-reviewer");
        v["verdict"] = json!("reject");
    });
    let answer = site.post("/v1/decisions", "decision", "jonas", &own);
    assert_refused(&answer, 403, "requester-cannot-sign");
    assert!(
        answer.1["message"]
            .as_str()
            .unwrap()
            .contains("jonas submitted this revision of CR-2100"),
        "{}",
        answer.1
    );
    let cli = site
        .home
        .run(&["--as", "jonas", "reject", "CR-2100", "--rationale", "mine"]);
    assert_refusal(&cli, &["[requester-cannot-sign]"]);
    // Forced into the store, verify names it.
    let seq = site.force("decision", Some("CR-2100"), "jonas", &own);
    assert_refusal(
        &site.home.run(&["verify"]),
        &[
            &format!("FAILED at entry {seq}"),
            "jonas decided on their own change request CR-2100",
        ],
    );
}

#[test]
fn checks_only_count_from_ci_and_a_requester_cannot_flip_a_failure() {
    let site = Site::with_tokens(&["jonas", "ci", "devi"]);
    let before = site.home.run(&["show", "CR-1043", "--json"]).ok().json();
    assert_eq!(
        common::checklist_item(&before, "backward-compat")["state"],
        "fail"
    );
    assert_eq!(before["status"], "pending", "{}", before["status"]);
    // jonas resubmits CR-1043 with its failing check set to pass.
    let mut doc = common::fixture_json("CR-1043");
    for c in doc["checks"].as_array_mut().unwrap() {
        if c["id"] == "backward_compatibility" {
            c["status"] = json!("pass");
        }
    }
    let (status, answer) = submit_remote(&site, "jonas", &doc);
    assert_eq!(status, 201, "{answer}");
    let after = site.home.run(&["show", "CR-1043", "--json"]).ok().json();
    assert_eq!(after["revision"], 2);
    let bc = common::checklist_item(&after, "backward-compat");
    assert_eq!(
        bc["state"], "pending",
        "not satisfied on jonas's word: {bc}"
    );
    assert!(
        bc["detail"]
            .as_str()
            .unwrap()
            .contains("self-reported pass by jonas; awaiting CI"),
        "{bc}"
    );
    // Every check of his revision waits for CI, even the ones that passed before.
    assert_eq!(
        common::checklist_item(&after, "reproducibility")["state"],
        "pending"
    );

    // CI attests on the exact revision; a reviewer cannot.
    let devi = site.home.run(&[
        "--as",
        "devi",
        "evidence",
        "CR-1043",
        "backward_compatibility",
        "pass",
    ]);
    assert_refusal(&devi, &["[ci-only]", "principals holding ci: ci"]);
    site.home
        .run(&[
            "--as",
            "ci",
            "evidence",
            "CR-1043",
            "backward_compatibility",
            "fail",
            "--detail",
            "column txn_hour_raw still read by 2 consumers",
        ])
        .ok();
    let attested = site.home.run(&["show", "CR-1043", "--json"]).ok().json();
    let bc = common::checklist_item(&attested, "backward-compat");
    assert_eq!(bc["state"], "fail", "{bc}");
    assert!(
        bc["detail"].as_str().unwrap().contains("attested by ci"),
        "{bc}"
    );

    // A hand-signed attestation by someone without the ci role, posted and forced.
    let (seq, prev) = site.home.head();
    let body = to_canonical_string(&json!({
        "type": "evidence", "format": 1, "seq": seq + 1, "prev": prev,
        "cr_id": "CR-1043", "cr_revision": 2, "cr_digest": attested["digest"],
        "check": "backward_compatibility", "status": "pass", "detail": null, "url": null,
        "principal": "devi", "key_fingerprint": ssh_fingerprint(&site.home.demo_key("devi")),
        "at": now_text(),
    }));
    assert_refused(
        &site.post("/v1/evidence", "evidence", "devi", &body),
        403,
        "ci-only",
    );
    let forced = site.force("evidence", Some("CR-1043"), "devi", &body);
    assert_refusal(
        &site.home.run(&["verify"]),
        &[
            &format!("FAILED at entry {forced}"),
            "devi attested evidence but does not hold the ci role",
        ],
    );
}

#[test]
fn a_local_submission_without_a_key_is_unsigned_and_its_checks_wait_for_ci() {
    let home = Home::demo();
    let mut doc = common::fixture_json("CR-1045");
    doc["id"] = json!("CR-2200");
    let file = home.write_json("cr.json", &doc);
    let run = home.run(&["submit", &file]).ok();
    assert!(
        run.stderr.contains("submitted unsigned, submitter unknown"),
        "{}",
        run.stderr
    );
    let shown = home.run(&["show", "CR-2200", "--json"]).ok().json();
    assert!(
        common::checklist_item(&shown, "performance")["detail"]
            .as_str()
            .unwrap()
            .contains("self-reported pass by unknown"),
        "{shown}"
    );
    let v = home.run(&["verify", "--json"]).ok().json();
    assert_eq!(v["unsigned"], 1, "{v}");
    // Submitted with a key, it is signed and names its submitter.
    doc["id"] = json!("CR-2201");
    let file = home.write_json("cr.json", &doc);
    home.run(&["--as", "ci", "submit", &file]).ok();
    let shown = home.run(&["show", "CR-2201", "--json"]).ok().json();
    assert_eq!(
        common::checklist_item(&shown, "performance")["state"],
        "pass"
    );
    assert_eq!(home.run(&["verify", "--json"]).ok().json()["unsigned"], 1);
}

#[test]
fn the_server_signs_what_it_records_with_its_own_principals_key() {
    let home = Home::new();
    let (lead_key, lead_line) = home.ssh_keygen("lena-key");
    let (_, other_lead) = home.ssh_keygen("sofia-key");
    // Two leads with keys, so the policy can be changed later.
    let text = tollgate::demo::POLICY_TOML
        .replacen(
            "id = \"lena\"\n",
            &format!("id = \"lena\"\nkeys = [\"{lead_line}\"]\n"),
            1,
        )
        .replacen(
            "id = \"sofia\"\n",
            &format!("id = \"sofia\"\nkeys = [\"{other_lead}\"]\n"),
            1,
        );
    let policy = home.write("starter.toml", text.as_bytes());
    let run = home
        .run(&[
            "--policy",
            &policy,
            "--key",
            lead_key.to_str().unwrap(),
            "init",
            "--server-principal",
            "tollgate-server",
        ])
        .ok();
    let server_key = home.path("tollgate.server-key");
    assert!(
        run.stdout.contains(&format!(
            "tollgate serve --server-key {}",
            server_key.display()
        )),
        "{}",
        run.stdout
    );
    let shown = home.run(&["policy", "show", "--json"]).ok().json();
    assert!(shown.to_string().contains("tollgate-server"), "{shown}");

    let token = home.token("jonas");
    // A key that is not the server principal's is refused at start.
    let wrong = home
        .command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--server-key",
            lead_key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let wrong: common::Run = wrong.into();
    assert_ne!(wrong.code, 0);
    assert!(
        wrong
            .stderr
            .contains("is lena's, who does not hold the server role"),
        "{}",
        wrong.stderr
    );

    let server = home.serve_with(
        "127.0.0.1:0",
        &["--server-key", server_key.to_str().unwrap()],
    );
    let mut doc = common::fixture_json("CR-1045");
    doc["id"] = json!("CR-2300");
    let file = home.write_json("cr.json", &doc);
    home.remote(&server.url, &token, &["submit", &file]).ok();
    let log = home.run(&["log", "export"]).ok().stdout;
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    let body: Value = serde_json::from_str(last["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["submitter"], "jonas", "{body}");
    assert_eq!(body["principal"], "tollgate-server", "{body}");
    assert_eq!(
        body["key_fingerprint"].as_str().unwrap(),
        ssh_fingerprint(&home.path("tollgate.server-key.pub"))
    );
    // An auditor checks the server's signature with ssh-keygen and the allowed_signers.
    let signers = home.write(
        "allowed_signers",
        home.run(&["policy", "allowed-signers"])
            .ok()
            .stdout
            .as_bytes(),
    );
    assert_server_signed(&home, &signers, &last);
    let v = home.run(&["verify", "--json"]).ok().json();
    assert_eq!(v["unsigned"], 0, "{v}");

    // The signed tree head: what a monitor publishes elsewhere.
    let sth: Value = http()
        .get(format!("{}/v1/head/signed", server.url))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_server_signed(&home, &signers, &sth);
    let signed: Value = serde_json::from_str(sth["body"].as_str().unwrap()).unwrap();
    assert_eq!(signed["seq"], v["head"]["seq"]);
    assert_eq!(signed["hash"], v["head"]["hash"]);
    // Later, the noted head must still be in the log.
    home.run(&["verify", "--expect-head", signed["hash"].as_str().unwrap()])
        .ok();
}

/// Asserts that `signed` (`{body, signature}`) verifies with `ssh-keygen -Y verify` as
/// `tollgate-server` against the `allowed_signers` file `signers`, as an auditor checks it.
fn assert_server_signed(home: &Home, signers: &str, signed: &Value) {
    let body = home.write("signed.body", signed["body"].as_str().unwrap().as_bytes());
    let sig = home.write(
        "signed.sig",
        signed["signature"].as_str().unwrap().as_bytes(),
    );
    let out = std::process::Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-f",
            signers,
            "-I",
            "tollgate-server",
            "-n",
            "tollgate",
            "-s",
        ])
        .arg(&sig)
        .stdin(std::fs::File::open(&body).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_signing_time_after_the_stores_receipt_is_named_even_by_a_later_audit() {
    let site = Site::new();
    let now = chrono::Utc::now();
    let tomorrow = tollgate::audit::log::time_text(now + chrono::Duration::days(1));
    let early = site.decision("marco", "CR-1045", |v| v["at"] = json!(tomorrow));
    // Forced in now: the store notes its receipt beside it, as for its own appends.
    let seq = site.force("decision", Some("CR-1045"), "marco", &early);
    // A week later the auditor's clock alone would not catch it; the receipt does.
    let later = tollgate::audit::log::time_text(now + chrono::Duration::days(7));
    let run: common::Run = site
        .home
        .command(&["verify"])
        .env("TOLLGATE_NOW", &later)
        .output()
        .unwrap()
        .into();
    assert_refusal(
        &run,
        &[&format!("FAILED at entry {seq}"), "[signed-in-future]"],
    );
    // Entries tollgate appends carry their receipt time in the export.
    let log = site.home.run(&["log", "export"]).ok().stdout;
    let first: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!(first["received_at"].is_string(), "{first}");
}

/// After a rollback of recommender@prod from 8 to 7, 7 is live: the same rollback from 8
/// again is refused (`rollback-stale`) by the server and named by `verify` when forced,
/// while a rollback from 7 is accepted, and a new change request for the subject hands it
/// back to the change requests (a rollback from the version it brings is accepted).
#[test]
fn a_rollback_from_a_version_already_rolled_back_is_refused_and_named() {
    let site = Site::new();
    let first = authorisation(&site, "lena", |_| {});
    let answer = site.post("/v1/emergency", "emergency-authorised", "lena", &first);
    assert_eq!(answer.0, 201, "{}", answer.1);

    // The same rollback from 8, on another incident (so not linked to the first one's
    // exception): 8 is no longer live.
    let again = authorisation(&site, "lena", |v| v["incident"] = json!("INC-8"));
    let answer = site.post("/v1/emergency", "emergency-authorised", "lena", &again);
    assert_refused(&answer, 403, "rollback-stale");
    let message = answer.1["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("recommender@prod runs 7 since lena rolled it back from 8 for INC-7"),
        "{message}"
    );

    // From 7, the live version, it is accepted.
    let onward = authorisation(&site, "lena", |v| {
        v["incident"] = json!("INC-8");
        v["from_version"] = json!("7");
        v["to_version"] = json!("6");
    });
    let answer = site.post("/v1/emergency", "emergency-authorised", "lena", &onward);
    assert_eq!(answer.0, 201, "{}", answer.1);

    // A new CR deploys 9: the CRs say what is live again, and a rollback from 9 is
    // accepted.
    let mut cr = common::fixture_json("CR-1046");
    cr["id"] = json!("CR-2046");
    cr["subject"]["from_version"] = json!("6");
    cr["subject"]["to_version"] = json!("9");
    let file = site.home.write_json("cr-2046.json", &cr);
    site.home.run(&["--as", "ci", "submit", &file]).ok();
    let from_nine = authorisation(&site, "lena", |v| {
        v["incident"] = json!("INC-9");
        v["from_version"] = json!("9");
        v["to_version"] = json!("6");
    });
    let answer = site.post("/v1/emergency", "emergency-authorised", "lena", &from_nine);
    assert_eq!(answer.0, 201, "{}", answer.1);
    site.home.run(&["verify"]).ok();

    // Forced past the server, the stale one (from 9 again) is named by verify.
    let stale = authorisation(&site, "lena", |v| {
        v["incident"] = json!("INC-10");
        v["from_version"] = json!("9");
        v["to_version"] = json!("5");
    });
    let seq = site.force("emergency-authorised", None, "lena", &stale);
    assert_refusal(
        &site.home.run(&["verify"]),
        &[&format!("FAILED at entry {seq}"), "[rollback-stale]"],
    );
}
