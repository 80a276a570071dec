//! The queue's one projection of an evaluated change request, shared by `list --json`,
//! `show --json` and the team server's `GET /v1/queue` (documented in
//! `docs/json-output.md`; fields are only ever added, never renamed or removed).

use crate::domain::change_request::{Gate, Subject};
use crate::domain::checklist::CheckCounts;
use crate::domain::risk::RiskAssessment;
use crate::domain::status::{CountedDecisions, Evaluation, Status};
use crate::domain::text::{compact_age, sanitize, truncate};
use crate::store::{StoredCr, StoredRevision};
use crate::workflow::row_memory::RowMemory;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;

/// Sign-offs in short: enough for a queue column.
#[derive(Debug, Serialize)]
pub struct SignoffSummary<'a> {
    /// Slots the policy requires.
    pub required: usize,
    /// Slots filled by distinct, valid approvals on the current revision.
    pub obtained: usize,
    /// Roles still waiting.
    pub missing_roles: Vec<&'a str>,
}

/// One row of the queue: `list --json`, the server's `GET /v1/queue`, and the summary
/// fields of `show --json` — one projection, so the three never drift apart.
#[derive(Debug, Serialize)]
pub struct QueueEntry<'a> {
    /// CR id.
    pub id: &'a str,
    /// Current revision number.
    pub revision: u32,
    /// Digest of the current revision.
    pub digest: &'a str,
    /// Gate.
    pub gate: Gate,
    /// Title (raw; sanitise before printing to a terminal).
    pub title: &'a str,
    /// What changes.
    pub subject: &'a Subject,
    /// Requester principal id.
    pub requester: &'a str,
    /// When the requester created the CR.
    pub created_at: DateTime<Utc>,
    /// When tollgate first stored it.
    pub first_submitted_at: DateTime<Utc>,
    /// Derived status.
    pub status: Status,
    /// Computed, declared and effective risk with reasons.
    pub risk: &'a RiskAssessment,
    /// Sign-offs required vs obtained.
    pub signoffs: SignoffSummary<'a>,
    /// CI evidence counts.
    pub checks: CheckCounts,
    /// Whether a blocking CI check fails (the CR must change before approval).
    pub blocked: bool,
    /// Whether blocking CI evidence is still pending or missing.
    pub awaiting_evidence: bool,
    /// Every blocking automated item that prevents approval now (and any missing required
    /// artifact, and a stale policy proposal).
    pub blockers: &'a [String],
    /// Artifact kinds the policy requires at this gate and risk that the CR does not link.
    pub missing_artifacts: &'a [String],
    /// For a policy change proposed against a policy no longer in force: why it can no
    /// longer be adopted (null otherwise).
    pub stale_proposal: Option<&'a str>,
    /// Who approved the current revision (decisions that count): what "needs my
    /// sign-off" is worked out from.
    pub approved_by: Vec<&'a str>,
    /// When the latest decision that counts was signed.
    pub last_decided_at: Option<DateTime<Utc>>,
}

impl<'a> QueueEntry<'a> {
    /// Builds the row for `cr` from its evaluation.
    pub fn new(cr: &'a StoredCr, e: &'a Evaluation) -> Self {
        Self::for_revision(&cr.current, cr.first_submitted_at, e)
    }

    /// Builds the row for one stored revision (`show --revision` shows an older one).
    pub fn for_revision(
        rev: &'a StoredRevision,
        first_submitted_at: DateTime<Utc>,
        e: &'a Evaluation,
    ) -> Self {
        QueueEntry {
            id: &rev.cr.id,
            revision: rev.revision,
            digest: &rev.digest,
            gate: rev.cr.gate,
            title: &rev.cr.title,
            subject: &rev.cr.subject,
            requester: &rev.cr.requester,
            created_at: rev.cr.created_at,
            first_submitted_at,
            status: e.status,
            risk: &e.risk,
            signoffs: SignoffSummary {
                required: e.signoffs.required(),
                obtained: e.signoffs.obtained(),
                missing_roles: e.signoffs.missing_roles(),
            },
            checks: e.checks,
            blocked: e.blocked,
            awaiting_evidence: e.awaiting_evidence,
            blockers: &e.blockers,
            missing_artifacts: &e.missing_artifacts,
            stale_proposal: e.stale_proposal.as_deref(),
            approved_by: e
                .counted
                .iter()
                .filter(|d| d.verdict == crate::domain::decision::Verdict::Approve)
                .map(|d| d.principal.as_str())
                .collect(),
            last_decided_at: e.counted.iter().map(|d| d.at).max(),
        }
    }
}

