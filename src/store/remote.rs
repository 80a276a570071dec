//! A store on a team server (`tollgate serve`), used through its JSON HTTP API.
//!
//! Requests have timeouts and are retried with exponential backoff on transient failures
//! (connection refused, timeouts, 502/503/504). Everything read is re-validated here:
//! documents through the CR validator, signed entries by `verify` as always. Writes are
//! re-checked by the server, which is the authority; a signed entry it refuses because the
//! log moved on is signed again against the new head.

use super::wire::{WireContext, WireCr, WireError, WireRevision, WireSignedEntry};
use super::{
    Appended, DecideError, DecisionBuilder, DecisionContext, DecisionSummary, EmergencyBuilder,
    EmergencyContext, EvidenceBuilder, Head, LogEntry, NewEntry, RevisionInfo, Store, StoreError,
    StoredCr, StoredRevision, Submission, SubmitOutcome,
};
use crate::audit::log::{DecisionRecord, EntryKind};
use crate::domain::decision::Decision;
use crate::domain::emergency::SubjectChange;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// How many times a transient failure is retried, and the first back-off.
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How many times an entry is signed again because the log moved on (with many writers
/// at once, each round only one wins; jittered back-off spreads the others out).
const RESIGN_ATTEMPTS: u32 = 200;

/// Sleeps a random time that grows with the number of lost races, up to 250 ms.
fn contention_backoff(attempt: u32) {
    use ssh_key::rand_core::{OsRng, RngCore};
    let ceiling = (5u64 << attempt.min(6)).min(250);
    std::thread::sleep(Duration::from_millis(OsRng.next_u64() % (ceiling + 1)));
}

/// A team server reached over HTTP(S).
pub struct RemoteStore {
    base: String,
    token: String,
    client: Client,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("RemoteStore")
            .field("base", &self.base)
            .finish()
    }
}

/// An error with its causes ("error sending request: ... : certificate not trusted").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

