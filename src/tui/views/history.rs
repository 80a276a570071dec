//! The History screen: the integrity banner, every decision (a virtualised table: only the
//! visible rows are built, so a million entries draw as fast as ten), the signed record
//! behind a row, and the governance-health tab with a lead-time chart.

use crate::history::{EmergencyEvent, EventKind, HistoryEntry, health, human_duration};
use crate::tui::app::{App, HistoryState, Integrity};
use crate::tui::keymap::Action;
use crate::tui::screens::history::HistoryRow;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Bar, BarChart, BarGroup, Block, Borders, Cell, Paragraph, Row, Table, Wrap,
};

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

fn banner<'a>(app: &App, h: &HistoryState) -> Line<'a> {
    let theme = &app.settings.theme;
    match &h.integrity {
        Integrity::Verifying => Line::from(Span::styled(
            format!(
                " {} verifying the audit log in the background…",
                SPINNER[app.spinner % SPINNER.len()]
            ),
            theme.accent(),
        )),
        Integrity::Done(report, ms) => match &report.first_bad {
            None => Line::from(Span::styled(
                format!(
                    " ✓ audit log verified: {}, every link intact ({ms} ms)",
                    crate::domain::text::entries_and_signatures(report.entries, report.signatures)
                ),
                theme.pass(),
            )),
            Some(bad) => Line::from(Span::styled(
                format!(
                    " ✗ AUDIT LOG BROKEN at entry {}: {} — {} — do not trust entries from {} on ",
                    bad.seq,
                    bad.problem,
                    crate::domain::text::sanitize(&bad.detail),
                    bad.seq
                ),
                theme.error().add_modifier(Modifier::REVERSED),
            )),
        },
        Integrity::Failed(e) => Line::from(Span::styled(
            format!(
                " ✗ could not verify the audit log: {}",
                crate::domain::text::sanitize(e)
            ),
            theme.error().add_modifier(Modifier::REVERSED),
        )),
    }
}

/// A signed record as a person reads it: signature, what it is bound to, then its fields
/// by name (verdict, who, when, rationale, ticks), then the signed JSON itself.
fn record_lines(
    record: &crate::tui::app::RecordView,
    theme: &crate::tui::theme::Theme,
) -> Vec<Line<'static>> {
    use crate::domain::text::{sanitize, sanitize_with};
    let body: serde_json::Value = serde_json::from_str(&record.body).unwrap_or_default();
    let field = |name: &str| body.get(name).and_then(|v| v.as_str()).map(sanitize);
    let mut lines = vec![Line::from(vec![
        Span::styled(format!(" entry {} ", record.seq), theme.selected()),
        match &record.signature {
            Ok(s) => Span::styled(format!(" ✓ {}", sanitize(s)), theme.pass()),
            Err(e) => Span::styled(format!(" ✗ {}", sanitize(&e.to_string())), theme.error()),
        },
    ])];
    if !record.revision.is_empty() {
        lines.push(Line::from(Span::styled(
            format!(" bound to {}", sanitize(&record.revision)),
            theme.text(),
        )));
    }
    let row = |label: &str, value: String| {
        Line::from(vec![
            Span::styled(format!(" {label:<10}"), theme.muted()),
            Span::styled(value, theme.text()),
        ])
    };
    if let Some(kind) = field("type").or_else(|| field("kind")) {
        lines.push(row("kind", kind));
    }
    if let Some(v) = field("verdict") {
        lines.push(row("verdict", v));
    }
    if let Some(who) = field("principal") {
        let role = field("role")
            .map(|r| format!(" as {r}"))
            .unwrap_or_default();
        lines.push(row("by", format!("{who}{role}")));
    }
    if let Some(at) = field("at") {
        lines.push(row("signed at", at));
    }
    // Emergency entries: what was rolled back, why, what the command did, the review.
    if let Some(incident) = field("incident") {
        lines.push(row("incident", incident));
    }
    if let (Some(subject), Some(env)) = (field("subject"), field("environment")) {
        let versions = match (field("from_version"), field("to_version")) {
            (Some(from), Some(to)) => format!(" from {from} to {to}"),
            _ => String::new(),
        };
        lines.push(row("rollback", format!("{subject}@{env}{versions}")));
    }
    if let Some(reason) = field("reason") {
        lines.push(row("reason", reason));
    }
    if body.get("exit_status").is_some() || body.get("timed_out").is_some() {
        let status = match (
            body.get("exit_status").and_then(|v| v.as_i64()),
            body.get("timed_out").and_then(|v| v.as_bool()),
        ) {
            (_, Some(true)) => "timed out".to_string(),
            (Some(code), _) => format!("exit {code}"),
            _ => "no exit status".to_string(),
        };
        lines.push(row("command", status));
    }
    for (name, label) in [
        ("root_cause", "root cause"),
        ("follow_ups", "follow-ups"),
        ("policy_changes", "policy"),
    ] {
        if let Some(v) = field(name) {
            lines.push(row(label, v));
        }
    }
    if let Some(ticks) = body
        .get("ticks")
        .and_then(|t| t.as_array())
        .filter(|t| !t.is_empty())
    {
        let list: Vec<String> = ticks
            .iter()
            .map(|t| {
                let item = t
                    .get("item")
                    .and_then(|v| v.as_str())
                    .map(sanitize)
                    .unwrap_or_default();
                match t.get("note").and_then(|v| v.as_str()) {
                    Some(note) => format!("{item} ({})", sanitize(note)),
                    None => item,
                }
            })
            .collect();
        lines.push(row("ticks", list.join(", ")));
    }
    if let Some(rationale) = body.get("rationale").and_then(|v| v.as_str()) {
        lines.push(Line::from(Span::styled(" rationale", theme.muted())));
        lines.extend(
            sanitize_with(rationale, true)
                .lines()
                .map(|l| Line::from(Span::styled(format!("   {l}"), theme.text()))),
        );
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(
        " signed body (JSON)",
        theme.muted(),
    )));
    lines.extend(
        sanitize_with(&record.body, true)
            .lines()
            .map(|l| Line::from(Span::styled(l.to_string(), theme.muted()))),
    );
    lines
}

