//! Push, not poll: a team server streams its log head (`GET /v1/watch`, Server-Sent
//! Events), every replica on one PostgreSQL database hears the others' appends, and the
//! TUI follows other people's work live — with its periodic check set to an hour, so only
//! the push can explain what appears on screen.

mod common;

use common::Home;
use common::tmux::Session;
use std::io::{BufRead, BufReader};
use std::time::Duration;
use tollgate::store::remote::RemoteStore;
use tollgate::store::{Head, Store};

/// Long enough for any announcement; a broken push fails the wait instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

/// Marco requests changes on `id`: through the server at `remote` (URL, token), or
/// straight into the home's store file.
fn request_changes(home: &Home, remote: Option<(&str, &str)>, id: &str) {
    let args = [
        "--as",
        "marco",
        "request-changes",
        id,
        "--role",
        "ops-reviewer",
        "--rationale",
        "p99 latency",
    ];
    match remote {
        Some((url, token)) => home.remote(url, token, &args).ok(),
        None => home.run(&args).ok(),
    };
}

/// The next head a listener announces (failing the test after [`PATIENCE`]).
fn announced(listener: &mut Box<dyn tollgate::store::HeadListener>) -> Head {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(h) = listener.wait(Duration::from_secs(1)).unwrap() {
            return h;
        }
        assert!(std::time::Instant::now() < deadline, "nothing announced");
    }
}

/// The head a server says it recorded (`GET /v1/head`).
fn recorded(url: &str, token: &str) -> Head {
    common::site::http()
        .get(format!("{url}/v1/head"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn a_watcher_hears_every_change_whoever_writes_and_nobody_watches_without_a_token() {
    let home = Home::demo();
    let marco = home.token("marco");
    let server = home.serve("127.0.0.1:0");
    let http = common::site::http();

    let refused = http.get(format!("{}/v1/watch", server.url)).send().unwrap();
    assert_eq!(refused.status(), 401);

    // The stream as a browser's EventSource reads it: the head at once.
    let stream = http
        .get(format!("{}/v1/watch", server.url))
        .bearer_auth(&marco)
        .timeout(PATIENCE)
        .send()
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut lines = BufReader::new(stream).lines();
    let first: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    let now = recorded(&server.url, &marco);
    assert_eq!(first[0], "event: head", "{first:?}");
    assert_eq!(first[1], format!("id: {}", now.seq), "{first:?}");
    assert_eq!(
        first[2],
        format!("data: {}", serde_json::to_string(&now).unwrap())
    );

    // A decision through the server, then one by a CLI writing the server's SQLite file
    // directly: the watcher hears both, each as the log records it.
    let mut listener = RemoteStore::connect(&server.url, &marco)
        .unwrap()
        .head_listener()
        .unwrap()
        .expect("the server streams its head");
    request_changes(&home, Some((&server.url, &marco)), "CR-1045");
    let through_server = announced(&mut listener);
    assert_eq!(through_server, recorded(&server.url, &marco));
    assert_eq!(through_server.seq, now.seq + 1);
    request_changes(&home, None, "CR-1046");
    let beside_it = announced(&mut listener);
    assert_eq!(beside_it, recorded(&server.url, &marco));
    assert_eq!(beside_it.seq, now.seq + 2);
    drop(listener);

    // The raw stream carried the same heads.
    let mut events = lines
        .map_while(Result::ok)
        .filter(|l| l.starts_with("data: "));
    for head in [&through_server, &beside_it] {
        assert_eq!(
            events.next().unwrap(),
            format!("data: {}", serde_json::to_string(head).unwrap())
        );
    }
}

#[test]
fn a_quiet_stream_outlives_a_short_idle_timeout() {
    let home = Home::demo();
    let marco = home.token("marco");
    let server = home.serve_with("127.0.0.1:0", &["--idle-timeout", "1"]);
    let mut listener = RemoteStore::connect(&server.url, &marco)
        .unwrap()
        .head_listener()
        .unwrap()
        .unwrap();
    // Three idle timeouts without a change: the keep-alives hold the connection open.
    assert_eq!(listener.wait(Duration::from_secs(3)).unwrap(), None);
    request_changes(&home, Some((&server.url, &marco)), "CR-1045");
    assert_eq!(announced(&mut listener), recorded(&server.url, &marco));
}

#[test]
fn a_watcher_on_one_replica_hears_a_decision_recorded_through_another() {
    let (home, url) = Home::demo_in_database();
    let token = home
        .run(&[
            "--database",
            &url,
            "token",
            "add",
            "marco",
            "--label",
            "test",
        ])
        .ok()
        .stdout
        .lines()
        .find(|l| l.starts_with("tg_"))
        .unwrap()
        .to_string();
    let a = home.serve_database(&url, "127.0.0.1:0");
    let b = home.serve_database(&url, "127.0.0.1:0");
    let mut on_a = RemoteStore::connect(&a.url, &token)
        .unwrap()
        .head_listener()
        .unwrap()
        .unwrap();
    // A TUI started with --database listens to the database itself.
    let mut on_db = tollgate::store::pg::PgStore::open(&url)
        .unwrap()
        .head_listener()
        .unwrap()
        .unwrap();

    request_changes(&home, Some((&b.url, &token)), "CR-1045");
    let head = recorded(&a.url, &token);
    assert_eq!(announced(&mut on_a), head);
    assert_eq!(announced(&mut on_db), head);
}

/// Waits for CR-1045's row to say "changes req." (no key pressed), then quits.
fn shows_changes_requested_on_cr_1045_then_quits(s: &Session) {
    s.wait_until("CR-1045 with changes requested", |screen| {
        screen
            .lines()
            .any(|l| l.contains("CR-1045") && l.contains("changes req."))
    });
    s.keys(&["q"]);
    s.wait_for("EXIT=0");
}

/// A config whose periodic check waits an hour: only the live stream can refresh.
fn hour_between_checks(home: &Home) {
    std::fs::write(home.path("config.toml"), "refresh_seconds = 3600\n").unwrap();
}

#[test]
fn the_tui_on_a_team_server_shows_someone_elses_decision_as_it_lands() {
    let server_home = Home::demo();
    let devi = server_home.token("devi");
    let marco = server_home.token("marco");
    let server = server_home.serve("127.0.0.1:0");
    let laptop = Home::new();
    hour_between_checks(&laptop);
    let key = server_home.path("tollgate.demo-keys/devi");
    let s = Session::tollgate(
        &laptop,
        &[("TOLLGATE_REMOTE", &server.url), ("TOLLGATE_TOKEN", &devi)],
        &format!("--key {}", key.display()),
    );
    s.wait_for("CR-1046");
    s.wait_for("│ remote · live");
    s.keys(&["5"]);
    s.wait_for("All 5");

    // Marco, elsewhere, requests changes; the screen follows without a key pressed.
    request_changes(&server_home, Some((&server.url, &marco)), "CR-1045");
    shows_changes_requested_on_cr_1045_then_quits(&s);
}

#[test]
fn two_terminals_on_one_store_file_see_each_others_decisions_live() {
    let home = Home::demo();
    hour_between_checks(&home);
    let s = Session::tollgate(&home, &[], "--as devi");
    s.wait_for("CR-1046");
    s.wait_for("│ local · live");
    s.keys(&["5"]);
    s.wait_for("All 5");
    request_changes(&home, None, "CR-1045");
    shows_changes_requested_on_cr_1045_then_quits(&s);
}
