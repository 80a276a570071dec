//! The risk matrix: computing a CR's rating from its metrics and flags.
//!
//! Requesters tend to declare the rating they hope for. tollgate computes one from the
//! evidence (largest relative metric shift and the risk flags, with the policy's
//! thresholds), shows both, and applies the higher, listing the reasons so a reviewer
//! can see *why* a "medium" change is treated as high.

pub use crate::domain::change_request::RiskLevel;
use crate::domain::change_request::{ChangeRequest, Direction};
use crate::domain::policy::RiskPolicy;
use serde::Serialize;
use std::fmt;

/// One factor that contributed to the computed rating.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RiskReason {
    /// A metric moved by `shift_pct` percent relative to its baseline.
    MetricShift {
        /// Metric name.
        metric: String,
        /// Signed relative change in percent; `None` when the baseline is zero.
        shift_pct: Option<f64>,
        /// Whether the move is an improvement in the metric's own direction.
        improved: bool,
        /// The level this shift alone implies.
        level: RiskLevel,
    },
    /// A declared risk flag that the policy rates.
    Flag {
        /// The flag as written in the CR.
        flag: String,
        /// The level the policy gives it.
        level: RiskLevel,
    },
}

impl RiskReason {
    /// The level this factor alone implies.
    pub fn level(&self) -> RiskLevel {
        match self {
            RiskReason::MetricShift { level, .. } | RiskReason::Flag { level, .. } => *level,
        }
    }
}

impl fmt::Display for RiskReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RiskReason::MetricShift {
                metric,
                shift_pct: Some(pct),
                ..
            } => write!(f, "{metric} {pct:+.1} %"),
            RiskReason::MetricShift {
                metric,
                shift_pct: None,
                ..
            } => write!(f, "{metric} moved from a zero baseline"),
            RiskReason::Flag { flag, .. } => write!(f, "flag {flag}"),
        }
    }
}

/// The rating tollgate applies, with both sides and the reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskAssessment {
    /// Rating computed from the evidence.
    pub computed: RiskLevel,
    /// Rating the requester declared.
    pub declared: RiskLevel,
    /// The higher of the two; decides sign-offs and observation window.
    pub effective: RiskLevel,
    /// Factors at the computed level (those that decided it), strongest first.
    pub reasons: Vec<RiskReason>,
    /// Flags the policy does not rate; shown so a typo in a flag is noticed.
    pub unrated_flags: Vec<String>,
}

/// Relative change from `baseline` to `candidate` in percent; `None` for a zero baseline
/// with a non-zero candidate (an unbounded shift).
pub fn relative_shift_pct(baseline: f64, candidate: f64) -> Option<f64> {
    if baseline == 0.0 {
        return (candidate == 0.0).then_some(0.0);
    }
    Some((candidate - baseline) / baseline.abs() * 100.0)
}

/// Tolerance for comparing a computed shift with a threshold: 1.0 % computed as
/// 1.0000000000002 % must still count as "within 1 %".
const EPSILON_PCT: f64 = 1e-9;

/// The level a shift of `pct` percent (either direction) implies.
pub fn level_for_shift(pct: Option<f64>, policy: &RiskPolicy) -> RiskLevel {
    match pct.map(f64::abs) {
        None => RiskLevel::High,
        Some(p) if p <= policy.low_max_shift_pct + EPSILON_PCT => RiskLevel::Low,
        Some(p) if p <= policy.medium_max_shift_pct + EPSILON_PCT => RiskLevel::Medium,
        Some(_) => RiskLevel::High,
    }
}

/// The factor that rates every `policy`-gate CR high.
pub const POLICY_CHANGE_FLAG: &str = "policy_change";

