//! The append-only, hash-chained log and its verification.
//!
//! Every entry's *body* is canonical JSON (see [`super::canonical`]) holding its own
//! sequence number, its type and `prev`, the hash of the entry before it. The entry hash is
//! `sha256:` + hex SHA-256 of the body bytes, and decision bodies are signed (SSHSIG) over
//! exactly those bytes. Changing any byte of a body breaks its hash; changing a hash breaks
//! the next link; deleting or reordering entries breaks sequence numbers and links; cutting
//! the tail is caught against the recorded head. [`Verifier`] names the first bad entry.

use super::canonical::{sha256_digest, to_canonical_string};
use super::keys::Keyring;
use crate::domain::checklist::Tick;
use crate::domain::decision::{Decision, Verdict};
use crate::domain::policy::Policy;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;

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

    /// Parses a stored kind.
    pub fn parse(s: &str) -> Option<EntryKind> {
        [
            EntryKind::CrSubmitted,
            EntryKind::CrRevised,
            EntryKind::Decision,
            EntryKind::EmergencyAuthorised,
            EntryKind::RollbackExecuted,
            EntryKind::PostIncidentReview,
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

/// Body of a `cr-submitted` / `cr-revised` entry.
pub fn submission_body(
    kind: EntryKind,
    seq: u64,
    prev: Option<&str>,
    cr_id: &str,
    revision: u32,
    digest: &str,
    at: DateTime<Utc>,
) -> String {
    to_canonical_string(&json!({
        "type": kind.as_str(),
        "format": BODY_FORMAT,
        "seq": seq,
        "prev": prev,
        "cr_id": cr_id,
        "revision": revision,
        "digest": digest,
        "at": time_text(at),
    }))
}

/// One checklist item's state as it stood when a decision was signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSnapshot {
    /// Checklist item id.
    pub id: String,
    /// `pass`, `fail`, `pending`, `missing`, `ticked` or `unticked`.
    pub state: String,
}

/// The signed content of a decision entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct TickRecord {
    /// Item id.
    pub item: String,
    /// Optional note.
    pub note: Option<String>,
}

impl DecisionRecord {
    /// The canonical body bytes to hash and sign.
    pub fn body(&self) -> String {
        // Serialising a struct of strings and integers into a Value cannot fail.
        to_canonical_string(&serde_json::to_value(self).unwrap_or(Value::Null))
    }

    /// Parses a decision body.
    pub fn parse(body: &str) -> Result<DecisionRecord, String> {
        serde_json::from_str(body).map_err(|e| format!("not a decision record: {e}"))
    }

    /// The rules' view of this record.
    pub fn to_decision(&self) -> Result<Decision, String> {
        let verdict = Verdict::ALL
            .iter()
            .find(|(n, _)| *n == self.verdict)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("unknown verdict {:?}", self.verdict))?;
        let at = DateTime::parse_from_rfc3339(&self.at)
            .map_err(|e| format!("bad time {:?}: {e}", self.at))?
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
        })
    }
}

/// The first entry that failed verification, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadEntry {
    /// Its position (for a cut tail: the first missing position).
    pub seq: u64,
    /// Its kind, when known.
    pub kind: Option<String>,
    /// The CR it concerns, when known.
    pub cr_id: Option<String>,
    /// Short machine-readable reason: `altered`, `broken-link`, `reordered`, `missing`,
    /// `bad-signature`, `unknown-key`, `unsigned`, `malformed`, `policy-violation`,
    /// `truncated`, `head-mismatch`.
    pub problem: String,
    /// Explanation for a person.
    pub detail: String,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries checked before stopping.
    pub entries: u64,
    /// Signatures checked.
    pub signatures: u64,
    /// The last good entry.
    pub head: Head,
    /// The first bad entry, if any.
    pub first_bad: Option<BadEntry>,
}

