//! One change request on one screen: what changes and why, metrics vs baseline, risk
//! with its reasons, the checklist with evidence, sign-offs, links, plans and versions.
//! Two columns on wide terminals, one scrolling column on narrow ones.

use crate::domain::change_request::Shift;
use crate::domain::checklist::ItemState;
use crate::domain::decision::Verdict;
use crate::domain::risk::relative_shift_pct;
use crate::domain::text::{sanitize, sanitize_with};
use crate::tui::app::App;
use crate::tui::data::DetailData;
use crate::tui::theme::Theme;
use crate::tui::views::{age, status_line};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

fn heading(text: &str, theme: &Theme) -> Line<'static> {
    Line::from(Span::styled(
        text.to_string(),
        theme.title().add_modifier(Modifier::UNDERLINED),
    ))
}

fn prose(lines: &mut Vec<Line<'static>>, title: &str, text: &str, theme: &Theme) {
    lines.push(heading(title, theme));
    for l in sanitize_with(text, true).lines() {
        lines.push(Line::from(Span::styled(l.to_string(), theme.text())));
    }
    lines.push(Line::default());
}

fn round(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

/// What changes, who asked, when.
fn identity_lines(d: &DetailData, app: &App, _width: u16) -> Vec<Line<'static>> {
    let theme = &app.settings.theme;
    let c = &d.cr.current.cr;
    let mut lines = Vec::new();
    let s = &c.subject;
    lines.push(Line::from(vec![
        Span::styled(format!("{} ", sanitize(&s.kind)), theme.muted()),
        Span::styled(sanitize(&s.name), theme.title()),
        Span::styled(
            format!(
                "  {} → {}  in ",
                s.from_version
                    .as_deref()
                    .map(sanitize)
                    .unwrap_or_else(|| "(new)".into()),
                sanitize(&s.to_version)
            ),
            theme.text(),
        ),
        Span::styled(s.environment.as_str(), theme.accent()),
    ]));
    lines.push(Line::from(Span::styled(
        format!(
            "requester {} · owner {} · on-call {} · created {} ({} ago)",
            sanitize(&c.requester),
            sanitize(&c.owner),
            sanitize(&c.on_call),
            c.created_at.format("%Y-%m-%d %H:%M"),
            age(c.created_at, app.now)
        ),
        theme.muted(),
    )));
    lines.push(Line::default());
    lines
}

/// Summary, scope and impact.
fn prose_lines(d: &DetailData, app: &App, _width: u16) -> Vec<Line<'static>> {
    let theme = &app.settings.theme;
    let c = &d.cr.current.cr;
    let mut lines = Vec::new();
    prose(&mut lines, "Summary", &c.summary, theme);
    prose(&mut lines, "Scope", &c.scope, theme);
    prose(&mut lines, "Impact", &c.impact, theme);

    lines
}

/// Metrics vs baseline with absolute and relative deltas, coloured by direction.
fn metrics_lines(d: &DetailData, app: &App, _width: u16) -> Vec<Line<'static>> {
    let theme = &app.settings.theme;
    let c = &d.cr.current.cr;
    let mut lines = Vec::new();
    lines.push(heading("Metrics vs baseline", theme));
    if c.metrics.is_empty() {
        lines.push(Line::from(Span::styled(
            "no metrics reported",
            theme.muted(),
        )));
    }
    let w = c
        .metrics
        .iter()
        .map(|m| sanitize(&m.name).chars().count())
        .max()
        .unwrap_or(0)
        .min(24);
    for m in &c.metrics {
        let rel = relative_shift_pct(m.baseline, m.candidate);
        let shift = m.shift();
        let style = match shift {
            Shift::Unchanged => theme.muted(),
            Shift::Better => theme.better(),
            Shift::Worse => theme.worse(),
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!(
                    "{:<w$} ",
                    crate::domain::text::truncate(&sanitize(&m.name), 24)
                ),
                theme.text(),
            ),
            Span::styled(format!("{} → {} ", m.baseline, m.candidate), theme.text()),
            Span::styled(
                format!(
                    "Δ {:+} ({}) ",
                    round(m.candidate - m.baseline),
                    rel.map(|p| format!("{p:+.1} %"))
                        .unwrap_or_else(|| "n/a".into())
                ),
                style,
            ),
            // In words, so it reads the same without colour (NO_COLOR, colour-blind).
            Span::styled(shift.as_str().to_string(), style),
        ]));
    }
    lines.push(Line::default());

    lines
}

