//! After approval, shared by every face: an operator's rollout stage (with the policy's
//! deployment command), the KPI guard's reading of a canary (and the automatic rollback a
//! regression triggers, through the emergency path), and rollback drills.
//!
//! Each operation checks the rules before running anything, runs the policy's command,
//! and signs its record inside the store's write transaction after checking the rules
//! again against what the log holds then.

use super::emergency::{RollbackRequest, authorise_rollback, rollback_invocation, run_rollback};
use super::runner::{CommandOutcome, run_command};
use super::{check_in_force, sign};
use crate::audit::log::{BODY_FORMAT, EntryKind, LogEntry, time_text};
use crate::audit::rollout::{CommandRecord, DrillRecord, KpiValue, ReadingRecord, StageRecord};
use crate::domain::policy_book::PolicyBook;
use crate::domain::rollout::{
    CrFacts, ReadingVerdict, Rollouts, Stage, StageClaim, auto_incident, check_drill, check_stage,
    derive_verdict,
};
use crate::domain::status::{Evaluation, evaluate_in};
use crate::identity::Identity;
use crate::store::{DecideError, Store, StoreError, StoredCr};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// What a command run for the record did, as its record holds it.
pub fn command_record(argv: &[String], o: &CommandOutcome) -> CommandRecord {
    CommandRecord {
        command: argv.to_vec(),
        exit_status: o.exit_status,
        timed_out: o.timed_out,
        duration_ms: o.duration.as_millis() as u64,
        output_digest: o.output_digest.clone(),
        output_tail: o.record_tail(),
    }
}

/// The rollouts and drills recorded in the store, without KPI readings (see
/// [`add_readings`]).
pub fn rollouts(store: &dyn Store) -> Result<Rollouts, StoreError> {
    Ok(crate::audit::rollout::derive(&store.emergency_entries()?))
}

/// Adds the KPI readings of `cr_id` to `all` (read by the CR's index).
pub fn add_readings(store: &dyn Store, all: &mut Rollouts, cr_id: &str) -> Result<(), StoreError> {
    for e in store.kpi_readings(cr_id)? {
        if let Ok((crate::audit::rollout::Claim::Reading(c), _)) =
            crate::audit::rollout::claim_of(EntryKind::KpiReading, &e.body)
        {
            all.after_reading(e.seq, &c);
        }
    }
    Ok(())
}

/// Every rollout and drill, with `cr_id`'s KPI readings: what one CR's screen shows.
pub fn rollouts_with_readings(store: &dyn Store, cr_id: &str) -> Result<Rollouts, StoreError> {
    let mut all = rollouts(store)?;
    add_readings(store, &mut all, cr_id)?;
    Ok(all)
}

/// A CR's current revision and its evaluation under the policy in force.
pub fn evaluated(
    store: &dyn Store,
    book: &PolicyBook,
    cr_id: &str,
) -> Result<(StoredCr, Evaluation), DecideError> {
    let cr = store
        .get(cr_id)?
        .ok_or_else(|| DecideError::NotFound(cr_id.to_string()))?;
    let decisions = store.decisions(cr_id)?;
    let eval = evaluate_in(&cr.current.cr, &cr.current.digest, &decisions, book);
    Ok((cr, eval))
}

/// A rollout stage an operator asked to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRequest {
    /// The CR.
    pub cr_id: String,
    /// Which stage.
    pub stage: Stage,
    /// Traffic share in % (full is always 100).
    pub traffic: u8,
    /// The operator's note.
    pub note: String,
}

/// A stage that was recorded, with the command that ran for it.
#[derive(Debug)]
pub struct StageRan {
    /// The deployment command and what it did, when the policy names one.
    pub deploy: Option<(Vec<String>, CommandOutcome)>,
    /// The signed entry.
    pub entry: LogEntry,
}

fn stage_claim(
    cr: &StoredCr,
    req: &StageRequest,
    who: &Identity,
    deploy: Option<&CommandRecord>,
    at: DateTime<Utc>,
) -> StageClaim {
    let s = &cr.current.cr.subject;
    StageClaim {
        cr_id: cr.current.cr.id.clone(),
        cr_revision: cr.current.revision,
        cr_digest: cr.current.digest.clone(),
        stage: req.stage,
        subject: s.name.clone(),
        environment: s.environment.as_str().to_string(),
        from_version: s.from_version.clone(),
        to_version: s.to_version.clone(),
        traffic: req.traffic,
        deploy: deploy.map(|d| crate::domain::rollout::RunOutcome {
            exit_status: d.exit_status,
            timed_out: d.timed_out,
            duration_ms: d.duration_ms,
        }),
        principal: who.principal.id.clone(),
        at,
    }
}

