//! `POST /v1/emergency`: the operations entries (emergency authorisations and rollback
//! outcomes, post-incident reviews, rollout stages, KPI readings, drills), each held to
//! the rules of the policy in force at the head it was signed against.

use super::Shared;
use super::api::{ApiError, ApiResult, blocking, server_now};
use super::entries::{check_signed, find_duplicate, principal_in_force, refusal, signed_entry};
use crate::audit::log::EntryKind;
use crate::store::{DecideError, NewEntry};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub(super) async fn post_emergency(
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
pub(super) enum OperationClaim {
    /// An emergency record.
    Emergency(crate::domain::emergency::Claim),
    /// A rollout stage, KPI reading or drill, with the policy digest it names.
    After(crate::audit::rollout::Claim, String),
}
