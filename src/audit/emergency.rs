//! Signed emergency records in the log, and the exceptions derived from them.
//!
//! Three entry kinds: `emergency-authorised` (an on-call approver's bypass, which opens an
//! exception or links to the open one for the same incident), `rollback-executed` (what
//! the rollback command did: exit status, duration, output digest) and
//! `post-incident-review` (a lead's review, which closes the incident's exceptions).
//! Like decisions, each is canonical JSON signed over its exact bytes and chained.

use super::canonical::to_canonical_string;
use super::log::{EntryKind, LogEntry};
use crate::domain::emergency::{
    Authorisation, Claim, Exception, LiveVersions, Outcome, Review, ReviewClaim, RollbackOutcome,
    SubjectChange, apply, check_link,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The exception an authorisation runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionTerms {
    /// Hash of the authorisation that opened the exception; `None` when this one opens it.
    pub id: Option<String>,
    /// When it opened.
    pub opened_at: String,
    /// When the bypass stops being usable.
    pub expires_at: String,
    /// When the post-incident review is due.
    pub review_due: String,
}

/// The signed body of an `emergency-authorised` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorisationRecord {
    /// Always `emergency-authorised`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Body format version.
    pub format: u32,
    /// Position in the log.
    pub seq: u64,
    /// Hash of the previous entry.
    pub prev: Option<String>,
    /// Incident ticket.
    pub incident: String,
    /// Subject rolled back.
    pub subject: String,
    /// Environment.
    pub environment: String,
    /// Version rolled back from.
    pub from_version: String,
    /// Version rolled back to.
    pub to_version: String,
    /// One-line reason.
    pub reason: String,
    /// The exception it runs under.
    pub exception: ExceptionTerms,
    /// Hash of the previous emergency entry on the same incident, if any.
    pub linked: Option<String>,
    /// Who authorised.
    pub principal: String,
    /// Key used.
    pub key_fingerprint: String,
    /// Digest of the policy in force.
    pub policy_digest: String,
    /// When.
    pub at: String,
}

/// The signed body of a `rollback-executed` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRecord {
    /// Always `rollback-executed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Body format version.
    pub format: u32,
    /// Position in the log.
    pub seq: u64,
    /// Hash of the previous entry.
    pub prev: Option<String>,
    /// Incident ticket.
    pub incident: String,
    /// Hash of the authorisation this executes.
    pub authorisation: String,
    /// The command run (argument vector, placeholders filled in).
    pub command: Vec<String>,
    /// Exit status; `None` when killed.
    pub exit_status: Option<i32>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// Run time in milliseconds.
    pub duration_ms: u64,
    /// `sha256:` of everything it printed (stdout and stderr, in arrival order).
    pub output_digest: String,
    /// The last lines it printed, for the record.
    pub output_tail: String,
    /// Who ran it (the authoriser).
    pub principal: String,
    /// Key used.
    pub key_fingerprint: String,
    /// When it finished.
    pub at: String,
}

/// The signed body of a `post-incident-review` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRecord {
    /// Always `post-incident-review`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Body format version.
    pub format: u32,
    /// Position in the log.
    pub seq: u64,
    /// Hash of the previous entry.
    pub prev: Option<String>,
    /// Incident ticket.
    pub incident: String,
    /// Exceptions it closes (their ids).
    pub exceptions: Vec<String>,
    /// Root cause.
    pub root_cause: String,
    /// Follow-up actions.
    pub follow_ups: String,
    /// Policy changes decided (or "none").
    pub policy_changes: String,
    /// The lead who signed.
    pub principal: String,
    /// Key used.
    pub key_fingerprint: String,
    /// When.
    pub at: String,
}

macro_rules! body_fn {
    ($t:ty) => {
        impl $t {
            /// The canonical body bytes to hash and sign.
            pub fn body(&self) -> String {
                to_canonical_string(&serde_json::to_value(self).unwrap_or(serde_json::Value::Null))
            }
        }
    };
}
body_fn!(AuthorisationRecord);
body_fn!(RollbackRecord);
body_fn!(ReviewRecord);

/// A signed entry (emergency or after-approval) whose body does not read as its kind's
/// record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} record: {detail}")]
pub struct MalformedRecord {
    /// The entry kind it claims to be.
    pub kind: &'static str,
    /// What is wrong.
    pub detail: String,
}

/// A time field of a signed record.
pub(super) fn time(
    kind: EntryKind,
    field: &str,
    s: &str,
) -> Result<DateTime<Utc>, MalformedRecord> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| MalformedRecord {
            kind: kind.as_str(),
            detail: format!("{field}: bad time {s:?}: {e}"),
        })
}

