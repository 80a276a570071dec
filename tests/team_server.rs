//! The team server on PostgreSQL, driven through the real binary: a store moved from
//! SQLite verifies there, two replicas on one database serve as one (tokens, queue,
//! ETags, decisions), and the database itself refuses to rewrite history, while
//! `verify` names a correctly signed entry forced into it past every check.

mod common;

use common::{Home, Run, assert_refusal, checklist_of, now_text, ssh_fingerprint, ssh_sign};
use serde_json::{Value, json};
use tollgate::audit::canonical::to_canonical_string;

fn http() -> reqwest::blocking::Client {
    tollgate::tls::install_crypto_provider();
    reqwest::blocking::Client::new()
}

/// A demo home whose store was copied into a fresh PostgreSQL database.
struct Team {
    home: Home,
    url: String,
}

impl Team {
    fn new() -> Team {
        let (home, url) = Home::demo_in_database();
        Team { home, url }
    }

    /// `tollgate --database URL ARGS`.
    fn db(&self, args: &[&str]) -> Run {
        let mut all = vec!["--database", &self.url];
        all.extend_from_slice(args);
        self.home.run(&all)
    }

    fn token(&self, who: &str) -> String {
        self.db(&["token", "add", who, "--label", "test"])
            .ok()
            .stdout
            .lines()
            .find(|l| l.starts_with("tg_"))
            .expect("a token line")
            .to_string()
    }

    fn sql(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }
}

#[test]
fn a_sqlite_store_moves_to_postgres_whole_and_verifies_there() {
    let home = Home::demo();
    home.decide(
        "marco",
        "request-changes",
        "CR-1045",
        &["--role", "ops-reviewer", "--rationale", "p99 latency"],
    )
    .ok();
    let url = common::pg::database();
    let store = home.store().to_string_lossy().into_owned();
    let moved = home
        .run(&["store", "migrate", "--from", &store, "--to", &url])
        .ok();
    assert!(
        moved.stdout.contains("copied 5 change requests"),
        "{}",
        moved.stdout
    );

    let on_db = |args: &[&str]| {
        let mut all = vec!["--database", url.as_str()];
        all.extend_from_slice(args);
        home.run(&all)
    };
    let verified = on_db(&["verify"]).ok();
    assert!(
        verified.stdout.contains("log verified: 7 entries"),
        "{}",
        verified.stdout
    );
    // Same log, entry for entry, and the same queue.
    let export = |run: Run| run.ok().stdout;
    assert_eq!(
        export(home.run(&["log", "export"])),
        export(on_db(&["log", "export"]))
    );
    assert_eq!(
        home.run(&["list", "--json"]).ok().json(),
        on_db(&["list", "--json"]).ok().json()
    );
    // The copy goes on where the original stopped.
    on_db(&[
        "--as",
        "kai",
        "request-changes",
        "CR-1043",
        "--role",
        "data-reviewer",
        "--rationale",
        "drift",
    ])
    .ok();
    on_db(&["verify"]).ok();

    // A second copy into the same database is refused and changes nothing.
    let head = on_db(&["log", "export"]).ok().stdout;
    let again = home.run(&["store", "migrate", "--from", &store, "--to", &url]);
    assert_refusal(&again, &["already holds", "empty database"]);
    assert_eq!(on_db(&["log", "export"]).ok().stdout, head);
    // Not a database URL, or a database without a store: said so, non-zero.
    assert_refusal(
        &home.run(&["store", "migrate", "--from", &store, "--to", "/tmp/x.db"]),
        &["--to", "postgres://"],
    );
    let empty = common::pg::database();
    assert_refusal(
        &home.run(&["--database", &empty, "list"]),
        &["holds no tollgate store", "tollgate init --database"],
    );
    assert_refusal(
        &home.run(&["--database", "sqlite:x.db", "list"]),
        &["--database", "postgres://"],
    );
}

