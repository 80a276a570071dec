//! What a policy change changes, in the words a lead reviews it in: principals, keys,
//! roles, the on-call roster, sign-offs, artifacts, the checklist, the emergency rules.

use crate::domain::change_request::RiskLevel;
use crate::domain::policy::{ItemMode, PerLevel, Policy, Principal, RevokedSince};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;

/// Added, removed or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Something new.
    Added,
    /// Something gone.
    Removed,
    /// Something different.
    Changed,
}

/// One difference between two policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyChange {
    /// Added, removed or changed.
    pub kind: ChangeKind,
    /// What, e.g. `principal noor` or `signoffs.model.high`.
    pub what: String,
    /// The new value, the old one, or `old → new`.
    pub detail: String,
}

impl fmt::Display for PolicyChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.kind {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        };
        if self.detail.is_empty() {
            write!(f, "{mark} {}", self.what)
        } else {
            write!(f, "{mark} {}: {}", self.what, self.detail)
        }
    }
}

struct Diff(Vec<PolicyChange>);

impl Diff {
    fn push(&mut self, kind: ChangeKind, what: impl Into<String>, detail: impl Into<String>) {
        self.0.push(PolicyChange {
            kind,
            what: what.into(),
            detail: detail.into(),
        });
    }

    fn value<T: PartialEq + fmt::Debug>(&mut self, what: &str, old: &T, new: &T) {
        if old != new {
            self.push(ChangeKind::Changed, what, format!("{old:?} → {new:?}"));
        }
    }

    fn list(&mut self, what: &str, old: &[String], new: &[String]) {
        if old != new {
            self.push(
                ChangeKind::Changed,
                what,
                format!("[{}] → [{}]", old.join(", "), new.join(", ")),
            );
        }
    }

    /// Members added to and removed from a set-like list.
    fn members(&mut self, what: &str, old: &[String], new: &[String]) {
        for x in new.iter().filter(|x| !old.contains(x)) {
            self.push(ChangeKind::Added, format!("{what} {x}"), "");
        }
        for x in old.iter().filter(|x| !new.contains(x)) {
            self.push(ChangeKind::Removed, format!("{what} {x}"), "");
        }
    }

    fn levels<T: PartialEq + fmt::Debug>(
        &mut self,
        what: &str,
        old: &PerLevel<T>,
        new: &PerLevel<T>,
        show: impl Fn(&T) -> String,
    ) {
        for level in [RiskLevel::Low, RiskLevel::Medium, RiskLevel::High] {
            let (a, b) = (old.get(level), new.get(level));
            if a != b {
                self.push(
                    ChangeKind::Changed,
                    format!("{what}.{level}"),
                    format!("{} → {}", show(a), show(b)),
                );
            }
        }
    }
}

/// A key line shortened for a review: algorithm, the end of the key, and its comment.
pub fn short_key(line: &str) -> String {
    let mut parts = line.split_whitespace();
    let algo = parts.next().unwrap_or("");
    let blob = parts.next().unwrap_or("");
    let tail: String = blob
        .chars()
        .rev()
        .take(10)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let comment: Vec<&str> = parts.collect();
    let comment = if comment.is_empty() {
        String::new()
    } else {
        format!(" {}", comment.join(" "))
    };
    format!("{algo} …{tail}{comment}")
}

fn describe_principal(p: &Principal) -> String {
    format!(
        "{}; roles {}; {} key(s)",
        p.name,
        p.roles.join(", "),
        p.keys.len()
    )
}

fn bracket(v: &[String]) -> String {
    format!("[{}]", v.join(", "))
}

