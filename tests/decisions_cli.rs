//! Recording decisions from the CLI: every policy rule refuses with its name and what
//! would satisfy it, refused decisions leave no trace, and sign-offs drive the status.

mod common;

use common::{Home, assert_refusal, fixture_json};
use serde_json::json;

const OK: &[&str] = &[
    "--rationale",
    "Evidence reviewed; shifts explained by the new features.",
];

fn row(home: &Home, id: &str) -> serde_json::Value {
    let list = home.run(&["list", "--json"]).ok().json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .unwrap()
}

#[test]
fn the_requester_cannot_decide_on_their_own_change() {
    let home = Home::demo();
    let before = home.verified_entries();
    let run = home.decide("priya", "approve", "CR-1042", OK);
    assert_refusal(
        &run,
        &[
            "priya requested CR-1042 and cannot decide on it",
            "[requester-cannot-sign]",
            "ask a reviewer",
        ],
    );
    assert_eq!(
        home.verified_entries(),
        before,
        "a refused decision leaves no trace"
    );
}

#[test]
fn the_signer_must_hold_the_role() {
    let home = Home::demo();
    let run = home.decide(
        "devi",
        "reject",
        "CR-1042",
        &["--role", "approver", "--rationale", "no"],
    );
    assert_refusal(
        &run,
        &[
            "devi does not hold the approver role (holds: risk-reviewer)",
            "[role-not-held]",
        ],
    );
}

#[test]
fn one_person_fills_at_most_one_required_signoff() {
    let home = Home::demo();
    // CR-1042 (model, high) needs data-reviewer, risk-reviewer, ops-reviewer and approver.
    // Give lena (approver) the risk-reviewer role too, through the policy's own change path.
    let policy = home.policy_text().replace(
        "roles = [\"approver\", \"on-call\", \"lead\"]",
        "roles = [\"approver\", \"on-call\", \"lead\", \"risk-reviewer\"]",
    );
    assert!(
        policy.contains("\"lead\", \"risk-reviewer\"]"),
        "lena's roles line"
    );
    home.adopt_policy(&policy, "lena covers risk review");
    let approve = |role: &str, why: &str| {
        home.decide(
            "lena",
            "approve",
            "CR-1042",
            &[
                "--role",
                role,
                "--tick",
                "privacy",
                "--tick",
                "rollback",
                "--rationale",
                why,
            ],
        )
    };
    approve("approver", "ok").ok();
    // The same person, the same role again.
    assert_refusal(
        &approve("approver", "again"),
        &[
            "already approved this revision of CR-1042 as approver",
            "[already-approved]",
        ],
    );
    // The same person, a second role she holds: still one sign-off.
    assert_refusal(
        &approve("risk-reviewer", "and as risk"),
        &[
            "lena already signed off CR-1042 as approver",
            "one person fills at most one required sign-off",
            "[one-signoff-per-person]",
        ],
    );
    assert_eq!(row(&home, "CR-1042")["signoffs"]["obtained"], 1);
    // Someone else in that role counts.
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
            "fine",
        ],
    )
    .ok();
    assert_eq!(row(&home, "CR-1042")["signoffs"]["obtained"], 2);
}

/// A reviewer's later decision replaces their earlier one, ticks and all: the next
/// reviewer's record shows the item unticked again, and `verify` re-derives exactly that
/// (it keeps only each person's last decision per revision, and must keep the last).
#[test]
fn a_later_decision_without_ticks_unticks_what_the_earlier_one_ticked() {
    let home = Home::demo();
    let item_state = |id: &str| -> String {
        let shown = home.run(&["show", "CR-1045", "--json"]).ok().json();
        let items = shown["checklist"]["items"].as_array().unwrap().clone();
        let item = items.iter().find(|i| i["id"] == id).unwrap();
        item["state"].as_str().unwrap().to_string()
    };
    assert_eq!(item_state("privacy"), "unticked");
    let decide = |who: &str, extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend_from_slice(&["--rationale", "reviewed"]);
        home.decide(who, "request-changes", "CR-1045", &args).ok();
    };
    decide("devi", &["--tick", "privacy"]);
    assert_eq!(item_state("privacy"), "ticked");
    decide("devi", &[]);
    assert_eq!(item_state("privacy"), "unticked");
    decide("marco", &["--role", "ops-reviewer"]);
    home.run(&["verify"]).ok();
}

