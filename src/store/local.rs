//! The embedded store: one SQLite file, WAL journal, every write in an immediate
//! transaction.
//!
//! Several processes may use the same file at once (a reviewer's TUI, a CI `submit`, a
//! `verify`): WAL lets readers proceed while one writer holds the lock, `BEGIN IMMEDIATE`
//! takes the write lock up front so read-then-write sequences cannot interleave, and the
//! busy timeout makes a second writer wait instead of failing. `synchronous = FULL`
//! means a commit that returned has reached the disk.

use super::migrations::{LATEST, MIGRATIONS};
use super::{
    RevisionInfo, Store, StoreError, StoredCr, StoredRevision, Submission, SubmitOutcome,
    typed_view,
};
use crate::audit::canonical::{digest, to_canonical_string};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;
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
        Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
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

    fn connect(path: &Path, flags: OpenFlags) -> Result<Self, StoreError> {
        let err = |context: &str| {
            let path = path.to_path_buf();
            let context = context.to_string();
            move |source| StoreError::Sqlite {
                path,
                context,
                source,
            }
        };
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(err("opening the database"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(err("setting the busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err("switching to WAL (is this a tollgate store?)"))?;
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

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions
        // roll back on drop), so a poisoned mutex is still safe to use.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sql_err(&self, context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
        let path = self.path.clone();
        let context = context.into();
        move |source| StoreError::Sqlite {
            path,
            context,
            source,
        }
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

    fn read_revision(
        &self,
        id: String,
        revision: u32,
        digest_text: String,
        document: String,
        submitted_at: String,
    ) -> Result<StoredRevision, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            path: self.path.clone(),
            id: id.clone(),
            revision,
            detail,
        };
        let value: Value =
            serde_json::from_str(&document).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        let cr = typed_view(&value).map_err(|e| corrupt(e.to_string()))?;
        if cr.id != id {
            return Err(corrupt(format!(
                "document id {} differs from its row",
                cr.id
            )));
        }
        Ok(StoredRevision {
            cr,
            document: value,
            revision,
            digest: digest_text,
            submitted_at: parse_time(&submitted_at).map_err(corrupt)?,
        })
    }
}

fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("bad timestamp {s:?}: {e}"))
}

/// Row shape shared by the current-revision queries.
type RevisionRow = (String, u32, String, String, String, u32, String);

const CURRENT_SELECT: &str = "SELECT c.id, r.revision, r.digest, r.document, r.submitted_at,
        (SELECT COUNT(*) FROM revisions x WHERE x.cr_id = c.id), c.first_submitted_at
     FROM change_requests c
     JOIN revisions r ON r.cr_id = c.id AND r.revision = c.current_revision";

fn revision_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RevisionRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

impl LocalStore {
    fn stored_cr(&self, row: RevisionRow) -> Result<StoredCr, StoreError> {
        let (id, revision, digest_text, document, submitted_at, count, first) = row;
        let first_submitted_at = parse_time(&first).map_err(|detail| StoreError::Corrupt {
            path: self.path.clone(),
            id: id.clone(),
            revision,
            detail,
        })?;
        Ok(StoredCr {
            current: self.read_revision(id, revision, digest_text, document, submitted_at)?,
            revision_count: count,
            first_submitted_at,
        })
    }
}

