//! `tollgate submit`: every kind of bad input is refused with the file, the JSON path and
//! what was expected; nothing is ever partially stored; revisions never overwrite.

mod common;

use common::{Home, fixture_json};
use serde_json::{Value, json};

/// Submits `files` to a demo store and asserts the refusal: exit status 1, each expected
/// fragment in stderr, and the store exactly as it was.
fn assert_refused(home: &Home, files: &[&str], expected: &[&str]) {
    let before = home.stored();
    let mut args = vec!["submit"];
    args.extend_from_slice(files);
    let run = home.run(&args);
    assert_eq!(
        run.code, 1,
        "expected refusal\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    for fragment in expected {
        assert!(
            run.stderr.contains(fragment),
            "stderr lacks {fragment:?}:\n{}",
            run.stderr
        );
    }
    assert!(run.stderr.contains("nothing was stored"), "{}", run.stderr);
    assert_eq!(home.stored(), before, "the store must be unchanged");
}

fn new_cr(id: &str) -> Value {
    let mut v = fixture_json("CR-1045");
    v["id"] = json!(id);
    v
}

#[test]
fn malformed_json_names_file_line_and_column() {
    let home = Home::demo();
    let f = home.write("broken.json", b"{\n  \"schema\": \"tollgate/change-request/v1\",\n  \"id\": \"CR-1\"\n  \"gate\": \"model\"\n}");
    assert_refused(
        &home,
        &[&f],
        &[&format!("{f}: $: line 4, column 3: invalid JSON")],
    );
}

#[test]
fn wrong_types_and_missing_fields_are_all_listed_with_paths() {
    let home = Home::demo();
    let mut v = new_cr("CR-2001");
    v["metrics"][0]["baseline"] = json!("0.84");
    v["plan"]["rollback_tested"] = json!("yes");
    v.as_object_mut().unwrap().remove("owner");
    let f = home.write_json("types.json", &v);
    assert_refused(
        &home,
        &[&f],
        &[
            &format!("{f}: $.owner: missing required field"),
            &format!("{f}: $.metrics[0].baseline: expected a finite number, found string \"0.84\""),
            &format!("{f}: $.plan.rollback_tested: expected true or false, found string \"yes\""),
        ],
    );
}

#[test]
fn unknown_gate_is_refused_with_the_valid_choices() {
    let home = Home::demo();
    let mut v = new_cr("CR-2002");
    v["gate"] = json!("release");
    let f = home.write_json("gate.json", &v);
    assert_refused(
        &home,
        &[&f],
        &["$.gate: expected one of data, model, deployment, emergency, policy, found \"release\""],
    );
    // A policy change is never submitted: it is proposed, which checks it as one.
    v["gate"] = json!("policy");
    v["policy"] =
        json!({"text": "version = 1", "base_digest": format!("sha256:{}", "a".repeat(64))});
    let f = home.write_json("policy-gate.json", &v);
    assert_refused(
        &home,
        &[&f],
        &[
            "$.gate: a policy change is not submitted",
            "tollgate policy propose",
        ],
    );
}

#[test]
fn nan_and_infinite_metrics_are_refused() {
    let home = Home::demo();
    let text = serde_json::to_string_pretty(&new_cr("CR-2003"))
        .unwrap()
        .replace("\"candidate\": 0.845", "\"candidate\": NaN");
    let nan = home.write("nan.json", text.as_bytes());
    assert_refused(
        &home,
        &[&nan],
        &["NaN and Infinity are not valid JSON numbers"],
    );

    let text = serde_json::to_string_pretty(&new_cr("CR-2003"))
        .unwrap()
        .replace("\"candidate\": 0.845", "\"candidate\": -Infinity");
    let inf = home.write("inf.json", text.as_bytes());
    assert_refused(
        &home,
        &[&inf],
        &["NaN and Infinity are not valid JSON numbers"],
    );

    let mut v = new_cr("CR-2003");
    v["metrics"][1]["baseline"] = json!("inf");
    let s = home.write_json("inf-string.json", &v);
    assert_refused(
        &home,
        &[&s],
        &["$.metrics[1].baseline: expected a finite number"],
    );
}

