//! `history`, `health`, `export`: the decision history for leads and auditors.

use super::args::HistoryArgs;
use super::{CliError, to_json, write_out};
use crate::audit::log::VerifyReport;
use crate::config::Paths;
use crate::domain::text::{sanitize, truncate};
use crate::export::{Selection, VERIFY_SCRIPT, build};
use crate::history::{Filter, HistoryEntry, health, human_duration, load, to_csv};
use crate::store::{VerifyOptions, verify_log};
use chrono::{DateTime, Utc};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

fn chain_line(report: &VerifyReport, millis: u128) -> String {
    match &report.first_bad {
        None => format!(
            "audit log verified: {} ({millis} ms)",
            crate::domain::text::entries_and_signatures(report.entries, report.signatures)
        ),
        Some(bad) => format!(
            "AUDIT LOG BROKEN at entry {}: {} — {} (entries from {} on are not trusted)",
            bad.seq, bad.problem, bad.detail, bad.seq
        ),
    }
}

/// Names the decision entries the history left out (on stderr, so JSON stays clean).
fn warn_untrusted(untrusted: &[crate::audit::log::Untrusted]) {
    if let Some(first) = untrusted.first() {
        eprintln!(
            "⚠ {} decision entr{} left out as untrusted (entry {}: {}) — run `tollgate verify`",
            untrusted.len(),
            if untrusted.len() == 1 { "y" } else { "ies" },
            first.seq,
            crate::domain::text::sanitize(&first.problem)
        );
    }
}

/// `tollgate history`.
pub fn history(
    paths: &Paths,
    args: &HistoryArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let book = super::policy_cmds::load_book(paths)?;
    let store = super::open_store(paths)?;
    let started = Instant::now();
    let chain = verify_log(
        &store,
        &VerifyOptions {
            now: Some(now),
            ..VerifyOptions::for_book(&book)
        },
    )?;
    let millis = started.elapsed().as_millis();
    let data = load(&store, &book, now)?;
    warn_untrusted(&data.untrusted);
    let filter = Filter {
        principal: args.principal.clone(),
        subject: args.subject.as_ref().map(|s| s.to_lowercase()),
        gate: args.gate,
        risk: args.risk,
        verdict: args.verdict,
        since: args.since,
        until: args.until,
        words: args
            .search
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_lowercase)
            .collect(),
    };
    let shown: Vec<&HistoryEntry> = data.entries.iter().filter(|e| filter.matches(e)).collect();
    let events: Vec<&crate::history::EmergencyEvent> = data
        .events
        .iter()
        .filter(|e| filter.matches_event(e))
        .collect();
    let bad_from = chain.first_bad.as_ref().map(|b| b.seq);
    let status = |seq: u64| {
        if bad_from.is_some_and(|b| seq >= b) {
            "UNVERIFIED"
        } else {
            "verified"
        }
    };
    // Rationales are read from the log only for the machine-readable exports.
    let rationales = if args.json || args.csv {
        crate::history::rationales(&store, &shown.iter().map(|e| e.seq).collect())?
    } else {
        Default::default()
    };
    let rationale = |seq: u64| rationales.get(&seq).map(String::as_str);
    if args.json {
        #[derive(serde::Serialize)]
        struct Row<'a> {
            #[serde(flatten)]
            entry: &'a HistoryEntry,
            verification: &'static str,
            rationale: Option<&'a str>,
        }
        let rows: Vec<Row> = shown
            .iter()
            .map(|e| Row {
                entry: e,
                verification: status(e.seq),
                rationale: rationale(e.seq),
            })
            .collect();
        write_out(
            out,
            &to_json(&serde_json::json!({
                "audit_log": chain,
                "decisions": rows,
                "emergencies": events,
            }))?,
        )?;
    } else if args.csv {
        write_out(out, &to_csv(&shown, status, rationale))?;
    } else {
        let mut text = format!("{}\n\n", chain_line(&chain, millis));
        text.push_str(&format!(
            "{:<6} {:<17} {:<9} {:<22} {:<16} {:<8} {:<14} {:<6} {:<8} {}\n",
            "ENTRY",
            "DECIDED (UTC)",
            "CR",
            "SUBJECT",
            "VERDICT",
            "BY",
            "ROLE",
            "RISK",
            "LEAD",
            "SIGNED RECORD"
        ));
        for e in &shown {
            text.push_str(&format!(
                "{:<6} {:<17} {:<9} {:<22} {:<16} {:<8} {:<14} {:<6} {:<8} {}\n",
                e.seq,
                e.at.format("%Y-%m-%d %H:%M"),
                truncate(&sanitize(&e.cr_id), 9),
                truncate(&format!("{}@{}", sanitize(&e.subject), e.environment), 22),
                e.verdict,
                truncate(&sanitize(&e.principal), 8),
                truncate(&sanitize(&e.role), 14),
                e.risk,
                e.lead_time
                    .map(human_duration)
                    .unwrap_or_else(|| "—".into()),
                status(e.seq)
            ));
        }
        text.push_str(&format!(
            "\n{} of {} decisions shown\n",
            shown.len(),
            data.entries.len()
        ));
        if !events.is_empty() {
            text.push_str("\nEmergency rollbacks and reviews\n");
            for e in &events {
                let what = match &e.kind {
                    crate::history::EventKind::Rollback {
                        from_version,
                        to_version,
                    } => format!(
                        "rollback {}@{} {} → {}",
                        sanitize(&e.subject),
                        e.environment,
                        sanitize(from_version),
                        sanitize(to_version)
                    ),
                    other => other.label().to_string(),
                };
                text.push_str(&format!(
                    "{:<6} {:<17} {:<12} {:<8} {} — {}\n",
                    e.seq,
                    e.at.format("%Y-%m-%d %H:%M"),
                    truncate(&sanitize(&e.incident), 12),
                    truncate(&sanitize(&e.principal), 8),
                    what,
                    status(e.seq)
                ));
            }
        }
        write_out(out, &text)?;
    }
    match &chain.first_bad {
        None => Ok(()),
        Some(_) => Err(CliError::refused(chain_line(&chain, millis))),
    }
}

