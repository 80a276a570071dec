//! The reviewer's terminal UI: queue → detail → decide → confirm, over the same core as
//! the CLI.
//!
//! Layout of this module: [`app`] holds state and `update` (pure, never awaits);
//! [`views`] draws it; [`data`] builds what the screens show; [`keymap`], [`theme`] and
//! [`settings`] make it the user's own. This file is the runtime: terminal set-up and
//! restoration (also on panic and signals), the input thread, and the background tasks
//! that answer effects with messages.

pub mod app;
mod contexts;
pub mod data;
pub mod error;
mod flows;
pub mod keymap;
pub mod messages;
mod replies;
pub mod requests;
pub mod screens;
pub mod settings;
pub mod theme;
pub mod views;

use crate::config::Paths;
use crate::domain::policy_book::PolicyBook;
use crate::identity::{Identity, KeyChoice, identify_in_force};
use crate::store::Store;
use crate::store::local::LocalStore;
use app::{App, Effect, Msg, Signer};
use base64ct::Encoding as _;
use chrono::Utc;
use crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::{Stdout, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What the TUI needs to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// Store and policy.
    pub paths: Paths,
    /// Which key signs.
    pub keys: KeyChoice,
    /// The config file (theme, keys, mouse).
    pub config: Option<PathBuf>,
    /// The policy history of the store, as the CLI read it.
    pub book: PolicyBook,
    /// Something to say in the status bar at start (e.g. the policy file differs from the
    /// policy in force).
    pub notice: Option<String>,
}

/// Everything background work shares: the store, the policy and who signs.
pub struct Shared {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The policy history read from the store's log; its latest version is in force.
    book: std::sync::RwLock<Arc<PolicyBook>>,
    /// The policy file beside a local store, rewritten when this TUI completes a policy
    /// change (`None` with a team server, which rewrites its own).
    policy_file: Option<PathBuf>,
    /// The signing identity, if the key maps to a principal.
    pub identity: Option<Arc<Identity>>,
    /// With a team server: decisions waiting to be delivered.
    pub outbox: Option<crate::outbox::Outbox>,
    /// The team server's URL (recorded with each queued decision); empty when local.
    pub server: String,
    /// With an MLflow source: where decisions are written back.
    pub mlflow: Option<(
        crate::sources::mlflow::Client,
        crate::sources::mlflow::Convention,
    )>,
}

/// The policy that came into force since the book was last read (someone completed a
/// policy change), as news for the screen.
fn policy_news(shared: &Shared) -> Option<Msg> {
    let book = shared.refresh_book()?;
    let v = book.current();
    Some(Msg::Policy(v.policy.clone(), v.version, v.seq))
}

/// Delivers what the outbox holds (if there is one); returns how many are still unsent.
fn flush_outbox(shared: &Shared) -> usize {
    let (Some(outbox), Ok(who)) = (&shared.outbox, shared.signer()) else {
        return shared.outbox.as_ref().map_or(0, |o| o.pending().len());
    };
    let book = shared.book();
    let waiting: Vec<_> = outbox
        .pending()
        .into_iter()
        .filter(|p| p.principal == who.principal.id && p.stale.is_none())
        .collect();
    // One quick probe; the items are tried only when the server answers.
    if !waiting.is_empty() && shared.store.reachable() {
        for mut p in waiting {
            let _ = outbox.deliver(shared.store.as_ref(), &book, who, &mut p);
        }
    }
    outbox.pending().len()
}

impl Shared {
    /// What background work shares; `outbox` is the team server's, with its URL.
    pub fn new(
        store: Arc<dyn Store>,
        book: PolicyBook,
        identity: Option<Arc<Identity>>,
        outbox: Option<(crate::outbox::Outbox, String)>,
        mlflow: Option<(
            crate::sources::mlflow::Client,
            crate::sources::mlflow::Convention,
        )>,
    ) -> Shared {
        Shared {
            store,
            book: std::sync::RwLock::new(Arc::new(book)),
            policy_file: None,
            identity,
            server: outbox
                .as_ref()
                .map(|(_, url)| url.clone())
                .unwrap_or_default(),
            outbox: outbox.map(|(o, _)| o),
            mlflow,
        }
    }

