//! The team server: one store shared over a small JSON HTTP API (`docs/openapi.json`).
//!
//! Every request but `/v1/health` carries a bearer token mapped to a principal. The
//! server trusts no client: each signed entry's signature is re-verified against the
//! keyring of the policy in force (the latest `policy-adopted` entry of its log, never the
//! file beside it), the signer must be the token's principal, and every policy rule is
//! re-applied inside the store's write transaction before anything is appended. A policy
//! adoption a client signs with the approval completing a policy change is rebuilt by the
//! server and must match it field for field.
//! Appends are idempotent on the entry's content (its body without `seq` and `prev`), so
//! a client that retries after a lost response never records a decision twice.

mod answers;
pub mod events;
mod guard;
pub mod limits;
pub mod tokens;
mod watch;

use crate::audit::canonical::{sha256_digest, to_canonical_string};
use crate::audit::keys::{Keyring, SignatureError};
use crate::audit::log::{DecisionRecord, EntryKind, LogEntry};
use crate::audit::policy_log::{AdoptionRecord, extend_book};
use crate::audit::record_rules::RevisionFacts;
use crate::domain::change_request::{Gate, parse_document};
use crate::domain::policy_book::PolicyBook;
use crate::domain::rules::{Proposal, Refusal, check_decision};
use crate::domain::status::evaluate_in;
use crate::store::local::LocalStore;
use crate::store::pg::PgStore;
use crate::store::wire::{WireContext, WireCr, WireError, WireRevision, WireSignedEntry};
use crate::store::{
    Appended, DecideError, DecisionEntries, NewEntry, Store, StoreError, Submission,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

/// Largest request body accepted, in bytes (a batch of CRs; one CR is at most 1 MiB).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The policy in force as the server last read it from its log, with its keys.
struct InForce {
    book: Arc<PolicyBook>,
    keyring: Arc<Keyring>,
}

/// What the server needs.
pub struct ServerState {
    store: Arc<dyn Store>,
    /// The policy history, kept up with the log (another process may adopt too).
    in_force: std::sync::RwLock<Arc<InForce>>,
    /// The file beside an SQLite store: rewritten when a policy is adopted, and read only
    /// to explain a refusal (a key listed there but not in force), never to grant
    /// anything. A database-backed server has none: replicas share only the database.
    policy_file: Option<PathBuf>,
    tokens: tokens::TokenSource,
    /// Recent queue answers, reused while the log head is unchanged.
    answers: answers::Answers,
    /// Queue rows read so far, used again while the store names the same key for them.
    rows: crate::workflow::row_memory::RowMemory,
    access_log: bool,
    /// Per-token request rate.
    limiter: limits::RateLimiter,
    /// How long a request body may take to arrive.
    body_timeout: std::time::Duration,
    /// How often an idle `/v1/watch` stream sends a keep-alive (well inside the idle
    /// timeout, which would otherwise close it).
    keep_alive: std::time::Duration,
    /// The server's own principal and key (`serve --server-key`): signs the submissions
    /// it relays. `None`: they are recorded unsigned.
    server_key: Option<Arc<crate::store::EntrySigner>>,
    /// MLflow's webhook deliveries, when configured.
    mlflow: Option<Arc<MlflowReceiver>>,
    /// The log head for `/v1/watch` streams.
    heads: Arc<watch::Heads>,
}

/// What the MLflow webhook endpoint needs: the registry to read a version from, how
/// versions are marked, and the secret deliveries are signed with (the deliveries seen
/// are in the store, shared by the replicas).
pub struct MlflowReceiver {
    client: crate::sources::mlflow::Client,
    convention: crate::sources::mlflow::Convention,
    secret: String,
}

impl ServerState {
    /// Opens the store, reads the policy in force from its log, and the tokens: from the
    /// file beside an SQLite store, or from the database every replica shares.
    pub fn load(opts: &ServeOptions) -> Result<ServerState, ServeError> {
        let (store, policy_file, tokens, location): (Arc<dyn Store>, _, _, PathBuf) =
            match &opts.database {
                Some(url) => {
                    let db = Arc::new(PgStore::open(url)?);
                    let location = db.location().to_path_buf();
                    (
                        db.clone(),
                        None,
                        tokens::TokenSource::Database(db),
                        location,
                    )
                }
                None => (
                    {
                        let local = LocalStore::open(&opts.store)?;
                        // Address space, not memory: pages are read in as answers need them.
                        local.map_into_memory(1 << 30)?;
                        Arc::new(local)
                    },
                    Some(opts.policy.clone()),
                    tokens::TokenSource::File(tokens::LiveTokens::open(&opts.tokens)?),
                    opts.store.clone(),
                ),
            };
        let entries = store.policy_entries(0)?;
        let book = extend_book(None, &entries)?.ok_or(ServeError::NoPolicy(location))?;
        let keyring = Keyring::from_policy(book.policy())?;
        Ok(ServerState {
            store,
            in_force: std::sync::RwLock::new(Arc::new(InForce {
                book: Arc::new(book),
                keyring: Arc::new(keyring),
            })),
            policy_file,
            tokens,
            answers: Default::default(),
            rows: Default::default(),
            access_log: false,
            limiter: limits::RateLimiter::new(
                limits::Limits::default().rate_per_sec,
                limits::Limits::default().burst,
            ),
            body_timeout: limits::Limits::default().body_timeout,
            keep_alive: watch::KEEP_ALIVE,
            server_key: None,
            mlflow: None,
            heads: Default::default(),
        })
    }

    /// Loads the server's key from `file` and finds the principal of the policy in force
    /// it belongs to, which must hold the `server` role.
    fn server_signer(
        &self,
        file: &std::path::Path,
    ) -> Result<crate::store::EntrySigner, ServeError> {
        let key = crate::audit::keys::Signer::load(file, || {
            Err("the server key must not have a passphrase (it is read unattended)".into())
        })
        .map_err(|source| ServeError::ServerKey {
            path: file.to_path_buf(),
            source,
        })?;
        // Just loaded: the policy in force is the cached one.
        let in_force = self
            .in_force
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let policy = in_force.book.policy();
        let owner = in_force
            .keyring
            .principal_of(key.public_key())
            .and_then(|id| policy.principal(id))
            .ok_or_else(|| ServeError::ServerKeyOwner {
                path: file.to_path_buf(),
                fingerprint: key.fingerprint().to_string(),
            })?;
        if !owner.has_role(crate::domain::provenance::SERVER_ROLE) {
            return Err(ServeError::ServerKeyRole {
                path: file.to_path_buf(),
                owner: owner.id.clone(),
            });
        }
        Ok(crate::store::EntrySigner {
            principal: owner.id.clone(),
            key,
        })
    }

    /// The policy in force now: the cached history, extended with any adoption appended
    /// since (one indexed query when there is none). Blocking.
    fn in_force(&self) -> ApiResult<Arc<InForce>> {
        let cached = self
            .in_force
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let newer = self.store.policy_entries(cached.book.current().seq)?;
        if newer.is_empty() {
            return Ok(cached);
        }
        let internal = |m: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m);
        let book = extend_book(Some((*cached.book).clone()), &newer)
            .map_err(|e| internal(e.to_string()))?
            .ok_or_else(|| internal("the policy history vanished".into()))?;
        let keyring = Keyring::from_policy(book.policy()).map_err(|e| internal(e.to_string()))?;
        let fresh = Arc::new(InForce {
            book: Arc::new(book),
            keyring: Arc::new(keyring),
        });
        match self.in_force.write() {
            Ok(mut g) => *g = fresh.clone(),
            Err(p) => *p.into_inner() = fresh.clone(),
        }
        Ok(fresh)
    }

    /// After an adoption: the file beside an SQLite store gets the adopted text verbatim.
    fn write_policy_file(&self, adoption: &LogEntry) {
        let Some(file) = &self.policy_file else {
            return;
        };
        if let Err(e) = crate::workflow::write_adopted_policy(file, adoption) {
            eprintln!(
                "warning: the policy was adopted in the log, but {} could not be rewritten: {e}",
                file.display()
            );
        }
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
        match e {
            StoreError::Moved { .. } => ApiError::new(StatusCode::CONFLICT, "moved", e.to_string()),
            // The database is down or restarting: nothing was changed, retrying is safe.
            StoreError::DatabaseDown { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}

impl From<crate::workflow::ProposeError> for ApiError {
    fn from(e: crate::workflow::ProposeError) -> Self {
        use crate::workflow::ProposeError;
        match e {
            ProposeError::Refused(r) => ApiError::refused(r),
            ProposeError::Store(e) => e.into(),
            ProposeError::NoOutcome => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
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
            DecideError::PolicyChanged { .. } => {
                ApiError::new(StatusCode::CONFLICT, "policy-changed", e.to_string())
            }
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

/// The principal behind the request's bearer token (looked up off the async threads:
/// with a database, the tokens live there).
async fn principal(state: &Shared, headers: &HeaderMap) -> ApiResult<String> {
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
        })?
        .to_string();
    let s = state.clone();
    let found = tokio::task::spawn_blocking(move || s.tokens.principal(&token))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match found {
        Ok(Some(who)) => Ok(who),
        Ok(None) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or revoked token",
        )),
        Err(tokens::LookupError::File(e)) => {
            eprintln!("tollgate serve: {e}");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "tokens-unreadable",
                "the server cannot read its tokens file; no token is accepted until it is fixed",
            ))
        }
        Err(tokens::LookupError::Database(e)) => Err(e.into()),
    }
}

