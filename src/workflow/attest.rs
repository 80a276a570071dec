//! `tollgate attest`: the approval of a CR as an in-toto attestation a deploy job can
//! check, issued by the team server's principal — locally with its key file, or by the
//! server itself over `GET /v1/change-requests/{id}/attestation`.

use super::refused;
use crate::audit::attestation::{Approved, Envelope, SignOff, issue};
use crate::audit::log::DecisionRecord;
use crate::domain::decision::Verdict;
use crate::domain::policy_book::PolicyBook;
use crate::domain::status::{Status, evaluate_in};
use crate::store::{DecideError, EntrySigner, Store};
use chrono::{DateTime, Utc};

/// Issues the attestation of `cr_id`'s approval, signed by `key` (a principal holding
/// the `server` role in the policy in force). Refused for a CR that is not approved or
/// names no `subject.artifact_digest`.
pub fn attest(
    store: &dyn Store,
    book: &PolicyBook,
    key: &EntrySigner,
    cr_id: &str,
    now: DateTime<Utc>,
) -> Result<Envelope, DecideError> {
    let policy = book.policy();
    if !policy
        .principal(&key.principal)
        .is_some_and(|p| p.has_role(crate::domain::provenance::SERVER_ROLE))
    {
        return Err(refused(
            "server-only",
            format!(
                "{} does not hold the server role: attestations are signed by the team server's principal",
                key.principal
            ),
            "give the server's key (--server-key), or ask the team server (--remote)",
        ));
    }
    let cr = store
        .get(cr_id)?
        .ok_or_else(|| DecideError::NotFound(cr_id.to_string()))?;
    let decisions = store.decisions(cr_id)?;
    let eval = evaluate_in(&cr.current.cr, &cr.current.digest, &decisions, book);
    if eval.status != Status::Approved {
        return Err(refused(
            "not-approved",
            format!(
                "{cr_id} is {}: only an approval is attested",
                eval.status.as_str()
            ),
            &format!("`tollgate wait {cr_id}` until it is approved"),
        ));
    }
    if cr.current.cr.subject.artifact_digest.is_none() {
        return Err(refused(
            "no-artifact-digest",
            format!(
                "{cr_id} names no subject.artifact_digest: there are no model bytes to bind the approval to"
            ),
            "the pipeline submits a revision with subject.artifact_digest = \"sha256:…\" of the artifact",
        ));
    }
    // Each filled sign-off with the signed entry of the approval that fills it.
    let entries = store.decision_entries(cr_id)?;
    let mut signoffs = Vec::new();
    for slot in &eval.signoffs.slots {
        let Some(who) = &slot.filled_by else { continue };
        let entry = entries.iter().rev().find(|e| {
            DecisionRecord::parse(&e.body).is_ok_and(|r| {
                &r.principal == who
                    && r.role == slot.role
                    && r.cr_digest == cr.current.digest
                    && r.verdict == Verdict::Approve.to_string()
            })
        });
        let Some(entry) = entry else {
            return Err(DecideError::Chain(format!(
                "the approval of {who} as {} is not in the log",
                slot.role
            )));
        };
        signoffs.push(SignOff {
            principal: who.clone(),
            role: slot.role.clone(),
            entry: entry.clone(),
        });
    }
    let head = store.recorded_head()?;
    let risk = eval.risk.effective.to_string();
    let approved = Approved {
        document: &cr.current.document,
        revision: cr.current.revision,
        risk: &risk,
        policy: (book.current().version, &book.current().digest),
        signoffs,
        head: (head.seq, head.hash.as_deref()),
        at: now,
    };
    issue(&approved, &key.key).map_err(|e| DecideError::Signing(e.to_string()))
}
