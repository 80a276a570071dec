//! Team-server benchmark (not a test): prints figures, asserts nothing about time.
//!
//!   cargo bench --bench server                    # 10,000 pending CRs
//!   TOLLGATE_BENCH_CRS=2000 cargo bench --bench server
//!
//! A real `tollgate serve` router on 127.0.0.1 (plain HTTP, two worker threads) over a
//! store of N pending CRs, driven by 1, 4 and 16 concurrent clients on the same machine:
//!
//! - the whole pending queue (`GET /v1/queue?status=pending&limit=10000`, evaluated and
//!   serialised per request), the first screenful (`limit=50`), and a TUI poll that
//!   revalidates with `If-None-Match` (304);
//! - signed decisions through `RemoteStore` + `sign_decision`, as the CLI and TUI make
//!   them: fetch context, sign, append, re-sign when another client moved the head.
//!
//! Figures are requests per second and p50 / p99 latency per request. The log is verified
//! at the end, so every decision counted is one the server kept.

mod support;

use chrono::Utc;
use std::time::Instant;
use tollgate::domain::decision::Verdict;
use tollgate::store::Store as _;
use tollgate::store::local::LocalStore;
use tollgate::store::remote::RemoteStore;
use tollgate::store::{VerifyOptions, verify_log};
use tollgate::workflow::{DecisionRequest, sign_decision};

/// Latencies of one run, in seconds.
struct Run {
    wall: f64,
    each: Vec<f64>,
}

impl Run {
    fn print(&mut self, what: &str, clients: usize) {
        self.each.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            let i = ((self.each.len() as f64 * p).ceil() as usize).saturating_sub(1);
            self.each.get(i).copied().unwrap_or(f64::NAN) * 1000.0
        };
        println!(
            "{what:<34} {clients:>3} clients  {:>6} requests  {:>8.1} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            self.each.len(),
            self.each.len() as f64 / self.wall,
            pct(0.50),
            pct(0.99),
        );
    }
}