/// Checks a stage against the rules without running or signing anything: what the CLI
/// and the TUI ask before showing the deployment command.
pub fn check_stage_request(
    store: &dyn Store,
    book: &PolicyBook,
    who: &Identity,
    req: &StageRequest,
    now: DateTime<Utc>,
) -> Result<(StoredCr, Evaluation), DecideError> {
    let (cr, eval) = evaluated(store, book, &req.cr_id)?;
    let claim = stage_claim(&cr, req, who, None, now);
    let own = crate::audit::rollout::derive_for(&store.emergency_entries()?, &req.cr_id);
    judge_stage(book, who, (&cr, &eval), &own, &claim)?;
    Ok((cr, eval))
}

/// The stage rules for `claim` (signed at its own time) against the CR as read and the
/// rollouts so far: before anything runs, and again inside the write transaction.
fn judge_stage(
    book: &PolicyBook,
    who: &Identity,
    (cr, eval): (&StoredCr, &Evaluation),
    all: &Rollouts,
    claim: &StageClaim,
) -> Result<(), DecideError> {
    check_stage(
        book.policy(),
        &who.principal,
        &facts(cr, eval),
        all.of(&claim.cr_id),
        claim,
        claim.at,
    )
    .map_err(DecideError::Refused)
}

fn facts<'a>(cr: &'a StoredCr, eval: &Evaluation) -> CrFacts<'a> {
    CrFacts {
        cr: &cr.current.cr,
        revision: cr.current.revision,
        digest: &cr.current.digest,
        status: eval.status,
        risk: eval.risk.effective,
    }
}

/// The policy's deployment command for a stage of `cr`, placeholders filled in, with its
/// timeout: what the CLI and the TUI show before it runs.
pub fn deploy_argv(
    policy: &crate::domain::policy::Policy,
    cr: &crate::domain::change_request::ChangeRequest,
    stage: Stage,
    traffic: u8,
) -> Option<(Vec<String>, Duration)> {
    let s = &cr.subject;
    let command = policy
        .after
        .deploy_command(&s.name, s.environment.as_str())?;
    let traffic = traffic.to_string();
    let argv = command.render(&[
        ("subject", &s.name),
        ("environment", s.environment.as_str()),
        ("from_version", s.from_version.as_deref().unwrap_or("")),
        ("to_version", &s.to_version),
        ("stage", stage.as_str()),
        ("traffic", &traffic),
        ("cr", &cr.id),
    ]);
    Some((
        argv,
        Duration::from_secs(command.timeout_seconds.max(1) as u64),
    ))
}

/// [`deploy_argv`] for a stage request under the policy in force.
pub fn deploy_invocation(
    book: &PolicyBook,
    cr: &StoredCr,
    req: &StageRequest,
) -> Option<(Vec<String>, Duration)> {
    deploy_argv(book.policy(), &cr.current.cr, req.stage, req.traffic)
}

/// The stage that comes next for `cr` (digest `digest`) given its rollout so far: canary
/// (or full when the policy lets its gate skip canary), then full; `None` once full or
/// rolled back.
pub fn next_stage(
    policy: &crate::domain::policy::Policy,
    cr: &crate::domain::change_request::ChangeRequest,
    digest: &str,
    rollout: Option<&crate::domain::rollout::CrRollout>,
) -> Option<Stage> {
    if rollout.is_some_and(|r| r.rolled_back.is_some()) {
        return None;
    }
    let done = |stage| rollout.and_then(|r| r.stage(digest, stage)).is_some();
    if done(Stage::Full) {
        None
    } else if done(Stage::Canary) || policy.after.skip_canary.contains(&cr.gate) {
        Some(Stage::Full)
    } else {
        Some(Stage::Canary)
    }
}

