//! Team-server benchmark (not a test): prints figures, asserts nothing about time.
//!
//!   cargo bench --bench server                    # 10,000 pending CRs
//!   TOLLGATE_BENCH_CRS=2000 cargo bench --bench server
//!   TOLLGATE_BENCH_PG=0 cargo bench --bench server   # SQLite only
//!
//! Real `tollgate serve` routers on 127.0.0.1 (plain HTTP, two worker threads each) over a
//! store of N pending CRs, in three set-ups measured in the same run: one server on the
//! SQLite file; one replica on PostgreSQL (a throwaway cluster started here, as the tests
//! do, on a Unix socket); two replicas on that database, clients alternating between
//! them. Each is driven by 1, 4 and 16 concurrent clients on the same machine:
//!
//! - the whole pending queue (`GET /v1/queue?status=pending&limit=10000`) built afresh
//!   from the cached rows (`Cache-Control: no-cache`, as after every change to the log)
//!   and asked again while the log is unchanged (the replica reuses its answer), the first
//!   screenful (`limit=50`), and a TUI poll that revalidates with `If-None-Match` (304);
//! - signed decisions through `RemoteStore` + `sign_decision`, as the CLI and TUI make
//!   them: fetch context, sign, append, re-sign when another client moved the head.
//!
//! Figures are requests per second and p50 / p99 latency per request, then one table with
//! the set-ups side by side. Each store's log is verified at the end, so every decision
//! counted is one the server kept.

#[path = "../tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;
mod support;

use chrono::Utc;
use std::time::Instant;
use tollgate::domain::decision::Verdict;
use tollgate::store::local::LocalStore;
use tollgate::store::pg::PgStore;
use tollgate::store::remote::RemoteStore;
use tollgate::store::{VerifyOptions, verify_log};
use tollgate::workflow::{DecisionRequest, sign_decision};

/// Latencies of one run, in seconds.
struct Run {
    wall: f64,
    each: Vec<f64>,
}

impl Run {
    /// Prints the run and returns its throughput.
    fn print(&mut self, setup: &str, what: &str, clients: usize) -> f64 {
        self.each.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            let i = ((self.each.len() as f64 * p).ceil() as usize).saturating_sub(1);
            self.each.get(i).copied().unwrap_or(f64::NAN) * 1000.0
        };
        let rate = self.each.len() as f64 / self.wall;
        println!(
            "{setup:<12} {what:<30} {clients:>3} clients  {:>6} requests  {:>8.1} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            self.each.len(),
            rate,
            pct(0.50),
            pct(0.99),
        );
        rate
    }
}

