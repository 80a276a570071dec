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
//!
//! Layout: [`api`] holds what every handler shares (errors, the token's principal, bodies,
//! ETags); [`reads`] the read endpoints, [`watch`] the live head stream; [`entries`]
//! submissions, decisions and CI evidence; [`operations`] the emergency, rollout and
//! drill entries; [`mlflow_hook`] MLflow's webhooks; [`serve`] the listener and start-up;
//! [`events`] and [`guard`] the background threads; [`tokens`], [`limits`] and
//! [`answers`] the bearer tokens, the connection limits and the queue's answer cache.

mod answers;
mod api;
mod entries;
pub mod events;
mod guard;
pub mod limits;
mod mlflow_hook;
mod operations;
mod reads;
mod serve;
pub mod tokens;
mod watch;

use crate::audit::canonical::sha256_digest;
use crate::audit::keys::Keyring;
use crate::audit::log::LogEntry;
use crate::audit::policy_log::extend_book;
use crate::domain::policy_book::PolicyBook;
use crate::store::Store;
use crate::store::local::LocalStore;
use crate::store::pg::PgStore;
use api::{ApiError, ApiResult, principal, server_now};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mlflow_hook::MlflowReceiver;
pub use serve::{MlflowWebhook, ServeError, ServeOptions, serve, start_in_background};
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
    .get("/v1/health", reads::health)
    .get("/v1/policy", reads::policy)
    .get("/v1/policy/history", reads::policy_history)
    .get("/v1/head", reads::head)
    .get("/v1/head/signed", reads::signed_head)
    .get("/v1/watch", reads::watch_heads)
    .get("/v1/change-requests", reads::list)
    .post("/v1/change-requests", entries::submit)
    .get("/v1/change-requests/{id}", reads::get_cr)
    .get("/v1/change-requests/{id}/revisions", reads::revisions)
    .get(
        "/v1/change-requests/{id}/revisions/{revision}",
        reads::revision,
    )
    .get("/v1/change-requests/{id}/context", reads::context)
    .get("/v1/change-requests/{id}/decisions", reads::cr_decisions)
    .get(
        "/v1/change-requests/{id}/kpi-readings",
        reads::cr_kpi_readings,
    )
    .get(
        "/v1/change-requests/{id}/attestation",
        reads::cr_attestation,
    )
    .get("/v1/queue", reads::queue)
    .get("/v1/decisions", reads::all_decisions)
    .post("/v1/decisions", entries::post_decision)
    .get("/v1/decision-summaries", reads::decision_summaries)
    .get("/v1/submission-times", reads::submission_times)
    .get("/v1/requesters", reads::requesters)
    .get("/v1/log", reads::log)
    .get("/v1/emergency", reads::emergency)
    .post("/v1/emergency", operations::post_emergency)
    .get("/v1/emergency/subject-changes", reads::subject_changes)
    .post("/v1/evidence", entries::post_evidence)
    .post("/v1/sources/mlflow/webhook", mlflow_hook::mlflow_webhook)
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
