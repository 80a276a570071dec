//! The embedded store: one SQLite file, WAL journal, every write in an immediate
//! transaction.
//!
//! Several processes may use the same file at once (a reviewer's TUI, a CI `submit`, a
//! `verify`): WAL lets readers proceed while one writer holds the lock, `BEGIN IMMEDIATE`
//! takes the write lock up front so read-then-write sequences cannot interleave, and the
//! busy timeout makes a second writer wait instead of failing. `synchronous = FULL`
//! means a commit that returned has reached the disk.

use super::migrations::{LATEST, MIGRATIONS};
use super::rows::{self, RevisionRow, parse_time, time_text};
use super::writes;
use super::{
    Appended, DecideError, DecisionBuilder, EvidenceBuilder, Head, LogEntry, NewEntry,
    RevisionInfo, Store, StoreError, StoredCr, StoredRevision, Submission, SubmitOutcome,
};
use crate::audit::log::{EntryKind, entry_hash};
use crate::domain::decision::Decision;
use crate::domain::emergency::SubjectChange;
use chrono::{DateTime, Utc};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A store in one SQLite file.
pub struct LocalStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("path", &self.path)
            .finish()
    }
}

impl LocalStore {
    /// Opens an existing store, upgrading its schema if it is older than this build.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotInitialised { path: path.into() });
        }
        // Never give a schema to a file `init` did not create: an empty file or another
        // program's data stays as it is.
        check_is_sqlite(path)?;
        match Self::connect_existing(path) {
            // Read-only media or a directory the user cannot write (no room for SQLite's
            // shared-memory file): open it read-only, so it can still be read and verified.
            Err(StoreError::Sqlite { source, .. }) if cannot_write(&source) => {
                Self::connect_read_only(path)
            }
            other => other,
        }
    }

    /// Opens a store that cannot be written, as an immutable file: reading and
    /// verification work; any write fails saying the store is read-only.
    fn connect_read_only(path: &Path) -> Result<Self, StoreError> {
        let err = |context: &'static str| sql_err(path, context);
        let text = path.to_string_lossy();
        let uri = format!(
            "file:{}?immutable=1",
            text.replace('%', "%25")
                .replace('?', "%3f")
                .replace('#', "%23")
        );
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err("opening the database read-only"))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err("reading the schema version"))?;
        if version != LATEST {
            return Err(StoreError::ReadOnly {
                path: path.into(),
                detail: if version > LATEST {
                    format!(
                        "it has schema version {version}, newer than this tollgate understands ({LATEST}); upgrade tollgate"
                    )
                } else {
                    format!(
                        "its schema (version {version}) needs an upgrade to version {LATEST}, which must write; open it once with write access"
                    )
                },
            });
        }
        Ok(LocalStore {
            path: path.into(),
            conn: Mutex::new(conn),
        })
    }

    /// Opens the store at `path`, creating the file (and its directory) if needed.
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.into(),
                context: "creating the store directory".into(),
                source,
            })?;
        }
        Self::connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens an existing store read-write; a database without tollgate's schema is
    /// refused before anything is written to it.
    fn connect_existing(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_err(path, "opening the database"))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql_err(path, "reading the schema version"))?;
        if version == 0 {
            return Err(StoreError::NotAStore {
                path: path.into(),
                why: "it is an SQLite database without tollgate's schema".into(),
            });
        }
        drop(conn);
        Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    fn connect(path: &Path, flags: OpenFlags) -> Result<Self, StoreError> {
        let err = |context: &str| sql_err(path, context.to_string());
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(err("opening the database"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(err("setting the busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err("switching to WAL journal mode"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err("setting synchronous mode"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err("enabling foreign keys"))?;
        let store = LocalStore {
            path: path.into(),
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Lets SQLite read the file through up to `bytes` of memory map instead of copying
    /// each page through its 2 MB page cache: the team server reads every cached queue row
    /// for a whole-queue answer (10k CRs: about twice as fast). Only the server asks: the
    /// mapped pages count as resident, and the CLI and TUI keep to their memory budget.
    pub fn map_into_memory(&self, bytes: u64) -> Result<(), StoreError> {
        self.lock()
            .pragma_update(None, "mmap_size", bytes)
            .map_err(self.sql_err("mapping the database into memory"))
    }

    /// For a connection that writes only derived data (the events queue: re-derivable
    /// from the log, delivered at least once): its commits are not flushed to disk on
    /// their own (WAL with `synchronous = NORMAL`; the next commit of a connection that
    /// records entries flushes them), so they do not queue behind, or in front of, the
    /// flushes that acknowledge decisions. A crash may lose the last of them: the events
    /// are derived and sent again, under the same delivery ids.
    pub fn writes_only_derived_data(&self) -> Result<(), StoreError> {
        self.lock()
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(self.sql_err("relaxing the flush of derived data"))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions
        // roll back on drop), so a poisoned mutex is still safe to use.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sql_err(&self, context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
        sql_err(&self.path, context)
    }

    /// Brings the schema up to [`LATEST`], one migration per transaction.
    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lock();
        loop {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.sql_err("starting a migration"))?;
            let version: i64 = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(self.sql_err("reading the schema version"))?;
            if version > LATEST {
                return Err(StoreError::NewerSchema {
                    path: self.path.clone(),
                    found: version,
                    supported: LATEST,
                });
            }
            if version == LATEST {
                return tx.commit().map_err(self.sql_err("finishing migrations"));
            }
            let Some(sql) = usize::try_from(version)
                .ok()
                .and_then(|v| MIGRATIONS.get(v))
            else {
                return Err(StoreError::NewerSchema {
                    path: self.path.clone(),
                    found: version,
                    supported: LATEST,
                });
            };
            tx.execute_batch(sql)
                .map_err(self.sql_err(format!("applying migration {}", version + 1)))?;
            if version + 1 == 2 {
                backfill_log(&tx, &self.path)?;
            }
            tx.pragma_update(None, "user_version", version + 1)
                .map_err(self.sql_err("recording the schema version"))?;
            tx.commit()
                .map_err(self.sql_err("committing a migration"))?;
        }
    }

    /// The schema version of the open store.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.sql_err("reading the schema version"))
    }
}

/// Whether SQLite failed because the file or its directory cannot be written.
fn cannot_write(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
    )
}

/// Refuses an existing file that is not a tollgate store: empty, not SQLite, or SQLite
/// without tollgate's schema (the first 16 bytes and the header's user version say so).
/// While a write-ahead log sits beside it, the file may not hold its pages yet (another
/// process has the store open): then the schema version is checked once connected.
fn check_is_sqlite(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        return Ok(());
    }
    let not_a_store = |why: &str| StoreError::NotAStore {
        path: path.into(),
        why: why.into(),
    };
    let mut header = [0u8; 100];
    let mut file = std::fs::File::open(path).map_err(|source| StoreError::Io {
        path: path.into(),
        context: "opening the store".into(),
        source,
    })?;
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.into(),
                    context: "reading the store's header".into(),
                    source,
                });
            }
        }
    }
    if read == 0 {
        return Err(not_a_store("the file is empty"));
    }
    if read < header.len() || &header[..16] != b"SQLite format 3\0" {
        return Err(not_a_store("it is not an SQLite database"));
    }
    // The user version lives at offset 60 of the header; tollgate's schema starts at 1.
    if header[60..64] == [0, 0, 0, 0] {
        return Err(not_a_store(
            "it is an SQLite database without tollgate's schema",
        ));
    }
    Ok(())
}