impl RemoteStore {
    /// A client for the server at `url` (e.g. `http://127.0.0.1:8080`) with a bearer token.
    pub fn connect(url: &str, token: &str) -> Result<RemoteStore, StoreError> {
        crate::tls::install_crypto_provider();
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(StoreError::Unreachable {
                url: base,
                detail: "expected an http:// or https:// URL".into(),
            });
        }
        let mut builder = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60));
        // A private CA (e.g. a self-signed server certificate): TOLLGATE_CA_CERT=ca.pem.
        if let Some(path) = std::env::var_os("TOLLGATE_CA_CERT").filter(|v| !v.is_empty()) {
            let pem = std::fs::read(&path).map_err(|e| StoreError::Unreachable {
                url: base.clone(),
                detail: format!(
                    "cannot read TOLLGATE_CA_CERT {}: {e}",
                    std::path::Path::new(&path).display()
                ),
            })?;
            let cert =
                reqwest::Certificate::from_pem(&pem).map_err(|e| StoreError::Unreachable {
                    url: base.clone(),
                    detail: format!("TOLLGATE_CA_CERT is not a PEM certificate: {e}"),
                })?;
            builder = builder.tls_certs_only([cert]);
        }
        let client = builder.build().map_err(|e| StoreError::Unreachable {
            url: base.clone(),
            detail: e.to_string(),
        })?;
        Ok(RemoteStore {
            base,
            token: token.to_string(),
            client,
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Unreachable {
            url: self.base.clone(),
            detail: detail.to_string(),
        }
    }

    /// What an entry on `cr_id` is built against, as the server has it now.
    fn decision_context(&self, cr_id: &str) -> Result<DecisionContext, DecideError> {
        let Some(ctx): Option<WireContext> =
            self.get_opt(&format!("/v1/change-requests/{}/context", urlencode(cr_id)))?
        else {
            return Err(DecideError::NotFound(cr_id.to_string()));
        };
        Ok(DecisionContext {
            head: ctx.head,
            current: ctx.current.into_stored(&self.base)?,
            decisions: to_decisions(&ctx.decisions)?,
            policy_head: ctx.policy_head,
        })
    }

    /// Sends a request, retrying transient failures with exponential backoff.
    fn send(
        &self,
        build: impl Fn(&Client) -> reqwest::blocking::RequestBuilder,
    ) -> Result<Response, StoreError> {
        let mut wait = FIRST_BACKOFF;
        let mut last = String::new();
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                std::thread::sleep(wait);
                wait *= 2;
            }
            match build(&self.client).bearer_auth(&self.token).send() {
                Ok(r) if transient(r.status()) => last = format!("HTTP {}", r.status()),
                // Over the token's rate: wait as long as the server says (bounded), then
                // try again.
                Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS && attempt < RETRIES => {
                    let secs = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(1)
                        .clamp(1, 10);
                    last = format!("HTTP 429, retry after {secs} s");
                    wait = Duration::from_secs(secs);
                }
                Ok(r) => return Ok(r),
                // Any transport failure is worth another try: every write the server takes
                // is idempotent (identical CRs are unchanged, entries dedup on content).
                Err(e) => last = chain(&e),
            }
        }
        Err(self.unreachable(format!("{last} (after {RETRIES} retries)")))
    }

    fn error(&self, r: Response) -> StoreError {
        let status = r.status().as_u16();
        let detail = match r.json::<WireError>() {
            Ok(e) => super::wire::describe(status, &e),
            Err(_) => format!("server answered HTTP {status}"),
        };
        StoreError::Remote { status, detail }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, StoreError> {
        let url = format!("{}{path}", self.base);
        let r = self.send(|c| c.get(&url))?;
        if !r.status().is_success() {
            return Err(self.error(r));
        }
        r.json()
            .map_err(|e| self.unreachable(format!("unreadable answer to GET {path}: {e}")))
    }

    fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, StoreError> {
        match self.get(path) {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::Remote { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The server's attestation of `cr_id`'s approval (signed with its own key).
    pub fn attestation(
        &self,
        cr_id: &str,
    ) -> Result<crate::audit::attestation::Envelope, StoreError> {
        self.get(&format!(
            "/v1/change-requests/{}/attestation",
            urlencode(cr_id)
        ))
    }

    /// Position and hash of the server's latest `policy-adopted` entry.
    fn policy_head(&self) -> Result<Head, StoreError> {
        let v: Value = self.get("/v1/policy")?;
        Ok(Head {
            seq: v["seq"].as_u64().unwrap_or(0),
            hash: v["hash"].as_str().map(str::to_string),
        })
    }

    /// Posts a signed entry (with the adoption it makes due, if any); `Ok(Err(head))` when
    /// the log moved on and it must be re-signed.
    fn post_entry<T: DeserializeOwned>(
        &self,
        path: &str,
        kind: EntryKind,
        entry: &NewEntry,
        adoption: Option<&NewEntry>,
    ) -> Result<Result<T, Head>, DecideError> {
        let url = format!("{}{path}", self.base);
        let signed = |kind: EntryKind, e: &NewEntry| WireSignedEntry {
            kind: kind.as_str().into(),
            body: e.body.clone(),
            signature: e.signature.clone(),
            principal: e.principal.clone(),
            adoption: None,
        };
        let mut wire = signed(kind, entry);
        wire.adoption = adoption.map(|a| Box::new(signed(EntryKind::PolicyAdopted, a)));
        let r = self.send(|c| c.post(&url).json(&wire))?;
        let status = r.status();
        if status.is_success() {
            return r.json().map(Ok).map_err(|e| {
                DecideError::Store(self.unreachable(format!("unreadable answer: {e}")))
            });
        }
        let code = status.as_u16();
        let e: WireError = r
            .json()
            .map_err(|_| DecideError::Remote(format!("server answered HTTP {code}")))?;
        match (code, e.error.as_str(), e.head.clone()) {
            (409, "conflict", Some(head)) => Ok(Err(head)),
            (409, "stale", _) => Err(DecideError::Remote(super::wire::describe(code, &e))),
            (404, _, _) => Err(DecideError::NotFound(e.message)),
            _ => Err(DecideError::Remote(super::wire::describe(code, &e))),
        }
    }
}

fn to_decisions(entries: &[LogEntry]) -> Result<Vec<Decision>, StoreError> {
    entries
        .iter()
        .map(|e| {
            DecisionRecord::parse(&e.body)
                .and_then(|r| r.to_decision())
                .map_err(|detail| StoreError::Corrupt {
                    path: "server".into(),
                    id: format!("log entry {}", e.seq),
                    revision: 0,
                    detail: detail.to_string(),
                })
        })
        .collect()
}

impl Store for RemoteStore {
    fn submit(
        &self,
        batch: &[Submission],
        _at: DateTime<Utc>,
    ) -> Result<Vec<SubmitOutcome>, StoreError> {
        let url = format!("{}/v1/change-requests", self.base);
        let docs: Vec<&Value> = batch.iter().map(|s| &s.document).collect();
        let r = self.send(|c| c.post(&url).json(&docs))?;
        if !r.status().is_success() {
            return Err(self.error(r));
        }
        r.json().map_err(|e| self.unreachable(e))
    }

    fn list_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredCr>, StoreError> {
        let after = after
            .map(|a| format!("&after={}", urlencode(a)))
            .unwrap_or_default();
        let v: Value = self.get(&format!("/v1/change-requests?limit={limit}{after}"))?;
        let items: Vec<WireCr> =
            serde_json::from_value(v["items"].clone()).map_err(|e| self.unreachable(e))?;
        items
            .into_iter()
            .map(|c| c.into_stored(&self.base))
            .collect()
    }

    fn get(&self, id: &str) -> Result<Option<StoredCr>, StoreError> {
        self.get_opt::<WireCr>(&format!("/v1/change-requests/{}", urlencode(id)))?
            .map(|c| c.into_stored(&self.base))
            .transpose()
    }

    fn revision(&self, id: &str, revision: u32) -> Result<Option<StoredRevision>, StoreError> {
        self.get_opt::<WireRevision>(&format!(
            "/v1/change-requests/{}/revisions/{revision}",
            urlencode(id)
        ))?
        .map(|r| r.into_stored(&self.base))
        .transpose()
    }

    fn revisions(&self, id: &str) -> Result<Vec<RevisionInfo>, StoreError> {
        self.get(&format!("/v1/change-requests/{}/revisions", urlencode(id)))
    }

    fn decisions(&self, cr_id: &str) -> Result<Vec<Decision>, StoreError> {
        to_decisions(&self.decision_entries(cr_id)?)
    }

    fn all_decisions(&self) -> Result<HashMap<String, Vec<Decision>>, StoreError> {
        self.get("/v1/decisions")
    }

    fn decide(
        &self,
        cr_id: &str,
        build: &mut DecisionBuilder<'_>,
    ) -> Result<Appended, DecideError> {
        for attempt in 0..RESIGN_ATTEMPTS {
            if attempt > 0 {
                contention_backoff(attempt);
            }
            let context = self.decision_context(cr_id)?;
            let entries = build(&context)?;
            match self.post_entry(
                "/v1/decisions",
                EntryKind::Decision,
                &entries.decision,
                entries.adoption.as_ref(),
            )? {
                Ok(done) => return Ok(done),
                Err(_moved) => continue,
            }
        }
        Err(DecideError::Remote(format!(
            "the audit log kept moving; gave up after {RESIGN_ATTEMPTS} attempts — try again"
        )))
    }

    fn emergency_entries(&self) -> Result<Vec<LogEntry>, StoreError> {
        self.get("/v1/emergency")
    }

    fn subject_changes(&self, after: u64) -> Result<Vec<SubjectChange>, StoreError> {
        self.get(&format!("/v1/emergency/subject-changes?after={after}"))
    }

    fn append_emergency(&self, build: &mut EmergencyBuilder<'_>) -> Result<LogEntry, DecideError> {
        for attempt in 0..RESIGN_ATTEMPTS {
            if attempt > 0 {
                contention_backoff(attempt);
            }
            let existing = self.emergency_entries()?;
            let changes = match existing.first() {
                Some(first) => self.subject_changes(first.seq)?,
                None => Vec::new(),
            };
            let context = EmergencyContext {
                head: self.recorded_head()?,
                existing,
                changes,
                policy_head: self.policy_head()?,
            };
            let (kind, entry) = build(&context)?;
            match self.post_entry("/v1/emergency", kind, &entry, None)? {
                Ok(done) => return Ok(done),
                Err(_moved) => continue,
            }
        }
        Err(DecideError::Remote(format!(
            "the audit log kept moving; gave up after {RESIGN_ATTEMPTS} attempts — try again"
        )))
    }

    fn append_evidence(
        &self,
        cr_id: &str,
        build: &mut EvidenceBuilder<'_>,
    ) -> Result<LogEntry, DecideError> {
        for attempt in 0..RESIGN_ATTEMPTS {
            if attempt > 0 {
                contention_backoff(attempt);
            }
            let context = self.decision_context(cr_id)?;
            let entry = build(&context)?;
            match self.post_entry("/v1/evidence", EntryKind::Evidence, &entry, None)? {
                Ok(done) => return Ok(done),
                Err(_moved) => continue,
            }
        }
        Err(DecideError::Remote(format!(
            "the audit log kept moving; gave up after {RESIGN_ATTEMPTS} attempts — try again"
        )))
    }

    fn decision_summaries(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DecisionSummary>, StoreError> {
        self.get(&format!(
            "/v1/decision-summaries?after={after}&limit={limit}"
        ))
    }

    fn submission_times(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        self.get("/v1/submission-times")
    }

    fn kpi_readings(&self, cr_id: &str) -> Result<Vec<LogEntry>, StoreError> {
        self.get(&format!(
            "/v1/change-requests/{}/kpi-readings",
            urlencode(cr_id)
        ))
    }

    fn decision_entries(&self, cr_id: &str) -> Result<Vec<LogEntry>, StoreError> {
        self.get(&format!(
            "/v1/change-requests/{}/decisions",
            urlencode(cr_id)
        ))
    }

    fn log_entries(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let v: Value = self.get(&format!("/v1/log?after={after}&limit={limit}"))?;
        serde_json::from_value(v["entries"].clone()).map_err(|e| self.unreachable(e))
    }

    fn recorded_head(&self) -> Result<Head, StoreError> {
        self.get("/v1/head")
    }

    fn reachable(&self) -> bool {
        self.client
            .get(format!("{}/v1/health", self.base))
            .timeout(Duration::from_secs(1))
            .send()
            .is_ok_and(|r| r.status().is_success())
    }

    fn head_listener(&self) -> Result<Option<Box<dyn super::HeadListener>>, StoreError> {
        let url = format!("{}/v1/watch", self.base);
        // One attempt: the caller connects again when it wants to. Each read waits at
        // most the client's timeout, far longer than the server's keep-alive interval.
        let r = self
            .client
            .get(&url)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .map_err(|e| self.unreachable(chain(&e)))?;
        if r.status() == StatusCode::NOT_FOUND {
            // A server from before `/v1/watch`: the reader looks now and then instead.
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(self.error(r));
        }
        Ok(Some(Box::new(super::sse::HeadStream::start(r, url)?)))
    }

    fn requesters(&self) -> Result<HashMap<(String, String), String>, StoreError> {
        let rows: Vec<(String, String, String)> = self.get("/v1/requesters")?;
        Ok(rows
            .into_iter()
            .map(|(cr, d, who)| ((cr, d), who))
            .collect())
    }

    fn policy_entries(&self, after: u64) -> Result<Vec<LogEntry>, StoreError> {
        self.get(&format!("/v1/policy/history?after={after}"))
    }
}

/// Percent-encodes a path or query segment (ids are already restricted to a safe
/// alphabet; this keeps anything else from changing the URL's meaning).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
