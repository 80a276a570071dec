//! Regenerates `screenshots/*.png` from the real rendered TUI screens.
//!
//!   cargo run --example screenshots --features screenshots
//!
//! The app is driven with the same keys a reviewer would press, over the demo fixtures and
//! seeded demo keys; each screen's ratatui buffer is written as SVG (one cell per glyph,
//! DejaVu Sans Mono) and rasterised to PNG with resvg.

use chrono::{TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use std::sync::Arc;
use tollgate::identity::Identity;
use tollgate::store::Store;
use tollgate::store::local::LocalStore;
use tollgate::tui::app::{App, Effect, Msg, Signer};
use tollgate::tui::keymap::Key;
use tollgate::tui::settings::Settings;
use tollgate::tui::{Shared, settle, views};

const W: u16 = 120;
const H: u16 = 40;
const CELL_W: f32 = 9.0;
const CELL_H: f32 = 18.0;
const FONT_SIZE: f32 = 15.0;
const DEFAULT_FG: &str = "#d8dee9";
const DEFAULT_BG: &str = "#1d2128";

fn hex(c: Color, default: &str) -> String {
    match c {
        Color::Rgb(r, g, b) => format!("#{r:02x}{g:02x}{b:02x}"),
        Color::Black => "#000000".into(),
        Color::Red => "#cc3333".into(),
        Color::Green => "#33aa33".into(),
        Color::Yellow => "#ccaa00".into(),
        Color::Blue => "#3366cc".into(),
        Color::Magenta => "#aa33aa".into(),
        Color::Cyan => "#33aaaa".into(),
        Color::Gray => "#aaaaaa".into(),
        Color::DarkGray => "#666666".into(),
        Color::White => "#ffffff".into(),
        _ => default.into(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The buffer as SVG: a background rectangle and a glyph per cell.
fn svg(buf: &Buffer) -> String {
    let (w, h) = (buf.area.width, buf.area.height);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"DejaVu Sans Mono\" font-size=\"{FONT_SIZE}\">\n<rect width=\"100%\" height=\"100%\" fill=\"{DEFAULT_BG}\"/>\n",
        (w as f32 * CELL_W) as u32 + 16,
        (h as f32 * CELL_H) as u32 + 16
    );
    for y in 0..h {
        for x in 0..w {
            let cell = &buf[(x, y)];
            let mut fg = hex(cell.fg, DEFAULT_FG);
            let mut bg = hex(cell.bg, DEFAULT_BG);
            if cell.modifier.contains(Modifier::REVERSED) {
                std::mem::swap(&mut fg, &mut bg);
            }
            let (px, py) = (8.0 + x as f32 * CELL_W, 8.0 + y as f32 * CELL_H);
            if bg != DEFAULT_BG {
                out.push_str(&format!(
                    "<rect x=\"{px}\" y=\"{py}\" width=\"{CELL_W}\" height=\"{CELL_H}\" fill=\"{bg}\"/>\n"
                ));
            }
            let sym = cell.symbol();
            if sym.trim().is_empty() {
                continue;
            }
            let weight = if cell.modifier.contains(Modifier::BOLD) {
                " font-weight=\"bold\""
            } else {
                ""
            };
            let deco = if cell.modifier.contains(Modifier::UNDERLINED) {
                " text-decoration=\"underline\""
            } else {
                ""
            };
            let opacity = if cell.modifier.contains(Modifier::DIM) {
                " opacity=\"0.6\""
            } else {
                ""
            };
            out.push_str(&format!(
                "<text x=\"{px}\" y=\"{}\" fill=\"{fg}\"{weight}{deco}{opacity}>{}</text>\n",
                py + CELL_H * 0.78,
                escape(sym)
            ));
        }
    }
    out.push_str("</svg>\n");
    out
}

fn png(buf: &Buffer, path: &str) {
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(&svg(buf), &opt).expect("valid svg");
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).expect("pixmap");
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap.save_png(path).expect("write png");
    println!("wrote {path}");
}

struct Scene {
    app: App,
    shared: Shared,
}

impl Scene {
    fn pump(&mut self, effects: Vec<Effect>) {
        let now = self.app.now;
        settle(&mut self.app, &self.shared, effects, now);
    }

    fn key(&mut self, spec: &str) {
        let k = Key::parse(spec).expect("key");
        let mods = if matches!(k.code, KeyCode::Char(c) if c.is_ascii_uppercase()) {
            k.mods | KeyModifiers::SHIFT
        } else {
            k.mods
        };
        let effects = self.app.update(Msg::Key(KeyEvent::new(k.code, mods)));
        self.pump(effects);
    }

    fn text(&mut self, s: &str) {
        for c in s.chars() {
            let effects = self.app.update(Msg::Key(KeyEvent::new(
                KeyCode::Char(c),
                KeyModifiers::NONE,
            )));
            self.pump(effects);
        }
    }

    fn shot(&mut self, name: &str) {
        let mut t = Terminal::new(TestBackend::new(W, H)).expect("terminal");
        t.draw(|f| views::draw(f, &self.app)).expect("draw");
        png(t.backend().buffer(), &format!("screenshots/{name}.png"));
    }
}

fn build_scene(who: &str, now: chrono::DateTime<Utc>, dir: &std::path::Path) -> Scene {
    let store = LocalStore::create(&dir.join(format!("{who}.db"))).expect("store");
    let text = format!(
        "{}\n[[emergency.rollback]]\nsubject = \"recommender\"\ncommand = [\"helm\", \"rollback\", \"{{subject}}\", \"{{to_version}}\"]\ntimeout_seconds = 120\n",
        tollgate::demo::seeded_policy_text()
    );
    let book = tollgate::demo::seeded_genesis(&store, &text, now).expect("genesis");
    store
        .submit(&tollgate::demo::submissions(), now)
        .expect("submit");
    let policy = book.current().policy.clone();
    let identity = Identity {
        signer: tollgate::demo::seeded_signer(who).expect("key"),
        principal: policy.principal(who).expect("principal").clone(),
        key_path: "demo".into(),
    };
    let signer = Signer::Principal {
        principal: identity.principal.clone(),
        fingerprint: identity.signer.fingerprint().to_string(),
    };
    let app = App::new(
        Settings::default(),
        policy.clone(),
        signer,
        "~/.local/share/tollgate/tollgate.db".into(),
        now,
    );
    let mut scene = Scene {
        app,
        shared: Shared::new(Arc::new(store), book, Some(Arc::new(identity)), None, None),
    };
    scene.app.update(Msg::Resize(W, H));
    let first = scene.app.load_queue();
    scene.pump(vec![first]);
    scene
}

fn main() {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
        .single()
        .expect("time");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all("screenshots").expect("screenshots dir");

    let mut scene = build_scene("devi", now, dir.path());
    scene.shot("queue");
    scene.key("enter");
    scene.shot("detail");
    scene.key("a");
    scene.text("Shifts explained by the new velocity features; fairness gap 1.2pp, within 3pp.");
    for k in ["tab", "tab", "tab", "space", "down", "space"] {
        scene.key(k);
    }
    scene.shot("decide");
    scene.key("ctrl-s");
    scene.shot("confirm");
    scene.key("y");
    scene.key("H");
    scene.shot("history");
    for k in ["esc", "esc", "?"] {
        scene.key(k);
    }
    scene.shot("help");

    let mut oncall = build_scene("lena", now, dir.path());
    oncall.key("!");
    oncall.key("enter");
    oncall.text("INC-2291");
    oncall.key("tab");
    oncall.text("conversion -10% since recommender v8 reached 25% of traffic");
    oncall.key("enter");
    oncall.shot("emergency");

    // A policy change awaiting its second lead: marco proposed the December rotation and
    // lena approved; sofia opens it.
    let mut lead = build_scene("sofia", now, dir.path());
    let book = lead.shared.book();
    let rotated = book
        .current()
        .text
        .replace(
            "on_call = [\"marco\", \"lena\", \"guard\"]",
            "on_call = [\"lena\", \"sofia\", \"guard\"]",
        )
        .replace(
            "roles = [\"approver\", \"lead\"]",
            "roles = [\"approver\", \"lead\", \"on-call\"]",
        );
    tollgate::workflow::propose_policy(
        lead.shared.store.as_ref(),
        &book,
        "marco",
        &rotated,
        "December on-call rotation: marco is on leave, sofia covers",
        None,
        now,
    )
    .expect("proposal");
    let lena = tollgate::demo::seeded_identity("lena").expect("lena");
    tollgate::workflow::sign_decision(
        lead.shared.store.as_ref(),
        &book,
        &lena,
        &tollgate::workflow::DecisionRequest {
            cr_id: "POL-2".into(),
            verdict: tollgate::domain::decision::Verdict::Approve,
            role: "lead".into(),
            rationale: "Matches the December rota.".into(),
            ticks: vec![],
            expect_digest: None,
        },
        now,
    )
    .expect("lena's approval");
    let reload = lead.app.load_queue();
    lead.pump(vec![reload]);
    lead.key("G");
    lead.key("enter");
    lead.shot("policy");

    // After approval: marco's canary of a low-risk change, read by the KPI guard every ten
    // minutes; the observation window has elapsed and R offers the full rollout.
    rollout_scene(now, dir.path());
}

/// The `rollout` screenshot: CR-2045 (CR-1045 with its latency evidence) approved, in
/// canary since 09:10 with four KPI readings, seen by marco at 10:15 after pressing R.
fn rollout_scene(now: chrono::DateTime<Utc>, dir: &std::path::Path) {
    let kpi = dir.join("kpi.txt");
    let mut scene = build_scene("marco", now, dir);
    let book = scene.shared.book();
    let mut text = book.current().text.clone();
    text.push_str(&format!(
        "\n[[kpi]]\nsubject = \"churn-predictor\"\ncommand = [\"cat\", \"{}\"]\nthresholds = [{{ metric = \"retention\", min = 0.9 }}]\n",
        kpi.display()
    ));
    tollgate::workflow::propose_policy(
        scene.shared.store.as_ref(),
        &book,
        "marco",
        &text,
        "Guard churn-predictor's canaries on retention",
        None,
        now,
    )
    .expect("proposal");
    for lead in ["lena", "sofia"] {
        let who = tollgate::demo::seeded_identity(lead).expect("lead");
        tollgate::workflow::sign_decision(
            scene.shared.store.as_ref(),
            &scene.shared.book(),
            &who,
            &tollgate::workflow::DecisionRequest {
                cr_id: "POL-2".into(),
                verdict: tollgate::domain::decision::Verdict::Approve,
                role: "lead".into(),
                rationale: "Retention is the KPI that matters here.".into(),
                ticks: vec![],
                expect_digest: None,
            },
            now,
        )
        .expect("adoption");
    }
    let book = tollgate::audit::policy_log::extend_book(
        None,
        &scene
            .shared
            .store
            .policy_entries(0)
            .expect("policy entries"),
    )
    .expect("book")
    .expect("a policy");
    let mut doc: serde_json::Value = serde_json::from_str(
        tollgate::demo::FIXTURES
            .iter()
            .find(|(n, _)| *n == "CR-1045.json")
            .expect("fixture")
            .1,
    )
    .expect("json");
    doc["id"] = "CR-2045".into();
    doc["checks"]
        .as_array_mut()
        .expect("checks")
        .push(serde_json::json!({"id": "latency", "status": "pass", "detail": "p99 21 ms"}));
    let (cr, document) =
        tollgate::domain::change_request::parse_document(doc.to_string().as_bytes()).expect("cr");
    let ci = tollgate::demo::seeded_signer("ci").expect("ci");
    scene
        .shared
        .store
        .submit(
            &[tollgate::store::Submission::new(cr, document)
                .by(tollgate::store::SubmittedBy::principal("ci", ci))],
            now - chrono::Duration::hours(2),
        )
        .expect("submit");
    let at = |minutes: i64| now + chrono::Duration::minutes(minutes);
    let devi = tollgate::demo::seeded_identity("devi").expect("devi");
    tollgate::workflow::sign_decision(
        scene.shared.store.as_ref(),
        &book,
        &devi,
        &tollgate::workflow::DecisionRequest {
            cr_id: "CR-2045".into(),
            verdict: tollgate::domain::decision::Verdict::Approve,
            role: "risk-reviewer".into(),
            rationale: "Every shift within 1 %.".into(),
            ticks: ["privacy", "rollback"]
                .map(|t| tollgate::domain::checklist::Tick {
                    item: t.into(),
                    note: None,
                })
                .to_vec(),
            expect_digest: None,
        },
        at(-70),
    )
    .expect("approval");
    let marco = tollgate::demo::seeded_identity("marco").expect("marco");
    tollgate::workflow::rollout::record_stage(
        scene.shared.store.as_ref(),
        &book,
        &marco,
        &tollgate::workflow::rollout::StageRequest {
            cr_id: "CR-2045".into(),
            stage: tollgate::domain::rollout::Stage::Canary,
            traffic: 10,
            note: "EU campaigns first".into(),
        },
        at(-65),
        &mut |_| {},
    )
    .expect("canary");
    let guard = tollgate::demo::seeded_identity("guard").expect("guard");
    for (minutes, value) in [
        (-55, "0.95"),
        (-45, "0.94"),
        (-35, "0.95"),
        (-25, "0.93"),
        (-15, "0.92"),
        (-5, "0.93"),
    ] {
        std::fs::write(&kpi, format!("retention={value}\n")).expect("kpi file");
        tollgate::workflow::rollout::guard_once(
            scene.shared.store.as_ref(),
            &book,
            &guard,
            "CR-2045",
            at(minutes),
            &mut |_| {},
        )
        .expect("reading");
    }
    scene.app.now = now;
    let reload = scene.app.load_queue();
    scene.pump(vec![reload]);
    scene.key("6");
    scene.key("enter");
    scene.key("R");
    scene.shot("rollout");
}