/// Whether entry `seq` is covered by a successful verification.
fn verified(h: &HistoryState, seq: u64) -> Option<bool> {
    match &h.integrity {
        Integrity::Done(report, _) => Some(report.first_bad.as_ref().is_none_or(|b| seq < b.seq)),
        _ => None,
    }
}

/// Draws the History screen.
pub fn draw(f: &mut Frame, area: Rect, app: &App, h: &HistoryState) {
    let theme = &app.settings.theme;
    let show_filter = h.filtering || !h.filter.is_empty();
    let filter = show_filter.then(|| filter_paragraph(app, h));
    let filter_height = filter
        .as_ref()
        .map_or(0, |p| p.line_count(area.width).clamp(1, 3) as u16);
    let [banner_area, tabs, body, filter_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(filter_height),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(banner(app, h)), banner_area);
    let tab = |label: &str, on: bool| {
        if on {
            Span::styled(format!(" {label} "), theme.selected())
        } else {
            Span::styled(format!(" {label} "), theme.muted())
        }
    };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(" History ", theme.title()),
            tab(&rows_label(h), !h.health),
            tab("Governance health", h.health),
            Span::styled(
                format!(
                    "  sorted by {}{}",
                    h.sort.label(),
                    if h.reverse { " ↓" } else { "" }
                ),
                theme.muted(),
            ),
        ])),
        tabs,
    );
    if h.health {
        draw_health(f, body, app, h);
    } else {
        let (table_area, record_area) = if h.record.is_some() {
            // The record is what is being read: it gets most of the screen.
            let [t, r] = Layout::vertical([Constraint::Percentage(30), Constraint::Percentage(70)])
                .areas(body);
            (t, Some(r))
        } else {
            (body, None)
        };
        draw_table(f, table_area, app, h);
        if let (Some(area), Some(record)) = (record_area, &h.record) {
            let (area, bar) = if h.find.editing || h.find.active() {
                let [area, bar] =
                    Layout::vertical([Constraint::Min(2), Constraint::Length(1)]).areas(area);
                (area, Some(bar))
            } else {
                (area, None)
            };
            let mut lines = record_lines(record, theme);
            let rows = super::find::mark_matches(&mut lines, &h.find, area.width);
            let block = Block::default()
                .borders(Borders::TOP)
                .border_style(theme.border())
                .title(format!(
                    " signed record — {}/{} scroll, {} or {} closes ",
                    app.settings.keymap.hint(Action::Up),
                    app.settings.keymap.hint(Action::Down),
                    app.settings.keymap.hint(Action::Open),
                    app.settings.keymap.hint(Action::Back)
                ));
            let text = Paragraph::new(lines).wrap(Wrap { trim: false });
            let inner_height = area.height.saturating_sub(1);
            let top = h
                .record_scroll
                .for_view(text.line_count(area.width), inner_height);
            let scroll = match h.find.resolve(&rows, top as usize) {
                Some(row) => h.record_scroll.show_row(row),
                None => top,
            };
            f.render_widget(text.scroll((scroll, 0)).block(block), area);
            if let Some(bar) = bar {
                f.render_widget(Paragraph::new(super::find::bar(app, &h.find)), bar);
            }
        }
    }
    if let Some(filter) = filter {
        f.render_widget(filter, filter_area);
    }
}

