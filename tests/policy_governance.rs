//! The policy is governed, versioned and signed in the log: changes go through tollgate's
//! own gate (a `policy` CR, two leads, never the proposer), every entry is judged by the
//! policy in force when it was appended, the file beside the store grants nothing, keys
//! rotate and are revoked, old stores migrate, and exports carry every version. Real
//! binary, real SQLite, real `ssh-keygen`, a real server on 127.0.0.1.

mod common;

use common::{
    DEMO_ENTRIES, Home, POLICY_CHANGE_ENTRIES, assert_refusal, ssh_fingerprint, ssh_sign,
};
use serde_json::{Value, json};

/// The demo policy in force with marco off the on-call roster.
fn without_marco_on_call(home: &Home) -> String {
    let text = home.policy_text();
    assert!(text.contains("on_call = [\"marco\", \"lena\", \"guard\"]"));
    text.replace(
        "on_call = [\"marco\", \"lena\", \"guard\"]",
        "on_call = [\"lena\", \"guard\"]",
    )
}

fn rollback(home: &Home, who: &str, incident: &str) -> common::Run {
    home.rollback(who, incident, None)
}

fn http() -> reqwest::blocking::Client {
    tollgate::tls::install_crypto_provider();
    reqwest::blocking::Client::new()
}

fn proposal_id(run: &common::Run) -> String {
    run.stdout.split(':').next().unwrap().to_string()
}

#[test]
fn a_roster_rotation_is_proposed_approved_by_two_leads_and_keeps_history_valid() {
    let home = Home::demo();
    // marco, on call, authorises a rollback under the genesis policy.
    rollback(&home, "marco", "INC-2291").ok();
    let before = home.verified_entries();

    // A non-lead proposes the rotation: a policy CR, always high risk.
    let file = home.write("rotation.toml", without_marco_on_call(&home).as_bytes());
    let run = home
        .run(&[
            "--as",
            "marco",
            "policy",
            "propose",
            &file,
            "--rationale",
            "December rotation: marco is off call",
        ])
        .ok();
    let id = proposal_id(&run);
    assert_eq!(id, "POL-2");
    assert!(run.stdout.contains("- on-call marco"), "{}", run.stdout);
    assert!(
        run.stdout.contains("needs sign-offs: lead + lead"),
        "{}",
        run.stdout
    );
    let row = home.run(&["list", "--json"]).ok().json();
    let row = row
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "POL-2")
        .unwrap()
        .clone();
    assert_eq!(row["gate"], "policy");
    assert_eq!(row["risk"]["effective"], "high");
    assert_eq!(row["signoffs"]["required"], 2);
    let shown = home.run(&["show", "POL-2", "--json"]).ok().json();
    assert_eq!(shown["policy_change"]["in_force_version"], 1);
    assert_eq!(
        shown["policy_change"]["changes"][0],
        json!({"kind": "removed", "what": "on-call marco", "detail": ""})
    );
    let text = home.run(&["show", "POL-2"]).ok().stdout;
    assert!(
        text.contains("Policy change against version 1 in force"),
        "{text}"
    );

    // The proposer never counts; a non-lead cannot fill a lead's slot.
    let own = home.approve_as_lead("marco", "POL-2");
    assert_refusal(&own, &["[requester-cannot-sign]"]);
    let devi = home.approve_as_lead("devi", "POL-2");
    assert_refusal(&devi, &["[role-not-held]", "sign for a role you hold"]);

    // One lead: still version 1.
    home.approve_as_lead("lena", "POL-2").ok();
    assert_eq!(
        home.run(&["policy", "show", "--json"]).ok().json()["version"],
        1
    );
    // The second completes it: adopted in the same breath, the file rewritten.
    let done = home.approve_as_lead("sofia", "POL-2").ok();
    assert!(
        done.stdout
            .contains("POL-2 adopted: policy version 2 is in force"),
        "{}",
        done.stdout
    );
    let shown = home.run(&["policy", "show", "--json"]).ok().json();
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["cr_id"], "POL-2");
    assert_eq!(shown["adopted_by"], "sofia");
    assert_eq!(shown["file"]["matches"], true);
    assert_eq!(
        std::fs::read_to_string(home.path("tollgate.policy.toml")).unwrap(),
        std::fs::read_to_string(&file).unwrap(),
        "the file beside the store is the proposal, verbatim"
    );

    // The log verifies: the earlier rollback is still valid under the policy it was
    // signed under, though marco is no longer on call.
    assert_eq!(home.verified_entries(), before + POLICY_CHANGE_ENTRIES);
    let report = home.run(&["verify", "--json"]).ok().json();
    assert_eq!(report["policies"].as_array().unwrap().len(), 2);
    let exceptions = home.run(&["exceptions", "--json"]).ok().json();
    assert_eq!(exceptions[0]["opened_by"], "marco");
    // ...and marco is now refused, with who to call instead.
    assert_refusal(
        &rollback(&home, "marco", "INC-2292"),
        &[
            "marco is not on the on-call roster",
            "[on-call-only]",
            "Lena Vogel (lena)",
        ],
    );
    let status = home.run(&["show", "POL-2", "--json"]).ok().json();
    assert_eq!(status["status"], "approved", "still approved once in force");
    assert!(status["stale_proposal"].is_null());

    // A lead proposes the next change; the other two leads approve it.
    let back = home.write(
        "back.toml",
        home.policy_text()
            .replace(
                "on_call = [\"lena\", \"guard\"]",
                "on_call = [\"lena\", \"marco\"]",
            )
            .as_bytes(),
    );
    let run = home
        .run(&[
            "--as",
            "lena",
            "policy",
            "propose",
            &back,
            "--rationale",
            "marco back",
        ])
        .ok();
    let id = proposal_id(&run);
    assert_eq!(id, "POL-3");
    assert_refusal(
        &home.approve_as_lead("lena", &id),
        &["[requester-cannot-sign]"],
    );
    home.approve_as_lead("sofia", &id).ok();
    home.approve_as_lead("noor", &id).ok();
    // 7 is live since the first rollback: this one starts from it.
    home.rollback_with("marco", "INC-2293", None, &["--to", "6"])
        .ok();
    let history = home.run(&["policy", "history", "--json"]).ok().json();
    let versions: Vec<(u64, Value)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["cr_id"].clone()))
        .collect();
    assert_eq!(
        versions,
        [(1, Value::Null), (2, json!("POL-2")), (3, json!("POL-3"))]
    );
    assert_eq!(history[2]["changes"][0]["what"], "on-call marco");
    assert_eq!(history[2]["changes"][0]["kind"], "added");
    home.verified_entries();
}

