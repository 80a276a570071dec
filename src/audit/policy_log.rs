//! `policy-adopted` entries: the policy in force, recorded in the log it governs.
//!
//! Each adoption carries the whole policy text (verbatim, comments kept), its digest, the
//! digest of the policy it replaces and, for a change, the `policy`-gate CR revision whose
//! sign-offs it completes. Like TUF's root metadata, trust starts at the first one (the
//! genesis), signed by a principal of the policy it adopts; every later one is signed by a
//! principal of the policy it replaces, whose own rules decided the change.

use super::canonical::{sha256_digest, to_canonical_string};
use super::log::{EntryKind, LogEntry};
use crate::domain::policy::parse_policy;
use crate::domain::policy_book::{PolicyBook, PolicyVersion};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The signed body of a `policy-adopted` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptionRecord {
    /// Always `policy-adopted`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Body format version.
    pub format: u32,
    /// Position in the log.
    pub seq: u64,
    /// Hash of the previous entry.
    pub prev: Option<String>,
    /// 1 for the genesis, +1 per adoption.
    pub version: u32,
    /// The policy file, verbatim.
    pub policy_text: String,
    /// `sha256:` of `policy_text`: what decisions record as `policy_digest`.
    pub policy_digest: String,
    /// The policy's keys as an OpenSSH `allowed_signers` file (derived from
    /// `policy_text`; `verify` checks they agree), so an auditor can check every entry
    /// signed under this version with `ssh-keygen -Y verify` and the log alone.
    pub allowed_signers: String,
    /// Digest of the policy it replaces (`None` for the genesis).
    pub previous_digest: Option<String>,
    /// The `policy`-gate CR adopted (`None` for the genesis).
    pub cr_id: Option<String>,
    /// Its revision.
    pub cr_revision: Option<u32>,
    /// Digest of that revision's document.
    pub cr_digest: Option<String>,
    /// True for a genesis recorded at the end of a log from before policy entries.
    pub migration: bool,
    /// Who signed.
    pub principal: String,
    /// Key used.
    pub key_fingerprint: String,
    /// When (UTC).
    pub at: String,
}

impl AdoptionRecord {
    /// The canonical body bytes to hash and sign.
    pub fn body(&self) -> String {
        // A struct of strings, integers and options always serialises.
        to_canonical_string(&serde_json::to_value(self).unwrap_or(serde_json::Value::Null))
    }

    /// Parses an adoption body (unknown fields are refused: an adoption says exactly this).
    pub fn parse(body: &str) -> Result<AdoptionRecord, RecordError> {
        serde_json::from_str(body).map_err(RecordError)
    }
}

/// A body that is not a `policy-adopted` record.
#[derive(Debug, thiserror::Error)]
#[error("not a policy adoption: {0}")]
pub struct RecordError(#[source] serde_json::Error);

/// Why the stored adoptions do not make a usable policy history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log entry {seq} (policy-adopted): {detail}; run `tollgate verify`")]
pub struct BookError {
    /// The entry.
    pub seq: u64,
    /// What is wrong.
    pub detail: String,
}

/// Reads one adoption entry into a policy version: the body parses, its text is a valid
/// policy, hashes to the digest it names, and its `allowed_signers` are that policy's keys. (The rules that decide whether the adoption
/// was *allowed* are `verify`'s and the writer's; this is what every reader relies on.)
pub fn version_from_entry(e: &LogEntry) -> Result<PolicyVersion, BookError> {
    let fail = |detail: String| BookError { seq: e.seq, detail };
    let r = AdoptionRecord::parse(&e.body).map_err(|x| fail(x.to_string()))?;
    let digest = sha256_digest(r.policy_text.as_bytes());
    if digest != r.policy_digest {
        return Err(fail(format!(
            "its text hashes to {digest}, not the {} it names",
            r.policy_digest
        )));
    }
    let (policy, _) = parse_policy(&r.policy_text).map_err(|report| {
        fail(format!(
            "its policy does not read: {}",
            report.to_string().trim()
        ))
    })?;
    // Auditors check signatures with these lines and stock tools alone, so they must be
    // exactly the keys of the text adopted, not keys the signer slipped in beside it.
    if r.allowed_signers != super::keys::allowed_signers(&policy) {
        return Err(fail(
            "its allowed_signers are not the keys of the policy it adopts".into(),
        ));
    }
    let at = DateTime::parse_from_rfc3339(&r.at)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|x| fail(format!("bad time {:?}: {x}", r.at)))?;
    Ok(PolicyVersion {
        version: r.version,
        seq: e.seq,
        hash: e.hash.clone(),
        digest,
        text: r.policy_text,
        policy: Arc::new(policy),
        adopted_at: Some(at),
        adopted_by: Some(r.principal),
        cr_id: r.cr_id,
        migration: r.migration,
    })
}

/// Extends `book` (or starts one) with adoption entries read after it, in log order.
/// Versions must follow each other (1, 2, 3...).
pub fn extend_book(
    book: Option<PolicyBook>,
    entries: &[LogEntry],
) -> Result<Option<PolicyBook>, BookError> {
    let mut book = book.filter(|b| !b.is_provisional());
    for e in entries {
        if e.kind != EntryKind::PolicyAdopted.as_str() {
            continue;
        }
        let v = version_from_entry(e)?;
        let expected = book.as_ref().map_or(1, |b| b.current().version + 1);
        if v.version != expected {
            return Err(BookError {
                seq: e.seq,
                detail: format!("adopts version {}, expected {expected}", v.version),
            });
        }
        match &mut book {
            Some(b) => b.push(v),
            None => book = PolicyBook::from_versions(vec![v]),
        }
    }
    Ok(book)
}

/// The keyring of every version in a book, to check each signed entry against the keys
/// of the policy in force at its position (a rotated key still verifies what it signed).
pub struct Keyrings<'a> {
    book: &'a PolicyBook,
    rings: Vec<super::keys::Keyring>,
}

impl<'a> Keyrings<'a> {
    /// Parses the keys of every version (a key that fails to parse leaves that version
    /// with fewer keys, and its signatures unverified, which is what a reader should see).
    pub fn new(book: &'a PolicyBook) -> Keyrings<'a> {
        Keyrings {
            rings: book
                .versions()
                .iter()
                .map(|v| super::keys::Keyring::from_policy(&v.policy).unwrap_or_default())
                .collect(),
            book,
        }
    }

    /// The keyring in force at log position `seq`.
    pub fn at(&self, seq: u64) -> &super::keys::Keyring {
        &self.rings[self.book.index_in_force_at(seq)]
    }

    /// Checks a signed entry's signature with the keys in force at its position.
    pub fn verify(&self, e: &LogEntry) -> super::log::SignatureCheck {
        super::log::check_signature(self.at(e.seq), e)
    }
}
