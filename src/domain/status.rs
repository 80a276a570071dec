//! A CR's state, derived from its content, the policy and the decisions in the log.
//!
//! Nothing here is stored: status, sign-off progress and blockers are recomputed from the
//! log, so they can never drift from what was actually signed. A decision about an older
//! revision is *stale*: it is shown, but it no longer counts.

use crate::domain::change_request::ChangeRequest;
use crate::domain::checklist::{CheckCounts, Checklist, ItemState, Tick};
use crate::domain::decision::{Decision, Verdict};
use crate::domain::policy::Policy;
use crate::domain::policy_book::PolicyBook;
use crate::domain::risk::{RiskAssessment, assess};
use crate::domain::signoff::{SignoffProgress, fill_slots};
use serde::Serialize;
use std::borrow::Cow;
use std::fmt;

/// Where a CR stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Waiting for sign-offs.
    Pending,
    /// Every required sign-off obtained on the current revision.
    Approved,
    /// Someone rejected the current revision.
    Rejected,
    /// Someone asked for changes to the current revision.
    ChangesRequested,
}

impl Status {
    /// All statuses with their spelling.
    pub const ALL: [(&'static str, Status); 4] = [
        ("pending", Status::Pending),
        ("approved", Status::Approved),
        ("rejected", Status::Rejected),
        ("changes-requested", Status::ChangesRequested),
    ];

    /// The spelling used in JSON and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::ChangesRequested => "changes-requested",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A decision that does not count, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Discounted {
    /// The decision.
    pub decision: Decision,
    /// Why it does not count.
    pub reason: String,
}

/// Everything the rules say about one CR revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Derived status.
    pub status: Status,
    /// Computed vs declared risk.
    pub risk: RiskAssessment,
    /// Checklist with evidence and ticks.
    pub checklist: Checklist,
    /// Evidence counts for the queue.
    pub checks: CheckCounts,
    /// Sign-offs required vs obtained.
    pub signoffs: SignoffProgress,
    /// Decisions that count: the latest per person on the current revision.
    pub counted: Vec<Decision>,
    /// Decisions that do not count (stale revision, requester, role not held, superseded).
    pub discounted: Vec<Discounted>,
    /// True when a blocking automated item *fails*: the requester must change something
    /// before anyone can approve.
    pub blocked: bool,
    /// True when a blocking automated item is still pending or has no evidence at all:
    /// approval waits for CI.
    pub awaiting_evidence: bool,
    /// Every blocking automated item that prevents approval right now (failing, pending or
    /// missing), e.g. `backward-compat: fail (ltv reads txn_hour_raw directly)`, then any
    /// missing required artifact and a stale policy proposal.
    pub blockers: Vec<String>,
    /// Artifact kinds the policy requires at this gate and risk that the CR does not link.
    /// Missing evidence blocks approval.
    pub missing_artifacts: Vec<String>,
    /// For a `policy`-gate CR proposed against a policy no longer in force: why it can no
    /// longer be adopted (it must be proposed again).
    pub stale_proposal: Option<String>,
    /// Canary observation window for the effective risk, in hours.
    pub observation_hours: i64,
}

/// Evaluates `cr` (whose canonical digest is `digest`) given the decisions recorded for
/// it, in log order, with every decision judged by `policy`.
pub fn evaluate(
    cr: &ChangeRequest,
    digest: &str,
    decisions: &[Decision],
    policy: &Policy,
) -> Evaluation {
    evaluate_with(cr, digest, decisions, policy, None, &|_| policy)
}

/// Evaluates `cr` under the policy in force in `book`; each decision is judged (did the
/// signer hold the role?) by the version it was signed under, so a reviewer who has since
/// left, or a role since rotated, does not undo a sign-off that was valid when given.
pub fn evaluate_in(
    cr: &ChangeRequest,
    digest: &str,
    decisions: &[Decision],
    book: &PolicyBook,
) -> Evaluation {
    let in_force = (!book.is_provisional()).then(|| book.current().digest.as_str());
    // A policy change is held to the rules of the policy it proposes to replace, also
    // once it has replaced it.
    let rules = cr
        .policy
        .as_ref()
        .and_then(|p| book.by_digest(&p.base_digest))
        .map_or(book.policy(), |v| &*v.policy);
    evaluate_with(cr, digest, decisions, rules, in_force, &|d| {
        book.judge_of(&d.policy_digest)
    })
}

