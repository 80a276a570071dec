//! What an emergency entry may claim: the rules the workflow applies before signing, the
//! server before appending what a client signed, and `verify` to every stored entry.
//!
//! A signed entry proves who said something, not that it is true. So nothing a client
//! puts in an emergency entry is taken on trust: the exception terms must be the ones the
//! policy in force gives at the signing time, a linked exception must exist and be active
//! for the same incident, a rollback outcome belongs to its authoriser, and a review is
//! never signed by someone who bypassed review under the exceptions it closes.

use super::{Exception, ExceptionState, Review, RollbackOutcome, RollbackSummary};
use crate::domain::policy::{Policy, Principal};
use crate::domain::reader::{check_argument, check_version};
use crate::domain::rules::{MAX_CLOCK_SKEW_SECS, Refusal};
use chrono::{DateTime, Duration, Utc};

/// An on-call approver's bypass, as its entry claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorisation {
    /// Who authorised.
    pub principal: String,
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
    /// The exception it runs under; `None` when it opens one.
    pub exception: Option<String>,
    /// When that exception opened.
    pub opened_at: DateTime<Utc>,
    /// When the bypass stops being usable.
    pub expires_at: DateTime<Utc>,
    /// When the post-incident review is due.
    pub review_due: DateTime<Utc>,
    /// When it was signed.
    pub at: DateTime<Utc>,
}

/// What a rollback command did, as its entry claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Who signed it.
    pub principal: String,
    /// Incident ticket.
    pub incident: String,
    /// Hash of the authorisation it executes.
    pub authorisation: String,
    /// What the command did.
    pub outcome: RollbackOutcome,
    /// When it was signed.
    pub at: DateTime<Utc>,
}

/// A post-incident review, as its entry claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewClaim {
    /// Incident ticket.
    pub incident: String,
    /// The exceptions it closes.
    pub exceptions: Vec<String>,
    /// The review itself (its principal and time included).
    pub review: Review,
}

/// One emergency entry's claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// `emergency-authorised`.
    Authorise(Authorisation),
    /// `rollback-executed`.
    Rollback(Outcome),
    /// `post-incident-review`.
    Review(ReviewClaim),
}

impl Claim {
    /// Who signed it.
    pub fn principal(&self) -> &str {
        match self {
            Claim::Authorise(a) => &a.principal,
            Claim::Rollback(o) => &o.principal,
            Claim::Review(r) => &r.review.principal,
        }
    }

    /// When it was signed.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Claim::Authorise(a) => a.at,
            Claim::Rollback(o) => o.at,
            Claim::Review(r) => r.review.at,
        }
    }
}

fn refuse<T>(rule: &'static str, message: String, remedy: &str) -> Result<T, Refusal> {
    Err(Refusal {
        rule,
        message,
        remedy: remedy.into(),
    })
}

/// Checks a claim against the policy in force and the exceptions derived so far.
/// `received` is when it reached whoever checks it (the server's clock, or the auditor's):
/// a signing time later than that, beyond [`MAX_CLOCK_SKEW_SECS`], is refused.
pub fn check_claim(
    policy: &Policy,
    who: &Principal,
    exceptions: &[Exception],
    live: &super::LiveVersions,
    claim: &Claim,
    received: DateTime<Utc>,
) -> Result<(), Refusal> {
    if claim.principal() != who.id {
        return refuse(
            "principal-mismatch",
            format!(
                "the entry names {} but was signed by {}",
                claim.principal(),
                who.id
            ),
            "sign entries in your own name",
        );
    }
    check_signing_time(claim.at(), received)?;
    match claim {
        Claim::Authorise(a) => {
            super::check_on_call(policy, who)?;
            live.check(a)?;
            if a.exception.is_none() {
                let (expires_at, review_due) = super::exception_terms(policy, a.at);
                if a.opened_at != a.at || a.expires_at != expires_at || a.review_due != review_due {
                    return refuse(
                        "exception-terms",
                        format!(
                            "the exception's terms are not the policy's: opened {}, expires {}, review due {}; the policy in force gives {}, {} and {} for a bypass signed at {}",
                            a.opened_at,
                            a.expires_at,
                            a.review_due,
                            a.at,
                            expires_at,
                            review_due,
                            a.at
                        ),
                        "let tollgate compute the terms from the policy in force",
                    );
                }
            }
        }
        Claim::Rollback(_) => super::check_on_call(policy, who)?,
        Claim::Review(r) => {
            super::check_reviewer(policy, who)?;
            for (field, text) in [
                ("root cause", &r.review.root_cause),
                ("follow-ups", &r.review.follow_ups),
            ] {
                if text.trim().is_empty() {
                    return refuse(
                        "review-incomplete",
                        format!("a post-incident review needs the {field}"),
                        "fill in root cause and follow-ups (policy changes may be \"none\")",
                    );
                }
            }
        }
    }
    check_link(exceptions, claim)
}

