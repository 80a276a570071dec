//! Keys and the audit trail: `keygen`, `whoami`, `verify`, `log export`,
//! `policy allowed-signers`.

use super::{CliError, to_json, write_out};
use crate::audit::keys::Signer;
use crate::audit::log::VerifyReport;
use crate::config::{self, Paths};
use crate::identity::{KeyChoice, identify_in_force};
use crate::store::Store;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Entries read from the store per page while verifying or exporting.
const PAGE: usize = 10_000;

/// `tollgate keygen`.
pub fn keygen(output: Option<PathBuf>, comment: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let path = match output {
        Some(p) => p,
        None => config::default_key_path()?,
    };
    let signer = Signer::generate(comment).map_err(|e| CliError::environment(e.to_string()))?;
    signer
        .write(&path)
        .map_err(|e| CliError::refused(e.to_string()))?;
    write_out(
        out,
        &format!(
            "wrote {} (private, mode 0600) and {}.pub\nfingerprint {}\n\nAdd the public key to your principal in the policy, then run `tollgate policy check`:\n  keys = [\"{}\"]\n",
            path.display(),
            path.display(),
            signer.fingerprint(),
            signer.public_key_line()
        ),
    )
}

/// `tollgate whoami`.
pub fn whoami(paths: &Paths, keys: &KeyChoice, out: &mut dyn Write) -> Result<(), CliError> {
    let book = super::policy_cmds::load_book(paths)?;
    let who = identify_in_force(keys, &paths.store, &book, &paths.policy)
        .map_err(super::policy_cmds::identity_error)?;
    write_out(
        out,
        &format!(
            "{} ({}) — roles: {}\nkey {} ({})\npolicy in force: version {}\n",
            who.principal.id,
            who.principal.name,
            who.principal.roles.join(", "),
            who.key_path.display(),
            who.signer.fingerprint(),
            book.current().version
        ),
    )
}

#[derive(Serialize)]
struct VerifyJson<'a> {
    ok: bool,
    #[serde(flatten)]
    report: &'a VerifyReport,
    millis: u128,
}

/// The CRs whose cached queue row differs from a fresh evaluation.
fn cached_rows_that_differ(
    paths: &Paths,
    store: &dyn crate::store::Store,
) -> Result<Vec<String>, CliError> {
    // Without a policy in force (an unmigrated store) nothing is listed from the cache.
    let Ok(book) = super::policy_cmds::load_book(paths) else {
        return Ok(Vec::new());
    };
    Ok(crate::workflow::queue::SummaryPages::new(store, &book, None).check()?)
}