/// Reads `body` as the record of `kind`: no member named twice, the right `type`, and the
/// record's own shape (unknown members refused). Shared by every signed record parser.
pub(super) fn typed<T: serde::de::DeserializeOwned>(
    kind: EntryKind,
    body: &str,
) -> Result<T, MalformedRecord> {
    let malformed = |detail: String| MalformedRecord {
        kind: kind.as_str(),
        detail,
    };
    crate::domain::reader::check_no_duplicate_names(body).map_err(|e| malformed(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| malformed(e.to_string()))?;
    if value["type"].as_str() != Some(kind.as_str()) {
        return Err(malformed(format!(
            "its type is {}, not {}",
            value["type"],
            kind.as_str()
        )));
    }
    serde_json::from_value(value).map_err(|e| malformed(e.to_string()))
}

/// Reads an emergency entry's body as the claim the rules judge: the same typed parser for
/// the server (before anything is appended), `verify` and every reader.
pub fn claim_of(kind: EntryKind, body: &str) -> Result<Claim, MalformedRecord> {
    match kind {
        EntryKind::EmergencyAuthorised => {
            let r: AuthorisationRecord = typed(kind, body)?;
            Ok(Claim::Authorise(Authorisation {
                at: time(kind, "at", &r.at)?,
                opened_at: time(kind, "exception.opened_at", &r.exception.opened_at)?,
                expires_at: time(kind, "exception.expires_at", &r.exception.expires_at)?,
                review_due: time(kind, "exception.review_due", &r.exception.review_due)?,
                principal: r.principal,
                incident: r.incident,
                subject: r.subject,
                environment: r.environment,
                from_version: r.from_version,
                to_version: r.to_version,
                reason: r.reason,
                exception: r.exception.id,
            }))
        }
        EntryKind::RollbackExecuted => {
            let r: RollbackRecord = typed(kind, body)?;
            Ok(Claim::Rollback(Outcome {
                at: time(kind, "at", &r.at)?,
                principal: r.principal,
                incident: r.incident,
                authorisation: r.authorisation,
                outcome: RollbackOutcome {
                    exit_status: r.exit_status,
                    timed_out: r.timed_out,
                    duration_ms: r.duration_ms,
                },
            }))
        }
        EntryKind::PostIncidentReview => {
            let r: ReviewRecord = typed(kind, body)?;
            Ok(Claim::Review(ReviewClaim {
                incident: r.incident,
                exceptions: r.exceptions,
                review: Review {
                    at: time(kind, "at", &r.at)?,
                    principal: r.principal,
                    root_cause: r.root_cause,
                    follow_ups: r.follow_ups,
                    policy_changes: r.policy_changes,
                },
            }))
        }
        _ => Err(MalformedRecord {
            kind: kind.as_str(),
            detail: "not an emergency entry kind".into(),
        }),
    }
}

pub use super::log::Untrusted;

/// The exceptions the emergency entries make up, what rollbacks left live, and the
/// entries left out as untrusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Derived {
    /// The exceptions, in the order they opened.
    pub exceptions: Vec<Exception>,
    /// The subjects a rollback is the latest word on.
    pub live: LiveVersions,
    /// Entries that do not read or break the link rules; `verify` names them too.
    pub untrusted: Vec<Untrusted>,
}

/// Rebuilds the exceptions from the emergency entries and the subject changes between
/// them, in log order. One bad entry never stops a reader: it is left out and listed as
/// untrusted, and the rest carry on.
pub fn derive(entries: &[LogEntry], changes: &[SubjectChange]) -> Derived {
    let mut out = Derived::default();
    let mut changes = changes.iter().peekable();
    for e in entries {
        let Some(kind) = EntryKind::parse(&e.kind).filter(|k| EntryKind::EMERGENCY.contains(k))
        else {
            continue;
        };
        while let Some(c) = changes.next_if(|c| c.seq < e.seq) {
            out.live.after_change(&c.subject, &c.environment);
        }
        let claim = claim_of(kind, &e.body)
            .map_err(|m| m.to_string())
            .and_then(|c| {
                check_link(&out.exceptions, &c)
                    .and_then(|()| match &c {
                        Claim::Authorise(a) => out.live.check(a),
                        _ => Ok(()),
                    })
                    .map(|()| c)
                    .map_err(|r| r.to_string())
            });
        match claim {
            Ok(c) => {
                out.live.after_claim(&e.hash, &c);
                apply(&mut out.exceptions, &e.hash, c);
            }
            Err(problem) => out.untrusted.push(Untrusted {
                seq: e.seq,
                problem,
            }),
        }
    }
    for c in changes {
        out.live.after_change(&c.subject, &c.environment);
    }
    out
}