/// Effective risk, computed vs declared, and the reasons.
fn risk_lines(d: &DetailData, app: &App, _width: u16) -> Vec<Line<'static>> {
    let theme = &app.settings.theme;
    let c = &d.cr.current.cr;
    let mut lines = Vec::new();
    let r = &d.eval.risk;
    lines.push(heading("Risk", theme));
    lines.push(Line::from(vec![
        Span::styled(
            format!("{} ", r.effective.as_str().to_uppercase()),
            theme.risk(r.effective),
        ),
        Span::styled(
            format!(
                "computed {} · declared {} · observe {} h",
                r.computed, r.declared, d.eval.observation_hours
            ),
            theme.text(),
        ),
    ]));
    if !r.reasons.is_empty() {
        let reasons: Vec<String> = r.reasons.iter().map(|x| sanitize(&x.to_string())).collect();
        lines.push(Line::from(Span::styled(
            format!("because {}", reasons.join("; ")),
            theme.text(),
        )));
    }
    lines.push(Line::from(Span::styled(
        format!("requester: {}", sanitize(&c.risk.rationale)),
        theme.muted(),
    )));
    if !r.unrated_flags.is_empty() {
        let flags: Vec<String> = r.unrated_flags.iter().map(|f| sanitize(f)).collect();
        lines.push(Line::from(Span::styled(
            format!("flags the policy does not rate: {}", flags.join(", ")),
            theme.warning(),
        )));
    }
    lines.push(Line::default());
    lines
}

/// Rollout and rollback plans.
fn plan_lines(d: &DetailData, app: &App, _width: u16) -> Vec<Line<'static>> {
    let theme = &app.settings.theme;
    let c = &d.cr.current.cr;
    let mut lines = Vec::new();
    prose(&mut lines, "Rollout plan", &c.plan.rollout, theme);
    lines.push(Line::from(vec![
        Span::styled(
            "Rollback plan ",
            theme.title().add_modifier(Modifier::UNDERLINED),
        ),
        match (c.gate, &d.drill, c.plan.rollback_tested) {
            // A policy is "rolled back" by adopting the previous version: nothing to test.
            (crate::domain::change_request::Gate::Policy, _, _) => Span::raw(""),
            // The last recorded drill is the evidence; the requester's word only without one.
            (_, Some(drill), _) if drill.outcome.succeeded() => Span::styled(
                format!(
                    "✓ drilled {} in {} by {}, {:.1} s",
                    drill.at.format("%Y-%m-%d"),
                    drill.environment,
                    sanitize(&drill.principal),
                    drill.outcome.duration_ms as f64 / 1000.0
                ),
                theme.pass(),
            ),
            (_, Some(drill), _) => Span::styled(
                format!(
                    "✗ last drill FAILED {} in {}",
                    drill.at.format("%Y-%m-%d"),
                    drill.environment
                ),
                theme.fail(),
            ),
            (_, None, true) => Span::styled(
                "· no drill recorded (requester says tested)",
                theme.warning(),
            ),
            (_, None, false) => Span::styled("✗ NOT tested, no drill recorded", theme.fail()),
        },
    ]));
    for l in sanitize_with(&c.plan.rollback, true).lines() {
        lines.push(Line::from(Span::styled(l.to_string(), theme.text())));
    }
    lines.push(Line::default());
    lines
}

/// Eight levels of a sparkline, lowest first.
const SPARK: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// `values` as a one-line sparkline scaled between their minimum and maximum.
pub fn sparkline(values: &[f64]) -> String {
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    values
        .iter()
        .map(|v| {
            let level = if hi > lo {
                ((v - lo) / (hi - lo) * 7.0).round() as usize
            } else {
                3
            };
            SPARK[level.min(7)]
        })
        .collect()
}

