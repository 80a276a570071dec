//! `tollgate init` and `tollgate policy check`: a policy is validated before it is used,
//! every problem is named with file and key path, the genesis is signed by one of its own
//! principals, and an existing policy is never silently replaced.

mod common;

use common::{Home, fixtures};

fn shared_policy() -> String {
    std::fs::read_to_string(fixtures().join("policy.toml")).unwrap()
}

#[test]
fn policy_check_accepts_the_playbook_policy() {
    let home = Home::new();
    let file = fixtures().join("policy.toml");
    let run = home.run(&["policy", "check", file.to_str().unwrap()]).ok();
    assert!(
        run.stdout
            .contains("policy OK (version 1, 11 principals, 8 checklist items)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("warning: principals[0].keys: priya has no public key yet"),
        "{}",
        run.stdout
    );
    // Without keys nobody could ever approve a change to it: said, not hidden.
    assert!(
        run.stdout
            .contains("[policy-ungovernable]; before it can be adopted"),
        "{}",
        run.stdout
    );
}

/// The shared policy with a fresh key for each of `who`; returns the text and the key
/// file of each.
fn keyed_policy(home: &Home, who: &[&str]) -> (String, Vec<std::path::PathBuf>) {
    let mut text = shared_policy();
    let mut keys = Vec::new();
    for id in who {
        let key = home.path(&format!("{id}.key"));
        home.run(&["keygen", "--output", key.to_str().unwrap(), "--comment", id])
            .ok();
        let line = std::fs::read_to_string(home.path(&format!("{id}.key.pub"))).unwrap();
        text = text.replacen(
            &format!("id = \"{id}\"\n"),
            &format!("id = \"{id}\"\nkeys = [\"{}\"]\n", line.trim()),
            1,
        );
        keys.push(key);
    }
    (text, keys)
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
fn init_adopts_the_genesis_signed_by_one_of_its_principals() {
    let home = Home::new();
    let (text, keys) = keyed_policy(&home, &["lena", "noor"]);
    let src = home.write("team.policy.toml", text.as_bytes());
    let run = home
        .run(&["init", "--policy", &src, "--key", keys[0].to_str().unwrap()])
        .ok();
    assert!(run.stdout.contains("store ready at"), "{}", run.stdout);
    assert!(
        run.stdout.contains("adopted at entry 1") && run.stdout.contains("signed by lena"),
        "{}",
        run.stdout
    );
    let installed = home.path("tollgate.policy.toml");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), text);
    // The policy in force is the log's: its first entry, pinned by its hash.
    let shown = home.run(&["policy", "show", "--json"]).ok().json();
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["seq"], 1);
    assert_eq!(shown["adopted_by"], "lena");
    assert_eq!(shown["file"]["matches"], true);
    let genesis = shown["genesis"]["hash"].as_str().unwrap().to_string();
    assert!(run.stdout.contains(&format!("--expect-genesis {genesis}")));
    home.run(&["verify", "--expect-genesis", &genesis]).ok();
    let other = format!("sha256:{}", "0".repeat(64));
    let run = home.run(&["verify", "--expect-genesis", &other]);
    common::assert_refusal(&run, &["FAILED at entry 1", "genesis-mismatch"]);
    assert_eq!(
        home.run(&["list"]).ok().stdout,
        "no change requests match\n"
    );
}

#[test]
fn init_refuses_a_policy_nobody_in_it_can_sign_and_creates_nothing() {
    let home = Home::new();
    // The shared fixture lists no keys: the genesis would have no signer.
    let src = fixtures().join("policy.toml");
    let (_, keys) = keyed_policy(&home, &["lena"]);
    let run = home.run(&[
        "init",
        "--policy",
        src.to_str().unwrap(),
        "--key",
        keys[0].to_str().unwrap(),
    ]);
    common::assert_refusal(
        &run,
        &[
            "signed by one of its own principals",
            "is not in the policy",
            "keys = [\"ssh-ed25519 ",
        ],
    );
    assert!(!home.store().exists());
    assert!(!home.path("tollgate.policy.toml").exists());
    // Keyed, but with one lead only: no change to it could ever be approved.
    let line = std::fs::read_to_string(home.path("lena.key.pub")).unwrap();
    let text = shared_policy().replacen(
        "id = \"lena\"\n",
        &format!("id = \"lena\"\nkeys = [\"{}\"]\n", line.trim()),
        1,
    );
    let src = home.write("one-lead.toml", text.as_bytes());
    let run = home.run(&["init", "--policy", &src, "--key", keys[0].to_str().unwrap()]);
    common::assert_refusal(&run, &["[policy-ungovernable]", "lead: lena"]);
    assert!(!home.store().exists());
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
    let (text, keys) = keyed_policy(&home, &["lena", "noor"]);
    let key = keys[0].to_str().unwrap();
    let installed = home.path("tollgate.policy.toml");
    std::fs::write(&installed, shared_policy()).unwrap();
    let src = home.write("team.policy.toml", text.as_bytes());
    let run = home.run(&["init", "--policy", &src, "--key", key]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--replace-policy"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&installed).unwrap(),
        shared_policy()
    );
    assert!(!home.store().exists());

    home.run(&["init", "--policy", &src, "--key", key, "--replace-policy"])
        .ok();
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), text);
    // Re-running init with the same policy is harmless.
    let again = home.run(&["init", "--policy", &src, "--key", key]).ok();
    assert!(
        again.stdout.contains("already initialised"),
        "{}",
        again.stdout
    );
    // A different policy is never installed over the policy in force: it is proposed.
    let other = home.write(
        "other.toml",
        text.replace("high = 24", "high = 48").as_bytes(),
    );
    let run = home.run(&["init", "--policy", &other, "--key", key, "--replace-policy"]);
    common::assert_refusal(
        &run,
        &["already has a policy in force", "tollgate policy propose"],
    );
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), text);
}

#[test]
fn a_broken_or_missing_policy_file_changes_nothing_in_force() {
    let home = Home::demo();
    let policy = home.path("tollgate.policy.toml");
    std::fs::write(&policy, shared_policy().replace("[risk]", "[risk\n")).unwrap();
    // The policy in force is the log's: the queue still works, and says the file differs.
    let run = home.run(&["list"]).ok();
    assert!(run.stdout.contains("CR-1042"), "{}", run.stdout);
    assert_eq!(
        run.stderr
            .matches("differs from the policy in force")
            .count(),
        1,
        "said once: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("tollgate policy propose"),
        "{}",
        run.stderr
    );
    let check = home.run(&["policy", "check"]);
    assert!(
        check.stderr.contains("tollgate.policy.toml: error: line"),
        "{}",
        check.stderr
    );
    std::fs::remove_file(&policy).unwrap();
    let run = home.run(&["list"]).ok();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    // `demo` puts the file back from the policy in force.
    home.run(&["demo"]).ok();
    assert_eq!(
        std::fs::read_to_string(&policy).unwrap(),
        home.policy_text()
    );
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
