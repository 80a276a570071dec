//! Changing the policy is itself a change request: gate `policy`, always high risk,
//! signed off under the `[signoffs.policy]` table of the policy in force (two distinct
//! leads in the playbook; the proposer never counts), and adopted in the log the moment
//! its sign-offs are complete.
//!
//! Nothing here trusts the proposer's word: the proposal document is rebuilt from what
//! the proposer sent (the text) and what the log says (the policy in force), and every
//! rule is checked again by whoever appends — the local store's writer and the server.

use crate::domain::change_request::RiskLevel;
use crate::domain::change_request::{ChangeRequest, Gate, SCHEMA_V1};
use crate::domain::policy::{Policy, PolicyReport, parse_policy};
use crate::domain::policy_book::PolicyBook;
use crate::domain::rules::Refusal;
use crate::domain::signoff::max_fillable;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Prefix of the ids of policy change requests (`POL-2`, `POL-3`, ...).
pub const ID_PREFIX: &str = "POL-";

/// The subject name of every policy change request.
pub const SUBJECT: &str = "tollgate-policy";

fn refuse<T>(rule: &'static str, message: String, remedy: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        rule,
        message,
        remedy: remedy.into(),
    })
}

/// Whether `policy` can approve its own successor: the sign-offs its `[signoffs.policy]`
/// table (or the default two leads) requires can be filled by distinct principals who
/// hold a key. A policy that fails this would lock out every future change.
pub fn check_governable(policy: &Policy) -> Result<(), Refusal> {
    let required = policy.required_signoffs(Gate::Policy, RiskLevel::High);
    let signers = policy.signing_principals();
    let held: Vec<&[String]> = signers.iter().map(|p| p.roles.as_slice()).collect();
    if max_fillable(&required, &held) >= required.len() {
        return Ok(());
    }
    let holders: Vec<String> = required
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|role| {
            let who: Vec<&str> = signers
                .iter()
                .filter(|p| p.has_role(role))
                .map(|p| p.id.as_str())
                .collect();
            format!(
                "{role}: {}",
                if who.is_empty() {
                    "nobody".to_string()
                } else {
                    who.join(", ")
                }
            )
        })
        .collect();
    refuse(
        "policy-ungovernable",
        format!(
            "this policy could never be changed again: a change to it needs {} distinct people ({}) with keys, but only these can sign — {}",
            required.len(),
            required.join(" + "),
            holders.join("; ")
        ),
        "add principals (with keys) holding those roles, or change [signoffs.policy]",
    )
}

/// Every problem of a proposed policy text as one refusal.
pub fn invalid_policy(report: &PolicyReport) -> Refusal {
    Refusal {
        rule: "policy-invalid",
        message: format!(
            "the proposed policy is invalid:\n{}",
            report.to_string().trim_end()
        ),
        remedy: "fix it (`tollgate policy check FILE` lists every problem) and propose it again"
            .into(),
    }
}

/// Parses a policy that is to be adopted (proposed, installed by `init`, or recorded
/// at a migration): valid, and able to govern its own changes.
pub fn check_adoptable(text: &str) -> Result<Policy, Refusal> {
    let (policy, _) = parse_policy(text).map_err(|r| invalid_policy(&r))?;
    check_governable(&policy)?;
    Ok(policy)
}

/// What a proposer asks for.
#[derive(Debug, Clone)]
pub struct ProposalInput<'a> {
    /// The CR id (`POL-N`).
    pub id: &'a str,
    /// The proposer (a principal of the policy in force).
    pub proposer: &'a str,
    /// The proposed policy file, verbatim.
    pub text: &'a str,
    /// Why.
    pub rationale: &'a str,
    /// What changes, one line each (shown in the CR's scope).
    pub changes: &'a [String],
    /// When.
    pub at: DateTime<Utc>,
}

