//! The write paths every database store shares, written once over [`ChainTx`].
//!
//! A store opens one write transaction in which nothing else can append (SQLite: `BEGIN
//! IMMEDIATE`; PostgreSQL: the chain head's row locked `FOR UPDATE`), hands it to these
//! functions, and commits when they return `Ok`. So the context a builder signs against
//! and the checks that the new entry continues the chain are the same code whatever the
//! database, and two writers can never fork the chain.

use super::{
    Appended, DecideError, DecisionBuilder, DecisionContext, EmergencyBuilder, EmergencyContext,
    EvidenceBuilder, Head, LogEntry, NewEntry, StoreError, StoredRevision, Submission,
    SubmitOutcome, SubmittedBy,
};
use crate::audit::canonical::{digest, to_canonical_string};
use crate::audit::log::{DecisionRecord, EntryKind, SubmissionFacts, entry_hash, submission_body};
use crate::domain::decision::Decision;
use crate::domain::emergency::SubjectChange;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::path::Path;

/// What the shared write paths need from an open write transaction.
pub(crate) trait ChainTx {
    /// Names the store in errors.
    fn location(&self) -> &Path;
    /// The log head the next entry follows.
    fn head(&mut self) -> Result<Head, StoreError>;
    /// The latest `policy-adopted` entry (seq 0 when there is none).
    fn policy_head(&mut self) -> Result<Head, StoreError>;
    /// A CR's current revision, re-validated.
    fn current_revision(&mut self, cr_id: &str) -> Result<Option<StoredRevision>, StoreError>;
    /// The decisions on a CR, in log order.
    fn decisions(&mut self, cr_id: &str) -> Result<Vec<Decision>, StoreError>;
    /// Every emergency entry, in log order.
    fn emergency_entries(&mut self) -> Result<Vec<LogEntry>, StoreError>;
    /// Submissions and revisions after `after`, with the subjects they name.
    fn subject_changes(&mut self, after: u64) -> Result<Vec<SubjectChange>, StoreError>;
    /// A CR's current revision number and digest, without reading its document.
    fn current_digest(&mut self, cr_id: &str) -> Result<Option<(u32, String)>, StoreError>;
    /// Stores a revision (the first one creates the CR) and makes it current.
    fn store_revision(&mut self, revision: RevisionWrite<'_>) -> Result<(), StoreError>;
    /// Appends one entry after the head and moves the recorded head.
    fn append(&mut self, entry: EntryWrite<'_>) -> Result<LogEntry, StoreError>;
}

/// A revision to store.
pub(crate) struct RevisionWrite<'a> {
    pub cr_id: &'a str,
    pub revision: u32,
    pub digest: &'a str,
    /// The canonical document.
    pub document: &'a str,
    /// When it was received (stored text).
    pub at: &'a str,
}

/// An entry to append: its hash is computed from the body.
pub(crate) struct EntryWrite<'a> {
    pub kind: EntryKind,
    pub cr_id: Option<&'a str>,
    pub principal: Option<&'a str>,
    pub body: &'a str,
    pub signature: Option<&'a str>,
}

impl EntryWrite<'_> {
    /// The entry's hash.
    pub fn hash(&self) -> String {
        entry_hash(self.body)
    }
}

/// Stores a batch of submissions: every CR or none (the caller commits).
pub(crate) fn submit(
    tx: &mut dyn ChainTx,
    batch: &[Submission],
    at: DateTime<Utc>,
) -> Result<Vec<SubmitOutcome>, StoreError> {
    let now = super::rows::time_text(at);
    let mut outcomes = Vec::with_capacity(batch.len());
    for s in batch {
        let id = &s.cr.id;
        let canonical = to_canonical_string(&s.document);
        let new_digest = digest(&s.document);
        let current = tx.current_digest(id)?;
        if let Some(expected) = s.expect_revision {
            let found = current.as_ref().map_or(0, |(revision, _)| *revision);
            if found != expected {
                return Err(StoreError::Moved {
                    id: id.clone(),
                    expected,
                    found,
                });
            }
        }
        let (kind, revision, previous) = match current {
            Some((revision, old)) if old == new_digest => {
                outcomes.push(SubmitOutcome::Unchanged {
                    id: id.clone(),
                    revision,
                    digest: old,
                });
                continue;
            }
            Some((revision, old)) => (EntryKind::CrRevised, revision + 1, Some(old)),
            None => (EntryKind::CrSubmitted, 1, None),
        };
        tx.store_revision(RevisionWrite {
            cr_id: id,
            revision,
            digest: &new_digest,
            document: &canonical,
            at: &now,
        })?;
        append_submission(tx, kind, (id, revision, &new_digest), at, Some(&s.by))?;
        outcomes.push(match previous {
            Some(previous_digest) => SubmitOutcome::Revised {
                id: id.clone(),
                revision,
                digest: new_digest,
                previous_digest,
            },
            None => SubmitOutcome::Created {
                id: id.clone(),
                revision,
                digest: new_digest,
            },
        });
    }
    Ok(outcomes)
}

