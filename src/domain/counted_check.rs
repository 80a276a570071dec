//! Which result of an automated check counts: CI's attestation, else the revision's own
//! check when CI submitted it, else the submitter's claim shown as self-reported and
//! counted as pending. Needs the policy (who holds `ci`, which sources are trusted), so it
//! lives apart from the provenance records themselves.

use crate::domain::check::{Check, CheckStatus};
use crate::domain::policy::Policy;
use crate::domain::provenance::{
    CI_ROLE, Counted, Provenance, SOURCE_SEPARATOR, Source, Submitter,
};

/// Whether the checks in a revision from this submitter count as CI evidence under
/// `policy`.
pub fn submitted_by_ci(submitter: &Submitter, policy: &Policy) -> bool {
    match submitter {
        Submitter::BeforeProvenance => true,
        Submitter::Principal(p) => policy.principal(p).is_some_and(|p| p.has_role(CI_ROLE)),
        Submitter::Source(s) => {
            let name = s.split(SOURCE_SEPARATOR).next().unwrap_or("");
            policy.evidence_sources.iter().any(|t| t == name)
        }
        Submitter::Unknown => false,
    }
}

/// The result that counts for check `id`: the latest attestation by a `ci` principal
/// of `policy`, else the revision's own check when its submitter is CI, else the
/// revision's check shown as self-reported and counted as pending.
pub fn counted(
    provenance: &Provenance,
    id: &str,
    submitted: Option<&Check>,
    policy: &Policy,
) -> Option<Counted> {
    let attested = provenance.attested.iter().rev().find(|a| {
        a.check == id
            && policy
                .principal(&a.principal)
                .is_some_and(|p| p.has_role(CI_ROLE))
    });
    if let Some(a) = attested {
        return Some(Counted {
            status: a.status,
            detail: Some(match &a.detail {
                Some(d) => format!("{d} (attested by {})", a.principal),
                None => format!("attested by {}", a.principal),
            }),
            url: a.url.clone(),
            source: Source::Attested,
        });
    }
    let c = submitted?;
    if submitted_by_ci(&provenance.submitter, policy) {
        return Some(Counted {
            status: c.status,
            detail: c.detail.clone(),
            url: c.url.clone(),
            source: Source::Submitted,
        });
    }
    let claimed = match c.status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "fail",
        CheckStatus::Pending => "pending",
    };
    Some(Counted {
        status: CheckStatus::Pending,
        detail: Some(format!(
            "self-reported {claimed} by {}; awaiting CI",
            provenance.submitter.label()
        )),
        url: c.url.clone(),
        source: Source::SelfReported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;
    use crate::domain::provenance::Attested;

    fn check(status: CheckStatus) -> Check {
        Check {
            id: "backward_compatibility".into(),
            status,
            detail: Some("schema diff".into()),
            url: None,
            value: None,
        }
    }

    #[test]
    fn only_ci_reports_count_and_a_self_reported_pass_waits() {
        let policy = demo::policy();
        let of = |s: Submitter| Provenance {
            submitter: s,
            attested: vec![],
        };
        let pass = check(CheckStatus::Pass);
        let ci = of(Submitter::Principal("ci".into()));
        assert_eq!(
            counted(&ci, "backward_compatibility", Some(&pass), &policy)
                .unwrap()
                .status,
            CheckStatus::Pass
        );
        let jonas = of(Submitter::Principal("jonas".into()));
        let c = counted(&jonas, "backward_compatibility", Some(&pass), &policy).unwrap();
        assert_eq!(c.status, CheckStatus::Pending);
        assert_eq!(c.source, Source::SelfReported);
        assert!(c.detail.unwrap().contains("self-reported pass by jonas"));
        // A self-reported failure does not block either: it waits for CI.
        let fail = check(CheckStatus::Fail);
        assert_eq!(
            counted(&jonas, "backward_compatibility", Some(&fail), &policy)
                .unwrap()
                .status,
            CheckStatus::Pending
        );
        let old = of(Submitter::BeforeProvenance);
        assert_eq!(
            counted(&old, "backward_compatibility", Some(&fail), &policy)
                .unwrap()
                .status,
            CheckStatus::Fail
        );
        // CI's attestation wins over what the revision says.
        let attested = Provenance {
            submitter: Submitter::Principal("jonas".into()),
            attested: vec![Attested {
                check: "backward_compatibility".into(),
                status: CheckStatus::Fail,
                detail: None,
                url: None,
                principal: "ci".into(),
                at: chrono::Utc::now(),
            }],
        };
        let c = counted(&attested, "backward_compatibility", Some(&pass), &policy).unwrap();
        assert_eq!((c.status, c.source), (CheckStatus::Fail, Source::Attested));
    }
}
