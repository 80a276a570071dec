//! MLflow source benchmark (not a test): prints figures, asserts nothing about time.
//!
//!   cargo bench --bench mlflow                    # 10,000 pending versions
//!   TOLLGATE_BENCH_CRS=1000 cargo bench --bench mlflow
//!
//! Starts a real `mlflow server` (SQLite, one worker; found like the tests find it:
//! TOLLGATE_MLFLOW, ~/.cache/tollgate/mlflow-venv, PATH), registers N versions awaiting
//! review across 20 models, then times the real binary listing the pending queue:
//!
//! - `tollgate --source mlflow=URL list --json`: the first run imports every version, the
//!   next runs find them unchanged;
//! - `tollgate --remote URL list --json` against `tollgate serve` holding the same CRs;
//!
//! and prints both and their ratio (median of 3 runs each).

mod support;

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mlflow_executable() -> PathBuf {
    if let Some(p) = std::env::var_os("TOLLGATE_MLFLOW") {
        return PathBuf::from(p);
    }
    let cached = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/tollgate/mlflow-venv/bin/mlflow"));
    cached
        .filter(|c| c.exists())
        .unwrap_or_else(|| PathBuf::from("mlflow"))
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n = support::cr_count(10_000);
    tollgate::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let (host, port) = listen.rsplit_once(':').expect("host:port");
    let _mlflow = Killed(
        std::os::unix::process::CommandExt::process_group(
            Command::new(mlflow_executable())
                .args(["server", "--host", host, "--port", port, "--workers", "1"])
                .arg("--backend-store-uri")
                .arg(format!(
                    "sqlite:///{}",
                    dir.path().join("mlflow.db").display()
                ))
                .arg("--default-artifact-root")
                .arg(dir.path().join("artifacts"))
                .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            0,
        )
        .spawn()
        .expect("start mlflow server (run .ci/run to install MLflow, or set TOLLGATE_MLFLOW)"),
    );
    let url = format!("http://{listen}");
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !http
        .get(format!("{url}/health"))
        .send()
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "mlflow server did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let api = format!("{url}/api/2.0/mlflow");
    let post = |client: &reqwest::blocking::Client, call: &str, body: Value| {
        let r = client
            .post(format!("{api}/{call}"))
            .json(&body)
            .send()
            .expect("MLflow call");
        assert!(r.status().is_success(), "{call}: {}", r.status());
    };
    let models: Vec<String> = (0..20).map(|i| format!("bench-model-{i:02}")).collect();
    for m in &models {
        post(&http, "registered-models/create", json!({"name": m}));
    }
    let tags: Vec<Value> = [
        ("tollgate.status", "pending"),
        ("tollgate.requester", "amara"),
        ("tollgate.on_call", "marco"),
        ("tollgate.risk.declared", "low"),
        ("tollgate.risk.rationale", "fresh data, same features"),
        ("tollgate.impact", "scores for one campaign"),
        ("tollgate.plan.rollout", "switch the alias after sign-off"),
        (
            "tollgate.plan.rollback",
            "point the alias back at the previous version",
        ),
        ("metric.auc.baseline", "0.80"),
        ("metric.auc.candidate", "0.801"),
        ("check.reproducibility", "pass"),
        ("check.performance", "pass"),
        ("check.fairness", "pass"),
        ("check.latency", "pass"),
    ]
    .iter()
    .map(|(k, v)| json!({"key": k, "value": v}))
    .collect();
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (models, tags, post) = (&models, &tags, &post);
            s.spawn(move || {
                let client = reqwest::blocking::Client::new();
                for i in (t..n).step_by(4) {
                    post(
                        &client,
                        "model-versions/create",
                        json!({"name": models[i % models.len()], "source": format!("s3://bench/{i}"),
                               "description": format!("candidate {i}"), "tags": tags}),
                    );
                }
            });
        }
    });
    println!(
        "MLflow {url}: {n} versions awaiting review registered in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let bin = env!("CARGO_BIN_EXE_tollgate");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let tollgate = |args: &[&str], env: &[(&str, &str)]| -> (f64, usize) {
        let started = Instant::now();
        let out = Command::new(bin)
            .args(args)
            .env("TOLLGATE_HOME", &home)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run tollgate");
        let took = started.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "tollgate {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (took, rows.as_array().map_or(0, Vec::len))
    };
    // A store whose genesis is the seeded demo policy, signed by its lead's seeded key.
    let lead_key = home.join("lena.key");
    tollgate::demo::seeded_signer(tollgate::demo::GENESIS_SIGNER)
        .expect("seeded key")
        .write(&lead_key)
        .expect("key file");
    let seeded = home.join("seeded.policy.toml");
    std::fs::write(&seeded, tollgate::demo::seeded_policy_text()).expect("policy");
    let _ = tollgate(
        &[
            "init",
            "--policy",
            &seeded.to_string_lossy(),
            "--key",
            &lead_key.to_string_lossy(),
        ],
        &[],
    );
    let _ = tollgate(&["list", "--json"], &[]);
    let source = format!("mlflow={url}");
    let (first, rows) = tollgate(&["--source", &source, "list", "--json"], &[]);
    println!("tollgate --source mlflow list, first run (imports {rows} CRs): {first:.2} s");
    let steady: Vec<f64> = (0..3)
        .map(|_| tollgate(&["--source", &source, "list", "--json"], &[]).0)
        .collect();

    let store = home.join("tollgate.db");
    let tokens = home.join("tollgate.tokens.toml");
    let (token, _) =
        tollgate::server::tokens::add(&tokens, "devi", "bench", chrono::Utc::now()).expect("token");
    let addr = tollgate::server::start_in_background(tollgate::server::ServeOptions {
        database: None,
        listen: "127.0.0.1:0".into(),
        store: store.clone(),
        policy: home.join("tollgate.policy.toml"),
        tokens,
        tls: None,
        access_log: false,
        limits: Default::default(),
        server_key: None,
        kpi_guard: false,
        mlflow_webhook: None,
        subscribers: Vec::new(),
    })
    .expect("tollgate serve");
    let remote = format!("http://{addr}");
    let served: Vec<f64> = (0..3)
        .map(|_| {
            let (t, r) = tollgate(
                &["--remote", &remote, "list", "--json"],
                &[("TOLLGATE_TOKEN", &token)],
            );
            assert_eq!(r, rows, "the server lists the same CRs");
            t
        })
        .collect();
    let (m, s) = (median(steady), median(served));
    println!("tollgate --source mlflow list, unchanged (median of 3): {m:.2} s");
    println!("tollgate --remote (tollgate serve) list, same {rows} CRs (median of 3): {s:.2} s");
    println!(
        "ratio MLflow / tollgate serve: {:.1}x (first import {:.1}x)",
        m / s,
        first / s
    );
}