/// A signing time no later than `received` plus the allowed clock skew.
pub fn check_signing_time(at: DateTime<Utc>, received: DateTime<Utc>) -> Result<(), Refusal> {
    if at > received + Duration::seconds(MAX_CLOCK_SKEW_SECS) {
        return refuse(
            "signed-in-future",
            format!(
                "the entry says it was signed at {at}, after it was received ({received}, {MAX_CLOCK_SKEW_SECS} s of clock skew allowed)"
            ),
            "check the signer's clock and sign again",
        );
    }
    Ok(())
}

/// The rules that need only the exceptions derived so far: what readers apply too, so
/// an entry that breaks them is shown as untrusted instead of changing the exceptions.
pub fn check_link(exceptions: &[Exception], claim: &Claim) -> Result<(), Refusal> {
    match claim {
        Claim::Authorise(a) => check_authorisation(exceptions, a),
        Claim::Rollback(o) => check_outcome(exceptions, o),
        Claim::Review(r) => check_review(exceptions, r),
    }
}

/// What an emergency rollback names, checked before anything is signed or run: the
/// incident is a ticket id, there is a reason, and subject, environment and versions are
/// safe as command arguments (a version such as `--post-renderer=evil.sh` is refused).
pub fn check_rollback_fields(
    incident: &str,
    subject: &str,
    environment: &str,
    from_version: &str,
    to_version: &str,
    reason: &str,
) -> Result<(), Refusal> {
    if let Err(e) = crate::domain::reader::check_identifier(incident) {
        return refuse(
            "incident-id",
            format!("incident id: {e}"),
            "use the ticket id, e.g. INC-2291",
        );
    }
    if reason.trim().is_empty() {
        return refuse(
            "reason-required",
            "an emergency needs a one-line reason".into(),
            "say what is hurting users",
        );
    }
    for (field, value) in [("subject", subject), ("environment", environment)] {
        if let Err(e) = check_argument(value) {
            return refuse(
                "rollback-target",
                format!("{field}: {e}"),
                "name the subject and environment as the change requests do",
            );
        }
    }
    for (field, value) in [("from_version", from_version), ("to_version", to_version)] {
        if let Err(e) = check_version(value) {
            return refuse(
                "rollback-target",
                format!("{field}: {e}"),
                "name versions as the registry does, e.g. 7 or 3.4",
            );
        }
    }
    if to_version == from_version {
        return refuse(
            "rollback-target",
            format!("rolling back {subject} needs a target version other than {from_version}"),
            "name the last good version",
        );
    }
    Ok(())
}

fn check_authorisation(exceptions: &[Exception], a: &Authorisation) -> Result<(), Refusal> {
    check_rollback_fields(
        &a.incident,
        &a.subject,
        &a.environment,
        &a.from_version,
        &a.to_version,
        &a.reason,
    )?;
    let active = exceptions
        .iter()
        .rev()
        .find(|x| x.incident == a.incident && x.state(a.at) == ExceptionState::Active);
    match (&a.exception, active) {
        (None, None) => Ok(()),
        (None, Some(x)) => refuse(
            "exception-link",
            format!(
                "incident {} already has an active exception ({}); a further bypass runs under it",
                a.incident, x.id
            ),
            "link the authorisation to the incident's active exception",
        ),
        (Some(id), Some(x)) if *id == x.id => {
            if (a.opened_at, a.expires_at, a.review_due)
                != (x.opened_at, x.expires_at, x.review_due)
            {
                return refuse(
                    "exception-terms",
                    format!(
                        "the authorisation restates exception {id} with other terms than it opened with"
                    ),
                    "copy the exception's terms unchanged",
                );
            }
            Ok(())
        }
        (Some(id), _) => refuse(
            "exception-link",
            format!(
                "the authorisation links to {id}, which is not an active exception of incident {} at {}",
                a.incident, a.at
            ),
            "an expired or unknown exception is never reused: open a new one",
        ),
    }
}

