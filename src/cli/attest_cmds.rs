//! `wait` and `attest`: the gate a deploy job waits on, and the approval it ships with.

use super::args::{AttestArgs, AttestCommand};
use super::{CliError, EXIT_TIMEOUT, to_json, write_out};
use crate::config::Paths;
use crate::domain::decision::Verdict;
use crate::domain::status::{Status, evaluate_in};
use crate::domain::text::sanitize;
use chrono::{DateTime, Utc};
use std::io::Write;
use std::time::{Duration, Instant};

/// How often `wait` asks again (a remote store answers from its cached queue).
const POLL: Duration = Duration::from_secs(2);

/// `tollgate wait CR-ID`: 0 approved, 1 rejected or changes requested, 3 unreachable,
/// 4 timed out; each sign-off printed as it lands.
pub fn wait(
    paths: &Paths,
    id: &str,
    timeout: Duration,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let started = Instant::now();
    let store = super::open_store(paths)?;
    let mut seen = 0;
    loop {
        let book = super::policy_cmds::load_book(paths)?;
        let Some(cr) = store.get(id)? else {
            return Err(CliError::refused(format!(
                "no change request {}; `tollgate list` shows what is there",
                crate::domain::reader::quote(id)
            )));
        };
        let decisions = store.decisions(id)?;
        let eval = evaluate_in(&cr.current.cr, &cr.current.digest, &decisions, &book);
        if !json {
            for d in eval.counted.iter().skip(seen) {
                write_out(
                    out,
                    &format!(
                        "{} {} by {} as {} at {}\n",
                        sanitize(id),
                        d.verdict,
                        sanitize(&d.principal),
                        sanitize(&d.role),
                        d.at.format("%Y-%m-%d %H:%M UTC")
                    ),
                )?;
            }
            let _ = out.flush();
        }
        seen = seen.max(eval.counted.len());
        let outcome = |status: Status| {
            serde_json::json!({
                "id": id,
                "revision": cr.current.revision,
                "digest": cr.current.digest,
                "status": status,
                "signoffs": {"obtained": eval.signoffs.obtained(), "required": eval.signoffs.required()},
                "decisions": eval.counted,
            })
        };
        match eval.status {
            Status::Approved => {
                return if json {
                    write_out(out, &to_json(&outcome(Status::Approved))?)
                } else {
                    write_out(
                        out,
                        &format!(
                            "{} approved: {}/{} sign-offs on revision {} ({})\n",
                            sanitize(id),
                            eval.signoffs.obtained(),
                            eval.signoffs.required(),
                            cr.current.revision,
                            cr.current.digest
                        ),
                    )
                };
            }
            Status::Rejected | Status::ChangesRequested => {
                if json {
                    write_out(out, &to_json(&outcome(eval.status))?)?;
                }
                let by = eval
                    .counted
                    .iter()
                    .rev()
                    .find(|d| d.verdict != Verdict::Approve)
                    .map(|d| format!(" by {}: {}", sanitize(&d.principal), sanitize(&d.rationale)))
                    .unwrap_or_default();
                return Err(CliError::refused(format!(
                    "{} is {}{by}",
                    sanitize(id),
                    eval.status.as_str()
                )));
            }
            Status::Pending => {}
        }
        if started.elapsed() >= timeout {
            if json {
                write_out(out, &to_json(&outcome(Status::Pending))?)?;
            }
            return Err(CliError {
                message: format!(
                    "{} is still pending after {} s ({}/{} sign-offs; still needs {})",
                    sanitize(id),
                    timeout.as_secs(),
                    eval.signoffs.obtained(),
                    eval.signoffs.required(),
                    eval.signoffs.missing_roles().join(", ")
                ),
                code: EXIT_TIMEOUT,
            });
        }
        std::thread::sleep(POLL.min(timeout.saturating_sub(started.elapsed())));
    }
}

/// `tollgate attest CR-ID` and `tollgate attest verify FILE`.
pub fn attest(
    paths: &Paths,
    args: &AttestArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if let Some(AttestCommand::Verify { file, policy_file }) = &args.command {
        return verify(paths, file, policy_file.as_deref(), out);
    }
    let Some(id) = &args.id else {
        return Err(CliError {
            message: "give the change request to attest (`tollgate attest CR-ID`) or `tollgate attest verify FILE`".into(),
            code: 2,
        });
    };
    let envelope = match (&paths.remote, &args.server_key) {
        // The server signs with its own key.
        (Some(r), None) => {
            crate::store::remote::RemoteStore::connect(&r.url, &r.token)?.attestation(id)?
        }
        (_, Some(key_file)) => {
            let key = crate::audit::keys::Signer::load(key_file, || {
                Err("the server key must not have a passphrase".into())
            })
            .map_err(|e| CliError::refused(format!("{}: {e}", key_file.display())))?;
            let book = super::policy_cmds::load_book(paths)?;
            let keyring = crate::audit::keys::Keyring::from_policy(book.policy())
                .map_err(|e| CliError::refused(e.to_string()))?;
            let Some(principal) = keyring.principal_of(key.public_key()).map(str::to_string) else {
                return Err(CliError::refused(format!(
                    "{}: the key {} belongs to no principal of the policy in force",
                    key_file.display(),
                    key.fingerprint()
                )));
            };
            let store = super::open_store(paths)?;
            crate::workflow::attest::attest(
                &*store,
                &book,
                &crate::store::EntrySigner { principal, key },
                id,
                now,
            )?
        }
        (None, None) => {
            return Err(CliError::refused(
                "an attestation is signed by the team server's principal: ask the server (--remote URL) or give its key (--server-key FILE, TOLLGATE_SERVER_KEY)",
            ));
        }
    };
    write_out(out, &to_json(&envelope)?)
}

fn verify(
    paths: &Paths,
    file: &std::path::Path,
    policy_file: Option<&std::path::Path>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let text = if file == std::path::Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::environment(format!("cannot read standard input: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| CliError::refused(format!("cannot read {}: {e}", file.display())))?
    };
    let (policy, policy_digest) = match policy_file {
        Some(p) => {
            let policy_text = std::fs::read_to_string(p)
                .map_err(|e| CliError::refused(format!("cannot read {}: {e}", p.display())))?;
            let digest = crate::audit::canonical::sha256_digest(policy_text.as_bytes());
            let policy = crate::domain::policy::parse_policy(&policy_text)
                .map_err(|r| CliError::refused(format!("{}:\n{r}", p.display())))?
                .0;
            (policy, digest)
        }
        None => {
            let book = super::policy_cmds::load_book(paths)?;
            (book.policy().clone(), book.current().digest.clone())
        }
    };
    let v = crate::audit::attestation::verify(&text, &policy)
        .map_err(|e| CliError::refused(format!("{}: NOT verified: {e}", file.display())))?;
    if v.issued_under != policy_digest {
        eprintln!(
            "note: judged by policy {policy_digest}; it was issued under {} (keys and roles may have changed since)",
            v.issued_under
        );
    }
    write_out(
        out,
        &format!(
            "{}: verified — {} revision {} ({}) approved by {}; binds {}; signed by {}\n",
            file.display(),
            sanitize(&v.cr_id),
            v.revision,
            v.cr_digest,
            sanitize(&v.signoffs.join(", ")),
            v.artifact,
            v.signed_by
        ),
    )
}
