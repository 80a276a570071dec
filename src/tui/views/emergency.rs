//! The emergency flow (`!`) and the Exceptions screen (`E`).

use crate::domain::emergency::{ExceptionState, LiveBasis, countdown};
use crate::domain::text::sanitize;
use crate::tui::app::{App, EmergencyField, EmergencyForm, EmergencyStep, Signer};
use crate::tui::keymap::Action;
use crate::tui::screens::emergency::Finish;
use crate::tui::screens::exceptions::{ReviewField, ReviewForm};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

/// Draws the emergency flow.
pub fn draw(f: &mut Frame, area: Rect, app: &App, form: &EmergencyForm) {
    let theme = &app.settings.theme;
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.error())
        .title(Span::styled(
            " EMERGENCY ROLLBACK — bypasses normal review ",
            theme.error(),
        ));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut lines: Vec<Line> = Vec::new();
    if let Some(why) = &form.refusal {
        lines.push(Line::from(Span::styled(
            "You cannot authorise an emergency rollback.",
            theme.error(),
        )));
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(why.clone(), theme.text())));
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
        return;
    }
    let who = match &app.signer {
        Signer::Principal { principal, .. } => principal.id.clone(),
        Signer::ReadOnly(_) => "—".into(),
    };
    match form.step {
        EmergencyStep::Pick => {
            lines.push(Line::from(Span::styled(
                "Which model or deployment? (most recent changes first)",
                theme.title(),
            )));
            lines.push(Line::default());
            // One row per subject, never wrapped: the name column is as wide as the
            // longest name (up to 24) and the reason is cut to what is left.
            let name_w = app
                .subjects
                .iter()
                .map(|s| s.name.chars().count())
                .max()
                .unwrap_or(7)
                .clamp(7, 24);
            let row = |mark: &str, name: &str, env: &str, cur: &str, good: &str, why: &str| {
                let text = format!(
                    "{mark} {name:<name_w$} {env:<7} {cur:<9} {good:<9} {why}",
                    name = crate::domain::text::truncate(name, name_w),
                    env = crate::domain::text::truncate(env, 7),
                    cur = crate::domain::text::truncate(cur, 9),
                    good = crate::domain::text::truncate(good, 9),
                );
                crate::domain::text::truncate(&text, inner.width as usize)
            };
            lines.push(Line::from(Span::styled(
                row(" ", "SUBJECT", "ENV", "CURRENT", "LAST GOOD", "WHY CURRENT"),
                theme.muted(),
            )));
            for (i, s) in app.subjects.iter().enumerate() {
                let selected = i == form.cursor.selected;
                let text = row(
                    if selected { "▸" } else { " " },
                    &sanitize(&s.name),
                    &s.environment,
                    &sanitize(&s.current),
                    &s.last_good
                        .as_deref()
                        .map(sanitize)
                        .unwrap_or_else(|| "—".into()),
                    &sanitize(&s.basis_text()),
                );
                let style = if selected {
                    theme.selected()
                } else if matches!(s.basis, LiveBasis::Assumed) {
                    theme.muted()
                } else {
                    theme.text()
                };
                lines.push(Line::from(Span::styled(text, style)));
            }
            if app.subjects.is_empty() {
                lines.push(Line::from(Span::styled(
                    "no subjects known yet (no change requests)",
                    theme.muted(),
                )));
            }
        }
        EmergencyStep::Details | EmergencyStep::Confirm => {
            let Some(s) = &form.subject else { return };
            lines.push(Line::from(vec![
                Span::styled("Roll back ", theme.text()),
                Span::styled(
                    format!("{}@{}", sanitize(&s.name), s.environment),
                    theme.title(),
                ),
                Span::styled(
                    format!("  current {}  →  ", sanitize(&s.current)),
                    theme.text(),
                ),
                Span::styled(sanitize(&form.target), theme.pass()),
                Span::styled(format!("   · {}", sanitize(&s.basis_text())), theme.muted()),
            ]));
            lines.push(Line::default());
            let field = |label: &str, value: &str, focus: bool, hint: &str| {
                Line::from(vec![
                    Span::styled(
                        format!("{label:<14}"),
                        if focus { theme.accent() } else { theme.muted() },
                    ),
                    Span::styled(
                        format!(
                            "{}{}",
                            sanitize(value),
                            if focus && form.step == EmergencyStep::Details {
                                "▏"
                            } else {
                                ""
                            }
                        ),
                        theme.text(),
                    ),
                    Span::styled(
                        if value.is_empty() {
                            format!("  {hint}")
                        } else {
                            String::new()
                        },
                        theme.muted(),
                    ),
                ])
            };
            lines.push(field(
                "incident",
                &form.incident,
                form.focus == EmergencyField::Incident,
                "ticket id, e.g. INC-2291",
            ));
            lines.push(field(
                "reason",
                &form.reason,
                form.focus == EmergencyField::Reason,
                "one line: what is hurting users",
            ));
            lines.push(field(
                "roll back to",
                &form.target,
                form.focus == EmergencyField::Target,
                "version",
            ));
            lines.push(Line::default());
            if form.step == EmergencyStep::Details {
                if let Some(problem) = &form.problem {
                    lines.push(Line::from(Span::styled(sanitize(problem), theme.error())));
                }
            } else {
                let policy = &app.policy.emergency;
                lines.push(Line::from(Span::styled(
                    "This will be signed and recorded:",
                    theme.title(),
                )));
                lines.push(Line::from(Span::styled(
                    format!(
                        "  {who} authorises rolling back {}@{} from {} to {} for {} — \"{}\"",
                        sanitize(&s.name),
                        s.environment,
                        sanitize(&s.current),
                        sanitize(&form.target),
                        sanitize(&form.incident),
                        sanitize(&form.reason)
                    ),
                    theme.text(),
                )));
                lines.push(Line::from(Span::styled(
                    format!(
                        "  opens an exception for {} h (or joins the incident's open one); post-incident review due within {} h",
                        policy.exception_hours, policy.post_review_hours
                    ),
                    theme.text(),
                )));
                let invocation = form
                    .request()
                    .and_then(|r| crate::workflow::rollback_invocation(&app.policy, &r));
                lines.push(Line::from(Span::styled(
                    match invocation {
                        Some((argv, timeout)) => format!(
                            "  then runs: {} (timeout {} s)",
                            crate::workflow::shown_argv(&argv),
                            timeout.as_secs()
                        ),
                        None => "  no rollback command in the policy: the operator acts on the authorisation".into(),
                    },
                    theme.muted(),
                )));
                lines.push(Line::default());
                let keymap = &app.settings.keymap;
                lines.push(Line::from(vec![
                    Span::styled(keymap.hint(Action::Sign), theme.accent()),
                    Span::styled(" sign and roll back  ", theme.text()),
                    Span::styled(keymap.hint(Action::Cancel), theme.accent()),
                    Span::styled(" edit  ", theme.text()),
                    Span::styled(keymap.hint(Action::Back), theme.accent()),
                    Span::styled(" back", theme.text()),
                ]));
                if form.busy {
                    lines.push(Line::from(Span::styled("signing…", theme.accent())));
                }
            }
        }
        EmergencyStep::Running | EmergencyStep::Done => {
            let title = if form.step == EmergencyStep::Running {
                "Rolling back…"
            } else {
                "Emergency rollback"
            };
            lines.push(Line::from(Span::styled(title, theme.title())));
            if let Some(s) = &form.subject {
                lines.push(Line::from(Span::styled(
                    format!(
                        "{}@{} → {} for {}",
                        sanitize(&s.name),
                        s.environment,
                        sanitize(&form.target),
                        sanitize(&form.incident)
                    ),
                    theme.text(),
                )));
            }
            lines.push(Line::default());
            let room = inner.height.saturating_sub(7) as usize;
            let start = form.output.len().saturating_sub(room);
            for l in &form.output[start..] {
                lines.push(Line::from(Span::styled(format!("│ {l}"), theme.muted())));
            }
            lines.push(Line::default());
            match &form.result {
                Some(Finish::Done(text)) => {
                    lines.push(Line::from(Span::styled(format!("✓ {text}"), theme.pass())))
                }
                Some(Finish::Failed(text)) => {
                    lines.push(Line::from(Span::styled(format!("✗ {text}"), theme.error())))
                }
                None => {}
            }
        }
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

/// Draws the Exceptions screen.
pub fn draw_exceptions(f: &mut Frame, area: Rect, app: &App) {
    let theme = &app.settings.theme;
    let [head, body] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(area);
    f.render_widget(
        Paragraph::new(vec![
            Line::from(Span::styled(" Emergency exceptions", theme.title())),
            Line::from(Span::styled(
                format!(
                    " bypasses expire after {} h; a lead's post-incident review is due within {} h",
                    app.policy.emergency.exception_hours, app.policy.emergency.post_review_hours
                ),
                theme.muted(),
            )),
        ]),
        head,
    );
    let list = crate::tui::screens::exceptions::ordered(&app.exceptions, app.now);
    let selected = app
        .exceptions_screen
        .cursor
        .selected
        .min(list.len().saturating_sub(1));
    let mut lines = Vec::new();
    let mut selected_line = 0;
    if list.is_empty() {
        lines.push(Line::from(Span::styled(
            " no emergency exceptions recorded",
            theme.muted(),
        )));
    }
    for (i, x) in list.into_iter().enumerate() {
        let state = x.state(app.now);
        if i == selected {
            selected_line = lines.len();
        }
        let (label, style) = match state {
            ExceptionState::Active => ("ACTIVE".to_string(), theme.warning()),
            ExceptionState::Expired => ("expired, review pending".to_string(), theme.pending()),
            ExceptionState::ReviewOverdue => ("REVIEW OVERDUE".to_string(), theme.error()),
            ExceptionState::Closed => ("closed".to_string(), theme.pass()),
        };
        lines.push(Line::from(vec![
            Span::styled(if i == selected { "▸" } else { " " }, theme.accent()),
            Span::styled(format!("{} ", sanitize(&x.incident)), theme.selected()),
            Span::styled(format!(" {label}"), style),
            Span::styled(
                format!(
                    "  opened by {} {} · {}",
                    x.opened_by,
                    x.opened_at.format("%m-%d %H:%M"),
                    sanitize(&x.reason)
                ),
                theme.text(),
            ),
        ]));
        if state != ExceptionState::Closed {
            lines.push(Line::from(Span::styled(
                format!(
                    "   bypass expires: {}   review due: {} ({})",
                    crate::domain::emergency::expiry(x.expires_at, app.now),
                    x.review_due.format("%Y-%m-%d %H:%M UTC"),
                    countdown(x.review_due, app.now)
                ),
                if state == ExceptionState::ReviewOverdue {
                    theme.error()
                } else {
                    theme.text()
                },
            )));
        }
        for r in &x.rollbacks {
            let outcome = match &r.outcome {
                Some(o) if o.succeeded() => {
                    format!("command ok in {:.1} s", o.duration_ms as f64 / 1000.0)
                }
                Some(o) if o.timed_out => "command TIMED OUT".into(),
                Some(o) => format!("command FAILED (exit {:?})", o.exit_status),
                None => "no command run".into(),
            };
            lines.push(Line::from(Span::styled(
                format!(
                    "   ↩ {}@{} {} → {} by {} at {} · {outcome}",
                    sanitize(&r.subject),
                    r.environment,
                    sanitize(&r.from_version),
                    sanitize(&r.to_version),
                    r.principal,
                    r.at.format("%m-%d %H:%M")
                ),
                theme.muted(),
            )));
        }
        if let Some(rv) = &x.review {
            lines.push(Line::from(Span::styled(
                format!(
                    "   reviewed by {} {}: {}",
                    rv.principal,
                    rv.at.format("%m-%d %H:%M"),
                    sanitize(&rv.root_cause)
                ),
                theme.pass(),
            )));
        }
        lines.push(Line::default());
    }
    // The selected exception stays in view.
    let scroll = (selected_line as u16).saturating_sub(body.height / 2);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        body,
    );
    if let Some(form) = &app.exceptions_screen.review {
        draw_review(f, area, app, form);
    }
}

