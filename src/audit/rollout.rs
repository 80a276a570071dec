//! Signed after-approval records in the log: `rollout-stage` (an operator's canary or
//! full rollout of an approved revision, with the deployment command's outcome),
//! `kpi-reading` (the guard's reading of a canary: the values, and the verdict they give
//! under the policy) and `drill` (a rollback command run outside production, timed).
//! Like decisions, each is canonical JSON signed over its exact bytes and chained; the
//! typed parsers here are the ones the server and `verify` judge them with.

use super::canonical::to_canonical_string;
use super::log::EntryKind;
use crate::domain::rollout::{
    DrillClaim, ReadingClaim, ReadingVerdict, RunOutcome, Stage, StageClaim,
};
use serde::{Deserialize, Serialize};

/// What a command run for the record did (the same fields as a rollback's outcome).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRecord {
    /// The argument vector run (placeholders filled in).
    pub command: Vec<String>,
    /// Exit status; `None` when killed.
    pub exit_status: Option<i32>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// Run time in milliseconds.
    pub duration_ms: u64,
    /// `sha256:` of everything it printed.
    pub output_digest: String,
    /// The last lines it printed.
    pub output_tail: String,
}

impl CommandRecord {
    fn outcome(&self) -> RunOutcome {
        RunOutcome {
            exit_status: self.exit_status,
            timed_out: self.timed_out,
            duration_ms: self.duration_ms,
        }
    }
}

/// The signed body of a `rollout-stage` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRecord {
    /// Always `rollout-stage`.
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
    /// The revision rolled out.
    pub cr_revision: u32,
    /// Its digest.
    pub cr_digest: String,
    /// `canary` or `full`.
    pub stage: String,
    /// Subject.
    pub subject: String,
    /// Environment.
    pub environment: String,
    /// Version replaced.
    pub from_version: Option<String>,
    /// Version rolled out.
    pub to_version: String,
    /// Share of traffic in %.
    pub traffic: u8,
    /// The operator's note.
    pub note: String,
    /// The deployment command's run, when the policy names one.
    pub deploy: Option<CommandRecord>,
    /// Who signed.
    pub principal: String,
    /// Key used.
    pub key_fingerprint: String,
    /// Digest of the policy in force.
    pub policy_digest: String,
    /// When.
    pub at: String,
}

/// One value a KPI check printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiValue {
    /// Metric name.
    pub metric: String,
    /// The value as printed (text, so no float is re-encoded).
    pub value: String,
}

/// The signed body of a `kpi-reading` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadingRecord {
    /// Always `kpi-reading`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Body format version.
    pub format: u32,
    /// Position in the log.
    pub seq: u64,
    /// Hash of the previous entry.
    pub prev: Option<String>,
    /// The CR in canary.
    pub cr_id: String,
    /// Its digest.
    pub cr_digest: String,
    /// Subject.
    pub subject: String,
    /// Environment.
    pub environment: String,
    /// The check command's run.
    pub check: CommandRecord,
    /// The values it printed.
    pub values: Vec<KpiValue>,
    /// `ok`, `regressed` or `error`.
    pub verdict: String,
    /// The bounds breached (or what is missing), in words.
    pub breaches: Vec<String>,
    /// Who signed (an operator, or the server's guard).
    pub principal: String,
    /// Key used.
    pub key_fingerprint: String,
    /// Digest of the policy in force.
    pub policy_digest: String,
    /// When.
    pub at: String,
}

/// The signed body of a `drill` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillRecord {
    /// Always `drill`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Body format version.
    pub format: u32,
    /// Position in the log.
    pub seq: u64,
    /// Hash of the previous entry.
    pub prev: Option<String>,
    /// Subject drilled.
    pub subject: String,
    /// Non-production environment.
    pub environment: String,
    /// Version passed as `{from_version}`.
    pub from_version: String,
    /// Version passed as `{to_version}`.
    pub to_version: String,
    /// Drill id passed as `{incident}`.
    pub incident: String,
    /// The rollback command's run.
    pub run: CommandRecord,
    /// Who ran it.
    pub principal: String,
    /// Key used.
    pub key_fingerprint: String,
    /// Digest of the policy in force.
    pub policy_digest: String,
    /// When it finished.
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
body_fn!(StageRecord);
body_fn!(ReadingRecord);
body_fn!(DrillRecord);

pub use super::emergency::MalformedRecord;
use super::emergency::{time, typed as parse};

/// One after-approval entry's claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// `rollout-stage`.
    Stage(StageClaim),
    /// `kpi-reading`.
    Reading(ReadingClaim),
    /// `drill` (with its output digest).
    Drill(DrillClaim, String),
}

impl Claim {
    /// Who signed it.
    pub fn principal(&self) -> &str {
        match self {
            Claim::Stage(c) => &c.principal,
            Claim::Reading(c) => &c.principal,
            Claim::Drill(c, _) => &c.principal,
        }
    }

    /// When it says it was signed.
    pub fn at(&self) -> chrono::DateTime<chrono::Utc> {
        match self {
            Claim::Stage(c) => c.at,
            Claim::Reading(c) => c.at,
            Claim::Drill(c, _) => c.at,
        }
    }
}

