//! Operations that combine the rules, signing and the store, shared by both faces (CLI and
//! TUI) so a decision signed from either is checked and recorded the same way.

use crate::audit::log::{
    BODY_FORMAT, DecisionRecord, ItemSnapshot, LogEntry, TickRecord, time_text,
};
use crate::domain::checklist::Tick;
use crate::domain::decision::Verdict;
use crate::domain::policy::{Policy, Principal};
use crate::domain::rules::{Proposal, check_decision};
use crate::domain::status::{Evaluation, evaluate};
use crate::identity::Identity;
use crate::store::{DecideError, DecisionContext, Head, NewEntry, Store, StoredRevision};
use chrono::{DateTime, Utc};

/// A decision a reviewer asked to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRequest {
    /// The CR.
    pub cr_id: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The role signed for.
    pub role: String,
    /// Why.
    pub rationale: String,
    /// Manual items ticked.
    pub ticks: Vec<Tick>,
    /// The digest the reviewer looked at; the decision is refused if the CR changed since.
    pub expect_digest: Option<String>,
}

/// Roles `who` could sign `verdict` in: approvals go to an open sign-off; other verdicts
/// prefer roles the CR needs and fall back to any role held.
pub fn eligible_roles(who: &Principal, verdict: Verdict, eval: &Evaluation) -> Vec<String> {
    let open = eval.signoffs.missing_roles();
    let required: Vec<&str> = eval.signoffs.required_roles();
    let held = &who.roles;
    let mut eligible: Vec<String> = match verdict {
        Verdict::Approve => held
            .iter()
            .filter(|r| open.contains(&r.as_str()))
            .cloned()
            .collect(),
        _ => held
            .iter()
            .filter(|r| required.contains(&r.as_str()))
            .cloned()
            .collect(),
    };
    if eligible.is_empty() && verdict != Verdict::Approve {
        eligible = held.clone();
    }
    eligible
}

/// The checklist states recorded in a decision: the evaluation plus the ticks being signed.
pub fn checklist_snapshot(eval: &Evaluation, ticks: &[Tick]) -> Vec<ItemSnapshot> {
    eval.checklist
        .items
        .iter()
        .map(|i| ItemSnapshot {
            id: i.id.clone(),
            state: if ticks.iter().any(|t| t.item == i.id) {
                "ticked".into()
            } else {
                i.state.as_str().into()
            },
        })
        .collect()
}

/// The record that would be signed for `req` on revision `rev`, as the entry after `after`.
pub fn decision_record(
    who: &Identity,
    req: &DecisionRequest,
    rev: &StoredRevision,
    eval: &Evaluation,
    policy_digest: &str,
    after: &Head,
    at: DateTime<Utc>,
) -> DecisionRecord {
    DecisionRecord {
        kind: "decision".into(),
        format: BODY_FORMAT,
        seq: after.seq + 1,
        prev: after.hash.clone(),
        cr_id: rev.cr.id.clone(),
        cr_revision: rev.revision,
        cr_digest: rev.digest.clone(),
        verdict: req.verdict.as_str().into(),
        role: req.role.clone(),
        rationale: req.rationale.trim().into(),
        ticks: req
            .ticks
            .iter()
            .map(|t| TickRecord {
                item: t.item.clone(),
                note: t.note.clone(),
            })
            .collect(),
        checklist: checklist_snapshot(eval, &req.ticks),
        principal: who.principal.id.clone(),
        key_fingerprint: who.signer.fingerprint().into(),
        policy_digest: policy_digest.into(),
        at: time_text(at),
    }
}

/// Checks the rules against the context read inside the store's write transaction and
/// signs; what `Store::decide` calls.
fn build_entry(
    ctx: &DecisionContext,
    who: &Identity,
    policy: &Policy,
    policy_digest: &str,
    req: &DecisionRequest,
    at: DateTime<Utc>,
) -> Result<NewEntry, DecideError> {
    let rev = &ctx.current;
    if let Some(seen) = &req.expect_digest
        && *seen != rev.digest
    {
        return Err(DecideError::Stale {
            id: rev.cr.id.clone(),
            seen: seen.clone(),
            revision: rev.revision,
            current: rev.digest.clone(),
        });
    }
    let eval = evaluate(&rev.cr, &rev.digest, &ctx.decisions, policy);
    let proposal = Proposal {
        principal: &who.principal,
        role: &req.role,
        verdict: req.verdict,
        rationale: &req.rationale,
        ticks: &req.ticks,
    };
    check_decision(&rev.cr, &eval, policy, &proposal).map_err(DecideError::Refused)?;
    let record = decision_record(who, req, rev, &eval, policy_digest, &ctx.head, at);
    let body = record.body();
    let signature = who
        .signer
        .sign(body.as_bytes())
        .map_err(|e| DecideError::Signing(e.to_string()))?;
    Ok(NewEntry {
        body,
        signature,
        principal: who.principal.id.clone(),
    })
}

/// Checks, signs and appends one decision.
pub fn sign_decision(
    store: &dyn Store,
    policy: &Policy,
    policy_digest: &str,
    who: &Identity,
    req: &DecisionRequest,
    at: DateTime<Utc>,
) -> Result<LogEntry, DecideError> {
    store.decide(&req.cr_id, &mut |ctx| {
        build_entry(ctx, who, policy, policy_digest, req, at)
    })
}