/// The head recorded beside the log.
fn read_head(conn: &Connection) -> rusqlite::Result<Head> {
    conn.query_row("SELECT seq, hash FROM log_head WHERE id = 1", [], |r| {
        Ok(Head {
            seq: r.get(0)?,
            hash: r.get(1)?,
        })
    })
}

/// Appends one entry and moves the recorded head, inside the caller's transaction.
fn append_entry(
    tx: &Transaction<'_>,
    kind: EntryKind,
    cr_id: Option<&str>,
    principal: Option<&str>,
    body: &str,
    signature: Option<&str>,
) -> rusqlite::Result<LogEntry> {
    let head = read_head(tx)?;
    let seq = head.seq + 1;
    let hash = entry_hash(body);
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    // Entries backfilled while upgrading an old store are appended before the column
    // exists (migration 4); they keep no receipt time.
    let received_at = (version >= 4).then(|| time_text(crate::clock::now_or_system()));
    match &received_at {
        Some(at) => tx.execute(
            "INSERT INTO log (seq, kind, cr_id, principal, body, hash, signature, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![seq, kind.as_str(), cr_id, principal, body, hash, signature, at],
        )?,
        None => tx.execute(
            "INSERT INTO log (seq, kind, cr_id, principal, body, hash, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![seq, kind.as_str(), cr_id, principal, body, hash, signature],
        )?,
    };
    tx.execute(
        "UPDATE log_head SET seq = ?1, hash = ?2 WHERE id = 1",
        params![seq, hash],
    )?;
    Ok(LogEntry {
        seq,
        kind: kind.as_str().into(),
        body: body.into(),
        hash,
        signature: signature.map(Into::into),
        principal: principal.map(Into::into),
        cr_id: cr_id.map(Into::into),
        received_at,
    })
}

/// Enters revisions stored before the log existed (schema 1) into the log, oldest first.
fn backfill_log(tx: &Transaction<'_>, path: &Path) -> Result<(), StoreError> {
    let err = |source| sql_err(path, "entering existing revisions into the log")(source);
    let rows: Vec<(String, u32, String, String)> = {
        let mut stmt = tx
            .prepare("SELECT cr_id, revision, digest, submitted_at FROM revisions ORDER BY submitted_at, cr_id, revision")
            .map_err(err)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
            .map_err(err)?
    };
    let mut chain = LocalTx { tx, path };
    for (cr_id, revision, digest, at) in rows {
        let at = parse_time(&at).unwrap_or_else(|_| Utc::now());
        let kind = if revision == 1 {
            EntryKind::CrSubmitted
        } else {
            EntryKind::CrRevised
        };
        // Backfilled entries are never signed.
        writes::append_submission(&mut chain, kind, (&cr_id, revision, &digest), at, None)?;
    }
    Ok(())
}

/// The latest `policy-adopted` entry's position and hash (seq 0 when there is none).
fn read_policy_head(conn: &Connection) -> rusqlite::Result<Head> {
    conn.query_row(
        "SELECT seq, hash FROM log WHERE kind = 'policy-adopted' ORDER BY seq DESC LIMIT 1",
        [],
        |r| {
            Ok(Head {
                seq: r.get(0)?,
                hash: r.get(1)?,
            })
        },
    )
    .optional()
    .map(|h| h.unwrap_or_else(Head::empty))
}

/// Queues `deliveries`, leaving an id already queued as it is (events are derived again
/// by every replica; reminders every few minutes).
fn queue_deliveries(tx: &Connection, deliveries: &[super::NewDelivery]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO event_deliveries (delivery_id, subscriber, event, body, created_at, next_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?;
    for d in deliveries {
        stmt.execute(params![
            d.delivery_id,
            d.subscriber,
            d.event,
            d.body,
            d.created_at
        ])?;
    }
    Ok(())
}

/// The columns [`delivery_row`] reads, in its order.
const DELIVERY_COLUMNS: &str =
    "delivery_id, subscriber, event, body, created_at, attempts, next_at, delivered_at, last_error";

/// A cached queue row of `cr_id` under `basis`, its status, risk, creation time, row and
/// cells read from column `status_at` on: how both summary queries select them.
fn summary_at(
    r: &rusqlite::Row<'_>,
    cr_id: String,
    basis: String,
    status_at: usize,
) -> rusqlite::Result<super::Summary> {
    Ok(super::Summary {
        cr_id,
        basis,
        status: r.get(status_at)?,
        risk: r.get(status_at + 1)?,
        created_at: r.get(status_at + 2)?,
        row: shared_text(r, status_at + 3)?,
        cells: shared_text(r, status_at + 4)?,
    })
}

/// A row of `event_deliveries`.
fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<super::Delivery> {
    Ok(super::Delivery {
        queued: super::NewDelivery {
            delivery_id: r.get(0)?,
            subscriber: r.get(1)?,
            event: r.get(2)?,
            body: r.get(3)?,
            created_at: r.get(4)?,
        },
        attempts: r.get(5)?,
        next_at: r.get(6)?,
        delivered_at: r.get(7)?,
        last_error: r.get(8)?,
    })
}

fn emergency_rows(conn: &Connection) -> rusqlite::Result<Vec<LogEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, kind, cr_id, principal, body, hash, signature, received_at FROM log
         WHERE kind IN ('emergency-authorised', 'rollback-executed', 'post-incident-review', 'rollout-stage', 'drill') ORDER BY seq",
    )?;
    stmt.query_map([], log_row)?.collect()
}