/// The post-incident review form, or exactly what will be signed.
fn draw_review(f: &mut Frame, area: Rect, app: &App, form: &ReviewForm) {
    let theme = &app.settings.theme;
    let popup = crate::tui::views::centered(area, 90, 16);
    f.render_widget(ratatui::widgets::Clear, popup);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.accent())
        .title(Span::styled(
            if form.confirming {
                format!(
                    " Sign the post-incident review of {}? ",
                    sanitize(&form.incident)
                )
            } else {
                format!(" Post-incident review of {} ", sanitize(&form.incident))
            },
            theme.title(),
        ));
    let inner = block.inner(popup);
    f.render_widget(block, popup);
    let who = match &app.signer {
        Signer::Principal { principal, .. } => principal.id.clone(),
        Signer::ReadOnly(_) => "—".into(),
    };
    let field = |label: &str, value: &str, which: ReviewField| {
        let focus = !form.confirming && form.focus == which;
        Line::from(vec![
            Span::styled(
                format!("{label:<16}"),
                if focus { theme.accent() } else { theme.muted() },
            ),
            Span::styled(sanitize(value), theme.text()),
            Span::styled(if focus { "▏" } else { "" }, theme.accent()),
        ])
    };
    let mut lines = vec![
        field("root cause", &form.root_cause, ReviewField::RootCause),
        field("follow-ups", &form.follow_ups, ReviewField::FollowUps),
        field(
            "policy changes",
            &form.policy_changes,
            ReviewField::PolicyChanges,
        ),
        Line::default(),
    ];
    if form.confirming {
        lines.push(Line::from(Span::styled(
            format!(
                "{who} signs this review; it closes every open exception of {}",
                sanitize(&form.incident)
            ),
            theme.text(),
        )));
        let keymap = &app.settings.keymap;
        lines.push(Line::from(vec![
            Span::styled(keymap.hint(Action::Sign), theme.accent()),
            Span::styled(" sign — this cannot be undone  ", theme.text()),
            Span::styled(keymap.hint(Action::Cancel), theme.accent()),
            Span::styled(" edit", theme.text()),
        ]));
        if form.busy {
            lines.push(Line::from(Span::styled("signing…", theme.accent())));
        }
    } else {
        lines.push(Line::from(Span::styled(
            "what caused the incident, what will be done, and what the policy changes (\"none\" is an answer)",
            theme.muted(),
        )));
    }
    if let Some(problem) = &form.problem {
        lines.push(Line::from(Span::styled(sanitize(problem), theme.error())));
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
