//! The emergency gate from the CLI: only the on-call roster may bypass review, the
//! rollback command runs and its outcome is signed, exceptions expire and are never
//! reused, overdue reviews are loud, and a lead's review closes them.

mod common;

use common::{DEMO_ENTRIES, Home, POLICY_CHANGE_ENTRIES, assert_refusal};

/// Entries before the first rollback in a [`home_with_rollback`].
const SET_UP: u64 = DEMO_ENTRIES + POLICY_CHANGE_ENTRIES;

/// A demo home whose policy (changed through a proposal two leads approved) runs `script`
/// (a shell snippet) for every rollback.
fn home_with_rollback(script: &str, timeout: u32) -> Home {
    let home = Home::demo();
    let path = home.script("rollback.sh", script);
    let mut text = home.policy_text();
    text.push_str(&format!(
        "\n[[emergency.rollback]]\nsubject = \"recommender\"\ncommand = [\"{}\", \"{{subject}}\", \"{{environment}}\", \"{{to_version}}\", \"{{incident}}\"]\ntimeout_seconds = {timeout}\n",
        path.display()
    ));
    home.adopt_policy(&text, "run the recommender's rollback script");
    home.run(&["policy", "check"]).ok();
    assert_eq!(home.verified_entries(), SET_UP);
    home
}

fn rollback(home: &Home, who: &str, incident: &str, now: Option<&str>) -> common::Run {
    home.rollback(who, incident, now)
}

fn exceptions(home: &Home, now: &str) -> serde_json::Value {
    let out: common::Run = home
        .command(&["exceptions", "--all", "--json"])
        .env("TOLLGATE_NOW", now)
        .output()
        .unwrap()
        .into();
    out.ok().json()
}

const T0: &str = "2026-11-25T10:00:00Z";

#[test]
fn only_the_on_call_roster_may_bypass_review() {
    let home = home_with_rollback("echo should not run", 30);
    let run = rollback(&home, "devi", "INC-2291", Some(T0));
    assert_refusal(
        &run,
        &[
            "devi is not on the on-call roster",
            "[on-call-only]",
            "Marco Rossi (marco), Lena Vogel (lena)",
        ],
    );
    assert!(!run.stdout.contains("should not run"));
    assert_eq!(home.verified_entries(), SET_UP, "nothing recorded");
}

