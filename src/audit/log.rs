//! The append-only, hash-chained log and its verification.
//!
//! Every entry's *body* is canonical JSON (see [`super::canonical`]) holding its own
//! sequence number, its type and `prev`, the hash of the entry before it. The entry hash is
//! `sha256:` + hex SHA-256 of the body bytes, and decision bodies are signed (SSHSIG) over
//! exactly those bytes. Changing any byte of a body breaks its hash; changing a hash breaks
//! the next link; deleting or reordering entries breaks sequence numbers and links; cutting
//! the tail is caught against the recorded head. [`Verifier`] (in `audit::verify`) names
//! the first bad entry.

use super::canonical::{sha256_digest, to_canonical_string};
use crate::domain::checklist::Tick;
use crate::domain::decision::{Decision, Verdict};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use super::verify::{BadEntry, Verifier, VerifyReport};

/// Body `format` written by this version.
pub const BODY_FORMAT: u32 = 1;

/// What kind of event an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A CR id stored for the first time.
    CrSubmitted,
    /// New content for a known CR id.
    CrRevised,
    /// A signed reviewer decision.
    Decision,
    /// An on-call approver's signed emergency bypass (opens or extends an exception).
    EmergencyAuthorised,
    /// The signed outcome of running the rollback command.
    RollbackExecuted,
    /// A lead's signed post-incident review (closes the exception).
    PostIncidentReview,
    /// A policy becomes the policy in force: the genesis (`init`, `demo`, migration) or a
    /// `policy`-gate CR whose sign-offs were just completed.
    PolicyAdopted,
    /// A `ci` principal's signed result of one check on one exact revision.
    Evidence,
    /// An operator's signed rollout stage (canary or full) of an approved revision.
    RolloutStage,
    /// The KPI guard's signed reading of a CR in canary.
    KpiReading,
    /// A signed rollback drill outside production.
    Drill,
}

impl EntryKind {
    /// The `type` value in bodies and the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::CrSubmitted => "cr-submitted",
            EntryKind::CrRevised => "cr-revised",
            EntryKind::Decision => "decision",
            EntryKind::EmergencyAuthorised => "emergency-authorised",
            EntryKind::RollbackExecuted => "rollback-executed",
            EntryKind::PostIncidentReview => "post-incident-review",
            EntryKind::PolicyAdopted => "policy-adopted",
            EntryKind::Evidence => "evidence",
            EntryKind::RolloutStage => "rollout-stage",
            EntryKind::KpiReading => "kpi-reading",
            EntryKind::Drill => "drill",
        }
    }

    /// Whether entries of this kind carry a signature.
    pub fn is_signed(self) -> bool {
        !matches!(self, EntryKind::CrSubmitted | EntryKind::CrRevised)
    }

    /// The emergency kinds, which together make up the exception records.
    pub const EMERGENCY: [EntryKind; 3] = [
        EntryKind::EmergencyAuthorised,
        EntryKind::RollbackExecuted,
        EntryKind::PostIncidentReview,
    ];

    /// The after-approval kinds (see `audit::rollout`).
    pub const AFTER_APPROVAL: [EntryKind; 3] = [
        EntryKind::RolloutStage,
        EntryKind::KpiReading,
        EntryKind::Drill,
    ];

    /// The kinds appended through `Store::append_emergency` and read back by
    /// `Store::emergency_entries`: what happens to subjects in their environments (the
    /// emergency records and the after-approval ones), judged together in log order.
    pub const OPERATIONS: [EntryKind; 6] = [
        EntryKind::EmergencyAuthorised,
        EntryKind::RollbackExecuted,
        EntryKind::PostIncidentReview,
        EntryKind::RolloutStage,
        EntryKind::KpiReading,
        EntryKind::Drill,
    ];

    /// Parses a stored kind.
    pub fn parse(s: &str) -> Option<EntryKind> {
        [
            EntryKind::CrSubmitted,
            EntryKind::CrRevised,
            EntryKind::Decision,
            EntryKind::EmergencyAuthorised,
            EntryKind::RollbackExecuted,
            EntryKind::PostIncidentReview,
            EntryKind::PolicyAdopted,
            EntryKind::Evidence,
            EntryKind::RolloutStage,
            EntryKind::KpiReading,
            EntryKind::Drill,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One stored log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// Entry kind (also inside the body as `type`).
    pub kind: String,
    /// Canonical JSON body: exactly the bytes that are hashed and signed.
    pub body: String,
    /// `sha256:` digest of `body`.
    pub hash: String,
    /// Armored SSHSIG over `body`, for decisions.
    pub signature: Option<String>,
    /// Principal who signed, for decisions (also inside the body).
    pub principal: Option<String>,
    /// The CR concerned (also inside the body).
    pub cr_id: Option<String>,
    /// When the store received it (RFC 3339; beside the entry, not signed; `None` for
    /// entries from before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
}

/// An entry a reader could not take into account, and why: readers leave it out and
/// carry on (`verify` names it as the first bad entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Untrusted {
    /// Its log position.
    pub seq: u64,
    /// Why it was left out.
    pub problem: String,
}

/// The last entry of the log as recorded separately, to detect a cut tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Sequence number of the last entry (0 for an empty log).
    pub seq: u64,
    /// Its hash (`None` for an empty log).
    pub hash: Option<String>,
}

impl Head {
    /// The head of an empty log.
    pub fn empty() -> Head {
        Head { seq: 0, hash: None }
    }
}

/// Formats a timestamp the way bodies hold it: RFC 3339, UTC, microseconds.
pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The entry hash of a body.
pub fn entry_hash(body: &str) -> String {
    sha256_digest(body.as_bytes())
}

