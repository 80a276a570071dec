//! The team server: one store shared over a small JSON HTTP API (`docs/openapi.json`).
//!
//! Every request but `/v1/health` carries a bearer token mapped to a principal. The
//! server trusts no client: each signed entry's signature is re-verified against the
//! policy's keyring, the signer must be the token's principal, and every policy rule is
//! re-applied inside the store's write transaction before anything is appended.
//! Appends are idempotent on the entry's content (its body without `seq` and `prev`), so
//! a client that retries after a lost response never records a decision twice.

pub mod tokens;

use crate::audit::canonical::{sha256_digest, to_canonical_string};
use crate::audit::keys::Keyring;
use crate::audit::log::{DecisionRecord, EntryKind, LogEntry};
use crate::domain::change_request::parse_document;
use crate::domain::policy::{Policy, parse_policy};
use crate::domain::rules::{Proposal, Refusal, check_decision};
use crate::domain::status::evaluate;
use crate::store::local::LocalStore;
use crate::store::wire::{WireContext, WireCr, WireError, WireRevision, WireSignedEntry};
use crate::store::{DecideError, NewEntry, Store, StoreError, Submission};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

/// Largest request body accepted, in bytes (a batch of CRs; one CR is at most 1 MiB).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Every route, as `METHOD path`; a test compares it with `docs/openapi.json`.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/health"),
    ("get", "/v1/policy"),
    ("get", "/v1/head"),
    ("get", "/v1/change-requests"),
    ("post", "/v1/change-requests"),
    ("get", "/v1/change-requests/{id}"),
    ("get", "/v1/change-requests/{id}/revisions"),
    ("get", "/v1/change-requests/{id}/revisions/{revision}"),
    ("get", "/v1/change-requests/{id}/context"),
    ("get", "/v1/change-requests/{id}/decisions"),
    ("get", "/v1/queue"),
    ("post", "/v1/decisions"),
    ("get", "/v1/decisions"),
    ("get", "/v1/decision-summaries"),
    ("get", "/v1/submission-times"),
    ("get", "/v1/requesters"),
    ("get", "/v1/log"),
    ("get", "/v1/emergency"),
    ("post", "/v1/emergency"),
];

/// What the server needs.
pub struct ServerState {
    store: Arc<LocalStore>,
    policy: Policy,
    policy_text: String,
    keyring: Keyring,
    tokens: tokens::Tokens,
    access_log: bool,
}

impl ServerState {
    /// Opens the store, reads the policy beside it and the tokens file.
    pub fn load(
        store: PathBuf,
        policy: PathBuf,
        tokens_file: PathBuf,
    ) -> Result<ServerState, String> {
        let store = Arc::new(LocalStore::open(&store).map_err(|e| e.to_string())?);
        let policy_text = std::fs::read_to_string(&policy)
            .map_err(|e| format!("cannot read the policy {}: {e}", policy.display()))?;
        let (policy_parsed, _) = parse_policy(&policy_text).map_err(|r| {
            format!(
                "the policy {} is invalid; run `tollgate policy check`:\n{r}",
                policy.display()
            )
        })?;
        let keyring = Keyring::from_policy(&policy_parsed)?;
        let tokens = tokens::Tokens::load(&tokens_file)?;
        Ok(ServerState {
            store,
            policy: policy_parsed,
            policy_text,
            keyring,
            tokens,
            access_log: false,
        })
    }
}

type Shared = Arc<ServerState>;

/// An API error: status plus JSON body.
struct ApiError(StatusCode, Box<WireError>);

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError(
            status,
            Box::new(WireError {
                error: code.into(),
                message: message.into(),
                rule: None,
                remedy: None,
                head: None,
                problems: vec![],
            }),
        )
    }

    fn refused(r: Refusal) -> ApiError {
        let mut e = ApiError::new(StatusCode::FORBIDDEN, "forbidden", r.message);
        e.1.rule = Some(r.rule.into());
        e.1.remedy = Some(r.remedy);
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(*self.1)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl From<DecideError> for ApiError {
    fn from(e: DecideError) -> Self {
        match e {
            DecideError::Refused(r) => ApiError::refused(r),
            DecideError::NotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no change request {id}"),
            ),
            DecideError::Stale { .. } => {
                ApiError::new(StatusCode::CONFLICT, "stale", e.to_string())
            }
            DecideError::HeadMoved { head } => {
                let mut err = ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "the audit log moved on; sign again against this head",
                );
                err.1.head = Some(head);
                err
            }
            DecideError::Signing(m) | DecideError::Chain(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m)
            }
            DecideError::Remote(m) => ApiError::new(StatusCode::BAD_GATEWAY, "internal", m),
            DecideError::Store(s) => s.into(),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

/// The principal behind the request's bearer token.
fn principal(state: &ServerState, headers: &HeaderMap) -> ApiResult<String> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <token> (tollgate token add PRINCIPAL)",
            )
        })?;
    state
        .tokens
        .principal(token)
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown or revoked token",
            )
        })
}

