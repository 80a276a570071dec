//! Signed `evidence` entries: a principal holding the policy's `ci` role attests one
//! check's result on one exact revision of a CR (bound to its digest).

use super::canonical::to_canonical_string;
use crate::domain::change_request::CheckStatus;
use crate::domain::provenance::Attested;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The signed body of an `evidence` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRecord {
    /// Always `evidence`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Body format version.
    pub format: u32,
    /// Position in the log.
    pub seq: u64,
    /// Hash of the previous entry.
    pub prev: Option<String>,
    /// The CR.
    pub cr_id: String,
    /// The revision attested.
    pub cr_revision: u32,
    /// Its digest.
    pub cr_digest: String,
    /// The check id, as in the CR's `checks`.
    pub check: String,
    /// `pass`, `fail` or `pending`.
    pub status: String,
    /// What was measured.
    pub detail: Option<String>,
    /// Link to the run.
    pub url: Option<String>,
    /// Who attests (holds `ci`).
    pub principal: String,
    /// Key used.
    pub key_fingerprint: String,
    /// When.
    pub at: String,
}

/// An evidence body that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid evidence record: {0}")]
pub struct MalformedEvidence(pub String);

impl EvidenceRecord {
    /// The canonical body bytes to hash and sign.
    pub fn body(&self) -> String {
        to_canonical_string(&serde_json::to_value(self).unwrap_or(serde_json::Value::Null))
    }

    /// Parses a body, refusing duplicate member names and unknown fields.
    pub fn parse(body: &str) -> Result<EvidenceRecord, MalformedEvidence> {
        crate::domain::reader::check_no_duplicate_names(body)
            .map_err(|e| MalformedEvidence(e.to_string()))?;
        let r: EvidenceRecord =
            serde_json::from_str(body).map_err(|e| MalformedEvidence(e.to_string()))?;
        if r.kind != "evidence" {
            return Err(MalformedEvidence(format!("type is {:?}", r.kind)));
        }
        crate::domain::reader::check_identifier(&r.check)
            .map_err(|e| MalformedEvidence(format!("check: {e}")))?;
        Ok(r)
    }

    /// The status as the rules know it.
    pub fn status(&self) -> Result<CheckStatus, MalformedEvidence> {
        match self.status.as_str() {
            "pass" => Ok(CheckStatus::Pass),
            "fail" => Ok(CheckStatus::Fail),
            "pending" => Ok(CheckStatus::Pending),
            other => Err(MalformedEvidence(format!(
                "status {other:?}; expected pass, fail or pending"
            ))),
        }
    }

    /// The signing time.
    pub fn time(&self) -> Result<DateTime<Utc>, MalformedEvidence> {
        DateTime::parse_from_rfc3339(&self.at)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| MalformedEvidence(format!("at: {e}")))
    }

    /// What the rules count.
    pub fn attested(&self) -> Result<Attested, MalformedEvidence> {
        Ok(Attested {
            check: self.check.clone(),
            status: self.status()?,
            detail: self.detail.clone(),
            url: self.url.clone(),
            principal: self.principal.clone(),
            at: self.time()?,
        })
    }
}