async fn read_body(s: &ServerState, body: Body) -> ApiResult<axum::body::Bytes> {
    // The whole body within the deadline: a client sending a byte at a time is cut off.
    let read = tokio::time::timeout(s.body_timeout, axum::body::to_bytes(body, MAX_BODY_BYTES));
    let Ok(read) = read.await else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            format!(
                "the request body did not arrive within {} s",
                s.body_timeout.as_secs()
            ),
        ));
    };
    read.map_err(|_| {
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

/// The routes and the (method, path) pairs they serve, built together: the OpenAPI test
/// reads [`served_routes`], so a route added here without documentation fails it.
struct Routes {
    router: Router<Shared>,
    served: Vec<(&'static str, &'static str)>,
}

impl Routes {
    fn get<H, T>(self, path: &'static str, handler: H) -> Routes
    where
        H: axum::handler::Handler<T, Shared>,
        T: 'static,
    {
        self.add("get", path, get(handler))
    }

    fn post<H, T>(self, path: &'static str, handler: H) -> Routes
    where
        H: axum::handler::Handler<T, Shared>,
        T: 'static,
    {
        self.add("post", path, post(handler))
    }

    fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        route: axum::routing::MethodRouter<Shared>,
    ) -> Routes {
        self.router = self.router.route(path, route);
        self.served.push((method, path));
        self
    }
}

fn routes() -> Routes {
    Routes {
        router: Router::new(),
        served: Vec::new(),
    }
    .get("/v1/health", health)
    .get("/v1/policy", policy)
    .get("/v1/policy/history", policy_history)
    .get("/v1/head", head)
    .get("/v1/head/signed", signed_head)
    .get("/v1/watch", watch_heads)
    .get("/v1/change-requests", list)
    .post("/v1/change-requests", submit)
    .get("/v1/change-requests/{id}", get_cr)
    .get("/v1/change-requests/{id}/revisions", revisions)
    .get("/v1/change-requests/{id}/revisions/{revision}", revision)
    .get("/v1/change-requests/{id}/context", context)
    .get("/v1/change-requests/{id}/decisions", cr_decisions)
    .get("/v1/change-requests/{id}/kpi-readings", cr_kpi_readings)
    .get("/v1/change-requests/{id}/attestation", cr_attestation)
    .get("/v1/queue", queue)
    .get("/v1/decisions", all_decisions)
    .post("/v1/decisions", post_decision)
    .get("/v1/decision-summaries", decision_summaries)
    .get("/v1/submission-times", submission_times)
    .get("/v1/requesters", requesters)
    .get("/v1/log", log)
    .get("/v1/emergency", emergency)
    .post("/v1/emergency", post_emergency)
    .get("/v1/emergency/subject-changes", subject_changes)
    .post("/v1/evidence", post_evidence)
    .post("/v1/sources/mlflow/webhook", mlflow_webhook)
}

/// Every (method, path) the server routes, lower-case method, axum path syntax.
pub fn served_routes() -> Vec<(&'static str, &'static str)> {
    routes().served
}

/// Builds the router over `state`.
pub fn router(state: Shared) -> Router {
    routes()
        .router
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "no such endpoint; see docs/openapi.json",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access_log,
        ))
        .with_state(state)
}

/// Refuses a token's request beyond its rate with 429 and `Retry-After` (whole seconds,
/// rounded up). Requests without a token are left to the token check.
async fn rate_limit(
    State(s): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| sha256_digest(v.as_bytes()));
    if let Some(key) = key
        && let Err(wait) = s.limiter.take(&key, std::time::Instant::now())
    {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!("too many requests for this token; retry in {secs} s"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    next.run(request).await
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
    let who = principal(&s, request.headers())
        .await
        .unwrap_or_else(|_| "-".into());
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

/// `GET /v1/watch`: the log head now and each time it moves, as Server-Sent Events.
async fn watch_heads(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    principal(&s, &headers).await?;
    let now = blocking({
        let s = s.clone();
        move || Ok(s.store.recorded_head()?)
    })
    .await?;
    let mut response = watch::stream(&s.heads, &s.store, now, s.keep_alive).into_response();
    // Tell buffering proxies (nginx) to pass each event on at once.
    response
        .headers_mut()
        .insert("X-Accel-Buffering", HeaderValue::from_static("no"));
    Ok(response)
}

async fn health(State(s): State<Shared>) -> ApiResult<impl IntoResponse> {
    let head = blocking({
        let s = s.clone();
        move || Ok(s.store.recorded_head()?)
    })
    .await?;
    Ok(axum::Json(json!({ "status": "ok", "head": head })))
}

/// The policy in force: its text, digest, version and the entry that adopted it.
async fn policy(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || {
        let in_force = s.in_force()?;
        let v = in_force.book.current();
        let genesis = in_force.book.genesis();
        Ok(axum::Json(json!({
            "text": v.text, "digest": v.digest, "version": v.version,
            "seq": v.seq, "hash": v.hash, "adopted_at": v.adopted_at, "adopted_by": v.adopted_by,
            "cr_id": v.cr_id, "genesis": { "seq": genesis.seq, "hash": genesis.hash },
        })))
    })
    .await
}

/// Every `policy-adopted` entry after a log position, in order.
async fn policy_history(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<SeqPage>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.policy_entries(p.after.unwrap_or(0))?))).await
}

