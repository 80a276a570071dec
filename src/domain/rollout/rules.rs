//! The rules of the after-approval entries, applied by the workflow before signing, by
//! the server before appending what a client signed, and by `verify` to every entry.

use super::{
    CrRollout, DrillClaim, OPERATOR_ROLE, ReadingClaim, ReadingVerdict, Rollouts, Stage, StageClaim,
};
use crate::domain::change_request::{ChangeRequest, Gate, RiskLevel};
use crate::domain::emergency::{Authorisation, check_signing_time};
use crate::domain::policy::{Policy, Principal};
use crate::domain::provenance::SERVER_ROLE;
use crate::domain::rules::Refusal;
use crate::domain::status::Status;
use chrono::{DateTime, Duration, Utc};

fn refuse<T>(rule: &'static str, message: String, remedy: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        rule,
        message,
        remedy: remedy.into(),
    })
}

/// What the log says about a CR when a stage is signed: its current revision and how it
/// evaluates under the policy in force.
#[derive(Debug, Clone, Copy)]
pub struct CrFacts<'a> {
    /// The current revision's content.
    pub cr: &'a ChangeRequest,
    /// Its number.
    pub revision: u32,
    /// Its digest.
    pub digest: &'a str,
    /// Its status.
    pub status: Status,
    /// Its effective risk.
    pub risk: RiskLevel,
}

/// An after-approval entry must be signed when it was received, give or take the allowed
/// clock skew, also not earlier: its own time decides the observation window (a canary
/// dated yesterday would open full at once) and whether a freeze held. The server checks
/// it against its clock, `verify` against the receipt time the store recorded.
pub fn check_not_backdated(at: DateTime<Utc>, received: DateTime<Utc>) -> Result<(), Refusal> {
    let skew = Duration::seconds(crate::domain::rules::MAX_CLOCK_SKEW_SECS);
    if at < received - skew {
        return refuse(
            "signed-in-past",
            format!(
                "the entry says it was signed at {at}, before it was received ({received}) by more than the {} s of clock skew allowed: its time decides observation windows and freezes",
                crate::domain::rules::MAX_CLOCK_SKEW_SECS
            ),
            "sign it with the current time",
        );
    }
    Ok(())
}

/// When the observation window after `canary_at` opens for `risk`.
pub fn window_opens(policy: &Policy, risk: RiskLevel, canary_at: DateTime<Utc>) -> DateTime<Utc> {
    canary_at + Duration::hours(*policy.observation_hours.get(risk))
}

