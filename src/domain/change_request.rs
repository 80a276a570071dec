//! The change-request document, format v1 (`tollgate/change-request/v1`).
//!
//! CRs are produced by CI pipelines as JSON. They are validated here, field by field, with
//! every problem reported at once (see [`crate::domain::reader`]). The typed
//! [`ChangeRequest`] is a *view* used for rules; the document itself is stored as
//! submitted (canonicalised), so fields this version does not know are kept, not dropped.
//! The published JSON Schema is `docs/change-request.v1.schema.json`.

pub use crate::domain::check::{Check, CheckStatus};
use crate::domain::reader::{
    LONG_TEXT, OPTIONAL_PROSE, Problem, Reader, SHORT_TEXT, TextRule, child, describe, index, quote,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

/// The value of the `schema` field this version reads.
pub const SCHEMA_V1: &str = "tollgate/change-request/v1";
/// Largest document accepted, in bytes; a CR links to big material rather than embedding it.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Most artifacts, metrics or checks one CR may carry.
pub const MAX_LIST_LEN: usize = 200;
/// Longest URL accepted in an artifact or check.
pub const MAX_URL_CHARS: usize = 2048;
/// Longest policy text a `policy`-gate CR may propose, in characters.
pub const MAX_POLICY_CHARS: usize = 512 * 1024;

/// The gate a change passes; decides the checklist and the required sign-offs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    /// New source, schema, PII risk.
    Data,
    /// Architecture, objective, performance shift.
    Model,
    /// Release to users.
    Deployment,
    /// Hotfix or rollback under an incident.
    Emergency,
    /// A change to the governance policy itself (`tollgate policy propose`): always high
    /// risk, signed off by the roles of the policy in force's `[signoffs.policy]`.
    Policy,
}

impl Gate {
    /// All gates with their document spelling, for parsing and messages.
    pub const ALL: [(&'static str, Gate); 5] = [
        ("data", Gate::Data),
        ("model", Gate::Model),
        ("deployment", Gate::Deployment),
        ("emergency", Gate::Emergency),
        ("policy", Gate::Policy),
    ];

    /// The gates a CI pipeline submits change requests to (not `policy`, which only
    /// `tollgate policy propose` creates).
    pub const REVIEWED: [Gate; 3] = [Gate::Data, Gate::Model, Gate::Deployment];

    /// The spelling used in documents and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Data => "data",
            Gate::Model => "model",
            Gate::Deployment => "deployment",
            Gate::Emergency => "emergency",
            Gate::Policy => "policy",
        }
    }

    /// Parses the document spelling.
    pub fn parse(s: &str) -> Option<Gate> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, g)| *g)
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where the change lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Development.
    Dev,
    /// Staging / pre-production.
    Staging,
    /// Production: users are affected.
    Prod,
}

impl Environment {
    /// Every environment with its spelling.
    pub const ALL: [(&'static str, Environment); 3] = [
        ("dev", Environment::Dev),
        ("staging", Environment::Staging),
        ("prod", Environment::Prod),
    ];

    /// The spelling used in documents and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Staging => "staging",
            Environment::Prod => "prod",
        }
    }
}

/// Which way a metric improves; decides the colour of a delta, not the risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Larger values are better (AUC, recall).
    Higher,
    /// Smaller values are better (latency, error rates).
    Lower,
}

/// A risk rating. Ordered: `Low < Medium < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    /// Minor tweak, no schema change, every metric within the low threshold.
    Low,
    /// New feature, retraining, a moderate shift.
    Medium,
    /// New data source, objective change, sensitive domain, or a large shift.
    High,
}

impl RiskLevel {
    /// All levels with their document spelling.
    pub const ALL: [(&'static str, RiskLevel); 3] = [
        ("low", RiskLevel::Low),
        ("medium", RiskLevel::Medium),
        ("high", RiskLevel::High),
    ];

    /// The spelling used in documents and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
        }
    }
}

