//! The command-line face of tollgate: scriptable subcommands over the same core the TUI uses.

pub mod args;
mod attest_cmds;
mod audit_cmds;
mod decide;
mod emergency;
mod history_cmds;
mod outbox_cmd;
mod policy_cmds;
mod render;
mod rollout_cmds;
mod store_cmds;
mod token_cmds;
mod views;

use crate::config::{self, Paths};
use crate::demo;
use crate::domain::change_request::{Gate, parse_document};
use crate::domain::decision::Verdict;
use crate::domain::status::evaluate_in;
use crate::domain::text::{sanitize, sanitize_with};
use crate::identity::KeyChoice;
use crate::store::local::LocalStore;
use crate::store::{Store, StoreError, Submission, SubmitOutcome};
use args::{Cli, Command, ListArgs, LogCommand, PolicyCommand, StoreCommand};
use chrono::{DateTime, Utc};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A failure to report: the message for the person, and the exit status.
#[derive(Debug)]
pub struct CliError {
    /// What went wrong, where, and what to do about it.
    pub message: String,
    /// Process exit status (see `tollgate --help`).
    pub code: i32,
}

/// Exit status when input is refused or a rule is violated.
pub const EXIT_REFUSED: i32 = 1;
/// Exit status when the store or file system fails (or the team server is unreachable).
pub const EXIT_ENVIRONMENT: i32 = 3;
/// Exit status when `wait` gave up.
pub const EXIT_TIMEOUT: i32 = 4;

impl CliError {
    fn refused(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: EXIT_REFUSED,
        }
    }

    fn environment(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: EXIT_ENVIRONMENT,
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotInitialised { .. }
            | StoreError::NotAStore { .. }
            | StoreError::DatabaseNotInitialised { .. }
            | StoreError::BadDatabaseUrl { .. }
            | StoreError::NotEmpty { .. }
            | StoreError::Moved { .. } => CliError::refused(e.to_string()),
            other => CliError::environment(other.to_string()),
        }
    }
}

/// A rule refused it (or the CR changed or is gone): refused; anything else is the
/// store's or the signer's trouble.
impl From<crate::store::DecideError> for CliError {
    fn from(e: crate::store::DecideError) -> Self {
        use crate::store::DecideError;
        match e {
            DecideError::Refused(_) | DecideError::Stale { .. } | DecideError::NotFound(_) => {
                CliError::refused(e.to_string())
            }
            other => CliError::environment(other.to_string()),
        }
    }
}

impl From<crate::store::VerifyError> for CliError {
    fn from(e: crate::store::VerifyError) -> Self {
        match e {
            crate::store::VerifyError::Store(s) => s.into(),
            other => CliError::refused(other.to_string()),
        }
    }
}

impl From<config::NoDataDir> for CliError {
    fn from(e: config::NoDataDir) -> Self {
        CliError::environment(e.to_string())
    }
}

