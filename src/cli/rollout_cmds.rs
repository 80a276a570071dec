//! `rollout`, `rollouts`, `watch`, `drill`: after approval, from the command line.

use super::args::{DrillArgs, RolloutArgs};
use super::emergency::{confirm, known_subjects};
use super::{CliError, to_json, write_out};
use crate::config::Paths;
use crate::domain::rollout::{ReadingVerdict, Stage};
use crate::domain::text::sanitize;
use crate::identity::KeyChoice;
use crate::workflow::rollout::{
    DrillRequest, StageRequest, add_readings, check_stage_request, deploy_invocation,
    drill_invocation, due_readings, guard_once, record_stage, rollouts, run_drill,
};
use crate::workflow::shown_argv;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::io::Write;

/// `tollgate rollout CR --stage canary|full`.
pub fn rollout(
    paths: &Paths,
    keys: &KeyChoice,
    args: &RolloutArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let stage = Stage::parse(&args.stage).ok_or_else(|| {
        CliError::refused(format!(
            "--stage {}: expected canary or full",
            crate::domain::reader::quote(&args.stage)
        ))
    })?;
    let traffic = match (stage, args.traffic) {
        (Stage::Full, Some(t)) if t != 100 => {
            return Err(CliError::refused(
                "--traffic: a full rollout takes all traffic (100); leave --traffic out",
            ));
        }
        (Stage::Full, _) => 100,
        (Stage::Canary, Some(t)) => t,
        (Stage::Canary, None) => {
            return Err(CliError::refused(
                "--traffic: give the canary's share of traffic in %, e.g. --traffic 5",
            ));
        }
    };
    let (book, who) = super::policy_cmds::book_for_signing(paths, keys, now)?;
    let store = super::open_store(paths)?;
    let req = StageRequest {
        cr_id: args.id.clone(),
        stage,
        traffic,
        note: args.note.clone(),
    };
    // Refused before anything is shown or run.
    let (cr, _) = check_stage_request(&*store, &book, &who, &req, now)?;
    let s = &cr.current.cr.subject;
    let invocation = deploy_invocation(&book, &cr, &req);
    let bypass = book
        .policy()
        .after
        .frozen(s.environment.as_str(), now)
        .map(|f| {
            format!(
                "bypassing freeze window {} — the emergency gate is the only bypass\n",
                sanitize(&f.describe())
            )
        })
        .unwrap_or_default();
    write_out(
        out,
        &format!(
            "about to record, as {}: {} {} of {}@{} {} → {} ({}% of traffic)\n{bypass}{}\n",
            who.principal.id,
            cr.current.cr.id,
            stage.as_str(),
            sanitize(&s.name),
            s.environment.as_str(),
            sanitize(s.from_version.as_deref().unwrap_or("-")),
            sanitize(&s.to_version),
            traffic,
            match &invocation {
                Some((argv, timeout)) => format!(
                    "then run (no shell, timeout {} s): {}",
                    timeout.as_secs(),
                    shown_argv(argv)
                ),
                None => "no deployment command in the policy: the operator deploys".into(),
            }
        ),
    )?;
    if !args.yes {
        confirm(out)?;
    }
    let ran = record_stage(&*store, &book, &who, &req, now, &mut |line| {
        let _ = writeln!(out, "│ {}", sanitize(line));
    })?;
    let failed = ran
        .deploy
        .as_ref()
        .filter(|(_, o)| o.exit_status != Some(0) || o.timed_out);
    if let Some((_, o)) = failed {
        return Err(CliError::refused(format!(
            "the deployment command failed ({}); the attempt is recorded (log entry {}) and the {} stage did not take place",
            match o.exit_status {
                Some(code) => format!("exit status {code}"),
                None => "killed".into(),
            },
            ran.entry.seq,
            stage.as_str()
        )));
    }
    let next = match stage {
        Stage::Canary => {
            let (_, eval) = crate::workflow::rollout::evaluated(&*store, &book, &req.cr_id)?;
            let opens =
                crate::domain::rollout::window_opens(book.policy(), eval.risk.effective, now);
            format!(
                "observation window: {} h for {} risk; full rollout opens at {}\n",
                book.policy().observation_hours.get(eval.risk.effective),
                eval.risk.effective,
                opens.format("%Y-%m-%dT%H:%M:%SZ")
            )
        }
        Stage::Full => String::new(),
    };
    write_out(
        out,
        &format!(
            "recorded: {} {} by {} (log entry {})\n{next}",
            req.cr_id,
            stage.as_str(),
            who.principal.id,
            ran.entry.seq
        ),
    )
}

/// One CR's rollout as `rollouts` lists it.
#[derive(Debug, Serialize)]
struct Row<'a> {
    cr_id: &'a str,
    subject: &'a str,
    environment: &'a str,
    to_version: &'a str,
    state: String,
    since: Option<DateTime<Utc>>,
    full_opens: Option<DateTime<Utc>>,
    last_reading: Option<&'a crate::domain::rollout::ReadingFact>,
    rolled_back_by: Option<&'a str>,
}

