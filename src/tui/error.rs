//! Why a background load or action failed, typed so the screens can tell "the server is
//! unreachable" (go offline, keep working) from every other failure without reading the
//! message's text.

use crate::store::StoreError;

/// A failure behind one of the TUI's background effects.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// The store (local file or team server) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The CR was removed or never existed.
    #[error("{0} is no longer in the store")]
    Gone(String),
    /// A log entry the screen asked for is not in the log.
    #[error("log entry {0} is missing")]
    MissingEntry(u64),
    /// A stored entry could not be read.
    #[error("entry {seq}: {detail}")]
    BadEntry {
        /// Its position.
        seq: u64,
        /// What is wrong with it.
        detail: String,
    },
    /// Verifying the log could not run to the end.
    #[error(transparent)]
    Verify(#[from] crate::store::VerifyError),
    /// There is no signing key: the session is read-only.
    #[error("read-only: no signing key")]
    ReadOnly,
    /// Recording a decision failed or was refused.
    #[error(transparent)]
    Record(#[from] crate::workflow::RecordError),
    /// An emergency entry was refused or could not be appended.
    #[error(transparent)]
    Decide(#[from] crate::store::DecideError),
    /// The rollback command ran but its outcome could not be recorded.
    #[error("the outcome could not be recorded: {0}")]
    NotRecorded(#[source] crate::store::DecideError),
    /// The rollback command failed or timed out (recorded; what happened).
    #[error("{0}")]
    RollbackFailed(String),
    /// The external editor could not be used.
    #[error(transparent)]
    Editor(#[from] crate::editor::EditorError),
}

impl TuiError {
    /// True when the team server could not be reached: nothing failed on its side, and the
    /// screen should say "offline" and keep retrying.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TuiError::Store(StoreError::Unreachable { .. }))
    }
}

/// Why the TUI could not start (or had to stop): told on the normal terminal.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file or a theme.
    #[error(transparent)]
    Settings(#[from] crate::tui::settings::SettingsError),
    /// The store could not be opened or reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The MLflow source is misconfigured.
    #[error(transparent)]
    Mlflow(#[from] crate::sources::mlflow::MlflowError),
    /// `TOLLGATE_NOW` is not a time.
    #[error(transparent)]
    Clock(#[from] crate::config::ClockError),
    /// The terminal, the runtime or a signal handler failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl StartError {
    /// For `map_err`: an I/O failure while doing `what`.
    pub fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> StartError {
        move |source| StartError::Io { what, source }
    }
}