/// The change-request document for a proposal, bound to the policy in force.
pub fn proposal_document(input: &ProposalInput<'_>, book: &PolicyBook) -> Value {
    let current = book.current();
    let rationale = input.rationale.trim();
    let first_line = rationale.lines().next().unwrap_or("").trim();
    let title = if first_line.is_empty() {
        format!("Policy change proposed by {}", input.proposer)
    } else {
        let short: String = first_line.chars().take(150).collect();
        format!("Policy change: {short}")
    };
    let mut scope = format!(
        "The governance policy (principals, keys, roles, on-call roster, sign-offs, artifacts, checklist). {} change(s) against version {}:\n",
        input.changes.len(),
        current.version
    );
    for line in input.changes {
        if scope.chars().count() + line.chars().count() > 7_900 {
            scope.push_str("… (`tollgate show` lists them all)");
            break;
        }
        scope.push_str(line);
        scope.push('\n');
    }
    json!({
        "schema": SCHEMA_V1,
        "id": input.id,
        "gate": Gate::Policy.as_str(),
        "title": title,
        "summary": if rationale.is_empty() { "(no rationale given)" } else { rationale },
        "scope": scope.trim_end(),
        "subject": {
            "kind": "policy",
            "name": SUBJECT,
            "from_version": format!("v{}", current.version),
            "to_version": format!("v{}", current.version + 1),
            "environment": "prod",
        },
        "requester": input.proposer,
        "created_at": input.at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "owner": input.proposer,
        "on_call": input.proposer,
        "artifacts": [],
        "metrics": [],
        "risk": {
            "declared": "high",
            "rationale": "A policy change decides who may sign what: always high risk.",
            "flags": [],
        },
        "impact": "Entries appended after adoption are judged by the new policy; earlier entries keep the policy they were signed under.",
        "checks": [],
        "plan": {
            "rollout": "Adopted in the audit log the moment its sign-offs are complete; the policy file beside the store is rewritten with this text.",
            "rollback": "Propose the previous version again (`tollgate policy history`, `tollgate policy show --text`).",
            "rollback_tested": false,
        },
        "versions": { "code": SUBJECT, "data": "n/a", "config": current.digest },
        "policy": { "text": input.text, "base_digest": current.digest },
    })
}

/// Checks a proposal submitted by `submitter` against the policy in force: the submitter
/// proposes in their own name and is a principal of the policy in force, the proposal
/// starts from the policy in force, and its text is adoptable and changes something.
/// Returns the proposed policy.
pub fn check_proposal(
    cr: &ChangeRequest,
    submitter: &str,
    book: &PolicyBook,
) -> Result<Policy, Refusal> {
    let Some(proposal) = cr.policy.as_ref().filter(|_| cr.gate == Gate::Policy) else {
        return refuse(
            "not-a-policy-change",
            format!("{} is not a policy change request", cr.id),
            "propose policy changes with `tollgate policy propose FILE`",
        );
    };
    let current = book.current();
    if book.is_provisional() {
        return refuse(
            "store-unmigrated",
            "this store has no policy in its log yet, so there is nothing to change".into(),
            "run `tollgate migrate` first (it records the policy file as the genesis)",
        );
    }
    if cr.requester != submitter {
        return refuse(
            "proposer-is-submitter",
            format!(
                "{submitter} submitted a policy change in {}'s name",
                cr.requester
            ),
            "propose changes in your own name",
        );
    }
    if current.policy.principal(submitter).is_none() {
        return refuse(
            "proposer-not-in-force",
            format!(
                "{submitter} is not a principal of the policy in force (version {})",
                current.version
            ),
            "ask a principal of the policy in force to propose it",
        );
    }
    if proposal.base_digest != current.digest {
        return refuse(
            "policy-proposal-stale",
            format!(
                "{} starts from policy {}, but version {} ({}) is in force",
                cr.id, proposal.base_digest, current.version, current.digest
            ),
            "propose it again against the policy in force: `tollgate policy propose FILE`",
        );
    }
    let proposed = check_adoptable(&proposal.text)?;
    if proposed == *current.policy {
        return refuse(
            "policy-unchanged",
            format!(
                "the proposal reads the same as the policy in force (version {})",
                current.version
            ),
            "comment-only edits need no adoption; change what the policy says",
        );
    }
    Ok(proposed)
}

