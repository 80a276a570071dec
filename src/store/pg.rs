//! The team store on PostgreSQL: several `tollgate serve` replicas share one database and
//! hold nothing the others need.
//!
//! Every write runs in one transaction that first locks the chain head's row (`SELECT …
//! FROM log_head … FOR UPDATE`), so appends from any number of replicas are linearised
//! and the chain can never fork; the reads a builder signs against happen after that
//! lock, so they see every earlier append. The database itself refuses to change or
//! delete log entries and revisions (triggers), and moves the head only onto an entry
//! that exists. Connections come from a pool that replaces broken ones, so a database
//! restart costs the requests in flight (answered "unavailable"), not the server.

use super::pg_schema::{LATEST, MIGRATIONS};
use super::rows::{self, RevisionRow, parse_time, time_text};
use super::writes::{self, ChainTx, EntryWrite, RevisionWrite};
use super::{
    Appended, DecideError, DecisionBuilder, DecisionSummary, EmergencyBuilder, EvidenceBuilder,
    Head, LogEntry, NewEntry, RevisionInfo, Store, StoreError, StoredCr, StoredRevision,
    Submission, SubmitOutcome, Summary, SummaryQuery, SummarySlot,
};
use crate::domain::change_request::Gate;
use crate::domain::decision::Decision;
use crate::domain::emergency::SubjectChange;
use chrono::{DateTime, Utc};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{GenericClient, NoTls, Row, Statement};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a request waits for a connection before the database counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections per process: enough for the server's blocking pool to keep the
/// database busy without one replica taking every connection PostgreSQL allows.
const POOL_SIZE: u32 = 16;

/// Serialises schema changes between processes that open the same database at once.
const MIGRATION_LOCK: i64 = 0x746f_6c6c_6761_7465; // "tollgate"

type Pool = r2d2::Pool<Manager>;
type Conn = r2d2::PooledConnection<Manager>;
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Statements prepared on one connection, by their text: the store sends the same few
/// dozen statements over and over, so each is parsed and planned once per connection
/// instead of on every call (`verify` reads a revision per submission entry).
type Prepared = HashMap<String, Statement>;

/// A pooled connection and the statements prepared on it (they live and die with it).
pub struct PgConn {
    client: postgres::Client,
    prepared: Prepared,
}

/// Opens connections for the pool, checks them on checkout (a database that restarted
/// leaves broken ones behind, which are replaced rather than handed out).
#[derive(Debug)]
pub struct Manager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn {
            client: self.config.connect(NoTls)?,
            prepared: Prepared::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// A client (a connection or a transaction on it) that prepares each statement once.
struct Cached<'a, C: GenericClient> {
    client: &'a mut C,
    prepared: &'a mut Prepared,
}

impl<C: GenericClient> Cached<'_, C> {
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.prepared.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query(&s, params)
    }

    fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query_opt(&s, params)
    }

    fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query_one(&s, params)
    }

    fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.execute(&s, params)
    }

    /// Rows as they arrive, for reads too large to hold at once.
    fn query_raw<'p>(
        &'p mut self,
        sql: &str,
        params: &[&'p (dyn postgres::types::ToSql + Sync)],
    ) -> Result<postgres::RowIter<'p>, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query_raw(&s, params.iter().copied())
    }

    fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.client.batch_execute(sql)
    }

    fn simple_query(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.client.simple_query(sql).map(|_| ())
    }
}

impl PgConn {
    /// The connection, preparing each statement once.
    fn cached(&mut self) -> Cached<'_, postgres::Client> {
        Cached {
            client: &mut self.client,
            prepared: &mut self.prepared,
        }
    }
}

/// Taken first by every transaction that appends: writers on any replica wait here.
const LOCK_HEAD: &str = "SELECT seq FROM log_head WHERE id = 1 FOR UPDATE";

/// The pool could not hand out a connection in time: the database is down.
fn no_connection(label: &Path) -> impl FnOnce(r2d2::Error) -> StoreError {
    let database = label.display().to_string();
    move |e| StoreError::DatabaseDown {
        database,
        detail: e.to_string(),
    }
}

/// Whether `text` names a PostgreSQL database rather than a file.
pub fn is_database_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// A store in a PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    /// How to connect: the pool's, and a head listener's connection of its own.
    config: std::sync::Arc<postgres::Config>,
    /// The database as errors name it (host and database, never the password).
    label: PathBuf,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.label)
            .finish()
    }
}

/// What to do with a database that has no tollgate schema yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// `init`: create it.
    Create,
    /// Anything else: refuse, saying how to create it.
    Require,
}

