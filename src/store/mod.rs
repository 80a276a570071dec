//! Persistence behind one trait, so the CLI, the TUI and the server work the same over the
//! embedded SQLite store or (later) a remote team server.

pub mod local;
mod migrations;

use crate::domain::change_request::{ChangeRequest, DocumentError, from_value};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;

/// A validated CR document ready to be stored.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The typed view (its id decides where the revision goes).
    pub cr: ChangeRequest,
    /// The whole document, unknown fields included.
    pub document: Value,
}

/// One stored revision of a CR.
#[derive(Debug, Clone)]
pub struct StoredRevision {
    /// Typed view of the stored document.
    pub cr: ChangeRequest,
    /// The stored document (canonical form), unknown fields included.
    pub document: Value,
    /// 1 for the first submission, +1 per content change.
    pub revision: u32,
    /// `sha256:` digest of the canonical document; decisions are bound to it.
    pub digest: String,
    /// When this revision was stored.
    pub submitted_at: DateTime<Utc>,
}

/// A CR's current revision plus how many revisions it has had.
#[derive(Debug, Clone)]
pub struct StoredCr {
    /// The revision reviewers see and decide on.
    pub current: StoredRevision,
    /// Number of revisions stored (the current one included).
    pub revision_count: u32,
    /// When the first revision was stored.
    pub first_submitted_at: DateTime<Utc>,
}

/// Metadata of one revision, for history listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionInfo {
    /// Revision number.
    pub revision: u32,
    /// Content digest.
    pub digest: String,
    /// When it was stored.
    pub submitted_at: DateTime<Utc>,
}

/// What a submission did to one CR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum SubmitOutcome {
    /// A CR id seen for the first time.
    Created {
        /// CR id.
        id: String,
        /// Always 1.
        revision: u32,
        /// Content digest.
        digest: String,
    },
    /// Changed content for a known id: a new revision; earlier sign-offs become stale.
    Revised {
        /// CR id.
        id: String,
        /// The new revision number.
        revision: u32,
        /// Content digest of the new revision.
        digest: String,
        /// Digest of the revision it replaces.
        previous_digest: String,
    },
    /// Identical content re-submitted: nothing stored.
    Unchanged {
        /// CR id.
        id: String,
        /// The current revision, still current.
        revision: u32,
        /// Its digest.
        digest: String,
    },
}

/// Why a store operation failed, phrased for the person at the keyboard.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No store at the given path.
    #[error(
        "no tollgate store at {path}; create one with `tollgate init` (or `tollgate demo` for sample data), or point --store / TOLLGATE_STORE at an existing one"
    )]
    NotInitialised {
        /// Where one was expected.
        path: PathBuf,
    },
    /// The store was written by a newer tollgate.
    #[error(
        "the store at {path} has schema version {found}, newer than this tollgate understands ({supported}); upgrade tollgate"
    )]
    NewerSchema {
        /// Store path.
        path: PathBuf,
        /// Version found in the file.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// SQLite refused an operation.
    #[error("store {path}: {context}: {source}")]
    Sqlite {
        /// Store path.
        path: PathBuf,
        /// What was being done.
        context: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A filesystem operation failed.
    #[error("store {path}: {context}: {source}")]
    Io {
        /// Path concerned.
        path: PathBuf,
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Stored content no longer reads as a valid document (the file was edited outside tollgate).
    #[error(
        "store {path}: {id} revision {revision} is damaged: {detail}; run `tollgate verify` and restore from a backup"
    )]
    Corrupt {
        /// Store path.
        path: PathBuf,
        /// CR id.
        id: String,
        /// Revision number.
        revision: u32,
        /// What is wrong.
        detail: String,
    },
}

/// The operations every store offers.
pub trait Store: Send + Sync {
    /// Stores a batch of validated documents atomically: either every CR in the batch is
    /// stored (as created, revised or unchanged) or none is.
    fn submit(
        &self,
        batch: &[Submission],
        at: DateTime<Utc>,
    ) -> Result<Vec<SubmitOutcome>, StoreError>;

    /// Every CR at its current revision, ordered by id.
    fn list(&self) -> Result<Vec<StoredCr>, StoreError>;

    /// One CR at its current revision.
    fn get(&self, id: &str) -> Result<Option<StoredCr>, StoreError>;

    /// One specific revision of a CR.
    fn revision(&self, id: &str, revision: u32) -> Result<Option<StoredRevision>, StoreError>;

    /// Every revision of a CR, oldest first.
    fn revisions(&self, id: &str) -> Result<Vec<RevisionInfo>, StoreError>;
}

/// Re-validates a stored document; a failure means the file was altered outside tollgate.
pub(crate) fn typed_view(doc: &Value) -> Result<ChangeRequest, DocumentError> {
    from_value(doc)
}