/// Runs one invocation, writing results to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let now = config::now().map_err(|e| CliError::refused(e.to_string()))?;
    let keys = KeyChoice {
        key: cli.key.clone(),
        as_principal: cli.as_principal.clone(),
    };
    let remote_flags = RemoteFlags {
        url: cli.remote.clone(),
        token_file: cli.token_file.clone(),
        config: cli.config.clone(),
        source: cli.source.clone(),
    };
    // Read when a command needs the store, so a half-configured server does not stop
    // `init`, `demo` or `serve`, which always work on a local store.
    let database = || -> Result<Option<String>, CliError> {
        match cli.database.as_deref().filter(|u| !u.is_empty()) {
            None => Ok(None),
            Some(url) if crate::store::pg::is_database_url(url) => Ok(Some(url.to_string())),
            Some(url) => Err(CliError::refused(format!(
                "--database (TOLLGATE_DATABASE) {}: expected a PostgreSQL URL starting postgres:// or postgresql://; for an SQLite file use --store PATH",
                crate::store::pg::redact(url)
            ))),
        }
    };
    let paths = || -> Result<Paths, CliError> {
        let mut p = config::resolve(cli.store.clone(), cli.policy.clone())?;
        p.database = database()?;
        let configured = configured(&remote_flags)?;
        p.remote = remote_settings(&remote_flags, &configured)?;
        p.mlflow = source_settings(&remote_flags, configured)?;
        Ok(p)
    };
    // The store, after reading any --source into it.
    let synced = || -> Result<Paths, CliError> {
        let p = paths()?;
        sync_source(&p, now)?;
        Ok(p)
    };
    // A signed decision, then its state written back to the source (if any).
    let sign_and_write_back =
        |verdict: Verdict, a: &crate::cli::args::DecideArgs, out: &mut dyn Write| {
            let p = synced()?;
            decide::run(&p, &keys, verdict, a, now, out)
        };
    // Commands that only make sense on the store's own machine: refused with an explicit
    // --remote, and blind to a server named in the config file.
    let local_only = |what: &str| -> Result<Paths, CliError> {
        if cli.remote.as_deref().is_some_and(|u| !u.is_empty()) {
            return Err(CliError::refused(format!(
                "`tollgate {what}` works on a local store; run it on the server's machine (without --remote)"
            )));
        }
        let mut p = config::resolve(cli.store.clone(), cli.policy.clone())?;
        p.database = database()?;
        Ok(p)
    };
    match cli.command {
        Some(Command::Serve {
            listen,
            tls_cert,
            tls_key,
            server_key,
            kpi_guard,
            mlflow_webhook_secret_file,
            subscribers,
            limits,
        }) => {
            let p = local_only("serve")?;
            let subscribers = match subscribers {
                None => Vec::new(),
                Some(file) => crate::server::events::load(&file)
                    .map_err(|e| CliError::refused(e.to_string()))?,
            };
            let mlflow_webhook = match mlflow_webhook_secret_file {
                None => None,
                Some(file) => {
                    let Some(source) = source_settings(&remote_flags, configured(&remote_flags)?)?
                    else {
                        return Err(CliError::refused(
                            "--mlflow-webhook-secret-file: name the registry the deliveries come from with --source mlflow=URL (or TOLLGATE_SOURCE)",
                        ));
                    };
                    Some(crate::server::MlflowWebhook {
                        url: source.url,
                        convention: source.convention,
                        secret: read_secret(&file)?,
                    })
                }
            };
            serve(
                &p,
                listen,
                tls_cert.zip(tls_key),
                ServeExtras {
                    limits: limits.limits(),
                    server_key,
                    kpi_guard,
                    mlflow_webhook,
                    subscribers,
                },
                out,
            )
        }
        Some(Command::Source(args::SourceCommand::Mlflow(args::MlflowCommand::Register {
            url,
            secret_file,
            name,
        }))) => {
            let Some(source) = source_settings(&remote_flags, configured(&remote_flags)?)? else {
                return Err(CliError::refused(
                    "name the MLflow registry with --source mlflow=URL (or TOLLGATE_SOURCE)",
                ));
            };
            let client = crate::sources::mlflow::Client::new(&source.url)
                .map_err(|e| CliError::environment(e.to_string()))?;
            let id = client
                .create_webhook(&name, &url, &read_secret(&secret_file)?)
                .map_err(|e| match e {
                    crate::sources::mlflow::MlflowError::Unreachable { .. } => {
                        CliError::environment(sanitize(&e.to_string()))
                    }
                    other => CliError::refused(sanitize(&other.to_string())),
                })?;
            write_out(
                out,
                &format!(
                    "MLflow {} delivers new versions and tag changes to {} (webhook {}, signed with the secret in {})\n",
                    client.url(),
                    sanitize(&url),
                    sanitize(&id),
                    secret_file.display()
                ),
            )
        }
        Some(Command::Token(command)) => {
            crate::cli::token_cmds::run(&local_only("token")?, command, now, out)
        }
        Some(Command::Store(StoreCommand::Migrate { from, to })) => {
            crate::cli::store_cmds::migrate(&from, &to, out)
        }
        Some(Command::Outbox { flush, drop }) => {
            crate::cli::outbox_cmd::run(&paths()?, &keys, flush, drop.as_deref(), out)
        }
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut command, "tollgate", &mut buf);
            write_out(out, &String::from_utf8_lossy(&buf))
        }
        Some(Command::Man) => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut buf)
                .map_err(|e| CliError::environment(format!("cannot render the manual: {e}")))?;
            write_out(out, &String::from_utf8_lossy(&buf))
        }
        Some(Command::Evidence {
            id,
            check,
            status,
            detail,
            url,
            digest,
        }) => {
            let paths = paths()?;
            let (book, who) = policy_cmds::book_for_signing(&paths, &keys, now)?;
            let store = open_store(&paths)?;
            let req = crate::workflow::EvidenceRequest {
                cr_id: id,
                check,
                status: match status.as_str() {
                    "pass" => crate::domain::change_request::CheckStatus::Pass,
                    "fail" => crate::domain::change_request::CheckStatus::Fail,
                    _ => crate::domain::change_request::CheckStatus::Pending,
                },
                detail,
                url,
                expect_digest: digest,
            };
            let entry = crate::workflow::attest_evidence(&store, &book, &who, &req, now)?;
            write_out(
                out,
                &format!(
                    "attested: {} {} on {} by {} (log entry {})\n",
                    crate::domain::text::sanitize(&req.check),
                    status,
                    req.cr_id,
                    who.principal.id,
                    entry.seq
                ),
            )
        }
        Some(Command::Approve(a)) => sign_and_write_back(Verdict::Approve, &a, out),
        Some(Command::Reject(a)) => sign_and_write_back(Verdict::Reject, &a, out),
        Some(Command::RequestChanges(a)) => sign_and_write_back(Verdict::RequestChanges, &a, out),
        Some(Command::Sync) => {
            let p = synced()?;
            if p.mlflow.is_none() {
                return Err(CliError::refused(
                    "`tollgate sync` needs a source: --source mlflow=URL, TOLLGATE_SOURCE, or source = \"mlflow=URL\" in the config file",
                ));
            }
            push_source(&p, None, out)
        }
        Some(Command::Keygen { output, comment }) => audit_cmds::keygen(output, &comment, out),
        Some(Command::Rollback(a)) => {
            let p = paths()?;
            emergency::rollback(&p, &keys, &a, now, out)?;
            rollback_source(&p, &a, out)
        }
        Some(Command::Migrate) => policy_cmds::migrate(&local_only("migrate")?, &keys, now, out),
        Some(Command::History(a)) => history_cmds::history(&paths()?, &a, now, out),
        Some(Command::Health { since, until, json }) => {
            history_cmds::health_cmd(&paths()?, since, until, json, now, out)
        }
        Some(Command::Export {
            cr,
            since,
            until,
            out: dir,
        }) => {
            let selection = match (cr, since, until) {
                (Some(id), _, _) => crate::export::Selection::Cr(id),
                (None, Some(since), Some(until)) => {
                    crate::export::Selection::Range { since, until }
                }
                _ => {
                    return Err(CliError::refused(
                        "give --cr ID, or --since DAY and --until DAY",
                    ));
                }
            };
            history_cmds::export(&paths()?, &selection, &dir, now, out)
        }
        Some(Command::Wait {
            id,
            target: _,
            timeout,
            json,
        }) => attest_cmds::wait(&paths()?, &id, timeout, json, out),
        Some(Command::Attest(a)) => attest_cmds::attest(&paths()?, &a, now, out),
        Some(Command::Rollout(a)) => rollout_cmds::rollout(&paths()?, &keys, &a, now, out),
        Some(Command::Rollouts { all, json }) => rollout_cmds::list(&paths()?, all, json, now, out),
        Some(Command::Watch { once, cr }) => {
            rollout_cmds::watch(&paths()?, &keys, once, cr.as_deref(), out)
        }
        Some(Command::Drill(a)) => rollout_cmds::drill(&paths()?, &keys, &a, now, out),
        Some(Command::Events { failed, json }) => {
            let store = open_store(&local_only("events")?)?;
            let list = store.deliveries(failed, 200)?;
            if json {
                return write_out(out, &to_json(&list)?);
            }
            if list.is_empty() {
                return write_out(
                    out,
                    if failed {
                        "no event waits for a retry\n"
                    } else {
                        "no event was queued\n"
                    },
                );
            }
            let mut text = String::new();
            for d in &list {
                text.push_str(&format!(
                    "{:<40} {:<20} {:<16} {}\n",
                    sanitize(&d.queued.delivery_id),
                    d.queued.event,
                    sanitize(&d.queued.subscriber),
                    match (&d.delivered_at, &d.last_error) {
                        (Some(at), _) => format!("delivered {at} ({} attempt(s))", d.attempts),
                        (None, Some(e)) => format!(
                            "FAILING after {} attempt(s), next {}: {}",
                            d.attempts,
                            d.next_at,
                            sanitize(e)
                        ),
                        (None, None) => "waiting".to_string(),
                    }
                ));
            }
            write_out(out, &text)
        }
        Some(Command::Exceptions { all, json }) => {
            emergency::list_exceptions(&paths()?, all, json, now, out)
        }
        Some(Command::Review {
            incident,
            root_cause,
            follow_ups,
            policy_changes,
        }) => {
            let req = crate::workflow::ReviewRequest {
                incident,
                root_cause,
                follow_ups,
                policy_changes,
            };
            emergency::review(&paths()?, &keys, &req, now, out)
        }
        Some(Command::Whoami) => audit_cmds::whoami(&paths()?, &keys, out),
        Some(Command::Verify {
            expect_head,
            expect_genesis,
            json,
        }) => audit_cmds::verify(
            &paths()?,
            crate::store::VerifyOptions {
                expect_head: expect_head.as_deref(),
                expect_genesis: expect_genesis.as_deref(),
                unmigrated_policy: None,
                now: Some(now),
            },
            json,
            out,
        ),
        Some(Command::Log(LogCommand::Export { output })) => {
            audit_cmds::export_log(&paths()?, output.as_deref(), out)
        }
        Some(Command::Policy(PolicyCommand::AllowedSigners)) => {
            policy_cmds::allowed_signers(&paths()?, out)
        }
        Some(Command::Policy(PolicyCommand::Check { file })) => {
            let file = match file {
                Some(f) => f,
                None => paths()?.policy,
            };
            policy_cmds::check(&file, out)
        }
        Some(Command::Policy(PolicyCommand::Show { json, text })) => {
            policy_cmds::show(&paths()?, json, text, out)
        }
        Some(Command::Policy(PolicyCommand::History { json })) => {
            policy_cmds::history(&paths()?, json, out)
        }
        Some(Command::Policy(PolicyCommand::Propose {
            file,
            rationale,
            revise,
        })) => policy_cmds::propose(
            &paths()?,
            &keys,
            &file,
            rationale.as_deref(),
            revise.as_deref(),
            now,
            out,
        ),
        Some(Command::Init {
            replace_policy,
            server_principal,
        }) => {
            local_only("init")?;
            // With init, --policy names the file to install, not the one to use.
            let mut target = config::resolve(cli.store.clone(), None)?;
            target.database = database()?;
            policy_cmds::init(
                &target,
                policy_cmds::InitOptions {
                    source: cli.policy.as_deref(),
                    replace: replace_policy,
                    server_principal: server_principal.as_deref(),
                },
                &keys,
                now,
                out,
            )
        }
        Some(Command::Demo { reset }) => {
            let paths = local_only("demo")?;
            demo_store(&paths, reset, now, out)?;
            if interactive() {
                let mut keys = keys;
                if keys.key.is_none() && keys.as_principal.is_none() {
                    keys.as_principal = Some("devi".into());
                }
                return tui(paths, keys, cli.config.clone());
            }
            list(&paths, &ListArgs::default(), now, out)?;
            write_out(
                out,
                &format!(
                    "\nnext: `tollgate show CR-1042` to review one; sign as a demo reviewer with\n  tollgate --as devi approve CR-1042 --tick privacy --tick rollback --rationale \"...\"\n  (demo principals: {}; `tollgate verify` checks the log, `tollgate policy show` the policy in force)\n",
                    demo::PRINCIPALS.join(" ")
                ),
            )
        }
        Some(Command::Submit { files, json }) => submit(&paths()?, &keys, &files, json, now, out),
        Some(Command::List(args)) => list(&synced()?, &args, now, out),
        Some(Command::Show { id, revision, json }) => {
            show(&synced()?, &id, revision, json, now, out)
        }
        None if interactive() => tui(synced()?, keys, cli.config.clone()),
        None => list(&synced()?, &ListArgs::default(), now, out),
    }
}