#[test]
fn approval_is_refused_while_blocking_evidence_fails_but_rejection_is_allowed() {
    let home = Home::demo();
    let run = home.decide(
        "marco",
        "approve",
        "CR-1046",
        &["--tick", "rollback", "--rationale", "fine"],
    );
    assert_refusal(
        &run,
        &[
            "operational is fail",
            "[blocking-evidence]",
            "rejecting or requesting changes is still possible",
        ],
    );
    // Without the tick, both rules are named at once.
    let both = home.decide("marco", "approve", "CR-1046", &["--rationale", "fine"]);
    assert_refusal(
        &both,
        &[
            "[blocking-evidence]",
            "[unticked-blocking-item]",
            "--tick rollback",
        ],
    );
    let run = home
        .decide(
            "marco",
            "reject",
            "CR-1046",
            &["--rationale", "p99 97 ms breaks the 90 ms SLO"],
        )
        .ok();
    assert!(
        run.stdout
            .contains("CR-1046: reject as ops-reviewer by marco"),
        "{}",
        run.stdout
    );
    assert_eq!(row(&home, "CR-1046")["status"], "rejected");
}

#[test]
fn approval_needs_blocking_manual_items_ticked() {
    let home = Home::demo();
    let run = home.decide(
        "devi",
        "approve",
        "CR-1042",
        &["--tick", "privacy", "--rationale", "ok"],
    );
    assert_refusal(
        &run,
        &[
            "rollback unticked",
            "[unticked-blocking-item]",
            "--tick rollback",
        ],
    );
    let run = home.decide(
        "devi",
        "approve",
        "CR-1042",
        &[
            "--tick",
            "privacy",
            "--tick",
            "rollback=validated in staging 2026-11-19",
            "--rationale",
            "ok",
        ],
    );
    run.ok();
    let shown = home.run(&["show", "CR-1042", "--json"]).ok().json();
    let rollback = common::checklist_item(&shown, "rollback").clone();
    assert_eq!(rollback["state"], "ticked");
    assert_eq!(rollback["ticked_by"][0]["principal"], "devi");
    assert_eq!(
        rollback["ticked_by"][0]["note"],
        "validated in staging 2026-11-19"
    );
    // A later reviewer does not need to tick again.
    home.decide(
        "kai",
        "approve",
        "CR-1042",
        &[
            "--role",
            "data-reviewer",
            "--rationale",
            "data lineage checked",
        ],
    )
    .ok();
}

#[test]
fn ticks_must_be_manual_items_of_the_gate() {
    let home = Home::demo();
    let run = home.decide(
        "devi",
        "reject",
        "CR-1042",
        &["--tick", "fairness", "--rationale", "x"],
    );
    assert_refusal(&run, &["fairness is automated", "[automated-item]"]);
    let run = home.decide(
        "devi",
        "reject",
        "CR-1042",
        &["--tick", "privcy", "--rationale", "x"],
    );
    assert_refusal(
        &run,
        &[
            "no checklist item \"privcy\"",
            "tick one of: privacy, rollback, owner",
        ],
    );
}

#[test]
fn a_rationale_is_required() {
    let home = Home::demo();
    let run = home.decide("devi", "reject", "CR-1042", &["--rationale", "   "]);
    assert_refusal(&run, &["[rationale-required]"]);
    // Not on a terminal and no rationale given: say how to give one instead of hanging.
    let run = home.decide("devi", "reject", "CR-1042", &[]);
    assert_refusal(
        &run,
        &["a rationale is required: pass --rationale TEXT or --rationale-file FILE"],
    );
    let file = home.write("why.txt", b"PII review missing for the vendor feed.\n");
    home.decide(
        "devi",
        "request-changes",
        "CR-1044",
        &["--rationale-file", &file],
    )
    .ok();
    let shown = home.run(&["show", "CR-1044", "--json"]).ok().json();
    assert_eq!(
        shown["decisions"][0]["rationale"],
        "PII review missing for the vendor feed."
    );
    assert_eq!(shown["status"], "changes-requested");
}

