//! The policy's own life in the log: the genesis (`init`, `demo`), the migration of a
//! store from before policy entries, and proposals to change it.

use super::sign;
use crate::audit::canonical::sha256_digest;
use crate::audit::keys::{KeyLineError, allowed_signers, check_policy_keys};
use crate::audit::log::{BODY_FORMAT, EntryKind, LogEntry, time_text};
use crate::audit::policy_log::AdoptionRecord;
use crate::domain::change_request::{Gate, from_value};
use crate::domain::policy_book::PolicyBook;
use crate::domain::policy_change::{
    ID_PREFIX, ProposalInput, check_adoptable, check_proposal, invalid_policy, proposal_document,
};
use crate::domain::rules::Refusal;
use crate::domain::status::{Status, evaluate_in};
use crate::identity::Identity;
use crate::store::{DecideError, Store, StoreError, Submission, SubmitOutcome};
use chrono::{DateTime, Utc};

/// Writes a policy file through a temporary file, an fsync and a rename, so a crash never
/// leaves a half-written policy behind.
pub fn write_policy_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("toml.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// After an adoption, the file beside the store is rewritten with the adopted text,
/// verbatim: every face (CLI, TUI, server) keeps the copy in step this way.
pub fn write_adopted_policy(path: &std::path::Path, adoption: &LogEntry) -> std::io::Result<()> {
    let record = AdoptionRecord::parse(&adoption.body).map_err(std::io::Error::other)?;
    write_policy_file(path, &record.policy_text)
}

/// What recording a genesis did.
#[derive(Debug)]
pub enum GenesisOutcome {
    /// The policy was adopted at this entry.
    Adopted(LogEntry),
    /// The log had adopted a policy already (another process was first): nothing written.
    AlreadyAdopted,
}

/// Records `text` as the genesis policy of `store`, signed by `who`, a principal of that
/// very policy. At the end of a non-empty log it is marked as adopted at migration (the
/// entries before it are judged by it). Refused unless the policy is valid and can govern
/// its own changes.
pub fn adopt_genesis(
    store: &dyn Store,
    text: &str,
    who: &Identity,
    now: DateTime<Utc>,
) -> Result<GenesisOutcome, DecideError> {
    let policy = check_adoptable(text).map_err(DecideError::Refused)?;
    let keyring = check_policy_keys(&policy).map_err(|e| DecideError::Refused(invalid_key(&e)))?;
    if keyring.principal_of(who.signer.public_key()) != Some(who.principal.id.as_str()) {
        return Err(DecideError::Refused(Refusal {
            rule: "genesis-signer",
            message: format!(
                "the genesis policy must be signed by one of its own principals, and key {} is not listed in it",
                who.signer.fingerprint()
            ),
            remedy: "sign with --key (or --as) a key listed under a principal of that policy"
                .into(),
        }));
    }
    let appended = store.adopt_genesis(&mut |head| {
        let record = AdoptionRecord {
            kind: EntryKind::PolicyAdopted.as_str().into(),
            format: BODY_FORMAT,
            seq: head.seq + 1,
            prev: head.hash.clone(),
            version: 1,
            policy_text: text.to_string(),
            policy_digest: sha256_digest(text.as_bytes()),
            allowed_signers: allowed_signers(&policy),
            previous_digest: None,
            cr_id: None,
            cr_revision: None,
            cr_digest: None,
            migration: head.seq > 0,
            principal: who.principal.id.clone(),
            key_fingerprint: who.signer.fingerprint().into(),
            at: time_text(now),
        };
        sign(record.body(), who)
    })?;
    Ok(match appended {
        Some(e) => GenesisOutcome::Adopted(e),
        None => GenesisOutcome::AlreadyAdopted,
    })
}

/// A policy key the policy parser let through but OpenSSH cannot read.
fn invalid_key(e: &KeyLineError) -> Refusal {
    Refusal {
        rule: "policy-invalid",
        message: format!("the policy's keys cannot be used: {e}"),
        remedy:
            "paste the key line from the `.pub` file exactly (`ssh-keygen -y -f KEY` prints it)"
                .into(),
    }
}

/// Migrates a store from before policy entries: its policy file becomes the genesis,
/// recorded at the end of the existing log. Same as [`adopt_genesis`]; the name says why.
pub fn migrate(
    store: &dyn Store,
    file_text: &str,
    who: &Identity,
    now: DateTime<Utc>,
) -> Result<GenesisOutcome, DecideError> {
    adopt_genesis(store, file_text, who, now)
}

/// A stored proposal.
#[derive(Debug, Clone)]
pub struct Proposed {
    /// The `POL-N` id.
    pub id: String,
    /// What the store did (created, revised, unchanged).
    pub outcome: SubmitOutcome,
    /// What it changes against the policy in force.
    pub changes: Vec<crate::domain::policy_diff::PolicyChange>,
}

/// Why a proposal was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// A rule refused it.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store acknowledged the submission without saying what it stored.
    #[error(
        "the store acknowledged the proposal without an outcome; run `tollgate show` to see whether it was stored"
    )]
    NoOutcome,
}

