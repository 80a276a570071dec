//! The MLflow source against a real `mlflow server` (SQLite backend, one worker, job
//! runner off) started on 127.0.0.1 by the test: versions are registered through MLflow's
//! REST API, read by `tollgate --source mlflow=URL`, and reviewed as ordinary CRs.
//!
//! MLflow comes from `TOLLGATE_MLFLOW` (path of the `mlflow` executable), else
//! `~/.cache/tollgate/mlflow-venv/bin/mlflow` (where `scripts/test` installs it), else `PATH`.

mod common;

use common::{Home, assert_refusal};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tollgate::store::Store as _;

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
            "these tests need MLflow: run the tests with scripts/test (it installs MLflow on first use), or\n  python3 -m venv ~/.cache/tollgate/mlflow-venv && ~/.cache/tollgate/mlflow-venv/bin/pip install mlflow==3.17.2\n(or set TOLLGATE_MLFLOW to an mlflow executable)"
        )
    })
}

/// A real MLflow server, stopped (with its worker processes) when dropped.
struct Mlflow {
    url: String,
    listen: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Mlflow {
    /// Starts MLflow on a port the system picks (port 0) and reads the one it got from
    /// uvicorn's "running on" line, so no other process can take it between choosing and
    /// binding.
    fn start() -> Mlflow {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Mlflow::spawn(dir.path(), "127.0.0.1:0");
        let listen = Mlflow::reported_address(dir.path(), &mut child);
        let server = Mlflow {
            url: format!("http://{listen}"),
            listen,
            child,
            dir,
        };
        server.wait_until_healthy();
        server
    }

    fn spawn(dir: &std::path::Path, listen: &str) -> Child {
        let (host, port) = listen.rsplit_once(':').unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("mlflow.log"))
            .unwrap();
        std::os::unix::process::CommandExt::process_group(
            Command::new(mlflow_executable())
                .args(["server", "--host", host, "--port", port, "--workers", "1"])
                .arg("--backend-store-uri")
                .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
                .arg("--default-artifact-root")
                .arg(dir.join("artifacts"))
                .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
                // Deliveries to the team server on 127.0.0.1 (refused by default).
                .env("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
                .env("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
                .stdout(Stdio::null())
                .stderr(log),
            0,
        )
        .spawn()
        .expect("start mlflow server")
    }

    /// The address in "Uvicorn running on http://ADDR" in the log, once it is there.
    fn reported_address(dir: &std::path::Path, child: &mut Child) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let log = std::fs::read_to_string(dir.join("mlflow.log")).unwrap_or_default();
            if let Some(addr) = log
                .split("running on http://")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
            {
                return addr.to_string();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("mlflow server exited ({status}) before listening; log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server did not say where it listens within 120 s; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_until_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let http = http();
        loop {
            if let Ok(r) = http.get(format!("{}/health", self.url)).send()
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server did not answer /health within 120 s; log:\n{}",
                std::fs::read_to_string(self.dir.path().join("mlflow.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server and its uvicorn workers (the whole process group); data stays.
    fn stop(&mut self) {
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// Starts it again on the same address and data.
    fn restart(&mut self) {
        self.child = Mlflow::spawn(self.dir.path(), &self.listen);
        self.wait_until_healthy();
    }

    fn get(&self, call: &str, query: &[(&str, &str)]) -> Value {
        let url =
            reqwest::Url::parse_with_params(&format!("{}/api/2.0/mlflow/{call}", self.url), query)
                .unwrap();
        http().get(url).send().unwrap().json().unwrap()
    }

    /// A version's tags as a map.
    fn tags(&self, name: &str, version: &str) -> BTreeMap<String, String> {
        let v = self.get(
            "model-versions/get",
            &[("name", name), ("version", version)],
        );
        v["model_version"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (text(&t["key"]), text(&t["value"])))
            .collect()
    }

    /// A model's aliases as `alias → version`.
    fn aliases(&self, name: &str) -> BTreeMap<String, String> {
        let m = self.get("registered-models/get", &[("name", name)]);
        m["registered_model"]["aliases"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|a| (text(&a["alias"]), text(&a["version"])))
            .collect()
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
        self.stop();
    }
}

/// The row for `id` in `tollgate list --json` output.
fn listed<'a>(rows: &'a Value, id: &str) -> &'a Value {
    rows.as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("{id} not listed: {rows}"))
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
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
fn artifact_tags_supply_the_evidence_a_risk_level_requires() {
    let mlflow = Mlflow::start();
    mlflow.post(
        "registered-models/create",
        json!({"name": "churn-predictor"}),
    );
    let mut tags = REVIEWABLE.to_vec();
    tags.retain(|(k, _)| *k != "tollgate.risk.declared");
    tags.push(("tollgate.risk.declared", "medium"));
    tags.push(("tollgate.plan.rollback", "keep serving the previous model"));
    let version = mlflow.register("churn-predictor", &tags);
    let home = Home::demo();
    let source = format!("mlflow={}", mlflow.url);
    let id = format!("MLF-churn-predictor-v{version}");
    // Medium risk at the model gate needs a model card and a validation report.
    let rows = home
        .run(&["--source", &source, "list", "--json"])
        .ok()
        .json();
    let row = listed(&rows, &id);
    assert_eq!(row["blocked"], true);
    assert_eq!(
        row["missing_artifacts"],
        json!(["model_card", "validation_report"])
    );
    // Tagged on the version, they become the CR's artifacts and the block lifts.
    for (kind, url) in [
        ("model_card", "https://docs.example.com/churn/card"),
        (
            "validation_report",
            "https://ci.example.com/churn/validation/42",
        ),
    ] {
        mlflow.post(
            "model-versions/set-tag",
            json!({"name": "churn-predictor", "version": version, "key": format!("artifact.{kind}"), "value": url}),
        );
    }
    let shown = home
        .run(&["--source", &source, "show", &id, "--json"])
        .ok()
        .json();
    assert_eq!(shown["missing_artifacts"], json!([]));
    let kinds: Vec<&str> = shown["document"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"model_card") && kinds.contains(&"validation_report"),
        "{kinds:?}"
    );
    // A link that is not http(s) is named, and the version is skipped until it is fixed.
    mlflow.post(
        "model-versions/set-tag",
        json!({"name": "churn-predictor", "version": version, "key": "artifact.data_sheet", "value": "file:///etc/passwd"}),
    );
    let run = home.run(&["--source", &source, "list"]).ok();
    assert!(
        run.stderr
            .contains("tag artifact.data_sheet: expected an http:// or https:// URL"),
        "{}",
        run.stderr
    );
}

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

    // A model's first version: no alias yet, so the rollback plan must be stated.
    mlflow.post("registered-models/create", json!({"name": "ltv-model"}));
    let mut first = REVIEWABLE.to_vec();
    first.push(("tollgate.plan.rollback", "disable the LTV feature flag"));
    mlflow.register("ltv-model", &first);

    let home = Home::demo();
    let source = format!("mlflow={}", mlflow.url);
    let run = home.run(&["--source", &source, "list", "--json"]).ok();
    assert!(
        run.stderr
            .contains("3 version(s) awaiting review: 2 new, 0 revised, 0 unchanged, 1 skipped"),
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
    let row = listed(&rows, &id);
    assert_eq!(row["gate"], "model");
    assert_eq!(row["subject"]["from_version"], live.as_str());
    assert_eq!(row["subject"]["to_version"], candidate.as_str());
    assert_eq!(row["requester"], "amara");
    let first = listed(&rows, "MLF-ltv-model-v1");
    assert!(first["subject"]["from_version"].is_null(), "{first}");

    // Reading again changes nothing; a changed tag makes a new revision.
    let again = home.run(&["--source", &source, "list"]).ok();
    assert!(
        again.stderr.contains("0 new, 0 revised, 2 unchanged"),
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
    let shown = revised.json();
    assert_eq!(shown["revision"], 2);
    // Submitted by the registry, not by whoever ran the sync; the demo policy does not
    // trust it as CI, so its checks are self-reported and wait for CI.
    let performance = common::checklist_item(&shown, "performance").clone();
    assert_eq!(performance["state"], "pending", "{performance}");
    assert!(
        performance["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("self-reported pass by mlflow:{}", mlflow.url)),
        "{performance}"
    );

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
    assert_eq!(home.verified_entries(), common::DEMO_ENTRIES + 3 + 1);
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
    assert_eq!(home.verified_entries(), common::DEMO_ENTRIES);
}

/// Tags for a version every blocking automated item of the model gate has evidence for.
/// A demo home whose policy (changed by two leads) counts the MLflow registry's checks as
/// CI evidence (`[evidence] sources = ["mlflow"]`).
fn home_trusting_mlflow() -> Home {
    let home = Home::demo();
    let text = home.policy_text() + "\n[evidence]\nsources = [\"mlflow\"]\n";
    home.adopt_policy(&text, "the registry's checks come from our CI");
    home
}

fn approvable() -> Vec<(&'static str, &'static str)> {
    let mut tags = REVIEWABLE.to_vec();
    tags.extend([("check.fairness", "pass"), ("check.latency", "pass")]);
    tags
}

/// A model with v1 behind @champion and v2 awaiting review.
fn model_with_candidate(mlflow: &Mlflow, name: &str) -> String {
    mlflow.post("registered-models/create", json!({"name": name}));
    let live = mlflow.register(name, &[("tollgate.status", "approved")]);
    mlflow.post(
        "registered-models/alias",
        json!({"name": name, "alias": "champion", "version": live}),
    );
    mlflow.register(name, &approvable())
}

#[test]
fn an_approval_moves_the_alias_and_a_rollback_moves_it_back() {
    let mlflow = Mlflow::start();
    let candidate = model_with_candidate(&mlflow, "churn-predictor");
    assert_eq!(candidate, "2");
    let home = home_trusting_mlflow();
    let source = format!("mlflow={}", mlflow.url);
    let id = "MLF-churn-predictor-v2";
    let approved = home
        .run(&[
            "--source",
            &source,
            "--as",
            "devi",
            "approve",
            id,
            "--tick",
            "privacy",
            "--tick",
            "rollback",
            "--rationale",
            "fresh data, same features",
        ])
        .ok();
    assert!(
        approved.stdout.contains(
            "MLflow: MLF-churn-predictor-v2 marked tollgate.status=approved; @champion now v2 (v1 kept as @previous-champion)"
        ),
        "{}",
        approved.stdout
    );
    let tags = mlflow.tags("churn-predictor", "2");
    assert_eq!(tags["tollgate.status"], "approved");
    assert_eq!(tags["tollgate.decision.verdict"], "approve");
    assert_eq!(tags["tollgate.decision.reviewer"], "devi");
    assert_eq!(tags["tollgate.decision.role"], "risk-reviewer");
    assert_eq!(
        tags["tollgate.decision.rationale"],
        "fresh data, same features"
    );
    assert_eq!(tags["tollgate.signoffs"], "1/1");
    // The signature reference is the log entry an auditor verifies.
    let entries = home.verified_entries();
    let (seq, hash) = tags["tollgate.entry"].split_once(' ').unwrap();
    assert_eq!(seq.parse::<u64>().unwrap(), entries);
    assert!(hash.starts_with("sha256:") && hash.len() == 71, "{hash}");
    let aliases = mlflow.aliases("churn-predictor");
    assert_eq!(aliases["champion"], "2");
    assert_eq!(aliases["previous-champion"], "1");
    // Writing again is a no-op.
    let again = home.run(&["--source", &source, "sync"]).ok();
    assert!(
        again.stdout.contains(&format!("{id} already up to date")),
        "{}",
        again.stdout
    );

    // An emergency rollback points the alias back.
    let rollback = |to: &str| {
        home.run(&[
            "--source",
            &source,
            "--as",
            "marco",
            "rollback",
            "--yes",
            "churn-predictor",
            "--env",
            "prod",
            "--to",
            to,
            "--incident",
            "INC-3001",
            "--reason",
            "retention scores collapsed",
        ])
    };
    let rolled = rollback("1").ok();
    assert!(
        rolled.stdout.contains(
            "MLflow: @champion of churn-predictor now v1 (v2 kept as @previous-champion)"
        ),
        "{}",
        rolled.stdout
    );
    let aliases = mlflow.aliases("churn-predictor");
    assert_eq!(aliases["champion"], "1");
    assert_eq!(aliases["previous-champion"], "2");

    // MLflow's own refusals come through with its error code; the authorisation stands.
    let before = home.verified_entries();
    let run = rollback("99");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("the rollback is authorised and recorded, but MLflow's alias was not moved: MLflow refused registered-models/alias (HTTP 404 RESOURCE_DOES_NOT_EXIST)"),
        "{}",
        run.stderr
    );
    assert_eq!(home.verified_entries(), before + 1);
    assert_eq!(mlflow.aliases("churn-predictor")["champion"], "1");
}

#[test]
fn conflicts_deletions_and_outages_never_lose_a_decision() {
    let mut mlflow = Mlflow::start();
    let candidate = model_with_candidate(&mlflow, "ltv-model");
    let doomed = mlflow.register("ltv-model", &approvable());
    let later = mlflow.register("ltv-model", &approvable());
    let home = Home::demo();
    let source = format!("mlflow={}", mlflow.url);
    home.run(&["--source", &source, "list"]).ok();
    let before = home.verified_entries();
    let send_back = |id: &str, source: Option<&str>| {
        let mut args = vec![];
        if let Some(s) = source {
            args.extend(["--source", s]);
        }
        args.extend([
            "--as",
            "devi",
            "request-changes",
            id,
            "--role",
            "risk-reviewer",
            "--rationale",
            "segment report missing",
        ]);
        home.run(&args)
    };

    // Someone decided in MLflow itself: tollgate records its decision but does not overwrite.
    mlflow.post(
        "model-versions/set-tag",
        json!({"name": "ltv-model", "version": candidate, "key": "tollgate.status", "value": "rejected"}),
    );
    let run = send_back(&format!("MLF-ltv-model-v{candidate}"), Some(&source));
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "ltv-model v{candidate}: MLflow shows tollgate.status=\"rejected\" that this log did not write; not overwritten"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("sync` retries"), "{}", run.stderr);
    assert_eq!(
        mlflow.tags("ltv-model", &candidate)["tollgate.status"],
        "rejected"
    );
    assert_eq!(
        home.verified_entries(),
        before + 1,
        "the decision is in the log"
    );

    // The version was deleted in MLflow after tollgate read it.
    let deleted = http()
        .delete(format!(
            "{}/api/2.0/mlflow/model-versions/delete",
            mlflow.url
        ))
        .json(&json!({"name": "ltv-model", "version": doomed}))
        .send()
        .unwrap();
    assert!(deleted.status().is_success(), "{deleted:?}");
    let run = send_back(&format!("MLF-ltv-model-v{doomed}"), Some(&source));
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "ltv-model v{doomed} no longer exists in MLflow; tollgate's decision stays in its log (entry {})",
            before + 2
        )),
        "{}",
        run.stderr
    );
    assert_eq!(home.verified_entries(), before + 2);

    // MLflow down: a command that reads it stops before deciding; a decision made without
    // it is written back by `sync` once MLflow is up again.
    mlflow.stop();
    let id = format!("MLF-ltv-model-v{later}");
    let run = send_back(&id, Some(&source));
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("cannot reach MLflow"), "{}", run.stderr);
    assert_eq!(home.verified_entries(), before + 2, "nothing half-done");
    send_back(&id, None).ok();
    mlflow.restart();
    let synced = home.run(&["--source", &source, "sync"]);
    assert!(
        synced.stdout.contains(&format!(
            "MLflow: {id} marked tollgate.status=changes-requested"
        )),
        "{}\n{}",
        synced.stdout,
        synced.stderr
    );
    assert_eq!(
        mlflow.tags("ltv-model", &later)["tollgate.status"],
        "changes-requested"
    );
    // The conflicting and the deleted version are still reported, every time.
    assert_eq!(synced.code, 3);
    assert!(
        synced.stderr.contains("not overwritten"),
        "{}",
        synced.stderr
    );
    assert_eq!(home.verified_entries(), before + 3);
}

#[test]
fn the_config_file_names_the_source_and_its_convention_and_the_tui_writes_back() {
    use std::sync::Arc;
    use tollgate::tui::app::{Effect, Msg};
    let mlflow = Mlflow::start();
    mlflow.post("registered-models/create", json!({"name": "recommender"}));
    let live = mlflow.register("recommender", &[]);
    mlflow.post(
        "registered-models/alias",
        json!({"name": "recommender", "alias": "production", "version": live}),
    );
    // This team marks candidates with review=ready and serves @production.
    let tags: Vec<(&str, &str)> = approvable()
        .into_iter()
        .map(|(k, v)| {
            if k == "tollgate.status" {
                ("review", "ready")
            } else {
                (k, v)
            }
        })
        .collect();
    let candidate = mlflow.register("recommender", &tags);
    let home = home_trusting_mlflow();
    std::fs::write(
        home.path("config.toml"),
        format!(
            "source = \"mlflow={}\"\n[mlflow]\nstatus_tag = \"review\"\npending = \"ready\"\nalias = \"production\"\n",
            mlflow.url
        ),
    )
    .unwrap();
    let run = home.run(&["list", "--json"]).ok();
    assert!(run.stderr.contains("1 new"), "{}", run.stderr);
    let id = format!("MLF-recommender-v{candidate}");
    let rows = run.json();
    let row = listed(&rows, &id);
    assert_eq!(row["subject"]["from_version"], live.as_str());

    // The TUI's signing path (the same code the screen runs on a background thread).
    let store = tollgate::store::local::LocalStore::open(&home.store()).unwrap();
    let book = tollgate::audit::policy_log::extend_book(None, &store.policy_entries(0).unwrap())
        .unwrap()
        .unwrap();
    let demo_identity = |who: &str| {
        let choice = tollgate::identity::KeyChoice {
            key: None,
            as_principal: Some(who.into()),
        };
        Some(Arc::new(
            tollgate::identity::identify(&choice, &home.store(), book.policy()).unwrap(),
        ))
    };
    let conv = tollgate::sources::mlflow::Convention {
        status_tag: "review".into(),
        pending: "ready".into(),
        alias: "production".into(),
        environment: "prod".into(),
    };
    let shared = tollgate::tui::Shared::new(
        Arc::new(store),
        book.clone(),
        demo_identity("devi"),
        None,
        Some((
            tollgate::sources::mlflow::Client::new(&mlflow.url).unwrap(),
            conv.clone(),
        )),
    );
    let request = tollgate::workflow::DecisionRequest {
        cr_id: id.clone(),
        verdict: tollgate::domain::decision::Verdict::Approve,
        role: "risk-reviewer".into(),
        rationale: "ranking lift holds across segments".into(),
        ticks: ["privacy", "rollback"]
            .iter()
            .map(|t| tollgate::domain::checklist::Tick {
                item: t.to_string(),
                note: None,
            })
            .collect(),
        expect_digest: None,
    };
    let replies =
        tollgate::tui::answer(&Effect::Sign(1, request), &shared, None, chrono::Utc::now());
    let Some(Msg::Signed(_, Ok(text))) = replies.last() else {
        panic!("{replies:?}");
    };
    assert!(
        text.contains(&format!(
            "; MLflow review=approved, @production → v{candidate}"
        )),
        "{text}"
    );
    assert_eq!(mlflow.tags("recommender", &candidate)["review"], "approved");
    let aliases = mlflow.aliases("recommender");
    assert_eq!(aliases["production"], candidate);
    assert_eq!(aliases["previous-production"], live);

    // The TUI's emergency path (`!`) as on-call marco: the alias goes back at once.
    let marco = tollgate::tui::Shared::new(
        shared.store.clone(),
        book.clone(),
        demo_identity("marco"),
        None,
        Some((
            tollgate::sources::mlflow::Client::new(&mlflow.url).unwrap(),
            conv,
        )),
    );
    let rollback = tollgate::workflow::RollbackRequest {
        subject: "recommender".into(),
        environment: "prod".into(),
        from_version: candidate.clone(),
        to_version: live.clone(),
        incident: "INC-4100".into(),
        reason: "click-through fell 30% after the switch".into(),
    };
    let replies = tollgate::tui::answer(
        &Effect::Authorise(2, rollback),
        &marco,
        None,
        chrono::Utc::now(),
    );
    assert!(
        matches!(&replies[0], Msg::RollbackOutput(line)
            if line == &format!("MLflow: @production of recommender now v{live} (v{candidate} kept as @previous-production)")),
        "{replies:?}"
    );
    assert!(
        matches!(&replies[1], Msg::Authorised(2, Ok(_))),
        "{replies:?}"
    );
    let aliases = mlflow.aliases("recommender");
    assert_eq!(aliases["production"], live);
    assert_eq!(aliases["previous-production"], candidate);
}

/// Posts `body` to the team server's MLflow webhook endpoint with MLflow's headers.
fn deliver(url: &str, id: &str, timestamp: i64, signature: &str, body: &str) -> u16 {
    http()
        .post(format!("{url}/v1/sources/mlflow/webhook"))
        .header("X-MLflow-Delivery-Id", id)
        .header("X-MLflow-Timestamp", timestamp.to_string())
        .header("X-MLflow-Signature", signature)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn mlflow_delivers_a_version_to_the_team_server_the_moment_it_is_tagged() {
    let mlflow = Mlflow::start();
    mlflow.post(
        "registered-models/create",
        json!({"name": "churn-predictor"}),
    );
    let home = Home::demo();
    let secret = home.write("webhook.secret", b"a-shared-secret-of-some-length\n");
    let source = format!("mlflow={}", mlflow.url);
    home.token("marco");
    let server = home.serve_args(&[
        "--source",
        &source,
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mlflow-webhook-secret-file",
        &secret,
    ]);
    let endpoint = format!("{}/v1/sources/mlflow/webhook", server.url);
    let registered = home
        .run(&[
            "--source",
            &source,
            "source",
            "mlflow",
            "register",
            "--url",
            &endpoint,
            "--secret-file",
            &secret,
        ])
        .ok();
    assert!(
        registered
            .stdout
            .contains("delivers new versions and tag changes"),
        "{}",
        registered.stdout
    );
    // A version registered without the review tag, then tagged pending: MLflow delivers
    // the tag event, the server reads the version and queues it. No poll is involved: the
    // store holds it once the delivery was acknowledged.
    let mut tags = REVIEWABLE.to_vec();
    tags.retain(|(k, _)| *k != "tollgate.status");
    tags.push(("tollgate.plan.rollback", "keep serving the previous model"));
    let version = mlflow.register("churn-predictor", &tags);
    let id = format!("MLF-churn-predictor-v{version}");
    mlflow.post(
        "model-versions/set-tag",
        json!({"name": "churn-predictor", "version": version, "key": "tollgate.status", "value": "pending"}),
    );
    let store = tollgate::store::local::LocalStore::open(&home.store()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.get(&id).unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "MLflow's delivery never arrived; server log:\n{}\nmlflow log:\n{}",
            std::fs::read_to_string(home.path("server.log")).unwrap_or_default(),
            std::fs::read_to_string(mlflow.dir.path().join("mlflow.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cr = store.get(&id).unwrap().unwrap();
    assert_eq!(cr.current.cr.requester, "amara");
    assert_eq!(cr.current.cr.subject.to_version, version);

    // Deliveries that do not hold are refused with 401 and import nothing.
    let body = json!({"entity": "model_version", "action": "created", "timestamp": "now",
        "data": {"name": "churn-predictor", "version": version}})
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let key = "a-shared-secret-of-some-length";
    let sign = |id: &str, ts: i64| {
        tollgate::sources::mlflow_webhook::sign(key, id, &ts.to_string(), body.as_bytes())
    };
    assert_eq!(
        deliver(&server.url, "d-1", now, "v1,AAAA", &body),
        401,
        "a bad signature"
    );
    assert_eq!(
        deliver(
            &server.url,
            "d-2",
            now - 600,
            &sign("d-2", now - 600),
            &body
        ),
        401,
        "an old timestamp"
    );
    assert_eq!(
        deliver(&server.url, "d-3", now, &sign("d-3", now), &body),
        200,
        "a good delivery"
    );
    assert_eq!(
        deliver(&server.url, "d-3", now, &sign("d-3", now), &body),
        401,
        "the same delivery again"
    );
    let log = std::fs::read_to_string(home.path("server.log")).unwrap_or_default();
    assert!(log.contains("401"), "{log}");
    assert_eq!(
        store
            .list()
            .unwrap()
            .iter()
            .filter(|c| c.current.cr.id == id)
            .count(),
        1
    );
}

#[test]
fn a_delivery_is_taken_once_by_all_replicas_and_again_only_after_it_failed() {
    // Two replicas on one database; the registry they read from is down (nothing
    // listens on port 9), which only a version event needs.
    let (home, url) = Home::demo_in_database();
    let key = "a-shared-secret-of-some-length";
    let secret = home.write("webhook.secret", key.as_bytes());
    let replica = || {
        home.serve_args(&[
            "--database",
            &url,
            "--source",
            "mlflow=http://127.0.0.1:9",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mlflow-webhook-secret-file",
            &secret,
        ])
    };
    let (a, b) = (replica(), replica());
    let now = chrono::Utc::now().timestamp();
    let send = |to: &common::Server, id: &str, body: &str| {
        let signature =
            tollgate::sources::mlflow_webhook::sign(key, id, &now.to_string(), body.as_bytes());
        deliver(&to.url, id, now, &signature, body)
    };

    let other = json!({"entity": "registered_model", "action": "created",
        "data": {"name": "churn-predictor"}})
    .to_string();
    assert_eq!(send(&a, "d-1", &other), 200, "taken (and ignored)");
    assert_eq!(send(&b, "d-1", &other), 401, "replayed to another replica");
    drop(a);
    let a = replica();
    assert_eq!(send(&a, "d-1", &other), 401, "replayed after a restart");

    // MLflow cannot be read: 503, and MLflow's retry of that delivery (same id) is
    // taken again, by whichever replica it reaches.
    let version = json!({"entity": "model_version", "action": "created",
        "data": {"name": "churn-predictor", "version": "4"}})
    .to_string();
    assert_eq!(send(&a, "d-2", &version), 503);
    assert_eq!(send(&b, "d-2", &version), 503, "a retry is not a replay");
}