async fn read_body(body: Body) -> ApiResult<axum::body::Bytes> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes; submit CRs in smaller batches"),
        )
    })
}

fn etag(headers: &HeaderMap, head: &crate::store::Head) -> (HeaderValue, bool) {
    let tag = format!("\"{}\"", head.hash.as_deref().unwrap_or("empty"));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == tag);
    (
        HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"?\"")),
        matches,
    )
}

/// Builds the router over `state`.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/policy", get(policy))
        .route("/v1/head", get(head))
        .route("/v1/change-requests", get(list).post(submit))
        .route("/v1/change-requests/{id}", get(get_cr))
        .route("/v1/change-requests/{id}/revisions", get(revisions))
        .route(
            "/v1/change-requests/{id}/revisions/{revision}",
            get(revision),
        )
        .route("/v1/change-requests/{id}/context", get(context))
        .route("/v1/change-requests/{id}/decisions", get(cr_decisions))
        .route("/v1/queue", get(queue))
        .route("/v1/decisions", get(all_decisions).post(post_decision))
        .route("/v1/decision-summaries", get(decision_summaries))
        .route("/v1/submission-times", get(submission_times))
        .route("/v1/requesters", get(requesters))
        .route("/v1/log", get(log))
        .route("/v1/emergency", get(emergency).post(post_emergency))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "no such endpoint; see docs/openapi.json",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access_log,
        ))
        .with_state(state)
}

/// One line per request on stderr for the operator: time, method, path, status, the
/// principal the token maps to (never the token), and the time taken.
async fn access_log(
    State(s): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !s.access_log {
        return next.run(request).await;
    }
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let who = principal(&s, request.headers()).unwrap_or_else(|_| "-".into());
    let response = next.run(request).await;
    eprintln!(
        "{} {method} {} {} {who} {:.1}ms",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        crate::domain::text::sanitize(&path),
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}

async fn health(State(s): State<Shared>) -> ApiResult<impl IntoResponse> {
    let head = blocking({
        let s = s.clone();
        move || Ok(s.store.recorded_head()?)
    })
    .await?;
    Ok(axum::Json(json!({ "status": "ok", "head": head })))
}

async fn policy(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    Ok(axum::Json(
        json!({ "text": s.policy_text, "digest": sha256_digest(s.policy_text.as_bytes()) }),
    ))
}

async fn head(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    let head = blocking(move || Ok(s.store.recorded_head()?)).await?;
    Ok(axum::Json(head))
}

#[derive(Deserialize)]
struct Page {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<Page>,
) -> ApiResult<Response> {
    principal(&s, &headers)?;
    let limit = p.limit.unwrap_or(1_000).clamp(1, 10_000);
    blocking(move || {
        let head = s.store.recorded_head()?;
        let (tag, unchanged) = etag(&headers, &head);
        if unchanged {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
        }
        let page = s.store.list_page(p.after.as_deref(), limit)?;
        let items: Vec<WireCr> = page.iter().map(WireCr::from).collect();
        Ok((
            [(header::ETAG, tag)],
            axum::Json(json!({ "items": items, "head": head })),
        )
            .into_response())
    })
    .await
}

#[derive(Deserialize)]
struct QueueQuery {
    status: Option<String>,
    gate: Option<String>,
    risk: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// The evaluated queue (the same rows as `tollgate list --json`), filtered and paged.
async fn queue(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<QueueQuery>,
) -> ApiResult<Response> {
    principal(&s, &headers)?;
    let limit = q.limit.unwrap_or(1_000).clamp(1, 10_000);
    blocking(move || {
        let head = s.store.recorded_head()?;
        let (tag, unchanged) = etag(&headers, &head);
        if unchanged {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
        }
        let decisions = s.store.all_decisions()?;
        let mut rows = Vec::new();
        let mut after = q.after.clone();
        let mut next = None;
        'pages: loop {
            // Pages sized to the answer: a first screenful reads a screenful, not 5,000 CRs.
            let page = s.store.list_page(after.as_deref(), limit.clamp(64, 5_000))?;

            let Some(last) = page.last() else { break };
            after = Some(last.current.cr.id.clone());
            for cr in &page {
                let c = &cr.current.cr;
                let mine = decisions.get(&c.id).map(Vec::as_slice).unwrap_or(&[]);
                let e = evaluate(c, &cr.current.digest, mine, &s.policy);
                let keep = q.status.as_deref().is_none_or(|x| e.status.as_str() == x)
                    && q.gate.as_deref().is_none_or(|x| c.gate.as_str() == x)
                    && q.risk.as_deref().is_none_or(|x| e.risk.effective.as_str() == x);
                if keep {
                    rows.push(json!({
                        "id": c.id, "revision": cr.current.revision, "digest": cr.current.digest,
                        "gate": c.gate, "title": c.title, "subject": c.subject, "requester": c.requester,
                        "created_at": c.created_at, "status": e.status, "risk": e.risk,
                        "signoffs": { "required": e.signoffs.required(), "obtained": e.signoffs.obtained() },
                        "checks": e.checks, "blocked": e.blocked, "awaiting_evidence": e.awaiting_evidence,
                    }));
                    if rows.len() == limit {
                        next = Some(c.id.clone());
                        break 'pages;
                    }
                }
            }
        }
        Ok(([(header::ETAG, tag)], axum::Json(json!({ "items": rows, "next_after": next, "head": head }))).into_response())
    })
    .await
}

async fn submit(State(s): State<Shared>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    principal(&s, &headers)?;
    let bytes = read_body(body).await?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let docs = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut problems = Vec::new();
    let mut batch: Vec<Submission> = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        match parse_document(doc.to_string().as_bytes()) {
            Ok((cr, document)) => {
                if batch.iter().any(|b| b.cr.id == cr.id) {
                    problems.push(format!("[{i}] $.id: {} appears twice in the batch", cr.id));
                }
                batch.push(Submission { cr, document });
            }
            Err(e) => problems.extend(e.problems.iter().map(|p| format!("[{i}] {p}"))),
        }
    }
    if !problems.is_empty() {
        let mut err = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "nothing was stored: fix the problems and submit the batch again",
        );
        err.1.problems = problems;
        return Err(err);
    }
    let outcomes = blocking(move || {
        let now = crate::config::now().unwrap_or_else(|_| chrono::Utc::now());
        Ok(s.store.submit(&batch, now)?)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(outcomes)).into_response())
}