#[test]
fn required_signoffs_from_distinct_people_approve_the_change() {
    let home = Home::demo();
    let tick = ["--tick", "privacy", "--tick", "rollback"];
    for (who, role) in [
        ("kai", "data-reviewer"),
        ("devi", "risk-reviewer"),
        ("marco", "ops-reviewer"),
    ] {
        let mut args = vec!["--role", role, "--rationale", "checked"];
        args.extend_from_slice(&tick);
        home.decide(who, "approve", "CR-1042", &args).ok();
        assert_eq!(row(&home, "CR-1042")["status"], "pending");
    }
    home.decide(
        "sofia",
        "approve",
        "CR-1042",
        &["--rationale", "all four sign-offs in"],
    )
    .ok();
    let r = row(&home, "CR-1042");
    assert_eq!(r["status"], "approved");
    assert_eq!(r["signoffs"]["obtained"], 4);
    let approved = home
        .run(&["list", "--status", "approved", "--json"])
        .ok()
        .json();
    assert_eq!(approved.as_array().unwrap().len(), 1);
    assert_eq!(
        home.verified_entries(),
        1 + 5 + 4,
        "the genesis, five submissions, four decisions"
    );
}

#[test]
fn a_revision_makes_earlier_signoffs_stale() {
    let home = Home::demo();
    // CR-1045 carries no latency evidence: approval waits for it.
    let run = home.decide(
        "devi",
        "approve",
        "CR-1045",
        &[
            "--tick",
            "privacy",
            "--tick",
            "rollback",
            "--rationale",
            "tiny change",
        ],
    );
    assert_refusal(&run, &["operational is missing", "[blocking-evidence]"]);
    home.decide(
        "devi",
        "reject",
        "CR-1045",
        &["--rationale", "latency evidence missing"],
    )
    .ok();
    assert_eq!(row(&home, "CR-1045")["status"], "rejected");
    let before = home.run(&["show", "CR-1045", "--json"]).ok().json();
    let old_digest = before["digest"].as_str().unwrap().to_string();

    let mut revised = fixture_json("CR-1045");
    revised["checks"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "latency", "status": "pass", "detail": "batch job, no online latency"}));
    let f = home.write_json("revised.json", &revised);
    home.run(&["--as", "ci", "submit", &f]).ok();

    let after = home.run(&["show", "CR-1045", "--json"]).ok().json();
    assert_eq!(
        after["status"], "pending",
        "a stale rejection no longer counts"
    );
    assert_eq!(
        after["discounted_decisions"][0]["reason"],
        "stale: made on an earlier revision of the CR"
    );
    // Approving while pinning the digest one reviewed is refused once the CR changed.
    let run = home.decide(
        "devi",
        "approve",
        "CR-1045",
        &[
            "--digest",
            &old_digest,
            "--tick",
            "privacy",
            "--tick",
            "rollback",
            "--rationale",
            "ok",
        ],
    );
    assert_refusal(
        &run,
        &["CR-1045 changed since you reviewed it", "review it again"],
    );
    let current = after["digest"].as_str().unwrap();
    home.decide(
        "devi",
        "approve",
        "CR-1045",
        &[
            "--digest",
            current,
            "--tick",
            "privacy",
            "--tick",
            "rollback",
            "--rationale",
            "ok",
        ],
    )
    .ok();
    assert_eq!(row(&home, "CR-1045")["status"], "approved");
}

#[test]
fn an_unknown_key_is_told_which_line_to_add() {
    let home = Home::demo();
    let key = home.path("stranger");
    home.run(&[
        "keygen",
        "--output",
        key.to_str().unwrap(),
        "--comment",
        "stranger",
    ])
    .ok();
    let run = home.run(&[
        "--key",
        key.to_str().unwrap(),
        "reject",
        "CR-1042",
        "--rationale",
        "x",
    ]);
    assert_refusal(
        &run,
        &[
            "is not in the policy; add this line",
            "keys = [\"ssh-ed25519 AAAA",
        ],
    );
    let run = home.run(&["--as", "nobody", "whoami"]);
    assert_refusal(&run, &["no demo identity \"nobody\""]);
}

#[test]
fn keygen_writes_a_private_key_once_and_prints_the_policy_line() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    let run = home.run(&["keygen", "--comment", "devi@laptop"]).ok();
    let key = home.path("id_ed25519");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let public = std::fs::read_to_string(home.path("id_ed25519.pub")).unwrap();
    assert!(public.starts_with("ssh-ed25519 AAAA") && public.trim_end().ends_with("devi@laptop"));
    assert!(
        run.stdout
            .contains(&format!("keys = [\"{}\"]", public.trim())),
        "{}",
        run.stdout
    );
    let again = home.run(&["keygen"]);
    assert_refusal(&again, &["a key already exists there"]);
    assert_eq!(
        std::fs::read_to_string(home.path("id_ed25519.pub")).unwrap(),
        public
    );
}
