//! `rollback`, `exceptions`, `review`: the emergency gate from the command line.

use super::args::RollbackArgs;
use super::{CliError, to_json, write_out};
use crate::config::Paths;
use crate::domain::emergency::{Exception, ExceptionState, SubjectState, countdown, subjects};
use crate::domain::policy_book::PolicyBook;
use crate::domain::status::evaluate_in;
use crate::domain::text::sanitize;
use crate::identity::KeyChoice;
use crate::store::Store;
use crate::workflow::{
    ReviewRequest, RollbackRequest, authorise_rollback, exceptions, record_review,
    rollback_invocation, run_rollback, shown_argv,
};
use chrono::{DateTime, Utc};
use std::io::Write;

/// Subjects known from the store's CRs, most recent first.
pub fn known_subjects(store: &dyn Store, book: &PolicyBook) -> Result<Vec<SubjectState>, CliError> {
    let decisions = store.all_decisions()?;
    let crs = store.list()?;
    let statuses: Vec<_> = crs
        .iter()
        .filter_map(|c| {
            let mine = decisions
                .get(&c.current.cr.id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            SubjectState::from_cr(
                &c.current.cr,
                evaluate_in(&c.current.cr, &c.current.digest, mine, book).status,
            )
        })
        .collect();
    let live = exceptions(store)?.live;
    Ok(crate::domain::emergency::after_rollbacks(
        subjects(statuses),
        &live,
    ))
}

/// `tollgate rollback`.
pub fn rollback(
    paths: &Paths,
    keys: &KeyChoice,
    args: &RollbackArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (book, who) = super::policy_cmds::book_for_signing(paths, keys, now)?;
    let store = super::open_store(paths)?;
    crate::domain::emergency::check_on_call(book.policy(), &who.principal)
        .map_err(|r| CliError::refused(format!("refused: {r}")))?;
    let known = known_subjects(&store, &book)?;
    let subject = known
        .iter()
        .find(|s| s.name == args.subject && s.environment == args.environment);
    let from = match (&args.from_version, subject) {
        (Some(f), _) => f.clone(),
        (None, Some(s)) => s.current.clone(),
        (None, None) => {
            return Err(CliError::refused(format!(
                "no change request names {} in {}; give --from and --to explicitly (known: {})",
                crate::domain::reader::quote(&args.subject),
                args.environment,
                known
                    .iter()
                    .map(|s| format!("{}@{}", s.name, s.environment))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let to = match (&args.to_version, subject.and_then(|s| s.last_good.clone())) {
        (Some(t), _) => t.clone(),
        (None, Some(t)) => t,
        (None, None) => {
            let live = subject
                .map(|s| {
                    format!(
                        "{}@{} runs {} ({}); ",
                        s.name,
                        s.environment,
                        s.current,
                        s.basis_text()
                    )
                })
                .unwrap_or_default();
            return Err(CliError::refused(format!(
                "{live}no earlier version is known; give --to VERSION"
            )));
        }
    };
    let request = RollbackRequest {
        subject: args.subject.clone(),
        environment: args.environment.clone(),
        from_version: from,
        to_version: to,
        incident: args.incident.clone(),
        reason: args.reason.clone(),
    };
    request
        .check()
        .map_err(|r| CliError::refused(format!("refused: {r}")))?;
    // What will be signed and run, shown before anything is: the exact argument vector.
    let invocation = rollback_invocation(book.policy(), &request);
    let bypass = book
        .policy()
        .after
        .frozen(&request.environment, now)
        .map(|f| {
            format!(
                "bypassing freeze window {} — the emergency gate is the only bypass\n",
                sanitize(&f.describe())
            )
        })
        .unwrap_or_default();
    let plan = format!(
        "about to authorise, as {}: roll back {}@{} {} → {} for {}\n{bypass}{}\n",
        who.principal.id,
        sanitize(&request.subject),
        sanitize(&request.environment),
        sanitize(&request.from_version),
        sanitize(&request.to_version),
        request.incident,
        match (&invocation, args.no_run) {
            (Some((argv, timeout)), false) => format!(
                "then run (no shell, timeout {} s): {}",
                timeout.as_secs(),
                shown_argv(argv)
            ),
            (Some((argv, _)), true) => format!("and not run (--no-run): {}", shown_argv(argv)),
            (None, _) => {
                "no rollback command in the policy for this subject: the operator performs it"
                    .to_string()
            }
        }
    );
    write_out(out, &plan)?;
    if !args.yes {
        confirm(out)?;
    }
    let auth = authorise_rollback(&store, &book, &who, &request, now).map_err(CliError::from)?;
    let ex = exceptions(&store)?
        .exceptions
        .into_iter()
        .find(|x| x.rollbacks.iter().any(|r| r.authorisation == auth.hash));
    let mut msg = format!(
        "authorised: roll back {}@{} {} → {} for {} by {} (log entry {})\n",
        sanitize(&request.subject),
        request.environment,
        sanitize(&request.from_version),
        sanitize(&request.to_version),
        request.incident,
        who.principal.id,
        auth.seq
    );
    if let Some(x) = &ex {
        let linked = if x.rollbacks.len() > 1 {
            format!(
                ", linked to the open exception ({} rollbacks)",
                x.rollbacks.len()
            )
        } else {
            String::new()
        };
        msg.push_str(&format!(
            "exception open until {} (in {}); post-incident review due {} (in {}){linked}\n",
            x.expires_at.format("%Y-%m-%d %H:%M UTC"),
            crate::domain::emergency::expiry(x.expires_at, now),
            x.review_due.format("%Y-%m-%d %H:%M UTC"),
            countdown(x.review_due, now)
        ));
    }
    write_out(out, &msg)?;
    let Some((argv, timeout)) = invocation else {
        return write_out(
            out,
            "no rollback command in the policy for this subject: the operator performs the rollback\n",
        );
    };
    if args.no_run {
        return write_out(
            out,
            &format!("not running (--no-run): {}\n", shown_argv(&argv)),
        );
    }
    write_out(out, &format!("running: {}\n", shown_argv(&argv)))?;
    let ran = run_rollback(
        &store,
        &book,
        &who,
        &request,
        (argv, timeout),
        &auth.hash,
        crate::config::now().unwrap_or(now),
        &mut |line| {
            let _ = writeln!(out, "│ {}", sanitize(line));
        },
    );
    let outcome = &ran.outcome;
    let entry = ran.recorded.map_err(CliError::from)?;
    let summary = format!(
        "{} after {:.1} s (log entry {}){}",
        match (outcome.exit_status, outcome.timed_out) {
            (_, true) => format!("timed out after {} s", timeout.as_secs()),
            (Some(code), _) => format!("exit status {code}"),
            (None, _) => "did not run".to_string(),
        },
        outcome.duration.as_secs_f64(),
        entry.seq,
        if outcome.killed_leftovers && !outcome.timed_out {
            "; processes it left running were stopped"
        } else {
            ""
        }
    );
    if outcome.exit_status == Some(0) && !outcome.timed_out {
        write_out(out, &format!("rollback command finished: {summary}\n"))
    } else {
        Err(CliError::refused(format!(
            "the rollback command failed: {summary}; the authorisation is recorded, the operator must complete the rollback"
        )))
    }
}

/// Asks at the terminal before an emergency is signed; without one, refuses and says to
/// pass `--yes`.
pub(super) fn confirm(out: &mut dyn Write) -> Result<(), CliError> {
    use std::io::{BufRead, IsTerminal};
    if !std::io::stdin().is_terminal() {
        return Err(CliError::refused(
            "refused: no terminal to confirm at; check the command above and pass --yes to authorise without asking",
        ));
    }
    write_out(out, "sign and go ahead? [y/N] ")?;
    let _ = out.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::environment(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CliError::refused(
            "not authorised: nothing was signed or run",
        ))
    }
}

fn state_label(s: ExceptionState) -> &'static str {
    match s {
        ExceptionState::Active => "active",
        ExceptionState::Expired => "expired",
        ExceptionState::ReviewOverdue => "REVIEW OVERDUE",
        ExceptionState::Closed => "closed",
    }
}

/// `tollgate exceptions`.
pub fn list_exceptions(
    paths: &Paths,
    all: bool,
    json: bool,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let store = super::open_store(paths)?;
    let derived = exceptions(&store)?;
    if let Some(line) = untrusted_line(&derived.untrusted) {
        eprintln!("{line}");
    }
    let mut list: Vec<Exception> = derived.exceptions;
    list.retain(|x| all || x.state(now) != ExceptionState::Closed);
    list.sort_by_key(|x| (x.state(now) != ExceptionState::ReviewOverdue, x.review_due));
    if json {
        #[derive(serde::Serialize)]
        struct Row<'a> {
            state: ExceptionState,
            #[serde(flatten)]
            exception: &'a Exception,
        }
        let rows: Vec<Row> = list
            .iter()
            .map(|x| Row {
                state: x.state(now),
                exception: x,
            })
            .collect();
        return write_out(out, &to_json(&rows)?);
    }
    if list.is_empty() {
        return write_out(
            out,
            if all {
                "no exceptions recorded\n"
            } else {
                "no open exceptions\n"
            },
        );
    }
    let mut text = format!(
        "{:<12} {:<15} {:<8} {:<17} {:<18} {:<22} {}\n",
        "INCIDENT", "STATE", "BY", "OPENED", "EXPIRES", "REVIEW DUE", "ROLLBACKS"
    );
    for x in &list {
        let rollbacks: Vec<String> = x
            .rollbacks
            .iter()
            .map(|r| {
                format!(
                    "{}@{} {}→{}",
                    sanitize(&r.subject),
                    r.environment,
                    sanitize(&r.from_version),
                    sanitize(&r.to_version)
                )
            })
            .collect();
        text.push_str(&format!(
            "{:<12} {:<15} {:<8} {:<17} {:<18} {:<22} {}\n",
            sanitize(&x.incident),
            state_label(x.state(now)),
            x.opened_by,
            x.opened_at.format("%m-%d %H:%M UTC"),
            crate::domain::emergency::expiry(x.expires_at, now),
            countdown(x.review_due, now),
            rollbacks.join(", ")
        ));
    }
    write_out(out, &text)
}

/// `tollgate review`.
pub fn review(
    paths: &Paths,
    keys: &KeyChoice,
    req: &ReviewRequest,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (book, who) = super::policy_cmds::book_for_signing(paths, keys, now)?;
    let store = super::open_store(paths)?;
    let entry = record_review(&store, &book, &who, req, now).map_err(CliError::from)?;
    write_out(
        out,
        &format!(
            "post-incident review of {} recorded by {} (log entry {}); its exceptions are closed\n",
            req.incident, who.principal.id, entry.seq
        ),
    )
}

/// A warning line for overdue reviews, or nothing.
pub fn overdue_banner(store: &dyn Store, now: DateTime<Utc>) -> Result<Option<String>, CliError> {
    let derived = exceptions(store)?;
    let untrusted = untrusted_line(&derived.untrusted);
    let overdue = crate::domain::emergency::overdue(&derived.exceptions, now);
    if overdue.is_empty() {
        return Ok(untrusted);
    }
    let items: Vec<String> = overdue
        .iter()
        .map(|x| {
            format!(
                "{} ({})",
                sanitize(&x.incident),
                countdown(x.review_due, now)
            )
        })
        .collect();
    let line = format!(
        "⚠ post-incident review overdue: {} — record it with `tollgate review INCIDENT --root-cause ... --follow-ups ...`",
        items.join(", ")
    );
    Ok(Some(match untrusted {
        Some(u) => format!("{line}\n{u}"),
        None => line,
    }))
}

/// A warning naming emergency entries left out as untrusted, or nothing.
pub fn untrusted_line(untrusted: &[crate::audit::emergency::Untrusted]) -> Option<String> {
    let first = untrusted.first()?;
    Some(format!(
        "⚠ {} emergency log entr{} left out as untrusted (entry {}: {}) — run `tollgate verify`",
        untrusted.len(),
        if untrusted.len() == 1 { "y" } else { "ies" },
        first.seq,
        sanitize(&first.problem)
    ))
}