/// History's columns.
#[derive(Clone, Copy, PartialEq)]
enum HCol {
    Decided,
    Cr,
    Subject,
    Verdict,
    By,
    Role,
    Risk,
    Lead,
    Record,
}

/// The columns that fit `width`, in display order: the ones that say what was decided by
/// whom are always there; risk, subject, lead time and role join while they fit (an
/// optional column is dropped rather than every column cut).
fn history_columns(width: u16) -> Vec<(HCol, &'static str, u16)> {
    let mut cols = vec![
        (HCol::Decided, "DECIDED", 16),
        (HCol::Cr, "CR", 9),
        (HCol::Verdict, "VERDICT", 8),
        (HCol::By, "BY", 8),
        (HCol::Record, "RECORD", 11),
    ];
    // (column, name, width, position among the columns already placed)
    let optional = [
        (HCol::Risk, "RISK", 6, 4),
        (HCol::Subject, "SUBJECT", 14, 2),
        (HCol::Lead, "LEAD", 8, 6),
        (HCol::Role, "ROLE", 14, 5),
    ];
    for (col, name, w, pos) in optional {
        let used: u16 = cols.iter().map(|c| c.2 + 1).sum();
        if used + w < width {
            cols.insert(pos.min(cols.len()), (col, name, w));
        }
    }
    cols
}

fn draw_table(f: &mut Frame, area: Rect, app: &App, h: &HistoryState) {
    let theme = &app.settings.theme;
    let cols = history_columns(area.width);
    let header = Row::new(cols.iter().map(|(_, name, _)| Cell::from(*name))).style(theme.muted());
    let page = area.height.saturating_sub(1) as usize;
    let end = (h.cursor.offset + page).min(h.visible.len());
    let rows: Vec<Row> = (h.cursor.offset..end)
        .map(|pos| {
            let cells = match h.visible[pos] {
                HistoryRow::Decision(i) => decision_cells(app, h, &cols, &h.data.entries[i]),
                HistoryRow::Event(i) => event_cells(app, h, &cols, &h.data.events[i]),
            };
            let row = Row::new(cells);
            if pos == h.cursor.selected {
                row.style(theme.selected())
            } else {
                row.style(theme.text())
            }
        })
        .collect();
    draw_rows(f, area, app, h, &cols, header, rows);
}

/// The columns every row fills the same way: when, who, and whether its record verified.
fn common_cell<'a>(
    app: &App,
    h: &HistoryState,
    col: HCol,
    at: chrono::DateTime<chrono::Utc>,
    principal: &str,
    seq: u64,
) -> Option<Cell<'a>> {
    let theme = &app.settings.theme;
    Some(match col {
        HCol::Decided => Cell::from(at.format("%Y-%m-%d %H:%M").to_string()),
        HCol::By => Cell::from(crate::domain::text::sanitize(principal)),
        HCol::Record => Cell::from(match verified(h, seq) {
            Some(true) => Span::styled("✓ verified", theme.pass()),
            Some(false) => Span::styled("✗ untrusted", theme.error()),
            None => Span::styled("…", theme.muted()),
        }),
        _ => return None,
    })
}