/// Appends the log entry for a stored revision, naming its submitter and, when `by` has a
/// key, signed by it.
pub(crate) fn append_submission(
    tx: &mut dyn ChainTx,
    kind: EntryKind,
    revision: (&str, u32, &str),
    at: DateTime<Utc>,
    by: Option<&SubmittedBy>,
) -> Result<LogEntry, StoreError> {
    let (cr_id, revision, digest) = revision;
    let head = tx.head()?;
    let submitter = by.and_then(|b| b.submitter.recorded());
    let signer = by.and_then(|b| b.signer.as_deref());
    let body = submission_body(
        kind,
        head.seq + 1,
        head.hash.as_deref(),
        SubmissionFacts {
            cr_id,
            revision,
            digest,
            at,
            submitter: submitter.as_deref(),
            signed_by: signer.map(|s| (s.principal.as_str(), s.key.fingerprint())),
        },
    );
    let signature = match signer {
        Some(s) => Some(s.key.sign(body.as_bytes()).map_err(|e| StoreError::Io {
            path: tx.location().into(),
            context: format!("signing the entry for {cr_id} revision {revision}"),
            source: std::io::Error::other(e.to_string()),
        })?),
        None => None,
    };
    tx.append(EntryWrite {
        kind,
        cr_id: Some(cr_id),
        principal: signer.map(|s| s.principal.as_str()),
        body: &body,
        signature: signature.as_deref(),
    })
}

/// What an entry on `cr_id` is built against, read inside the write transaction.
pub(crate) fn decision_context(
    tx: &mut dyn ChainTx,
    cr_id: &str,
) -> Result<DecisionContext, DecideError> {
    let current = tx
        .current_revision(cr_id)?
        .ok_or_else(|| DecideError::NotFound(cr_id.to_string()))?;
    Ok(DecisionContext {
        head: tx.head()?,
        decisions: tx.decisions(cr_id)?,
        current,
        policy_head: tx.policy_head()?,
    })
}

/// Refuses an entry on `cr_id` that does not name the next position after `head`.
fn continues(
    head: &Head,
    seq: u64,
    prev: &Option<String>,
    entry_cr: &str,
    cr_id: &str,
) -> Result<(), DecideError> {
    if seq != head.seq + 1 || *prev != head.hash || entry_cr != cr_id {
        return Err(DecideError::Chain(format!(
            "entry says seq {seq} after {prev:?} on {entry_cr}, head is {} {:?}",
            head.seq, head.hash
        )));
    }
    Ok(())
}

fn signed<'a>(kind: EntryKind, cr_id: Option<&'a str>, entry: &'a NewEntry) -> EntryWrite<'a> {
    EntryWrite {
        kind,
        cr_id,
        principal: Some(&entry.principal),
        body: &entry.body,
        signature: Some(&entry.signature),
    }
}

