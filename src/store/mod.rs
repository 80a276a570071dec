//! Persistence behind one trait, so the CLI, the TUI and the server work the same over the
//! embedded SQLite store, a PostgreSQL database shared by server replicas, or a remote
//! team server. The SQLite and PostgreSQL stores share their write paths (`writes`) and
//! the re-validation of what they read (`rows`).

pub mod listen;
pub mod local;
mod migrations;
/// The team store on PostgreSQL.
pub mod pg;
mod pg_schema;
/// The team server as a store, over HTTP.
pub mod remote;
mod rows;
mod sse;
pub mod wire;
mod writes;

pub use crate::audit::log::{Head, LogEntry};
use crate::domain::change_request::{ChangeRequest, DocumentError, from_value};
use crate::domain::decision::Decision;
use crate::domain::emergency::SubjectChange;
use crate::domain::rules::Refusal;
use chrono::{DateTime, Utc};
pub use listen::HeadListener;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

/// A validated CR document ready to be stored.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The typed view (its id decides where the revision goes).
    pub cr: ChangeRequest,
    /// The whole document, unknown fields included.
    pub document: Value,
    /// The revision the submitter checked against (0: the id must be new). Checked in the
    /// store's write transaction, so a check made before it (e.g. "POL-3 is free", "POL-3
    /// is mine and still open") cannot be overtaken by a concurrent writer.
    pub expect_revision: Option<u32>,
    /// Who submits it, and the key that signs its log entry.
    pub by: SubmittedBy,
}

/// Who submits a revision (recorded in its log entry), and the key that signs the entry:
/// the submitter's own locally, the server's when it relays a token holder's submission.
#[derive(Debug, Clone, Default)]
pub struct SubmittedBy {
    /// Recorded as the entry's `submitter`.
    pub submitter: crate::domain::provenance::Submitter,
    /// Signs the entry; `None` leaves it unsigned (a local user without a key).
    pub signer: Option<std::sync::Arc<EntrySigner>>,
}

impl SubmittedBy {
    /// Submitted by `principal`, the entry signed with their `key`.
    pub fn principal(principal: &str, key: crate::audit::keys::Signer) -> SubmittedBy {
        SubmittedBy {
            submitter: crate::domain::provenance::Submitter::Principal(principal.into()),
            signer: Some(std::sync::Arc::new(EntrySigner {
                principal: principal.into(),
                key,
            })),
        }
    }
}

/// A principal's key, signing log entries in their name.
#[derive(Debug)]
pub struct EntrySigner {
    /// The principal.
    pub principal: String,
    /// Their key.
    pub key: crate::audit::keys::Signer,
}

impl Submission {
    /// A submission stored whatever the CR's current revision is (sources resubmit freely).
    pub fn new(cr: ChangeRequest, document: Value) -> Self {
        Submission {
            cr,
            document,
            expect_revision: None,
            by: SubmittedBy::default(),
        }
    }

    /// Records who submits it and signs its entry with their key.
    pub fn by(mut self, by: SubmittedBy) -> Self {
        self.by = by;
        self
    }