    /// Keeps the policy file beside a local store in step with the policy in force.
    pub fn with_policy_file(mut self, path: PathBuf) -> Shared {
        self.policy_file = Some(path);
        self
    }

    /// The policy history as last read (its latest version is in force).
    pub fn book(&self) -> Arc<PolicyBook> {
        match self.book.read() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the adoptions appended since the book was read; returns the new book when
    /// a new policy came into force (someone completed a policy change).
    pub fn refresh_book(&self) -> Option<Arc<PolicyBook>> {
        let book = self.book();
        let after = if book.is_provisional() {
            0
        } else {
            book.current().seq
        };
        let newer = self.store.policy_entries(after).ok()?;
        if newer.is_empty() {
            return None;
        }
        let fresh = Arc::new(
            crate::audit::policy_log::extend_book(Some((*book).clone()), &newer)
                .ok()
                .flatten()?,
        );
        match self.book.write() {
            Ok(mut b) => *b = fresh.clone(),
            Err(poisoned) => *poisoned.into_inner() = fresh.clone(),
        }
        Some(fresh)
    }

    /// The signing identity, or why there is none.
    fn signer(&self) -> Result<&Identity, error::TuiError> {
        self.identity.as_deref().ok_or(error::TuiError::ReadOnly)
    }
}

/// One signed record with its signature status and the revision it is bound to.
fn load_record(shared: &Shared, seq: u64) -> Result<app::RecordView, error::TuiError> {
    let entry = shared
        .store
        .log_entries(seq.saturating_sub(1), 1)?
        .into_iter()
        .next()
        .filter(|e| e.seq == seq)
        .ok_or(error::TuiError::MissingEntry(seq))?;
    let body: serde_json::Value =
        serde_json::from_str(&entry.body).map_err(|e| error::TuiError::BadEntry {
            seq,
            detail: e.to_string(),
        })?;
    let book = shared.book();
    let keyrings = crate::audit::policy_log::Keyrings::new(&book);
    let signature = match (&entry.principal, &entry.signature) {
        (Some(who), Some(_)) => keyrings
            .verify(&entry)
            .map(|fp| {
                format!(
                    "valid SSHSIG by {who} ({fp}) under policy version {}",
                    book.in_force_at(entry.seq).version
                )
            })
            .map_err(data::BadSignature::from),
        _ => Err(data::BadSignature::Unsigned),
    };
    let revision = match (body["cr_id"].as_str(), body["cr_revision"].as_u64()) {
        (Some(cr), Some(n)) => {
            let rev = shared.store.revision(cr, n as u32)?;
            let current = shared.store.get(cr)?.map(|c| c.current.revision);
            match rev {
                Some(r) => format!(
                    "{} revision {} — {} — {}{}",
                    r.cr.id,
                    r.revision,
                    r.cr.title,
                    r.digest,
                    match current {
                        Some(c) if c == r.revision => " (current)".to_string(),
                        Some(c) => format!(" (superseded: the current revision is {c})"),
                        None => String::new(),
                    }
                ),
                None => format!("{cr} revision {n} is not in the store"),
            }
        }
        _ => String::new(),
    };
    Ok(app::RecordView {
        seq,
        body: serde_json::to_string_pretty(&body).unwrap_or_else(|_| entry.body.clone()),
        signature,
        revision,
    })
}

/// Runs the policy's rollback command for an authorised request, passing each output line
/// to `on_line`, records the signed outcome, and returns the reply.
pub fn run_rollback(
    shared: &Shared,
    id: u64,
    request: &crate::workflow::RollbackRequest,
    authorisation: &str,
    now: chrono::DateTime<Utc>,
    on_line: &mut dyn FnMut(String),
) -> Msg {
    let who = match shared.signer() {
        Ok(who) => who,
        Err(e) => return Msg::RollbackDone(id, Err(e)),
    };
    let book = shared.book();
    let Some(invocation) = crate::workflow::rollback_invocation(book.policy(), request) else {
        return Msg::RollbackDone(id, Ok("no rollback command in the policy".into()));
    };
    on_line(format!("$ {}", invocation.0.join(" ")));
    let ran = crate::workflow::run_rollback(
        shared.store.as_ref(),
        &book,
        who,
        request,
        invocation,
        authorisation,
        now,
        &mut |line| on_line(line.to_string()),
    );
    let (outcome, timeout, recorded) = (ran.outcome, ran.timeout, ran.recorded);
    let result = match (recorded, outcome.exit_status, outcome.timed_out) {
        (Err(e), _, _) => Err(error::TuiError::NotRecorded(e)),
        (Ok(entry), Some(0), false) => Ok(format!(
            "rollback finished: exit 0 in {:.1} s — recorded as log entry {}",
            outcome.duration.as_secs_f64(),
            entry.seq
        )),
        (Ok(entry), status, timed_out) => Err(error::TuiError::RollbackFailed(format!(
            "rollback command {} — recorded as log entry {}; the operator must complete the rollback",
            if timed_out {
                format!("timed out after {} s", timeout.as_secs())
            } else {
                format!(
                    "failed with {}",
                    status.map_or("no exit status".to_string(), |c| format!("exit {c}"))
                )
            },
            entry.seq
        ))),
    };
    Msg::RollbackDone(id, result)
}

/// What writing a decision back to MLflow did, as a suffix for the status message.
fn mlflow_note(
    pushed: Result<Option<crate::sources::mlflow::Pushed>, crate::sources::mlflow::PushError>,
    conv: &crate::sources::mlflow::Convention,
) -> String {
    use crate::sources::mlflow::Pushed;
    match pushed {
        Ok(None) | Ok(Some(Pushed::Unchanged)) => String::new(),
        Ok(Some(Pushed::Written { status, alias })) => {
            let moved = alias
                .map(|m| format!(", @{} → v{}", m.alias, crate::domain::text::sanitize(&m.to)))
                .unwrap_or_default();
            format!("; MLflow {}={status}{moved}", conv.status_tag)
        }
        Err(e) => format!(
            "; ⚠ not written to MLflow ({}); `tollgate sync` retries",
            crate::domain::text::sanitize(&e.to_string())
        ),
    }
}

/// Does the store work behind a loading, signing or rollback effect and returns the reply
/// messages. Blocking: the runtime calls it on a blocking thread; tests call it directly.
/// Returns nothing for effects that are not store work.
pub fn answer(
    effect: &Effect,
    shared: &Shared,
    me: Option<&crate::domain::policy::Principal>,
    now: chrono::DateTime<Utc>,
) -> Vec<Msg> {
    let mut early = Vec::new();
    let mut rest = answer_with(effect, shared, me, now, &mut |m| early.push(m));
    early.append(&mut rest);
    early
}

/// [`answer`], handing `early` what can be shown before the work is done (the queue's
/// first page while the rest is read).
pub fn answer_with(
    effect: &Effect,
    shared: &Shared,
    me: Option<&crate::domain::policy::Principal>,
    now: chrono::DateTime<Utc>,
    early: &mut dyn FnMut(Msg),
) -> Vec<Msg> {
    let one = match effect {
        Effect::Authorise(id, request) => {
            let book = shared.book();
            let result = shared.signer().and_then(|who| {
                crate::workflow::authorise_rollback(shared.store.as_ref(), &book, who, request, now)
                    .map(|entry| {
                        (
                            entry.hash,
                            crate::workflow::rollback_invocation(book.policy(), request).is_some(),
                        )
                    })
                    .map_err(error::TuiError::from)
            });
            // With an MLflow source, the serving alias goes back at once.
            if let (Ok(_), Some((client, conv))) = (&result, &shared.mlflow) {
                let line = match crate::sources::mlflow::move_alias(
                    client,
                    &request.subject,
                    &conv.alias,
                    &request.to_version,
                ) {
                    Ok(Some(m)) => format!("MLflow: {}", m.describe(&request.subject)),
                    Ok(None) => {
                        format!("MLflow: @{} already at v{}", conv.alias, request.to_version)
                    }
                    Err(e) => format!("MLflow: alias NOT moved: {e}"),
                };
                return vec![Msg::RollbackOutput(line), Msg::Authorised(*id, result)];
            }
            Some(Msg::Authorised(*id, result))
        }
        Effect::RunRollback(id, request, authorisation) => {
            let mut lines = Vec::new();
            let done = run_rollback(shared, *id, request, authorisation, now, &mut |l| {
                lines.push(Msg::RollbackOutput(l))
            });
            lines.push(done);
            return lines;
        }
        Effect::LoadQueue(id) => {
            // A policy adopted meanwhile (by anyone) applies from now on.
            let mut msgs: Vec<Msg> = policy_news(shared).into_iter().collect();
            let book = shared.book();
            // The unsent count is news even when the queue cannot be loaded (offline).
            let unsent = flush_outbox(shared);
            msgs.push(Msg::Unsent(unsent));
            let loaded = data::load_queue(shared.store.as_ref(), &book, me, now, &mut |first| {
                early(Msg::QueueFirst(*id, first))
            });
            msgs.push(Msg::Queue(*id, loaded));
            return msgs;
        }
        Effect::CheckHead(id) => Some(Msg::Head(
            *id,
            shared.store.recorded_head().map_err(error::TuiError::from),
        )),
        Effect::LoadDetail(id, cr) => Some(Msg::Detail(
            *id,
            data::load_detail(shared.store.as_ref(), &shared.book(), cr).map(Box::new),
        )),
        Effect::Sign(id, request) => {
            let book = shared.book();
            let route = crate::workflow::Route {
                outbox: shared.outbox.as_ref().map(|o| (o, shared.server.as_str())),
                source: shared.mlflow.as_ref().map(|(c, conv)| (c, conv)),
            };
            let recorded = shared.signer().and_then(|who| {
                crate::workflow::record_decision(
                    shared.store.as_ref(),
                    &book,
                    who,
                    request,
                    route,
                    now,
                )
                .map_err(error::TuiError::from)
            });
            let mut adopted = false;
            let result = recorded.map(|recorded| match recorded {
                crate::workflow::Recorded::Queued(_) => format!(
                    "UNSENT: {} {} kept in the outbox — delivered when the server is back",
                    request.verdict, request.cr_id
                ),
                crate::workflow::Recorded::Signed {
                    appended,
                    written_back,
                } => {
                    let mut signed = format!(
                        "signed: {} {} as {} — log entry {}",
                        request.verdict, request.cr_id, request.role, appended.decision.seq
                    );
                    if let Some(a) = &appended.adoption {
                        signed.push_str(&format!(
                            "; {} adopted at entry {}: the new policy is in force",
                            request.cr_id, a.seq
                        ));
                        if let Some(file) = &shared.policy_file
                            && let Err(e) = crate::workflow::write_adopted_policy(file, a)
                        {
                            signed.push_str(&format!("; ⚠ {} not rewritten: {e}", file.display()));
                        }
                        adopted = true;
                    }
                    match (written_back, &shared.mlflow) {
                        (Some(pushed), Some((_, conv))) => {
                            format!("{signed}{}", mlflow_note(pushed, conv))
                        }
                        _ => signed,
                    }
                }
            });
            let mut msgs: Vec<Msg> = Vec::new();
            if adopted {
                msgs.extend(policy_news(shared));
            }
            if let Some(outbox) = &shared.outbox {
                msgs.push(Msg::Unsent(outbox.pending().len()));
            }
            msgs.push(Msg::Signed(*id, result));
            return msgs;
        }
        Effect::LoadHistory(id) => {
            let loaded = crate::history::load(shared.store.as_ref(), &shared.book(), now)
                .map_err(error::TuiError::from);
            data::give_back_freed_memory();
            Some(Msg::History(*id, loaded))
        }
        Effect::VerifyLog(id) => {
            let started = std::time::Instant::now();
            let book = shared.book();
            let opts = crate::store::VerifyOptions::for_book(&book);
            let result = crate::store::verify_log(shared.store.as_ref(), &opts)
                .map(|report| (report, started.elapsed().as_millis()))
                .map_err(error::TuiError::from);
            Some(Msg::Integrity(*id, result))
        }
        Effect::LoadRecord(id, seq) => Some(Msg::Record(*id, load_record(shared, *seq))),
        Effect::Review(id, request) => {
            let book = shared.book();
            let result = shared.signer().and_then(|who| {
                crate::workflow::record_review(shared.store.as_ref(), &book, who, request, now)
                    .map(|entry| {
                        format!(
                            "post-incident review of {} recorded by {} (log entry {}); its exceptions are closed",
                            crate::domain::text::sanitize(&request.incident),
                            who.principal.id,
                            entry.seq
                        )
                    })
                    .map_err(error::TuiError::from)
            });
            Some(Msg::Reviewed(*id, result))
        }
        Effect::RecordStage(id, request) => {
            let book = shared.book();
            let result = shared.signer().and_then(|who| {
                crate::workflow::rollout::record_stage(
                    shared.store.as_ref(),
                    &book,
                    who,
                    request,
                    now,
                    &mut |_| {},
                )
                .map(|ran| {
                    let failed = ran
                        .deploy
                        .as_ref()
                        .is_some_and(|(_, o)| o.exit_status != Some(0) || o.timed_out);
                    if failed {
                        format!(
                            "the deployment command FAILED: the {} attempt of {} is recorded (log entry {}) and did not take place",
                            request.stage.as_str(),
                            crate::domain::text::sanitize(&request.cr_id),
                            ran.entry.seq
                        )
                    } else {
                        format!(
                            "{} {} recorded by {} (log entry {})",
                            crate::domain::text::sanitize(&request.cr_id),
                            request.stage.as_str(),
                            who.principal.id,
                            ran.entry.seq
                        )
                    }
                })
                .map_err(error::TuiError::from)
            });
            Some(Msg::StageRecorded(*id, result))
        }
        Effect::EditRationale(_) | Effect::OpenUrl(_) | Effect::Copy(_) => None,
    };
    one.into_iter().collect()
}

/// Performs store effects synchronously until none are left, feeding each reply back into
/// the app: the runtime's work without the threads, for scripted sessions (tests,
/// screenshots, benchmarks).
pub fn settle(app: &mut App, shared: &Shared, effects: Vec<Effect>, now: chrono::DateTime<Utc>) {
    let mut pending = effects;
    while let Some(effect) = pending.pop() {
        let me = app.me().cloned();
        for msg in answer(&effect, shared, me.as_ref(), now) {
            pending.extend(app.update(msg));
        }
    }
}

/// `~/x` for paths under the home directory, for the status bar.
fn short_path(p: &std::path::Path) -> String {
    let s = p.display().to_string();
    match std::env::var("HOME") {
        Ok(home) if !home.is_empty() && s.starts_with(&home) => format!("~{}", &s[home.len()..]),
        _ => s,
    }
}

/// How the TUI ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The user quit.
    Quit,
    /// A signal ended it (SIGTERM, SIGHUP); the terminal was restored first. The process
    /// should exit with 128 + the signal, as one ended by it would.
    Signal(i32),
}

