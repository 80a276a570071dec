//! `POST /v1/sources/mlflow/webhook`: MLflow's registry webhooks, checked (signature,
//! timestamp, a delivery id never seen by any replica) before the version they name is
//! read from MLflow and imported like `--source` would.

use super::api::{ApiError, ApiResult, blocking, read_body, server_now};
use super::{ServerState, Shared};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What the MLflow webhook endpoint needs: the registry to read a version from, how
/// versions are marked, and the secret deliveries are signed with (the deliveries seen
/// are in the store, shared by the replicas).
pub struct MlflowReceiver {
    pub(super) client: crate::sources::mlflow::Client,
    pub(super) convention: crate::sources::mlflow::Convention,
    pub(super) secret: String,
}

/// A delivery from MLflow's webhooks: authenticated by its HMAC (no bearer token: MLflow
/// cannot send one), fresh and never seen before; a version event imports that version at
/// once, with the same mapping and validation as `--source`.
pub(super) async fn mlflow_webhook(
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
pub(super) fn import_delivered(
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
