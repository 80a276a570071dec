//! The emergency gate: rollback targets, who may bypass review, and the exceptions a
//! bypass opens, derived from the log.
//!
//! An on-call approver may authorise a rollback without normal review. That opens an
//! *exception*: who, why, which incident, when it expires (the policy's exception
//! lifetime) and when the post-incident review is due. While it is open, further rollbacks
//! on the same incident are linked to it; once expired it cannot be reused — a new bypass
//! needs a new authorisation. A post-incident review signed by a lead closes it. Overdue
//! reviews are loud everywhere.

mod live;
mod rules;

pub use live::{LiveVersions, RolledBack, SubjectChange};
pub use rules::{
    Authorisation, Claim, Outcome, ReviewClaim, apply, check_claim, check_link,
    check_rollback_fields, check_signing_time,
};

use crate::domain::change_request::ChangeRequest;
use crate::domain::policy::{Policy, Principal};
use crate::domain::rules::Refusal;
use crate::domain::status::Status;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// A model or dataset in one environment, as the CRs describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectState {
    /// Subject name, e.g. `recommender`.
    pub name: String,
    /// Environment.
    pub environment: String,
    /// The version the latest CR brings (what is live or rolling out).
    pub current: String,
    /// The version to roll back to: the one the latest CR replaced.
    pub last_good: Option<String>,
    /// The latest CR for this subject and environment.
    pub latest_cr: String,
    /// Its status.
    pub latest_status: Status,
    /// When that CR was created (recent subjects are listed first).
    pub updated_at: DateTime<Utc>,
    /// Why `current` is taken to be live.
    pub basis: LiveBasis,
}

/// Why a subject's current version is taken to be live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LiveBasis {
    /// The latest CR that brings it is approved.
    Approved,
    /// Only inferred from a CR that is not approved (e.g. a canary under review): kept on
    /// offer, since it may be serving traffic, but said to be an assumption.
    Assumed,
    /// An emergency rollback made it live.
    RolledBack {
        /// The version it rolled back from.
        from_version: String,
        /// Incident ticket.
        incident: String,
        /// Who authorised it.
        principal: String,
    },
}

impl LiveBasis {
    /// What the latest CR's status says (before any rollback is taken into account).
    pub fn of_latest_cr(status: Status) -> LiveBasis {
        if status == Status::Approved {
            LiveBasis::Approved
        } else {
            LiveBasis::Assumed
        }
    }
}

impl SubjectState {
    /// What one CR says about its subject; nothing for a policy change, which deploys
    /// nothing and is never rolled back through the emergency gate.
    pub fn from_cr(cr: &ChangeRequest, status: Status) -> Option<SubjectState> {
        if cr.gate == crate::domain::change_request::Gate::Policy {
            return None;
        }
        let s = &cr.subject;
        Some(SubjectState {
            name: s.name.clone(),
            environment: s.environment.as_str().to_string(),
            current: s.to_version.clone(),
            last_good: s.from_version.clone(),
            latest_cr: cr.id.clone(),
            latest_status: status,
            updated_at: cr.created_at,
            basis: LiveBasis::of_latest_cr(status),
        })
    }

    /// One line on why `current` is taken to be live.
    pub fn basis_text(&self) -> String {
        match &self.basis {
            LiveBasis::Approved => format!("{} approved", self.latest_cr),
            LiveBasis::Assumed => format!(
                "assumed live ({} {})",
                self.latest_cr,
                self.latest_status.as_str()
            ),
            LiveBasis::RolledBack {
                from_version,
                incident,
                ..
            } => format!("rolled back from {from_version} for {incident}"),
        }
    }
}

/// The subjects after the emergency rollbacks that are the latest word on them: the
/// version rolled back to is current, and the one before it is not known.
pub fn after_rollbacks(mut subjects: Vec<SubjectState>, live: &LiveVersions) -> Vec<SubjectState> {
    for s in &mut subjects {
        if let Some(r) = live.get(&s.name, &s.environment) {
            s.current = r.to_version.clone();
            s.last_good = None;
            s.basis = LiveBasis::RolledBack {
                from_version: r.from_version.clone(),
                incident: r.incident.clone(),
                principal: r.principal.clone(),
            };
        }
    }
    subjects
}

