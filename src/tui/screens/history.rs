//! The History screen: every decision with its context, filterable and sortable, the
//! log's integrity checked in the background, governance health, and one signed record at
//! a time.

use super::Screen;
use super::cursor::Cursor;
use super::line::FilterKey;
use crate::tui::keymap::{Action, Keymap};
use crossterm::event::KeyEvent;

/// The audit log's integrity, as the History screen shows it.
#[derive(Debug, Clone)]
pub enum Integrity {
    /// Verification is running in the background.
    Verifying,
    /// Finished: the report and how long it took.
    Done(Box<crate::audit::log::VerifyReport>, u128),
    /// Could not run.
    Failed(String),
}

/// History columns one can sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistorySort {
    /// Newest first.
    Time,
    /// Longest lead time first.
    LeadTime,
    /// Highest risk first.
    Risk,
    /// Principal.
    Principal,
    /// CR id.
    Cr,
}

impl HistorySort {
    /// Cycling order.
    pub const ALL: [HistorySort; 5] = [
        HistorySort::Time,
        HistorySort::LeadTime,
        HistorySort::Risk,
        HistorySort::Principal,
        HistorySort::Cr,
    ];

    /// Label.
    pub fn label(self) -> &'static str {
        match self {
            HistorySort::Time => "time",
            HistorySort::LeadTime => "lead time",
            HistorySort::Risk => "risk",
            HistorySort::Principal => "principal",
            HistorySort::Cr => "change request",
        }
    }
}

/// A signed record opened from the history.
#[derive(Debug, Clone)]
pub struct RecordView {
    /// Log position.
    pub seq: u64,
    /// The signed body, pretty-printed.
    pub body: String,
    /// Signature status.
    pub signature: Result<String, crate::tui::data::BadSignature>,
    /// The CR revision it was bound to: title, revision, digest, and whether it is still current.
    pub revision: String,
}

/// The History screen's state.
#[derive(Debug, Clone)]
pub struct HistoryState {
    /// Every decision, oldest first.
    pub data: crate::history::History,
    /// Rows shown (filter and sort applied): decisions and emergency events.
    pub visible: Vec<HistoryRow>,
    /// Selection and window over `visible`.
    pub cursor: Cursor,
    /// Filter expression.
    pub filter: String,
    /// Typing the filter.
    pub filtering: bool,
    /// Why the filter expression is not understood.
    pub filter_error: Option<crate::history::FilterError>,
    /// Sort column.
    pub sort: HistorySort,
    /// Reverse it.
    pub reverse: bool,
    /// Showing governance health instead of the table.
    pub health: bool,
    /// The record opened with enter.
    pub record: Option<RecordView>,
    /// Scroll of the open record (movement keys scroll it while it is open).
    pub record_scroll: super::cursor::Scroll,
    /// Whole-log verification.
    pub integrity: Integrity,
    /// Still loading.
    pub loading: bool,
    /// Screen to go back to.
    pub back_to: Screen,
    /// Finding text in the open record (`/`, `n`, `N`).
    pub find: super::find::Find,
}

/// One row of the History table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRow {
    /// A decision: its index in `data.entries`.
    Decision(usize),
    /// A rollback, its outcome or a review: its index in `data.events`.
    Event(usize),
}

impl HistoryState {
    /// The log position of the selected row.
    pub fn selected_seq(&self) -> Option<u64> {
        match self.visible.get(self.cursor.selected)? {
            HistoryRow::Decision(i) => self.data.entries.get(*i).map(|e| e.seq),
            HistoryRow::Event(i) => self.data.events.get(*i).map(|e| e.seq),
        }
    }

    /// The decisions shown (what the health figures are computed over).
    pub fn shown_decisions(&self) -> Vec<&crate::history::HistoryEntry> {
        self.visible
            .iter()
            .filter_map(|r| match r {
                HistoryRow::Decision(i) => self.data.entries.get(*i),
                HistoryRow::Event(_) => None,
            })
            .collect()
    }

    /// Recomputes `visible` from the filter and sort.
    pub fn refilter(&mut self) {
        let filter = match crate::history::Filter::parse(&self.filter) {
            Ok(f) => {
                self.filter_error = None;
                f
            }
            Err(e) => {
                self.filter_error = Some(e);
                return;
            }
        };
        let (entries, events) = (&self.data.entries, &self.data.events);
        let mut visible: Vec<HistoryRow> = (0..entries.len())
            .filter(|i| filter.matches(&entries[*i]))
            .map(HistoryRow::Decision)
            .chain(
                (0..events.len())
                    .filter(|i| filter.matches_event(&events[*i]))
                    .map(HistoryRow::Event),
            )
            .collect();
        // What each row sorts by; an event has no lead time or risk (it sorts after the
        // decisions there) and sorts by its incident where decisions sort by CR.
        let key = |r: &HistoryRow| match *r {
            HistoryRow::Decision(i) => {
                let e = &entries[i];
                (e.seq, e.lead_time, Some(e.risk), &*e.principal, &*e.cr_id)
            }
            HistoryRow::Event(i) => {
                let e = &events[i];
                (e.seq, None, None, e.principal.as_str(), e.incident.as_str())
            }
        };
        let sort = self.sort;
        visible.sort_by(|a, b| {
            let (x, y) = (key(a), key(b));
            let o = match sort {
                HistorySort::Time => y.0.cmp(&x.0),
                HistorySort::LeadTime => y.1.cmp(&x.1).then(y.0.cmp(&x.0)),
                HistorySort::Risk => y.2.cmp(&x.2).then(y.0.cmp(&x.0)),
                HistorySort::Principal => x.3.cmp(y.3).then(y.0.cmp(&x.0)),
                HistorySort::Cr => x.4.cmp(y.4).then(y.0.cmp(&x.0)),
            };
            if self.reverse { o.reverse() } else { o }
        });
        self.visible = visible;
        self.cursor.fit(self.visible.len());
    }

