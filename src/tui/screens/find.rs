//! Finding text in a scrolling view (`/` in a change request or a signed record, then
//! `n`/`N`), as in `less`: matching lines are highlighted and the view jumps to them.
//!
//! Only the drawing knows where lines wrap, so a jump is asked for here and resolved when
//! the view draws: it reports the rows that match and the scroll moves to the next one.

use super::line::Typed;
use crate::tui::keymap::{Action, Context, Keymap};
use crossterm::event::KeyEvent;
use std::cell::Cell;

/// A find over one view's text.
#[derive(Debug, Clone, Default)]
pub struct Find {
    /// What to find (case-insensitive).
    pub query: String,
    /// Typing the query.
    pub editing: bool,
    /// A jump asked for: `0` the first match from the top of the view, `1` the next,
    /// `-1` the previous.
    jump: Cell<Option<isize>>,
    /// The current match (index into the matches) and how many there are, as of the last
    /// draw.
    found: Cell<(usize, usize)>,
}

impl Find {
    /// Starts typing a new query.
    pub fn start(&mut self) {
        self.editing = true;
        self.query.clear();
        self.found.set((0, 0));
    }

    /// Whether matches are highlighted (a query is typed or kept).
    pub fn active(&self) -> bool {
        !self.query.is_empty()
    }

    /// Forgets the query.
    pub fn clear(&mut self) {
        self.editing = false;
        self.query.clear();
        self.found.set((0, 0));
    }

    /// A key while the query is being typed.
    pub fn key(&mut self, k: &KeyEvent, keymap: &Keymap) {
        match super::line::type_key(&mut self.query, k, keymap, &[Context::Global], 200) {
            Typed::Changed => self.jump.set(Some(0)),
            Typed::Action(Action::Accept) => {
                self.editing = false;
                self.jump.set(Some(0));
            }
            Typed::Action(Action::Back) => self.clear(),
            Typed::Unchanged | Typed::Action(_) => {}
        }
    }

    /// `n`/`N`: the next (`1`) or previous (`-1`) match.
    pub fn step(&self, delta: isize) {
        if self.active() {
            self.jump.set(Some(delta));
        }
    }

    /// Whether `text` matches (case-insensitive).
    pub fn matches(&self, text: &str) -> bool {
        self.active() && text.to_lowercase().contains(&self.query.to_lowercase())
    }

    /// Called while drawing with the rows that match (ascending) and the row at the top
    /// of the view: the row to bring into view if a jump was asked for.
    pub fn resolve(&self, rows: &[usize], top: usize) -> Option<usize> {
        let (current, _) = self.found.get();
        let jump = self.jump.take();
        if rows.is_empty() {
            self.found.set((0, 0));
            return None;
        }
        let index = match jump? {
            0 => rows.iter().position(|r| *r >= top).unwrap_or(0),
            delta => (current as isize + delta).rem_euclid(rows.len() as isize) as usize,
        };
        self.found.set((index, rows.len()));
        rows.get(index).copied()
    }

    /// "match 2 of 5", "no match", or nothing without a query.
    pub fn summary(&self) -> String {
        match self.found.get() {
            _ if !self.active() => String::new(),
            (_, 0) => "no match".into(),
            (i, n) => format!("match {} of {n}", i + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_go_round_the_matches() {
        let f = Find {
            query: "x".into(),
            ..Default::default()
        };
        f.jump.set(Some(0));
        assert_eq!(
            f.resolve(&[3, 10, 20], 5),
            Some(10),
            "first from the view's top"
        );
        assert_eq!(f.summary(), "match 2 of 3");
        f.step(1);
        assert_eq!(f.resolve(&[3, 10, 20], 5), Some(20));
        f.step(1);
        assert_eq!(f.resolve(&[3, 10, 20], 5), Some(3), "wraps");
        f.step(-1);
        assert_eq!(f.resolve(&[3, 10, 20], 5), Some(20));
        assert_eq!(f.resolve(&[3, 10, 20], 5), None, "no jump asked");
        assert_eq!(f.resolve(&[], 0), None);
        assert_eq!(f.summary(), "no match");
    }
}