/// The rollout timeline: approved → canary → observation countdown → full, the KPI
/// readings as a sparkline, a guard rollback in red. Nothing before approval.
fn rollout_lines(d: &DetailData, app: &App, _width: u16) -> Vec<Line<'static>> {
    use crate::domain::rollout::{ReadingVerdict, Stage};
    let theme = &app.settings.theme;
    let approved = d.eval.status == crate::domain::status::Status::Approved;
    let rollout = d.rollout.as_ref().filter(|r| !r.stages.is_empty());
    if !approved && rollout.is_none() {
        return Vec::new();
    }
    let mut lines = vec![heading("Rollout", theme)];
    let step = |mark: &'static str, style, text: String| {
        Line::from(vec![
            Span::styled(mark, style),
            Span::styled(text, theme.text()),
        ])
    };
    lines.push(step("✓ ", theme.pass(), "approved".into()));
    let digest = &d.cr.current.digest;
    if let Some(r) = rollout {
        for s in &r.stages {
            let (mark, style) = if s.happened() {
                ("✓ ", theme.pass())
            } else {
                ("✗ ", theme.fail())
            };
            lines.push(step(
                mark,
                style,
                format!(
                    "{} {}% by {} {}{}",
                    s.stage.as_str(),
                    s.traffic,
                    sanitize(&s.principal),
                    s.at.format("%m-%d %H:%M"),
                    if s.happened() {
                        ""
                    } else {
                        " — deploy FAILED"
                    }
                ),
            ));
        }
        if let Some(b) = &r.rolled_back {
            lines.push(Line::from(Span::styled(
                format!(
                    "✗ rolled back under {} by {} {}",
                    sanitize(&b.incident),
                    sanitize(&b.principal),
                    b.at.format("%m-%d %H:%M")
                ),
                theme.fail(),
            )));
        } else if r.in_canary(digest)
            && let Some(canary) = r.stage(digest, Stage::Canary)
        {
            let opens = canary.at + chrono::Duration::hours(d.eval.observation_hours);
            lines.push(if opens > app.now {
                step(
                    "· ",
                    theme.pending(),
                    format!(
                        "observing {} h: full opens {} (in {})",
                        d.eval.observation_hours,
                        opens.format("%m-%d %H:%M"),
                        crate::domain::emergency::countdown(opens, app.now)
                    ),
                )
            } else {
                step(
                    "· ",
                    theme.pass(),
                    format!("observed {} h: full may proceed", d.eval.observation_hours),
                )
            });
        }
        if let Some(last) = r.readings.last() {
            // The first bounded metric the readings report, over time.
            let metric = last
                .values
                .first()
                .map(|(m, _)| m.clone())
                .unwrap_or_default();
            let series: Vec<f64> = r
                .readings
                .iter()
                .filter_map(|x| x.values.iter().find(|(m, _)| *m == metric).map(|(_, v)| *v))
                .collect();
            let style = match last.verdict {
                ReadingVerdict::Ok => theme.pass(),
                ReadingVerdict::Regressed => theme.fail(),
                ReadingVerdict::Error => theme.warning(),
            };
            lines.push(Line::from(vec![
                Span::styled(format!("KPI {} ", sanitize(&metric)), theme.muted()),
                Span::styled(sparkline(&series), style),
                Span::styled(
                    format!(
                        " {} reading(s), last {}{}",
                        r.readings.len(),
                        last.verdict.as_str(),
                        if last.breaches.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", sanitize(&last.breaches.join("; ")))
                        }
                    ),
                    style,
                ),
            ]));
        }
    } else {
        lines.push(step(
            "· ",
            theme.muted(),
            format!(
                "not rolled out yet: canary, then {} h of observation, then full",
                d.eval.observation_hours
            ),
        ));
    }
    lines.push(Line::default());
    lines
}

/// Code, data and config versions.
fn versions_lines(d: &DetailData, app: &App, _width: u16) -> Vec<Line<'static>> {
    let theme = &app.settings.theme;
    let c = &d.cr.current.cr;
    let mut lines = Vec::new();
    let v = &c.versions;
    lines.push(heading("Versions", theme));
    lines.push(Line::from(Span::styled(
        format!(
            "code {} · data {} · config {}{}",
            sanitize(&v.code),
            sanitize(&v.data),
            sanitize(&v.config),
            v.seed.map(|s| format!(" · seed {s}")).unwrap_or_default()
        ),
        theme.text(),
    )));
    lines
}