fn find_rollback<'a>(exceptions: &'a [Exception], hash: &str) -> Option<&'a RollbackSummary> {
    exceptions
        .iter()
        .flat_map(|x| x.rollbacks.iter())
        .find(|r| r.authorisation == hash)
}

fn check_outcome(exceptions: &[Exception], o: &Outcome) -> Result<(), Refusal> {
    let Some(auth) = find_rollback(exceptions, &o.authorisation) else {
        return refuse(
            "rollback-authorisation",
            format!(
                "the outcome names authorisation {}, which is not an emergency authorisation in the log",
                o.authorisation
            ),
            "record the outcome of a rollback that was authorised",
        );
    };
    let incident = exceptions
        .iter()
        .find(|x| {
            x.rollbacks
                .iter()
                .any(|r| r.authorisation == o.authorisation)
        })
        .map(|x| x.incident.as_str());
    if incident != Some(o.incident.as_str()) {
        return refuse(
            "rollback-authorisation",
            format!(
                "the outcome names incident {}, but its authorisation is for {}",
                o.incident,
                incident.unwrap_or("another incident")
            ),
            "record the outcome under the authorisation's incident",
        );
    }
    if auth.principal != o.principal {
        return refuse(
            "rollback-not-authoriser",
            format!(
                "{} signed the outcome of a rollback {} authorised",
                o.principal, auth.principal
            ),
            "the authoriser records what their rollback did",
        );
    }
    if auth.outcome.is_some() {
        return refuse(
            "rollback-recorded",
            format!(
                "the outcome of authorisation {} is already recorded",
                o.authorisation
            ),
            "a rollback's outcome is recorded once",
        );
    }
    if o.at < auth.at {
        return refuse(
            "signed-before",
            format!(
                "the outcome is dated {}, before its authorisation ({})",
                o.at, auth.at
            ),
            "check the signer's clock",
        );
    }
    Ok(())
}

fn check_review(exceptions: &[Exception], r: &ReviewClaim) -> Result<(), Refusal> {
    if r.exceptions.is_empty() {
        return refuse(
            "no-open-exception",
            format!("the review of {} closes no exception", r.incident),
            "check the incident id with `tollgate exceptions`",
        );
    }
    let who = &r.review.principal;
    for id in &r.exceptions {
        let Some(x) = exceptions
            .iter()
            .find(|x| &x.id == id && x.incident == r.incident)
        else {
            return refuse(
                "no-open-exception",
                format!("{id} is not an exception of incident {}", r.incident),
                "check the incident id with `tollgate exceptions`",
            );
        };
        if x.review.is_some() {
            return refuse(
                "no-open-exception",
                format!(
                    "exception {id} of {} is already closed by a review",
                    r.incident
                ),
                "check the incident id with `tollgate exceptions`",
            );
        }
        // Segregation of duties: whoever bypassed review does not review their own bypass.
        if x.opened_by == *who || x.rollbacks.iter().any(|b| b.principal == *who) {
            return refuse(
                "independent-review",
                format!(
                    "{who} authorised a rollback under {} and cannot review it",
                    x.incident
                ),
                "ask another lead to review the incident",
            );
        }
        if r.review.at < x.opened_at {
            return refuse(
                "signed-before",
                format!(
                    "the review is dated {}, before the exception opened ({})",
                    r.review.at, x.opened_at
                ),
                "check the signer's clock",
            );
        }
    }
    Ok(())
}

