//! MLflow's model registry as a source of change requests.
//!
//! Open-source MLflow registers every candidate model version but has no approvals. A
//! training pipeline marks a version for review with a tag (`tollgate.status = pending`
//! by default) and describes it with more tags (the convention is in `docs/mlflow.md`);
//! tollgate reads those versions over MLflow's REST API and stores each as a `model`-gate
//! CR whose `from_version` is the version now holding the serving alias (`champion`).
//! Tag values are untrusted text like any CR field: the document is validated as a whole
//! and every problem is reported with the tag to fix.

use crate::domain::change_request::parse_document;
use crate::store::{Store, StoreError, Submission, SubmitOutcome};
use chrono::{DateTime, TimeZone, Utc};
use reqwest::blocking::Client as Http;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// How versions awaiting review are marked and where they are served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Convention {
    /// Tag that marks a version's review state.
    pub status_tag: String,
    /// Value of that tag for versions awaiting review.
    pub pending: String,
    /// Alias that serves the live version (the CR's `from_version`).
    pub alias: String,
    /// Environment the alias serves, unless a version's `tollgate.environment` says.
    pub environment: String,
}

impl Default for Convention {
    fn default() -> Self {
        Convention {
            status_tag: "tollgate.status".into(),
            pending: "pending".into(),
            alias: "champion".into(),
            environment: "prod".into(),
        }
    }
}

/// A model version as MLflow's REST API returns it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelVersion {
    /// Registered model name.
    pub name: String,
    /// Version number (a string in MLflow's API).
    pub version: String,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub creation_timestamp: Option<i64>,
    /// Free-text description.
    #[serde(default)]
    pub description: Option<String>,
    /// Where the model files are.
    #[serde(default)]
    pub source: Option<String>,
    /// Training run.
    #[serde(default)]
    pub run_id: Option<String>,
    /// Link to the run.
    #[serde(default)]
    pub run_link: Option<String>,
    /// Who registered it.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Version tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Aliases pointing at this version.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// One MLflow tag.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

impl ModelVersion {
    /// `name vN`, for messages.
    pub fn label(&self) -> String {
        format!("{} v{}", self.name, self.version)
    }
}

/// The CR id for a model version: `MLF-<name>-v<version>`, kept within tollgate's
/// identifier rules. A name that had to be changed to fit gets a short hash of the real
/// name, so two different models never share an id.
pub fn cr_id(name: &str, version: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let (name_part, version_part) = (clean(name), clean(version));
    let plain = format!("MLF-{name_part}-v{version_part}");
    if name_part == name && plain.len() <= 64 {
        return plain;
    }
    let digest = crate::audit::canonical::sha256_digest(name.as_bytes());
    let short = &digest["sha256:".len().."sha256:".len() + 8];
    let room = 64usize.saturating_sub(format!("MLF--{short}-v{version_part}").len());
    let cut: String = name_part.chars().take(room).collect();
    format!("MLF-{cut}-{short}-v{version_part}")
        .chars()
        .take(64)
        .collect()
}

/// What the tags say, with every missing or malformed one recorded.
struct Tags<'a> {
    map: BTreeMap<&'a str, &'a str>,
    problems: Vec<String>,
}

impl<'a> Tags<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.map
            .get(key)
            .copied()
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    fn required(&mut self, key: &str, what: &str) -> String {
        match self.get(key) {
            Some(v) => v.to_string(),
            None => {
                self.problems.push(format!("missing tag {key} ({what})"));
                String::new()
            }
        }
    }
}