    /// Only if the CR is still at `revision` (0: does not exist yet).
    pub fn expecting(mut self, revision: u32) -> Self {
        self.expect_revision = Some(revision);
        self
    }
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionInfo {
    /// Revision number.
    pub revision: u32,
    /// Content digest.
    pub digest: String,
    /// When it was stored.
    pub submitted_at: DateTime<Utc>,
}

/// What a submission did to one CR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// An existing file that is not a tollgate store (empty, not SQLite, or another
    /// program's database): refused untouched.
    #[error(
        "{path} is not a tollgate store ({why}); nothing was changed. Create a store with `tollgate init` (or `tollgate demo`), or point --store / TOLLGATE_STORE at the right file"
    )]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        why: String,
    },
    /// The store cannot be written (read-only media or permissions) and this needs to.
    #[error("the store at {path} is read-only: {detail}")]
    ReadOnly {
        /// The file.
        path: PathBuf,
        /// What needed writing.
        detail: String,
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
    /// The team server could not be reached (after retries): nothing was changed there.
    #[error(
        "cannot reach the tollgate server at {url}: {detail}; check the URL and that `tollgate serve` is running"
    )]
    Unreachable {
        /// Server URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The team server answered with an error.
    #[error("{detail}")]
    Remote {
        /// HTTP status.
        status: u16,
        /// The server's explanation.
        detail: String,
    },
    /// A submission's expected revision was overtaken by another writer: nothing was stored.
    #[error(
        "{id} is at revision {found}, not {expected}: someone changed it meanwhile; nothing was stored, look again and retry"
    )]
    Moved {
        /// CR id.
        id: String,
        /// The revision the submitter expected (0: none).
        expected: u32,
        /// The revision found (0: none).
        found: u32,
    },
    /// The database URL does not read.
    #[error(
        "{url} is not a PostgreSQL connection URL ({detail}); give one like postgres://USER@HOST/DATABASE or postgres:///DATABASE?host=/run/postgresql"
    )]
    BadDatabaseUrl {
        /// The URL, password hidden.
        url: String,
        /// Why it does not read.
        detail: String,
    },
    /// The database cannot be reached (down, restarting, or refusing connections):
    /// nothing was changed; retrying later is safe.
    #[error(
        "the {database} is unavailable ({detail}); nothing was changed. Check that PostgreSQL is running and reachable, then retry"
    )]
    DatabaseDown {
        /// Host and database.
        database: String,
        /// What failed.
        detail: String,
    },
    /// The database has no tollgate schema.
    #[error(
        "the {database} holds no tollgate store; create one with `tollgate init --database URL --policy FILE`"
    )]
    DatabaseNotInitialised {
        /// Host and database.
        database: String,
    },
    /// PostgreSQL refused a statement.
    #[error("{database}: {context}: {source}")]
    Postgres {
        /// Host and database.
        database: String,
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: postgres::Error,
    },
    /// A copy's target already holds a store.
    #[error(
        "the {database} already holds change requests or log entries; copy into an empty database (create one with `createdb`)"
    )]
    NotEmpty {
        /// Host and database.
        database: String,
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

/// What a decision is made against, read inside the store's write transaction so nothing
/// can change between the rule check and the append.
#[derive(Debug, Clone)]
pub struct DecisionContext {
    /// The log head the new entry will follow.
    pub head: Head,
    /// The CR's current revision.
    pub current: StoredRevision,
    /// Decisions already recorded for the CR, in log order.
    pub decisions: Vec<Decision>,
    /// The latest `policy-adopted` entry (seq 0 when the log adopted none): the builder
    /// signs only under the policy in force, and this says which one that is.
    pub policy_head: Head,
}

/// What `Store::decide` appends: the decision and, when it completes the sign-offs of a
/// policy change, the adoption signed with it (both in one transaction, adoption second).
#[derive(Debug, Clone)]
pub struct DecisionEntries {
    /// The decision.
    pub decision: NewEntry,
    /// The `policy-adopted` entry it makes due.
    pub adoption: Option<NewEntry>,
}

impl From<NewEntry> for DecisionEntries {
    fn from(decision: NewEntry) -> Self {
        DecisionEntries {
            decision,
            adoption: None,
        }
    }
}

/// What `Store::decide` appended. On the wire it is the decision entry itself, with the
/// adoption (if any) beside its fields, so clients that know only decisions still read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The decision entry.
    #[serde(flatten)]
    pub decision: LogEntry,
    /// The adoption entry, when the decision completed a policy change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adoption: Option<LogEntry>,
}

/// What an emergency entry is built against, read inside the write transaction.
#[derive(Debug, Clone)]
pub struct EmergencyContext {
    /// The log head the new entry will follow.
    pub head: Head,
    /// Every operations entry so far (KPI readings left out), in log order.
    pub existing: Vec<LogEntry>,
    /// Change requests submitted or revised since the first emergency entry, with their
    /// subjects (nothing before it can matter to a rollback).
    pub changes: Vec<SubjectChange>,
    /// The latest `policy-adopted` entry (seq 0 when none).
    pub policy_head: Head,
}

/// A signed entry ready to append (built by the caller from a [`DecisionContext`]).
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Canonical body; its `seq` and `prev` must continue the context's head.
    pub body: String,
    /// Armored SSHSIG over the body.
    pub signature: String,
    /// The signer.
    pub principal: String,
}

/// Why a decision was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such CR.
    #[error("no change request {0}; `tollgate list` shows what is there")]
    NotFound(String),
    /// A policy rule refused it.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The CR changed since the reviewer looked at it.
    #[error(
        "{id} changed since you reviewed it: you saw {seen}, the current revision {revision} is {current}; review it again"
    )]
    Stale {
        /// CR id.
        id: String,
        /// Digest the reviewer saw.
        seen: String,
        /// Current revision number.
        revision: u32,
        /// Current digest.
        current: String,
    },
    /// Building or signing the entry failed.
    #[error("{0}")]
    Signing(String),
    /// The log moved on since the entry was signed: sign again against this head.
    #[error("the audit log moved on (now at entry {}); sign again", head.seq)]
    HeadMoved {
        /// The current head.
        head: Head,
    },
    /// The team server refused the entry (its message says why and what to do).
    #[error("{0}")]
    Remote(String),
    /// The entry does not continue the chain (a bug in the caller).
    #[error("internal error: the new entry does not continue the log ({0})")]
    Chain(String),
    /// A new policy was adopted since the caller read the policy in force.
    #[error(
        "the policy in force changed (entry {} adopted a new version) since this was prepared; run the command again to decide under it",
        policy.seq
    )]
    PolicyChanged {
        /// The adoption now in force.
        policy: Head,
    },
}

/// A signed event to deliver, as derived from the log (see `server::events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDelivery {
    /// `SEQ-SUBSCRIBER-EVENT`: the same on every replica, so an event is queued once.
    pub delivery_id: String,
    /// The subscriber's name.
    pub subscriber: String,
    /// `cr.submitted`, `decision.recorded`, ...
    pub event: String,
    /// The body as sent.
    pub body: String,
    /// When it was queued (RFC 3339, UTC).
    pub created_at: String,
}

