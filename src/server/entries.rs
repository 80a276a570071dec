//! The write endpoints for submissions, decisions and CI evidence. A signed entry is
//! never taken on the client's word: its signature is checked against the keyring of the
//! policy in force, its signer must be the token's principal, and the server re-derives
//! every fact and re-applies every rule inside the store's write transaction.

use super::api::{ApiError, ApiResult, blocking, principal, read_body, server_now};
use super::{InForce, ServerState, Shared};
use crate::audit::canonical::{sha256_digest, to_canonical_string};
use crate::audit::keys::{Keyring, SignatureError};
use crate::audit::log::{DecisionRecord, EntryKind, LogEntry};
use crate::audit::policy_log::AdoptionRecord;
use crate::audit::record_rules::RevisionFacts;
use crate::domain::change_request::{Gate, parse_document};
use crate::domain::rules::{Proposal, Refusal, check_decision};
use crate::domain::status::evaluate_in;
use crate::store::wire::WireSignedEntry;
use crate::store::{Appended, DecideError, DecisionEntries, NewEntry, StoreError, Submission};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub(super) async fn submit(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
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

/// The body without its chain position: what makes two deliveries "the same entry".
pub fn content_digest(body: &str) -> Option<String> {
    let mut v: Value = serde_json::from_str(body).ok()?;
    let obj = v.as_object_mut()?;
    obj.remove("seq");
    obj.remove("prev");
    Some(sha256_digest(to_canonical_string(&v).as_bytes()))
}

pub(super) fn find_duplicate<'a>(existing: &'a [LogEntry], body: &str) -> Option<&'a LogEntry> {
    let want = content_digest(body)?;
    existing
        .iter()
        .find(|e| content_digest(&e.body).as_deref() == Some(want.as_str()))
}

/// Checks what every signed entry must satisfy before any rule: the signer is the token's
/// principal, a principal of the policy in force, and the signature verifies against that
/// policy's keys. A key listed only in the file beside the store is refused by name.
pub(super) fn check_signed(
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

/// The token's principal and the signed entry a POST carries: what every endpoint that
/// appends a client's entry reads first.
pub(super) async fn signed_entry(
    s: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<(String, WireSignedEntry)> {
    let who = principal(s, headers).await?;
    let bytes = read_body(s, body).await?;
    Ok((who, parse_entry(&bytes)?))
}

pub(super) fn parse_entry(bytes: &[u8]) -> ApiResult<WireSignedEntry> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("expected {{kind, body, signature, principal}}: {e}"),
        )
    })
}

pub(super) fn refusal(rule: &'static str, message: String, remedy: &str) -> DecideError {
    DecideError::Refused(Refusal {
        rule,
        message,
        remedy: remedy.into(),
    })
}

/// The principal of the policy in force behind `who`, or a refusal naming the version.
pub(super) fn principal_in_force(
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
pub(super) fn adoption_after(
    s: &ServerState,
    e: &LogEntry,
) -> Result<Option<LogEntry>, StoreError> {
    Ok(s.store
        .log_entries(e.seq, 1)?
        .into_iter()
        .next()
        .filter(|n| n.kind == EntryKind::PolicyAdopted.as_str() && n.cr_id == e.cr_id))
}

pub(super) async fn post_decision(
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

/// CI's signed evidence on a CR's current revision: the signer must hold `ci`, the
/// record must name the revision the server holds, and its time must be plausible.
pub(super) async fn post_evidence(
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
