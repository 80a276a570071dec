//! What a signed decision may claim about the revision it decides on: the rules the server
//! applies before appending what a client signed, and `verify` to every stored decision.
//!
//! A signature proves who signed, not that what they signed is true. A decision names the
//! revision number, the signing time and the checklist as it stood; each is re-derived
//! from the log (the revision's submission entry, the evaluation of that revision) and
//! compared, never taken from the client.

use super::log::{DecisionRecord, ItemSnapshot};
use crate::domain::checklist::Tick;
use crate::domain::emergency::check_signing_time;
use crate::domain::rules::Refusal;
use crate::domain::status::Evaluation;
use chrono::{DateTime, Utc};

/// The revision a decision names, as the log recorded its submission.
#[derive(Debug, Clone, Copy)]
pub struct RevisionFacts<'a> {
    /// Its number.
    pub revision: u32,
    /// Its content digest.
    pub digest: &'a str,
    /// When it was submitted.
    pub submitted_at: DateTime<Utc>,
}

/// The checklist states a decision records: the evaluation plus the ticks being signed.
pub fn checklist_snapshot(eval: &Evaluation, ticks: &[Tick]) -> Vec<ItemSnapshot> {
    let before: Vec<ItemSnapshot> = eval
        .checklist
        .items
        .iter()
        .map(|i| ItemSnapshot {
            id: i.id.clone(),
            state: i.state.as_str().into(),
        })
        .collect();
    with_ticks(&before, ticks)
}

/// The states `before` a decision with its own `ticks` applied.
pub fn with_ticks(before: &[ItemSnapshot], ticks: &[Tick]) -> Vec<ItemSnapshot> {
    before
        .iter()
        .map(|i| ItemSnapshot {
            id: i.id.clone(),
            state: if ticks.iter().any(|t| t.item == i.id) {
                "ticked".into()
            } else {
                i.state.clone()
            },
        })
        .collect()
}

fn refuse(rule: &'static str, message: String, remedy: &str) -> Result<(), Refusal> {
    Err(Refusal {
        rule,
        message,
        remedy: remedy.into(),
    })
}

/// Checks the facts a decision states against the revision it names (`None`: no such
/// revision in the log), the evaluation of that revision before it (`None` when it cannot
/// be re-derived, e.g. before the policy was recorded), and when it was received.
pub fn check_decision_record(
    record: &DecisionRecord,
    at: DateTime<Utc>,
    revision: Option<RevisionFacts<'_>>,
    eval: Option<&Evaluation>,
    ticks: &[Tick],
    received: DateTime<Utc>,
) -> Result<(), Refusal> {
    let want = eval.map(|e| checklist_snapshot(e, ticks));
    check_decision_facts(record, at, revision, want.as_deref(), received)
}

/// [`check_decision_record`] with the expected checklist already derived (the states
/// before the decision, with its own ticks applied).
pub fn check_decision_facts(
    record: &DecisionRecord,
    at: DateTime<Utc>,
    revision: Option<RevisionFacts<'_>>,
    expected_checklist: Option<&[ItemSnapshot]>,
    received: DateTime<Utc>,
) -> Result<(), Refusal> {
    let Some(rev) =
        revision.filter(|r| r.digest == record.cr_digest && r.revision == record.cr_revision)
    else {
        return refuse(
            "decision-revision",
            format!(
                "the decision names revision {} of {} with digest {}, which the log does not hold",
                record.cr_revision, record.cr_id, record.cr_digest
            ),
            "decide on a revision that was submitted (`tollgate show` names it)",
        );
    };
    if at < rev.submitted_at {
        return refuse(
            "signed-before-submission",
            format!(
                "the decision says it was signed at {at}, before revision {} of {} was submitted ({})",
                rev.revision, record.cr_id, rev.submitted_at
            ),
            "check the signer's clock and sign again",
        );
    }
    check_signing_time(at, received)?;
    if let Some(want) = expected_checklist
        && want != record.checklist.as_slice()
    {
        let differs = want
            .iter()
            .find(|w| !record.checklist.contains(w))
            .map(|w| format!("{} is {}", w.id, w.state))
            .or_else(|| {
                record
                    .checklist
                    .iter()
                    .find(|g| !want.contains(g))
                    .map(|g| format!("{} is not {}", g.id, g.state))
            })
            .unwrap_or_else(|| "the items differ".into());
        return refuse(
            "checklist-mismatch",
            format!(
                "the checklist the decision records is not the checklist of revision {} of {} ({differs})",
                rev.revision, record.cr_id
            ),
            "record the checklist tollgate evaluates; do not edit it",
        );
    }
    Ok(())
}

/// Checks a signed evidence entry by `who` against the revision it attests (`rev`) and
/// the policy in force: only a `ci` principal attests, the check is one the CR reports or
/// the checklist reads, and the signing time is after the revision's submission and not
/// after `received`.
pub fn check_evidence_record(
    record: &super::evidence::EvidenceRecord,
    who: &crate::domain::policy::Principal,
    policy: &crate::domain::policy::Policy,
    rev: &crate::domain::change_request::ChangeRequest,
    submitted_at: DateTime<Utc>,
    received: DateTime<Utc>,
) -> Result<(), Refusal> {
    use crate::domain::policy::ItemMode;
    use crate::domain::provenance::CI_ROLE;
    if !who.has_role(CI_ROLE) {
        let ci: Vec<&str> = policy
            .principals
            .iter()
            .filter(|p| p.has_role(CI_ROLE))
            .map(|p| p.id.as_str())
            .collect();
        return refuse(
            "ci-only",
            format!(
                "{} does not hold the {CI_ROLE} role: only CI attests automated evidence",
                who.id
            ),
            &format!(
                "have CI report it (principals holding {CI_ROLE}: {})",
                if ci.is_empty() {
                    "none".to_string()
                } else {
                    ci.join(", ")
                }
            ),
        );
    }
    let known = rev.checks.iter().any(|c| c.id == record.check)
        || policy.checklist_for(rev.gate).any(
            |i| matches!(&i.mode, ItemMode::Automated { evidence } if *evidence == record.check),
        );
    if !known {
        return refuse(
            "unknown-check",
            format!(
                "{} neither reports a check {:?} nor does its checklist read one",
                rev.id, record.check
            ),
            "name a check id as in the CR's checks (e.g. backward_compatibility)",
        );
    }
    let at = record.time().map_err(|e| Refusal {
        rule: "malformed",
        message: e.to_string(),
        remedy: "sign the record tollgate builds".into(),
    })?;
    if at < submitted_at {
        return refuse(
            "signed-before-submission",
            format!(
                "the evidence says it was signed at {at}, before revision {} of {} was submitted ({submitted_at})",
                record.cr_revision, record.cr_id
            ),
            "check the signer's clock and sign again",
        );
    }
    check_signing_time(at, received)
}
