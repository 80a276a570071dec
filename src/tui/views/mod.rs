//! Drawing: reads the state, never changes it.

pub mod chrome;
pub mod decide;
pub mod detail;
pub mod emergency;
pub mod find;
pub mod history;
pub mod overlay;
pub mod queue;

use crate::domain::status::{Evaluation, Status};
use crate::tui::app::{App, Overlay, Screen};
use crate::tui::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Span;
use ratatui::widgets::Block;

pub use crate::domain::text::compact_age as age;

/// A status word coloured by what it means, with the blocking condition.
pub fn status_line<'a>(e: &Evaluation, theme: &Theme) -> Span<'a> {
    let s = queue::status_cell(e.status, e.blocked, e.awaiting_evidence, theme);
    match e.status {
        Status::Pending if e.blocked || e.awaiting_evidence => {
            Span::styled(format!("pending, {}", s.content), s.style)
        }
        _ => s,
    }
}

/// A rectangle of at most `width` x `height` centred in `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// Draws the whole screen.
pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    f.render_widget(Block::default().style(app.settings.theme.text()), area);
    let status = chrome::status(app);
    let status_height = status.line_count(area.width).clamp(1, 3) as u16;
    let [main, hints, status_area] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(status_height),
    ])
    .areas(area);
    match app.screen {
        Screen::Queue => queue::draw(f, main, app),
        Screen::Detail | Screen::Decide | Screen::Confirm => detail::draw(f, main, app),
        Screen::Exceptions => emergency::draw_exceptions(f, main, app),
        Screen::History => match &app.history {
            Some(h) => history::draw(f, main, app, h),
            None => queue::draw(f, main, app),
        },
        Screen::Emergency => match &app.emergency {
            Some(form) => emergency::draw(f, main, app, form),
            None => queue::draw(f, main, app),
        },
    }
    if let Some(form) = &app.decide {
        match app.screen {
            Screen::Decide => decide::draw_form(f, main, app, form),
            Screen::Confirm => decide::draw_confirm(f, main, app, form),
            _ => {}
        }
    }
    match &app.overlay {
        Some(Overlay::Help(h)) => overlay::draw_help(f, main, app, h),
        Some(Overlay::Palette(p)) => overlay::draw_palette(f, main, app, p),
        None => {}
    }
    chrome::hints(f, hints, app);
    f.render_widget(status, status_area);
}