async fn head(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    let head = blocking(move || Ok(s.store.recorded_head()?)).await?;
    Ok(axum::Json(head))
}

/// The log head signed with the server's key (a signed tree head, as transparency logs
/// publish): a monitor stores it elsewhere, and `verify --expect-head HASH` later proves
/// the log still holds that entry, which a same-file check cannot.
async fn signed_head(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    principal(&s, &headers).await?;
    let Some(key) = s.server_key.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no-server-key",
            "this server runs without --server-key, so it cannot sign its head",
        ));
    };
    let head = blocking({
        let s = s.clone();
        move || Ok(s.store.recorded_head()?)
    })
    .await?;
    let at = server_now();
    let body = to_canonical_string(&json!({
        "type": "tree-head",
        "seq": head.seq,
        "hash": head.hash,
        "at": crate::audit::log::time_text(at),
        "principal": key.principal,
        "key_fingerprint": key.key.fingerprint(),
    }));
    let signature = key.key.sign(body.as_bytes()).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("signing the head: {e}"),
        )
    })?;
    Ok(axum::Json(json!({
        "principal": key.principal,
        "body": body,
        "signature": signature,
    }))
    .into_response())
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
    principal(&s, &headers).await?;
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

#[derive(Deserialize, Debug)]
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
    principal(&s, &headers).await?;
    let limit = q.limit.unwrap_or(1_000).clamp(1, 10_000);
    blocking(move || {
        let head = s.store.recorded_head()?;
        let (tag, unchanged) = etag(&headers, &head);
        if unchanged {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
        }
        // The log head names everything the answer depends on (see `answers`).
        let key = format!("{:?} {q:?} {limit}", head.hash);
        let fresh = headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("no-cache"));
        if let Some(body) = s.answers.get(&key).filter(|_| !fresh) {
            return Ok(json_response(tag, body));
        }
        let in_force = s.in_force()?;
        // `None` for a gate no CR can have: it matches nothing, as before.
        let gate = match q.gate.as_deref() {
            None => Some(None),
            Some(g) => crate::domain::change_request::Gate::ALL
                .iter()
                .find(|(name, _)| *name == g)
                .map(|(_, gate)| Some(*gate)),
        };
        // The queue's cached rows (the same as `list --json`), pages sized to the answer:
        // a first screenful reads a screenful.
        let pages = gate.map(|gate| {
            crate::workflow::queue::SummaryPages::new(s.store.as_ref(), &in_force.book, gate)
                .after(q.after.clone())
                .page_size(limit.clamp(64, 5_000))
                .only(q.status.as_deref(), q.risk.as_deref())
                .without_cells()
                .remembering(&s.rows)
        });
        let mut body = String::from("{\"items\":[");
        let mut count = 0;
        let mut next = None;
        'pages: for page in pages.into_iter().flatten() {
            for row in page? {
                if count > 0 {
                    body.push(',');
                }
                body.push_str(&row.row);
                count += 1;
                if count == limit {
                    next = Some(row.cr_id.clone());
                    break 'pages;
                }
            }
        }
        body.push_str(&format!(
            "],\"next_after\":{},\"head\":{}}}",
            serde_json::to_string(&next).unwrap_or_else(|_| "null".into()),
            serde_json::to_string(&head).unwrap_or_else(|_| "null".into())
        ));
        let body = axum::body::Bytes::from(body);
        s.answers.put(key, body.clone());
        Ok(json_response(tag, body))
    })
    .await
}

