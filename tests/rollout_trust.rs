//! Trust nothing a client says, after approval: correctly signed rollout stages, KPI
//! readings, guard rollbacks, drills and approvals (made with `ssh-keygen -Y sign -n
//! tollgate`) that break a rule are refused by the server with the rule named, and when
//! forced straight into a store, `verify` names them.

mod common;

use common::site::Site;
use common::{assert_refusal, fixture_json, low_risk_cr, now_text, ssh_fingerprint};
use serde_json::{Value, json};
use tollgate::audit::canonical::to_canonical_string;

/// A demo site (real clock) whose CR-2045 — CR-1045 with the latency evidence it lacks,
/// requested by `requester` at `gate`, going to staging (the demo policy freezes prod on
/// Friday evenings and over the year end; these tests must not depend on the calendar)
/// — is approved by devi.
fn site_with_approved(tokens: &[&'static str], requester: &str, gate: &str) -> Site {
    let site = Site::with_tokens(tokens);
    let mut doc = low_risk_cr("CR-2045", requester, gate);
    doc["subject"]["environment"] = "staging".into();
    let file = site.home.write_json("CR-2045.json", &doc);
    site.home.run(&["--as", "ci", "submit", &file]).ok();
    let approve = [
        "--as",
        "devi",
        "approve",
        "CR-2045",
        "--tick",
        "privacy",
        "--tick",
        "rollback",
        "--rationale",
        "fine",
    ];
    let approve = if gate == "emergency" {
        vec![
            "--as",
            "lena",
            "approve",
            "CR-2045",
            "--rationale",
            "hotfix",
        ]
    } else {
        approve.to_vec()
    };
    site.home.run(&approve).ok();
    site
}

/// A `rollout-stage` body by `who` for CR-2045 as the next entry, signed now, then `edit`.
fn stage(site: &Site, who: &str, stage: &str, edit: impl FnOnce(&mut Value)) -> String {
    let (seq, prev) = site.home.head();
    let shown = site.home.run(&["show", "CR-2045", "--json"]).ok().json();
    let mut v = json!({
        "type": "rollout-stage", "format": 1, "seq": seq + 1, "prev": prev,
        "cr_id": "CR-2045", "cr_revision": shown["revision"], "cr_digest": shown["digest"],
        "stage": stage, "subject": "churn-predictor", "environment": "staging",
        "from_version": "21", "to_version": "22",
        "traffic": if stage == "canary" { 10 } else { 100 }, "note": "", "deploy": null,
        "principal": who, "key_fingerprint": ssh_fingerprint(&site.home.demo_key(who)),
        "policy_digest": site.in_force(), "at": now_text(),
    });
    edit(&mut v);
    to_canonical_string(&v)
}

fn assert_refused(answer: &(u16, Value), rule: &str) {
    assert_eq!(answer.0, 403, "{}", answer.1);
    assert_eq!(answer.1["rule"], rule, "{}", answer.1);
}

/// Posts `body` (refused with `rule`), then forces it into the store: `verify` names it.
fn refused_and_named(site: &Site, kind: &str, cr: Option<&str>, who: &str, body: &str, rule: &str) {
    let answer = site.post("/v1/emergency", kind, who, body);
    assert_refused(&answer, rule);
    let entries = site.home.verified_entries();
    let seq = site.force(kind, cr, who, body);
    assert_eq!(seq, entries + 1);
    assert_refusal(
        &site.home.run(&["verify"]),
        &[&format!("FAILED at entry {seq}"), &format!("[{rule}]")],
    );
}

#[test]
fn a_stage_by_the_requester_is_refused_and_named() {
    let site = site_with_approved(&["marco"], "marco", "model");
    let body = stage(&site, "marco", "canary", |_| {});
    refused_and_named(
        &site,
        "rollout-stage",
        Some("CR-2045"),
        "marco",
        &body,
        "requester-cannot-deploy",
    );
}

#[test]
fn a_stage_by_someone_not_an_operator_is_refused_and_named() {
    let site = site_with_approved(&["devi"], "jonas", "model");
    let body = stage(&site, "devi", "canary", |_| {});
    refused_and_named(
        &site,
        "rollout-stage",
        Some("CR-2045"),
        "devi",
        &body,
        "operator-only",
    );
}

#[test]
fn full_before_the_observation_window_is_refused_and_named() {
    let site = site_with_approved(&["marco"], "jonas", "model");
    // Full without a canary, then before the window has elapsed.
    let skipped = stage(&site, "marco", "full", |_| {});
    assert_refused(
        &site.post("/v1/emergency", "rollout-stage", "marco", &skipped),
        "canary-first",
    );
    site.home
        .run(&[
            "--as",
            "marco",
            "rollout",
            "CR-2045",
            "--stage",
            "canary",
            "--traffic",
            "10",
            "--yes",
        ])
        .ok();
    let early = stage(&site, "marco", "full", |_| {});
    refused_and_named(
        &site,
        "rollout-stage",
        Some("CR-2045"),
        "marco",
        &early,
        "observation-window",
    );
}

#[test]
fn a_stage_of_a_revision_that_is_not_current_or_not_approved_is_refused() {
    let site = site_with_approved(&["marco"], "jonas", "model");
    let wrong = stage(&site, "marco", "canary", |v| {
        v["cr_digest"] =
            json!("sha256:0000000000000000000000000000000000000000000000000000000000000000");
    });
    assert_refused(
        &site.post("/v1/emergency", "rollout-stage", "marco", &wrong),
        "rollout-revision",
    );
    let other = stage(&site, "marco", "canary", |v| v["to_version"] = json!("23"));
    assert_refused(
        &site.post("/v1/emergency", "rollout-stage", "marco", &other),
        "rollout-subject",
    );
    // A pending CR: CR-1042 has no sign-off.
    let shown = site.home.run(&["show", "CR-1042", "--json"]).ok().json();
    let pending = stage(&site, "marco", "canary", |v| {
        v["cr_id"] = json!("CR-1042");
        v["cr_revision"] = shown["revision"].clone();
        v["cr_digest"] = shown["digest"].clone();
        v["subject"] = json!("fraud-detector");
        v["environment"] = json!("prod");
        v["from_version"] = json!("12");
        v["to_version"] = json!("13");
    });
    refused_and_named(
        &site,
        "rollout-stage",
        Some("CR-1042"),
        "marco",
        &pending,
        "not-approved",
    );
}

/// Adopts a freeze of staging from an hour ago to an hour from now.
fn freeze_staging_now(site: &Site) {
    let now = chrono::Utc::now();
    let mut text = site.home.policy_text();
    text.push_str(&format!(
        "\n[[freeze]]\nname = \"incident-freeze\"\nreason = \"open incident\"\nenvironments = [\"staging\"]\nstart = \"{}\"\nend = \"{}\"\n",
        (now - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ"),
        (now + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ")
    ));
    site.home
        .adopt_policy(&text, "freeze staging during the incident");
}

#[test]
fn a_stage_into_a_freeze_is_refused_and_named_and_the_emergency_gate_passes() {
    let site = site_with_approved(&["marco"], "jonas", "model");
    freeze_staging_now(&site);
    let frozen = stage(&site, "marco", "canary", |_| {});
    refused_and_named(
        &site,
        "rollout-stage",
        Some("CR-2045"),
        "marco",
        &frozen,
        "frozen",
    );
    // The same stage of an emergency-gate change is the one bypass.
    let hotfix = site_with_approved(&["marco"], "jonas", "emergency");
    freeze_staging_now(&hotfix);
    let bypass = stage(&hotfix, "marco", "canary", |_| {});
    let answer = hotfix.post("/v1/emergency", "rollout-stage", "marco", &bypass);
    assert_eq!(answer.0, 201, "{}", answer.1);
    hotfix.home.verified_entries();
}

/// A site with a KPI guard on churn-predictor (reading `kpi.txt`) and CR-2045 in canary.
fn site_in_canary(kpi: &str) -> Site {
    let site = site_with_approved(&["marco", "guard"], "jonas", "model");
    let file = site.home.path("kpi.txt");
    std::fs::write(&file, kpi).unwrap();
    let mut text = site.home.policy_text();
    text.push_str(&format!(
        "\n[[kpi]]\nsubject = \"churn-predictor\"\ncommand = [\"cat\", \"{}\"]\nthresholds = [{{ metric = \"retention\", min = 0.9 }}]\n",
        file.display()
    ));
    site.home.adopt_policy(&text, "guard the canary");
    site.home
        .run(&[
            "--as",
            "marco",
            "rollout",
            "CR-2045",
            "--stage",
            "canary",
            "--traffic",
            "10",
            "--yes",
        ])
        .ok();
    site
}

fn reading(site: &Site, who: &str, value: &str, verdict: &str, breaches: &[&str]) -> String {
    let (seq, prev) = site.home.head();
    let shown = site.home.run(&["show", "CR-2045", "--json"]).ok().json();
    to_canonical_string(&json!({
        "type": "kpi-reading", "format": 1, "seq": seq + 1, "prev": prev,
        "cr_id": "CR-2045", "cr_digest": shown["digest"],
        "subject": "churn-predictor", "environment": "staging",
        "check": {"command": ["cat", "kpi.txt"], "exit_status": 0, "timed_out": false,
                  "duration_ms": 3, "output_digest": tollgate::audit::canonical::sha256_digest(b""),
                  "output_tail": ""},
        "values": [{"metric": "retention", "value": value}],
        "verdict": verdict, "breaches": breaches,
        "principal": who, "key_fingerprint": ssh_fingerprint(&site.home.demo_key(who)),
        "policy_digest": site.in_force(), "at": now_text(),
    }))
}

#[test]
fn a_reading_that_hides_a_regression_is_refused_and_named() {
    let site = site_in_canary("retention=0.95\n");
    let hidden = reading(&site, "guard", "0.5", "ok", &[]);
    refused_and_named(
        &site,
        "kpi-reading",
        Some("CR-2045"),
        "guard",
        &hidden,
        "reading-verdict",
    );
}

#[test]
fn a_reading_by_someone_without_the_guard_roles_is_refused() {
    let site = site_in_canary("retention=0.95\n");
    // marco holds operator: allowed; lena holds neither operator nor server.
    let mut site = site;
    site.tokens.insert("lena", site.home.token("lena"));
    let body = reading(&site, "lena", "0.95", "ok", &[]);
    refused_and_named(
        &site,
        "kpi-reading",
        Some("CR-2045"),
        "lena",
        &body,
        "guard-role",
    );
}

/// An `emergency-authorised` body by `who` rolling churn-predictor back from 22 to 21
/// under `incident`, with the policy's terms for a bypass signed now.
fn authorisation(site: &Site, who: &str, incident: &str) -> String {
    let (seq, prev) = site.home.head();
    let now = chrono::Utc::now();
    let t = tollgate::audit::log::time_text;
    to_canonical_string(&json!({
        "type": "emergency-authorised", "format": 1, "seq": seq + 1, "prev": prev,
        "incident": incident, "subject": "churn-predictor", "environment": "staging",
        "from_version": "22", "to_version": "21", "reason": "KPI guard",
        "exception": {"id": null, "opened_at": t(now), "expires_at": t(now + chrono::Duration::hours(4)),
                      "review_due": t(now + chrono::Duration::hours(48))},
        "linked": null, "principal": who,
        "key_fingerprint": ssh_fingerprint(&site.home.demo_key(who)),
        "policy_digest": site.in_force(), "at": t(now),
    }))
}

#[test]
fn a_guard_rollback_without_a_regression_is_refused_and_named() {
    let site = site_in_canary("retention=0.95\n");
    let ok = site.home.run(&["--as", "guard", "watch", "--once"]).ok();
    assert!(ok.stdout.contains("KPI reading ok"), "{}", ok.stdout);
    let (seq, _) = site.home.head();
    let body = authorisation(&site, "guard", &format!("AUTO-CR-2045-{seq}"));
    refused_and_named(
        &site,
        "emergency-authorised",
        None,
        "guard",
        &body,
        "auto-rollback",
    );
}

fn drill(site: &Site, who: &str, environment: &str, command: &[&str]) -> String {
    let (seq, prev) = site.home.head();
    to_canonical_string(&json!({
        "type": "drill", "format": 1, "seq": seq + 1, "prev": prev,
        "subject": "recommender", "environment": environment,
        "from_version": "8", "to_version": "7", "incident": "DRILL-1",
        "run": {"command": command, "exit_status": 0, "timed_out": false, "duration_ms": 1200,
                "output_digest": tollgate::audit::canonical::sha256_digest(b""), "output_tail": ""},
        "principal": who, "key_fingerprint": ssh_fingerprint(&site.home.demo_key(who)),
        "policy_digest": site.in_force(), "at": now_text(),
    }))
}

#[test]
fn a_drill_in_prod_or_of_another_command_is_refused_and_named() {
    let site = Site::with_tokens(&["marco"]);
    let policy_command = [
        "echo",
        "staging: rolled back recommender from 8 to 7 (DRILL-1)",
    ];
    let invented = drill(&site, "marco", "staging", &["true"]);
    assert_refused(
        &site.post("/v1/emergency", "drill", "marco", &invented),
        "drill-command",
    );
    let prod = drill(&site, "marco", "prod", &policy_command);
    refused_and_named(&site, "drill", None, "marco", &prod, "drill-in-prod");
    // The policy's own command in staging is accepted.
    let fresh = Site::with_tokens(&["marco"]);
    let good = drill(&fresh, "marco", "staging", &policy_command);
    assert_eq!(fresh.post("/v1/emergency", "drill", "marco", &good).0, 201);
    fresh.home.verified_entries();
}

#[test]
fn an_approval_without_a_recent_drill_is_refused_and_named() {
    let site = Site::with_tokens(&["marco"]);
    // CR-2047: the deployment CR-1046 (high risk) with every check passing.
    let mut doc = fixture_json("CR-1046");
    doc["id"] = "CR-2047".into();
    for c in doc["checks"].as_array_mut().unwrap() {
        c["status"] = "pass".into();
    }
    let file = site.home.write_json("CR-2047.json", &doc);
    site.home.run(&["--as", "ci", "submit", &file]).ok();
    let approval = site.decision("marco", "CR-2047", |v| {
        v["verdict"] = json!("approve");
        v["rationale"] = json!("ready");
        v["ticks"] = json!([{"item": "rollback", "note": null}]);
        for item in v["checklist"].as_array_mut().unwrap() {
            if item["id"] == "rollback" {
                item["state"] = json!("ticked");
            }
        }
    });
    let answer = site.post("/v1/decisions", "decision", "marco", &approval);
    assert_refused(&answer, "drill-required");
    let entries = site.home.verified_entries();
    let seq = site.force("decision", Some("CR-2047"), "marco", &approval);
    assert_eq!(seq, entries + 1);
    assert_refusal(
        &site.home.run(&["verify"]),
        &[&format!("FAILED at entry {seq}"), "[drill-required]"],
    );
}

#[test]
fn a_canary_dated_in_the_past_to_open_full_at_once_is_refused_and_named() {
    let site = site_with_approved(&["marco"], "jonas", "model");
    let yesterday = tollgate::audit::log::time_text(chrono::Utc::now() - chrono::Duration::days(1));
    let backdated = stage(&site, "marco", "canary", |v| v["at"] = json!(yesterday));
    refused_and_named(
        &site,
        "rollout-stage",
        Some("CR-2045"),
        "marco",
        &backdated,
        "signed-in-past",
    );
}
