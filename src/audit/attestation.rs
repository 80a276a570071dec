//! The approval attestation (`tollgate attest`): an in-toto Statement whose subject is the
//! model bytes a CR ships (`subject.artifact_digest`) and whose predicate is the approved
//! revision with every sign-off's signed log entry, in a DSSE envelope signed by the
//! team server's principal. A deploy job ships only what it can show this for, and
//! `tollgate attest verify` checks it offline against the policy's keys — the envelope's
//! signature, every decision's SSHSIG, that the revision's content hashes to the digest
//! the decisions signed and names the artifact, and that the sign-offs complete the
//! policy's requirements.

use super::canonical::{digest, to_canonical_string};
use super::keys::{Keyring, Signer, verify_raw};
use super::log::{DecisionRecord, LogEntry, entry_hash, time_text};
use crate::domain::policy::Policy;
use base64ct::Encoding as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The in-toto Statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type naming tollgate's approval.
pub const PREDICATE_TYPE: &str = "https://tollgate.dev/attestation/approval/v1";
/// The DSSE payload type of an in-toto Statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Always [`PAYLOAD_TYPE`].
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The Statement, base64.
    pub payload: String,
    /// Signatures over the PAE of type and payload.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// The signing key's `SHA256:` fingerprint (as `ssh-keygen -l` prints it).
    pub keyid: String,
    /// The bare ed25519 signature, base64.
    pub sig: String,
}

/// DSSE's pre-authentication encoding: what is signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// One sign-off as the predicate carries it: the decision's signed log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOff {
    /// Who signed.
    pub principal: String,
    /// In which role.
    pub role: String,
    /// Its log entry: position, hash, the signed body and the SSHSIG.
    pub entry: LogEntry,
}

/// What an attestation states about an approved revision.
#[derive(Debug, Clone)]
pub struct Approved<'a> {
    /// The CR's canonical document at the approved revision.
    pub document: &'a Value,
    /// Its revision number.
    pub revision: u32,
    /// The effective risk.
    pub risk: &'a str,
    /// The policy in force: version and digest.
    pub policy: (u32, &'a str),
    /// The sign-offs that approve it.
    pub signoffs: Vec<SignOff>,
    /// The log head when it was issued.
    pub head: (u64, Option<&'a str>),
    /// When it was issued.
    pub at: DateTime<Utc>,
}

/// Why an attestation was not issued or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AttestationError(pub String);

fn fail<T>(why: impl Into<String>) -> Result<T, AttestationError> {
    Err(AttestationError(why.into()))
}

/// Builds the Statement for `a` and signs it with `key` in a DSSE envelope.
pub fn issue(a: &Approved<'_>, key: &Signer) -> Result<Envelope, AttestationError> {
    let subject = &a.document["subject"];
    let Some(artifact) = subject["artifact_digest"].as_str() else {
        return fail("the change request names no subject.artifact_digest");
    };
    let hex = artifact.trim_start_matches("sha256:");
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{
            "name": format!("{}:{}", subject["name"].as_str().unwrap_or(""), subject["to_version"].as_str().unwrap_or("")),
            "digest": {"sha256": hex},
        }],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "change_request": {
                "id": a.document["id"],
                "revision": a.revision,
                "digest": digest(a.document),
                "document": a.document,
            },
            "status": "approved",
            "risk": a.risk,
            "policy": {"version": a.policy.0, "digest": a.policy.1},
            "signoffs": a.signoffs,
            "log_head": {"seq": a.head.0, "hash": a.head.1},
            "issued_at": time_text(a.at),
        },
    });
    let payload = to_canonical_string(&statement);
    let sig = key
        .sign_raw(&pae(PAYLOAD_TYPE, payload.as_bytes()))
        .map_err(|e| AttestationError(e.to_string()))?;
    Ok(Envelope {
        payload_type: PAYLOAD_TYPE.into(),
        payload: base64ct::Base64::encode_string(payload.as_bytes()),
        signatures: vec![EnvelopeSignature {
            keyid: key.fingerprint().to_string(),
            sig: base64ct::Base64::encode_string(&sig),
        }],
    })
}

/// What a verified attestation says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// The CR.
    pub cr_id: String,
    /// Its approved revision and digest.
    pub revision: u64,
    /// The revision's content digest.
    pub cr_digest: String,
    /// The artifact the approval binds.
    pub artifact: String,
    /// The server principal that signed the envelope.
    pub signed_by: String,
    /// Who signed off, as `principal (role)`.
    pub signoffs: Vec<String>,
    /// The digest of the policy in force when it was issued.
    pub issued_under: String,
}