/// Runs `per_client` calls of `call(client, i)` on each of `clients` threads.
fn drive(clients: usize, per_client: usize, call: impl Fn(usize, usize) + Sync) -> Run {
    let started = Instant::now();
    let each = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let call = &call;
                s.spawn(move || {
                    (0..per_client)
                        .map(|i| {
                            let t = Instant::now();
                            call(c, i);
                            t.elapsed().as_secs_f64()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    });
    Run {
        wall: started.elapsed().as_secs_f64(),
        each,
    }
}

fn main() {
    let n = support::cr_count(10_000);
    let now = support::fixed_now();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let store = LocalStore::create(&path).expect("store");
    let book = tollgate::demo::seeded_genesis(&store, &tollgate::demo::seeded_policy_text(), now)
        .expect("genesis");
    let reviewable = support::submit_synthetic(&store, n, now);
    drop(store);

    let policy_path = dir.path().join("bench.policy.toml");
    std::fs::write(&policy_path, &book.current().text).expect("policy");
    let tokens_path = dir.path().join("bench.tokens.toml");
    let (token, _) =
        tollgate::server::tokens::add(&tokens_path, "devi", "bench", chrono::Utc::now())
            .expect("token");
    let opts = tollgate::server::ServeOptions {
        database: None,
        listen: "127.0.0.1:0".into(),
        store: path.clone(),
        policy: policy_path,
        tokens: tokens_path,
        tls: None,
        access_log: false,
        // One token drives every client here: the per-token rate limit (50/s by default)
        // would measure itself, not the server.
        limits: tollgate::server::limits::Limits {
            rate_per_sec: 1e9,
            burst: 1e9,
            ..Default::default()
        },
        server_key: None,
    };
    let url = format!(
        "http://{}",
        tollgate::server::start_in_background(opts).expect("server")
    );
    println!(
        "server on {url}; {n} pending CRs; {} cores on this machine",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    tollgate::tls::install_crypto_provider();
    let http = reqwest::blocking::Client::new;

    let get = |client: &reqwest::blocking::Client, path: &str, tag: Option<&str>| {
        let mut req = client.get(format!("{url}{path}")).bearer_auth(&token);
        if let Some(tag) = tag {
            req = req.header("If-None-Match", tag);
        }
        let r = req.send().expect("GET");
        let status = r.status();
        let etag = r
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = r.bytes().expect("body").len();
        (status.as_u16(), bytes, etag)
    };

    let whole = format!("/v1/queue?status=pending&limit={}", n.min(10_000));
    let probe = http();
    let (status, bytes, tag) = get(&probe, &whole, None);
    assert_eq!(status, 200, "GET {whole}");
    let tag = tag.expect("the queue carries an ETag");
    println!(
        "whole pending queue: {:.1} MiB of JSON per answer",
        bytes as f64 / 1024.0 / 1024.0
    );

    for clients in [1, 4, 16] {
        let pool: Vec<_> = (0..clients).map(|_| http()).collect();
        let per = (64 / clients).max(4);
        drive(clients, per, |c, _| {
            let (status, ..) = get(&pool[c], &whole, None);
            assert_eq!(status, 200);
        })
        .print("GET whole pending queue", clients);
    }
    for clients in [1, 4, 16] {
        let pool: Vec<_> = (0..clients).map(|_| http()).collect();
        drive(clients, 400 / clients, |c, _| {
            let (status, ..) = get(&pool[c], "/v1/queue?status=pending&limit=50", None);
            assert_eq!(status, 200);
        })
        .print("GET first 50 pending", clients);
    }
    for clients in [1, 4, 16] {
        let pool: Vec<_> = (0..clients).map(|_| http()).collect();
        drive(clients, 2_000 / clients, |c, _| {
            let (status, ..) = get(&pool[c], &whole, Some(&tag));
            assert_eq!(status, 304);
        })
        .print("GET queue, unchanged (304)", clients);
    }

    let devi = tollgate::demo::seeded_identity("devi").expect("seeded identity");
    let entries_before = LocalStore::open(&path)
        .expect("open")
        .recorded_head()
        .expect("head")
        .seq;
    let mut next = 0;
    let mut decided = 0;
    for clients in [1, 4, 16] {
        let per = 160 / clients;
        let targets = &reviewable[next..];
        next += clients * per;
        let stores: Vec<_> = (0..clients)
            .map(|_| RemoteStore::connect(&url, &token).expect("connect"))
            .collect();
        drive(clients, per, |c, i| {
            // Distinct CRs per client, so every call is a real append that may contend
            // for the head with the other clients.
            let cr = &targets[(c * per + i) % targets.len()];
            let request = DecisionRequest {
                cr_id: cr.clone(),
                verdict: Verdict::RequestChanges,
                role: "risk-reviewer".into(),
                rationale: format!("bench: per-language FPR report missing ({c}/{i})"),
                ticks: vec![],
                expect_digest: None,
            };
            sign_decision(&stores[c], &book, &devi, &request, Utc::now())
                .expect("decision recorded");
        })
        .print("signed decision (RemoteStore)", clients);
        decided += clients * per;
    }

    let verifier = LocalStore::open(&path).expect("open");
    let started = Instant::now();
    let report = verify_log(&verifier, &VerifyOptions::default()).expect("verify");

    println!(
        "log verified: {} entries ({entries_before} before the decisions + {decided} decisions) in {:.2} s",
        report.entries,
        started.elapsed().as_secs_f64(),
    );
    // A benchmark whose work went wrong must not print figures as if it had not.
    assert!(
        report.ok(),
        "the log does not verify: {:?}",
        report.first_bad
    );
    assert_eq!(
        report.entries,
        entries_before + decided as u64,
        "every acknowledged decision is in the log exactly once"
    );
}