/// The checklist with evidence, plus evidence no item reads.
fn checklist_lines(d: &DetailData, app: &App, width: u16) -> Vec<Line<'static>> {
    let theme = &app.settings.theme;
    let mut lines = Vec::new();
    let e = &d.eval;
    if e.checklist.items.is_empty()
        && e.checklist.other_evidence.is_empty()
        && e.missing_artifacts.is_empty()
        && e.stale_proposal.is_none()
    {
        // A gate without a checklist (a policy change): nothing to show.
        return lines;
    }
    lines.push(heading(
        "Checklist  [A] from CI · [M] manual · ● blocking",
        theme,
    ));
    for item in &d.eval.checklist.items {
        let (sym, style) = match item.state {
            ItemState::Pass => ("✓ pass", theme.pass()),
            ItemState::Fail => ("✗ FAIL", theme.fail()),
            ItemState::Pending => ("… pending", theme.pending()),
            ItemState::Missing => ("? missing", theme.pending()),
            ItemState::Ticked => ("☑ ticked", theme.pass()),
            ItemState::Unticked => (
                "☐ unticked",
                if item.blocking {
                    theme.warning()
                } else {
                    theme.muted()
                },
            ),
        };
        // Wrapped text hangs under the label, not under the [A]● markers.
        lines.extend(hanging(
            vec![
                Span::styled(if item.automated { "[A]" } else { "[M]" }, theme.muted()),
                Span::styled(if item.blocking { "● " } else { "  " }, theme.warning()),
                Span::styled(format!("{sym:<11}"), style),
            ],
            &sanitize(&item.label),
            theme.text(),
            16,
            width,
        ));
        if let Some(detail) = &item.detail {
            lines.extend(hanging(
                vec![Span::raw(" ".repeat(16))],
                &sanitize(detail),
                theme.muted(),
                16,
                width,
            ));
        }
        for t in &item.ticked_by {
            let note = t
                .note
                .as_deref()
                .map(|n| format!(": {}", sanitize(n)))
                .unwrap_or_default();
            lines.push(Line::from(Span::styled(
                format!("                ticked by {}{note}", sanitize(&t.principal)),
                theme.muted(),
            )));
        }
    }
    for ev in &d.eval.checklist.other_evidence {
        let (sym, style) = match ev.status {
            crate::domain::change_request::CheckStatus::Pass => ("✓ pass", theme.pass()),
            crate::domain::change_request::CheckStatus::Fail => ("✗ fail", theme.fail()),
            crate::domain::change_request::CheckStatus::Pending => ("… pending", theme.pending()),
        };
        let text = match ev.detail.as_deref() {
            Some(x) => format!("{} — {}", sanitize(&ev.id), sanitize(x)),
            None => sanitize(&ev.id),
        };
        lines.extend(hanging(
            vec![
                Span::styled("[A]  ", theme.muted()),
                Span::styled(format!("{sym:<11}"), style),
            ],
            &text,
            theme.text(),
            16,
            width,
        ));
    }
    if !d.eval.missing_artifacts.is_empty() {
        lines.push(Line::from(vec![
            Span::styled("[A]", theme.muted()),
            Span::styled("● ", theme.warning()),
            Span::styled(format!("{:<11}", "✗ MISSING"), theme.fail()),
            Span::styled(
                format!(
                    "required artifacts: {}",
                    d.eval.missing_artifacts.join(", ")
                ),
                theme.text(),
            ),
        ]));
    }
    if let Some(why) = &d.eval.stale_proposal {
        lines.push(Line::from(vec![
            Span::styled("     ", theme.muted()),
            Span::styled(format!("{:<11}", "✗ STALE"), theme.fail()),
            Span::styled(why.clone(), theme.text()),
        ]));
    }
    lines.push(Line::default());

    lines
}

/// For a policy change request: what it changes against the policy in force.
fn policy_lines(d: &DetailData, app: &App, _width: u16) -> Vec<Line<'static>> {
    let Some(changes) = &d.policy_changes else {
        return Vec::new();
    };
    let theme = &app.settings.theme;
    let mut lines = vec![heading(
        &format!(
            "Policy change  {} change(s) vs the policy in force",
            changes.len()
        ),
        theme,
    )];
    for c in changes {
        let style = match c.kind {
            crate::domain::policy_diff::ChangeKind::Added => theme.pass(),
            crate::domain::policy_diff::ChangeKind::Removed => theme.fail(),
            crate::domain::policy_diff::ChangeKind::Changed => theme.warning(),
        };
        lines.push(Line::from(Span::styled(sanitize(&c.to_string()), style)));
    }
    if changes.is_empty() {
        lines.push(Line::from(Span::styled(
            "none: it reads the same as the policy in force",
            theme.muted(),
        )));
    }
    lines.push(Line::default());
    lines
}