impl std::fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What is changing: a model, dataset or feature view, between two versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subject {
    /// Free-form kind: `model`, `dataset`, `feature_view`, ...
    pub kind: String,
    /// Registered name, e.g. `fraud-detector`.
    pub name: String,
    /// Version being replaced; `None` for a first release.
    pub from_version: Option<String>,
    /// Version being introduced.
    pub to_version: String,
    /// Target environment.
    pub environment: Environment,
    /// `sha256:` of the model (or dataset) bytes this version ships, when the producer
    /// knows it: an approval of the CR then binds those bytes (`tollgate attest`).
    pub artifact_digest: Option<String>,
}

/// Checks an artifact digest: `sha256:` and 64 lower-case hex digits.
pub fn check_artifact_digest(value: &str) -> Result<(), String> {
    match value.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "expected sha256: and 64 lower-case hex digits (e.g. sha256:9f86d0…), found {}",
            crate::domain::reader::quote(value)
        )),
    }
}

/// A link to supporting material (PR, model card, data sheet, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Artifact {
    /// Free-form kind: `pull_request`, `model_card`, `data_sheet`, `validation_report`, ...
    pub kind: String,
    /// Human title.
    pub title: String,
    /// http(s) URL; other schemes are refused so "open" can never launch a local program.
    pub url: String,
}

/// A metric compared between the baseline and the candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// Metric name, unique within the CR.
    pub name: String,
    /// Value of the version in service.
    pub baseline: f64,
    /// Value of the proposed version.
    pub candidate: f64,
    /// Which way is better.
    pub better: Direction,
}

/// Which way a metric moved, judged by its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// Moved the way that is better.
    Better,
    /// Moved the way that is worse.
    Worse,
    /// Did not move.
    Unchanged,
}

impl Shift {
    /// The word every face shows (never only a colour or an arrow).
    pub fn as_str(self) -> &'static str {
        match self {
            Shift::Better => "better",
            Shift::Worse => "worse",
            Shift::Unchanged => "unchanged",
        }
    }
}

impl Direction {
    /// `higher` or `lower`, as in "(lower is better)".
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Higher => "higher",
            Direction::Lower => "lower",
        }
    }
}

impl Metric {
    /// Whether the candidate is better, worse or the same as the baseline.
    pub fn shift(&self) -> Shift {
        let improved = match self.better {
            Direction::Higher => self.candidate > self.baseline,
            Direction::Lower => self.candidate < self.baseline,
        };
        if self.candidate == self.baseline {
            Shift::Unchanged
        } else if improved {
            Shift::Better
        } else {
            Shift::Worse
        }
    }
}

/// The requester's own view of the risk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeclaredRisk {
    /// Rating the requester declared.
    pub declared: RiskLevel,
    /// Why they think so.
    pub rationale: String,
    /// Risk flags (`new_data_source`, `schema_change`, ...), interpreted by the policy.
    pub flags: Vec<String>,
}

/// How the change goes out and how it is undone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Rollout plan (canary, phases, ...).
    pub rollout: String,
    /// Rollback plan.
    pub rollback: String,
    /// Whether the rollback was exercised (e.g. in staging).
    pub rollback_tested: bool,
}

/// What a `policy`-gate CR proposes (its document's `policy` object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyProposal {
    /// The proposed policy file, verbatim (comments kept): once adopted, it is what the
    /// log records and what is written beside the store.
    pub text: String,
    /// Digest of the policy in force when it was proposed. The proposal can be adopted
    /// only while that policy is still in force; after another adoption it is stale.
    pub base_digest: String,
}

/// Exact code / data / config versions, for reproducibility and audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Versions {
    /// Code version (commit).
    pub code: String,
    /// Data snapshot.
    pub data: String,
    /// Configuration digest.
    pub config: String,
    /// Training seed, when there is one.
    pub seed: Option<i64>,
}