/// Adds a claim that passed [`check_link`] to the exceptions; `hash` is its entry's.
pub fn apply(exceptions: &mut Vec<Exception>, hash: &str, claim: Claim) {
    match claim {
        Claim::Authorise(a) => {
            let summary = RollbackSummary {
                authorisation: hash.to_string(),
                principal: a.principal.clone(),
                subject: a.subject,
                environment: a.environment,
                from_version: a.from_version,
                to_version: a.to_version,
                at: a.at,
                outcome: None,
            };
            match a
                .exception
                .and_then(|id| exceptions.iter_mut().find(|x| x.id == id))
            {
                Some(x) => x.rollbacks.push(summary),
                None => exceptions.push(Exception {
                    id: hash.to_string(),
                    incident: a.incident,
                    opened_by: a.principal,
                    reason: a.reason,
                    opened_at: a.opened_at,
                    expires_at: a.expires_at,
                    review_due: a.review_due,
                    rollbacks: vec![summary],
                    review: None,
                }),
            }
        }
        Claim::Rollback(o) => {
            if let Some(s) = exceptions
                .iter_mut()
                .flat_map(|x| x.rollbacks.iter_mut())
                .find(|s| s.authorisation == o.authorisation)
            {
                s.outcome = Some(o.outcome);
            }
        }
        Claim::Review(r) => {
            for x in exceptions
                .iter_mut()
                .filter(|x| r.exceptions.contains(&x.id))
            {
                x.review = Some(r.review.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap() + Duration::hours(h)
    }

    fn opening(policy: &Policy, who: &str, at: DateTime<Utc>) -> Authorisation {
        let (expires_at, review_due) = super::super::exception_terms(policy, at);
        Authorisation {
            principal: who.into(),
            incident: "INC-1".into(),
            subject: "recommender".into(),
            environment: "prod".into(),
            from_version: "8".into(),
            to_version: "7".into(),
            reason: "conversion -10%".into(),
            exception: None,
            opened_at: at,
            expires_at,
            review_due,
            at,
        }
    }

    #[test]
    fn terms_the_client_chose_are_refused_and_the_policys_accepted() {
        let policy = demo::policy();
        let lena = policy.principal("lena").unwrap();
        let good = opening(&policy, "lena", t(0));
        check_claim(
            &policy,
            lena,
            &[],
            &Default::default(),
            &Claim::Authorise(good.clone()),
            t(0),
        )
        .unwrap();
        let mut forever = good.clone();
        forever.review_due = t(100_000);
        let r = check_claim(
            &policy,
            lena,
            &[],
            &Default::default(),
            &Claim::Authorise(forever),
            t(0),
        )
        .unwrap_err();
        assert_eq!(r.rule, "exception-terms");
        let r = check_claim(
            &policy,
            lena,
            &[],
            &Default::default(),
            &Claim::Authorise(good),
            t(-1),
        )
        .unwrap_err();
        assert_eq!(r.rule, "signed-in-future");
    }

    #[test]
    fn outcomes_and_reviews_are_held_to_the_authorisation() {
        let policy = demo::policy();
        let mut ex = Vec::new();
        apply(
            &mut ex,
            "sha256:a",
            Claim::Authorise(opening(&policy, "lena", t(0))),
        );
        let outcome = |who: &str, auth: &str| {
            Claim::Rollback(Outcome {
                principal: who.into(),
                incident: "INC-1".into(),
                authorisation: auth.into(),
                outcome: RollbackOutcome {
                    exit_status: Some(0),
                    timed_out: false,
                    duration_ms: 1,
                },
                at: t(1),
            })
        };
        assert_eq!(
            check_link(&ex, &outcome("marco", "sha256:a"))
                .unwrap_err()
                .rule,
            "rollback-not-authoriser"
        );
        assert_eq!(
            check_link(&ex, &outcome("lena", "sha256:zz"))
                .unwrap_err()
                .rule,
            "rollback-authorisation"
        );
        check_link(&ex, &outcome("lena", "sha256:a")).unwrap();
        apply(&mut ex, "sha256:b", outcome("lena", "sha256:a"));
        assert_eq!(
            check_link(&ex, &outcome("lena", "sha256:a"))
                .unwrap_err()
                .rule,
            "rollback-recorded"
        );
        let review = |who: &str| {
            Claim::Review(ReviewClaim {
                incident: "INC-1".into(),
                exceptions: vec!["sha256:a".into()],
                review: Review {
                    principal: who.into(),
                    at: t(2),
                    root_cause: "x".into(),
                    follow_ups: "y".into(),
                    policy_changes: "none".into(),
                },
            })
        };
        assert_eq!(
            check_link(&ex, &review("lena")).unwrap_err().rule,
            "independent-review"
        );
        check_link(&ex, &review("sofia")).unwrap();
    }
}