// The queue row's words, the same for every face (the cache keeps one set of cells).

/// `high` or `high (declared medium)` when the two differ.
pub fn risk_label(r: &RiskAssessment) -> String {
    if r.computed == r.declared {
        r.effective.to_string()
    } else {
        format!("{} (declared {})", r.computed, r.declared)
    }
}

/// `✓4 ✗1 …1 ?1`, leaving out zero counts; `-` when there is no evidence at all.
pub fn check_summary(c: &CheckCounts) -> String {
    let parts: Vec<String> = [
        ("✓", c.pass),
        ("✗", c.fail),
        ("…", c.pending),
        ("?", c.missing),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(sym, n)| format!("{sym}{n}"))
    .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// ` (blocked)` when a blocking check fails, ` (awaiting CI)` when blocking evidence is
/// pending or missing; empty otherwise.
pub fn condition(e: &Evaluation) -> &'static str {
    if e.blocked {
        " (blocked)"
    } else if e.awaiting_evidence {
        " (awaiting CI)"
    } else {
        ""
    }
}

/// One queue row's cells, made as the row is read (so `list` keeps cells, not documents).
pub fn queue_cells(cr: &StoredCr, e: &Evaluation, now: DateTime<Utc>) -> [String; 8] {
    let c = &cr.current.cr;
    let status = format!("{}{}", e.status, condition(e));
    [
        sanitize(&c.id),
        c.gate.to_string(),
        risk_label(&e.risk),
        status,
        format!("{}/{}", e.signoffs.obtained(), e.signoffs.required()),
        check_summary(&e.checks),
        compact_age(c.created_at, now),
        truncate(&sanitize(&c.title), 60),
    ]
}

/// The queue as summaries, a page at a time, in id order (optionally at one gate): cached
/// summaries whose basis still holds are used as they are; the others are evaluated from
/// their documents and cached for the next reader. A store without a cache is evaluated
/// page by page.
pub struct SummaryPages<'a> {
    store: &'a dyn crate::store::Store,
    book: &'a crate::domain::policy_book::PolicyBook,
    gate: Option<Gate>,
    page: usize,
    /// Every decision, read once when first needed by a store that cannot read a range
    /// of CRs' decisions, and the log position read just before it.
    decisions: Option<Decided>,
    after: Option<String>,
    done: bool,
    /// Only CRs with this status / effective risk (`None`: all).
    status: Option<String>,
    risk: Option<String>,
    /// The shared part of a current summary's key (policy in force, build).
    suffix: String,
    /// Rows only (see [`Self::without_cells`]).
    without_cells: bool,
    /// Rows kept by a long-running reader (see [`Self::remembering`]).
    memory: Option<&'a RowMemory>,
}

/// Each slot's key as a fresh summary would have it (worked out once per page).
fn bases(slots: &[crate::store::SummarySlot], suffix: &str) -> Vec<String> {
    slots
        .iter()
        .map(|s| crate::store::summary_basis(s.revision, s.last_seq, suffix))
        .collect()
}

/// Decisions by CR id, and the log position read just before them (every decision up to
/// there is in it).
type Decided = (u64, HashMap<String, Vec<crate::domain::decision::Decision>>);

/// A page size that keeps memory at a page's worth of documents when recomputing.
const SUMMARY_PAGE: usize = 2_000;

impl<'a> SummaryPages<'a> {
    /// The queue of `store` under `book` (only `gate`'s CRs when given).
    pub fn new(
        store: &'a dyn crate::store::Store,
        book: &'a crate::domain::policy_book::PolicyBook,
        gate: Option<Gate>,
    ) -> Self {
        SummaryPages {
            store,
            book,
            gate,
            page: SUMMARY_PAGE,
            decisions: None,
            after: None,
            done: false,
            status: None,
            risk: None,
            suffix: crate::store::basis_suffix(book.current().seq),
            without_cells: false,
            memory: None,
        }
    }