/// The typed view of a validated v1 change-request document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeRequest {
    /// Unique id, e.g. `CR-1042`.
    pub id: String,
    /// The gate it passes.
    pub gate: Gate,
    /// One-line title.
    pub title: String,
    /// What changes and why.
    pub summary: String,
    /// What is in and out of scope.
    pub scope: String,
    /// What is changing.
    pub subject: Subject,
    /// Principal id of the person asking; never signs off their own CR.
    pub requester: String,
    /// When the request was made.
    pub created_at: DateTime<Utc>,
    /// Principal id of the owner.
    pub owner: String,
    /// Principal id of the on-call contact.
    pub on_call: String,
    /// Supporting links.
    pub artifacts: Vec<Artifact>,
    /// Baseline vs candidate metrics.
    pub metrics: Vec<Metric>,
    /// Declared risk and flags.
    pub risk: DeclaredRisk,
    /// Impact analysis.
    pub impact: String,
    /// Automated check evidence.
    pub checks: Vec<Check>,
    /// Rollout and rollback plan.
    pub plan: Plan,
    /// Code / data / config versions.
    pub versions: Versions,
    /// For the `policy` gate: the proposed policy (required there, ignored elsewhere).
    pub policy: Option<PolicyProposal>,
    /// Who submitted this revision and what CI attested for it: not part of the
    /// document, filled in by the store from the log (unknown until then).
    pub provenance: crate::domain::provenance::Provenance,
}

impl ChangeRequest {
    /// The evidence for `id`, if CI reported it.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// Why a document was refused: every problem found, each with its JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    /// Problems in document order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DocumentError {}

/// Parses and validates a CR document from its raw bytes.
///
/// Returns the typed view and the document tree (kept whole, unknown fields included).
pub fn parse_document(bytes: &[u8]) -> Result<(ChangeRequest, Value), DocumentError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(single(
            "$",
            format!(
                "expected a document of at most {MAX_DOCUMENT_BYTES} bytes, found {}; link large material as an artifact",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        single(
            "$",
            format!(
                "expected UTF-8 text; invalid byte at offset {}",
                e.valid_up_to()
            ),
        )
    })?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| single("$", json_syntax_message(text, &e)))?;
    crate::domain::reader::check_no_duplicate_names(text).map_err(|d| {
        single(
            &d.path,
            format!(
                "the name appears twice in one object (line {}); each member name must be unique, remove one",
                d.line
            ),
        )
    })?;
    let cr = from_value(&value)?;
    Ok((cr, value))
}

/// Explains a JSON syntax error with its line and column, recognising the usual
/// NaN / Infinity mistake of Python-produced documents.
fn json_syntax_message(text: &str, e: &serde_json::Error) -> String {
    let (line, col) = (e.line(), e.column());
    let at = text
        .lines()
        .nth(line.saturating_sub(1))
        .map(|l| {
            l.chars()
                .skip(col.saturating_sub(1))
                .take(12)
                .collect::<String>()
        })
        .unwrap_or_default();
    let near = at.trim_start_matches([' ', ':', '-', '+']);
    if ["NaN", "Infinity", "inf"]
        .iter()
        .any(|w| near.starts_with(w))
    {
        return format!(
            "line {line}, column {col}: NaN and Infinity are not valid JSON numbers; metrics must be finite numbers"
        );
    }
    if e.is_eof() {
        return format!("line {line}, column {col}: the JSON document ends too early ({e})");
    }
    format!("line {line}, column {col}: invalid JSON ({e})")
}

fn single(path: &str, message: String) -> DocumentError {
    DocumentError {
        problems: vec![Problem {
            path: path.into(),
            message,
        }],
    }
}

/// Validates an already-parsed document tree.
pub fn from_value(value: &Value) -> Result<ChangeRequest, DocumentError> {
    let mut r = Reader::new();
    let cr = read_cr(&mut r, value);
    match cr {
        Some(cr) if r.is_clean() => Ok(cr),
        _ => {
            let mut problems = r.into_problems();
            if problems.is_empty() {
                problems.push(Problem {
                    path: "$".into(),
                    message: "document could not be read".into(),
                });
            }
            Err(DocumentError { problems })
        }
    }
}

const ROOT: &str = "$";