/// Starts the TUI; returns when the user quits. Errors before the screen opens (bad
/// config, missing store) are returned as messages for the CLI to print.
pub fn run(opts: Options) -> Result<Ended, error::StartError> {
    let settings = settings::load(
        opts.config
            .clone()
            .or_else(settings::default_path)
            .as_deref(),
        settings::no_color(),
    )?;
    let (store, label, outbox): (Arc<dyn Store>, String, _) = match &opts.paths.remote {
        Some(r) => {
            let remote = crate::store::remote::RemoteStore::connect(&r.url, &r.token)?;
            let outbox = crate::outbox::Outbox::for_server(&opts.paths.store, &r.url);
            (
                Arc::new(remote),
                r.url.clone(),
                Some((outbox, r.url.clone())),
            )
        }
        None => match &opts.paths.database {
            Some(url) => {
                let db = crate::store::pg::PgStore::open(url)?;
                let label = db.short_label();
                (Arc::new(db), label, None)
            }
            None => {
                let store = LocalStore::open(&opts.paths.store)?;
                (Arc::new(store), short_path(&opts.paths.store), None)
            }
        },
    };
    let book = opts.book;
    // Identify before the screen opens: a passphrase prompt needs a normal terminal.
    let (identity, signer) =
        match identify_in_force(&opts.keys, &opts.paths.store, &book, &opts.paths.policy) {
            Ok(id) => {
                let signer = Signer::Principal {
                    principal: id.principal.clone(),
                    fingerprint: id.signer.fingerprint().to_string(),
                };
                (Some(Arc::new(id)), signer)
            }
            Err(e) => {
                let demo = crate::config::demo_keys_dir(&opts.paths.store);
                let hint = if demo.is_dir() {
                    " (demo store: start with --as devi, or another demo principal)"
                } else {
                    ""
                };
                (None, Signer::ReadOnly(format!("{e}{hint}")))
            }
        };
    let mlflow = match &opts.paths.mlflow {
        Some(m) => Some((
            crate::sources::mlflow::Client::new(&m.url)?,
            m.convention.clone(),
        )),
        None => None,
    };
    let policy = book.current().policy.clone();
    let mut shared = Shared::new(store, book, identity, outbox, mlflow);
    if opts.paths.remote.is_none() {
        shared = shared.with_policy_file(opts.paths.policy.clone());
    }
    let shared = Arc::new(shared);
    let mut app = App::new(settings, policy, signer, label, crate::config::now()?);
    if shared.outbox.is_some() {
        app.connection = app::Connection::Remote;
    } else if opts.paths.database.is_some() {
        app.connection = app::Connection::Database;
    }
    if let Some(notice) = opts.notice {
        app.update(Msg::Notice(app::Level::Error, notice));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(error::StartError::io("start the async runtime"))?;
    runtime.block_on(event_loop(app, shared))
}

/// Puts the terminal back: raw mode off, main screen, cursor shown, mouse off.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

fn enter_terminal(mouse: bool) -> std::io::Result<()> {
    enable_raw_mode()?;
    execute!(std::io::stdout(), EnterAlternateScreen)?;
    if mouse {
        execute!(std::io::stdout(), EnableMouseCapture)?;
    }
    Ok(())
}

/// Control messages for the input thread.
enum InputControl {
    /// Stop reading until `Resume` (an editor owns the terminal); ack on the channel.
    Pause(std_mpsc::Sender<()>),
    Resume,
    Stop,
}

/// Reads terminal events on a thread of its own, pausable so `$EDITOR` gets every key.
fn spawn_input(tx: mpsc::UnboundedSender<Msg>) -> std_mpsc::Sender<InputControl> {
    let (ctl_tx, ctl_rx) = std_mpsc::channel::<InputControl>();
    std::thread::spawn(move || {
        loop {
            match ctl_rx.try_recv() {
                Ok(InputControl::Pause(ack)) => {
                    let _ = ack.send(());
                    // Wait for Resume (or Stop) without touching the terminal.
                    loop {
                        match ctl_rx.recv() {
                            Ok(InputControl::Resume) => break,
                            Ok(InputControl::Pause(ack)) => {
                                let _ = ack.send(());
                            }
                            Ok(InputControl::Stop) | Err(_) => return,
                        }
                    }
                }
                Ok(InputControl::Resume) => {}
                Ok(InputControl::Stop) | Err(std_mpsc::TryRecvError::Disconnected) => return,
                Err(std_mpsc::TryRecvError::Empty) => {}
            }
            match event::poll(Duration::from_millis(50)) {
                Ok(true) => {
                    let msg = match event::read() {
                        Ok(Event::Key(k)) => Msg::Key(k),
                        Ok(Event::Mouse(m)) => Msg::Mouse(m),
                        Ok(Event::Resize(w, h)) => Msg::Resize(w, h),
                        Ok(_) => continue,
                        Err(_) => return,
                    };
                    if tx.send(msg).is_err() {
                        return;
                    }
                }
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
    ctl_tx
}

/// How long the live stream waits between attempts to connect, at most.
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Listens to the store for other people's changes on a thread of its own: each new head
/// is a [`Msg::Pushed`]; [`Msg::Live`] says whether the stream is connected. A store that
/// cannot announce changes ends the thread (the periodic check does the work); a lost
/// stream is connected again with growing pauses, while the periodic check covers.
fn spawn_watch(shared: Arc<Shared>, tx: mpsc::UnboundedSender<Msg>) {
    let _ = std::thread::Builder::new()
        .name("tollgate-watch".into())
        .spawn(move || {
            let mut pause = Duration::from_secs(1);
            loop {
                match shared.store.head_listener() {
                    Ok(None) => return,
                    Ok(Some(mut listener)) => {
                        pause = Duration::from_secs(1);
                        if tx.send(Msg::Live(true)).is_err() {
                            return;
                        }
                        loop {
                            match listener.wait(Duration::from_secs(60)) {
                                Ok(Some(head)) => {
                                    if tx.send(Msg::Pushed(head)).is_err() {
                                        return;
                                    }
                                }
                                Ok(None) => {
                                    if tx.is_closed() {
                                        return;
                                    }
                                }
                                Err(_) => break,
                            }
                        }
                        if tx.send(Msg::Live(false)).is_err() {
                            return;
                        }
                    }
                    Err(_) => {}
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(WATCH_BACKOFF_MAX);
            }
        });
}

async fn event_loop(mut app: App, shared: Arc<Shared>) -> Result<Ended, error::StartError> {
    let mouse = app.settings.mouse;
    enter_terminal(mouse).map_err(error::StartError::io("set up the terminal"))?;
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous_hook(info);
    }));
    let result = run_loop(&mut app, shared, mouse).await;
    restore_terminal();
    let _ = std::panic::take_hook();
    result
}

async fn run_loop(
    app: &mut App,
    shared: Arc<Shared>,
    mouse: bool,
) -> Result<Ended, error::StartError> {
    let backend = CrosstermBackend::new(std::io::stdout());
    let mut terminal =
        Terminal::new(backend).map_err(error::StartError::io("open the terminal"))?;
    terminal
        .clear()
        .map_err(error::StartError::io("clear the terminal"))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let input = spawn_input(tx.clone());
    let size = terminal
        .size()
        .map_err(error::StartError::io("read the terminal size"))?;
    app.update(Msg::Resize(size.width, size.height));
    let first = app.load_queue();
    perform(first, app, &shared, &tx, &mut terminal, &input, mouse);
    spawn_watch(shared.clone(), tx.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(error::StartError::io("watch for SIGTERM"))?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(error::StartError::io("watch for SIGHUP"))?;
    let mut ended = Ended::Quit;
    loop {
        terminal
            .draw(|f| views::draw(f, app))
            .map_err(error::StartError::io("draw"))?;
        let msg = tokio::select! {
            Some(m) = rx.recv() => m,
            _ = tick.tick() => Msg::Tick,
            _ = terminate.recv() => {
                ended = Ended::Signal(libc::SIGTERM);
                break;
            }
            _ = hangup.recv() => {
                ended = Ended::Signal(libc::SIGHUP);
                break;
            }
        };
        // Debug builds only: F12 panics when TOLLGATE_DEBUG_PANIC is set, so the end-to-end
        // tests can prove a panic mid-session leaves a usable terminal (the hook restores it).
        #[cfg(debug_assertions)]
        if let Msg::Key(k) = &msg
            && k.code == crossterm::event::KeyCode::F(12)
            && std::env::var_os("TOLLGATE_DEBUG_PANIC").is_some()
        {
            panic!("TOLLGATE_DEBUG_PANIC is set and F12 was pressed");
        }
        app.now = crate::config::now().unwrap_or_else(|_| Utc::now());
        for effect in app.update(msg) {
            perform(effect, app, &shared, &tx, &mut terminal, &input, mouse);
        }
        if app.quit {
            break;
        }
    }
    let _ = input.send(InputControl::Stop);
    Ok(ended)
}

/// Carries out one effect; slow ones run on blocking threads and answer with a message.
fn perform(
    effect: Effect,
    app: &mut App,
    shared: &Arc<Shared>,
    tx: &mpsc::UnboundedSender<Msg>,
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    input: &std_mpsc::Sender<InputControl>,
    mouse: bool,
) {
    match effect {
        Effect::RunRollback(id, request, authorisation) => {
            // Streams: each output line reaches the screen as it is printed.
            let (shared, tx) = (shared.clone(), tx.clone());
            tokio::task::spawn_blocking(move || {
                let line_tx = tx.clone();
                let now = crate::config::now().unwrap_or_else(|_| Utc::now());
                let done = run_rollback(&shared, id, &request, &authorisation, now, &mut |l| {
                    let _ = line_tx.send(Msg::RollbackOutput(l));
                });
                let _ = tx.send(done);
            });
        }
        Effect::LoadQueue(_)
        | Effect::LoadDetail(..)
        | Effect::Sign(..)
        | Effect::Authorise(..)
        | Effect::LoadHistory(_)
        | Effect::VerifyLog(_)
        | Effect::CheckHead(_)
        | Effect::LoadRecord(..)
        | Effect::Review(..)
        | Effect::RecordStage(..) => {
            let (shared, tx) = (shared.clone(), tx.clone());
            let me = app.me().cloned();
            tokio::task::spawn_blocking(move || {
                let now = crate::config::now().unwrap_or_else(|_| Utc::now());
                let early_tx = tx.clone();
                let replies = answer_with(&effect, &shared, me.as_ref(), now, &mut |m| {
                    let _ = early_tx.send(m);
                });
                for msg in replies {
                    let _ = tx.send(msg);
                }
            });
        }
        Effect::EditRationale(text) => {
            let what = app
                .decide
                .as_ref()
                .map(|f| format!("{} {} as {}", f.verdict, f.cr_id, f.role()))
                .unwrap_or_default();
            let (ack_tx, ack_rx) = std_mpsc::channel();
            let _ = input.send(InputControl::Pause(ack_tx));
            let _ = ack_rx.recv_timeout(Duration::from_secs(1));
            restore_terminal();
            let edited = crate::editor::edit_rationale(&text, &what);
            let _ = enter_terminal(mouse);
            let _ = terminal.clear();
            let _ = input.send(InputControl::Resume);
            let _ = tx.send(Msg::Edited(edited));
        }
        Effect::OpenUrl(url) => {
            let opener = if cfg!(target_os = "macos") {
                "open"
            } else {
                "xdg-open"
            };
            let spawned = std::process::Command::new(opener)
                .arg(&url)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            if let Err(e) = spawned {
                let _ = tx.send(Msg::Notice(
                    app::Level::Error,
                    format!("cannot run {opener}: {e}; copy the link with y instead"),
                ));
            }
        }
        Effect::Copy(text) => {
            // OSC 52: the terminal (also over ssh and tmux) puts it on the clipboard.
            let encoded = base64ct::Base64::encode_string(text.as_bytes());
            let mut out = std::io::stdout();
            let _ = write!(out, "\u{1b}]52;c;{encoded}\u{7}");
            let _ = out.flush();
        }
    }
}