impl PgStore {
    /// Opens the database at `url`, which `tollgate init --database` prepared, upgrading
    /// its schema if it is older than this build.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        Self::connect(url, Schema::Require)
    }

    /// Opens the database at `url`, creating tollgate's tables if it has none.
    pub fn create(url: &str) -> Result<PgStore, StoreError> {
        Self::connect(url, Schema::Create)
    }

    /// Where the store lives, as errors and messages name it.
    pub fn location(&self) -> &Path {
        &self.label
    }

    /// A few words for a status bar: `postgres DB`, and `@HOST` for a network host (a
    /// local socket directory says nothing a reviewer needs).
    pub fn short_label(&self) -> String {
        let db = self
            .config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres");
        match self.config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(host)) => format!("postgres {db}@{host}"),
            _ => format!("postgres {db}"),
        }
    }

    fn connect(url: &str, schema: Schema) -> Result<PgStore, StoreError> {
        let config: postgres::Config =
            url.parse()
                .map_err(|e: postgres::Error| StoreError::BadDatabaseUrl {
                    url: redact(url),
                    detail: e.to_string(),
                })?;
        let label = PathBuf::from(describe(&config));
        let manager = Manager {
            config: config.clone(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager)
            .map_err(no_connection(&label))?;
        let store = PgStore {
            pool,
            config: std::sync::Arc::new(config),
            label,
        };
        store.migrate(schema)?;
        Ok(store)
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(no_connection(&self.label))
    }

    fn err(&self, context: impl Into<String>) -> impl FnOnce(postgres::Error) -> StoreError {
        pg_err(&self.label, context)
    }

    /// Brings the schema up to [`LATEST`] under an advisory lock, all migrations in one
    /// transaction: a crash leaves the previous version, and a newer schema is refused
    /// before anything is written.
    fn migrate(&self, schema: Schema) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .client
            .transaction()
            .map_err(self.err("starting a migration"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(self.err("locking the schema"))?;
        let version = read_version(&mut tx).map_err(self.err("reading the schema version"))?;
        let version = match version {
            Some(v) => v,
            None if schema == Schema::Require => {
                return Err(StoreError::DatabaseNotInitialised {
                    database: self.label.display().to_string(),
                });
            }
            None => {
                let foreign = tx
                    .query_one("SELECT to_regclass('log') IS NOT NULL", &[])
                    .and_then(|r| r.try_get::<_, bool>(0))
                    .map_err(self.err("looking for tollgate's tables"))?;
                if foreign {
                    return Err(StoreError::NotAStore {
                        path: self.label.clone(),
                        why: "it has a table named log but no tollgate schema".into(),
                    });
                }
                0
            }
        };
        if version > LATEST {
            return Err(StoreError::NewerSchema {
                path: self.label.clone(),
                found: version,
                supported: LATEST,
            });
        }
        if version == LATEST {
            return tx.commit().map_err(self.err("finishing migrations"));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(sql)
                .map_err(self.err(format!("applying migration {}", i + 1)))?;
        }
        tx.execute(
            "INSERT INTO tollgate_schema (id, version) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
            &[&LATEST],
        )
        .map_err(self.err("recording the schema version"))?;
        tx.commit().map_err(self.err("committing migrations"))
    }

    /// The schema version of the open store.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let mut conn = self.conn()?;
        read_version(&mut conn.client)
            .map_err(self.err("reading the schema version"))
            .map(|v| v.unwrap_or(0))
    }

    /// Runs `write` in one transaction holding the chain head's row lock (no other
    /// writer, on any replica, in between) and commits when it returns `Ok`.
    fn write<T, E: From<StoreError>>(
        &self,
        what: &str,
        write: impl FnOnce(&mut dyn ChainTx) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.conn()?;
        let PgConn { client, prepared } = &mut *conn;
        let mut tx = client
            .transaction()
            .map_err(self.err(format!("starting {what}")))?;
        tx.execute(LOCK_HEAD, &[])
            .map_err(self.err("locking the log head"))?;
        let out = write(&mut PgTx {
            tx: Cached {
                client: &mut tx,
                prepared,
            },
            label: &self.label,
        })?;
        tx.commit()
            .map_err(self.err(format!("committing {what}")))?;
        Ok(out)
    }

    /// Runs one read on a pooled connection.
    fn read<T>(
        &self,
        context: &str,
        read: impl FnOnce(&mut Cached<'_, postgres::Client>) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        read(&mut conn.cached()).map_err(self.err(context))
    }

    fn page_where(
        &self,
        after: Option<&str>,
        limit: usize,
        gate: Option<Gate>,
    ) -> Result<Vec<StoredCr>, StoreError> {
        let sql = if gate.is_some() {
            format!(
                "{} WHERE (r.document::jsonb ->> 'gate') = $3 AND r.cr_id > $1 ORDER BY r.cr_id LIMIT $2",
                current_select()
            )
        } else {
            format!(
                "{} WHERE c.id > $1 AND $3::text IS NULL ORDER BY c.id LIMIT $2",
                current_select()
            )
        };
        let gate = gate.map(|g| g.as_str().to_string());
        let found = self.read("listing change requests", |c| {
            c.query(&sql, &[&after.unwrap_or(""), &limit_of(limit), &gate])
        })?;
        let parsed = found
            .iter()
            .map(|r| revision_row(&self.label, r))
            .collect::<Result<Vec<_>, _>>()?;
        rows::stored_crs(&self.label, parsed)
    }

    /// Copies every row of `from` into this (empty) store verbatim: revisions, the log
    /// with its hashes, signatures and receipt times, and the recorded head. The copy
    /// verifies exactly as the original does. Refused when this store is not empty.
    pub fn copy_from(
        &self,
        from: &dyn Store,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .client
            .transaction()
            .map_err(self.err("starting the copy"))?;
        tx.execute(LOCK_HEAD, &[])
            .map_err(self.err("locking the log head"))?;
        let occupied = tx
            .query_one(
                "SELECT (SELECT COUNT(*) FROM log) + (SELECT COUNT(*) FROM change_requests)",
                &[],
            )
            .and_then(|r| r.try_get::<_, i64>(0))
            .map_err(self.err("checking the target is empty"))?;
        if occupied > 0 {
            return Err(StoreError::NotEmpty {
                database: self.label.display().to_string(),
            });
        }
        // Revisions first (the log's submission entries name them), CR by CR.
        let mut after: Option<String> = None;
        loop {
            let page = from.list_page(after.as_deref(), 1000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.current.cr.id.clone());
            for cr in &page {
                let id = &cr.current.cr.id;
                tx.execute(
                    "INSERT INTO change_requests (id, current_revision, first_submitted_at) VALUES ($1, $2, $3)",
                    &[id, &i64::from(cr.current.revision), &time_text(cr.first_submitted_at)],
                )
                .map_err(self.err(format!("copying {id}")))?;
                for info in from.revisions(id)? {
                    let revision =
                        from.revision(id, info.revision)?
                            .ok_or_else(|| StoreError::Corrupt {
                                path: self.label.clone(),
                                id: id.clone(),
                                revision: info.revision,
                                detail: "listed but not readable in the source".into(),
                            })?;
                    tx.execute(
                        "INSERT INTO revisions (cr_id, revision, digest, document, submitted_at) VALUES ($1, $2, $3, $4, $5)",
                        &[
                            id,
                            &i64::from(info.revision),
                            &revision.digest,
                            &crate::audit::canonical::to_canonical_string(&revision.document),
                            &time_text(revision.submitted_at),
                        ],
                    )
                    .map_err(self.err(format!("copying {id} revision {}", info.revision)))?;
                }
            }
        }
        let mut seq = 0u64;
        loop {
            let entries = from.log_entries(seq, 5000)?;
            let Some(last) = entries.last() else { break };
            seq = last.seq;
            for e in &entries {
                tx.execute(
                    "INSERT INTO log (seq, kind, cr_id, principal, body, hash, signature, received_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &seq_of(e.seq),
                        &e.kind,
                        &e.cr_id,
                        &e.principal,
                        &e.body,
                        &e.hash,
                        &e.signature,
                        &e.received_at,
                    ],
                )
                .map_err(self.err(format!("copying log entry {}", e.seq)))?;
            }
            progress(seq);
        }
        let head = from.recorded_head()?;
        tx.execute(
            "UPDATE log_head SET seq = $1, hash = $2 WHERE id = 1",
            &[&seq_of(head.seq), &head.hash],
        )
        .map_err(self.err("recording the copied head"))?;
        tx.commit().map_err(self.err("committing the copy"))?;
        // Fresh statistics, so the planner pages the queue through the indexes at once
        // rather than after autovacuum's next look (best effort: the copy is done).
        let _ = self.read("analysing the copy", |c| c.batch_execute("ANALYZE"));
        Ok(seq)
    }
}