/// A JSON body written as it was built (the queue's cached rows are already JSON), with
/// its ETag.
fn json_response(tag: axum::http::HeaderValue, body: impl Into<Body>) -> Response {
    (
        [
            (header::ETAG, tag),
            (
                header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            ),
        ],
        body.into(),
    )
        .into_response()
}

async fn submit(State(s): State<Shared>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let who = principal(&s, &headers).await?;
    let bytes = read_body(&s, body).await?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("the body is not JSON: {e}"),
        )
    })?;
    // Re-serialising below would silently keep one of two same-named members.
    if let Err(d) =
        crate::domain::reader::check_no_duplicate_names(&String::from_utf8_lossy(&bytes))
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            d.to_string(),
        ));
    }
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
                batch.push(Submission::new(cr, document));
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
        let mut batch = batch;
        // A policy change is checked as a proposal by the token's principal, against the
        // policy in force: the server builds nothing on the client's word.
        if batch.iter().any(|b| b.cr.gate == Gate::Policy) {
            let in_force = s.in_force()?;
            for b in batch.iter_mut().filter(|b| b.cr.gate == Gate::Policy) {
                crate::domain::policy_change::check_proposal(&b.cr, &who, &in_force.book)
                    .map_err(ApiError::refused)?;
                let expected = crate::workflow::check_proposal_target(
                    s.store.as_ref(),
                    &in_force.book,
                    &b.cr,
                )?;
                b.expect_revision = Some(expected);
            }
        }
        // The submitter is the token's principal, whatever the document says; the entry
        // is signed with the server's key when one is configured.
        let by = crate::store::SubmittedBy {
            submitter: crate::domain::provenance::Submitter::Principal(who.clone()),
            signer: s.server_key.clone(),
        };
        let batch: Vec<Submission> = batch.into_iter().map(|b| b.by(by.clone())).collect();
        let now = server_now();
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
    principal(&s, &headers).await?;
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
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.revisions(&id)?))).await
}

async fn revision(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, u32)>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
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
    principal(&s, &headers).await?;
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
        let in_force = s.in_force()?;
        let policy_head = crate::store::Head {
            seq: in_force.book.current().seq,
            hash: Some(in_force.book.current().hash.clone()),
        };
        Ok(axum::Json(WireContext {
            head,
            current: (&cr.current).into(),
            decisions: entries,
            policy_head,
        }))
    })
    .await
}

async fn cr_decisions(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.decision_entries(&id)?))).await
}

async fn cr_kpi_readings(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.kpi_readings(&id)?))).await
}

/// The approval of a CR as an in-toto attestation in a DSSE envelope, signed with the
/// server's own key (`serve --server-key`).
async fn cr_attestation(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    principal(&s, &headers).await?;
    blocking(move || {
        let Some(key) = s.server_key.clone() else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "this server has no key of its own (serve --server-key FILE): it signs no attestations",
            ));
        };
        let in_force = s.in_force()?;
        let envelope =
            crate::workflow::attest::attest(&*s.store, &in_force.book, &key, &id, server_now())?;
        Ok(axum::Json(envelope).into_response())
    })
    .await
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
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.all_decisions()?))).await
}

async fn decision_summaries(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<SeqPage>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
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
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.submission_times()?))).await
}

async fn requesters(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
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
    principal(&s, &headers).await?;
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
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.emergency_entries()?))).await
}

/// CR submissions and revisions after a log position, with the subject each names: what
/// a client needs to know what an emergency rollback left live.
async fn subject_changes(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<SeqPage>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.subject_changes(p.after.unwrap_or(0))?))).await
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
/// principal, a principal of the policy in force, and the signature verifies against that
/// policy's keys. A key listed only in the file beside the store is refused by name.
fn check_signed(
    s: &ServerState,
    in_force: &InForce,
    who: &str,
    entry: &WireSignedEntry,
) -> ApiResult<()> {
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
    crate::domain::reader::check_no_duplicate_names(&entry.body)
        .map_err(|d| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", d.to_string()))?;
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
    let fingerprint = match in_force
        .keyring
        .verify(who, entry.body.as_bytes(), &entry.signature)
    {
        Ok(fp) => fp,
        Err(e @ SignatureError::UnknownKey(_)) => {
            let refusal = crate::identity::unknown_key_refusal(
                who,
                &e.to_string(),
                in_force.book.current(),
                s.policy_file.as_deref(),
                |file_policy| {
                    Keyring::from_policy(file_policy).is_ok_and(|k| {
                        k.verify(who, entry.body.as_bytes(), &entry.signature)
                            .is_ok()
                    })
                },
            );
            return Err(ApiError::refused(refusal));
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("signature refused: {e}"),
            ));
        }
    };
    if body["key_fingerprint"].as_str() != Some(fingerprint.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the record names another key than the one that signed it",
        ));
    }
    Ok(())
}

/// The server's clock: what receipt times are judged by (`TOLLGATE_NOW` for drills).
fn server_now() -> chrono::DateTime<chrono::Utc> {
    crate::clock::now_or_system()
}

