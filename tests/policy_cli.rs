//! `tollgate init` and `tollgate policy check`: a policy is validated before it is used,
//! every problem is named with file and key path, and an existing policy is never
//! silently replaced.

mod common;

use common::{Home, shared_fixtures};

fn shared_policy() -> String {
    std::fs::read_to_string(shared_fixtures().join("policy.toml")).unwrap()
}

#[test]
fn policy_check_accepts_the_playbook_policy() {
    let home = Home::new();
    let file = shared_fixtures().join("policy.toml");
    let run = home.run(&["policy", "check", file.to_str().unwrap()]).ok();
    assert!(
        run.stdout
            .contains("policy OK (version 1, 8 principals, 8 checklist items)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("warning: principals[0].keys: priya has no public key yet"),
        "{}",
        run.stdout
    );
}

#[test]
fn policy_check_lists_every_problem_with_file_and_key_path() {
    let home = Home::new();
    let text = shared_policy()
        .replace(
            "\"ops-reviewer\", \"approver\"]",
            "\"ops-reviewr\", \"approver\"]",
        )
        .replace("id = \"sofia\"", "id = \"lena\"")
        .replace("gates = [\"model\", \"deployment\"]", "gates = []");
    let file = home.write("bad-policy.toml", text.as_bytes());
    let run = home.run(&["policy", "check", &file]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    for expected in [
        format!("{file}: error: principals[7].id: duplicate principal \"lena\""),
        format!("{file}: error: signoffs.model.high[2]: unknown role \"ops-reviewr\""),
        format!("{file}: error: checklist[5].gates: expected at least one gate"),
    ] {
        assert!(
            run.stderr.contains(&expected),
            "missing {expected:?} in:\n{}",
            run.stderr
        );
    }
    // The misspelt role appears in two sign-off lists: each is reported.
    assert!(
        run.stderr
            .contains("signoffs.deployment.medium[0]: unknown role"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("4 error(s)"), "{}", run.stderr);
}

#[test]
fn init_installs_a_valid_policy_beside_the_store() {
    let home = Home::new();
    let src = shared_fixtures().join("policy.toml");
    let run = home.run(&["init", "--policy", src.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("store ready at"), "{}", run.stdout);
    assert!(home.store().exists());
    let installed = home.path("tollgate.policy.toml");
    assert_eq!(
        std::fs::read_to_string(&installed).unwrap(),
        shared_policy()
    );
    // The installed policy is the default from now on.
    home.run(&["policy", "check"]).ok();
    assert_eq!(
        home.run(&["list"]).ok().stdout,
        "no change requests match\n"
    );
}

#[test]
fn init_refuses_an_invalid_policy_and_creates_nothing() {
    let home = Home::new();
    let file = home.write(
        "p.toml",
        shared_policy()
            .replace("version = 1", "version = \"one\"")
            .as_bytes(),
    );
    let run = home.run(&["init", "--policy", &file]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("version: expected a whole number, found string \"one\""),
        "{}",
        run.stderr
    );
    assert!(!home.store().exists());
    assert!(!home.path("tollgate.policy.toml").exists());
}

#[test]
fn init_never_overwrites_a_different_policy_without_being_asked() {
    let home = Home::new();
    home.run(&["init"]).ok();
    let installed = home.path("tollgate.policy.toml");
    let other = home.write(
        "other.toml",
        shared_policy().replace("high = 24", "high = 48").as_bytes(),
    );
    let run = home.run(&["init", "--policy", &other]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--replace-policy"), "{}", run.stderr);
    assert!(
        std::fs::read_to_string(&installed)
            .unwrap()
            .contains("high = 24")
    );

    home.run(&["init", "--policy", &other, "--replace-policy"])
        .ok();
    assert!(
        std::fs::read_to_string(&installed)
            .unwrap()
            .contains("high = 48")
    );
    // Re-running init with the same policy is harmless.
    let again = home.run(&["init", "--policy", &other]).ok();
    assert!(
        again.stdout.contains("policy unchanged"),
        "{}",
        again.stdout
    );
}

#[test]
fn commands_explain_a_missing_or_broken_policy() {
    let home = Home::demo();
    let policy = home.path("tollgate.policy.toml");
    std::fs::write(&policy, shared_policy().replace("[risk]", "[risk\n")).unwrap();
    let run = home.run(&["list"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("tollgate.policy.toml: line"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("tollgate policy check"),
        "{}",
        run.stderr
    );
    std::fs::remove_file(&policy).unwrap();
    let run = home.run(&["list"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no policy at"), "{}", run.stderr);
}

#[test]
fn list_filters_by_gate_risk_and_status() {
    let home = Home::demo();
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["list", "--json"];
        all.extend_from_slice(args);
        home.run(&all)
            .ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&["--gate", "model"]), ["CR-1042", "CR-1044", "CR-1045"]);
    assert_eq!(ids(&["--risk", "high"]), ["CR-1042", "CR-1044", "CR-1046"]);
    assert_eq!(ids(&["--risk", "medium", "--gate", "data"]), ["CR-1043"]);
    assert_eq!(ids(&["--status", "pending"]).len(), 5);
    assert!(ids(&["--status", "approved"]).is_empty());
    let bad = home.run(&["list", "--risk", "severe"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("expected one of low, medium, high"),
        "{}",
        bad.stderr
    );
}

#[test]
fn show_names_an_unknown_id_safely() {
    let home = Home::demo();
    let run = home.run(&["show", "CR-\u{1b}[2J9"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("no change request \"CR-\\u{001b}[2J9\""),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains('\u{1b}'));
}