/// Submission and revision entries after `after`, each with the subject its revision
/// names (read from the stored document, which `verify` holds to the entry's digest).
fn subject_change_rows(conn: &Connection, after: u64) -> rusqlite::Result<Vec<SubjectChange>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.seq, l.cr_id,
                json_extract(r.document, '$.subject.name'),
                json_extract(r.document, '$.subject.environment')
         FROM log l JOIN revisions r
           ON r.cr_id = l.cr_id AND r.revision = json_extract(l.body, '$.revision')
         WHERE l.kind IN ('cr-submitted', 'cr-revised') AND l.seq > ?1
         ORDER BY l.seq",
    )?;
    stmt.query_map([after], |r| {
        Ok(SubjectChange {
            seq: r.get(0)?,
            cr_id: r.get(1)?,
            subject: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            environment: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        })
    })?
    .collect()
}

fn log_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        seq: r.get(0)?,
        kind: r.get(1)?,
        cr_id: r.get(2)?,
        principal: r.get(3)?,
        body: r.get(4)?,
        hash: r.get(5)?,
        signature: r.get(6)?,
        received_at: r.get(7)?,
    })
}

/// The log entries a revision's provenance comes from, selected beside its row.
const PROVENANCE_COLUMNS: &str = "(SELECT l.body FROM log l WHERE l.cr_id = r.cr_id
            AND l.kind IN ('cr-submitted', 'cr-revised')
            AND json_extract(l.body, '$.revision') = r.revision ORDER BY l.seq DESC LIMIT 1),
        (SELECT json_group_array(l.body) FROM log l WHERE l.cr_id = r.cr_id AND l.kind = 'evidence')";

fn current_select() -> String {
    format!(
        "SELECT c.id, r.revision, r.digest, r.document, r.submitted_at,
        (SELECT COUNT(*) FROM revisions x WHERE x.cr_id = c.id), c.first_submitted_at,
        {PROVENANCE_COLUMNS}
     FROM change_requests c
     JOIN revisions r ON r.cr_id = c.id AND r.revision = c.current_revision"
    )
}

fn revision_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RevisionRow> {
    Ok(RevisionRow {
        id: row.get(0)?,
        revision: row.get(1)?,
        digest: row.get(2)?,
        document: row.get(3)?,
        submitted_at: row.get(4)?,
        count: row.get(5)?,
        first_submitted_at: row.get(6)?,
        entry: row.get(7)?,
        evidence: row.get(8)?,
    })
}

impl LocalStore {
    /// A page of current revisions after `after` (optionally only at `gate`, filtered by
    /// SQLite before any document is read), parsed on every core.
    fn page_where(
        &self,
        after: Option<&str>,
        limit: usize,
        gate: Option<crate::domain::change_request::Gate>,
    ) -> Result<Vec<StoredCr>, StoreError> {
        let rows: Vec<RevisionRow> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached(&format!(
                    "{} WHERE {} LIMIT ?2",
                    current_select(),
                    // Separate statements: the gate and the order then come from the
                    // gate's index (r.cr_id is c.id).
                    if gate.is_some() {
                        "json_extract(r.document, '$.gate') = ?3 AND r.cr_id > ?1 ORDER BY r.cr_id"
                    } else {
                        "c.id > ?1 AND ?3 IS NULL ORDER BY c.id"
                    }
                ))
                .map_err(self.sql_err("listing change requests"))?;
            stmt.query_map(
                params![
                    after.unwrap_or(""),
                    limit as i64,
                    gate.map(|g| g.as_str().to_string())
                ],
                revision_row,
            )
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("listing change requests"))?
        };
        rows::stored_crs(&self.path, rows)
    }
}

/// A CR's current revision, re-validated, read on `conn`.
fn current_revision_in(
    conn: &Connection,
    path: &Path,
    id: &str,
) -> Result<Option<StoredRevision>, StoreError> {
    let row: Option<RevisionRow> = conn
        .query_row(
            &format!("{} WHERE c.id = ?1", current_select()),
            params![id],
            revision_row,
        )
        .optional()
        .map_err(sql_err(path, format!("reading {id}")))?;
    row.map(|r| rows::read_revision(path, r)).transpose()
}

/// The decisions on a CR, in log order, read on `conn`.
fn decisions_in(conn: &Connection, path: &Path, cr_id: &str) -> Result<Vec<Decision>, StoreError> {
    let found: Vec<(u64, String)> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, body FROM log WHERE cr_id = ?1 AND kind = 'decision' ORDER BY seq",
            )
            .map_err(sql_err(path, format!("reading decisions on {cr_id}")))?;
        stmt.query_map(params![cr_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(sql_err(path, format!("reading decisions on {cr_id}")))?
    };
    found
        .iter()
        .map(|(seq, body)| rows::parse_decision(path, *seq, body))
        .collect()
}

/// A text column copied once into shared text (a queue row is handed to many answers).
fn shared_text(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<std::sync::Arc<str>> {
    r.get_ref(i)?.as_str().map(Into::into).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// How often an SQLite listener looks at the file's data version.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Listens to the store file through its data version (see [`super::listen`]): a
/// connection of its own, on which `PRAGMA data_version` moves whenever any process
/// commits to the file.
struct DataVersion {
    conn: Connection,
    path: PathBuf,
    version: i64,
    head: Head,
}

impl DataVersion {
    /// A listener on the store file at `path`, starting from its current head.
    fn open(path: &Path) -> Result<DataVersion, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_err(path, "opening the database to watch it"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql_err(path, "setting the busy timeout"))?;
        let version = data_version(&conn).map_err(sql_err(path, "reading the data version"))?;
        let head = read_head(&conn).map_err(sql_err(path, "reading the log head"))?;
        Ok(DataVersion {
            conn,
            path: path.to_path_buf(),
            version,
            head,
        })
    }
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "data_version", |r| r.get(0))
}