/// The token's principal and the signed entry a POST carries: what every endpoint that
/// appends a client's entry reads first.
async fn signed_entry(
    s: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<(String, WireSignedEntry)> {
    let who = principal(s, headers).await?;
    let bytes = read_body(s, body).await?;
    Ok((who, parse_entry(&bytes)?))
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

fn refusal(rule: &'static str, message: String, remedy: &str) -> DecideError {
    DecideError::Refused(Refusal {
        rule,
        message,
        remedy: remedy.into(),
    })
}

/// The principal of the policy in force behind `who`, or a refusal naming the version.
fn principal_in_force(
    in_force: &InForce,
    who: &str,
) -> ApiResult<crate::domain::policy::Principal> {
    in_force
        .book
        .policy()
        .principal(who)
        .cloned()
        .ok_or_else(|| {
            ApiError::refused(Refusal {
                rule: "not-a-principal",
                message: format!(
                    "{who} is not a principal of the policy in force (version {})",
                    in_force.book.current().version
                ),
                remedy: "a policy change adding them must be proposed and adopted first".into(),
            })
        })
}

/// The entry right after `e`, when it is the adoption its approval made due (a retried
/// delivery then gets the whole answer).
fn adoption_after(s: &ServerState, e: &LogEntry) -> Result<Option<LogEntry>, StoreError> {
    Ok(s.store
        .log_entries(e.seq, 1)?
        .into_iter()
        .next()
        .filter(|n| n.kind == EntryKind::PolicyAdopted.as_str() && n.cr_id == e.cr_id))
}

async fn post_decision(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let (who, entry) = signed_entry(&s, &headers, body).await?;
    if entry.kind != EntryKind::Decision.as_str() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "this endpoint takes decisions; emergencies go to /v1/emergency",
        ));
    }
    let record = DecisionRecord::parse(&entry.body)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))?;
    let received = server_now();
    blocking(move || {
        let in_force = s.in_force()?;
        check_signed(&s, &in_force, &who, &entry)?;
        if let Some(a) = &entry.adoption {
            if a.kind != EntryKind::PolicyAdopted.as_str() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    "only a policy-adopted entry may accompany a decision",
                ));
            }
            check_signed(&s, &in_force, &who, a)?;
        }
        // Idempotent: the same decision delivered again (e.g. from an outbox, or a retry
        // after a lost response) returns the entry already recorded.
        let existing = s.store.decision_entries(&record.cr_id)?;
        if let Some(done) = find_duplicate(&existing, &entry.body) {
            let appended = Appended {
                adoption: adoption_after(&s, done)?,
                decision: done.clone(),
            };
            return Ok((StatusCode::OK, axum::Json(appended)).into_response());
        }
        let principal = principal_in_force(&in_force, &who)?;
        let book = &in_force.book;
        // Drills are only ever added: read before the transaction, they can only make the
        // check stricter than the log at appending time.
        let drills = match (record.verdict.as_str(), &book.policy().after.drills) {
            ("approve", Some(_)) => Some(crate::workflow::rollout::rollouts(&*s.store)?),
            _ => None,
        };
        let appended = s.store.decide(&record.cr_id, &mut |ctx| {
            crate::workflow::check_in_force(book, &ctx.policy_head)?;
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
            if record.policy_digest != book.current().digest {
                return Err(refusal(
                    "policy-digest",
                    format!(
                        "the decision was signed under policy {}, but version {} ({}) is in force",
                        record.policy_digest,
                        book.current().version,
                        book.current().digest
                    ),
                    "read the policy in force (`tollgate policy show`) and sign again",
                ));
            }
            let decision = record
                .to_decision()
                .map_err(|e| DecideError::Chain(e.to_string()))?;
            let eval = evaluate_in(&ctx.current.cr, &ctx.current.digest, &ctx.decisions, book);
            let proposal = Proposal {
                principal: &principal,
                role: &record.role,
                verdict: decision.verdict,
                rationale: &record.rationale,
                ticks: &decision.ticks,
            };
            check_decision(&ctx.current.cr, &eval, book.policy(), &proposal)
                .map_err(DecideError::Refused)?;
            if let Some(drills) = &drills {
                crate::domain::rollout::check_drill_requirement(
                    book.policy(),
                    &ctx.current.cr,
                    eval.risk.effective,
                    drills,
                    decision.at,
                )
                .map_err(DecideError::Refused)?;
            }
            crate::audit::record_rules::check_decision_record(
                &record,
                decision.at,
                Some(RevisionFacts {
                    revision: ctx.current.revision,
                    digest: &ctx.current.digest,
                    submitted_at: ctx.current.submitted_at,
                }),
                Some(&eval),
                &decision.ticks,
                received,
            )
            .map_err(DecideError::Refused)?;
            // The adoption this approval makes due is rebuilt here; the client's must be
            // exactly it.
            let expected = crate::workflow::expected_adoption(ctx, book, &record)?;
            let adoption = match (expected, &entry.adoption) {
                (None, None) => None,
                (Some(want), Some(sent)) => {
                    let got = AdoptionRecord::parse(&sent.body)
                        .map_err(|e| DecideError::Chain(e.to_string()))?;
                    if got != want {
                        return Err(refusal(
                            "adoption-mismatch",
                            format!(
                                "the adoption sent with this approval of {} is not the one it makes due (version {}, the text of revision {})",
                                record.cr_id, want.version, ctx.current.revision
                            ),
                            "sign the adoption tollgate builds; do not edit it",
                        ));
                    }
                    Some(NewEntry {
                        body: sent.body.clone(),
                        signature: sent.signature.clone(),
                        principal: who.clone(),
                    })
                }
                (Some(want), None) => {
                    return Err(refusal(
                        "adoption-required",
                        format!(
                            "this approval completes {}: the adoption of policy version {} must be signed with it",
                            record.cr_id, want.version
                        ),
                        "approve with a tollgate that signs the adoption too",
                    ));
                }
                (None, Some(_)) => {
                    return Err(refusal(
                        "adoption-not-due",
                        format!(
                            "this decision does not complete a policy change on {}: nothing may be adopted with it",
                            record.cr_id
                        ),
                        "send the decision alone",
                    ));
                }
            };
            Ok(DecisionEntries {
                decision: NewEntry {
                    body: entry.body.clone(),
                    signature: entry.signature.clone(),
                    principal: who.clone(),
                },
                adoption,
            })
        })?;
        if let Some(a) = &appended.adoption {
            s.write_policy_file(a);
            s.in_force()?;
        }
        Ok((StatusCode::CREATED, axum::Json(appended)).into_response())
    })
    .await
}