fn read_cr(r: &mut Reader, value: &Value) -> Option<ChangeRequest> {
    let obj = r.as_object(value, ROOT)?;
    // Read every field before combining, so all problems are reported in one pass.
    let schema = r.text(obj, ROOT, "schema", SHORT_TEXT);
    if let Some(s) = &schema
        && s != SCHEMA_V1
    {
        r.problem(
            child(ROOT, "schema"),
            format!("expected \"{SCHEMA_V1}\", found {}", quote(s)),
        );
    }
    let id = r.identifier(obj, ROOT, "id");
    let gate = r.choice(obj, ROOT, "gate", &Gate::ALL);
    let title = r.text(obj, ROOT, "title", SHORT_TEXT);
    let summary = r.text(obj, ROOT, "summary", LONG_TEXT);
    let scope = r.text(obj, ROOT, "scope", LONG_TEXT);
    let subject = r
        .required(obj, ROOT, "subject")
        .and_then(|v| read_subject(r, v));
    let requester = r.identifier(obj, ROOT, "requester");
    let created_at = read_time(r, obj, "created_at");
    let owner = r.identifier(obj, ROOT, "owner");
    let on_call = r.identifier(obj, ROOT, "on_call");
    let artifacts = read_list(r, obj, "artifacts", read_artifact);
    let metrics = read_list(r, obj, "metrics", read_metric);
    if let Some(ms) = &metrics {
        flag_duplicates(
            r,
            "metrics",
            ms.iter().map(|m| m.name.as_str()),
            "metric name",
        );
    }
    let risk = r.required(obj, ROOT, "risk").and_then(|v| read_risk(r, v));
    let impact = r.text(obj, ROOT, "impact", LONG_TEXT);
    let checks = read_list(r, obj, "checks", read_check);
    if let Some(cs) = &checks {
        flag_duplicates(r, "checks", cs.iter().map(|c| c.id.as_str()), "check id");
    }
    let plan = r.required(obj, ROOT, "plan").and_then(|v| read_plan(r, v));
    let versions = r
        .required(obj, ROOT, "versions")
        .and_then(|v| read_versions(r, v));
    let policy = match gate {
        Some(Gate::Policy) => r
            .required(obj, ROOT, "policy")
            .and_then(|v| read_policy_proposal(r, v))
            .map(Some),
        _ => Some(None),
    };
    Some(ChangeRequest {
        id: id?,
        gate: gate?,
        title: title?,
        summary: summary?,
        scope: scope?,
        subject: subject?,
        requester: requester?,
        created_at: created_at?,
        owner: owner?,
        on_call: on_call?,
        artifacts: artifacts?,
        metrics: metrics?,
        risk: risk?,
        impact: impact?,
        checks: checks?,
        plan: plan?,
        versions: versions?,
        policy: policy?,
        provenance: Default::default(),
    })
}

fn read_policy_proposal(r: &mut Reader, v: &Value) -> Option<PolicyProposal> {
    let path = child(ROOT, "policy");
    let obj = r.as_object(v, &path)?;
    r.deny_unknown(obj, &path, &["text", "base_digest"]);
    let text = r.text(
        obj,
        &path,
        "text",
        TextRule {
            max_chars: MAX_POLICY_CHARS,
            allow_empty: false,
        },
    );
    let base_digest = r.text(obj, &path, "base_digest", SHORT_TEXT);
    if let Some(d) = &base_digest
        && !(d.starts_with("sha256:")
            && d.len() == 71
            && d[7..].bytes().all(|b| b.is_ascii_hexdigit()))
    {
        r.problem(
            child(&path, "base_digest"),
            format!("expected a sha256:HEX digest, found {}", quote(d)),
        );
        return None;
    }
    Some(PolicyProposal {
        text: text?,
        base_digest: base_digest?,
    })
}

fn read_time(r: &mut Reader, obj: &Map<String, Value>, key: &str) -> Option<DateTime<Utc>> {
    let s = r.text(obj, ROOT, key, SHORT_TEXT)?;
    match DateTime::parse_from_rfc3339(&s) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            r.problem(
                child(ROOT, key),
                format!(
                    "expected an RFC 3339 timestamp such as 2026-11-20T09:14:00Z, found {}",
                    quote(&s)
                ),
            );
            None
        }
    }
}

