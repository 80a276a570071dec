//! The emergency gate: an on-call approver's signed bypass, the rollback outcome, and the
//! post-incident review that closes the exception.

use super::runner::CommandOutcome;
use super::{check_in_force, refused, sign};
use crate::audit::log::{BODY_FORMAT, EntryKind, LogEntry, time_text};
use crate::domain::emergency::check_claim;
use crate::domain::policy::Policy;
use crate::domain::policy_book::PolicyBook;
use crate::identity::Identity;
use crate::store::{DecideError, NewEntry, Store};
use chrono::{DateTime, Utc};

/// An emergency rollback an on-call approver asked to authorise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackRequest {
    /// Subject name.
    pub subject: String,
    /// Environment.
    pub environment: String,
    /// Version being rolled back (live now).
    pub from_version: String,
    /// Version to roll back to.
    pub to_version: String,
    /// Incident ticket id.
    pub incident: String,
    /// One-line reason.
    pub reason: String,
}

impl RollbackRequest {
    /// Checks what the request names before anything is shown for confirmation, signed
    /// or run (the same rule the server and `verify` apply to the signed authorisation).
    pub fn check(&self) -> Result<(), crate::domain::rules::Refusal> {
        crate::domain::emergency::check_rollback_fields(
            &self.incident,
            &self.subject,
            &self.environment,
            &self.from_version,
            &self.to_version,
            &self.reason,
        )
    }
}

/// An argument vector as a person should read it before it runs: one shell-quoted word
/// per argument (so `a b` as one argument is told from two), control characters removed.
pub fn shown_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let a = crate::domain::text::sanitize(a);
            let plain = !a.is_empty()
                && a.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, '.' | '_' | '-' | '/' | '=' | ':' | '@' | '+' | ',')
                });
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The policy's rollback command for `req`, placeholders filled in, with its timeout.
pub fn rollback_invocation(
    policy: &Policy,
    req: &RollbackRequest,
) -> Option<(Vec<String>, std::time::Duration)> {
    let command = policy.rollback_command(&req.subject, &req.environment)?;
    let argv = command.render(&[
        ("subject", &req.subject),
        ("environment", &req.environment),
        ("from_version", &req.from_version),
        ("to_version", &req.to_version),
        ("incident", &req.incident),
    ]);
    Some((
        argv,
        std::time::Duration::from_secs(command.timeout_seconds.max(1) as u64),
    ))
}

/// Checks and signs an emergency bypass. Inside the store's transaction it finds the
/// incident's exception: an active one is linked to; an expired one is never reused, so
/// a new exception opens with fresh terms.
pub fn authorise_rollback(
    store: &dyn Store,
    book: &PolicyBook,
    who: &Identity,
    req: &RollbackRequest,
    now: DateTime<Utc>,
) -> Result<LogEntry, DecideError> {
    use crate::audit::emergency::{AuthorisationRecord, ExceptionTerms, derive};
    use crate::domain::emergency::{ExceptionState, check_on_call, exception_terms};
    let policy = book.policy();
    // Asked first, so a refusal comes before anything else is read.
    check_on_call(policy, &who.principal).map_err(DecideError::Refused)?;
    req.check().map_err(DecideError::Refused)?;
    // An `AUTO-` incident names the KPI reading it acts on (read by its position).
    let auto_reading = match crate::domain::rollout::parse_auto_incident(&req.incident) {
        Some((_, seq)) => reading_at(store, seq)?,
        None => None,
    };
    store.append_emergency(&mut |ctx| {
        check_in_force(book, &ctx.policy_head)?;
        let (head, existing) = (&ctx.head, &ctx.existing);
        let derived = derive(existing, &ctx.changes);
        if req.incident.starts_with("AUTO-") {
            let rollouts = crate::audit::rollout::derive(existing);
            let reading = auto_reading.as_ref().map(|(id, r)| (id.as_str(), r));
            crate::domain::rollout::check_auto_rollback(
                &rollouts,
                reading,
                &crate::domain::emergency::Authorisation {
                    principal: who.principal.id.clone(),
                    incident: req.incident.clone(),
                    subject: req.subject.clone(),
                    environment: req.environment.clone(),
                    from_version: req.from_version.clone(),
                    to_version: req.to_version.clone(),
                    reason: req.reason.clone(),
                    exception: None,
                    opened_at: now,
                    expires_at: now,
                    review_due: now,
                    at: now,
                },
            )
            .map_err(DecideError::Refused)?;
        }
        let active = derived
            .exceptions
            .iter()
            .rev()
            .find(|x| x.incident == req.incident && x.state(now) == ExceptionState::Active);
        let terms = match active {
            Some(x) => ExceptionTerms {
                id: Some(x.id.clone()),
                opened_at: time_text(x.opened_at),
                expires_at: time_text(x.expires_at),
                review_due: time_text(x.review_due),
            },
            None => {
                let (expires_at, review_due) = exception_terms(policy, now);
                ExceptionTerms {
                    id: None,
                    opened_at: time_text(now),
                    expires_at: time_text(expires_at),
                    review_due: time_text(review_due),
                }
            }
        };
        let linked = existing
            .iter()
            .rev()
            .find(|e| {
                serde_json::from_str::<serde_json::Value>(&e.body)
                    .is_ok_and(|b| b["incident"] == req.incident.as_str())
            })
            .map(|e| e.hash.clone());
        let record = AuthorisationRecord {
            kind: EntryKind::EmergencyAuthorised.as_str().into(),
            format: BODY_FORMAT,
            seq: head.seq + 1,
            prev: head.hash.clone(),
            incident: req.incident.clone(),
            subject: req.subject.clone(),
            environment: req.environment.clone(),
            from_version: req.from_version.clone(),
            to_version: req.to_version.clone(),
            reason: req.reason.trim().into(),
            exception: terms,
            linked,
            principal: who.principal.id.clone(),
            key_fingerprint: who.signer.fingerprint().into(),
            policy_digest: book.current().digest.clone(),
            at: time_text(now),
        };
        checked_and_signed(
            book,
            who,
            &derived,
            EntryKind::EmergencyAuthorised,
            record.body(),
            now,
        )
    })
}

