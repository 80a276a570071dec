//! Reading stored rows back, the same way for every database: a revision is only shown
//! when its document still hashes to the digest its log entry recorded, and its
//! provenance is read from the log, never from the row.

use super::{StoreError, StoredCr, StoredRevision, typed_view};
use crate::audit::canonical::digest;
use crate::audit::log::DecisionRecord;
use crate::domain::decision::Decision;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use std::path::Path;

/// One stored revision as read: the row, and from the log its submission entry and the
/// evidence entries on its CR (a JSON array of bodies).
pub(crate) struct RevisionRow {
    pub id: String,
    pub revision: u32,
    pub digest: String,
    pub document: String,
    pub submitted_at: String,
    pub count: u32,
    pub first_submitted_at: String,
    pub entry: Option<String>,
    pub evidence: Option<String>,
}

/// How times are stored: RFC 3339 with microseconds, UTC.
pub(crate) fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A stored timestamp that is not RFC 3339 (the store was written by something else).
#[derive(Debug, thiserror::Error)]
#[error("bad timestamp {text:?}: {source}")]
pub(crate) struct BadTime {
    text: String,
    #[source]
    source: chrono::ParseError,
}

pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>, BadTime> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|source| BadTime {
            text: s.to_string(),
            source,
        })
}

/// A stored revision, re-validated: its document must still hash to the digest its log
/// entry recorded (a rewritten row is refused, not shown), and its provenance is read
/// from that entry and the evidence entries on the CR. `location` names the store in
/// the error.
pub(crate) fn read_revision(
    location: &Path,
    row: RevisionRow,
) -> Result<StoredRevision, StoreError> {
    let RevisionRow {
        id,
        revision,
        digest: digest_text,
        document,
        submitted_at,
        entry,
        evidence,
        ..
    } = row;
    let corrupt = |detail: String| StoreError::Corrupt {
        path: location.into(),
        id: id.clone(),
        revision,
        detail,
    };
    let value: Value =
        serde_json::from_str(&document).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    let actual = digest(&value);
    let entry: Value = entry
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or_else(|| corrupt("no log entry records this revision".into()))?;
    if actual != digest_text || entry["digest"].as_str() != Some(actual.as_str()) {
        return Err(corrupt(format!(
            "its content hashes to {actual}, but its log entry recorded {}: the stored revision was rewritten",
            entry["digest"].as_str().unwrap_or("nothing")
        )));
    }
    let mut cr = typed_view(&value).map_err(|e| corrupt(e.to_string()))?;
    if cr.id != id {
        return Err(corrupt(format!(
            "document id {} differs from its row",
            cr.id
        )));
    }
    let attested = evidence
        .as_deref()
        .and_then(|a| serde_json::from_str::<Vec<String>>(a).ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|body| crate::audit::evidence::EvidenceRecord::parse(body).ok())
        .filter(|r| r.cr_digest == actual)
        .filter_map(|r| r.attested().ok())
        .collect();
    cr.provenance = crate::domain::provenance::Provenance {
        submitter: crate::domain::provenance::Submitter::from_recorded(entry["submitter"].as_str()),
        attested,
    };
    Ok(StoredRevision {
        cr,
        document: value,
        revision,
        digest: digest_text,
        submitted_at: parse_time(&submitted_at).map_err(|e| corrupt(e.to_string()))?,
    })
}

/// A current CR read from its row, re-validated as [`read_revision`] does.
pub(crate) fn stored_cr(location: &Path, row: RevisionRow) -> Result<StoredCr, StoreError> {
    let first_submitted_at =
        parse_time(&row.first_submitted_at).map_err(|detail| StoreError::Corrupt {
            path: location.into(),
            id: row.id.clone(),
            revision: row.revision,
            detail: detail.to_string(),
        })?;
    let count = row.count;
    Ok(StoredCr {
        current: read_revision(location, row)?,
        revision_count: count,
        first_submitted_at,
    })
}

/// Reads many rows on every core: parsing and re-validating documents is the expensive
/// part of a page.
pub(crate) fn stored_crs(
    location: &Path,
    rows: Vec<RevisionRow>,
) -> Result<Vec<StoredCr>, StoreError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = rows.len().div_ceil(threads).max(1);
    let mut chunks: Vec<Vec<RevisionRow>> = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let tail = rest.split_off(chunk.min(rest.len()));
        chunks.push(std::mem::replace(&mut rest, tail));
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    part.into_iter()
                        .map(|row| stored_cr(location, row))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out.into_iter().collect()
    })
}

/// A decision entry's body read back as a decision; a body that does not read is damage.
pub(crate) fn parse_decision(
    location: &Path,
    seq: u64,
    body: &str,
) -> Result<Decision, StoreError> {
    DecisionRecord::parse(body)
        .and_then(|r| r.to_decision())
        .map_err(|detail| StoreError::Corrupt {
            path: location.into(),
            id: format!("log entry {seq}"),
            revision: 0,
            detail: detail.to_string(),
        })
}

/// A stored time that does not read, as damage at `id`.
pub(crate) fn corrupt_time(
    location: &Path,
    id: String,
    revision: u32,
) -> impl FnOnce(BadTime) -> StoreError {
    let path = location.to_path_buf();
    move |detail| StoreError::Corrupt {
        path,
        id,
        revision,
        detail: detail.to_string(),
    }
}
