//! Keys and the audit trail: `keygen`, `whoami`, `verify`, `log export`,
//! `policy allowed-signers`.

use super::{CliError, to_json, write_out};
use crate::audit::keys::{Signer, allowed_signers};
use crate::audit::log::VerifyReport;
use crate::config::{self, Paths};
use crate::identity::{KeyChoice, identify};
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
    let policy = super::policy_for(paths)?;
    let who = identify(keys, &paths.store, &policy).map_err(|e| CliError::refused(e.0))?;
    write_out(
        out,
        &format!(
            "{} ({}) — roles: {}\nkey {} ({})\n",
            who.principal.id,
            who.principal.name,
            who.principal.roles.join(", "),
            who.key_path.display(),
            who.signer.fingerprint()
        ),
    )
}

/// `tollgate policy allowed-signers`.
pub fn export_allowed_signers(paths: &Paths, out: &mut dyn Write) -> Result<(), CliError> {
    let policy = super::policy_for(paths)?;
    write_out(out, &allowed_signers(&policy))
}

#[derive(Serialize)]
struct VerifyJson<'a> {
    ok: bool,
    #[serde(flatten)]
    report: &'a VerifyReport,
    millis: u128,
}

/// `tollgate verify`.
pub fn verify(
    paths: &Paths,
    expect_head: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let policy = super::policy_for(paths)?;
    let store = super::open_store(paths)?;
    let started = Instant::now();
    let report = crate::store::verify_log(&store, &policy, expect_head)?;
    let millis = started.elapsed().as_millis();
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
                "log verified: {} entries, {} signatures, head entry {} {} ({millis} ms)\n",
                report.entries,
                report.signatures,
                report.head.seq,
                report.head.hash.as_deref().unwrap_or("(empty log)")
            ),
        ),
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