impl VerifyReport {
    /// True when every entry verified.
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// The first 8 bytes of a `sha256:` hash as a number (0 for anything else).
fn hash_key(hash: &str) -> u64 {
    hash.strip_prefix("sha256:")
        .and_then(|h| h.get(..16))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// The outcome of checking one entry's signature: the signing key's fingerprint.
pub type SignatureCheck = Result<String, super::keys::SignatureError>;

/// Verifies a decision entry's signature as made by the principal named in the entry
/// (the verifier separately checks that the body names the same principal). Independent
/// of every other entry, so it can run on several cores.
pub fn check_signature(keyring: &Keyring, e: &LogEntry) -> SignatureCheck {
    match (&e.principal, &e.signature) {
        (Some(who), Some(sig)) => keyring.verify(who, e.body.as_bytes(), sig),
        _ => Err(super::keys::SignatureError::Malformed(
            "no signature or principal".into(),
        )),
    }
}

/// Checks a log entry by entry; feed entries in order with [`Verifier::push`], then
/// call [`Verifier::finish`] with the recorded head.
pub struct Verifier<'a> {
    keyring: &'a Keyring,
    policy: &'a Policy,
    /// CR requester by CR digest, learnt from submission entries, for the self-approval rule.
    requesters: &'a dyn Fn(&str, &str) -> Option<String>,
    last: Head,
    /// Positions by the first 8 bytes of their hash: enough to say which entry a
    /// misplaced link points at, at 16 bytes an entry instead of a whole hash.
    seen: HashMap<u64, u64>,
    /// A head an auditor noted earlier, and whether the log still holds it.
    expected: Option<(String, bool)>,
    entries: u64,
    signatures: u64,
    bad: Option<BadEntry>,
}

impl<'a> Verifier<'a> {
    /// Starts a verification. `requester_of(cr_id, digest)` returns who requested that CR
    /// revision (from the store), so self-approval is caught at verification too.
    pub fn new(
        keyring: &'a Keyring,
        policy: &'a Policy,
        requester_of: &'a dyn Fn(&str, &str) -> Option<String>,
    ) -> Self {
        Verifier {
            keyring,
            policy,
            requesters: requester_of,
            last: Head::empty(),
            seen: HashMap::new(),
            expected: None,
            entries: 0,
            signatures: 0,
            bad: None,
        }
    }

    /// Also requires the log to hold `head`, an entry hash noted at an earlier audit.
    pub fn expecting(mut self, head: Option<&str>) -> Self {
        self.expected = head.map(|h| (h.to_string(), false));
        self
    }

    /// False once a bad entry was found: later entries cannot be trusted, stop feeding.
    pub fn healthy(&self) -> bool {
        self.bad.is_none()
    }

    fn fail(&mut self, e: &LogEntry, problem: &str, detail: String) {
        self.bad = Some(BadEntry {
            seq: e.seq,
            kind: Some(e.kind.clone()),
            cr_id: e.cr_id.clone(),
            problem: problem.into(),
            detail,
        });
    }

    /// Checks the next entry.
    pub fn push(&mut self, e: &LogEntry) {
        self.push_checked(e, None);
    }

    /// Checks the next entry, using a signature check already done for it (in parallel,
    /// by [`check_signature`]) when given.
    pub fn push_checked(&mut self, e: &LogEntry, signature: Option<SignatureCheck>) {
        if self.bad.is_some() {
            return;
        }
        let expected_seq = self.last.seq + 1;
        if e.seq != expected_seq {
            // Name the missing position, not the entry after it.
            self.bad = Some(BadEntry {
                seq: expected_seq,
                kind: None,
                cr_id: None,
                problem: "missing".into(),
                detail: format!(
                    "entry {expected_seq} is missing: the next stored entry is {} (entries were deleted)",
                    e.seq
                ),
            });
            return;
        }

        let actual = entry_hash(&e.body);
        if actual != e.hash {
            let detail = format!(
                "the stored content does not match its hash {} (content was altered)",
                e.hash
            );
            return self.fail(e, "altered", detail);
        }
        let body: Value = match serde_json::from_str(&e.body) {
            Ok(v) => v,
            Err(err) => return self.fail(e, "malformed", format!("body is not JSON: {err}")),
        };
        if to_canonical_string(&body) != e.body {
            return self.fail(e, "malformed", "body is not in canonical form".into());
        }
        let body_seq = body["seq"].as_u64();
        if body_seq != Some(e.seq) {
            let detail = format!(
                "stored at position {} but its signed content says position {}: entries were reordered",
                e.seq,
                body_seq.map_or("?".into(), |s| s.to_string())
            );
            return self.fail(e, "reordered", detail);
        }
        let prev = body["prev"].as_str();
        if prev != self.last.hash.as_deref() {
            let detail = match prev.and_then(|p| self.seen.get(&hash_key(p))) {
                Some(other) => format!(
                    "links to entry {other} instead of entry {}: entries were reordered",
                    self.last.seq
                ),
                None => format!(
                    "links to {} but the previous entry's hash is {}",
                    prev.unwrap_or("nothing"),
                    self.last
                        .hash
                        .as_deref()
                        .unwrap_or("nothing (this is the first entry)")
                ),
            };
            return self.fail(e, "broken-link", detail);
        }
        if body["type"].as_str() != Some(e.kind.as_str())
            || body["cr_id"].as_str() != e.cr_id.as_deref()
        {
            return self.fail(
                e,
                "altered",
                "stored kind or CR id differs from the signed content".into(),
            );
        }
        match EntryKind::parse(&e.kind) {
            Some(kind) if kind.is_signed() => {
                if let Err((problem, detail)) = self.check_signed(kind, e, signature) {
                    return self.fail(e, problem, detail);
                }
            }
            Some(_) => {}
            None => return self.fail(e, "malformed", format!("unknown entry kind {:?}", e.kind)),
        }
        self.seen.insert(hash_key(&e.hash), e.seq);
        if let Some((want, found)) = self.expected.as_mut()
            && *want == e.hash
        {
            *found = true;
        }
        self.entries += 1;
        self.last = Head {
            seq: e.seq,
            hash: Some(e.hash.clone()),
        };
    }