/// Builds the CR document for a version awaiting review. `from_version` is the version
/// the serving alias points at now (none for a model's first version); `ui` is the
/// MLflow base URL, for links back. Errors list every tag to add or fix.
pub fn to_document(
    v: &ModelVersion,
    from_version: Option<&str>,
    ui: &str,
    conv: &Convention,
) -> Result<Value, Vec<String>> {
    let mut t = Tags {
        map: v
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect(),
        problems: Vec::new(),
    };
    let requester = match t.get("tollgate.requester") {
        Some(r) => r.to_string(),
        None => match v
            .user_id
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            Some(u) => u.to_string(),
            None => t.required("tollgate.requester", "the principal asking for the change"),
        },
    };
    let owner = t
        .get("tollgate.owner")
        .map(str::to_string)
        .unwrap_or_else(|| requester.clone());
    let on_call = t.required("tollgate.on_call", "the on-call principal for this model");
    let declared = t.required("tollgate.risk.declared", "low, medium or high");
    let rationale = t.required("tollgate.risk.rationale", "why that risk level");
    let impact = t.required("tollgate.impact", "who and what the change affects");
    let rollout = t.required("tollgate.plan.rollout", "how the version goes live");
    let flags: Vec<String> = t
        .get("tollgate.risk.flags")
        .map(|f| {
            f.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let rollback = match (t.get("tollgate.plan.rollback"), from_version) {
        (Some(r), _) => r.to_string(),
        (None, Some(from)) => format!(
            "Move alias @{} back to version {from} (tollgate emergency rollback).",
            conv.alias
        ),
        (None, None) => t.required(
            "tollgate.plan.rollback",
            "how to undo it; there is no earlier version to fall back to",
        ),
    };
    let rollback_tested = match t.get("tollgate.plan.rollback_tested") {
        None => false,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            t.problems.push(format!(
                "tag tollgate.plan.rollback_tested: expected true or false, found {other:?}"
            ));
            false
        }
    };
    let environment = t
        .get("tollgate.environment")
        .unwrap_or(&conv.environment)
        .to_string();

    let mut metrics: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut checks: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut versions = Map::new();
    // `artifact.<kind>` = URL: evidence the policy may require by kind (model_card, ...).
    let mut linked: Vec<Value> = Vec::new();
    for (key, value) in &t.map {
        let value = value.trim();
        if let Some(kind) = key.strip_prefix("artifact.") {
            let web = value.starts_with("https://") || value.starts_with("http://");
            if crate::domain::reader::check_identifier(kind).is_err() {
                t.problems.push(format!(
                    "tag {key}: the artifact kind must be a short identifier such as artifact.model_card"
                ));
            } else if !web || value.chars().any(char::is_whitespace) {
                t.problems.push(format!(
                    "tag {key}: expected an http:// or https:// URL, found {value:?}"
                ));
            } else {
                linked.push(json!({"kind": kind, "title": kind.replace('_', " "), "url": value}));
            }
            continue;
        }
        if let Some(rest) = key.strip_prefix("metric.") {
            let Some((name, field)) = rest.rsplit_once('.') else {
                continue;
            };
            let m = metrics.entry(name.to_string()).or_default();
            match field {
                "baseline" | "candidate" => match value.parse::<f64>() {
                    Ok(n) if n.is_finite() => {
                        m.insert(field.into(), json!(n));
                    }
                    _ => t
                        .problems
                        .push(format!("tag {key}: expected a number, found {value:?}")),
                },
                "better" => {
                    m.insert(field.into(), json!(value));
                }
                _ => {}
            }
        } else if let Some(rest) = key.strip_prefix("check.") {
            match rest.strip_suffix(".detail") {
                Some(id) => {
                    checks
                        .entry(id.to_string())
                        .or_default()
                        .insert("detail".into(), json!(value));
                }
                None => {
                    checks
                        .entry(rest.to_string())
                        .or_default()
                        .insert("status".into(), json!(value));
                }
            }
        } else if let Some(field) = key.strip_prefix("version.") {
            let v = match (field, value.parse::<i64>()) {
                ("seed", Ok(n)) => json!(n),
                _ => json!(value),
            };
            versions.insert(field.to_string(), v);
        }
    }
    let metrics: Vec<Value> = metrics
        .into_iter()
        .map(|(name, mut m)| {
            m.insert("name".into(), json!(name));
            m.entry("better").or_insert(json!("higher"));
            for field in ["baseline", "candidate"] {
                if !m.contains_key(field) {
                    t.problems
                        .push(format!("missing tag metric.{name}.{field} (a number)"));
                }
            }
            Value::Object(m)
        })
        .collect();
    let checks: Vec<Value> = checks
        .into_iter()
        .map(|(id, mut c)| {
            c.insert("id".into(), json!(id));
            if !c.contains_key("status") {
                t.problems
                    .push(format!("missing tag check.{id} (pass, fail or pending)"));
            }
            Value::Object(c)
        })
        .collect();
    let run = v.run_id.as_deref().filter(|r| !r.is_empty());
    versions
        .entry("code")
        .or_insert_with(|| json!(run.map_or("not stated".into(), |r| format!("mlflow-run:{r}"))));
    versions.entry("data").or_insert(json!("not stated"));
    versions.entry("config").or_insert(json!("not stated"));

    let ui = ui.trim_end_matches('/');
    let encoded = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let mut artifacts = vec![json!({
        "kind": "mlflow_model_version",
        "title": format!("{} in the MLflow registry", v.label()),
        "url": format!("{ui}/#/models/{}/versions/{}", encoded(&v.name), encoded(&v.version)),
    })];
    let web = |u: &str| u.starts_with("http://") || u.starts_with("https://");
    if let Some(link) = v.run_link.as_deref().filter(|l| web(l)) {
        artifacts.push(json!({"kind": "mlflow_run", "title": "training run", "url": link}));
    }
    if let Some(src) = v.source.as_deref().filter(|s| web(s)) {
        artifacts.push(json!({"kind": "model_artifact", "title": "model files", "url": src}));
    }
    artifacts.extend(linked);

    if !t.problems.is_empty() {
        return Err(t.problems);
    }
    let created_at = v
        .creation_timestamp
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .unwrap_or_else(Utc::now);
    let summary = v
        .description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("MLflow model version {} (no description given).", v.label()));
    let mut subject = json!({
        "kind": "model",
        "name": v.name,
        "to_version": v.version,
        "environment": environment,
    });
    if let Some(from) = from_version.filter(|f| *f != v.version) {
        subject["from_version"] = json!(from);
    }
    // The model bytes, when the version says what they hash to: the tag
    // `tollgate.artifact_digest`, or a content-addressed source (`…@sha256:HEX`, as an OCI
    // reference). Validated like any document's (a bad tag is named on import).
    let from_source = v
        .source
        .as_deref()
        .and_then(|s| s.rsplit_once("@sha256:"))
        .map(|(_, hex)| format!("sha256:{hex}"));
    if let Some(d) = t
        .get("tollgate.artifact_digest")
        .map(str::to_string)
        .or(from_source)
    {
        subject["artifact_digest"] = json!(d);
    }
    Ok(json!({
        "schema": "tollgate/change-request/v1",
        "id": cr_id(&v.name, &v.version),
        "gate": "model",
        "title": t.get("tollgate.title").map(str::to_string)
            .unwrap_or_else(|| format!("Promote {} to @{}", v.label(), conv.alias)),
        "summary": summary,
        "scope": t.get("tollgate.scope").map(str::to_string)
            .unwrap_or_else(|| format!("Model {} served through alias @{} in {environment}.", v.name, conv.alias)),
        "subject": subject,
        "requester": requester,
        "created_at": created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "owner": owner,
        "on_call": on_call,
        "artifacts": artifacts,
        "metrics": metrics,
        "risk": {"declared": declared, "rationale": rationale, "flags": flags},
        "impact": impact,
        "checks": checks,
        "plan": {"rollout": rollout, "rollback": rollback, "rollback_tested": rollback_tested},
        "versions": versions,
        "source": {"mlflow": {"url": ui, "name": v.name, "version": v.version, "alias": conv.alias}},
    }))
}