#[test]
fn a_proposal_overtaken_by_another_adoption_is_stale_until_revised() {
    let home = Home::demo();
    let slower = home.write(
        "slower.toml",
        home.policy_text()
            .replace("high = 24", "high = 48")
            .as_bytes(),
    );
    let pol2 = proposal_id(
        &home
            .run(&[
                "--as",
                "marco",
                "policy",
                "propose",
                &slower,
                "--rationale",
                "longer canary",
            ])
            .ok(),
    );
    home.approve_as_lead("lena", &pol2).ok();
    // Another change is adopted first.
    home.adopt_policy(&without_marco_on_call(&home), "rotation");
    let row = home.run(&["show", &pol2, "--json"]).ok().json();
    assert_eq!(row["blocked"], true);
    assert!(
        row["stale_proposal"]
            .as_str()
            .unwrap()
            .contains("propose it again"),
        "{row}"
    );
    let refused = home.approve_as_lead("noor", &pol2);
    assert_refusal(
        &refused,
        &["[policy-proposal-stale]", &format!("--revise {pol2}")],
    );
    // Proposing again against the policy in force makes a new revision; sign-offs start over.
    let rebased = home.write(
        "rebased.toml",
        home.policy_text()
            .replace("high = 24", "high = 48")
            .as_bytes(),
    );
    let run = home
        .run(&[
            "--as", "marco", "policy", "propose", &rebased, "--revise", &pol2,
        ])
        .ok();
    assert!(
        run.stdout.contains("revised: now revision 2"),
        "{}",
        run.stdout
    );
    // Someone else may not revise marco's proposal.
    let theirs = home.run(&[
        "--as", "lena", "policy", "propose", &rebased, "--revise", &pol2,
    ]);
    assert_refusal(&theirs, &["[not-your-proposal]"]);
    home.approve_as_lead("noor", &pol2).ok();
    home.approve_as_lead("sofia", &pol2).ok();
    let shown = home.run(&["policy", "show", "--json"]).ok().json();
    assert_eq!(shown["version"], 3);
    assert_eq!(shown["policy"]["observation_hours"]["high"], 48);
    assert_eq!(
        shown["policy"]["emergency"]["on_call"],
        json!(["lena", "guard"])
    );
    home.verified_entries();
    // An adopted proposal can no longer change.
    let later = home.write(
        "later.toml",
        home.policy_text()
            .replace("high = 48", "high = 72")
            .as_bytes(),
    );
    assert_refusal(
        &home.run(&[
            "--as", "marco", "policy", "propose", &later, "--revise", &pol2,
        ]),
        &["[already-adopted]", "propose a new change"],
    );
}

#[test]
fn proposals_that_break_governance_are_refused_with_the_rule_and_the_remedy() {
    let home = Home::demo();
    let same = home.write(
        "same.toml",
        format!("# a comment\n{}", home.policy_text()).as_bytes(),
    );
    assert_refusal(
        &home.run(&["--as", "marco", "policy", "propose", &same]),
        &["[policy-unchanged]", "comment-only edits need no adoption"],
    );
    let one_lead = home
        .policy_text()
        .replace("roles = [\"lead\"]", "roles = [\"risk-reviewer\"]")
        .replace("roles = [\"approver\", \"lead\"]", "roles = [\"approver\"]");
    let file = home.write("one-lead.toml", one_lead.as_bytes());
    let run = home.run(&["--as", "marco", "policy", "propose", &file]);
    assert_refusal(
        &run,
        &[
            "signoffs.policy.high: needs 2 distinct people",
            "[policy-invalid]",
        ],
    );
    let broken = home.write("broken.toml", b"version = 1\n[risk\n");
    assert_refusal(
        &home.run(&["--as", "marco", "policy", "propose", &broken]),
        &["[policy-invalid]", "line 2", "tollgate policy check FILE"],
    );
    // Nothing was stored.
    assert_eq!(home.verified_entries(), DEMO_ENTRIES);
    assert!(home.run(&["show", "POL-2"]).code == 1);
}

