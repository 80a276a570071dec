//! Being told that the log moved, rather than asking again and again.
//!
//! A reader (the TUI, the team server's `/v1/watch`) holds a [`HeadListener`] and blocks
//! in [`HeadListener::wait`] until the log head differs from the one it last saw. Each
//! kind of store tells it the cheapest way it can:
//! - PostgreSQL: every append sends `NOTIFY tollgate_head` inside its transaction, so
//!   listeners on every replica hear of it when (and only if) it commits (the listener
//!   lives beside the store, in `pg`);
//! - a team server: the Server-Sent Events stream of `GET /v1/watch` ([`super::sse`]);
//! - an SQLite file: `PRAGMA data_version` on a connection of the listener's own moves
//!   whenever any process commits to the file; it is looked at ten times a second (a read
//!   of SQLite's shared memory, not of the database) and the head read only when it moved
//!   (in `local`).

use super::Head;
use super::StoreError;
use std::time::Duration;

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

/// The head a notification announces (`SEQ HASH`).
pub(super) fn announced(payload: &str) -> Option<Head> {
    let (seq, hash) = payload.split_once(' ')?;
    Some(Head {
        seq: seq.parse().ok()?,
        hash: Some(hash.to_string()),
    })
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
