//! Whether a decision may be signed: the policy rules applied before anything is signed
//! (and again by the server before anything is appended).
//!
//! Each refusal names the rule and says what would satisfy it, so a reviewer learns the
//! policy from the tool instead of from a wiki page.

use crate::domain::change_request::ChangeRequest;
use crate::domain::checklist::Tick;
use crate::domain::decision::Verdict;
use crate::domain::policy::{ItemMode, Policy, Principal};
use crate::domain::status::Evaluation;
use serde::Serialize;
use std::fmt;

/// How far a signing time may run ahead of the clock of whoever receives the entry
/// (the server, or the auditor running `verify`), in seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Longest rationale accepted, in characters.
pub const MAX_RATIONALE_CHARS: usize = 8_000;

/// A decision the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Stable rule id, e.g. `requester-cannot-sign`.
    pub rule: &'static str,
    /// What is wrong.
    pub message: String,
    /// What would satisfy the rule.
    pub remedy: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]; {}", self.message, self.rule, self.remedy)
    }
}

/// A decision about to be signed.
#[derive(Debug, Clone)]
pub struct Proposal<'a> {
    /// Who signs.
    pub principal: &'a Principal,
    /// The role they sign for.
    pub role: &'a str,
    /// The verdict.
    pub verdict: Verdict,
    /// Their rationale.
    pub rationale: &'a str,
    /// Manual items they tick.
    pub ticks: &'a [Tick],
}

fn refusal(rule: &'static str, message: String, remedy: impl Into<String>) -> Refusal {
    Refusal {
        rule,
        message,
        remedy: remedy.into(),
    }
}

/// Checks `p` against the policy, given the CR and its current evaluation (decisions on the
/// current revision already counted): the first rule it breaks, as the server and
/// `verify` name it.
pub fn check_decision(
    cr: &ChangeRequest,
    eval: &Evaluation,
    policy: &Policy,
    p: &Proposal<'_>,
) -> Result<(), Refusal> {
    match decision_refusals(cr, eval, policy, p).into_iter().next() {
        Some(r) => Err(r),
        None => Ok(()),
    }
}