/// A delivery in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// What was queued.
    #[serde(flatten)]
    pub queued: NewDelivery,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_at: String,
    /// When the subscriber acknowledged it (2xx).
    pub delivered_at: Option<String>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// One delivery attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The delivery.
    pub delivery_id: String,
    /// When it was acknowledged; `None` when it failed.
    pub delivered_at: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it is due again (after a failure).
    pub next_at: String,
    /// Whether it was sent (counted as an attempt); false for one put off because an
    /// earlier delivery to the same subscriber had just failed.
    pub tried: bool,
}

/// What the events queue refuses on a store that does not keep one (a remote store).
fn no_event_queue<T>() -> Result<T, StoreError> {
    Err(StoreError::Remote {
        status: 501,
        detail: "signed events are queued by the team server in its own store; run this on the server's machine".into(),
    })
}

/// One decision as the history lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionSummary {
    /// Log position.
    pub seq: u64,
    /// Entry hash.
    pub hash: String,
    /// When it was signed.
    pub at: DateTime<Utc>,
    /// The CR.
    pub cr_id: String,
    /// The revision decided on.
    pub cr_revision: u32,
    /// Its digest.
    pub cr_digest: String,
    /// `approve`, `reject`, `request-changes`.
    pub verdict: String,
    /// Role signed for.
    pub role: String,
    /// Who.
    pub principal: String,
}

/// One bearer token of the team server as stored: its hash (never the token), whose it
/// is, and what for (in the tokens file beside an SQLite store, or in the database).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenEntry {
    /// Short id to list and revoke it by: the first 12 hex digits of its hash.
    pub id: String,
    /// `sha256:` of the token.
    #[serde(skip)]
    pub sha256: String,
    /// The principal it authenticates.
    pub principal: String,
    /// Where it is used.
    pub label: String,
    /// When it was created (RFC 3339), when known.
    pub created: Option<String>,
}

/// A CR's evaluated queue row as a store caches it, with the key it was computed from.
/// Derived data: a reader recomputes it whenever the key no longer matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The CR.
    pub cr_id: String,
    /// What it was computed from (revision, last log entry on the CR, policy in force,
    /// build): see `workflow::queue`.
    pub basis: String,
    /// Its status (`pending`, …), for filtering without reading the row.
    pub status: String,
    /// Its effective risk.
    pub risk: String,
    /// When the requester created the CR (RFC 3339), for ages computed at read time.
    pub created_at: String,
    /// The queue row (`list --json`'s), compact JSON (shared: a server keeps rows it
    /// read and hands the same text to every answer).
    pub row: std::sync::Arc<str>,
    /// The table's cells, a JSON array of strings.
    pub cells: std::sync::Arc<str>,
}

/// The key a cached summary must carry to be used: the CR's revision and the last log
/// entry naming it (a revision, decision or evidence moves it), then `suffix` (see
/// [`basis_suffix`]). The databases build the same text in SQL (`sql_current_basis!`),
/// so that they can filter on current rows only; were the two ever to differ, every row
/// would count as out of date and be recomputed (slower, never wrong).
pub fn summary_basis(revision: u32, last_seq: u64, suffix: &str) -> String {
    format!("rev {revision} · log {last_seq}{suffix}")
}

/// The part of a summary's key shared by every CR: the policy in force (the seq of its
/// adoption) and this build (a new tollgate recomputes once).
pub fn basis_suffix(policy_seq: u64) -> String {
    format!(" · policy {policy_seq} · {}", env!("TOLLGATE_VERSION"))
}

/// [`summary_basis`] in SQL over `change_requests c`, less the suffix (a parameter): a
/// macro so that each store's statements stay `&'static str` (`concat!`).
macro_rules! sql_current_basis {
    () => {
        "('rev ' || c.current_revision || ' · log ' || c.last_seq)"
    };
}
pub(crate) use sql_current_basis;

/// Whether any CR's recorded last log entry disagrees with the log: asked first, so that
/// `verify` writes nothing (and works on a store it cannot write) when all agree.
pub(crate) const ANY_WRONG_POSITION_SQL: &str = "SELECT EXISTS (SELECT 1 FROM change_requests
    WHERE last_seq <> COALESCE((SELECT MAX(l.seq) FROM log l WHERE l.cr_id = change_requests.id), 0))";

/// Sets each CR's recorded last log entry from the log where the two disagree, returning
/// those CRs: the same statement for both databases.
pub(crate) const REPAIR_POSITIONS_SQL: &str = "UPDATE change_requests
    SET last_seq = COALESCE((SELECT MAX(l.seq) FROM log l WHERE l.cr_id = change_requests.id), 0)
    WHERE last_seq <> COALESCE((SELECT MAX(l.seq) FROM log l WHERE l.cr_id = change_requests.id), 0)
    RETURNING id";

