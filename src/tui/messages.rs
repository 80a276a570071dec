//! What flows between the screens and the runtime: the effects an update asks for, the
//! messages that come back, and the connection state they imply.

use super::data::{DetailData, QueueData};
use super::error::TuiError;
use super::screens::history::RecordView;
use crate::domain::policy::Policy;
use crate::workflow::{DecisionRequest, RollbackRequest};
use crossterm::event::{KeyEvent, MouseEvent};
use std::sync::Arc;

/// Severity of a status-bar message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something done.
    Info,
    /// Something refused or failed.
    Error,
}

/// What the runtime should do after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Load the queue; reply with [`Msg::Queue`].
    LoadQueue(u64),
    /// Load one CR; reply with [`Msg::Detail`].
    LoadDetail(u64, String),
    /// Sign and record; reply with [`Msg::Signed`].
    Sign(u64, DecisionRequest),
    /// Suspend the screen and edit this text in `$EDITOR`; reply with [`Msg::Edited`].
    EditRationale(String),
    /// Open a URL with the system opener.
    OpenUrl(String),
    /// Put text on the clipboard (OSC 52).
    Copy(String),
    /// Sign an emergency authorisation; reply with [`Msg::Authorised`].
    Authorise(u64, RollbackRequest),
    /// Run the policy's rollback command for an authorisation (entry hash) and record the
    /// outcome; reply with [`Msg::RollbackOutput`] lines and [`Msg::RollbackDone`].
    RunRollback(u64, RollbackRequest, String),
    /// Read the log head (the cheap "did anything change" check); reply with [`Msg::Head`].
    CheckHead(u64),
    /// Load the decision history; reply with [`Msg::History`].
    LoadHistory(u64),
    /// Verify the whole audit log; reply with [`Msg::Integrity`].
    VerifyLog(u64),
    /// Load one signed record and the revision it is bound to; reply with [`Msg::Record`].
    LoadRecord(u64, u64),
    /// Sign a post-incident review; reply with [`Msg::Reviewed`].
    Review(u64, crate::workflow::ReviewRequest),
    /// Record a rollout stage (running the policy's deployment command); reply with
    /// [`Msg::StageRecorded`].
    RecordStage(u64, crate::workflow::rollout::StageRequest),
}

/// Everything that can happen.
#[derive(Debug)]
pub enum Msg {
    /// A key press.
    Key(KeyEvent),
    /// A mouse event (when enabled).
    Mouse(MouseEvent),
    /// The terminal was resized.
    Resize(u16, u16),
    /// Animation tick.
    Tick,
    /// Queue rows, subjects and exceptions, for request `id`.
    Queue(u64, Result<QueueData, TuiError>),
    /// The queue's first page for request `id`, on screen while the rest is read.
    QueueFirst(u64, Vec<super::data::QueueRow>),
    /// One CR, for request `id`.
    Detail(u64, Result<Box<DetailData>, TuiError>),
    /// Outcome of signing: a confirmation line or the refusal.
    Signed(u64, Result<String, TuiError>),
    /// How many decisions wait in the outbox for the team server.
    Unsent(usize),
    /// Text back from `$EDITOR`.
    Edited(Result<String, crate::editor::EditorError>),
    /// Something to tell the user in the status bar.
    Notice(Level, String),
    /// Outcome of an emergency authorisation: the entry hash and whether a rollback
    /// command will run, or the refusal.
    Authorised(u64, Result<(String, bool), TuiError>),
    /// A line printed by the running rollback command.
    RollbackOutput(String),
    /// The rollback command finished and its outcome was recorded (or not).
    RollbackDone(u64, Result<String, TuiError>),
    /// A post-incident review was signed (a confirmation line) or refused.
    Reviewed(u64, Result<String, TuiError>),
    /// A rollout stage was recorded (a confirmation line) or refused.
    StageRecorded(u64, Result<String, TuiError>),
    /// The log head, for the change check.
    Head(u64, Result<crate::store::Head, TuiError>),
    /// The store announced a new log head (the live stream; no request asked for it).
    Pushed(crate::store::Head),
    /// The live stream connected (true) or was lost (false: the periodic check takes
    /// over until it is back).
    Live(bool),
    /// The decision history.
    History(u64, Result<crate::history::History, TuiError>),
    /// Whole-log verification finished: the report and the milliseconds it took.
    Integrity(
        u64,
        Result<(crate::audit::log::VerifyReport, u128), TuiError>,
    ),
    /// A signed record for the History screen.
    Record(u64, Result<RecordView, TuiError>),
    /// A new policy came into force: the policy, its version and the entry adopting it.
    Policy(Arc<Policy>, u32, u64),
}

/// Where the screens' data comes from, for the status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// A store file on this machine.
    Local,
    /// A PostgreSQL database, used directly.
    Database,
    /// The team server, answering.
    Remote,
    /// The team server stopped answering; decisions go to the outbox and reads retry.
    Offline,
}

impl Connection {
    /// The state after the server answered.
    pub fn answered(self) -> Connection {
        match self {
            Connection::Offline => Connection::Remote,
            other => other,
        }
    }
}

impl std::fmt::Display for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Connection::Local => "local",
            Connection::Database => "database",
            Connection::Remote => "remote",
            Connection::Offline => "offline — retrying",
        })
    }
}
