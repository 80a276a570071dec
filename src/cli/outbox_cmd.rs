//! `tollgate outbox`: decisions waiting for the team server, and delivering them.

use super::{CliError, write_out};
use crate::config::Paths;
use crate::identity::{KeyChoice, identify_in_force};
use crate::outbox::{Delivery, Outbox};
use std::io::Write;

/// The outbox of the server `paths` points at.
pub fn outbox_for(paths: &Paths) -> Option<Outbox> {
    paths
        .remote
        .as_ref()
        .map(|r| Outbox::for_server(&paths.store, &r.url))
}

/// Delivers what is waiting; returns one line per item.
pub fn flush(paths: &Paths, keys: &KeyChoice) -> Result<Vec<String>, CliError> {
    let Some(outbox) = outbox_for(paths) else {
        return Ok(vec![]);
    };
    let mut items = outbox.pending();
    if items.is_empty() {
        return Ok(vec![]);
    }
    let mut lines: Vec<String> = items
        .iter()
        .filter_map(|p| {
            p.stale.as_ref().map(|why| {
                format!(
                    "STALE, not sent: {} {} ({}): {why} — drop it with `tollgate outbox --drop {}`",
                    p.verdict, p.cr_id, p.id, p.id
                )
            })
        })
        .collect();
    items.retain(|p| p.stale.is_none());
    if items.is_empty() {
        return Ok(lines);
    }
    let store = super::open_store(paths)?;
    // One quick probe: an unreachable server costs a second, not a retry per item.
    if !store.reachable() {
        lines.push(format!(
            "still unsent: {} decision(s); the server does not answer (`tollgate outbox --flush` when it is back)",
            items.len()
        ));
        return Ok(lines);
    }
    let book = super::policy_cmds::load_book(paths)?;
    let who = identify_in_force(keys, &paths.store, &book, &paths.policy)
        .map_err(super::policy_cmds::identity_error)?;
    for p in items.iter_mut().filter(|p| p.principal == who.principal.id) {
        lines.push(match outbox.deliver(&store, &book, &who, p) {
            Delivery::Delivered(e) => format!(
                "delivered: {} {} as {} (log entry {}){}",
                p.verdict,
                p.cr_id,
                p.role,
                e.decision.seq,
                e.adoption
                    .as_ref()
                    .map(|a| format!("; it completed {}, adopted at entry {}", p.cr_id, a.seq))
                    .unwrap_or_default()
            ),
            Delivery::Failed(why) => format!(
                "NOT delivered, moved to failed/: {} {}: {why}",
                p.verdict, p.cr_id
            ),
            Delivery::Stale(why) => format!(
                "STALE, not sent: {} {} ({}): {why} — drop it with `tollgate outbox --drop {}`",
                p.verdict, p.cr_id, p.id, p.id
            ),
            Delivery::Later(why) => format!("still unsent: {} {}: {why}", p.verdict, p.cr_id),
        });
    }
    Ok(lines)
}

/// `tollgate outbox [--flush]`.
pub fn run(
    paths: &Paths,
    keys: &KeyChoice,
    do_flush: bool,
    drop: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let Some(outbox) = outbox_for(paths) else {
        return Err(CliError::refused(
            "the outbox holds decisions for a team server: use it with --remote URL",
        ));
    };
    if let Some(id) = drop {
        let gone = outbox.drop_item(id).map_err(|e| match e {
            crate::outbox::OutboxError::NoSuchItem(_) => CliError::refused(e.to_string()),
            crate::outbox::OutboxError::Io { .. } => CliError::environment(e.to_string()),
        })?;
        return write_out(
            out,
            &format!(
                "dropped {}: {} {} as {} (never sent)\n",
                gone.id, gone.verdict, gone.cr_id, gone.role
            ),
        );
    }
    if do_flush {
        let lines = flush(paths, keys)?;
        return write_out(
            out,
            &(lines.join("\n")
                + if lines.is_empty() {
                    "nothing to deliver\n"
                } else {
                    "\n"
                }),
        );
    }
    let items = outbox.pending();
    if items.is_empty() {
        return write_out(out, "no unsent decisions\n");
    }
    let mut text = format!("{} unsent decision(s):\n", items.len());
    for p in &items {
        text.push_str(&format!(
            "  {}{} {} {} {} as {} by {} — {} attempt(s){}\n",
            if p.stale.is_some() { "STALE " } else { "" },
            p.id,
            p.created_at.format("%Y-%m-%d %H:%M"),
            p.verdict,
            p.cr_id,
            p.role,
            p.principal,
            p.attempts,
            p.last_error
                .as_deref()
                .map(|e| format!(", last: {e}"))
                .unwrap_or_default()
        ));
    }
    text.push_str(
        "deliver them with `tollgate outbox --flush` (also tried before every decision)\n",
    );
    write_out(out, &text)
}