#[test]
fn an_authorised_rollback_runs_the_command_and_signs_its_outcome() {
    let home = home_with_rollback(
        "echo \"helm rollback $1 ($2) to $3 for $4\"; echo 'pods ready' >&2",
        30,
    );
    let run = rollback(&home, "lena", "INC-2291", Some(T0)).ok();
    assert!(
        run.stdout
            .contains("authorised: roll back recommender@prod 8 → 7 for INC-2291 by lena"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("│ helm rollback recommender (prod) to 7 for INC-2291"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("│ pods ready"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("rollback command finished: exit status 0"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("post-incident review due 2026-11-27 10:00 UTC"),
        "{}",
        run.stdout
    );
    let ex = exceptions(&home, T0);
    assert_eq!(ex[0]["state"], "active");
    assert_eq!(ex[0]["rollbacks"][0]["outcome"]["exit_status"], 0);
    assert_eq!(home.verified_entries(), SET_UP + 2);
    // The signed outcome holds the command and a digest of its output.
    let log = home.run(&["log", "export"]).ok().stdout;
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "rollback-executed");
    let body: serde_json::Value = serde_json::from_str(last["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["command"][3], "7");
    assert!(
        body["output_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    // The history lists the rollback and its outcome beside the decisions.
    let history = home.run(&["history", "--json"]).ok().json();
    let kinds: Vec<&str> = history["emergencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["rollback", "rollback-ran"]);
    assert_eq!(history["emergencies"][0]["incident"], "INC-2291");
    assert_eq!(history["emergencies"][1]["succeeded"], true);
    let text = home.run(&["history"]).ok().stdout;
    assert!(
        text.contains("INC-2291     lena     rollback recommender@prod 8 → 7 — verified"),
        "{text}"
    );
    // A decision-only filter leaves them out.
    let approvals = home
        .run(&["history", "--verdict", "approve", "--json"])
        .ok()
        .json();
    assert!(approvals["emergencies"].as_array().unwrap().is_empty());
}

#[test]
fn a_second_rollback_on_the_same_incident_is_linked_and_an_expired_bypass_is_not_reused() {
    let home = home_with_rollback("echo ok", 30);
    rollback(&home, "lena", "INC-2291", Some(T0)).ok();
    // 7 is live after the first: the next rollback starts from it.
    let second = home
        .rollback_with(
            "marco",
            "INC-2291",
            Some("2026-11-25T11:00:00Z"),
            &["--to", "6"],
        )
        .ok();
    assert!(
        second
            .stdout
            .contains("linked to the open exception (2 rollbacks)"),
        "{}",
        second.stdout
    );
    let ex = exceptions(&home, "2026-11-25T11:00:00Z");
    assert_eq!(ex.as_array().unwrap().len(), 1);
    assert_eq!(ex[0]["rollbacks"].as_array().unwrap().len(), 2);

    // Five hours after opening, the 4 h bypass has expired: a new exception opens.
    let third = home
        .rollback_with(
            "marco",
            "INC-2291",
            Some("2026-11-25T15:00:00Z"),
            &["--to", "5"],
        )
        .ok();
    assert!(
        !third.stdout.contains("linked to the open exception"),
        "{}",
        third.stdout
    );
    let ex = exceptions(&home, "2026-11-25T15:00:00Z");
    let list = ex.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let states: Vec<&str> = list.iter().map(|x| x["state"].as_str().unwrap()).collect();
    assert!(
        states.contains(&"expired") && states.contains(&"active"),
        "{states:?}"
    );
    // The new authorisation still links to the incident's earlier entries.
    let log = home.run(&["log", "export"]).ok().stdout;
    let auths: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "emergency-authorised")
        .map(|e| serde_json::from_str(e["body"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(auths.len(), 3);
    assert!(auths[2]["linked"].is_string());
    assert!(
        auths[2]["exception"]["id"].is_null(),
        "opens its own exception"
    );
    home.verified_entries();
}

#[test]
fn after_a_rollback_the_version_rolled_back_to_is_live_and_the_same_rollback_is_refused() {
    let home = home_with_rollback("echo ok", 30);
    rollback(&home, "lena", "INC-2291", Some(T0)).ok();
    let entries = home.verified_entries();
    // Nothing earlier than 7 is known: the CLI asks for the target, saying what is live.
    assert_refusal(
        &rollback(&home, "marco", "INC-2291", Some("2026-11-25T10:30:00Z")),
        &[
            "recommender@prod runs 7",
            "rolled back from 8 for INC-2291",
            "give --to VERSION",
        ],
    );
    // The same rollback from 8 again is refused by the rule, before anything runs.
    let again = home.rollback_with(
        "marco",
        "INC-2291",
        Some("2026-11-25T10:30:00Z"),
        &["--from", "8", "--to", "7"],
    );
    assert_refusal(
        &again,
        &[
            "[rollback-stale]",
            "recommender@prod runs 7 since lena rolled it back from 8 for INC-2291",
            "roll back from 7",
        ],
    );
    assert!(!again.stdout.contains("ok"), "the command did not run");
    assert_eq!(home.verified_entries(), entries, "nothing recorded");
}

/// A rollback whose command failed left the old version live: the same rollback is
/// accepted again (a retry).
#[test]
fn a_failed_rollback_can_be_retried_from_the_same_version() {
    let home = home_with_rollback("exit 3", 30);
    let failed = rollback(&home, "lena", "INC-2291", Some(T0));
    assert_ne!(failed.code, 0, "{}", failed.stdout);
    let retry = rollback(&home, "lena", "INC-2291", Some("2026-11-25T10:05:00Z"));
    assert!(
        retry.stdout.contains("recommender@prod 8 → 7"),
        "{}{}",
        retry.stdout,
        retry.stderr
    );
    assert!(!retry.stderr.contains("rollback-stale"), "{}", retry.stderr);
    home.verified_entries();
}

#[test]
fn an_overdue_review_is_loud_and_a_lead_closes_it() {
    let home = home_with_rollback("echo ok", 30);
    rollback(&home, "lena", "INC-2291", Some(T0)).ok();
    let late = "2026-11-27T11:30:00Z";
    let list: common::Run = home
        .command(&["list"])
        .env("TOLLGATE_NOW", late)
        .output()
        .unwrap()
        .into();
    let list = list.ok();
    assert!(
        list.stdout
            .starts_with("⚠ post-incident review overdue: INC-2291 (overdue 1h 30m)"),
        "{}",
        list.stdout
    );
    let json: common::Run = home
        .command(&["list", "--json"])
        .env("TOLLGATE_NOW", late)
        .output()
        .unwrap()
        .into();
    let json = json.ok();
    assert!(json.stderr.contains("post-incident review overdue"));
    json.json();
    assert_eq!(exceptions(&home, late)[0]["state"], "review-overdue");

    let not_lead = home.run(&[
        "--as",
        "marco",
        "review",
        "INC-2291",
        "--root-cause",
        "x",
        "--follow-ups",
        "y",
    ]);
    assert_refusal(&not_lead, &["[review-role]", "ask one of: lena, sofia"]);
    let own = home.run(&[
        "--as",
        "lena",
        "review",
        "INC-2291",
        "--root-cause",
        "x",
        "--follow-ups",
        "y",
    ]);
    assert_refusal(
        &own,
        &[
            "lena authorised a rollback under INC-2291 and cannot review it",
            "[independent-review]",
        ],
    );
    home.run(&[
        "--as",
        "sofia",
        "review",
        "INC-2291",
        "--root-cause",
        "v8 ranking regression for new users",
        "--follow-ups",
        "new-user segment in canary metrics (amara)",
    ])
    .ok();
    assert_eq!(exceptions(&home, late)[0]["state"], "closed");
    let list: common::Run = home
        .command(&["list"])
        .env("TOLLGATE_NOW", late)
        .output()
        .unwrap()
        .into();
    assert!(!list.ok().stdout.contains("overdue"));
    let again = home.run(&[
        "--as",
        "sofia",
        "review",
        "INC-2291",
        "--root-cause",
        "x",
        "--follow-ups",
        "y",
    ]);
    assert_refusal(&again, &["[no-open-exception]"]);
    assert_eq!(home.verified_entries(), SET_UP + 2 + 1);
}

#[test]
fn failing_and_hanging_rollback_commands_are_recorded_as_such() {
    let home = home_with_rollback("echo 'release 7 not found' >&2; exit 3", 30);
    let run = rollback(&home, "lena", "INC-1", Some(T0));
    assert_refusal(
        &run,
        &[
            "the rollback command failed: exit status 3",
            "the authorisation is recorded",
        ],
    );
    assert_eq!(
        exceptions(&home, T0)[0]["rollbacks"][0]["outcome"]["exit_status"],
        3
    );

    let home = home_with_rollback("sleep 30", 1);
    let run = rollback(&home, "lena", "INC-2", Some(T0));
    assert_refusal(&run, &["timed out after 1 s"]);
    let outcome = &exceptions(&home, T0)[0]["rollbacks"][0]["outcome"];
    assert_eq!(outcome["timed_out"], true);
    assert!(outcome["exit_status"].is_null());
    home.verified_entries();
}

#[test]
fn without_a_command_the_authorisation_is_recorded_for_the_operator() {
    let home = Home::demo();
    let run = rollback(&home, "marco", "INC-3", Some(T0)).ok();
    assert!(
        run.stdout.contains(
            "no rollback command in the policy for this subject: the operator performs the rollback"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(home.verified_entries(), DEMO_ENTRIES + 1);
}

/// Whether process `pid` is still running (a killed process waiting to be reaped by
/// init, a zombie, is not).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
        .ok()
        .and_then(|stat| {
            // pid (comm) STATE ...: the state follows the last ')'.
            stat.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

#[test]
fn output_that_is_not_utf8_is_read_to_the_end_and_recorded() {
    let home = home_with_rollback(
        "printf 'scaling \\377\\376 down\\n'; i=0; while [ $i -lt 2000 ]; do echo \"step $i\"; i=$((i+1)); done; echo 'rollback complete'",
        30,
    );
    let run = rollback(&home, "lena", "INC-2291", Some(T0)).ok();
    assert!(
        run.stdout.contains("│ scaling \u{fffd}\u{fffd} down"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("│ rollback complete"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("rollback command finished: exit status 0"),
        "{}",
        run.stdout
    );
    let log = home.run(&["log", "export"]).ok().stdout;
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    let body: serde_json::Value = serde_json::from_str(last["body"].as_str().unwrap()).unwrap();
    assert!(
        body["output_tail"]
            .as_str()
            .unwrap()
            .ends_with("step 1999\nrollback complete"),
        "{body}"
    );
    assert_eq!(home.verified_entries(), SET_UP + 2);
}

#[test]
fn processes_a_rollback_leaves_behind_are_stopped_with_it() {
    // A background child keeps the output pipe open after the script exits.
    let home = home_with_rollback(
        &format!("sleep 25 & echo $! > {}; echo 'rolled back'", "bg.pid"),
        30,
    );
    let run = home
        .command(&[
            "--as",
            "lena",
            "rollback",
            "--yes",
            "recommender",
            "--env",
            "prod",
            "--incident",
            "INC-5",
            "--reason",
            "conversion -10%",
        ])
        .env("TOLLGATE_NOW", T0)
        .current_dir(home.path(""))
        .output()
        .unwrap();
    let run: common::Run = run.into();
    let run = run.ok();
    assert!(
        run.stdout
            .contains("rollback command finished: exit status 0"),
        "{}",
        run.stdout
    );
    let pid = std::fs::read_to_string(home.path("bg.pid")).unwrap();
    assert!(!alive(&pid), "the background sleep {pid} was left running");

    // On timeout the whole group goes, grandchildren included.
    let home = home_with_rollback(&format!("sleep 30 & echo $! > {}; sleep 30", "bg.pid"), 1);
    let run: common::Run = home
        .command(&[
            "--as",
            "lena",
            "rollback",
            "--yes",
            "recommender",
            "--env",
            "prod",
            "--incident",
            "INC-6",
            "--reason",
            "conversion -10%",
        ])
        .env("TOLLGATE_NOW", T0)
        .current_dir(home.path(""))
        .output()
        .unwrap()
        .into();
    assert_refusal(&run, &["timed out after 1 s"]);
    let pid = std::fs::read_to_string(home.path("bg.pid")).unwrap();
    assert!(!alive(&pid), "the grandchild {pid} outlived the timeout");
}

#[test]
fn versions_that_would_read_as_options_never_reach_the_command() {
    let home = home_with_rollback("echo \"ran with $*\" > ran.txt", 30);
    for (flag, value) in [
        ("--from", "--post-renderer=evil.sh"),
        ("--to", "-rf"),
        ("--to", "{incident}"),
    ] {
        let run = home.run(&[
            "--as",
            "lena",
            "rollback",
            "--yes",
            "recommender",
            "--env",
            "prod",
            &format!("{flag}={value}"),
            "--incident",
            "INC-9",
            "--reason",
            "conversion -10%",
        ]);
        assert_refusal(&run, &["[rollback-target]", "version"]);
        assert!(
            !home.path("ran.txt").exists(),
            "{flag}={value} ran the command"
        );
    }
    assert_eq!(home.verified_entries(), SET_UP, "nothing signed");
    // A change request cannot smuggle one in either.
    let mut doc = common::fixture_json("CR-1045");
    doc["id"] = serde_json::json!("CR-2002");
    doc["subject"]["from_version"] = serde_json::json!("--post-renderer=evil.sh");
    let file = home.write_json("evil.json", &doc);
    assert_refusal(
        &home.run(&["submit", &file]),
        &["$.subject.from_version", "starting with a letter or digit"],
    );
}

#[test]
fn the_exact_command_is_shown_and_without_a_terminal_nothing_happens_until_yes() {
    let home = home_with_rollback("echo \"rolled back $*\"", 30);
    let run: common::Run = home
        .command(&[
            "--as",
            "lena",
            "rollback",
            "recommender",
            "--env",
            "prod",
            "--incident",
            "INC-2291",
            "--reason",
            "conversion -10%",
        ])
        .env("TOLLGATE_NOW", T0)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .into();
    let script = home.path("rollback.sh");
    assert!(
        run.stdout.contains(&format!(
            "then run (no shell, timeout 30 s): {} recommender prod 7 INC-2291",
            script.display()
        )),
        "{}",
        run.stdout
    );
    assert_refusal(&run, &["no terminal to confirm at", "pass --yes"]);
    assert_eq!(run.code, 1);
    assert_eq!(home.verified_entries(), SET_UP, "nothing signed");
    assert!(!run.stdout.contains("rolled back"), "nothing ran");
}
