//! The queue: quick-view tabs, the table (only the visible window of rows is built, so
//! 100k CRs draw as fast as 10), and the filter line with its match count.

use crate::domain::checklist::CheckCounts;
use crate::domain::risk::RiskLevel;
use crate::domain::rollout::Progress;
use crate::domain::status::Status;
use crate::tui::app::{App, SortKey, View};
use crate::tui::data::QueueRow;
use crate::tui::theme::Theme;
use crate::tui::views::age;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

fn short(level: RiskLevel) -> &'static str {
    match level {
        RiskLevel::Low => "low",
        RiskLevel::Medium => "med",
        RiskLevel::High => "high",
    }
}

/// `high`, or `high (decl med)` when the requester declared something else.
fn risk_cell<'a>(r: &QueueRow, theme: &Theme) -> Line<'a> {
    let mut spans = vec![Span::styled(
        short(r.effective).to_string(),
        theme.risk(r.effective),
    )];
    if r.computed != r.declared {
        spans.push(Span::styled(
            format!(" (decl {})", short(r.declared)),
            theme.muted(),
        ));
    }
    Line::from(spans)
}

/// `✓4 ✗1 …1 ?1`, coloured, zeros left out.
pub fn checks_cell<'a>(c: &CheckCounts, theme: &Theme) -> Line<'a> {
    let mut spans = Vec::new();
    for (sym, n, style) in [
        ("✓", c.pass, theme.pass()),
        ("✗", c.fail, theme.fail()),
        ("…", c.pending, theme.pending()),
        ("?", c.missing, theme.pending()),
    ] {
        if n > 0 {
            if !spans.is_empty() {
                spans.push(Span::raw(" "));
            }
            spans.push(Span::styled(format!("{sym}{n}"), style));
        }
    }
    if spans.is_empty() {
        spans.push(Span::styled("-", theme.muted()));
    }
    Line::from(spans)
}