async fn get_cr(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    blocking(move || {
        let cr = s.store.get(&id)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no change request {id}"),
            )
        })?;
        Ok(axum::Json(WireCr::from(&cr)))
    })
    .await
}

async fn revisions(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    blocking(move || Ok(axum::Json(s.store.revisions(&id)?))).await
}

async fn revision(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, u32)>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    blocking(move || {
        let rev = s.store.revision(&id, n)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("{id} has no revision {n}"),
            )
        })?;
        Ok(axum::Json(WireRevision::from(&rev)))
    })
    .await
}

async fn context(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    blocking(move || {
        let head = s.store.recorded_head()?;
        let cr = s.store.get(&id)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no change request {id}"),
            )
        })?;
        let entries = s.store.decision_entries(&id)?;
        Ok(axum::Json(WireContext {
            head,
            current: (&cr.current).into(),
            decisions: entries,
        }))
    })
    .await
}

async fn cr_decisions(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    blocking(move || Ok(axum::Json(s.store.decision_entries(&id)?))).await
}

#[derive(Deserialize)]
struct SeqPage {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn all_decisions(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    blocking(move || Ok(axum::Json(s.store.all_decisions()?))).await
}

async fn decision_summaries(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<SeqPage>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    blocking(move || {
        Ok(axum::Json(s.store.decision_summaries(
            p.after.unwrap_or(0),
            p.limit.unwrap_or(10_000).clamp(1, 100_000),
        )?))
    })
    .await
}

async fn submission_times(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    blocking(move || Ok(axum::Json(s.store.submission_times()?))).await
}

async fn requesters(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    blocking(move || {
        let rows: Vec<(String, String, String)> = s
            .store
            .requesters()?
            .into_iter()
            .map(|((cr, digest), who)| (cr, digest, who))
            .collect();
        Ok(axum::Json(rows))
    })
    .await
}

async fn log(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<SeqPage>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    blocking(move || {
        let entries = s.store.log_entries(
            p.after.unwrap_or(0),
            p.limit.unwrap_or(10_000).clamp(1, 100_000),
        )?;
        let head = s.store.recorded_head()?;
        Ok(axum::Json(json!({ "entries": entries, "head": head })))
    })
    .await
}

async fn emergency(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers)?;
    blocking(move || Ok(axum::Json(s.store.emergency_entries()?))).await
}