/// A rollback, its outcome or a review, in the decision columns: the incident where the
/// CR goes, what happened where the verdict goes.
fn event_cells<'a>(
    app: &App,
    h: &HistoryState,
    cols: &[(HCol, &'static str, u16)],
    e: &EmergencyEvent,
) -> Vec<Cell<'a>> {
    let theme = &app.settings.theme;
    let sanitize = crate::domain::text::sanitize;
    cols.iter()
        .map(|(col, _, _)| match col {
            HCol::Decided | HCol::By | HCol::Record => {
                common_cell(app, h, *col, e.at, &e.principal, e.seq).unwrap_or_default()
            }
            HCol::Cr => Cell::from(sanitize(&e.incident)),
            HCol::Subject => Cell::from(match (&e.kind, e.subject.is_empty()) {
                (_, true) => String::new(),
                (
                    EventKind::Rollback {
                        from_version,
                        to_version,
                    },
                    false,
                ) => format!(
                    "{}@{} {}→{}",
                    sanitize(&e.subject),
                    e.environment,
                    sanitize(from_version),
                    sanitize(to_version)
                ),
                (_, false) => format!("{}@{}", sanitize(&e.subject), e.environment),
            }),
            HCol::Verdict => Cell::from(Span::styled(
                e.kind.label(),
                match e.kind {
                    EventKind::RollbackRan { succeeded: false } => theme.fail(),
                    EventKind::Review => theme.pass(),
                    _ => theme.warning(),
                },
            )),
            HCol::Role => Cell::from(Span::styled(
                match e.kind {
                    EventKind::Review => "post-incident",
                    _ => "on-call",
                },
                theme.muted(),
            )),
            HCol::Risk | HCol::Lead => Cell::from(Span::styled("—", theme.muted())),
        })
        .collect()
}

fn decision_cells<'a>(
    app: &App,
    h: &HistoryState,
    cols: &[(HCol, &'static str, u16)],
    e: &HistoryEntry,
) -> Vec<Cell<'a>> {
    let theme = &app.settings.theme;
    let sanitize = crate::domain::text::sanitize;
    cols.iter()
        .map(|(col, _, _)| match col {
            HCol::Decided | HCol::By | HCol::Record => {
                common_cell(app, h, *col, e.at, &e.principal, e.seq).unwrap_or_default()
            }
            HCol::Cr => Cell::from(sanitize(&e.cr_id)),
            HCol::Subject => Cell::from(format!("{}@{}", sanitize(&e.subject), e.environment)),
            HCol::Verdict => Cell::from(match e.verdict {
                crate::domain::decision::Verdict::Approve => Span::styled("approve", theme.pass()),
                crate::domain::decision::Verdict::Reject => Span::styled("reject", theme.fail()),
                crate::domain::decision::Verdict::RequestChanges => {
                    Span::styled("changes", theme.warning())
                }
            }),
            HCol::Role => Cell::from(sanitize(&e.role)),
            HCol::Risk => Cell::from(Span::styled(e.risk.as_str(), theme.risk(e.risk))),
            HCol::Lead => Cell::from(
                e.lead_time
                    .map(human_duration)
                    .unwrap_or_else(|| "—".into()),
            ),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn draw_rows(
    f: &mut Frame,
    area: Rect,
    app: &App,
    h: &HistoryState,
    cols: &[(HCol, &'static str, u16)],
    header: Row<'_>,
    rows: Vec<Row<'_>>,
) {
    let theme = &app.settings.theme;
    let widths: Vec<Constraint> = cols
        .iter()
        .map(|(col, _, w)| {
            if *col == HCol::Subject {
                Constraint::Min(*w)
            } else {
                Constraint::Length(*w)
            }
        })
        .collect();
    f.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        area,
    );
    if h.visible.is_empty() {
        let text = if h.loading {
            "loading the history…".to_string()
        } else if h.data.entries.is_empty() {
            "no decisions recorded yet".to_string()
        } else {
            "nothing matches the filter".to_string()
        };
        let msg = Rect {
            y: area.y + 2.min(area.height.saturating_sub(1)),
            height: 1,
            ..area
        };
        f.render_widget(
            Paragraph::new(Span::styled(format!("  {text}"), theme.muted())),
            msg,
        );
    }
}

fn draw_health(f: &mut Frame, area: Rect, app: &App, h: &HistoryState) {
    let theme = &app.settings.theme;
    let shown = h.shown_decisions();
    let stats = health(&shown, &h.data.waiting, &app.exceptions, app.now);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let secs = |s: Option<i64>| {
        s.map(|x| human_duration(chrono::Duration::seconds(x)))
            .unwrap_or_else(|| "—".into())
    };
    let mut lines = vec![
        Line::from(Span::styled(
            format!(
                "Lead time, submitted → decided ({} decisions in view)",
                stats.decisions
            ),
            theme.title(),
        )),
        Line::from(Span::styled(
            format!(
                "  {:<8} {:>9} {:>10} {:>10}",
                "risk", "decisions", "median", "p90"
            ),
            theme.muted(),
        )),
    ];
    for l in &stats.lead_times {
        lines.push(Line::from(vec![
            Span::styled(format!("  {:<8}", l.risk.as_str()), theme.risk(l.risk)),
            Span::styled(
                format!(
                    " {:>9} {:>10} {:>10}",
                    l.decisions,
                    secs(l.median_secs),
                    secs(l.p90_secs)
                ),
                theme.text(),
            ),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("Outcomes", theme.title())));
    lines.push(Line::from(Span::styled(
        format!(
            "  approve {:.0} %   reject {:.0} %   request changes {:.0} %",
            stats.approval_rate * 100.0,
            stats.rejection_rate * 100.0,
            stats.changes_rate * 100.0
        ),
        theme.text(),
    )));
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(
        "Emergency exceptions",
        theme.title(),
    )));
    lines.push(Line::from(vec![
        Span::styled(
            format!(
                "  {} opened, {} closed, ",
                stats.exceptions_opened, stats.exceptions_closed
            ),
            theme.text(),
        ),
        Span::styled(
            format!("{} review overdue", stats.exceptions_overdue),
            if stats.exceptions_overdue > 0 {
                theme.error()
            } else {
                theme.text()
            },
        ),
    ]));
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("Over-governance", theme.title())));
    if stats.slow_low_risk.is_empty() {
        lines.push(Line::from(Span::styled(
            format!(
                "  no low-risk change has waited over {} h",
                stats.slow_after_hours
            ),
            theme.pass(),
        )));
    }
    for w in stats.slow_low_risk.iter().take(8) {
        lines.push(Line::from(Span::styled(
            format!(
                "  {} low risk, waiting {}",
                crate::domain::text::sanitize(&w.cr_id),
                w.waited.map(human_duration).unwrap_or_default()
            ),
            theme.warning(),
        )));
    }
    f.render_widget(Paragraph::new(lines), left);

    // Median lead time by risk: the chart a lead reads at a glance (minutes when short).
    let longest = stats
        .lead_times
        .iter()
        .filter_map(|l| l.median_secs)
        .max()
        .unwrap_or(0);
    let (unit, divisor) = if longest < 2 * 3600 {
        ("minutes", 60)
    } else {
        ("hours", 3600)
    };
    let bars: Vec<Bar> = stats
        .lead_times
        .iter()
        .map(|l| {
            Bar::default()
                .value(l.median_secs.unwrap_or(0).max(0) as u64 / divisor)
                .label(Line::from(l.risk.as_str()))
                .text_value(secs(l.median_secs))
                .style(theme.risk(l.risk))
        })
        .collect();
    let chart = BarChart::default()
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.border())
                .title(format!(" median lead time ({unit}) ")),
        )
        .data(BarGroup::default().bars(&bars))
        .bar_width(9)
        .bar_gap(3);
    f.render_widget(chart, right);
}

