//! After approval from the command line: an operator's rollout stages in order, the
//! observation window by risk, segregation of duties, freeze windows (the emergency gate
//! the only bypass), the KPI guard rolling a regressed canary back through the emergency
//! path, and rollback drills as the evidence a high-risk approval needs.

mod common;

use common::{Home, Run, assert_refusal, fixture_json, low_risk_cr};
use serde_json::Value;

/// Wednesday morning: no freeze window holds.
const T0: &str = "2026-11-25T10:00:00Z";

fn at(home: &Home, now: &str, args: &[&str]) -> Run {
    home.command(args)
        .env("TOLLGATE_NOW", now)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .into()
}

/// Submits, as CI, [`low_risk_cr`] as `id`.
fn submit(home: &Home, now: &str, id: &str, requester: &str, gate: &str) {
    let file = home.write_json(&format!("{id}.json"), &low_risk_cr(id, requester, gate));
    at(home, now, &["--as", "ci", "submit", &file]).ok();
}

/// CR-2045 (see [`submit`]) submitted and approved by devi.
fn approve_2045(home: &Home, now: &str) {
    submit(home, now, "CR-2045", "jonas", "model");
    at(
        home,
        now,
        &[
            "--as",
            "devi",
            "approve",
            "CR-2045",
            "--tick",
            "privacy",
            "--tick",
            "rollback",
            "--rationale",
            "shifts within 1 %",
        ],
    )
    .ok();
}

fn stage(home: &Home, who: &str, id: &str, stage: &str, now: &str) -> Run {
    let mut args = vec!["--as", who, "rollout", id, "--stage", stage, "--yes"];
    if stage == "canary" {
        args.extend(["--traffic", "10"]);
    }
    at(home, now, &args)
}

/// `verify --json` run at `now`: the log verifies; the entries it checked.
fn verified_at(home: &Home, now: &str) -> u64 {
    let v = at(home, now, &["verify", "--json"]).ok().json();
    assert_eq!(v["ok"], true, "{v}");
    v["entries"].as_u64().unwrap()
}

fn rollouts(home: &Home, now: &str) -> Value {
    at(home, now, &["rollouts", "--all", "--json"]).ok().json()
}