/// Records a rollout stage: checks it, runs the policy's deployment command (each output
/// line to `on_line`), and signs the stage with the command's outcome. A failed command
/// is recorded too; the stage then did not take place.
pub fn record_stage(
    store: &dyn Store,
    book: &PolicyBook,
    who: &Identity,
    req: &StageRequest,
    now: DateTime<Utc>,
    on_line: &mut dyn FnMut(&str),
) -> Result<StageRan, DecideError> {
    let (cr, eval) = check_stage_request(store, book, who, req, now)?;
    let deploy = deploy_invocation(book, &cr, req).map(|(argv, timeout)| {
        let outcome = run_command(&argv, timeout, on_line);
        (argv, outcome)
    });
    let finished = now
        + deploy
            .as_ref()
            .and_then(|(_, o)| chrono::Duration::from_std(o.duration).ok())
            .unwrap_or_default();
    let record = deploy.as_ref().map(|(argv, o)| command_record(argv, o));
    let entry = store.append_emergency(&mut |ctx| {
        check_in_force(book, &ctx.policy_head)?;
        let claim = stage_claim(&cr, req, who, record.as_ref(), finished);
        let own = crate::audit::rollout::derive_for(&ctx.existing, &req.cr_id);
        judge_stage(book, who, (&cr, &eval), &own, &claim)?;
        let body = StageRecord {
            kind: EntryKind::RolloutStage.as_str().into(),
            format: BODY_FORMAT,
            seq: ctx.head.seq + 1,
            prev: ctx.head.hash.clone(),
            cr_id: claim.cr_id.clone(),
            cr_revision: claim.cr_revision,
            cr_digest: claim.cr_digest.clone(),
            stage: req.stage.as_str().into(),
            subject: claim.subject.clone(),
            environment: claim.environment.clone(),
            from_version: claim.from_version.clone(),
            to_version: claim.to_version.clone(),
            traffic: claim.traffic,
            note: crate::domain::text::truncate(req.note.trim(), 2000),
            deploy: record.clone(),
            principal: who.principal.id.clone(),
            key_fingerprint: who.signer.fingerprint().into(),
            policy_digest: book.current().digest.clone(),
            at: time_text(finished),
        }
        .body();
        Ok((EntryKind::RolloutStage, sign(body, who)?))
    })?;
    Ok(StageRan { deploy, entry })
}

/// Reads `name=value` lines (blank lines and `#` comments skipped; anything else is
/// ignored, so a check may log freely on stderr or stdout).
pub fn parse_kpi_output(text: &str) -> Vec<KpiValue> {
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.trim().split_once('=')?;
            let (name, value) = (name.trim(), value.trim());
            let numeric = value.parse::<f64>().is_ok_and(f64::is_finite);
            (crate::domain::reader::check_identifier(name).is_ok() && numeric).then(|| KpiValue {
                metric: name.to_string(),
                value: value.to_string(),
            })
        })
        .collect()
}

/// What the guard did for one CR in canary.
#[derive(Debug)]
pub struct GuardAction {
    /// The CR.
    pub cr_id: String,
    /// The reading entry.
    pub reading: LogEntry,
    /// What it concluded, with the breaches.
    pub verdict: ReadingVerdict,
    /// Breaches in words.
    pub breaches: Vec<String>,
    /// The automatic rollback, when the reading regressed: its authorisation, and the
    /// rollback command's run when the policy names one.
    pub rollback: Option<Result<(LogEntry, Option<super::emergency::RollbackRan>), DecideError>>,
}

