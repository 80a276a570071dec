//! Verification of the log: every link, every signature, and every rule, each entry held
//! to the policy in force when it was appended.
//!
//! The verifier trusts nothing stored beside the log. It rebuilds the policy history from
//! the `policy-adopted` entries as it walks: the genesis must be signed by a principal of
//! the policy it adopts (and may be pinned with `--expect-genesis`); every later adoption
//! must be signed by the approver whose sign-off completed a `policy`-gate CR, under the
//! rules of the policy it replaces. Keys revoked by a later policy are checked last, once
//! the whole history is known: entries they signed after their revocation point are named.

use super::canonical::to_canonical_string;
use super::keys::{KeyLineError, Keyring, SignatureError, revoked_fingerprints};
use super::log::{DecisionRecord, EntryKind, Head, LogEntry, entry_hash};
pub use super::log::{SignatureCheck, check_signature};
use super::policy_log::{AdoptionRecord, version_from_entry};
use crate::domain::change_request::ChangeRequest;
use crate::domain::decision::{Decision, Verdict};
use crate::domain::policy::{Policy, RevokedSince};
use crate::domain::policy_book::PolicyVersion;
use crate::domain::status::{Status, evaluate};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

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
    /// `no-policy`, `genesis-mismatch`, `revoked-key`, `truncated`, `head-mismatch`.
    pub problem: String,
    /// Explanation for a person.
    pub detail: String,
}

/// One adopted policy version, as verification found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySummary {
    /// Version number.
    pub version: u32,
    /// Log position of its adoption.
    pub seq: u64,
    /// Hash of that entry (pin the genesis's with `--expect-genesis`).
    pub hash: String,
    /// Digest of the policy text.
    pub digest: String,
    /// The policy CR it came from.
    pub cr_id: Option<String>,
    /// Adopted at migration (the entries before it are judged by it).
    pub migration: bool,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries checked before stopping.
    pub entries: u64,
    /// Signatures checked.
    pub signatures: u64,
    /// Entries without a signature: submissions by a local user who had no key (anyone
    /// with write access to the file could have made or removed those).
    pub unsigned: u64,
    /// The last good entry.
    pub head: Head,
    /// The first bad entry, if any.
    pub first_bad: Option<BadEntry>,
    /// Every entry signed by a revoked key after its revocation point (the first of them
    /// is also `first_bad` when nothing else failed earlier).
    pub revoked: Vec<BadEntry>,
    /// The policy versions the log adopted, in order.
    pub policies: Vec<PolicySummary>,
    /// True when the log holds no policy yet and was judged by the policy file (a store
    /// from before policy entries, not migrated).
    pub unmigrated: bool,
}

impl VerifyReport {
    /// True when every entry verified.
    pub fn ok(&self) -> bool {
        self.first_bad.is_none() && self.revoked.is_empty()
    }
}

/// The first 8 bytes of a `sha256:` hash as a number (0 for anything else).
fn hash_key(hash: &str) -> u64 {
    hash.strip_prefix("sha256:")
        .and_then(|h| h.get(..16))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// A policy an entry is judged by, with its parsed keys.
#[derive(Debug, Clone)]
pub struct Judge {
    /// The policy.
    pub policy: Arc<Policy>,
    /// Its keyring.
    pub keyring: Arc<Keyring>,
    /// The adopted version (`None` for the policy file of an unmigrated store).
    pub version: Option<Arc<PolicyVersion>>,
}

impl Judge {
    /// A judge for an adopted version.
    pub fn adopted(v: PolicyVersion) -> Result<Judge, KeyLineError> {
        let keyring = Keyring::from_policy(&v.policy)?;
        Ok(Judge {
            policy: v.policy.clone(),
            keyring: Arc::new(keyring),
            version: Some(Arc::new(v)),
        })
    }

    /// The policy file of a store that has no policy in its log.
    pub fn file(policy: Policy) -> Result<Judge, KeyLineError> {
        let keyring = Keyring::from_policy(&policy)?;
        Ok(Judge {
            policy: Arc::new(policy),
            keyring: Arc::new(keyring),
            version: None,
        })
    }
}

/// Finds the revision `(cr_id, revision)` of a CR: its digest and typed view.
pub type RevisionLookup<'a> = dyn Fn(&str, u32) -> Option<(String, ChangeRequest)> + 'a;

/// What the verifier needs from the store beside the log: who requested each CR
/// revision, and the `policy`-gate revisions adoptions name.
pub struct Lookups<'a> {
    /// Requester of the revision `(cr_id, digest)`.
    pub requester_of: &'a dyn Fn(&str, &str) -> Option<String>,
    /// A stored CR revision: what adoptions adopt, and what decisions are evaluated on.
    pub revision: &'a RevisionLookup<'a>,
}