/// One set-up's figures: (what, clients) → requests per second.
type Figures = Vec<((&'static str, usize), f64)>;

/// What a set-up serves and how to reach it.
struct Setup<'a> {
    name: &'static str,
    /// Replicas; clients alternate between them.
    urls: Vec<String>,
    token: String,
    /// The store the replicas share, to verify at the end.
    store: &'a dyn tollgate::store::Store,
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

    let policy_path = dir.path().join("bench.policy.toml");
    std::fs::write(&policy_path, &book.current().text).expect("policy");
    let tokens_path = dir.path().join("bench.tokens.toml");
    let (token, _) =
        tollgate::server::tokens::add(&tokens_path, "devi", "bench", chrono::Utc::now())
            .expect("token");
    let serve = |database: Option<String>| {
        let opts = tollgate::server::ServeOptions {
            database,
            ..support::serve_options(path.clone(), policy_path.clone(), tokens_path.clone())
        };
        format!(
            "http://{}",
            tollgate::server::start_in_background(opts).expect("server")
        )
    };
    println!(
        "{n} pending CRs; {} cores on this machine",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    // The same store in PostgreSQL, copied before any decision is made.
    let with_pg = std::env::var("TOLLGATE_BENCH_PG").map_or(true, |v| v != "0");
    let pg = with_pg.then(|| {
        let url = pg::database();
        let db = PgStore::create(&url).expect("database");
        let started = Instant::now();
        db.copy_from(&store, &mut |_| {})
            .expect("copy into PostgreSQL");
        println!(
            "copied the store into PostgreSQL in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let (pg_token, _) =
            tollgate::server::tokens::add_to_database(&db, "devi", "bench", Utc::now())
                .expect("token");
        (url, db, pg_token)
    });

    let mut columns: Vec<(&'static str, Figures)> = Vec::new();
    let sqlite_url = serve(None);
    let per_setup = 300;
    let mut targets = reviewable.chunks(per_setup.max(1));
    columns.push((
        "SQLite",
        suite(
            &Setup {
                name: "sqlite",
                urls: vec![sqlite_url],
                token: token.clone(),
                store: &store,
            },
            n,
            &book,
            targets.next().unwrap_or_default(),
        ),
    ));
    if let Some((url, db, pg_token)) = &pg {
        let first = serve(Some(url.clone()));
        columns.push((
            "PG 1 replica",
            suite(
                &Setup {
                    name: "pg x1",
                    urls: vec![first.clone()],
                    token: pg_token.clone(),
                    store: db,
                },
                n,
                &book,
                targets.next().unwrap_or_default(),
            ),
        ));
        let second = serve(Some(url.clone()));
        columns.push((
            "PG 2 replicas",
            suite(
                &Setup {
                    name: "pg x2",
                    urls: vec![first, second],
                    token: pg_token.clone(),
                    store: db,
                },
                n,
                &book,
                targets.next().unwrap_or_default(),
            ),
        ));
    }

    println!();
    print!("{:<44}", "requests per second");
    for (name, _) in &columns {
        print!("{name:>15}");
    }
    println!();
    for (i, ((what, clients), _)) in columns[0].1.iter().enumerate() {
        print!("{:<44}", format!("{what}, {clients} clients"));
        for (_, figures) in &columns {
            print!("{:>15.1}", figures.get(i).map_or(f64::NAN, |f| f.1));
        }
        println!();
    }
}

/// Measures one set-up: the whole pending queue, the first screenful, a 304
/// revalidation, and signed decisions on `targets`; then verifies its log.
fn suite(
    setup: &Setup<'_>,
    n: usize,
    book: &tollgate::domain::policy_book::PolicyBook,
    targets: &[String],
) -> Figures {
    tollgate::tls::install_crypto_provider();
    let http = reqwest::blocking::Client::new;
    let token = &setup.token;
    let urls = &setup.urls;
    let get =
        |client: &reqwest::blocking::Client, c: usize, path: &str, header: Option<(&str, &str)>| {
            let url = &urls[c % urls.len()];
            let mut req = client.get(format!("{url}{path}")).bearer_auth(token);
            if let Some((name, value)) = header {
                req = req.header(name, value);
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
    let mut figures = Figures::new();

    let whole = format!("/v1/queue?status=pending&limit={}", n.min(10_000));
    let probe = http();
    // The first answer fills the summary cache: timed apart from the steady state.
    let started = Instant::now();
    let (status, bytes, tag) = get(&probe, 0, &whole, None);
    assert_eq!(status, 200, "GET {whole}");
    let tag = tag.expect("the queue carries an ETag");
    println!(
        "{:<12} whole pending queue: {:.1} MiB of JSON per answer; first answer (cold cache) {:.2} s",
        setup.name,
        bytes as f64 / 1024.0 / 1024.0,
        started.elapsed().as_secs_f64()
    );

    // Evaluated afresh from the cached rows (as after every change to the log)...
    for clients in [1, 4, 16] {
        let pool: Vec<_> = (0..clients).map(|_| http()).collect();
        let per = (64 / clients).max(4);
        let rate = drive(clients, per, |c, _| {
            let (status, ..) = get(&pool[c], c, &whole, Some(("Cache-Control", "no-cache")));
            assert_eq!(status, 200);
        })
        .print(setup.name, "GET whole pending queue, fresh", clients);
        figures.push((("GET whole pending queue, fresh", clients), rate));
    }
    // ...and again while the log is unchanged (a replica reuses its answer).
    for clients in [1, 4, 16] {
        let pool: Vec<_> = (0..clients).map(|_| http()).collect();
        let per = (256 / clients).max(4);
        let rate = drive(clients, per, |c, _| {
            let (status, ..) = get(&pool[c], c, &whole, None);
            assert_eq!(status, 200);
        })
        .print(setup.name, "GET whole pending queue, again", clients);
        figures.push((("GET whole pending queue, again", clients), rate));
    }
    for clients in [1, 4, 16] {
        let pool: Vec<_> = (0..clients).map(|_| http()).collect();
        let rate = drive(clients, 400 / clients, |c, _| {
            let (status, ..) = get(&pool[c], c, "/v1/queue?status=pending&limit=50", None);
            assert_eq!(status, 200);
        })
        .print(setup.name, "GET first 50 pending", clients);
        figures.push((("GET first 50 pending", clients), rate));
    }
    for clients in [1, 4, 16] {
        let pool: Vec<_> = (0..clients).map(|_| http()).collect();
        let rate = drive(clients, 2_000 / clients, |c, _| {
            let (status, ..) = get(&pool[c], c, &whole, Some(("If-None-Match", &tag)));
            assert_eq!(status, 304);
        })
        .print(setup.name, "GET queue, unchanged (304)", clients);
        figures.push((("GET queue, unchanged (304)", clients), rate));
    }

    let devi = tollgate::demo::seeded_identity("devi").expect("seeded identity");
    let entries_before = setup.store.recorded_head().expect("head").seq;
    let mut next = 0;
    let mut decided = 0;
    for clients in [1, 4, 16] {
        let per = 96 / clients;
        let mine = &targets[next..];
        next += clients * per;
        let stores: Vec<_> = (0..clients)
            .map(|c| RemoteStore::connect(&urls[c % urls.len()], token).expect("connect"))
            .collect();
        let rate = drive(clients, per, |c, i| {
            // Distinct CRs per client, so every call is a real append that may contend
            // for the head with the other clients.
            let cr = &mine[(c * per + i) % mine.len()];
            let request = DecisionRequest {
                cr_id: cr.clone(),
                verdict: Verdict::RequestChanges,
                role: "risk-reviewer".into(),
                rationale: format!("bench: per-language FPR report missing ({c}/{i})"),
                ticks: vec![],
                expect_digest: None,
            };
            sign_decision(&stores[c], book, &devi, &request, Utc::now())
                .expect("decision recorded");
        })
        .print(setup.name, "signed decision (RemoteStore)", clients);
        figures.push((("signed decision", clients), rate));
        decided += clients * per;
    }

    let started = Instant::now();
    let report = verify_log(setup.store, &VerifyOptions::default()).expect("verify");
    println!(
        "{:<12} log verified: {} entries ({entries_before} before the decisions + {decided} decisions) in {:.2} s",
        setup.name,
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
    figures
}