async fn post_emergency(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let (who, entry) = signed_entry(&s, &headers, body).await?;
    let kind = EntryKind::parse(&entry.kind)
        .filter(|k| EntryKind::OPERATIONS.contains(k))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!(
                    "{:?} is not an emergency, rollout, KPI reading or drill entry kind",
                    entry.kind
                ),
            )
        })?;
    // Structure first, with the typed parser `verify` uses: a body that does not read as
    // its kind's record never reaches the log.
    let invalid = |e: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("{e}; nothing was recorded"),
        )
    };
    let claim = if EntryKind::EMERGENCY.contains(&kind) {
        OperationClaim::Emergency(
            crate::audit::emergency::claim_of(kind, &entry.body)
                .map_err(|e| invalid(e.to_string()))?,
        )
    } else {
        let (claim, digest) = crate::audit::rollout::claim_of(kind, &entry.body)
            .map_err(|e| invalid(e.to_string()))?;
        OperationClaim::After(claim, digest)
    };
    let received = server_now();
    blocking(move || {
        let in_force = s.in_force()?;
        check_signed(&s, &in_force, &who, &entry)?;
        let existing = s.store.emergency_entries()?;
        if let Some(done) = find_duplicate(&existing, &entry.body) {
            return Ok((StatusCode::OK, axum::Json(done.clone())).into_response());
        }
        let principal = principal_in_force(&in_force, &who)?;
        let book = &in_force.book;
        // A stage is judged against the CR as the store holds it: its current revision
        // and its status from the recorded decisions, never the client's word.
        // The reading an `AUTO-` incident names: readings are not among the operations
        // entries the transaction reads (they pile up), and a written entry never changes.
        let auto_reading = match &claim {
            OperationClaim::Emergency(crate::domain::emergency::Claim::Authorise(a)) => {
                match crate::domain::rollout::parse_auto_incident(&a.incident) {
                    Some((_, seq)) => crate::workflow::reading_at(&*s.store, seq)?,
                    None => None,
                }
            }
            _ => None,
        };
        let stage_facts = match &claim {
            OperationClaim::After(crate::audit::rollout::Claim::Stage(c), _) => Some(
                crate::workflow::rollout::evaluated(&*s.store, book, &c.cr_id)?,
            ),
            _ => None,
        };
        let body: Value = serde_json::from_str(&entry.body).unwrap_or(Value::Null);
        let appended = s.store.append_emergency(&mut |ctx| {
            crate::workflow::check_in_force(book, &ctx.policy_head)?;
            let head = &ctx.head;
            if body["seq"].as_u64() != Some(head.seq + 1)
                || body["prev"].as_str() != head.hash.as_deref()
            {
                return Err(DecideError::HeadMoved { head: head.clone() });
            }
            let names_policy = match &claim {
                OperationClaim::Emergency(_) => (kind == EntryKind::EmergencyAuthorised)
                    .then(|| body["policy_digest"].as_str().unwrap_or("none").to_string()),
                OperationClaim::After(_, digest) => Some(digest.clone()),
            };
            if let Some(named) = names_policy
                && named != book.current().digest
            {
                return Err(refusal(
                    "policy-digest",
                    format!(
                        "the entry names policy {named}, but version {} ({}) is in force",
                        book.current().version,
                        book.current().digest
                    ),
                    "read the policy in force (`tollgate policy show`) and sign again",
                ));
            }
            // The same rules the workflow applied before signing, against what this
            // store derives and the server's own clock: nothing is taken on trust.
            // A guard rollback needs every reading; a stage or reading only its own CR's.
            let rollouts = match &claim {
                OperationClaim::After(crate::audit::rollout::Claim::Stage(c), _) => {
                    crate::audit::rollout::derive_for(&ctx.existing, &c.cr_id)
                }
                OperationClaim::After(crate::audit::rollout::Claim::Reading(c), _) => {
                    crate::audit::rollout::derive_for(&ctx.existing, &c.cr_id)
                }
                _ => crate::audit::rollout::derive(&ctx.existing),
            };
            let policy = book.policy();
            match &claim {
                OperationClaim::Emergency(claim) => {
                    let derived = crate::audit::emergency::derive(&ctx.existing, &ctx.changes);
                    crate::domain::emergency::check_claim(
                        policy,
                        &principal,
                        &derived.exceptions,
                        &derived.live,
                        claim,
                        received,
                    )
                    .map_err(DecideError::Refused)?;
                    if let crate::domain::emergency::Claim::Authorise(a) = claim {
                        crate::domain::rollout::check_auto_rollback(
                            &rollouts,
                            auto_reading.as_ref().map(|(id, r)| (id.as_str(), r)),
                            a,
                        )
                        .map_err(DecideError::Refused)?;
                    }
                }
                OperationClaim::After(claim, _) => {
                    use crate::audit::rollout::Claim;
                    crate::domain::rollout::check_not_backdated(claim.at(), received)
                        .map_err(DecideError::Refused)?;
                    match claim {
                        Claim::Stage(c) => {
                            let Some((cr, eval)) = &stage_facts else {
                                return Err(DecideError::Chain("no CR facts".into()));
                            };
                            let facts = crate::domain::rollout::CrFacts {
                                cr: &cr.current.cr,
                                revision: cr.current.revision,
                                digest: &cr.current.digest,
                                status: eval.status,
                                risk: eval.risk.effective,
                            };
                            crate::domain::rollout::check_stage(
                                policy,
                                &principal,
                                &facts,
                                rollouts.of(&c.cr_id),
                                c,
                                received,
                            )
                        }
                        Claim::Reading(c) => crate::domain::rollout::check_reading(
                            policy,
                            &principal,
                            rollouts.of(&c.cr_id),
                            c,
                            received,
                        ),
                        Claim::Drill(c, _) => {
                            crate::domain::rollout::check_drill(policy, &principal, c, received)
                        }
                    }
                    .map_err(DecideError::Refused)?;
                }
            }
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

/// What an entry posted to `/v1/emergency` claims, read with `verify`'s parsers.
enum OperationClaim {
    /// An emergency record.
    Emergency(crate::domain::emergency::Claim),
    /// A rollout stage, KPI reading or drill, with the policy digest it names.
    After(crate::audit::rollout::Claim, String),
}

/// A delivery from MLflow's webhooks: authenticated by its HMAC (no bearer token: MLflow
/// cannot send one), fresh and never seen before; a version event imports that version at
/// once, with the same mapping and validation as `--source`.
async fn mlflow_webhook(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    // Without a secret no delivery can be authenticated: refused like a bad signature.
    let Some(receiver) = s.mlflow.clone() else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server takes no MLflow webhooks: start it with --source mlflow=URL --mlflow-webhook-secret-file FILE",
        ));
    };
    let bytes = read_body(&s, body).await?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    use crate::sources::mlflow_webhook::{self as hook, Refused};
    let unauthorized = |e: Refused| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("{e}; nothing was imported"),
        )
    };
    let now = server_now();
    let authentic = hook::check(
        &receiver.secret,
        hook::Headers {
            delivery_id: header("x-mlflow-delivery-id"),
            timestamp: header("x-mlflow-timestamp"),
            signature: header("x-mlflow-signature"),
        },
        &bytes,
        now,
    )
    .map_err(unauthorized)?;
    blocking(move || {
        let id = authentic.delivery_id;
        let forget_before = now - chrono::Duration::seconds(hook::REMEMBER_SECS);
        let new = s.store.receive_delivery(
            hook::SOURCE,
            &id,
            &crate::audit::log::time_text(now),
            &crate::audit::log::time_text(forget_before),
        )?;
        if !new {
            return Err(unauthorized(Refused::Replayed(id)));
        }
        let answer = import_delivered(&s, &receiver, &bytes);
        if answer.is_err() {
            // MLflow retries a failed delivery with the same id: take the retry.
            let _ = s.store.forget_delivery(hook::SOURCE, &id);
        }
        answer
    })
    .await
}