/// Reads `--source KIND=URL` into the store; progress and skipped versions go to stderr
/// so `--json` output stays clean.
fn sync_source(paths: &Paths, now: chrono::DateTime<chrono::Utc>) -> Result<(), CliError> {
    use crate::sources::mlflow;
    let Some(source) = &paths.mlflow else {
        return Ok(());
    };
    let store = open_store(paths)?;
    let client =
        mlflow::Client::new(&source.url).map_err(|e| CliError::environment(e.to_string()))?;
    let report =
        mlflow::sync(&client, store.as_ref(), &source.convention, now).map_err(|e| match e {
            mlflow::SyncError::Mlflow(e @ mlflow::MlflowError::Unreachable { .. }) => {
                CliError::environment(sanitize(&e.to_string()))
            }
            mlflow::SyncError::Mlflow(e) => CliError::refused(sanitize(&e.to_string())),
            mlflow::SyncError::Store(e) => e.into(),
        })?;
    let count =
        |pick: fn(&SubmitOutcome) -> bool| report.outcomes.iter().filter(|o| pick(o)).count();
    eprintln!(
        "MLflow {}: {} version(s) awaiting review: {} new, {} revised, {} unchanged{}",
        client.url(),
        report.outcomes.len() + report.skipped.len(),
        count(|o| matches!(o, SubmitOutcome::Created { .. })),
        count(|o| matches!(o, SubmitOutcome::Revised { .. })),
        count(|o| matches!(o, SubmitOutcome::Unchanged { .. })),
        if report.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} skipped", report.skipped.len())
        }
    );
    for (label, problems) in &report.skipped {
        eprintln!(
            "MLflow: skipped {}: {} (set these tags on the version; docs/mlflow.md)",
            crate::domain::text::sanitize(label),
            crate::domain::text::sanitize(&problems.join("; "))
        );
    }
    Ok(())
}