fn read_list<T>(
    r: &mut Reader,
    obj: &Map<String, Value>,
    key: &str,
    item: fn(&mut Reader, &Value, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let path = child(ROOT, key);
    let items = r.array(obj, ROOT, key, MAX_LIST_LEN)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, v) in items.iter().enumerate() {
        match item(r, v, &index(&path, i)) {
            Some(t) => out.push(t),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn flag_duplicates<'a>(
    r: &mut Reader,
    key: &str,
    names: impl Iterator<Item = &'a str>,
    what: &str,
) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, n) in names.enumerate() {
        if seen.contains(&n) {
            r.problem(
                format!("$.{key}[{i}]"),
                format!("duplicate {what} {}; each must appear once", quote(n)),
            );
        }
        seen.push(n);
    }
}

fn read_subject(r: &mut Reader, v: &Value) -> Option<Subject> {
    let path = child(ROOT, "subject");
    let obj = r.as_object(v, &path)?;
    let kind = r.text(obj, &path, "kind", SHORT_TEXT);
    let name = r.text(obj, &path, "name", SHORT_TEXT);
    let from_version = r.opt_text(obj, &path, "from_version", SHORT_TEXT);
    let to_version = r.text(obj, &path, "to_version", SHORT_TEXT);
    let environment = r.choice(obj, &path, "environment", &Environment::ALL);
    let artifact_digest = r.opt_text(obj, &path, "artifact_digest", SHORT_TEXT);
    if let Some(Some(d)) = &artifact_digest
        && let Err(e) = check_artifact_digest(d)
    {
        r.problem(child(&path, "artifact_digest"), e);
    }
    // Subject and versions reach rollback commands as arguments: refuse what a command
    // could read as an option or a placeholder.
    if let Some(name) = &name
        && let Err(e) = crate::domain::reader::check_argument(name)
    {
        r.problem(child(&path, "name"), e.to_string());
    }
    for (key, value) in [
        (
            "from_version",
            from_version.as_ref().and_then(|v| v.as_deref()),
        ),
        ("to_version", to_version.as_deref()),
    ] {
        if let Some(v) = value
            && let Err(e) = crate::domain::reader::check_version(v)
        {
            r.problem(child(&path, key), e.to_string());
        }
    }
    Some(Subject {
        kind: kind?,
        name: name?,
        from_version: from_version?,
        to_version: to_version?,
        environment: environment?,
        artifact_digest: artifact_digest?,
    })
}

fn read_url(
    r: &mut Reader,
    obj: &Map<String, Value>,
    path: &str,
    required: bool,
) -> Option<Option<String>> {
    let rule = TextRule {
        max_chars: MAX_URL_CHARS,
        allow_empty: false,
    };
    let url = if required {
        r.text(obj, path, "url", rule).map(Some)?
    } else {
        r.opt_text(obj, path, "url", rule)?
    };
    if let Some(u) = &url {
        let lower = u.to_ascii_lowercase();
        let has_host = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"))
            .is_some_and(|rest| !rest.is_empty());
        if !has_host || u.chars().any(|c| c.is_control() || c.is_whitespace()) {
            r.problem(
                child(path, "url"),
                format!(
                    "expected an http:// or https:// URL without spaces, found {}",
                    quote(u)
                ),
            );
            return None;
        }
    }
    Some(url)
}

fn read_artifact(r: &mut Reader, v: &Value, path: &str) -> Option<Artifact> {
    let obj = r.as_object(v, path)?;
    let kind = r.text(obj, path, "kind", SHORT_TEXT);
    let title = r.text(obj, path, "title", SHORT_TEXT);
    let url = read_url(r, obj, path, true);
    Some(Artifact {
        kind: kind?,
        title: title?,
        url: url??,
    })
}

