//! Server tokens: parallel `token add` keeps every token, `token list` shows them without
//! the secrets, and `token revoke` locks a token out of a running server at once.

mod common;

use common::{Home, assert_refusal};

fn http() -> reqwest::blocking::Client {
    tollgate::tls::install_crypto_provider();
    reqwest::blocking::Client::new()
}

#[test]
fn thirty_parallel_adds_keep_thirty_tokens() {
    let home = Home::demo();
    let tokens: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..30)
            .map(|i| {
                let home = &home;
                s.spawn(move || {
                    let run = home
                        .run(&["token", "add", "devi", "--label", &format!("runner {i}")])
                        .ok();
                    run.stdout
                        .lines()
                        .find(|l| l.starts_with("tg_"))
                        .expect("token line")
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let list = home.run(&["token", "list", "--json"]).ok().json();
    let listed = list.as_array().unwrap();
    assert_eq!(listed.len(), 30, "{list}");
    for i in 0..30 {
        assert!(
            listed.iter().any(|t| t["label"] == format!("runner {i}")),
            "runner {i} lost: {list}"
        );
    }
    // The list never shows a token or its hash.
    let text = home.run(&["token", "list"]).ok().stdout;
    assert!(text.contains("30 token(s)"), "{text}");
    let file = std::fs::read_to_string(home.path("tollgate.tokens.toml")).unwrap();
    for t in &tokens {
        assert!(!text.contains(t.as_str()) && !file.contains(t.as_str()));
    }
    assert!(!text.contains("sha256:"), "{text}");
}

#[test]
fn a_revoked_token_is_refused_by_a_running_server_at_once() {
    let home = Home::demo();
    let kept = home.token("devi");
    let gone = home.token("marco");
    let server = home.serve("127.0.0.1:0");
    let get = |token: &str| {
        http()
            .get(format!("{}/v1/queue", server.url))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(get(&gone), 200);
    let list = home.run(&["token", "list", "--json"]).ok().json();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["principal"] == "marco")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_refusal(
        &home.run(&["token", "revoke", &id[..4]]),
        &["at least 8 characters"],
    );
    assert_refusal(
        &home.run(&["token", "revoke", "ffffffffffff"]),
        &["no token with id ffffffffffff"],
    );
    let run = home.run(&["token", "revoke", &id[..8]]).ok();
    assert!(
        run.stdout.contains(&format!("revoked token {id} of marco")),
        "{}",
        run.stdout
    );
    assert_eq!(get(&gone), 401, "revoked without a restart");
    assert_eq!(get(&kept), 200, "the others still work");
    let list = home.run(&["token", "list", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);
}
