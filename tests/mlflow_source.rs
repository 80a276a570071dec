//! The MLflow source against a real `mlflow server` (SQLite backend, one worker, job
//! runner off) started on 127.0.0.1 by the test: versions are registered through MLflow's
//! REST API, read by `tollgate --source mlflow=URL`, and reviewed as ordinary CRs.
//!
//! MLflow comes from `TOLLGATE_MLFLOW` (path of the `mlflow` executable), else
//! `~/.cache/tollgate/mlflow-venv/bin/mlflow` (where `.ci/run` installs it), else `PATH`.

mod common;

use common::{Home, assert_refusal};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn http() -> reqwest::blocking::Client {
    tollgate::tls::install_crypto_provider();
    reqwest::blocking::Client::new()
}

fn mlflow_executable() -> PathBuf {
    if let Some(p) = std::env::var_os("TOLLGATE_MLFLOW") {
        return PathBuf::from(p);
    }
    let cached = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/tollgate/mlflow-venv/bin/mlflow"));
    if let Some(c) = cached.filter(|c| c.exists()) {
        return c;
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("mlflow"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "these tests need MLflow: run .ci/run, or\n  python3 -m venv ~/.cache/tollgate/mlflow-venv && ~/.cache/tollgate/mlflow-venv/bin/pip install mlflow==3.17.2\n(or set TOLLGATE_MLFLOW to an mlflow executable)"
        )
    })
}

/// A real MLflow server, stopped (with its worker processes) when dropped.
struct Mlflow {
    url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mlflow {
    fn start() -> Mlflow {
        let dir = tempfile::tempdir().unwrap();
        let listen = common::free_listen();
        let (host, port) = listen.rsplit_once(':').unwrap();
        let log = std::fs::File::create(dir.path().join("mlflow.log")).unwrap();
        let child = std::os::unix::process::CommandExt::process_group(
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
                .stderr(log),
            0,
        )
        .spawn()
        .expect("start mlflow server");
        let server = Mlflow {
            url: format!("http://{listen}"),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let http = http();
        loop {
            if let Ok(r) = http.get(format!("{}/health", server.url)).send()
                && r.status().is_success()
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server did not answer /health within 120 s; log:\n{}",
                std::fs::read_to_string(server._dir.path().join("mlflow.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn post(&self, call: &str, body: Value) -> Value {
        let r = http()
            .post(format!("{}/api/2.0/mlflow/{call}", self.url))
            .json(&body)
            .send()
            .unwrap();
        let status = r.status();
        let v: Value = r.json().unwrap();
        assert!(status.is_success(), "{call}: {status} {v}");
        v
    }

    /// Registers a version with tags; returns its version number.
    fn register(&self, name: &str, tags: &[(&str, &str)]) -> String {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let v = self.post(
            "model-versions/create",
            json!({"name": name, "source": format!("s3://models/{name}"), "description": format!("{name} retrained"), "tags": tags}),
        );
        v["model_version"]["version"].as_str().unwrap().to_string()
    }
}

impl Drop for Mlflow {
    fn drop(&mut self) {
        // The server runs uvicorn workers as children: stop the whole process group.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

const REVIEWABLE: &[(&str, &str)] = &[
    ("tollgate.status", "pending"),
    ("tollgate.requester", "amara"),
    ("tollgate.on_call", "marco"),
    ("tollgate.risk.declared", "low"),
    ("tollgate.risk.rationale", "same features, fresh data"),
    ("tollgate.impact", "churn scores for the retention campaign"),
    ("tollgate.plan.rollout", "switch the alias after sign-off"),
    ("metric.auc.baseline", "0.80"),
    ("metric.auc.candidate", "0.801"),
    ("check.reproducibility", "pass"),
    ("check.performance", "pass"),
    ("check.performance.detail", "AUC +0.1pp"),
];

#[test]
fn pending_versions_become_crs_that_are_reviewed_as_usual() {
    let mlflow = Mlflow::start();
    mlflow.post(
        "registered-models/create",
        json!({"name": "churn-predictor"}),
    );
    let live = mlflow.register("churn-predictor", &[("tollgate.status", "approved")]);
    mlflow.post(
        "registered-models/alias",
        json!({"name": "churn-predictor", "alias": "champion", "version": live}),
    );
    let candidate = mlflow.register("churn-predictor", REVIEWABLE);
    // A version missing what a reviewer needs is named, with the tags to add.
    let incomplete = mlflow.register(
        "churn-predictor",
        &[
            ("tollgate.status", "pending"),
            ("tollgate.requester", "amara"),
        ],
    );

    let home = Home::demo();
    let source = format!("mlflow={}", mlflow.url);
    let run = home.run(&["--source", &source, "list", "--json"]).ok();
    assert!(
        run.stderr
            .contains("2 version(s) awaiting review: 1 new, 0 revised, 0 unchanged, 1 skipped"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "skipped churn-predictor v{incomplete}: missing tag tollgate.on_call"
        )),
        "{}",
        run.stderr
    );
    let rows: Value = serde_json::from_str(&run.stdout).unwrap();
    let id = format!("MLF-churn-predictor-v{candidate}");
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {rows}"));
    assert_eq!(row["gate"], "model");
    assert_eq!(row["subject"]["from_version"], live.as_str());
    assert_eq!(row["subject"]["to_version"], candidate.as_str());
    assert_eq!(row["requester"], "amara");

    // Reading again changes nothing; a changed tag makes a new revision.
    let again = home.run(&["--source", &source, "list"]).ok();
    assert!(
        again.stderr.contains("0 new, 0 revised, 1 unchanged"),
        "{}",
        again.stderr
    );
    mlflow.post(
        "model-versions/set-tag",
        json!({"name": "churn-predictor", "version": candidate, "key": "check.performance.detail", "value": "AUC +0.1pp (95% CI ±0.05pp)"}),
    );
    let revised = home.run(&["--source", &source, "show", &id, "--json"]).ok();
    assert!(
        revised.stderr.contains("0 new, 1 revised"),
        "{}",
        revised.stderr
    );
    assert_eq!(revised.json()["revision"], 2);

    // And it is reviewed like any CR: a signed decision in the verified log.
    home.run(&[
        "--as",
        "devi",
        "request-changes",
        &id,
        "--role",
        "risk-reviewer",
        "--rationale",
        "fairness evidence missing",
    ])
    .ok();
    assert_eq!(home.verified_entries(), 5 + 2 + 1);
}

#[test]
fn mlflow_down_or_a_bad_source_is_explained() {
    let home = Home::demo();
    let run = home.run(&["--source", "mlflow=http://127.0.0.1:9", "list"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot reach MLflow at http://127.0.0.1:9")
            && run.stderr.contains("`mlflow server` is running"),
        "{}",
        run.stderr
    );
    let run = home.run(&["--source", "jira=http://x", "list"]);
    assert_refusal(&run, &["expected KIND=URL with KIND mlflow"]);
    // Nothing was stored or lost on the way.
    assert_eq!(home.verified_entries(), 5);
}
