//! A reviewer's decision on one revision of a CR, as the rules see it.
//!
//! The signed, chained form lives in `audit`; this is the content the rules reason about:
//! who decided what, in which role, about exactly which content.

use crate::domain::checklist::Tick;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a reviewer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Sign off the promotion in the given role.
    Approve,
    /// Refuse the change; always allowed, whatever the checklist says.
    Reject,
    /// Send it back to the requester with what to change.
    RequestChanges,
}

impl Verdict {
    /// All verdicts with their spelling.
    pub const ALL: [(&'static str, Verdict); 3] = [
        ("approve", Verdict::Approve),
        ("reject", Verdict::Reject),
        ("request-changes", Verdict::RequestChanges),
    ];

    /// The spelling used in records and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
            Verdict::RequestChanges => "request-changes",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One decision as recorded in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The CR decided on.
    pub cr_id: String,
    /// Digest of the exact CR revision that was reviewed.
    pub cr_digest: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The role the reviewer signed for.
    pub role: String,
    /// Why (required, non-empty).
    pub rationale: String,
    /// Manual checklist items the reviewer ticked.
    pub ticks: Vec<Tick>,
    /// Who decided.
    pub principal: String,
    /// When (UTC).
    pub at: DateTime<Utc>,
    /// Digest of the policy in force when it was signed: the policy that judges whether
    /// the signer held the role (empty for decisions read from older servers).
    #[serde(default)]
    pub policy_digest: String,
}
