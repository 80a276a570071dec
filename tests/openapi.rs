//! `docs/openapi.json` describes exactly the routes the server serves.

use serde_json::Value;
use std::collections::BTreeSet;

fn documented() -> BTreeSet<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = BTreeSet::new();
    for (p, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            out.insert((method.clone(), p.clone()));
        }
    }
    out
}

#[test]
fn the_openapi_file_lists_exactly_the_server_routes() {
    let served: BTreeSet<(String, String)> = tollgate::server::served_routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let documented = documented();
    let missing: Vec<_> = served.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    assert!(stale.is_empty(), "documented but not served: {stale:?}");
}

#[test]
fn every_listed_route_is_really_routed() {
    // A request to each route (without a token) must reach a handler: the fallback's
    // "no such endpoint" 404 would mean the list and the router disagree.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.db");
    let text = tollgate::demo::seeded_policy_text();
    tollgate::demo::seeded_genesis(
        &tollgate::store::local::LocalStore::create(&store).unwrap(),
        &text,
        chrono::Utc::now(),
    )
    .unwrap();
    let policy = dir.path().join("t.policy.toml");
    std::fs::write(&policy, &text).unwrap();
    let tokens = dir.path().join("t.tokens.toml");
    tollgate::server::tokens::add(&tokens, "ci", "", chrono::Utc::now()).unwrap();
    let opts = tollgate::server::ServeOptions {
        database: None,
        listen: "127.0.0.1:0".into(),
        store,
        policy,
        tokens,
        tls: None,
        access_log: false,
        limits: Default::default(),
        server_key: None,
        kpi_guard: false,
        mlflow_webhook: None,
        subscribers: Vec::new(),
    };
    let addr = tollgate::server::start_in_background(opts).unwrap();
    tollgate::tls::install_crypto_provider();
    let c = reqwest::blocking::Client::new();
    for (method, path) in tollgate::server::served_routes() {
        let url = format!(
            "http://{addr}{}",
            path.replace("{id}", "CR-1").replace("{revision}", "1")
        );
        let r = if method == "get" {
            c.get(&url)
        } else {
            c.post(&url).body("{}")
        }
        .send()
        .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().unwrap_or(Value::Null);
        assert!(
            !(status == 404
                && body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("no such endpoint"))),
            "{method} {path} is not routed"
        );
        if path != "/v1/health" {
            assert_eq!(status, 401, "{method} {path} must need a token");
        }
    }
}
