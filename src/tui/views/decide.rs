//! The decision form and the confirmation that shows exactly what will be signed.

use crate::domain::decision::Verdict;
use crate::domain::text::sanitize;
use crate::tui::app::{App, DecideForm, Field, Signer};
use crate::tui::keymap::Action;
use crate::tui::views::centered;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Approve => "Approve",
        Verdict::RequestChanges => "Request changes",
        Verdict::Reject => "Reject",
    }
}

/// Draws the form over the detail screen.
pub fn draw_form(f: &mut Frame, area: Rect, app: &App, form: &DecideForm) {
    let theme = &app.settings.theme;
    let popup = centered(area, 96, 30);
    f.render_widget(Clear, popup);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(Span::styled(
            format!(
                " Decide on {} (revision {}) ",
                sanitize(&form.cr_id),
                form.revision
            ),
            theme.title(),
        ));
    let inner = block.inner(popup);
    f.render_widget(block, popup);
    let items_height = (form.items.len() as u16 + 1).min(8);
    let [
        verdict_area,
        role_area,
        items_area,
        rationale_area,
        error_area,
    ] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(items_height),
        Constraint::Min(3),
        Constraint::Length(if form.error.is_some() {
            2
        } else {
            (form.early.len() as u16 * 2).min(6)
        }),
    ])
    .areas(inner);

    let label = |field: Field, text: &'static str| {
        let style = if form.focus == field {
            theme.accent()
        } else {
            theme.muted()
        };
        Span::styled(format!("{text:<10}"), style)
    };

    let mut spans = vec![label(Field::Verdict, "Verdict")];
    for v in [Verdict::Approve, Verdict::RequestChanges, Verdict::Reject] {
        let text = format!(" {} ", verdict_label(v));
        spans.push(if v == form.verdict {
            Span::styled(text, theme.selected())
        } else {
            Span::styled(text, theme.muted())
        });
        spans.push(Span::raw(" "));
    }
    let keymap = &app.settings.keymap;
    let change = |a: Action, b: Action| {
        Span::styled(
            format!("{}/{} to change", keymap.hint(a), keymap.hint(b)),
            theme.muted(),
        )
    };
    if form.focus == Field::Verdict {
        spans.push(change(Action::PrevVerdict, Action::NextVerdict));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), verdict_area);

    let mut spans = vec![label(Field::Role, "Role")];
    if form.roles.is_empty() {
        spans.push(Span::styled("no role to sign in", theme.error()));
    }
    for (i, r) in form.roles.iter().enumerate() {
        let text = format!(" {r} ");
        spans.push(if i == form.role {
            Span::styled(text, theme.selected())
        } else {
            Span::styled(text, theme.muted())
        });
        spans.push(Span::raw(" "));
    }
    if form.focus == Field::Role && form.roles.len() > 1 {
        spans.push(change(Action::Up, Action::Down));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), role_area);

    let mut lines = vec![Line::from(vec![
        label(Field::Checklist, "Checklist"),
        Span::styled(
            format!(
                "manual items you have checked ({} ticks, {} adds how)",
                keymap.hint(Action::ToggleTick),
                keymap.hint(Action::TickNote)
            ),
            theme.muted(),
        ),
    ])];
    for (i, item) in form.items.iter().enumerate() {
        let cursor = if form.focus == Field::Checklist && i == form.item_cursor {
            "▸"
        } else {
            " "
        };
        let mark = if item.ticked { "[x]" } else { "[ ]" };
        let mut spans = vec![
            Span::styled(format!("          {cursor} "), theme.accent()),
            Span::styled(
                format!("{mark} "),
                if item.ticked {
                    theme.pass()
                } else {
                    theme.text()
                },
            ),
            Span::styled(sanitize(&item.label), theme.text()),
        ];
        if item.blocking {
            spans.push(Span::styled(" ● blocking", theme.warning()));
        }
        if !item.ticked_by.is_empty() {
            spans.push(Span::styled(
                format!(" (ticked by {})", item.ticked_by.join(", ")),
                theme.muted(),
            ));
        }
        let editing = form.note_edit.is_some() && i == form.item_cursor;
        if editing || !item.note.is_empty() {
            spans.push(Span::styled(" — note: ", theme.muted()));
            spans.push(Span::styled(sanitize(&item.note), theme.text()));
            if editing {
                spans.push(Span::styled("▏", theme.accent()));
            }
        }
        lines.push(Line::from(spans));
    }
    f.render_widget(Paragraph::new(lines), items_area);

    let [rl, rt] =
        Layout::horizontal([Constraint::Length(10), Constraint::Min(10)]).areas(rationale_area);
    f.render_widget(Paragraph::new(label(Field::Rationale, "Rationale")), rl);
    let mut text = form.rationale.clone();
    text.set_placeholder_text(format!(
        "Why? A sentence or two the auditor will read ({} opens $EDITOR)",
        keymap.hint(Action::ExternalEditor)
    ));
    text.set_block(Block::default().borders(Borders::ALL).border_style(
        if form.focus == Field::Rationale {
            theme.accent()
        } else {
            theme.border()
        },
    ));
    text.set_style(theme.text());
    text.set_cursor_line_style(theme.text());
    if form.focus != Field::Rationale {
        text.set_cursor_style(theme.text());
    }
    f.render_widget(&text, rt);

    if let Some(e) = &form.error {
        f.render_widget(
            Paragraph::new(Span::styled(
                format!("not signed: {}", sanitize(e)),
                theme.error(),
            ))
            .wrap(Wrap { trim: true }),
            error_area,
        );
    } else if !form.early.is_empty() {
        // Said before the rationale is written, not after: every rule at once.
        let lines: Vec<Line> = form
            .early
            .iter()
            .map(|r| {
                Line::from(Span::styled(
                    format!(
                        "as it stands: {} — {}",
                        sanitize(&r.message),
                        sanitize(&form.remedy_here(r, &app.settings.keymap))
                    ),
                    theme.error(),
                ))
            })
            .collect();
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), error_area);
    }
}