fn read_metric(r: &mut Reader, v: &Value, path: &str) -> Option<Metric> {
    let obj = r.as_object(v, path)?;
    let name = r.text(obj, path, "name", SHORT_TEXT);
    let baseline = r.number(obj, path, "baseline");
    let candidate = r.number(obj, path, "candidate");
    let better = r.choice(
        obj,
        path,
        "better",
        &[("higher", Direction::Higher), ("lower", Direction::Lower)],
    );
    Some(Metric {
        name: name?,
        baseline: baseline?,
        candidate: candidate?,
        better: better?,
    })
}

fn read_risk(r: &mut Reader, v: &Value) -> Option<DeclaredRisk> {
    let path = child(ROOT, "risk");
    let obj = r.as_object(v, &path)?;
    let declared = r.choice(obj, &path, "declared", &RiskLevel::ALL);
    let rationale = r.text(obj, &path, "rationale", LONG_TEXT);
    let flags = r.identifier_list(obj, &path, "flags", 50);
    Some(DeclaredRisk {
        declared: declared?,
        rationale: rationale?,
        flags: flags?,
    })
}

fn read_check(r: &mut Reader, v: &Value, path: &str) -> Option<Check> {
    let obj = r.as_object(v, path)?;
    let id = r.identifier(obj, path, "id");
    let status = r.choice(obj, path, "status", &CheckStatus::ALL);
    let detail = r.opt_text(obj, path, "detail", OPTIONAL_PROSE);
    let url = read_url(r, obj, path, false);
    let value = match obj.get("value") {
        None | Some(Value::Null) => Some(None),
        Some(v @ Value::String(_)) => r
            .text_value(v, &child(path, "value"), SHORT_TEXT)
            .map(|_| Some(v.clone())),
        Some(v @ Value::Number(_)) => r
            .number_value(v, &child(path, "value"))
            .map(|_| Some(v.clone())),
        Some(other) => {
            r.problem(
                child(path, "value"),
                format!(
                    "expected a number or a short string, found {}",
                    describe(other)
                ),
            );
            None
        }
    };
    Some(Check {
        id: id?,
        status: status?,
        detail: detail?,
        url: url?,
        value: value?,
    })
}

fn read_plan(r: &mut Reader, v: &Value) -> Option<Plan> {
    let path = child(ROOT, "plan");
    let obj = r.as_object(v, &path)?;
    let rollout = r.text(obj, &path, "rollout", LONG_TEXT);
    let rollback = r.text(obj, &path, "rollback", LONG_TEXT);
    let rollback_tested = r.boolean(obj, &path, "rollback_tested");
    Some(Plan {
        rollout: rollout?,
        rollback: rollback?,
        rollback_tested: rollback_tested?,
    })
}

