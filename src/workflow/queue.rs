//! The queue's one projection of an evaluated change request, shared by `list --json`,
//! `show --json` and the team server's `GET /v1/queue` (documented in
//! `docs/json-output.md`; fields are only ever added, never renamed or removed).

use crate::domain::change_request::{Gate, Subject};
use crate::domain::checklist::CheckCounts;
use crate::domain::risk::RiskAssessment;
use crate::domain::status::{Evaluation, Status};
use crate::store::{StoredCr, StoredRevision};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Sign-offs in short: enough for a queue column.
#[derive(Debug, Serialize)]
pub struct SignoffSummary<'a> {
    /// Slots the policy requires.
    pub required: usize,
    /// Slots filled by distinct, valid approvals on the current revision.
    pub obtained: usize,
    /// Roles still waiting.
    pub missing_roles: Vec<&'a str>,
}

/// One row of the queue: `list --json`, the server's `GET /v1/queue`, and the summary
/// fields of `show --json` — one projection, so the three never drift apart.
#[derive(Debug, Serialize)]
pub struct QueueEntry<'a> {
    /// CR id.
    pub id: &'a str,
    /// Current revision number.
    pub revision: u32,
    /// Digest of the current revision.
    pub digest: &'a str,
    /// Gate.
    pub gate: Gate,
    /// Title (raw; sanitise before printing to a terminal).
    pub title: &'a str,
    /// What changes.
    pub subject: &'a Subject,
    /// Requester principal id.
    pub requester: &'a str,
    /// When the requester created the CR.
    pub created_at: DateTime<Utc>,
    /// When tollgate first stored it.
    pub first_submitted_at: DateTime<Utc>,
    /// Derived status.
    pub status: Status,
    /// Computed, declared and effective risk with reasons.
    pub risk: &'a RiskAssessment,
    /// Sign-offs required vs obtained.
    pub signoffs: SignoffSummary<'a>,
    /// CI evidence counts.
    pub checks: CheckCounts,
    /// Whether a blocking CI check fails (the CR must change before approval).
    pub blocked: bool,
    /// Whether blocking CI evidence is still pending or missing.
    pub awaiting_evidence: bool,
    /// Every blocking automated item that prevents approval now (and any missing required
    /// artifact, and a stale policy proposal).
    pub blockers: &'a [String],
    /// Artifact kinds the policy requires at this gate and risk that the CR does not link.
    pub missing_artifacts: &'a [String],
    /// For a policy change proposed against a policy no longer in force: why it can no
    /// longer be adopted (null otherwise).
    pub stale_proposal: Option<&'a str>,
}

impl<'a> QueueEntry<'a> {
    /// Builds the row for `cr` from its evaluation.
    pub fn new(cr: &'a StoredCr, e: &'a Evaluation) -> Self {
        Self::for_revision(&cr.current, cr.first_submitted_at, e)
    }

    /// Builds the row for one stored revision (`show --revision` shows an older one).
    pub fn for_revision(
        rev: &'a StoredRevision,
        first_submitted_at: DateTime<Utc>,
        e: &'a Evaluation,
    ) -> Self {
        QueueEntry {
            id: &rev.cr.id,
            revision: rev.revision,
            digest: &rev.digest,
            gate: rev.cr.gate,
            title: &rev.cr.title,
            subject: &rev.cr.subject,
            requester: &rev.cr.requester,
            created_at: rev.cr.created_at,
            first_submitted_at,
            status: e.status,
            risk: &e.risk,
            signoffs: SignoffSummary {
                required: e.signoffs.required(),
                obtained: e.signoffs.obtained(),
                missing_roles: e.signoffs.missing_roles(),
            },
            checks: e.checks,
            blocked: e.blocked,
            awaiting_evidence: e.awaiting_evidence,
            blockers: &e.blockers,
            missing_artifacts: &e.missing_artifacts,
            stale_proposal: e.stale_proposal.as_deref(),
        }
    }
}