/// Sign-offs required vs obtained, with signature status and what does not count.
fn signoff_lines(d: &DetailData, app: &App, _width: u16) -> Vec<Line<'static>> {
    let theme = &app.settings.theme;
    let mut lines = Vec::new();
    let so = &d.eval.signoffs;
    lines.push(heading(
        &format!("Sign-offs {}/{}", so.obtained(), so.required()),
        theme,
    ));
    for slot in &so.slots {
        match &slot.filled_by {
            Some(who) => {
                let signed = d.decisions.iter().rev().find(|s| {
                    &s.decision.principal == who && s.decision.verdict == Verdict::Approve
                });
                let (when, sig) = match signed {
                    Some(s) => (
                        s.decision.at.format("%m-%d %H:%M").to_string(),
                        match &s.signature {
                            Ok(()) => Span::styled(" ✓ signature valid", theme.pass()),
                            Err(e) => Span::styled(format!(" ✗ {e}"), theme.fail()),
                        },
                    ),
                    None => (String::new(), Span::raw("")),
                };
                lines.push(Line::from(vec![
                    Span::styled("✓ ", theme.pass()),
                    Span::styled(format!("{:<15}", slot.role), theme.text()),
                    Span::styled(format!("{} {when}", sanitize(who)), theme.text()),
                    sig,
                ]));
            }
            None => lines.push(Line::from(vec![
                Span::styled("· ", theme.muted()),
                Span::styled(format!("{:<15}", slot.role), theme.text()),
                Span::styled("waiting", theme.muted()),
            ])),
        }
    }
    for d2 in d
        .eval
        .counted
        .iter()
        .filter(|x| x.verdict != Verdict::Approve)
    {
        lines.push(Line::from(vec![
            Span::styled(format!("✗ {} ", d2.verdict), theme.fail()),
            Span::styled(
                format!(
                    "by {} ({}) {}: {}",
                    sanitize(&d2.principal),
                    sanitize(&d2.role),
                    d2.at.format("%m-%d %H:%M"),
                    sanitize(&d2.rationale)
                ),
                theme.text(),
            ),
        ]));
    }
    for x in &d.eval.discounted {
        lines.push(Line::from(Span::styled(
            format!(
                "○ {} by {} ({}) does not count: {}",
                x.decision.verdict,
                sanitize(&x.decision.principal),
                sanitize(&x.decision.role),
                x.reason
            ),
            theme.warning(),
        )));
    }
    lines.push(Line::default());

    lines
}

/// Artifact links, the selected one highlighted.
fn artifact_lines(d: &DetailData, app: &App, _width: u16) -> Vec<Line<'static>> {
    let theme = &app.settings.theme;
    let c = &d.cr.current.cr;
    let mut lines = Vec::new();
    lines.push(heading("Artifacts", theme));
    for (i, a) in c.artifacts.iter().enumerate() {
        let selected = i == app.detail.artifact;
        let marker = if selected { "▸ " } else { "  " };
        let style = if selected {
            theme.selected()
        } else {
            theme.text()
        };
        lines.push(Line::from(vec![
            Span::styled(marker, theme.accent()),
            Span::styled(format!("{:<18}", sanitize(&a.kind)), theme.muted()),
            Span::styled(sanitize(&a.title), style),
        ]));
        lines.push(Line::from(Span::styled(
            format!("    {}", sanitize(&a.url)),
            theme.muted(),
        )));
    }
    if c.artifacts.is_empty() {
        lines.push(Line::from(Span::styled(
            "no artifacts linked",
            theme.muted(),
        )));
    }
    lines
}

/// One block of the detail screen.
type Section = fn(&DetailData, &App, u16) -> Vec<Line<'static>>;

/// The sections in order, laid out for a column `width` cells wide.
fn compose(d: &DetailData, app: &App, sections: &[Section], width: u16) -> Vec<Line<'static>> {
    sections.iter().flat_map(|s| s(d, app, width)).collect()
}