fn read_versions(r: &mut Reader, v: &Value) -> Option<Versions> {
    let path = child(ROOT, "versions");
    let obj = r.as_object(v, &path)?;
    let code = r.text(obj, &path, "code", SHORT_TEXT);
    let data = r.text(obj, &path, "data", SHORT_TEXT);
    let config = r.text(obj, &path, "config", SHORT_TEXT);
    let seed = match obj.get("seed") {
        None | Some(Value::Null) => Some(None),
        Some(_) => r.integer(obj, &path, "seed", i64::MIN, i64::MAX).map(Some),
    };
    Some(Versions {
        code: code?,
        data: data?,
        config: config?,
        seed: seed?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;

    fn fixture(id: &str) -> Value {
        let (_, text) = demo::FIXTURES
            .iter()
            .find(|(name, _)| name.starts_with(id))
            .expect("fixture exists");
        serde_json::from_str(text).expect("fixture is JSON")
    }

    fn problems_of(v: &Value) -> Vec<(String, String)> {
        from_value(v)
            .expect_err("document must be refused")
            .problems
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect()
    }

    #[test]
    fn every_fixture_reads_into_the_typed_view() {
        for (name, text) in demo::FIXTURES {
            let (cr, _) = parse_document(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(name.starts_with(&cr.id));
        }
        let v = fixture("CR-1042");
        let cr = from_value(&v).unwrap();
        assert_eq!(cr.gate, Gate::Model);
        assert_eq!(cr.subject.from_version.as_deref(), Some("12"));
        assert_eq!(cr.metrics[2].better, Direction::Lower);
        assert_eq!(cr.versions.seed, Some(7));
        assert_eq!(
            cr.check("latency").map(|c| c.status),
            Some(CheckStatus::Pass)
        );
    }

    #[test]
    fn missing_fields_wrong_types_and_unknown_gates_are_all_reported_together() {
        let mut v = fixture("CR-1042");
        let obj = v.as_object_mut().unwrap();
        obj.remove("title");
        obj.insert("gate".into(), Value::String("modle".into()));
        obj["metrics"][1]["baseline"] = Value::String("0.6".into());
        obj["subject"]["environment"] = Value::String("production".into());
        let problems = problems_of(&v);
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.gate",
                "$.title",
                "$.subject.environment",
                "$.metrics[1].baseline"
            ]
        );
        assert!(
            problems[0]
                .1
                .contains("expected one of data, model, deployment, emergency")
        );
        assert!(problems[1].1.contains("missing required field"));
        assert!(
            problems[3]
                .1
                .contains("expected a finite number, found string \"0.6\"")
        );
    }

    #[test]
    fn non_finite_metrics_are_refused() {
        let mut v = fixture("CR-1045");
        v["metrics"][0]["candidate"] = Value::String("NaN".into());
        let problems = problems_of(&v);
        assert_eq!(problems[0].0, "$.metrics[0].candidate");
        assert!(problems[0].1.contains("NaN"));

        let text = serde_json::to_string(&fixture("CR-1045"))
            .unwrap()
            .replace("\"candidate\":0.845", "\"candidate\":NaN");
        let err = parse_document(text.as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .contains("NaN and Infinity are not valid JSON numbers"),
            "{err}"
        );

        let text = serde_json::to_string(&fixture("CR-1045"))
            .unwrap()
            .replace("\"candidate\":0.845", "\"candidate\":1e999");
        let err = parse_document(text.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn oversized_fields_and_documents_are_refused() {
        let mut v = fixture("CR-1045");
        v["summary"] = Value::String("x".repeat(8_001));
        v["metrics"] = Value::Array(vec![v["metrics"][0].clone(); MAX_LIST_LEN + 1]);
        let problems = problems_of(&v);
        assert_eq!(problems[0].0, "$.summary");
        assert!(problems[0].1.contains("at most 8000 characters"));
        assert_eq!(problems[1].0, "$.metrics");

        let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        let err = parse_document(&big).unwrap_err();
        assert!(err.to_string().contains("at most 1048576 bytes"));
    }

    #[test]
    fn hostile_ids_and_link_schemes_are_refused() {
        let mut v = fixture("CR-1045");
        v["id"] = Value::String("../../etc/passwd".into());
        v["artifacts"][0]["url"] = Value::String("file:///etc/passwd".into());
        v["requester"] = Value::String("jonas\u{1b}[2J".into());
        let problems = problems_of(&v);
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["$.id", "$.requester", "$.artifacts[0].url"]);
        assert!(!problems[1].1.contains('\u{1b}'));
    }

    #[test]
    fn duplicate_metric_names_and_check_ids_are_refused() {
        let mut v = fixture("CR-1042");
        v["metrics"][1]["name"] = Value::String("auc".into());
        v["checks"][2]["id"] = Value::String("performance".into());
        let problems = problems_of(&v);
        assert_eq!(problems[0].0, "$.metrics[1]");
        assert_eq!(problems[1].0, "$.checks[2]");
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = parse_document(b"{\n  \"id\": \"CR-1\",\n  oops\n}").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("$: line 3, column 3: invalid JSON"),
            "{msg}"
        );
        let err = parse_document(b"{\"id\": ").unwrap_err();
        assert!(err.to_string().contains("ends too early"));
    }

    #[test]
    fn a_first_release_may_omit_from_version() {
        let mut v = fixture("CR-1045");
        v["subject"].as_object_mut().unwrap().remove("from_version");
        let cr = from_value(&v).unwrap();
        assert_eq!(cr.subject.from_version, None);
    }
}