    /// An empty, loading History screen that goes back to `back_to`.
    pub fn new(back_to: Screen) -> HistoryState {
        HistoryState {
            data: Default::default(),
            visible: Vec::new(),
            cursor: Cursor::default(),
            filter: String::new(),
            filtering: false,
            filter_error: None,
            sort: HistorySort::Time,
            reverse: false,
            health: false,
            record: None,
            record_scroll: Default::default(),
            integrity: Integrity::Verifying,
            loading: true,
            back_to,
            find: Default::default(),
        }
    }

    /// The history arrived.
    pub fn loaded(&mut self, data: crate::history::History) {
        self.data = data;
        self.loading = false;
        self.refilter();
    }

    /// The keys worth a hint here.
    pub fn hints(&self) -> Vec<(Action, &'static str)> {
        use Action::*;
        if self.filtering || self.find.editing {
            return vec![(Accept, "keep"), (Back, "clear"), (Down, "move")];
        }
        if self.record.is_some() {
            let mut hints = vec![(Down, "scroll"), (Find, "find"), (Back, "close")];
            if self.find.active() {
                hints.splice(0..0, [(NextMatch, "next"), (PrevMatch, "previous")]);
            }
            hints.push((Help, "help"));
            return hints;
        }
        vec![
            (Open, "signed record"),
            (Down, "move"),
            (Filter, "filter"),
            (ToggleHealth, "health"),
            (SortNext, "sort"),
            (Back, "back"),
            (Help, "help"),
        ]
    }

    /// History-screen meanings of shared actions (`page` rows per page); `None` when the
    /// action is not the History screen's.
    pub fn action(&mut self, action: Action, page: usize) -> Option<HistoryAsk> {
        self.cursor.page = page.max(1);
        if let Some(delta) = super::cursor::movement(action, page) {
            // With a record open the keys read it; enter or esc closes it.
            if self.record.is_some() {
                self.record_scroll.shift(delta);
            } else {
                self.cursor.shift(delta, self.visible.len());
            }
            return Some(HistoryAsk::Nothing);
        }
        match action {
            Action::Filter => self.filtering = true,
            Action::SortNext => {
                self.sort = super::cursor::next_in(&HistorySort::ALL, self.sort);
                self.refilter();
            }
            Action::SortReverse => {
                self.reverse = !self.reverse;
                self.refilter();
            }
            Action::ToggleHealth => self.health = !self.health,
            Action::Find if self.record.is_some() => self.find.start(),
            Action::NextMatch => self.find.step(1),
            Action::PrevMatch => self.find.step(-1),
            Action::Open => {
                if self.record.is_some() {
                    self.record = None;
                } else if let Some(seq) = self.selected_seq() {
                    return Some(HistoryAsk::LoadRecord(seq));
                }
            }
            Action::Back if self.find.active() => self.find.clear(),
            Action::Back if self.record.is_some() => self.record = None,
            Action::Refresh => return Some(HistoryAsk::Reload),
            _ => return None,
        }
        Some(HistoryAsk::Nothing)
    }

    /// A signed record arrived: shown from its top.
    pub fn show_record(&mut self, record: RecordView) {
        self.record = Some(record);
        self.record_scroll.reset();
        self.find.clear();
    }

    /// Whole-log verification finished (or could not run).
    pub fn verified(
        &mut self,
        result: Result<(crate::audit::log::VerifyReport, u128), crate::tui::error::TuiError>,
    ) {
        self.integrity = match result {
            Ok((report, ms)) => Integrity::Done(Box::new(report), ms),
            Err(e) => Integrity::Failed(e.to_string()),
        };
    }

    /// A key while the filter has focus.
    pub fn filter_key(&mut self, k: KeyEvent, keymap: &Keymap) {
        let page = self.cursor.page;
        match super::line::filter_key(&mut self.filter, &mut self.filtering, &k, keymap, page) {
            FilterKey::Changed | FilterKey::Cleared => self.refilter(),
            FilterKey::Move(delta) => self.cursor.shift(delta, self.visible.len()),
            FilterKey::Kept | FilterKey::Nothing => {}
        }
    }
}

/// What the History screen needs from the app after an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryAsk {
    /// Nothing more.
    Nothing,
    /// Load this signed record.
    LoadRecord(u64),
    /// Load everything again.
    Reload,
}
