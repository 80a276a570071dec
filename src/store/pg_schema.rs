//! Versioned schema migrations for the PostgreSQL store.
//!
//! The version lives in `tollgate_schema`. All pending migrations run in one transaction
//! under an advisory lock, so two replicas starting together upgrade once and a crash
//! leaves the previous version. Never edit a released migration: append a new one.
//!
//! Version 1 holds what the embedded store reached in five steps, plus the tokens that
//! replicas share. Text columns that identify CRs sort bytewise (`COLLATE "C"`) so pages
//! come in the order the embedded store gives them.

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: change requests, immutable revisions, the hash-chained log and its head, the
    // queue's summary cache, and the server's bearer tokens (hashes only).
    r#"CREATE TABLE tollgate_schema (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version BIGINT NOT NULL
    );
    CREATE TABLE change_requests (
        id TEXT COLLATE "C" PRIMARY KEY,
        current_revision BIGINT NOT NULL,
        first_submitted_at TEXT NOT NULL
    );
    CREATE TABLE revisions (
        cr_id TEXT COLLATE "C" NOT NULL REFERENCES change_requests(id),
        revision BIGINT NOT NULL,
        digest TEXT NOT NULL,
        document TEXT NOT NULL,
        submitted_at TEXT NOT NULL,
        PRIMARY KEY (cr_id, revision)
    );
    CREATE INDEX revisions_by_gate ON revisions (((document::jsonb) ->> 'gate'), cr_id);
    CREATE TABLE log (
        seq BIGINT PRIMARY KEY,
        kind TEXT NOT NULL,
        cr_id TEXT COLLATE "C",
        principal TEXT,
        body TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        signature TEXT,
        received_at TEXT
    );
    CREATE INDEX log_by_cr ON log (cr_id, seq);
    CREATE INDEX log_by_kind ON log (kind, seq);
    CREATE TABLE log_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT
    );
    INSERT INTO log_head (id, seq, hash) VALUES (1, 0, NULL);
    CREATE TABLE cr_summaries (
        cr_id TEXT COLLATE "C" PRIMARY KEY,
        basis TEXT NOT NULL,
        status TEXT NOT NULL,
        risk TEXT NOT NULL,
        created_at TEXT NOT NULL,
        queue_row TEXT NOT NULL,
        cells TEXT NOT NULL
    );
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        principal TEXT NOT NULL,
        label TEXT NOT NULL,
        created TEXT
    );
    CREATE FUNCTION tollgate_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'tollgate: % on % refused: its rows are append-only', TG_OP, TG_TABLE_NAME;
    END $$;
    CREATE TRIGGER log_is_append_only BEFORE UPDATE OR DELETE ON log
        FOR EACH ROW EXECUTE FUNCTION tollgate_append_only();
    CREATE TRIGGER log_is_never_truncated BEFORE TRUNCATE ON log
        FOR EACH STATEMENT EXECUTE FUNCTION tollgate_append_only();
    CREATE TRIGGER revisions_are_immutable BEFORE UPDATE OR DELETE ON revisions
        FOR EACH ROW EXECUTE FUNCTION tollgate_append_only();
    CREATE TRIGGER revisions_are_never_truncated BEFORE TRUNCATE ON revisions
        FOR EACH STATEMENT EXECUTE FUNCTION tollgate_append_only();
    CREATE FUNCTION tollgate_head_follows_log() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.seq < OLD.seq OR NOT EXISTS (
            SELECT 1 FROM log WHERE seq = NEW.seq AND hash IS NOT DISTINCT FROM NEW.hash
        ) THEN
            RAISE EXCEPTION 'tollgate: the log head may only move forward onto an entry of the log';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER log_head_follows_log BEFORE UPDATE ON log_head
        FOR EACH ROW EXECUTE FUNCTION tollgate_head_follows_log();
    CREATE TRIGGER log_head_is_never_deleted BEFORE DELETE OR TRUNCATE ON log_head
        FOR EACH STATEMENT EXECUTE FUNCTION tollgate_append_only();"#,
    // 2: each CR's last log entry kept beside it, so that the queue's cache is checked
    // without looking into the log for every CR. A trigger moves it with every entry
    // naming the CR, whoever appends; `verify` compares it with the log.
    r#"ALTER TABLE change_requests ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
    UPDATE change_requests c
       SET last_seq = COALESCE((SELECT MAX(seq) FROM log l WHERE l.cr_id = c.id), 0);
    CREATE FUNCTION tollgate_log_moves_its_cr() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE change_requests SET last_seq = GREATEST(last_seq, NEW.seq) WHERE id = NEW.cr_id;
        RETURN NULL;
    END $$;
    CREATE TRIGGER log_moves_its_cr AFTER INSERT ON log
        FOR EACH ROW WHEN (NEW.cr_id IS NOT NULL) EXECUTE FUNCTION tollgate_log_moves_its_cr();"#,
    // 3: the team server's signed events out (see the SQLite migration 7).
    r#"CREATE TABLE event_cursor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL
    );
    INSERT INTO event_cursor (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM log;
    CREATE TABLE event_deliveries (
        delivery_id TEXT PRIMARY KEY,
        subscriber TEXT NOT NULL,
        event TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at TEXT NOT NULL,
        delivered_at TEXT,
        last_error TEXT
    );
    CREATE INDEX event_deliveries_due ON event_deliveries (delivered_at, next_at);"#,
    // 4: webhook deliveries received lately (see the SQLite migration 8).
    r#"CREATE TABLE received_deliveries (
        source TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (source, delivery_id)
    );
    CREATE INDEX received_deliveries_age ON received_deliveries (received_at);"#,
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;