/// Checks a rollout stage against the policy in force, the CR as the log holds it and
/// the rollout so far (`rollout`: this CR's, if any stage was recorded).
pub fn check_stage(
    policy: &Policy,
    who: &Principal,
    facts: &CrFacts<'_>,
    rollout: Option<&CrRollout>,
    claim: &StageClaim,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let cr = facts.cr;
    if !who.has_role(OPERATOR_ROLE) {
        let operators: Vec<&str> = policy
            .principals
            .iter()
            .filter(|p| p.has_role(OPERATOR_ROLE))
            .map(|p| p.id.as_str())
            .collect();
        return refuse(
            "operator-only",
            format!(
                "{} does not hold the operator role and cannot record a rollout stage",
                who.id
            ),
            format!("ask an operator: {}", operators.join(", ")),
        );
    }
    if who.id == cr.requester || cr.provenance.submitter.principal() == Some(who.id.as_str()) {
        return refuse(
            "requester-cannot-deploy",
            format!("{} requested {} and cannot roll it out", who.id, cr.id),
            "ask another operator: the requester never deploys their own change",
        );
    }
    if claim.cr_id != cr.id
        || claim.cr_revision != facts.revision
        || claim.cr_digest != facts.digest
    {
        return refuse(
            "rollout-revision",
            format!(
                "the stage names revision {} of {} ({}), but revision {} ({}) is current",
                claim.cr_revision, claim.cr_id, claim.cr_digest, facts.revision, facts.digest
            ),
            "roll out the current, approved revision",
        );
    }
    let s = &cr.subject;
    if claim.subject != s.name
        || claim.environment != s.environment.as_str()
        || claim.to_version != s.to_version
        || claim.from_version != s.from_version
    {
        return refuse(
            "rollout-subject",
            format!(
                "the stage names {}@{} {} → {}, but {} brings {}@{} {} → {}",
                claim.subject,
                claim.environment,
                claim.from_version.as_deref().unwrap_or("-"),
                claim.to_version,
                cr.id,
                s.name,
                s.environment.as_str(),
                s.from_version.as_deref().unwrap_or("-"),
                s.to_version
            ),
            "a stage rolls out exactly what the CR names",
        );
    }
    if cr.gate == Gate::Policy {
        return refuse(
            "not-deployable",
            format!(
                "{} changes the policy; it is adopted, not rolled out",
                cr.id
            ),
            "nothing to deploy",
        );
    }
    if facts.status != Status::Approved {
        return refuse(
            "not-approved",
            format!(
                "{} is {}, not approved: nothing may be rolled out",
                cr.id,
                facts.status.as_str()
            ),
            format!("wait for the sign-offs (`tollgate show {}`)", cr.id),
        );
    }
    if let Some(by) = rollout.and_then(|r| r.rolled_back.as_ref()) {
        return refuse(
            "rolled-back",
            format!(
                "{} was rolled back under {} at {}; its rollout is over",
                cr.id,
                by.incident,
                by.at.format("%Y-%m-%d %H:%M UTC")
            ),
            "submit a new revision or CR once the cause is fixed",
        );
    }
    if claim.traffic == 0
        || claim.traffic > 100
        || (claim.stage == Stage::Full && claim.traffic != 100)
    {
        return refuse(
            "traffic",
            format!(
                "{}% is not a traffic share for a {} stage",
                claim.traffic,
                claim.stage.as_str()
            ),
            "give --traffic 1–100 for canary; full is 100",
        );
    }
    // The emergency gate is the only bypass (the CLI says so when it uses it).
    if let Some(f) = policy.after.frozen(&claim.environment, claim.at)
        && cr.gate != Gate::Emergency
    {
        return refuse(
            "frozen",
            format!("{} is frozen: {}", claim.environment, f.describe()),
            "wait until the window closes; only the emergency gate bypasses a freeze (`tollgate rollback` for an incident)",
        );
    }
    let done = |stage| rollout.and_then(|r| r.stage(facts.digest, stage));
    if let Some(full) = done(Stage::Full) {
        return refuse(
            "stage-order",
            format!("{} is already fully rolled out (entry {})", cr.id, full.seq),
            "nothing more to roll out",
        );
    }
    match claim.stage {
        Stage::Canary => {
            if let Some(c) = done(Stage::Canary) {
                return refuse(
                    "stage-order",
                    format!(
                        "{} is already in canary since {} (entry {})",
                        cr.id,
                        c.at.format("%Y-%m-%d %H:%M UTC"),
                        c.seq
                    ),
                    format!(
                        "roll out full once the observation window has elapsed: `tollgate rollout {} --stage full`",
                        cr.id
                    ),
                );
            }
        }
        Stage::Full => match done(Stage::Canary) {
            None if policy.after.skip_canary.contains(&cr.gate) => {}
            None => {
                return refuse(
                    "canary-first",
                    format!(
                        "{} has not been in canary: the {} gate rolls out canary before full",
                        cr.id, cr.gate
                    ),
                    format!(
                        "start with `tollgate rollout {} --stage canary --traffic 10`",
                        cr.id
                    ),
                );
            }
            Some(c) => {
                let opens = window_opens(policy, facts.risk, c.at);
                if claim.at < opens {
                    let left = opens - claim.at;
                    return refuse(
                        "observation-window",
                        format!(
                            "{}'s observation window ({} h for {} risk) runs from the canary at {}; full rollout opens at {} (in {}h {:02}m)",
                            cr.id,
                            policy.observation_hours.get(facts.risk),
                            facts.risk,
                            c.at.format("%Y-%m-%dT%H:%M:%SZ"),
                            opens.format("%Y-%m-%dT%H:%M:%SZ"),
                            left.num_minutes() / 60,
                            left.num_minutes() % 60
                        ),
                        "watch the KPIs until then (`tollgate watch`)",
                    );
                }
            }
        },
    }
    check_signing_time(claim.at, now)
}

