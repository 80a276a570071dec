//! The pre-deployment checklist of one CR: the policy's items for its gate, with each
//! automated item's CI evidence and each manual item's tick.

use crate::domain::change_request::{ChangeRequest, Check, CheckStatus};
use crate::domain::policy::{ItemMode, Policy};
use serde::{Deserialize, Serialize};

/// Where a checklist item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    /// Automated: CI reports a pass.
    Pass,
    /// Automated: CI reports a failure.
    Fail,
    /// Automated: CI has not finished.
    Pending,
    /// Automated: the CR carries no evidence for this item at all.
    Missing,
    /// Manual: a reviewer ticked it on the current revision.
    Ticked,
    /// Manual: nobody has ticked it yet.
    Unticked,
}

impl ItemState {
    /// Whether the item is satisfied (passes or is ticked).
    pub fn satisfied(self) -> bool {
        matches!(self, ItemState::Pass | ItemState::Ticked)
    }

    /// The spelling used in JSON and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pass => "pass",
            ItemState::Fail => "fail",
            ItemState::Pending => "pending",
            ItemState::Missing => "missing",
            ItemState::Ticked => "ticked",
            ItemState::Unticked => "unticked",
        }
    }
}

/// A reviewer's tick on a manual item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    /// Checklist item id.
    pub item: String,
    /// Optional note ("verified with privacy office").
    pub note: Option<String>,
}

/// Who ticked a manual item, and what they noted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickedBy {
    /// Principal id.
    pub principal: String,
    /// Their note, if any.
    pub note: Option<String>,
}

/// One checklist line as a reviewer sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChecklistEntry {
    /// Item id from the policy.
    pub id: String,
    /// Item label from the policy.
    pub label: String,
    /// True for automated (CI) items, false for manual (ticked) ones.
    pub automated: bool,
    /// For automated items, the CR check id the result comes from.
    pub evidence: Option<String>,
    /// Whether an unsatisfied state blocks approval.
    pub blocking: bool,
    /// Current state.
    pub state: ItemState,
    /// Evidence detail from CI (automated items).
    pub detail: Option<String>,
    /// Link to the evidence (automated items).
    pub url: Option<String>,
    /// Who ticked it (manual items).
    pub ticked_by: Vec<TickedBy>,
}

/// The checklist of one CR, plus CI evidence no item asks for (still worth showing).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checklist {
    /// Policy items for the CR's gate, in policy order.
    pub items: Vec<ChecklistEntry>,
    /// Checks reported by CI that no item of this gate reads.
    pub other_evidence: Vec<Check>,
}

/// Pass / fail / pending / missing counts over automated evidence, for the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCounts {
    /// Checks that passed.
    pub pass: usize,
    /// Checks that failed.
    pub fail: usize,
    /// Checks still running.
    pub pending: usize,
    /// Automated checklist items without any evidence.
    pub missing: usize,
}

impl Checklist {
    /// Builds the checklist of `cr` under `policy`; `ticks` are `(principal, tick)` pairs
    /// from decisions on the current revision.
    pub fn build(cr: &ChangeRequest, policy: &Policy, ticks: &[(&str, &Tick)]) -> Checklist {
        let mut used: Vec<&str> = Vec::new();
        let items = policy
            .checklist_for(cr.gate)
            .map(|item| match &item.mode {
                ItemMode::Automated { evidence } => {
                    used.push(evidence);
                    // What counts is decided by who reported it (see domain::provenance).
                    let check = crate::domain::counted_check::counted(
                        &cr.provenance,
                        evidence,
                        cr.check(evidence),
                        policy,
                    );
                    ChecklistEntry {
                        id: item.id.clone(),
                        label: item.label.clone(),
                        automated: true,
                        evidence: Some(evidence.clone()),
                        blocking: item.blocking,
                        state: match check.as_ref().map(|c| c.status) {
                            Some(CheckStatus::Pass) => ItemState::Pass,
                            Some(CheckStatus::Fail) => ItemState::Fail,
                            Some(CheckStatus::Pending) => ItemState::Pending,
                            None => ItemState::Missing,
                        },
                        detail: check.as_ref().and_then(|c| c.detail.clone()),
                        url: check.and_then(|c| c.url),
                        ticked_by: vec![],
                    }
                }
                ItemMode::Manual => {
                    let ticked_by: Vec<TickedBy> = ticks
                        .iter()
                        .filter(|(_, t)| t.item == item.id)
                        .map(|(who, t)| TickedBy {
                            principal: who.to_string(),
                            note: t.note.clone(),
                        })
                        .collect();
                    ChecklistEntry {
                        id: item.id.clone(),
                        label: item.label.clone(),
                        automated: false,
                        evidence: None,
                        blocking: item.blocking,
                        state: if ticked_by.is_empty() {
                            ItemState::Unticked
                        } else {
                            ItemState::Ticked
                        },
                        detail: None,
                        url: None,
                        ticked_by,
                    }
                }
            })
            .collect();
        let other_evidence = cr
            .checks
            .iter()
            .filter(|c| !used.contains(&c.id.as_str()))
            .cloned()
            .collect();
        Checklist {
            items,
            other_evidence,
        }
    }

    /// Counts over every piece of CI evidence: automated items and other checks.
    pub fn counts(&self) -> CheckCounts {
        let mut c = CheckCounts::default();
        let automated = self.items.iter().filter(|i| i.automated).map(|i| i.state);
        let others = self.other_evidence.iter().map(|e| match e.status {
            CheckStatus::Pass => ItemState::Pass,
            CheckStatus::Fail => ItemState::Fail,
            CheckStatus::Pending => ItemState::Pending,
        });
        for state in automated.chain(others) {
            match state {
                ItemState::Pass => c.pass += 1,
                ItemState::Fail => c.fail += 1,
                ItemState::Pending => c.pending += 1,
                ItemState::Missing => c.missing += 1,
                ItemState::Ticked | ItemState::Unticked => {}
            }
        }
        c
    }

    /// Blocking automated items that are not passing: the CR cannot be approved until CI
    /// changes its evidence (a reviewer cannot fix these by ticking).
    pub fn blocking_evidence(&self) -> impl Iterator<Item = &ChecklistEntry> {
        self.items
            .iter()
            .filter(|i| i.automated && i.blocking && !i.state.satisfied())
    }

    /// Blocking manual items nobody has ticked, given extra ticks about to be signed.
    pub fn unticked_blocking<'a>(
        &'a self,
        extra: &'a [Tick],
    ) -> impl Iterator<Item = &'a ChecklistEntry> {
        self.items.iter().filter(move |i| {
            !i.automated
                && i.blocking
                && !i.state.satisfied()
                && !extra.iter().any(|t| t.item == i.id)
        })
    }
}