/// The tokens of a team server whose store is this database: replicas share them, so a
/// token added or revoked on one host holds on every replica at its next request.
impl PgStore {
    /// The principal a token's hash belongs to.
    pub fn token_principal(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        self.read("reading tokens", |c| {
            c.query_opt(
                "SELECT principal FROM api_tokens WHERE sha256 = $1",
                &[&sha256],
            )?
            .map(|r| r.try_get::<_, String>(0))
            .transpose()
        })
    }

    /// Every token, oldest first.
    pub fn tokens(&self) -> Result<Vec<super::TokenEntry>, StoreError> {
        self.read("reading tokens", |c| {
            c.query(
                "SELECT id, sha256, principal, label, created FROM api_tokens ORDER BY created, id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(super::TokenEntry {
                    id: r.try_get(0)?,
                    sha256: r.try_get(1)?,
                    principal: r.try_get(2)?,
                    label: r.try_get(3)?,
                    created: r.try_get(4)?,
                })
            })
            .collect()
        })
    }

    /// Stores a token's entry.
    pub fn add_token(&self, entry: &super::TokenEntry) -> Result<(), StoreError> {
        self.read("adding a token", |c| {
            c.execute(
                "INSERT INTO api_tokens (id, sha256, principal, label, created) VALUES ($1, $2, $3, $4, $5)",
                &[&entry.id, &entry.sha256, &entry.principal, &entry.label, &entry.created],
            )
            .map(|_| ())
        })
    }

    /// Removes the token with id `id` (exactly).
    pub fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.read("revoking a token", |c| {
            c.execute("DELETE FROM api_tokens WHERE id = $1", &[&id])
                .map(|_| ())
        })
    }
}

fn read_version(c: &mut impl GenericClient) -> Result<Option<i64>, postgres::Error> {
    let exists: bool = c
        .query_one("SELECT to_regclass('tollgate_schema') IS NOT NULL", &[])?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    c.query_opt("SELECT version FROM tollgate_schema WHERE id = 1", &[])?
        .map(|r| r.try_get::<_, i64>(0))
        .transpose()
        .map(|v| v.or(Some(0)))
}

/// Host and database of a connection, for messages (never the password).
fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(dir) => dir.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgres database {db} on {host}")
}

/// A database URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

/// Listens to the database's append notifications (see [`super::listen`]) on a
/// connection of its own.
struct Notifications {
    client: postgres::Client,
    label: PathBuf,
    head: Head,
}

impl Notifications {
    /// Connects with `config`, listens, then reads the head (so nothing committed in
    /// between is missed).
    fn open(
        config: &postgres::Config,
        label: &Path,
        read_head: impl FnOnce() -> Result<Head, StoreError>,
    ) -> Result<Notifications, StoreError> {
        let mut client = config
            .connect(NoTls)
            .map_err(pg_err(label, "connecting to listen for appends"))?;
        client
            .batch_execute(&format!("LISTEN {}", super::listen::CHANNEL))
            .map_err(pg_err(label, "listening for appends"))?;
        Ok(Notifications {
            client,
            label: label.to_path_buf(),
            head: read_head()?,
        })
    }
}

impl super::HeadListener for Notifications {
    fn wait(&mut self, timeout: Duration) -> Result<Option<Head>, StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let what = "waiting for appends";
        let mut latest: Option<Head> = None;
        let mut note = |payload: &str| {
            if let Some(h) = super::listen::announced(payload)
                && latest.as_ref().is_none_or(|l| h.seq > l.seq)
            {
                latest = Some(h);
            }
        };
        let first = self
            .client
            .notifications()
            .timeout_iter(timeout)
            .next()
            .map_err(pg_err(&self.label, what))?;
        let Some(first) = first else {
            return Ok(None);
        };
        note(first.payload());
        // Whatever else already arrived: one answer for a burst of appends.
        let mut pending = self.client.notifications();
        let mut rest = pending.iter();
        while let Some(n) = rest.next().map_err(pg_err(&self.label, what))? {
            note(n.payload());
        }
        match latest {
            Some(h) if h.seq > self.head.seq => {
                self.head = h.clone();
                Ok(Some(h))
            }
            _ => Ok(None),
        }
    }
}

/// A PostgreSQL failure as a store error: the database being unreachable (connection
/// lost, shutting down, starting up) is told apart from a refused statement, so the
/// server can answer 503 and clients retry.
fn pg_err(label: &Path, context: impl Into<String>) -> impl FnOnce(postgres::Error) -> StoreError {
    let database = label.display().to_string();
    let context = context.into();
    move |source| {
        let down = source.is_closed()
            || std::error::Error::source(&source).is_some_and(|s| s.is::<std::io::Error>())
            || source.code().is_some_and(|c| {
                c.code().starts_with("08")
                    || *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
            });
        if down {
            StoreError::DatabaseDown {
                database,
                detail: format!("{context}: {source}"),
            }
        } else {
            StoreError::Postgres {
                database,
                context,
                source,
            }
        }
    }
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn seq_of(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// An integer column read as the unsigned type the store uses; negative or oversized
/// values are damage, named by column.
fn int<T: TryFrom<i64>>(label: &Path, row: &Row, i: usize) -> Result<T, StoreError> {
    let v: i64 = row.try_get(i).map_err(pg_err(label, "reading a row"))?;
    T::try_from(v).map_err(|_| StoreError::Corrupt {
        path: label.into(),
        id: format!("column {}", row.columns().get(i).map_or("?", |c| c.name())),
        revision: 0,
        detail: format!("{v} is out of range"),
    })
}

fn text(label: &Path, row: &Row, i: usize) -> Result<String, StoreError> {
    row.try_get(i).map_err(pg_err(label, "reading a row"))
}

fn opt_text(label: &Path, row: &Row, i: usize) -> Result<Option<String>, StoreError> {
    row.try_get(i).map_err(pg_err(label, "reading a row"))
}

/// The log entries a revision's provenance comes from, selected beside its row.
const PROVENANCE_COLUMNS: &str = "(SELECT l.body FROM log l WHERE l.cr_id = r.cr_id
            AND l.kind IN ('cr-submitted', 'cr-revised')
            AND (l.body::jsonb ->> 'revision')::bigint = r.revision ORDER BY l.seq DESC LIMIT 1),
        (SELECT json_agg(l.body ORDER BY l.seq)::text FROM log l WHERE l.cr_id = r.cr_id AND l.kind = 'evidence')";

fn current_select() -> String {
    format!(
        "SELECT c.id, r.revision, r.digest, r.document, r.submitted_at,
        (SELECT COUNT(*) FROM revisions x WHERE x.cr_id = c.id), c.first_submitted_at,
        {PROVENANCE_COLUMNS}
     FROM change_requests c
     JOIN revisions r ON r.cr_id = c.id AND r.revision = c.current_revision"
    )
}

fn revision_row(label: &Path, r: &Row) -> Result<RevisionRow, StoreError> {
    Ok(RevisionRow {
        id: text(label, r, 0)?,
        revision: int(label, r, 1)?,
        digest: text(label, r, 2)?,
        document: text(label, r, 3)?,
        submitted_at: text(label, r, 4)?,
        count: int(label, r, 5)?,
        first_submitted_at: text(label, r, 6)?,
        entry: opt_text(label, r, 7)?,
        evidence: opt_text(label, r, 8)?,
    })
}

const LOG_COLUMNS: &str = "seq, kind, cr_id, principal, body, hash, signature, received_at";

fn log_row(label: &Path, r: &Row) -> Result<LogEntry, StoreError> {
    Ok(LogEntry {
        seq: int(label, r, 0)?,
        kind: text(label, r, 1)?,
        cr_id: opt_text(label, r, 2)?,
        principal: opt_text(label, r, 3)?,
        body: text(label, r, 4)?,
        hash: text(label, r, 5)?,
        signature: opt_text(label, r, 6)?,
        received_at: opt_text(label, r, 7)?,
    })
}

fn log_rows(label: &Path, found: &[Row]) -> Result<Vec<LogEntry>, StoreError> {
    found.iter().map(|r| log_row(label, r)).collect()
}

fn head_of(label: &Path, r: &Row) -> Result<Head, StoreError> {
    Ok(Head {
        seq: int(label, r, 0)?,
        hash: opt_text(label, r, 1)?,
    })
}

/// Queues deliveries from the five arrays of [`DeliveryColumns`] bound from parameter
/// `$first` on; the caller adds its condition and conflict clause.
fn queue_deliveries_sql(first: usize) -> String {
    let [i, s, e, b, t] = [0, 1, 2, 3, 4].map(|k| first + k);
    format!(
        "INSERT INTO event_deliveries (delivery_id, subscriber, event, body, created_at, next_at)
         SELECT i, s, e, b, t, t FROM unnest(${i}::text[], ${s}::text[], ${e}::text[], ${b}::text[], ${t}::text[]) AS d(i, s, e, b, t)"
    )
}

/// The columns [`pg_delivery`] reads, in its order.
const DELIVERY_COLUMNS: &str =
    "delivery_id, subscriber, event, body, created_at, attempts, next_at, delivered_at, last_error";

/// Deliveries as the arrays [`queue_deliveries_sql`] unnests.
struct DeliveryColumns<'a> {
    ids: Vec<&'a str>,
    subscribers: Vec<&'a str>,
    events: Vec<&'a str>,
    bodies: Vec<&'a str>,
    created: Vec<&'a str>,
}