    /// Checks a signed entry: the signer is a principal, the signature is theirs over the
    /// exact body, the body names the key used, and the policy allowed them to sign it.
    fn check_signed(
        &mut self,
        kind: EntryKind,
        e: &LogEntry,
        signature: Option<SignatureCheck>,
    ) -> Result<(), (&'static str, String)> {
        let body: Value =
            serde_json::from_str(&e.body).map_err(|err| ("malformed", err.to_string()))?;
        let field = |name: &str| body[name].as_str().map(str::to_string);
        let (Some(who), Some(key_fingerprint)) = (field("principal"), field("key_fingerprint"))
        else {
            return Err((
                "malformed",
                "a signed entry must name its principal and key".into(),
            ));
        };
        if e.principal.as_deref() != Some(who.as_str()) {
            return Err((
                "altered",
                "stored principal differs from the signed content".into(),
            ));
        }
        if e.signature.is_none() {
            return Err((
                "unsigned",
                format!("a {} entry without a signature", kind.as_str()),
            ));
        }
        let principal = self.policy.principal(&who).ok_or_else(|| {
            (
                "unknown-key",
                format!("signed by {who}, who is not a principal in the policy"),
            )
        })?;
        let checked = match signature {
            Some(done) => done,
            None => check_signature(self.keyring, e),
        };
        let fingerprint = checked.map_err(|err| match err {
            super::keys::SignatureError::UnknownKey(_) => ("unknown-key", err.to_string()),
            _ => ("bad-signature", err.to_string()),
        })?;
        self.signatures += 1;
        if fingerprint != key_fingerprint {
            return Err((
                "bad-signature",
                format!("record names key {key_fingerprint} but was signed by {fingerprint}"),
            ));
        }
        let violation = |detail: String| Err(("policy-violation", detail));
        match kind {
            EntryKind::Decision => {
                let record = DecisionRecord::parse(&e.body).map_err(|d| ("malformed", d))?;
                if !principal.has_role(&record.role) {
                    return violation(format!(
                        "{who} signed as {} but does not hold that role",
                        record.role
                    ));
                }
                if (self.requesters)(&record.cr_id, &record.cr_digest).as_deref()
                    == Some(who.as_str())
                {
                    return violation(format!(
                        "{who} decided on their own change request {}",
                        record.cr_id
                    ));
                }
            }
            EntryKind::EmergencyAuthorised | EntryKind::RollbackExecuted => {
                if crate::domain::emergency::check_on_call(self.policy, principal).is_err() {
                    return violation(format!(
                        "{who} authorised an emergency but is not on the on-call roster"
                    ));
                }
            }
            EntryKind::PostIncidentReview => {
                if crate::domain::emergency::check_reviewer(self.policy, principal).is_err() {
                    return violation(format!(
                        "{who} signed a post-incident review without a review role"
                    ));
                }
            }
            EntryKind::CrSubmitted | EntryKind::CrRevised => {}
        }
        Ok(())
    }

    /// Ends verification against the head recorded by the store (and the auditor's noted
    /// head, if one was given with [`Verifier::expecting`]).
    pub fn finish(mut self, recorded: &Head) -> VerifyReport {
        if self.bad.is_none() {
            let bad = |seq: u64, problem: &str, detail: String| BadEntry {
                seq,
                kind: None,
                cr_id: None,
                problem: problem.into(),
                detail,
            };
            if recorded.seq > self.last.seq {
                self.bad = Some(bad(
                    self.last.seq + 1,
                    "truncated",
                    format!(
                        "the recorded head is entry {} ({}), but the log ends at entry {}: entries were cut from the end",
                        recorded.seq,
                        recorded.hash.as_deref().unwrap_or("-"),
                        self.last.seq
                    ),
                ));
            } else if recorded != &self.last {
                self.bad = Some(bad(
                    self.last.seq,
                    "head-mismatch",
                    format!(
                        "the recorded head (entry {}, {}) does not match the last entry ({})",
                        recorded.seq,
                        recorded.hash.as_deref().unwrap_or("-"),
                        self.last.hash.as_deref().unwrap_or("-")
                    ),
                ));
            } else if let Some((want, false)) = &self.expected {
                self.bad = Some(bad(
                    self.last.seq,
                    "truncated",
                    format!("the expected head {want} is not in the log: it was cut or rewritten"),
                ));
            }
        }
        VerifyReport {
            entries: self.entries,
            signatures: self.signatures,
            head: self.last,
            first_bad: self.bad,
        }
    }
}
