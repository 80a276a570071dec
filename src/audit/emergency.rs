//! Signed emergency records in the log, and the exceptions derived from them.
//!
//! Three entry kinds: `emergency-authorised` (an on-call approver's bypass, which opens an
//! exception or links to the open one for the same incident), `rollback-executed` (what
//! the rollback command did: exit status, duration, output digest) and
//! `post-incident-review` (a lead's review, which closes the incident's exceptions).
//! Like decisions, each is canonical JSON signed over its exact bytes and chained.

use super::canonical::to_canonical_string;
use super::log::{EntryKind, LogEntry};
use crate::domain::emergency::{Exception, Review, RollbackOutcome, RollbackSummary};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The exception an authorisation runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

fn time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("bad time {s:?}: {e}"))
}

/// Rebuilds the exceptions from the emergency entries, in log order.
pub fn exceptions_from_log(entries: &[LogEntry]) -> Result<Vec<Exception>, String> {
    let mut out: Vec<Exception> = Vec::new();
    for e in entries {
        let context = |err: String| format!("log entry {}: {err}", e.seq);
        match EntryKind::parse(&e.kind) {
            Some(EntryKind::EmergencyAuthorised) => {
                let r: AuthorisationRecord =
                    serde_json::from_str(&e.body).map_err(|x| context(x.to_string()))?;
                let summary = RollbackSummary {
                    authorisation: e.hash.clone(),
                    principal: r.principal.clone(),
                    subject: r.subject.clone(),
                    environment: r.environment.clone(),
                    from_version: r.from_version.clone(),
                    to_version: r.to_version.clone(),
                    at: time(&r.at).map_err(context)?,
                    outcome: None,
                };
                match &r.exception.id {
                    Some(id) => match out.iter_mut().find(|x| &x.id == id) {
                        Some(ex) => ex.rollbacks.push(summary),
                        None => return Err(context(format!("links to unknown exception {id}"))),
                    },
                    None => out.push(Exception {
                        id: e.hash.clone(),
                        incident: r.incident.clone(),
                        opened_by: r.principal.clone(),
                        reason: r.reason.clone(),
                        opened_at: time(&r.exception.opened_at).map_err(context)?,
                        expires_at: time(&r.exception.expires_at).map_err(context)?,
                        review_due: time(&r.exception.review_due).map_err(context)?,
                        rollbacks: vec![summary],
                        review: None,
                    }),
                }
            }
            Some(EntryKind::RollbackExecuted) => {
                let r: RollbackRecord =
                    serde_json::from_str(&e.body).map_err(|x| context(x.to_string()))?;
                let rollback = out
                    .iter_mut()
                    .flat_map(|x| x.rollbacks.iter_mut())
                    .find(|s| s.authorisation == r.authorisation);
                if let Some(s) = rollback {
                    s.outcome = Some(RollbackOutcome {
                        exit_status: r.exit_status,
                        timed_out: r.timed_out,
                        duration_ms: r.duration_ms,
                    });
                }
            }
            Some(EntryKind::PostIncidentReview) => {
                let r: ReviewRecord =
                    serde_json::from_str(&e.body).map_err(|x| context(x.to_string()))?;
                let review = Review {
                    principal: r.principal.clone(),
                    at: time(&r.at).map_err(context)?,
                    root_cause: r.root_cause.clone(),
                    follow_ups: r.follow_ups.clone(),
                    policy_changes: r.policy_changes.clone(),
                };
                for ex in out.iter_mut().filter(|x| r.exceptions.contains(&x.id)) {
                    ex.review = Some(review.clone());
                }
            }
            _ => {}
        }
    }
    Ok(out)
}