/// Writes decided CRs' state back to the --source: one CR after a decision, or every CR
/// from the source that has a decision (`tollgate sync`). A failure here never loses the
/// decision, which is already in the log: it says so, and `tollgate sync` retries.
fn push_source(paths: &Paths, only: Option<&str>, out: &mut dyn Write) -> Result<(), CliError> {
    use crate::sources::mlflow;
    let Some(source) = &paths.mlflow else {
        return Ok(());
    };
    let url = &source.url;
    let store = open_store(paths)?;
    let book = policy_cmds::load_book(paths)?;
    let client = mlflow::Client::new(url).map_err(|e| CliError::environment(e.to_string()))?;
    let conv = &source.convention;
    let ids: Vec<String> = match only {
        Some(id) => vec![id.to_string()],
        None => {
            let mut ids: Vec<String> = store.all_decisions()?.into_keys().collect();
            ids.sort();
            ids
        }
    };
    let mut failures = Vec::new();
    for id in &ids {
        match mlflow::push(&client, store.as_ref(), &book, conv, id) {
            Ok(pushed) => {
                if let Some(line) = pushed_line(id, conv, pushed.as_ref(), only.is_none()) {
                    write_out(out, &format!("{line}\n"))?;
                }
            }
            Err(e) => failures.push(format!("{id}: {e}")),
        }
    }
    written_back_failures(url, &failures)
}

/// What writing `id` back to MLflow did, as one line (`None`: nothing worth saying;
/// "already up to date" only when `say_unchanged`).
pub(crate) fn pushed_line(
    id: &str,
    conv: &crate::sources::mlflow::Convention,
    pushed: Option<&crate::sources::mlflow::Pushed>,
    say_unchanged: bool,
) -> Option<String> {
    use crate::sources::mlflow::Pushed;
    match pushed? {
        Pushed::Unchanged => say_unchanged.then(|| format!("MLflow: {id} already up to date")),
        Pushed::Written { status, alias } => {
            let mut line = format!("MLflow: {id} marked {}={status}", conv.status_tag);
            if let Some(m) = alias {
                line.push_str(&format!(
                    "; @{} now v{}{}",
                    m.alias,
                    sanitize(&m.to),
                    m.previous
                        .as_ref()
                        .map(|p| format!(" (v{} kept as @previous-{})", sanitize(p), m.alias))
                        .unwrap_or_default()
                ));
            }
            Some(line)
        }
    }
}

/// The error for write-backs that failed (the decisions themselves are recorded).
pub(crate) fn written_back_failures(url: &str, failures: &[String]) -> Result<(), CliError> {
    if failures.is_empty() {
        return Ok(());
    }
    Err(CliError::environment(format!(
        "not written back to MLflow (the decisions are recorded in tollgate's log; `tollgate --source mlflow={url} sync` retries):\n{}",
        sanitize_with(&failures.join("\n"), true)
    )))
}