/// Why MLflow could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// No answer at all.
    #[error(
        "cannot reach MLflow at {url}: {detail}; check the URL and that `mlflow server` is running"
    )]
    Unreachable {
        /// Base URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// MLflow answered with an error.
    #[error("MLflow refused {call} (HTTP {status} {code}): {message}")]
    Api {
        /// The REST call.
        call: String,
        /// HTTP status.
        status: u16,
        /// MLflow's `error_code`.
        code: String,
        /// MLflow's message.
        message: String,
    },
    /// An answer tollgate could not read.
    #[error("MLflow sent an unreadable answer to {call}: {detail}")]
    Invalid {
        /// The REST call.
        call: String,
        /// What was wrong.
        detail: String,
    },
}

/// A client for the registry's REST API (`/api/2.0/mlflow/...`).
pub struct Client {
    base: String,
    http: Http,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

/// MLflow's error answer (`error_code`, `message`), or the start of whatever it sent.
fn refusal(call: &str, status: u16, body: &str) -> MlflowError {
    let e = serde_json::from_str::<ApiError>(body).unwrap_or(ApiError {
        error_code: "UNKNOWN".into(),
        message: crate::domain::text::truncate(body, 200),
    });
    MlflowError::Api {
        call: call.into(),
        status,
        code: e.error_code,
        message: e.message,
    }
}

impl Client {
    fn unreachable(&self, e: &reqwest::Error) -> MlflowError {
        MlflowError::Unreachable {
            url: self.base.clone(),
            detail: crate::store::remote::chain(e),
        }
    }