impl<'a> DeliveryColumns<'a> {
    fn of(deliveries: &'a [super::NewDelivery]) -> Self {
        let col = |f: fn(&super::NewDelivery) -> &str| deliveries.iter().map(f).collect::<Vec<_>>();
        DeliveryColumns {
            ids: col(|d| &d.delivery_id),
            subscribers: col(|d| &d.subscriber),
            events: col(|d| &d.event),
            bodies: col(|d| &d.body),
            created: col(|d| &d.created_at),
        }
    }
}

/// A cached queue row of `cr_id` under `basis`, its status, risk, creation time, row and
/// cells read from column `status_at` on: how both summary queries select them.
fn summary_at(
    label: &std::path::Path,
    r: &postgres::Row,
    cr_id: String,
    basis: String,
    status_at: usize,
) -> Result<Summary, StoreError> {
    Ok(Summary {
        cr_id,
        basis,
        status: text(label, r, status_at)?,
        risk: text(label, r, status_at + 1)?,
        created_at: text(label, r, status_at + 2)?,
        row: text(label, r, status_at + 3)?.into(),
        cells: text(label, r, status_at + 4)?.into(),
    })
}

/// A row of `event_deliveries`.
fn pg_delivery(r: &postgres::Row) -> super::Delivery {
    super::Delivery {
        queued: super::NewDelivery {
            delivery_id: r.get(0),
            subscriber: r.get(1),
            event: r.get(2),
            body: r.get(3),
            created_at: r.get(4),
        },
        attempts: r.get::<_, i32>(5).max(0) as u32,
        next_at: r.get(6),
        delivered_at: r.get(7),
        last_error: r.get(8),
    }
}

const EMERGENCY_SQL: &str = "SELECT seq, kind, cr_id, principal, body, hash, signature, received_at FROM log
     WHERE kind IN ('emergency-authorised', 'rollback-executed', 'post-incident-review', 'rollout-stage', 'drill') ORDER BY seq";

/// Submission and revision entries after `after`, each with the subject its revision
/// names (read from the stored document, which `verify` holds to the entry's digest).
const SUBJECT_CHANGES_SQL: &str = "SELECT l.seq, l.cr_id,
        r.document::jsonb -> 'subject' ->> 'name',
        r.document::jsonb -> 'subject' ->> 'environment'
     FROM log l JOIN revisions r
       ON r.cr_id = l.cr_id AND r.revision = (l.body::jsonb ->> 'revision')::bigint
     WHERE l.kind IN ('cr-submitted', 'cr-revised') AND l.seq > $1
     ORDER BY l.seq";

const POLICY_HEAD_SQL: &str =
    "SELECT seq, hash FROM log WHERE kind = 'policy-adopted' ORDER BY seq DESC LIMIT 1";

fn subject_change_rows(label: &Path, found: &[Row]) -> Result<Vec<SubjectChange>, StoreError> {
    found
        .iter()
        .map(|r| {
            Ok(SubjectChange {
                seq: int(label, r, 0)?,
                cr_id: text(label, r, 1)?,
                subject: opt_text(label, r, 2)?.unwrap_or_default(),
                environment: opt_text(label, r, 3)?.unwrap_or_default(),
            })
        })
        .collect()
}

fn decisions_of(label: &Path, found: &[Row]) -> Result<Vec<Decision>, StoreError> {
    found
        .iter()
        .map(|r| {
            let seq: u64 = int(label, r, 0)?;
            rows::parse_decision(label, seq, &text(label, r, 1)?)
        })
        .collect()
}

const DECISIONS_ON_SQL: &str =
    "SELECT seq, body FROM log WHERE cr_id = $1 AND kind = 'decision' ORDER BY seq";

/// A write transaction on PostgreSQL holding the chain head's row lock.
struct PgTx<'a, 'b> {
    tx: Cached<'a, postgres::Transaction<'b>>,
    label: &'a Path,
}

impl PgTx<'_, '_> {
    fn err(&self, context: impl Into<String>) -> impl FnOnce(postgres::Error) -> StoreError {
        pg_err(self.label, context)
    }
}

impl ChainTx for PgTx<'_, '_> {
    fn location(&self) -> &Path {
        self.label
    }

