//! Signed events out (not a test): prints figures, asserts nothing about time.
//!
//!   cargo bench --bench events        # TOLLGATE_BENCH_DECISIONS=300
//!
//! A team server on 127.0.0.1 with no subscriber, then with 10 (each a local receiver
//! answering 200): the time a signed decision takes to be acknowledged (p50, p99) — the
//! events are derived and delivered by a thread of their own, so fan-out should cost the
//! decision nothing — and how long until every subscriber had every event.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{devi, setup};

/// A receiver answering 200 to everything over kept-alive connections (as chat and CI
/// endpoints do); counts what it got.
fn receiver(count: Arc<AtomicUsize>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let count = count.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut out = stream;
                loop {
                    let mut len = 0;
                    let mut first = true;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" && !first {
                            break;
                        }
                        first = false;
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length: ") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    if write!(out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// One round: `n` decisions with `subscribers` receivers; the p99 acknowledgement (ms).
fn run(n: usize, subscribers: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, book) = setup(dir.path());
    let path = dir.path().join("bench.db");
    let policy_path = dir.path().join("bench.policy.toml");
    std::fs::write(&policy_path, &book.current().text).expect("policy");
    let tokens_path = dir.path().join("bench.tokens.toml");
    let (token, _) =
        tollgate::server::tokens::add(&tokens_path, "devi", "bench", chrono::Utc::now())
            .expect("token");
    let received = Arc::new(AtomicUsize::new(0));
    let subs = (0..subscribers)
        .map(|i| tollgate::server::events::Subscriber {
            name: format!("sub-{i}"),
            url: receiver(received.clone()),
            secret: "a-bench-secret-0123456789".into(),
            events: vec!["decision.recorded".into()],
            format: tollgate::server::events::Format::Json,
        })
        .collect();
    let digest = support::cr_1044_digest(&store);
    drop(store);
    let opts = tollgate::server::ServeOptions {
        subscribers: subs,
        ..support::serve_options(path, policy_path, tokens_path)
    };
    let url = format!(
        "http://{}",
        tollgate::server::start_in_background(opts).expect("server")
    );
    let remote = tollgate::store::remote::RemoteStore::connect(&url, &token).expect("remote");
    let signer = devi();
    let policy_digest = book.current().digest.clone();
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        support::decide_once(&remote, &digest, &signer, &policy_digest, i);
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let all_sent = Instant::now();
    let want = n * subscribers;
    while received.load(Ordering::Relaxed) < want && all_sent.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    took.sort_by(f64::total_cmp);
    let q = |p: f64| took[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    println!(
        "{subscribers:>2} subscribers: decision acknowledged p50 {:.2} ms, p99 {:.2} ms; {} of {want} deliveries received, the last {:.2} s after the last decision",
        q(0.5),
        q(0.99),
        received.load(Ordering::Relaxed),
        all_sent.elapsed().as_secs_f64()
    );
    q(0.99)
}

fn main() {
    let n: usize = std::env::var("TOLLGATE_BENCH_DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
        .max(10);
    let rounds: usize = std::env::var("TOLLGATE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    println!(
        "{n} signed decisions through a team server on 127.0.0.1 (SQLite), one client; {rounds} rounds, alternating"
    );
    // Alternating rounds, so that a noisy moment of the machine falls on both sides.
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        without.push(run(n, 0));
        with.push(run(n, 10));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(&mut without), median(&mut with));
    println!(
        "median p99: {a:.2} ms without subscribers, {b:.2} ms with 10: fan-out adds {:+.2} ms",
        b - a
    );
}
