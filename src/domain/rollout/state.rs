//! The rollout facts derived from the log, in log order: each CR's stages, readings and
//! rollback; every drill. The workflow reads them before signing, the server before
//! appending and `verify` as it walks.

use super::{DrillClaim, ReadingClaim, ReadingVerdict, RunOutcome, Stage, StageClaim};
use crate::domain::emergency::Authorisation;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// One recorded stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageFact {
    /// Log position.
    pub seq: u64,
    /// Which stage.
    pub stage: Stage,
    /// The revision's digest.
    pub cr_digest: String,
    /// Share of traffic.
    pub traffic: u8,
    /// Who signed.
    pub principal: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The deployment command's outcome, if one ran.
    pub deploy: Option<RunOutcome>,
}

impl StageFact {
    /// Whether the stage took place.
    pub fn happened(&self) -> bool {
        self.deploy.as_ref().is_none_or(RunOutcome::succeeded)
    }
}

/// One recorded KPI reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadingFact {
    /// Log position.
    pub seq: u64,
    /// The values read.
    pub values: Vec<(String, f64)>,
    /// What it concluded.
    pub verdict: ReadingVerdict,
    /// Breaches in words.
    pub breaches: Vec<String>,
    /// Who signed.
    pub principal: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The rollback that ended a CR's rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolledBackBy {
    /// Incident id (`AUTO-…` for the guard).
    pub incident: String,
    /// Who authorised it.
    pub principal: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Log position of the authorisation.
    pub seq: u64,
}

/// One CR's rollout as the log tells it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CrRollout {
    /// Subject.
    pub subject: String,
    /// Environment.
    pub environment: String,
    /// Version rolled out.
    pub to_version: String,
    /// Version it replaced.
    pub from_version: Option<String>,
    /// Stages in log order (failed attempts included).
    pub stages: Vec<StageFact>,
    /// KPI readings in log order.
    pub readings: Vec<ReadingFact>,
    /// The rollback that ended it.
    pub rolled_back: Option<RolledBackBy>,
}

impl CrRollout {
    /// The last stage of `digest` that took place.
    pub fn last_stage(&self, digest: &str) -> Option<&StageFact> {
        self.stages
            .iter()
            .rev()
            .find(|s| s.happened() && s.cr_digest == digest)
    }

    /// The stage `stage` of `digest`, if it took place.
    pub fn stage(&self, digest: &str, stage: Stage) -> Option<&StageFact> {
        self.stages
            .iter()
            .find(|s| s.happened() && s.cr_digest == digest && s.stage == stage)
    }

    /// Whether `digest` is in canary: canary took place, full did not, no rollback.
    pub fn in_canary(&self, digest: &str) -> bool {
        self.rolled_back.is_none()
            && self.stage(digest, Stage::Canary).is_some()
            && self.stage(digest, Stage::Full).is_none()
    }

    /// Where it stands, once a stage took place.
    pub fn progress(&self) -> Option<Progress> {
        if self.rolled_back.is_some() {
            return Some(Progress::RolledBack);
        }
        let last = self.stages.iter().rev().find(|s| s.happened())?;
        Some(match last.stage {
            Stage::Canary => Progress::Canary(last.traffic),
            Stage::Full => Progress::Full,
        })
    }

    /// The current word in a few letters: `canary 25%`, `full`, `rolled back`.
    pub fn label(&self) -> Option<String> {
        self.progress().map(|p| p.to_string())
    }
}

/// Where a rollout stands: what views sort by and colour, and what they print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// In canary, at this share of traffic.
    Canary(u8),
    /// Fully rolled out.
    Full,
    /// Rolled back (by a person or the KPI guard).
    RolledBack,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Progress::Canary(traffic) => write!(f, "canary {traffic}%"),
            Progress::Full => f.write_str("full"),
            Progress::RolledBack => f.write_str("rolled back"),
        }
    }
}