/// Reads an after-approval body as the claim the rules judge, with the policy digest it
/// names.
pub fn claim_of(kind: EntryKind, body: &str) -> Result<(Claim, String), MalformedRecord> {
    let bad = |detail: String| MalformedRecord {
        kind: kind.as_str(),
        detail,
    };
    match kind {
        EntryKind::RolloutStage => {
            let r: StageRecord = parse(kind, body)?;
            let stage = Stage::parse(&r.stage)
                .ok_or_else(|| bad(format!("stage {:?} is neither canary nor full", r.stage)))?;
            Ok((
                Claim::Stage(StageClaim {
                    at: time(kind, "at", &r.at)?,
                    cr_id: r.cr_id,
                    cr_revision: r.cr_revision,
                    cr_digest: r.cr_digest,
                    stage,
                    subject: r.subject,
                    environment: r.environment,
                    from_version: r.from_version,
                    to_version: r.to_version,
                    traffic: r.traffic,
                    deploy: r.deploy.as_ref().map(CommandRecord::outcome),
                    principal: r.principal,
                }),
                r.policy_digest,
            ))
        }
        EntryKind::KpiReading => {
            let r: ReadingRecord = parse(kind, body)?;
            let verdict = ReadingVerdict::parse(&r.verdict).ok_or_else(|| {
                bad(format!(
                    "verdict {:?} is not ok, regressed or error",
                    r.verdict
                ))
            })?;
            let mut values = Vec::with_capacity(r.values.len());
            for v in &r.values {
                let n: f64 = v
                    .value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| bad(format!("{}: {:?} is not a number", v.metric, v.value)))?;
                values.push((v.metric.clone(), n));
            }
            Ok((
                Claim::Reading(ReadingClaim {
                    at: time(kind, "at", &r.at)?,
                    check_succeeded: r.check.exit_status == Some(0) && !r.check.timed_out,
                    cr_id: r.cr_id,
                    cr_digest: r.cr_digest,
                    subject: r.subject,
                    environment: r.environment,
                    values,
                    verdict,
                    breaches: r.breaches,
                    principal: r.principal,
                }),
                r.policy_digest,
            ))
        }
        EntryKind::Drill => {
            let r: DrillRecord = parse(kind, body)?;
            Ok((
                Claim::Drill(
                    DrillClaim {
                        at: time(kind, "at", &r.at)?,
                        outcome: r.run.outcome(),
                        subject: r.subject,
                        environment: r.environment,
                        from_version: r.from_version,
                        to_version: r.to_version,
                        incident: r.incident,
                        command: r.run.command,
                        principal: r.principal,
                    },
                    r.run.output_digest,
                ),
                r.policy_digest,
            ))
        }
        _ => Err(bad("not an after-approval entry kind".into())),
    }
}

/// Applies an accepted claim at log position `seq` to the rollouts.
pub fn apply(rollouts: &mut crate::domain::rollout::Rollouts, seq: u64, claim: &Claim) {
    match claim {
        Claim::Stage(c) => rollouts.after_stage(seq, c),
        Claim::Reading(c) => rollouts.after_reading(seq, c),
        Claim::Drill(c, digest) => rollouts.after_drill(seq, c, digest),
    }
}

/// The rollouts and drills the operations entries make up, in log order. Readers skip an
/// entry that does not read (`verify` names it); the rules were applied when it was
/// appended and are applied again by `verify`.
pub fn derive(entries: &[super::log::LogEntry]) -> crate::domain::rollout::Rollouts {
    derive_where(entries, |_| true)
}

/// [`derive`] for one CR's rollout only: its own stages and readings and the
/// authorisations that may end it, found by the CR column without parsing the rest (a
/// guard reading every canary every ten minutes writes most of the operations entries,
/// and each new one is checked against its own CR's only).
pub fn derive_for(
    entries: &[super::log::LogEntry],
    cr_id: &str,
) -> crate::domain::rollout::Rollouts {
    derive_where(entries, |e| {
        e.cr_id.as_deref() == Some(cr_id) || e.kind == EntryKind::EmergencyAuthorised.as_str()
    })
}

fn derive_where(
    entries: &[super::log::LogEntry],
    keep: impl Fn(&super::log::LogEntry) -> bool,
) -> crate::domain::rollout::Rollouts {
    let mut out = crate::domain::rollout::Rollouts::default();
    for e in entries.iter().filter(|e| keep(e)) {
        let Some(kind) = EntryKind::parse(&e.kind) else {
            continue;
        };
        if kind == EntryKind::EmergencyAuthorised {
            if let Ok(crate::domain::emergency::Claim::Authorise(a)) =
                super::emergency::claim_of(kind, &e.body)
            {
                out.after_authorisation(e.seq, &a);
            }
        } else if EntryKind::AFTER_APPROVAL.contains(&kind)
            && let Ok((claim, _)) = claim_of(kind, &e.body)
        {
            apply(&mut out, e.seq, &claim);
        }
    }
    out
}
