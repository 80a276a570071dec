//! Who submitted a revision, and which automated evidence counts.
//!
//! A change request's `checks` are what its submitter *says* CI reported. They count as
//! evidence only when the submitter is CI: a principal holding the policy's `ci` role, or
//! a source the policy trusts (e.g. `mlflow`). Anyone else's checks are shown as
//! self-reported and leave their item awaiting CI — never satisfied, and never blocked on
//! the requester's word. A principal holding `ci` can also attest a check on an exact
//! revision with a signed `evidence` entry. Revisions stored before submitters were
//! recorded keep their checks counted, marked as such.

use crate::domain::check::CheckStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The role whose holders' reports count as automated evidence.
pub const CI_ROLE: &str = "ci";

/// The role of the team server's own principal: it signs the submissions it relays for
/// token holders (naming them as submitter).
pub const SERVER_ROLE: &str = "server";

/// Prefix of a submitter that is a source (`mlflow:https://…`), not a principal.
pub const SOURCE_SEPARATOR: char = ':';

/// Who submitted a revision, as its log entry records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", content = "id", rename_all = "kebab-case")]
pub enum Submitter {
    /// Stored before tollgate recorded submitters: its checks keep counting.
    BeforeProvenance,
    /// A principal (the token's remotely, the signing key's locally).
    Principal(String),
    /// A source such as `mlflow:https://mlflow.example.com`, relayed by a sync.
    Source(String),
    /// Nobody tollgate could identify (a local user without a key).
    #[default]
    Unknown,
}

impl Submitter {
    /// Reads the `submitter` a submission entry records (`None`: the entry predates it).
    pub fn from_recorded(recorded: Option<&str>) -> Submitter {
        match recorded {
            None => Submitter::BeforeProvenance,
            Some("unknown") | Some("") => Submitter::Unknown,
            Some(s) if s.contains(SOURCE_SEPARATOR) => Submitter::Source(s.to_string()),
            Some(s) => Submitter::Principal(s.to_string()),
        }
    }

    /// How it is recorded in a submission entry.
    pub fn recorded(&self) -> Option<String> {
        match self {
            Submitter::BeforeProvenance => None,
            Submitter::Principal(p) | Submitter::Source(p) => Some(p.clone()),
            Submitter::Unknown => Some("unknown".into()),
        }
    }

    /// The principal id, when a principal submitted it.
    pub fn principal(&self) -> Option<&str> {
        match self {
            Submitter::Principal(p) => Some(p),
            _ => None,
        }
    }

    /// A short label for screens: `ci`, `jonas (self-reported)`, …
    pub fn label(&self) -> String {
        match self {
            Submitter::BeforeProvenance => "before provenance".into(),
            Submitter::Principal(p) | Submitter::Source(p) => p.clone(),
            Submitter::Unknown => "unknown".into(),
        }
    }
}

/// One check attested by a signed `evidence` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attested {
    /// The check id, as in the CR's `checks`.
    pub check: String,
    /// Outcome.
    pub status: CheckStatus,
    /// What was measured.
    pub detail: Option<String>,
    /// Link to the run.
    pub url: Option<String>,
    /// Who attested it.
    pub principal: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Where a revision's automated evidence comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Provenance {
    /// Who submitted the revision.
    pub submitter: Submitter,
    /// Evidence entries signed for this revision, in log order.
    pub attested: Vec<Attested>,
}

/// How a check's result reached tollgate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// In the revision, submitted by CI (or before provenance).
    Submitted,
    /// A signed evidence entry by a `ci` principal.
    Attested,
    /// In the revision, from a submitter who is not CI: shown, not counted.
    SelfReported,
}

/// A check as the rules count it.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    /// The result that counts (`Pending` for a self-reported one).
    pub status: CheckStatus,
    /// Detail to show (a self-reported one says what was claimed, and by whom).
    pub detail: Option<String>,
    /// Link.
    pub url: Option<String>,
    /// Where it came from.
    pub source: Source,
}