/// The filter line with its match count and any error, wrapped: a long error is read in
/// full rather than cut at the width.
fn filter_paragraph<'a>(app: &App, h: &HistoryState) -> Paragraph<'a> {
    let theme = &app.settings.theme;
    let mut spans = vec![
        Span::styled("/", theme.accent()),
        Span::styled(crate::domain::text::sanitize(&h.filter), theme.text()),
        Span::styled(if h.filtering { "▏" } else { "" }, theme.accent()),
        Span::styled(
            if h.data.events.is_empty() {
                format!(
                    "   {} of {} decisions",
                    h.visible.len(),
                    h.data.entries.len()
                )
            } else {
                format!(
                    "   {} of {} entries (decisions, rollbacks, reviews)",
                    h.visible.len(),
                    h.data.entries.len() + h.data.events.len()
                )
            },
            theme.muted(),
        ),
    ];
    if let Some(e) = &h.filter_error {
        let shown = crate::domain::text::sanitize(&e.to_string());
        spans.push(Span::styled(format!("   {shown}"), theme.error()));
    } else if h.filtering && h.filter.is_empty() {
        spans.push(Span::styled(
            "   principal: subject: gate: risk: verdict: since:YYYY-MM-DD until: words",
            theme.muted(),
        ));
    }
    Paragraph::new(Line::from(spans)).wrap(Wrap { trim: false })
}

/// The table tab: decisions shown, and the emergency entries beside them when there are.
fn rows_label(h: &HistoryState) -> String {
    let events = h
        .visible
        .iter()
        .filter(|r| matches!(r, HistoryRow::Event(_)))
        .count();
    let decisions = h.visible.len() - events;
    if h.data.events.is_empty() {
        format!("Decisions {decisions}")
    } else {
        format!("Decisions {decisions} · Emergency {events}")
    }
}