/// The body without its chain position: what makes two deliveries "the same entry".
pub fn content_digest(body: &str) -> Option<String> {
    let mut v: Value = serde_json::from_str(body).ok()?;
    let obj = v.as_object_mut()?;
    obj.remove("seq");
    obj.remove("prev");
    Some(sha256_digest(to_canonical_string(&v).as_bytes()))
}

fn find_duplicate<'a>(existing: &'a [LogEntry], body: &str) -> Option<&'a LogEntry> {
    let want = content_digest(body)?;
    existing
        .iter()
        .find(|e| content_digest(&e.body).as_deref() == Some(want.as_str()))
}

/// Checks what every signed entry must satisfy before any rule: the signer is the token's
/// principal and the signature verifies against the policy's keyring.
fn check_signed(s: &ServerState, who: &str, entry: &WireSignedEntry) -> ApiResult<()> {
    if entry.principal != who {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this token belongs to {who}; it cannot deliver entries signed by {}",
                entry.principal
            ),
        ));
    }
    let body: Value = serde_json::from_str(&entry.body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("body is not JSON: {e}"),
        )
    })?;
    if to_canonical_string(&body) != entry.body
        || body["principal"].as_str() != Some(who)
        || body["type"].as_str() != Some(entry.kind.as_str())
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "the body must be canonical JSON naming the same kind and principal as the request",
        ));
    }
    let fingerprint = s
        .keyring
        .verify(who, entry.body.as_bytes(), &entry.signature)
        .map_err(|e| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("signature refused: {e}"),
            )
        })?;
    if body["key_fingerprint"].as_str() != Some(fingerprint.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the record names another key than the one that signed it",
        ));
    }
    Ok(())
}

fn parse_entry(bytes: &[u8]) -> ApiResult<WireSignedEntry> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("expected {{kind, body, signature, principal}}: {e}"),
        )
    })
}

async fn post_decision(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let who = principal(&s, &headers)?;
    let bytes = read_body(body).await?;
    let entry = parse_entry(&bytes)?;
    if entry.kind != EntryKind::Decision.as_str() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "this endpoint takes decisions; emergencies go to /v1/emergency",
        ));
    }
    check_signed(&s, &who, &entry)?;
    let record = DecisionRecord::parse(&entry.body)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e))?;
    blocking(move || {
        // Idempotent: the same decision delivered again (e.g. from an outbox, or a retry
        // after a lost response) returns the entry already recorded.
        let existing = s.store.decision_entries(&record.cr_id)?;
        if let Some(done) = find_duplicate(&existing, &entry.body) {
            return Ok((StatusCode::OK, axum::Json(done.clone())).into_response());
        }
        let principal = s.policy.principal(&who).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{who} is not a principal in the policy"),
            )
        })?;
        let appended = s.store.decide(&record.cr_id, &mut |ctx| {
            if record.seq != ctx.head.seq + 1 || record.prev != ctx.head.hash {
                return Err(DecideError::HeadMoved {
                    head: ctx.head.clone(),
                });
            }
            if record.cr_digest != ctx.current.digest {
                return Err(DecideError::Stale {
                    id: record.cr_id.clone(),
                    seen: record.cr_digest.clone(),
                    revision: ctx.current.revision,
                    current: ctx.current.digest.clone(),
                });
            }
            let decision = record.to_decision().map_err(DecideError::Chain)?;
            let eval = evaluate(
                &ctx.current.cr,
                &ctx.current.digest,
                &ctx.decisions,
                &s.policy,
            );
            let proposal = Proposal {
                principal: &principal,
                role: &record.role,
                verdict: decision.verdict,
                rationale: &record.rationale,
                ticks: &decision.ticks,
            };
            check_decision(&ctx.current.cr, &eval, &s.policy, &proposal)
                .map_err(DecideError::Refused)?;
            Ok(NewEntry {
                body: entry.body.clone(),
                signature: entry.signature.clone(),
                principal: who.clone(),
            })
        })?;
        Ok((StatusCode::CREATED, axum::Json(appended)).into_response())
    })
    .await
}