impl Store for LocalStore {
    fn submit(
        &self,
        batch: &[Submission],
        at: DateTime<Utc>,
    ) -> Result<Vec<SubmitOutcome>, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_err("starting the submission"))?;
        let now = time_text(at);
        let mut outcomes = Vec::with_capacity(batch.len());
        for s in batch {
            let id = &s.cr.id;
            let canonical = to_canonical_string(&s.document);
            let new_digest = digest(&s.document);
            let current: Option<(u32, String)> = tx
                .query_row(
                    "SELECT r.revision, r.digest FROM change_requests c
                     JOIN revisions r ON r.cr_id = c.id AND r.revision = c.current_revision
                     WHERE c.id = ?1",
                    params![id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(self.sql_err(format!("reading {id}")))?;
            let outcome = match current {
                Some((revision, old)) if old == new_digest => SubmitOutcome::Unchanged {
                    id: id.clone(),
                    revision,
                    digest: old,
                },
                Some((revision, old)) => {
                    let next = revision + 1;
                    tx.execute(
                        "INSERT INTO revisions (cr_id, revision, digest, document, submitted_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![id, next, new_digest, canonical, now],
                    )
                    .map_err(self.sql_err(format!("storing {id} revision {next}")))?;
                    tx.execute(
                        "UPDATE change_requests SET current_revision = ?2 WHERE id = ?1",
                        params![id, next],
                    )
                    .map_err(self.sql_err(format!("advancing {id}")))?;
                    SubmitOutcome::Revised {
                        id: id.clone(),
                        revision: next,
                        digest: new_digest,
                        previous_digest: old,
                    }
                }
                None => {
                    tx.execute(
                        "INSERT INTO change_requests (id, current_revision, first_submitted_at) VALUES (?1, 1, ?2)",
                        params![id, now],
                    )
                    .map_err(self.sql_err(format!("creating {id}")))?;
                    tx.execute(
                        "INSERT INTO revisions (cr_id, revision, digest, document, submitted_at) VALUES (?1, 1, ?2, ?3, ?4)",
                        params![id, new_digest, canonical, now],
                    )
                    .map_err(self.sql_err(format!("storing {id} revision 1")))?;
                    SubmitOutcome::Created {
                        id: id.clone(),
                        revision: 1,
                        digest: new_digest,
                    }
                }
            };
            outcomes.push(outcome);
        }
        tx.commit()
            .map_err(self.sql_err("committing the submission"))?;
        Ok(outcomes)
    }

    fn list(&self) -> Result<Vec<StoredCr>, StoreError> {
        let rows: Vec<RevisionRow> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached(&format!("{CURRENT_SELECT} ORDER BY c.id"))
                .map_err(self.sql_err("listing change requests"))?;
            stmt.query_map([], revision_row)
                .and_then(|rows| rows.collect())
                .map_err(self.sql_err("listing change requests"))?
        };
        rows.into_iter().map(|row| self.stored_cr(row)).collect()
    }

    fn get(&self, id: &str) -> Result<Option<StoredCr>, StoreError> {
        let row: Option<RevisionRow> = {
            let conn = self.lock();
            conn.query_row(
                &format!("{CURRENT_SELECT} WHERE c.id = ?1"),
                params![id],
                revision_row,
            )
            .optional()
            .map_err(self.sql_err(format!("reading {id}")))?
        };
        row.map(|r| self.stored_cr(r)).transpose()
    }

    fn revision(&self, id: &str, revision: u32) -> Result<Option<StoredRevision>, StoreError> {
        let row: Option<(String, String, String)> = {
            let conn = self.lock();
            conn.query_row(
                "SELECT digest, document, submitted_at FROM revisions WHERE cr_id = ?1 AND revision = ?2",
                params![id, revision],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.sql_err(format!("reading {id} revision {revision}")))?
        };
        row.map(|(d, doc, at)| self.read_revision(id.to_string(), revision, d, doc, at))
            .transpose()
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
                    submitted_at: parse_time(&at).map_err(|detail| StoreError::Corrupt {
                        path: self.path.clone(),
                        id: id.to_string(),
                        revision,
                        detail,
                    })?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;
    use crate::domain::change_request::parse_document;

    fn submission(i: usize) -> Submission {
        let (cr, document) = parse_document(demo::FIXTURES[i].1.as_bytes()).unwrap();
        Submission { cr, document }
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
        let err = LocalStore::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found, .. } if found == LATEST + 1),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade tollgate"));
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
        assert!(msg.contains("$.gate"), "{msg}");
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
}