/// Imports the model version an authentic delivery names (other events are acknowledged
/// and ignored).
fn import_delivered(
    s: &ServerState,
    receiver: &MlflowReceiver,
    body: &[u8],
) -> ApiResult<Response> {
    use crate::sources::mlflow::{Imported, SyncError, import_version};
    let Some((name, version)) = crate::sources::mlflow_webhook::version_of(body) else {
        return Ok((StatusCode::OK, axum::Json(json!({"ignored": true}))).into_response());
    };
    let imported = import_version(
        &receiver.client,
        &*s.store,
        &receiver.convention,
        (&name, &version),
        server_now(),
    );
    let answer = match imported {
        Ok(Imported::Stored(outcome)) => json!({"imported": outcome}),
        Ok(Imported::NotPending) => json!({"ignored": "not marked for review"}),
        Ok(Imported::Gone) => json!({"ignored": "MLflow no longer has this version"}),
        Ok(Imported::Invalid(problems)) => {
            eprintln!(
                "MLflow webhook: {name} v{version} does not make a valid CR: {}",
                crate::domain::text::sanitize(&problems.join("; "))
            );
            json!({"invalid": problems})
        }
        // MLflow retries a delivery that failed: say so with a 503.
        Err(SyncError::Mlflow(e)) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("cannot read {name} v{version} from MLflow: {e}"),
            ));
        }
        Err(SyncError::Store(e)) => return Err(e.into()),
    };
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

/// CI's signed evidence on a CR's current revision: the signer must hold `ci`, the
/// record must name the revision the server holds, and its time must be plausible.
async fn post_evidence(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let (who, entry) = signed_entry(&s, &headers, body).await?;
    if entry.kind != EntryKind::Evidence.as_str() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "this endpoint takes evidence entries",
        ));
    }
    let record = crate::audit::evidence::EvidenceRecord::parse(&entry.body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("{e}; nothing was recorded"),
        )
    })?;
    let received = server_now();
    blocking(move || {
        let in_force = s.in_force()?;
        check_signed(&s, &in_force, &who, &entry)?;
        let principal = principal_in_force(&in_force, &who)?;
        let book = &in_force.book;
        let appended = s.store.append_evidence(&record.cr_id, &mut |ctx| {
            crate::workflow::check_in_force(book, &ctx.policy_head)?;
            if record.seq != ctx.head.seq + 1 || record.prev != ctx.head.hash {
                return Err(DecideError::HeadMoved {
                    head: ctx.head.clone(),
                });
            }
            if record.cr_digest != ctx.current.digest || record.cr_revision != ctx.current.revision
            {
                return Err(DecideError::Stale {
                    id: record.cr_id.clone(),
                    seen: record.cr_digest.clone(),
                    revision: ctx.current.revision,
                    current: ctx.current.digest.clone(),
                });
            }
            crate::audit::record_rules::check_evidence_record(
                &record,
                &principal,
                book.policy(),
                &ctx.current.cr,
                ctx.current.submitted_at,
                received,
            )
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

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on, e.g. `127.0.0.1:8080` (port 0 picks a free one).
    pub listen: String,
    /// Store path (unused with `database`).
    pub store: PathBuf,
    /// Policy path (unused with `database`).
    pub policy: PathBuf,
    /// Tokens file (unused with `database`).
    pub tokens: PathBuf,
    /// A PostgreSQL URL: the store, its policy history and the tokens all come from
    /// this database, so any number of replicas started with it serve as one.
    pub database: Option<String>,
    /// TLS certificate and key (PEM), for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Write an access log line per request to stderr.
    pub access_log: bool,
    /// Connection, time and rate limits.
    pub limits: limits::Limits,
    /// The server's own key (its principal holds role `server`): signs relayed
    /// submissions. Given to every replica; never generated per process.
    pub server_key: Option<PathBuf>,
    /// Run the KPI guard on CRs in canary, signing with the server key.
    pub kpi_guard: bool,
    /// Take MLflow's webhook deliveries.
    pub mlflow_webhook: Option<MlflowWebhook>,
    /// Send signed events to these subscribers (`serve --subscribers FILE`).
    pub subscribers: Vec<events::Subscriber>,
}

/// Where MLflow's webhook deliveries come from and how they are signed.
#[derive(Debug, Clone)]
pub struct MlflowWebhook {
    /// The registry's URL (versions are read from it).
    pub url: String,
    /// How versions awaiting review are marked.
    pub convention: crate::sources::mlflow::Convention,
    /// The webhook's shared secret.
    pub secret: String,
}

/// Serves until the process is stopped; `ready` receives the bound address.
pub async fn serve(
    opts: ServeOptions,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    // Opening a database blocks (its client runs its own runtime): off the async threads.
    let mut state = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || ServerState::load(&opts))
            .await
            .map_err(|_| ServeError::Stopped)??
    };
    state.access_log = opts.access_log;
    state.limiter = limits::RateLimiter::new(opts.limits.rate_per_sec, opts.limits.burst);
    state.body_timeout = opts.limits.body_timeout;
    state.keep_alive = watch::KEEP_ALIVE.min(opts.limits.idle_timeout / 2);
    if let Some(file) = &opts.server_key {
        state.server_key = Some(Arc::new(state.server_signer(file)?));
    }
    if let Some(MlflowWebhook {
        url,
        convention,
        secret,
    }) = &opts.mlflow_webhook
    {
        // A blocking HTTP client is made (and used) off the async threads.
        let url = url.clone();
        let client = tokio::task::spawn_blocking(move || crate::sources::mlflow::Client::new(&url))
            .await
            .map_err(|_| ServeError::Stopped)?
            .map_err(|e| ServeError::Mlflow(e.to_string()))?;
        state.mlflow = Some(Arc::new(MlflowReceiver {
            client,
            convention: convention.clone(),
            secret: secret.clone(),
        }));
    }
    let state = Arc::new(state);
    if opts.kpi_guard {
        if state.server_key.is_none() {
            return Err(ServeError::GuardWithoutKey);
        }
        guard::spawn(state.clone());
    }
    let events_state = state.clone();
    let app = router(state);
    let addr: std::net::SocketAddr = opts.listen.parse().map_err(|source| ServeError::Listen {
        value: opts.listen.clone(),
        source,
    })?;
    let tls = match &opts.tls {
        None => None,
        Some((cert, key)) => {
            crate::tls::install_crypto_provider();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|source| ServeError::Tls {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })?;
            Some(
                axum_server::tls_rustls::RustlsAcceptor::new(config)
                    .handshake_timeout(opts.limits.header_timeout),
            )
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    if !opts.subscribers.is_empty() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        // With SQLite, a connection of the events thread's own; a database's pool
        // already gives it one.
        let events_store: Arc<dyn Store> = match &opts.database {
            Some(_) => events_state.store.clone(),
            None => {
                let own = LocalStore::open(&opts.store)?;
                own.writes_only_derived_data()?;
                Arc::new(own)
            }
        };
        events::spawn(
            events_state,
            events_store,
            opts.subscribers.clone(),
            format!("{scheme}://{bound}"),
        );
    }
    ready(bound);
    accept_loop(listener, app, tls, opts.limits).await
}

/// Accepts connections up to the limit (one more is closed at once), each served with
/// the head deadline and the idle timeout, over TLS when configured.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<axum_server::tls_rustls::RustlsAcceptor>,
    limits: limits::Limits,
) -> Result<(), ServeError> {
    use axum_server::accept::Accept;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            // Out of descriptors or a connection reset before it was accepted: wait a
            // moment rather than spin, and keep serving.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let io = limits::IdleTimeout::new(tcp, limits.idle_timeout);
        let service = TowerToHyperService::new(app.clone());
        let (builder, tls) = (builder.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(io), service)
                        .await;
                }
                Some(acceptor) => {
                    if let Ok((stream, ())) = acceptor.accept(io, ()).await {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    }
                }
            }
        });
    }
}

