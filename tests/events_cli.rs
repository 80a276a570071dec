//! Signed events out: the team server tells a subscriber what the log records — signed
//! with GitHub's `X-Tollgate-Signature: sha256=HMAC`, retried after a failure, delivered
//! after a restart from the durable queue in its store, and never twice in a normal run.
//! The subscriber is a small HTTP receiver on 127.0.0.1 in the test.

mod common;

use common::{Home, low_risk_cr};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "a-subscriber-secret-0123456789";

/// One request the receiver got: its headers (lower-case names) and body.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// An HTTP receiver answering each request with the next status of `script` (then 200).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(listener: std::net::TcpListener, script: &[u16]) -> Receiver {
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(
            script.iter().copied().collect::<VecDeque<u16>>(),
        ));
        let (g, s) = (got.clone(), script.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let mut headers = Vec::new();
                let _ = reader.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.trim_end().split_once(": ") {
                        headers.push((k.to_ascii_lowercase(), v.to_string()));
                    }
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let status = s.lock().unwrap().pop_front().unwrap_or(200);
                g.lock().unwrap().push(Received {
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let mut out = stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, got }
    }

    /// Waits until `done` holds for what was received (60 s at most).
    fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.got.lock().unwrap().clone();
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "never received {what}: {got:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn subscribers(home: &Home, url: &str, events: &str) -> String {
    home.write(
        "subscribers.toml",
        format!(
            "[[subscriber]]\nname = \"deploy-bot\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nevents = {events}\n"
        )
        .as_bytes(),
    )
}

fn approve_new_cr(home: &Home) {
    home.approved_low_risk("CR-2045");
}

fn events_of(got: &[Received], id: &str) -> Vec<String> {
    got.iter()
        .filter(|r| {
            serde_json::from_str::<Value>(&r.body).is_ok_and(|b| b["change_request"]["id"] == id)
        })
        .map(|r| r.header("x-tollgate-event").to_string())
        .collect()
}

#[test]
fn a_subscriber_gets_each_event_once_signed_so_it_can_check_it() {
    let home = Home::demo();
    home.token("marco");
    let receiver = Receiver::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), &[]);
    let file = subscribers(&home, &receiver.url, "[]");
    let _server = home.serve_with("127.0.0.1:0", &["--subscribers", &file]);
    approve_new_cr(&home);
    let got = receiver.wait_for("CR-2045's submission, decision and approval", |got| {
        events_of(got, "CR-2045")
            .iter()
            .filter(|e| *e != "cr.stale")
            .count()
            >= 3
    });
    let mut mine = events_of(&got, "CR-2045");
    // The fixture's creation date is days old: it is also reminded about (see below).
    mine.retain(|e| e != "cr.stale");
    mine.sort();
    assert_eq!(mine, ["cr.approved", "cr.submitted", "decision.recorded"]);
    for r in &got {
        assert_eq!(
            r.header("x-tollgate-signature"),
            tollgate::server::events::signature(SECRET, r.body.as_bytes()),
            "every body is signed with the subscriber's secret"
        );
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["delivery"], r.header("x-tollgate-delivery"));
        // Events derived from the log name their entry (timed reminders name none).
        if !["cr.stale", "review.overdue"].contains(&r.header("x-tollgate-event")) {
            assert!(
                body["entry"]["hash"]
                    .as_str()
                    .is_some_and(|h| h.starts_with("sha256:")),
                "{body}"
            );
        }
    }
    let approved: Value = got
        .iter()
        .find(|r| r.header("x-tollgate-event") == "cr.approved")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .unwrap();
    assert_eq!(approved["change_request"]["status"], "approved");
    assert_eq!(approved["decision"]["principal"], "devi");
    // Nothing twice: every delivery id once, also a moment later.
    std::thread::sleep(Duration::from_millis(1500));
    let got = receiver.got.lock().unwrap().clone();
    let mut ids: Vec<&str> = got
        .iter()
        .map(|r| r.header("x-tollgate-delivery"))
        .collect();
    let all = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all, "no delivery twice");
    let listed = home.run(&["events", "--json"]).ok().json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["delivered_at"].is_string()),
        "{listed}"
    );
}