impl super::HeadListener for DataVersion {
    fn wait(&mut self, timeout: Duration) -> Result<Option<Head>, StoreError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let version = data_version(&self.conn)
                .map_err(sql_err(&self.path, "reading the data version"))?;
            if version != self.version {
                self.version = version;
                let head =
                    read_head(&self.conn).map_err(sql_err(&self.path, "reading the log head"))?;
                if head != self.head {
                    self.head = head.clone();
                    return Ok(Some(head));
                }
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(LOOK_EVERY.min(deadline - now));
        }
    }
}

/// An SQLite failure on the store at `path` while doing `context`.
fn sql_err(path: &Path, context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    let context = context.into();
    move |source| StoreError::Sqlite {
        path,
        context,
        source,
    }
}

/// A write transaction of the embedded store, as the shared write paths see it.
struct LocalTx<'a> {
    tx: &'a Transaction<'a>,
    path: &'a Path,
}

impl LocalTx<'_> {
    fn err(&self, context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
        sql_err(self.path, context)
    }
}

impl writes::ChainTx for LocalTx<'_> {
    fn location(&self) -> &Path {
        self.path
    }

    fn head(&mut self) -> Result<Head, StoreError> {
        read_head(self.tx).map_err(self.err("reading the log head"))
    }

    fn policy_head(&mut self) -> Result<Head, StoreError> {
        read_policy_head(self.tx).map_err(self.err("reading the policy in force"))
    }

    fn current_revision(&mut self, cr_id: &str) -> Result<Option<StoredRevision>, StoreError> {
        current_revision_in(self.tx, self.path, cr_id)
    }

    fn decisions(&mut self, cr_id: &str) -> Result<Vec<Decision>, StoreError> {
        decisions_in(self.tx, self.path, cr_id)
    }

    fn emergency_entries(&mut self) -> Result<Vec<LogEntry>, StoreError> {
        emergency_rows(self.tx).map_err(self.err("reading emergency entries"))
    }

    fn subject_changes(&mut self, after: u64) -> Result<Vec<SubjectChange>, StoreError> {
        subject_change_rows(self.tx, after).map_err(self.err("reading subject changes"))
    }

    fn current_digest(&mut self, cr_id: &str) -> Result<Option<(u32, String)>, StoreError> {
        self.tx
            .query_row(
                "SELECT r.revision, r.digest FROM change_requests c
                 JOIN revisions r ON r.cr_id = c.id AND r.revision = c.current_revision
                 WHERE c.id = ?1",
                params![cr_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(self.err(format!("reading {cr_id}")))
    }

    fn store_revision(&mut self, w: writes::RevisionWrite<'_>) -> Result<(), StoreError> {
        let (id, n) = (w.cr_id, w.revision);
        if n == 1 {
            self.tx
                .execute(
                    "INSERT INTO change_requests (id, current_revision, first_submitted_at) VALUES (?1, 1, ?2)",
                    params![id, w.at],
                )
                .map_err(self.err(format!("creating {id}")))?;
        }
        self.tx
            .execute(
                "INSERT INTO revisions (cr_id, revision, digest, document, submitted_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, n, w.digest, w.document, w.at],
            )
            .map_err(self.err(format!("storing {id} revision {n}")))?;
        if n > 1 {
            self.tx
                .execute(
                    "UPDATE change_requests SET current_revision = ?2 WHERE id = ?1",
                    params![id, n],
                )
                .map_err(self.err(format!("advancing {id}")))?;
        }
        Ok(())
    }

    fn append(&mut self, e: writes::EntryWrite<'_>) -> Result<LogEntry, StoreError> {
        let context = format!("appending the {} entry", e.kind.as_str());
        append_entry(self.tx, e.kind, e.cr_id, e.principal, e.body, e.signature)
            .map_err(self.err(context))
    }
}

impl LocalStore {
    /// Runs `write` in one immediate transaction (no other writer in between) and
    /// commits it when it returns `Ok`.
    fn write<T, E: From<StoreError>>(
        &self,
        what: &str,
        write: impl FnOnce(&mut dyn writes::ChainTx) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_err(format!("starting {what}")))?;
        let out = write(&mut LocalTx {
            tx: &tx,
            path: &self.path,
        })?;
        tx.commit()
            .map_err(self.sql_err(format!("committing {what}")))?;
        Ok(out)
    }
}

impl Store for LocalStore {
    fn submit(
        &self,
        batch: &[Submission],
        at: DateTime<Utc>,
    ) -> Result<Vec<SubmitOutcome>, StoreError> {
        self.write("the submission", |tx| writes::submit(tx, batch, at))
    }

    fn list_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredCr>, StoreError> {
        self.page_where(after, limit, None)
    }

    fn list_page_at_gate(
        &self,
        after: Option<&str>,
        limit: usize,
        gate: crate::domain::change_request::Gate,
    ) -> Result<Vec<StoredCr>, StoreError> {
        self.page_where(after, limit, Some(gate))
    }