/// After an authorised rollback of a model read from the --source, points its serving
/// alias back at the version rolled back to.
fn rollback_source(
    paths: &Paths,
    args: &crate::cli::args::RollbackArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    use crate::sources::mlflow;
    let Some(source) = &paths.mlflow else {
        return Ok(());
    };
    let Some(to) = args.to_version.as_deref() else {
        return Err(CliError::refused(
            "with --source mlflow, give --to VERSION so the alias can be moved back",
        ));
    };
    let client =
        mlflow::Client::new(&source.url).map_err(|e| CliError::environment(e.to_string()))?;
    let conv = &source.convention;
    match mlflow::move_alias(&client, &args.subject, &conv.alias, to) {
        Ok(Some(m)) => write_out(out, &format!("MLflow: {}\n", m.describe(&args.subject))),
        Ok(None) => write_out(
            out,
            &format!(
                "MLflow: @{} of {} already at v{}\n",
                conv.alias,
                sanitize(&args.subject),
                sanitize(to)
            ),
        ),
        Err(e) => Err(CliError::environment(format!(
            "the rollback is authorised and recorded, but MLflow's alias was not moved: {}",
            sanitize(&e.to_string())
        ))),
    }
}

/// What the command line says about the team server.
struct RemoteFlags {
    url: Option<String>,
    token_file: Option<PathBuf>,
    config: Option<PathBuf>,
    source: Option<String>,
}

/// What the config file says about connections (nothing when there is no config file).
fn configured(flags: &RemoteFlags) -> Result<config::RemoteConfig, CliError> {
    let file = match &flags.config {
        Some(f) => Some(f.clone()),
        None => config::config_dir().ok().map(|d| d.join("config.toml")),
    };
    match &file {
        Some(f) => config::remote_config(f).map_err(|e| CliError::refused(e.to_string())),
        None => Ok(config::RemoteConfig::default()),
    }
}

/// The CR source: `--source` (or TOLLGATE_SOURCE), else `source` in the config file.
fn source_settings(
    flags: &RemoteFlags,
    configured: config::RemoteConfig,
) -> Result<Option<config::MlflowSource>, CliError> {
    let Some(source) = flags
        .source
        .clone()
        .filter(|s| !s.is_empty())
        .or(configured.source)
    else {
        return Ok(None);
    };
    match source.split_once('=') {
        Some(("mlflow", url)) if !url.is_empty() => Ok(Some(config::MlflowSource {
            url: url.to_string(),
            convention: configured.mlflow,
        })),
        _ => Err(CliError::refused(format!(
            "--source {source:?}: expected KIND=URL with KIND mlflow, e.g. --source mlflow=http://127.0.0.1:5000"
        ))),
    }
}

/// The team server: `--remote` (or TOLLGATE_REMOTE), else `remote` in the config file;
/// the token from `--token-file`, TOLLGATE_TOKEN, then the config's `token_file`.
fn remote_settings(
    cli: &RemoteFlags,
    configured: &config::RemoteConfig,
) -> Result<Option<config::Remote>, CliError> {
    let Some(url) = cli
        .url
        .clone()
        .filter(|u| !u.is_empty())
        .or(configured.url.clone())
    else {
        return Ok(None);
    };
    // The configured token belongs to the configured server: never send it elsewhere.
    let configured_token = configured
        .token_file
        .clone()
        .filter(|_| configured.url.as_deref() == Some(url.as_str()));
    let env_token = std::env::var("TOLLGATE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let token_file = match (&cli.token_file, env_token.is_some()) {
        (Some(f), _) => Some(f.clone()),
        (None, true) => None,
        (None, false) => configured_token,
    };

    let token = match token_file.as_deref() {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| {
                CliError::refused(format!("cannot read the token file {}: {e}", f.display()))
            })?
            .trim()
            .to_string(),
        None => env_token.unwrap_or_default(),
    };
    if token.is_empty() {
        return Err(CliError::refused(format!(
            "the team server {url} needs a bearer token: set TOLLGATE_TOKEN, pass --token-file FILE, or add token_file = \"PATH\" to the config file (the server's admin creates one with `tollgate token add PRINCIPAL`)"
        )));
    }
    Ok(Some(config::Remote { url, token }))
}

fn serve(
    paths: &Paths,
    listen: String,
    tls: Option<(PathBuf, PathBuf)>,
    ServeExtras {
        limits,
        server_key,
        kpi_guard,
        mlflow_webhook,
        subscribers,
    }: ServeExtras,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    // Refuse a store that is not there before listening, with the command that makes one.
    open_store(paths)?;
    let opts = crate::server::ServeOptions {
        listen,
        database: paths.database.clone(),
        store: paths.store.clone(),
        policy: paths.policy.clone(),
        tokens: crate::server::tokens::tokens_beside(&paths.store),
        tls,
        access_log: true,
        limits,
        server_key,
        kpi_guard,
        mlflow_webhook,
        subscribers,
    };

    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    let store = paths.store_label();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::environment(format!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(crate::server::serve(opts, |addr| {
            let _ = writeln!(out, "serving {store} on {scheme}://{addr} (Ctrl-C to stop)");
            let _ = out.flush();
        }))
        .map_err(|e| CliError::environment(e.to_string()))
}

/// `serve`'s options beside where it listens.
struct ServeExtras {
    limits: crate::server::limits::Limits,
    server_key: Option<PathBuf>,
    kpi_guard: bool,
    mlflow_webhook: Option<crate::server::MlflowWebhook>,
    subscribers: Vec<crate::server::events::Subscriber>,
}

/// A shared secret from the first line of `file` (a webhook's).
fn read_secret(file: &Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        CliError::refused(format!(
            "cannot read the secret file {}: {e}",
            file.display()
        ))
    })?;
    let secret = text.lines().next().unwrap_or_default().trim().to_string();
    if secret.len() < 16 {
        return Err(CliError::refused(format!(
            "{}: expected a secret of at least 16 characters on its first line (e.g. `head -c 32 /dev/urandom | base64`)",
            file.display()
        )));
    }
    Ok(secret)
}

