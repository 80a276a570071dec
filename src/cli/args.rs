//! Command-line arguments (clap). The help text is the first documentation a newcomer
//! reads, so every command says what it does, what it changes and an example.

use crate::domain::change_request::Gate;
use crate::domain::risk::RiskLevel;
use crate::domain::status::Status;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Govern changes to production ML models: review change requests, sign decisions,
/// audit the history.
#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version = env!("TOLLGATE_VERSION"),
    about,
    after_help = "Start here:\n  tollgate demo          create a store with sample change requests and show the queue\n  tollgate list          the queue of change requests\n  tollgate show CR-1042  everything a reviewer needs to decide\n\nExit status: 0 success, 1 input refused or rule violated, 2 usage error, 3 store or file system failure."
)]
pub struct Cli {
    /// The SQLite store to use [default: tollgate.db in the user's data directory, or in $TOLLGATE_HOME].
    #[arg(long, global = true, env = "TOLLGATE_STORE", value_name = "PATH")]
    pub store: Option<PathBuf>,

    /// The policy file [default: beside the store, e.g. tollgate.policy.toml]. With `init`,
    /// the genesis policy to adopt and install beside the store; otherwise only the file
    /// compared with the policy in force (the log's, which it never overrides).
    #[arg(long, global = true, env = "TOLLGATE_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// The OpenSSH ed25519 private key to sign with [default: the key `tollgate keygen`
    /// made, else ~/.ssh/id_ed25519]. A passphrase is read from TOLLGATE_KEY_PASSPHRASE or
    /// asked for on the terminal.
    #[arg(long, global = true, env = "TOLLGATE_KEY", value_name = "PATH")]
    pub key: Option<PathBuf>,

    /// Act as a demo identity (only in stores made by `tollgate demo`), e.g. --as devi.
    #[arg(long = "as", global = true, value_name = "PRINCIPAL")]
    pub as_principal: Option<String>,

    /// Use the team server at this URL instead of the local store (its policy applies).
    /// The bearer token comes from TOLLGATE_TOKEN or --token-file.
    #[arg(long, global = true, env = "TOLLGATE_REMOTE", value_name = "URL")]
    pub remote: Option<String>,

    /// Use the PostgreSQL database at this URL as the store instead of the SQLite file
    /// (postgres://USER@HOST/DATABASE, or postgres:///DATABASE?host=/run/postgresql for a
    /// local socket). Team server replicas started with the same URL serve as one; with
    /// `init`, creates the schema and adopts the genesis policy there.
    #[arg(long, global = true, env = "TOLLGATE_DATABASE", value_name = "URL")]
    pub database: Option<String>,

    /// Read change requests from another system before the command runs:
    /// `mlflow=URL` stores every MLflow model version tagged `tollgate.status=pending`
    /// as a CR (tag convention: docs/mlflow.md).
    #[arg(long, global = true, env = "TOLLGATE_SOURCE", value_name = "KIND=URL")]
    pub source: Option<String>,

    /// File holding the bearer token for --remote (instead of TOLLGATE_TOKEN).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// The TUI config file (theme, key preset, bindings, mouse) [default:
    /// ~/.config/tollgate/config.toml, or $TOLLGATE_HOME/config.toml].
    #[arg(long, global = true, env = "TOLLGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What to do; without a command, the reviewer's terminal UI opens (or, when output is
    /// not a terminal, the queue is printed).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a store and adopt its genesis policy.
    ///
    /// With --policy FILE, FILE is validated, recorded as the first log entry
    /// (`policy-adopted`, signed with --key by a principal it lists) and copied beside the
    /// store; without it the playbook's starter policy is used, which lists no keys, so add
    /// yours first. The genesis entry's hash is printed: auditors pin it with
    /// `verify --expect-genesis`. An existing, different policy file is never overwritten
    /// unless --replace-policy is given; a store with a policy in force is never re-initialised.
    #[command(after_help = "Example:
  tollgate keygen                  # prints the key line to add under your principal
  tollgate init --policy team.policy.toml --key ~/.config/tollgate/id_ed25519")]
    Init {
        /// Replace a policy that already sits beside the store.
        #[arg(long)]
        replace_policy: bool,
        /// Name the team server's own principal (role `server`): a key is made for it
        /// beside the store (`tollgate.server-key`, no passphrase, mode 0600) and the
        /// principal added to the policy adopted as the genesis. Give that file to every
        /// replica: `tollgate serve --server-key FILE`.
        #[arg(long, value_name = "ID")]
        server_principal: Option<String>,
    },