#[test]
fn oversized_fields_and_documents_are_refused() {
    let home = Home::demo();
    let mut v = new_cr("CR-2004");
    v["title"] = json!("t".repeat(201));
    let f = home.write_json("title.json", &v);
    assert_refused(
        &home,
        &[&f],
        &["$.title: expected at most 200 characters, found 201"],
    );

    let mut v = new_cr("CR-2004");
    v["notes"] = json!("x".repeat(1024 * 1024));
    let f = home.write_json("huge.json", &v);
    assert_refused(
        &home,
        &[&f],
        &["$: expected a document of at most 1048576 bytes"],
    );
}

#[test]
fn duplicate_ids_in_one_batch_refuse_the_whole_batch() {
    let home = Home::demo();
    let a = home.write_json("a.json", &new_cr("CR-2005"));
    let b = home.write_json("b.json", &new_cr("CR-2005"));
    assert_refused(
        &home,
        &[&a, &b],
        &[&format!("{b}: $.id: CR-2005 also appears in {a}")],
    );
}

#[test]
fn one_bad_document_means_nothing_from_the_batch_is_stored() {
    let home = Home::demo();
    let good = home.write_json("good.json", &new_cr("CR-2006"));
    let mut bad = new_cr("CR-2007");
    bad["subject"]["environment"] = json!("production");
    let bad = home.write_json("bad.json", &bad);
    let missing = home.path("missing.json").to_string_lossy().into_owned();
    assert_refused(
        &home,
        &[&good, &bad, &missing],
        &[
            &format!("{bad}: $.subject.environment: expected one of dev, staging, prod"),
            &format!("{missing}: cannot read"),
        ],
    );
}

#[test]
fn hostile_ids_are_refused() {
    let home = Home::demo();
    for (name, id) in [
        ("slash", "../CR-1"),
        ("control", "CR-\u{1b}[2J"),
        ("long", &"C".repeat(65)),
    ] {
        let f = home.write_json(&format!("{name}.json"), &new_cr(id));
        assert_refused(&home, &[&f], &["$.id: expected an identifier"]);
    }
}