/// `tollgate health`.
pub fn health_cmd(
    paths: &Paths,
    since: Option<chrono::NaiveDate>,
    until: Option<chrono::NaiveDate>,
    json: bool,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let book = super::policy_cmds::load_book(paths)?;
    let store = super::open_store(paths)?;
    let data = load(&store, &book, now)?;
    warn_untrusted(&data.untrusted);
    let filter = Filter {
        since,
        until,
        ..Filter::default()
    };
    let shown: Vec<&HistoryEntry> = data.entries.iter().filter(|e| filter.matches(e)).collect();
    let derived = crate::workflow::exceptions(&store)?;
    if let Some(line) = super::emergency::untrusted_line(&derived.untrusted) {
        eprintln!("{line}");
    }
    let exceptions = derived.exceptions;
    let h = health(&shown, &data.waiting, &exceptions, now);
    let drills = crate::history::drill_health(
        &crate::workflow::rollout::rollouts(&store)?.drills,
        book.policy().emergency.rollback_target_minutes,
    );
    if json {
        #[derive(serde::Serialize)]
        struct WithDrills<'a> {
            #[serde(flatten)]
            health: &'a crate::history::Health,
            drills: &'a crate::history::DrillHealth,
        }
        return write_out(
            out,
            &to_json(&WithDrills {
                health: &h,
                drills: &drills,
            })?,
        );
    }
    let secs = |s: Option<i64>| {
        s.map(|x| human_duration(chrono::Duration::seconds(x)))
            .unwrap_or_else(|| "—".into())
    };
    let mut text = String::from("Lead time, submitted → decided\n");
    text.push_str(&format!(
        "  {:<8} {:>9} {:>10} {:>10}\n",
        "RISK", "DECISIONS", "MEDIAN", "P90"
    ));
    for l in &h.lead_times {
        text.push_str(&format!(
            "  {:<8} {:>9} {:>10} {:>10}\n",
            l.risk.as_str(),
            l.decisions,
            secs(l.median_secs),
            secs(l.p90_secs)
        ));
    }
    text.push_str(&format!(
        "\nDecisions: {} — approve {:.0} %, reject {:.0} %, request changes {:.0} %\n",
        h.decisions,
        h.approval_rate * 100.0,
        h.rejection_rate * 100.0,
        h.changes_rate * 100.0
    ));
    text.push_str(&format!(
        "Emergency exceptions: {} opened, {} closed, {} with review overdue\n",
        h.exceptions_opened, h.exceptions_closed, h.exceptions_overdue
    ));
    if h.slow_low_risk.is_empty() {
        text.push_str(&format!(
            "Over-governance: no low-risk change has waited over {} h\n",
            h.slow_after_hours
        ));
    } else {
        let items: Vec<String> = h
            .slow_low_risk
            .iter()
            .map(|w| {
                format!(
                    "{} ({})",
                    sanitize(&w.cr_id),
                    w.waited.map(human_duration).unwrap_or_default()
                )
            })
            .collect();
        text.push_str(&format!(
            "Over-governance: {} low-risk change(s) waiting over {} h: {}\n",
            items.len(),
            h.slow_after_hours,
            items.join(", ")
        ));
    }
    text.push_str(&format!(
        "\nRollback drills (target {} min)\n",
        drills.target_minutes
    ));
    if drills.quarters.is_empty() {
        text.push_str("  none recorded: run `tollgate drill SUBJECT --env staging` quarterly\n");
    }
    for q in &drills.quarters {
        text.push_str(&format!(
            "  {}  {} drill(s), {} failed, {} within target; median {}, slowest {}\n",
            q.quarter,
            q.drills,
            q.failed,
            q.within_target,
            q.median_secs.map_or("—".into(), |s| format!("{s:.1} s")),
            q.slowest_secs.map_or("—".into(), |s| format!("{s:.1} s")),
        ));
    }
    if !drills.failing.is_empty() {
        text.push_str(&format!(
            "  last drill FAILED for: {}\n",
            sanitize(&drills.failing.join(", "))
        ));
    }
    write_out(out, &text)
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), CliError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes)
        .map_err(|e| CliError::environment(format!("cannot write {}: {e}", path.display())))
}