/// The numeric part of a `POL-N` id.
pub fn proposal_number(id: &str) -> Option<u32> {
    id.strip_prefix(ID_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;
    use crate::domain::change_request::from_value;
    use crate::domain::policy_book::PolicyVersion;
    use std::sync::Arc;

    fn book(text: &str) -> PolicyBook {
        let (policy, _) = parse_policy(text).unwrap();
        PolicyBook::from_versions(vec![PolicyVersion {
            version: 1,
            seq: 1,
            hash: "sha256:h".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            text: text.into(),
            policy: Arc::new(policy),
            adopted_at: None,
            adopted_by: Some("lena".into()),
            cr_id: None,
            migration: false,
        }])
        .unwrap()
    }

    fn keyed() -> String {
        demo::seeded_policy_text()
    }

    fn proposal(book: &PolicyBook, proposer: &str, text: &str) -> ChangeRequest {
        let doc = proposal_document(
            &ProposalInput {
                id: "POL-2",
                proposer,
                text,
                rationale: "Rotate the on-call roster for December",
                changes: &["- on-call marco".to_string()],
                at: Utc::now(),
            },
            book,
        );
        from_value(&doc).expect("a proposal document is a valid CR document")
    }

    #[test]
    fn a_proposal_is_a_high_risk_policy_change_bound_to_the_policy_in_force() {
        let b = book(&keyed());
        let new = keyed().replace(
            "on_call = [\"marco\", \"lena\", \"guard\"]",
            "on_call = [\"lena\", \"guard\"]",
        );
        let cr = proposal(&b, "marco", &new);
        assert_eq!(cr.gate, Gate::Policy);
        assert_eq!(
            cr.title,
            "Policy change: Rotate the on-call roster for December"
        );
        let p = cr.policy.as_ref().unwrap();
        assert_eq!(p.base_digest, b.current().digest);
        let proposed = check_proposal(&cr, "marco", &b).unwrap();
        assert_eq!(proposed.emergency.on_call, ["lena", "guard"]);
        let risk = crate::domain::risk::assess(&cr, &b.policy().risk);
        assert_eq!(risk.effective, RiskLevel::High);
    }

    #[test]
    fn proposals_that_would_break_governance_are_refused_with_the_rule() {
        let b = book(&keyed());
        let rule = |cr: &ChangeRequest, who: &str| check_proposal(cr, who, &b).unwrap_err().rule;
        let same = proposal(&b, "marco", &format!("# only a comment\n{}", keyed()));
        assert_eq!(rule(&same, "marco"), "policy-unchanged");
        // Without [signoffs.policy] a change needs two leads; one is left.
        let lone_lead = keyed()
            .replace("roles = [\"approver\", \"lead\"]", "roles = [\"approver\"]")
            .replace("roles = [\"lead\"]", "roles = [\"risk-reviewer\"]")
            .replace(
                "[signoffs.policy]\nlow = [\"lead\", \"lead\"]\nmedium = [\"lead\", \"lead\"]\nhigh = [\"lead\", \"lead\"]\n",
                "",
            );
        let cr = proposal(&b, "marco", &lone_lead);
        let refusal = check_proposal(&cr, "marco", &b).unwrap_err();
        assert_eq!(refusal.rule, "policy-ungovernable", "{refusal}");
        assert!(refusal.message.contains("lead: lena"), "{refusal}");
        // Three leads, but two of them without a key: nobody could sign their slots.
        let keyless = keyed().replace(
            &format!(
                "keys = [\"{}\"]\n",
                demo::seeded_signer("noor").unwrap().public_key_line()
            ),
            "",
        );
        let keyless = keyless.replace(
            &format!(
                "keys = [\"{}\"]\n",
                demo::seeded_signer("sofia").unwrap().public_key_line()
            ),
            "",
        );
        let cr = proposal(&b, "marco", &keyless);
        assert_eq!(rule(&cr, "marco"), "policy-ungovernable");
        let cr = proposal(&b, "marco", &keyed().replace("[risk]", "[risk\n"));
        assert_eq!(rule(&cr, "marco"), "policy-invalid");
        let cr = proposal(&b, "marco", &keyed().replace("high = 24", "high = 48"));
        assert_eq!(rule(&cr, "jonas"), "proposer-is-submitter");
        let cr = proposal(&b, "mallory", &keyed().replace("high = 24", "high = 48"));
        assert_eq!(rule(&cr, "mallory"), "proposer-not-in-force");
        let moved = book(&keyed().replace("high = 24", "high = 36"));
        let mut moved_cr = cr.clone();
        moved_cr.requester = "marco".into();
        if let Some(p) = moved_cr.policy.as_mut() {
            p.base_digest = format!("sha256:{}", "b".repeat(64));
        }
        assert_eq!(
            check_proposal(&moved_cr, "marco", &moved).unwrap_err().rule,
            "policy-proposal-stale"
        );
    }

    #[test]
    fn a_policy_without_enough_keyed_leads_cannot_govern_itself() {
        // The shared fixture has no keys: nobody could sign a change to it.
        let (bare, _) = parse_policy(demo::POLICY_TOML).unwrap();
        assert_eq!(
            check_governable(&bare).unwrap_err().rule,
            "policy-ungovernable"
        );
        let (keyed, _) = parse_policy(&keyed()).unwrap();
        assert!(check_governable(&keyed).is_ok());
        assert_eq!(proposal_number("POL-12"), Some(12));
        assert_eq!(proposal_number("CR-12"), None);
    }
}