#[test]
fn changed_content_records_a_new_revision_and_identical_content_is_a_no_op() {
    let home = Home::demo();
    let original = home.write_json("orig.json", &fixture_json("CR-1042"));
    let same = home.run(&["submit", &original]).ok();
    assert!(
        same.stdout.contains("CR-1042: unchanged, still revision 1"),
        "{}",
        same.stdout
    );

    let mut changed = fixture_json("CR-1042");
    changed["metrics"][1]["candidate"] = json!(0.640);
    let changed = home.write_json("changed.json", &changed);
    let run = home.run(&["submit", "--json", &changed]).ok();
    let outcome = &run.json()[0];
    assert_eq!(outcome["outcome"], "revised");
    assert_eq!(outcome["revision"], 2);
    assert_ne!(outcome["digest"], outcome["previous_digest"]);

    let shown = home.run(&["show", "CR-1042", "--json"]).ok().json();
    assert_eq!(shown["revision"], 2);
    assert_eq!(shown["revisions"].as_array().unwrap().len(), 2);
    assert_eq!(shown["document"]["metrics"][1]["candidate"], 0.64);
    // The first revision is still there, unchanged.
    let first = home
        .run(&["show", "CR-1042", "--revision", "1", "--json"])
        .ok()
        .json();
    assert_eq!(first["document"]["metrics"][1]["candidate"], 0.648);
    assert_eq!(first["is_current"], false);
    let missing = home.run(&["show", "CR-1042", "--revision", "9"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("has no revision 9; it has revisions 1 to 2"),
        "{}",
        missing.stderr
    );
}

#[test]
fn unknown_fields_are_kept_not_dropped() {
    let home = Home::demo();
    let mut v = new_cr("CR-2008");
    v["x_team"] = json!({"slack": "#ml-risk", "priority": 2});
    v["subject"]["x_registry"] = json!("mlflow");
    let f = home.write_json("extra.json", &v);
    home.run(&["submit", &f]).ok();
    let shown = home.run(&["show", "CR-2008", "--json"]).ok().json();
    assert_eq!(shown["document"]["x_team"]["slack"], "#ml-risk");
    assert_eq!(shown["document"]["subject"]["x_registry"], "mlflow");
}

#[test]
fn stdin_documents_are_accepted() {
    use std::io::Write;
    let home = Home::demo();
    let mut child = home
        .command(&["submit", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            serde_json::to_string(&new_cr("CR-2009"))
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
    let run: common::Run = child.wait_with_output().unwrap().into();
    let run = run.ok();
    assert!(
        run.stdout.contains("CR-2009: created, revision 1"),
        "{}",
        run.stdout
    );
}

#[test]
fn terminal_escape_sequences_in_cr_text_never_reach_the_output() {
    let home = Home::demo();
    let mut v = new_cr("CR-2010");
    v["title"] = json!("churn\u{1b}[2J\u{1b}]0;pwned\u{7} tweak\u{202e}");
    v["summary"] = json!("line one\n\u{1b}[31mred\u{1b}[0m line two");
    let f = home.write_json("hostile.json", &v);
    home.run(&["submit", &f]).ok();
    for args in [vec!["list"], vec!["show", "CR-2010"]] {
        let out = home.run(&args).ok().stdout;
        assert!(
            !out.contains('\u{1b}'),
            "{args:?} printed an escape sequence"
        );
        assert!(
            !out.contains('\u{7}') && !out.contains('\u{202e}'),
            "{args:?}"
        );
        assert!(
            out.contains("churn"),
            "{args:?} still shows the text around it"
        );
    }
    // The stored document keeps the exact bytes for the audit trail.
    let shown = home.run(&["show", "CR-2010", "--json"]).ok().json();
    assert!(
        shown["document"]["title"]
            .as_str()
            .unwrap()
            .contains('\u{1b}')
    );
}

#[test]
fn submitting_without_a_store_explains_how_to_create_one() {
    let home = Home::new();
    let f = home.write_json("cr.json", &new_cr("CR-2011"));
    let run = home.run(&["submit", &f]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no tollgate store at"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("tollgate init"), "{}", run.stderr);
    assert!(
        !home.store().exists(),
        "a failed submit must not create a store"
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let run = Home::new().run(&["--version"]).ok();
    assert!(
        run.stdout
            .starts_with(&format!("tollgate {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        run.stdout
    );
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git is installed");
    if head.status.success() {
        // Built from this checkout: the commit is named.
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert!(
            run.stdout.contains(&format!("(commit {head}")),
            "{} (HEAD {head})",
            run.stdout
        );
    }
}

#[test]
fn completions_and_the_manual_cover_every_command() {
    let home = Home::new();
    let bash = home.run(&["completions", "bash"]).ok().stdout;
    let script = home.write("tollgate.bash", bash.as_bytes());
    let syntax = std::process::Command::new("bash")
        .args(["-n", &script])
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    for shell_marker in [
        ("zsh", "#compdef tollgate"),
        ("fish", "complete -c tollgate"),
    ] {
        let out = home.run(&["completions", shell_marker.0]).ok().stdout;
        assert!(out.contains(shell_marker.1), "{}: {out}", shell_marker.0);
    }
    let man = home.run(&["man"]).ok().stdout;
    assert!(man.contains(".TH tollgate 1"), "{man}");
    for command in [
        "approve", "rollback", "evidence", "verify", "serve", "token",
    ] {
        assert!(bash.contains(command), "bash completion lacks {command}");
        assert!(man.contains(command), "the manual lacks {command}");
    }
    // An unknown shell is a usage error naming the choices.
    let bad = home.run(&["completions", "tcsh"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("possible values"), "{}", bad.stderr);
}