/// Computes the rating of `cr` under `policy`.
pub fn assess(cr: &ChangeRequest, policy: &RiskPolicy) -> RiskAssessment {
    let mut factors: Vec<RiskReason> = Vec::new();
    let mut unrated_flags = Vec::new();
    for m in &cr.metrics {
        let shift = relative_shift_pct(m.baseline, m.candidate);
        let improved = match m.better {
            Direction::Higher => m.candidate >= m.baseline,
            Direction::Lower => m.candidate <= m.baseline,
        };
        factors.push(RiskReason::MetricShift {
            metric: m.name.clone(),
            shift_pct: shift,
            improved,
            level: level_for_shift(shift, policy),
        });
    }
    if cr.gate == crate::domain::change_request::Gate::Policy {
        // Changing who may sign what is always high risk, whatever the proposal declares.
        factors.push(RiskReason::Flag {
            flag: POLICY_CHANGE_FLAG.into(),
            level: RiskLevel::High,
        });
    }
    for flag in &cr.risk.flags {
        let level = if policy.high_flags.contains(flag) {
            RiskLevel::High
        } else if policy.medium_flags.contains(flag) {
            RiskLevel::Medium
        } else {
            unrated_flags.push(flag.clone());
            continue;
        };
        factors.push(RiskReason::Flag {
            flag: flag.clone(),
            level,
        });
    }
    let computed = factors
        .iter()
        .map(RiskReason::level)
        .max()
        .unwrap_or(RiskLevel::Low);
    // Flags first, then metric shifts from the largest; only those at the deciding level.
    let mut reasons: Vec<RiskReason> = factors
        .into_iter()
        .filter(|f| f.level() == computed)
        .collect();
    reasons.sort_by(|a, b| {
        let key = |r: &RiskReason| match r {
            RiskReason::Flag { .. } => (0, 0.0),
            RiskReason::MetricShift { shift_pct, .. } => {
                (1, -shift_pct.map_or(f64::INFINITY, f64::abs))
            }
        };
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
    });
    // For a low rating the reasons are the (small) shifts themselves, so the reviewer
    // still sees how little moved.
    RiskAssessment {
        computed,
        declared: cr.risk.declared,
        effective: computed.max(cr.risk.declared),
        reasons,
        unrated_flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;

    fn policy() -> RiskPolicy {
        demo::policy().risk
    }

    #[test]
    fn shift_thresholds_follow_the_policy_in_both_directions() {
        let p = policy();
        assert_eq!(level_for_shift(Some(1.0), &p), RiskLevel::Low);
        assert_eq!(level_for_shift(Some(-1.0), &p), RiskLevel::Low);
        assert_eq!(level_for_shift(Some(1.01), &p), RiskLevel::Medium);
        assert_eq!(level_for_shift(Some(-5.0), &p), RiskLevel::Medium);
        assert_eq!(level_for_shift(Some(5.01), &p), RiskLevel::High);
        assert_eq!(level_for_shift(None, &p), RiskLevel::High);
        let strict = RiskPolicy {
            low_max_shift_pct: 0.1,
            medium_max_shift_pct: 0.5,
            ..p
        };
        assert_eq!(level_for_shift(Some(1.0), &strict), RiskLevel::High);
    }

    #[test]
    fn zero_baselines_do_not_divide_by_zero() {
        assert_eq!(relative_shift_pct(0.0, 0.0), Some(0.0));
        assert_eq!(relative_shift_pct(0.0, 0.1), None);
        let s = relative_shift_pct(-2.0, -1.0).unwrap();
        assert!((s - 50.0).abs() < 1e-9);
    }

    #[test]
    fn declared_rating_wins_when_higher() {
        let mut cr = demo::change_requests().remove(3); // CR-1045, computed low
        assert_eq!(cr.id, "CR-1045");
        cr.risk.declared = RiskLevel::High;
        let a = assess(&cr, &policy());
        assert_eq!(a.computed, RiskLevel::Low);
        assert_eq!(a.effective, RiskLevel::High);
    }

    #[test]
    fn unknown_flags_are_listed_not_rated() {
        let mut cr = demo::change_requests().remove(3);
        cr.risk.flags = vec!["new_data_sorce".into()];
        let a = assess(&cr, &policy());
        assert_eq!(a.computed, RiskLevel::Low);
        assert_eq!(a.unrated_flags, ["new_data_sorce"]);
    }
}