    /// Validate change-request documents and store them, all or nothing.
    ///
    /// Each FILE is a JSON document in the change-request format v1
    /// (docs/change-request.v1.schema.json); `-` reads one from standard input. If any
    /// document is invalid, every problem is listed and nothing is stored. Re-submitting
    /// changed content for a known id records a new revision; identical content is a no-op.
    Submit {
        /// Documents to submit.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },

    /// List change requests with computed risk, sign-offs and check results.
    List(ListArgs),

    /// Show one change request: evidence, risk, checklist, sign-offs, plans.
    Show {
        /// The change request id, e.g. CR-1042.
        id: String,
        /// Show an earlier revision instead of the current one.
        #[arg(long, value_name = "N")]
        revision: Option<u32>,
        /// Print as JSON (see docs/json-output.md).
        #[arg(long)]
        json: bool,
    },

    /// Create (or refresh) a store with the playbook's sample change requests and policy,
    /// then open the terminal UI as a demo reviewer (devi, unless --as or --key says
    /// otherwise). When output is not a terminal, the queue is printed instead.
    ///
    /// Safe to repeat: samples already present are left as they are, and the policy in
    /// force is kept. A demo store made by an earlier tollgate (no policy in its log) is
    /// refused with the choice: --reset, or `tollgate migrate --as lena`.
    Demo {
        /// Delete the demo store and its policy file first, and start afresh.
        #[arg(long)]
        reset: bool,
    },

    /// The policy in force (recorded in the log), its history, and changes to it.
    #[command(subcommand)]
    Policy(PolicyCommand),

    /// Record the policy file of a store made before policy entries as its genesis.
    ///
    /// Appends a `policy-adopted` entry (marked as adopted at migration, signed with your
    /// key, which the file must list) at the end of the existing log; earlier entries are
    /// judged by it. Signing commands do this for you; read commands work read-only until
    /// then. Refused, with the principals to add, if the policy could never approve a
    /// change to itself.
    Migrate,

    /// Sign off a change request in one of your roles.
    ///
    /// Refused (with the rule and what would satisfy it) if you requested the CR, do not
    /// hold the role, already filled a sign-off on it, or a blocking checklist item fails,
    /// pends or is unticked.
    #[command(
        after_help = "Example:\n  tollgate approve CR-1042 --role risk-reviewer --tick privacy \\\n    --tick rollback=\"tested in staging 2026-11-19\" \\\n    --rationale \"Shifts explained by the new features; fairness within limits.\""
    )]
    Approve(DecideArgs),

    /// Reject a change request (always allowed for a role you hold).
    Reject(DecideArgs),

    /// Send a change request back to its requester with what to change.
    RequestChanges(DecideArgs),

    /// Create an ed25519 signing key for yourself and print the line to add to the policy.
    ///
    /// The key is written with mode 0600 to the tollgate config directory (or --output).
    /// An existing OpenSSH ed25519 key works too: pass it with --key.
    Keygen {
        /// Where to write the private key (the public key goes beside it as .pub).
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Comment in the public key line, e.g. your principal id.
        #[arg(long, default_value = "tollgate")]
        comment: String,
    },

    /// Show which key you sign with and which principal and roles it gives you.
    Whoami,

    /// Check every link and signature of the audit log, each entry against the policy in
    /// force when it was appended.
    ///
    /// On failure, names the first bad entry and why (altered content, bad signature,
    /// unknown or revoked key, broken link, reordered or missing entries, cut tail, a rule
    /// of its policy broken) and exits 1.
    Verify {
        /// Also require this entry hash to be in the log (a head noted at an earlier audit).
        #[arg(long, value_name = "HASH")]
        expect_head: Option<String>,
        /// Require the genesis policy entry to have this hash (shipped out of band, as
        /// `policy show` and `init` print it): trust in every later policy starts there.
        #[arg(long, value_name = "HASH")]
        expect_genesis: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Read the audit log.
    #[command(subcommand)]
    Log(LogCommand),

    /// Emergency: authorise a rollback without normal review (on-call roster only), then
    /// run the policy's rollback command for the subject, if it names one.
    ///
    /// Opens an exception (expires after the policy's lifetime; a post-incident review is
    /// due within its deadline). A second rollback on the same incident while the exception
    /// is open is linked to it; an expired exception is never reused.
    #[command(
        after_help = "Example:\n  tollgate rollback recommender --env prod --to 7 --incident INC-2291 \\\n    --reason \"conversion -10% since v8 reached 25% of traffic\""
    )]
    Rollback(RollbackArgs),

    /// After approval: record a rollout stage of an approved CR (operators only, never the
    /// requester), running the policy's deployment command for it, if one is named.
    ///
    /// Canary comes first (unless the policy lets the CR's gate skip it); full is refused
    /// until the observation window of the CR's effective risk has elapsed since the
    /// canary, and a frozen environment refuses every stage outside the emergency gate.
    #[command(after_help = "Examples:
  tollgate rollout CR-1042 --stage canary --traffic 5 --note \"5% EU\"
  tollgate rollout CR-1042 --stage full
  tollgate rollouts                 # what is rolling out, and when full opens")]
    Rollout(RolloutArgs),

    /// List CRs rolling out: stage, traffic, when the observation window opens, the last
    /// KPI reading, and rollbacks.
    Rollouts {
        /// Include CRs fully rolled out or rolled back.
        #[arg(long)]
        all: bool,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Run the KPI guard: read the KPIs of every CR in canary whose reading is due and
    /// record each reading; a regression past the policy's bounds rolls the canary back
    /// through the emergency path (when the signer is on the on-call roster).
    #[command(after_help = "Example:\n  tollgate watch --once    # one pass, for cron or CI")]
    Watch {
        /// One pass over the due canaries, then exit.
        #[arg(long)]
        once: bool,
        /// Only this CR (read now, due or not).
        #[arg(long, value_name = "CR-ID")]
        cr: Option<String>,
    },

    /// Run a rollback drill: the subject's rollback command against a non-production
    /// environment, timed and recorded as a signed `drill` entry.
    #[command(after_help = "Example:\n  tollgate drill fraud-detector --env staging --yes")]
    Drill(DrillArgs),

    /// Wait until a change request is decided: what a deploy job runs before it ships.
    ///
    /// Prints each sign-off as it lands. Exit status: 0 approved, 1 rejected or changes
    /// requested, 2 usage, 3 store or server unreachable, 4 timed out.
    #[command(after_help = "Examples:
  tollgate --remote https://tollgate.internal wait CR-1042 --timeout 2h
  tollgate wait CR-1042 --timeout 30m --json")]
    Wait {
        /// The change request.
        id: String,
        /// What to wait for (only `approved` for now).
        #[arg(long = "for", default_value = "approved", value_parser = ["approved"])]
        target: String,
        /// Give up after this long: 90s, 30m, 2h, 1d.
        #[arg(long, default_value = "2h", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// Print the outcome as JSON (one object at the end).
        #[arg(long)]
        json: bool,
    },

    /// Attest a change request's approval: an in-toto Statement (subject: the artifact's
    /// sha256 from `subject.artifact_digest`; predicate: the approved revision and every
    /// sign-off's signed log entry) in a DSSE envelope signed by the team server's
    /// principal. `attest verify FILE` checks one offline against the policy's keys.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:
  tollgate --remote https://tollgate.internal attest CR-1042 > approval.intoto.json
  tollgate attest CR-1042 --server-key tollgate.server-key > approval.intoto.json
  tollgate attest verify approval.intoto.json --against team.policy.toml"
    )]
    Attest(AttestArgs),

    /// The team server's signed events: delivered, waiting, failing (on the server's
    /// machine, where the queue is kept).
    Events {
        /// Only those not yet acknowledged.
        #[arg(long)]
        failed: bool,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },

    /// List emergency exceptions with their deadlines (overdue reviews first).
    Exceptions {
        /// Include closed exceptions.
        #[arg(long)]
        all: bool,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Serve the store over HTTP for a team: CI posts CRs, reviewers connect with --remote.
    ///
    /// Every request needs a bearer token (`tollgate token add PRINCIPAL`); signatures and
    /// policy rules are re-checked before anything is appended. API: docs/openapi.json.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// PEM certificate for HTTPS (with --tls-key).
        #[arg(long, requires = "tls_key", value_name = "FILE")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for HTTPS.
        #[arg(long, requires = "tls_cert", value_name = "FILE")]
        tls_key: Option<PathBuf>,
        /// The server's own private key (no passphrase; its principal holds role
        /// `server` in the policy): signs the submissions it records for token holders.
        /// Give every replica the same file. Without it they are recorded unsigned.
        #[arg(long, value_name = "FILE", env = "TOLLGATE_SERVER_KEY")]
        server_key: Option<PathBuf>,
        /// Run the KPI guard: every 30 s, read the KPIs of each CR in canary whose reading
        /// is due (the policy's `[[kpi]]`), record it signed with --server-key, and roll a
        /// regressed canary back when the server's principal is on the on-call roster.
        #[arg(long, requires = "server_key")]
        kpi_guard: bool,
        /// Take MLflow's webhook deliveries at POST /v1/sources/mlflow/webhook, signed with
        /// the secret in FILE (the one given to `tollgate source mlflow register`); the
        /// registry is the one --source (TOLLGATE_SOURCE) names.
        #[arg(long, value_name = "FILE")]
        mlflow_webhook_secret_file: Option<PathBuf>,
        /// Send signed events to the subscribers listed in FILE (`[[subscriber]]` tables:
        /// name, url, secret, events, format = "json" | "slack"); see docs/events.md.
        #[arg(long, value_name = "FILE")]
        subscribers: Option<PathBuf>,
        /// Connection, time and rate limits.
        #[command(flatten, next_help_heading = "Limits")]
        limits: ServeLimits,
    },

    /// MLflow as a source: `tollgate source mlflow register --url URL --secret-file FILE`
    /// creates the webhook that delivers its model-version events to the team server.
    #[command(subcommand)]
    Source(SourceCommand),

    /// Print a shell completion script: `tollgate completions bash > ~/.local/share/bash-completion/completions/tollgate`
    /// (zsh: into a directory on $fpath as `_tollgate`; fish: `~/.config/fish/completions/tollgate.fish`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff): `tollgate man > ~/.local/share/man/man1/tollgate.1`.
    Man,

    /// Manage the team server's bearer tokens (in the database with --database).
    #[command(subcommand)]
    Token(TokenCommand),

    /// Move a store between databases.
    #[command(subcommand)]
    Store(StoreCommand),

    /// Read the --source (MLflow) and write every decided CR's state back to it.
    ///
    /// Reads the versions awaiting review, then, for every CR from that source with a
    /// decision, writes the latest decision and status to the version's tags and moves the
    /// serving alias for completed approvals. Safe to repeat; retries what failed before.
    Sync,

    /// Attest one automated check on a CR's current revision, as CI (a principal holding
    /// the policy's `ci` role): signed, bound to the revision's digest, and counted as
    /// evidence over whatever the CR's own `checks` say.
    Evidence {
        /// The change request id.
        id: String,
        /// The check id, as in the CR's `checks` (e.g. backward_compatibility).
        check: String,
        /// The result.
        #[arg(value_parser = ["pass", "fail", "pending"])]
        status: String,
        /// What was measured.
        #[arg(long)]
        detail: Option<String>,
        /// Link to the CI run or report.
        #[arg(long)]
        url: Option<String>,
        /// Refuse if the CR's current digest is not this (the revision CI ran against).
        #[arg(long, value_name = "DIGEST")]
        digest: Option<String>,
    },

    /// Decisions made while the team server was unreachable, waiting to be delivered.
    Outbox {
        /// Try to deliver them now.
        #[arg(long, conflicts_with = "drop")]
        flush: bool,
        /// Remove one item (by the id `tollgate outbox` lists), e.g. a stale decision
        /// after deciding anew.
        #[arg(long, value_name = "ID")]
        drop: Option<String>,
    },

    /// Every decision with its context and verification status, for leads and auditors.
    ///
    /// Filters combine; the whole audit log is verified first and a broken chain is
    /// reported at the top (and with exit status 1).
    History(HistoryArgs),

    /// Governance health: lead time by risk (median, p90), approval and rejection rates,
    /// exceptions, and low-risk changes waiting long.
    Health {
        /// Only decisions on or after this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
        /// Only decisions on or before this day.
        #[arg(long)]
        until: Option<chrono::NaiveDate>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Write an audit report for one CR or a date range into a directory: report.md,
    /// report.json, entries.jsonl, allowed_signers and verify.sh (checks it all with jq,
    /// sha256sum and ssh-keygen, no tollgate needed).
    Export {
        /// The change request to report on.
        #[arg(long, conflicts_with_all = ["since", "until"], required_unless_present = "since")]
        cr: Option<String>,
        /// First day of the period (YYYY-MM-DD, UTC).
        #[arg(long, requires = "until")]
        since: Option<chrono::NaiveDate>,
        /// Last day of the period.
        #[arg(long, requires = "since")]
        until: Option<chrono::NaiveDate>,
        /// Directory to write (created if needed; existing report files are replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },

    /// Record the post-incident review that closes an incident's exceptions (leads only).
    Review {
        /// The incident id, e.g. INC-2291.
        incident: String,
        /// What caused the incident.
        #[arg(long)]
        root_cause: String,
        /// Follow-up actions, with owners.
        #[arg(long)]
        follow_ups: String,
        /// Policy changes decided ("none" if none).
        #[arg(long, default_value = "none")]
        policy_changes: String,
    },
}

/// Filters and formats of `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only decisions by this principal.
    #[arg(long)]
    pub principal: Option<String>,
    /// Only decisions on this subject (substring).
    #[arg(long)]
    pub subject: Option<String>,
    /// Only this gate.
    #[arg(long, value_parser = parse_gate, value_name = "data|model|deployment|emergency")]
    pub gate: Option<Gate>,
    /// Only this effective risk.
    #[arg(long, value_parser = parse_risk, value_name = "low|medium|high")]
    pub risk: Option<RiskLevel>,
    /// Only this verdict.
    #[arg(long, value_parser = parse_verdict, value_name = "approve|reject|request-changes")]
    pub verdict: Option<crate::domain::decision::Verdict>,
    /// Only decisions on or after this day (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub since: Option<chrono::NaiveDate>,
    /// Only decisions on or before this day.
    #[arg(long)]
    pub until: Option<chrono::NaiveDate>,
    /// Words that must appear in the CR id, title, subject, principal or role.
    #[arg(long)]
    pub search: Option<String>,
    /// Print as JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print as CSV.
    #[arg(long)]
    pub csv: bool,
}