/// Builds the decision (and any adoption it makes due) against the context and appends
/// both, the adoption right after the decision.
pub(crate) fn decide(
    tx: &mut dyn ChainTx,
    cr_id: &str,
    build: &mut DecisionBuilder<'_>,
) -> Result<Appended, DecideError> {
    let context = decision_context(tx, cr_id)?;
    let entries = build(&context)?;
    let record = DecisionRecord::parse(&entries.decision.body)
        .map_err(|e| DecideError::Chain(e.to_string()))?;
    continues(
        &context.head,
        record.seq,
        &record.prev,
        &record.cr_id,
        cr_id,
    )?;
    let decision = tx.append(signed(EntryKind::Decision, Some(cr_id), &entries.decision))?;
    let adoption = match &entries.adoption {
        None => None,
        Some(a) => {
            let r = crate::audit::policy_log::AdoptionRecord::parse(&a.body)
                .map_err(|e| DecideError::Chain(e.to_string()))?;
            if r.seq != decision.seq + 1
                || r.prev.as_deref() != Some(decision.hash.as_str())
                || r.cr_id.as_deref() != Some(cr_id)
            {
                return Err(DecideError::Chain(format!(
                    "the adoption must follow the decision on {cr_id} at entry {}",
                    decision.seq
                )));
            }
            Some(tx.append(signed(EntryKind::PolicyAdopted, Some(cr_id), a))?)
        }
    };
    Ok(Appended { decision, adoption })
}

/// Builds an evidence entry against the context and appends it.
pub(crate) fn evidence(
    tx: &mut dyn ChainTx,
    cr_id: &str,
    build: &mut EvidenceBuilder<'_>,
) -> Result<LogEntry, DecideError> {
    let context = decision_context(tx, cr_id)?;
    let entry = build(&context)?;
    let record = crate::audit::evidence::EvidenceRecord::parse(&entry.body)
        .map_err(|e| DecideError::Chain(e.to_string()))?;
    continues(
        &context.head,
        record.seq,
        &record.prev,
        &record.cr_id,
        cr_id,
    )?;
    Ok(tx.append(signed(EntryKind::Evidence, Some(cr_id), &entry))?)
}

/// Builds an operations entry (emergency or after-approval) against every such entry so
/// far and appends it.
pub(crate) fn emergency(
    tx: &mut dyn ChainTx,
    build: &mut EmergencyBuilder<'_>,
) -> Result<LogEntry, DecideError> {
    let existing = tx.emergency_entries()?;
    let changes = match existing.first() {
        Some(first) => tx.subject_changes(first.seq)?,
        None => Vec::new(),
    };
    let context = EmergencyContext {
        head: tx.head()?,
        existing,
        changes,
        policy_head: tx.policy_head()?,
    };
    let head = &context.head;
    let (kind, entry) = build(&context)?;
    let body: Value =
        serde_json::from_str(&entry.body).map_err(|e| DecideError::Chain(e.to_string()))?;
    if !EntryKind::OPERATIONS.contains(&kind)
        || body["type"].as_str() != Some(kind.as_str())
        || body["seq"].as_u64() != Some(head.seq + 1)
        || body["prev"].as_str() != head.hash.as_deref()
    {
        return Err(DecideError::Chain(format!(
            "{} entry does not continue the log at {}",
            kind.as_str(),
            head.seq
        )));
    }
    // Stages and readings are about one CR: stored beside it, so the CR's recorded last
    // entry moves and its queue row is evaluated again.
    Ok(tx.append(signed(kind, body["cr_id"].as_str(), &entry))?)
}

/// Appends the genesis `policy-adopted` entry built from the head, unless the log already
/// adopted a policy (then `Ok(None)`: the first writer won, nothing is appended twice).
pub(crate) fn genesis(
    tx: &mut dyn ChainTx,
    build: &mut dyn FnMut(&Head) -> Result<NewEntry, DecideError>,
) -> Result<Option<LogEntry>, DecideError> {
    if tx.policy_head()?.seq > 0 {
        return Ok(None);
    }
    let head = tx.head()?;
    let entry = build(&head)?;
    let r = crate::audit::policy_log::AdoptionRecord::parse(&entry.body)
        .map_err(|e| DecideError::Chain(e.to_string()))?;
    if r.seq != head.seq + 1 || r.prev != head.hash || r.cr_id.is_some() {
        return Err(DecideError::Chain(format!(
            "the genesis must follow entry {} and name no change request",
            head.seq
        )));
    }
    Ok(Some(tx.append(signed(
        EntryKind::PolicyAdopted,
        None,
        &entry,
    ))?))
}