/// A page of the summary cache to read: current CRs after `after` in id order, at `gate`
/// if given. `status` and `risk` let the database leave out the CRs whose *current*
/// cached summary (keyed [`summary_basis`] with `basis_suffix`) says otherwise; a CR
/// without a current summary is returned whatever it is, for the reader to evaluate and
/// filter itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct SummaryQuery<'a> {
    /// Start after this CR id (from the start when `None`).
    pub after: Option<&'a str>,
    /// At most this many CRs.
    pub limit: usize,
    /// Only this gate's CRs.
    pub gate: Option<crate::domain::change_request::Gate>,
    /// Only CRs with this status (`pending`, …), as far as the cache knows.
    pub status: Option<&'a str>,
    /// Only CRs with this effective risk, as far as the cache knows.
    pub risk: Option<&'a str>,
    /// The key's shared part ([`basis_suffix`]) for the policy in force.
    pub basis_suffix: &'a str,
    /// Leave the table's cells out (empty): a reader of rows only (the server, `list
    /// --json`) reads a sixth less.
    pub without_cells: bool,
}

/// A current CR as the summary cache sees it: what a fresh summary would be computed
/// from, and the cached one if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummarySlot {
    /// The CR.
    pub cr_id: String,
    /// Its current revision.
    pub revision: u32,
    /// The last log entry naming it (submission, revision, decision, evidence), as the
    /// store keeps it beside the CR (a trigger on the log moves it).
    pub last_seq: u64,
    /// What is cached, if anything.
    pub cached: Option<Summary>,
}

/// Builds a signed emergency entry from what it follows.
pub type EmergencyBuilder<'a> = dyn FnMut(&EmergencyContext) -> Result<(crate::audit::log::EntryKind, NewEntry), DecideError>
    + 'a;

/// Builds a signed evidence entry against the context read inside the write
/// transaction (the CR's current revision and the log head).
pub type EvidenceBuilder<'a> = dyn FnMut(&DecisionContext) -> Result<NewEntry, DecideError> + 'a;

/// Builds a signed decision (and any adoption it makes due) from its context.
pub type DecisionBuilder<'a> =
    dyn FnMut(&DecisionContext) -> Result<DecisionEntries, DecideError> + 'a;

/// The operations every store offers.
pub trait Store: Send + Sync {
    /// Stores a batch of validated documents atomically: either every CR in the batch is
    /// stored (as created, revised or unchanged) or none is.
    fn submit(
        &self,
        batch: &[Submission],
        at: DateTime<Utc>,
    ) -> Result<Vec<SubmitOutcome>, StoreError>;

