//! The `?` overlay: every binding, the current screen's first, searchable by typing.

use super::cursor::Scroll;
use crossterm::event::{KeyCode, KeyEvent};

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
    pub fn key(&mut self, k: &KeyEvent) -> bool {
        match k.code {
            KeyCode::Esc => return false,
            KeyCode::Char('?') if self.query.is_empty() => return false,
            KeyCode::Up => self.scroll.shift(-1),
            KeyCode::Down => self.scroll.shift(1),
            KeyCode::PageDown => self.scroll.shift(10),
            KeyCode::PageUp => self.scroll.shift(-10),
            _ => {
                if super::line::edit(&mut self.query, k, 80) {
                    self.scroll.reset();
                }
            }
        }
        true
    }
}
