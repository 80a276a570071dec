//! Operations that combine the rules, signing and the store, shared by every face (CLI,
//! TUI, server) so an action taken from any of them is checked and recorded the same way.
//!
//! Each operation signs only under the policy in force: the caller passes the policy
//! history it read ([`PolicyBook`]), and the store's transaction confirms that no newer
//! policy was adopted in between (else [`DecideError::PolicyChanged`]).

pub mod attest;
mod decide;
mod emergency;
mod evidence;
pub mod outbox;
mod policy;
pub mod queue;
mod record;
pub mod rollout;
pub mod row_memory;
mod runner;

pub use decide::{
    DecisionRequest, checklist_snapshot, decision_record, eligible_roles, expected_adoption,
    sign_decision, sign_with_adoption,
};
pub use emergency::{
    ReviewRequest, RollbackRan, RollbackRequest, RollbackRun, authorise_rollback, exceptions,
    exceptions_from, reading_at, record_review, record_rollback, rollback_invocation, run_rollback,
    shown_argv,
};
pub use evidence::{EvidenceRequest, attest_evidence};
pub use policy::{
    GenesisOutcome, ProposeError, Proposed, adopt_genesis, check_proposal_target, migrate,
    propose_policy, write_adopted_policy, write_policy_file,
};
pub use record::{RecordError, Recorded, Route, record_decision};
pub use runner::{CommandOutcome, TAIL_LINES, run_command};

use crate::domain::policy_book::PolicyBook;
use crate::domain::rules::Refusal;
use crate::store::{DecideError, Head};

/// Confirms, inside the store's transaction, that `book` still holds the policy in force
/// (`policy_head` is the latest adoption the store has). The server asks the same before
/// it appends what a client signed.
pub fn check_in_force(book: &PolicyBook, policy_head: &Head) -> Result<(), DecideError> {
    if book.is_provisional() {
        return Err(refused(
            "store-unmigrated",
            "this store has no policy in its log yet; nothing can be signed until its policy file is recorded as the genesis".into(),
            "run `tollgate migrate` (any signing command on the store's machine does it for you)",
        ));
    }
    if policy_head.seq != book.current().seq {
        return Err(DecideError::PolicyChanged {
            policy: policy_head.clone(),
        });
    }
    Ok(())
}

/// Refuses to build on `rev` when the signer saw another revision (`seen`).
fn check_seen(
    seen: Option<&String>,
    rev: &crate::store::StoredRevision,
) -> Result<(), DecideError> {
    match seen {
        Some(seen) if *seen != rev.digest => Err(DecideError::Stale {
            id: rev.cr.id.clone(),
            seen: seen.clone(),
            revision: rev.revision,
            current: rev.digest.clone(),
        }),
        _ => Ok(()),
    }
}

fn refused(rule: &'static str, message: String, remedy: &str) -> DecideError {
    DecideError::Refused(Refusal {
        rule,
        message,
        remedy: remedy.into(),
    })
}

/// Signs `body` as `who`, ready to append.
fn sign(
    body: String,
    who: &crate::identity::Identity,
) -> Result<crate::store::NewEntry, DecideError> {
    let signature = who
        .signer
        .sign(body.as_bytes())
        .map_err(|e| DecideError::Signing(e.to_string()))?;
    Ok(crate::store::NewEntry {
        body,
        signature,
        principal: who.principal.id.clone(),
    })
}
