//! What CI reports for one automated check: its outcome and evidence. Kept apart from
//! the change request so provenance (who reported it) can name it without depending on
//! the whole document.

use serde::Serialize;
use serde_json::Value;

/// Result of one automated check as reported by CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// The check ran and passed.
    Pass,
    /// The check ran and failed.
    Fail,
    /// The check has not finished (or not started).
    Pending,
}

impl CheckStatus {
    /// Every status with its document spelling.
    pub const ALL: [(&'static str, CheckStatus); 3] = [
        ("pass", CheckStatus::Pass),
        ("fail", CheckStatus::Fail),
        ("pending", CheckStatus::Pending),
    ];
}

/// Evidence from one automated check run by CI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Evidence id, matched against the policy checklist's `evidence` keys.
    pub id: String,
    /// Outcome.
    pub status: CheckStatus,
    /// What was measured, in words.
    pub detail: Option<String>,
    /// Link to the CI run or report.
    pub url: Option<String>,
    /// The measured value, when the check has one.
    pub value: Option<Value>,
}