/// Why `d` does not count on `cr` at `digest` (`None`: it counts, unless the same person
/// decides again later).
fn discount<'p>(
    cr: &ChangeRequest,
    digest: &str,
    d: &Decision,
    judge: &dyn Fn(&Decision) -> &'p Policy,
) -> Option<Cow<'static, str>> {
    // Borrowed where the words are fixed: the queue asks this of every decision on a CR
    // and keeps only the answer "counts".
    if d.cr_digest != digest {
        Some("stale: made on an earlier revision of the CR".into())
    } else if d.principal == cr.requester
        || cr.provenance.submitter.principal() == Some(d.principal.as_str())
    {
        Some("the requester cannot sign off their own change".into())
    } else {
        match judge(d).principal(&d.principal) {
            None => Some(format!("{} is not a principal in the policy", d.principal).into()),
            Some(p) if !p.has_role(&d.role) => {
                Some(format!("{} does not hold the {} role", d.principal, d.role).into())
            }
            Some(_) => None,
        }
    }
}

/// The decisions on a CR that count, gathered one at a time: each person's last decision
/// among those that count (see [`evaluate_in`]). Evaluating these gives the same status,
/// sign-offs, checklist and approvals as evaluating every decision — only the discounted
/// list is left out — so the queue evaluates a CR with a million decisions holding a
/// handful of them.
pub struct CountedDecisions<'a> {
    cr: &'a ChangeRequest,
    digest: &'a str,
    book: &'a PolicyBook,
    kept: Vec<Decision>,
}

impl<'a> CountedDecisions<'a> {
    /// None gathered yet, for `cr` at `digest` under `book`.
    pub fn new(cr: &'a ChangeRequest, digest: &'a str, book: &'a PolicyBook) -> Self {
        CountedDecisions {
            cr,
            digest,
            book,
            kept: Vec::new(),
        }
    }

    /// The next decision on the CR, in log order.
    pub fn push(&mut self, d: Decision) {
        let book = self.book;
        if discount(self.cr, self.digest, &d, &|d| {
            book.judge_of(&d.policy_digest)
        })
        .is_none()
        {
            self.kept.retain(|c| c.principal != d.principal);
            self.kept.push(d);
        }
    }

    /// What counts, in log order.
    pub fn into_vec(self) -> Vec<Decision> {
        self.kept
    }
}

/// The evaluation proper: `policy` sets what is required now; `judge` names the policy a
/// past decision is held to; `in_force` is the digest of the policy in force, when known,
/// to tell whether a policy proposal is stale.
fn evaluate_with<'p>(
    cr: &ChangeRequest,
    digest: &str,
    decisions: &[Decision],
    policy: &'p Policy,
    in_force: Option<&str>,
    judge: &dyn Fn(&Decision) -> &'p Policy,
) -> Evaluation {
    let risk = assess(cr, &policy.risk);
    let mut counted: Vec<Decision> = Vec::new();
    let mut discounted = Vec::new();
    for d in decisions {
        match discount(cr, digest, d, judge) {
            Some(reason) => discounted.push(Discounted {
                decision: d.clone(),
                reason: reason.into_owned(),
            }),
            None => {
                // A later decision by the same person supersedes their earlier one.
                if let Some(i) = counted.iter().position(|c| c.principal == d.principal) {
                    let old = counted.remove(i);
                    discounted.push(Discounted {
                        decision: old,
                        reason: "superseded by the same person's later decision".into(),
                    });
                }
                counted.push(d.clone());
            }
        }
    }

    let ticks: Vec<(&str, &Tick)> = counted
        .iter()
        .flat_map(|d| d.ticks.iter().map(move |t| (d.principal.as_str(), t)))
        .collect();
    let checklist = Checklist::build(cr, policy, &ticks);
    let required = policy.required_signoffs(cr.gate, risk.effective);
    let approvals: Vec<(&str, &str)> = counted
        .iter()
        .filter(|d| d.verdict == Verdict::Approve)
        .map(|d| (d.principal.as_str(), d.role.as_str()))
        .collect();
    let signoffs = fill_slots(&required, &approvals);

    let status = if counted.iter().any(|d| d.verdict == Verdict::Reject) {
        Status::Rejected
    } else if counted.iter().any(|d| d.verdict == Verdict::RequestChanges) {
        Status::ChangesRequested
    } else if signoffs.complete() {
        Status::Approved
    } else {
        Status::Pending
    };

    let unsatisfied: Vec<_> = checklist.blocking_evidence().collect();
    let missing_artifacts: Vec<String> = policy
        .required_artifacts(cr.gate, risk.effective)
        .iter()
        .filter(|kind| !cr.artifacts.iter().any(|a| &a.kind == *kind))
        .cloned()
        .collect();
    let stale_proposal = match (&cr.policy, in_force) {
        (Some(p), Some(now)) if p.base_digest != now && status != Status::Approved => {
            Some(format!(
                "stale: proposed against policy {}, but {} is in force now; propose it again",
                short_digest(&p.base_digest),
                short_digest(now)
            ))
        }
        _ => None,
    };
    let blocked = unsatisfied.iter().any(|i| i.state == ItemState::Fail)
        || !missing_artifacts.is_empty()
        || stale_proposal.is_some();
    let awaiting_evidence = unsatisfied.iter().any(|i| i.state != ItemState::Fail);
    let mut blockers: Vec<String> = unsatisfied
        .iter()
        .map(|i| {
            let detail = i
                .detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            format!("{}: {}{detail}", i.id, i.state.as_str())
        })
        .collect();
    if !missing_artifacts.is_empty() {
        blockers.push(format!(
            "artifacts: missing {}",
            missing_artifacts.join(", ")
        ));
    }
    blockers.extend(stale_proposal.clone());
    Evaluation {
        status,
        checks: checklist.counts(),
        blocked,
        awaiting_evidence,
        blockers,
        observation_hours: *policy.observation_hours.get(risk.effective),
        risk,
        checklist,
        signoffs,
        counted,
        discounted,
        missing_artifacts,
        stale_proposal,
    }
}