    /// Uses and fills `memory`: each CR's key is read from the store, its row only when
    /// `memory` holds none under that key (the team server, which answers the same
    /// queue again and again). The store's own filters are not used then.
    pub fn remembering(mut self, memory: &'a RowMemory) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Only the CRs with `status` (`pending`, …) and effective `risk` (`None`: any): the
    /// store leaves out what its current cache rules out, the rest is checked here.
    pub fn only(mut self, status: Option<&str>, risk: Option<&str>) -> Self {
        self.status = status.map(str::to_string);
        self.risk = risk.map(str::to_string);
        self
    }

    /// Leaves each row's table cells out (empty): for readers of rows only.
    pub fn without_cells(mut self) -> Self {
        self.without_cells = true;
        self
    }

    fn query<'q>(&'q self, after: Option<&'q str>) -> crate::store::SummaryQuery<'q> {
        crate::store::SummaryQuery {
            after,
            limit: self.page,
            gate: self.gate,
            status: self.status.as_deref(),
            risk: self.risk.as_deref(),
            basis_suffix: &self.suffix,
            without_cells: self.without_cells,
        }
    }

    fn wanted(&self, s: &crate::store::Summary) -> bool {
        self.status.as_deref().is_none_or(|x| x == s.status)
            && self.risk.as_deref().is_none_or(|x| x == s.risk)
    }

    /// Starts after the CR `id` (paging, as the server does).
    pub fn after(mut self, id: Option<String>) -> Self {
        self.after = id;
        self
    }

    /// Reads `n` CRs per page (a first screenful reads a screenful).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page = n.max(1);
        self
    }

    /// The decisions each CR of `todo` is evaluated with (only those that count: see
    /// [`CountedDecisions`]), read in one pass over the page's range of ids, and the log
    /// position read just before them. A store that cannot read a range has every
    /// decision read once instead (kept for the next pages).
    fn decisions_for(
        &mut self,
        todo: &[(usize, &StoredCr, String, u64)],
    ) -> Result<Option<Decided>, crate::store::StoreError> {
        let ids = || todo.iter().map(|(_, cr, ..)| cr.current.cr.id.as_str());
        let (Some(first), Some(last)) = (ids().min(), ids().max()) else {
            return Ok(None);
        };
        if self.decisions.is_none() {
            let head = self.store.recorded_head()?.seq;
            let mut folds: HashMap<&str, CountedDecisions<'_>> = todo
                .iter()
                .map(|(_, cr, ..)| {
                    let c = &cr.current;
                    (
                        c.cr.id.as_str(),
                        CountedDecisions::new(&c.cr, &c.digest, self.book),
                    )
                })
                .collect();
            let ranged = self.store.each_decision_between(first, last, &mut |d| {
                if let Some(f) = folds.get_mut(d.cr_id.as_str()) {
                    f.push(d);
                }
            })?;
            if ranged {
                let counted = folds
                    .into_iter()
                    .map(|(id, f)| (id.to_string(), f.into_vec()))
                    .collect();
                return Ok(Some((head, counted)));
            }
            self.decisions = Some((head, self.store.all_decisions()?));
        }
        Ok(None)
    }

