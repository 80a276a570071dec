//! After approval: the operator's rollout stages, the KPI guard's readings, rollback
//! drills and freeze windows — the facts the log records and the rules every signer, the
//! server and `verify` hold them to.
//!
//! A rollout goes approved → `canary` → (observation window for the effective risk) →
//! `full`. Each stage is a signed entry by a principal holding `operator` who is not the
//! requester, bound to the exact approved revision. While a CR is in canary the KPI guard
//! records readings; a reading past a policy bound rolls the canary back through the
//! emergency path, under an incident `AUTO-<CR>-<reading seq>` that names the reading it
//! acts on. Drills run a subject's rollback command outside production and are the
//! evidence an approval at a high risk needs.

pub mod policy;
mod rules;
mod state;

pub use policy::{
    AfterApproval, DrillRule, Freeze, FreezeWhen, KpiGuard, ScopedCommand, Threshold,
};
pub use rules::{
    CrFacts, auto_incident, check_auto_rollback, check_drill, check_drill_requirement,
    check_not_backdated, check_reading, check_stage, derive_verdict, parse_auto_incident,
    window_opens,
};
pub use state::{CrRollout, DrillFact, Progress, ReadingFact, Rollouts, StageFact};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A rollout stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Part of the traffic, under observation.
    Canary,
    /// All of it.
    Full,
}

impl Stage {
    /// Spelling in records and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Canary => "canary",
            Stage::Full => "full",
        }
    }

    /// Parses a stage name.
    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "canary" => Some(Stage::Canary),
            "full" => Some(Stage::Full),
            _ => None,
        }
    }
}

/// What a command run for a stage or a drill did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunOutcome {
    /// Exit status; `None` when killed.
    pub exit_status: Option<i32>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// Run time in milliseconds.
    pub duration_ms: u64,
}

impl RunOutcome {
    /// Whether it succeeded.
    pub fn succeeded(&self) -> bool {
        self.exit_status == Some(0) && !self.timed_out
    }
}

/// A rollout stage as its entry claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageClaim {
    /// The CR.
    pub cr_id: String,
    /// The revision rolled out.
    pub cr_revision: u32,
    /// Its digest.
    pub cr_digest: String,
    /// Which stage.
    pub stage: Stage,
    /// Subject, environment and versions (as the revision names them).
    pub subject: String,
    /// Environment.
    pub environment: String,
    /// Version replaced.
    pub from_version: Option<String>,
    /// Version rolled out.
    pub to_version: String,
    /// Share of traffic, in %.
    pub traffic: u8,
    /// The deployment command's outcome, when the policy names one.
    pub deploy: Option<RunOutcome>,
    /// Who signed.
    pub principal: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl StageClaim {
    /// Whether the stage took place (no command, or the command succeeded).
    pub fn happened(&self) -> bool {
        self.deploy.as_ref().is_none_or(RunOutcome::succeeded)
    }
}

/// What a KPI reading concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadingVerdict {
    /// Every bound holds.
    Ok,
    /// A bound is breached: the canary is rolled back.
    Regressed,
    /// The check failed or did not report a bounded metric: nothing is concluded.
    Error,
}

impl ReadingVerdict {
    /// Spelling in records.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadingVerdict::Ok => "ok",
            ReadingVerdict::Regressed => "regressed",
            ReadingVerdict::Error => "error",
        }
    }

    /// Parses a verdict.
    pub fn parse(s: &str) -> Option<ReadingVerdict> {
        [
            ReadingVerdict::Ok,
            ReadingVerdict::Regressed,
            ReadingVerdict::Error,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A KPI reading as its entry claims it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingClaim {
    /// The CR in canary.
    pub cr_id: String,
    /// Its digest.
    pub cr_digest: String,
    /// Subject.
    pub subject: String,
    /// Environment.
    pub environment: String,
    /// Whether the check command succeeded.
    pub check_succeeded: bool,
    /// The values it printed, as `(metric, value)`.
    pub values: Vec<(String, f64)>,
    /// The verdict recorded.
    pub verdict: ReadingVerdict,
    /// The breaches recorded, in words.
    pub breaches: Vec<String>,
    /// Who signed.
    pub principal: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A rollback drill as its entry claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillClaim {
    /// Subject drilled.
    pub subject: String,
    /// Non-production environment.
    pub environment: String,
    /// The versions passed to the rollback command.
    pub from_version: String,
    /// Version rolled back to.
    pub to_version: String,
    /// Drill id passed as `{incident}`.
    pub incident: String,
    /// The command run.
    pub command: Vec<String>,
    /// What it did.
    pub outcome: RunOutcome,
    /// Who ran it.
    pub principal: String,
    /// When it finished.
    pub at: DateTime<Utc>,
}

/// The role that records rollout stages.
pub const OPERATOR_ROLE: &str = "operator";
