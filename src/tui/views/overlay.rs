//! The `?` help (generated from the keymap, searchable) and the `:` command palette.

use crate::tui::app::{App, HelpState, PaletteState};
use crate::tui::keymap::{Action, Context};
use crate::tui::views::centered;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

fn keys_text(app: &App, action: Action) -> String {
    let keys: Vec<String> = app
        .settings
        .keymap
        .keys(action)
        .iter()
        .map(|k| k.to_string())
        .collect();
    if keys.is_empty() {
        "(unbound)".into()
    } else {
        keys.join(", ")
    }
}

/// Help lines matching `query` (in key names, action names or descriptions).
pub fn help_lines<'a>(app: &App, query: &str) -> Vec<Line<'a>> {
    let theme = &app.settings.theme;
    let q = query.to_lowercase();
    let mut lines = Vec::new();
    // The keys of the screen that is up come first, then everything else.
    let mut order = app.contexts();
    for ctx in Context::ALL {
        if !order.contains(ctx) {
            order.push(*ctx);
        }
    }
    for ctx in order {
        let entries: Vec<(Action, String)> = Action::ALL
            .iter()
            .filter(|a| a.context() == ctx)
            .map(|a| (*a, keys_text(app, *a)))
            .filter(|(a, keys)| {
                q.is_empty()
                    || a.description().to_lowercase().contains(&q)
                    || a.name().contains(&q)
                    || keys.to_lowercase().contains(&q)
            })
            .collect();
        if entries.is_empty() {
            continue;
        }
        lines.push(Line::from(Span::styled(ctx.title(), theme.title())));
        for (a, keys) in entries {
            lines.push(Line::from(vec![
                // Always a gap after the keys, however many are bound.
                Span::styled(format!("  {keys:<22}  "), theme.accent()),
                Span::styled(a.description(), theme.text()),
            ]));
        }
        lines.push(Line::default());
    }
    if lines.is_empty() {
        lines.push(Line::from(Span::styled(
            format!("no key matches \"{query}\""),
            theme.muted(),
        )));
    }
    lines
}

/// Draws the help overlay.
pub fn draw_help(f: &mut Frame, area: Rect, app: &App, h: &HelpState) {
    let theme = &app.settings.theme;
    let popup = centered(area, 76, 40);
    f.render_widget(Clear, popup);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.accent())
        .title(Span::styled(
            format!(
                " Keys — type to search, {} to close ",
                app.settings.keymap.hint(Action::Back)
            ),
            theme.title(),
        ));
    let inner = block.inner(popup);
    f.render_widget(block, popup);
    let [search, body] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(inner);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("search: ", theme.muted()),
            Span::styled(crate::domain::text::sanitize(&h.query), theme.text()),
            Span::styled("▏", theme.accent()),
        ])),
        search,
    );
    let lines = help_lines(app, &h.query);
    let scroll = h.scroll.for_view(lines.len(), body.height);
    f.render_widget(Paragraph::new(lines).scroll((scroll, 0)), body);
}

/// Draws the command palette.
pub fn draw_palette(f: &mut Frame, area: Rect, app: &App, p: &PaletteState) {
    let theme = &app.settings.theme;
    let popup = centered(area, 70, 16);
    f.render_widget(Clear, popup);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.accent())
        .title(Span::styled(" Commands ", theme.title()));
    let inner = block.inner(popup);
    f.render_widget(block, popup);
    let [input, list] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(inner);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(": ", theme.accent()),
            Span::styled(crate::domain::text::sanitize(&p.query), theme.text()),
            Span::styled("▏", theme.accent()),
        ])),
        input,
    );
    let entries = app.palette_entries(&p.query);
    let height = list.height as usize;
    let start = p.cursor.selected.saturating_sub(height.saturating_sub(1));
    let lines: Vec<Line> = entries
        .iter()
        .enumerate()
        .skip(start)
        .take(height)
        .map(|(i, a)| {
            let style = if i == p.cursor.selected {
                theme.selected()
            } else {
                theme.text()
            };
            Line::from(vec![
                Span::styled(format!(" {:<40}", a.description()), style),
                Span::styled(format!(" {}", keys_text(app, *a)), theme.muted()),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), list);
}
