//! The decision history for leads from the CLI: listings and filters, CSV and JSON, the
//! governance-health figures, the audit export checked against known decisions, and a
//! tampered log shown as broken.

mod common;

use common::{Home, assert_refusal};

/// A demo store with four known decisions (entries 7–10, after the genesis policy and the
/// five sample CRs).
/// When the demo store is made (every sample CR is submitted then).
const T0: &str = "2026-11-02T09:00:00Z";

/// `hours` after [`T0`].
fn at(hours: i64) -> String {
    (T0.parse::<chrono::DateTime<chrono::Utc>>().unwrap() + chrono::Duration::hours(hours))
        .to_rfc3339()
}

/// The demo store at T0 and four decisions one hour apart: lead times 1, 2, 3 and 4 h, all
/// on high-risk CRs. Fixed times, so no result depends on when the test runs.
fn home_with_history() -> Home {
    let mut home = Home::demo_at(T0);
    let tick = ["--tick", "privacy=no PII in features", "--tick", "rollback"];
    let mut args = vec!["--rationale", "Shifts explained by the new features"];
    args.extend_from_slice(&tick);
    home.now = Some(at(1));
    home.decide("devi", "approve", "CR-1042", &args).ok();
    home.now = Some(at(2));
    home.decide(
        "kai",
        "approve",
        "CR-1042",
        &["--role", "data-reviewer", "--rationale", "lineage checked"],
    )
    .ok();
    home.now = Some(at(3));
    home.decide(
        "marco",
        "reject",
        "CR-1046",
        &["--rationale", "p99 97 ms breaks the 90 ms SLO"],
    )
    .ok();
    home.now = Some(at(4));
    home.decide(
        "devi",
        "request-changes",
        "CR-1044",
        &["--rationale", "per-language FPR report missing"],
    )
    .ok();
    home
}

#[test]
fn history_lists_every_decision_with_context_and_verification() {
    let home = home_with_history();
    let run = home.run(&["history"]).ok();
    assert!(
        run.stdout
            .starts_with("audit log verified: 10 entries, 10 signatures"),
        "{}",
        run.stdout
    );
    for want in [
        "CR-1042   fraud-detector@prod    approve          devi     risk-reviewer  high",
        "CR-1046   recommender@prod       reject           marco    ops-reviewer   high",
        "CR-1044   spam-classifier@prod   request-changes  devi     risk-reviewer  high",
        "4 of 4 decisions shown",
    ] {
        assert!(
            run.stdout.contains(want),
            "missing {want:?}:\n{}",
            run.stdout
        );
    }
    assert_eq!(run.stdout.matches("verified\n").count(), 4);
}

#[test]
fn history_filters_combine_and_formats_are_machine_readable() {
    let home = home_with_history();
    let json = home
        .run(&["history", "--principal", "devi", "--json"])
        .ok()
        .json();
    let decisions = json["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2);
    assert!(
        decisions
            .iter()
            .all(|d| d["principal"] == "devi" && d["verification"] == "verified")
    );
    assert_eq!(json["audit_log"]["entries"], 10);

    let json = home
        .run(&["history", "--verdict", "reject", "--json"])
        .ok()
        .json();
    assert_eq!(json["decisions"][0]["cr_id"], "CR-1046");
    let json = home
        .run(&["history", "--subject", "fraud", "--gate", "model", "--json"])
        .ok()
        .json();
    assert_eq!(json["decisions"].as_array().unwrap().len(), 2);
    let json = home
        .run(&["history", "--search", "spam", "--json"])
        .ok()
        .json();
    assert_eq!(json["decisions"].as_array().unwrap().len(), 1);
    let json = home
        .run(&["history", "--since", "2099-01-01", "--json"])
        .ok()
        .json();
    assert!(json["decisions"].as_array().unwrap().is_empty());

    let csv = home.run(&["history", "--csv"]).ok().stdout;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "header + 4 decisions");
    assert!(lines[0].starts_with("seq,at,cr_id,cr_revision,subject"));
    assert!(lines[1].starts_with("7,"), "{}", lines[1]);
    assert!(
        lines[1].contains(",approve,devi,risk-reviewer,"),
        "{}",
        lines[1]
    );
    // The rationale is the last column, as signed; --json carries it too.
    assert!(lines[0].ends_with(",hash,rationale"), "{}", lines[0]);
    let json = home.run(&["history", "--json"]).ok().json();
    let first = &json["decisions"][0];
    let said = first["rationale"].as_str().unwrap();
    assert!(!said.is_empty());
    assert!(
        lines[1].ends_with(said) || lines[1].contains(said),
        "{}",
        lines[1]
    );
    let bad = home.run(&["history", "--risk", "severe"]);
    assert_eq!(bad.code, 2);
}

