//! The JSON shapes printed by `list --json` and `show --json` (documented in
//! `docs/json-output.md`). Fields are only ever added, never renamed or removed.

use crate::domain::change_request::{Gate, Subject};
use crate::domain::checklist::{CheckCounts, Checklist};
use crate::domain::decision::Decision;
use crate::domain::risk::RiskAssessment;
use crate::domain::signoff::Slot;
use crate::domain::status::{Discounted, Evaluation, Status};
use crate::store::{RevisionInfo, StoredCr, StoredRevision};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

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

/// One row of `list --json`.
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

    fn for_revision(
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

/// `show --json`: the queue fields plus everything behind them.
#[derive(Debug, Serialize)]
pub struct Detail<'a> {
    /// The same fields as a `list --json` row.
    #[serde(flatten)]
    pub summary: QueueEntry<'a>,
    /// Whether the shown revision is the current one.
    pub is_current: bool,
    /// Every revision of the CR.
    pub revisions: &'a [RevisionInfo],
    /// Canary observation window for the effective risk, in hours.
    pub observation_hours: i64,
    /// Checklist with evidence and ticks, plus CI evidence no item reads.
    pub checklist: &'a Checklist,
    /// Each required sign-off and who fills it.
    pub signoff_slots: &'a [Slot],
    /// Decisions that count.
    pub decisions: &'a [Decision],
    /// Decisions that do not count, with the reason.
    pub discounted_decisions: &'a [Discounted],
    /// The document exactly as stored (unknown fields included).
    pub document: &'a Value,
    /// For a `policy`-gate CR: what it changes against the policy in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_change: Option<PolicyChangeView<'a>>,
}

/// What a policy change request changes, against the policy in force.
#[derive(Debug, Serialize)]
pub struct PolicyChangeView<'a> {
    /// The version in force now.
    pub in_force_version: u32,
    /// Its digest.
    pub in_force_digest: &'a str,
    /// Every difference, principals first.
    pub changes: &'a [crate::domain::policy_diff::PolicyChange],
}

impl<'a> Detail<'a> {
    /// Builds the detail view of revision `rev` of a CR.
    pub fn new(
        rev: &'a StoredRevision,
        first_submitted_at: DateTime<Utc>,
        is_current: bool,
        revisions: &'a [RevisionInfo],
        e: &'a Evaluation,
    ) -> Self {
        Detail {
            summary: QueueEntry::for_revision(rev, first_submitted_at, e),
            is_current,
            revisions,
            observation_hours: e.observation_hours,
            checklist: &e.checklist,
            signoff_slots: &e.signoffs.slots,
            decisions: &e.counted,
            discounted_decisions: &e.discounted,
            document: &rev.document,
            policy_change: None,
        }
    }
}