fn parse_verdict(s: &str) -> Result<crate::domain::decision::Verdict, NotAChoice> {
    pick(s, &crate::domain::decision::Verdict::ALL)
}

/// Arguments of `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The model / dataset / deployment name, as in its change requests.
    pub subject: String,
    /// The environment.
    #[arg(long = "env", value_name = "dev|staging|prod")]
    pub environment: String,
    /// Version to roll back to [default: the version the latest change replaced].
    #[arg(long = "to", value_name = "VERSION")]
    pub to_version: Option<String>,
    /// Version being rolled back [default: the version the latest change brought].
    #[arg(long = "from", value_name = "VERSION")]
    pub from_version: Option<String>,
    /// Incident ticket id.
    #[arg(long)]
    pub incident: String,
    /// One-line reason: what is hurting users.
    #[arg(long)]
    pub reason: String,
    /// Record the authorisation only; do not run the policy's rollback command.
    #[arg(long)]
    pub no_run: bool,
    /// Do not ask for confirmation (needed without a terminal). The exact command is
    /// printed either way.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `source` subcommands.
#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// MLflow's model registry (the one --source mlflow=URL names).
    #[command(subcommand)]
    Mlflow(MlflowCommand),
}

/// `source mlflow` subcommands.
#[derive(Debug, Subcommand)]
pub enum MlflowCommand {
    /// Create the MLflow webhook that sends new versions and tag changes to the team
    /// server's `/v1/sources/mlflow/webhook`, signed with the secret in FILE.
    #[command(after_help = "Example:
  head -c 32 /dev/urandom | base64 > mlflow-webhook.secret
  tollgate --source mlflow=http://mlflow:5000 source mlflow register \\
    --url https://tollgate.internal:8443/v1/sources/mlflow/webhook --secret-file mlflow-webhook.secret
  tollgate --source mlflow=http://mlflow:5000 serve --mlflow-webhook-secret-file mlflow-webhook.secret")]
    Register {
        /// Where MLflow delivers: the team server's webhook endpoint.
        #[arg(long)]
        url: String,
        /// The shared secret (its first line).
        #[arg(long, value_name = "FILE")]
        secret_file: PathBuf,
        /// The webhook's name in MLflow.
        #[arg(long, default_value = "tollgate")]
        name: String,
    },
}

