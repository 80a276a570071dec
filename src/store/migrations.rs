//! Versioned schema migrations for the embedded store.
//!
//! The schema version lives in SQLite's `user_version`. Each migration runs once, in its
//! own transaction together with the version bump, so a crash mid-upgrade leaves the store
//! at the previous version rather than half-migrated. Never edit a released migration:
//! append a new one.

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: change requests and their immutable revisions.
    "CREATE TABLE change_requests (
        id TEXT PRIMARY KEY NOT NULL,
        current_revision INTEGER NOT NULL,
        first_submitted_at TEXT NOT NULL
    ) STRICT;
    CREATE TABLE revisions (
        cr_id TEXT NOT NULL REFERENCES change_requests(id),
        revision INTEGER NOT NULL,
        digest TEXT NOT NULL,
        document TEXT NOT NULL,
        submitted_at TEXT NOT NULL,
        PRIMARY KEY (cr_id, revision)
    ) STRICT;
    CREATE TRIGGER revisions_are_immutable BEFORE UPDATE ON revisions
    BEGIN SELECT RAISE(ABORT, 'revisions are immutable'); END;
    CREATE TRIGGER revisions_are_never_deleted BEFORE DELETE ON revisions
    BEGIN SELECT RAISE(ABORT, 'revisions are never deleted'); END;",
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;
