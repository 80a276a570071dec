//! Plain-text output for people. Every string that came from a CR goes through
//! [`clean`] (sanitised, one line) before it is printed.

use crate::domain::checklist::ItemState;
use crate::domain::risk::relative_shift_pct;
use crate::domain::status::Evaluation;
use crate::domain::text::{compact_age as age, sanitize};
use crate::store::{RevisionInfo, StoredRevision};
use crate::workflow::queue::condition;
use chrono::{DateTime, Utc};
use std::fmt::Write;

fn clean(s: &str) -> String {
    sanitize(s)
}

/// The queue table over rows made by [`crate::workflow::queue::queue_cells`].
pub fn queue_table(rows: Vec<[String; 8]>) -> String {
    let header = [
        "ID",
        "GATE",
        "RISK",
        "STATUS",
        "SIGN-OFFS",
        "CHECKS",
        "AGE",
        "TITLE",
    ];
    let mut cells = rows;
    cells.insert(0, header.map(String::from));
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == 7 {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn state_label(state: ItemState) -> &'static str {
    match state {
        ItemState::Pass => "pass",
        ItemState::Fail => "FAIL",
        ItemState::Pending => "pending",
        ItemState::Missing => "MISSING",
        ItemState::Ticked => "ticked",
        ItemState::Unticked => "unticked",
    }
}

fn section(out: &mut String, title: &str, body: &str) {
    let _ = writeln!(out, "\n{title}");
    for line in crate::domain::text::sanitize_with(body, true).lines() {
        let _ = writeln!(out, "  {line}");
    }
}

/// Everything about one revision, for `show`.
pub fn detail(
    rev: &StoredRevision,
    is_current: bool,
    revisions: &[RevisionInfo],
    e: &Evaluation,
    now: DateTime<Utc>,
) -> String {
    let c = &rev.cr;
    let mut out = String::new();
    let _ = writeln!(out, "{}  {}", clean(&c.id), clean(&c.title));
    let current_note = if is_current {
        ""
    } else {
        " — NOT the current revision"
    };
    let _ = writeln!(
        out,
        "  {} gate · status {}{} · revision {} of {} ({}){current_note}",
        c.gate,
        e.status,
        condition(e),
        rev.revision,
        revisions.len(),
        rev.digest,
    );
    let s = &c.subject;
    let from = s
        .from_version
        .as_deref()
        .map(clean)
        .unwrap_or_else(|| "(new)".into());
    let _ = writeln!(
        out,
        "  {} {} {from} → {} in {}",
        clean(&s.kind),
        clean(&s.name),
        clean(&s.to_version),
        s.environment.as_str()
    );
    let _ = writeln!(
        out,
        "  requester {} · owner {} · on-call {} · created {} ({} ago)",
        clean(&c.requester),
        clean(&c.owner),
        clean(&c.on_call),
        c.created_at.format("%Y-%m-%d %H:%M UTC"),
        age(c.created_at, now)
    );

    section(&mut out, "Summary", &c.summary);
    section(&mut out, "Scope", &c.scope);
    section(&mut out, "Impact", &c.impact);

    let r = &e.risk;
    let _ = writeln!(
        out,
        "\nRisk: {} (computed {}, declared {}) · observation window {} h",
        r.effective, r.computed, r.declared, e.observation_hours
    );
    let reasons: Vec<String> = r.reasons.iter().map(|x| clean(&x.to_string())).collect();
    if !reasons.is_empty() {
        let _ = writeln!(out, "  because: {}", reasons.join("; "));
    }
    let _ = writeln!(out, "  declared rationale: {}", clean(&c.risk.rationale));
    if !r.unrated_flags.is_empty() {
        let flags: Vec<String> = r.unrated_flags.iter().map(|f| clean(f)).collect();
        let _ = writeln!(
            out,
            "  flags the policy does not rate: {}",
            flags.join(", ")
        );
    }

    if !c.metrics.is_empty() {
        let _ = writeln!(out, "\nMetrics (baseline → candidate, Δ, relative)");
        let w = c
            .metrics
            .iter()
            .map(|m| clean(&m.name).chars().count())
            .max()
            .unwrap_or(0);
        for m in &c.metrics {
            let rel = relative_shift_pct(m.baseline, m.candidate)
                .map(|p| format!("{p:+.1} %"))
                .unwrap_or_else(|| "n/a".into());
            let _ = writeln!(
                out,
                "  {:<w$}  {} → {}  Δ {:+}  {rel}  {} ({} is better)",
                clean(&m.name),
                m.baseline,
                m.candidate,
                round_delta(m.candidate - m.baseline),
                m.shift().as_str(),
                m.better.as_str()
            );
        }
    }

    let _ = writeln!(
        out,
        "\nChecklist ([A] automated from CI, [M] manual, * blocking)"
    );
    for item in &e.checklist.items {
        let kind = if item.automated { "[A]" } else { "[M]" };
        let blocking = if item.blocking { "*" } else { " " };
        let _ = write!(
            out,
            "  {kind}{blocking} {:<8} {}",
            state_label(item.state),
            clean(&item.label)
        );
        if let Some(d) = &item.detail {
            let _ = write!(out, " — {}", clean(d));
        }
        for t in &item.ticked_by {
            let _ = write!(out, " — ticked by {}", clean(&t.principal));
            if let Some(n) = &t.note {
                let _ = write!(out, ": {}", clean(n));
            }
        }
        let _ = writeln!(out);
    }
    for ev in &e.checklist.other_evidence {
        let _ = writeln!(
            out,
            "  [A]  {:<8} {} (evidence no checklist item reads){}",
            format!("{:?}", ev.status).to_lowercase(),
            clean(&ev.id),
            ev.detail
                .as_deref()
                .map(|d| format!(" — {}", clean(d)))
                .unwrap_or_default()
        );
    }
    if !e.blockers.is_empty() {
        let b: Vec<String> = e.blockers.iter().map(|x| clean(x)).collect();
        let _ = writeln!(out, "  approval blocked by: {}", b.join("; "));
    }

    let _ = writeln!(
        out,
        "\nSign-offs {}/{}",
        e.signoffs.obtained(),
        e.signoffs.required()
    );
    for slot in &e.signoffs.slots {
        match &slot.filled_by {
            Some(who) => {
                let when = e
                    .counted
                    .iter()
                    .find(|d| &d.principal == who)
                    .map(|d| d.at.format(" %Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default();
                let _ = writeln!(out, "  ✓ {:<16} {}{when} (signed)", slot.role, clean(who));
            }

            None => {
                let _ = writeln!(out, "  · {:<16} waiting", slot.role);
            }
        }
    }
    for d in e
        .counted
        .iter()
        .filter(|d| d.verdict != crate::domain::decision::Verdict::Approve)
    {
        let _ = writeln!(
            out,
            "  ✗ {} by {} ({}) {}: {}",
            d.verdict,
            clean(&d.principal),
            clean(&d.role),
            d.at.format("%Y-%m-%d %H:%M UTC"),
            clean(&d.rationale)
        );
    }
    for d in &e.discounted {
        let _ = writeln!(
            out,
            "  ✗ {} by {} ({}) does not count: {}",
            d.decision.verdict,
            clean(&d.decision.principal),
            clean(&d.decision.role),
            d.reason
        );
    }

    if !c.artifacts.is_empty() {
        let _ = writeln!(out, "\nArtifacts");
        for a in &c.artifacts {
            let _ = writeln!(
                out,
                "  {:<18} {}  {}",
                clean(&a.kind),
                clean(&a.title),
                clean(&a.url)
            );
        }
    }
    section(&mut out, "Rollout", &c.plan.rollout);
    section(
        &mut out,
        if c.plan.rollback_tested {
            "Rollback (tested)"
        } else {
            "Rollback (NOT tested)"
        },
        &c.plan.rollback,
    );
    let v = &c.versions;
    let _ = writeln!(
        out,
        "\nVersions: code {} · data {} · config {}{}",
        clean(&v.code),
        clean(&v.data),
        clean(&v.config),
        v.seed.map(|s| format!(" · seed {s}")).unwrap_or_default()
    );
    out
}

/// After approval, for `show`: the last rollback drill of the subject (the evidence the
/// rollback works) and the rollout timeline — approved → canary → observation window →
/// full, KPI readings, a rollback that ended it.
pub fn after_approval(
    c: &crate::domain::change_request::ChangeRequest,
    e: &Evaluation,
    rollout: Option<&crate::domain::rollout::CrRollout>,
    drill: Option<&crate::domain::rollout::DrillFact>,
    policy: &crate::domain::policy::Policy,
    now: DateTime<Utc>,
) -> String {
    use crate::domain::rollout::Stage;
    let mut out = String::from("\nRollback evidence\n");
    let _ = match drill {
        Some(d) => writeln!(
            out,
            "  rollback drill: {}@{} by {} on {} — {} in {:.1} s (target {} min), output {}",
            clean(&d.subject),
            d.environment,
            clean(&d.principal),
            d.at.format("%Y-%m-%d %H:%M UTC"),
            if d.outcome.succeeded() {
                "succeeded"
            } else {
                "FAILED"
            },
            d.outcome.duration_ms as f64 / 1000.0,
            policy.emergency.rollback_target_minutes,
            crate::domain::status::short_digest(&d.output_digest)
        ),
        None => writeln!(
            out,
            "  rollback drill: none recorded for {} (`tollgate drill {} --env staging`); tested only by the requester's word",
            clean(&c.subject.name),
            clean(&c.subject.name)
        ),
    };
    let Some(r) = rollout.filter(|r| !r.stages.is_empty()) else {
        return out;
    };
    let _ = writeln!(
        out,
        "
Rollout timeline"
    );
    let _ = writeln!(out, "  ✓ approved");
    for s in &r.stages {
        let _ = writeln!(
            out,
            "  {} {} {}% by {} {}{}",
            if s.happened() { "✓" } else { "✗" },
            s.stage.as_str(),
            s.traffic,
            clean(&s.principal),
            s.at.format("%Y-%m-%d %H:%M UTC"),
            if s.happened() {
                ""
            } else {
                " — the deployment command FAILED"
            }
        );
    }
    if r.rolled_back.is_none()
        && let Some(canary) = r
            .stages
            .iter()
            .find(|s| s.happened() && s.stage == Stage::Canary)
        && !r
            .stages
            .iter()
            .any(|s| s.happened() && s.stage == Stage::Full)
    {
        let opens = crate::domain::rollout::window_opens(policy, e.risk.effective, canary.at);
        let _ = writeln!(
            out,
            "  · observation window {} h ({} risk): full {}",
            policy.observation_hours.get(e.risk.effective),
            e.risk.effective,
            if opens > now {
                format!(
                    "opens {} (in {})",
                    opens.format("%Y-%m-%d %H:%M UTC"),
                    crate::domain::emergency::countdown(opens, now)
                )
            } else {
                "may proceed now".into()
            }
        );
    }
    if let Some(last) = r.readings.last() {
        let _ = writeln!(
            out,
            "  KPI readings: {} · last {} {}{}",
            r.readings.len(),
            last.at.format("%H:%M UTC"),
            last.verdict.as_str(),
            if last.breaches.is_empty() {
                String::new()
            } else {
                format!(": {}", clean(&last.breaches.join("; ")))
            }
        );
    }
    if let Some(b) = &r.rolled_back {
        let _ = writeln!(
            out,
            "  ✗ rolled back under {} by {} {}",
            clean(&b.incident),
            clean(&b.principal),
            b.at.format("%Y-%m-%d %H:%M UTC")
        );
    }
    out
}

/// Rounds away float noise (0.648 - 0.611 = 0.037000000000000033) for display.
fn round_delta(d: f64) -> f64 {
    (d * 1e9).round() / 1e9
}

/// What a policy change request changes, against the policy in force.
pub fn policy_changes(
    changes: &[crate::domain::policy_diff::PolicyChange],
    in_force: &crate::domain::policy_book::PolicyVersion,
) -> String {
    let mut out = format!(
        "\nPolicy change against version {} in force ({}): {} change(s)\n",
        in_force.version,
        in_force.digest,
        changes.len()
    );
    for c in changes {
        let _ = writeln!(out, "  {}", clean(&c.to_string()));
    }
    if changes.is_empty() {
        out.push_str("  (none: it reads the same as the policy in force)\n");
    }
    out
}