/// Subjects known from CRs (one [`SubjectState`] per CR), keeping the latest CR per
/// subject and environment; most recently changed first, production first when equal.
pub fn subjects(per_cr: impl IntoIterator<Item = SubjectState>) -> Vec<SubjectState> {
    let mut latest: Vec<SubjectState> = Vec::new();
    for state in per_cr {
        match latest
            .iter_mut()
            .find(|x| x.name == state.name && x.environment == state.environment)
        {
            Some(existing) if existing.updated_at < state.updated_at => *existing = state,
            Some(_) => {}
            None => latest.push(state),
        }
    }
    latest.sort_by(|a, b| {
        b.updated_at
            .cmp(&a.updated_at)
            .then_with(|| (b.environment == "prod").cmp(&(a.environment == "prod")))
            .then_with(|| a.name.cmp(&b.name))
    });
    latest
}

/// Whether `who` may authorise an emergency: on the policy's on-call roster.
pub fn check_on_call(policy: &Policy, who: &Principal) -> Result<(), Refusal> {
    if policy.emergency.on_call.contains(&who.id) {
        return Ok(());
    }
    let roster: Vec<String> = policy
        .emergency
        .on_call
        .iter()
        .map(|id| match policy.principal(id) {
            Some(p) => format!("{} ({})", p.name, p.id),
            None => id.clone(),
        })
        .collect();
    Err(Refusal {
        rule: "on-call-only",
        message: format!(
            "{} is not on the on-call roster and cannot bypass review",
            who.id
        ),
        remedy: format!("call the on-call approver: {}", roster.join(", ")),
    })
}

/// Whether `who` may sign a post-incident review.
pub fn check_reviewer(policy: &Policy, who: &Principal) -> Result<(), Refusal> {
    let roles = &policy.emergency.post_review_roles;
    if roles.iter().any(|r| who.has_role(r)) {
        return Ok(());
    }
    let leads: Vec<&str> = policy
        .principals
        .iter()
        .filter(|p| roles.iter().any(|r| p.has_role(r)))
        .map(|p| p.id.as_str())
        .collect();
    Err(Refusal {
        rule: "review-role",
        message: format!(
            "{} does not hold a post-incident review role ({})",
            who.id,
            roles.join(", ")
        ),
        remedy: format!("ask one of: {}", leads.join(", ")),
    })
}

/// The time limits a new bypass gets.
pub fn exception_terms(
    policy: &Policy,
    opened_at: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        opened_at + Duration::hours(policy.emergency.exception_hours),
        opened_at + Duration::hours(policy.emergency.post_review_hours),
    )
}

/// Where an exception stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExceptionState {
    /// Within its lifetime: further rollbacks on the incident link to it.
    Active,
    /// Past its lifetime, review not yet due.
    Expired,
    /// Review deadline passed without a review.
    ReviewOverdue,
    /// Closed by a post-incident review.
    Closed,
}

/// One rollback performed under an exception.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackSummary {
    /// Log hash of the authorisation.
    pub authorisation: String,
    /// Who authorised it.
    pub principal: String,
    /// Subject and environment.
    pub subject: String,
    /// `name@env`.
    pub environment: String,
    /// Version rolled back from.
    pub from_version: String,
    /// Version rolled back to.
    pub to_version: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Outcome of the rollback command, if one ran: exit status (None when killed).
    pub outcome: Option<RollbackOutcome>,
}

/// What the rollback command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackOutcome {
    /// Exit status; `None` when it was killed (timeout).
    pub exit_status: Option<i32>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
}

impl RollbackOutcome {
    /// Whether the command succeeded.
    pub fn succeeded(&self) -> bool {
        self.exit_status == Some(0) && !self.timed_out
    }
}

/// A post-incident review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    /// The lead who signed it.
    pub principal: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Root cause.
    pub root_cause: String,
    /// Follow-up actions.
    pub follow_ups: String,
    /// Policy changes decided.
    pub policy_changes: String,
}

/// An exception opened by an emergency bypass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exception {
    /// Log hash of the authorisation that opened it (its identity).
    pub id: String,
    /// Incident ticket.
    pub incident: String,
    /// Who opened it.
    pub opened_by: String,
    /// Why.
    pub reason: String,
    /// When it opened.
    pub opened_at: DateTime<Utc>,
    /// When the bypass stops being usable.
    pub expires_at: DateTime<Utc>,
    /// When the post-incident review is due.
    pub review_due: DateTime<Utc>,
    /// Rollbacks under it, in order.
    pub rollbacks: Vec<RollbackSummary>,
    /// The review that closed it.
    pub review: Option<Review>,
}