    fn head(&mut self) -> Result<Head, StoreError> {
        let r = self
            .tx
            .query_one("SELECT seq, hash FROM log_head WHERE id = 1", &[])
            .map_err(pg_err(self.label, "reading the log head"))?;
        head_of(self.label, &r)
    }

    fn policy_head(&mut self) -> Result<Head, StoreError> {
        match self
            .tx
            .query_opt(POLICY_HEAD_SQL, &[])
            .map_err(pg_err(self.label, "reading the policy in force"))?
        {
            Some(r) => head_of(self.label, &r),
            None => Ok(Head::empty()),
        }
    }

    fn current_revision(&mut self, cr_id: &str) -> Result<Option<StoredRevision>, StoreError> {
        let sql = format!("{} WHERE c.id = $1", current_select());
        let found = self
            .tx
            .query_opt(&sql, &[&cr_id])
            .map_err(pg_err(self.label, format!("reading {cr_id}")))?;
        found
            .map(|r| rows::read_revision(self.label, revision_row(self.label, &r)?))
            .transpose()
    }

    fn decisions(&mut self, cr_id: &str) -> Result<Vec<Decision>, StoreError> {
        let found = self
            .tx
            .query(DECISIONS_ON_SQL, &[&cr_id])
            .map_err(pg_err(self.label, format!("reading decisions on {cr_id}")))?;
        decisions_of(self.label, &found)
    }

    fn emergency_entries(&mut self) -> Result<Vec<LogEntry>, StoreError> {
        let found = self
            .tx
            .query(EMERGENCY_SQL, &[])
            .map_err(pg_err(self.label, "reading emergency entries"))?;
        log_rows(self.label, &found)
    }

    fn subject_changes(&mut self, after: u64) -> Result<Vec<SubjectChange>, StoreError> {
        let found = self
            .tx
            .query(SUBJECT_CHANGES_SQL, &[&seq_of(after)])
            .map_err(pg_err(self.label, "reading subject changes"))?;
        subject_change_rows(self.label, &found)
    }

    fn current_digest(&mut self, cr_id: &str) -> Result<Option<(u32, String)>, StoreError> {
        let found = self
            .tx
            .query_opt(
                "SELECT r.revision, r.digest FROM change_requests c
                 JOIN revisions r ON r.cr_id = c.id AND r.revision = c.current_revision
                 WHERE c.id = $1",
                &[&cr_id],
            )
            .map_err(pg_err(self.label, format!("reading {cr_id}")))?;
        found
            .map(|r| Ok((int(self.label, &r, 0)?, text(self.label, &r, 1)?)))
            .transpose()
    }

    fn store_revision(&mut self, w: RevisionWrite<'_>) -> Result<(), StoreError> {
        let (id, n) = (w.cr_id, i64::from(w.revision));
        if n == 1 {
            self.tx
                .execute(
                    "INSERT INTO change_requests (id, current_revision, first_submitted_at) VALUES ($1, 1, $2)",
                    &[&id, &w.at],
                )
                .map_err(pg_err(self.label, format!("creating {id}")))?;
        }
        self.tx
            .execute(
                "INSERT INTO revisions (cr_id, revision, digest, document, submitted_at) VALUES ($1, $2, $3, $4, $5)",
                &[&id, &n, &w.digest, &w.document, &w.at],
            )
            .map_err(pg_err(self.label, format!("storing {id} revision {n}")))?;
        if n > 1 {
            self.tx
                .execute(
                    "UPDATE change_requests SET current_revision = $2 WHERE id = $1",
                    &[&id, &n],
                )
                .map_err(pg_err(self.label, format!("advancing {id}")))?;
        }
        Ok(())
    }

    fn append(&mut self, e: EntryWrite<'_>) -> Result<LogEntry, StoreError> {
        let head = self.head()?;
        let seq = head.seq + 1;
        let hash = e.hash();
        let received_at = time_text(crate::clock::now_or_system());
        let context = format!("appending the {} entry", e.kind.as_str());
        self.tx
            .execute(
                "INSERT INTO log (seq, kind, cr_id, principal, body, hash, signature, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &seq_of(seq),
                    &e.kind.as_str(),
                    &e.cr_id,
                    &e.principal,
                    &e.body,
                    &hash,
                    &e.signature,
                    &received_at,
                ],
            )
            .map_err(self.err(context.clone()))?;
        self.tx
            .execute(
                "UPDATE log_head SET seq = $1, hash = $2 WHERE id = 1",
                &[&seq_of(seq), &hash],
            )
            .map_err(self.err(context.clone()))?;
        // Heard by every listener (each replica's `/v1/watch`, a TUI on the database)
        // when, and only if, the transaction commits.
        let announcement = format!("{seq} {hash}");
        self.tx
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&super::listen::CHANNEL, &announcement],
            )
            .map_err(self.err(context))?;
        Ok(LogEntry {
            seq,
            kind: e.kind.as_str().into(),
            body: e.body.into(),
            hash,
            signature: e.signature.map(Into::into),
            principal: e.principal.map(Into::into),
            cr_id: e.cr_id.map(Into::into),
            received_at: Some(received_at),
        })
    }
}

