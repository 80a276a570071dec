//! Being told that the log moved, rather than asking again and again.
//!
//! A reader (the TUI, the team server's `/v1/watch`) holds a [`HeadListener`] and blocks
//! in [`HeadListener::wait`] until the log head differs from the one it last saw. Each
//! kind of store tells it the cheapest way it can:
//! - PostgreSQL: every append sends `NOTIFY tollgate_head` inside its transaction, so
//!   listeners on every replica hear of it when (and only if) it commits;
//! - a team server: the Server-Sent Events stream of `GET /v1/watch` ([`super::sse`]);
//! - an SQLite file: `PRAGMA data_version` on a connection of the listener's own moves
//!   whenever any process commits to the file; it is looked at ten times a second (a read
//!   of SQLite's shared memory, not of the database) and the head read only when it moved.

use super::Head;
use super::StoreError;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The PostgreSQL channel appends are announced on; the payload is `SEQ HASH`.
pub const CHANNEL: &str = "tollgate_head";

/// Tells its owner when the log head moves.
pub trait HeadListener: Send {
    /// Blocks until the head differs from the one last returned (or the one at the
    /// listener's creation) and returns it; `Ok(None)` when `timeout` passed first (a
    /// stream may overrun it by up to its keep-alive interval). An error means the
    /// listener is finished: make a new one.
    fn wait(&mut self, timeout: Duration) -> Result<Option<Head>, StoreError>;
}

/// How often an SQLite listener looks at the file's data version.
const SQLITE_LOOK_EVERY: Duration = Duration::from_millis(100);

/// How an SQLite store reads its recorded head (the store's own query).
pub(super) type ReadHead = fn(&rusqlite::Connection) -> rusqlite::Result<Head>;

/// Listens to an SQLite file through its data version.
pub(super) struct DataVersion {
    conn: rusqlite::Connection,
    path: PathBuf,
    read_head: ReadHead,
    version: i64,
    head: Head,
}

impl DataVersion {
    /// A listener on the store file at `path`, starting from its current head.
    pub(super) fn open(path: &Path, read_head: ReadHead) -> Result<DataVersion, StoreError> {
        use rusqlite::OpenFlags;
        let err = |context: &'static str| {
            let path = path.to_path_buf();
            move |source| StoreError::Sqlite {
                path,
                context: context.into(),
                source,
            }
        };
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err("opening the database to watch it"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(err("setting the busy timeout"))?;
        let version = data_version(&conn).map_err(err("reading the data version"))?;
        let head = read_head(&conn).map_err(err("reading the log head"))?;
        Ok(DataVersion {
            conn,
            path: path.to_path_buf(),
            read_head,
            version,
            head,
        })
    }
}

fn data_version(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "data_version", |r| r.get(0))
}

impl HeadListener for DataVersion {
    fn wait(&mut self, timeout: Duration) -> Result<Option<Head>, StoreError> {
        let deadline = Instant::now() + timeout;
        let err = |context: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Sqlite {
                path,
                context: context.into(),
                source,
            }
        };
        loop {
            let version =
                data_version(&self.conn).map_err(err("reading the data version", &self.path))?;
            if version != self.version {
                self.version = version;
                let head = (self.read_head)(&self.conn)
                    .map_err(err("reading the log head", &self.path))?;
                if head != self.head {
                    self.head = head.clone();
                    return Ok(Some(head));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(SQLITE_LOOK_EVERY.min(deadline - now));
        }
    }
}

/// Listens to a PostgreSQL database's append notifications on a connection of its own.
pub(super) struct Notifications {
    client: postgres::Client,
    label: PathBuf,
    head: Head,
}

impl Notifications {
    /// Connects with `config`, listens, then reads the head (so nothing committed in
    /// between is missed).
    pub(super) fn open(
        config: &postgres::Config,
        label: &Path,
        read_head: impl FnOnce() -> Result<Head, StoreError>,
    ) -> Result<Notifications, StoreError> {
        let err = |context: &'static str| {
            let label = label.to_path_buf();
            move |source: postgres::Error| StoreError::Postgres {
                database: label.display().to_string(),
                context: context.into(),
                source,
            }
        };
        let mut client = config
            .connect(postgres::NoTls)
            .map_err(err("connecting to listen for appends"))?;
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .map_err(err("listening for appends"))?;
        Ok(Notifications {
            client,
            label: label.to_path_buf(),
            head: read_head()?,
        })
    }
}

/// The head a notification announces (`SEQ HASH`).
fn announced(payload: &str) -> Option<Head> {
    let (seq, hash) = payload.split_once(' ')?;
    Some(Head {
        seq: seq.parse().ok()?,
        hash: Some(hash.to_string()),
    })
}

impl HeadListener for Notifications {
    fn wait(&mut self, timeout: Duration) -> Result<Option<Head>, StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let err = |label: &Path| {
            let label = label.to_path_buf();
            move |source: postgres::Error| StoreError::Postgres {
                database: label.display().to_string(),
                context: "waiting for appends".into(),
                source,
            }
        };
        let mut latest: Option<Head> = None;
        let mut note = |payload: &str| {
            if let Some(h) = announced(payload)
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
            .map_err(err(&self.label))?;
        let Some(first) = first else {
            return Ok(None);
        };
        note(first.payload());
        // Whatever else already arrived: one answer for a burst of appends.
        let mut pending = self.client.notifications();
        let mut rest = pending.iter();
        while let Some(n) = rest.next().map_err(err(&self.label))? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_names_the_new_head_and_anything_else_is_ignored() {
        assert_eq!(
            announced("42 abc"),
            Some(Head {
                seq: 42,
                hash: Some("abc".into())
            })
        );
        assert_eq!(announced("42"), None);
        assert_eq!(announced("x abc"), None);
    }
}