#[test]
fn init_creates_the_schema_and_the_genesis_in_a_database() {
    let home = Home::demo();
    let url = common::pg::database();
    let policy = home
        .path("tollgate.policy.toml")
        .to_string_lossy()
        .into_owned();
    let init = || {
        home.run(&[
            "--database",
            &url,
            "--as",
            "lena",
            "init",
            "--policy",
            &policy,
        ])
        .ok()
    };
    let first = init();
    assert!(first.stdout.contains("genesis"), "{}", first.stdout);
    assert!(
        first.stdout.contains("database's log only"),
        "{}",
        first.stdout
    );
    let again = init();
    assert!(
        again.stdout.contains("already initialised"),
        "{}",
        again.stdout
    );
    let shown = home
        .run(&["--database", &url, "policy", "show", "--json"])
        .ok();
    assert_eq!(shown.json()["version"], json!(1));
    home.run(&["--database", &url, "verify"]).ok();
}

#[test]
fn two_replicas_on_one_database_serve_as_one() {
    let team = Team::new();
    let marco = team.token("marco");
    let a = team.home.serve_database(&team.url, "127.0.0.1:0");
    let b = team.home.serve_database(&team.url, "127.0.0.1:0");

    // A decision through one replica is in the other's queue, and both give the same ETag.
    team.home
        .remote(
            &a.url,
            &marco,
            &[
                "--as",
                "marco",
                "request-changes",
                "CR-1045",
                "--role",
                "ops-reviewer",
                "--rationale",
                "p99 latency",
            ],
        )
        .ok();
    let seen = team
        .home
        .remote(&b.url, &marco, &["show", "CR-1045", "--json"])
        .ok();
    assert_eq!(
        seen.json()["decisions"][0]["principal"],
        json!("marco"),
        "{}",
        seen.stdout
    );
    let queue = |url: &str, tag: Option<&str>| {
        let mut r = http().get(format!("{url}/v1/queue")).bearer_auth(&marco);
        if let Some(t) = tag {
            r = r.header("If-None-Match", t);
        }
        r.send().unwrap()
    };
    let first = queue(&a.url, None);
    assert_eq!(first.status(), 200);
    let tag = first.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(
        queue(&b.url, Some(&tag)).status(),
        304,
        "the replicas disagree on the ETag"
    );

    // A token made after both started works on both at once; revoked, on neither.
    let kai = team.token("kai");
    for url in [&a.url, &b.url] {
        team.home.remote(url, &kai, &["list"]).ok();
    }
    let listed = team.db(&["token", "list", "--json"]).ok().json();
    let kai_id = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["principal"] == "kai")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    team.db(&["token", "revoke", &kai_id]).ok();
    for url in [&a.url, &b.url] {
        let refused = queue_as(url, &kai);
        assert_eq!(refused, 401, "a revoked token still works on {url}");
    }

    // Both replicas appended to one chain, which verifies.
    team.home
        .remote(
            &b.url,
            &marco,
            &[
                "--as",
                "marco",
                "request-changes",
                "CR-1046",
                "--role",
                "ops-reviewer",
                "--rationale",
                "canary",
            ],
        )
        .ok();
    team.db(&["verify"]).ok();
}

