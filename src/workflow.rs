//! Operations that combine the rules, signing and the store, shared by both faces (CLI and
//! TUI) so a decision signed from either is checked and recorded the same way.

use crate::audit::log::{
    BODY_FORMAT, DecisionRecord, EntryKind, ItemSnapshot, LogEntry, TickRecord, time_text,
};
use crate::domain::checklist::Tick;
use crate::domain::decision::Verdict;
use crate::domain::policy::{Policy, Principal};
use crate::domain::rules::{Proposal, check_decision};
use crate::domain::status::{Evaluation, evaluate};
use crate::identity::Identity;
use crate::store::{DecideError, DecisionContext, Head, NewEntry, Store, StoredRevision};
use chrono::{DateTime, Utc};

/// A decision a reviewer asked to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRequest {
    /// The CR.
    pub cr_id: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The role signed for.
    pub role: String,
    /// Why.
    pub rationale: String,
    /// Manual items ticked.
    pub ticks: Vec<Tick>,
    /// The digest the reviewer looked at; the decision is refused if the CR changed since.
    pub expect_digest: Option<String>,
}

/// Roles `who` could sign `verdict` in: approvals go to an open sign-off; other verdicts
/// prefer roles the CR needs and fall back to any role held.
pub fn eligible_roles(who: &Principal, verdict: Verdict, eval: &Evaluation) -> Vec<String> {
    let open = eval.signoffs.missing_roles();
    let required: Vec<&str> = eval.signoffs.required_roles();
    let held = &who.roles;
    let mut eligible: Vec<String> = match verdict {
        Verdict::Approve => held
            .iter()
            .filter(|r| open.contains(&r.as_str()))
            .cloned()
            .collect(),
        _ => held
            .iter()
            .filter(|r| required.contains(&r.as_str()))
            .cloned()
            .collect(),
    };
    if eligible.is_empty() && verdict != Verdict::Approve {
        eligible = held.clone();
    }
    eligible
}

/// The checklist states recorded in a decision: the evaluation plus the ticks being signed.
pub fn checklist_snapshot(eval: &Evaluation, ticks: &[Tick]) -> Vec<ItemSnapshot> {
    eval.checklist
        .items
        .iter()
        .map(|i| ItemSnapshot {
            id: i.id.clone(),
            state: if ticks.iter().any(|t| t.item == i.id) {
                "ticked".into()
            } else {
                i.state.as_str().into()
            },
        })
        .collect()
}

/// The record that would be signed for `req` on revision `rev`, as the entry after `after`.
pub fn decision_record(
    who: &Identity,
    req: &DecisionRequest,
    rev: &StoredRevision,
    eval: &Evaluation,
    policy_digest: &str,
    after: &Head,
    at: DateTime<Utc>,
) -> DecisionRecord {
    DecisionRecord {
        kind: "decision".into(),
        format: BODY_FORMAT,
        seq: after.seq + 1,
        prev: after.hash.clone(),
        cr_id: rev.cr.id.clone(),
        cr_revision: rev.revision,
        cr_digest: rev.digest.clone(),
        verdict: req.verdict.as_str().into(),
        role: req.role.clone(),
        rationale: req.rationale.trim().into(),
        ticks: req
            .ticks
            .iter()
            .map(|t| TickRecord {
                item: t.item.clone(),
                note: t.note.clone(),
            })
            .collect(),
        checklist: checklist_snapshot(eval, &req.ticks),
        principal: who.principal.id.clone(),
        key_fingerprint: who.signer.fingerprint().into(),
        policy_digest: policy_digest.into(),
        at: time_text(at),
    }
}

