//! The queue screen: every loaded CR as a row, quick views, sort, and the `/` filter.
//! Owns its rows, what is visible, the cursor and the filter; the app asks it which CR is
//! selected.

use super::cursor::Cursor;
use super::line::FilterKey;
use crate::domain::rollout::Progress;
use crate::domain::status::Status;
use crate::tui::data::QueueRow;
use crate::tui::keymap::{Action, Keymap};
use crossterm::event::KeyEvent;
use nucleo_matcher::pattern::{AtomKind, CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher, Utf32Str};

/// Quick views of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Status pending.
    Pending,
    /// Pending and I could give an open sign-off.
    Mine,
    /// A blocking check fails.
    Blocked,
    /// Someone decided today.
    Today,
    /// Everything.
    All,
    /// Approved, not yet fully rolled out nor rolled back: what operators act on.
    RollingOut,
}

impl View {
    /// All views in tab order.
    pub const ALL: [View; 6] = [
        View::Pending,
        View::Mine,
        View::Blocked,
        View::Today,
        View::All,
        View::RollingOut,
    ];

    /// Tab label.
    pub fn label(self) -> &'static str {
        match self {
            View::Pending => "Pending",
            View::Mine => "Needs me",
            View::Blocked => "Blocked",
            View::Today => "Decided today",
            View::All => "All",
            View::RollingOut => "Rolling out",
        }
    }

    /// Tab label on a narrow terminal.
    pub fn short_label(self) -> &'static str {
        match self {
            View::Pending => "Pending",
            View::Mine => "Mine",
            View::Blocked => "Blocked",
            View::Today => "Today",
            View::All => "All",
            View::RollingOut => "Rolling",
        }
    }

    /// Whether `row` belongs to this view.
    pub fn includes(self, row: &QueueRow) -> bool {
        match self {
            View::Pending => row.status == Status::Pending,
            View::Mine => row.needs_me,
            View::Blocked => row.blocked,
            View::Today => row.decided_today,
            View::All => true,
            View::RollingOut => {
                row.status == Status::Approved
                    && row.rollout.is_none_or(|r| matches!(r, Progress::Canary(_)))
            }
        }
    }
}

/// Queue columns one can sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Oldest first by default: what waits longest comes first.
    Age,
    /// Highest effective risk first.
    Risk,
    /// CR id.
    Id,
    /// Gate.
    Gate,
    /// Title.
    Title,
    /// Subject.
    Subject,
    /// Requester.
    Requester,
    /// Fewest sign-offs obtained (relative to required) first.
    Signoffs,
    /// Most failing checks first.
    Checks,
    /// Status.
    Status,
}

impl SortKey {
    /// Sort keys in cycling order.
    pub const ALL: [SortKey; 10] = [
        SortKey::Age,
        SortKey::Risk,
        SortKey::Id,
        SortKey::Gate,
        SortKey::Title,
        SortKey::Subject,
        SortKey::Requester,
        SortKey::Signoffs,
        SortKey::Checks,
        SortKey::Status,
    ];

    /// Column label.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Age => "age",
            SortKey::Risk => "risk",
            SortKey::Id => "id",
            SortKey::Gate => "gate",
            SortKey::Title => "title",
            SortKey::Subject => "subject",
            SortKey::Requester => "requester",
            SortKey::Signoffs => "sign-offs",
            SortKey::Checks => "checks",
            SortKey::Status => "status",
        }
    }

    fn compare(self, a: &QueueRow, b: &QueueRow) -> std::cmp::Ordering {
        match self {
            SortKey::Age => a.created_at.cmp(&b.created_at),
            SortKey::Risk => b.effective.cmp(&a.effective),
            SortKey::Id => a.id.cmp(&b.id),
            SortKey::Gate => a.gate.cmp(&b.gate),
            SortKey::Title => a.title.cmp(&b.title),
            SortKey::Subject => a.subject.cmp(&b.subject),
            SortKey::Requester => a.requester.cmp(&b.requester),
            SortKey::Signoffs => {
                (a.obtained * b.required.max(1)).cmp(&(b.obtained * a.required.max(1)))
            }
            SortKey::Checks => b
                .checks
                .fail
                .cmp(&a.checks.fail)
                .then(b.checks.pending.cmp(&a.checks.pending)),
            SortKey::Status => a.status.as_str().cmp(b.status.as_str()),
        }
        .then_with(|| a.id.cmp(&b.id))
    }
}