impl Store for PgStore {
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
        gate: Gate,
    ) -> Result<Vec<StoredCr>, StoreError> {
        self.page_where(after, limit, Some(gate))
    }

    fn summary_page(&self, q: &SummaryQuery<'_>) -> Result<Option<Vec<SummarySlot>>, StoreError> {
        // As the embedded store: the gate from its index; status and risk filtered here
        // on current rows, the others returned for the reader to evaluate.
        let sql = if q.gate.is_some() {
            concat!(
                "SELECT c.id, c.current_revision, c.last_seq,
                        s.basis, s.status, s.risk, s.created_at, s.queue_row,
                        CASE WHEN $7::bool THEN '' ELSE s.cells END
                 FROM revisions r
                 JOIN change_requests c ON c.id = r.cr_id AND c.current_revision = r.revision
                 LEFT JOIN cr_summaries s ON s.cr_id = c.id
                 WHERE (r.document::jsonb ->> 'gate') = $3 AND r.cr_id > $1
                   AND (($5::text IS NULL AND $6::text IS NULL) OR s.basis IS NULL OR s.basis <> (",
                super::sql_current_basis!(),
                " || $4::text)
                        OR (($5::text IS NULL OR s.status = $5) AND ($6::text IS NULL OR s.risk = $6)))
                 ORDER BY r.cr_id LIMIT $2"
            )
        } else {
            concat!(
                "SELECT c.id, c.current_revision, c.last_seq,
                        s.basis, s.status, s.risk, s.created_at, s.queue_row,
                        CASE WHEN $7::bool THEN '' ELSE s.cells END
                 FROM change_requests c
                 LEFT JOIN cr_summaries s ON s.cr_id = c.id
                 WHERE c.id > $1 AND $3::text IS NULL
                   AND (($5::text IS NULL AND $6::text IS NULL) OR s.basis IS NULL OR s.basis <> (",
                super::sql_current_basis!(),
                " || $4::text)
                        OR (($5::text IS NULL OR s.status = $5) AND ($6::text IS NULL OR s.risk = $6)))
                 ORDER BY c.id LIMIT $2"
            )
        };
        let gate = q.gate.map(|g| g.as_str());
        let found = self.read("reading queue summaries", |c| {
            c.query(
                sql,
                &[
                    &q.after.unwrap_or(""),
                    &limit_of(q.limit),
                    &gate,
                    &q.basis_suffix,
                    &q.status,
                    &q.risk,
                    &q.without_cells,
                ],
            )
        })?;
        let label = &self.label;
        found
            .iter()
            .map(|r| {
                let cr_id = text(label, r, 0)?;
                let cached = match opt_text(label, r, 3)? {
                    Some(basis) => Some(summary_at(label, r, cr_id.clone(), basis, 4)?),
                    None => None,
                };
                Ok(SummarySlot {
                    cr_id,
                    revision: int(label, r, 1)?,
                    last_seq: int(label, r, 2)?,
                    cached,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()
            .map(Some)
    }

    fn summary_keys(
        &self,
        after: Option<&str>,
        limit: usize,
        gate: Option<Gate>,
    ) -> Result<Option<Vec<SummarySlot>>, StoreError> {
        let sql = if gate.is_some() {
            "SELECT c.id, c.current_revision, c.last_seq
             FROM revisions r
             JOIN change_requests c ON c.id = r.cr_id AND c.current_revision = r.revision
             WHERE (r.document::jsonb ->> 'gate') = $3 AND r.cr_id > $1
             ORDER BY r.cr_id LIMIT $2"
        } else {
            "SELECT c.id, c.current_revision, c.last_seq FROM change_requests c
             WHERE c.id > $1 AND $3::text IS NULL ORDER BY c.id LIMIT $2"
        };
        let gate = gate.map(|g| g.as_str());
        let found = self.read("reading queue keys", |c| {
            c.query(sql, &[&after.unwrap_or(""), &limit_of(limit), &gate])
        })?;
        let label = &self.label;
        found
            .iter()
            .map(|r| {
                Ok(SummarySlot {
                    cr_id: text(label, r, 0)?,
                    revision: int(label, r, 1)?,
                    last_seq: int(label, r, 2)?,
                    cached: None,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()
            .map(Some)
    }

    fn summaries_of(&self, ids: &[&str], without_cells: bool) -> Result<Vec<Summary>, StoreError> {
        let found = self.read("reading queue summaries", |c| {
            c.query(
                "SELECT cr_id, basis, status, risk, created_at, queue_row,
                        CASE WHEN $2::bool THEN '' ELSE cells END
                 FROM cr_summaries WHERE cr_id = ANY($1)",
                &[&ids, &without_cells],
            )
        })?;
        let label = &self.label;
        found
            .iter()
            .map(|r| summary_at(label, r, text(label, r, 0)?, text(label, r, 1)?, 2))
            .collect()
    }

    fn repair_positions(&self) -> Result<Vec<String>, StoreError> {
        let any: bool = self.read("checking each CR's last log entry", |c| {
            c.query_one(super::ANY_WRONG_POSITION_SQL, &[])?.try_get(0)
        })?;
        if !any {
            return Ok(Vec::new());
        }
        let found = self.read("setting each CR's last log entry from the log", |c| {
            c.query(super::REPAIR_POSITIONS_SQL, &[])
        })?;
        let mut ids = found
            .iter()
            .map(|r| text(&self.label, r, 0))
            .collect::<Result<Vec<_>, _>>()?;
        ids.sort();
        Ok(ids)
    }

    fn put_summaries(&self, summaries: &[Summary]) -> Result<(), StoreError> {
        // One statement per batch: arrays unnested server-side, not a round trip a row.
        for chunk in summaries.chunks(5000) {
            let col = |f: fn(&Summary) -> &str| chunk.iter().map(f).collect::<Vec<_>>();
            let (ids, bases, statuses, risks, created, queue_rows, cells) = (
                col(|s| &s.cr_id),
                col(|s| &s.basis),
                col(|s| &s.status),
                col(|s| &s.risk),
                col(|s| &s.created_at),
                col(|s| &s.row),
                col(|s| &s.cells),
            );
            self.read("caching queue summaries", |c| {
                c.execute(
                    "INSERT INTO cr_summaries (cr_id, basis, status, risk, created_at, queue_row, cells)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                     ON CONFLICT (cr_id) DO UPDATE SET basis = EXCLUDED.basis, status = EXCLUDED.status,
                        risk = EXCLUDED.risk, created_at = EXCLUDED.created_at,
                        queue_row = EXCLUDED.queue_row, cells = EXCLUDED.cells",
                    &[&ids, &bases, &statuses, &risks, &created, &queue_rows, &cells],
                )
                .map(|_| ())
            })?;
        }
        // A cache filled in bulk (the first listing after an upgrade or a policy
        // adoption) changes the table's size many times over: refresh its statistics so
        // pages are read by merge join, not sorted on disk (best effort).
        if summaries.len() >= 1_000 {
            let _ = self.read("analysing queue summaries", |c| {
                c.batch_execute("ANALYZE cr_summaries")
            });
        }
        Ok(())
    }

    fn drop_summaries(&self, ids: &[String]) -> Result<(), StoreError> {
        self.read("dropping cached queue rows", |c| {
            c.execute("DELETE FROM cr_summaries WHERE cr_id = ANY($1)", &[&ids])
                .map(|_| ())
        })
    }

    fn get(&self, id: &str) -> Result<Option<StoredCr>, StoreError> {
        let sql = format!("{} WHERE c.id = $1", current_select());
        let found = self.read(&format!("reading {id}"), |c| c.query_opt(&sql, &[&id]))?;
        found
            .map(|r| rows::stored_cr(&self.label, revision_row(&self.label, &r)?))
            .transpose()
    }

    fn revision(&self, id: &str, revision: u32) -> Result<Option<StoredRevision>, StoreError> {
        let sql = format!(
            "SELECT r.cr_id, r.revision, r.digest, r.document, r.submitted_at, 0::bigint, r.submitted_at,
                {PROVENANCE_COLUMNS}
             FROM revisions r WHERE r.cr_id = $1 AND r.revision = $2"
        );
        let found = self.read(&format!("reading {id} revision {revision}"), |c| {
            c.query_opt(&sql, &[&id, &i64::from(revision)])
        })?;
        found
            .map(|r| rows::read_revision(&self.label, revision_row(&self.label, &r)?))
            .transpose()
    }

    fn revisions(&self, id: &str) -> Result<Vec<RevisionInfo>, StoreError> {
        let found = self.read(&format!("listing revisions of {id}"), |c| {
            c.query(
                "SELECT revision, digest, submitted_at FROM revisions WHERE cr_id = $1 ORDER BY revision",
                &[&id],
            )
        })?;
        found
            .iter()
            .map(|r| {
                let revision = int(&self.label, r, 0)?;
                Ok(RevisionInfo {
                    revision,
                    digest: text(&self.label, r, 1)?,
                    submitted_at: parse_time(&text(&self.label, r, 2)?)
                        .map_err(rows::corrupt_time(&self.label, id.to_string(), revision))?,
                })
            })
            .collect()
    }

    fn decisions(&self, cr_id: &str) -> Result<Vec<Decision>, StoreError> {
        let found = self.read(&format!("reading decisions on {cr_id}"), |c| {
            c.query(DECISIONS_ON_SQL, &[&cr_id])
        })?;
        decisions_of(&self.label, &found)
    }

    fn all_decisions(&self) -> Result<HashMap<String, Vec<Decision>>, StoreError> {
        let found = self.read("reading decisions", |c| {
            c.query(
                "SELECT seq, body FROM log WHERE kind = 'decision' ORDER BY seq",
                &[],
            )
        })?;
        let mut out: HashMap<String, Vec<Decision>> = HashMap::new();
        for d in decisions_of(&self.label, &found)? {
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
        use postgres::fallible_iterator::FallibleIterator;
        let label = &self.label;
        let mut conn = self.conn()?;
        let mut cached = conn.cached();
        // Streamed (not collected): in the index's order, one row at a time.
        let mut rows = cached
            .query_raw(
                "SELECT seq, body FROM log
                 WHERE cr_id >= $1 AND cr_id <= $2 AND kind = 'decision'
                 ORDER BY cr_id, seq",
                &[&first, &last],
            )
            .map_err(self.err("reading decisions"))?;
        while let Some(r) = rows.next().map_err(self.err("reading decisions"))? {
            let seq: u64 = int(label, &r, 0)?;
            let body: &str = r.try_get(1).map_err(pg_err(label, "reading a row"))?;
            each(rows::parse_decision(label, seq, body)?);
        }
        Ok(true)
    }

    fn decide(
        &self,
        cr_id: &str,
        build: &mut DecisionBuilder<'_>,
    ) -> Result<Appended, DecideError> {
        self.write("the decision", |tx| writes::decide(tx, cr_id, build))
    }

    fn decision_summaries(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionSummary>, StoreError> {
        let found = self.read("reading the decision history", |c| {
            c.query(
                "SELECT seq, hash, body::jsonb ->> 'at', cr_id, (body::jsonb ->> 'cr_revision')::bigint,
                        body::jsonb ->> 'cr_digest', body::jsonb ->> 'verdict',
                        body::jsonb ->> 'role', principal
                 FROM log WHERE kind = 'decision' AND seq > $1 ORDER BY seq LIMIT $2",
                &[&seq_of(after), &limit_of(limit)],
            )
        })?;
        let label = &self.label;
        found
            .iter()
            .map(|r| {
                let seq: u64 = int(label, r, 0)?;
                Ok(DecisionSummary {
                    at: parse_time(&text(label, r, 2)?).map_err(rows::corrupt_time(
                        label,
                        format!("log entry {seq}"),
                        0,
                    ))?,
                    seq,
                    hash: text(label, r, 1)?,
                    cr_id: text(label, r, 3)?,
                    cr_revision: int(label, r, 4)?,
                    cr_digest: text(label, r, 5)?,
                    verdict: text(label, r, 6)?,
                    role: text(label, r, 7)?,
                    principal: text(label, r, 8)?,
                })
            })
            .collect()
    }

    fn submission_times(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let found = self.read("reading submission times", |c| {
            c.query("SELECT id, first_submitted_at FROM change_requests", &[])
        })?;
        let mut out = HashMap::new();
        for r in &found {
            if let Ok(at) = parse_time(&text(&self.label, r, 1)?) {
                out.insert(text(&self.label, r, 0)?, at);
            }
        }
        Ok(out)
    }

    fn receive_delivery(
        &self,
        source: &str,
        delivery_id: &str,
        at: &str,
        forget_before: &str,
    ) -> Result<bool, StoreError> {
        let added = self.read("noting a webhook delivery", |c| {
            c.execute(
                "DELETE FROM received_deliveries WHERE received_at < $1",
                &[&forget_before],
            )?;
            // One statement: of two replicas given the same id at once, one inserts.
            c.execute(
                "INSERT INTO received_deliveries (source, delivery_id, received_at)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&source, &delivery_id, &at],
            )
        })?;
        Ok(added == 1)
    }

    fn forget_delivery(&self, source: &str, delivery_id: &str) -> Result<(), StoreError> {
        self.read("forgetting a webhook delivery", |c| {
            c.execute(
                "DELETE FROM received_deliveries WHERE source = $1 AND delivery_id = $2",
                &[&source, &delivery_id],
            )
        })
        .map(|_| ())
    }

    fn event_cursor(&self) -> Result<u64, StoreError> {
        let row = self.read("reading the events cursor", |c| {
            c.query_one("SELECT seq FROM event_cursor WHERE id = 1", &[])
        })?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn enqueue_events(
        &self,
        from: u64,
        to: u64,
        deliveries: &[super::NewDelivery],
    ) -> Result<bool, StoreError> {
        let columns = DeliveryColumns::of(deliveries);
        // One statement: the deliveries are queued only if this replica moved the cursor.
        let row = self.read("queueing events", |c| {
            c.query_one(
                &format!(
                    "WITH moved AS (UPDATE event_cursor SET seq = $2 WHERE id = 1 AND seq = $1 RETURNING 1),
                     queued AS ({} WHERE EXISTS (SELECT 1 FROM moved)
                        ON CONFLICT (delivery_id) DO NOTHING RETURNING 1)
                     SELECT EXISTS (SELECT 1 FROM moved), (SELECT count(*) FROM queued)",
                    queue_deliveries_sql(3)
                ),
                &[
                    &(from as i64),
                    &(to as i64),
                    &columns.ids,
                    &columns.subscribers,
                    &columns.events,
                    &columns.bodies,
                    &columns.created,
                ],
            )
        })?;
        Ok(row.get::<_, bool>(0))
    }

    fn enqueue_deliveries(&self, deliveries: &[super::NewDelivery]) -> Result<(), StoreError> {
        let columns = DeliveryColumns::of(deliveries);
        self.read("queueing reminders", |c| {
            c.execute(
                &format!(
                    "{} ON CONFLICT (delivery_id) DO NOTHING",
                    queue_deliveries_sql(1)
                ),
                &[
                    &columns.ids,
                    &columns.subscribers,
                    &columns.events,
                    &columns.bodies,
                    &columns.created,
                ],
            )
            .map(|_| ())
        })
    }

    fn claim_due(
        &self,
        subscribers: &[String],
        now: &str,
        lease_until: &str,
        limit: usize,
    ) -> Result<Vec<super::Delivery>, StoreError> {
        // Claimed and leased in one statement; rows another replica holds are skipped.
        let rows = self.read("claiming due events", |c| {
            c.query(
                "WITH due AS (
                    SELECT delivery_id FROM event_deliveries
                    WHERE delivered_at IS NULL AND next_at <= $1 AND subscriber = ANY($4)
                    ORDER BY next_at, delivery_id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 UPDATE event_deliveries d SET next_at = $2 FROM due WHERE d.delivery_id = due.delivery_id
                 RETURNING d.delivery_id, d.subscriber, d.event, d.body, d.created_at, d.attempts,
                           d.next_at, d.delivered_at, d.last_error",
                &[&now, &lease_until, &(limit as i64), &subscribers],
            )
        })?;
        Ok(rows.iter().map(pg_delivery).collect())
    }

    fn record_attempts(&self, attempts: &[super::Attempt]) -> Result<(), StoreError> {
        let ids: Vec<&str> = attempts.iter().map(|a| a.delivery_id.as_str()).collect();
        let at: Vec<Option<&str>> = attempts.iter().map(|a| a.delivered_at.as_deref()).collect();
        let errors: Vec<Option<&str>> = attempts.iter().map(|a| a.error.as_deref()).collect();
        let next: Vec<&str> = attempts.iter().map(|a| a.next_at.as_str()).collect();
        let tried: Vec<bool> = attempts.iter().map(|a| a.tried).collect();
        self.read("recording delivery attempts", |c| {
            c.execute(
                "UPDATE event_deliveries d SET attempts = d.attempts + CASE WHEN u.tried THEN 1 ELSE 0 END,
                        delivered_at = u.at, last_error = u.error, next_at = u.next
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[])
                      AS u(id, at, error, next, tried)
                 WHERE d.delivery_id = u.id",
                &[&ids, &at, &errors, &next, &tried],
            )
            .map(|_| ())
        })
    }

    fn deliveries(
        &self,
        pending_only: bool,
        limit: usize,
    ) -> Result<Vec<super::Delivery>, StoreError> {
        let rows = self.read("reading events", |c| {
            c.query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM event_deliveries
                     WHERE (NOT $1 OR delivered_at IS NULL)
                     ORDER BY created_at DESC, delivery_id LIMIT $2"
                ),
                &[&pending_only, &(limit as i64)],
            )
        })?;
        Ok(rows.iter().map(pg_delivery).collect())
    }

    fn kpi_readings(&self, cr_id: &str) -> Result<Vec<LogEntry>, StoreError> {
        let found = self.read(&format!("reading the KPI readings of {cr_id}"), |c| {
            c.query(
                &format!(
                    "SELECT {LOG_COLUMNS} FROM log WHERE cr_id = $1 AND kind = 'kpi-reading' ORDER BY seq"
                ),
                &[&cr_id],
            )
        })?;
        log_rows(&self.label, &found)
    }

    fn decision_entries(&self, cr_id: &str) -> Result<Vec<LogEntry>, StoreError> {
        let found = self.read(&format!("reading decisions on {cr_id}"), |c| {
            c.query(
                &format!(
                    "SELECT {LOG_COLUMNS} FROM log WHERE cr_id = $1 AND kind = 'decision' ORDER BY seq"
                ),
                &[&cr_id],
            )
        })?;
        log_rows(&self.label, &found)
    }

    fn emergency_entries(&self) -> Result<Vec<LogEntry>, StoreError> {
        let found = self.read("reading emergency entries", |c| c.query(EMERGENCY_SQL, &[]))?;
        log_rows(&self.label, &found)
    }

    fn subject_changes(&self, after: u64) -> Result<Vec<SubjectChange>, StoreError> {
        let found = self.read("reading subject changes", |c| {
            c.query(SUBJECT_CHANGES_SQL, &[&seq_of(after)])
        })?;
        subject_change_rows(&self.label, &found)
    }

    fn append_emergency(&self, build: &mut EmergencyBuilder<'_>) -> Result<LogEntry, DecideError> {
        self.write("the emergency entry", |tx| writes::emergency(tx, build))
    }

    fn append_evidence(
        &self,
        cr_id: &str,
        build: &mut EvidenceBuilder<'_>,
    ) -> Result<LogEntry, DecideError> {
        self.write("the evidence", |tx| writes::evidence(tx, cr_id, build))
    }

    fn log_entries(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let found = self.read("reading the log", |c| {
            c.query(
                &format!("SELECT {LOG_COLUMNS} FROM log WHERE seq > $1 ORDER BY seq LIMIT $2"),
                &[&seq_of(after), &limit_of(limit)],
            )
        })?;
        log_rows(&self.label, &found)
    }

    fn recorded_head(&self) -> Result<Head, StoreError> {
        let r = self.read("reading the log head", |c| {
            c.query_one("SELECT seq, hash FROM log_head WHERE id = 1", &[])
        })?;
        head_of(&self.label, &r)
    }

    fn head_listener(&self) -> Result<Option<Box<dyn super::HeadListener>>, StoreError> {
        let listener = Notifications::open(&self.config, &self.label, || self.recorded_head())?;
        Ok(Some(Box::new(listener)))
    }

    fn requesters(&self) -> Result<HashMap<(String, String), String>, StoreError> {
        let found = self.read("reading requesters", |c| {
            c.query(
                "SELECT cr_id, digest, document::jsonb ->> 'requester' FROM revisions",
                &[],
            )
        })?;
        let mut out = HashMap::new();
        for r in &found {
            if let Some(who) = opt_text(&self.label, r, 2)? {
                out.insert((text(&self.label, r, 0)?, text(&self.label, r, 1)?), who);
            }
        }
        Ok(out)
    }

    fn policy_entries(&self, after: u64) -> Result<Vec<LogEntry>, StoreError> {
        let found = self.read("reading the policy history", |c| {
            c.query(
                &format!(
                    "SELECT {LOG_COLUMNS} FROM log WHERE kind = 'policy-adopted' AND seq > $1 ORDER BY seq"
                ),
                &[&seq_of(after)],
            )
        })?;
        log_rows(&self.label, &found)
    }

    fn reachable(&self) -> bool {
        self.read("checking the database", |c| c.simple_query("").map(|_| ()))
            .is_ok()
    }

    fn adopt_genesis(
        &self,
        build: &mut dyn FnMut(&Head) -> Result<NewEntry, DecideError>,
    ) -> Result<Option<LogEntry>, DecideError> {
        self.write("the policy adoption", |tx| writes::genesis(tx, build))
    }
}
