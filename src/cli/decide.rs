//! `approve`, `reject`, `request-changes`: check the rules, sign, append.

use super::args::DecideArgs;
use super::{CliError, to_json, write_out};
use crate::config::Paths;
use crate::domain::checklist::Tick;
use crate::domain::decision::Verdict;
use crate::domain::rules::{Proposal, decision_refusals};
use crate::domain::status::{Evaluation, evaluate_in};
use crate::identity::{Identity, KeyChoice};
use crate::store::{Store, StoreError};
use crate::workflow::{
    DecisionRequest, RecordError, Recorded, Route, eligible_roles, record_decision,
};
use chrono::{DateTime, Utc};
use std::io::{IsTerminal, Read, Write};

/// Parses `--tick ITEM[=NOTE]` values.
fn parse_ticks(raw: &[String]) -> Result<Vec<Tick>, CliError> {
    raw.iter()
        .map(|t| {
            let (item, note) = match t.split_once('=') {
                Some((i, n)) => (
                    i.trim(),
                    Some(n.trim().to_string()).filter(|n| !n.is_empty()),
                ),
                None => (t.trim(), None),
            };
            crate::domain::reader::check_identifier(item).map_err(|e| {
                CliError::refused(format!("--tick {}: {e}", crate::domain::reader::quote(t)))
            })?;
            Ok(Tick {
                item: item.to_string(),
                note,
            })
        })
        .collect()
}

/// Picks the role: the one given, or the signer's only eligible one.
fn choose_role(
    args: &DecideArgs,
    verdict: Verdict,
    who: &Identity,
    eval: &Evaluation,
) -> Result<String, CliError> {
    if let Some(r) = &args.role {
        return Ok(r.clone());
    }
    let eligible = eligible_roles(&who.principal, verdict, eval);
    match eligible.as_slice() {
        [one] => Ok(one.clone()),
        [] => {
            let open = eval.signoffs.missing_roles();
            Err(CliError::refused(format!(
                "{} holds none of the sign-offs still open on {} ({}); nothing to approve as",
                who.principal.id,
                args.id,
                if open.is_empty() {
                    "all filled".to_string()
                } else {
                    open.join(", ")
                }
            )))
        }
        many => Err(CliError::refused(format!(
            "say which role you sign for: --role {}",
            many.join(" | --role ")
        ))),
    }
}

/// Reads the rationale from the flag, a file, stdin, or `$EDITOR`.
fn rationale(args: &DecideArgs, what: &str) -> Result<String, CliError> {
    if let Some(r) = &args.rationale {
        return Ok(r.clone());
    }
    if let Some(f) = &args.rationale_file {
        let mut text = String::new();
        let read = if f.as_os_str() == "-" {
            std::io::stdin().read_to_string(&mut text).map(|_| text)
        } else {
            std::fs::read_to_string(f)
        };
        return read.map_err(|e| {
            CliError::refused(format!("cannot read rationale file {}: {e}", f.display()))
        });
    }
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Err(CliError::refused(
            "a rationale is required: pass --rationale TEXT or --rationale-file FILE (or run on a terminal to write it in $EDITOR)",
        ));
    }
    crate::editor::edit_rationale("", what).map_err(|e| CliError::refused(e.to_string()))
}

