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
    // 2: the hash-chained audit log and its separately recorded head. Existing revisions
    // are entered into the log by `backfill_log` in the same transaction.
    "CREATE TABLE log (
        seq INTEGER PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL,
        cr_id TEXT,
        principal TEXT,
        body TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        signature TEXT
    ) STRICT;
    CREATE INDEX log_by_cr ON log (cr_id, seq);
    CREATE TABLE log_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT
    ) STRICT;
    INSERT INTO log_head (id, seq, hash) VALUES (1, 0, NULL);
    CREATE TRIGGER log_is_append_only BEFORE UPDATE ON log
    BEGIN SELECT RAISE(ABORT, 'log entries are immutable'); END;
    CREATE TRIGGER log_is_never_trimmed BEFORE DELETE ON log
    BEGIN SELECT RAISE(ABORT, 'log entries are never deleted'); END;",
    // 3: find emergency entries (exceptions) without scanning every decision.
    "CREATE INDEX log_by_kind ON log (kind, seq);",
    // 4: when the store received each entry (beside it, not signed): a signing time later
    // than this, beyond the allowed skew, is named by `verify`. NULL for older entries.
    "ALTER TABLE log ADD COLUMN received_at TEXT;",
    // 5: each CR's evaluated queue row, keyed by what it was computed from (derived data,
    // never trusted beyond that key: deleting a row only costs its recomputation).
    "CREATE TABLE cr_summaries (
        cr_id TEXT PRIMARY KEY NOT NULL,
        basis TEXT NOT NULL,
        status TEXT NOT NULL,
        risk TEXT NOT NULL,
        created_at TEXT NOT NULL,
        row TEXT NOT NULL,
        cells TEXT NOT NULL
    ) STRICT;
    CREATE INDEX revisions_by_gate ON revisions (json_extract(document, '$.gate'), cr_id);",
    // 6: each CR's last log entry kept beside it, so that the queue's cache is checked
    // without looking into the log for every CR. A trigger moves it with every entry
    // naming the CR, whoever appends; `verify` compares it with the log.
    "ALTER TABLE change_requests ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
    UPDATE change_requests
       SET last_seq = COALESCE((SELECT MAX(seq) FROM log WHERE log.cr_id = change_requests.id), 0);
    CREATE TRIGGER log_moves_its_cr AFTER INSERT ON log WHEN NEW.cr_id IS NOT NULL
    BEGIN UPDATE change_requests SET last_seq = MAX(last_seq, NEW.seq) WHERE id = NEW.cr_id; END;",
    // 7: the team server's signed events out: how far into the log they were derived
    // (from the head at this migration: no flood of old events), and the deliveries
    // waiting or done, one per (entry, subscriber, event) — derived data, never the
    // record itself.
    "CREATE TABLE event_cursor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL
    ) STRICT;
    INSERT INTO event_cursor (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM log;
    CREATE TABLE event_deliveries (
        delivery_id TEXT PRIMARY KEY NOT NULL,
        subscriber TEXT NOT NULL,
        event TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at TEXT NOT NULL,
        delivered_at TEXT,
        last_error TEXT
    ) STRICT;
    CREATE INDEX event_deliveries_due ON event_deliveries (delivered_at, next_at);",
    // 8: webhook deliveries received lately (MLflow's), by sender and delivery id, so a
    // replay is refused by whichever replica it reaches, also after a restart.
    "CREATE TABLE received_deliveries (
        source TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (source, delivery_id)
    ) STRICT;
    CREATE INDEX received_deliveries_age ON received_deliveries (received_at);",
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;
