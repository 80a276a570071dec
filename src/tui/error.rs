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
    /// A history or health computation failed (its message says how).
    #[error("{0}")]
    History(String),
}

impl TuiError {
    /// True when the team server could not be reached: nothing failed on its side, and the
    /// screen should say "offline" and keep retrying.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TuiError::Store(StoreError::Unreachable { .. }))
    }
}