/// Takes one KPI reading of `cr_id` (in canary) and records it; on a regression, rolls
/// the canary back through the emergency path when `who` is on the on-call roster.
pub fn guard_once(
    store: &dyn Store,
    book: &PolicyBook,
    who: &Identity,
    cr_id: &str,
    now: DateTime<Utc>,
    on_line: &mut dyn FnMut(&str),
) -> Result<GuardAction, DecideError> {
    let cr = store
        .get(cr_id)?
        .ok_or_else(|| DecideError::NotFound(cr_id.to_string()))?;
    let s = &cr.current.cr.subject;
    let env = s.environment.as_str();
    let policy = book.policy();
    let Some(guard) = policy.after.kpi_guard(&s.name, env) else {
        return Err(super::refused(
            "no-kpi-guard",
            format!("the policy names no KPI check for {}@{env}", s.name),
            "add a [[kpi]] table for the subject",
        ));
    };
    let argv = guard.check.render(&[
        ("subject", &s.name),
        ("environment", env),
        ("to_version", &s.to_version),
        ("cr", cr_id),
    ]);
    let mut stdout = String::new();
    let outcome = run_command(
        &argv,
        Duration::from_secs(guard.check.timeout_seconds.max(1) as u64),
        &mut |l| {
            on_line(l);
            stdout.push_str(l);
            stdout.push('\n');
        },
    );
    let finished = now + chrono::Duration::from_std(outcome.duration).unwrap_or_default();
    let values = parse_kpi_output(&stdout);
    let numbers: Vec<(String, f64)> = values
        .iter()
        .filter_map(|v| Some((v.metric.clone(), v.value.parse().ok()?)))
        .collect();
    let succeeded = outcome.exit_status == Some(0) && !outcome.timed_out;
    let (verdict, breaches) = derive_verdict(policy, &s.name, env, succeeded, &numbers)
        .unwrap_or((ReadingVerdict::Error, vec![]));
    let check = command_record(&argv, &outcome);
    let reading = store.append_emergency(&mut |ctx| {
        check_in_force(book, &ctx.policy_head)?;
        let body = ReadingRecord {
            kind: EntryKind::KpiReading.as_str().into(),
            format: BODY_FORMAT,
            seq: ctx.head.seq + 1,
            prev: ctx.head.hash.clone(),
            cr_id: cr_id.to_string(),
            cr_digest: cr.current.digest.clone(),
            subject: s.name.clone(),
            environment: env.to_string(),
            check: check.clone(),
            values: values.clone(),
            verdict: verdict.as_str().into(),
            breaches: breaches.clone(),
            principal: who.principal.id.clone(),
            key_fingerprint: who.signer.fingerprint().into(),
            policy_digest: book.current().digest.clone(),
            at: time_text(finished),
        }
        .body();
        let (claim, _) = crate::audit::rollout::claim_of(EntryKind::KpiReading, &body)
            .map_err(|e| DecideError::Chain(e.to_string()))?;
        let crate::audit::rollout::Claim::Reading(claim) = claim else {
            return Err(DecideError::Chain("not a reading".into()));
        };
        let all = crate::audit::rollout::derive(&ctx.existing);
        crate::domain::rollout::check_reading(
            policy,
            &who.principal,
            all.of(cr_id),
            &claim,
            finished,
        )
        .map_err(DecideError::Refused)?;
        Ok((EntryKind::KpiReading, sign(body, who)?))
    })?;
    let rollback = (verdict == ReadingVerdict::Regressed
        && policy.emergency.on_call.contains(&who.principal.id))
    .then(|| {
        auto_rollback(
            store,
            book,
            who,
            &cr,
            reading.seq,
            &breaches,
            finished,
            on_line,
        )
    });
    Ok(GuardAction {
        cr_id: cr_id.to_string(),
        reading,
        verdict,
        breaches,
        rollback,
    })
}

/// Rolls a regressed canary back: an emergency authorisation under `AUTO-<CR>-<seq>`,
/// then the policy's rollback command through the emergency runner.
#[allow(clippy::too_many_arguments)]
fn auto_rollback(
    store: &dyn Store,
    book: &PolicyBook,
    who: &Identity,
    cr: &StoredCr,
    reading_seq: u64,
    breaches: &[String],
    now: DateTime<Utc>,
    on_line: &mut dyn FnMut(&str),
) -> Result<(LogEntry, Option<super::emergency::RollbackRan>), DecideError> {
    let s = &cr.current.cr.subject;
    let Some(to) = s.from_version.clone() else {
        return Err(super::refused(
            "no-rollback-target",
            format!("{} names no version it replaced", cr.current.cr.id),
            "roll back by hand with `tollgate rollback`",
        ));
    };
    let req = RollbackRequest {
        subject: s.name.clone(),
        environment: s.environment.as_str().to_string(),
        from_version: s.to_version.clone(),
        to_version: to,
        incident: auto_incident(&cr.current.cr.id, reading_seq),
        reason: crate::domain::text::truncate(
            &format!(
                "KPI guard: {} (canary of {})",
                breaches.join("; "),
                cr.current.cr.id
            ),
            500,
        ),
    };
    let auth = authorise_rollback(store, book, who, &req, now)?;
    let ran = rollback_invocation(book.policy(), &req)
        .map(|inv| run_rollback(store, book, who, &req, inv, &auth.hash, now, on_line));
    Ok((auth, ran))
}

/// The CRs in canary whose next KPI reading is due at `now` (never read, or last read
/// the guard's interval ago, give or take 30 s), by CR id.
pub fn due_readings(
    store: &dyn Store,
    book: &PolicyBook,
    now: DateTime<Utc>,
) -> Result<Vec<String>, DecideError> {
    let mut all = rollouts(store)?;
    let ids: Vec<String> = all.crs.keys().cloned().collect();
    let mut due = Vec::new();
    for id in &ids {
        let Some(cr) = store.get(id)? else { continue };
        if !all.of(id).is_some_and(|r| r.in_canary(&cr.current.digest)) {
            continue;
        }
        add_readings(store, &mut all, id)?;
        let Some(r) = all.of(id) else { continue };
        let Some(guard) = book.policy().after.kpi_guard(&r.subject, &r.environment) else {
            continue;
        };
        // Readings are stamped when their check finished: one taken a few seconds short of
        // the interval ago is due, or a guard passing every interval would skip every other.
        let last = r.readings.last().map(|x| x.at);
        let slack = chrono::Duration::seconds(30);
        if last.is_none_or(|t| now + slack - t >= chrono::Duration::minutes(guard.interval_minutes))
        {
            due.push(id.clone());
        }
    }
    Ok(due)
}

