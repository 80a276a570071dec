//! The acceptance data: `tollgate list --json` over the demo store must show every
//! fixture with the rating, reasons and blocked state that `../shared/fixtures/README.md`
//! predicts. The README's table is parsed, so a change on either side fails here.

mod common;

use common::{Home, fixtures};
use serde_json::Value;

/// One row of the README table.
struct Expectation {
    id: String,
    gate: String,
    declared: String,
    computed: String,
    flags: Vec<String>,
    /// Percentages as written, e.g. "+6.1" or "-0.42".
    shifts: Vec<String>,
    blocked: bool,
}

fn readme_expectations() -> Vec<Expectation> {
    let text = std::fs::read_to_string(fixtures().join("README.md")).expect("fixtures README");
    text.lines()
        .filter(|l| l.starts_with("| CR-"))
        .map(|line| {
            let cols: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let what = cols[3];
            let flags = what
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            let shifts = what
                .split_whitespace()
                .filter(|w| {
                    w.starts_with(['+', '-']) && w[1..].starts_with(|c: char| c.is_ascii_digit())
                })
                .map(|w| w.trim_end_matches([',', ')', ';']).to_string())
                .collect();
            Expectation {
                id: cols[0].to_string(),
                gate: cols[1].to_string(),
                declared: cols[2].to_string(),
                computed: what.split([':', ';', ' ']).next().unwrap().to_string(),
                flags,
                shifts,
                blocked: what.contains("blocked"),
            }
        })
        .collect()
}

fn decimals(s: &str) -> usize {
    s.split('.').nth(1).map_or(0, str::len)
}

#[test]
fn demo_queue_matches_what_the_fixtures_readme_predicts() {
    let expectations = readme_expectations();
    assert_eq!(
        expectations.len(),
        5,
        "the README table lists five fixtures"
    );
    let shifts: usize = expectations.iter().map(|e| e.shifts.len()).sum();
    let flags: usize = expectations.iter().map(|e| e.flags.len()).sum();
    assert_eq!(
        (shifts, flags),
        (7, 2),
        "parsed every percentage and flag the README names"
    );
    let home = Home::demo();
    let list = home.run(&["list", "--json"]).ok().json();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), expectations.len());
    for exp in &expectations {
        let row = rows
            .iter()
            .find(|r| r["id"] == exp.id.as_str())
            .unwrap_or_else(|| panic!("{} missing from list --json", exp.id));
        let risk = &row["risk"];
        assert_eq!(row["gate"], exp.gate.as_str(), "{} gate", exp.id);
        assert_eq!(
            risk["declared"],
            exp.declared.as_str(),
            "{} declared",
            exp.id
        );
        assert_eq!(
            risk["computed"],
            exp.computed.as_str(),
            "{} computed",
            exp.id
        );
        let effective = if exp.computed == "high" || exp.declared == "high" {
            "high"
        } else if exp.computed == "medium" || exp.declared == "medium" {
            "medium"
        } else {
            "low"
        };
        assert_eq!(risk["effective"], effective, "{} effective", exp.id);
        assert_eq!(row["status"], "pending", "{}: no decisions yet", exp.id);
        assert_eq!(
            row["blocked"], exp.blocked,
            "{} blocked: {}",
            exp.id, row["blockers"]
        );

        let reasons = risk["reasons"].as_array().unwrap();
        for flag in &exp.flags {
            assert!(
                reasons
                    .iter()
                    .any(|r| r["kind"] == "flag" && r["flag"] == flag.as_str()),
                "{}: flag {flag} should be a reason: {reasons:?}",
                exp.id
            );
        }
        for shift in &exp.shifts {
            let want: f64 = shift.parse().unwrap();
            let found = reasons.iter().any(|r| {
                r["kind"] == "metric_shift"
                    && r["shift_pct"].as_f64().is_some_and(|got| {
                        format!("{got:+.*}", decimals(shift))
                            == format!("{want:+.*}", decimals(shift))
                    })
            });
            assert!(
                found,
                "{}: a {shift} % shift should be a reason: {reasons:?}",
                exp.id
            );
        }
    }
}

#[test]
fn blocked_fixtures_name_the_failing_check_and_pending_evidence_is_counted() {
    let home = Home::demo();
    let list = home.run(&["list", "--json"]).ok().json();
    let row = |id: &str| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap()
    };
    let cr1043 = row("CR-1043");
    assert!(
        cr1043["blockers"][0]
            .as_str()
            .unwrap()
            .starts_with("backward-compat: fail")
    );
    assert_eq!(
        cr1043["checks"]["pending"], 1,
        "monitoring_alerts is pending"
    );
    let cr1046 = row("CR-1046");
    assert!(
        cr1046["blockers"][0]
            .as_str()
            .unwrap()
            .starts_with("operational: fail")
    );
    // Pending (not failing) blocking evidence holds approval without calling the CR blocked.
    let cr1044 = row("CR-1044");
    assert_eq!(cr1044["blocked"], false);
    assert_eq!(cr1044["awaiting_evidence"], true);
    assert!(
        cr1044["blockers"][0]
            .as_str()
            .unwrap()
            .starts_with("fairness: pending")
    );
    // Required sign-offs follow gate x effective risk in the policy.
    assert_eq!(row("CR-1042")["signoffs"]["required"], 4);
    assert_eq!(row("CR-1043")["signoffs"]["required"], 2);
    assert_eq!(row("CR-1045")["signoffs"]["required"], 1);
    assert_eq!(row("CR-1046")["signoffs"]["required"], 3);
}

#[test]
fn built_in_demo_data_is_identical_to_the_shared_fixtures() {
    // The one place that names ../shared: the team's playbook fixtures, beside the clone
    // in CI. A clone alone has its own copies and skips this check, saying so.
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    if !shared.is_dir() {
        println!(
            "skipped: {} is not there (a clone alone); the repository's copies in src/demo/fixtures are used",
            shared.display()
        );
        return;
    }
    let embedded = fixtures();
    for name in [
        "CR-1042.json",
        "CR-1043.json",
        "CR-1044.json",
        "CR-1045.json",
        "CR-1046.json",
    ] {
        let a = std::fs::read(shared.join("change-requests").join(name)).unwrap();
        let b = std::fs::read(embedded.join(name)).unwrap();
        assert!(
            a == b,
            "{name}: src/demo/fixtures differs from ../shared/fixtures; copy it again"
        );
    }
    for name in ["policy.toml", "README.md"] {
        let a = std::fs::read(shared.join(name)).unwrap();
        let b = std::fs::read(embedded.join(name)).unwrap();
        assert!(
            a == b,
            "{name}: src/demo/fixtures differs from ../shared/fixtures; copy it again"
        );
    }
}

#[test]
fn demo_is_idempotent_and_keeps_an_existing_policy() {
    let home = Home::demo();
    let policy = home.path("tollgate.policy.toml");
    let edited = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("low = 1", "low = 2");
    std::fs::write(&policy, &edited).unwrap();
    let again = home.run(&["demo"]).ok();
    assert!(
        again.stdout.contains("0 sample change request(s) added"),
        "{}",
        again.stdout
    );
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), edited);
    assert_eq!(home.stored().len(), 5);
}