    /// [`Self::summarise`] over `todo` (position, CR, basis, last log entry), split
    /// across the cores.
    fn summarise_all(
        &mut self,
        todo: &[(usize, &StoredCr, String, u64)],
    ) -> Result<Vec<crate::store::Summary>, crate::store::StoreError> {
        let ranged = self.decisions_for(todo)?;
        let decided = ranged.as_ref().or(self.decisions.as_ref());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = todo.len().div_ceil(threads).max(1);
        let this = &*self;
        std::thread::scope(|scope| {
            let handles: Vec<_> = todo
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(_, cr, basis, last)| {
                                this.summarise(cr, basis.clone(), *last, decided)
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(todo.len());
            for h in handles {
                match h.join() {
                    Ok(part) => all.extend(part?),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Ok(all)
        })
    }

    /// Evaluates `cr` and keys the result to `basis`, the state its slot was read in
    /// (`last_seq` the slot's last log entry): what is cached must be at least as new as
    /// its key, so when `decided` was read before that entry this CR's are read again.
    fn summarise(
        &self,
        cr: &StoredCr,
        basis: String,
        last_seq: u64,
        decided: Option<&Decided>,
    ) -> Result<crate::store::Summary, crate::store::StoreError> {
        let fresh;
        let mine = match decided {
            Some((read_at, all)) if last_seq <= *read_at => {
                all.get(&cr.current.cr.id).map(Vec::as_slice).unwrap_or(&[])
            }
            _ => {
                fresh = self.store.decisions(&cr.current.cr.id)?;
                fresh.as_slice()
            }
        };
        let e =
            crate::domain::status::evaluate_in(&cr.current.cr, &cr.current.digest, mine, self.book);
        let row = serde_json::to_string(&QueueEntry::new(cr, &e)).unwrap_or_default();
        let cells =
            serde_json::to_string(&queue_cells(cr, &e, chrono::Utc::now())).unwrap_or_default();
        Ok(crate::store::Summary {
            cr_id: cr.current.cr.id.clone(),
            basis,
            status: e.status.as_str().to_string(),
            risk: e.risk.effective.as_str().to_string(),
            created_at: cr.current.cr.created_at.to_rfc3339(),
            row: row.into(),
            cells: cells.into(),
        })
    }

    fn documents(&self, after: Option<&str>) -> Result<Vec<StoredCr>, crate::store::StoreError> {
        match self.gate {
            Some(g) => self.store.list_page_at_gate(after, self.page, g),
            None => self.store.list_page(after, self.page),
        }
    }

    /// The page's documents after `after`, by CR id.
    fn documents_by_id(
        &self,
        after: Option<&str>,
    ) -> Result<HashMap<String, StoredCr>, crate::store::StoreError> {
        Ok(self
            .documents(after)?
            .into_iter()
            .map(|c| (c.current.cr.id.clone(), c))
            .collect())
    }

    /// The documents of the `stale` CRs of the page after `after`: the page's, read by
    /// range, when many are stale (the first listing, a policy adoption); one by one when
    /// a few are (a decision moved them).
    fn stale_documents(
        &self,
        after: Option<&str>,
        stale: &[&str],
    ) -> Result<HashMap<String, StoredCr>, crate::store::StoreError> {
        let mut docs = if stale.len() < self.page / 8 {
            HashMap::new()
        } else {
            self.documents_by_id(after)?
        };
        for id in stale {
            if !docs.contains_key(*id)
                && let Some(cr) = self.store.get(id)?
            {
                docs.insert(id.to_string(), cr);
            }
        }
        Ok(docs)
    }

    /// Evaluates the CRs at positions `stale` of `slots` from `docs` into `out` (on every
    /// core) and caches those keyed to their slot, which it returns. A CR without a
    /// document was submitted between the two reads: it is in the next listing.
    fn evaluate_into(
        &mut self,
        slots: &[crate::store::SummarySlot],
        bases: &[String],
        stale: &[usize],
        docs: &HashMap<String, StoredCr>,
        out: &mut [Option<crate::store::Summary>],
    ) -> Result<Vec<crate::store::Summary>, crate::store::StoreError> {
        let mut todo: Vec<(usize, &StoredCr, String, u64)> = Vec::new();
        for &i in stale {
            let slot = &slots[i];
            let Some(cr) = docs.get(&slot.cr_id) else {
                continue;
            };
            // The document read may be newer than the slot: key it to what was read.
            let basis = if cr.current.revision == slot.revision {
                bases[i].clone()
            } else {
                String::new()
            };
            todo.push((i, cr, basis, slot.last_seq));
        }
        let computed = self.summarise_all(&todo)?;
        let mut fresh = Vec::new();
        for ((i, ..), s) in todo.iter().zip(computed) {
            if !s.basis.is_empty() {
                fresh.push(s.clone());
            }
            out[*i] = Some(s);
        }
        // Best effort: a reader that cannot write the cache still lists.
        let _ = self.store.put_summaries(&fresh);
        Ok(fresh)
    }

    /// [`Self::next_page`] for a reader that keeps rows (see [`RowMemory`]): every CR's
    /// key from the store, the rows kept under those keys from memory, the others from
    /// the store's cache, the rest evaluated. `None` when the store keeps no cache.
    fn next_page_remembered(
        &mut self,
        memory: &RowMemory,
    ) -> Result<Option<Vec<crate::store::Summary>>, crate::store::StoreError> {
        let after = self.after.clone();
        let Some(keys) = self
            .store
            .summary_keys(after.as_deref(), self.page, self.gate)?
        else {
            return Ok(None);
        };
        self.after = keys.last().map(|s| s.cr_id.clone());
        let bases = bases(&keys, &self.suffix);
        let mut out: Vec<Option<crate::store::Summary>> = keys
            .iter()
            .zip(&bases)
            .map(|(k, basis)| memory.get(&k.cr_id, basis, self.without_cells))
            .collect();
        let unread: Vec<&str> = keys
            .iter()
            .zip(&out)
            .filter(|(_, kept)| kept.is_none())
            .map(|(k, _)| k.cr_id.as_str())
            .collect();
        if !unread.is_empty() {
            let mut found: HashMap<String, crate::store::Summary> = self
                .store
                .summaries_of(&unread, self.without_cells)?
                .into_iter()
                .map(|s| (s.cr_id.clone(), s))
                .collect();
            let mut read = Vec::new();
            let mut stale = Vec::new();
            for (i, (k, basis)) in keys.iter().zip(&bases).enumerate() {
                if out[i].is_some() {
                    continue;
                }
                match found.remove(&k.cr_id) {
                    Some(c) if usable(&c, basis) => {
                        read.push(c.clone());
                        out[i] = Some(c);
                    }
                    _ => stale.push(i),
                }
            }
            memory.put(&read, !self.without_cells);
            if !stale.is_empty() {
                let ids: Vec<&str> = stale.iter().map(|i| keys[*i].cr_id.as_str()).collect();
                let docs = self.stale_documents(after.as_deref(), &ids)?;
                let fresh = self.evaluate_into(&keys, &bases, &stale, &docs, &mut out)?;
                memory.put(&fresh, true);
            }
        }
        let without_cells = self.without_cells;
        Ok(Some(
            out.into_iter()
                .flatten()
                .filter(|s| self.wanted(s))
                .map(|mut s| {
                    if without_cells {
                        s.cells = "".into();
                    }
                    s
                })
                .collect(),
        ))
    }

    fn next_page(&mut self) -> Result<Vec<crate::store::Summary>, crate::store::StoreError> {
        if let Some(memory) = self.memory
            && let Some(rows) = self.next_page_remembered(memory)?
        {
            return Ok(rows);
        }
        let after = self.after.clone();
        let Some(mut slots) = self.store.summary_page(&self.query(after.as_deref()))? else {
            // No cache: evaluate the page from its documents.
            let docs = self.documents(after.as_deref())?;
            self.after = docs.last().map(|c| c.current.cr.id.clone());
            let todo: Vec<(usize, &StoredCr, String, u64)> =
                docs.iter().map(|cr| (0, cr, String::new(), 0)).collect();
            let mut rows = self.summarise_all(&todo)?;
            rows.retain(|s| self.wanted(s));
            return Ok(rows);
        };
        self.after = slots.last().map(|s| s.cr_id.clone());
        let bases = bases(&slots, &self.suffix);
        // Rows whose key holds are used as they are; the others' documents are read,
        // evaluated (on every core) and cached.
        let mut out: Vec<Option<crate::store::Summary>> = Vec::with_capacity(slots.len());
        let mut stale = Vec::new();
        for (i, (slot, basis)) in slots.iter_mut().zip(&bases).enumerate() {
            match slot.cached.take() {
                Some(c) if usable(&c, basis) => out.push(Some(c)),
                _ => {
                    stale.push(i);
                    out.push(None);
                }
            }
        }
        if !stale.is_empty() {
            let ids: Vec<&str> = stale.iter().map(|i| slots[*i].cr_id.as_str()).collect();
            let docs = self.stale_documents(after.as_deref(), &ids)?;
            self.evaluate_into(&slots, &bases, &stale, &docs, &mut out)?;
        }
        Ok(out
            .into_iter()
            .flatten()
            .filter(|s| self.wanted(s))
            .collect())
    }
}

/// Whether a cached row may be used for a CR whose key is now `basis`. Raw control bytes
/// never occur in JSON this code writes: such a row was written by something else and is
/// computed again.
fn usable(c: &crate::store::Summary, basis: &str) -> bool {
    c.basis == basis && !has_control_byte(&c.row) && !has_control_byte(&c.cells)
}

/// Whether `text` holds a byte below 0x20 (checked 32 bytes at a time, a minimum the
/// compiler vectorises: the queue checks every cached row it reuses).
fn has_control_byte(text: &str) -> bool {
    text.as_bytes()
        .chunks(32)
        .any(|c| c.iter().fold(u8::MAX, |m, &b| m.min(b)) < 0x20)
}

impl SummaryPages<'_> {
    /// Recomputes every cached summary whose key still holds and returns the CRs whose
    /// cached row or cells differ (forged, or written by a faulty build): what `verify`
    /// names, since `list` trusts a row whose key holds. The age cell is left out (it is
    /// worked out when shown).
    pub fn check(mut self) -> Result<Vec<String>, crate::store::StoreError> {
        let mut differ = Vec::new();
        loop {
            let after = self.after.clone();
            let Some(slots) = self.store.summary_page(&crate::store::SummaryQuery {
                // Every row is checked, whatever the reader filters on.
                status: None,
                risk: None,
                ..self.query(after.as_deref())
            })?
            else {
                return Ok(differ);
            };
            let Some(last) = slots.last() else {
                return Ok(differ);
            };
            self.after = Some(last.cr_id.clone());
            // Only rows whose key holds are trusted by a reader: nothing else to check.
            let bases = bases(&slots, &self.suffix);
            let trusted = slots
                .iter()
                .zip(&bases)
                .any(|(s, basis)| s.cached.as_ref().is_some_and(|c| c.basis == *basis));
            if !trusted {
                continue;
            }
            let docs = self.documents_by_id(after.as_deref())?;
            let mut held = Vec::new();
            let mut todo = Vec::new();
            for (slot, basis) in slots.into_iter().zip(bases) {
                let (Some(cached), Some(cr)) = (slot.cached, docs.get(&slot.cr_id)) else {
                    continue;
                };
                if cached.basis != basis || cr.current.revision != slot.revision {
                    continue;
                }
                todo.push((held.len(), cr, basis, slot.last_seq));
                held.push(cached);
            }
            // Re-derived on every core, then compared field by field.
            let cells = |s: &str| {
                let mut c: Vec<String> = serde_json::from_str(s).unwrap_or_default();
                if c.len() > 6 {
                    c[6].clear();
                }
                c
            };
            for (cached, fresh) in held.into_iter().zip(self.summarise_all(&todo)?) {
                if fresh.row != cached.row
                    || fresh.status != cached.status
                    || fresh.risk != cached.risk
                    || fresh.created_at != cached.created_at
                    || cells(&fresh.cells) != cells(&cached.cells)
                {
                    differ.push(cached.cr_id);
                }
            }
        }
    }
}

impl Iterator for SummaryPages<'_> {
    type Item = Result<Vec<crate::store::Summary>, crate::store::StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let page = self.next_page();
        match &page {
            Ok(rows) if rows.is_empty() && self.after.is_none() => {
                self.done = true;
                return None;
            }
            Err(_) => self.done = true,
            Ok(_) => {}
        }
        if self.after.is_none() {
            self.done = true;
        }
        Some(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_summary_leaves_out_zeros() {
        let c = CheckCounts {
            pass: 1,
            fail: 1,
            pending: 1,
            missing: 0,
        };
        assert_eq!(check_summary(&c), "✓1 ✗1 …1");
        assert_eq!(check_summary(&CheckCounts::default()), "-");
    }
}