/// Arguments of `attest`.
#[derive(Debug, Args)]
pub struct AttestArgs {
    /// `verify FILE`.
    #[command(subcommand)]
    pub command: Option<AttestCommand>,
    /// The approved change request.
    pub id: Option<String>,
    /// The server principal's key, to sign locally (without --remote the server is not
    /// asked).
    #[arg(long, value_name = "FILE", env = "TOLLGATE_SERVER_KEY")]
    pub server_key: Option<PathBuf>,
}

/// `attest` subcommands.
#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Check an attestation offline: the envelope's signature by a server principal, every
    /// sign-off's SSHSIG, the content digest, the artifact, and that the sign-offs approve
    /// it under the policy.
    Verify {
        /// The DSSE envelope (`-` for standard input).
        file: PathBuf,
        /// A policy file whose keys and rules judge it [default: the policy in force of
        /// the store].
        #[arg(long = "against", value_name = "POLICY-FILE")]
        policy_file: Option<PathBuf>,
    },
}

/// `90s`, `30m`, `2h`, `1d` (or plain seconds).
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with s, m, h or d, e.g. 30m"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        other => return Err(format!("unknown unit {other:?}: use s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// Arguments of `rollout`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// The approved change request.
    pub id: String,
    /// Which stage.
    #[arg(long, value_name = "canary|full")]
    pub stage: String,
    /// Share of traffic for a canary, in % (full is 100).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub traffic: Option<u8>,
    /// A note for the record.
    #[arg(long, default_value = "")]
    pub note: String,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Arguments of `drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The model / dataset / deployment name, as in its change requests.
    pub subject: String,
    /// A non-production environment.
    #[arg(long = "env", value_name = "dev|staging", default_value = "staging")]
    pub environment: String,
    /// Version to roll back from [default: what the subject's latest CR brings].
    #[arg(long = "from", value_name = "VERSION")]
    pub from_version: Option<String>,
    /// Version to roll back to [default: what that CR replaced].
    #[arg(long = "to", value_name = "VERSION")]
    pub to_version: Option<String>,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Arguments shared by approve, reject and request-changes.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The change request id.
    pub id: String,
    /// The role you sign for [default: your only eligible role].
    #[arg(long)]
    pub role: Option<String>,
    /// Why, in a sentence or two. Without it (and without --rationale-file) $EDITOR opens.
    #[arg(long, conflicts_with = "rationale_file")]
    pub rationale: Option<String>,
    /// Read the rationale from a file (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub rationale_file: Option<PathBuf>,
    /// Tick a manual checklist item, optionally with a note: --tick privacy="checked with DPO".
    #[arg(long = "tick", value_name = "ITEM[=NOTE]")]
    pub ticks: Vec<String>,
    /// Refuse if the CR's current content digest is not this (what you reviewed).
    #[arg(long, value_name = "DIGEST")]
    pub digest: Option<String>,
    /// Print the recorded entry as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `log` subcommands.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Write the whole log as JSON Lines, checkable with sha256sum and ssh-keygen (see docs/signing.md).
    Export {
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// What keeps hostile or broken clients from locking others out of `tollgate serve`.
#[derive(Debug, Args, Clone, Copy)]
pub struct ServeLimits {
    /// Seconds a client has to send a whole request head (line and headers).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a client has to send a whole request body.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,
    /// Seconds a connection may stay without a byte read or written.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Open connections at most; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Requests per second one token may make, sustained (429 with Retry-After beyond).
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit: u64,
    /// Requests one token may make in a burst.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_burst: u64,
}

impl ServeLimits {
    /// The server's limits these flags set.
    pub fn limits(self) -> crate::server::limits::Limits {
        use std::time::Duration;
        crate::server::limits::Limits {
            header_timeout: Duration::from_secs(self.header_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            rate_per_sec: self.rate_limit as f64,
            burst: self.rate_burst as f64,
        }
    }
}

/// `store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a store and its whole log into an empty PostgreSQL database, verbatim.
    ///
    /// Every revision and log entry keeps its hash, signature and receipt time, so
    /// `verify` on the copy passes exactly as on the original (it is run before this
    /// command reports success). The source is only read; the target must be empty (a
    /// failed copy leaves it empty). Tokens are not copied: create them anew with
    /// `tollgate --database URL token add`.
    #[command(
        after_help = "Example:\n  createdb tollgate\n  tollgate store migrate --from ~/.local/share/tollgate/tollgate.db --to postgres:///tollgate?host=/run/postgresql"
    )]
    Migrate {
        /// The SQLite store to copy.
        #[arg(long, value_name = "PATH")]
        from: PathBuf,
        /// The PostgreSQL database to copy it into (postgres://…).
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for a principal (printed once; only its hash is kept).
    Add {
        /// The principal (or a service identity such as `ci`).
        principal: String,
        /// A note saying where the token is used.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List the tokens: id, principal, label, when created (never the tokens themselves).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (from `token list`; at least 8 characters). A running
    /// server refuses it from its next request.
    Revoke {
        /// The token id, or enough of its start to name one token.
        id: String,
    },
}

/// Filters and format for `list`.
#[derive(Debug, Args, Default)]
pub struct ListArgs {
    /// Only CRs with this status.
    #[arg(long, value_parser = parse_status, value_name = "pending|approved|rejected|changes-requested")]
    pub status: Option<Status>,
    /// Only CRs at this gate.
    #[arg(long, value_parser = parse_gate, value_name = "data|model|deployment|emergency")]
    pub gate: Option<Gate>,
    /// Only CRs whose effective risk (the higher of computed and declared) is this.
    #[arg(long, value_parser = parse_risk, value_name = "low|medium|high")]
    pub risk: Option<RiskLevel>,
    /// Print as JSON (see docs/json-output.md).
    #[arg(long)]
    pub json: bool,
}

/// `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and report every problem with its key path.
    Check {
        /// The file to check [default: the store's policy, or --policy].
        file: Option<PathBuf>,
    },
    /// Print an allowed_signers file for `ssh-keygen -Y verify` from the keys of the
    /// policy in force.
    AllowedSigners,
    /// The policy in force: version, digest, the entry that adopted it, the genesis hash,
    /// principals and roles; and whether the file beside the store matches it.
    Show {
        /// Print as JSON.
        #[arg(long, conflicts_with = "text")]
        json: bool,
        /// Print the policy text in force, verbatim (e.g. to restore the file).
        #[arg(long)]
        text: bool,
    },
    /// Every adopted version with what changed from the one before.
    History {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Propose FILE as the next policy: a change request of gate `policy` (POL-N), always
    /// high risk, signed off by the roles the policy in force names ([signoffs.policy];
    /// two leads in the playbook), never by the proposer. Adopted when its sign-offs are
    /// complete.
    #[command(
        after_help = "Example:\n  tollgate policy show --text > next.toml && $EDITOR next.toml\n  tollgate policy propose next.toml --rationale \"December on-call rotation\"\n  tollgate --as sofia approve POL-2 --role lead --rationale \"roster matches the rota\""
    )]
    Propose {
        /// The proposed policy file (kept verbatim, comments included).
        file: PathBuf,
        /// Why, in a sentence or two.
        #[arg(long)]
        rationale: Option<String>,
        /// Make this a new revision of an open proposal of yours (its sign-offs start over).
        #[arg(long, value_name = "POL-N")]
        revise: Option<String>,
    },
}

/// A flag value outside its choices (clap prints it with the flag and the value).
#[derive(Debug, thiserror::Error)]
#[error("expected one of {0}")]
pub struct NotAChoice(String);

fn pick<T: Copy>(s: &str, options: &[(&str, T)]) -> Result<T, NotAChoice> {
    options
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            NotAChoice(names.join(", "))
        })
}

fn parse_status(s: &str) -> Result<Status, NotAChoice> {
    pick(s, &Status::ALL)
}

fn parse_gate(s: &str) -> Result<Gate, NotAChoice> {
    pick(s, &Gate::ALL)
}

fn parse_risk(s: &str) -> Result<RiskLevel, NotAChoice> {
    pick(s, &RiskLevel::ALL)
}
