//! The team server over real HTTP on 127.0.0.1: the CLI as its client, its security
//! (401/403/409/413/422 with JSON bodies; no forged or self-approved entry gets in), and
//! load and faults (50 concurrent clients; the server killed mid-run; the outbox drains).

mod common;

use common::{Home, assert_refusal};
use serde_json::{Value, json};

fn http() -> reqwest::blocking::Client {
    tollgate::tls::install_crypto_provider();
    reqwest::blocking::Client::new()
}

/// How many decisions the server holds, and on how many distinct CRs.
fn decided_crs(url: &str, token: &str) -> (usize, usize) {
    let summaries: Value = http()
        .get(format!("{url}/v1/decision-summaries?limit=1000"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut crs: Vec<&str> = summaries
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cr_id"].as_str().unwrap())
        .collect();
    let total = crs.len();
    crs.sort();
    crs.dedup();
    (total, crs.len())
}

#[test]
fn the_cli_works_against_a_server_as_it_does_locally() {
    let server_home = Home::demo();
    let ci = server_home.token("ci");
    let devi = server_home.token("devi");
    let server = server_home.serve("127.0.0.1:0");
    let client = Home::new();
    client
        .run(&["keygen", "--output", client.path("key").to_str().unwrap()])
        .ok();

    let mut cr: Value = serde_json::from_str(tollgate::demo::FIXTURES[3].1).unwrap();
    cr["id"] = json!("CR-5000");
    let file = client.write_json("cr.json", &cr);
    let run = client.remote(&server.url, &ci, &["submit", &file]).ok();
    assert!(
        run.stdout.contains("CR-5000: created, revision 1"),
        "{}",
        run.stdout
    );

    let list = client
        .remote(&server.url, &devi, &["list", "--json"])
        .ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 6);

    // devi signs with the demo key kept beside the server's store (as if it were hers).
    let key = server_home.path("tollgate.demo-keys/devi");
    let run = client.remote(
        &server.url,
        &devi,
        &[
            "--key",
            key.to_str().unwrap(),
            "approve",
            "CR-1042",
            "--tick",
            "privacy",
            "--tick",
            "rollback",
            "--rationale",
            "remote review",
        ],
    );
    let run = run.ok();
    assert!(
        run.stdout
            .contains("CR-1042: approve as risk-reviewer by devi"),
        "{}",
        run.stdout
    );
    let shown = client
        .remote(&server.url, &devi, &["show", "CR-1042", "--json"])
        .ok()
        .json();
    assert_eq!(shown["signoffs"]["obtained"], 1);
    // The server's own store verifies, and so does verification through the API.
    assert_eq!(server_home.verified_entries(), common::DEMO_ENTRIES + 2);
    let v = client
        .remote(&server.url, &devi, &["verify", "--json"])
        .ok()
        .json();
    assert_eq!(v["ok"], true);
    assert!(
        client
            .remote(&server.url, &devi, &["init"])
            .stderr
            .contains("works on a local store")
    );
}

#[test]
fn requests_without_a_valid_token_are_refused_with_json_errors() {
    let home = Home::demo();
    let devi = home.token("devi");
    let server = home.serve("127.0.0.1:0");
    let c = http();
    let r = c
        .get(format!("{}/v1/change-requests", server.url))
        .bearer_auth(&devi)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let health = c.get(format!("{}/v1/health", server.url)).send().unwrap();
    assert_eq!(health.status(), 200, "health needs no token");
    let r = c
        .get(format!("{}/v1/change-requests", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert!(body["message"].as_str().unwrap().contains("Bearer"));
    let r = c
        .get(format!("{}/v1/change-requests", server.url))
        .bearer_auth("tg_wrong")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c.get(format!("{}/v1/nope", server.url)).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().unwrap()["error"], "not-found");
    // The access log names principals, never tokens.
    let log = std::fs::read_to_string(home.path("server.log")).unwrap();
    assert!(log.contains("GET /v1/change-requests 200 devi "), "{log}");
    assert!(log.contains("GET /v1/change-requests 401 - "), "{log}");
    assert!(!log.contains(&devi) && !log.contains("tg_wrong"), "{log}");
}

/// Signs a decision body for `who` with the demo key, at the server's current head.
/// `(who, cr, verdict, role)`.
type Decided<'a> = (&'a str, &'a str, &'a str, &'a str);

fn signed_decision(
    home: &Home,
    url: &str,
    token: &str,
    (who, cr, verdict, role): Decided<'_>,
    ticks: &[&str],
) -> Value {
    let c = http();
    let ctx: Value = c
        .get(format!("{url}/v1/change-requests/{cr}/context"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let policy: Value = c
        .get(format!("{url}/v1/policy"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let signer = tollgate::audit::keys::Signer::load(
        &home.path(&format!("tollgate.demo-keys/{who}")),
        || Err("none".into()),
    )
    .unwrap();
    let record = tollgate::audit::log::DecisionRecord {
        kind: "decision".into(),
        format: 1,
        seq: ctx["head"]["seq"].as_u64().unwrap() + 1,
        prev: ctx["head"]["hash"].as_str().map(String::from),
        cr_id: cr.into(),
        cr_revision: ctx["current"]["revision"].as_u64().unwrap() as u32,
        cr_digest: ctx["current"]["digest"].as_str().unwrap().into(),
        verdict: verdict.into(),
        role: role.into(),
        rationale: "hand-made client".into(),
        ticks: ticks
            .iter()
            .map(|t| tollgate::audit::log::TickRecord {
                item: t.to_string(),
                note: None,
            })
            .collect(),
        // The checklist as tollgate evaluates it, with this decision's ticks.
        checklist: common::checklist_of(&home.run(&["show", cr, "--json"]).ok().json())
            .as_array()
            .unwrap()
            .iter()
            .map(|i| tollgate::audit::log::ItemSnapshot {
                id: i["id"].as_str().unwrap().into(),
                state: if ticks.contains(&i["id"].as_str().unwrap()) {
                    "ticked".into()
                } else {
                    i["state"].as_str().unwrap().into()
                },
            })
            .collect(),
        principal: who.into(),
        key_fingerprint: signer.fingerprint().into(),
        policy_digest: policy["digest"].as_str().unwrap().into(),
        at: common::now_text(),
    };
    let body = record.body();
    json!({ "kind": "decision", "signature": signer.sign(body.as_bytes()).unwrap(), "principal": who, "body": body })
}

#[test]
fn a_modified_client_cannot_forge_or_self_approve() {
    let home = Home::demo();
    let devi = home.token("devi");
    let priya = home.token("priya");
    let kai = home.token("kai");
    let server = home.serve("127.0.0.1:0");
    let url = &server.url;
    let c = http();
    let post = |token: &str, body: &Value| {
        c.post(format!("{url}/v1/decisions"))
            .bearer_auth(token)
            .json(body)
            .send()
            .unwrap()
    };

    // Self-approval by the requester, correctly signed: the rules refuse it (403).
    let own = signed_decision(
        &home,
        url,
        &priya,
        ("priya", "CR-1042", "approve", "requester"),
        &[],
    );
    let r = post(&priya, &own);
    assert_eq!(r.status(), 403);
    let e: Value = r.json().unwrap();
    assert_eq!(e["rule"], "requester-cannot-sign");
    assert!(e["remedy"].is_string());

    // Someone else's token delivering devi's decision: 403.
    let d = signed_decision(
        &home,
        url,
        &devi,
        ("devi", "CR-1042", "approve", "risk-reviewer"),
        &["privacy", "rollback"],
    );
    assert_eq!(post(&kai, &d).status(), 403);

    // A forged body (signature from another content): 403.
    let mut forged = d.clone();
    forged["body"] = json!(
        d["body"]
            .as_str()
            .unwrap()
            .replace("hand-made client", "looks fine")
    );
    let r = post(&devi, &forged);
    assert_eq!(r.status(), 403);
    assert!(
        r.json::<Value>().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("signature")
    );

    // The genuine one is recorded once, however often it is delivered.
    let first = post(&devi, &d);
    assert_eq!(first.status(), 201);
    let again = post(&devi, &d);
    assert_eq!(again.status(), 200, "idempotent on the decision");
    assert_eq!(
        first.json::<Value>().unwrap()["hash"],
        again.json::<Value>().unwrap()["hash"]
    );

    // Signed against an old head: 409 with the current head, so the client can re-sign.
    let mut stale_head = signed_decision(
        &home,
        url,
        &kai,
        ("kai", "CR-1042", "approve", "data-reviewer"),
        &[],
    );
    let body: Value = serde_json::from_str(stale_head["body"].as_str().unwrap()).unwrap();
    let mut old = body.clone();
    old["seq"] = json!(body["seq"].as_u64().unwrap() - 1);
    old["prev"] = json!("sha256:0000000000000000000000000000000000000000000000000000000000000000");
    let old_body = tollgate::audit::canonical::to_canonical_string(&old);
    let signer = tollgate::audit::keys::Signer::load(&home.path("tollgate.demo-keys/kai"), || {
        Err("none".into())
    })
    .unwrap();
    stale_head["body"] = json!(old_body);
    stale_head["signature"] = json!(signer.sign(old_body.as_bytes()).unwrap());
    let r = post(&kai, &stale_head);
    assert_eq!(r.status(), 409);
    let e: Value = r.json().unwrap();
    assert_eq!(e["error"], "conflict");
    assert!(e["head"]["seq"].is_u64());

    assert_eq!(
        home.verified_entries(),
        common::DEMO_ENTRIES + 1,
        "only the genuine decision got in"
    );
}

#[test]
fn malformed_and_oversized_bodies_are_refused_and_the_server_keeps_serving() {
    let home = Home::demo();
    let ci = home.token("ci");
    let server = home.serve("127.0.0.1:0");
    let c = http();
    let url = &server.url;
    let r = c
        .post(format!("{url}/v1/change-requests"))
        .bearer_auth(&ci)
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().unwrap()["error"], "invalid");
    let mut bad: Value = serde_json::from_str(tollgate::demo::FIXTURES[0].1).unwrap();
    bad["gate"] = json!("release");
    let r = c
        .post(format!("{url}/v1/change-requests"))
        .bearer_auth(&ci)
        .json(&bad)
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    let e: Value = r.json().unwrap();
    assert!(
        e["problems"][0]
            .as_str()
            .unwrap()
            .contains("$.gate: expected one of data, model, deployment, emergency"),
        "{e}"
    );
    // One byte over the limit: the server reads (nearly) all of it before refusing, so the
    // refusal cannot race the client's upload into a reset connection.
    let huge = vec![b'x'; tollgate::server::MAX_BODY_BYTES + 1];
    let r = c
        .post(format!("{url}/v1/change-requests"))
        .bearer_auth(&ci)
        .body(huge)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().unwrap()["error"], "too-large");
    // The server may close a connection whose body it refused; start afresh.
    let c = http();
    let r = c
        .post(format!("{url}/v1/decisions"))
        .bearer_auth(&ci)
        .json(&json!({"kind": "decision"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    // Still serving, and nothing was stored.
    let list: Value = c
        .get(format!("{url}/v1/change-requests"))
        .bearer_auth(&ci)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
}

#[test]
fn unchanged_listings_are_a_cheap_304() {
    let home = Home::demo();
    let ci = home.token("ci");
    let server = home.serve("127.0.0.1:0");
    let c = http();
    let url = format!("{}/v1/queue?status=pending", server.url);
    let r = c.get(&url).bearer_auth(&ci).send().unwrap();
    assert_eq!(r.status(), 200);
    let tag = r.headers()["etag"].to_str().unwrap().to_string();
    let q: Value = r.json().unwrap();
    assert_eq!(q["items"].as_array().unwrap().len(), 5);
    let r = c
        .get(&url)
        .bearer_auth(&ci)
        .header("If-None-Match", &tag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    let mut cr: Value = serde_json::from_str(tollgate::demo::FIXTURES[0].1).unwrap();
    cr["id"] = json!("CR-7000");
    c.post(format!("{}/v1/change-requests", server.url))
        .bearer_auth(&ci)
        .json(&cr)
        .send()
        .unwrap();
    let r = c
        .get(&url)
        .bearer_auth(&ci)
        .header("If-None-Match", &tag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "something changed");
    let after: Value = r.json().unwrap();
    assert_eq!(after["items"].as_array().unwrap().len(), 6);
}

/// A replica reuses its answer while the log head stays where it was: the reused answer,
/// a fresh one (`Cache-Control: no-cache`) and the rows of `list --json` agree, and a
/// decision is in the very next answer.
#[test]
fn a_reused_queue_answer_is_the_fresh_one_until_the_log_moves() {
    let home = Home::demo();
    let marco = home.token("marco");
    let server = home.serve("127.0.0.1:0");
    let c = http();
    let url = format!("{}/v1/queue", server.url);
    let get = |fresh: bool| {
        let mut r = c.get(&url).bearer_auth(&marco);
        if fresh {
            r = r.header("Cache-Control", "no-cache");
        }
        r.send().unwrap().text().unwrap()
    };
    let first = get(false);
    assert_eq!(get(false), first);
    assert_eq!(get(true), first);
    let listed = home.run(&["list", "--json"]).ok().json();
    let served: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(served["items"], listed);

    home.remote(
        &server.url,
        &marco,
        &[
            "--as",
            "marco",
            "request-changes",
            "CR-1045",
            "--role",
            "ops-reviewer",
            "--rationale",
            "p99",
        ],
    )
    .ok();
    let moved: Value = serde_json::from_str(&get(false)).unwrap();
    assert_ne!(moved["head"], served["head"]);
    let row = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "CR-1045")
            .cloned()
            .unwrap()
    };
    assert_ne!(
        row(&moved),
        row(&served),
        "the decision is not in the next answer"
    );
    assert_eq!(moved["items"], home.run(&["list", "--json"]).ok().json());
}

#[test]
fn fifty_concurrent_clients_lose_and_duplicate_nothing() {
    let home = Home::demo();
    // 50 CRs, each decided by one client (request-changes is always allowed).
    let docs: Vec<Value> = (0..50)
        .map(|i| {
            let mut cr: Value = serde_json::from_str(tollgate::demo::FIXTURES[3].1).unwrap();
            cr["id"] = json!(format!("CR-8{i:03}"));
            cr
        })
        .collect();
    let f = home.write_json("batch.json", &Value::Null);
    std::fs::remove_file(&f).unwrap();
    for (i, d) in docs.iter().enumerate() {
        let f = home.write_json(&format!("cr-{i}.json"), d);
        home.run(&["submit", &f]).ok();
    }
    let devi = home.token("devi");
    // Fifty processes share one token here: the rate limit (tested on its own in
    // server_limits.rs) is raised so this measures concurrency, not the limiter.
    let server = home.serve_with(
        "127.0.0.1:0",
        &["--rate-limit", "100000", "--rate-burst", "100000"],
    );
    let key = home.path("tollgate.demo-keys/devi");
    let clients: Vec<_> = (0..50)
        .map(|i| {
            home.command(&[
                "--remote",
                &server.url,
                "--key",
                key.to_str().unwrap(),
                "request-changes",
                &format!("CR-8{i:03}"),
                "--rationale",
                &format!("client {i}"),
            ])
            .env("TOLLGATE_TOKEN", &devi)
            .env("TOLLGATE_HOME", home.path(&format!("client-{i}")))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for child in clients {
        let run: common::Run = child.wait_with_output().unwrap().into();
        run.ok();
    }
    let (decisions, crs) = decided_crs(&server.url, &devi);
    assert_eq!(decisions, 50, "none duplicated");
    assert_eq!(crs, 50, "none lost");
    assert_eq!(home.verified_entries(), common::DEMO_ENTRIES + 50 + 50);
}

#[test]
fn a_decision_made_while_the_server_is_down_is_delivered_exactly_once_after_a_restart() {
    let home = Home::demo();
    let devi = home.token("devi");
    let server = home.serve("127.0.0.1:0");
    let (url, listen) = (server.url.clone(), server.listen());
    let key = home.path("tollgate.demo-keys/devi");
    let client = Home::new();
    let flush = || {
        client
            .remote(
                &url,
                &devi,
                &["--key", key.to_str().unwrap(), "outbox", "--flush"],
            )
            .ok()
    };
    let decide = |cr: &str| {
        client.remote(
            &url,
            &devi,
            &[
                "--key",
                key.to_str().unwrap(),
                "request-changes",
                cr,
                "--role",
                "risk-reviewer",
                "--rationale",
                &format!("offline review of {cr}"),
            ],
        )
    };

    decide("CR-1044").ok();
    // The reviewer reads CR-1045 while the server is up; the decision binds to that.
    client.remote(&url, &devi, &["show", "CR-1045"]).ok();
    drop(server); // killed

    let run = decide("CR-1045");
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("UNSENT") && run.stderr.contains("kept in the outbox"),
        "{}",
        run.stderr
    );
    let listed = client.remote(&url, &devi, &["outbox"]).ok();
    assert!(
        listed.stdout.contains("1 unsent decision(s)"),
        "{}",
        listed.stdout
    );
    assert!(
        listed.stdout.contains("request-changes CR-1045"),
        "{}",
        listed.stdout
    );

    // With the server still down, a flush asks once and says so; nothing is tried item
    // by item.
    let down = flush();
    assert!(
        down.stdout
            .contains("still unsent: 1 decision(s); the server does not answer"),
        "{}",
        down.stdout
    );

    let _server = home.serve(&listen); // restarted
    let flushed = flush();
    assert!(
        flushed
            .stdout
            .contains("delivered: request-changes CR-1045"),
        "{}",
        flushed.stdout
    );
    // Flushing again delivers nothing twice.
    let again = flush();
    assert!(
        again.stdout.contains("nothing to deliver"),
        "{}",
        again.stdout
    );
    let shown = client
        .remote(&url, &devi, &["show", "CR-1045", "--json"])
        .ok()
        .json();
    assert_eq!(shown["decisions"].as_array().unwrap().len(), 1);
    assert_eq!(
        shown["decisions"][0]["rationale"],
        "offline review of CR-1045"
    );
    assert_eq!(home.verified_entries(), common::DEMO_ENTRIES + 2);
}

#[test]
fn an_offline_decision_never_lands_on_a_revision_the_reviewer_did_not_see() {
    let home = Home::demo();
    let devi = home.token("devi");
    let server = home.serve("127.0.0.1:0");
    let (url, listen) = (server.url.clone(), server.listen());
    let key = home.path("tollgate.demo-keys/devi");
    let client = Home::new();
    let flush = || {
        client
            .remote(
                &url,
                &devi,
                &["--key", key.to_str().unwrap(), "outbox", "--flush"],
            )
            .ok()
    };
    let approve = |cr: &str| {
        client.remote(
            &url,
            &devi,
            &[
                "--key",
                key.to_str().unwrap(),
                "request-changes",
                cr,
                "--role",
                "risk-reviewer",
                "--rationale",
                "read revision 1 on the train",
            ],
        )
    };
    client.remote(&url, &devi, &["show", "CR-1045"]).ok();
    drop(server);

    // Without having seen it, an offline decision is not even queued.
    let blind = approve("CR-1044");
    assert_refusal(
        &blind,
        &["nothing says which revision of \"CR-1044\" you reviewed"],
    );
    let queued = approve("CR-1045");
    assert!(queued.stderr.contains("UNSENT"), "{}", queued.stderr);

    // Meanwhile the requester submits revision 2.
    let mut doc = common::fixture_json("CR-1045");
    doc["summary"] = json!("revision 2: the latency fix is in");
    let file = home.write_json("rev2.json", &doc);
    home.run(&["submit", &file]).ok();

    let _server = home.serve(&listen);
    let flushed = flush();
    assert!(
        flushed
            .stdout
            .contains("STALE, not sent: request-changes CR-1045")
            && flushed.stdout.contains("it is now revision 2"),
        "{}",
        flushed.stdout
    );
    let shown = home.run(&["show", "CR-1045", "--json"]).ok().json();
    assert_eq!(shown["revision"], 2);
    assert!(shown["decisions"].as_array().unwrap().is_empty(), "{shown}");
    // Kept, marked, and said again on every flush until dropped.
    let listed = client.remote(&url, &devi, &["outbox"]).ok();
    assert!(listed.stdout.contains("STALE "), "{}", listed.stdout);
    let again = flush();
    assert!(again.stdout.contains("STALE, not sent"), "{}", again.stdout);
    let id = again
        .stdout
        .split("--drop ")
        .nth(1)
        .and_then(|r| r.split('`').next())
        .unwrap()
        .to_string();
    client.remote(&url, &devi, &["outbox", "--drop", &id]).ok();
    let empty = client.remote(&url, &devi, &["outbox"]).ok();
    assert!(
        empty.stdout.contains("no unsent decisions"),
        "{}",
        empty.stdout
    );
    assert_eq!(home.verified_entries(), common::DEMO_ENTRIES + 1);
}

#[test]
fn a_bad_remote_setup_says_what_to_do() {
    let home = Home::new();
    let run = home.run(&["--remote", "http://127.0.0.1:9", "list"]);
    assert_refusal(
        &run,
        &["the team server http://127.0.0.1:9 needs a bearer token: set TOLLGATE_TOKEN"],
    );
    let run = home.remote("http://127.0.0.1:9", "tg_x", &["list"]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr
            .contains("cannot reach the tollgate server at http://127.0.0.1:9"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("tg_x"), "tokens are never printed");
}

#[test]
fn the_config_file_can_name_the_server_and_the_token_file() {
    let server_home = Home::demo();
    let devi = server_home.token("devi");
    let server = server_home.serve("127.0.0.1:0");
    let home = Home::new();
    std::fs::write(home.path("devi.token"), format!("{devi}\n")).unwrap();
    std::fs::write(
        home.path("config.toml"),
        format!(
            "theme = \"light\"\nremote = \"{}\"\ntoken_file = \"devi.token\"\n",
            server.url
        ),
    )
    .unwrap();
    // No flags: the queue comes from the server (this home has no store of its own).
    let list = home.run(&["list", "--json"]).ok();
    let rows: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(5), "{}", list.stdout);
    assert!(!home.store().exists(), "nothing was written locally");
    // A local-only command ignores the configured server and works on the local store.
    home.run(&["demo"]).ok();
    assert!(home.store().exists());
    // An explicit --remote wins over the config, and the configured token is not sent to it.
    let run = home.run(&["--remote", "http://127.0.0.1:9", "list"]);
    assert_refusal(&run, &["http://127.0.0.1:9 needs a bearer token"]);

    std::fs::write(home.path("config.toml"), "remote = 8080\n").unwrap();
    let run = home.run(&["list"]);
    assert_refusal(&run, &["config.toml: remote: expected"]);
    std::fs::write(
        home.path("config.toml"),
        format!("remote = \"{}\"\n", server.url),
    )
    .unwrap();
    let run = home.run(&["list"]);
    assert_refusal(&run, &["needs a bearer token", "token_file = \"PATH\""]);
}

#[test]
fn killing_the_server_mid_run_loses_nothing_and_the_outboxes_drain() {
    let home = Home::demo();
    for i in 0..30 {
        let mut cr: Value = serde_json::from_str(tollgate::demo::FIXTURES[3].1).unwrap();
        cr["id"] = json!(format!("CR-9{i:03}"));
        let f = home.write_json(&format!("cr-{i}.json"), &cr);
        home.run(&["submit", &f]).ok();
    }
    let devi = home.token("devi");
    let key = home.path("tollgate.demo-keys/devi");
    // What each reviewer read before deciding: the digest their decision binds to.
    let digests: std::collections::HashMap<String, String> = (0..30)
        .map(|i| {
            let cr = format!("CR-9{i:03}");
            let d = home.run(&["show", &cr, "--json"]).ok().json()["digest"]
                .as_str()
                .unwrap()
                .to_string();
            (cr, d)
        })
        .collect();
    let server = home.serve("127.0.0.1:0");
    let (url, listen) = (server.url.clone(), server.listen());
    // Five reviewers, six decisions each, one process per decision: three while the server
    // is up, then (after it is killed, which the barriers make certain) three while down.
    let up = std::sync::Arc::new(std::sync::Barrier::new(6));
    let down = std::sync::Arc::new(std::sync::Barrier::new(6));
    let workers: Vec<_> = (0..5)
        .map(|w| {
            let (url, devi, key) = (url.clone(), devi.clone(), key.clone());
            let (up, down) = (up.clone(), down.clone());
            let digests = digests.clone();
            let client_home = home.path(&format!("reviewer-{w}"));
            std::thread::spawn(move || {
                let mut codes = Vec::new();
                for j in 0..6 {
                    if j == 3 {
                        up.wait(); // all first halves done
                        down.wait(); // the server is dead
                    }
                    let cr = format!("CR-9{:03}", w * 6 + j);
                    let out = common::without_tollgate_env(&mut std::process::Command::new(env!(
                        "CARGO_BIN_EXE_tollgate"
                    )))
                    .args([
                        "--remote",
                        &url,
                        "--key",
                        key.to_str().unwrap(),
                        "request-changes",
                        "--digest",
                        &digests[&cr],
                        &cr,
                        "--role",
                        "risk-reviewer",
                        "--rationale",
                        "mid-run",
                    ])
                    .env("TOLLGATE_TOKEN", &devi)
                    .env("TOLLGATE_HOME", &client_home)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap();
                    codes.push((
                        out.status.code(),
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    ));
                }
                codes
            })
        })
        .collect();
    up.wait();
    drop(server); // killed mid-run
    down.wait();
    let codes: Vec<_> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    // While up: recorded (0). While down: kept in the outbox (3). Never anything else.
    let (before, after): (Vec<_>, Vec<_>) = codes.iter().enumerate().partition(|(i, _)| i % 6 < 3);
    for (_, (code, stderr)) in &before {
        assert_eq!(*code, Some(0), "{stderr}");
    }
    for (_, (code, stderr)) in &after {
        assert_eq!(*code, Some(3), "{stderr}");
        assert!(stderr.contains("kept in the outbox"), "{stderr}");
    }
    assert_eq!(
        decided_crs_offline(&home),
        15,
        "only the first halves reached the store"
    );

    let _server = home.serve(&listen); // restarted where clients know it
    for w in 0..5 {
        let flush = |expect: &str| {
            let out: common::Run = home
                .command(&[
                    "--remote",
                    &url,
                    "--key",
                    key.to_str().unwrap(),
                    "outbox",
                    "--flush",
                ])
                .env("TOLLGATE_TOKEN", &devi)
                .env("TOLLGATE_HOME", home.path(&format!("reviewer-{w}")))
                .output()
                .unwrap()
                .into();
            let out = out.ok();
            assert!(out.stdout.contains(expect), "{}", out.stdout);
        };
        flush("delivered: request-changes");
        flush("nothing to deliver");
    }
    assert_eq!(
        decided_crs(&url, &devi),
        (30, 30),
        "every decision exactly once"
    );
    assert_eq!(home.verified_entries(), common::DEMO_ENTRIES + 30 + 30);
}

/// CRs with a decision, read from the server's own store file (the server may be down).
fn decided_crs_offline(home: &Home) -> usize {
    let v = home.run(&["history", "--json"]).ok().json();
    let ids: std::collections::BTreeSet<&str> = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["cr_id"].as_str())
        .collect();
    ids.len()
}

#[test]
fn the_server_speaks_https_with_rustls() {
    let home = Home::demo();
    let devi = home.token("devi");
    // A private CA and a server certificate for 127.0.0.1 signed by it (rcgen: no openssl
    // binary needed).
    let (ca, cert, key) = (
        home.path("ca.pem"),
        home.path("cert.pem"),
        home.path("key.pem"),
    );
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tollgate test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf_cert.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    use std::io::BufRead;
    let mut child = home
        .command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split(" on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let server = common::Server {
        url: url.clone(),
        child,
    };
    assert!(url.starts_with("https://"), "{line}");
    let run: common::Run = home
        .command(&["--remote", &url, "list", "--json"])
        .env("TOLLGATE_TOKEN", &devi)
        .env("TOLLGATE_CA_CERT", &ca)
        .output()
        .unwrap()
        .into();
    let run = run.ok();
    assert_eq!(run.json().as_array().unwrap().len(), 5);
    // Without trusting the certificate, the client refuses to talk.
    let untrusted = home.remote(&url, &devi, &["list"]);
    assert_eq!(untrusted.code, 3, "{}", untrusted.stderr);
    drop(server);
}

/// The server's queue rows and `list --json` are one projection: the same fields with the
/// same values for every CR (blockers, missing roles and first submission included).
#[test]
fn server_queue_rows_are_the_list_json_rows() {
    let home = Home::demo();
    let ci = home.token("ci");
    let server = home.serve("127.0.0.1:0");
    let q: Value = http()
        .get(format!("{}/v1/queue", server.url))
        .bearer_auth(&ci)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let listed = home.run(&["list", "--json"]).ok().json();
    let by_id = |rows: &Value| -> std::collections::BTreeMap<String, Value> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
            .collect()
    };
    let (served, listed) = (by_id(&q["items"]), by_id(&listed));
    assert_eq!(served.len(), 5);
    assert_eq!(served, listed);
    assert!(
        served["CR-1043"]["blockers"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
    );
    assert!(served["CR-1042"]["signoffs"]["missing_roles"].is_array());
}
