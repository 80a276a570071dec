//! Demo data built into the binary: the playbook's sample change requests and policy
//! (copies of `../shared/fixtures`, kept identical by a test), so `tollgate demo` opens on
//! a realistic queue on any machine.

use crate::domain::change_request::{ChangeRequest, parse_document};
use crate::domain::policy::{Policy, parse_policy};

/// The sample change requests as `(file name, JSON text)`.
pub const FIXTURES: [(&str, &str); 5] = [
    ("CR-1042.json", include_str!("fixtures/CR-1042.json")),
    ("CR-1043.json", include_str!("fixtures/CR-1043.json")),
    ("CR-1044.json", include_str!("fixtures/CR-1044.json")),
    ("CR-1045.json", include_str!("fixtures/CR-1045.json")),
    ("CR-1046.json", include_str!("fixtures/CR-1046.json")),
];

/// The playbook's policy, as shipped in the shared fixtures (principals without keys).
pub const POLICY_TOML: &str = include_str!("fixtures/policy.toml");

/// The demo policy, parsed. The text is compiled in and covered by tests, so a failure
/// here is a build defect, not user input.
pub fn policy() -> Policy {
    match parse_policy(POLICY_TOML) {
        Ok((p, _)) => p,
        Err(report) => panic!("built-in demo policy is invalid:\n{report}"),
    }
}

/// The demo change requests, parsed (see [`policy`] on why a failure panics), as stored
/// by the demo: submitted by CI.
pub fn change_requests() -> Vec<ChangeRequest> {
    FIXTURES
        .iter()
        .map(|(name, text)| match parse_document(text.as_bytes()) {
            Ok((mut cr, _)) => {
                cr.provenance.submitter =
                    crate::domain::provenance::Submitter::Principal(SUBMITTER.into());
                cr
            }
            Err(e) => panic!("built-in fixture {name} is invalid:\n{e}"),
        })
        .collect()
}

/// The demo principals, in policy order.
pub const PRINCIPALS: [&str; 11] = [
    "priya", "jonas", "amara", "kai", "devi", "marco", "lena", "sofia", "noor", "ci", "guard",
];

/// The demo lead who signs the demo store's genesis policy.
pub const GENESIS_SIGNER: &str = "lena";

/// A reproducible key for a demo principal (seeded by its position), for screenshots,
/// benchmarks and tests. Never a real identity: the seed is public.
pub fn seeded_signer(who: &str) -> Option<crate::audit::keys::Signer> {
    let i = PRINCIPALS.iter().position(|p| *p == who)? as u8;
    crate::audit::keys::Signer::from_seed([i + 1; 32], &format!("{who}@tollgate-demo")).ok()
}

/// The demo policy text with each principal's public key filled in.
pub fn policy_with_keys(key_line: impl Fn(&str) -> String) -> String {
    let mut text = POLICY_TOML.to_string();
    for p in PRINCIPALS {
        text = text.replacen(
            &format!("id = \"{p}\"\n"),
            &format!("id = \"{p}\"\nkeys = [\"{}\"]\n", key_line(p)),
            1,
        );
    }
    text
}

/// The demo policy with the seeded keys of [`seeded_signer`].
pub fn seeded_policy_text() -> String {
    policy_with_keys(|p| {
        seeded_signer(p)
            .map(|s| s.public_key_line())
            .unwrap_or_default()
    })
}

/// The seeded demo identity of `who` (see [`seeded_signer`]) as a signer of the seeded
/// demo policy: for tests, benchmarks and screenshots that sign without key files.
pub fn seeded_identity(who: &str) -> Option<crate::identity::Identity> {
    let policy = match parse_policy(&seeded_policy_text()) {
        Ok((p, _)) => p,
        Err(report) => panic!("built-in demo policy is invalid:\n{report}"),
    };
    Some(crate::identity::Identity {
        signer: seeded_signer(who)?,
        principal: policy.principal(who)?.clone(),
        key_path: format!("seeded:{who}").into(),
    })
}

/// Adopts `text` (the seeded demo policy, perhaps with tables added) as the genesis of
/// `store`, signed by the demo lead's seeded key, and returns the policy history: for
/// tests, benchmarks and screenshots.
pub fn seeded_genesis(
    store: &dyn crate::store::Store,
    text: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<crate::domain::policy_book::PolicyBook, SeededGenesisError> {
    let lead = seeded_identity(GENESIS_SIGNER).ok_or(SeededGenesisError::NotRecorded)?;
    crate::workflow::adopt_genesis(store, text, &lead, at)?;
    let entries = store.policy_entries(0)?;
    crate::audit::policy_log::extend_book(None, &entries)?.ok_or(SeededGenesisError::NotRecorded)
}

/// Why [`seeded_genesis`] failed (a test or benchmark set-up error).
#[derive(Debug, thiserror::Error)]
pub enum SeededGenesisError {
    /// The adoption was refused or could not be appended.
    #[error(transparent)]
    Adopt(#[from] crate::store::DecideError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The recorded genesis does not read.
    #[error(transparent)]
    Book(#[from] crate::audit::policy_log::BookError),
    /// No genesis ended up in the log.
    #[error("the demo genesis was not recorded")]
    NotRecorded,
}

/// The principal the demo's sample change requests are submitted as: CI, so their
/// checks count as evidence (the fixtures README's blocked / awaiting-CI table holds).
pub const SUBMITTER: &str = "ci";

/// The fixtures as submissions, ready for `Store::submit`: submitted by CI, each entry
/// signed with its seeded key (matching [`seeded_policy_text`]).
pub fn submissions() -> Vec<crate::store::Submission> {
    let by = match seeded_signer(SUBMITTER) {
        Some(key) => crate::store::SubmittedBy::principal(SUBMITTER, key),
        None => crate::store::SubmittedBy::default(),
    };
    FIXTURES
        .iter()
        .map(|(name, text)| match parse_document(text.as_bytes()) {
            Ok((cr, document)) => crate::store::Submission::new(cr, document).by(by.clone()),
            Err(e) => panic!("built-in fixture {name} is invalid:\n{e}"),
        })
        .collect()
}