/// `prefix` then `text` wrapped to `width`, continuation lines indented by `indent` so
/// they hang under the text rather than under the prefix's markers.
fn hanging(
    prefix: Vec<Span<'static>>,
    text: &str,
    style: ratatui::style::Style,
    indent: usize,
    width: u16,
) -> Vec<Line<'static>> {
    let width = width as usize;
    let used: usize = prefix.iter().map(Span::width).sum();
    // Too narrow to hang anything: one line, left to the paragraph's own wrapping.
    if width <= indent + 8 || width <= used + 8 {
        let mut spans = prefix;
        spans.push(Span::styled(text.to_string(), style));
        return vec![Line::from(spans)];
    }
    let mut lines = Vec::new();
    let mut spans = prefix;
    let (mut line, mut room) = (String::new(), width - used);
    for word in text.split_whitespace() {
        let w = Span::raw(word).width();
        let needed = if line.is_empty() { w } else { w + 1 };
        if needed > room && !line.is_empty() {
            spans.push(Span::styled(std::mem::take(&mut line), style));
            lines.push(Line::from(std::mem::take(&mut spans)));
            spans.push(Span::raw(" ".repeat(indent)));
            room = width - indent;
        }
        if !line.is_empty() {
            line.push(' ');
            room = room.saturating_sub(1);
        }
        line.push_str(word);
        room = room.saturating_sub(w);
    }
    spans.push(Span::styled(line, style));
    lines.push(Line::from(spans));
    lines
}

/// Draws the detail screen.
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let theme = &app.settings.theme;
    let Some(d) = app.detail.data() else {
        let id = app.detail.id.as_deref().map(sanitize).unwrap_or_default();
        f.render_widget(
            Paragraph::new(Span::styled(format!(" {id} — loading…"), theme.muted())),
            area,
        );
        return;
    };
    let c = &d.cr.current.cr;
    let [head, body] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(area);
    let short_digest = crate::domain::status::short_digest(&d.cr.current.digest);
    f.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                Span::styled(format!(" {} ", sanitize(&c.id)), theme.selected()),
                Span::styled(format!(" {}", sanitize(&c.title)), theme.title()),
            ]),
            Line::from(vec![
                Span::styled(format!(" {} gate · ", c.gate), theme.muted()),
                status_line(&d.eval, theme),
                Span::styled(
                    format!(
                        " · revision {} of {} · {short_digest}",
                        d.cr.current.revision,
                        d.revisions.len()
                    ),
                    theme.muted(),
                ),
            ]),
        ]),
        head,
    );
    let find = &app.detail.find;
    // The find bar is drawn last: the match count comes from drawing the text.
    let (body, bar) = if find.editing || find.active() {
        let [body, bar] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(body);
        (body, Some(bar))
    } else {
        (body, None)
    };
    // The scroll offset, moved to a find's match when one was asked for.
    let offset = |content: usize, rows: &[usize]| {
        let top = app.detail.scroll.for_view(content, body.height);
        match find.resolve(rows, top as usize) {
            Some(row) => app.detail.scroll.show_row(row),
            None => top,
        }
    };
    let wide = body.width >= 120;
    if wide {
        let [l, r] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .areas(body);
        let inner = Rect {
            x: r.x + 1,
            width: r.width.saturating_sub(1),
            ..r
        };
        let mut left_lines = compose(
            d,
            app,
            &[
                identity_lines,
                prose_lines,
                metrics_lines,
                risk_lines,
                plan_lines,
                versions_lines,
            ],
            l.width.saturating_sub(1),
        );
        let mut right_lines = compose(
            d,
            app,
            &[
                policy_lines,
                rollout_lines,
                checklist_lines,
                signoff_lines,
                artifact_lines,
            ],
            inner.width,
        );
        let mut rows = super::find::mark_matches(&mut left_lines, find, l.width.saturating_sub(1));
        rows.extend(super::find::mark_matches(
            &mut right_lines,
            find,
            inner.width,
        ));
        rows.sort_unstable();
        rows.dedup();
        let left = Paragraph::new(left_lines).wrap(Wrap { trim: false });
        let right = Paragraph::new(right_lines).wrap(Wrap { trim: false });
        // One scroll for both columns, bounded by the longer one.
        let content = left
            .line_count(l.width.saturating_sub(1))
            .max(right.line_count(inner.width));
        let scroll = (offset(content, &rows), 0);
        f.render_widget(
            left.scroll(scroll).block(
                Block::default()
                    .borders(Borders::RIGHT)
                    .border_style(theme.border()),
            ),
            l,
        );
        f.render_widget(right.scroll(scroll), inner);
    } else {
        // Narrow: what decides comes first, so that at 80x24 the first screen holds the
        // subject, the risk, the sign-offs (short) and the start of the checklist; the
        // metrics, prose and plans follow when scrolling.
        let mut lines = compose(
            d,
            app,
            &[
                identity_lines,
                rollout_lines,
                risk_lines,
                signoff_lines,
                policy_lines,
                checklist_lines,
                metrics_lines,
                prose_lines,
                plan_lines,
                artifact_lines,
                versions_lines,
            ],
            body.width,
        );
        let rows = super::find::mark_matches(&mut lines, find, body.width);
        let all = Paragraph::new(lines).wrap(Wrap { trim: false });
        let content = all.line_count(body.width);
        let scroll = (offset(content, &rows), 0);
        f.render_widget(all.scroll(scroll), body);
    }
    if let Some(bar) = bar {
        f.render_widget(Paragraph::new(super::find::bar(app, find)), bar);
    }
    if let Some(confirm) = &app.detail.stage {
        draw_stage_confirm(f, area, app, d, confirm);
    }
}

