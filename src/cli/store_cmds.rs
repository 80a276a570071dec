//! `tollgate store migrate`: a store and its whole log copied into PostgreSQL, then
//! verified there before success is reported.

use super::{CliError, write_out};
use crate::store::local::LocalStore;
use crate::store::pg::PgStore;
use crate::store::{Store, VerifyOptions, verify_log};
use std::io::Write;
use std::path::Path;

/// Copies the SQLite store at `from` into the empty database at `to`.
pub fn migrate(from: &Path, to: &str, out: &mut dyn Write) -> Result<(), CliError> {
    if !crate::store::pg::is_database_url(to) {
        return Err(CliError::refused(format!(
            "--to {}: expected a PostgreSQL URL starting postgres:// or postgresql://",
            crate::store::pg::redact(to)
        )));
    }
    let source = LocalStore::open(from)?;
    if source.policy_entries(0)?.is_empty() {
        return Err(CliError::refused(format!(
            "{} has no policy in its log (it predates policy entries): run `tollgate --store {} migrate` first, so the copy carries its genesis",
            from.display(),
            from.display()
        )));
    }
    let target = PgStore::create(to)?;
    let mut shown = 0u64;
    let copied = target.copy_from(&source, &mut |seq| {
        if seq >= shown + 100_000 {
            shown = seq;
            eprintln!("copied {seq} log entries…");
        }
    })?;
    let report = verify_log(&target, &VerifyOptions::default())?;
    if !report.ok() {
        return Err(CliError::refused(format!(
            "the copy in the {} does not verify ({:?}); the source is untouched — run `tollgate --store {} verify` to see whether the source itself verifies",
            target.location().display(),
            report.first_bad,
            from.display()
        )));
    }
    let crs = target.submission_times()?.len();
    write_out(
        out,
        &format!(
            "copied {crs} change requests and {copied} log entries from {} into the {}; verify passes on the copy (head {})\nnext: create tokens there (`tollgate --database URL token add PRINCIPAL`) and start the replicas (`tollgate --database URL serve`)\n",
            from.display(),
            target.location().display(),
            target.recorded_head()?.hash.unwrap_or_default()
        ),
    )
}