#[test]
fn an_edited_policy_file_grants_nothing_locally_or_on_the_server() {
    let home = Home::demo();
    // An attacker with write access to the file adds themselves as a reviewer.
    let (key, line) = home.ssh_keygen("mallory");
    let policy = home.path("tollgate.policy.toml");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str(&format!(
        "\n[[principals]]\nid = \"mallory\"\nname = \"Mallory\"\nroles = [\"risk-reviewer\", \"approver\"]\nkeys = [\"{}\"]\n",
        line
    ));
    std::fs::write(&policy, &text).unwrap();
    home.run(&["policy", "check"]).ok();

    // Every command says the file is not the policy in force, once.
    let list = home.run(&["list"]).ok();
    assert_eq!(
        list.stderr
            .matches("differs from the policy in force")
            .count(),
        1
    );
    // Locally the key is refused by name, with the remedy.
    let run = home.run(&[
        "--key",
        key.to_str().unwrap(),
        "reject",
        "CR-1045",
        "--rationale",
        "mine now",
    ]);
    assert_refusal(
        &run,
        &[
            "[key-not-in-force]",
            "not in the policy in force (version 1",
            "tollgate policy propose",
        ],
    );

    // On the server: a correctly signed decision, posted straight to it.
    let token = home.token("mallory");
    let server = home.serve("127.0.0.1:0");
    let ctx: Value = http()
        .get(format!("{}/v1/change-requests/CR-1045/context", server.url))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let digest = home.run(&["policy", "show", "--json"]).ok().json()["digest"].clone();
    let fingerprint = ssh_fingerprint(&home.path("mallory.pub"));
    let body = tollgate::audit::canonical::to_canonical_string(&json!({
        "type": "decision", "format": 1,
        "seq": ctx["head"]["seq"].as_u64().unwrap() + 1, "prev": ctx["head"]["hash"],
        "cr_id": "CR-1045", "cr_revision": 1, "cr_digest": ctx["current"]["digest"],
        "verdict": "reject", "role": "risk-reviewer", "rationale": "mine now",
        "ticks": [], "checklist": [], "principal": "mallory", "key_fingerprint": fingerprint,
        "policy_digest": digest, "at": common::now_text(),
    }));
    let r = http()
        .post(format!("{}/v1/decisions", server.url))
        .bearer_auth(&token)
        .json(&json!({"kind": "decision", "principal": "mallory", "body": body, "signature": ssh_sign(&key, &body)}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let e: Value = r.json().unwrap();
    assert_eq!(e["rule"], "key-not-in-force", "{e}");
    assert!(
        e["remedy"].as_str().unwrap().contains("policy propose"),
        "{e}"
    );
    drop(server);

    // Forced into the store, verify names it.
    assert_eq!(home.verified_entries(), DEMO_ENTRIES, "nothing got in");
    let seq = home.force_append(
        "decision",
        Some("CR-1045"),
        "mallory",
        &body,
        &ssh_sign(&key, &body),
    );
    let run = home.run(&["verify"]);
    assert_refusal(
        &run,
        &[
            &format!("FAILED at entry {seq}"),
            "unknown-key",
            "not a principal of policy version 1",
        ],
    );
}

/// A correctly signed decision on `cr`, hand-made as JSON and signed with `ssh-keygen`.
fn hand_signed_decision(
    home: &Home,
    who: &str,
    cr: &str,
    verdict: &str,
    role: &str,
    policy_digest: &str,
) -> (String, String) {
    let (seq, prev) = home.head();
    let shown = home.run(&["show", cr, "--json"]).ok().json();
    let key = home.demo_key(who);
    let fp = ssh_fingerprint(&key);
    let body = tollgate::audit::canonical::to_canonical_string(&json!({
        "type": "decision", "format": 1, "seq": seq + 1, "prev": prev,
        "cr_id": cr, "cr_revision": shown["revision"], "cr_digest": shown["digest"],
        "verdict": verdict, "role": role, "rationale": "hand-made",
        "ticks": [], "checklist": common::checklist_of(&shown), "principal": who, "key_fingerprint": fp,
        "policy_digest": policy_digest, "at": common::now_text(),
    }));
    let sig = ssh_sign(&key, &body);
    (body, sig)
}

#[test]
fn adoptions_the_rules_do_not_back_are_refused_by_the_server_and_named_by_verify() {
    let home = Home::demo();
    let in_force = home.run(&["policy", "show", "--json"]).ok().json()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let file = home.write("rotation.toml", without_marco_on_call(&home).as_bytes());
    home.run(&["--as", "marco", "policy", "propose", &file])
        .ok();
    home.approve_as_lead("lena", "POL-2").ok();
    let sofia = home.token("sofia");
    let devi = home.token("devi");
    let server = home.serve("127.0.0.1:0");
    let post = |body: &Value| {
        http()
            .post(format!("{}/v1/decisions", server.url))
            .bearer_auth(&sofia)
            .json(body)
            .send()
            .unwrap()
    };
    // sofia's approval completes POL-2: without the adoption it is refused...
    let (body, sig) = hand_signed_decision(&home, "sofia", "POL-2", "approve", "lead", &in_force);
    let r =
        post(&json!({"kind": "decision", "principal": "sofia", "body": body, "signature": sig}));
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().unwrap()["rule"], "adoption-required");
    // ...and with an adoption of other text (mallory's policy), correctly signed, too.
    let decision_hash = tollgate::audit::log::entry_hash(&body);
    let forged_text =
        format!("{}\n# and mallory\n", home.policy_text()).replace("high = 24", "high = 1");
    let decision_seq = serde_json::from_str::<Value>(&body).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let adoption = |text: &str| {
        hand_made_adoption(
            &home,
            "sofia",
            (decision_seq, Some(decision_hash.clone())),
            text,
            &signers(text),
            &in_force,
            serde_json::from_str::<Value>(&body).unwrap()["at"]
                .as_str()
                .unwrap(),
        )
    };
    let bad = adoption(&forged_text);
    let r = post(
        &json!({"kind": "decision", "principal": "sofia", "body": body, "signature": sig,
        "adoption": {"kind": "policy-adopted", "principal": "sofia", "body": bad, "signature": ssh_sign(&home.demo_key("sofia"), &bad)}}),
    );
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().unwrap()["rule"], "adoption-mismatch");
    // A decision signed under a policy that is not in force: refused by name.
    let (stale, stale_sig) = hand_signed_decision(
        &home,
        "devi",
        "CR-1044",
        "request-changes",
        "risk-reviewer",
        "sha256:0000",
    );
    let r = http()
        .post(format!("{}/v1/decisions", server.url))
        .bearer_auth(&devi)
        .json(&json!({"kind": "decision", "principal": "devi", "body": stale, "signature": stale_sig}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().unwrap()["rule"], "policy-digest");
    // The genuine approval with the genuine adoption is recorded, in one transaction.
    let good = adoption(&without_marco_on_call(&home));
    let r = post(
        &json!({"kind": "decision", "principal": "sofia", "body": body, "signature": sig,
        "adoption": {"kind": "policy-adopted", "principal": "sofia", "body": good, "signature": ssh_sign(&home.demo_key("sofia"), &good)}}),
    );
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    drop(server);
    assert_eq!(
        home.run(&["policy", "show", "--json"]).ok().json()["version"],
        2
    );
    home.verified_entries();

    // Forced into a store: an adoption whose sign-offs were not complete.
    let home = Home::demo();
    home.run(&[
        "--as",
        "marco",
        "policy",
        "propose",
        &home.write("r.toml", without_marco_on_call(&home).as_bytes()),
    ])
    .ok();
    home.approve_as_lead("lena", "POL-2").ok();
    let text = without_marco_on_call(&home);
    let body = hand_made_adoption(
        &home,
        "lena",
        home.head(),
        &text,
        &signers(&text),
        &in_force_of(&home),
        &common::now_text(),
    );
    let forced = home.force_append(
        "policy-adopted",
        Some("POL-2"),
        "lena",
        &body,
        &ssh_sign(&home.demo_key("lena"), &body),
    );
    assert_refusal(
        &home.run(&["verify"]),
        &[
            &format!("FAILED at entry {forced} (policy-adopted on POL-2)"),
            "policy-violation",
            "sign-offs are not complete under version 1: 1/2",
        ],
    );

    // Forced into a store: sofia's genuine approval completing POL-2, then an adoption of
    // its exact text whose allowed_signers slip in a key the text does not list (what an
    // auditor checking with stock tools would trust).
    let home = Home::demo();
    let text = without_marco_on_call(&home);
    home.run(&[
        "--as",
        "marco",
        "policy",
        "propose",
        &home.write("r.toml", text.as_bytes()),
    ])
    .ok();
    home.approve_as_lead("lena", "POL-2").ok();
    let in_force = in_force_of(&home);
    let (approval, approval_sig) =
        hand_signed_decision(&home, "sofia", "POL-2", "approve", "lead", &in_force);
    home.force_append("decision", Some("POL-2"), "sofia", &approval, &approval_sig);
    let (_, mallory) = home.ssh_keygen("mallory");
    let (algo_and_key, _comment) = mallory.rsplit_once(' ').unwrap();
    let slipped = format!(
        "{}mallory namespaces=\"tollgate\" {algo_and_key}\n",
        signers(&text)
    );
    let body = hand_made_adoption(
        &home,
        "sofia",
        home.head(),
        &text,
        &slipped,
        &in_force,
        &common::now_text(),
    );
    let forced = home.force_append(
        "policy-adopted",
        Some("POL-2"),
        "sofia",
        &body,
        &ssh_sign(&home.demo_key("sofia"), &body),
    );
    assert_refusal(
        &home.run(&["verify"]),
        &[
            &format!("FAILED at entry {forced} (policy-adopted on POL-2)"),
            "allowed_signers are not the keys of the policy it adopts",
        ],
    );

    // Forced into a store: a decision signed under a policy that was not in force.
    let home = Home::demo();
    let (body, sig) = hand_signed_decision(
        &home,
        "devi",
        "CR-1044",
        "request-changes",
        "risk-reviewer",
        "sha256:0000",
    );
    let forced = home.force_append("decision", Some("CR-1044"), "devi", &body, &sig);
    assert_refusal(
        &home.run(&["verify"]),
        &[
            &format!("FAILED at entry {forced}"),
            "policy-violation",
            "signed under policy sha256:0000",
        ],
    );
}

/// A `policy-adopted` body, hand-made as JSON, adopting `text` from POL-2 revision 1 as
/// version 2 in place of `previous_digest`: by `who` (with their demo key's fingerprint),
/// as the entry after `after` (its position and hash), recording `allowed_signers`.
fn hand_made_adoption(
    home: &Home,
    who: &str,
    after: (u64, Option<String>),
    text: &str,
    allowed_signers: &str,
    previous_digest: &str,
    at: &str,
) -> String {
    let (seq, prev) = after;
    tollgate::audit::canonical::to_canonical_string(&json!({
        "type": "policy-adopted", "format": 1, "seq": seq + 1, "prev": prev, "version": 2,
        "policy_text": text, "policy_digest": tollgate::audit::canonical::sha256_digest(text.as_bytes()),
        "allowed_signers": allowed_signers,
        "previous_digest": previous_digest, "cr_id": "POL-2", "cr_revision": 1,
        "cr_digest": home.run(&["show", "POL-2", "--json"]).ok().json()["digest"],
        "migration": false, "principal": who,
        "key_fingerprint": ssh_fingerprint(&home.demo_key(who)),
        "at": at,
    }))
}

/// The allowed_signers an adoption of `text` records.
fn signers(text: &str) -> String {
    tollgate::audit::keys::allowed_signers(&tollgate::domain::policy::parse_policy(text).unwrap().0)
}

fn in_force_of(home: &Home) -> String {
    home.run(&["policy", "show", "--json"]).ok().json()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_policy_change_goes_through_the_team_server() {
    let home = Home::demo();
    let tokens: Vec<(&str, String)> = ["marco", "lena", "sofia", "jonas"]
        .into_iter()
        .map(|who| (who, home.token(who)))
        .collect();
    let token = |who: &str| tokens.iter().find(|(w, _)| *w == who).unwrap().1.clone();
    let server = home.serve("127.0.0.1:0");
    let client = Home::new();
    // The client proposes from its own copy of the file; the server checks the proposal.
    let rotated = without_marco_on_call(&home);
    let file = client.write("rotation.toml", rotated.as_bytes());
    let remote = |who: &str, args: &[&str]| {
        let key = home.demo_key(who);
        let key = key.to_str().unwrap().to_string();
        let mut v: Vec<String> = vec!["--key".into(), key];
        v.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        client.remote(&server.url, &token(who), &refs)
    };
    let run = remote(
        "marco",
        &["policy", "propose", &file, "--rationale", "rotation"],
    )
    .ok();
    assert!(run.stdout.starts_with("POL-2: proposed"), "{}", run.stdout);
    // A hand-made proposal in someone else's name is refused by the server.
    let mut doc = home.run(&["show", "POL-2", "--json"]).ok().json()["document"].clone();
    doc["id"] = json!("POL-3");
    doc["requester"] = json!("lena");
    let r = http()
        .post(format!("{}/v1/change-requests", server.url))
        .bearer_auth(token("jonas"))
        .json(&doc)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().unwrap()["rule"], "proposer-is-submitter");

    remote(
        "lena",
        &["approve", "POL-2", "--role", "lead", "--rationale", "ok"],
    )
    .ok();
    let done = remote(
        "sofia",
        &["approve", "POL-2", "--role", "lead", "--rationale", "ok"],
    )
    .ok();
    assert!(
        done.stdout.contains("POL-2 adopted: policy version 2"),
        "{}",
        done.stdout
    );
    let shown = remote("jonas", &["policy", "show", "--json"]).ok().json();
    assert_eq!(shown["version"], 2);
    // The server rewrote its own file; its log verifies.
    assert_eq!(
        std::fs::read_to_string(home.path("tollgate.policy.toml")).unwrap(),
        rotated
    );
    drop(server);
    assert_eq!(
        home.verified_entries(),
        DEMO_ENTRIES + POLICY_CHANGE_ENTRIES
    );
}

#[test]
fn a_revoked_key_is_named_for_every_entry_it_signed_after_its_revocation() {
    let home = Home::demo();
    home.decide(
        "devi",
        "request-changes",
        "CR-1044",
        &["--rationale", "before the leak"],
    )
    .ok();
    let leaked_at = home.head().0 + 1;
    home.decide(
        "devi",
        "request-changes",
        "CR-1042",
        &["--rationale", "after the leak?"],
    )
    .ok();
    // devi's key leaked: the change replaces it and revokes the old one from the entry
    // where the leak began.
    let old = std::fs::read_to_string(home.path("tollgate.demo-keys/devi.pub")).unwrap();
    let (new_key, new_line) = home.ssh_keygen("devi-new");
    let text = home.policy_text().replace(old.trim(), &new_line)
        + &format!(
            "\n[[revoked_keys]]\nkey = \"{}\"\nsince_entry = {leaked_at}\nreason = \"laptop stolen\"\n",
            old.trim()
        );
    home.adopt_policy(&text, "revoke devi's stolen key");
    let run = home.run(&["verify"]);
    assert_refusal(
        &run,
        &[
            "1 entry was signed by a revoked key after its revocation",
            &format!("entry {leaked_at} (decision)"),
            "laptop stolen",
        ],
    );
    assert!(
        !run.stderr
            .contains(&format!("entry {} (decision)", leaked_at - 1))
    );
    let v = home.run(&["verify", "--json"]).json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["revoked"].as_array().unwrap().len(), 1);
    assert_eq!(v["revoked"][0]["seq"], leaked_at);
    assert_eq!(v["revoked"][0]["problem"], "revoked-key");
    // The old key can no longer sign; the new one can.
    let refused = home.decide("devi", "reject", "CR-1045", &["--rationale", "x"]);
    assert_refusal(&refused, &["not in the policy"]);
    home.run(&[
        "--key",
        new_key.to_str().unwrap(),
        "request-changes",
        "CR-1045",
        "--rationale",
        "signed with the new key",
    ])
    .ok();
}