/// The box `R` opens: the stage, its traffic and the exact command, before `y`.
fn draw_stage_confirm(
    f: &mut Frame,
    area: Rect,
    app: &App,
    d: &DetailData,
    confirm: &crate::tui::screens::rollout::StageConfirm,
) {
    let theme = &app.settings.theme;
    let c = &d.cr.current.cr;
    let who = app.me().map(|p| p.id.clone()).unwrap_or_default();
    let command =
        crate::workflow::rollout::deploy_argv(&app.policy, c, confirm.stage, confirm.traffic);
    let mut lines = vec![
        Line::from(Span::styled(
            format!(
                "{} {} of {} at {}% of traffic, as {}",
                if confirm.recording {
                    "Recording"
                } else {
                    "Record"
                },
                confirm.stage.as_str(),
                sanitize(&c.id),
                confirm.traffic,
                sanitize(&who)
            ),
            theme.title(),
        )),
        Line::from(Span::styled(
            format!(
                "{}@{} {} → {}",
                sanitize(&c.subject.name),
                c.subject.environment.as_str(),
                sanitize(c.subject.from_version.as_deref().unwrap_or("-")),
                sanitize(&c.subject.to_version)
            ),
            theme.text(),
        )),
        Line::from(Span::styled(
            match &command {
                Some((argv, timeout)) => format!(
                    "runs (no shell, timeout {} s): {}",
                    timeout.as_secs(),
                    crate::workflow::shown_argv(argv)
                ),
                None => "no deployment command in the policy: you deploy, this records it".into(),
            },
            theme.muted(),
        )),
    ];
    if let Some(f) = app
        .policy
        .after
        .frozen(c.subject.environment.as_str(), app.now)
    {
        lines.push(Line::from(Span::styled(
            format!(
                "{} {} — {}",
                if c.gate == crate::domain::change_request::Gate::Emergency {
                    "bypassing freeze"
                } else {
                    "FROZEN:"
                },
                sanitize(&f.name),
                sanitize(&f.reason)
            ),
            theme.warning(),
        )));
    }
    let keys = &app.settings.keymap;
    lines.push(Line::from(Span::styled(
        format!(
            "{} record · {} cancel{}",
            keys.hint(crate::tui::keymap::Action::Sign),
            keys.hint(crate::tui::keymap::Action::Cancel),
            if confirm.stage == crate::domain::rollout::Stage::Canary {
                format!(
                    " · {}/{} traffic",
                    keys.hint(crate::tui::keymap::Action::Up),
                    keys.hint(crate::tui::keymap::Action::Down)
                )
            } else {
                String::new()
            }
        ),
        theme.muted(),
    )));
    let height = (lines.len() as u16 + 2).min(area.height);
    let width = area.width.saturating_sub(4).min(100);
    let rect = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + area.height.saturating_sub(height) / 2,
        width,
        height,
    };
    f.render_widget(ratatui::widgets::Clear, rect);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.border())
                .title(" Rollout "),
        ),
        rect,
    );
}
