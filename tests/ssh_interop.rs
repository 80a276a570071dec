//! Interop with the real OpenSSH tools, both ways: an auditor verifies tollgate's records
//! with `ssh-keygen -Y verify` and `sha256sum`, and keys and signatures made by
//! `ssh-keygen` work in tollgate.

mod common;

use common::{Home, assert_refusal};
use std::path::Path;
use std::process::{Command, Stdio};
use tollgate::audit::keys::{Keyring, SignatureError};

fn ssh_keygen(args: &[&str], stdin: Option<&Path>) -> std::process::Output {
    let mut c = Command::new("ssh-keygen");
    c.args(args);
    if let Some(p) = stdin {
        c.stdin(std::fs::File::open(p).unwrap());
    } else {
        c.stdin(Stdio::null());
    }
    c.output()
        .expect("ssh-keygen is installed (scripts/test installs openssh-client)")
}

/// `ssh-keygen -Y verify` of `body` against `sig` for `who` in namespace `tollgate`:
/// what an auditor runs.
fn ssh_verify(signers: &Path, who: &str, sig: &Path, body: &Path) -> std::process::Output {
    ssh_keygen(
        &[
            "-Y",
            "verify",
            "-f",
            signers.to_str().unwrap(),
            "-I",
            who,
            "-n",
            "tollgate",
            "-s",
            sig.to_str().unwrap(),
        ],
        Some(body),
    )
}

/// Replaces the demo key of `who` in the installed policy with `pub_line`.
/// Rotates `who`'s key to `pub_line` the governed way: a policy change two leads adopt.
fn set_key(home: &Home, who: &str, pub_line: &str) {
    let text = home.policy_text();
    let marker = format!("id = \"{who}\"\nkeys = [");
    let start =
        text.find(&marker).expect("demo principal with a key") + marker.len() - "keys = [".len();
    let end = start + text[start..].find('\n').unwrap();
    let text = format!(
        "{}keys = [\"{}\"]{}",
        &text[..start],
        pub_line.trim(),
        &text[end..]
    );
    home.adopt_policy(&text, &format!("{who} signs with a new key"));
    home.run(&["policy", "check"]).ok();
}

#[test]
fn tollgate_records_verify_with_ssh_keygen_and_sha256sum() {
    let home = Home::demo();
    home.decide(
        "devi",
        "request-changes",
        "CR-1044",
        &["--rationale", "per-language FPR report missing"],
    )
    .ok();
    home.decide(
        "marco",
        "reject",
        "CR-1046",
        &["--rationale", "p99 over SLO"],
    )
    .ok();
    let export = home.path("log.jsonl");
    home.run(&["log", "export", "--output", export.to_str().unwrap()])
        .ok();
    // The keys come from the log itself: the signed genesis records its allowed_signers
    // (the same file `policy allowed-signers` prints).
    let genesis: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&export)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(genesis["kind"], "policy-adopted");
    let genesis_body: serde_json::Value =
        serde_json::from_str(genesis["body"].as_str().unwrap()).unwrap();
    let recorded = genesis_body["allowed_signers"].as_str().unwrap();
    assert_eq!(
        recorded,
        home.run(&["policy", "allowed-signers"]).ok().stdout
    );
    let signers = home.path("allowed_signers");
    std::fs::write(&signers, recorded).unwrap();

    let mut signed = 0;
    let mut prev: Option<String> = None;
    for line in std::fs::read_to_string(&export).unwrap().lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let body = home.path("body");
        std::fs::write(&body, e["body"].as_str().unwrap()).unwrap();
        // The chain with standard tools: sha256sum of the body is the entry hash, and each
        // body names the previous hash.
        let sum = Command::new("sha256sum").arg(&body).output().unwrap();
        let hex = String::from_utf8(sum.stdout).unwrap();
        assert_eq!(
            format!("sha256:{}", &hex[..64]),
            e["hash"].as_str().unwrap()
        );
        let parsed: serde_json::Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
        assert_eq!(parsed["prev"].as_str().map(String::from), prev);
        prev = Some(e["hash"].as_str().unwrap().to_string());
        if e["signature"].is_null() {
            continue;
        }
        signed += 1;
        let sig = home.path("body.sig");
        std::fs::write(&sig, e["signature"].as_str().unwrap()).unwrap();
        let who = e["principal"].as_str().unwrap();
        let out = ssh_verify(&signers, who, &sig, &body);
        assert!(
            out.status.success(),
            "ssh-keygen refused entry {}: {}",
            e["seq"],
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains(&format!("Good \"tollgate\" signature for {who}"))
        );
        // One changed byte and ssh-keygen refuses it too.
        std::fs::write(
            &body,
            e["body"]
                .as_str()
                .unwrap()
                .replacen("\"seq\":", "\"seq\":1", 1),
        )
        .unwrap();
        let out = ssh_verify(&signers, who, &sig, &body);
        assert!(!out.status.success(), "ssh-keygen accepted altered content");
    }
    assert_eq!(
        signed, 8,
        "the genesis, the five sample submissions (signed by ci) and two decisions"
    );
}

