//! CI's signed evidence: one check's result on one exact revision of a CR.

use super::{check_in_force, check_seen, sign};
use crate::audit::evidence::EvidenceRecord;
use crate::audit::log::{BODY_FORMAT, EntryKind, LogEntry, time_text};
use crate::domain::change_request::CheckStatus;
use crate::domain::policy_book::PolicyBook;
use crate::identity::Identity;
use crate::store::{DecideError, Store};
use chrono::{DateTime, Utc};

/// A check result CI asked to attest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRequest {
    /// The CR.
    pub cr_id: String,
    /// The check id, as in the CR's `checks`.
    pub check: String,
    /// Outcome.
    pub status: CheckStatus,
    /// What was measured.
    pub detail: Option<String>,
    /// Link to the run.
    pub url: Option<String>,
    /// The revision digest CI ran against; refused if the CR moved on since.
    pub expect_digest: Option<String>,
}

/// Checks, signs and appends an evidence entry, bound to the CR's current revision.
pub fn attest_evidence(
    store: &dyn Store,
    book: &PolicyBook,
    who: &Identity,
    req: &EvidenceRequest,
    now: DateTime<Utc>,
) -> Result<LogEntry, DecideError> {
    store.append_evidence(&req.cr_id, &mut |ctx| {
        check_in_force(book, &ctx.policy_head)?;
        let rev = &ctx.current;
        check_seen(req.expect_digest.as_ref(), rev)?;
        let record = EvidenceRecord {
            kind: EntryKind::Evidence.as_str().into(),
            format: BODY_FORMAT,
            seq: ctx.head.seq + 1,
            prev: ctx.head.hash.clone(),
            cr_id: rev.cr.id.clone(),
            cr_revision: rev.revision,
            cr_digest: rev.digest.clone(),
            check: req.check.clone(),
            status: match req.status {
                CheckStatus::Pass => "pass",
                CheckStatus::Fail => "fail",
                CheckStatus::Pending => "pending",
            }
            .into(),
            detail: req.detail.clone(),
            url: req.url.clone(),
            principal: who.principal.id.clone(),
            key_fingerprint: who.signer.fingerprint().into(),
            at: time_text(now),
        };
        let body = record.body();
        // Read back with the parser the server and `verify` use, held to the same rules.
        let parsed = EvidenceRecord::parse(&body).map_err(|e| DecideError::Chain(e.to_string()))?;
        crate::audit::record_rules::check_evidence_record(
            &parsed,
            &who.principal,
            book.policy(),
            &rev.cr,
            rev.submitted_at,
            now,
        )
        .map_err(DecideError::Refused)?;
        sign(body, who)
    })
}