/// `tollgate rollouts`.
pub fn list(
    paths: &Paths,
    all: bool,
    json: bool,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let book = super::policy_cmds::load_book(paths)?;
    let store = super::open_store(paths)?;
    let mut everything = rollouts(&*store)?;
    // In canary: its last stage that took place is the canary and nothing rolled it back.
    let live = |r: &crate::domain::rollout::CrRollout| {
        r.rolled_back.is_none()
            && r.stages
                .iter()
                .rev()
                .find(|s| s.happened())
                .is_some_and(|s| s.stage == Stage::Canary)
    };
    // Readings only for the rows listed (they pile up).
    let listed: Vec<String> = everything
        .crs
        .iter()
        .filter(|(_, r)| all || live(r))
        .map(|(id, _)| id.clone())
        .collect();
    for id in &listed {
        add_readings(&*store, &mut everything, id)?;
    }
    let mut rows = Vec::new();
    for (id, r) in everything.crs.iter().filter(|(id, _)| listed.contains(id)) {
        let Some(state) = r.label() else { continue };
        let live = live(r);
        let canary = r
            .stages
            .iter()
            .rev()
            .find(|s| s.happened() && s.stage == Stage::Canary);
        let full_opens = match (live, canary) {
            (true, Some(c)) => {
                let (_, eval) = crate::workflow::rollout::evaluated(&*store, &book, id)?;
                Some(crate::domain::rollout::window_opens(
                    book.policy(),
                    eval.risk.effective,
                    c.at,
                ))
            }
            _ => None,
        };
        rows.push(Row {
            cr_id: id,
            subject: &r.subject,
            environment: &r.environment,
            to_version: &r.to_version,
            state,
            since: r.stages.iter().rev().find(|s| s.happened()).map(|s| s.at),
            full_opens,
            last_reading: r.readings.last(),
            rolled_back_by: r.rolled_back.as_ref().map(|b| b.incident.as_str()),
        });
    }
    if json {
        return write_out(out, &to_json(&rows)?);
    }
    if rows.is_empty() {
        return write_out(
            out,
            if all {
                "nothing has been rolled out\n"
            } else {
                "nothing is rolling out (--all lists finished rollouts too)\n"
            },
        );
    }
    let mut text = String::new();
    for row in &rows {
        text.push_str(&format!(
            "{:<10} {:<28} {:<12} {}\n",
            row.cr_id,
            sanitize(&format!(
                "{}@{} → {}",
                row.subject, row.environment, row.to_version
            )),
            row.state,
            describe(row, now)
        ));
    }
    write_out(out, &text)
}

fn describe(row: &Row<'_>, now: DateTime<Utc>) -> String {
    let mut parts = Vec::new();
    if let Some(opens) = row.full_opens {
        parts.push(if opens > now {
            format!(
                "full opens {} (in {})",
                opens.format("%Y-%m-%d %H:%M UTC"),
                crate::domain::emergency::countdown(opens, now)
            )
        } else {
            "window elapsed: full may proceed".into()
        });
    }
    if let Some(r) = row.last_reading {
        parts.push(format!(
            "last KPI reading {} {}{}",
            r.at.format("%H:%M"),
            r.verdict.as_str(),
            if r.breaches.is_empty() {
                String::new()
            } else {
                format!(" ({})", sanitize(&r.breaches.join("; ")))
            }
        ));
    }
    if let Some(by) = row.rolled_back_by {
        parts.push(format!("rolled back under {by}"));
    }
    parts.join("; ")
}

/// `tollgate watch`.
pub fn watch(
    paths: &Paths,
    keys: &KeyChoice,
    once: bool,
    only: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    loop {
        let pass = watch_pass(paths, keys, only, once, out);
        if once {
            return match pass? {
                true => Err(CliError::refused("a canary regressed (see above)")),
                false => Ok(()),
            };
        }
        // A guard left running outlives a failed pass (the store or MLflow down a moment):
        // it says so and tries again at the next pass.
        if let Err(e) = pass {
            let _ = writeln!(out, "watch: this pass failed: {}", e.message);
        }
        let _ = out.flush();
        std::thread::sleep(std::time::Duration::from_secs(30));
    }
}