/// Every rule `p` breaks, in the order [`check_decision`] checks them: what a reviewer
/// is shown at once, so that fixing one does not reveal the next.
pub fn decision_refusals(
    cr: &ChangeRequest,
    eval: &Evaluation,
    policy: &Policy,
    p: &Proposal<'_>,
) -> Vec<Refusal> {
    let mut out = Vec::new();
    let who = &p.principal.id;
    if p.rationale.trim().is_empty() {
        out.push(refusal(
            "rationale-required",
            "a decision needs a rationale".into(),
            "say why, in a sentence or two (--rationale, --rationale-file or $EDITOR)",
        ));
    }
    if p.rationale.chars().count() > MAX_RATIONALE_CHARS {
        out.push(refusal(
            "rationale-too-long",
            format!("the rationale is longer than {MAX_RATIONALE_CHARS} characters"),
            "summarise it and link the long analysis as an artifact",
        ));
    }
    if *who == cr.requester {
        out.push(refusal(
            "requester-cannot-sign",
            format!("{who} requested {} and cannot decide on it", cr.id),
            "ask a reviewer who holds one of the required roles",
        ));
    }
    // Whoever submitted the revision counts as requester too, whatever the document names.
    if cr.provenance.submitter.principal() == Some(who.as_str()) {
        out.push(refusal(
            "requester-cannot-sign",
            format!(
                "{who} submitted this revision of {} and cannot decide on it",
                cr.id
            ),
            "ask a reviewer who holds one of the required roles",
        ));
    }
    if !p.principal.has_role(p.role) {
        out.push(refusal(
            "role-not-held",
            format!(
                "{who} does not hold the {} role (holds: {})",
                p.role,
                p.principal.roles.join(", ")
            ),
            "sign for a role you hold, or have the policy updated",
        ));
    }
    for t in p.ticks {
        let item = policy.checklist_for(cr.gate).find(|i| i.id == t.item);
        match item {
            None => {
                let manual: Vec<&str> = policy
                    .checklist_for(cr.gate)
                    .filter(|i| i.mode == ItemMode::Manual)
                    .map(|i| i.id.as_str())
                    .collect();
                out.push(refusal(
                    "unknown-checklist-item",
                    format!(
                        "{} has no checklist item {:?} at the {} gate",
                        cr.id, t.item, cr.gate
                    ),
                    format!("tick one of: {}", manual.join(", ")),
                ));
            }
            Some(i) if i.mode != ItemMode::Manual => {
                out.push(refusal(
                    "automated-item",
                    format!("{} is automated: its result comes from CI evidence", t.item),
                    "only manual items can be ticked",
                ));
            }
            Some(_) => {}
        }
    }
    if p.verdict != Verdict::Approve {
        // Rejecting or asking for changes is always allowed.
        return out;
    }
    let required: Vec<&str> = eval.signoffs.required_roles();
    if !required.contains(&p.role) {
        out.push(refusal(
            "role-not-required",
            format!(
                "{} ({} gate, {} risk) needs sign-offs from {}; {} is not one of them",
                cr.id,
                cr.gate,
                eval.risk.effective,
                required.join(", "),
                p.role
            ),
            "approve in one of the required roles",
        ));
    }
    if let Some(mine) = eval
        .counted
        .iter()
        .find(|d| d.principal == *who && d.verdict == Verdict::Approve)
    {
        out.push(if mine.role == p.role {
            refusal(
                "already-approved",
                format!(
                    "{who} already approved this revision of {} as {}",
                    cr.id, mine.role
                ),
                "nothing more to do; reject or request changes to change your mind",
            )
        } else {
            refusal(
                "one-signoff-per-person",
                format!(
                    "{who} already signed off {} as {}; one person fills at most one required sign-off",
                    cr.id, mine.role
                ),
                format!("ask another person holding {} to approve", p.role),
            )
        });
    }
    if let Some(why) = &eval.stale_proposal {
        out.push(refusal(
            "policy-proposal-stale",
            format!("{} cannot be adopted: {why}", cr.id),
            format!(
                "the proposer runs `tollgate policy propose FILE --revise {}` against the policy in force",
                cr.id
            ),
        ));
    }
    if !eval.missing_artifacts.is_empty() {
        out.push(refusal(
            "missing-artifacts",
            format!(
                "{} ({} gate, {} risk) must link {}; it does not link {}",
                cr.id,
                cr.gate,
                eval.risk.effective,
                policy
                    .required_artifacts(cr.gate, eval.risk.effective)
                    .join(", "),
                eval.missing_artifacts.join(", ")
            ),
            "the requester links them in the CR's artifacts and submits a new revision; rejecting or requesting changes is still possible",
        ));
    }
    let evidence: Vec<String> = eval
        .checklist
        .blocking_evidence()
        .map(|i| format!("{} is {}", i.id, i.state.as_str()))
        .collect();
    if !evidence.is_empty() {
        out.push(refusal(
            "blocking-evidence",
            format!(
                "approval needs every blocking automated check to pass: {}",
                evidence.join(", ")
            ),
            "wait for CI to re-run or the requester to fix it; rejecting or requesting changes is still possible",
        ));
    }
    let unticked: Vec<&str> = eval
        .checklist
        .unticked_blocking(p.ticks)
        .map(|i| i.id.as_str())
        .collect();
    if !unticked.is_empty() {
        out.push(refusal(
            "unticked-blocking-item",
            format!(
                "approval needs every blocking manual item ticked: {} unticked",
                unticked.join(", ")
            ),
            format!(
                "check them and tick with {} (or have another reviewer tick them)",
                unticked
                    .iter()
                    .map(|i| format!("--tick {i}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;
    use crate::domain::decision::Decision;
    use crate::domain::status::evaluate;
    use chrono::Utc;

    fn cr(id: &str) -> ChangeRequest {
        demo::change_requests()
            .into_iter()
            .find(|c| c.id == id)
            .unwrap()
    }

    fn tick(item: &str) -> Tick {
        Tick {
            item: item.into(),
            note: None,
        }
    }

    fn check(
        cr_id: &str,
        who: &str,
        role: &str,
        verdict: Verdict,
        ticks: &[Tick],
        prior: &[Decision],
    ) -> Result<(), Refusal> {
        let policy = demo::policy();
        let c = cr(cr_id);
        let eval = evaluate(&c, "d", prior, &policy);
        let principal = policy.principal(who).unwrap().clone();
        check_decision(
            &c,
            &eval,
            &policy,
            &Proposal {
                principal: &principal,
                role,
                verdict,
                rationale: "checked the evidence",
                ticks,
            },
        )
    }

    fn approval(who: &str, role: &str) -> Decision {
        Decision {
            cr_id: "CR-1042".into(),
            cr_digest: "d".into(),
            verdict: Verdict::Approve,
            role: role.into(),
            rationale: "ok".into(),
            ticks: vec![tick("privacy"), tick("rollback")],
            principal: who.into(),
            at: Utc::now(),
            policy_digest: String::new(),
        }
    }

    fn rule(r: Result<(), Refusal>) -> &'static str {
        r.expect_err("must be refused").rule
    }

    #[test]
    fn the_requester_never_decides_on_their_own_change() {
        // jonas requested CR-1043 and holds data-reviewer.
        assert_eq!(
            rule(check(
                "CR-1043",
                "jonas",
                "data-reviewer",
                Verdict::Reject,
                &[],
                &[]
            )),
            "requester-cannot-sign"
        );
    }

    #[test]
    fn the_signer_must_hold_the_role_and_it_must_be_required() {
        assert_eq!(
            rule(check(
                "CR-1042",
                "devi",
                "approver",
                Verdict::Reject,
                &[],
                &[]
            )),
            "role-not-held"
        );
        assert_eq!(
            rule(check("CR-1042", "lena", "lead", Verdict::Approve, &[], &[])),
            "role-not-required"
        );
    }

    #[test]
    fn one_person_fills_at_most_one_signoff() {
        // lena holds approver and on-call; CR-1042 needs an approver; she approved already.
        let prior = [approval("lena", "approver")];
        let r = check("CR-1042", "lena", "approver", Verdict::Approve, &[], &prior);
        assert_eq!(rule(r), "already-approved");
        let prior = [approval("marco", "ops-reviewer")];
        let mut p = demo::policy();
        p.principals
            .iter_mut()
            .find(|x| x.id == "marco")
            .unwrap()
            .roles
            .push("approver".into());
        let c = cr("CR-1042");
        let eval = evaluate(&c, "d", &prior, &p);
        let marco = p.principal("marco").unwrap().clone();
        let r = check_decision(
            &c,
            &eval,
            &p,
            &Proposal {
                principal: &marco,
                role: "approver",
                verdict: Verdict::Approve,
                rationale: "x",
                ticks: &[],
            },
        );
        assert_eq!(rule(r), "one-signoff-per-person");
    }

    #[test]
    fn approval_waits_for_blocking_evidence_but_rejection_never_does() {
        let r = check(
            "CR-1046",
            "marco",
            "ops-reviewer",
            Verdict::Approve,
            &[tick("rollback")],
            &[],
        );
        let refusal = r.unwrap_err();
        assert_eq!(refusal.rule, "blocking-evidence");
        assert!(refusal.message.contains("operational is fail"), "{refusal}");
        assert!(
            check(
                "CR-1046",
                "marco",
                "ops-reviewer",
                Verdict::Reject,
                &[],
                &[]
            )
            .is_ok()
        );
        assert!(
            check(
                "CR-1046",
                "marco",
                "ops-reviewer",
                Verdict::RequestChanges,
                &[],
                &[]
            )
            .is_ok()
        );
        // Pending evidence holds approval too (CR-1044: fairness pending).
        let r = check(
            "CR-1044",
            "devi",
            "risk-reviewer",
            Verdict::Approve,
            &[tick("privacy"), tick("rollback")],
            &[],
        );
        assert_eq!(rule(r), "blocking-evidence");
    }

    #[test]
    fn blocking_manual_items_must_be_ticked_by_someone() {
        let r = check(
            "CR-1042",
            "devi",
            "risk-reviewer",
            Verdict::Approve,
            &[tick("privacy")],
            &[],
        );
        let refusal = r.unwrap_err();
        assert_eq!(refusal.rule, "unticked-blocking-item");
        assert!(refusal.remedy.contains("--tick rollback"), "{refusal}");
        assert!(
            check(
                "CR-1042",
                "devi",
                "risk-reviewer",
                Verdict::Approve,
                &[tick("privacy"), tick("rollback")],
                &[]
            )
            .is_ok()
        );
        // Ticks by an earlier reviewer on the same revision count.
        let prior = [approval("kai", "data-reviewer")];
        assert!(
            check(
                "CR-1042",
                "devi",
                "risk-reviewer",
                Verdict::Approve,
                &[],
                &prior
            )
            .is_ok()
        );
    }

    #[test]
    fn ticks_must_name_manual_items_of_the_gate_and_rationale_is_required() {
        let r = check(
            "CR-1042",
            "devi",
            "risk-reviewer",
            Verdict::Reject,
            &[tick("performance")],
            &[],
        );
        assert_eq!(rule(r), "automated-item");
        let r = check(
            "CR-1042",
            "devi",
            "risk-reviewer",
            Verdict::Reject,
            &[tick("privacy-check")],
            &[],
        );
        assert_eq!(rule(r), "unknown-checklist-item");
        let policy = demo::policy();
        let c = cr("CR-1042");
        let eval = evaluate(&c, "d", &[], &policy);
        let devi = policy.principal("devi").unwrap().clone();
        let r = check_decision(
            &c,
            &eval,
            &policy,
            &Proposal {
                principal: &devi,
                role: "risk-reviewer",
                verdict: Verdict::Reject,
                rationale: "  \n ",
                ticks: &[],
            },
        );
        assert_eq!(rule(r), "rationale-required");
    }
}
