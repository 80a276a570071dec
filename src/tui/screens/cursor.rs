//! The one cursor every list uses and the one scroll every text view uses, both bounded:
//! nothing can move past the content, whatever key is held.

use crate::tui::keymap::Action;
use std::cell::Cell;

/// A selection in a list of `len` items with the window of `page` rows that shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Selected position.
    pub selected: usize,
    /// First position shown.
    pub offset: usize,
    /// Rows the window shows (at least 1).
    pub page: usize,
}

impl Cursor {
    /// Moves by `delta` (clamped to the list) and keeps the selection in the window.
    pub fn shift(&mut self, delta: isize, len: usize) {
        if len == 0 {
            self.selected = 0;
            self.offset = 0;
            return;
        }
        let last = len as isize - 1;
        self.selected = (self.selected as isize)
            .saturating_add(delta)
            .clamp(0, last) as usize;
        self.fit(len);
    }

    /// Puts the selection at `index` (clamped).
    pub fn select(&mut self, index: usize, len: usize) {
        self.selected = index.min(len.saturating_sub(1));
        self.fit(len);
    }

    /// Re-clamps after the list or the window changed.
    pub fn fit(&mut self, len: usize) {
        let page = self.page.max(1);
        self.selected = self.selected.min(len.saturating_sub(1));
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + page {
            self.offset = self.selected + 1 - page;
        }
        self.offset = self.offset.min(len.saturating_sub(page));
    }
}

/// A vertical scroll over text whose length only the drawing knows (wrapped lines): the
/// view reports the largest useful offset as it draws, and keys never go beyond it.
#[derive(Debug, Clone, Default)]
pub struct Scroll {
    offset: Cell<u16>,
    /// Largest offset that still fills the view, as of the last draw.
    limit: Cell<u16>,
}

impl Scroll {
    /// Back to the top.
    pub fn reset(&mut self) {
        self.offset.set(0);
    }

    /// Moves by `delta` lines, within what the last draw showed.
    pub fn shift(&mut self, delta: isize) {
        let limit = self.limit.get() as isize;
        let moved = (self.offset.get() as isize)
            .saturating_add(delta)
            .clamp(0, limit);
        self.offset.set(moved as u16);
    }

    /// Called while drawing `content` lines in `height` rows: records the limit and
    /// returns the offset to draw at (clamped, in case the content shrank).
    pub fn for_view(&self, content: usize, height: u16) -> u16 {
        let limit = content
            .saturating_sub(height as usize)
            .min(u16::MAX as usize) as u16;
        self.limit.set(limit);
        self.offset.get().min(limit)
    }

    /// Brings `row` into view while drawing (a find jumping to its match), a few rows
    /// below the top; returns the offset to draw at.
    pub fn show_row(&self, row: usize) -> u16 {
        let wanted = row.saturating_sub(2).min(u16::MAX as usize) as u16;
        self.offset.set(wanted.min(self.limit.get()));
        self.offset.get()
    }

    /// The offset as the user left it (clamped at the last draw).
    pub fn offset(&self) -> u16 {
        self.offset.get().min(self.limit.get())
    }
}

/// How far a movement action moves, `page` rows to a page; `None` for other actions.
/// One table for every list and scroll view.
pub fn movement(action: Action, page: usize) -> Option<isize> {
    let page = page.max(1) as isize;
    Some(match action {
        Action::Up => -1,
        Action::Down => 1,
        Action::PageUp => -page,
        Action::PageDown => page,
        Action::Top => isize::MIN / 2,
        Action::Bottom => isize::MAX / 2,
        _ => return None,
    })
}

/// The item after `current` in `all`, wrapping (the first when `current` is not there):
/// the next sort column, the next quick view.
pub fn next_in<T: PartialEq + Copy>(all: &[T], current: T) -> T {
    let i = all.iter().position(|x| *x == current).map_or(0, |i| i + 1);
    all[i % all.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_stays_in_the_list_and_the_window() {
        let mut c = Cursor {
            page: 3,
            ..Cursor::default()
        };
        c.shift(100, 10);
        assert_eq!((c.selected, c.offset), (9, 7));
        c.shift(-100, 10);
        assert_eq!((c.selected, c.offset), (0, 0));
        c.shift(1, 0);
        assert_eq!((c.selected, c.offset), (0, 0));
        c.select(5, 4);
        assert_eq!((c.selected, c.offset), (3, 1));
    }

    #[test]
    fn a_scroll_never_passes_the_end_of_its_content() {
        let mut s = Scroll::default();
        assert_eq!(s.for_view(50, 20), 0);
        s.shift(1_000);
        assert_eq!(s.offset(), 30, "the last screenful, not blank space");
        s.shift(-5);
        assert_eq!(s.offset(), 25);
        // Content shrank (a narrower window wraps less): drawn at the new end.
        assert_eq!(s.for_view(30, 20), 10);
        s.shift(-100);
        assert_eq!(s.offset(), 0);
    }
}