/// Checks the rules against the context read inside the store's write transaction and
/// signs; what `Store::decide` calls.
fn build_entry(
    ctx: &DecisionContext,
    who: &Identity,
    policy: &Policy,
    policy_digest: &str,
    req: &DecisionRequest,
    at: DateTime<Utc>,
) -> Result<NewEntry, DecideError> {
    let rev = &ctx.current;
    if let Some(seen) = &req.expect_digest
        && *seen != rev.digest
    {
        return Err(DecideError::Stale {
            id: rev.cr.id.clone(),
            seen: seen.clone(),
            revision: rev.revision,
            current: rev.digest.clone(),
        });
    }
    let eval = evaluate(&rev.cr, &rev.digest, &ctx.decisions, policy);
    let proposal = Proposal {
        principal: &who.principal,
        role: &req.role,
        verdict: req.verdict,
        rationale: &req.rationale,
        ticks: &req.ticks,
    };
    check_decision(&rev.cr, &eval, policy, &proposal).map_err(DecideError::Refused)?;
    let record = decision_record(who, req, rev, &eval, policy_digest, &ctx.head, at);
    let body = record.body();
    let signature = who
        .signer
        .sign(body.as_bytes())
        .map_err(|e| DecideError::Signing(e.to_string()))?;
    Ok(NewEntry {
        body,
        signature,
        principal: who.principal.id.clone(),
    })
}

/// Checks, signs and appends one decision.
pub fn sign_decision(
    store: &dyn Store,
    policy: &Policy,
    policy_digest: &str,
    who: &Identity,
    req: &DecisionRequest,
    at: DateTime<Utc>,
) -> Result<LogEntry, DecideError> {
    store.decide(&req.cr_id, &mut |ctx| {
        build_entry(ctx, who, policy, policy_digest, req, at)
    })
}

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

fn refused(rule: &'static str, message: String, remedy: &str) -> DecideError {
    DecideError::Refused(crate::domain::rules::Refusal {
        rule,
        message,
        remedy: remedy.into(),
    })
}

/// Checks and signs an emergency bypass. Inside the store's transaction it finds the
/// incident's exception: an active one is linked to; an expired one is never reused, so
/// a new exception opens with fresh terms.
pub fn authorise_rollback(
    store: &dyn Store,
    policy: &Policy,
    policy_digest: &str,
    who: &Identity,
    req: &RollbackRequest,
    now: DateTime<Utc>,
) -> Result<LogEntry, DecideError> {
    use crate::audit::emergency::{AuthorisationRecord, ExceptionTerms, exceptions_from_log};
    use crate::domain::emergency::{ExceptionState, check_on_call, exception_terms};
    check_on_call(policy, &who.principal).map_err(DecideError::Refused)?;
    if let Err(e) = crate::domain::reader::check_identifier(&req.incident) {
        return Err(refused(
            "incident-id",
            format!("incident id: {e}"),
            "use the ticket id, e.g. INC-2291",
        ));
    }
    if req.reason.trim().is_empty() {
        return Err(refused(
            "reason-required",
            "an emergency needs a one-line reason".into(),
            "say what is hurting users",
        ));
    }
    if req.to_version.trim().is_empty() || req.to_version == req.from_version {
        return Err(refused(
            "rollback-target",
            format!(
                "rolling back {} needs a target version other than {}",
                req.subject, req.from_version
            ),
            "name the last good version",
        ));
    }
    store.append_emergency(&mut |head, existing| {
        let exceptions = exceptions_from_log(existing).map_err(DecideError::Chain)?;
        let active = exceptions
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
            policy_digest: policy_digest.into(),
            at: time_text(now),
        };
        signed(EntryKind::EmergencyAuthorised, record.body(), who)
    })
}

fn signed(
    kind: EntryKind,
    body: String,
    who: &Identity,
) -> Result<(EntryKind, NewEntry), DecideError> {
    let signature = who
        .signer
        .sign(body.as_bytes())
        .map_err(|e| DecideError::Signing(e.to_string()))?;
    Ok((
        kind,
        NewEntry {
            body,
            signature,
            principal: who.principal.id.clone(),
        },
    ))
}

/// What a rollback command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// Exit status; `None` when killed or it could not start.
    pub exit_status: Option<i32>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// Run time.
    pub duration: std::time::Duration,
    /// Everything it printed, stdout and stderr in arrival order.
    pub output: String,
}