/// Queues a decision while the team server is unreachable: the rules are checked when it
/// is delivered, against the server's state then.
fn queue_offline(
    paths: &Paths,
    args: &DecideArgs,
    verdict: Verdict,
    who: &crate::identity::Identity,
    ticks: Vec<Tick>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let Some(outbox) = super::outbox_cmd::outbox_for(paths) else {
        return Err(CliError::environment("the server is unreachable"));
    };
    let Some(role) = args.role.clone() else {
        return Err(CliError::environment(
            "the server is unreachable; to queue the decision anyway, say which role you sign for (--role)",
        ));
    };
    // Bound to the revision the reviewer saw: named with --digest, or noted when `show`
    // last displayed it from this server.
    let Some(seen) = args.digest.clone().or_else(|| outbox.seen(&args.id)) else {
        return Err(CliError::refused(format!(
            "the server is unreachable and nothing says which revision of {} you reviewed; show it when the server is back, or pass --digest (from `tollgate show`) to queue the decision",
            crate::domain::reader::quote(&args.id),
        )));
    };
    let rationale = rationale(args, &format!("{verdict} {} as {role}", args.id))?;
    let request = DecisionRequest {
        cr_id: args.id.clone(),
        verdict,
        role,
        rationale,
        ticks,
        expect_digest: Some(seen),
    };
    let pending = crate::outbox::Pending::new(
        &outbox_server(paths),
        &who.principal.id,
        &request,
        Utc::now(),
    );
    outbox
        .put(&pending)
        .map_err(|e| CliError::environment(e.to_string()))?;
    write_out(out, "")?;
    Err(CliError::environment(
        "UNSENT: the server is unreachable; the decision is kept in the outbox and will be delivered exactly once when the server is back (`tollgate outbox --flush`); the policy is checked then",
    ))
}

fn outbox_server(paths: &Paths) -> String {
    paths
        .remote
        .as_ref()
        .map(|r| r.url.clone())
        .unwrap_or_default()
}