#[test]
fn a_key_revoked_from_a_time_is_named_for_what_it_signed_after_that_time() {
    // The store is set up before the signing times the test plays out.
    let home = Home::new();
    home.command(&["demo"])
        .env("TOLLGATE_NOW", "2026-11-26T08:00:00Z")
        .output()
        .unwrap();
    let at = |time: &str, cr: &str| -> common::Run {
        home.command(&["--as", "marco", "request-changes", cr, "--rationale", "p99"])
            .env("TOLLGATE_NOW", time)
            .output()
            .unwrap()
            .into()
    };
    at("2026-11-26T09:00:00Z", "CR-1046").ok();
    at("2026-11-26T13:00:00Z", "CR-1042").ok();
    let after = home.head().0;
    let old = std::fs::read_to_string(home.path("tollgate.demo-keys/marco.pub")).unwrap();
    // The key is dropped (marco stays a principal without it) and revoked from 11:00.
    let text = home
        .policy_text()
        .replace(&format!("keys = [\"{}\"]\n", old.trim()), "")
        + &format!(
            "\n[[revoked_keys]]\nkey = \"{}\"\nsince = \"2026-11-26T11:00:00Z\"\nreason = \"key found in a public repository\"\n",
            old.trim()
        );
    home.adopt_policy(&text, "revoke marco's leaked key");
    let v = home.run(&["verify", "--json"]).json();
    assert_eq!(v["ok"], false);
    let named: Vec<u64> = v["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(named, [after], "only what it signed after 11:00");
    // A revoked key that is not a valid OpenSSH key cannot be adopted: it could never be
    // checked.
    let broken = home
        .policy_text()
        .replace(old.trim(), "ssh-ed25519 AAAAAAAAAAAAAAAAAAAAAAAA");
    let file = home.write("broken.toml", broken.as_bytes());
    assert_refusal(
        &home.run(&["--as", "lena", "policy", "propose", &file]),
        &[
            "[policy-invalid]",
            "revoked key 0: not a valid OpenSSH public key",
        ],
    );
}

/// A copy of the store committed as made by the release before policy entries.
fn previous_release_store() -> Home {
    let home = Home::new();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-policy-log");
    for name in ["tollgate.db", "tollgate.policy.toml"] {
        std::fs::copy(fixture.join(name), home.path(name)).unwrap();
    }
    let keys = home.path("tollgate.demo-keys");
    std::fs::create_dir(&keys).unwrap();
    for e in std::fs::read_dir(fixture.join("tollgate.demo-keys")).unwrap() {
        let e = e.unwrap();
        let to = keys.join(e.file_name());
        std::fs::copy(e.path(), &to).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    home
}

#[test]
fn a_store_made_by_the_previous_release_is_migrated_by_the_first_signer() {
    let home = previous_release_store();
    // Read commands work read-only, and say so.
    let list = home.run(&["list"]).ok();
    assert!(list.stdout.contains("CR-1042"), "{}", list.stdout);
    assert!(
        list.stderr.contains("predates policy entries"),
        "{}",
        list.stderr
    );
    let v = home.run(&["verify", "--json"]).ok().json();
    assert_eq!(v["entries"], 8);
    assert_eq!(v["unmigrated"], true);
    let shown = home.run(&["policy", "show"]).ok().stdout;
    assert!(shown.contains("no policy in the log yet"), "{shown}");
    // `demo` on it says what to do instead of mixing old and new.
    assert_refusal(
        &home.run(&["demo"]),
        &["made by an earlier tollgate", "tollgate demo --reset"],
    );

    // The first command that signs records the file as the genesis, at the end of the log.
    let run = home
        .decide(
            "kai",
            "approve",
            "CR-1042",
            &["--role", "data-reviewer", "--rationale", "lineage ok"],
        )
        .ok();
    assert!(
        run.stderr
            .contains("recorded as the genesis policy at entry 9"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("adopted at migration"),
        "{}",
        run.stderr
    );
    let v = home.run(&["verify", "--json"]).ok().json();
    assert_eq!(v["entries"], 10);
    assert_eq!(v["policies"][0]["seq"], 9);
    assert_eq!(v["policies"][0]["migration"], true);
    let text = home.run(&["verify"]).ok().stdout;
    assert!(text.contains("adopted at migration"), "{text}");
    // The earlier decisions and the rollback still count under it.
    let shown = home.run(&["show", "CR-1042", "--json"]).ok().json();
    assert_eq!(
        shown["signoffs"]["obtained"], 2,
        "devi's earlier sign-off and kai's"
    );
    assert_eq!(
        home.run(&["exceptions", "--all", "--json"]).ok().json()[0]["opened_by"],
        "marco"
    );
    // Once migrated, `demo` opens it as any demo store.
    home.run(&["demo"]).ok();
}

#[test]
fn a_migration_stops_when_the_policy_could_never_change_and_names_who_to_add() {
    let home = previous_release_store();
    let policy = home.path("tollgate.policy.toml");
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("roles = [\"approver\", \"lead\"]", "roles = [\"approver\"]");
    std::fs::write(&policy, text).unwrap();
    let run = home.run(&["--as", "lena", "migrate"]);
    assert_refusal(
        &run,
        &[
            "cannot migrate",
            "[policy-ungovernable]",
            "lead: lena",
            "add principals",
        ],
    );
    let v = home.run(&["verify", "--json"]).ok().json();
    assert_eq!(v["entries"], 8, "the store is untouched");
    assert_eq!(v["unmigrated"], true);
    // --reset starts a demo afresh.
    let run = home.run(&["demo", "--reset"]).ok();
    assert!(
        run.stdout.contains("removed the demo store"),
        "{}",
        run.stdout
    );
    assert_eq!(home.verified_entries(), DEMO_ENTRIES);
}

#[test]
fn an_export_spanning_a_policy_change_is_checked_by_its_own_script() {
    let home = Home::demo();
    home.decide(
        "devi",
        "request-changes",
        "CR-1044",
        &["--rationale", "under version 1"],
    )
    .ok();
    // devi rotates to a new key through a policy change, then signs with it.
    let old = std::fs::read_to_string(home.path("tollgate.demo-keys/devi.pub")).unwrap();
    let (new_key, new_line) = home.ssh_keygen("devi-new");
    home.adopt_policy(
        &home.policy_text().replace(old.trim(), &new_line),
        "devi rotates her key",
    );
    home.run(&[
        "--key",
        new_key.to_str().unwrap(),
        "request-changes",
        "CR-1044",
        "--rationale",
        "under version 2",
    ])
    .ok();
    home.verified_entries();
    let dir = home.path("audit");
    let run = home
        .run(&["export", "--cr", "CR-1044", "--out", dir.to_str().unwrap()])
        .ok();
    assert!(
        run.stdout.contains("policies/ (2 version(s))"),
        "{}",
        run.stdout
    );
    let script = |dir: &std::path::Path| Home::verify_sh(dir, dir);
    let out = script(&dir).ok();
    assert!(
        out.stdout.contains("entries verified, chain intact"),
        "{}",
        out.stdout
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["policies"].as_array().unwrap().len(), 2);
    // The keys come from the signed adoptions, not from files beside them: a shipped
    // allowed_signers that differs is named, and cannot change what verifies.
    std::fs::copy(
        dir.join("policies/v1.allowed_signers"),
        dir.join("policies/v2.allowed_signers"),
    )
    .unwrap();
    std::fs::write(dir.join("policies/v2.toml"), "version = 1\n").unwrap();
    let out = script(&dir);
    assert_eq!(out.code, 1);
    let stdout = &out.stdout;
    assert!(
        stdout.contains("policies/v2.allowed_signers are not the keys this entry adopted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("policies/v2.toml is not the policy this entry adopted"),
        "{stdout}"
    );
    assert!(!stdout.contains("bad signature"), "{stdout}");
    // Each version's keys judge only their own entries: the entry signed with devi's new
    // key, put where version 1 was in force, fails.
    let entries = std::fs::read_to_string(dir.join("entries.jsonl")).unwrap();
    let lines: Vec<&str> = entries.lines().collect();
    let adoption = lines
        .iter()
        .rposition(|l| l.contains("\"kind\":\"policy-adopted\""))
        .unwrap();
    let mut moved: Vec<&str> = lines.clone();
    let last = moved.remove(lines.len() - 1);
    moved.insert(adoption, last);
    std::fs::write(dir.join("entries.jsonl"), moved.join("\n") + "\n").unwrap();
    let out = script(&dir);
    assert!(
        out.stdout.contains("bad signature under policy version 1"),
        "{}",
        out.stdout
    );
    // Run from another directory, it checks its own files all the same.
    let out = Home::verify_sh(&dir, &home.path(""));
    assert!(
        out.stdout.contains("bad signature under policy version 1"),
        "{}",
        out.stdout
    );
}

#[test]
fn required_artifacts_block_approval_until_the_cr_links_them() {
    let home = Home::demo();
    // CR-1042 (model gate, high risk) without its model card.
    let mut doc = common::fixture_json("CR-1042");
    doc["id"] = json!("CR-3001");
    let artifacts: Vec<Value> = doc["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] != "model_card")
        .cloned()
        .collect();
    doc["artifacts"] = json!(artifacts);
    let f = home.write_json("cr-3001.json", &doc);
    home.run(&["--as", "ci", "submit", &f]).ok();
    let list = home.run(&["list", "--json"]).ok().json();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "CR-3001")
        .unwrap()
        .clone();
    assert_eq!(row["blocked"], true);
    assert_eq!(row["missing_artifacts"], json!(["model_card"]));
    assert!(
        row["blockers"]
            .as_array()
            .unwrap()
            .contains(&json!("artifacts: missing model_card"))
    );
    // The fixtures link everything their gate and risk require.
    let fixtures = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"] != "CR-3001")
        .all(|r| r["missing_artifacts"] == json!([]));
    assert!(fixtures);
    let shown = home.run(&["show", "CR-3001"]).ok().stdout;
    assert!(
        shown.contains("approval blocked by: artifacts: missing model_card"),
        "{shown}"
    );
    let refused = home.decide(
        "devi",
        "approve",
        "CR-3001",
        &[
            "--tick",
            "privacy",
            "--tick",
            "rollback",
            "--rationale",
            "x",
        ],
    );
    assert_refusal(
        &refused,
        &[
            "[missing-artifacts]",
            "must link model_card, validation_report",
        ],
    );
    home.decide(
        "devi",
        "reject",
        "CR-3001",
        &["--rationale", "no model card"],
    )
    .ok();
    // With the card linked, a new revision no longer blocks on it.
    doc["artifacts"] = common::fixture_json("CR-1042")["artifacts"].clone();
    let f = home.write_json("cr-3001.json", &doc);
    home.run(&["--as", "ci", "submit", &f]).ok();
    let shown = home.run(&["show", "CR-3001", "--json"]).ok().json();
    assert_eq!(shown["missing_artifacts"], json!([]));
}

#[test]
fn a_submission_migrates_an_old_store_when_its_submitter_can_sign() {
    let home = previous_release_store();
    let mut doc = common::fixture_json("CR-1045");
    doc["id"] = json!("CR-3002");
    let file = home.write_json("cr.json", &doc);
    // No key at hand: stored all the same, unmigrated, and said.
    let run = home.run(&["submit", &file]).ok();
    assert!(run.stdout.contains("CR-3002: created"), "{}", run.stdout);
    assert!(run.stderr.contains("was not migrated"), "{}", run.stderr);
    assert_eq!(
        home.run(&["verify", "--json"]).ok().json()["unmigrated"],
        true
    );
    // With a key of the policy: migrated first.
    doc["id"] = json!("CR-3003");
    let file = home.write_json("cr.json", &doc);
    let run = home.run(&["--as", "jonas", "submit", &file]).ok();
    assert!(
        run.stderr.contains("recorded as the genesis policy"),
        "{}",
        run.stderr
    );
    let v = home.run(&["verify", "--json"]).ok().json();
    assert_eq!(v["unmigrated"], false);
    assert_eq!(v["policies"][0]["migration"], true);
}

#[test]
fn a_reviewer_who_leaves_keeps_the_sign_offs_they_gave() {
    let home = Home::demo();
    home.decide(
        "devi",
        "approve",
        "CR-1042",
        &[
            "--tick",
            "privacy",
            "--tick",
            "rollback",
            "--rationale",
            "shifts explained",
        ],
    )
    .ok();
    // devi leaves: her principal is removed from the policy, noor takes over her role.
    let text = home.policy_text();
    let start = text.find("[[principals]]\nid = \"devi\"").unwrap();
    let end = start + 1 + text[start + 1..].find("[[principals]]").unwrap();
    let without_devi = format!("{}{}", &text[..start], &text[end..]).replace(
        "roles = [\"lead\"]",
        "roles = [\"lead\", \"risk-reviewer\"]",
    );
    home.adopt_policy(&without_devi, "devi left the company");
    let shown = home.run(&["show", "CR-1042", "--json"]).ok().json();
    assert_eq!(shown["signoffs"]["obtained"], 1, "{shown}");
    assert_eq!(shown["decisions"][0]["principal"], "devi");
    assert!(shown["discounted_decisions"].as_array().unwrap().is_empty());
    home.verified_entries();
    // ...and she can no longer sign.
    assert_refusal(
        &home.decide("devi", "reject", "CR-1044", &["--rationale", "x"]),
        &["is not in the policy"],
    );
}

#[test]
fn revisions_from_before_provenance_keep_their_checks_counted_and_say_so() {
    let home = previous_release_store();
    let shown = home.run(&["show", "CR-1045", "--json"]).ok().json();
    let performance = common::checklist_item(&shown, "performance").clone();
    // Stored before submitters were recorded: the check still counts as CI's.
    assert_eq!(performance["state"], "pass", "{performance}");
    assert!(
        !performance["detail"]
            .as_str()
            .unwrap_or("")
            .contains("self-reported"),
        "{performance}"
    );
}