    /// A client for the MLflow server at `url` (e.g. `http://127.0.0.1:5000`).
    pub fn new(url: &str) -> Result<Client, MlflowError> {
        crate::tls::install_crypto_provider();
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(MlflowError::Unreachable {
                url: base,
                detail: "expected an http:// or https:// URL".into(),
            });
        }
        let http = Http::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| MlflowError::Unreachable {
                url: base.clone(),
                detail: e.to_string(),
            })?;
        Ok(Client { base, http })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn get(&self, call: &str, query: &[(&str, &str)]) -> Result<Option<Value>, MlflowError> {
        let url =
            reqwest::Url::parse_with_params(&format!("{}/api/2.0/mlflow/{call}", self.base), query)
                .map_err(|e| MlflowError::Unreachable {
                    url: self.base.clone(),
                    detail: format!("not a usable URL: {e}"),
                })?;
        let r = self
            .http
            .get(url)
            .send()
            .map_err(|e| self.unreachable(&e))?;
        let status = r.status().as_u16();
        let body = r.text().map_err(|e| MlflowError::Invalid {
            call: call.into(),
            detail: e.to_string(),
        })?;
        if status == 404
            && let Ok(e) = serde_json::from_str::<ApiError>(&body)
            && e.error_code == "RESOURCE_DOES_NOT_EXIST"
        {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(refusal(call, status, &body));
        }
        serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| MlflowError::Invalid {
                call: call.into(),
                detail: e.to_string(),
            })
    }

    /// Every version whose status tag says it awaits review, page by page.
    pub fn pending(&self, conv: &Convention) -> Result<Vec<ModelVersion>, MlflowError> {
        for (what, s) in [("tag", &conv.status_tag), ("value", &conv.pending)] {
            if s.contains(['`', '\'']) || s.is_empty() {
                return Err(MlflowError::Invalid {
                    call: "model-versions/search".into(),
                    detail: format!("the status {what} {s:?} must be non-empty, without quotes"),
                });
            }
        }
        let filter = format!("tags.`{}` = '{}'", conv.status_tag, conv.pending);
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("filter", filter.as_str()), ("max_results", "1000")];
            if !token.is_empty() {
                query.push(("page_token", token.as_str()));
            }
            let page = self
                .get("model-versions/search", &query)?
                .unwrap_or(Value::Null);
            if let Some(list) = page.get("model_versions") {
                let versions: Vec<ModelVersion> =
                    serde_json::from_value(list.clone()).map_err(|e| MlflowError::Invalid {
                        call: "model-versions/search".into(),
                        detail: e.to_string(),
                    })?;
                out.extend(versions);
            }
            match page.get("next_page_token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => break,
            }
        }
        Ok(out)
    }

    fn post(&self, call: &str, body: Value) -> Result<(), MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{call}", self.base);
        let r = self
            .http
            .post(url)
            .json(&body)
            .send()
            .map_err(|e| self.unreachable(&e))?;
        let status = r.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(refusal(call, status, &r.text().unwrap_or_default()))
    }

    /// One model version, if it (still) exists.
    pub fn version(&self, model: &str, version: &str) -> Result<Option<ModelVersion>, MlflowError> {
        match self.get(
            "model-versions/get",
            &[("name", model), ("version", version)],
        )? {
            None => Ok(None),
            Some(v) => serde_json::from_value(v["model_version"].clone())
                .map(Some)
                .map_err(|e| MlflowError::Invalid {
                    call: "model-versions/get".into(),
                    detail: e.to_string(),
                }),
        }
    }

    /// Sets one tag on a version.
    pub fn set_tag(
        &self,
        model: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        self.post(
            "model-versions/set-tag",
            json!({"name": model, "version": version, "key": key, "value": value}),
        )
    }

    /// Creates a webhook delivering the model-version events tollgate imports on to `url`,
    /// signed with `secret`; returns MLflow's webhook id.
    pub fn create_webhook(
        &self,
        name: &str,
        url: &str,
        secret: &str,
    ) -> Result<String, MlflowError> {
        let call = "webhooks";
        let body = json!({
            "name": name,
            "url": url,
            "events": WEBHOOK_EVENTS.map(|(entity, action)| json!({
                "entity": entity.to_ascii_uppercase(),
                "action": action.to_ascii_uppercase(),
            })),
            "secret": secret,
            "status": "ACTIVE",
        });
        let r = self
            .http
            .post(format!("{}/api/2.0/mlflow/{call}", self.base))
            .json(&body)
            .send()
            .map_err(|e| self.unreachable(&e))?;
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(refusal(call, status, &text));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| MlflowError::Invalid {
            call: call.into(),
            detail: e.to_string(),
        })?;
        Ok(v["webhook"]["webhook_id"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Points `alias` at `version`.
    pub fn set_alias(&self, model: &str, alias: &str, version: &str) -> Result<(), MlflowError> {
        self.post(
            "registered-models/alias",
            json!({"name": model, "alias": alias, "version": version}),
        )
    }

    /// The version `alias` points at, if it is set.
    pub fn alias(&self, model: &str, alias: &str) -> Result<Option<String>, MlflowError> {
        let answer = match self.get(
            "registered-models/alias",
            &[("name", model), ("alias", alias)],
        ) {
            // MLflow answers an unset alias with 400 INVALID_PARAMETER_VALUE, not 404.
            Err(MlflowError::Api { code, message, .. })
                if code == "INVALID_PARAMETER_VALUE" && message.contains("not found") =>
            {
                None
            }
            other => other?,
        };
        Ok(answer
            .as_ref()
            .and_then(|a| a["model_version"]["version"].as_str())
            .map(str::to_string))
    }
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// One outcome per version stored (created, revised or unchanged).
    pub outcomes: Vec<SubmitOutcome>,
    /// Versions that could not become CRs, with what to fix.
    pub skipped: Vec<(String, Vec<String>)>,
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// MLflow could not be read.
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The MLflow webhook events (entity, action) that bring a version to import: a new
/// version, and a tag set or deleted on one (the status tag marks it for review).
pub const WEBHOOK_EVENTS: [(&str, &str); 3] = [
    ("model_version", "created"),
    ("model_version_tag", "set"),
    ("model_version_tag", "deleted"),
];

/// What importing one version did.
#[derive(Debug)]
pub enum Imported {
    /// Stored (created, revised or unchanged).
    Stored(SubmitOutcome),
    /// Its tags do not mark it for review: nothing to import.
    NotPending,
    /// Its tags do not make a valid CR: what to fix.
    Invalid(Vec<String>),
    /// MLflow no longer has it.
    Gone,
}

fn submitted_by(client: &Client) -> crate::store::SubmittedBy {
    // Submitted by the registry, never by whoever ran the sync: its checks count only
    // where the policy trusts the source (`[evidence] sources = ["mlflow"]`).
    crate::store::SubmittedBy {
        submitter: crate::domain::provenance::Submitter::Source(format!("mlflow:{}", client.url())),
        signer: None,
    }
}

/// Imports one version at once (what a webhook delivery asks), with the same mapping and
/// validation as [`sync`].
pub fn import_version(
    client: &Client,
    store: &dyn Store,
    conv: &Convention,
    (name, version): (&str, &str),
    now: DateTime<Utc>,
) -> Result<Imported, SyncError> {
    let Some(v) = client.version(name, version)? else {
        return Ok(Imported::Gone);
    };
    if !v
        .tags
        .iter()
        .any(|t| t.key == conv.status_tag && t.value == conv.pending)
    {
        return Ok(Imported::NotPending);
    }
    let from = client.alias(&v.name, &conv.alias)?;
    let doc = match to_document(&v, from.as_deref(), client.url(), conv) {
        Ok(d) => d,
        Err(problems) => return Ok(Imported::Invalid(problems)),
    };
    match parse_document(doc.to_string().as_bytes()) {
        Ok((cr, document)) => {
            let submission = Submission::new(cr, document).by(submitted_by(client));
            let mut outcomes = store.submit(&[submission], now)?;
            Ok(outcomes
                .pop()
                .map_or(Imported::NotPending, Imported::Stored))
        }
        Err(e) => Ok(Imported::Invalid(
            e.problems.iter().map(|p| p.to_string()).collect(),
        )),
    }
}

/// Reads every version awaiting review and stores it as a CR. A version whose tags do not
/// make a valid CR is reported, not stored; the others are stored in one batch.
pub fn sync(
    client: &Client,
    store: &dyn Store,
    conv: &Convention,
    now: DateTime<Utc>,
) -> Result<SyncReport, SyncError> {
    let versions = client.pending(conv)?;
    let mut live: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut report = SyncReport::default();
    let mut batch = Vec::new();
    let by = submitted_by(client);
    for v in &versions {
        if !live.contains_key(&v.name) {
            live.insert(v.name.clone(), client.alias(&v.name, &conv.alias)?);
        }
        let from = live.get(&v.name).cloned().flatten();
        let doc = match to_document(v, from.as_deref(), client.url(), conv) {
            Ok(d) => d,
            Err(problems) => {
                report.skipped.push((v.label(), problems));
                continue;
            }
        };
        match parse_document(doc.to_string().as_bytes()) {
            Ok((cr, document)) => batch.push(Submission::new(cr, document).by(by.clone())),
            Err(e) => report.skipped.push((
                v.label(),
                e.problems.iter().map(|p| p.to_string()).collect(),
            )),
        }
    }
    if !batch.is_empty() {
        report.outcomes = store.submit(&batch, now)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(tags: &[(&str, &str)]) -> ModelVersion {
        ModelVersion {
            name: "fraud-detector".into(),
            version: "13".into(),
            creation_timestamp: Some(1_795_600_000_000),
            description: Some("Retrained with velocity features.".into()),
            run_id: Some("abc123".into()),
            run_link: Some("http://mlflow.example/#/runs/abc123".into()),
            source: Some("s3://models/fraud/13".into()),
            tags: tags
                .iter()
                .map(|(k, v)| Tag {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            ..ModelVersion::default()
        }
    }

    const COMPLETE: &[(&str, &str)] = &[
        ("tollgate.status", "pending"),
        ("tollgate.requester", "priya"),
        ("tollgate.on_call", "marco"),
        ("tollgate.risk.declared", "medium"),
        ("tollgate.risk.rationale", "same objective"),
        ("tollgate.risk.flags", "new_feature, retraining"),
        ("tollgate.impact", "all card transactions"),
        ("tollgate.plan.rollout", "canary 5% for 24h"),
        ("metric.auc.baseline", "0.912"),
        ("metric.auc.candidate", "0.927"),
        ("metric.p99_latency_ms.baseline", "38"),
        ("metric.p99_latency_ms.candidate", "41.5"),
        ("metric.p99_latency_ms.better", "lower"),
        ("check.performance", "pass"),
        ("check.performance.detail", "AUC +1.5pp"),
        ("check.fairness", "pending"),
        ("version.data", "card-auth@2026-11-18"),
        ("version.seed", "7"),
    ];

    #[test]
    fn the_artifact_digest_comes_from_its_tag_or_a_content_addressed_source() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let mut tags = COMPLETE.to_vec();
        tags.push(("tollgate.artifact_digest", &digest));
        let doc = to_document(
            &version(&tags),
            Some("12"),
            "http://mlflow.example/",
            &Convention::default(),
        )
        .unwrap();
        let (cr, _) = parse_document(doc.to_string().as_bytes()).expect("valid CR");
        assert_eq!(cr.subject.artifact_digest.as_deref(), Some(digest.as_str()));
        let mut v = version(COMPLETE);
        v.source = Some(format!("oci://registry.example/models/fraud@{digest}"));
        let doc = to_document(
            &v,
            Some("12"),
            "http://mlflow.example/",
            &Convention::default(),
        )
        .unwrap();
        assert_eq!(doc["subject"]["artifact_digest"], digest.as_str());
        let plain = to_document(
            &version(COMPLETE),
            Some("12"),
            "http://mlflow.example/",
            &Convention::default(),
        )
        .unwrap();
        assert!(plain["subject"].get("artifact_digest").is_none());
    }

    #[test]
    fn a_tagged_version_becomes_a_valid_model_cr() {
        let doc = to_document(
            &version(COMPLETE),
            Some("12"),
            "http://mlflow.example/",
            &Convention::default(),
        )
        .unwrap();
        let (cr, _) = parse_document(doc.to_string().as_bytes()).expect("valid CR");
        assert_eq!(cr.id, "MLF-fraud-detector-v13");
        assert_eq!(doc["subject"]["from_version"], "12");
        assert_eq!(doc["subject"]["to_version"], "13");
        assert_eq!(doc["subject"]["environment"], "prod");
        assert_eq!(doc["summary"], "Retrained with velocity features.");
        assert_eq!(doc["owner"], "priya", "owner defaults to the requester");
        assert_eq!(doc["risk"]["flags"], json!(["new_feature", "retraining"]));
        assert_eq!(
            doc["metrics"],
            json!([
                {"name": "auc", "baseline": 0.912, "candidate": 0.927, "better": "higher"},
                {"name": "p99_latency_ms", "baseline": 38.0, "candidate": 41.5, "better": "lower"},
            ])
        );
        assert_eq!(
            doc["checks"],
            json!([
                {"id": "fairness", "status": "pending"},
                {"id": "performance", "status": "pass", "detail": "AUC +1.5pp"},
            ])
        );
        assert_eq!(doc["versions"]["code"], "mlflow-run:abc123");
        assert_eq!(doc["versions"]["seed"], 7);
        assert!(
            doc["plan"]["rollback"]
                .as_str()
                .unwrap()
                .contains("@champion back to version 12")
        );
        let kinds: Vec<&str> = doc["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["mlflow_model_version", "mlflow_run"],
            "s3:// is no web link"
        );
        assert_eq!(
            doc["artifacts"][0]["url"],
            "http://mlflow.example/#/models/fraud-detector/versions/13"
        );
    }

    #[test]
    fn every_missing_or_bad_tag_is_named() {
        let problems = to_document(
            &version(&[
                ("tollgate.status", "pending"),
                ("metric.auc.baseline", "high"),
                ("check.fairness.detail", "gap 1pp"),
                ("tollgate.plan.rollback_tested", "yes"),
            ]),
            None,
            "http://mlflow.example",
            &Convention::default(),
        )
        .unwrap_err();
        let text = problems.join("\n");
        for expected in [
            "missing tag tollgate.requester",
            "missing tag tollgate.on_call",
            "missing tag tollgate.risk.declared",
            "missing tag tollgate.risk.rationale",
            "missing tag tollgate.impact",
            "missing tag tollgate.plan.rollout",
            "missing tag tollgate.plan.rollback (how to undo it; there is no earlier version",
            "tag tollgate.plan.rollback_tested: expected true or false, found \"yes\"",
            "tag metric.auc.baseline: expected a number, found \"high\"",
            "missing tag metric.auc.candidate",
            "missing tag check.fairness (pass, fail or pending)",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
    }

    #[test]
    fn ids_stay_valid_and_distinct_for_awkward_model_names() {
        assert_eq!(cr_id("churn", "4"), "MLF-churn-v4");
        let a = cr_id("team a/fraud model", "1");
        let b = cr_id("team-a-fraud-model", "1");
        assert_ne!(a, b, "a cleaned name carries a hash of the real one");
        let long = cr_id(&"x".repeat(300), "12");
        assert!(long.len() <= 64 && long.ends_with("-v12"), "{long}");
        for id in [a, b, long] {
            assert!(crate::domain::reader::check_identifier(&id).is_ok(), "{id}");
        }
    }
}

/// Where a CR read from MLflow came from (the document's `source.mlflow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// MLflow base URL.
    pub url: String,
    /// Registered model.
    pub model: String,
    /// Version.
    pub version: String,
    /// Serving alias.
    pub alias: String,
}

impl Origin {
    /// Reads `source.mlflow` from a stored document.
    pub fn of(document: &Value) -> Option<Origin> {
        let m = document.get("source")?.get("mlflow")?;
        let text = |k: &str| m.get(k)?.as_str().map(str::to_string);
        Some(Origin {
            url: text("url")?,
            model: text("name")?,
            version: text("version")?,
            alias: text("alias")?,
        })
    }

    fn label(&self) -> String {
        format!("{} v{}", self.model, self.version)
    }
}

/// An alias moved on MLflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasMove {
    /// The alias (e.g. `champion`).
    pub alias: String,
    /// The version it points at now.
    pub to: String,
    /// The version it pointed at before, now under `previous-<alias>`.
    pub previous: Option<String>,
}

impl AliasMove {
    /// `@champion of churn now v1 (v2 kept as @previous-champion)`, for people.
    pub fn describe(&self, model: &str) -> String {
        let sanitize = crate::domain::text::sanitize;
        format!(
            "@{} of {} now v{}{}",
            self.alias,
            sanitize(model),
            sanitize(&self.to),
            self.previous
                .as_deref()
                .map(|p| format!(" (v{} kept as @previous-{})", sanitize(p), self.alias))
                .unwrap_or_default()
        )
    }
}

/// What writing a CR's state back to MLflow did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// MLflow already showed it.
    Unchanged,
    /// Tags written (status last); the alias moved if the CR is now approved.
    Written {
        /// The status written to the status tag.
        status: String,
        /// The alias move, when an approval completed.
        alias: Option<AliasMove>,
    },
}

/// Why a CR's state could not be written back.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// MLflow could not be reached or refused.
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Someone else decided on the version in MLflow: tollgate does not overwrite it.
    #[error("{label}: {detail}; not overwritten (tollgate's decision stays in its log)")]
    Conflict {
        /// `model vN`.
        label: String,
        /// What MLflow shows.
        detail: String,
    },
    /// The latest decision entry could not be read.
    #[error("{0}")]
    Log(String),
    /// The version was deleted in MLflow after it was read.
    #[error(
        "{label} no longer exists in MLflow; tollgate's decision stays in its log (entry {entry})"
    )]
    Gone {
        /// `model vN`.
        label: String,
        /// The decision's log position.
        entry: u64,
    },
}

