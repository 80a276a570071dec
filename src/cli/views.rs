//! The JSON shapes printed by `list --json` and `show --json` (documented in
//! `docs/json-output.md`). Fields are only ever added, never renamed or removed.

pub use crate::workflow::queue::QueueEntry;

use crate::domain::checklist::Checklist;
use crate::domain::decision::Decision;
use crate::domain::signoff::Slot;
use crate::domain::status::{Discounted, Evaluation};
use crate::store::{RevisionInfo, StoredRevision};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

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
    /// Its rollout as the log tells it (stages, KPI readings, a rollback), if one began.
    pub rollout: Option<&'a crate::domain::rollout::CrRollout>,
    /// The last rollback drill of its subject: the evidence that the rollback works,
    /// beside the requester's own `rollback_tested`.
    pub rollback_drill: Option<&'a crate::domain::rollout::DrillFact>,
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
            rollout: None,
            rollback_drill: None,
        }
    }
}
