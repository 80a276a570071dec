//! Queue rows a long-running reader (the team server) keeps in memory by CR, under the
//! key each was read with.
//!
//! A whole-queue answer over 10,000 CRs moves 11 MB of rows out of the store, and almost
//! all of them are the rows the previous answer moved: a decision changes one CR's key.
//! With this memory the reader asks the store for every CR's key (a few bytes each) and
//! only for the rows whose key it has not seen. A row is used only under the key the
//! store names for its CR now — revision, last log entry, policy in force, build — and a
//! row is a function of that key, so the memory can never show what the log does not say
//! (a forged row reads as any cached row would: `verify` names it). Derived data, kept
//! per process: every replica keeps its own, and losing it costs one full read.

use crate::store::Summary;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// How much row text is kept; past it, new rows are read from the store each time
/// (about 200,000 CRs' rows fit).
const LIMIT_BYTES: usize = 256 << 20;

/// The rows read so far, by CR id.
#[derive(Default)]
pub struct RowMemory {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rows: HashMap<String, Kept>,
    bytes: usize,
}

/// One CR's summary and whether its table cells were read with it.
struct Kept {
    summary: Summary,
    with_cells: bool,
}

fn size(s: &Summary) -> usize {
    // The row and cells are shared with the answers; counted here all the same.
    s.cr_id.len()
        + s.basis.len()
        + s.status.len()
        + s.risk.len()
        + s.created_at.len()
        + s.row.len()
        + s.cells.len()
        + 128
}

impl RowMemory {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Derived data only: a panic mid-update leaves at worst a row read again.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The row of `cr_id` kept under `basis`, with its cells unless `without_cells`.
    pub fn get(&self, cr_id: &str, basis: &str, without_cells: bool) -> Option<Summary> {
        let inner = self.lock();
        let kept = inner.rows.get(cr_id)?;
        if kept.summary.basis != basis || !(without_cells || kept.with_cells) {
            return None;
        }
        let mut s = kept.summary.clone();
        if without_cells {
            s.cells = "".into();
        }
        Some(s)
    }

    /// Keeps rows read from the store or computed (`with_cells`: their cells are in).
    pub fn put(&self, rows: &[Summary], with_cells: bool) {
        let mut inner = self.lock();
        for s in rows {
            let bytes = size(s);
            let old = inner.rows.get(&s.cr_id).map(|k| size(&k.summary));
            if old.is_none() && inner.bytes + bytes > LIMIT_BYTES {
                continue;
            }
            inner.bytes = inner.bytes + bytes - old.unwrap_or(0);
            inner.rows.insert(
                s.cr_id.clone(),
                Kept {
                    summary: s.clone(),
                    with_cells,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, basis: &str, cells: &str) -> Summary {
        Summary {
            cr_id: id.into(),
            basis: basis.into(),
            status: "pending".into(),
            risk: "low".into(),
            created_at: "2026-11-25T10:00:00Z".into(),
            row: format!("{{\"id\":\"{id}\"}}").into(),
            cells: cells.into(),
        }
    }

    #[test]
    fn a_row_is_used_only_under_the_key_it_was_read_with() {
        let m = RowMemory::default();
        m.put(&[row("CR-1", "rev 1 · log 2", "[\"c\"]")], true);
        assert_eq!(
            &*m.get("CR-1", "rev 1 · log 2", false).unwrap().cells,
            "[\"c\"]"
        );
        assert_eq!(&*m.get("CR-1", "rev 1 · log 2", true).unwrap().cells, "");
        assert!(
            m.get("CR-1", "rev 1 · log 3", true).is_none(),
            "the key moved"
        );
        assert!(m.get("CR-2", "rev 1 · log 2", true).is_none());
        // Read without cells: not enough for a reader of cells.
        m.put(&[row("CR-2", "rev 1 · log 4", "")], false);
        assert!(m.get("CR-2", "rev 1 · log 4", false).is_none());
        assert!(m.get("CR-2", "rev 1 · log 4", true).is_some());
        // A newer key replaces the row.
        m.put(&[row("CR-1", "rev 2 · log 5", "[]")], true);
        assert!(m.get("CR-1", "rev 1 · log 2", true).is_none());
        assert!(m.get("CR-1", "rev 2 · log 5", true).is_some());
    }
}