/// One recorded drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillFact {
    /// Log position.
    pub seq: u64,
    /// Subject.
    pub subject: String,
    /// Environment.
    pub environment: String,
    /// Who ran it.
    pub principal: String,
    /// When it finished.
    pub at: DateTime<Utc>,
    /// What the rollback command did.
    pub outcome: RunOutcome,
    /// `sha256:` of its output.
    pub output_digest: String,
}

/// Every rollout and drill recorded so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rollouts {
    /// By CR id.
    pub crs: BTreeMap<String, CrRollout>,
    /// Drills in log order.
    pub drills: Vec<DrillFact>,
    /// Reading positions the guard already acted on.
    pub acted_on: Vec<u64>,
}

impl Rollouts {
    /// The rollout of `cr_id`, if any stage was recorded.
    pub fn of(&self, cr_id: &str) -> Option<&CrRollout> {
        self.crs.get(cr_id)
    }

    /// Applies an accepted stage.
    pub fn after_stage(&mut self, seq: u64, c: &StageClaim) {
        let r = self.crs.entry(c.cr_id.clone()).or_default();
        r.subject.clone_from(&c.subject);
        r.environment.clone_from(&c.environment);
        r.to_version.clone_from(&c.to_version);
        r.from_version.clone_from(&c.from_version);
        r.stages.push(StageFact {
            seq,
            stage: c.stage,
            cr_digest: c.cr_digest.clone(),
            traffic: c.traffic,
            principal: c.principal.clone(),
            at: c.at,
            deploy: c.deploy.clone(),
        });
    }

    /// Applies an accepted reading.
    pub fn after_reading(&mut self, seq: u64, c: &ReadingClaim) {
        if let Some(r) = self.crs.get_mut(&c.cr_id) {
            r.readings.push(ReadingFact {
                seq,
                values: c.values.clone(),
                verdict: c.verdict,
                breaches: c.breaches.clone(),
                principal: c.principal.clone(),
                at: c.at,
            });
        }
    }

    /// Applies an accepted drill.
    pub fn after_drill(&mut self, seq: u64, c: &DrillClaim, output_digest: &str) {
        self.drills.push(DrillFact {
            seq,
            subject: c.subject.clone(),
            environment: c.environment.clone(),
            principal: c.principal.clone(),
            at: c.at,
            outcome: c.outcome.clone(),
            output_digest: output_digest.into(),
        });
    }

    /// Applies an accepted emergency authorisation (log position `seq`): a rollback of a
    /// subject from the version a CR rolled out ends that CR's rollout.
    pub fn after_authorisation(&mut self, seq: u64, a: &Authorisation) {
        if let Some(reading) = super::parse_auto_incident(&a.incident).map(|(_, s)| s) {
            self.acted_on.push(reading);
        }
        for r in self.crs.values_mut() {
            if r.rolled_back.is_none()
                && r.subject == a.subject
                && r.environment == a.environment
                && r.to_version == a.from_version
                && r.stages.iter().any(StageFact::happened)
            {
                r.rolled_back = Some(RolledBackBy {
                    incident: a.incident.clone(),
                    principal: a.principal.clone(),
                    at: a.at,
                    seq,
                });
            }
        }
    }

    /// The last successful drill of `subject` (any environment) at or before `at`.
    pub fn last_good_drill(&self, subject: &str, at: DateTime<Utc>) -> Option<&DrillFact> {
        self.drills
            .iter()
            .rev()
            .find(|d| d.subject == subject && d.outcome.succeeded() && d.at <= at)
    }

    /// The last drill of `subject`, successful or not.
    pub fn last_drill(&self, subject: &str) -> Option<&DrillFact> {
        self.drills.iter().rev().find(|d| d.subject == subject)
    }

    /// The reading at `seq`, with its CR.
    pub fn reading(&self, seq: u64) -> Option<(&str, &CrRollout, &ReadingFact)> {
        self.crs.iter().find_map(|(id, r)| {
            r.readings
                .iter()
                .find(|x| x.seq == seq)
                .map(|x| (id.as_str(), r, x))
        })
    }
}