    fn summary_page(
        &self,
        q: &super::SummaryQuery<'_>,
    ) -> Result<Option<Vec<super::SummarySlot>>, StoreError> {
        let conn = self.lock();
        // Two statements, so that the gate is looked up in its index (one statement with
        // "?3 IS NULL OR" would read every document). Status and risk are filtered here
        // on current rows; the others come back for the reader to evaluate. Without a
        // filter the key is not built at all (the first term holds).
        let sql = if q.gate.is_some() {
            concat!(
                "SELECT c.id, c.current_revision, c.last_seq,
                        s.basis, s.status, s.risk, s.created_at, s.row,
                        CASE WHEN ?7 THEN '' ELSE s.cells END
                 FROM revisions r
                 JOIN change_requests c ON c.id = r.cr_id AND c.current_revision = r.revision
                 LEFT JOIN cr_summaries s ON s.cr_id = c.id
                 WHERE json_extract(r.document, '$.gate') = ?3 AND r.cr_id > ?1
                   AND ((?5 IS NULL AND ?6 IS NULL) OR s.basis IS NULL OR s.basis <> (",
                super::sql_current_basis!(),
                " || ?4)
                        OR ((?5 IS NULL OR s.status = ?5) AND (?6 IS NULL OR s.risk = ?6)))
                 ORDER BY r.cr_id LIMIT ?2"
            )
        } else {
            concat!(
                "SELECT c.id, c.current_revision, c.last_seq,
                        s.basis, s.status, s.risk, s.created_at, s.row,
                        CASE WHEN ?7 THEN '' ELSE s.cells END
                 FROM change_requests c
                 LEFT JOIN cr_summaries s ON s.cr_id = c.id
                 WHERE c.id > ?1 AND ?3 IS NULL
                   AND ((?5 IS NULL AND ?6 IS NULL) OR s.basis IS NULL OR s.basis <> (",
                super::sql_current_basis!(),
                " || ?4)
                        OR ((?5 IS NULL OR s.status = ?5) AND (?6 IS NULL OR s.risk = ?6)))
                 ORDER BY c.id LIMIT ?2"
            )
        };
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(self.sql_err("reading queue summaries"))?;
        let slots = stmt
            .query_map(
                params![
                    q.after.unwrap_or(""),
                    q.limit as i64,
                    q.gate.map(|g| g.as_str()),
                    q.basis_suffix,
                    q.status,
                    q.risk,
                    q.without_cells
                ],
                |r| {
                    let cr_id: String = r.get(0)?;
                    let basis: Option<String> = r.get(3)?;
                    let cached = match basis {
                        Some(basis) => Some(summary_at(r, cr_id.clone(), basis, 4)?),
                        None => None,
                    };
                    Ok(super::SummarySlot {
                        cr_id,
                        revision: r.get(1)?,
                        last_seq: r.get(2)?,
                        cached,
                    })
                },
            )
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("reading queue summaries"))?;
        Ok(Some(slots))
    }

    fn summary_keys(
        &self,
        after: Option<&str>,
        limit: usize,
        gate: Option<crate::domain::change_request::Gate>,
    ) -> Result<Option<Vec<super::SummarySlot>>, StoreError> {
        let conn = self.lock();
        let sql = if gate.is_some() {
            "SELECT c.id, c.current_revision, c.last_seq
             FROM revisions r
             JOIN change_requests c ON c.id = r.cr_id AND c.current_revision = r.revision
             WHERE json_extract(r.document, '$.gate') = ?3 AND r.cr_id > ?1
             ORDER BY r.cr_id LIMIT ?2"
        } else {
            "SELECT c.id, c.current_revision, c.last_seq FROM change_requests c
             WHERE c.id > ?1 AND ?3 IS NULL ORDER BY c.id LIMIT ?2"
        };
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(self.sql_err("reading queue keys"))?;
        let slots = stmt
            .query_map(
                params![after.unwrap_or(""), limit as i64, gate.map(|g| g.as_str())],
                |r| {
                    Ok(super::SummarySlot {
                        cr_id: r.get(0)?,
                        revision: r.get(1)?,
                        last_seq: r.get(2)?,
                        cached: None,
                    })
                },
            )
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("reading queue keys"))?;
        Ok(Some(slots))
    }

