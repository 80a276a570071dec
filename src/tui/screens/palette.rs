//! The `:` palette: run any action available here by name, best match first.

use crate::tui::keymap::{Action, Context};
use crossterm::event::{KeyCode, KeyEvent};
use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher, Utf32Str};

/// The palette's state.
#[derive(Debug, Clone, Default)]
pub struct PaletteState {
    /// Search text.
    pub query: String,
    /// Selected entry.
    pub selected: usize,
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
    pub fn key(&mut self, k: &KeyEvent, entries: &[Action]) -> PaletteAsk {
        match k.code {
            KeyCode::Esc => return PaletteAsk::Close,
            KeyCode::Enter => {
                return match entries.get(self.selected) {
                    Some(action) => PaletteAsk::Run(*action),
                    None => PaletteAsk::Close,
                };
            }
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down => {
                self.selected = (self.selected + 1).min(entries.len().saturating_sub(1))
            }
            _ => {
                if super::line::edit(&mut self.query, k, 80) {
                    self.selected = 0;
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
        .filter(|a| contexts.contains(&a.context()) && *a != Action::Palette);
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