#[test]
fn a_failed_delivery_is_retried_and_one_queued_during_an_outage_survives_a_restart() {
    // A subscriber that fails once: retried, acknowledged on the second attempt.
    let home = Home::demo();
    home.token("marco");
    let receiver = Receiver::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), &[500]);
    let file = subscribers(&home, &receiver.url, "[\"cr.approved\"]");
    let server = home.serve_with("127.0.0.1:0", &["--subscribers", &file]);
    approve_new_cr(&home);
    let got = receiver.wait_for("the retry", |got| got.len() >= 2);
    assert_eq!(
        got[0].header("x-tollgate-delivery"),
        got[1].header("x-tollgate-delivery")
    );
    // The acknowledgement is recorded once the server has it (its next pass).
    let deadline = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let listed = home.run(&["events", "--json"]).ok().json();
        if listed[0]["delivered_at"].is_string() {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "never recorded as delivered: {listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(listed[0]["attempts"], 2, "{listed}");
    drop(server);

    // The subscriber is down: the event waits in the store, across a restart.
    let home = Home::demo();
    home.token("marco");
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let file = subscribers(&home, &format!("http://{addr}/hook"), "[\"cr.approved\"]");
    let server = home.serve_with("127.0.0.1:0", &["--subscribers", &file]);
    approve_new_cr(&home);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let failing = home.run(&["events", "--failed", "--json"]).ok().json();
        if failing[0]["attempts"].as_u64().unwrap_or(0) >= 1 {
            assert!(failing[0]["last_error"].is_string(), "{failing}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the delivery was never attempted: {failing}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(server);
    let receiver = Receiver::start(std::net::TcpListener::bind(addr).unwrap(), &[]);
    let _server = home.serve_with("127.0.0.1:0", &["--subscribers", &file]);
    let got = receiver.wait_for("the queued approval after the restart", |got| {
        !got.is_empty()
    });
    assert_eq!(got[0].header("x-tollgate-event"), "cr.approved");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(receiver.got.lock().unwrap().len(), 1, "delivered once");
    assert_eq!(
        home.run(&["events", "--failed", "--json"]).ok().json(),
        serde_json::json!([])
    );
}

#[test]
fn a_bad_subscribers_file_is_named_with_what_to_fix() {
    let home = Home::demo();
    home.token("marco");
    let file = home.write(
        "subscribers.toml",
        b"[[subscriber]]\nname = \"x\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"short\"\n",
    );
    let run = home.run(&["serve", "--listen", "127.0.0.1:0", "--subscribers", &file]);
    common::assert_refusal(
        &run,
        &["subscribers.toml: subscriber[0].secret: expected at least 16 characters"],
    );
}

#[test]
fn two_replicas_on_postgresql_send_each_event_once() {
    let (home, url) = Home::demo_in_database();
    home.run(&["--database", &url, "token", "add", "marco", "--label", "t"])
        .ok();
    let receiver = Receiver::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), &[]);
    let file = subscribers(&home, &receiver.url, "[\"cr.submitted\", \"cr.approved\"]");
    let args = |listen: &'static str| {
        vec![
            "--database",
            url.as_str(),
            "serve",
            "--listen",
            listen,
            "--subscribers",
            file.as_str(),
        ]
    };
    let _a = home.serve_args(&args("127.0.0.1:0"));
    let _b = home.serve_args(&args("127.0.0.1:0"));
    let doc = home.write_json("CR-2045.json", &low_risk_cr("CR-2045", "jonas", "model"));
    home.run(&["--database", &url, "--as", "ci", "submit", &doc])
        .ok();
    home.run(&[
        "--database",
        &url,
        "--as",
        "devi",
        "approve",
        "CR-2045",
        "--tick",
        "privacy",
        "--tick",
        "rollback",
        "--rationale",
        "fine",
    ])
    .ok();
    receiver.wait_for("CR-2045's submission and approval", |got| {
        events_of(got, "CR-2045").len() >= 2
    });
    std::thread::sleep(Duration::from_millis(2000));
    let got = receiver.got.lock().unwrap().clone();
    let mut mine = events_of(&got, "CR-2045");
    mine.sort();
    assert_eq!(
        mine,
        ["cr.approved", "cr.submitted"],
        "each once, though two replicas derive events"
    );
}

#[test]
fn a_change_waiting_past_its_review_sla_is_reminded_and_escalated_to_the_leads() {
    // The demo policy: SLA 24/48/72 h by risk, a reminder a day, the leads after two.
    let home = Home::demo_at("2026-11-28T12:00:00Z");
    home.token("marco");
    let receiver = Receiver::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), &[]);
    let file = subscribers(&home, &receiver.url, "[\"cr.stale\"]");
    let _server = home.serve_with("127.0.0.1:0", &["--subscribers", &file]);
    let got = receiver.wait_for("a reminder for each pending demo CR", |got| got.len() >= 5);
    let body = |id: &str| -> Value {
        got.iter()
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
            .find(|b| b["change_request"]["id"] == id)
            .unwrap_or_else(|| panic!("no reminder for {id}: {got:?}"))
    };
    // CR-1042 (high: 72 h) was created 2026-11-20 09:14: 194 h ago, the sixth reminder.
    let fraud = body("CR-1042");
    assert_eq!(fraud["event"], "cr.stale");
    assert_eq!(fraud["waited_hours"], 194);
    assert_eq!(fraud["reminder"], 6);
    assert_eq!(fraud["escalated"], true);
    assert_eq!(fraud["notify"], serde_json::json!(["lead"]));
    assert_eq!(
        got[0].header("x-tollgate-signature"),
        tollgate::server::events::signature(SECRET, got[0].body.as_bytes())
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(receiver.got.lock().unwrap().len(), 5, "each reminder once");
}