/// Runs approve / reject / request-changes.
pub fn run(
    paths: &Paths,
    keys: &KeyChoice,
    verdict: Verdict,
    args: &DecideArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let ticks = parse_ticks(&args.ticks)?;
    let (book, who) = super::policy_cmds::book_for_signing(paths, keys, now)?;
    let store = super::open_store(paths)?;
    // Earlier unsent decisions go first, in order.
    for line in super::outbox_cmd::flush(paths, keys).unwrap_or_default() {
        write_out(out, &format!("{line}\n"))?;
    }
    if paths.remote.is_some() && !store.reachable() {
        return queue_offline(paths, args, verdict, &who, ticks, out);
    }

    // A first check before asking for a rationale, so nobody writes a paragraph for a
    // decision the rules will refuse. The binding check runs again inside the transaction.
    let cr = match store.get(&args.id) {
        Ok(cr) => cr,
        // Against an unreachable team server the decision is queued, not lost.
        Err(StoreError::Unreachable { .. }) if paths.remote.is_some() => {
            return queue_offline(paths, args, verdict, &who, ticks, out);
        }
        Err(e) => return Err(e.into()),
    };
    let Some(cr) = cr else {
        return Err(CliError::refused(format!(
            "no change request {}; `tollgate list` shows what is there",
            crate::domain::reader::quote(&args.id)
        )));
    };
    let decisions = store.decisions(&args.id)?;
    let eval = evaluate_in(&cr.current.cr, &cr.current.digest, &decisions, &book);
    // The requester gets the requester rule's refusal, not a question about roles.
    let role = if who.principal.id == cr.current.cr.requester {
        args.role.clone().unwrap_or_default()
    } else {
        choose_role(args, verdict, &who, &eval)?
    };
    let probe = Proposal {
        principal: &who.principal,
        role: &role,
        verdict,
        rationale: "(pending)",
        ticks: &ticks,
    };
    // Every rule it breaks at once, so fixing one does not reveal the next.
    let refusals = decision_refusals(&cr.current.cr, &eval, book.policy(), &probe);
    if !refusals.is_empty() {
        let lines: Vec<String> = refusals.iter().map(|r| format!("refused: {r}")).collect();
        return Err(CliError::refused(lines.join("\n")));
    }

    let what = format!(
        "{} {} as {} (revision {}, {})",
        verdict, args.id, role, cr.current.revision, cr.current.digest
    );
    let request = DecisionRequest {
        cr_id: args.id.clone(),
        verdict,
        role: role.clone(),
        rationale: rationale(args, &what)?,
        ticks,
        // What the reviewer is deciding on: the revision just read, unless named.
        expect_digest: Some(args.digest.clone().unwrap_or(cr.current.digest.clone())),
    };
    // The one decision path (the TUI's too): outbox or straight into the store, then the
    // write-back to an MLflow source.
    let outbox = super::outbox_cmd::outbox_for(paths);
    let server = outbox_server(paths);
    let source = match &paths.mlflow {
        Some(s) => Some((
            crate::sources::mlflow::Client::new(&s.url)
                .map_err(|e| CliError::environment(e.to_string()))?,
            s,
        )),
        None => None,
    };
    let route = Route {
        outbox: outbox.as_ref().map(|o| (o, server.as_str())),
        source: source.as_ref().map(|(c, s)| (c, &s.convention)),
    };
    let (appended, written_back) = match record_decision(&store, &book, &who, &request, route, now)
    {
        Ok(Recorded::Signed {
            appended,
            written_back,
        }) => (*appended, written_back),
        Ok(Recorded::Queued(why)) => {
            return Err(CliError::environment(format!(
                "UNSENT: {why}\nthe decision is kept in the outbox and will be delivered exactly once when the server is back (`tollgate outbox --flush`)"
            )));
        }
        Err(RecordError::Decide(e)) => return Err(e.into()),
        Err(e @ (RecordError::Refused(_) | RecordError::Stale(_))) => {
            return Err(CliError::refused(e.to_string()));
        }
        Err(RecordError::Outbox(e)) => return Err(CliError::environment(e.to_string())),
    };
    if let Some(adoption) = &appended.adoption {
        super::policy_cmds::write_adopted(paths, adoption)?;
    }
    if args.json {
        return write_out(out, &to_json(&appended)?);
    }
    let entry = &appended.decision;
    let after = store.decisions(&args.id)?;
    let book = match &appended.adoption {
        // The completed change request is still judged by the policy it replaced.
        Some(_) => super::policy_cmds::load_book(paths)?,
        None => book,
    };
    let progress = store
        .get(&args.id)?
        .map(|c| evaluate_in(&c.current.cr, &c.current.digest, &after, &book))
        .map(|e| {
            format!(
                "; sign-offs {}/{}, status {}",
                e.signoffs.obtained(),
                e.signoffs.required(),
                e.status
            )
        })
        .unwrap_or_default();
    let adopted = appended
        .adoption
        .as_ref()
        .map(|a| {
            format!(
                "{} adopted: policy version {} is in force from log entry {} ({}){}\n",
                args.id,
                book.current().version,
                a.seq,
                a.hash,
                if paths.remote.is_none() {
                    format!("; {} rewritten with it", paths.policy.display())
                } else {
                    String::new()
                }
            )
        })
        .unwrap_or_default();
    write_out(
        out,
        &format!(
            "{}: {} as {} by {} — signed with {}, log entry {} ({}){progress}\n{adopted}",
            args.id,
            verdict,
            role,
            who.principal.id,
            who.signer.fingerprint(),
            entry.seq,
            entry.hash
        ),
    )?;
    written_back_report(&args.id, source.as_ref(), written_back, out)
}

/// Says what writing the CR back to its MLflow source did.
fn written_back_report(
    id: &str,
    source: Option<&(crate::sources::mlflow::Client, &crate::config::MlflowSource)>,
    written_back: Option<
        Result<Option<crate::sources::mlflow::Pushed>, crate::sources::mlflow::PushError>,
    >,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (Some((_, s)), Some(result)) = (source, written_back) else {
        return Ok(());
    };
    match result {
        Ok(pushed) => {
            if let Some(line) = super::pushed_line(id, &s.convention, pushed.as_ref(), false) {
                write_out(out, &format!("{line}\n"))?;
            }
            Ok(())
        }
        Err(e) => super::written_back_failures(&s.url, &[format!("{id}: {e}")]),
    }
}