/// MLflow tag values are bounded; the full text is in the signed log entry.
const TAG_TEXT: usize = 4_000;

/// Writes a CR's tollgate state to its MLflow version: the latest decision (verdict,
/// reviewer, role, time, rationale, log entry) and sign-off count, then the status tag
/// last; moves the alias when an approval completed the sign-offs. MLflow has no
/// conditional writes, so the version is re-read before (a status set by anyone else is a
/// conflict, never overwritten) and after (a change in between is reported). `None` when
/// the CR did not come from this MLflow or has no decision yet.
pub fn push(
    client: &Client,
    store: &dyn Store,
    book: &crate::domain::policy_book::PolicyBook,
    conv: &Convention,
    cr_id: &str,
) -> Result<Option<Pushed>, PushError> {
    let Some(cr) = store.get(cr_id)? else {
        return Ok(None);
    };
    let Some(origin) = Origin::of(&cr.current.document).filter(|o| o.url == client.url()) else {
        return Ok(None);
    };
    let entries = store.decision_entries(cr_id)?;
    let Some(last) = entries.last() else {
        return Ok(None);
    };
    // The entries carry the decisions: parse them rather than read the log again.
    let mut decisions = Vec::with_capacity(entries.len());
    let mut latest = None;
    for e in &entries {
        let unreadable = |why: crate::audit::log::MalformedDecision| {
            PushError::Log(format!(
                "decision entry {}: {why}; run `tollgate verify`",
                e.seq
            ))
        };
        let record = crate::audit::log::DecisionRecord::parse(&e.body).map_err(unreadable)?;
        decisions.push(record.to_decision().map_err(unreadable)?);
        latest = Some(record);
    }
    let Some(record) = latest else {
        return Ok(None);
    };
    let eval =
        crate::domain::status::evaluate_in(&cr.current.cr, &cr.current.digest, &decisions, book);
    let status = eval.status.as_str().to_string();
    let entry_ref = |seq: u64, hash: &str| format!("{seq} {hash}");
    let ours = |value: &str| entries.iter().any(|e| entry_ref(e.seq, &e.hash) == value);
    let label = origin.label();
    let gone = || PushError::Gone {
        label: label.clone(),
        entry: last.seq,
    };
    let tags_of = |v: &ModelVersion| -> BTreeMap<String, String> {
        v.tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect()
    };

    // Before: only a pending version, or one whose state this log wrote, is ours to update.
    let before = client
        .version(&origin.model, &origin.version)?
        .ok_or_else(gone)?;
    let tags = tags_of(&before);
    let current_status = tags.get(&conv.status_tag).map(String::as_str).unwrap_or("");
    let current_entry = tags.get("tollgate.entry").map(String::as_str).unwrap_or("");
    if current_status != conv.pending && !ours(current_entry) {
        return Err(PushError::Conflict {
            label,
            detail: format!(
                "MLflow shows {}={current_status:?} that this log did not write",
                conv.status_tag
            ),
        });
    }
    let wanted_entry = entry_ref(last.seq, &last.hash);
    let mut written = false;
    if current_status != status || current_entry != wanted_entry {
        let rationale: String = if record.rationale.chars().count() > TAG_TEXT {
            record.rationale.chars().take(TAG_TEXT).collect::<String>() + "…"
        } else {
            record.rationale.clone()
        };
        let signoffs = format!("{}/{}", eval.signoffs.obtained(), eval.signoffs.required());
        for (key, value) in [
            ("tollgate.decision.verdict", record.verdict.as_str()),
            ("tollgate.decision.reviewer", record.principal.as_str()),
            ("tollgate.decision.role", record.role.as_str()),
            ("tollgate.decision.at", record.at.as_str()),
            ("tollgate.decision.rationale", rationale.as_str()),
            ("tollgate.decision.key", record.key_fingerprint.as_str()),
            ("tollgate.signoffs", signoffs.as_str()),
            ("tollgate.cr", cr_id),
            ("tollgate.entry", wanted_entry.as_str()),
        ] {
            client.set_tag(&origin.model, &origin.version, key, value)?;
        }
        client.set_tag(&origin.model, &origin.version, &conv.status_tag, &status)?;
        written = true;
    }

    // After: the status must be the one written, by this log.
    let after = client
        .version(&origin.model, &origin.version)?
        .ok_or_else(gone)?;
    let tags = tags_of(&after);
    if tags.get(&conv.status_tag) != Some(&status)
        || tags.get("tollgate.entry") != Some(&wanted_entry)
    {
        return Err(PushError::Conflict {
            label,
            detail: format!(
                "{} changed to {:?} while tollgate was writing",
                conv.status_tag,
                tags.get(&conv.status_tag).map(String::as_str).unwrap_or("")
            ),
        });
    }

    let mut alias = None;
    if eval.status == crate::domain::status::Status::Approved {
        alias = move_alias(client, &origin.model, &origin.alias, &origin.version)?;
    }
    Ok(if written || alias.is_some() {
        Some(Pushed::Written { status, alias })
    } else {
        Some(Pushed::Unchanged)
    })
}

/// Points `alias` at `version`, keeping the version it leaves under `previous-<alias>`.
/// `None` when it already points there.
pub fn move_alias(
    client: &Client,
    model: &str,
    alias: &str,
    version: &str,
) -> Result<Option<AliasMove>, MlflowError> {
    let previous = client.alias(model, alias)?;
    if previous.as_deref() == Some(version) {
        return Ok(None);
    }
    if let Some(p) = &previous {
        client.set_alias(model, &format!("previous-{alias}"), p)?;
    }
    client.set_alias(model, alias, version)?;
    Ok(Some(AliasMove {
        alias: alias.to_string(),
        to: version.to_string(),
        previous,
    }))
}
