//! Who submitted a revision, and which automated evidence counts.
//!
//! A change request's `checks` are what its submitter *says* CI reported. They count as
//! evidence only when the submitter is CI: a principal holding the policy's `ci` role, or
//! a source the policy trusts (e.g. `mlflow`). Anyone else's checks are shown as
//! self-reported and leave their item awaiting CI — never satisfied, and never blocked on
//! the requester's word. A principal holding `ci` can also attest a check on an exact
//! revision with a signed `evidence` entry. Revisions stored before submitters were
//! recorded keep their checks counted, marked as such.

use crate::domain::change_request::{Check, CheckStatus};
use crate::domain::policy::Policy;
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

    /// Whether the checks in a revision from this submitter count as CI evidence under
    /// `policy`.
    pub fn is_ci(&self, policy: &Policy) -> bool {
        match self {
            Submitter::BeforeProvenance => true,
            Submitter::Principal(p) => policy.principal(p).is_some_and(|p| p.has_role(CI_ROLE)),
            Submitter::Source(s) => {
                let name = s.split(SOURCE_SEPARATOR).next().unwrap_or("");
                policy.evidence_sources.iter().any(|t| t == name)
            }
            Submitter::Unknown => false,
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

impl Provenance {
    /// The result that counts for check `id`: the latest attestation by a `ci` principal
    /// of `policy`, else the revision's own check when its submitter is CI, else the
    /// revision's check shown as self-reported and counted as pending.
    pub fn counted(&self, id: &str, submitted: Option<&Check>, policy: &Policy) -> Option<Counted> {
        let attested = self.attested.iter().rev().find(|a| {
            a.check == id
                && policy
                    .principal(&a.principal)
                    .is_some_and(|p| p.has_role(CI_ROLE))
        });
        if let Some(a) = attested {
            return Some(Counted {
                status: a.status,
                detail: Some(match &a.detail {
                    Some(d) => format!("{d} (attested by {})", a.principal),
                    None => format!("attested by {}", a.principal),
                }),
                url: a.url.clone(),
                source: Source::Attested,
            });
        }
        let c = submitted?;
        if self.submitter.is_ci(policy) {
            return Some(Counted {
                status: c.status,
                detail: c.detail.clone(),
                url: c.url.clone(),
                source: Source::Submitted,
            });
        }
        let claimed = match c.status {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "fail",
            CheckStatus::Pending => "pending",
        };
        Some(Counted {
            status: CheckStatus::Pending,
            detail: Some(format!(
                "self-reported {claimed} by {}; awaiting CI",
                self.submitter.label()
            )),
            url: c.url.clone(),
            source: Source::SelfReported,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;

    fn check(status: CheckStatus) -> Check {
        Check {
            id: "backward_compatibility".into(),
            status,
            detail: Some("schema diff".into()),
            url: None,
            value: None,
        }
    }

    #[test]
    fn only_ci_reports_count_and_a_self_reported_pass_waits() {
        let policy = demo::policy();
        let of = |s: Submitter| Provenance {
            submitter: s,
            attested: vec![],
        };
        let pass = check(CheckStatus::Pass);
        let ci = of(Submitter::Principal("ci".into()));
        assert_eq!(
            ci.counted("backward_compatibility", Some(&pass), &policy)
                .unwrap()
                .status,
            CheckStatus::Pass
        );
        let jonas = of(Submitter::Principal("jonas".into()));
        let c = jonas
            .counted("backward_compatibility", Some(&pass), &policy)
            .unwrap();
        assert_eq!(c.status, CheckStatus::Pending);
        assert_eq!(c.source, Source::SelfReported);
        assert!(c.detail.unwrap().contains("self-reported pass by jonas"));
        // A self-reported failure does not block either: it waits for CI.
        let fail = check(CheckStatus::Fail);
        assert_eq!(
            jonas
                .counted("backward_compatibility", Some(&fail), &policy)
                .unwrap()
                .status,
            CheckStatus::Pending
        );
        let old = of(Submitter::BeforeProvenance);
        assert_eq!(
            old.counted("backward_compatibility", Some(&fail), &policy)
                .unwrap()
                .status,
            CheckStatus::Fail
        );
        // CI's attestation wins over what the revision says.
        let attested = Provenance {
            submitter: Submitter::Principal("jonas".into()),
            attested: vec![Attested {
                check: "backward_compatibility".into(),
                status: CheckStatus::Fail,
                detail: None,
                url: None,
                principal: "ci".into(),
                at: chrono::Utc::now(),
            }],
        };
        let c = attested
            .counted("backward_compatibility", Some(&pass), &policy)
            .unwrap();
        assert_eq!((c.status, c.source), (CheckStatus::Fail, Source::Attested));
    }
}