/// Draws the confirmation: exactly what will be signed, or why the rules refuse it.
pub fn draw_confirm(f: &mut Frame, area: Rect, app: &App, form: &DecideForm) {
    let theme = &app.settings.theme;
    let popup = centered(area, 90, 22);
    f.render_widget(Clear, popup);
    let refused = !form.refusals.is_empty();
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(if refused {
            theme.error()
        } else {
            theme.accent()
        })
        .title(Span::styled(
            if refused {
                " Refused by policy "
            } else {
                " Sign this decision? "
            },
            theme.title(),
        ));
    let inner = block.inner(popup);
    f.render_widget(block, popup);
    let (who, fingerprint) = match &app.signer {
        Signer::Principal {
            principal,
            fingerprint,
        } => (principal.id.clone(), fingerprint.clone()),
        Signer::ReadOnly(_) => ("—".into(), "—".into()),
    };
    let ticks: Vec<String> = form
        .items
        .iter()
        .filter(|i| i.ticked)
        .map(|i| match i.note.trim() {
            "" => i.id.clone(),
            note => format!("{} ({})", i.id, sanitize(note)),
        })
        .collect();
    let row = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<12}"), theme.muted()),
            Span::styled(v, theme.text()),
        ])
    };
    // Refused: the reasons come first, so a small terminal shows them before the rest.
    let mut lines = Vec::new();
    for r in &form.refusals {
        lines.push(Line::from(Span::styled(
            format!("✗ {}", sanitize(&r.message)),
            theme.error(),
        )));
        lines.push(Line::from(vec![
            Span::styled("  to proceed: ", theme.muted()),
            Span::styled(
                sanitize(&form.remedy_here(r, &app.settings.keymap)),
                theme.text(),
            ),
            Span::styled(format!("  [{}]", r.rule), theme.muted()),
        ]));
    }
    if refused {
        lines.push(Line::default());
    }
    lines.extend([
        row(
            "change",
            format!("{} revision {}", sanitize(&form.cr_id), form.revision),
        ),
        row("content", form.digest.clone()),
        Line::from(vec![
            Span::styled(format!("{:<12}", "verdict"), theme.muted()),
            Span::styled(
                verdict_label(form.verdict).to_uppercase(),
                if form.verdict == Verdict::Approve {
                    theme.pass()
                } else {
                    theme.fail()
                },
            ),
        ]),
        row("role", form.role().to_string()),
        row(
            "ticks",
            if ticks.is_empty() {
                "none".into()
            } else {
                ticks.join(", ")
            },
        ),
        row("signed by", format!("{who} with {fingerprint}")),
        row("rationale", String::new()),
    ]);
    for l in sanitize_multiline(&form.rationale_text()) {
        lines.push(Line::from(Span::styled(format!("    {l}"), theme.text())));
    }
    lines.push(Line::default());
    if refused {
        lines.push(Line::from(Span::styled(
            "nothing can be signed until the form changes",
            theme.muted(),
        )));
    } else if form.signing {
        lines.push(Line::from(Span::styled("signing…", theme.accent())));
    } else {
        lines.push(Line::from(vec![
            Span::styled(app.settings.keymap.hint(Action::Sign), theme.accent()),
            Span::styled(" sign and record — this cannot be undone · ", theme.text()),
            Span::styled(app.settings.keymap.hint(Action::Cancel), theme.accent()),
            Span::styled("/", theme.muted()),
            Span::styled(app.settings.keymap.hint(Action::Back), theme.accent()),
            Span::styled(" back to the form", theme.text()),
        ]));
    }
    if let Some(e) = &form.error {
        lines.push(Line::from(Span::styled(
            format!("not signed: {}", sanitize(e)),
            theme.error(),
        )));
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn sanitize_multiline(text: &str) -> Vec<String> {
    crate::domain::text::sanitize_with(text, true)
        .lines()
        .map(String::from)
        .collect()
}