/// How verification starts.
pub struct Start {
    /// The policy that judges entries before the first adoption: a migration genesis
    /// (prescanned; it is verified when the walk reaches it) or an unmigrated store's file.
    /// `None` when the log must begin with its genesis.
    pub before_genesis: Option<Judge>,
    /// A genesis entry hash noted out of band (`--expect-genesis`).
    pub expect_genesis: Option<String>,
    /// An entry hash noted at an earlier audit (`--expect-head`).
    pub expect_head: Option<String>,
    /// The auditor's clock: no entry may claim to be signed later than this (plus the
    /// allowed skew).
    pub now: DateTime<Utc>,
}

/// Who signed what, kept to check revocations once every policy is known.
#[derive(Debug, Clone, Copy)]
struct Signed {
    seq: u64,
    at: Option<DateTime<Utc>>,
    kind: EntryKind,
}

/// A key an adopted policy revoked.
#[derive(Debug, Clone)]
struct Revocation {
    fingerprint: String,
    since: RevokedSince,
    reason: String,
    /// The version that revoked it, and the entry adopting that version.
    version: u32,
    seq: u64,
}

/// The last decision seen, to check that an adoption follows the approval completing it.
#[derive(Debug, Clone)]
struct LastDecision {
    seq: u64,
    cr_id: String,
    cr_digest: String,
    principal: String,
    verdict: Verdict,
}

/// Checks a log entry by entry; feed entries in order with [`Verifier::push`], then call
/// [`Verifier::finish`] with the recorded head.
pub struct Verifier<'a> {
    lookups: Lookups<'a>,
    /// The policy in force for the next entry.
    judge: Option<Judge>,
    /// True while the judge is a migration genesis not yet reached (its digest is not the
    /// policy decisions before it were signed under).
    before_genesis: bool,
    /// Every version adopted so far, verified.
    adopted: Vec<Arc<PolicyVersion>>,
    /// Decisions so far, by CR: each decision's checklist is re-derived from the ones
    /// before it, and each adoption's sign-offs from the decisions on its policy CR.
    /// Only each person's last decision per revision is kept, except on policy CRs and
    /// before the genesis (see where they are added).
    decisions: HashMap<String, Vec<Decision>>,
    /// The versions adopted so far as a book (what the workflow evaluated against).
    book: Option<crate::domain::policy_book::PolicyBook>,
    /// Submitted revisions from the log's own submission entries: `(CR, revision)` →
    /// digest and submission time.
    submissions: HashMap<(String, u32), (String, DateTime<Utc>)>,
    /// Exceptions derived from the emergency entries verified so far.
    exceptions: Vec<crate::domain::emergency::Exception>,
    /// What emergency rollbacks left live, for the next authorisation.
    live: crate::domain::emergency::LiveVersions,
    /// Rollout stages, KPI readings and drills verified so far.
    rollouts: crate::domain::rollout::Rollouts,
    /// Each CR's latest submitted revision so far: what a rollout stage must name.
    current: HashMap<String, u32>,
    /// The principal who submitted each revision `(CR, digest)`, when one did.
    submitters: HashMap<(String, String), Option<String>>,
    /// The checklist states before the next decision, per revision `(CR, digest)`.
    checklists: HashMap<(String, String), Vec<super::log::ItemSnapshot>>,
    /// Who ticked items on a revision `(CR, digest, principal)`.
    tickers: std::collections::HashSet<(String, String, String)>,
    /// Evidence attested so far per revision `(CR, digest)`: a decision's checklist is
    /// re-derived with what was attested before it, not after.
    attested: HashMap<(String, String), Vec<crate::domain::provenance::Attested>>,
    now: DateTime<Utc>,
    last_decision: Option<LastDecision>,
    /// Signed entries by key fingerprint.
    signed_by: HashMap<String, Vec<Signed>>,
    /// Keys revoked by the versions adopted so far.
    revocations: Vec<Revocation>,
    last: Head,
    /// Positions by the first 8 bytes of their hash: enough to say which entry a
    /// misplaced link points at, at 16 bytes an entry instead of a whole hash.
    seen: HashMap<u64, u64>,
    /// A head an auditor noted earlier, and whether the log still holds it.
    expected: Option<(String, bool)>,
    expect_genesis: Option<String>,
    entries: u64,
    signatures: u64,
    unsigned: u64,
    bad: Option<BadEntry>,
}