/// How directly `row` matches the lower-cased `needle`: 0 its id exactly, 1 the start of
/// a word of what the filter searches (id, title, subject, requester), 2 anything else the
/// fuzzy matcher found.
fn match_class(hay: &str, needle: &str) -> u8 {
    // The haystack is lower-case and starts with the id: no allocation per row, so
    // ranking keeps up with typing at 100k rows.
    if hay.split(' ').next() == Some(needle) {
        return 0;
    }
    let at_word_start = hay.match_indices(needle).any(|(i, _)| {
        hay[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric())
    });
    if at_word_start { 1 } else { 2 }
}

/// `pattern`'s score on a lower-case `hay`, with fuzzy atoms matched greedily (linear in
/// the text, as fzf's v1 algorithm for long lists) rather than optimally: at 100k rows
/// the optimal matrix is most of a keystroke's time, and the ranking still puts the exact
/// id and word prefixes first (`match_class`). Other atom kinds (`'exact`, `^prefix`,
/// `suffix$`, `!not`) are matched as the pattern says.
fn linear_score(pattern: &Pattern, hay: Utf32Str<'_>, matcher: &mut Matcher) -> Option<u32> {
    let mut total = 0u32;
    for atom in &pattern.atoms {
        let score = if atom.kind == AtomKind::Fuzzy && !atom.negative {
            // The text is lower-case and so is the needle (the pattern ignores case).
            matcher.config.ignore_case = true;
            matcher.fuzzy_match_greedy(hay, atom.needle_text())?
        } else {
            atom.score(hay, matcher)?
        };
        total += u32::from(score);
    }
    Some(total)
}

/// The queue's state.
pub struct QueueScreen {
    /// All loaded rows.
    pub rows: Vec<QueueRow>,
    /// Indices of rows shown (view, filter, sort applied).
    pub visible: Vec<usize>,
    /// Every row index in sort order.
    order: Vec<usize>,
    /// Each row's position in `order` (ties between equally good matches keep it).
    rank: Vec<usize>,
    /// The query and view `visible` was computed for.
    filtered_for: Option<(String, View)>,
    /// Selection and window over `visible`.
    pub cursor: Cursor,
    /// Current quick view.
    pub view: View,
    /// Sort column.
    pub sort: SortKey,
    /// Reverse order.
    pub sort_reverse: bool,
    /// Filter text.
    pub filter: String,
    /// Typing into the filter.
    pub filtering: bool,
    /// Characters in the longest id (the id column's width), counted once per load
    /// rather than on every frame.
    pub longest_id: usize,
    /// One fuzzy matcher per core: a keystroke scores its candidates on every core.
    matchers: Vec<Matcher>,
    /// Every row's filter text (lower-case id, title, subject, requester), laid end to
    /// end in sort order, and each row's span in it: a keystroke at 100k rows reads one
    /// block of memory in order instead of a scattered allocation per row.
    hay: String,
    hay_span: Vec<(u32, u32)>,
    /// Which views each row belongs to (bit `i` for `View::ALL[i]`), and how many rows
    /// each view holds: worked out per load, not per keystroke or frame.
    in_views: Vec<u8>,
    counts: [usize; View::ALL.len()],
}

impl Default for QueueScreen {
    fn default() -> Self {
        QueueScreen {
            rows: Vec::new(),
            visible: Vec::new(),
            order: Vec::new(),
            rank: Vec::new(),
            filtered_for: None,
            cursor: Cursor {
                page: 20,
                ..Cursor::default()
            },
            view: View::Pending,
            sort: SortKey::Age,
            sort_reverse: false,
            filter: String::new(),
            filtering: false,
            longest_id: 0,
            matchers: (0..std::thread::available_parallelism().map_or(1, |n| n.get()))
                .map(|_| Matcher::new(Config::DEFAULT))
                .collect(),
            hay: String::new(),
            hay_span: Vec::new(),
            in_views: Vec::new(),
            counts: [0; View::ALL.len()],
        }
    }
}