/// Verifies an envelope against `policy` (its keys and its sign-off rules): the server
/// principal's signature over the Statement, every decision's SSHSIG and body, that the
/// document hashes to the digest they signed and names the artifact, and that the
/// sign-offs approve it under `policy`.
pub fn verify(text: &str, policy: &Policy) -> Result<Verified, AttestationError> {
    let env: Envelope = serde_json::from_str(text)
        .map_err(|e| AttestationError(format!("not a DSSE envelope: {e}")))?;
    if env.payload_type != PAYLOAD_TYPE {
        return fail(format!(
            "payloadType is {:?}, expected {PAYLOAD_TYPE:?}",
            env.payload_type
        ));
    }
    let payload = base64ct::Base64::decode_vec(&env.payload)
        .map_err(|e| AttestationError(format!("payload is not base64: {e}")))?;
    let keyring = Keyring::from_policy(policy).map_err(|e| AttestationError(e.to_string()))?;
    let signed = pae(PAYLOAD_TYPE, &payload);
    let signer = env.signatures.iter().find_map(|s| {
        let sig = base64ct::Base64::decode_vec(&s.sig).ok()?;
        keyring.keys().find_map(|(id, key)| {
            let server = policy
                .principal(id)
                .is_some_and(|p| p.has_role(crate::domain::provenance::SERVER_ROLE));
            (server
                && key.fingerprint(ssh_key::HashAlg::Sha256).to_string() == s.keyid
                && verify_raw(key, &signed, &sig))
            .then(|| id.to_string())
        })
    });
    let Some(signed_by) = signer else {
        return fail(
            "no signature on the envelope is a server principal's of this policy over its payload",
        );
    };
    let statement: Value = serde_json::from_slice(&payload)
        .map_err(|e| AttestationError(format!("the payload is not JSON: {e}")))?;
    if statement["_type"] != STATEMENT_TYPE || statement["predicateType"] != PREDICATE_TYPE {
        return fail("not an in-toto Statement of tollgate's approval predicate");
    }
    let p = &statement["predicate"];
    let cr = &p["change_request"];
    let document = &cr["document"];
    let cr_digest = cr["digest"].as_str().unwrap_or_default().to_string();
    if digest(document) != cr_digest {
        return fail("the change request's content does not hash to the digest the sign-offs name");
    }
    let artifact = document["subject"]["artifact_digest"]
        .as_str()
        .unwrap_or_default();
    let subject_digest = statement["subject"][0]["digest"]["sha256"]
        .as_str()
        .unwrap_or_default();
    if artifact.is_empty() || artifact.trim_start_matches("sha256:") != subject_digest {
        return fail(format!(
            "the statement's subject (sha256:{subject_digest}) is not the artifact the change request names ({artifact})"
        ));
    }
    let (cr_model, _) =
        crate::domain::change_request::parse_document(to_canonical_string(document).as_bytes())
            .map_err(|e| AttestationError(format!("the change request does not read: {e}")))?;
    let signoffs: Vec<SignOff> = serde_json::from_value(p["signoffs"].clone())
        .map_err(|e| AttestationError(format!("the sign-offs do not read: {e}")))?;
    let mut decisions = Vec::new();
    for s in &signoffs {
        let e = &s.entry;
        if entry_hash(&e.body) != e.hash {
            return fail(format!(
                "the entry of {}'s sign-off does not hash to {}",
                s.principal, e.hash
            ));
        }
        let sig = e.signature.as_deref().unwrap_or_default();
        keyring
            .verify(&s.principal, e.body.as_bytes(), sig)
            .map_err(|err| {
                AttestationError(format!(
                    "{}'s sign-off (entry {}): {err}",
                    s.principal, e.seq
                ))
            })?;
        let record =
            DecisionRecord::parse(&e.body).map_err(|err| AttestationError(err.to_string()))?;
        if record.cr_digest != cr_digest
            || record.principal != s.principal
            || record.role != s.role
            || record.verdict != "approve"
        {
            return fail(format!(
                "entry {} is not {}'s approval of this revision as {}",
                e.seq, s.principal, s.role
            ));
        }
        decisions.push(
            record
                .to_decision()
                .map_err(|err| AttestationError(err.to_string()))?,
        );
    }
    let eval = crate::domain::status::evaluate(&cr_model, &cr_digest, &decisions, policy);
    if !eval.signoffs.complete() {
        return fail(format!(
            "the sign-offs do not approve it under this policy: {}/{} (still needs {})",
            eval.signoffs.obtained(),
            eval.signoffs.required(),
            eval.signoffs.missing_roles().join(", ")
        ));
    }
    Ok(Verified {
        cr_id: cr_model.id.clone(),
        revision: cr["revision"].as_u64().unwrap_or_default(),
        cr_digest,
        artifact: artifact.to_string(),
        signed_by,
        signoffs: signoffs
            .iter()
            .map(|s| format!("{} ({})", s.principal, s.role))
            .collect(),
        issued_under: p["policy"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}