/// Whether a person is at a terminal (both ends), so the TUI can open.
fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

fn tui(paths: Paths, keys: KeyChoice, config: Option<PathBuf>) -> Result<(), CliError> {
    // The store must exist before the screen opens, with a message that says how to make one.
    open_store(&paths)?;
    let mut book = policy_cmds::load_book(&paths)?;
    let mut notice = policy_cmds::file_notice(&book, &paths.policy);
    if book.is_provisional() && paths.remote.is_none() {
        // A store from before policy entries is migrated by whoever can sign it; anyone
        // else reviews read-only.
        match policy_cmds::migrate_store(
            &paths,
            &keys,
            config::now().map_err(|e| CliError::refused(e.to_string()))?,
        ) {
            Ok(b) => book = b,
            Err(e) => {
                notice = Some(format!(
                    "read-only: this store predates policy entries and could not be migrated ({})",
                    e.message
                ))
            }
        }
    }
    match crate::tui::run(crate::tui::Options {
        paths,
        keys,
        config,
        book,
        notice,
    })
    .map_err(|e| CliError::refused(e.to_string()))?
    {
        crate::tui::Ended::Quit => Ok(()),
        // Ended by a signal: the status a shell expects of a process it ended.
        crate::tui::Ended::Signal(signal) => Err(CliError {
            message: String::new(),
            code: 128 + signal,
        }),
    }
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), CliError> {
    out.write_all(text.as_bytes()).map_err(output_error)
}

/// A closed pipe (`tollgate log export | head`) ends the command quietly, as in other
/// Unix tools; any other write failure is reported.
fn output_error(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError {
            message: String::new(),
            code: 0,
        }
    } else {
        CliError::environment(format!("cannot write output: {e}"))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| CliError::environment(format!("cannot encode JSON output: {e}")))
}

/// Opens the store the invocation works on: the team server with `--remote`, else the
/// local SQLite file.
pub fn open_store(paths: &Paths) -> Result<Box<dyn Store>, CliError> {
    match &paths.remote {
        Some(r) => Ok(Box::new(crate::store::remote::RemoteStore::connect(
            &r.url, &r.token,
        )?)),
        None => match &paths.database {
            Some(url) => Ok(Box::new(crate::store::pg::PgStore::open(url)?)),
            None => Ok(Box::new(LocalStore::open(&paths.store)?)),
        },
    }
}

/// Writes `text` to `path` through a temporary file and a rename, so a crash never leaves
/// a half-written policy behind.
fn write_atomically(path: &Path, text: &str) -> Result<(), CliError> {
    crate::workflow::write_policy_file(path, text)
        .map_err(|e| CliError::environment(format!("cannot write {}: {e}", path.display())))
}

/// Reads, validates and checks a batch; returns the submissions or every problem found.
fn read_batch(files: &[PathBuf]) -> Result<Vec<Submission>, CliError> {
    let mut problems: Vec<String> = Vec::new();
    let mut batch: Vec<(String, Submission)> = Vec::new();
    for file in files {
        let name = if file.as_os_str() == "-" {
            "<stdin>".to_string()
        } else {
            file.display().to_string()
        };
        let bytes = if file.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(crate::domain::change_request::MAX_DOCUMENT_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .map(|_| buf)
        } else {
            std::fs::read(file)
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("{name}: cannot read: {e}"));
                continue;
            }
        };
        match parse_document(&bytes) {
            Ok((cr, _)) if cr.gate == Gate::Policy => problems.push(format!(
                "{name}: $.gate: a policy change is not submitted: propose the new policy file with `tollgate policy propose FILE`"
            )),
            Ok((cr, document)) => {
                if let Some((first, _)) = batch.iter().find(|(_, s)| s.cr.id == cr.id) {
                    problems.push(format!(
                        "{name}: $.id: {} also appears in {first}; a batch may hold each change request once",
                        cr.id
                    ));
                    continue;
                }
                batch.push((name, Submission::new(cr, document)));
            }
            Err(e) => problems.extend(e.problems.iter().map(|p| format!("{name}: {p}"))),
        }
    }
    if problems.is_empty() {
        Ok(batch.into_iter().map(|(_, s)| s).collect())
    } else {
        Err(CliError::refused(format!(
            "{}\nnothing was stored: fix the problems above and submit the batch again",
            problems.join("\n")
        )))
    }
}