/// `sha256:0123456789ab…`: enough of a digest to tell two policies apart on one line.
pub fn short_digest(digest: &str) -> String {
    match digest.get(..19) {
        Some(head) if digest.len() > 19 => format!("{head}…"),
        _ => digest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;
    use crate::domain::risk::RiskLevel;
    use chrono::{TimeZone, Utc};

    fn cr(id: &str) -> ChangeRequest {
        demo::change_requests()
            .into_iter()
            .find(|c| c.id == id)
            .expect("fixture")
    }

    fn decision(
        cr: &ChangeRequest,
        who: &str,
        role: &str,
        verdict: Verdict,
        digest: &str,
        minute: u32,
    ) -> Decision {
        Decision {
            cr_id: cr.id.clone(),
            cr_digest: digest.into(),
            verdict,
            role: role.into(),
            rationale: "looked at the evidence".into(),
            ticks: vec![],
            principal: who.into(),
            at: Utc.with_ymd_and_hms(2026, 11, 24, 10, minute, 0).unwrap(),
            policy_digest: String::new(),
        }
    }

    #[test]
    fn a_cr_without_decisions_is_pending() {
        let c = cr("CR-1045");
        let e = evaluate(&c, "d1", &[], &demo::policy());
        assert_eq!(e.status, Status::Pending);
        assert_eq!(e.signoffs.required(), 1);
        assert_eq!(e.signoffs.obtained(), 0);
    }

    #[test]
    fn approvals_from_distinct_people_in_every_required_role_approve() {
        let c = cr("CR-1045"); // model / low: risk-reviewer
        let p = demo::policy();
        let d = [decision(
            &c,
            "devi",
            "risk-reviewer",
            Verdict::Approve,
            "d1",
            1,
        )];
        assert_eq!(evaluate(&c, "d1", &d, &p).status, Status::Approved);

        let c = cr("CR-1043"); // data / medium: data-reviewer + approver
        let one = [decision(
            &c,
            "kai",
            "data-reviewer",
            Verdict::Approve,
            "d1",
            1,
        )];
        assert_eq!(evaluate(&c, "d1", &one, &p).status, Status::Pending);
        let two = [
            one[0].clone(),
            decision(&c, "sofia", "approver", Verdict::Approve, "d1", 2),
        ];
        let e = evaluate(&c, "d1", &two, &p);
        assert_eq!(e.status, Status::Approved);
        assert_eq!(e.signoffs.obtained(), 2);
    }

    #[test]
    fn stale_requester_and_role_less_signoffs_do_not_count() {
        let c = cr("CR-1043"); // requester jonas holds data-reviewer too
        let p = demo::policy();
        let d = [
            decision(&c, "kai", "data-reviewer", Verdict::Approve, "old", 1),
            decision(&c, "jonas", "data-reviewer", Verdict::Approve, "d2", 2),
            decision(&c, "devi", "approver", Verdict::Approve, "d2", 3),
            decision(&c, "sofia", "approver", Verdict::Approve, "d2", 4),
        ];
        let e = evaluate(&c, "d2", &d, &p);
        assert_eq!(e.status, Status::Pending);
        assert_eq!(e.signoffs.obtained(), 1);
        let reasons: Vec<&str> = e.discounted.iter().map(|x| x.reason.as_str()).collect();
        assert!(reasons[0].starts_with("stale"));
        assert!(reasons[1].contains("requester"));
        assert!(reasons[2].contains("does not hold the approver role"));
    }

    #[test]
    fn reject_and_request_changes_decide_and_a_person_can_change_their_mind() {
        let c = cr("CR-1045");
        let p = demo::policy();
        let rejected = [decision(
            &c,
            "devi",
            "risk-reviewer",
            Verdict::Reject,
            "d1",
            1,
        )];
        assert_eq!(evaluate(&c, "d1", &rejected, &p).status, Status::Rejected);
        let changes = [decision(
            &c,
            "sofia",
            "approver",
            Verdict::RequestChanges,
            "d1",
            1,
        )];
        assert_eq!(
            evaluate(&c, "d1", &changes, &p).status,
            Status::ChangesRequested
        );
        let changed_mind = [
            decision(
                &c,
                "devi",
                "risk-reviewer",
                Verdict::RequestChanges,
                "d1",
                1,
            ),
            decision(&c, "devi", "risk-reviewer", Verdict::Approve, "d1", 2),
        ];
        assert_eq!(
            evaluate(&c, "d1", &changed_mind, &p).status,
            Status::Approved
        );
        // A rejection of an earlier revision is stale: the revised CR is pending again.
        assert_eq!(evaluate(&c, "d2", &rejected, &p).status, Status::Pending);
    }

    /// The queue evaluates a CR with only the decisions that count: whatever mix of
    /// stale, self-approving, unknown, role-less and superseded decisions came before,
    /// the status, sign-offs, checklist (ticks), blockers and counted decisions are those
    /// of evaluating every decision.
    #[test]
    fn counting_decisions_one_at_a_time_evaluates_as_all_of_them() {
        let c = cr("CR-1043"); // data / medium: data-reviewer + approver; requester jonas
        let book = PolicyBook::provisional(String::new(), "pd".into(), demo::policy());
        let ticked = |mut d: Decision, item: &str| {
            d.ticks = vec![Tick {
                item: item.into(),
                note: None,
            }];
            d
        };
        let all = [
            decision(&c, "kai", "data-reviewer", Verdict::Approve, "old", 1),
            decision(&c, "jonas", "data-reviewer", Verdict::Approve, "d1", 2),
            decision(&c, "nobody", "approver", Verdict::Approve, "d1", 3),
            ticked(
                decision(&c, "sofia", "approver", Verdict::RequestChanges, "d1", 4),
                "privacy",
            ),
            ticked(
                decision(&c, "kai", "data-reviewer", Verdict::Approve, "d1", 5),
                "rollback",
            ),
            decision(&c, "kai", "approver", Verdict::Reject, "d1", 6),
            decision(&c, "sofia", "approver", Verdict::Approve, "d1", 7),
            decision(
                &c,
                "devi",
                "risk-reviewer",
                Verdict::RequestChanges,
                "old",
                8,
            ),
        ];
        for n in 0..=all.len() {
            let some = &all[..n];
            let mut fold = CountedDecisions::new(&c, "d1", &book);
            for d in some {
                fold.push(d.clone());
            }
            let counted = fold.into_vec();
            let whole = evaluate_in(&c, "d1", some, &book);
            let folded = evaluate_in(&c, "d1", &counted, &book);
            let view = |e: &Evaluation| {
                format!(
                    "{:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                    e.status, e.signoffs, e.checks, e.checklist, e.blockers, e.blocked, e.counted
                )
            };
            assert_eq!(view(&folded), view(&whole), "after {n} decisions");
            assert!(counted.len() <= 3, "kept {counted:?}");
        }
        // The mix exercises every outcome on the way.
        let statuses: Vec<Status> = (0..=all.len())
            .map(|n| evaluate_in(&c, "d1", &all[..n], &book).status)
            .collect();
        assert!(
            statuses.contains(&Status::Pending) && statuses.contains(&Status::ChangesRequested)
        );
    }

    #[test]
    fn ticks_on_the_current_revision_satisfy_manual_items() {
        let c = cr("CR-1045");
        let p = demo::policy();
        let mut d = decision(
            &c,
            "devi",
            "risk-reviewer",
            Verdict::RequestChanges,
            "d1",
            1,
        );
        d.ticks = vec![Tick {
            item: "privacy".into(),
            note: Some("no PII in features".into()),
        }];
        let e = evaluate(&c, "d1", &[d], &p);
        let privacy = e
            .checklist
            .items
            .iter()
            .find(|i| i.id == "privacy")
            .unwrap();
        assert_eq!(privacy.state, ItemState::Ticked);
        assert_eq!(privacy.ticked_by[0].principal, "devi");
        let rollback = e
            .checklist
            .items
            .iter()
            .find(|i| i.id == "rollback")
            .unwrap();
        assert_eq!(rollback.state, ItemState::Unticked);
        assert_eq!(e.checklist.unticked_blocking(&[]).count(), 1);
    }

    #[test]
    fn effective_risk_sets_required_signoffs_and_observation_window() {
        let p = demo::policy();
        let e = evaluate(&cr("CR-1042"), "d", &[], &p);
        assert_eq!(e.risk.effective, RiskLevel::High);
        assert_eq!(e.signoffs.required(), 4);
        assert_eq!(e.observation_hours, 24);
    }
}
