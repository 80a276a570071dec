//! What every handler shares: errors answered as JSON (`{error, message, head?}` with the
//! right status), the principal behind a bearer token, request bodies within the limits,
//! ETags from the log head, and the server's clock.

use super::{MAX_BODY_BYTES, ServerState, Shared, tokens};
use crate::domain::rules::Refusal;
use crate::store::wire::WireError;
use crate::store::{DecideError, StoreError};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An API error: status plus JSON body.
pub(super) struct ApiError(pub(super) StatusCode, pub(super) Box<WireError>);

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
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

    pub(super) fn refused(r: Refusal) -> ApiError {
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

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// Runs blocking store work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

/// The principal behind the request's bearer token (looked up off the async threads:
/// with a database, the tokens live there).
pub(super) async fn principal(state: &Shared, headers: &HeaderMap) -> ApiResult<String> {
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

pub(super) async fn read_body(s: &ServerState, body: Body) -> ApiResult<axum::body::Bytes> {
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

pub(super) fn etag(headers: &HeaderMap, head: &crate::store::Head) -> (HeaderValue, bool) {
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

/// A JSON body written as it was built (the queue's cached rows are already JSON), with
/// its ETag.
pub(super) fn json_response(tag: axum::http::HeaderValue, body: impl Into<Body>) -> Response {
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

/// The server's clock: what receipt times are judged by (`TOLLGATE_NOW` for drills).
pub(super) fn server_now() -> chrono::DateTime<chrono::Utc> {
    crate::clock::now_or_system()
}
