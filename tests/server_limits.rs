//! The server under hostile clients, on 127.0.0.1: a client that sends nothing, a header
//! a byte at a time, or a body that never finishes is cut off; connections beyond the cap
//! are closed at once; a token asking too fast gets 429 with Retry-After. Each test asserts
//! what the client sees (closed connection, status), never how long it took.

mod common;

use common::Home;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn connect(url: &str) -> TcpStream {
    let addr = url.trim_start_matches("http://");
    let s = TcpStream::connect(addr).expect("connect");
    // A guard so a test fails instead of hanging; far beyond the server's deadlines.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// Reads until the server closes the connection; what it sent first.
fn read_until_closed(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn a_client_that_sends_nothing_or_half_a_header_is_cut_off() {
    let home = Home::demo();
    home.token("devi");
    let server = home.serve_with(
        "127.0.0.1:0",
        &["--header-timeout", "1", "--idle-timeout", "1"],
    );
    let mut silent = connect(&server.url);
    assert_eq!(read_until_closed(&mut silent), "", "closed without a word");

    let mut partial = connect(&server.url);
    partial
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let answer = read_until_closed(&mut partial);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // The server still serves everyone else.
    let mut ok = connect(&server.url);
    ok.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(read_until_closed(&mut ok).starts_with("HTTP/1.1 200"));
}

#[test]
fn a_header_sent_a_byte_at_a_time_is_cut_off_at_the_head_deadline() {
    let home = Home::demo();
    home.token("devi");
    // Idle never fires (a byte arrives every 200 ms); only the head deadline can end it.
    let server = home.serve_with(
        "127.0.0.1:0",
        &["--header-timeout", "1", "--idle-timeout", "60"],
    );
    let mut slow = connect(&server.url);
    let mut closed = false;
    for _ in 0..100 {
        if slow.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut probe = [0u8; 1];
        slow.set_nonblocking(true).unwrap();
        let r = slow.read(&mut probe);
        slow.set_nonblocking(false).unwrap();
        if r.is_ok() {
            closed = true;
            break;
        }
    }
    assert!(closed, "a header trickling in for 20 s was never cut off");
}

#[test]
fn a_body_that_never_finishes_gets_408() {
    let home = Home::demo();
    let token = home.token("devi");
    let server = home.serve_with("127.0.0.1:0", &["--body-timeout", "1"]);
    let mut s = connect(&server.url);
    s.write_all(
        format!(
            "POST /v1/decisions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{\"kind\":"
        )
        .as_bytes(),
    )
    .unwrap();
    let answer = read_until_closed(&mut s);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body-timeout"), "{answer}");
}

#[test]
fn connections_beyond_the_cap_are_closed_and_the_rest_keep_working() {
    let home = Home::demo();
    home.token("devi");
    let server = home.serve_with("127.0.0.1:0", &["--max-connections", "4"]);
    // Four connections that hold their slot (idle, within every deadline).
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(&server.url)).collect();
    // Make sure the server has taken all four before the fifth: one request on each.
    for s in &mut held {
        s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
    }
    let mut fifth = connect(&server.url);
    let _ = fifth.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(read_until_closed(&mut fifth), "", "the fifth was served");
    // One slot freed: served again.
    drop(held.pop());
    let mut answer = String::new();
    for _ in 0..50 {
        let mut again = connect(&server.url);
        let _ = again.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        answer = read_until_closed(&mut again);
        if !answer.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_token_asking_too_fast_gets_429_with_retry_after_and_others_do_not() {
    let home = Home::demo();
    let fast = home.token("devi");
    let other = home.token("marco");
    let server = home.serve_with("127.0.0.1:0", &["--rate-limit", "2", "--rate-burst", "5"]);
    tollgate::tls::install_crypto_provider();
    let client = reqwest::blocking::Client::new();
    let get = |token: &str| {
        client
            .get(format!("{}/v1/head", server.url))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    let mut limited = None;
    for _ in 0..200 {
        let r = get(&fast);
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let r = limited.expect("200 requests in a row were never limited");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"], "rate-limited");
    assert_eq!(get(&other).status(), 200, "another token is not slowed");
}