#[test]
fn health_reports_rates_and_lead_times_by_risk() {
    let home = home_with_history();
    let h = home.run(&["health", "--json"]).ok().json();
    assert_eq!(h["decisions"], 4);
    assert!((h["approval_rate"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    assert!((h["rejection_rate"].as_f64().unwrap() - 0.25).abs() < 1e-9);
    let high = h["lead_times"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["risk"] == "high")
        .unwrap()
        .clone();
    assert_eq!(high["decisions"], 4);
    // Lead times 1, 2, 3, 4 h: nearest-rank median 2 h, p90 4 h.
    assert_eq!(high["median_secs"], 2 * 3600);
    assert_eq!(high["p90_secs"], 4 * 3600);
    // CR-1045 (low risk) is pending; 30 hours after submission it counts as over-governed.
    let out: common::Run = home
        .command(&["health"])
        .env("TOLLGATE_NOW", at(30))
        .output()
        .unwrap()
        .into();
    let out = out.ok();
    assert!(
        out.stdout
            .contains("Over-governance: 1 low-risk change(s) waiting over 24 h: CR-1045"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("approve 50 %, reject 25 %, request changes 25 %"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_audit_export_answers_the_self_check_and_verifies_with_standard_tools() {
    let home = home_with_history();
    let dir = home.path("audit-CR-1042");
    let run = home
        .run(&["export", "--cr", "CR-1042", "--out", dir.to_str().unwrap()])
        .ok();
    assert!(
        run.stdout.contains(
            "entries.jsonl (4 entries about this report, in the chain of 8 from entry 1)"
        ),
        "{}",
        run.stdout
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for want in [
        "# tollgate audit report",
        "Audit log: verified — 10 entries, 10 signatures",
        "## CR-1042 — Promote fraud-detector v13 to production",
        "Effective **high** (computed high, declared medium)",
        "| devi | risk-reviewer | approve | 1 | yes | valid (SHA256:",
        "| kai | data-reviewer | approve | 1 | yes | valid (SHA256:",
        "obtained 2/4",
        "| Security/privacy: PII treatment verified | manual | yes | ticked | ticked by devi: no PII in features |",
        "- pull\\_request: fraud: add velocity features, retrain — <https://git.example.com/ml/fraud/pull/481>",
        "- code `git:4f2c9e1`",
        "- data `card-auth@2026-11-18`",
        "Re-point serving alias to v12; validated in staging on 2026-11-19 in 3 min.\n\nTested: **yes**",
        "None recorded for fraud-detector@prod.",
        "ssh-keygen -Y verify -f policies/vN.allowed_signers",
        "| 1 | 1 | lena | genesis | `sha256:",
    ] {
        assert!(md.contains(want), "report.md lacks {want:?}:\n{md}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let cr = &json["change_requests"][0];
    assert_eq!(cr["decisions"].as_array().unwrap().len(), 2);
    assert_eq!(cr["decisions"][0]["principal"], "devi");
    assert_eq!(cr["plan"]["rollback_tested"], true);
    assert_eq!(json["audit_log"]["first_bad"], serde_json::Value::Null);
    let about: Vec<u64> = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let entries = std::fs::read_to_string(dir.join("entries.jsonl")).unwrap();
    let lines: Vec<&str> = entries.lines().collect();
    let kind_of = |seq: u64| {
        serde_json::from_str::<serde_json::Value>(lines[seq as usize - 1]).unwrap()["kind"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        about.iter().map(|s| kind_of(*s)).collect::<Vec<_>>(),
        ["policy-adopted", "cr-submitted", "decision", "decision"],
        "the genesis tells the auditor's script which keys were in force"
    );
    assert_eq!(lines.len(), 8, "the whole chain up to the last of them");
    assert_eq!(json["chain"]["count"], 8);

    // The auditor's script, with jq, sha256sum and ssh-keygen only (scripts/test installs jq),
    // run from another directory.
    let elsewhere = home.path("");
    let out = Home::verify_sh(&dir, &elsewhere).ok();
    assert!(
        out.stdout.contains("all 8 entries verified, chain intact"),
        "{}",
        out.stdout
    );
    let broken = |name: &str, text: String, says: &str| {
        std::fs::write(dir.join("entries.jsonl"), text).unwrap();
        let out = Home::verify_sh(&dir, &elsewhere);
        assert_eq!(out.code, 1, "{name}: {}", out.stdout);
        assert!(out.stdout.contains(says), "{name}: {}", out.stdout);
        assert!(!out.stdout.contains("verified"), "{name}: {}", out.stdout);
    };
    // A line deleted, two lines swapped, the last line cut, one entry altered.
    let without = |skip: usize| {
        lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, l)| format!("{l}\n"))
            .collect::<String>()
    };
    broken("deleted", without(4), "entry 5: missing or out of place");
    let mut swapped = lines.clone();
    swapped.swap(5, 6);
    broken(
        "swapped",
        swapped.join("\n") + "\n",
        "entry 6: missing or out of place",
    );
    broken(
        "cut",
        without(7),
        "entries.jsonl holds 7 entries, report.json says 8",
    );
    broken(
        "altered",
        entries.replace("lineage checked", "lineage ignored"),
        "hash mismatch",
    );
    std::fs::remove_file(dir.join("entries.jsonl")).unwrap();
    let out = Home::verify_sh(&dir, &elsewhere);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("entries.jsonl is missing"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_period_export_includes_the_emergencies_opened_in_it() {
    let home = home_with_history();
    home.run(&[
        "--as",
        "lena",
        "rollback",
        "--yes",
        "recommender",
        "--env",
        "prod",
        "--incident",
        "INC-2291",
        "--reason",
        "conversion -10%",
    ])
    .ok();
    let today = T0[..10].to_string();
    let dir = home.path("audit-period");
    home.run(&[
        "export",
        "--since",
        &today,
        "--until",
        &today,
        "--out",
        dir.to_str().unwrap(),
    ])
    .ok();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("## Emergency exceptions in the period"), "{md}");
    assert!(md.contains("Incident **INC-2291**: opened by lena"), "{md}");
    assert!(
        md.contains("rollback recommender@prod 8 → 7 authorised by lena"),
        "{md}"
    );
    assert!(md.contains("## CR-1046"), "{md}");
}

#[test]
fn a_tampered_log_is_reported_as_broken_everywhere() {
    let home = home_with_history();
    let c = rusqlite::Connection::open(home.store()).unwrap();
    c.execute_batch("DROP TRIGGER log_is_append_only;").unwrap();
    c.execute(
        "UPDATE log SET body = replace(body, 'lineage checked', 'lineage ignored') WHERE seq = 8",
        [],
    )
    .unwrap();
    let run = home.run(&["history"]);
    assert_refusal(&run, &["AUDIT LOG BROKEN at entry 8: altered"]);
    assert!(
        run.stdout.starts_with("AUDIT LOG BROKEN at entry 8"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout.matches("UNVERIFIED").count(),
        3,
        "entries 8, 9, 10:\n{}",
        run.stdout
    );
    let dir = home.path("audit");
    let out = home
        .run(&["export", "--cr", "CR-1042", "--out", dir.to_str().unwrap()])
        .ok();
    assert!(
        out.stdout
            .contains("WARNING: the audit log is broken at entry 8"),
        "{}",
        out.stdout
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("**BROKEN at entry 8: altered"), "{md}");
}