impl Exception {
    /// State at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> ExceptionState {
        if self.review.is_some() {
            ExceptionState::Closed
        } else if now > self.review_due {
            ExceptionState::ReviewOverdue
        } else if now > self.expires_at {
            ExceptionState::Expired
        } else {
            ExceptionState::Active
        }
    }
}

/// Time left until a deadline, or how far past it ("overdue …"): for review deadlines.
pub fn countdown(deadline: DateTime<Utc>, now: DateTime<Utc>) -> String {
    match span(deadline, now) {
        (false, text) => text,
        (true, text) => format!("overdue {text}"),
    }
}

/// Time left until the bypass lapses, or how long ago it did ("expired … ago"): an
/// expired bypass is not overdue, it simply no longer covers a new rollback.
pub fn expiry(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    match span(expires_at, now) {
        (false, text) => text,
        (true, text) => format!("expired {text} ago"),
    }
}

/// Whether `deadline` is past, and the distance in words.
fn span(deadline: DateTime<Utc>, now: DateTime<Utc>) -> (bool, String) {
    let (past, d) = if deadline >= now {
        (false, deadline - now)
    } else {
        (true, now - deadline)
    };
    let minutes = d.num_minutes();
    let text = if minutes >= 48 * 60 {
        format!("{}d {}h", minutes / (24 * 60), (minutes / 60) % 24)
    } else {
        format!("{}h {:02}m", minutes / 60, minutes % 60)
    };
    (past, text)
}

/// Exceptions whose review is overdue at `now`.
pub fn overdue(exceptions: &[Exception], now: DateTime<Utc>) -> Vec<&Exception> {
    exceptions
        .iter()
        .filter(|e| e.state(now) == ExceptionState::ReviewOverdue)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap() + Duration::hours(h)
    }

    fn exception() -> Exception {
        let policy = demo::policy();
        let (expires_at, review_due) = exception_terms(&policy, t(0));
        Exception {
            id: "sha256:x".into(),
            incident: "INC-2291".into(),
            opened_by: "lena".into(),
            reason: "conversion -10%".into(),
            opened_at: t(0),
            expires_at,
            review_due,
            rollbacks: vec![],
            review: None,
        }
    }

    #[test]
    fn an_exception_expires_then_its_review_falls_due() {
        let mut e = exception();
        assert_eq!(e.state(t(1)), ExceptionState::Active);
        assert_eq!(e.state(t(5)), ExceptionState::Expired, "4 h lifetime");
        assert_eq!(
            e.state(t(49)),
            ExceptionState::ReviewOverdue,
            "48 h to review"
        );
        e.review = Some(Review {
            principal: "sofia".into(),
            at: t(50),
            root_cause: "x".into(),
            follow_ups: "y".into(),
            policy_changes: "none".into(),
        });
        assert_eq!(e.state(t(51)), ExceptionState::Closed);
    }

    #[test]
    fn only_the_roster_may_bypass_and_the_refusal_names_who_is_on_call() {
        let policy = demo::policy();
        assert!(check_on_call(&policy, policy.principal("marco").unwrap()).is_ok());
        let refusal = check_on_call(&policy, policy.principal("devi").unwrap()).unwrap_err();
        assert_eq!(refusal.rule, "on-call-only");
        assert!(
            refusal
                .remedy
                .contains("Marco Rossi (marco), Lena Vogel (lena)"),
            "{refusal}"
        );
        assert!(check_reviewer(&policy, policy.principal("sofia").unwrap()).is_ok());
        assert!(check_reviewer(&policy, policy.principal("marco").unwrap()).is_err());
    }

    #[test]
    fn subjects_list_the_latest_change_first_with_its_rollback_target() {
        let crs = demo::change_requests();
        let list = subjects(
            crs.iter()
                .filter_map(|c| SubjectState::from_cr(c, Status::Pending)),
        );
        assert_eq!(list[0].name, "recommender");
        assert_eq!(list[0].current, "8");
        assert_eq!(list[0].last_good.as_deref(), Some("7"));
        assert_eq!(list.len(), 5);
    }

    #[test]
    fn countdowns_read_naturally() {
        assert_eq!(countdown(t(2) + Duration::minutes(5), t(0)), "2h 05m");
        assert_eq!(countdown(t(76), t(0)), "3d 4h");
        assert_eq!(expiry(t(1), t(3)), "expired 2h 00m ago");
        assert_eq!(countdown(t(1), t(3)), "overdue 2h 00m");
        assert_eq!(countdown(t(0), t(1)), "overdue 1h 00m");
    }
}
