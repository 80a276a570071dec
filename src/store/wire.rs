//! The JSON shapes the team server and the remote store exchange (see `docs/openapi.json`).
//! The document is sent whole and re-validated on arrival: a client never trusts the
//! server's typed view, and the server never trusts the client's.

use super::{DecisionContext, Head, LogEntry, StoreError, StoredCr, StoredRevision, typed_view};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One revision on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireRevision {
    /// The stored document.
    pub document: Value,
    /// Revision number.
    pub revision: u32,
    /// Content digest.
    pub digest: String,
    /// When it was stored.
    pub submitted_at: DateTime<Utc>,
    /// Who submitted it and what CI attested, as the server's log records it.
    #[serde(default)]
    pub provenance: crate::domain::provenance::Provenance,
}

/// A CR at its current revision on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireCr {
    /// Current revision.
    pub current: WireRevision,
    /// Number of revisions.
    pub revision_count: u32,
    /// First submission.
    pub first_submitted_at: DateTime<Utc>,
}

/// What a decision is made against, on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireContext {
    /// Log head the new entry must follow.
    pub head: Head,
    /// Current revision.
    pub current: WireRevision,
    /// Decision entries on the CR so far.
    pub decisions: Vec<LogEntry>,
    /// The latest `policy-adopted` entry (seq 0 when none).
    #[serde(default = "Head::empty")]
    pub policy_head: Head,
}

/// A signed entry a client asks the server to append.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireSignedEntry {
    /// Entry kind (`decision`, `emergency-authorised`, ...).
    pub kind: String,
    /// Canonical body.
    pub body: String,
    /// Armored SSHSIG over the body.
    pub signature: String,
    /// Signer.
    pub principal: String,
    /// With a decision that completes a policy change: the `policy-adopted` entry signed
    /// with it, appended right after it in the same transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adoption: Option<Box<WireSignedEntry>>,
}

/// An error body: what went wrong and what to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    /// Short code: `unauthorized`, `forbidden`, `not-found`, `conflict`, `stale`,
    /// `too-large`, `invalid`, `internal`.
    pub error: String,
    /// Explanation for a person.
    pub message: String,
    /// The policy rule that refused, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What would satisfy it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// The current head, on a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Head>,
    /// Problems in a refused document.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl From<&StoredRevision> for WireRevision {
    fn from(r: &StoredRevision) -> Self {
        WireRevision {
            document: r.document.clone(),
            revision: r.revision,
            digest: r.digest.clone(),
            submitted_at: r.submitted_at,
            provenance: r.cr.provenance.clone(),
        }
    }
}

impl From<&StoredCr> for WireCr {
    fn from(c: &StoredCr) -> Self {
        WireCr {
            current: (&c.current).into(),
            revision_count: c.revision_count,
            first_submitted_at: c.first_submitted_at,
        }
    }
}

impl WireRevision {
    /// Back to a stored revision, re-validating the document.
    pub fn into_stored(self, source: &str) -> Result<StoredRevision, StoreError> {
        let mut cr = typed_view(&self.document).map_err(|e| StoreError::Corrupt {
            path: source.into(),
            id: self.document["id"].as_str().unwrap_or("?").to_string(),
            revision: self.revision,
            detail: e.to_string(),
        })?;
        cr.provenance = self.provenance;
        Ok(StoredRevision {
            cr,
            document: self.document,
            revision: self.revision,
            digest: self.digest,
            submitted_at: self.submitted_at,
        })
    }
}

impl WireCr {
    /// Back to a stored CR, re-validating the document.
    pub fn into_stored(self, source: &str) -> Result<StoredCr, StoreError> {
        Ok(StoredCr {
            current: self.current.into_stored(source)?,
            revision_count: self.revision_count,
            first_submitted_at: self.first_submitted_at,
        })
    }
}

impl WireContext {
    /// Builds the wire form of a decision context.
    pub fn from_context(ctx: &DecisionContext, entries: Vec<LogEntry>) -> Self {
        WireContext {
            head: ctx.head.clone(),
            current: (&ctx.current).into(),
            decisions: entries,
            policy_head: ctx.policy_head.clone(),
        }
    }
}

/// Maps a wire error back to what the client should do.
pub fn describe(status: u16, e: &WireError) -> String {
    let mut text = format!("server refused ({status} {}): {}", e.error, e.message);
    if let Some(rule) = &e.rule {
        text.push_str(&format!(" [{rule}]"));
    }
    if let Some(remedy) = &e.remedy {
        text.push_str(&format!("; {remedy}"));
    }
    for p in &e.problems {
        text.push_str(&format!("\n  {p}"));
    }
    text
}
