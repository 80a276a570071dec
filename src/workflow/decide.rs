//! Decisions: check the rules against the context read inside the store's transaction,
//! sign, append — and when an approval completes a policy change, adopt it in the same
//! transaction.

use super::{check_in_force, check_seen, sign};
use crate::audit::canonical::sha256_digest;
use crate::audit::log::{
    BODY_FORMAT, DecisionRecord, EntryKind, TickRecord, entry_hash, time_text,
};
use crate::audit::policy_log::AdoptionRecord;
pub use crate::audit::record_rules::checklist_snapshot;
use crate::domain::change_request::Gate;
use crate::domain::checklist::Tick;
use crate::domain::decision::Verdict;
use crate::domain::policy::Principal;
use crate::domain::policy_book::PolicyBook;
use crate::domain::rules::{Proposal, check_decision};
use crate::domain::status::{Evaluation, Status, evaluate_in};
use crate::identity::Identity;
use crate::store::{
    Appended, DecideError, DecisionContext, DecisionEntries, Head, Store, StoredRevision,
};
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

/// The adoption a decision makes due, if any: an approval that completes the sign-offs of
/// a policy change adopts its text as the next version, signed by the same approver.
/// `decision` is the record about to be appended (its hash is what the adoption follows).
/// The client builds it this way and the server rebuilds it to compare: neither takes the
/// other's word for what the adoption must say.
pub fn expected_adoption(
    ctx: &DecisionContext,
    book: &PolicyBook,
    decision: &DecisionRecord,
) -> Result<Option<AdoptionRecord>, DecideError> {
    let rev = &ctx.current;
    let Some(proposal) = rev
        .cr
        .policy
        .as_ref()
        .filter(|_| rev.cr.gate == Gate::Policy)
    else {
        return Ok(None);
    };
    if decision.verdict != Verdict::Approve.as_str() {
        return Ok(None);
    }
    let mut after = ctx.decisions.clone();
    after.push(
        decision
            .to_decision()
            .map_err(|e| DecideError::Chain(e.to_string()))?,
    );
    if evaluate_in(&rev.cr, &rev.digest, &after, book).status != Status::Approved {
        return Ok(None);
    }
    let current = book.current();
    Ok(Some(AdoptionRecord {
        kind: EntryKind::PolicyAdopted.as_str().into(),
        format: BODY_FORMAT,
        seq: decision.seq + 1,
        prev: Some(entry_hash(&decision.body())),
        version: current.version + 1,
        policy_text: proposal.text.clone(),
        policy_digest: sha256_digest(proposal.text.as_bytes()),
        allowed_signers: signers_of(&proposal.text)?,
        previous_digest: Some(current.digest.clone()),
        cr_id: Some(rev.cr.id.clone()),
        cr_revision: Some(rev.revision),
        cr_digest: Some(rev.digest.clone()),
        migration: false,
        principal: decision.principal.clone(),
        key_fingerprint: decision.key_fingerprint.clone(),
        at: decision.at.clone(),
    }))
}

/// The `allowed_signers` an adoption of this policy text records.
fn signers_of(text: &str) -> Result<String, DecideError> {
    crate::domain::policy::parse_policy(text)
        .map(|(p, _)| crate::audit::keys::allowed_signers(&p))
        .map_err(|r| {
            DecideError::Refused(crate::domain::rules::Refusal {
                rule: "policy-invalid",
                message: format!(
                    "the proposed policy no longer reads: {}",
                    r.to_string().trim()
                ),
                remedy: "propose a corrected policy".into(),
            })
        })
}

/// Signs a decision record and, when it completes a policy change, the adoption due.
pub fn sign_with_adoption(
    ctx: &DecisionContext,
    book: &PolicyBook,
    who: &Identity,
    record: &DecisionRecord,
) -> Result<DecisionEntries, DecideError> {
    let adoption = match expected_adoption(ctx, book, record)? {
        Some(a) => Some(sign(a.body(), who)?),
        None => None,
    };
    Ok(DecisionEntries {
        decision: sign(record.body(), who)?,
        adoption,
    })
}

/// Checks the rules against the context read inside the store's write transaction and
/// signs; what `Store::decide` calls.
fn build_entry(
    ctx: &DecisionContext,
    who: &Identity,
    book: &PolicyBook,
    req: &DecisionRequest,
    at: DateTime<Utc>,
    drills: Option<&crate::domain::rollout::Rollouts>,
) -> Result<DecisionEntries, DecideError> {
    check_in_force(book, &ctx.policy_head)?;
    let rev = &ctx.current;
    check_seen(req.expect_digest.as_ref(), rev)?;
    let eval = evaluate_in(&rev.cr, &rev.digest, &ctx.decisions, book);
    let proposal = Proposal {
        principal: &who.principal,
        role: &req.role,
        verdict: req.verdict,
        rationale: &req.rationale,
        ticks: &req.ticks,
    };
    check_decision(&rev.cr, &eval, book.policy(), &proposal).map_err(DecideError::Refused)?;
    if let Some(drills) = drills {
        crate::domain::rollout::check_drill_requirement(
            book.policy(),
            &rev.cr,
            eval.risk.effective,
            drills,
            at,
        )
        .map_err(DecideError::Refused)?;
    }
    let record = decision_record(who, req, rev, &eval, &book.current().digest, &ctx.head, at);
    // The same facts the server and `verify` will hold the record to.
    crate::audit::record_rules::check_decision_record(
        &record,
        at,
        Some(crate::audit::record_rules::RevisionFacts {
            revision: rev.revision,
            digest: &rev.digest,
            submitted_at: rev.submitted_at,
        }),
        Some(&eval),
        &req.ticks,
        at,
    )
    .map_err(DecideError::Refused)?;
    sign_with_adoption(ctx, book, who, &record)
}

/// Checks, signs and appends one decision (and the adoption it makes due).
pub fn sign_decision(
    store: &dyn Store,
    book: &PolicyBook,
    who: &Identity,
    req: &DecisionRequest,
    at: DateTime<Utc>,
) -> Result<Appended, DecideError> {
    // Drills are only ever added: read before the transaction, they can only make the
    // check stricter than the log at appending time.
    let drills = match (req.verdict, &book.policy().after.drills) {
        (crate::domain::decision::Verdict::Approve, Some(_)) => {
            Some(super::rollout::rollouts(store)?)
        }
        _ => None,
    };
    store.decide(&req.cr_id, &mut |ctx| {
        build_entry(ctx, who, book, req, at, drills.as_ref())
    })
}