#[test]
fn full_waits_for_the_observation_window_of_the_risk_and_opens_on_time() {
    let home = Home::demo_at(T0);
    // Nothing rolls out before approval.
    assert_refusal(
        &stage(&home, "marco", "CR-1042", "canary", T0),
        &["CR-1042 is pending, not approved", "[not-approved]"],
    );
    approve_2045(&home, T0);
    let before = home.verified_entries();
    // Canary first.
    assert_refusal(
        &stage(&home, "marco", "CR-2045", "full", T0),
        &["has not been in canary", "[canary-first]"],
    );
    let canary = stage(&home, "marco", "CR-2045", "canary", T0).ok();
    // The demo policy's deployment command ran, placeholders filled in.
    assert!(
        canary
            .stdout
            .contains("│ deploy churn-predictor 22 to prod: canary at 10% (CR-2045)"),
        "{}",
        canary.stdout
    );
    assert!(
        canary.stdout.contains(
            "observation window: 1 h for low risk; full rollout opens at 2026-11-25T11:00:00Z"
        ),
        "{}",
        canary.stdout
    );
    // Half an hour in: refused, with the time it opens.
    assert_refusal(
        &stage(&home, "marco", "CR-2045", "full", "2026-11-25T10:30:00Z"),
        &[
            "full rollout opens at 2026-11-25T11:00:00Z (in 0h 30m)",
            "[observation-window]",
        ],
    );
    let listed = rollouts(&home, "2026-11-25T10:30:00Z");
    assert_eq!(listed[0]["state"], "canary 10%");
    // An hour after the canary went live (its deployment took a few milliseconds).
    let opens = listed[0]["full_opens"].as_str().unwrap();
    assert!(opens.starts_with("2026-11-25T11:00:00"), "{listed}");
    // The clock moves on: the window has elapsed.
    stage(&home, "marco", "CR-2045", "full", "2026-11-25T11:01:00Z").ok();
    assert_refusal(
        &stage(&home, "marco", "CR-2045", "canary", "2026-11-25T11:05:00Z"),
        &["already fully rolled out", "[stage-order]"],
    );
    assert_eq!(rollouts(&home, "2026-11-25T11:05:00Z")[0]["state"], "full");
    // Both stages are signed entries the whole log verifies with.
    assert_eq!(verified_at(&home, "2026-11-25T11:05:00Z"), before + 2);
    let log = home.run(&["log", "export"]).ok().stdout;
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "rollout-stage");
    let body: Value = serde_json::from_str(last["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["stage"], "full");
    assert_eq!(body["principal"], "marco");
    assert_eq!(body["deploy"]["exit_status"], 0);
}

#[test]
fn only_an_operator_who_did_not_request_the_change_rolls_it_out() {
    let home = Home::demo_at(T0);
    submit(&home, T0, "CR-2048", "marco", "model");
    at(
        &home,
        T0,
        &[
            "--as",
            "devi",
            "approve",
            "CR-2048",
            "--tick",
            "privacy",
            "--tick",
            "rollback",
            "--rationale",
            "fine",
        ],
    )
    .ok();
    let before = home.verified_entries();
    assert_refusal(
        &stage(&home, "marco", "CR-2048", "canary", T0),
        &[
            "marco requested CR-2048 and cannot roll it out",
            "[requester-cannot-deploy]",
        ],
    );
    assert_refusal(
        &stage(&home, "devi", "CR-2048", "canary", T0),
        &[
            "devi does not hold the operator role",
            "[operator-only]",
            "ask an operator: marco",
        ],
    );
    assert_eq!(home.verified_entries(), before, "nothing recorded");
}

/// Friday evening: the demo policy's `friday-evening` freeze holds for prod.
const FRIDAY: &str = "2026-11-27T17:00:00Z";

#[test]
fn a_frozen_environment_refuses_rollouts_and_only_the_emergency_gate_bypasses_it() {
    let home = Home::demo_at(T0);
    approve_2045(&home, T0);
    assert_refusal(
        &stage(&home, "marco", "CR-2045", "canary", FRIDAY),
        &[
            "prod is frozen: friday-evening (every Fri 16:00–24:00 UTC, prod): no prod changes before the weekend",
            "[frozen]",
            "only the emergency gate bypasses a freeze",
        ],
    );
    // An emergency-gate change goes out, and says it bypasses the freeze.
    submit(&home, T0, "CR-2046", "marco", "emergency");
    at(
        &home,
        T0,
        &[
            "--as",
            "lena",
            "approve",
            "CR-2046",
            "--rationale",
            "hotfix for INC-9",
        ],
    )
    .ok();
    let run = stage(&home, "sofia", "CR-2046", "canary", FRIDAY);
    assert_refusal(&run, &["[operator-only]"]);
    // marco requested it: a second operator is needed; lena holds on-call, not operator.
    let mut policy = home.policy_text();
    policy = policy.replace(
        "roles = [\"approver\", \"on-call\", \"lead\"]",
        "roles = [\"approver\", \"on-call\", \"lead\", \"operator\"]",
    );
    home.adopt_policy(&policy, "lena operates too");
    let run = stage(&home, "lena", "CR-2046", "canary", FRIDAY).ok();
    assert!(
        run.stdout
            .contains("bypassing freeze window friday-evening"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the emergency gate is the only bypass"),
        "{}",
        run.stdout
    );
    // The emergency rollback itself is allowed in the freeze, and says so.
    let rb = home.rollback("lena", "INC-9", Some(FRIDAY)).ok();
    assert!(
        rb.stdout.contains("bypassing freeze window friday-evening"),
        "{}",
        rb.stdout
    );
    verified_at(&home, "2026-11-27T17:05:00Z");
}

/// The demo policy with a KPI guard for churn-predictor reading `kpi.txt` in the home,
/// and a rollback command for it in prod.
fn home_with_guard() -> Home {
    let home = Home::demo_at(T0);
    let kpi = home.path("kpi.txt");
    std::fs::write(&kpi, "retention=0.95\n").unwrap();
    let rollback = home.script("rollback.sh", "echo \"rolled $1 back to $2\"");
    let mut text = home.policy_text();
    text.push_str(&format!(
        "\n[[kpi]]\nsubject = \"churn-predictor\"\ncommand = [\"cat\", \"{}\"]\ninterval_minutes = 10\nthresholds = [{{ metric = \"retention\", min = 0.9 }}]\n\n[[emergency.rollback]]\nsubject = \"churn-predictor\"\nenvironment = \"prod\"\ncommand = [\"{}\", \"{{subject}}\", \"{{to_version}}\"]\n",
        kpi.display(),
        rollback.display()
    ));
    home.adopt_policy(&text, "guard churn-predictor's canary");
    home
}

#[test]
fn a_kpi_regression_rolls_the_canary_back_and_opens_an_exception_verify_accepts() {
    let home = home_with_guard();
    approve_2045(&home, T0);
    stage(&home, "marco", "CR-2045", "canary", T0).ok();
    let ok = at(&home, T0, &["--as", "guard", "watch", "--once"]).ok();
    assert!(
        ok.stdout.contains("CR-2045: KPI reading ok"),
        "{}",
        ok.stdout
    );
    // Read again before the interval: nothing is due.
    let early = at(
        &home,
        "2026-11-25T10:05:00Z",
        &["--as", "guard", "watch", "--once"],
    )
    .ok();
    assert!(
        early.stdout.contains("no canary is due a KPI reading"),
        "{}",
        early.stdout
    );
    // The KPI drops.
    std::fs::write(home.path("kpi.txt"), "retention=0.80\n").unwrap();
    let run = at(
        &home,
        "2026-11-25T10:15:00Z",
        &["--as", "guard", "watch", "--once"],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("CR-2045: KPI reading regressed")
            && run.stdout.contains("retention 0.8 < min 0.9"),
        "{}",
        run.stdout
    );
    let reading: u64 = run
        .stdout
        .split("KPI reading regressed (log entry ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .expect("the reading's position");
    let incident = format!("AUTO-CR-2045-{reading}");
    assert!(
        run.stdout
            .contains(&format!("automatic rollback authorised under {incident}")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("exit status 0"), "{}", run.stdout);
    // An exception leads must review, like any other.
    let ex = at(&home, "2026-11-25T10:20:00Z", &["exceptions", "--json"])
        .ok()
        .json();
    assert_eq!(ex[0]["incident"], incident.as_str(), "{ex}");
    assert_eq!(ex[0]["opened_by"], "guard");
    assert_eq!(ex[0]["rollbacks"][0]["from_version"], "22");
    assert_eq!(ex[0]["rollbacks"][0]["to_version"], "21");
    assert_eq!(ex[0]["rollbacks"][0]["outcome"]["exit_status"], 0);
    // The rollout is over; verify accepts the whole story.
    let listed = rollouts(&home, "2026-11-25T10:20:00Z");
    assert_eq!(listed[0]["state"], "rolled back");
    assert_eq!(listed[0]["rolled_back_by"], incident.as_str());
    assert_refusal(
        &stage(&home, "marco", "CR-2045", "full", "2026-11-25T12:00:00Z"),
        &["rolled back under AUTO-CR-2045", "[rolled-back]"],
    );
    verified_at(&home, "2026-11-25T12:00:00Z");
    at(
        &home,
        "2026-11-25T12:00:00Z",
        &[
            "--as",
            "sofia",
            "review",
            &incident,
            "--root-cause",
            "feature drift",
            "--follow-ups",
            "retrain",
        ],
    )
    .ok();
    verified_at(&home, "2026-11-25T12:05:00Z");
}

#[test]
fn a_guard_off_the_roster_records_the_regression_but_cannot_roll_back() {
    let home = home_with_guard();
    let off_roster = home.policy_text().replace(
        "on_call = [\"marco\", \"lena\", \"guard\"]",
        "on_call = [\"lena\"]",
    );
    // `policy check` says what the guard lacks.
    let file = home.write("off-roster.toml", off_roster.as_bytes());
    let checked = home.run(&["policy", "check", &file]).ok();
    assert!(
        checked.stdout.contains(
            "a KPI guard is configured ([[kpi]]) but no principal holding the server role is on the on-call roster"
        ),
        "{}",
        checked.stdout
    );
    home.adopt_policy(&off_roster, "guard off the roster");
    approve_2045(&home, T0);
    stage(&home, "marco", "CR-2045", "canary", T0).ok();
    std::fs::write(home.path("kpi.txt"), "retention=0.5\n").unwrap();
    let run = at(&home, T0, &["--as", "guard", "watch", "--once"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.contains("CR-2045: KPI reading regressed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("guard is not on the on-call roster: the guard cannot roll back"),
        "{}",
        run.stdout
    );
    let ex = at(&home, T0, &["exceptions", "--all", "--json"])
        .ok()
        .json();
    assert_eq!(ex.as_array().unwrap().len(), 0, "{ex}");
    assert_eq!(rollouts(&home, T0)[0]["state"], "canary 10%");
    home.verified_entries();
}

/// CR-2047: the demo's deployment CR-1046 (high risk) with its latency check passing,
/// so nothing but the drill stands between it and approval.
fn submit_deployable(home: &Home, now: &str) {
    let mut doc = fixture_json("CR-1046");
    doc["id"] = "CR-2047".into();
    for c in doc["checks"].as_array_mut().unwrap() {
        c["status"] = "pass".into();
    }
    let file = home.write_json("CR-2047.json", &doc);
    at(home, now, &["--as", "ci", "submit", &file]).ok();
}

fn approve_2047(home: &Home, who: &str, role: &str, now: &str) -> Run {
    at(
        home,
        now,
        &[
            "--as",
            who,
            "approve",
            "CR-2047",
            "--role",
            role,
            "--tick",
            "rollback",
            "--rationale",
            "ready",
        ],
    )
}

#[test]
fn a_drill_is_recorded_and_an_old_one_blocks_a_high_risk_approval() {
    let home = Home::demo_at(T0);
    submit_deployable(&home, T0);
    // A drill a hundred days ago is too old for the demo policy's 90 days.
    let old = at(
        &home,
        "2026-08-16T10:00:00Z",
        &[
            "--as",
            "marco",
            "drill",
            "recommender",
            "--env",
            "staging",
            "--yes",
        ],
    )
    .ok();
    assert!(
        old.stdout
            .contains("│ staging: rolled back recommender from 8 to 7 (DRILL-20260816T100000Z)"),
        "{}",
        old.stdout
    );
    assert!(old.stdout.contains("drill succeeded in"), "{}", old.stdout);
    assert_refusal(
        &approve_2047(&home, "marco", "ops-reviewer", T0),
        &[
            "CR-2047 (deployment gate, high risk) needs a successful rollback drill of recommender within 90 days; the last was on 2026-08-16 (100 days ago)",
            "[drill-required]",
            "tollgate drill recommender --env staging",
        ],
    );
    // Never in prod.
    assert_refusal(
        &at(
            &home,
            T0,
            &[
                "--as",
                "marco",
                "drill",
                "recommender",
                "--env",
                "prod",
                "--yes",
            ],
        ),
        &["a drill never runs against prod", "[drill-in-prod]"],
    );
    // A fresh drill, and the approvals go through.
    at(
        &home,
        T0,
        &[
            "--as",
            "marco",
            "drill",
            "recommender",
            "--env",
            "staging",
            "--yes",
        ],
    )
    .ok();
    // Signed a minute after the drill finished.
    let t1 = "2026-11-25T10:01:00Z";
    approve_2047(&home, "marco", "ops-reviewer", t1).ok();
    approve_2047(&home, "devi", "risk-reviewer", t1).ok();
    approve_2047(&home, "lena", "approver", t1).ok();
    let shown = at(&home, t1, &["show", "CR-2047", "--json"]).ok().json();
    assert_eq!(shown["status"], "approved");
    assert_eq!(shown["rollback_drill"]["environment"], "staging");
    assert_eq!(shown["rollback_drill"]["principal"], "marco");
    assert_eq!(shown["rollback_drill"]["outcome"]["exit_status"], 0);
    let text = at(&home, T0, &["show", "CR-2047"]).ok().stdout;
    assert!(
        text.contains("rollback drill: recommender@staging by marco on 2026-11-25"),
        "{text}"
    );
    verified_at(&home, t1);
    // The audit report answers the playbook's "rollback result in staging" from the drill,
    // and its drill entry is among those an auditor checks without tollgate.
    let dir = home.path("audit");
    at(
        &home,
        t1,
        &["export", "--cr", "CR-2047", "--out", dir.to_str().unwrap()],
    )
    .ok();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("### Rollback result in staging\n\nLast drill of recommender: staging, by marco, 2026-11-25"),
        "{md}"
    );
    assert!(md.contains("**succeeded**"), "{md}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let drill_seq = json["change_requests"][0]["rollback_drill"]["seq"]
        .as_u64()
        .unwrap();
    assert!(
        json["entries"]
            .as_array()
            .unwrap()
            .contains(&drill_seq.into()),
        "{json}"
    );
    let checked = Home::verify_sh(&dir, &dir);
    assert_eq!(checked.code, 0, "{}\n{}", checked.stdout, checked.stderr);
    // Health counts drills per quarter against the policy's target.
    let health = at(&home, T0, &["health", "--json"]).ok().json();
    let quarters = health["drills"]["quarters"].as_array().unwrap();
    assert_eq!(quarters.len(), 2, "{health}");
    assert_eq!(quarters[0]["quarter"], "2026-Q3");
    assert_eq!(quarters[1]["quarter"], "2026-Q4");
    assert_eq!(health["drills"]["target_minutes"], 10);
    let text = at(&home, T0, &["health"]).ok().stdout;
    assert!(text.contains("Rollback drills"), "{text}");
}

#[test]
fn the_team_servers_guard_rolls_a_regressed_canary_back_signed_by_the_server() {
    let home = home_with_guard();
    approve_2045(&home, T0);
    stage(&home, "marco", "CR-2045", "canary", T0).ok();
    std::fs::write(home.path("kpi.txt"), "retention=0.7\n").unwrap();
    // The demo's `guard` principal holds the server role and is on the on-call roster.
    let key = home.path("tollgate.demo-keys/guard");
    home.token("marco");
    let _server = home.serve_with(
        "127.0.0.1:0",
        &["--server-key", key.to_str().unwrap(), "--kpi-guard"],
    );
    // The guard's first pass runs as the server starts; wait for what it records.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let exception = loop {
        let ex = home.run(&["exceptions", "--json"]).ok().json();
        if let Some(x) = ex.as_array().and_then(|a| a.first()) {
            break x.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server's guard recorded nothing; its log:\n{}",
            std::fs::read_to_string(home.path("server.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        exception["incident"]
            .as_str()
            .unwrap()
            .starts_with("AUTO-CR-2045-"),
        "{exception}"
    );
    assert_eq!(exception["opened_by"], "guard");
    let log = home.run(&["log", "export"]).ok().stdout;
    let reading = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["kind"] == "kpi-reading")
        .expect("the reading");
    assert_eq!(reading["principal"], "guard");
    home.verified_entries();
}

#[test]
fn a_gate_the_policy_lets_skip_canary_goes_straight_to_full() {
    // The demo policy: `[rollout] skip_canary = ["data"]`.
    let home = Home::demo_at(T0);
    let mut doc = low_risk_cr("CR-2049", "jonas", "data");
    doc["checks"].as_array_mut().unwrap().push(
        serde_json::json!({"id": "backward_compatibility", "status": "pass", "detail": "no consumer breaks"}),
    );
    let file = home.write_json("CR-2049.json", &doc);
    at(&home, T0, &["--as", "ci", "submit", &file]).ok();
    at(
        &home,
        T0,
        &[
            "--as",
            "kai",
            "approve",
            "CR-2049",
            "--tick",
            "privacy",
            "--tick",
            "rollback",
            "--rationale",
            "schema unchanged",
        ],
    )
    .ok();
    let run = stage(&home, "marco", "CR-2049", "full", T0).ok();
    assert!(
        run.stdout.contains("recorded: CR-2049 full by marco"),
        "{}",
        run.stdout
    );
    assert_eq!(rollouts(&home, T0)[0]["state"], "full");
    verified_at(&home, "2026-11-25T10:05:00Z");
}