/// Starts the server on a thread of its own (a two-worker runtime) and returns once it
/// listens: for tests, benchmarks and tools that need a real server in-process.
pub fn start_in_background(opts: ServeOptions) -> Result<std::net::SocketAddr, ServeError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = tx.clone();
    std::thread::Builder::new()
        .name("tollgate-server".into())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|source| ServeError::Runtime {
                    what: "start the async runtime",
                    source,
                })
                .and_then(|rt| {
                    rt.block_on(serve(opts, move |addr| {
                        let _ = tx.send(Ok(addr));
                    }))
                });
            if let Err(e) = outcome {
                let _ = failed.send(Err(e));
            }
        })
        .map_err(|source| ServeError::Runtime {
            what: "start the server thread",
            source,
        })?;
    rx.recv().map_err(|_| ServeError::Stopped)?
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The MLflow source for webhooks does not read.
    #[error("--source for MLflow webhooks: {0}")]
    Mlflow(String),
    /// `--kpi-guard` without `--server-key`: the guard signs as the server.
    #[error(
        "--kpi-guard signs readings and rollbacks as the server: give --server-key FILE (a key of the policy's principal holding the server role, on the on-call roster)"
    )]
    GuardWithoutKey,
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The policy history in the log does not read.
    #[error(transparent)]
    Policy(#[from] crate::audit::policy_log::BookError),
    /// The store has no policy in its log.
    #[error(
        "the store at {} has no policy in its log (it predates policy entries, or `tollgate init` was not run on it); run `tollgate migrate` (or `tollgate init --database URL`) first",
        .0.display()
    )]
    NoPolicy(PathBuf),
    /// A key line of the policy in force is not a public key.
    #[error(transparent)]
    Keys(#[from] crate::audit::keys::KeyLineError),
    /// The tokens file.
    #[error(transparent)]
    Tokens(#[from] tokens::TokenError),
    /// The server key cannot be loaded.
    #[error("--server-key {}: {source}", path.display())]
    ServerKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::audit::keys::KeyError,
    },
    /// The server key belongs to no principal.
    #[error(
        "--server-key {}: this key ({fingerprint}) belongs to no principal of the policy in force; add the server as a principal with role server and this key (`tollgate init --server-principal ID` does it for a new store)",
        path.display()
    )]
    ServerKeyOwner {
        /// The key file.
        path: PathBuf,
        /// Its fingerprint.
        fingerprint: String,
    },
    /// The server key's principal lacks the server role.
    #[error(
        "--server-key {}: the key is {owner}'s, who does not hold the server role in the policy in force",
        path.display()
    )]
    ServerKeyRole {
        /// The key file.
        path: PathBuf,
        /// Whose it is.
        owner: String,
    },
    /// `--listen` is not an address.
    #[error("--listen {value:?}: expected an address such as 127.0.0.1:8080 ({source})")]
    Listen {
        /// What was given.
        value: String,
        /// Why it does not parse.
        #[source]
        source: std::net::AddrParseError,
    },
    /// The TLS certificate or key cannot be loaded.
    #[error("cannot load TLS certificate {} / key {}: {source}", cert.display(), key.display())]
    Tls {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The runtime or the server thread could not start.
    #[error("cannot {what}: {source}")]
    Runtime {
        /// What was being started.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server thread ended before it listened.
    #[error("the server stopped before it listened")]
    Stopped,
}