    fn summaries_of(
        &self,
        ids: &[&str],
        without_cells: bool,
    ) -> Result<Vec<super::Summary>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT cr_id, basis, status, risk, created_at, row,
                        CASE WHEN ?2 THEN '' ELSE cells END
                 FROM cr_summaries WHERE cr_id IN (SELECT value FROM json_each(?1))",
            )
            .map_err(self.sql_err("reading queue summaries"))?;
        let ids = serde_json::to_string(ids).unwrap_or_default();
        stmt.query_map(params![ids, without_cells], |r| {
            summary_at(r, r.get(0)?, r.get(1)?, 2)
        })
        .and_then(|rows| rows.collect())
        .map_err(self.sql_err("reading queue summaries"))
    }

    fn repair_positions(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let any: bool = conn
            .query_row(super::ANY_WRONG_POSITION_SQL, [], |r| r.get(0))
            .map_err(self.sql_err("checking each CR's last log entry"))?;
        if !any {
            return Ok(Vec::new());
        }
        let mut stmt = conn
            .prepare(super::REPAIR_POSITIONS_SQL)
            .map_err(self.sql_err("setting each CR's last log entry from the log"))?;
        let mut ids: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("setting each CR's last log entry from the log"))?;
        ids.sort();
        Ok(ids)
    }

    fn put_summaries(&self, rows: &[super::Summary]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(self.sql_err("caching queue summaries"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO cr_summaries
                     (cr_id, basis, status, risk, created_at, row, cells)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(self.sql_err("caching queue summaries"))?;
            for s in rows {
                stmt.execute(params![
                    s.cr_id,
                    s.basis,
                    s.status,
                    s.risk,
                    s.created_at,
                    &*s.row,
                    &*s.cells
                ])
                .map_err(self.sql_err("caching queue summaries"))?;
            }
        }
        tx.commit().map_err(self.sql_err("caching queue summaries"))
    }

    fn drop_summaries(&self, ids: &[String]) -> Result<(), StoreError> {
        let conn = self.lock();
        for id in ids {
            conn.execute("DELETE FROM cr_summaries WHERE cr_id = ?1", params![id])
                .map_err(self.sql_err("dropping cached queue rows"))?;
        }
        Ok(())
    }
    fn get(&self, id: &str) -> Result<Option<StoredCr>, StoreError> {
        let row: Option<RevisionRow> = {
            let conn = self.lock();
            conn.query_row(
                &format!("{} WHERE c.id = ?1", current_select()),
                params![id],
                revision_row,
            )
            .optional()
            .map_err(self.sql_err(format!("reading {id}")))?
        };
        row.map(|r| rows::stored_cr(&self.path, r)).transpose()
    }

    fn revision(&self, id: &str, revision: u32) -> Result<Option<StoredRevision>, StoreError> {
        let row: Option<RevisionRow> = {
            let conn = self.lock();
            conn.query_row(
                &format!(
                    "SELECT r.cr_id, r.revision, r.digest, r.document, r.submitted_at, 0, r.submitted_at,
                        {PROVENANCE_COLUMNS}
                     FROM revisions r WHERE r.cr_id = ?1 AND r.revision = ?2"
                ),
                params![id, revision],
                revision_row,
            )
            .optional()
            .map_err(self.sql_err(format!("reading {id} revision {revision}")))?
        };
        row.map(|r| rows::read_revision(&self.path, r)).transpose()
    }

    fn revisions(&self, id: &str) -> Result<Vec<RevisionInfo>, StoreError> {
        let rows: Vec<(u32, String, String)> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached("SELECT revision, digest, submitted_at FROM revisions WHERE cr_id = ?1 ORDER BY revision")
                .map_err(self.sql_err(format!("listing revisions of {id}")))?;
            stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .and_then(|rows| rows.collect())
                .map_err(self.sql_err(format!("listing revisions of {id}")))?
        };
        rows.into_iter()
            .map(|(revision, digest, at)| {
                Ok(RevisionInfo {
                    revision,
                    digest,
                    submitted_at: parse_time(&at).map_err(rows::corrupt_time(
                        &self.path,
                        id.to_string(),
                        revision,
                    ))?,
                })
            })
            .collect()
    }

    fn decisions(&self, cr_id: &str) -> Result<Vec<Decision>, StoreError> {
        let conn = self.lock();
        decisions_in(&conn, &self.path, cr_id)
    }

    fn all_decisions(&self) -> Result<HashMap<String, Vec<Decision>>, StoreError> {
        let rows: Vec<(u64, String)> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached("SELECT seq, body FROM log WHERE kind = 'decision' ORDER BY seq")
                .map_err(self.sql_err("reading decisions"))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(self.sql_err("reading decisions"))?
        };
        let mut out: HashMap<String, Vec<Decision>> = HashMap::new();
        for (seq, body) in rows {
            let d = rows::parse_decision(&self.path, seq, &body)?;
            out.entry(d.cr_id.clone()).or_default().push(d);
        }
        Ok(out)
    }

    fn each_decision_between(
        &self,
        first: &str,
        last: &str,
        each: &mut dyn FnMut(Decision),
    ) -> Result<bool, StoreError> {
        let conn = self.lock();
        // In the index's order (CR, then log position): nothing to sort, one row at a time.
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, body FROM log
                 WHERE cr_id >= ?1 AND cr_id <= ?2 AND kind = 'decision'
                 ORDER BY cr_id, seq",
            )
            .map_err(self.sql_err("reading decisions"))?;
        let mut rows = stmt
            .query(params![first, last])
            .map_err(self.sql_err("reading decisions"))?;
        while let Some(r) = rows.next().map_err(self.sql_err("reading decisions"))? {
            let seq: u64 = r.get(0).map_err(self.sql_err("reading decisions"))?;
            let body = r
                .get_ref(1)
                .and_then(|v| v.as_str().map_err(Into::into))
                .map_err(self.sql_err("reading decisions"))?;
            each(rows::parse_decision(&self.path, seq, body)?);
        }
        Ok(true)
    }

    fn append_evidence(
        &self,
        cr_id: &str,
        build: &mut EvidenceBuilder<'_>,
    ) -> Result<LogEntry, DecideError> {
        self.write("the evidence", |tx| writes::evidence(tx, cr_id, build))
    }

    fn decide(
        &self,
        cr_id: &str,
        build: &mut DecisionBuilder<'_>,
    ) -> Result<Appended, DecideError> {
        self.write("the decision", |tx| writes::decide(tx, cr_id, build))
    }

    fn log_entries(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, kind, cr_id, principal, body, hash, signature, received_at FROM log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(self.sql_err("reading the log"))?;
        stmt.query_map(params![after, limit as i64], log_row)
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("reading the log"))
    }

    fn decision_summaries(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<super::DecisionSummary>, StoreError> {
        type Row = (
            u64,
            String,
            String,
            String,
            u32,
            String,
            String,
            String,
            String,
        );
        let rows: Vec<Row> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, hash, json_extract(body, '$.at'), cr_id, json_extract(body, '$.cr_revision'),
                            json_extract(body, '$.cr_digest'), json_extract(body, '$.verdict'),
                            json_extract(body, '$.role'), principal
                     FROM log WHERE kind = 'decision' AND seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(self.sql_err("reading the decision history"))?;
            stmt.query_map(params![after, limit as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("reading the decision history"))?
        };
        rows.into_iter()
            .map(
                |(seq, hash, at, cr_id, cr_revision, cr_digest, verdict, role, principal)| {
                    Ok(super::DecisionSummary {
                        at: parse_time(&at).map_err(rows::corrupt_time(
                            &self.path,
                            format!("log entry {seq}"),
                            0,
                        ))?,
                        seq,
                        hash,
                        cr_id,
                        cr_revision,
                        cr_digest,
                        verdict,
                        role,
                        principal,
                    })
                },
            )
            .collect()
    }

    fn submission_times(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let rows: Vec<(String, String)> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached("SELECT id, first_submitted_at FROM change_requests")
                .map_err(self.sql_err("reading submission times"))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(self.sql_err("reading submission times"))?
        };
        Ok(rows
            .into_iter()
            .filter_map(|(id, at)| parse_time(&at).ok().map(|t| (id, t)))
            .collect())
    }

    fn event_cursor(&self) -> Result<u64, StoreError> {
        let conn = self.lock();
        conn.query_row("SELECT seq FROM event_cursor WHERE id = 1", [], |r| {
            r.get(0)
        })
        .map_err(self.sql_err("reading the events cursor"))
    }

    fn enqueue_events(
        &self,
        from: u64,
        to: u64,
        deliveries: &[super::NewDelivery],
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let what = "queueing events";
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_err(what))?;
        let moved = tx
            .execute(
                "UPDATE event_cursor SET seq = ?2 WHERE id = 1 AND seq = ?1",
                params![from, to],
            )
            .map_err(self.sql_err(what))?;
        if moved == 0 {
            return Ok(false);
        }
        queue_deliveries(&tx, deliveries).map_err(self.sql_err(what))?;
        tx.commit().map_err(self.sql_err(what))?;
        Ok(true)
    }

    fn enqueue_deliveries(&self, deliveries: &[super::NewDelivery]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let what = "queueing reminders";
        let tx = conn.transaction().map_err(self.sql_err(what))?;
        queue_deliveries(&tx, deliveries).map_err(self.sql_err(what))?;
        tx.commit().map_err(self.sql_err(what))
    }

    fn claim_due(
        &self,
        subscribers: &[String],
        now: &str,
        lease_until: &str,
        limit: usize,
    ) -> Result<Vec<super::Delivery>, StoreError> {
        let mut conn = self.lock();
        let what = "claiming due events";
        let subscribers = serde_json::to_string(subscribers).unwrap_or_else(|_| "[]".into());
        // A plain read first: with nothing due (the usual case) no write lock is taken.
        let any: Option<i64> = conn
            .prepare_cached(
                "SELECT 1 FROM event_deliveries
                 WHERE delivered_at IS NULL AND next_at <= ?1
                   AND subscriber IN (SELECT value FROM json_each(?2)) LIMIT 1",
            )
            .and_then(|mut stmt| stmt.query_row(params![now, subscribers], |r| r.get(0)))
            .optional()
            .map_err(self.sql_err(what))?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_err(what))?;
        let due: Vec<super::Delivery> = {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM event_deliveries
                     WHERE delivered_at IS NULL AND next_at <= ?1
                       AND subscriber IN (SELECT value FROM json_each(?3))
                     ORDER BY next_at, delivery_id LIMIT ?2"
                ))
                .map_err(self.sql_err(what))?;
            stmt.query_map(params![now, limit as i64, subscribers], delivery_row)
                .and_then(|rows| rows.collect())
                .map_err(self.sql_err(what))?
        };
        for d in &due {
            tx.execute(
                "UPDATE event_deliveries SET next_at = ?2 WHERE delivery_id = ?1",
                params![d.queued.delivery_id, lease_until],
            )
            .map_err(self.sql_err(what))?;
        }
        tx.commit().map_err(self.sql_err(what))?;
        Ok(due)
    }

    fn record_attempts(&self, attempts: &[super::Attempt]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let what = "recording delivery attempts";
        let tx = conn.transaction().map_err(self.sql_err(what))?;
        for a in attempts {
            tx.execute(
                "UPDATE event_deliveries SET attempts = attempts + ?5, delivered_at = ?2, last_error = ?3, next_at = ?4
                 WHERE delivery_id = ?1",
                params![
                    a.delivery_id,
                    a.delivered_at,
                    a.error,
                    a.next_at,
                    i64::from(a.tried)
                ],
            )
            .map_err(self.sql_err(what))?;
        }
        tx.commit().map_err(self.sql_err(what))
    }

    fn deliveries(
        &self,
        pending_only: bool,
        limit: usize,
    ) -> Result<Vec<super::Delivery>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM event_deliveries
                 WHERE (?1 = 0 OR delivered_at IS NULL)
                 ORDER BY created_at DESC, delivery_id LIMIT ?2"
            ))
            .map_err(self.sql_err("reading events"))?;
        stmt.query_map(params![pending_only as i64, limit as i64], delivery_row)
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("reading events"))
    }

    fn receive_delivery(
        &self,
        source: &str,
        delivery_id: &str,
        at: &str,
        forget_before: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let what = "noting a webhook delivery";
        let tx = conn.transaction().map_err(self.sql_err(what))?;
        tx.execute(
            "DELETE FROM received_deliveries WHERE received_at < ?1",
            params![forget_before],
        )
        .map_err(self.sql_err(what))?;
        let added = tx
            .execute(
                "INSERT INTO received_deliveries (source, delivery_id, received_at)
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![source, delivery_id, at],
            )
            .map_err(self.sql_err(what))?;
        tx.commit().map_err(self.sql_err(what))?;
        Ok(added == 1)
    }

    fn forget_delivery(&self, source: &str, delivery_id: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "DELETE FROM received_deliveries WHERE source = ?1 AND delivery_id = ?2",
                params![source, delivery_id],
            )
            .map(|_| ())
            .map_err(self.sql_err("forgetting a webhook delivery"))
    }

    fn kpi_readings(&self, cr_id: &str) -> Result<Vec<LogEntry>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, kind, cr_id, principal, body, hash, signature, received_at FROM log WHERE cr_id = ?1 AND kind = 'kpi-reading' ORDER BY seq",
            )
            .map_err(self.sql_err(format!("reading the KPI readings of {cr_id}")))?;
        stmt.query_map(params![cr_id], log_row)
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err(format!("reading the KPI readings of {cr_id}")))
    }

    fn decision_entries(&self, cr_id: &str) -> Result<Vec<LogEntry>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, kind, cr_id, principal, body, hash, signature, received_at FROM log WHERE cr_id = ?1 AND kind = 'decision' ORDER BY seq",
            )
            .map_err(self.sql_err(format!("reading decisions on {cr_id}")))?;
        stmt.query_map(params![cr_id], log_row)
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err(format!("reading decisions on {cr_id}")))
    }

    fn emergency_entries(&self) -> Result<Vec<LogEntry>, StoreError> {
        let conn = self.lock();
        emergency_rows(&conn).map_err(self.sql_err("reading emergency entries"))
    }

    fn subject_changes(&self, after: u64) -> Result<Vec<SubjectChange>, StoreError> {
        let conn = self.lock();
        subject_change_rows(&conn, after).map_err(self.sql_err("reading subject changes"))
    }

    fn append_emergency(
        &self,
        build: &mut super::EmergencyBuilder<'_>,
    ) -> Result<LogEntry, DecideError> {
        self.write("the emergency entry", |tx| writes::emergency(tx, build))
    }

    fn recorded_head(&self) -> Result<Head, StoreError> {
        read_head(&self.lock()).map_err(self.sql_err("reading the log head"))
    }

    fn head_listener(&self) -> Result<Option<Box<dyn super::HeadListener>>, StoreError> {
        Ok(Some(Box::new(DataVersion::open(&self.path)?)))
    }

    fn requesters(&self) -> Result<HashMap<(String, String), String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT cr_id, digest, json_extract(document, '$.requester') FROM revisions",
            )
            .map_err(self.sql_err("reading requesters"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(((r.get(0)?, r.get(1)?), r.get::<_, Option<String>>(2)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.sql_err("reading requesters"))?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    fn policy_entries(&self, after: u64) -> Result<Vec<LogEntry>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, kind, cr_id, principal, body, hash, signature, received_at FROM log
                 WHERE kind = 'policy-adopted' AND seq > ?1 ORDER BY seq",
            )
            .map_err(self.sql_err("reading the policy history"))?;
        stmt.query_map(params![after], log_row)
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("reading the policy history"))
    }

    fn adopt_genesis(
        &self,
        build: &mut dyn FnMut(&Head) -> Result<NewEntry, DecideError>,
    ) -> Result<Option<LogEntry>, DecideError> {
        self.write("the policy adoption", |tx| writes::genesis(tx, build))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::canonical::{digest, to_canonical_string};
    use crate::demo;
    use crate::domain::change_request::parse_document;

    fn submission(i: usize) -> Submission {
        let (cr, document) = parse_document(demo::FIXTURES[i].1.as_bytes()).unwrap();
        Submission::new(cr, document)
    }

    #[test]
    fn a_new_store_is_at_the_latest_schema_and_reopens_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/t.db");
        let store = LocalStore::create(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), LATEST);
        drop(store);
        assert_eq!(
            LocalStore::open(&path).unwrap().schema_version().unwrap(),
            LATEST
        );
    }

    #[test]
    fn a_store_from_a_newer_tollgate_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(LocalStore::create(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        drop(conn);
        let before = std::fs::read(&path).unwrap();
        let err = LocalStore::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found, .. } if found == LATEST + 1),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade tollgate"));
        assert!(
            std::fs::read(&path).unwrap() == before,
            "the newer store's file was changed by the refused open"
        );
        for side in ["t.db-wal", "t.db-journal"] {
            let p = dir.path().join(side);
            assert!(
                !p.exists() || std::fs::metadata(&p).unwrap().len() == 0,
                "{side} written"
            );
        }
    }

    #[test]
    fn a_schema_1_store_is_upgraded_and_its_revisions_enter_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            let s = submission(2);
            let doc = to_canonical_string(&s.document);
            conn.execute(
                "INSERT INTO change_requests VALUES ('CR-1044', 1, '2026-11-24T10:00:00Z')",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO revisions VALUES ('CR-1044', 1, ?1, ?2, '2026-11-24T10:00:00Z')",
                params![digest(&s.document), doc],
            )
            .unwrap();
        }
        let store = LocalStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), LATEST);
        let log = store.log_entries(0, 10).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].kind, "cr-submitted");
        assert!(log[0].body.contains("\"cr_id\":\"CR-1044\""));
        let last: i64 = store
            .lock()
            .query_row("SELECT last_seq FROM change_requests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            last, 1,
            "each CR's last log entry is filled in from the backfilled log"
        );
        let policy = demo::policy();
        let opts = crate::store::VerifyOptions {
            unmigrated_policy: Some(&policy),
            ..Default::default()
        };
        let report = crate::store::verify_log(&store, &opts).unwrap();
        assert!(report.ok(), "{:?}", report.first_bad);
        assert_eq!(store.recorded_head().unwrap().seq, 1);
    }

    #[test]
    fn opening_a_missing_store_does_not_create_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.db");
        assert!(matches!(
            LocalStore::open(&path),
            Err(StoreError::NotInitialised { .. })
        ));
        assert!(!path.exists());
    }

    #[test]
    fn stored_revisions_cannot_be_rewritten_even_with_sql() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = LocalStore::create(&path).unwrap();
        store.submit(&[submission(0)], Utc::now()).unwrap();
        let conn = store.lock();
        let update = conn.execute("UPDATE revisions SET document = '{}'", []);
        assert!(
            update
                .unwrap_err()
                .to_string()
                .contains("revisions are immutable")
        );
        let delete = conn.execute("DELETE FROM revisions", []);
        assert!(delete.unwrap_err().to_string().contains("never deleted"));
    }

    #[test]
    fn a_damaged_document_is_reported_with_its_id_and_revision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = LocalStore::create(&path).unwrap();
        store.submit(&[submission(1)], Utc::now()).unwrap();
        {
            let conn = store.lock();
            conn.execute_batch(
                "DROP TRIGGER revisions_are_immutable;
                 UPDATE revisions SET document = replace(document, '\"gate\":\"data\"', '\"gate\":\"dta\"');",
            )
            .unwrap();
        }
        let err = store.list().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("CR-1043 revision 1 is damaged"), "{msg}");
        assert!(msg.contains("the stored revision was rewritten"), "{msg}");
    }

    #[test]
    fn a_failing_batch_rolls_back_entirely() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = LocalStore::create(&path).unwrap();
        // The second CR of the batch fails to insert; the first must not survive alone.
        {
            let conn = store.lock();
            conn.execute_batch(
                "CREATE TRIGGER fail_second BEFORE INSERT ON revisions WHEN NEW.cr_id = 'CR-1043'
                 BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END;",
            )
            .unwrap();
        }
        let err = store
            .submit(&[submission(0), submission(1)], Utc::now())
            .unwrap_err();
        assert!(err.to_string().contains("disk full (simulated)"), "{err}");
        assert!(
            store.list().unwrap().is_empty(),
            "CR-1042 must not be stored alone"
        );
    }

    /// Two writers checked "POL-3 is free" (or "still at revision 1") at the same time: the
    /// store, not the check, decides which one lands, and the other stores nothing.
    #[test]
    fn a_submission_overtaken_by_another_writer_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::create(&dir.path().join("t.db")).unwrap();
        store
            .submit(&[submission(0).expecting(0)], Utc::now())
            .unwrap();
        let head = store.recorded_head().unwrap();

        let mut revised = submission(0);
        revised.document["title"] = "someone else's".into();
        let err = store
            .submit(&[submission(1), revised.clone().expecting(0)], Utc::now())
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Moved { id, expected: 0, found: 1 } if id == "CR-1042"),
            "{err:?}"
        );
        assert!(err.to_string().contains("nothing was stored"), "{err}");
        assert_eq!(store.recorded_head().unwrap(), head, "the log did not move");
        assert!(
            store.get("CR-1043").unwrap().is_none(),
            "the batch rolled back"
        );
        assert_eq!(store.revisions("CR-1042").unwrap().len(), 1);

        let landed = store
            .submit(&[revised.clone().expecting(1)], Utc::now())
            .unwrap();
        assert!(matches!(
            landed[0],
            SubmitOutcome::Revised { revision: 2, .. }
        ));
        assert!(matches!(
            store.submit(&[revised.expecting(1)], Utc::now()),
            Err(StoreError::Moved {
                expected: 1,
                found: 2,
                ..
            })
        ));
    }
}