fn submit(
    paths: &Paths,
    keys: &KeyChoice,
    files: &[PathBuf],
    json: bool,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let batch = read_batch(files)?;
    let store = open_store(paths)?;
    // The first command that writes migrates a store from before policy entries, when
    // whoever runs it can sign; a submission is unsigned, so it is stored either way.
    if paths.remote.is_none()
        && store.policy_entries(0)?.is_empty()
        && let Err(e) = policy_cmds::migrate_store(paths, keys, now)
    {
        eprintln!(
            "note: {} was not migrated ({}); the submission is stored all the same",
            paths.store.display(),
            e.message
        );
    }
    // Locally the submitter is whoever's key signs the entries; without a key the
    // submission is recorded unsigned, its submitter unknown (its checks wait for CI).
    // A team server records the token's principal itself.
    let batch = if paths.remote.is_none() {
        let by = match policy_cmds::load_book(paths).and_then(|book| {
            crate::identity::identify_in_force(keys, &paths.store, &book, &paths.policy)
                .map_err(policy_cmds::identity_error)
        }) {
            Ok(who) => crate::store::SubmittedBy::principal(&who.principal.id, who.signer),
            Err(e) => {
                eprintln!(
                    "note: submitted unsigned, submitter unknown ({}); its checks count only once CI attests them",
                    e.message.lines().next().unwrap_or("no key")
                );
                crate::store::SubmittedBy::default()
            }
        };
        batch.into_iter().map(|s| s.by(by.clone())).collect()
    } else {
        batch
    };
    let outcomes = store.submit(&batch, now)?;
    if json {
        return write_out(out, &to_json(&outcomes)?);
    }
    let mut msg = String::new();
    for o in &outcomes {
        msg.push_str(&match o {
            SubmitOutcome::Created { id, digest, .. } => format!("{id}: created, revision 1 ({digest})\n"),
            SubmitOutcome::Revised { id, revision, digest, .. } => format!(
                "{id}: revised, now revision {revision} ({digest}); sign-offs on earlier revisions are stale\n"
            ),
            SubmitOutcome::Unchanged { id, revision, .. } => {
                format!("{id}: unchanged, still revision {revision}\n")
            }
        });
    }
    write_out(out, &msg)
}

fn list(
    paths: &Paths,
    args: &ListArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let store = open_store(paths)?;
    let book = policy_cmds::load_book(paths)?;
    let banner = emergency::overdue_banner(store.as_ref(), now)?;
    match (&banner, args.json) {
        (Some(b), true) => eprintln!("{b}"),
        (Some(b), false) => write_out(out, &format!("{b}\n\n"))?,
        (None, _) => {}
    }
    // The queue's summaries, a page at a time: cached rows are written as they are, the
    // others evaluated once and cached; memory stays a page's worth whatever the size.
    let pages = crate::workflow::queue::SummaryPages::new(store.as_ref(), &book, args.gate).only(
        args.status.map(|s| s.as_str()),
        args.risk.map(|r| r.as_str()),
    );
    let pages = if args.json {
        pages.without_cells()
    } else {
        pages
    };
    // Buffered: standard output flushes at every newline.
    let mut buffered = std::io::BufWriter::with_capacity(1 << 16, &mut *out);
    let mut cells: Vec<[String; 8]> = Vec::new();
    let mut written = 0usize;
    for page in pages {
        for s in page? {
            if args.json {
                let sep: &[u8] = if written == 0 { b"[\n  " } else { b",\n  " };
                buffered.write_all(sep).map_err(output_error)?;
                buffered.write_all(s.row.as_bytes()).map_err(output_error)?;
            } else {
                cells.push(row_cells(&s, now)?);
            }
            written += 1;
        }
    }
    if args.json {
        let end: &[u8] = if written == 0 { b"[]\n" } else { b"\n]\n" };
        buffered.write_all(end).map_err(output_error)?;
        return buffered.flush().map_err(output_error);
    }
    drop(buffered);
    if cells.is_empty() {
        return write_out(out, "no change requests match\n");
    }
    write_out(out, &render::queue_table(cells))
}

/// A summary's table cells, with the age worked out now (the cache keeps no clock).
fn row_cells(s: &crate::store::Summary, now: DateTime<Utc>) -> Result<[String; 8], CliError> {
    let corrupt = || {
        CliError::environment(format!(
            "the cached queue row of {} does not read; delete the store's cr_summaries rows (they are rebuilt) or run `tollgate verify`",
            crate::domain::reader::quote(&s.cr_id)
        ))
    };
    let cells: Vec<String> = serde_json::from_str(&s.cells).map_err(|_| corrupt())?;
    let mut cells: [String; 8] = cells
        .into_iter()
        .map(|c| crate::domain::text::sanitize(&c))
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| corrupt())?;
    let created = DateTime::parse_from_rfc3339(&s.created_at)
        .map_err(|_| corrupt())?
        .with_timezone(&Utc);
    cells[6] = crate::domain::text::compact_age(created, now);
    Ok(cells)
}

fn show(
    paths: &Paths,
    id: &str,
    revision: Option<u32>,
    json: bool,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let store = open_store(paths)?;
    let book = policy_cmds::load_book(paths)?;
    let safe_id = crate::domain::reader::quote(id);
    let Some(cr) = store.get(id)? else {
        return Err(CliError::refused(format!(
            "no change request {safe_id} in {}; `tollgate list` shows what is there",
            paths.store.display()
        )));
    };
    let revisions = store.revisions(id)?;
    let rev = match revision {
        None => cr.current.clone(),
        Some(n) => store.revision(id, n)?.ok_or_else(|| {
            CliError::refused(format!(
                "{safe_id} has no revision {n}; it has revisions 1 to {}",
                cr.revision_count
            ))
        })?,
    };
    let is_current = rev.revision == cr.current.revision;
    if is_current && let Some(outbox) = outbox_cmd::outbox_for(paths) {
        // What the reviewer saw: a decision made later while the server is unreachable
        // binds to it.
        outbox.note_seen(&rev.cr.id, &rev.digest);
    }
    let decisions = store.decisions(id)?;
    let e = evaluate_in(&rev.cr, &rev.digest, &decisions, &book);
    let changes = crate::domain::policy_diff::proposal_changes(book.policy(), &rev.cr);
    let after = crate::workflow::rollout::rollouts_with_readings(&*store, id)?;
    let rollout = after.of(id);
    let drill = after.last_drill(&rev.cr.subject.name);
    if json {
        let mut detail =
            views::Detail::new(&rev, cr.first_submitted_at, is_current, &revisions, &e);
        detail.rollout = rollout;
        detail.rollback_drill = drill;
        detail.policy_change = changes.as_deref().map(|c| views::PolicyChangeView {
            in_force_version: book.current().version,
            in_force_digest: &book.current().digest,
            changes: c,
        });
        return write_out(out, &to_json(&detail)?);
    }
    let mut text = render::detail(&rev, is_current, &revisions, &e, now);
    text.push_str(&render::after_approval(
        &rev.cr,
        &e,
        rollout,
        drill,
        book.policy(),
        now,
    ));
    if let Some(changes) = &changes {
        text.push_str(&render::policy_changes(changes, book.current()));
    }
    write_out(out, &text)
}