/// Status with the condition that matters most right now.
pub fn status_cell<'a>(status: Status, blocked: bool, awaiting: bool, theme: &Theme) -> Span<'a> {
    match status {
        Status::Pending if blocked => Span::styled("blocked", theme.fail()),
        Status::Pending if awaiting => Span::styled("awaiting CI", theme.pending()),
        Status::Pending => Span::styled("pending", theme.text()),
        Status::Approved => Span::styled("approved", theme.pass()),
        Status::Rejected => Span::styled("rejected", theme.fail()),
        Status::ChangesRequested => Span::styled("changes req.", theme.warning()),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Col {
    Id,
    Gate,
    Risk,
    Title,
    Subject,
    Requester,
    Age,
    Signoffs,
    Checks,
    Status,
}

/// Widest id column; a longer id is cut with `…` (never silently).
const ID_MAX: usize = 24;

impl Col {
    /// The sort key of this column.
    fn sort_key(self) -> SortKey {
        match self {
            Col::Id => SortKey::Id,
            Col::Gate => SortKey::Gate,
            Col::Risk => SortKey::Risk,
            Col::Title => SortKey::Title,
            Col::Subject => SortKey::Subject,
            Col::Requester => SortKey::Requester,
            Col::Age => SortKey::Age,
            Col::Signoffs => SortKey::Signoffs,
            Col::Checks => SortKey::Checks,
            Col::Status => SortKey::Status,
        }
    }
}

/// Columns that fit `width`, in display order; the id column as wide as the longest id
/// (`id_width`). Title takes what is left.
fn columns(width: u16, id_width: u16) -> Vec<(Col, &'static str, u16)> {
    let mut cols = vec![
        (Col::Id, "ID", id_width),
        (Col::Risk, "RISK", 15),
        (Col::Title, "TITLE", 0),
        (Col::Age, "AGE", 4),
        (Col::Signoffs, "SIGN", 5),
        (Col::Checks, "CHECKS", 9),
        (Col::Status, "STATUS", 12),
    ];
    // Optional columns, added while the title keeps at least 24 cells.
    let optional = [
        (Col::Gate, "GATE", 10, 1),
        (Col::Subject, "SUBJECT", 26, 4),
        (Col::Requester, "REQUESTER", 9, 5),
    ];
    for (col, name, w, pos) in optional {
        let used: u16 = cols.iter().map(|c| c.2 + 1).sum();
        if width.saturating_sub(used + w + 1) >= 24 {
            let at = pos.min(cols.len());
            cols.insert(at, (col, name, w));
        }
    }
    cols
}

/// Draws the queue screen into `area`.
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let theme = &app.settings.theme;
    let show_filter = app.queue.filtering || !app.queue.filter.is_empty();
    let [tabs, table_area, filter_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(if show_filter { 1 } else { 0 }),
    ])
    .areas(area);

    // Quick-view tabs with counts.
    let counts = app.queue.view_counts();
    let mut spans = vec![Span::styled(" tollgate ", theme.title())];
    // Every tab fits an 80-column terminal, in short words.
    let narrow = tabs.width < 100;
    for (i, v) in View::ALL.iter().enumerate() {
        let name = if narrow { v.short_label() } else { v.label() };
        let label = format!(" {} {} {} ", i + 1, name, counts[i]);
        spans.push(if *v == app.queue.view {
            Span::styled(label, theme.selected())
        } else {
            Span::styled(label, theme.muted())
        });
    }
    spans.push(Span::styled(
        format!(
            "  sorted by {}{}",
            app.queue.sort.label(),
            if app.queue.sort_reverse { " ↓" } else { "" }
        ),
        theme.muted(),
    ));
    f.render_widget(Paragraph::new(Line::from(spans)), tabs);

    let id_width = app.queue.longest_id.clamp(3, ID_MAX) as u16;
    let cols = columns(table_area.width, id_width);
    // The sorted column says so, and which way.
    let header = Row::new(cols.iter().map(|(col, name, _)| {
        if col.sort_key() == app.queue.sort {
            let arrow = if app.queue.sort_reverse { "▼" } else { "▲" };
            Cell::from(format!("{name}{arrow}"))
        } else {
            Cell::from(*name)
        }
    }))
    .style(theme.muted());
    let page = table_area.height.saturating_sub(1) as usize;
    let end = (app.queue.cursor.offset + page).min(app.queue.visible.len());
    let rows: Vec<Row> = (app.queue.cursor.offset..end)
        .filter_map(|pos| {
            app.queue
                .visible
                .get(pos)
                .map(|i| (pos, &app.queue.rows[*i]))
        })
        .map(|(pos, r)| {
            let cells: Vec<Cell> = cols
                .iter()
                .map(|(col, _, _)| match col {
                    Col::Id => Cell::from(crate::domain::text::truncate(&r.id, ID_MAX)),
                    Col::Gate => Cell::from(r.gate.as_str()),
                    Col::Risk => Cell::from(risk_cell(r, theme)),
                    Col::Title => Cell::from(r.title.clone()),
                    Col::Subject => Cell::from(format!("{} @{}", r.subject, r.environment)),
                    Col::Requester => Cell::from(r.requester.clone()),
                    Col::Age => Cell::from(age(r.created_at, app.now)),
                    Col::Signoffs => Cell::from(format!("{}/{}", r.obtained, r.required)),
                    Col::Checks => Cell::from(checks_cell(&r.checks, theme)),
                    Col::Status => Cell::from(match r.rollout {
                        // An approved change's rollout says more than "approved".
                        Some(progress) if r.status == Status::Approved => Span::styled(
                            progress.to_string(),
                            match progress {
                                Progress::RolledBack => theme.fail(),
                                Progress::Full => theme.pass(),
                                Progress::Canary(_) => theme.pending(),
                            },
                        ),
                        _ => status_cell(r.status, r.blocked, r.awaiting, theme),
                    }),
                })
                .collect();
            let row = Row::new(cells);
            if pos == app.queue.cursor.selected {
                row.style(theme.selected())
            } else {
                row.style(theme.text())
            }
        })
        .collect();
    let widths: Vec<Constraint> = cols
        .iter()
        .map(|(_, _, w)| {
            if *w == 0 {
                Constraint::Min(10)
            } else {
                Constraint::Length(*w)
            }
        })
        .collect();
    f.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        table_area,
    );

    if app.queue.visible.is_empty() {
        let why = if app.queue.rows.is_empty() && app.loading > 0 {
            "loading…".to_string()
        } else if app.queue.rows.is_empty() {
            "no change requests yet — CI submits them with `tollgate submit cr.json`".to_string()
        } else if !app.queue.filter.is_empty() {
            format!(
                "nothing in {} matches \"{}\"",
                app.queue.view.label(),
                app.queue.filter
            )
        } else {
            format!(
                "nothing in {} — press {} for the next view",
                app.queue.view.label(),
                app.settings
                    .keymap
                    .hint(crate::tui::keymap::Action::NextView)
            )
        };
        let msg_area = Rect {
            y: table_area.y + 2.min(table_area.height.saturating_sub(1)),
            height: 1,
            ..table_area
        };
        f.render_widget(
            Paragraph::new(Span::styled(format!("  {why}"), theme.muted())),
            msg_area,
        );
    }

    if show_filter {
        let cursor = if app.queue.filtering { "▏" } else { "" };
        let line = Line::from(vec![
            Span::styled("/", theme.accent()),
            Span::styled(
                crate::domain::text::sanitize(&app.queue.filter),
                theme.text(),
            ),
            Span::styled(cursor, theme.accent()),
            Span::styled(
                format!(
                    "   {} of {} match",
                    app.queue.visible.len(),
                    app.queue.view_total()
                ),
                theme.muted(),
            ),
        ]);
        f.render_widget(Paragraph::new(line), filter_area);
    }
}