/// Reads `body` back with the parser the server and `verify` use, holds it to the same
/// rules ([`check_claim`]) and signs it: what is signed here is what they will accept.
fn checked_and_signed(
    book: &PolicyBook,
    who: &Identity,
    derived: &crate::audit::emergency::Derived,
    kind: EntryKind,
    body: String,
    now: DateTime<Utc>,
) -> Result<(EntryKind, NewEntry), DecideError> {
    let claim = crate::audit::emergency::claim_of(kind, &body)
        .map_err(|e| DecideError::Chain(e.to_string()))?;
    check_claim(
        book.policy(),
        &who.principal,
        &derived.exceptions,
        &derived.live,
        &claim,
        now,
    )
    .map_err(DecideError::Refused)?;
    Ok((kind, sign(body, who)?))
}

/// A rollback command that ran under an authorisation: what its signed outcome records.
#[derive(Debug, Clone, Copy)]
pub struct RollbackRun<'a> {
    /// Hash of the authorisation it executes.
    pub authorisation: &'a str,
    /// Incident ticket.
    pub incident: &'a str,
    /// The argument vector that ran.
    pub command: &'a [String],
    /// What it did.
    pub outcome: &'a CommandOutcome,
}

/// A rollback command that ran and its signed record.
#[derive(Debug)]
pub struct RollbackRan {
    /// The argument vector that ran.
    pub argv: Vec<String>,
    /// The time it was allowed.
    pub timeout: std::time::Duration,
    /// What it did.
    pub outcome: CommandOutcome,
    /// Its record in the log (or why it could not be recorded).
    pub recorded: Result<LogEntry, DecideError>,
}

/// Runs the policy's rollback command for an authorised `request` (entry hash
/// `authorisation`) — `invocation` is what [`rollback_invocation`] gave the caller, who
/// has shown it — passing each output line to `on_line`, and records its outcome signed
/// by `who`, stamped when it finished (`started` + its duration). The CLI and the TUI
/// both call it.
#[allow(clippy::too_many_arguments)]
pub fn run_rollback(
    store: &dyn Store,
    book: &PolicyBook,
    who: &Identity,
    request: &RollbackRequest,
    invocation: (Vec<String>, std::time::Duration),
    authorisation: &str,
    started: DateTime<Utc>,
    on_line: &mut dyn FnMut(&str),
) -> RollbackRan {
    let (argv, timeout) = invocation;
    let outcome = super::runner::run_command(&argv, timeout, on_line);
    let finished = started + chrono::Duration::from_std(outcome.duration).unwrap_or_default();
    let recorded = record_rollback(
        store,
        book,
        who,
        RollbackRun {
            authorisation,
            incident: &request.incident,
            command: &argv,
            outcome: &outcome,
        },
        finished,
    );
    RollbackRan {
        argv,
        timeout,
        outcome,
        recorded,
    }
}

/// Records what the rollback command did, signed by the authoriser.
pub fn record_rollback(
    store: &dyn Store,
    book: &PolicyBook,
    who: &Identity,
    run: RollbackRun<'_>,
    now: DateTime<Utc>,
) -> Result<LogEntry, DecideError> {
    use crate::audit::emergency::{RollbackRecord, derive};
    let RollbackRun {
        authorisation,
        incident,
        command,
        outcome,
    } = run;
    let tail = outcome.record_tail();
    store.append_emergency(&mut |ctx| {
        check_in_force(book, &ctx.policy_head)?;
        let head = &ctx.head;
        let record = RollbackRecord {
            kind: EntryKind::RollbackExecuted.as_str().into(),
            format: BODY_FORMAT,
            seq: head.seq + 1,
            prev: head.hash.clone(),
            incident: incident.into(),
            authorisation: authorisation.to_string(),
            command: command.to_vec(),
            exit_status: outcome.exit_status,
            timed_out: outcome.timed_out,
            duration_ms: outcome.duration.as_millis() as u64,
            output_digest: outcome.output_digest.clone(),
            output_tail: tail.clone(),
            principal: who.principal.id.clone(),
            key_fingerprint: who.signer.fingerprint().into(),
            at: time_text(now),
        };
        let derived = derive(&ctx.existing, &ctx.changes);
        checked_and_signed(
            book,
            who,
            &derived,
            EntryKind::RollbackExecuted,
            record.body(),
            now,
        )
    })
}

