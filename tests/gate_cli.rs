//! A gate deploy jobs wait on: `tollgate wait` exits by the CR's fate (0 approved, 1
//! rejected or changes requested, 2 usage, 3 unreachable, 4 timed out) and prints each
//! sign-off as it lands; `tollgate attest` issues the approval as an in-toto attestation
//! signed by the team server's principal, bound to the artifact's sha256, and `attest
//! verify` checks it offline — and refuses one whose signature or sign-offs do not hold.

mod common;

use base64ct::Encoding as _;
use common::{Home, Run, assert_refusal, low_risk_cr};
use serde_json::Value;

const ARTIFACT: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// A demo home holding CR-2045 (low risk, one risk-reviewer) naming `ARTIFACT`.
fn home_with_artifact() -> Home {
    let home = Home::demo();
    let mut doc = low_risk_cr("CR-2045", "jonas", "model");
    doc["subject"]["artifact_digest"] = ARTIFACT.into();
    let file = home.write_json("CR-2045.json", &doc);
    home.run(&["--as", "ci", "submit", &file]).ok();
    home
}

#[test]
fn wait_returns_when_the_approval_lands_and_prints_it() {
    let home = home_with_artifact();
    let child = home
        .command(&["wait", "CR-2045", "--timeout", "120s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    home.approve_low_risk("CR-2045");
    let run: Run = child.wait_with_output().unwrap().into();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("CR-2045 approve by devi as risk-reviewer"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("CR-2045 approved: 1/1 sign-offs on revision 1"),
        "{}",
        run.stdout
    );
    // Asked again once approved: at once, with the outcome as JSON.
    let json = home.run(&["wait", "CR-2045", "--json"]).ok().json();
    assert_eq!(json["status"], "approved");
    assert_eq!(json["signoffs"]["obtained"], 1);
}

#[test]
fn wait_exits_by_the_outcome_a_deploy_job_branches_on() {
    let home = home_with_artifact();
    // Still pending when the time is up: 4, with what it still needs.
    let run = home.run(&["wait", "CR-2045", "--timeout", "1s"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "CR-2045 is still pending after 1 s (0/1 sign-offs; still needs risk-reviewer)"
        ),
        "{}",
        run.stderr
    );
    // Usage: 2.
    assert_eq!(home.run(&["wait", "CR-2045", "--for", "merged"]).code, 2);
    assert_eq!(home.run(&["wait", "CR-2045", "--timeout", "soon"]).code, 2);
    // The server cannot be reached: 3.
    let unreachable = home.remote("http://127.0.0.1:9", "tg_nothing", &["wait", "CR-2045"]);
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);
    // Rejected: 1, saying by whom and why.
    home.decide(
        "devi",
        "reject",
        "CR-2045",
        &["--rationale", "retention drops"],
    )
    .ok();
    assert_refusal(
        &home.run(&["wait", "CR-2045"]),
        &["CR-2045 is rejected by devi: retention drops"],
    );
}

fn attest_locally(home: &Home, who: &str) -> Run {
    let key = home.demo_key(who);
    home.run(&["attest", "CR-2045", "--server-key", key.to_str().unwrap()])
}

#[test]
fn an_approval_is_attested_by_the_server_principal_and_verifies_offline() {
    let home = home_with_artifact();
    // Not before approval, and only by a server principal.
    assert_refusal(
        &attest_locally(&home, "guard"),
        &["CR-2045 is pending", "[not-approved]"],
    );
    home.approve_low_risk("CR-2045");
    assert_refusal(
        &attest_locally(&home, "devi"),
        &["devi does not hold the server role", "[server-only]"],
    );
    let run = attest_locally(&home, "guard").ok();
    let envelope: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    let payload = base64ct::Base64::decode_vec(envelope["payload"].as_str().unwrap()).unwrap();
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["subject"][0]["name"], "churn-predictor:22");
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        ARTIFACT.trim_start_matches("sha256:")
    );
    assert_eq!(statement["predicate"]["signoffs"][0]["principal"], "devi");
    assert_eq!(
        statement["predicate"]["signoffs"][0]["entry"]["kind"],
        "decision"
    );
    let file = home.write("approval.intoto.json", run.stdout.as_bytes());
    let verified = home.run(&["attest", "verify", &file]).ok();
    assert!(
        verified.stdout.contains("verified — CR-2045 revision 1")
            && verified.stdout.contains("approved by devi (risk-reviewer)")
            && verified
                .stdout
                .contains(&format!("binds {ARTIFACT}; signed by guard")),
        "{}",
        verified.stdout
    );
    // Offline, with nothing but the policy file.
    let policy = home.write("policy.toml", home.policy_text().as_bytes());
    let elsewhere = Home::new();
    let offline = elsewhere
        .run(&["attest", "verify", &file, "--against", &policy])
        .ok();
    assert!(
        !offline.stderr.contains("note:"),
        "the policy it was issued under: {}",
        offline.stderr
    );
    // Judged by another policy (one more lead): said, and still verified if it holds.
    let changed = home.write(
        "changed.toml",
        home.policy_text()
            .replace("name = \"Noor Haddad\"", "name = \"Noor H.\"")
            .as_bytes(),
    );
    let other = elsewhere
        .run(&["attest", "verify", &file, "--against", &changed])
        .ok();
    assert!(
        other.stderr.contains("note: judged by policy sha256:"),
        "{}",
        other.stderr
    );

    // A CR that names no artifact has nothing to bind the approval to.
    let mut bare = low_risk_cr("CR-2046", "jonas", "model");
    bare["subject"]["artifact_digest"] = Value::Null;
    let f = home.write_json("CR-2046.json", &bare);
    home.run(&["--as", "ci", "submit", &f]).ok();
    home.decide(
        "devi",
        "approve",
        "CR-2046",
        &[
            "--tick",
            "privacy",
            "--tick",
            "rollback",
            "--rationale",
            "ok",
        ],
    )
    .ok();
    let key = home.demo_key("guard");
    assert_refusal(
        &home.run(&["attest", "CR-2046", "--server-key", key.to_str().unwrap()]),
        &[
            "CR-2046 names no subject.artifact_digest",
            "[no-artifact-digest]",
        ],
    );
}