type Failure = (&'static str, String);

impl<'a> Verifier<'a> {
    /// Starts a verification.
    pub fn new(start: Start, lookups: Lookups<'a>) -> Self {
        Verifier {
            lookups,
            before_genesis: start
                .before_genesis
                .as_ref()
                .is_some_and(|j| j.version.is_some()),
            judge: start.before_genesis,
            adopted: Vec::new(),
            decisions: HashMap::new(),
            book: None,
            submissions: HashMap::new(),
            exceptions: Vec::new(),
            live: Default::default(),
            rollouts: Default::default(),
            current: HashMap::new(),
            submitters: HashMap::new(),
            attested: HashMap::new(),
            checklists: HashMap::new(),
            tickers: std::collections::HashSet::new(),
            now: start.now,
            last_decision: None,
            signed_by: HashMap::new(),
            revocations: Vec::new(),
            last: Head::empty(),
            seen: HashMap::new(),
            expected: start.expect_head.map(|h| (h, false)),
            expect_genesis: start.expect_genesis,
            entries: 0,
            signatures: 0,
            unsigned: 0,
            bad: None,
        }
    }

    /// False once a bad entry was found: later entries cannot be trusted, stop feeding.
    pub fn healthy(&self) -> bool {
        self.bad.is_none()
    }

    /// The keyring each entry of `page` (the next entries, in order) will be checked
    /// against, so signatures can be checked in parallel before the walk: the policy in
    /// force, switching after each adoption in the page (a genesis is checked against its
    /// own keys).
    pub fn keyrings_for(&self, page: &[LogEntry]) -> Vec<Option<Arc<Keyring>>> {
        let mut current = self.judge.as_ref().map(|j| j.keyring.clone());
        let mut genesis_pending = self.adopted.is_empty();
        page.iter()
            .map(|e| {
                if e.kind != EntryKind::PolicyAdopted.as_str() {
                    return current.clone();
                }
                let own = version_from_entry(e)
                    .ok()
                    .and_then(|v| Keyring::from_policy(&v.policy).ok())
                    .map(Arc::new);
                let this = if genesis_pending {
                    own.clone()
                } else {
                    current.clone()
                };
                genesis_pending = false;
                if own.is_some() {
                    current = own;
                }
                this
            })
            .collect()
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
    /// by [`check_signature`] with the keyring [`Verifier::keyrings_for`] named) when given.
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
        if let Err((problem, detail)) = self.check_entry(e, signature) {
            return self.fail(e, problem, detail);
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

    /// Chain, form and (for signed entries) signature and rules of one entry.
    fn check_entry(
        &mut self,
        e: &LogEntry,
        signature: Option<SignatureCheck>,
    ) -> Result<(), Failure> {
        let actual = entry_hash(&e.body);
        if actual != e.hash {
            return Err((
                "altered",
                format!(
                    "the stored content does not match its hash {} (content was altered)",
                    e.hash
                ),
            ));
        }
        let body: Value = serde_json::from_str(&e.body)
            .map_err(|err| ("malformed", format!("body is not JSON: {err}")))?;
        if to_canonical_string(&body) != e.body {
            return Err(("malformed", "body is not in canonical form".into()));
        }
        let body_seq = body["seq"].as_u64();
        if body_seq != Some(e.seq) {
            return Err((
                "reordered",
                format!(
                    "stored at position {} but its signed content says position {}: entries were reordered",
                    e.seq,
                    body_seq.map_or("?".into(), |s| s.to_string())
                ),
            ));
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
            return Err(("broken-link", detail));
        }
        if body["type"].as_str() != Some(e.kind.as_str())
            || body["cr_id"].as_str() != e.cr_id.as_deref()
        {
            return Err((
                "altered",
                "stored kind or CR id differs from the signed content".into(),
            ));
        }
        let kind = EntryKind::parse(&e.kind)
            .ok_or_else(|| ("malformed", format!("unknown entry kind {:?}", e.kind)))?;
        // Submissions are signed when their submitter (or the server relaying them) had a
        // key; the rest are counted as unsigned.
        if kind.is_signed() || e.signature.is_some() || body.get("principal").is_some() {
            self.check_signed(kind, e, &body, signature)?;
        } else if self.judge.is_none() {
            return Err(no_policy(e));
        } else {
            self.unsigned += 1;
        }
        if matches!(kind, EntryKind::CrSubmitted | EntryKind::CrRevised) {
            let (Some(cr_id), Some(revision), Some(digest), Some(at)) = (
                body["cr_id"].as_str(),
                body["revision"]
                    .as_u64()
                    .and_then(|r| u32::try_from(r).ok()),
                body["digest"].as_str(),
                body["at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
            ) else {
                return Err((
                    "malformed",
                    "a submission must name its CR, revision, digest and time".into(),
                ));
            };
            // The stored revision must still be the content this entry recorded.
            let stored = (self.lookups.revision)(cr_id, revision);
            if stored.as_ref().map(|(d, _)| d.as_str()) != Some(digest) {
                return Err((
                    "altered",
                    format!(
                        "{cr_id} revision {revision} as stored is not the content this entry recorded ({digest}): it was rewritten or removed"
                    ),
                ));
            }
            self.submissions.insert(
                (cr_id.to_string(), revision),
                (digest.to_string(), at.with_timezone(&Utc)),
            );
            self.current.insert(cr_id.to_string(), revision);
            let submitter =
                crate::domain::provenance::Submitter::from_recorded(body["submitter"].as_str());
            self.submitters.insert(
                (cr_id.to_string(), digest.to_string()),
                submitter.principal().map(str::to_string),
            );
            // A change request for a rolled-back subject hands it back to the CRs.
            if let Some((_, cr)) = &stored {
                self.live
                    .after_change(&cr.subject.name, cr.subject.environment.as_str());
            }
        }
        Ok(())
    }

    /// Checks a signed entry: the signer is a principal of the policy in force, the
    /// signature is theirs over the exact body, the body names the key used, and that
    /// policy allowed them to sign it.
    fn check_signed(
        &mut self,
        kind: EntryKind,
        e: &LogEntry,
        body: &Value,
        signature: Option<SignatureCheck>,
    ) -> Result<(), Failure> {
        let (Some(who), Some(key_fingerprint)) =
            (body["principal"].as_str(), body["key_fingerprint"].as_str())
        else {
            return Err((
                "malformed",
                "a signed entry must name its principal and key".into(),
            ));
        };
        if e.principal.as_deref() != Some(who) {
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
        // A genesis is judged by the policy it adopts; everything else by the one in force.
        let genesis = kind == EntryKind::PolicyAdopted && self.adopted.is_empty();
        let judge = if genesis {
            let v = version_from_entry(e).map_err(|x| ("malformed", x.detail))?;
            Judge::adopted(v).map_err(|x| ("malformed", x.to_string()))?
        } else {
            self.judge.clone().ok_or_else(|| no_policy(e))?
        };
        // Named in messages only, so only formatted on a failure.
        let version_name = || {
            judge
                .version
                .as_ref()
                .map_or("the policy file".to_string(), |v| {
                    format!("policy version {}", v.version)
                })
        };
        let Some(principal) = judge.policy.principal(who) else {
            return Err((
                "unknown-key",
                format!(
                    "signed by {who}, who is not a principal of {} (in force at this entry)",
                    version_name()
                ),
            ));
        };
        let checked = match signature {
            Some(done) => done,
            None => check_signature(&judge.keyring, e),
        };
        let fingerprint = checked.map_err(|err| match err {
            SignatureError::UnknownKey(_) => (
                "unknown-key",
                format!("{err} (keys of {}, in force at this entry)", version_name()),
            ),
            _ => ("bad-signature", err.to_string()),
        })?;
        self.signatures += 1;
        if fingerprint != key_fingerprint {
            return Err((
                "bad-signature",
                format!("record names key {key_fingerprint} but was signed by {fingerprint}"),
            ));
        }
        let at = body["at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        // A signing time later than the store's receipt of the entry, beyond the skew.
        if let (Some(at), Some(received)) = (
            at,
            e.received_at
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
        ) {
            crate::domain::emergency::check_signing_time(at, received)
                .map_err(|r| ("policy-violation", r.to_string()))?;
        }
        self.signed_by.entry(fingerprint).or_default().push(Signed {
            seq: e.seq,
            at,
            kind,
        });
        let violation = |detail: String| Err(("policy-violation", detail));
        // Decisions and authorisations name the policy they were made under; after the
        // genesis it must be the one in force (before a migration genesis, files were
        // never recorded, so there is nothing to compare).
        let in_force_digest = judge
            .version
            .as_ref()
            .filter(|_| !self.before_genesis)
            .map(|v| v.digest.as_str());
        let check_digest = |named: Option<&str>| -> Result<(), Failure> {
            match (in_force_digest, named) {
                (Some(want), Some(got)) if want != got => Err((
                    "policy-violation",
                    format!(
                        "signed under policy {got}, but {} ({want}) was in force",
                        version_name()
                    ),
                )),
                (Some(_), None) => Err(("malformed", "the record names no policy_digest".into())),
                _ => Ok(()),
            }
        };
        match kind {
            EntryKind::Decision => {
                let record =
                    DecisionRecord::parse(&e.body).map_err(|d| ("malformed", d.to_string()))?;
                if !principal.has_role(&record.role) {
                    return violation(format!(
                        "{who} signed as {} but does not hold that role in {}",
                        record.role,
                        version_name()
                    ));
                }
                let submitter = self
                    .submitters
                    .get(&(record.cr_id.clone(), record.cr_digest.clone()))
                    .and_then(|s| s.as_deref());
                if (self.lookups.requester_of)(&record.cr_id, &record.cr_digest).as_deref()
                    == Some(who)
                    || submitter == Some(who)
                {
                    return violation(format!(
                        "{who} decided on their own change request {}",
                        record.cr_id
                    ));
                }
                check_digest(Some(&record.policy_digest))?;
                let decision = record
                    .to_decision()
                    .map_err(|d| ("malformed", d.to_string()))?;
                self.check_decision_facts(&record, &decision)?;
                // Only a policy asking for drills costs an evaluation per approval.
                if decision.verdict == Verdict::Approve
                    && judge.policy.after.drills.is_some()
                    && let Some((_, _, cr, eval)) = self
                        .evaluated(&record.cr_id)
                        .filter(|(_, digest, _, _)| *digest == record.cr_digest)
                {
                    crate::domain::rollout::check_drill_requirement(
                        &judge.policy,
                        &cr,
                        eval.risk.effective,
                        &self.rollouts,
                        decision.at,
                    )
                    .map_err(|r| ("policy-violation", r.to_string()))?;
                }
                let policy_cr = record
                    .cr_id
                    .starts_with(crate::domain::policy_change::ID_PREFIX);
                if policy_cr {
                    self.last_decision = Some(LastDecision {
                        seq: e.seq,
                        cr_id: record.cr_id.clone(),
                        cr_digest: record.cr_digest.clone(),
                        principal: who.to_string(),
                        verdict: decision.verdict,
                    });
                }
                let kept = self.decisions.entry(record.cr_id).or_default();
                // Past the genesis, every decision kept so far was checked as this one was:
                // not by the requester or submitter, in a role its signer held under the
                // policy it names (the one `judge_of` finds again). An evaluation at any
                // revision therefore counts each person's last decision on that revision,
                // and the earlier ones need not be held: a CR with a million decisions keeps
                // a handful. A policy CR keeps them all: its adoption is judged under the
                // policy in force then, which may count an earlier decision a later one
                // would not.
                if !self.before_genesis && !policy_cr {
                    kept.retain(|d| {
                        !(d.principal == decision.principal && d.cr_digest == decision.cr_digest)
                    });
                }
                kept.push(decision);
            }
            EntryKind::EmergencyAuthorised
            | EntryKind::RollbackExecuted
            | EntryKind::PostIncidentReview => {
                let claim = crate::audit::emergency::claim_of(kind, &e.body)
                    .map_err(|m| ("malformed", m.to_string()))?;
                crate::domain::emergency::check_claim(
                    &judge.policy,
                    principal,
                    &self.exceptions,
                    &self.live,
                    &claim,
                    self.now,
                )
                .map_err(|r| {
                    (
                        "policy-violation",
                        format!("{r} (under {})", version_name()),
                    )
                })?;
                if let crate::domain::emergency::Claim::Authorise(a) = &claim {
                    check_digest(body["policy_digest"].as_str())?;
                    let reading = crate::domain::rollout::parse_auto_incident(&a.incident)
                        .and_then(|(_, seq)| self.rollouts.reading(seq))
                        .map(|(id, _, r)| (id, r));
                    crate::domain::rollout::check_auto_rollback(&self.rollouts, reading, a)
                        .map_err(|r| ("policy-violation", r.to_string()))?;
                    self.rollouts.after_authorisation(e.seq, a);
                }
                self.live.after_claim(&e.hash, &claim);
                crate::domain::emergency::apply(&mut self.exceptions, &e.hash, claim);
            }
            EntryKind::RolloutStage | EntryKind::KpiReading | EntryKind::Drill => {
                use crate::audit::rollout::{Claim, apply, claim_of};
                use crate::domain::rollout::{check_drill, check_reading, check_stage};
                let (claim, digest) =
                    claim_of(kind, &e.body).map_err(|m| ("malformed", m.to_string()))?;
                check_digest(Some(&digest))?;
                let in_policy = |r: crate::domain::rules::Refusal| {
                    (
                        "policy-violation",
                        format!("{r} (under {})", version_name()),
                    )
                };
                // Its own time decides windows and freezes: no earlier than its receipt.
                if let Some(received) = e
                    .received_at
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                {
                    crate::domain::rollout::check_not_backdated(
                        claim.at(),
                        received.with_timezone(&Utc),
                    )
                    .map_err(in_policy)?;
                }
                match &claim {
                    Claim::Stage(c) => {
                        let (revision, digest, cr, eval) =
                            self.evaluated(&c.cr_id).ok_or_else(|| {
                                in_policy(crate::domain::rules::Refusal {
                                    rule: "rollout-revision",
                                    message: format!("{} is not in the log", c.cr_id),
                                    remedy: "roll out a CR that was submitted".into(),
                                })
                            })?;
                        let facts = crate::domain::rollout::CrFacts {
                            cr: &cr,
                            revision,
                            digest: &digest,
                            status: eval.status,
                            risk: eval.risk.effective,
                        };
                        check_stage(
                            &judge.policy,
                            principal,
                            &facts,
                            self.rollouts.of(&c.cr_id),
                            c,
                            self.now,
                        )
                        .map_err(in_policy)?;
                    }
                    Claim::Reading(c) => check_reading(
                        &judge.policy,
                        principal,
                        self.rollouts.of(&c.cr_id),
                        c,
                        self.now,
                    )
                    .map_err(in_policy)?,
                    Claim::Drill(c, _) => {
                        check_drill(&judge.policy, principal, c, self.now).map_err(in_policy)?
                    }
                }
                apply(&mut self.rollouts, e.seq, &claim);
            }
            EntryKind::PolicyAdopted => {
                let record =
                    AdoptionRecord::parse(&e.body).map_err(|d| ("malformed", d.to_string()))?;
                let adopted = if genesis {
                    // Already read from this very entry to judge it.
                    self.check_genesis(e, &record)?;
                    judge
                } else {
                    self.check_change(e, &record, &judge, who)?;
                    let v = version_from_entry(e).map_err(|x| ("malformed", x.detail))?;
                    Judge::adopted(v).map_err(|x| ("malformed", x.to_string()))?
                };
                crate::domain::policy_change::check_governable(&adopted.policy)
                    .map_err(|r| ("policy-violation", r.message))?;
                self.adopt(adopted)?;
            }
            EntryKind::CrSubmitted | EntryKind::CrRevised => {
                // Signed by the submitter it names, by the server relaying a token
                // holder's submission, or by whoever relayed a source's (a sync).
                let submitter =
                    crate::domain::provenance::Submitter::from_recorded(body["submitter"].as_str());
                let relayed = principal.has_role(crate::domain::provenance::SERVER_ROLE)
                    || matches!(submitter, crate::domain::provenance::Submitter::Source(_));
                if submitter.principal() != Some(who) && !relayed {
                    return violation(format!(
                        "{who} signed a submission naming {} as its submitter, and holds no server role in {}",
                        submitter.label(),
                        version_name()
                    ));
                }
            }
            EntryKind::Evidence => {
                let record = crate::audit::evidence::EvidenceRecord::parse(&e.body)
                    .map_err(|m| ("malformed", m.to_string()))?;
                if !principal.has_role(crate::domain::provenance::CI_ROLE) {
                    return violation(format!(
                        "{who} attested evidence but does not hold the ci role in {}",
                        version_name()
                    ));
                }
                let at = record.time().map_err(|m| ("malformed", m.to_string()))?;
                let facts = self
                    .submissions
                    .get(&(record.cr_id.clone(), record.cr_revision))
                    .filter(|(digest, _)| *digest == record.cr_digest);
                let Some((_, submitted_at)) = facts else {
                    return violation(format!(
                        "the evidence names revision {} of {} ({}), which the log does not hold",
                        record.cr_revision, record.cr_id, record.cr_digest
                    ));
                };
                if at < *submitted_at {
                    return violation(format!(
                        "the evidence is dated {at}, before revision {} of {} was submitted",
                        record.cr_revision, record.cr_id
                    ));
                }
                crate::domain::emergency::check_signing_time(at, self.now)
                    .map_err(|r| ("policy-violation", r.to_string()))?;
                let attested = record
                    .attested()
                    .map_err(|m| ("malformed", m.to_string()))?;
                self.checklists
                    .remove(&(record.cr_id.clone(), record.cr_digest.clone()));
                self.attested
                    .entry((record.cr_id.clone(), record.cr_digest.clone()))
                    .or_default()
                    .push(attested);
            }
        }
        Ok(())
    }

    /// A CR's latest revision so far (number, digest, content) and how it evaluates
    /// under the policy history adopted so far, with the decisions and evidence so far.
    fn evaluated(
        &self,
        cr_id: &str,
    ) -> Option<(
        u32,
        String,
        ChangeRequest,
        crate::domain::status::Evaluation,
    )> {
        let revision = *self.current.get(cr_id)?;
        let book = self.book.as_ref()?;
        let (digest, mut cr) = (self.lookups.revision)(cr_id, revision)?;
        cr.provenance.attested = self
            .attested
            .get(&(cr_id.to_string(), digest.clone()))
            .cloned()
            .unwrap_or_default();
        let decisions: &[Decision] = self.decisions.get(cr_id).map(Vec::as_slice).unwrap_or(&[]);
        let eval = crate::domain::status::evaluate_in(&cr, &digest, decisions, book);
        Some((revision, digest, cr, eval))
    }

    /// A decision's revision, signing time and checklist, re-derived from the log.
    fn check_decision_facts(
        &mut self,
        record: &DecisionRecord,
        decision: &Decision,
    ) -> Result<(), Failure> {
        let facts = self
            .submissions
            .get(&(record.cr_id.clone(), record.cr_revision))
            .map(|(digest, at)| crate::audit::record_rules::RevisionFacts {
                revision: record.cr_revision,
                digest,
                submitted_at: *at,
            });
        // The checklist is re-derived under the policy history adopted so far; before a
        // migration genesis the policy files in force were never recorded. Deriving it is
        // the costly part, so the states before a decision are kept per revision until a
        // decision, evidence or adoption could change them.
        let key = (record.cr_id.clone(), record.cr_digest.clone());
        let before = match (&self.book, self.before_genesis) {
            (Some(book), false) => match self.checklists.get(&key) {
                Some(cached) => Some(cached.clone()),
                None => {
                    let decisions: &[Decision] = self
                        .decisions
                        .get(&record.cr_id)
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    let derived = (self.lookups.revision)(&record.cr_id, record.cr_revision)
                        .filter(|(digest, _)| *digest == record.cr_digest)
                        .map(|(digest, mut cr)| {
                            cr.provenance.attested =
                                self.attested.get(&key).cloned().unwrap_or_default();
                            let eval =
                                crate::domain::status::evaluate_in(&cr, &digest, decisions, book);
                            crate::audit::record_rules::checklist_snapshot(&eval, &[])
                        });
                    if let Some(d) = &derived {
                        self.checklists.insert(key.clone(), d.clone());
                    }
                    derived
                }
            },
            _ => None,
        };
        // A decision that ticks, or by someone whose earlier ticks it supersedes, changes
        // what the next decision sees.
        let ticker = (key.0.clone(), key.1.clone(), decision.principal.clone());
        if !decision.ticks.is_empty() || self.tickers.contains(&ticker) {
            self.checklists.remove(&key);
        }
        if !decision.ticks.is_empty() {
            self.tickers.insert(ticker);
        }
        let expected = before
            .as_deref()
            .map(|b| crate::audit::record_rules::with_ticks(b, &decision.ticks));
        crate::audit::record_rules::check_decision_facts(
            record,
            decision.at,
            facts,
            expected.as_deref(),
            self.now,
        )
        .map_err(|r| ("policy-violation", r.to_string()))
    }

    /// The first adoption: version 1, replacing nothing, and (when it is not the first
    /// entry) marked as adopted at migration.
    fn check_genesis(&self, e: &LogEntry, r: &AdoptionRecord) -> Result<(), Failure> {
        if let Some(want) = &self.expect_genesis
            && *want != e.hash
        {
            return Err((
                "genesis-mismatch",
                format!(
                    "the genesis policy entry is {}, not the expected {want}: the policy history was replaced",
                    e.hash
                ),
            ));
        }
        if r.version != 1 || r.previous_digest.is_some() || r.cr_id.is_some() {
            return Err((
                "policy-violation",
                "the first policy adopted must be a genesis: version 1, replacing nothing, from no change request".into(),
            ));
        }
        if r.migration != (e.seq > 1) {
            return Err((
                "policy-violation",
                if r.migration {
                    "a genesis marked as adopted at migration must follow the entries it migrates"
                        .into()
                } else {
                    "entries come before this genesis, so it must be marked as adopted at migration"
                        .into()
                },
            ));
        }
        Ok(())
    }

    /// A change: the next version, replacing the policy in force, adopting exactly the
    /// text of a `policy`-gate CR revision proposed against it, signed by the approver
    /// whose approval (the entry just before) completed its sign-offs under that policy.
    fn check_change(
        &self,
        e: &LogEntry,
        r: &AdoptionRecord,
        judge: &Judge,
        who: &str,
    ) -> Result<(), Failure> {
        let violation = |d: String| ("policy-violation", d);
        let current = judge
            .version
            .as_ref()
            .ok_or_else(|| violation("no policy in force to change".into()))?;
        if r.version != current.version + 1 || r.previous_digest.as_deref() != Some(&current.digest)
        {
            return Err(violation(format!(
                "adopts version {} replacing {}, but version {} ({}) is in force",
                r.version,
                r.previous_digest.as_deref().unwrap_or("nothing"),
                current.version,
                current.digest
            )));
        }
        if r.migration {
            return Err(violation("only a genesis is adopted at migration".into()));
        }
        let (Some(cr_id), Some(revision), Some(cr_digest)) =
            (&r.cr_id, r.cr_revision, &r.cr_digest)
        else {
            return Err(violation(
                "a policy change must name the change request (id, revision, digest) it adopts"
                    .into(),
            ));
        };
        let Some((digest, cr)) = (self.lookups.revision)(cr_id, revision) else {
            return Err(violation(format!(
                "{cr_id} revision {revision} is not in the store"
            )));
        };
        if &digest != cr_digest {
            return Err(violation(format!(
                "{cr_id} revision {revision} has digest {digest}, not the {cr_digest} adopted"
            )));
        }
        let Some(proposal) = cr
            .policy
            .as_ref()
            .filter(|_| cr.gate == crate::domain::change_request::Gate::Policy)
        else {
            return Err(violation(format!("{cr_id} is not a policy change request")));
        };
        if proposal.text != r.policy_text {
            return Err(violation(format!(
                "the adopted text differs from what {cr_id} revision {revision} proposed"
            )));
        }
        if proposal.base_digest != current.digest {
            return Err(violation(format!(
                "{cr_id} was proposed against {}, not the policy in force ({})",
                proposal.base_digest, current.digest
            )));
        }
        match &self.last_decision {
            Some(d)
                if d.seq + 1 == e.seq
                    && d.cr_id == *cr_id
                    && d.cr_digest == *cr_digest
                    && d.principal == who
                    && d.verdict == Verdict::Approve => {}
            _ => {
                return Err(violation(format!(
                    "an adoption must directly follow the approval of {cr_id} by its signer ({who}) that completed it"
                )));
            }
        }
        let decisions = self.decisions.get(cr_id).map(Vec::as_slice).unwrap_or(&[]);
        let eval = evaluate(&cr, cr_digest, decisions, &current.policy);
        if eval.status != Status::Approved {
            return Err(violation(format!(
                "{cr_id}'s sign-offs are not complete under version {}: {}/{} (still needs {})",
                current.version,
                eval.signoffs.obtained(),
                eval.signoffs.required(),
                eval.signoffs.missing_roles().join(", ")
            )));
        }
        Ok(())
    }

    /// Puts a verified adoption in force for the entries after it.
    fn adopt(&mut self, judge: Judge) -> Result<(), Failure> {
        let Some(v) = judge.version.clone() else {
            return Err(("malformed", "an adoption must adopt a version".into()));
        };
        // A revocation that cannot be checked is a policy that cannot be trusted.
        let fingerprints =
            revoked_fingerprints(&v.policy).map_err(|x| ("malformed", x.to_string()))?;
        for (fingerprint, revoked) in fingerprints.into_iter().zip(&v.policy.revoked_keys) {
            self.revocations.push(Revocation {
                fingerprint,
                since: revoked.since.clone(),
                reason: revoked.reason.clone(),
                version: v.version,
                seq: v.seq,
            });
        }
        match &mut self.book {
            Some(book) => book.push((*v).clone()),
            None => {
                self.book =
                    crate::domain::policy_book::PolicyBook::from_versions(vec![(*v).clone()])
            }
        }
        self.adopted.push(v);
        self.judge = Some(judge);
        // Another policy may read the checklists differently.
        self.checklists.clear();
        self.before_genesis = false;
        Ok(())
    }

    /// Entries signed by keys a verified policy revoked, from their revocation point on.
    fn revoked_entries(&self) -> Vec<BadEntry> {
        let mut out: Vec<BadEntry> = Vec::new();
        for r in &self.revocations {
            for s in self
                .signed_by
                .get(&r.fingerprint)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let after = match &r.since {
                    RevokedSince::Entry(n) => s.seq >= *n,
                    RevokedSince::Time(t) => s.at.is_none_or(|at| at >= *t),
                };
                if after && !out.iter().any(|b| b.seq == s.seq) {
                    let since = match &r.since {
                        RevokedSince::Entry(n) => format!("from entry {n}"),
                        RevokedSince::Time(t) => format!("from {}", t.to_rfc3339()),
                    };
                    out.push(BadEntry {
                        seq: s.seq,
                        kind: Some(s.kind.as_str().to_string()),
                        cr_id: None,
                        problem: "revoked-key".into(),
                        detail: format!(
                            "signed with {}, which policy version {} (entry {}) revoked {since}: {}",
                            r.fingerprint, r.version, r.seq, r.reason
                        ),
                    });
                }
            }
        }
        out.sort_by_key(|b| b.seq);
        out
    }

    /// Ends verification against the head recorded by the store (and the auditor's noted
    /// head, if one was given).
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
            } else if let Some(want) = &self.expect_genesis
                && self.adopted.is_empty()
            {
                self.bad = Some(bad(
                    self.last.seq,
                    "genesis-mismatch",
                    format!("the log adopts no policy, but genesis {want} was expected"),
                ));
            }
        }
        let revoked = if self.bad.is_none() {
            self.revoked_entries()
        } else {
            Vec::new()
        };
        if self.bad.is_none() {
            self.bad = revoked.first().cloned();
        }
        VerifyReport {
            entries: self.entries,
            signatures: self.signatures,
            unsigned: self.unsigned,
            head: self.last,
            first_bad: self.bad,
            revoked,
            unmigrated: self.adopted.is_empty()
                && self.judge.as_ref().is_some_and(|j| j.version.is_none()),
            policies: self
                .adopted
                .iter()
                .map(|v| PolicySummary {
                    version: v.version,
                    seq: v.seq,
                    hash: v.hash.clone(),
                    digest: v.digest.clone(),
                    cr_id: v.cr_id.clone(),
                    migration: v.migration,
                })
                .collect(),
        }
    }
}

fn no_policy(e: &LogEntry) -> Failure {
    (
        "no-policy",
        format!(
            "entry {} comes before any policy was adopted: a log starts with its genesis policy-adopted entry (or, for a store from before policy entries, is migrated with `tollgate migrate`)",
            e.seq
        ),
    )
}