fn queue_as(url: &str, token: &str) -> u16 {
    http()
        .get(format!("{url}/v1/queue"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn the_database_refuses_to_rewrite_history() {
    let team = Team::new();
    let mut sql = team.sql();
    for statement in [
        "UPDATE log SET body = '{}' WHERE seq = 1",
        "DELETE FROM log WHERE seq = (SELECT MAX(seq) FROM log)",
        "TRUNCATE log CASCADE",
        "UPDATE revisions SET document = '{}'",
        "DELETE FROM revisions",
        "UPDATE log_head SET seq = 1, hash = (SELECT hash FROM log WHERE seq = 1)",
        "UPDATE log_head SET seq = seq + 1",
        "DELETE FROM log_head",
    ] {
        let err = sql
            .batch_execute(statement)
            .expect_err(&format!("{statement} was allowed"));
        let text = err
            .as_db_error()
            .map(|e| e.message().to_string())
            .unwrap_or_default();
        assert!(text.starts_with("tollgate:"), "{statement}: {err}");
    }
    team.db(&["verify"]).ok();
}

#[test]
fn a_schema_from_a_newer_tollgate_is_refused_untouched() {
    let team = Team::new();
    let mut sql = team.sql();
    sql.batch_execute("UPDATE tollgate_schema SET version = version + 100")
        .unwrap();
    let refused = team.db(&["list"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains("newer than this tollgate understands")
            && refused.stderr.contains("upgrade tollgate"),
        "{}",
        refused.stderr
    );
    let version: i64 = sql
        .query_one("SELECT version FROM tollgate_schema", &[])
        .unwrap()
        .get(0);
    assert!(version > 100, "the refused open changed the schema version");
}

/// A database made by the first release of the schema (before each CR's last log entry
/// was kept beside it) is upgraded when opened: the column is filled from the log and
/// kept moving by the trigger, and the queue reads as before.
#[test]
fn a_version_1_database_is_upgraded_in_place() {
    let team = Team::new();
    let listed = team.db(&["list", "--json"]).ok().stdout;
    let mut sql = team.sql();
    sql.batch_execute(
        "DROP TRIGGER log_moves_its_cr ON log;
         DROP FUNCTION tollgate_log_moves_its_cr();
         ALTER TABLE change_requests DROP COLUMN last_seq;
         DROP TABLE event_deliveries;
         DROP TABLE event_cursor;
         DROP TABLE received_deliveries;
         DELETE FROM cr_summaries;
         UPDATE tollgate_schema SET version = 1;",
    )
    .unwrap();
    assert_eq!(team.db(&["list", "--json"]).ok().stdout, listed);
    let version: i64 = sql
        .query_one("SELECT version FROM tollgate_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, 4, "upgraded to the latest schema");
    let disagree: i64 = sql
        .query_one(
            "SELECT COUNT(*) FROM change_requests c
             WHERE c.last_seq <> (SELECT MAX(seq) FROM log l WHERE l.cr_id = c.id)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(disagree, 0, "last_seq filled from the log");
    team.db(&[
        "--as",
        "kai",
        "request-changes",
        "CR-1045",
        "--rationale",
        "add the latency check",
    ])
    .ok();
    let after = team
        .db(&["list", "--json", "--status", "changes-requested"])
        .ok()
        .json();
    assert_eq!(after[0]["id"], "CR-1045", "{after}");
    team.db(&["verify"]).ok();
}

/// As for SQLite: a CR's recorded last log entry set back by hand in the database (it
/// keys the cached rows every replica reads) is named by `verify` and set from the log.
#[test]
fn verify_names_a_forged_last_log_entry_in_the_database() {
    let team = Team::new();
    let mut sql = team.sql();
    sql.batch_execute("UPDATE change_requests SET last_seq = last_seq - 1 WHERE id = 'CR-1044'")
        .unwrap();
    common::assert_refusal(
        &team.db(&["verify"]),
        &["the recorded last log entry of \"CR-1044\" did not match the log"],
    );
    let disagree: i64 = sql
        .query_one(
            "SELECT COUNT(*) FROM change_requests c
             WHERE c.last_seq <> (SELECT MAX(seq) FROM log l WHERE l.cr_id = c.id)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(disagree, 0);
    team.db(&["verify"]).ok();
}

/// A decision on CR-1045 by marco, continuing the database's log, with `edit` applied.
fn decision(team: &Team, edit: impl FnOnce(&mut Value)) -> String {
    let row = team
        .sql()
        .query_one("SELECT seq, hash FROM log_head WHERE id = 1", &[])
        .unwrap();
    let (seq, prev): (i64, Option<String>) = (row.get(0), row.get(1));
    let shown = team.db(&["show", "CR-1045", "--json"]).ok().json();
    let policy = team.db(&["policy", "show", "--json"]).ok().json();
    let mut v = json!({
        "type": "decision", "format": 1, "seq": seq + 1, "prev": prev,
        "cr_id": "CR-1045", "cr_revision": shown["revision"], "cr_digest": shown["digest"],
        "verdict": "request-changes", "role": "ops-reviewer", "rationale": "p99 latency",
        "ticks": [], "checklist": checklist_of(&shown), "principal": "marco",
        "key_fingerprint": ssh_fingerprint(&team.home.demo_key("marco")),
        "policy_digest": policy["digest"], "at": now_text(),
    });
    edit(&mut v);
    to_canonical_string(&v)
}

#[test]
fn a_signed_decision_stating_false_facts_is_refused_by_a_replica_and_named_in_the_database() {
    let team = Team::new();
    let marco = team.token("marco");
    let server = team.home.serve_database(&team.url, "127.0.0.1:0");
    let bad = decision(&team, |v| v["cr_revision"] = json!(99));
    let sig = ssh_sign(&team.home.demo_key("marco"), &bad);
    let answer = http()
        .post(format!("{}/v1/decisions", server.url))
        .bearer_auth(&marco)
        .json(&json!({"kind": "decision", "principal": "marco", "body": bad, "signature": sig}))
        .send()
        .unwrap();
    assert_eq!(answer.status(), 403);
    let body: Value = answer.json().unwrap();
    assert_eq!(body["rule"], json!("decision-revision"), "{body}");

    // Forced into the database past every check (it continues the chain, so only the
    // rules can catch it): verify names the entry and the rule.
    let mut sql = team.sql();
    let seq: i64 = sql
        .query_one("SELECT seq + 1 FROM log_head", &[])
        .unwrap()
        .get(0);
    let hash = tollgate::audit::log::entry_hash(&bad);
    let mut tx = sql.transaction().unwrap();
    tx.execute(
        "INSERT INTO log (seq, kind, cr_id, principal, body, hash, signature, received_at)
         VALUES ($1, 'decision', 'CR-1045', 'marco', $2, $3, $4, $5)",
        &[
            &seq,
            &bad,
            &hash,
            &sig,
            &tollgate::audit::log::time_text(chrono::Utc::now()),
        ],
    )
    .unwrap();
    tx.execute(
        "UPDATE log_head SET seq = $1, hash = $2 WHERE id = 1",
        &[&seq, &hash],
    )
    .unwrap();
    tx.commit().unwrap();
    let verify = team.db(&["verify"]);
    assert_refusal(
        &verify,
        &[
            &format!("FAILED at entry {seq}"),
            "policy-violation",
            "decision-revision",
        ],
    );
}

/// The reviewer's TUI on the database, in a real terminal: the queue comes from
/// PostgreSQL and a request for changes typed at the keyboard lands in its log.
#[test]
fn the_tui_reviews_and_signs_on_the_database() {
    let team = Team::new();
    let s = common::tmux::Session::tollgate(
        &team.home,
        &[("TOLLGATE_DATABASE", team.url.as_str())],
        "--as devi",
    );
    s.wait_for("CR-1046");
    // The database by name, not by its socket directory.
    let db = team.url["postgres:///".len()..].split('?').next().unwrap();
    s.wait_for(&format!("│ postgres {db} │ database · live"));
    s.keys(&["Enter"]);
    s.wait_for("Checklist");
    s.keys(&["c"]);
    s.literal("per-language FPR missing");
    s.keys(&["C-s"]);
    s.wait_for("y sign");
    s.keys(&["y"]);
    s.wait_for("signed: request-changes CR-1042 as risk-reviewer");
    let shown = team.db(&["show", "CR-1042", "--json"]).ok().json();
    let decisions = shown["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 1, "{shown}");
    assert_eq!(decisions[0]["principal"], json!("devi"));
    assert_eq!(decisions[0]["rationale"], json!("per-language FPR missing"));
    team.db(&["verify"]).ok();
}