#[test]
fn a_passphrase_protected_ssh_keygen_key_signs_decisions() {
    let home = Home::demo();
    let key = home.path("id_ed25519");
    let out = ssh_keygen(
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "correct horse",
            "-C",
            "devi@laptop",
            "-f",
            key.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    set_key(
        &home,
        "devi",
        &std::fs::read_to_string(key.with_extension("pub")).unwrap(),
    );
    let k = key.to_str().unwrap();

    let run = home.run(&["--key", k, "reject", "CR-1044", "--rationale", "x"]);
    assert_refusal(
        &run,
        &["is passphrase-protected", "TOLLGATE_KEY_PASSPHRASE"],
    );
    let wrong = home
        .command(&["--key", k, "reject", "CR-1044", "--rationale", "x"])
        .env("TOLLGATE_KEY_PASSPHRASE", "wrong")
        .output()
        .unwrap();
    let wrong: common::Run = wrong.into();
    assert_refusal(&wrong, &["wrong passphrase for"]);

    let ok: common::Run = home
        .command(&[
            "--key",
            k,
            "request-changes",
            "CR-1044",
            "--rationale",
            "fairness report pending",
        ])
        .env("TOLLGATE_KEY_PASSPHRASE", "correct horse")
        .output()
        .unwrap()
        .into();
    let ok = ok.ok();
    assert!(ok.stdout.contains("by devi"), "{}", ok.stdout);
    home.verified_entries();
}

#[test]
fn signatures_made_by_ssh_keygen_verify_in_tollgate() {
    let home = Home::new();
    let key = home.path("k");
    assert!(
        ssh_keygen(
            &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
            None
        )
        .status
        .success()
    );
    let msg = home.path("msg");
    std::fs::write(&msg, "{\"cr_id\":\"CR-1042\",\"verdict\":\"approve\"}").unwrap();
    let sign = |ns: &str| {
        let out = ssh_keygen(
            &[
                "-Y",
                "sign",
                "-q",
                "-f",
                key.to_str().unwrap(),
                "-n",
                ns,
                msg.to_str().unwrap(),
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(msg.with_extension("sig")).unwrap()
    };
    let mut policy = tollgate::demo::policy();
    let pub_line = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    policy
        .principals
        .iter_mut()
        .find(|p| p.id == "devi")
        .unwrap()
        .keys = vec![pub_line.trim().to_string()];
    let ring = Keyring::from_policy(&policy).unwrap();
    let body = std::fs::read(&msg).unwrap();

    let sig = sign("tollgate");
    assert!(ring.verify("devi", &body, &sig).is_ok());
    assert_eq!(
        ring.verify("devi", b"{\"cr_id\":\"CR-1043\"}", &sig),
        Err(SignatureError::Bad)
    );
    assert!(matches!(
        ring.verify("sofia", &body, &sig),
        Err(SignatureError::UnknownKey(_))
    ));
    std::fs::remove_file(msg.with_extension("sig")).unwrap();
    let git = sign("git");
    assert_eq!(
        ring.verify("devi", &body, &git),
        Err(SignatureError::Namespace("git".into()))
    );
}