/// Whether `cr` may be stored as a proposal: a new `POL-N`, or a new revision of an open
/// proposal by the same proposer (never of one already adopted, never of another kind of
/// CR). The local writer and the server both ask. Returns the revision the check was made
/// against (0: a new id), for `Submission::expecting`, so the store refuses the proposal
/// if another writer got there between this check and the write.
pub fn check_proposal_target(
    store: &dyn Store,
    book: &PolicyBook,
    cr: &crate::domain::change_request::ChangeRequest,
) -> Result<u32, ProposeError> {
    let refuse = |rule: &'static str, message: String, remedy: &str| {
        Err(ProposeError::Refused(Refusal {
            rule,
            message,
            remedy: remedy.into(),
        }))
    };
    if let Some(p) = &cr.policy
        && let Ok((policy, _)) = crate::domain::policy::parse_policy(&p.text)
    {
        check_policy_keys(&policy).map_err(|e| ProposeError::Refused(invalid_key(&e)))?;
    }
    if crate::domain::policy_change::proposal_number(&cr.id).is_none() {
        return refuse(
            "policy-change-id",
            format!("policy changes are numbered {ID_PREFIX}N, not {}", cr.id),
            "let `tollgate policy propose` number it",
        );
    }
    let Some(existing) = store.get(&cr.id)? else {
        return Ok(0);
    };
    let old = &existing.current.cr;
    if old.gate != Gate::Policy {
        return refuse(
            "not-a-policy-change",
            format!(
                "{} is a {} change request, not a policy change",
                cr.id, old.gate
            ),
            "propose without --revise to get a new POL number",
        );
    }
    if old.requester != cr.requester {
        return refuse(
            "not-your-proposal",
            format!("{} was proposed by {}", cr.id, old.requester),
            "propose your version as a new change (without --revise)",
        );
    }
    let decisions = store.decisions(&cr.id)?;
    let eval = evaluate_in(old, &existing.current.digest, &decisions, book);
    if eval.status == Status::Approved {
        return refuse(
            "already-adopted",
            format!(
                "{} was approved and adopted; it can no longer change",
                cr.id
            ),
            "propose a new change",
        );
    }
    Ok(existing.current.revision)
}

/// Proposes `text` as the next policy: validates it (valid, governable, a change),
/// builds the `policy`-gate CR bound to the policy in force and stores it as a new
/// `POL-N`, or as a new revision of `revise`.
pub fn propose_policy(
    store: &dyn Store,
    book: &PolicyBook,
    proposer: &str,
    text: &str,
    rationale: &str,
    revise: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Proposed, ProposeError> {
    /// Two proposers may pick the same free number at once; the store refuses the later
    /// one (`Moved`), which then takes the next free number. Bounded, not a spin.
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        let id = match revise {
            Some(id) => id.to_string(),
            None => next_id(store)?,
        };
        match propose_as(store, book, &id, proposer, text, rationale, now) {
            Err(ProposeError::Store(StoreError::Moved { .. }))
                if revise.is_none() && attempt < ATTEMPTS =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// One attempt of `propose_policy` under a chosen id.
fn propose_as(
    store: &dyn Store,
    book: &PolicyBook,
    id: &str,
    proposer: &str,
    text: &str,
    rationale: &str,
    now: DateTime<Utc>,
) -> Result<Proposed, ProposeError> {
    let (proposed, _) = crate::domain::policy::parse_policy(text)
        .map_err(|report| ProposeError::Refused(invalid_policy(&report)))?;
    let changes = crate::domain::policy_diff::diff(book.policy(), &proposed);
    let lines: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    let document = proposal_document(
        &ProposalInput {
            id,
            proposer,
            text,
            rationale,
            changes: &lines,
            at: now,
        },
        book,
    );
    let cr = from_value(&document).map_err(|e| {
        ProposeError::Refused(Refusal {
            rule: "policy-invalid",
            message: format!("the proposal does not make a valid change request: {e}"),
            remedy: "report this as a tollgate bug".into(),
        })
    })?;
    check_proposal(&cr, proposer, book).map_err(ProposeError::Refused)?;
    let expected = check_proposal_target(store, book, &cr)?;
    let outcome = store
        .submit(&[Submission::new(cr, document).expecting(expected)], now)?
        .into_iter()
        .next()
        .ok_or(ProposeError::NoOutcome)?;
    Ok(Proposed {
        id: id.to_string(),
        outcome,
        changes,
    })
}

/// The first free `POL-N` (numbering starts at 2: the genesis is version 1).
fn next_id(store: &dyn Store) -> Result<String, StoreError> {
    let mut n = 2u32;
    loop {
        let id = format!("{ID_PREFIX}{n}");
        if store.get(&id)?.is_none() {
            return Ok(id);
        }
        n += 1;
    }
}
