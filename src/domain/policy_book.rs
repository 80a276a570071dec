//! Every version of the policy the log has adopted, and which one was in force when.
//!
//! The policy in force is not a file: it is the latest `policy-adopted` entry of the log.
//! Every entry is judged by the version in force when it was appended, so rotating the
//! on-call roster or a key never breaks history, and a decision keeps counting under the
//! policy it was signed under. The book is pure data; `audit::policy_log` reads it from the
//! log, and `verify` rebuilds it entry by entry without trusting anything stored beside it.

use crate::domain::policy::Policy;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;

/// One adopted version of the policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyVersion {
    /// 1 for the genesis, +1 per adoption.
    pub version: u32,
    /// Log position of its `policy-adopted` entry (0 for the file of an unmigrated store).
    pub seq: u64,
    /// Hash of that entry (empty for the file of an unmigrated store).
    pub hash: String,
    /// `sha256:` digest of the policy text, as every decision records it.
    pub digest: String,
    /// The policy file as adopted, verbatim.
    #[serde(skip)]
    pub text: String,
    /// The parsed policy.
    #[serde(skip)]
    pub policy: Arc<Policy>,
    /// When it was adopted.
    pub adopted_at: Option<DateTime<Utc>>,
    /// Who signed the adoption (the approver whose sign-off completed the change, or the
    /// principal who ran `init` / the migration).
    pub adopted_by: Option<String>,
    /// The `policy`-gate CR it came from (`None` for the genesis).
    pub cr_id: Option<String>,
    /// True for a genesis recorded when a store from before policy entries was migrated:
    /// the entries before it are judged by it.
    pub migration: bool,
}

/// The adopted versions in log order; never empty.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyBook {
    versions: Vec<Arc<PolicyVersion>>,
    provisional: bool,
}

impl PolicyBook {
    /// The versions a log holds, oldest first; `None` when it holds none.
    pub fn from_versions(versions: Vec<PolicyVersion>) -> Option<PolicyBook> {
        (!versions.is_empty()).then(|| PolicyBook {
            versions: versions.into_iter().map(Arc::new).collect(),
            provisional: false,
        })
    }

    /// A store from before policy entries: the file beside it stands in, read-only, until
    /// the store is migrated.
    pub fn provisional(text: String, digest: String, policy: Policy) -> PolicyBook {
        PolicyBook {
            versions: vec![Arc::new(PolicyVersion {
                version: 0,
                seq: 0,
                hash: String::new(),
                digest,
                text,
                policy: Arc::new(policy),
                adopted_at: None,
                adopted_by: None,
                cr_id: None,
                migration: false,
            })],
            provisional: true,
        }
    }

    /// True when no policy was adopted in the log yet (an unmigrated store).
    pub fn is_provisional(&self) -> bool {
        self.provisional
    }

    /// The policy in force now.
    pub fn current(&self) -> &PolicyVersion {
        // Never empty: both constructors hold at least one version.
        &self.versions[self.versions.len() - 1]
    }

    /// The parsed policy in force now.
    pub fn policy(&self) -> &Policy {
        &self.current().policy
    }

    /// The first version: where trust starts.
    pub fn genesis(&self) -> &PolicyVersion {
        &self.versions[0]
    }

    /// Every version, oldest first.
    pub fn versions(&self) -> &[Arc<PolicyVersion>] {
        &self.versions
    }

    /// The version that judges an entry appended at log position `seq`: the latest one
    /// adopted before it (entries before a migration genesis are judged by the genesis).
    pub fn in_force_at(&self, seq: u64) -> &PolicyVersion {
        &self.versions[self.index_in_force_at(seq)]
    }

    /// The index in [`PolicyBook::versions`] of the version in force at `seq`, for data
    /// kept beside each version (e.g. its parsed keys).
    pub fn index_in_force_at(&self, seq: u64) -> usize {
        self.versions
            .partition_point(|v| v.seq < seq)
            .saturating_sub(1)
    }

    /// The version with this text digest.
    pub fn by_digest(&self, digest: &str) -> Option<&PolicyVersion> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.digest == digest)
            .map(|v| &**v)
    }

    /// The policy that judges a decision signed under `digest`: that version, or for a
    /// decision from before the genesis (whose digest names a file never adopted), the
    /// genesis, as the migration promised.
    pub fn judge_of(&self, digest: &str) -> &Policy {
        self.by_digest(digest)
            .map_or(&self.genesis().policy, |v| &v.policy)
    }

    /// Adds a newly adopted version.
    pub fn push(&mut self, version: PolicyVersion) {
        if self.provisional {
            self.versions.clear();
            self.provisional = false;
        }
        self.versions.push(Arc::new(version));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(n: u32, seq: u64) -> PolicyVersion {
        PolicyVersion {
            version: n,
            seq,
            hash: format!("h{n}"),
            digest: format!("d{n}"),
            text: String::new(),
            policy: Arc::new(crate::demo::policy()),
            adopted_at: None,
            adopted_by: None,
            cr_id: None,
            migration: false,
        }
    }

    #[test]
    fn each_position_is_judged_by_the_version_adopted_before_it() {
        let book = PolicyBook::from_versions(vec![version(1, 5), version(2, 40)]).unwrap();
        assert_eq!(book.in_force_at(1).version, 1, "before a migration genesis");
        assert_eq!(book.in_force_at(5).version, 1, "the genesis judges itself");
        assert_eq!(
            book.in_force_at(40).version,
            1,
            "an adoption is judged by the one before"
        );
        assert_eq!(book.in_force_at(41).version, 2);
        assert_eq!(book.current().version, 2);
        assert_eq!(book.by_digest("d1").map(|v| v.seq), Some(5));
        assert!(book.by_digest("d9").is_none());
        assert!(PolicyBook::from_versions(vec![]).is_none());
    }

    #[test]
    fn a_provisional_book_gives_way_to_the_first_adoption() {
        let mut book = PolicyBook::provisional("x".into(), "dx".into(), crate::demo::policy());
        assert!(book.is_provisional());
        book.push(version(1, 9));
        assert!(!book.is_provisional());
        assert_eq!(book.versions().len(), 1);
        assert_eq!(book.current().digest, "d1");
    }
}