/// What a submission entry says about one revision.
#[derive(Debug, Clone, Copy)]
pub struct SubmissionFacts<'a> {
    /// The CR.
    pub cr_id: &'a str,
    /// Its revision number.
    pub revision: u32,
    /// The revision's content digest.
    pub digest: &'a str,
    /// When it was stored.
    pub at: DateTime<Utc>,
    /// Who submitted it (`None` only for entries backfilled from before submitters).
    pub submitter: Option<&'a str>,
    /// The signer's principal and key fingerprint, when the entry is signed.
    pub signed_by: Option<(&'a str, &'a str)>,
}

/// Body of a `cr-submitted` / `cr-revised` entry.
pub fn submission_body(
    kind: EntryKind,
    seq: u64,
    prev: Option<&str>,
    f: SubmissionFacts<'_>,
) -> String {
    let mut body = json!({
        "type": kind.as_str(),
        "format": BODY_FORMAT,
        "seq": seq,
        "prev": prev,
        "cr_id": f.cr_id,
        "revision": f.revision,
        "digest": f.digest,
        "at": time_text(f.at),
    });
    if let Some(submitter) = f.submitter {
        body["submitter"] = json!(submitter);
    }
    if let Some((principal, fingerprint)) = f.signed_by {
        body["principal"] = json!(principal);
        body["key_fingerprint"] = json!(fingerprint);
    }
    to_canonical_string(&body)
}

/// One checklist item's state as it stood when a decision was signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemSnapshot {
    /// Checklist item id.
    pub id: String,
    /// `pass`, `fail`, `pending`, `missing`, `ticked` or `unticked`.
    pub state: String,
}

/// The signed content of a decision entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// Always `decision`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Body format version.
    pub format: u32,
    /// Position in the log.
    pub seq: u64,
    /// Hash of the previous entry.
    pub prev: Option<String>,
    /// The CR decided on.
    pub cr_id: String,
    /// The revision number reviewed.
    pub cr_revision: u32,
    /// Digest of the exact content reviewed.
    pub cr_digest: String,
    /// `approve`, `reject` or `request-changes`.
    pub verdict: String,
    /// Role signed for.
    pub role: String,
    /// Why.
    pub rationale: String,
    /// Manual items ticked with this decision.
    pub ticks: Vec<TickRecord>,
    /// Every checklist item's state at signing time.
    pub checklist: Vec<ItemSnapshot>,
    /// Who signed.
    pub principal: String,
    /// `SHA256:...` of the signing key.
    pub key_fingerprint: String,
    /// Digest of the policy text in force when signing.
    pub policy_digest: String,
    /// When (UTC).
    pub at: String,
}

/// A tick as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickRecord {
    /// Item id.
    pub item: String,
    /// Optional note.
    pub note: Option<String>,
}

/// A decision entry whose body does not read as a decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedDecision {
    /// Not JSON of the record's shape (or a member named twice).
    #[error("not a decision record: {0}")]
    NotARecord(String),
    /// A verdict tollgate does not know.
    #[error("unknown verdict {0:?}")]
    UnknownVerdict(String),
    /// A signing time that is not RFC 3339.
    #[error("bad time {0:?}: {1}")]
    BadTime(String, String),
}

impl DecisionRecord {
    /// The canonical body bytes to hash and sign.
    pub fn body(&self) -> String {
        // Serialising a struct of strings and integers into a Value cannot fail.
        to_canonical_string(&serde_json::to_value(self).unwrap_or(Value::Null))
    }

    /// Parses a decision body.
    pub fn parse(body: &str) -> Result<DecisionRecord, MalformedDecision> {
        crate::domain::reader::check_no_duplicate_names(body)
            .map_err(|e| MalformedDecision::NotARecord(e.to_string()))?;
        serde_json::from_str(body).map_err(|e| MalformedDecision::NotARecord(e.to_string()))
    }

    /// The rules' view of this record.
    pub fn to_decision(&self) -> Result<Decision, MalformedDecision> {
        let verdict = Verdict::ALL
            .iter()
            .find(|(n, _)| *n == self.verdict)
            .map(|(_, v)| *v)
            .ok_or_else(|| MalformedDecision::UnknownVerdict(self.verdict.clone()))?;
        let at = DateTime::parse_from_rfc3339(&self.at)
            .map_err(|e| MalformedDecision::BadTime(self.at.clone(), e.to_string()))?
            .with_timezone(&Utc);
        Ok(Decision {
            cr_id: self.cr_id.clone(),
            cr_digest: self.cr_digest.clone(),
            verdict,
            role: self.role.clone(),
            rationale: self.rationale.clone(),
            ticks: self
                .ticks
                .iter()
                .map(|t| Tick {
                    item: t.item.clone(),
                    note: t.note.clone(),
                })
                .collect(),
            principal: self.principal.clone(),
            at,
            policy_digest: self.policy_digest.clone(),
        })
    }
}

/// The outcome of checking one entry's signature: the signing key's fingerprint.
pub type SignatureCheck = Result<String, super::keys::SignatureError>;

/// Verifies a signed entry's signature as made by the principal named in the entry (the
/// verifier separately checks that the body names the same principal). Independent of
/// every other entry, so it can run on several cores.
pub fn check_signature(keyring: &super::keys::Keyring, e: &LogEntry) -> SignatureCheck {
    match (&e.principal, &e.signature) {
        (Some(who), Some(sig)) => keyring.verify(who, e.body.as_bytes(), sig),
        _ => Err(super::keys::SignatureError::Malformed(
            "no signature or principal".into(),
        )),
    }
}
