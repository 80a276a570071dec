//! The read endpoints: the policy, the log head (also live, `/v1/watch`), change requests,
//! their revisions, decisions and readings, the queue, the log and what verification and
//! the emergency flow read. Each checks the token first; none changes anything.

use super::api::{ApiError, ApiResult, blocking, etag, json_response, principal, server_now};
use super::{Shared, watch};
use crate::audit::canonical::to_canonical_string;
use crate::store::wire::{WireContext, WireCr, WireRevision};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

/// `GET /v1/watch`: the log head now and each time it moves, as Server-Sent Events.
pub(super) async fn watch_heads(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    principal(&s, &headers).await?;
    let rx = s.heads.subscribe(&s.store);
    let now = blocking({
        let s = s.clone();
        move || Ok(s.store.recorded_head()?)
    })
    .await?;
    let mut response = watch::stream(rx, now, s.keep_alive).into_response();
    // Tell buffering proxies (nginx) to pass each event on at once.
    response
        .headers_mut()
        .insert("X-Accel-Buffering", HeaderValue::from_static("no"));
    Ok(response)
}

pub(super) async fn health(State(s): State<Shared>) -> ApiResult<impl IntoResponse> {
    let head = blocking({
        let s = s.clone();
        move || Ok(s.store.recorded_head()?)
    })
    .await?;
    Ok(axum::Json(json!({ "status": "ok", "head": head })))
}

/// The policy in force: its text, digest, version and the entry that adopted it.
pub(super) async fn policy(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
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
pub(super) async fn policy_history(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<SeqPage>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.policy_entries(p.after.unwrap_or(0))?))).await
}

pub(super) async fn head(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    let head = blocking(move || Ok(s.store.recorded_head()?)).await?;
    Ok(axum::Json(head))
}

/// The log head signed with the server's key (a signed tree head, as transparency logs
/// publish): a monitor stores it elsewhere, and `verify --expect-head HASH` later proves
/// the log still holds that entry, which a same-file check cannot.
pub(super) async fn signed_head(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Response> {
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
pub(super) struct Page {
    after: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn list(
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
pub(super) struct QueueQuery {
    status: Option<String>,
    gate: Option<String>,
    risk: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// The evaluated queue (the same rows as `tollgate list --json`), filtered and paged.
pub(super) async fn queue(
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

pub(super) async fn get_cr(
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

pub(super) async fn revisions(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.revisions(&id)?))).await
}

pub(super) async fn revision(
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

pub(super) async fn context(
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

pub(super) async fn cr_decisions(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.decision_entries(&id)?))).await
}

pub(super) async fn cr_kpi_readings(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.kpi_readings(&id)?))).await
}

/// The approval of a CR as an in-toto attestation in a DSSE envelope, signed with the
/// server's own key (`serve --server-key`).
pub(super) async fn cr_attestation(
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
pub(super) struct SeqPage {
    after: Option<u64>,
    limit: Option<usize>,
}

pub(super) async fn all_decisions(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.all_decisions()?))).await
}

pub(super) async fn decision_summaries(
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

pub(super) async fn submission_times(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.submission_times()?))).await
}

pub(super) async fn requesters(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
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

pub(super) async fn log(
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

pub(super) async fn emergency(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.emergency_entries()?))).await
}

/// CR submissions and revisions after a log position, with the subject each names: what
/// a client needs to know what an emergency rollback left live.
pub(super) async fn subject_changes(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<SeqPage>,
) -> ApiResult<impl IntoResponse> {
    principal(&s, &headers).await?;
    blocking(move || Ok(axum::Json(s.store.subject_changes(p.after.unwrap_or(0))?))).await
}