async fn post_emergency(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let who = principal(&s, &headers)?;
    let bytes = read_body(body).await?;
    let entry = parse_entry(&bytes)?;
    let kind = EntryKind::parse(&entry.kind)
        .filter(|k| EntryKind::EMERGENCY.contains(k))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("{:?} is not an emergency entry kind", entry.kind),
            )
        })?;
    check_signed(&s, &who, &entry)?;
    blocking(move || {
        let existing = s.store.emergency_entries()?;
        if let Some(done) = find_duplicate(&existing, &entry.body) {
            return Ok((StatusCode::OK, axum::Json(done.clone())).into_response());
        }
        let principal = s.policy.principal(&who).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{who} is not a principal in the policy"),
            )
        })?;
        let body: Value = serde_json::from_str(&entry.body).unwrap_or(Value::Null);
        let appended = s.store.append_emergency(&mut |head, _| {
            if body["seq"].as_u64() != Some(head.seq + 1)
                || body["prev"].as_str() != head.hash.as_deref()
            {
                return Err(DecideError::HeadMoved { head: head.clone() });
            }
            let allowed = match kind {
                EntryKind::PostIncidentReview => {
                    crate::domain::emergency::check_reviewer(&s.policy, &principal)
                }
                _ => crate::domain::emergency::check_on_call(&s.policy, &principal),
            };
            allowed.map_err(DecideError::Refused)?;
            Ok((
                kind,
                NewEntry {
                    body: entry.body.clone(),
                    signature: entry.signature.clone(),
                    principal: who.clone(),
                },
            ))
        })?;
        Ok((StatusCode::CREATED, axum::Json(appended)).into_response())
    })
    .await
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on, e.g. `127.0.0.1:8080` (port 0 picks a free one).
    pub listen: String,
    /// Store path.
    pub store: PathBuf,
    /// Policy path.
    pub policy: PathBuf,
    /// Tokens file.
    pub tokens: PathBuf,
    /// TLS certificate and key (PEM), for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Write an access log line per request to stderr.
    pub access_log: bool,
}

/// Serves until the process is stopped; `ready` receives the bound address.
pub async fn serve(
    opts: ServeOptions,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), String> {
    let mut state =
        ServerState::load(opts.store.clone(), opts.policy.clone(), opts.tokens.clone())?;
    state.access_log = opts.access_log;
    let state = Arc::new(state);
    let app = router(state);
    let addr: std::net::SocketAddr = opts.listen.parse().map_err(|e| {
        format!(
            "--listen {:?}: expected an address such as 127.0.0.1:8080 ({e})",
            opts.listen
        )
    })?;
    match opts.tls {
        None => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let bound = listener.local_addr().map_err(|e| e.to_string())?;
            ready(bound);
            axum::serve(listener, app)
                .await
                .map_err(|e| format!("server stopped: {e}"))
        }
        Some((cert, key)) => {
            crate::tls::install_crypto_provider();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .map_err(|e| {
                    format!(
                        "cannot load TLS certificate {} / key {}: {e}",
                        cert.display(),
                        key.display()
                    )
                })?;
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let bound = listener.local_addr().map_err(|e| e.to_string())?;
            ready(bound);
            axum_server::from_tcp_rustls(listener, config)
                .map_err(|e| format!("cannot serve on {addr}: {e}"))?
                .serve(app.into_make_service())
                .await
                .map_err(|e| format!("server stopped: {e}"))
        }
    }
}

/// Starts the server on a thread of its own (a two-worker runtime) and returns once it
/// listens: for tests, benchmarks and tools that need a real server in-process.
pub fn start_in_background(opts: ServeOptions) -> Result<std::net::SocketAddr, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = tx.clone();
    std::thread::Builder::new()
        .name("tollgate-server".into())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the async runtime: {e}"))
                .and_then(|rt| {
                    rt.block_on(serve(opts, move |addr| {
                        let _ = tx.send(Ok(addr));
                    }))
                });
            if let Err(e) = outcome {
                let _ = failed.send(Err(e));
            }
        })
        .map_err(|e| format!("cannot start the server thread: {e}"))?;
    rx.recv()
        .map_err(|_| "the server stopped before it listened".to_string())?
}

/// Maps a wire error back to what the client should do.
pub fn describe(status: u16, e: &WireError) -> String {
    let mut text = format!("server refused ({status} {}): {}", e.error, e.message);
    if let Some(rule) = &e.rule {
        text.push_str(&format!(" [{rule}]"));
    }
    if let Some(remedy) = &e.remedy {
        text.push_str(&format!("; {remedy}"));
    }
    for p in &e.problems {
        text.push_str(&format!("\n  {p}"));
    }
    text
}