/// A lead's post-incident review, which closes every open exception of the incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRequest {
    /// Incident ticket.
    pub incident: String,
    /// Root cause.
    pub root_cause: String,
    /// Follow-up actions.
    pub follow_ups: String,
    /// Policy changes decided.
    pub policy_changes: String,
}

/// Checks and signs a post-incident review.
pub fn record_review(
    store: &dyn Store,
    book: &PolicyBook,
    who: &Identity,
    req: &ReviewRequest,
    now: DateTime<Utc>,
) -> Result<LogEntry, DecideError> {
    use crate::audit::emergency::{ReviewRecord, derive};
    crate::domain::emergency::check_reviewer(book.policy(), &who.principal)
        .map_err(DecideError::Refused)?;
    for (field, text) in [
        ("root cause", &req.root_cause),
        ("follow-ups", &req.follow_ups),
    ] {
        if text.trim().is_empty() {
            return Err(refused(
                "review-incomplete",
                format!("a post-incident review needs the {field}"),
                "fill in root cause and follow-ups (policy changes may be \"none\")",
            ));
        }
    }
    store.append_emergency(&mut |ctx| {
        check_in_force(book, &ctx.policy_head)?;
        let head = &ctx.head;
        let derived = derive(&ctx.existing, &ctx.changes);
        let open: Vec<String> = derived
            .exceptions
            .iter()
            .filter(|x| x.incident == req.incident && x.review.is_none())
            .map(|x| x.id.clone())
            .collect();
        if open.is_empty() {
            return Err(refused(
                "no-open-exception",
                format!("incident {} has no exception awaiting review", req.incident),
                "check the incident id with `tollgate exceptions`",
            ));
        }
        let record = ReviewRecord {
            kind: EntryKind::PostIncidentReview.as_str().into(),
            format: BODY_FORMAT,
            seq: head.seq + 1,
            prev: head.hash.clone(),
            incident: req.incident.clone(),
            exceptions: open,
            root_cause: req.root_cause.trim().into(),
            follow_ups: req.follow_ups.trim().into(),
            policy_changes: if req.policy_changes.trim().is_empty() {
                "none".into()
            } else {
                req.policy_changes.trim().into()
            },
            principal: who.principal.id.clone(),
            key_fingerprint: who.signer.fingerprint().into(),
            at: time_text(now),
        };
        checked_and_signed(
            book,
            who,
            &derived,
            EntryKind::PostIncidentReview,
            record.body(),
            now,
        )
    })
}

/// The exceptions recorded in the store, and what its rollbacks left live.
pub fn exceptions(
    store: &dyn Store,
) -> Result<crate::audit::emergency::Derived, crate::store::StoreError> {
    exceptions_from(store, &store.emergency_entries()?)
}

/// [`exceptions`] from operations entries already read (`Store::emergency_entries`).
pub fn exceptions_from(
    store: &dyn Store,
    entries: &[LogEntry],
) -> Result<crate::audit::emergency::Derived, crate::store::StoreError> {
    let changes = match entries.first() {
        Some(first) => store.subject_changes(first.seq)?,
        None => Vec::new(),
    };
    Ok(crate::audit::emergency::derive(entries, &changes))
}

/// The KPI reading at log position `seq` (what an `AUTO-` incident names), with its CR;
/// `None` when that entry is not a reading.
pub fn reading_at(
    store: &dyn Store,
    seq: u64,
) -> Result<Option<(String, crate::domain::rollout::ReadingFact)>, crate::store::StoreError> {
    let Some(e) = store
        .log_entries(seq.saturating_sub(1), 1)?
        .into_iter()
        .find(|e| e.seq == seq)
    else {
        return Ok(None);
    };
    if e.kind != crate::audit::log::EntryKind::KpiReading.as_str() {
        return Ok(None);
    }
    Ok(
        match crate::audit::rollout::claim_of(crate::audit::log::EntryKind::KpiReading, &e.body) {
            Ok((crate::audit::rollout::Claim::Reading(c), _)) => Some((
                c.cr_id.clone(),
                crate::domain::rollout::ReadingFact {
                    seq,
                    values: c.values,
                    verdict: c.verdict,
                    breaches: c.breaches,
                    principal: c.principal,
                    at: c.at,
                },
            )),
            _ => None,
        },
    )
}