/// What a reading's values conclude under `policy`'s guard for its subject: the verdict
/// and the breaches in words. The server and `verify` recompute it; a reading claiming
/// anything else is refused.
pub fn derive_verdict(
    policy: &Policy,
    subject: &str,
    environment: &str,
    check_succeeded: bool,
    values: &[(String, f64)],
) -> Option<(ReadingVerdict, Vec<String>)> {
    let guard = policy.after.kpi_guard(subject, environment)?;
    if !check_succeeded {
        return Some((
            ReadingVerdict::Error,
            vec!["the check command failed".into()],
        ));
    }
    let mut breaches = Vec::new();
    let mut missing = Vec::new();
    for t in &guard.thresholds {
        match values.iter().find(|(m, _)| *m == t.metric) {
            None => missing.push(format!("{} not reported", t.metric)),
            Some((_, v)) => {
                if let Some(min) = t.min
                    && *v < min
                {
                    breaches.push(format!("{} {v} < min {min}", t.metric));
                }
                if let Some(max) = t.max
                    && *v > max
                {
                    breaches.push(format!("{} {v} > max {max}", t.metric));
                }
            }
        }
    }
    Some(if !breaches.is_empty() {
        (ReadingVerdict::Regressed, breaches)
    } else if !missing.is_empty() {
        (ReadingVerdict::Error, missing)
    } else {
        (ReadingVerdict::Ok, Vec::new())
    })
}

/// Checks a KPI reading: by an operator or the server, on a CR in canary, concluding
/// what its values conclude under the policy in force.
pub fn check_reading(
    policy: &Policy,
    who: &Principal,
    rollout: Option<&CrRollout>,
    claim: &ReadingClaim,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if !who.has_role(OPERATOR_ROLE) && !who.has_role(SERVER_ROLE) {
        return refuse(
            "guard-role",
            format!(
                "{} holds neither operator nor server and cannot record a KPI reading",
                who.id
            ),
            "run `tollgate watch` as an operator, or let the team server's guard do it",
        );
    }
    let in_canary = rollout.is_some_and(|r| {
        r.in_canary(&claim.cr_digest)
            && r.subject == claim.subject
            && r.environment == claim.environment
    });
    if !in_canary {
        return refuse(
            "not-in-canary",
            format!(
                "{} ({}) is not in canary: KPI readings are recorded for canaries only",
                claim.cr_id, claim.cr_digest
            ),
            "see `tollgate rollout --list`",
        );
    }
    let Some((verdict, breaches)) = derive_verdict(
        policy,
        &claim.subject,
        &claim.environment,
        claim.check_succeeded,
        &claim.values,
    ) else {
        return refuse(
            "no-kpi-guard",
            format!(
                "the policy names no KPI check for {}@{}",
                claim.subject, claim.environment
            ),
            "add a [[kpi]] table for the subject",
        );
    };
    if verdict != claim.verdict || breaches != claim.breaches {
        return refuse(
            "reading-verdict",
            format!(
                "the reading says {} ({}), but its values give {} ({}) under the policy in force",
                claim.verdict.as_str(),
                claim.breaches.join("; "),
                verdict.as_str(),
                breaches.join("; ")
            ),
            "record what the values conclude",
        );
    }
    check_signing_time(claim.at, now)
}

/// The incident id of the guard's rollback acting on the reading at `seq` of `cr_id`.
pub fn auto_incident(cr_id: &str, seq: u64) -> String {
    format!("AUTO-{cr_id}-{seq}")
}

/// The CR and reading position an `AUTO-…` incident names.
pub fn parse_auto_incident(incident: &str) -> Option<(&str, u64)> {
    let rest = incident.strip_prefix("AUTO-")?;
    let (cr, seq) = rest.rsplit_once('-')?;
    Some((cr, seq.parse().ok()?))
}

