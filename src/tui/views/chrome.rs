//! The frame around every screen: the hint bar (keys that work here) and the status bar
//! (who you are, which store, what is happening).

use crate::tui::app::{App, Level, Overlay, Screen, Signer};
use crate::tui::keymap::Action;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// The actions worth a hint on the current screen, most useful first: each screen says
/// its own.
fn hint_actions(app: &App) -> Vec<(Action, &'static str)> {
    match &app.overlay {
        Some(Overlay::Help(_)) => return vec![(Action::Back, "close"), (Action::Down, "scroll")],
        Some(Overlay::Palette(_)) => {
            return vec![
                (Action::Accept, "run"),
                (Action::Down, "move"),
                (Action::Back, "close"),
            ];
        }
        None => {}
    }
    let can_sign = app.me().is_some();
    match app.screen {
        Screen::Queue => app.queue.hints(can_sign),
        Screen::Detail => {
            let can_roll_out = app
                .me()
                .is_some_and(|p| p.has_role(crate::domain::rollout::OPERATOR_ROLE))
                && app
                    .detail
                    .data()
                    .is_some_and(|d| d.eval.status == crate::domain::status::Status::Approved);
            app.detail.hints(can_sign, can_roll_out)
        }
        Screen::Decide | Screen::Confirm => app
            .decide
            .as_ref()
            .map(|f| f.hints(app.screen == Screen::Confirm))
            .unwrap_or_default(),
        Screen::Emergency => app
            .emergency
            .as_ref()
            .map(|f| f.hints())
            .unwrap_or_default(),
        Screen::Exceptions => app.exceptions_screen.hints(),
        Screen::History => app.history.as_ref().map(|h| h.hints()).unwrap_or_default(),
    }
}

/// Draws the hint bar.
pub fn hints(f: &mut Frame, area: Rect, app: &App) {
    let theme = &app.settings.theme;
    let mut spans: Vec<Span> = Vec::new();
    let filtering = app.screen == Screen::Queue && app.queue.filtering
        || app.screen == Screen::History && app.history.as_ref().is_some_and(|h| h.filtering);
    if filtering && app.overlay.is_none() {
        spans.push(Span::styled("type to filter  ", theme.muted()));
    }
    if app.overlay.is_some() {
        spans.push(Span::styled("type to search  ", theme.muted()));
    }
    // Whole hints only: one that does not fit is left out rather than cut.
    let mut used: usize = spans.iter().map(|s| s.width()).sum();
    for (action, label) in hint_actions(app) {
        let key = match action {
            Action::Down => format!(
                "{}/{}",
                app.settings.keymap.hint(Action::Up),
                app.settings.keymap.hint(Action::Down)
            ),
            _ => app.settings.keymap.hint(action),
        };
        let text = format!(" {label}  ");
        let width = key.chars().count() + text.chars().count();
        if used + width > area.width as usize {
            continue;
        }
        used += width;
        spans.push(Span::styled(key, theme.accent()));
        spans.push(Span::styled(text, theme.muted()));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The status bar, wrapped: a long message (a signing outcome with its MLflow note, a
/// refusal) is read in full on up to three rows instead of being cut at the width.
pub fn status<'a>(app: &App) -> Paragraph<'a> {
    let theme = &app.settings.theme;
    let mut left: Vec<Span> = Vec::new();
    match &app.signer {
        Signer::Principal { principal, .. } => {
            left.push(Span::styled(
                format!(" {} ", principal.id),
                theme.selected(),
            ));
            left.push(Span::styled(
                format!(" {} ", principal.roles.join(", ")),
                theme.muted(),
            ));
        }
        Signer::ReadOnly(_) => {
            left.push(Span::styled(" read-only ", theme.warning()));
            left.push(Span::raw(" "));
        }
    }
    if app.unsent > 0 {
        left.push(Span::styled(
            format!("⚠ {} UNSENT ", app.unsent),
            theme.warning(),
        ));
    }
    // Overdue post-incident reviews are loud on every screen.
    let overdue = app.overdue_reviews();
    if !overdue.is_empty() {
        let ids: Vec<String> = overdue
            .iter()
            .map(|x| crate::domain::text::sanitize(&x.incident))
            .collect();
        left.push(Span::styled(
            format!("⚠ REVIEW OVERDUE: {} ", ids.join(", ")),
            theme.error(),
        ));
    }
    left.push(Span::styled(
        format!("│ {} ", app.store_label),
        theme.muted(),
    ));
    let live = if app.live { " · live" } else { "" };
    left.push(Span::styled(
        format!("│ {}{live} ", app.connection),
        theme.muted(),
    ));
    if app.loading > 0 || app.decide.as_ref().is_some_and(|d| d.signing) {
        left.push(Span::styled(
            format!("│ {} working ", SPINNER[app.spinner % SPINNER.len()]),
            theme.accent(),
        ));
    }
    if let Some((level, text)) = &app.message {
        let style = match level {
            Level::Info => theme.pass(),
            Level::Error => theme.error(),
        };
        left.push(Span::styled(format!("│ {text}"), style));
    } else if let Signer::ReadOnly(why) = &app.signer {
        left.push(Span::styled(format!("│ {why}"), theme.muted()));
    }
    Paragraph::new(Line::from(left)).wrap(Wrap { trim: false })
}