/// Every difference from `old` to `new`, principals first.
pub fn diff(old: &Policy, new: &Policy) -> Vec<PolicyChange> {
    let mut d = Diff(Vec::new());
    d.value("version", &old.version, &new.version);
    for p in &new.principals {
        let Some(o) = old.principal(&p.id) else {
            d.push(
                ChangeKind::Added,
                format!("principal {}", p.id),
                describe_principal(p),
            );
            continue;
        };
        let who = format!("principal {}", p.id);
        if o.name != p.name {
            d.push(
                ChangeKind::Changed,
                format!("{who} name"),
                format!("{} → {}", o.name, p.name),
            );
        }
        d.members(&format!("{who} role"), &o.roles, &p.roles);
        for k in p.keys.iter().filter(|k| !o.keys.contains(k)) {
            d.push(ChangeKind::Added, format!("{who} key"), short_key(k));
        }
        for k in o.keys.iter().filter(|k| !p.keys.contains(k)) {
            d.push(ChangeKind::Removed, format!("{who} key"), short_key(k));
        }
    }
    for o in old
        .principals
        .iter()
        .filter(|o| new.principal(&o.id).is_none())
    {
        d.push(
            ChangeKind::Removed,
            format!("principal {}", o.id),
            describe_principal(o),
        );
    }
    d.members("on-call", &old.emergency.on_call, &new.emergency.on_call);

    let gates: BTreeSet<_> = old.signoffs.keys().chain(new.signoffs.keys()).collect();
    for gate in gates {
        let what = format!("signoffs.{gate}");
        match (old.signoffs.get(gate), new.signoffs.get(gate)) {
            (Some(a), Some(b)) => d.levels(&what, a, b, |v| bracket(v)),
            (None, Some(b)) => d.push(
                ChangeKind::Added,
                what,
                format!(
                    "low {}, medium {}, high {}",
                    bracket(&b.low),
                    bracket(&b.medium),
                    bracket(&b.high)
                ),
            ),
            (Some(_), None) => d.push(ChangeKind::Removed, what, ""),
            (None, None) => {}
        }
    }
    let gates: BTreeSet<_> = old.artifacts.keys().chain(new.artifacts.keys()).collect();
    for gate in gates {
        let empty = PerLevel {
            low: Vec::new(),
            medium: Vec::new(),
            high: Vec::new(),
        };
        let a = old.artifacts.get(gate).unwrap_or(&empty);
        let b = new.artifacts.get(gate).unwrap_or(&empty);
        d.levels(&format!("artifacts.{gate}"), a, b, |v| bracket(v));
    }
    d.levels(
        "observation_hours",
        &old.observation_hours,
        &new.observation_hours,
        |h| format!("{h} h"),
    );
    d.value(
        "risk.low_max_shift_pct",
        &old.risk.low_max_shift_pct,
        &new.risk.low_max_shift_pct,
    );
    d.value(
        "risk.medium_max_shift_pct",
        &old.risk.medium_max_shift_pct,
        &new.risk.medium_max_shift_pct,
    );
    d.members(
        "risk.high_flags",
        &old.risk.high_flags,
        &new.risk.high_flags,
    );
    d.members(
        "risk.medium_flags",
        &old.risk.medium_flags,
        &new.risk.medium_flags,
    );

    for item in &new.checklist {
        let what = format!("checklist {}", item.id);
        let mode = |m: &ItemMode| match m {
            ItemMode::Automated { evidence } => format!("automated ({evidence})"),
            ItemMode::Manual => "manual".to_string(),
        };
        let gates = |g: &[crate::domain::change_request::Gate]| {
            g.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
        };
        match old.checklist.iter().find(|o| o.id == item.id) {
            None => d.push(
                ChangeKind::Added,
                what,
                format!(
                    "{}; {}; gates {}; {}",
                    item.label,
                    mode(&item.mode),
                    gates(&item.gates),
                    if item.blocking {
                        "blocking"
                    } else {
                        "not blocking"
                    }
                ),
            ),
            Some(o) => {
                if o.label != item.label {
                    d.push(
                        ChangeKind::Changed,
                        format!("{what} label"),
                        format!("{} → {}", o.label, item.label),
                    );
                }
                if o.mode != item.mode {
                    d.push(
                        ChangeKind::Changed,
                        format!("{what} mode"),
                        format!("{} → {}", mode(&o.mode), mode(&item.mode)),
                    );
                }
                if o.gates != item.gates {
                    d.push(
                        ChangeKind::Changed,
                        format!("{what} gates"),
                        format!("{} → {}", gates(&o.gates), gates(&item.gates)),
                    );
                }
                d.value(&format!("{what} blocking"), &o.blocking, &item.blocking);
            }
        }
    }
    for o in old
        .checklist
        .iter()
        .filter(|o| !new.checklist.iter().any(|n| n.id == o.id))
    {
        d.push(
            ChangeKind::Removed,
            format!("checklist {}", o.id),
            o.label.clone(),
        );
    }

    let (a, b) = (&old.emergency, &new.emergency);
    d.value(
        "emergency.exception_hours",
        &a.exception_hours,
        &b.exception_hours,
    );
    d.value(
        "emergency.post_review_hours",
        &a.post_review_hours,
        &b.post_review_hours,
    );
    d.list(
        "emergency.post_review_roles",
        &a.post_review_roles,
        &b.post_review_roles,
    );
    d.value(
        "emergency.rollback_target_minutes",
        &a.rollback_target_minutes,
        &b.rollback_target_minutes,
    );
    if a.rollback != b.rollback {
        d.push(
            ChangeKind::Changed,
            "emergency.rollback",
            format!(
                "{} command(s) → {} command(s)",
                a.rollback.len(),
                b.rollback.len()
            ),
        );
    }
    for r in &new.revoked_keys {
        if !old.revoked_keys.contains(r) {
            let since = match &r.since {
                RevokedSince::Time(t) => format!("since {}", t.to_rfc3339()),
                RevokedSince::Entry(n) => format!("since entry {n}"),
            };
            d.push(
                ChangeKind::Added,
                "revoked key",
                format!("{} {since} ({})", short_key(&r.key), r.reason),
            );
        }
    }
    for r in old
        .revoked_keys
        .iter()
        .filter(|r| !new.revoked_keys.contains(r))
    {
        d.push(ChangeKind::Removed, "revoked key", short_key(&r.key));
    }
    d.0
}

