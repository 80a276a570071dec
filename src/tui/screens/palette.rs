//! The `:` palette: run any action available here by name, best match first.

use super::line::Typed;
use crate::tui::keymap::{Action, Context, Keymap};
use crossterm::event::KeyEvent;
use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher, Utf32Str};

/// The palette's state.
#[derive(Debug, Clone, Default)]
pub struct PaletteState {
    /// Search text.
    pub query: String,
    /// Selected entry (the one list cursor every screen uses).
    pub cursor: super::cursor::Cursor,
}

/// What a key in the palette leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaletteAsk {
    /// Stay open.
    Stay,
    /// Close without running anything.
    Close,
    /// Close and run this.
    Run(Action),
}

impl PaletteState {
    /// A key while the palette is open, over the entries `entries` offers now.
    pub fn key(&mut self, k: &KeyEvent, keymap: &Keymap, entries: &[Action]) -> PaletteAsk {
        match super::line::type_key(&mut self.query, k, keymap, &[Context::Global], 80) {
            Typed::Changed => self.cursor.select(0, entries.len()),
            Typed::Unchanged => {}
            Typed::Action(Action::Back | Action::Palette) => return PaletteAsk::Close,
            Typed::Action(Action::Accept) => {
                return match entries.get(self.cursor.selected) {
                    Some(action) => PaletteAsk::Run(*action),
                    None => PaletteAsk::Close,
                };
            }
            Typed::Action(action) => {
                if let Some(delta) = super::cursor::movement(action, 10) {
                    self.cursor.shift(delta, entries.len());
                }
            }
        }
        PaletteAsk::Stay
    }
}

/// Actions the palette offers in `contexts`, best match for `query` first.
pub fn entries(query: &str, contexts: &[Context]) -> Vec<Action> {
    let candidates = Action::ALL
        .iter()
        .copied()
        // Editing keys mean nothing as commands.
        .filter(|a| {
            contexts.contains(&a.context())
                && *a != Action::Palette
                && a.context() != Context::Prompt
        });
    let q = query.trim().to_lowercase();
    if q.is_empty() {
        return candidates.collect();
    }
    let pattern = Pattern::parse(&q, CaseMatching::Ignore, Normalization::Smart);
    let mut matcher = Matcher::new(Config::DEFAULT);
    let mut buf = Vec::new();
    let mut scored: Vec<(Action, u32)> = candidates
        .filter_map(|a| {
            let text = format!("{} {}", a.name().replace('_', " "), a.description());
            pattern
                .score(Utf32Str::new(&text, &mut buf), &mut matcher)
                .map(|s| (a, s))
        })
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.1));
    scored.into_iter().map(|(a, _)| a).collect()
}