/// `tollgate verify`.
pub fn verify(
    paths: &Paths,
    opts: crate::store::VerifyOptions<'_>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let store = super::open_store(paths)?;
    let unmigrated = super::policy_cmds::book_for_verify(paths, store.as_ref())?;
    let started = Instant::now();
    let report = crate::store::verify_log(
        &store,
        &crate::store::VerifyOptions {
            unmigrated_policy: unmigrated.as_ref().map(|b| b.policy()),
            ..opts
        },
    )?;
    let millis = started.elapsed().as_millis();
    // The queue's cached rows are trusted by `list` while their key holds: re-derive each
    // from the log, name any that differs, and drop it (derived data, rebuilt on reading).
    // Each CR's recorded last log entry keys its cached row (and the rows a server
    // keeps): one that disagrees with the log is named and set from the log again.
    let misplaced = if report.ok() {
        store.repair_positions()?
    } else {
        Vec::new()
    };
    if !misplaced.is_empty() {
        let names: Vec<String> = misplaced
            .iter()
            .map(|id| crate::domain::reader::quote(id))
            .collect();
        return Err(CliError::refused(format!(
            "verification FAILED: the recorded last log entry of {} did not match the log (entries were cut from the log or rewritten after it, or it was forged or written by a faulty build); set from the log again, so listings and every server's rows follow the log from now on",
            names.join(", ")
        )));
    }
    let forged = if report.ok() {
        // A store whose documents cannot be read says so where they are read; here the
        // check is only skipped, and said to be.
        cached_rows_that_differ(paths, store.as_ref()).unwrap_or_else(|e| {
            eprintln!(
                "note: the cached queue rows were not checked: {}",
                e.message
            );
            Vec::new()
        })
    } else {
        Vec::new()
    };
    if !forged.is_empty() {
        store.drop_summaries(&forged)?;
        let names: Vec<String> = forged
            .iter()
            .map(|id| crate::domain::reader::quote(id))
            .collect();
        return Err(CliError::refused(format!(
            "verification FAILED: the cached queue row{} of {} did not match what the log says (forged, or written by a faulty build); {} dropped, and the next listing computes {} again from the log",
            if forged.len() == 1 { "" } else { "s" },
            names.join(", "),
            if forged.len() == 1 {
                "it was"
            } else {
                "they were"
            },
            if forged.len() == 1 { "it" } else { "them" },
        )));
    }
    if json {
        write_out(
            out,
            &to_json(&VerifyJson {
                ok: report.ok(),
                report: &report,
                millis,
            })?,
        )?;
        return if report.ok() {
            Ok(())
        } else {
            Err(CliError::refused("the audit log did not verify"))
        };
    }
    match &report.first_bad {
        None => write_out(
            out,
            &format!(
                "log verified: {}, head entry {} {} ({millis} ms)\n{}",
                crate::domain::text::entries_and_signatures(report.entries, report.signatures),
                report.head.seq,
                report.head.hash.as_deref().unwrap_or("(empty log)"),
                policy_lines(&report)
            ),
        ),
        Some(_) if !report.revoked.is_empty() => {
            let lines: Vec<String> = report
                .revoked
                .iter()
                .map(|b| {
                    format!(
                        "  entry {} ({}): {}",
                        b.seq,
                        b.kind.as_deref().unwrap_or("?"),
                        b.detail
                    )
                })
                .collect();
            Err(CliError::refused(format!(
                "log verification FAILED: {} entr{} signed by a revoked key after its revocation:\n{}\nthe chain itself is intact ({} entries); do not trust these entries until they are explained",
                report.revoked.len(),
                if report.revoked.len() == 1 {
                    "y was"
                } else {
                    "ies were"
                },
                lines.join("\n"),
                report.entries
            )))
        }
        Some(bad) => {
            let what = match (&bad.kind, &bad.cr_id) {
                (Some(k), Some(cr)) => format!(" ({k} on {cr})"),
                (Some(k), None) => format!(" ({k})"),
                _ => String::new(),
            };
            Err(CliError::refused(format!(
                "log verification FAILED at entry {}{what}: {}: {}\nentries 1 to {} verified; do not trust anything from entry {} on until it is explained",
                bad.seq, bad.problem, bad.detail, report.head.seq, bad.seq
            )))
        }
    }
}

/// The policy versions verification walked through, for the success message.
fn policy_lines(report: &VerifyReport) -> String {
    // What an unsigned entry proves: nothing but its place in the chain. Say so.
    let unsigned = if report.unsigned > 0 {
        format!(
            "WARNING: {} unsigned entr{} (submissions by someone without a key): anyone with write access to the store could have written or removed {}; sign submissions (a key, or a team server with --server-key)\n",
            report.unsigned,
            if report.unsigned == 1 { "y" } else { "ies" },
            if report.unsigned == 1 { "it" } else { "them" }
        )
    } else {
        String::new()
    };
    if report.unmigrated {
        return format!(
            "WARNING: no policy in the log: judged by the policy file, and a log without its signed genesis proves little — if this store ever had one, it was removed; pin the genesis with `verify --expect-genesis HASH` (run `tollgate migrate` to record a policy)\n{unsigned}"
        );
    }
    let mut out = unsigned;
    if let Some(g) = report.policies.first() {
        out.push_str(&format!(
            "genesis policy at entry {} {}{}\n",
            g.seq,
            g.hash,
            if g.migration {
                " (adopted at migration: the entries before it are judged by it)"
            } else {
                ""
            }
        ));
    }
    for p in report.policies.iter().skip(1) {
        out.push_str(&format!(
            "policy version {} adopted at entry {} from {}\n",
            p.version,
            p.seq,
            p.cr_id.as_deref().unwrap_or("?")
        ));
    }
    out
}

/// `tollgate log export`: one JSON object per line with the exact signed bytes.
pub fn export_log(
    paths: &Paths,
    output: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let store = super::open_store(paths)?;
    let mut file;
    let sink: &mut dyn Write = match output {
        Some(p) => {
            file = std::io::BufWriter::new(std::fs::File::create(p).map_err(|e| {
                CliError::environment(format!("cannot create {}: {e}", p.display()))
            })?);
            &mut file
        }
        None => out,
    };
    let mut after = 0;
    loop {
        let page = store.log_entries(after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            let line = serde_json::to_string(e)
                .map_err(|e| CliError::environment(format!("cannot encode: {e}")))?;
            writeln!(sink, "{line}").map_err(super::output_error)?;
        }
    }
    sink.flush().map_err(super::output_error)
}