impl QueueScreen {
    /// Replaces the rows (a new load), keeping the selection on the same CR.
    pub fn set_rows(&mut self, rows: Vec<QueueRow>) {
        self.longest_id = rows.iter().map(|r| r.id.chars().count()).max().unwrap_or(0);
        self.in_views = rows
            .iter()
            .map(|r| {
                View::ALL
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.includes(r))
                    .fold(0u8, |bits, (i, _)| bits | 1 << i)
            })
            .collect();
        self.counts = [0; View::ALL.len()];
        for bits in &self.in_views {
            for (i, count) in self.counts.iter_mut().enumerate() {
                *count += usize::from(bits >> i & 1);
            }
        }
        self.rows = rows;
        self.resort();
    }

    fn view_index(&self) -> usize {
        View::ALL.iter().position(|v| *v == self.view).unwrap_or(0)
    }

    fn view_bit(&self) -> u8 {
        1 << self.view_index()
    }

    /// The row under the cursor.
    pub fn selected_row(&self) -> Option<&QueueRow> {
        self.visible
            .get(self.cursor.selected)
            .and_then(|i| self.rows.get(*i))
    }

    /// How many rows each view holds (for the tab labels).
    pub fn view_counts(&self) -> [usize; View::ALL.len()] {
        self.counts
    }

    /// Rows in the current view before filtering (the "of N" in "3 of 5").
    pub fn view_total(&self) -> usize {
        self.counts[self.view_index()]
    }

    /// Rows the table shows at once (from the terminal height).
    pub fn set_page(&mut self, rows: usize) {
        self.cursor.page = rows.max(1);
        self.cursor.fit(self.visible.len());
    }

    /// Re-sorts all rows after the rows or the sort column changed, then refilters.
    pub fn resort(&mut self) {
        let rows = &self.rows;
        let sort = self.sort;
        let reverse = self.sort_reverse;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|a, b| {
            let o = sort.compare(&rows[*a], &rows[*b]);
            if reverse { o.reverse() } else { o }
        });
        let mut rank = vec![0; order.len()];
        for (pos, i) in order.iter().enumerate() {
            rank[*i] = pos;
        }
        let mut hay = String::with_capacity(rows.iter().map(|r| r.haystack.len()).sum());
        let mut spans = vec![(0, 0); rows.len()];
        for i in &order {
            let start = hay.len();
            hay.push_str(&rows[*i].haystack);
            spans[*i] = (start as u32, hay.len() as u32);
        }
        self.hay = hay;
        self.hay_span = spans;
        self.order = order;
        self.rank = rank;
        self.filtered_for = None;
        self.refilter();
    }

    /// Recomputes `visible` (view and filter over the sorted rows); keeps the selection on
    /// the same CR when it is still visible. Typing more characters only narrows the
    /// previous matches instead of searching every row again.
    pub fn refilter(&mut self) {
        let keep = self.selected_row().map(|r| r.id.clone());
        let query = self.filter.trim().to_string();
        let narrowing = match &self.filtered_for {
            Some((previous, view)) => {
                *view == self.view
                    && !previous.is_empty()
                    && query.starts_with(previous.as_str())
                    && !query[previous.len()..].contains(['!', '^', '$', '\'', '\\'])
            }
            None => false,
        };
        let candidates = if narrowing {
            std::mem::take(&mut self.visible)
        } else {
            self.order.clone()
        };
        let bit = self.view_bit();
        let in_views = &self.in_views;
        let view = self.view;
        self.visible = if query.is_empty() {
            candidates
                .into_iter()
                .filter(|i| in_views[*i] & bit != 0)
                .collect()
        } else {
            let pattern = Pattern::parse(&query, CaseMatching::Ignore, Normalization::Smart);
            let (hay, spans, rank) = (&self.hay, &self.hay_span, &self.rank);
            let needle = query.to_lowercase();
            let mut candidates: Vec<usize> = candidates
                .into_iter()
                .filter(|i| in_views[*i] & bit != 0)
                .collect();
            // In sort order, the texts are read front to back.
            if narrowing {
                candidates.sort_unstable_by_key(|i| rank[*i]);
            }
            // Scoring is the cost of a keystroke at 100k rows: split it across the cores,
            // each with its own matcher; the order is restored by the sort below.
            // (A few thousand rows are scored on one core: not worth a thread each.)
            let cores = if candidates.len() < 4_096 {
                1
            } else {
                self.matchers.len()
            };
            let chunk = candidates.len().div_ceil(cores).max(1);
            let (pattern, needle) = (&pattern, needle.as_str());
            let mut scored: Vec<(usize, u8, u32)> = std::thread::scope(|scope| {
                let handles: Vec<_> = candidates
                    .chunks(chunk)
                    .zip(self.matchers.iter_mut())
                    .map(|(part, matcher)| {
                        scope.spawn(move || {
                            let mut buf = Vec::new();
                            part.iter()
                                .filter_map(|&i| {
                                    let (start, end) = spans[i];
                                    let text = &hay[start as usize..end as usize];
                                    let text32 = Utf32Str::new(text, &mut buf);
                                    let score = linear_score(pattern, text32, matcher)?;
                                    Some((i, match_class(text, needle), score))
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
            // Best matches first, as fzf and television rank: the exact id, then a word
            // prefix, then by fuzzy score; ties keep the queue's sort order.
            // (Unstable is enough: the rank is unique, so no two keys are equal.)
            scored.sort_unstable_by_key(|(i, class, score)| {
                (*class, std::cmp::Reverse(*score), rank[*i])
            });
            scored.into_iter().map(|(i, _, _)| i).collect()
        };
        self.filtered_for = Some((query, view));
        let at = keep
            .and_then(|id| self.visible.iter().position(|i| self.rows[*i].id == id))
            .unwrap_or(0);
        self.cursor.select(at, self.visible.len());
    }

    /// Moves the selection.
    pub fn shift(&mut self, delta: isize) {
        self.cursor.shift(delta, self.visible.len());
    }

    fn set_view(&mut self, v: View) {
        self.view = v;
        self.cursor.selected = 0;
        self.cursor.offset = 0;
        self.refilter();
    }

    /// A key while the `/` filter has focus.
    pub fn filter_key(&mut self, k: KeyEvent, keymap: &Keymap) {
        let page = self.cursor.page;
        match super::line::filter_key(&mut self.filter, &mut self.filtering, &k, keymap, page) {
            FilterKey::Changed => {
                self.refilter();
                // A new query selects its best match, as fzf does.
                self.cursor.select(0, self.visible.len());
            }
            FilterKey::Cleared => self.refilter(),
            FilterKey::Move(delta) => self.shift(delta),
            FilterKey::Kept | FilterKey::Nothing => {}
        }
    }

    /// The keys worth a hint here; decisions only for someone who can sign.
    pub fn hints(&self, can_sign: bool) -> Vec<(Action, &'static str)> {
        use Action::*;
        if self.filtering {
            return vec![(Accept, "keep"), (Back, "clear"), (Down, "move")];
        }
        let mut hints = vec![(Open, "open")];
        if can_sign {
            hints.push((Approve, "approve"));
        }
        hints.extend([
            (Down, "move"),
            (Filter, "filter"),
            (NextView, "view"),
            (SortNext, "sort"),
            (Emergency, "emergency"),
            (Help, "help"),
            (Palette, "commands"),
            (Quit, "quit"),
            (History, "history"),
        ]);
        hints
    }

    /// The queue's own actions; `false` when the action is not the queue's to handle.
    pub fn action(&mut self, action: Action) -> bool {
        if let Some(delta) = super::cursor::movement(action, self.cursor.page) {
            self.shift(delta);
            return true;
        }
        match action {
            Action::Filter => self.filtering = true,
            Action::Back => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.refilter();
                }
            }
            Action::SortNext => {
                self.sort = super::cursor::next_in(&SortKey::ALL, self.sort);
                self.resort();
            }
            Action::SortReverse => {
                self.sort_reverse = !self.sort_reverse;
                self.resort();
            }
            Action::NextView => self.set_view(super::cursor::next_in(&View::ALL, self.view)),
            Action::ViewPending => self.set_view(View::Pending),
            Action::ViewMine => self.set_view(View::Mine),
            Action::ViewBlocked => self.set_view(View::Blocked),
            Action::ViewToday => self.set_view(View::Today),
            Action::ViewAll => self.set_view(View::All),
            Action::ViewRollingOut => self.set_view(View::RollingOut),
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(query: &str, text: &str) -> Option<u32> {
        let pattern = Pattern::parse(query, CaseMatching::Ignore, Normalization::Smart);
        let mut buf = Vec::new();
        linear_score(
            &pattern,
            Utf32Str::new(text, &mut buf),
            &mut Matcher::new(Config::DEFAULT),
        )
    }

    #[test]
    fn the_filter_matches_fuzzy_words_and_honours_exact_and_negated_atoms() {
        let text = "cr-1042 promote fraud-detector v13 to production fraud-detector 12 13 priya";
        assert!(score("frdet", text).is_some(), "fuzzy, letters in order");
        assert!(score("FRAUD prod", text).is_some(), "every word, any case");
        assert!(score("'xyz", text).is_none(), "an exact atom must be there");
        assert!(
            score("fraud !priya", text).is_none(),
            "a negated atom excludes"
        );
        assert!(score("fraud !jonas", text).is_some());
        // A tighter match scores higher than a scattered one.
        assert!(score("fraud", text) > score("fpd", text));
    }
}
