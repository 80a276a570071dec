//! Drawing a find: matching lines highlighted, the rows they start at for the jump, and
//! the find bar.

use crate::tui::app::App;
use crate::tui::keymap::Action;
use crate::tui::screens::find::Find;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

/// Highlights the lines of `lines` that match `find` and returns the wrapped rows (at
/// `width`) where they start, ascending.
pub fn mark_matches(lines: &mut [Line<'_>], find: &Find, width: u16) -> Vec<usize> {
    if !find.active() {
        return Vec::new();
    }
    let mut rows = Vec::new();
    let mut row = 0;
    for line in lines.iter_mut() {
        let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
        if find.matches(&text) {
            rows.push(row);
            *line =
                std::mem::take(line).patch_style(Style::default().add_modifier(Modifier::REVERSED));
        }
        row += Paragraph::new(line.clone())
            .wrap(Wrap { trim: false })
            .line_count(width)
            .max(1);
    }
    rows
}

/// The find bar: the query being typed, or the kept one with its match count.
pub fn bar<'a>(app: &App, find: &Find) -> Line<'a> {
    let theme = &app.settings.theme;
    let keymap = &app.settings.keymap;
    let mut spans = vec![
        Span::styled(keymap.hint(Action::Find), theme.accent()),
        Span::styled(crate::domain::text::sanitize(&find.query), theme.text()),
        Span::styled(if find.editing { "▏" } else { "" }, theme.accent()),
        Span::styled(format!("   {}", find.summary()), theme.muted()),
    ];
    if !find.editing {
        spans.push(Span::styled(
            format!(
                " · {} next · {} previous · {} clears",
                keymap.hint(Action::NextMatch),
                keymap.hint(Action::PrevMatch),
                keymap.hint(Action::Back)
            ),
            theme.muted(),
        ));
    }
    Line::from(spans)
}