/// A rollback drill to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillRequest {
    /// Subject.
    pub subject: String,
    /// Non-production environment.
    pub environment: String,
    /// Version passed as `{from_version}`.
    pub from_version: String,
    /// Version passed as `{to_version}`.
    pub to_version: String,
}

/// The drill's id, passed to the rollback command as `{incident}`.
pub fn drill_id(now: DateTime<Utc>) -> String {
    format!("DRILL-{}", now.format("%Y%m%dT%H%M%SZ"))
}

/// The rollback command a drill runs, with its timeout (checked against the rules).
pub fn drill_invocation(
    book: &PolicyBook,
    who: &Identity,
    req: &DrillRequest,
    now: DateTime<Utc>,
) -> Result<(Vec<String>, Duration, String), DecideError> {
    for v in [&req.from_version, &req.to_version] {
        crate::domain::reader::check_version(v).map_err(|e| {
            super::refused(
                "drill-version",
                format!("version {v:?}: {e}"),
                "give plain version labels",
            )
        })?;
    }
    let incident = drill_id(now);
    let rreq = RollbackRequest {
        subject: req.subject.clone(),
        environment: req.environment.clone(),
        from_version: req.from_version.clone(),
        to_version: req.to_version.clone(),
        incident: incident.clone(),
        reason: "drill".into(),
    };
    // The rules (role, environment, the policy's own command) judge the command about
    // to run, before it runs: with no command they say so, in the words used everywhere.
    let invocation = rollback_invocation(book.policy(), &rreq);
    let command = invocation
        .as_ref()
        .map(|(argv, _)| argv.clone())
        .unwrap_or_default();
    let claim = drill_claim(req, &incident, command, who, now);
    check_drill(book.policy(), &who.principal, &claim, now).map_err(DecideError::Refused)?;
    let (argv, timeout) = invocation.ok_or_else(|| {
        super::refused(
            "no-rollback-command",
            format!(
                "the policy names no rollback command for {}@{}",
                req.subject, req.environment
            ),
            "add an [[emergency.rollback]] table that covers it",
        )
    })?;
    Ok((argv, timeout, incident))
}

fn drill_claim(
    req: &DrillRequest,
    incident: &str,
    command: Vec<String>,
    who: &Identity,
    at: DateTime<Utc>,
) -> crate::domain::rollout::DrillClaim {
    crate::domain::rollout::DrillClaim {
        subject: req.subject.clone(),
        environment: req.environment.clone(),
        from_version: req.from_version.clone(),
        to_version: req.to_version.clone(),
        incident: incident.to_string(),
        command,
        outcome: crate::domain::rollout::RunOutcome {
            exit_status: Some(0),
            timed_out: false,
            duration_ms: 0,
        },
        principal: who.principal.id.clone(),
        at,
    }
}

/// Runs a drill (the policy's rollback command against a non-production environment),
/// timing it, and records it signed. A failed drill is recorded too.
pub fn run_drill(
    store: &dyn Store,
    book: &PolicyBook,
    who: &Identity,
    req: &DrillRequest,
    now: DateTime<Utc>,
    on_line: &mut dyn FnMut(&str),
) -> Result<(CommandOutcome, LogEntry), DecideError> {
    let (argv, timeout, incident) = drill_invocation(book, who, req, now)?;
    let outcome = run_command(&argv, timeout, on_line);
    let finished = now + chrono::Duration::from_std(outcome.duration).unwrap_or_default();
    let run = command_record(&argv, &outcome);
    let entry = store.append_emergency(&mut |ctx| {
        check_in_force(book, &ctx.policy_head)?;
        let body = DrillRecord {
            kind: EntryKind::Drill.as_str().into(),
            format: BODY_FORMAT,
            seq: ctx.head.seq + 1,
            prev: ctx.head.hash.clone(),
            subject: req.subject.clone(),
            environment: req.environment.clone(),
            from_version: req.from_version.clone(),
            to_version: req.to_version.clone(),
            incident: incident.clone(),
            run: run.clone(),
            principal: who.principal.id.clone(),
            key_fingerprint: who.signer.fingerprint().into(),
            policy_digest: book.current().digest.clone(),
            at: time_text(finished),
        }
        .body();
        Ok((EntryKind::Drill, sign(body, who)?))
    })?;
    Ok((outcome, entry))
}
