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

/// Where the team's playbook fixtures are: `TOLLGATE_SHARED_FIXTURES` (set by `.ci/run`,
/// which tests a clone with nothing beside it), else `../shared/fixtures` beside the
/// checkout. The one place that names ../shared.
fn shared_fixtures() -> std::path::PathBuf {
    std::env::var_os("TOLLGATE_SHARED_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
        })
}

/// What the demo policy must keep of the team's: every top-level table's entries and
/// every `[[principals]]` / `[[checklist]]` element, identical; the demo may add more
/// (tables later features need).
fn policy_disagreements(shared: &toml::Table, demo: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    for (name, want) in shared {
        let Some(have) = demo.get(name) else {
            out.push(format!("[{name}] is missing from the demo policy"));
            continue;
        };
        match (want, have) {
            (toml::Value::Table(want), toml::Value::Table(have)) => {
                for (key, value) in want {
                    // A list may gain entries (one more principal on the on-call roster).
                    let kept = match (value, have.get(key)) {
                        (toml::Value::Array(want), Some(toml::Value::Array(have))) => {
                            want.iter().all(|v| have.contains(v))
                        }
                        (want, have) => have == Some(want),
                    };
                    if !kept {
                        out.push(format!("[{name}] {key} differs"));
                    }
                }
            }
            (toml::Value::Array(want), toml::Value::Array(have)) => {
                for element in want {
                    if !have.contains(element) {
                        let id = element
                            .get("id")
                            .or_else(|| element.get("name"))
                            .map_or_else(|| element.to_string(), ToString::to_string);
                        out.push(format!("[[{name}]] {id} is missing or differs"));
                    }
                }
            }
            _ if want != have => out.push(format!("{name} differs")),
            _ => {}
        }
    }
    out
}

#[test]
fn built_in_demo_data_agrees_with_the_shared_fixtures() {
    let shared = shared_fixtures();
    if !shared.is_dir() {
        println!(
            "skipped: {} is not there (a clone alone); the repository's copies in src/demo/fixtures are used",
            shared.display()
        );
        return;
    }
    let embedded = fixtures();
    let mut samples: Vec<String> = std::fs::read_dir(shared.join("change-requests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    samples.sort();
    assert!(!samples.is_empty(), "the team's fixtures hold sample CRs");
    for name in samples.iter().map(String::as_str).chain(["README.md"]) {
        let from = if name == "README.md" {
            shared.join(name)
        } else {
            shared.join("change-requests").join(name)
        };
        let a = std::fs::read(&from).unwrap();
        let b = std::fs::read(embedded.join(name)).unwrap_or_default();
        assert!(
            a == b,
            "{name}: src/demo/fixtures differs from {}; copy it again",
            from.display()
        );
    }
    let read = |p: std::path::PathBuf| -> toml::Table {
        toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    };
    let problems = policy_disagreements(
        &read(shared.join("policy.toml")),
        &read(embedded.join("policy.toml")),
    );
    assert!(
        problems.is_empty(),
        "the demo policy does not keep the team's: {problems:?}"
    );
}

#[test]
fn the_policy_agreement_check_names_what_the_demo_changed_or_lost() {
    let shared: toml::Table =
        toml::from_str(&std::fs::read_to_string(fixtures().join("policy.toml")).unwrap()).unwrap();
    assert!(policy_disagreements(&shared, &shared).is_empty());
    // More is fine: a table a later feature adds, one more principal.
    let mut more = shared.clone();
    more.insert(
        "later_feature".into(),
        toml::Value::Table(toml::Table::new()),
    );
    if let Some(toml::Value::Array(p)) = more.get_mut("principals") {
        let mut extra = p[0].clone();
        extra
            .as_table_mut()
            .unwrap()
            .insert("id".into(), "newcomer".into());
        p.push(extra);
    }
    assert!(policy_disagreements(&shared, &more).is_empty());
    // A changed value, a lost table, a changed principal are each named.
    let mut changed = shared.clone();
    changed
        .get_mut("risk")
        .and_then(toml::Value::as_table_mut)
        .unwrap()
        .insert("low_max_shift_pct".into(), 99.0.into());
    changed.remove("emergency");
    if let Some(toml::Value::Array(p)) = changed.get_mut("principals") {
        p[0].as_table_mut()
            .unwrap()
            .insert("roles".into(), toml::Value::Array(vec![]));
    }
    let problems = policy_disagreements(&shared, &changed);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with("[emergency]")));
    assert!(problems.iter().any(|p| p.starts_with("[[principals]]")));
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