/// What a `policy`-gate CR proposes against `current`; `None` for any other CR (or a
/// proposal whose text no longer reads).
pub fn proposal_changes(
    current: &Policy,
    cr: &crate::domain::change_request::ChangeRequest,
) -> Option<Vec<PolicyChange>> {
    let proposal = cr.policy.as_ref()?;
    let (new, _) = crate::domain::policy::parse_policy(&proposal.text).ok()?;
    Some(diff(current, &new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;

    fn lines(old: &Policy, new: &Policy) -> Vec<String> {
        diff(old, new).iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn identical_policies_have_no_changes() {
        let p = demo::policy();
        assert!(diff(&p, &p).is_empty());
    }

    #[test]
    fn a_roster_rotation_and_a_new_reviewer_read_as_a_lead_would_say_them() {
        let old = demo::policy();
        let text = demo::POLICY_TOML
            .replace("on_call = [\"marco\", \"lena\", \"guard\"]", "on_call = [\"lena\", \"sofia\", \"guard\"]")
            .replace(
                "roles = [\"approver\", \"lead\"]",
                "roles = [\"approver\", \"lead\", \"on-call\"]",
            )
            .replace(
                "high = [\"ops-reviewer\", \"risk-reviewer\", \"approver\"]",
                "high = [\"ops-reviewer\", \"risk-reviewer\", \"approver\", \"data-reviewer\"]",
            )
            .replace(
                "[[principals]]\nid = \"noor\"",
                "[[principals]]\nid = \"ines\"\nname = \"Ines Costa\"\nroles = [\"risk-reviewer\"]\n\n[[principals]]\nid = \"noor\"",
            );
        let (new, _) = crate::domain::policy::parse_policy(&text).unwrap();
        assert_eq!(
            lines(&old, &new),
            [
                "+ principal sofia role on-call",
                "+ principal ines: Ines Costa; roles risk-reviewer; 0 key(s)",
                "+ on-call sofia",
                "- on-call marco",
                "~ signoffs.deployment.high: [ops-reviewer, risk-reviewer, approver] → [ops-reviewer, risk-reviewer, approver, data-reviewer]",
            ]
        );
        // And the reverse reads as the opposite.
        let back = lines(&new, &old);
        assert!(
            back.contains(
                &"- principal ines: Ines Costa; roles risk-reviewer; 0 key(s)".to_string()
            ),
            "{back:?}"
        );
        assert!(
            back.contains(&"- principal sofia role on-call".to_string()),
            "{back:?}"
        );
    }

    #[test]
    fn keys_are_shown_short_with_their_comment() {
        assert_eq!(
            short_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx0123456789abcdef noor@laptop"),
            "ssh-ed25519 …6789abcdef noor@laptop"
        );
    }
}