#[test]
fn each_event_tells_the_change_as_it_stood_at_its_entry_and_only_the_completing_approval_approves()
{
    // Everything is recorded before the server starts, so its first pass derives it all
    // at once: the bodies must still tell each step as it was.
    let home = Home::demo();
    home.token("marco");
    let mut doc = low_risk_cr("CR-2046", "jonas", "model");
    doc["risk"]["declared"] = "medium".into();
    let mut first = doc.clone();
    first["artifacts"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a["kind"] != "model_card");
    doc["artifacts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"kind": "model_card", "title": "card", "url": "https://docs.example.com/card"}
        ));
    for (name, d) in [("first.json", &first), ("second.json", &doc)] {
        let file = home.write_json(name, d);
        home.run(&["--as", "ci", "submit", &file]).ok();
    }
    for (who, role) in [("devi", "risk-reviewer"), ("lena", "approver")] {
        home.decide(
            who,
            "approve",
            "CR-2046",
            &[
                "--role",
                role,
                "--tick",
                "privacy",
                "--tick",
                "rollback",
                "--rationale",
                "ok",
            ],
        )
        .ok();
    }
    let receiver = Receiver::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), &[]);
    let file = subscribers(&home, &receiver.url, "[]");
    let _server = home.serve_with("127.0.0.1:0", &["--subscribers", &file]);
    let got = receiver.wait_for("CR-2046's five events", |got| {
        events_of(got, "CR-2046")
            .iter()
            .filter(|e| *e != "cr.stale")
            .count()
            >= 5
    });
    let bodies = |event: &str| -> Vec<Value> {
        let mut v: Vec<Value> = got
            .iter()
            .filter(|r| r.header("x-tollgate-event") == event)
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
            .filter(|b| b["change_request"]["id"] == "CR-2046")
            .collect();
        v.sort_by_key(|b| b["entry"]["seq"].as_u64());
        v
    };
    assert_eq!(bodies("cr.submitted")[0]["change_request"]["revision"], 1);
    assert_eq!(bodies("cr.revised")[0]["change_request"]["revision"], 2);
    let decided = bodies("decision.recorded");
    let steps: Vec<(&str, &str, u64)> = decided
        .iter()
        .map(|b| {
            (
                b["decision"]["principal"].as_str().unwrap(),
                b["change_request"]["status"].as_str().unwrap(),
                b["change_request"]["signoffs"]["obtained"]
                    .as_u64()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(steps, [("devi", "pending", 1), ("lena", "approved", 2)]);
    let approved = bodies("cr.approved");
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(approved[0]["entry"], decided[1]["entry"]);
}

/// A subscriber that takes each request and never answers; `gave_up` is set once the
/// server closes a connection it was waiting on (its HTTP timeout).
struct Silent {
    url: String,
    gave_up: Arc<std::sync::atomic::AtomicBool>,
}

impl Silent {
    fn start() -> Silent {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let gave_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = gave_up.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut buf = [0u8; 4096];
                    // Read the request and whatever follows until the client hangs up.
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        Silent { url, gave_up }
    }
}

#[test]
fn a_subscriber_that_hangs_holds_up_only_its_own_deliveries() {
    let home = Home::demo();
    home.token("marco");
    let silent = Silent::start();
    let receiver = Receiver::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), &[]);
    // The hanging one first: its deliveries come first in every batch.
    let file = home.write(
        "subscribers.toml",
        format!(
            "[[subscriber]]\nname = \"a-hangs\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\n[[subscriber]]\nname = \"b-answers\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
            silent.url, receiver.url
        )
        .as_bytes(),
    );
    let _server = home.serve_with("127.0.0.1:0", &["--subscribers", &file]);
    approve_new_cr(&home);
    receiver.wait_for(
        "CR-2045's three events at the subscriber that answers",
        |got| {
            events_of(got, "CR-2045")
                .iter()
                .filter(|e| *e != "cr.stale")
                .count()
                >= 3
        },
    );
    assert!(
        !silent.gave_up.load(std::sync::atomic::Ordering::SeqCst),
        "the answering subscriber waited for the hanging one's timeout"
    );
    // Once the server gives up on the hanging one: one delivery tried and failed, the
    // rest of its batch put off untried to the same retry.
    let deadline = Instant::now() + Duration::from_secs(60);
    let failing = loop {
        let listed = home.run(&["events", "--failed", "--json"]).ok().json();
        let mine: Vec<Value> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["subscriber"] == "a-hangs" && d["last_error"].is_string())
            .cloned()
            .collect();
        if !mine.is_empty() {
            break mine;
        }
        assert!(
            Instant::now() < deadline,
            "the hanging delivery never failed"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let tried: Vec<&Value> = failing.iter().filter(|d| d["attempts"] == 1).collect();
    assert_eq!(tried.len(), 1, "{failing:?}");
    assert!(
        failing
            .iter()
            .filter(|d| d["attempts"] == 0)
            .all(|d| d["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("not sent: an earlier delivery failed"))
                && d["next_at"] == tried[0]["next_at"]),
        "{failing:?}"
    );
}