/// `tollgate export`.
pub fn export(
    paths: &Paths,
    selection: &Selection,
    dir: &Path,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let book = super::policy_cmds::load_book(paths)?;
    let store = super::open_store(paths)?;
    let chain = verify_log(
        &store,
        &VerifyOptions {
            now: Some(now),
            ..VerifyOptions::for_book(&book)
        },
    )?;
    let exceptions = crate::workflow::exceptions(&store)?.exceptions;
    let report =
        build(&store, &book, selection, &chain, &exceptions, now).map_err(|e| match e {
            crate::export::ExportError::Store(s) => CliError::from(s),
            crate::export::ExportError::NoSuchCr(_) => CliError::refused(e.to_string()),
        })?;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::environment(format!("cannot create {}: {e}", dir.display())))?;
    write_file(dir, "report.md", report.markdown.as_bytes())?;
    write_file(dir, "report.json", to_json(&report.json)?.as_bytes())?;
    let mut lines = String::new();
    for e in &report.entries {
        lines
            .push_str(&serde_json::to_string(e).map_err(|e| CliError::environment(e.to_string()))?);
        lines.push('\n');
    }
    write_file(dir, "entries.jsonl", lines.as_bytes())?;
    write_file(dir, "allowed_signers", report.allowed_signers.as_bytes())?;
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)
        .map_err(|e| CliError::environment(format!("cannot create {}: {e}", policies.display())))?;
    for p in &report.policies {
        write_file(
            &policies,
            &format!("v{}.toml", p.version),
            p.text.as_bytes(),
        )?;
        write_file(
            &policies,
            &format!("v{}.allowed_signers", p.version),
            p.allowed_signers.as_bytes(),
        )?;
    }
    write_file(dir, "verify.sh", VERIFY_SCRIPT.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(
            dir.join("verify.sh"),
            std::fs::Permissions::from_mode(0o755),
        );
    }
    write_out(
        out,
        &format!(
            "wrote {}: report.md, report.json, entries.jsonl ({} entries about this report, in the chain of {} from entry 1), allowed_signers, policies/ ({} version(s)), verify.sh\n{}\n",
            dir.display(),
            report.json["entries"].as_array().map_or(0, Vec::len),
            report.entries.len(),
            report.policies.len(),
            match &chain.first_bad {
                None => "audit log verified".to_string(),
                Some(b) => format!(
                    "WARNING: the audit log is broken at entry {} ({}); the report says so",
                    b.seq, b.problem
                ),
            }
        ),
    )
}