/// An authorisation under an `AUTO-…` incident must act on a regressed reading of a CR
/// in canary, signed by the same principal (the guard), rolling its subject back from
/// the canary's version to the one it replaced, once. `reading` is the entry the incident
/// names (its CR and what it read), looked up by the caller. Other incidents are not the
/// guard's and pass.
pub fn check_auto_rollback(
    rollouts: &Rollouts,
    reading: Option<(&str, &super::ReadingFact)>,
    a: &Authorisation,
) -> Result<(), Refusal> {
    if !a.incident.starts_with("AUTO-") {
        return Ok(());
    }
    let bad = |why: String| {
        refuse(
            "auto-rollback",
            format!("{} is not a guard rollback: {why}", a.incident),
            "AUTO- incidents are the KPI guard's; use your own incident ticket id",
        )
    };
    let Some((cr_id, seq)) = parse_auto_incident(&a.incident) else {
        return bad("it names no CR and reading".into());
    };
    let Some((id, reading)) = reading.filter(|(_, r)| r.seq == seq) else {
        return bad(format!("entry {seq} is not a KPI reading"));
    };
    let Some(r) = rollouts.of(id) else {
        return bad(format!("{id} has no rollout"));
    };
    if id != cr_id {
        return bad(format!("reading {seq} is about {id}, not {cr_id}"));
    }
    if reading.verdict != ReadingVerdict::Regressed {
        return bad(format!("reading {seq} found no regression"));
    }
    if rollouts.acted_on.contains(&seq) {
        return bad(format!("reading {seq} was already acted on"));
    }
    if reading.principal != a.principal {
        return bad(format!(
            "reading {seq} was signed by {}, the rollback by {}",
            reading.principal, a.principal
        ));
    }
    if r.rolled_back.is_some() {
        return bad(format!("{cr_id} was already rolled back"));
    }
    if a.subject != r.subject
        || a.environment != r.environment
        || a.from_version != r.to_version
        || Some(&a.to_version) != r.from_version.as_ref()
    {
        return bad(format!(
            "{cr_id} rolled out {}@{} {} → {}, the rollback names {}@{} {} → {}",
            r.subject,
            r.environment,
            r.from_version.as_deref().unwrap_or("-"),
            r.to_version,
            a.subject,
            a.environment,
            a.from_version,
            a.to_version
        ));
    }
    Ok(())
}

/// Checks a drill: by an operator or an on-call approver, outside production, running
/// exactly the policy's rollback command for the subject and environment.
pub fn check_drill(
    policy: &Policy,
    who: &Principal,
    claim: &DrillClaim,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if !who.has_role(OPERATOR_ROLE) && !policy.emergency.on_call.contains(&who.id) {
        return refuse(
            "drill-role",
            format!(
                "{} is neither an operator nor on call and cannot run a rollback drill",
                who.id
            ),
            "ask an operator or the on-call approver",
        );
    }
    if claim.environment == "prod" {
        return refuse(
            "drill-in-prod",
            "a drill never runs against prod".into(),
            "drill in staging (--env staging) or dev",
        );
    }
    let Some(command) = policy.rollback_command(&claim.subject, &claim.environment) else {
        return refuse(
            "no-rollback-command",
            format!(
                "the policy names no rollback command for {}@{}",
                claim.subject, claim.environment
            ),
            "add an [[emergency.rollback]] table that covers it",
        );
    };
    let want = command.render(&[
        ("subject", &claim.subject),
        ("environment", &claim.environment),
        ("from_version", &claim.from_version),
        ("to_version", &claim.to_version),
        ("incident", &claim.incident),
    ]);
    if want != claim.command {
        return refuse(
            "drill-command",
            format!(
                "the drill ran {:?}, but the policy's rollback command is {:?}",
                claim.command, want
            ),
            "a drill runs the policy's own rollback command",
        );
    }
    check_signing_time(claim.at, now)
}

/// An approval of `cr` at effective `risk`, signed at `at`, needs a successful drill of
/// its subject within the policy's window when the policy asks for one at that risk.
pub fn check_drill_requirement(
    policy: &Policy,
    cr: &ChangeRequest,
    risk: RiskLevel,
    rollouts: &Rollouts,
    at: DateTime<Utc>,
) -> Result<(), Refusal> {
    let Some(rule) = &policy.after.drills else {
        return Ok(());
    };
    if !rule.risks.contains(&risk) || !rule.gates.contains(&cr.gate) {
        return Ok(());
    }
    let subject = &cr.subject.name;
    let since = at - Duration::days(rule.within_days);
    match rollouts.last_good_drill(subject, at) {
        Some(d) if d.at >= since => Ok(()),
        last => refuse(
            "drill-required",
            format!(
                "{} ({} gate, {} risk) needs a successful rollback drill of {subject} within {} days; {}",
                cr.id,
                cr.gate,
                risk,
                rule.within_days,
                match last {
                    Some(d) => format!(
                        "the last was on {} ({} days ago)",
                        d.at.format("%Y-%m-%d"),
                        (at - d.at).num_days()
                    ),
                    None => "none is recorded".into(),
                }
            ),
            format!("run `tollgate drill {subject} --env staging`, then approve"),
        ),
    }
}