/// Re-signs `statement` in an envelope with `who`'s demo key (its bare ed25519 signature,
/// as a hand-made issuer with a correct key would).
fn resign(home: &Home, who: &str, statement: &Value) -> String {
    let key =
        tollgate::audit::keys::Signer::load(&home.demo_key(who), || Err("no passphrase".into()))
            .unwrap();
    let payload = tollgate::audit::canonical::to_canonical_string(statement);
    let pae = tollgate::audit::attestation::pae(
        tollgate::audit::attestation::PAYLOAD_TYPE,
        payload.as_bytes(),
    );
    let sig = key.sign_raw(&pae).unwrap();
    serde_json::json!({
        "payloadType": tollgate::audit::attestation::PAYLOAD_TYPE,
        "payload": base64ct::Base64::encode_string(payload.as_bytes()),
        "signatures": [{"keyid": key.fingerprint(), "sig": base64ct::Base64::encode_string(&sig)}],
    })
    .to_string()
}

#[test]
fn attestations_that_do_not_hold_are_refused_by_verify() {
    let home = home_with_artifact();
    home.approve_low_risk("CR-2045");
    let run = attest_locally(&home, "guard").ok();
    let envelope: Value = serde_json::from_str(&run.stdout).unwrap();
    let payload = base64ct::Base64::decode_vec(envelope["payload"].as_str().unwrap()).unwrap();
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    let check = |name: &str, text: &str, why: &str| {
        let file = home.write(name, text.as_bytes());
        assert_refusal(
            &home.run(&["attest", "verify", &file]),
            &["NOT verified", why],
        );
    };
    // Signed by a reviewer, not the server's principal.
    check(
        "by-devi.json",
        &resign(&home, "devi", &statement),
        "no signature on the envelope is a server principal's",
    );
    // Another artifact swapped in, re-signed by the real server key.
    let mut swapped = statement.clone();
    swapped["subject"][0]["digest"]["sha256"] = "0".repeat(64).into();
    check(
        "swapped.json",
        &resign(&home, "guard", &swapped),
        "is not the artifact the change request names",
    );
    // The document edited to name the other artifact: it no longer hashes to what devi signed.
    let mut edited = swapped.clone();
    edited["predicate"]["change_request"]["document"]["subject"]["artifact_digest"] =
        format!("sha256:{}", "0".repeat(64)).into();
    check(
        "edited.json",
        &resign(&home, "guard", &edited),
        "does not hash to the digest the sign-offs name",
    );
    // A sign-off left out: the server's signature holds, the policy's rules do not.
    let mut unsigned = statement.clone();
    unsigned["predicate"]["signoffs"] = serde_json::json!([]);
    check(
        "no-signoffs.json",
        &resign(&home, "guard", &unsigned),
        "the sign-offs do not approve it under this policy: 0/1 (still needs risk-reviewer)",
    );
    // A forged decision body under devi's name.
    let mut forged = statement.clone();
    let body = forged["predicate"]["signoffs"][0]["entry"]["body"]
        .as_str()
        .unwrap()
        .replace("within 1 %", "rubber stamp");
    forged["predicate"]["signoffs"][0]["entry"]["body"] = body.into();
    check(
        "forged.json",
        &resign(&home, "guard", &forged),
        "does not hash to",
    );
}

#[test]
fn the_team_server_attests_with_its_own_key() {
    let home = home_with_artifact();
    home.approve_low_risk("CR-2045");
    let token = home.token("marco");
    let key = home.demo_key("guard");
    let server = home.serve_with("127.0.0.1:0", &["--server-key", key.to_str().unwrap()]);
    let run = home
        .remote(&server.url, &token, &["attest", "CR-2045"])
        .ok();
    let file = home.write("remote.intoto.json", run.stdout.as_bytes());
    let verified = home.run(&["attest", "verify", &file]).ok();
    assert!(
        verified.stdout.contains("signed by guard"),
        "{}",
        verified.stdout
    );
    // The same wait through the server.
    let waited = home.remote(&server.url, &token, &["wait", "CR-2045"]).ok();
    assert!(
        waited.stdout.contains("CR-2045 approved"),
        "{}",
        waited.stdout
    );
}