/// Creates a key for every demo principal beside the store and returns the demo policy
/// with those public keys filled in.
fn demo_identities(store: &Path) -> Result<String, CliError> {
    let dir = config::demo_keys_dir(store);
    let mut lines = std::collections::HashMap::new();
    for id in demo::PRINCIPALS {
        let path = dir.join(id);
        let signer = if path.exists() {
            crate::audit::keys::Signer::load(&path, || Err("demo keys have no passphrase".into()))
        } else {
            crate::audit::keys::Signer::generate(&format!("{id}@tollgate-demo"))
                .and_then(|s| s.write(&path).map(|_| s))
        }
        .map_err(|e| CliError::environment(e.to_string()))?;
        lines.insert(id, signer.public_key_line());
    }
    Ok(demo::policy_with_keys(|p| {
        lines.get(p).cloned().unwrap_or_default()
    }))
}

fn demo_store(
    paths: &Paths,
    reset: bool,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut notes = String::new();
    if reset {
        let beside = |suffix: &str| {
            let mut name = paths.store.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        for file in [
            paths.store.clone(),
            beside("-wal"),
            beside("-shm"),
            paths.policy.clone(),
        ] {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(CliError::environment(format!(
                        "cannot remove {}: {e}",
                        file.display()
                    )));
                }
            }
        }
        notes.push_str(&format!(
            "removed the demo store at {} and its policy\n",
            paths.store.display()
        ));
    }
    let existed = paths.store.exists();
    let store = LocalStore::create(&paths.store)?;
    if store.policy_entries(0)?.is_empty() {
        if existed && store.recorded_head()?.seq > 0 {
            return Err(CliError::refused(format!(
                "the demo store at {} was made by an earlier tollgate: its log has no policy yet. Start it afresh with `tollgate demo --reset` (its decisions are lost), or keep it with `tollgate migrate --as lena`",
                paths.store.display()
            )));
        }
        // A new demo: the playbook policy with a key for every principal, adopted as the
        // genesis by the demo lead.
        let policy = demo_identities(&paths.store)?;
        write_atomically(&paths.policy, &policy)?;
        let lead = KeyChoice {
            key: None,
            as_principal: Some(demo::GENESIS_SIGNER.into()),
        };
        let (parsed, _) = crate::domain::policy::parse_policy(&policy).map_err(|r| {
            CliError::environment(format!("the built-in demo policy is invalid:\n{r}"))
        })?;
        let who = crate::identity::identify(&lead, &paths.store, &parsed)
            .map_err(policy_cmds::identity_error)?;
        let genesis = crate::workflow::adopt_genesis(&store, &policy, &who, now)
            .map_err(|e| CliError::environment(format!("the demo policy was not adopted: {e}")))?;
        if let crate::workflow::GenesisOutcome::Adopted(g) = genesis {
            notes.push_str(&format!(
                "installed the demo policy at {} with a key for every principal (act as one with --as ID, e.g. --as devi); {} adopted it as the genesis, entry {} ({})\n",
                paths.policy.display(),
                demo::GENESIS_SIGNER,
                g.seq,
                g.hash
            ));
        }
    } else if !paths.policy.exists() {
        // The file is a copy of the policy in force; put it back.
        let book = policy_cmds::local_book(&store, paths)?;
        write_atomically(&paths.policy, &book.current().text)?;
    }
    let mut batch = Vec::new();
    for (name, text) in demo::FIXTURES {
        let (cr, document) = parse_document(text.as_bytes()).map_err(|e| {
            CliError::environment(format!("built-in sample {name} is invalid: {e}"))
        })?;
        if store.get(&cr.id)?.is_none() {
            batch.push(Submission::new(cr, document));
        }
    }
    if !batch.is_empty() {
        // The samples come from CI, signed with its demo key, so their checks count.
        let book = policy_cmds::local_book(&store, paths)?;
        let ci = crate::identity::identify(
            &KeyChoice {
                key: None,
                as_principal: Some(demo::SUBMITTER.into()),
            },
            &paths.store,
            book.policy(),
        )
        .map_err(policy_cmds::identity_error)?;
        let by = crate::store::SubmittedBy::principal(demo::SUBMITTER, ci.signer);
        batch = batch.into_iter().map(|s| s.by(by.clone())).collect();
    }
    let added = store.submit(&batch, now)?.len();
    notes.push_str(&format!(
        "demo store at {}: {added} sample change request(s) added\n\n",
        paths.store.display()
    ));
    write_out(out, &notes)
}
