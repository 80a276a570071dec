//! What runs after an emergency rollback, derived from the log.
//!
//! A rollback of `recommender@prod` from 8 to 7 makes 7 the live version: listing 8 as
//! current afterwards, and accepting the same rollback from 8 a second time, would
//! record something that cannot have happened. So, in log order:
//!
//! - an authorised rollback from X to Y makes Y live (the operator acts on it, or the
//!   policy's command does);
//! - a recorded outcome saying that command failed leaves X live again (a retry from X is
//!   accepted);
//! - a change request for the same subject and environment, submitted or revised after
//!   the rollback, hands the question back to the change requests (what they bring is
//!   what is assumed live, as before any rollback).
//!
//! While a rollback is the latest word, a new rollback must start from Y. The workflow
//! checks this before signing, the server before appending, and `verify` over the log.

use super::rules::{Authorisation, Claim};
use crate::domain::rules::Refusal;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A change request for a subject entered the log (submitted or revised) at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectChange {
    /// Log sequence number of the submission or revision entry.
    pub seq: u64,
    /// The CR.
    pub cr_id: String,
    /// Subject name, as the revision names it.
    pub subject: String,
    /// Environment.
    pub environment: String,
}

/// A rollback that is the latest word on its subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolledBack {
    /// Subject name.
    pub subject: String,
    /// Environment.
    pub environment: String,
    /// The version it rolled back from (no longer live).
    pub from_version: String,
    /// The version it rolled back to (live now).
    pub to_version: String,
    /// Log hash of the authorisation.
    pub authorisation: String,
    /// Incident ticket.
    pub incident: String,
    /// Who authorised it.
    pub principal: String,
    /// When it was signed.
    pub at: DateTime<Utc>,
}

/// The subjects whose live version a rollback decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveVersions {
    rolled_back: Vec<RolledBack>,
}

impl LiveVersions {
    /// The rollback that decided what `subject` runs in `environment`, if one did.
    pub fn get(&self, subject: &str, environment: &str) -> Option<&RolledBack> {
        self.rolled_back
            .iter()
            .find(|r| r.subject == subject && r.environment == environment)
    }

    /// Every such rollback.
    pub fn all(&self) -> &[RolledBack] {
        &self.rolled_back
    }

    /// Applies an accepted emergency entry (`hash` is its log hash).
    pub fn after_claim(&mut self, hash: &str, claim: &Claim) {
        match claim {
            Claim::Authorise(a) => {
                self.forget(&a.subject, &a.environment);
                self.rolled_back.push(RolledBack {
                    subject: a.subject.clone(),
                    environment: a.environment.clone(),
                    from_version: a.from_version.clone(),
                    to_version: a.to_version.clone(),
                    authorisation: hash.to_string(),
                    incident: a.incident.clone(),
                    principal: a.principal.clone(),
                    at: a.at,
                });
            }
            Claim::Rollback(o) if !o.outcome.succeeded() => {
                self.rolled_back
                    .retain(|r| r.authorisation != o.authorisation);
            }
            Claim::Rollback(_) | Claim::Review(_) => {}
        }
    }

    /// A change request for the subject entered the log after any rollback so far.
    pub fn after_change(&mut self, subject: &str, environment: &str) {
        self.forget(subject, environment);
    }

    fn forget(&mut self, subject: &str, environment: &str) {
        self.rolled_back
            .retain(|r| !(r.subject == subject && r.environment == environment));
    }

    /// A new rollback must start from the version the last one left live.
    pub fn check(&self, a: &Authorisation) -> Result<(), Refusal> {
        match self.get(&a.subject, &a.environment) {
            Some(r) if r.to_version != a.from_version => Err(Refusal {
                rule: "rollback-stale",
                message: format!(
                    "{}@{} runs {} since {} rolled it back from {} for {} at {}; a rollback from {} rolls back a version that is no longer live",
                    a.subject,
                    a.environment,
                    r.to_version,
                    r.principal,
                    r.from_version,
                    r.incident,
                    r.at.format("%Y-%m-%d %H:%M UTC"),
                    a.from_version
                ),
                remedy: format!(
                    "roll back from {} (the live version), or submit a change request for what was deployed since",
                    r.to_version
                ),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::emergency::{Outcome, RollbackOutcome};
    use chrono::TimeZone;

    fn auth(incident: &str, from: &str, to: &str) -> Authorisation {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        Authorisation {
            principal: "lena".into(),
            incident: incident.into(),
            subject: "recommender".into(),
            environment: "prod".into(),
            from_version: from.into(),
            to_version: to.into(),
            reason: "r".into(),
            exception: None,
            opened_at: at,
            expires_at: at,
            review_due: at,
            at,
        }
    }

    #[test]
    fn a_rollback_moves_the_live_version_and_a_failure_or_a_new_cr_hands_it_back() {
        let mut live = LiveVersions::default();
        assert!(
            live.check(&auth("INC-1", "8", "7")).is_ok(),
            "nothing known"
        );
        live.after_claim("h1", &Claim::Authorise(auth("INC-1", "8", "7")));
        assert_eq!(
            live.check(&auth("INC-2", "8", "7")).unwrap_err().rule,
            "rollback-stale"
        );
        assert!(live.check(&auth("INC-2", "7", "6")).is_ok());
        // Another environment is another subject.
        let mut staging = auth("INC-2", "8", "7");
        staging.environment = "staging".into();
        assert!(live.check(&staging).is_ok());

        // The command failed: 8 is still live, the retry is accepted.
        let failed = Outcome {
            principal: "lena".into(),
            incident: "INC-1".into(),
            authorisation: "h1".into(),
            outcome: RollbackOutcome {
                exit_status: Some(3),
                timed_out: false,
                duration_ms: 1,
            },
            at: staging.at,
        };
        live.after_claim("h2", &Claim::Rollback(failed));
        assert!(live.check(&auth("INC-1", "8", "7")).is_ok());

        live.after_claim("h3", &Claim::Authorise(auth("INC-1", "8", "7")));
        live.after_change("recommender", "prod");
        assert!(
            live.get("recommender", "prod").is_none(),
            "a new CR decides again"
        );
    }
}