    /// Every CR at its current revision, ordered by id (read a page at a time).
    fn list(&self) -> Result<Vec<StoredCr>, StoreError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_page(after.as_deref(), 5_000)?;
            match page.last() {
                Some(last) => after = Some(last.current.cr.id.clone()),
                None => return Ok(all),
            }
            all.extend(page);
        }
    }

    /// Up to `limit` CRs with ids after `after` (all from the start when `None`), at their
    /// current revisions, ordered by id: for walking a large store without holding it all.
    fn list_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredCr>, StoreError>;

    /// The summary cache's view of a page of current CRs (as [`Store::list_page_at_gate`]
    /// pages them): `None` when this store keeps no cache.
    fn summary_page(
        &self,
        _query: &SummaryQuery<'_>,
    ) -> Result<Option<Vec<SummarySlot>>, StoreError> {
        Ok(None)
    }

    /// Each current CR's key parts (revision, last log entry) after `after` in id order,
    /// at `gate` if given, reading no cached row (`cached` is `None`): for a reader that
    /// keeps the rows it read (the team server). `None` when this store keeps no cache.
    fn summary_keys(
        &self,
        _after: Option<&str>,
        _limit: usize,
        _gate: Option<crate::domain::change_request::Gate>,
    ) -> Result<Option<Vec<SummarySlot>>, StoreError> {
        Ok(None)
    }

    /// The cached summaries of `ids` (of those that have one), whatever their key; cells
    /// left empty when `without_cells`.
    fn summaries_of(
        &self,
        _ids: &[&str],
        _without_cells: bool,
    ) -> Result<Vec<Summary>, StoreError> {
        Ok(Vec::new())
    }

    /// The CRs whose recorded last log entry (`change_requests.last_seq`, which keys the
    /// queue's cached rows) is not the last entry the log holds for them, set from the log
    /// again: forged, or written by a faulty build. What `verify` names.
    fn repair_positions(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Stores computed summaries (best effort: a reader that cannot write still reads).
    fn put_summaries(&self, _rows: &[Summary]) -> Result<(), StoreError> {
        Ok(())
    }

    /// Forgets the cached summaries of `ids` (derived data: the next reader recomputes).
    fn drop_summaries(&self, _ids: &[String]) -> Result<(), StoreError> {
        Ok(())
    }

    /// Like [`Store::list_page`], of the CRs at `gate` only: up to `limit` of them after
    /// the id `after`. A store that can filter before reading documents does (the local
    /// one asks SQLite); the default reads pages and filters them.
    fn list_page_at_gate(
        &self,
        after: Option<&str>,
        limit: usize,
        gate: crate::domain::change_request::Gate,
    ) -> Result<Vec<StoredCr>, StoreError> {
        let mut out = Vec::new();
        let mut after = after.map(str::to_string);
        while out.len() < limit {
            let page = self.list_page(after.as_deref(), limit)?;
            let Some(last) = page.last() else { break };
            after = Some(last.current.cr.id.clone());
            out.extend(page.into_iter().filter(|c| c.current.cr.gate == gate));
        }
        out.truncate(limit);
        Ok(out)
    }

    /// One CR at its current revision.
    fn get(&self, id: &str) -> Result<Option<StoredCr>, StoreError>;

    /// One specific revision of a CR.
    fn revision(&self, id: &str, revision: u32) -> Result<Option<StoredRevision>, StoreError>;

    /// Every revision of a CR, oldest first.
    fn revisions(&self, id: &str) -> Result<Vec<RevisionInfo>, StoreError>;

    /// Decisions recorded for one CR, in log order.
    fn decisions(&self, cr_id: &str) -> Result<Vec<Decision>, StoreError>;

    /// Decisions for every CR, in log order per CR (one pass for the queue).
    fn all_decisions(&self) -> Result<HashMap<String, Vec<Decision>>, StoreError>;

    /// Hands `each` the decisions on the CRs with ids from `first` to `last` (inclusive),
    /// one at a time and in log order per CR: the queue evaluates a page of CRs without
    /// holding every decision in the store. `Ok(false)` when this store cannot (the
    /// caller reads [`Store::all_decisions`] once instead).
    fn each_decision_between(
        &self,
        _first: &str,
        _last: &str,
        _each: &mut dyn FnMut(Decision),
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Records a decision on `cr_id`: inside one write transaction, reads the context,
    /// lets `build` check the rules and sign, and appends the entries it returns.
    fn decide(&self, cr_id: &str, build: &mut DecisionBuilder<'_>)
    -> Result<Appended, DecideError>;

    /// Up to `limit` decisions after log position `after`, in log order, read without
    /// parsing whole bodies: what the history for leads lists.
    fn decision_summaries(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionSummary>, StoreError>;

    /// When each CR was first submitted (the start of its lead time).
    fn submission_times(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError>;

    /// The decision entries about one CR, in log order (to show each signature's status).
    fn decision_entries(&self, cr_id: &str) -> Result<Vec<LogEntry>, StoreError>;

    /// The KPI guard's readings of one CR, in log order (by the CR's index: readings pile
    /// up, so the operations entries leave them out).
    fn kpi_readings(&self, cr_id: &str) -> Result<Vec<LogEntry>, StoreError>;

    /// Every operations entry in log order: the emergency records (authorisations,
    /// rollback outcomes, reviews), rollout stages and drills. KPI readings are left out
    /// (a guard writes one per canary every few minutes, for ever): [`Store::kpi_readings`]
    /// reads one CR's.
    fn emergency_entries(&self) -> Result<Vec<LogEntry>, StoreError>;

    /// The change requests submitted or revised after log position `after`, with the
    /// subject each revision names, in log order: what hands a rolled-back subject back
    /// to its change requests ([`crate::domain::emergency::LiveVersions`]).
    fn subject_changes(&self, after: u64) -> Result<Vec<SubjectChange>, StoreError>;

    /// Appends one signed emergency entry: inside one write transaction, `build` sees the
    /// log head and the emergency entries so far, checks the rules and signs.
    fn append_emergency(&self, build: &mut EmergencyBuilder<'_>) -> Result<LogEntry, DecideError>;

    /// Appends a signed `evidence` entry on `cr_id`, built against its current revision
    /// inside the write transaction.
    fn append_evidence(
        &self,
        cr_id: &str,
        build: &mut EvidenceBuilder<'_>,
    ) -> Result<LogEntry, DecideError>;

    /// Up to `limit` log entries after position `after`, in order.
    fn log_entries(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError>;

    /// The head recorded beside the log (to detect a cut tail).
    fn recorded_head(&self) -> Result<Head, StoreError>;

    /// Something that blocks until the log head moves (see [`listen`]), for readers that
    /// show the log live; `None` when this store cannot tell (they look now and then).
    fn head_listener(&self) -> Result<Option<Box<dyn HeadListener>>, StoreError> {
        Ok(None)
    }

    /// Requester of every stored revision, keyed by `(cr id, digest)`, for verification.
    fn requesters(&self) -> Result<HashMap<(String, String), String>, StoreError>;

    /// The `policy-adopted` entries after log position `after`, in order: the policy
    /// history (read incrementally, so keeping up with it costs one indexed query).
    fn policy_entries(&self, after: u64) -> Result<Vec<LogEntry>, StoreError>;

    /// Appends the genesis `policy-adopted` entry built by `build` from the log head, in
    /// one write transaction, unless the log already adopted a policy (then `Ok(None)`:
    /// the first writer won, nothing is appended twice). Only a store on this machine
    /// does this (`init`, `demo`, migrating a store from before policy entries): a team
    /// server's policy comes from its own host.
    fn adopt_genesis(
        &self,
        _build: &mut dyn FnMut(&Head) -> Result<NewEntry, DecideError>,
    ) -> Result<Option<LogEntry>, DecideError> {
        Err(DecideError::Refused(Refusal {
            rule: "genesis-local",
            message: "a genesis policy is adopted on the store's own machine".into(),
            remedy: "run `tollgate init` where the store (or its database) is, without --remote"
                .into(),
        }))
    }

    /// Whether the store answers now, asked once and quickly (≤ 1 s, no retries): what a
    /// command checks before delivering its outbox. A local store always does.
    fn reachable(&self) -> bool {
        true
    }

    /// How far into the log signed events were derived.
    fn event_cursor(&self) -> Result<u64, StoreError> {
        no_event_queue()
    }

    /// Queues `deliveries` (derived from the entries after `from` up to `to`) and moves
    /// the cursor from `from` to `to`, in one transaction, only if the cursor still is at
    /// `from` (else another replica did it: `Ok(false)`). A delivery id already queued is
    /// left as it is.
    fn enqueue_events(
        &self,
        _from: u64,
        _to: u64,
        _deliveries: &[NewDelivery],
    ) -> Result<bool, StoreError> {
        no_event_queue()
    }

    /// Queues deliveries not derived from a log entry (timed reminders); an id already
    /// queued is left as it is.
    fn enqueue_deliveries(&self, _deliveries: &[NewDelivery]) -> Result<(), StoreError> {
        no_event_queue()
    }

    /// Claims the deliveries to `subscribers` not yet acknowledged whose next attempt is
    /// due at `now` (oldest first): their next attempt moves to `lease_until` in the same
    /// statement, so another replica does not send them too; a sender that dies leaves
    /// them due again when the lease ends (at least once).
    fn claim_due(
        &self,
        _subscribers: &[String],
        _now: &str,
        _lease_until: &str,
        _limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        no_event_queue()
    }

    /// Records attempts, in one transaction: each acknowledged at its `delivered_at`, or
    /// failed with its `error` and due again at its `next_at`.
    fn record_attempts(&self, _attempts: &[Attempt]) -> Result<(), StoreError> {
        no_event_queue()
    }

    /// The latest deliveries (only those not yet acknowledged with `pending_only`).
    fn deliveries(&self, _pending_only: bool, _limit: usize) -> Result<Vec<Delivery>, StoreError> {
        no_event_queue()
    }

    /// Notes a webhook delivery from `source` as received at `at`: false when its id was
    /// already (a replay), whichever replica took it. Ids received before
    /// `forget_before` are forgotten first (their deliveries are refused as stale anyway).
    fn receive_delivery(
        &self,
        _source: &str,
        _delivery_id: &str,
        _at: &str,
        _forget_before: &str,
    ) -> Result<bool, StoreError> {
        no_event_queue()
    }

    /// Forgets a delivery noted by [`Store::receive_delivery`] whose handling failed, so
    /// the sender's retry of it (same id) is taken.
    fn forget_delivery(&self, _source: &str, _delivery_id: &str) -> Result<(), StoreError> {
        no_event_queue()
    }
}

/// A boxed store is a store: the faces pick local or remote at run time.
impl<S: Store + ?Sized> Store for Box<S> {
    fn submit(
        &self,
        batch: &[Submission],
        at: DateTime<Utc>,
    ) -> Result<Vec<SubmitOutcome>, StoreError> {
        (**self).submit(batch, at)
    }
    fn list(&self) -> Result<Vec<StoredCr>, StoreError> {
        (**self).list()
    }
    fn list_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredCr>, StoreError> {
        (**self).list_page(after, limit)
    }
    fn list_page_at_gate(
        &self,
        after: Option<&str>,
        limit: usize,
        gate: crate::domain::change_request::Gate,
    ) -> Result<Vec<StoredCr>, StoreError> {
        (**self).list_page_at_gate(after, limit, gate)
    }
    fn summary_page(
        &self,
        query: &SummaryQuery<'_>,
    ) -> Result<Option<Vec<SummarySlot>>, StoreError> {
        (**self).summary_page(query)
    }
    fn summary_keys(
        &self,
        after: Option<&str>,
        limit: usize,
        gate: Option<crate::domain::change_request::Gate>,
    ) -> Result<Option<Vec<SummarySlot>>, StoreError> {
        (**self).summary_keys(after, limit, gate)
    }
    fn summaries_of(&self, ids: &[&str], without_cells: bool) -> Result<Vec<Summary>, StoreError> {
        (**self).summaries_of(ids, without_cells)
    }
    fn repair_positions(&self) -> Result<Vec<String>, StoreError> {
        (**self).repair_positions()
    }
    fn put_summaries(&self, rows: &[Summary]) -> Result<(), StoreError> {
        (**self).put_summaries(rows)
    }
    fn drop_summaries(&self, ids: &[String]) -> Result<(), StoreError> {
        (**self).drop_summaries(ids)
    }
    fn get(&self, id: &str) -> Result<Option<StoredCr>, StoreError> {
        (**self).get(id)
    }
    fn revision(&self, id: &str, revision: u32) -> Result<Option<StoredRevision>, StoreError> {
        (**self).revision(id, revision)
    }
    fn revisions(&self, id: &str) -> Result<Vec<RevisionInfo>, StoreError> {
        (**self).revisions(id)
    }
    fn decisions(&self, cr_id: &str) -> Result<Vec<Decision>, StoreError> {
        (**self).decisions(cr_id)
    }
    fn all_decisions(&self) -> Result<HashMap<String, Vec<Decision>>, StoreError> {
        (**self).all_decisions()
    }
    fn each_decision_between(
        &self,
        first: &str,
        last: &str,
        each: &mut dyn FnMut(Decision),
    ) -> Result<bool, StoreError> {
        (**self).each_decision_between(first, last, each)
    }
    fn decide(
        &self,
        cr_id: &str,
        build: &mut DecisionBuilder<'_>,
    ) -> Result<Appended, DecideError> {
        (**self).decide(cr_id, build)
    }
    fn decision_summaries(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionSummary>, StoreError> {
        (**self).decision_summaries(after, limit)
    }
    fn submission_times(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        (**self).submission_times()
    }
    fn kpi_readings(&self, cr_id: &str) -> Result<Vec<LogEntry>, StoreError> {
        (**self).kpi_readings(cr_id)
    }
    fn decision_entries(&self, cr_id: &str) -> Result<Vec<LogEntry>, StoreError> {
        (**self).decision_entries(cr_id)
    }
    fn emergency_entries(&self) -> Result<Vec<LogEntry>, StoreError> {
        (**self).emergency_entries()
    }
    fn subject_changes(&self, after: u64) -> Result<Vec<SubjectChange>, StoreError> {
        (**self).subject_changes(after)
    }
    fn append_emergency(&self, build: &mut EmergencyBuilder<'_>) -> Result<LogEntry, DecideError> {
        (**self).append_emergency(build)
    }

    fn append_evidence(
        &self,
        cr_id: &str,
        build: &mut EvidenceBuilder<'_>,
    ) -> Result<LogEntry, DecideError> {
        (**self).append_evidence(cr_id, build)
    }
    fn log_entries(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        (**self).log_entries(after, limit)
    }
    fn recorded_head(&self) -> Result<Head, StoreError> {
        (**self).recorded_head()
    }
    fn head_listener(&self) -> Result<Option<Box<dyn HeadListener>>, StoreError> {
        (**self).head_listener()
    }
    fn requesters(&self) -> Result<HashMap<(String, String), String>, StoreError> {
        (**self).requesters()
    }
    fn policy_entries(&self, after: u64) -> Result<Vec<LogEntry>, StoreError> {
        (**self).policy_entries(after)
    }

    fn adopt_genesis(
        &self,
        build: &mut dyn FnMut(&Head) -> Result<NewEntry, DecideError>,
    ) -> Result<Option<LogEntry>, DecideError> {
        (**self).adopt_genesis(build)
    }
    fn reachable(&self) -> bool {
        (**self).reachable()
    }
    fn event_cursor(&self) -> Result<u64, StoreError> {
        (**self).event_cursor()
    }
    fn enqueue_events(
        &self,
        from: u64,
        to: u64,
        deliveries: &[NewDelivery],
    ) -> Result<bool, StoreError> {
        (**self).enqueue_events(from, to, deliveries)
    }
    fn claim_due(
        &self,
        subscribers: &[String],
        now: &str,
        lease_until: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        (**self).claim_due(subscribers, now, lease_until, limit)
    }
    fn enqueue_deliveries(&self, deliveries: &[NewDelivery]) -> Result<(), StoreError> {
        (**self).enqueue_deliveries(deliveries)
    }
    fn record_attempts(&self, attempts: &[Attempt]) -> Result<(), StoreError> {
        (**self).record_attempts(attempts)
    }
    fn deliveries(&self, pending_only: bool, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        (**self).deliveries(pending_only, limit)
    }
    fn receive_delivery(
        &self,
        source: &str,
        delivery_id: &str,
        at: &str,
        forget_before: &str,
    ) -> Result<bool, StoreError> {
        (**self).receive_delivery(source, delivery_id, at, forget_before)
    }
    fn forget_delivery(&self, source: &str, delivery_id: &str) -> Result<(), StoreError> {
        (**self).forget_delivery(source, delivery_id)
    }
}

/// Re-validates a stored document; a failure means the file was altered outside tollgate.
pub(crate) fn typed_view(doc: &Value) -> Result<ChangeRequest, DocumentError> {
    from_value(doc)
}

/// Entries read per page while verifying.
const VERIFY_PAGE: usize = 10_000;

/// What `verify` is asked to check beyond the log itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions<'a> {
    /// A head an auditor noted earlier (`--expect-head`).
    pub expect_head: Option<&'a str>,
    /// The genesis entry hash, shipped out of band (`--expect-genesis`).
    pub expect_genesis: Option<&'a str>,
    /// For a store whose log adopted no policy yet (from before policy entries): the
    /// policy file that judges it until it is migrated. Ignored once the log has a policy.
    pub unmigrated_policy: Option<&'a crate::domain::policy::Policy>,
    /// The auditor's clock (`TOLLGATE_NOW` or the real one when `None`): no entry may
    /// claim a signing time after it.
    pub now: Option<DateTime<Utc>>,
}

impl<'a> VerifyOptions<'a> {
    /// Options for a store whose policy history is `book`: its file stands in only while
    /// the log has adopted no policy.
    pub fn for_book(book: &'a crate::domain::policy_book::PolicyBook) -> Self {
        VerifyOptions {
            unmigrated_policy: book.is_provisional().then(|| book.policy()),
            ..Default::default()
        }
    }
}

/// Verifies the whole log of `store`, page by page, stopping at the first bad entry:
/// every entry against the policy in force when it was appended (rebuilt from the log's
/// own `policy-adopted` entries), then the recorded head, the noted head and genesis, and
/// finally keys revoked by any adopted policy.
pub fn verify_log(
    store: &dyn Store,
    opts: &VerifyOptions<'_>,
) -> Result<crate::audit::log::VerifyReport, VerifyError> {
    use crate::audit::verify::{Judge, Lookups, Start};
    // Which policy judges the entries before the first adoption: a migration genesis
    // (checked in its turn by the walk), or the file of a store never migrated.
    let first_adoption = store.policy_entries(0)?.into_iter().next();
    let before_genesis = match first_adoption {
        Some(e) if e.seq > 1 => crate::audit::policy_log::version_from_entry(&e)
            .ok()
            .map(Judge::adopted)
            .transpose()
            .map_err(VerifyError::Keyring)?,
        Some(_) => None,
        None => match opts.unmigrated_policy {
            Some(p) => Some(Judge::file(p.clone()).map_err(VerifyError::Keyring)?),
            None => return Err(VerifyError::NoPolicy),
        },
    };
    let requesters = store.requesters()?;
    let requester_of = |cr: &str, digest: &str| {
        requesters
            .get(&(cr.to_string(), digest.to_string()))
            .cloned()
    };
    let revision = |cr: &str, revision: u32| {
        store
            .revision(cr, revision)
            .ok()
            .flatten()
            .map(|r| (r.digest, r.cr))
    };
    let mut verifier = crate::audit::log::Verifier::new(
        Start {
            before_genesis,
            expect_genesis: opts.expect_genesis.map(str::to_string),
            expect_head: opts.expect_head.map(str::to_string),
            now: opts.now.unwrap_or_else(Utc::now),
        },
        Lookups {
            requester_of: &requester_of,
            revision: &revision,
        },
    );
    let mut after = 0;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    while verifier.healthy() {
        let page = store.log_entries(after, VERIFY_PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        // Signatures are independent of each other: check them on every core, each with
        // the keys of the policy in force at its position, then walk the chain in order.
        let keyrings = verifier.keyrings_for(&page);
        let checks = parallel_signature_checks(&keyrings, &page, threads);
        for (e, check) in page.iter().zip(checks) {
            verifier.push_checked(e, check);
        }
    }
    Ok(verifier.finish(&store.recorded_head()?))
}

/// Checks the signature of every signed entry in `page` against the keyring beside it,
/// spread over `threads` threads.
fn parallel_signature_checks(
    keyrings: &[Option<std::sync::Arc<crate::audit::keys::Keyring>>],
    page: &[LogEntry],
    threads: usize,
) -> Vec<Option<crate::audit::log::SignatureCheck>> {
    use crate::audit::log::{EntryKind, check_signature};
    let check = |(e, keyring): (
        &LogEntry,
        &Option<std::sync::Arc<crate::audit::keys::Keyring>>,
    )| {
        let keyring = keyring.as_ref()?;
        EntryKind::parse(&e.kind)
            .is_some_and(EntryKind::is_signed)
            .then(|| check_signature(keyring, e))
    };
    let chunk = page.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = page
            .chunks(chunk)
            .zip(keyrings.chunks(chunk))
            .map(|(part, rings)| {
                scope.spawn(move || part.iter().zip(rings).map(check).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(results) => results,
                // A panicking check is a bug; re-raise it rather than report "verified".
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Why verification could not run at all (as opposed to finding a bad entry).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A policy key does not parse.
    #[error("the policy's keys cannot be used: {0}")]
    Keyring(#[from] crate::audit::keys::KeyLineError),
    /// The log adopted no policy and no policy file was given to judge it by.
    #[error(
        "the log holds no policy-adopted entry and no policy file was given; migrate the store with `tollgate migrate`"
    )]
    NoPolicy,
}