/// Runs `argv` (no shell), passing each output line to `on_line` as it arrives and
/// killing the process at `timeout`.
pub fn run_command(
    argv: &[String],
    timeout: std::time::Duration,
    on_line: &mut dyn FnMut(&str),
) -> CommandOutcome {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let started = std::time::Instant::now();
    let Some((program, args)) = argv.split_first() else {
        return CommandOutcome {
            exit_status: None,
            timed_out: false,
            duration: started.elapsed(),
            output: "no command to run".into(),
        };
    };
    // Its own process group, so a timeout kills the command and anything it started.
    let mut child = match std::os::unix::process::CommandExt::process_group(
        Command::new(program).args(args),
        0,
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let line = format!("cannot start {program}: {e}");
            on_line(&line);
            return CommandOutcome {
                exit_status: None,
                timed_out: false,
                duration: started.elapsed(),
                output: line,
            };
        }
    };
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        })
    })
    .collect();
    drop(tx);
    let mut output = String::new();
    let mut timed_out = false;
    let status = loop {
        while let Ok(line) = rx.try_recv() {
            on_line(&line);
            output.push_str(&line);
            output.push('\n');
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= timeout => {
                timed_out = true;
                kill_group(child.id());
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => {
                // Wait for output or for 20 ms, whichever comes first.
                if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(20)) {
                    on_line(&line);
                    output.push_str(&line);
                    output.push('\n');
                }
            }
            Err(_) => break None,
        }
    };
    for r in readers {
        let _ = r.join();
    }
    for line in rx.try_iter() {
        on_line(&line);
        output.push_str(&line);
        output.push('\n');
    }
    CommandOutcome {
        exit_status: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        timed_out,
        duration: started.elapsed(),
        output,
    }
}

/// Kills every process in the group led by `pid`.
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the process group; no memory is
        // shared, and a stale group id at worst fails with ESRCH.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// Records what the rollback command did, signed by the authoriser.
pub fn record_rollback(
    store: &dyn Store,
    who: &Identity,
    authorisation: &str,
    incident: &str,
    command: &[String],
    outcome: &CommandOutcome,
    now: DateTime<Utc>,
) -> Result<LogEntry, DecideError> {
    use crate::audit::emergency::RollbackRecord;
    let tail: String = {
        let lines: Vec<&str> = outcome.output.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    store.append_emergency(&mut |head, _| {
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
            output_digest: crate::audit::canonical::sha256_digest(outcome.output.as_bytes()),
            output_tail: crate::domain::text::truncate(&tail, 4000),
            principal: who.principal.id.clone(),
            key_fingerprint: who.signer.fingerprint().into(),
            at: time_text(now),
        };
        signed(EntryKind::RollbackExecuted, record.body(), who)
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
    policy: &Policy,
    who: &Identity,
    req: &ReviewRequest,
    now: DateTime<Utc>,
) -> Result<LogEntry, DecideError> {
    use crate::audit::emergency::{ReviewRecord, exceptions_from_log};
    crate::domain::emergency::check_reviewer(policy, &who.principal)
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
    store.append_emergency(&mut |head, existing| {
        let open: Vec<crate::domain::emergency::Exception> = exceptions_from_log(existing)
            .map_err(DecideError::Chain)?
            .into_iter()
            .filter(|x| x.incident == req.incident && x.review.is_none())
            .collect();
        // Segregation of duties: whoever bypassed review does not review their own bypass.
        if let Some(x) = open
            .iter()
            .find(|x| x.rollbacks.iter().any(|r| r.principal == who.principal.id))
        {
            return Err(refused(
                "independent-review",
                format!(
                    "{} authorised a rollback under {} and cannot review it",
                    who.principal.id, x.incident
                ),
                "ask another lead to review the incident",
            ));
        }
        let open: Vec<String> = open.into_iter().map(|x| x.id).collect();
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
        signed(EntryKind::PostIncidentReview, record.body(), who)
    })
}

/// The exceptions recorded in the store.
pub fn exceptions(store: &dyn Store) -> Result<Vec<crate::domain::emergency::Exception>, String> {
    let entries = store.emergency_entries().map_err(|e| e.to_string())?;
    crate::audit::emergency::exceptions_from_log(&entries)
}