/// One pass of the guard: every due canary read and recorded; whether one regressed.
fn watch_pass(
    paths: &Paths,
    keys: &KeyChoice,
    only: Option<&str>,
    say_idle: bool,
    out: &mut dyn Write,
) -> Result<bool, CliError> {
    let now = crate::config::now().map_err(|e| CliError::refused(e.to_string()))?;
    let (book, who) = super::policy_cmds::book_for_signing(paths, keys, now)?;
    let store = super::open_store(paths)?;
    let due = match only {
        Some(id) => vec![id.to_string()],
        None => due_readings(&*store, &book, now)?,
    };
    if due.is_empty() && say_idle {
        write_out(out, "no canary is due a KPI reading\n")?;
    }
    let mut regressed = false;
    for id in &due {
        let action = guard_once(&*store, &book, &who, id, now, &mut |_| {})?;
        write_out(
            out,
            &format!(
                "{id}: KPI reading {} (log entry {}){}\n",
                action.verdict.as_str(),
                action.reading.seq,
                if action.breaches.is_empty() {
                    String::new()
                } else {
                    format!(": {}", sanitize(&action.breaches.join("; ")))
                }
            ),
        )?;
        if action.verdict != ReadingVerdict::Regressed {
            continue;
        }
        regressed = true;
        match action.rollback {
            None => write_out(
                out,
                &format!(
                    "{id}: REGRESSED, but {} is not on the on-call roster: the guard cannot roll back; call on-call now\n",
                    who.principal.id
                ),
            )?,
            Some(Err(e)) => write_out(out, &format!("{id}: automatic rollback refused: {e}\n"))?,
            Some(Ok((auth, ran))) => {
                let incident = serde_json::from_str::<serde_json::Value>(&auth.body)
                    .ok()
                    .and_then(|b| b["incident"].as_str().map(str::to_string))
                    .unwrap_or_default();
                write_out(
                    out,
                    &format!(
                        "{id}: automatic rollback authorised under {incident} (log entry {}); exception opened, post-incident review due\n",
                        auth.seq
                    ),
                )?;
                if let Some(ran) = ran {
                    let o = &ran.outcome;
                    write_out(
                        out,
                        &format!(
                            "{id}: rollback command {} ({}){}\n",
                            shown_argv(&ran.argv),
                            match (o.exit_status, o.timed_out) {
                                (_, true) => "timed out".to_string(),
                                (Some(c), _) => format!("exit status {c}"),
                                (None, _) => "did not run".into(),
                            },
                            match &ran.recorded {
                                Ok(e) => format!(", log entry {}", e.seq),
                                Err(e) => format!(", NOT recorded: {e}"),
                            }
                        ),
                    )?;
                }
            }
        }
    }
    Ok(regressed)
}

/// `tollgate drill SUBJECT --env staging`.
pub fn drill(
    paths: &Paths,
    keys: &KeyChoice,
    args: &DrillArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (book, who) = super::policy_cmds::book_for_signing(paths, keys, now)?;
    let store = super::open_store(paths)?;
    let (from, to) = match (&args.from_version, &args.to_version) {
        (Some(f), Some(t)) => (f.clone(), t.clone()),
        (f, t) => {
            let known = known_subjects(&*store, &book)?;
            let pick = known
                .iter()
                .filter(|s| s.name == args.subject)
                .find(|s| s.environment == args.environment)
                .or_else(|| known.iter().find(|s| s.name == args.subject));
            let Some(s) = pick else {
                return Err(CliError::refused(format!(
                    "no change request names {}; give --from and --to explicitly",
                    crate::domain::reader::quote(&args.subject)
                )));
            };
            (
                f.clone().unwrap_or_else(|| s.current.clone()),
                match (t, &s.last_good) {
                    (Some(t), _) => t.clone(),
                    (None, Some(g)) => g.clone(),
                    (None, None) => {
                        return Err(CliError::refused(format!(
                            "no earlier version of {} is known; give --to VERSION",
                            sanitize(&args.subject)
                        )));
                    }
                },
            )
        }
    };
    let req = DrillRequest {
        subject: args.subject.clone(),
        environment: args.environment.clone(),
        from_version: from,
        to_version: to,
    };
    let (argv, timeout, id) = drill_invocation(&book, &who, &req, now)?;
    write_out(
        out,
        &format!(
            "about to drill, as {}: roll back {}@{} {} → {} ({id})\nrun (no shell, timeout {} s): {}\n",
            who.principal.id,
            sanitize(&req.subject),
            req.environment,
            sanitize(&req.from_version),
            sanitize(&req.to_version),
            timeout.as_secs(),
            shown_argv(&argv)
        ),
    )?;
    if !args.yes {
        confirm(out)?;
    }
    let (outcome, entry) = run_drill(&*store, &book, &who, &req, now, &mut |line| {
        let _ = writeln!(out, "│ {}", sanitize(line));
    })?;
    let target = book.policy().emergency.rollback_target_minutes;
    let secs = outcome.duration.as_secs_f64();
    let verdict = format!(
        "drill {} in {secs:.1} s (target {target} min{}); recorded as log entry {} by {}\n",
        match (outcome.exit_status, outcome.timed_out) {
            (_, true) => "TIMED OUT".to_string(),
            (Some(0), _) => "succeeded".into(),
            (Some(c), _) => format!("FAILED with exit status {c}"),
            (None, _) => "did not run".into(),
        },
        if secs > (target * 60) as f64 {
            ", MISSED"
        } else {
            ""
        },
        entry.seq,
        who.principal.id
    );
    write_out(out, &verdict)?;
    if outcome.exit_status == Some(0) && !outcome.timed_out {
        Ok(())
    } else {
        Err(CliError::refused(
            "the drill failed; it is recorded as failed and does not count as a tested rollback",
        ))
    }
}
