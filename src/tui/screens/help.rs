//! The `?` overlay: every binding, the current screen's first, searchable by typing.

use super::cursor::Scroll;
use super::line::Typed;
use crate::tui::keymap::{Action, Context, Keymap};
use crossterm::event::KeyEvent;

/// The help overlay's state.
#[derive(Debug, Clone, Default)]
pub struct HelpState {
    /// Search text.
    pub query: String,
    /// Scroll, bounded by the list.
    pub scroll: Scroll,
}

impl HelpState {
    /// A key while help is open; false when it closes.
    pub fn key(&mut self, k: &KeyEvent, keymap: &Keymap) -> bool {
        // The help key closes help again while nothing is typed (`?` then `?`).
        if self.query.is_empty() && keymap.lookup(k, &[Context::Global]) == Some(Action::Help) {
            return false;
        }
        match super::line::type_key(&mut self.query, k, keymap, &[Context::Global], 80) {
            Typed::Changed => self.scroll.reset(),
            Typed::Unchanged => {}
            Typed::Action(Action::Back | Action::Help | Action::Accept) => return false,
            Typed::Action(action) => {
                if let Some(delta) = super::cursor::movement(action, 10) {
                    self.scroll.shift(delta);
                }
            }
        }
        true
    }
}
