//! The TUI driven key by key over the fixtures, rendered to ratatui's TestBackend: whole
//! screens are insta snapshots, and behaviour (filtering, stale replies, signing) is
//! asserted on the state and the store.

use chrono::{DateTime, TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;
use std::sync::Arc;
use tollgate::audit::keys::Signer as KeySigner;
use tollgate::domain::change_request::parse_document;
use tollgate::identity::Identity;
use tollgate::store::local::LocalStore;
use tollgate::store::{Store, Submission};
use tollgate::tui::app::{App, Effect, EmergencyStep, Msg, Screen, Signer, View};
use tollgate::tui::keymap::Key;
use tollgate::tui::settings::Settings;
use tollgate::tui::{Shared, answer, settle, views};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

/// A store with the fixtures, a policy whose principals have seeded keys, and an app.
struct Rig {
    _dir: tempfile::TempDir,
    shared: Shared,
    app: App,
}

fn seeded(who: &str) -> KeySigner {
    tollgate::demo::seeded_signer(who).expect("demo principal")
}

impl Rig {
    fn new(who: Option<&str>) -> Rig {
        Rig::with_extra(who, &[])
    }

    fn with_extra(who: Option<&str>, extra: &[serde_json::Value]) -> Rig {
        Rig::build(who, extra, "")
    }

    fn build(who: Option<&str>, extra: &[serde_json::Value], policy_extra: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::create(&dir.path().join("t.db")).unwrap();
        let text = format!("{}{policy_extra}", tollgate::demo::seeded_policy_text());
        let book = tollgate::demo::seeded_genesis(&store, &text, now()).unwrap();
        let mut batch = tollgate::demo::submissions();
        for doc in extra {
            let (cr, document) = parse_document(doc.to_string().as_bytes()).unwrap();
            batch.push(Submission::new(cr, document));
        }
        store.submit(&batch, now()).unwrap();
        let policy = book.current().policy.clone();
        let identity = who.map(|w| {
            Arc::new(Identity {
                signer: seeded(w),
                principal: policy.principal(w).unwrap().clone(),
                key_path: "seeded".into(),
            })
        });
        let signer = match &identity {
            Some(id) => Signer::Principal {
                principal: id.principal.clone(),
                fingerprint: id.signer.fingerprint().to_string(),
            },
            None => Signer::ReadOnly("no signing key: run `tollgate keygen`".into()),
        };
        let app = App::new(
            Settings::default(),
            policy.clone(),
            signer,
            "~/.local/share/tollgate/tollgate.db".into(),
            now(),
        );
        let shared = Shared::new(Arc::new(store), book, identity, None, None)
            .with_policy_file(dir.path().join("t.policy.toml"));
        let mut rig = Rig {
            _dir: dir,
            shared,
            app,
        };
        rig.app.update(Msg::Resize(120, 40));
        let first = rig.app.load_queue();
        rig.pump(vec![first]);
        rig
    }

    /// Performs effects the way the runtime does, synchronously.
    fn pump(&mut self, effects: Vec<Effect>) {
        settle(&mut self.app, &self.shared, effects, now());
    }

    fn key(&mut self, spec: &str) {
        let k = Key::parse(spec).unwrap();
        let mods = if matches!(k.code, KeyCode::Char(c) if c.is_ascii_uppercase()) {
            k.mods | KeyModifiers::SHIFT
        } else {
            k.mods
        };
        let code = if k.code == KeyCode::Tab && mods.contains(KeyModifiers::SHIFT) {
            KeyCode::BackTab
        } else {
            k.code
        };
        let effects = self.app.update(Msg::Key(KeyEvent::new(code, mods)));
        self.pump(effects);
    }

    fn keys(&mut self, specs: &[&str]) {
        for s in specs {
            self.key(s);
        }
    }

    fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            let effects = self.app.update(Msg::Key(KeyEvent::new(
                KeyCode::Char(c),
                KeyModifiers::NONE,
            )));
            self.pump(effects);
        }
    }

    fn render(&mut self, w: u16, h: u16) -> Terminal<TestBackend> {
        self.app.update(Msg::Resize(w, h));
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| views::draw(f, &self.app)).unwrap();
        t
    }

    fn screen_text(&mut self, w: u16, h: u16) -> String {
        self.render(w, h).backend().to_string()
    }
}

#[test]
fn queue_shows_risk_signoffs_checks_and_age() {
    let mut rig = Rig::new(Some("devi"));
    insta::assert_snapshot!("queue", rig.render(120, 40).backend());
}

#[test]
fn queue_stays_usable_at_80x24() {
    let mut rig = Rig::new(Some("devi"));
    let screen = rig.screen_text(80, 24);
    for id in ["CR-1042", "CR-1043", "CR-1044", "CR-1045", "CR-1046"] {
        assert!(screen.contains(id), "{id} missing at 80x24:\n{screen}");
    }
    assert!(screen.contains("enter open"), "hint bar visible");
    insta::assert_snapshot!("queue_80x24", rig.render(80, 24).backend());
}

#[test]
fn filter_is_fuzzy_and_counts_matches() {
    let mut rig = Rig::new(Some("devi"));
    rig.key("/");
    rig.type_text("fraud");
    assert_eq!(rig.app.queue.visible.len(), 1);
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("1 of 5 match"), "{screen}");
    insta::assert_snapshot!("queue_filtered", rig.render(120, 40).backend());
    rig.key("esc");
    assert_eq!(rig.app.queue.visible.len(), 5);
    // Requester and subject are searched too.
    rig.key("/");
    rig.type_text("amara");
    assert_eq!(rig.app.queue.visible.len(), 2);
}

#[test]
fn quick_views_and_sorting() {
    let mut rig = Rig::new(Some("devi"));
    let counts = rig.app.queue.view_counts();
    // devi (risk-reviewer) is needed on the three high-risk CRs and the low-risk model change.
    assert_eq!(counts, [5, 4, 2, 0, 5, 0]);
    rig.key("3");
    assert_eq!(rig.app.queue.view, View::Blocked);
    let ids: Vec<&str> = rig
        .app
        .queue
        .visible
        .iter()
        .map(|i| rig.app.queue.rows[*i].id.as_str())
        .collect();
    assert_eq!(ids, ["CR-1043", "CR-1046"]);
    rig.keys(&["1", "s"]); // age → risk
    let first = &rig.app.queue.rows[rig.app.queue.visible[0]];
    assert_eq!(first.effective, tollgate::domain::risk::RiskLevel::High);
    rig.key("S");
    let first = &rig.app.queue.rows[rig.app.queue.visible[0]];
    assert_eq!(first.effective, tollgate::domain::risk::RiskLevel::Low);
}

#[test]
fn detail_holds_what_a_reviewer_needs() {
    let mut rig = Rig::new(Some("devi"));
    rig.key("enter");
    assert_eq!(rig.app.screen, Screen::Detail);
    let screen = rig.screen_text(120, 40);
    for want in [
        "CR-1042",
        "recall_at_1pct_fpr",
        "+6.1 %",
        "HIGH",
        "declared medium",
        "flag new_data_source",
        "[M]",
        "☐ unticked",
        "Sign-offs 0/4",
        "pull_request",
    ] {
        assert!(screen.contains(want), "{want:?} missing:\n{screen}");
    }
    insta::assert_snapshot!("detail", rig.render(120, 40).backend());
    // At 80x24 what decides is on the first screen, before the metrics and the prose:
    // risk, then sign-offs, then the checklist.
    let small = rig.screen_text(80, 24);
    let row = |heading: &str| {
        small
            .lines()
            .position(|l| l.trim_start_matches('"').starts_with(heading))
            .unwrap_or_else(|| panic!("{heading:?} not on the first 80x24 screen:\n{small}"))
    };
    let (risk, signoffs, checklist) = (row("Risk"), row("Sign-offs 0/4"), row("Checklist"));
    assert!(risk < signoffs && signoffs < checklist, "{small}");
    assert!(
        small
            .lines()
            .position(|l| l.trim_start_matches('"').starts_with("Metrics vs baseline"))
            .is_none_or(|m| m > checklist),
        "metrics before the checklist:\n{small}"
    );
    insta::assert_snapshot!("detail_80x24", rig.render(80, 24).backend());
}

#[test]
fn approving_from_the_keyboard_signs_exactly_what_was_confirmed() {
    let mut rig = Rig::new(Some("devi"));
    rig.keys(&["enter", "a"]);
    assert_eq!(rig.app.screen, Screen::Decide);
    rig.type_text("Shifts explained by the new features; fairness within limits.");
    rig.keys(&["tab", "tab", "tab", "space", "down", "space"]);
    insta::assert_snapshot!("decide", rig.render(120, 40).backend());
    rig.key("ctrl-s");
    assert_eq!(rig.app.screen, Screen::Confirm);
    let screen = rig.screen_text(120, 40);
    let digest = rig.app.decide.as_ref().unwrap().digest.clone();
    assert!(screen.contains(&digest), "the digest being signed is shown");
    assert!(
        screen.contains("APPROVE")
            && screen.contains("risk-reviewer")
            && screen.contains("privacy, rollback")
    );
    insta::assert_snapshot!("confirm", rig.render(120, 40).backend());
    rig.key("y");
    assert_eq!(rig.app.screen, Screen::Detail);
    let decisions = rig.shared.store.decisions("CR-1042").unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].cr_digest, digest);
    assert_eq!(
        decisions[0].rationale,
        "Shifts explained by the new features; fairness within limits."
    );
    let report =
        tollgate::store::verify_log(rig.shared.store.as_ref(), &Default::default()).unwrap();
    assert!(report.ok());
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("Sign-offs 1/4"), "{screen}");
    assert!(screen.contains("signature valid"), "{screen}");
    insta::assert_snapshot!("detail_after_signing", rig.render(120, 40).backend());
}

#[test]
fn a_refused_decision_explains_the_rule_and_cannot_be_signed() {
    let mut rig = Rig::new(Some("marco"));
    // CR-1046 (deployment): the latency check fails.
    rig.keys(&["5", "G", "enter"]);
    assert_eq!(rig.app.detail.id.as_deref(), Some("CR-1046"));
    rig.key("a");
    rig.type_text("looks fine");
    rig.key("ctrl-s");
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("Refused by policy"), "{screen}");
    assert!(screen.contains("blocking-evidence"), "{screen}");
    insta::assert_snapshot!("confirm_refused", rig.render(120, 40).backend());
    // Every rule at once, with what to do in this form's keys (not the CLI's flags).
    let refusals = &rig.app.decide.as_ref().unwrap().refusals;
    let rules: Vec<&str> = refusals.iter().map(|r| r.rule).collect();
    assert!(
        rules.contains(&"blocking-evidence") && rules.contains(&"unticked-blocking-item"),
        "{rules:?}"
    );
    assert!(
        screen.contains("space on each in the checklist, or ctrl-t"),
        "{screen}"
    );
    assert!(!screen.contains("--tick"), "{screen}");
    // At 60x15 the reasons are still on screen: they come first.
    let small = rig.screen_text(60, 15);
    assert!(small.contains("✗ approval needs every blocking"), "{small}");
    rig.key("y");
    assert!(
        rig.shared.store.decisions("CR-1046").unwrap().is_empty(),
        "nothing signed"
    );
    // Back to the form, change the verdict to reject, and that one goes through.
    rig.keys(&["n", "shift-tab", "shift-tab", "shift-tab", "left"]);
    assert_eq!(
        rig.app.decide.as_ref().unwrap().verdict,
        tollgate::domain::decision::Verdict::Reject
    );
    rig.keys(&["ctrl-s", "y"]);
    assert_eq!(rig.shared.store.decisions("CR-1046").unwrap().len(), 1);
}

#[test]
fn replies_to_superseded_requests_are_dropped() {
    let mut rig = Rig::new(Some("devi"));
    let old = rig.app.load_queue();
    let new = rig.app.load_queue();
    let me = rig.app.me().cloned();
    let old_reply = answer(&old, &rig.shared, me.as_ref(), now())
        .into_iter()
        .find(|m| matches!(m, Msg::Queue(..)))
        .unwrap();

    // The old reply carries a different (empty) result: it must not replace the rows.
    let Msg::Queue(id, _) = old_reply else {
        panic!()
    };
    rig.app.update(Msg::Queue(id, Ok(Default::default())));
    assert_eq!(rig.app.queue.rows.len(), 5, "a stale reply was applied");
    rig.pump(vec![new]);
    assert_eq!(rig.app.loading, 0);
}

#[test]
fn help_and_palette_come_from_the_keymap() {
    let mut rig = Rig::new(Some("devi"));
    rig.key("?");
    insta::assert_snapshot!("help", rig.render(120, 40).backend());
    rig.type_text("sign");
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("sign and record it"), "{screen}");
    assert!(!screen.contains("fuzzy filter"), "search narrows the list");
    rig.key("esc");
    rig.key(":");
    rig.type_text("blocked");
    insta::assert_snapshot!("palette", rig.render(120, 40).backend());
    rig.key("enter");
    assert_eq!(rig.app.queue.view, View::Blocked);
}

#[test]
fn read_only_users_are_told_why_and_cannot_open_the_form() {
    let mut rig = Rig::new(None);
    rig.keys(&["enter", "a"]);
    assert_eq!(rig.app.screen, Screen::Detail);
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("read-only"), "{screen}");
    assert!(screen.contains("tollgate keygen"), "{screen}");
}

#[test]
fn hostile_text_in_a_change_request_never_reaches_the_terminal() {
    let mut doc: serde_json::Value = serde_json::from_str(tollgate::demo::FIXTURES[3].1).unwrap();
    doc["id"] = json!("CR-6666");
    doc["title"] = json!("churn\u{1b}[2J\u{1b}]0;owned\u{7} tweak \u{202e}gnp.exe");
    doc["summary"] = json!(
        "line\u{1b}[31m red\r\nmore\u{9b}31m \u{1b}]8;;https://evil.example\u{1b}\\docs\u{1b}]8;;\u{1b}\\ \
         zero\u{2060}width\u{2063}\u{2066}iso\u{2069}\u{feff}bom \u{9d}0;c1-osc\u{9c}end"
    );
    doc["requester"] = json!("jonas");
    let mut rig = Rig::with_extra(Some("devi"), &[doc]);
    // ratatui itself drops a grapheme that is a control character, so checking cells for
    // controls alone would pass without tollgate's sanitiser: what must not survive is
    // the *rest* of each sequence (its parameters) and the invisible formatting
    // characters ratatui keeps.
    let check = |t: &Terminal<TestBackend>| {
        let invisible = |c: char| {
            c.is_control()
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                    | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        };
        let mut text = String::new();
        for cell in t.backend().buffer().content.iter() {
            let s = cell.symbol();
            assert!(!s.chars().any(invisible), "{s:?} reached the buffer");
            text.push_str(s);
        }
        for remnant in [
            "[2J",
            "]0;owned",
            "]8;;",
            "evil.example",
            "[31m",
            "31m",
            "0;c1-osc",
        ] {
            assert!(!text.contains(remnant), "{remnant:?} reached the screen");
        }
    };
    check(&rig.render(120, 40));
    rig.key("/");
    rig.type_text("6666");
    rig.key("enter");
    rig.key("enter");
    assert_eq!(rig.app.detail.id.as_deref(), Some("CR-6666"));
    let t = rig.render(120, 40);
    check(&t);
    assert!(t.backend().to_string().contains("churn"));
}

#[test]
fn no_color_draws_without_colours() {
    let mut rig = Rig::new(Some("devi"));
    rig.app.settings = tollgate::tui::settings::load(None, true).unwrap();
    rig.key("enter");
    let t = rig.render(120, 40);
    for cell in t.backend().buffer().content.iter() {
        assert_eq!(
            cell.fg,
            ratatui::style::Color::Reset,
            "coloured cell {:?}",
            cell.symbol()
        );
        assert_eq!(cell.bg, ratatui::style::Color::Reset);
    }
    // Emphasis survives as modifiers: the selected CR id badge is reversed.
    assert!(
        t.backend()
            .buffer()
            .content
            .iter()
            .any(|c| c.modifier.contains(ratatui::style::Modifier::REVERSED))
    );
}

/// A rollback command that prints two lines and succeeds (no temp paths: stable snapshots).
const ROLLBACK_POLICY: &str = "\n[[emergency.rollback]]\ncommand = [\"sh\", \"-c\", \"echo rolling $0 back to $1; echo done\", \"{subject}\", \"{to_version}\"]\ntimeout_seconds = 20\n";

/// The screen with the measured command duration masked (it varies run to run).
fn masked(screen: String) -> String {
    match screen.find("command ok in ") {
        Some(i) => {
            let start = i + "command ok in ".len();
            let end = start + screen[start..].find(" s").unwrap_or(0);
            format!("{}<t>{}", &screen[..start], &screen[end..])
        }
        None => screen,
    }
}

#[test]
fn emergency_rollback_from_any_screen_runs_the_command_and_records_it() {
    let mut rig = Rig::build(Some("lena"), &[], ROLLBACK_POLICY);
    rig.keys(&["enter", "!"]);
    assert_eq!(
        rig.app.screen,
        Screen::Emergency,
        "! works from the detail screen"
    );
    insta::assert_snapshot!("emergency_pick", rig.render(120, 40).backend());
    // At 80x24 each subject is one row (cut, never wrapped onto the next).
    let narrow = rig.screen_text(80, 24);
    for subject in ["recommender", "fraud-detector", "payments_v3"] {
        let rows: Vec<&str> = narrow.lines().filter(|l| l.contains(subject)).collect();
        assert_eq!(rows.len(), 1, "{subject}: {narrow}");
        assert!(rows[0].contains("prod"), "{narrow}");
    }
    rig.app.update(Msg::Resize(120, 40));
    rig.key("enter"); // recommender@prod is the most recent change
    rig.type_text("INC-2291");
    rig.key("tab");
    rig.type_text("conversion -10% since v8 reached 25% of traffic");
    insta::assert_snapshot!("emergency_details", rig.render(120, 40).backend());
    rig.key("enter");
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains("lena authorises rolling back recommender@prod from 8 to 7 for INC-2291"),
        "{screen}"
    );
    insta::assert_snapshot!("emergency_confirm", rig.render(120, 40).backend());
    rig.key("y");
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains("│ rolling recommender back to 7"),
        "{screen}"
    );
    assert!(screen.contains("rollback finished: exit 0"), "{screen}");
    let entries = rig.shared.store.emergency_entries().unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["emergency-authorised", "rollback-executed"]);
    assert!(
        tollgate::store::verify_log(rig.shared.store.as_ref(), &Default::default())
            .unwrap()
            .ok()
    );
    // `E` works on the finished flow, as its hint bar says.
    assert!(screen.contains("E exceptions"), "{screen}");
    rig.key("E");
    assert_eq!(rig.app.screen, Screen::Exceptions);
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains("INC-2291") && screen.contains("ACTIVE"),
        "{screen}"
    );
    rig.key("esc");
    assert_eq!(
        rig.app.screen,
        Screen::Detail,
        "back to where the flow began"
    );
    rig.key("E");
    insta::assert_snapshot!("exceptions", masked(rig.screen_text(120, 40)));

    // History lists the rollback and its outcome; enter reads the signed authorisation.
    rig.key("esc");
    rig.key("H");
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("Emergency 2"), "{screen}");
    let row = screen
        .lines()
        .find(|l| l.contains("INC-2291") && l.contains("rollback"));
    assert!(
        row.is_some_and(|r| r.contains("recommender@prod 8→7") && r.contains("lena")),
        "{screen}"
    );
    assert!(screen.contains("ran ok"), "{screen}");
    let at = rig
        .app
        .history
        .as_ref()
        .unwrap()
        .visible
        .iter()
        .position(|r| matches!(r, tollgate::tui::screens::history::HistoryRow::Event(_)))
        .unwrap();
    for _ in 0..at {
        rig.key("down");
    }
    rig.key("enter");
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("incident  INC-2291"), "{screen}");
    assert!(
        screen.contains("rollback  recommender@prod from 8 to 7")
            || screen.contains("command   exit 0"),
        "{screen}"
    );
    rig.keys(&["esc", "esc"]);

    // The picker now says 7 is live, and why; the version before it is not known.
    rig.key("esc");
    rig.key("!");
    let screen = rig.screen_text(120, 40);
    let row = screen
        .lines()
        .find(|l| l.contains("▸ recommender"))
        .unwrap_or_default();
    assert!(
        row.contains(" 7 ") && row.contains("—") && row.contains("rolled back from 8 for INC-2291"),
        "{screen}"
    );
}

#[test]
fn emergency_is_refused_for_anyone_off_the_roster_and_says_who_is_on_call() {
    let mut rig = Rig::new(Some("devi"));
    rig.key("!");
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains("You cannot authorise an emergency rollback"),
        "{screen}"
    );
    assert!(
        screen.contains("Marco Rossi (marco)") && screen.contains("Vogel (lena)"),
        "{screen}"
    );
    rig.keys(&["enter", "y"]);
    assert!(rig.shared.store.emergency_entries().unwrap().is_empty());
    rig.key("esc");
    assert_eq!(rig.app.screen, Screen::Queue);
}

#[test]
fn an_overdue_review_shows_on_every_screen() {
    let mut rig = Rig::new(Some("lena"));
    rig.keys(&["!", "enter"]);
    rig.type_text("INC-7");
    rig.key("tab");
    rig.type_text("latency spike");
    rig.keys(&["enter", "y", "enter"]);
    assert_eq!(rig.app.exceptions.len(), 1);
    // 49 hours later the review is overdue.
    rig.app.now = now() + chrono::Duration::hours(49);
    for keys in [&[][..], &["enter"][..], &["esc", "E"][..]] {
        rig.keys(keys);
        let screen = rig.screen_text(120, 40);
        assert!(screen.contains("⚠ REVIEW OVERDUE: INC-7"), "{screen}");
    }
}

/// Signs a decision directly (as if another reviewer did, elsewhere) at the rig's clock.
fn sign(
    rig: &Rig,
    who: &str,
    cr: &str,
    verdict: tollgate::domain::decision::Verdict,
    role: &str,
    ticks: &[&str],
) {
    let identity = Identity {
        signer: seeded(who),
        principal: rig.shared.book().policy().principal(who).unwrap().clone(),
        key_path: "seeded".into(),
    };
    let request = tollgate::workflow::DecisionRequest {
        cr_id: cr.into(),
        verdict,
        role: role.into(),
        rationale: format!("{who} checked the evidence"),
        ticks: ticks
            .iter()
            .map(|t| tollgate::domain::checklist::Tick {
                item: t.to_string(),
                note: None,
            })
            .collect(),
        expect_digest: None,
    };
    tollgate::workflow::sign_decision(
        rig.shared.store.as_ref(),
        &rig.shared.book(),
        &identity,
        &request,
        now() + chrono::Duration::minutes(30),
    )
    .unwrap();
}

/// The screen with the verification time masked (it varies run to run).
/// The screen with the verification time masked (and its line padded to a fixed width,
/// so a 1- or 3-digit time does not move what follows).
fn masked_ms(screen: String) -> String {
    screen
        .lines()
        .map(|line| match line.find("intact (") {
            Some(i) => {
                let start = i + "intact (".len();
                let end = start + line[start..].find(" ms)").unwrap_or(0);
                let masked = format!("{}<t>{}", &line[..start], &line[end..]);
                // Same width whatever the number of digits: pad inside the closing quote.
                let quoted = masked.ends_with('"');
                let body = masked.trim_end_matches('"').trim_end();
                let width = line.chars().count() - usize::from(quoted);
                format!("{body:<width$}{}", if quoted { "\"" } else { "" })
            }
            None => line.to_string(),
        })
        .map(|line| line + "\n")
        .collect()
}

fn rig_with_history() -> Rig {
    use tollgate::domain::decision::Verdict::*;
    let rig = Rig::new(Some("sofia"));
    sign(
        &rig,
        "devi",
        "CR-1042",
        Approve,
        "risk-reviewer",
        &["privacy", "rollback"],
    );
    sign(&rig, "kai", "CR-1042", Approve, "data-reviewer", &[]);
    sign(&rig, "marco", "CR-1046", Reject, "ops-reviewer", &[]);
    sign(
        &rig,
        "devi",
        "CR-1044",
        RequestChanges,
        "risk-reviewer",
        &[],
    );
    rig
}

#[test]
fn history_shows_every_decision_with_integrity_and_the_signed_record() {
    let mut rig = rig_with_history();
    rig.key("H");
    assert_eq!(rig.app.screen, Screen::History);
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains("✓ audit log verified: 10 entries, 10 signatures, every link intact"),
        "{screen}"
    );
    assert!(screen.contains("Decisions 4"), "{screen}");
    insta::assert_snapshot!("history", masked_ms(rig.screen_text(120, 40)));
    rig.key("/");
    rig.type_text("principal:devi");
    assert_eq!(rig.app.history.as_ref().unwrap().visible.len(), 2);
    assert!(rig.screen_text(120, 40).contains("2 of 4 decisions"));
    rig.type_text(" risk:severe");
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains("risk: expected one of low, medium, high"),
        "{screen}"
    );
    // At 80 columns the error wraps onto the next row instead of being cut.
    let narrow = rig.screen_text(80, 24);
    assert!(narrow.contains("found \"severe\""), "{narrow}");
    rig.key("esc");
    rig.key("enter");
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("✓ valid SSHSIG by devi"), "{screen}");
    assert!(screen.contains("bound to CR-1044 revision 1"), "{screen}");
    // Find in the record: its own keys while it is open.
    rig.key("/");
    rig.type_text("cr_digest");
    rig.key("enter");
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("match 1 of 1"), "{screen}");
    rig.key("esc");
    assert!(
        !rig.app.history.as_ref().unwrap().find.active(),
        "esc clears the find"
    );
    rig.key("esc");
    assert!(
        rig.app.history.as_ref().unwrap().record.is_none(),
        "esc closes the record first"
    );
    rig.key("tab");
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains("approve 50 %   reject 25 %   request changes 25 %"),
        "{screen}"
    );
    insta::assert_snapshot!("history_health", masked_ms(rig.screen_text(120, 40)));
    rig.key("esc");
    assert_eq!(rig.app.screen, Screen::Queue);
}

#[test]
fn a_broken_chain_is_impossible_to_miss_in_the_history() {
    let mut rig = rig_with_history();
    let path = rig._dir.path().join("t.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("DROP TRIGGER log_is_append_only;").unwrap();
    c.execute(
        "UPDATE log SET body = replace(body, 'kai checked', 'kai skipped') WHERE seq = 8",
        [],
    )
    .unwrap();
    rig.key("H");
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains("✗ AUDIT LOG BROKEN at entry 8: altered"),
        "{screen}"
    );
    assert_eq!(screen.matches("✗ untrusted").count(), 3, "{screen}");
    assert_eq!(screen.matches("✓ verified").count(), 1, "{screen}");
}

#[test]
fn a_decision_recorded_elsewhere_reaches_the_queue_at_the_next_poll() {
    let mut rig = Rig::new(Some("devi"));
    assert_eq!(
        status_of(&rig, "CR-1044"),
        Some(tollgate::domain::status::Status::Pending)
    );
    // Another reviewer's process records a decision right after the queue loaded.
    request_changes_elsewhere(&rig, "CR-1044");
    // Five seconds of ticks: the first head check already sees the change.
    for _ in 0..50 {
        let effects = rig.app.update(Msg::Tick);
        rig.pump(effects);
    }
    assert_eq!(
        status_of(&rig, "CR-1044"),
        Some(tollgate::domain::status::Status::ChangesRequested)
    );
}

fn status_of(rig: &Rig, id: &str) -> Option<tollgate::domain::status::Status> {
    rig.app
        .queue
        .rows
        .iter()
        .find(|r| r.id == id)
        .map(|r| r.status)
}

/// Devi requests changes on `id` through a store handle of another process's own.
fn request_changes_elsewhere(rig: &Rig, id: &str) {
    let other = LocalStore::open(&rig._dir.path().join("t.db")).unwrap();
    let devi = Identity {
        signer: seeded("devi"),
        principal: rig
            .shared
            .book()
            .policy()
            .principal("devi")
            .unwrap()
            .clone(),
        key_path: "seeded".into(),
    };
    tollgate::workflow::sign_decision(
        &other,
        &rig.shared.book(),
        &devi,
        &tollgate::workflow::DecisionRequest {
            cr_id: id.into(),
            verdict: tollgate::domain::decision::Verdict::RequestChanges,
            role: "risk-reviewer".into(),
            rationale: "per-language FPR report missing".into(),
            ticks: vec![],
            expect_digest: None,
        },
        now(),
    )
    .unwrap();
}

#[test]
fn with_the_live_stream_a_change_elsewhere_is_shown_as_announced_and_nothing_polls() {
    let mut rig = Rig::new(Some("devi"));
    let mut listener = rig
        .shared
        .store
        .head_listener()
        .unwrap()
        .expect("an SQLite store announces changes");
    rig.app.update(Msg::Live(true));
    assert!(rig.screen_text(120, 40).contains("│ local · live"));
    // A minute of ticks: no periodic check while the stream is connected.
    for _ in 0..600 {
        let effects = rig.app.update(Msg::Tick);
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::CheckHead(_))),
            "{effects:?}"
        );
    }

    request_changes_elsewhere(&rig, "CR-1044");
    let head = listener
        .wait(std::time::Duration::from_secs(20))
        .unwrap()
        .expect("the store announces the decision");
    assert_eq!(
        Some(head.seq),
        rig.app.last_head.as_ref().map(|h| h.seq + 1)
    );
    let effects = rig.app.update(Msg::Pushed(head.clone()));
    assert!(
        matches!(effects.as_slice(), [Effect::LoadQueue(_)]),
        "{effects:?}"
    );
    rig.pump(effects);
    assert_eq!(
        status_of(&rig, "CR-1044"),
        Some(tollgate::domain::status::Status::ChangesRequested)
    );
    assert_eq!(rig.app.last_head.as_ref(), Some(&head));
    // The same head again changes nothing.
    assert!(rig.app.update(Msg::Pushed(head)).is_empty());

    // Losing the stream looks at once, and polls again from then on.
    let effects = rig.app.update(Msg::Live(false));
    assert!(
        matches!(effects.as_slice(), [Effect::CheckHead(_)]),
        "{effects:?}"
    );
    assert!(!rig.screen_text(120, 40).contains("live"));
    let checks = (0..50)
        .flat_map(|_| rig.app.update(Msg::Tick))
        .filter(|e| matches!(e, Effect::CheckHead(_)))
        .count();
    assert_eq!(checks, 1, "one check in the default five seconds");
}

#[test]
fn a_burst_of_announcements_during_a_load_makes_one_reload_after_it() {
    let mut rig = Rig::new(Some("devi"));
    rig.app.update(Msg::Live(true));
    let in_flight = rig.app.load_queue();
    request_changes_elsewhere(&rig, "CR-1044");
    let newer = |seq: u64| tollgate::store::Head {
        seq,
        hash: Some(format!("h{seq}")),
    };
    let base = rig.app.last_head.as_ref().unwrap().seq;
    for n in 1..=3 {
        assert!(
            rig.app.update(Msg::Pushed(newer(base + n))).is_empty(),
            "no reload while one is loading"
        );
    }
    rig.pump(vec![in_flight]);
    let reloads: Vec<Effect> = (0..3).flat_map(|_| rig.app.update(Msg::Tick)).collect();
    assert!(
        matches!(reloads.as_slice(), [Effect::LoadQueue(_)]),
        "{reloads:?}"
    );
}

#[test]
fn unsent_decisions_show_in_the_status_bar_until_delivered() {
    let mut rig = Rig::new(Some("devi"));
    rig.app.update(Msg::Unsent(2));
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("2 UNSENT"), "{screen}");
    rig.app.update(Msg::Unsent(0));
    let screen = rig.screen_text(120, 40);
    assert!(!screen.contains("UNSENT"), "{screen}");
    assert!(
        screen.contains("delivered 2 unsent decisions to the server"),
        "{screen}"
    );
}

#[test]
fn a_lead_reviews_and_completes_a_policy_change_at_the_keyboard() {
    use tollgate::domain::decision::Verdict::Approve;
    let mut rig = Rig::new(Some("sofia"));
    let book = rig.shared.book();
    let proposed = book.current().text.replace(
        "on_call = [\"marco\", \"lena\", \"guard\"]",
        "on_call = [\"lena\", \"guard\"]",
    );
    tollgate::workflow::propose_policy(
        rig.shared.store.as_ref(),
        &book,
        "marco",
        &proposed,
        "December rotation",
        None,
        now(),
    )
    .unwrap();
    sign(&rig, "lena", "POL-2", Approve, "lead", &[]);
    let reload = rig.app.load_queue();
    rig.pump(vec![reload]);
    // The newest change request: last in the queue, which is sorted by age.
    rig.keys(&["G", "enter"]);
    assert_eq!(rig.app.screen, Screen::Detail);
    let screen = rig.screen_text(120, 40);
    for want in [
        "POL-2",
        "policy gate",
        "Policy change  1 change(s) vs the policy in force",
        "- on-call marco",
        "Sign-offs 1/2",
    ] {
        assert!(screen.contains(want), "{want:?} missing:\n{screen}");
    }
    insta::assert_snapshot!("policy_change_detail", rig.render(120, 40).backend());
    // sofia's approval completes it: the new policy is in force at once.
    rig.key("a");
    assert_eq!(rig.app.screen, Screen::Decide);
    rig.type_text("The rota says lena covers December.");
    rig.key("ctrl-s");
    assert_eq!(rig.app.screen, Screen::Confirm);
    assert!(rig.screen_text(120, 40).contains("lead"));
    rig.key("y");
    let (_, message) = rig.app.message.clone().unwrap();
    assert!(
        message.contains("POL-2 adopted at entry") || message.contains("policy version 2"),
        "{message}"
    );
    assert_eq!(rig.shared.book().current().version, 2);
    assert_eq!(rig.app.policy.emergency.on_call, ["lena", "guard"]);
    assert_eq!(
        std::fs::read_to_string(rig._dir.path().join("t.policy.toml")).unwrap(),
        proposed,
        "the file beside the store is the adopted text"
    );
    assert!(
        tollgate::store::verify_log(rig.shared.store.as_ref(), &Default::default())
            .unwrap()
            .ok()
    );
}

#[test]
fn only_an_unreachable_server_turns_the_status_offline() {
    use tollgate::tui::app::Connection;
    use tollgate::tui::error::TuiError;
    let mut rig = Rig::new(Some("devi"));
    rig.app.connection = Connection::Remote;
    // A failure that merely mentions reaching something is not an outage.
    rig.app.update(Msg::Head(
        1,
        Err(TuiError::Gone("cannot reach CR-1".into())),
    ));
    assert_eq!(rig.app.connection, Connection::Remote);
    rig.app.update(Msg::Head(
        2,
        Err(TuiError::Store(tollgate::store::StoreError::Unreachable {
            url: "http://127.0.0.1:1".into(),
            detail: "connection refused".into(),
        })),
    ));
    assert_eq!(rig.app.connection, Connection::Offline);
    assert!(rig.screen_text(120, 40).contains("offline — retrying"));
    // The next answer brings it back.
    rig.app.update(Msg::Head(
        3,
        Ok(tollgate::store::Head { seq: 1, hash: None }),
    ));
    assert_eq!(rig.app.connection, Connection::Remote);
}

#[test]
fn the_detail_scroll_stops_at_the_end_of_the_content() {
    let mut rig = Rig::new(Some("devi"));
    rig.key("enter");
    for (w, h) in [(120, 40), (80, 24)] {
        rig.key("g");
        let top = rig.screen_text(w, h);
        rig.key("G");
        let bottom = rig.screen_text(w, h);
        assert_ne!(top, bottom, "{w}x{h}: G moved");
        assert!(
            bottom.contains("Versions"),
            "{w}x{h}: the last section is on screen after G:\n{bottom}"
        );
        // Holding j past the end shows the same last screenful, never blank space.
        for _ in 0..300 {
            rig.key("j");
        }
        assert_eq!(
            rig.screen_text(w, h),
            bottom,
            "{w}x{h}: j scrolled past the end"
        );
        // So one k is one line up, at once.
        rig.key("k");
        assert_ne!(rig.screen_text(w, h), bottom, "{w}x{h}: one k moved back");
    }
}

#[test]
fn the_help_scroll_stops_at_the_end_of_the_list() {
    let mut rig = Rig::new(Some("devi"));
    rig.key("?");
    let top = rig.screen_text(120, 30);
    for _ in 0..200 {
        rig.key("down");
    }
    let bottom = rig.screen_text(120, 30);
    assert_ne!(top, bottom, "down scrolls the help");
    rig.key("up");
    let one_up = rig.screen_text(120, 30);
    assert_ne!(one_up, bottom, "one up is one line up, at once");
}

#[test]
fn line_editing_keys_work_alike_in_every_text_field() {
    use tollgate::tui::app::Overlay;
    let mut rig = Rig::new(Some("devi"));
    // The palette.
    rig.key(":");
    rig.type_text("blocked");
    rig.key("ctrl-w");
    let query = |rig: &Rig| match &rig.app.overlay {
        Some(Overlay::Palette(p)) => p.query.clone(),
        _ => panic!("the palette closed"),
    };
    assert_eq!(query(&rig), "", "ctrl-w deleted the word, inserted no 'w'");
    rig.type_text("view blocked");
    rig.key("ctrl-u");
    assert_eq!(query(&rig), "", "ctrl-u cleared the line, inserted no 'u'");
    rig.key("esc");
    // The queue's filter.
    rig.key("/");
    rig.type_text("fraud");
    assert_eq!(rig.app.queue.visible.len(), 1);
    rig.key("ctrl-u");
    assert_eq!(rig.app.queue.filter, "");
    assert_eq!(rig.app.queue.visible.len(), 5, "the filter was cleared");
    rig.type_text("spam fraud");
    rig.key("ctrl-w");
    assert_eq!(rig.app.queue.filter, "spam ");
}

#[test]
fn metrics_say_better_or_worse_in_words() {
    let mut rig = Rig::new(Some("devi"));
    rig.app.settings = tollgate::tui::settings::load(None, true).unwrap();
    rig.key("enter");
    let screen = rig.screen_text(120, 40);
    let line = |name: &str| {
        screen
            .lines()
            .find(|l| l.contains(name) && l.contains('→'))
            .unwrap_or_else(|| panic!("{name} not on screen:\n{screen}"))
            .to_string()
    };
    // p99 latency went up: worse, whatever the colours.
    let p99 = line("p99_latency_ms");
    assert!(p99.contains("(+9.2 %) worse"), "{p99}");
    let auc = line("auc");
    assert!(auc.contains("(+1.6 %) better"), "{auc}");
}

#[test]
fn a_clean_change_request_is_approved_from_the_queue_in_four_keys_plus_the_rationale() {
    let mut rig = Rig::new(Some("devi"));
    assert_eq!(
        rig.app.selected_row().map(|r| r.id.as_str()),
        Some("CR-1042")
    );
    // `a` on the queue opens the form on the selected CR (its detail behind it).
    rig.key("a");
    assert_eq!(rig.app.screen, Screen::Decide);
    assert_eq!(rig.app.detail.id.as_deref(), Some("CR-1042"));
    rig.type_text("Shifts explained by the new features.");
    // One key ticks every manual item; the confirmation lists each.
    rig.key("ctrl-t");
    rig.key("ctrl-s");
    let confirm = rig.screen_text(120, 40);
    assert!(confirm.contains("privacy, rollback, owner"), "{confirm}");
    rig.key("y");
    let decisions = rig.shared.store.decisions("CR-1042").unwrap();
    assert_eq!(decisions.len(), 1);
    let ticked: Vec<&str> = decisions[0].ticks.iter().map(|t| t.item.as_str()).collect();
    assert_eq!(
        ticked,
        ["privacy", "rollback", "owner"],
        "every manual item of the gate"
    );
    // a, ctrl-t, ctrl-s, y.
}

#[test]
fn a_read_only_session_offers_no_decision_keys_and_says_why_on_a() {
    let mut rig = Rig::new(None);
    let hints = rig.screen_text(120, 40);
    let bar = hints.lines().rev().nth(1).unwrap_or_default().to_string();
    assert!(!bar.contains("approve"), "hint bar: {bar}");
    rig.key("a");
    assert_eq!(rig.app.screen, Screen::Queue);
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("read-only"), "{screen}");
}

#[test]
fn long_ids_are_never_cut_and_the_sorted_column_is_marked() {
    let extra: Vec<serde_json::Value> = ["CR-200000", "CR-200005"]
        .iter()
        .map(|id| {
            let mut doc: serde_json::Value =
                serde_json::from_str(tollgate::demo::FIXTURES[3].1).unwrap();
            doc["id"] = json!(id);
            doc
        })
        .collect();
    let mut rig = Rig::with_extra(Some("devi"), &extra);
    for (w, h) in [(120, 40), (80, 24)] {
        let screen = rig.screen_text(w, h);
        assert!(
            screen.contains("CR-200000") && screen.contains("CR-200005"),
            "{w}x{h}:\n{screen}"
        );
    }
    // Sorted by age by default: its header says so; after `s` the next column does.
    let header = |rig: &mut Rig| {
        rig.screen_text(120, 40)
            .lines()
            .find(|l| l.contains("TITLE"))
            .unwrap_or_default()
            .to_string()
    };
    assert!(header(&mut rig).contains("AGE▲"), "{}", header(&mut rig));
    rig.key("s");
    assert!(header(&mut rig).contains("RISK▲"), "{}", header(&mut rig));
    rig.key("S");
    assert!(header(&mut rig).contains("RISK▼"), "{}", header(&mut rig));
}

#[test]
fn esc_does_not_throw_away_a_written_rationale_on_one_key() {
    let mut rig = Rig::new(Some("devi"));
    rig.keys(&["enter", "a"]);
    rig.type_text("Half a paragraph of careful review");
    rig.key("esc");
    assert_eq!(rig.app.screen, Screen::Decide, "one esc keeps the form");
    assert!(rig.screen_text(120, 40).contains("esc again discards"));
    // Any other key keeps it and disarms.
    rig.type_text(".");
    rig.key("esc");
    assert_eq!(rig.app.screen, Screen::Decide);
    assert_eq!(
        rig.app.decide.as_ref().unwrap().rationale_text(),
        "Half a paragraph of careful review."
    );
    rig.key("esc");
    assert_eq!(
        rig.app.screen,
        Screen::Detail,
        "the second esc in a row discards"
    );
    // An empty form closes at once.
    rig.key("a");
    rig.key("esc");
    assert_eq!(rig.app.screen, Screen::Detail);
}

#[test]
fn the_emergency_form_checks_what_is_typed_and_says_so_in_place() {
    let mut rig = Rig::build(Some("lena"), &[], ROLLBACK_POLICY);
    rig.keys(&["!", "enter"]); // recommender@prod, last good 7 prefilled
    // Empty fields are named, not ignored.
    rig.key("enter");
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("the incident id is empty"), "{screen}");
    // An incident id the CLI refuses is refused here too, before confirming.
    rig.type_text("inc 22 91 ; rm -rf");
    rig.key("tab");
    rig.type_text("conversion down");
    rig.key("enter");
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("incident id"), "{screen}");
    assert_eq!(
        rig.app.emergency.as_ref().map(|f| f.step),
        Some(tollgate::tui::app::EmergencyStep::Details),
        "not offered for signing"
    );
    // Typing into the prefilled version replaces it: 5, not 75.
    rig.keys(&["tab"]);
    rig.type_text("5");
    assert_eq!(rig.app.emergency.as_ref().unwrap().target, "5");
}

#[test]
fn help_lists_the_current_screens_keys_first_and_never_runs_keys_into_words() {
    let mut rig = Rig::new(Some("devi"));
    rig.app.settings.keymap =
        tollgate::tui::keymap::Keymap::preset(tollgate::tui::keymap::Preset::Vim);
    rig.keys(&["enter", "?"]);
    let screen = rig.screen_text(120, 60);
    let first_heading = screen
        .lines()
        .find_map(|l| {
            ["Everywhere", "Queue", "Change request", "Deciding"]
                .into_iter()
                .find(|h| l.contains(&format!("│{h}")))
        })
        .unwrap_or_default();
    assert_eq!(
        first_heading, "Change request",
        "the detail's keys first:\n{screen}"
    );
    assert!(!screen.contains("spacepage"), "{screen}");
    assert!(
        screen.contains("quit (on the queue; elsewhere: back)"),
        "{screen}"
    );
}

#[test]
fn the_filter_ranks_the_best_match_first() {
    let mut rig = Rig::new(Some("devi"));
    rig.key("/");
    rig.type_text("spam");
    let first = rig.app.selected_row().map(|r| r.id.clone());
    assert_eq!(first.as_deref(), Some("CR-1044"), "spam-classifier first");
    let ids: Vec<String> = rig
        .app
        .queue
        .visible
        .iter()
        .map(|i| rig.app.queue.rows[*i].id.clone())
        .collect();
    assert_eq!(ids.first().map(String::as_str), Some("CR-1044"), "{ids:?}");
    // An exact id beats everything.
    rig.key("ctrl-u");
    rig.type_text("cr-1046");
    assert_eq!(
        rig.app.selected_row().map(|r| r.id.as_str()),
        Some("CR-1046")
    );
}

#[test]
fn y_on_the_queue_copies_the_selected_id() {
    let mut rig = Rig::new(Some("devi"));
    let effects = rig.app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('y'),
        KeyModifiers::NONE,
    )));
    assert_eq!(effects, vec![Effect::Copy("CR-1042".into())]);
    assert!(rig.screen_text(120, 40).contains("copied CR-1042"));
}

#[test]
fn history_at_80x24_drops_columns_instead_of_cutting_them() {
    let mut rig = rig_with_history();
    rig.key("H");
    let screen = rig.screen_text(80, 24);
    let header = screen
        .lines()
        .find(|l| l.contains("DECIDED"))
        .unwrap_or_else(|| panic!("no table header:\n{screen}"))
        .to_string();
    for col in ["DECIDED", "CR", "VERDICT", "BY", "RECORD"] {
        assert!(header.contains(col), "{col} missing: {header}");
    }
    assert!(
        !header.contains("ROLE"),
        "an optional column goes first: {header}"
    );
    // Every row shows whole values: a full timestamp, the whole id and principal.
    let row = screen
        .lines()
        .find(|l| l.contains("CR-1044"))
        .unwrap_or_else(|| panic!("no CR-1044 row:\n{screen}"))
        .to_string();
    let stamp = row
        .trim_start_matches('"')
        .get(..16)
        .unwrap_or_default()
        .to_string();
    assert!(
        stamp.len() == 16 && stamp.as_bytes()[10] == b' ' && stamp[11..].contains(':'),
        "timestamp cut: {row}"
    );
    assert!(row.contains(" devi "), "{row}");
    assert!(row.contains("changes"), "{row}");
}

#[test]
fn wrapped_checklist_text_hangs_under_the_label() {
    let mut rig = Rig::new(Some("devi"));
    rig.key("enter");
    for (w, h, column) in [(120, 60, true), (80, 60, false)] {
        let screen = rig.screen_text(w, h);
        // The checklist's lines: from its heading to the sign-offs.
        let mut inside = false;
        for line in screen.lines() {
            let line = line.trim_matches('"');
            let text = if column {
                line.split_once('│')
                    .map_or("", |(_, r)| r)
                    .trim_start_matches(' ')
            } else {
                line
            };
            let raw = if column {
                line.split_once('│')
                    .map_or("", |(_, r)| r)
                    .strip_prefix(' ')
                    .unwrap_or("")
            } else {
                line
            };
            if text.starts_with("Checklist") {
                inside = true;
                continue;
            }
            if text.starts_with("Sign-offs") || (!column && text.starts_with("Metrics")) {
                inside = false;
            }
            if inside && !raw.trim().is_empty() {
                assert!(
                    raw.starts_with("[A]")
                        || raw.starts_with("[M]")
                        || raw.starts_with("                "),
                    "{w}x{h}: a checklist line starts at column 0: {raw:?}\n{screen}"
                );
            }
        }
    }
}

#[test]
fn the_signed_record_reads_as_fields_and_scrolls_instead_of_closing() {
    let mut rig = rig_with_history();
    rig.key("H");
    rig.key("enter");
    assert!(rig.app.history.as_ref().unwrap().record.is_some());
    let screen = rig.screen_text(120, 40);
    // Sorted newest first: devi's request for changes on CR-1044.
    for want in [
        "verdict   request-changes",
        "by        devi as risk-reviewer",
        "signed at",
        "rationale",
        "signed body (JSON)",
    ] {
        assert!(
            screen.contains(want),
            "{want:?} not in the record pane:\n{screen}"
        );
    }
    // Movement reads the record; it stays open.
    let top = screen;
    rig.key("G");
    assert!(
        rig.app.history.as_ref().unwrap().record.is_some(),
        "G closed the record"
    );
    let bottom = rig.screen_text(120, 40);
    assert_ne!(top, bottom, "G scrolled the record");
    assert!(
        bottom.lines().any(|l| l.trim_matches('"').trim() == "}"),
        "the end of the JSON:\n{bottom}"
    );
    rig.key("enter");
    assert!(
        rig.app.history.as_ref().unwrap().record.is_none(),
        "enter closes it"
    );
}

/// A long status message (here, a read-only session's reason) wraps onto up to three rows
/// at 80 columns rather than being cut at the width.
#[test]
fn long_status_messages_wrap_instead_of_being_cut() {
    let mut rig = Rig::new(None);
    rig.app.signer = Signer::ReadOnly(
        "no signing key: run `tollgate keygen` (creates ~/.local/share/tollgate/keys/id_ed25519), or pass --key PATH with an OpenSSH ed25519 key".into(),
    );
    let screen = rig.screen_text(80, 24);
    assert!(screen.contains("OpenSSH ed25519 key"), "{screen}");
    assert!(screen.contains("tollgate keygen"), "{screen}");
}

#[test]
fn a_requester_is_told_before_writing_a_rationale_that_they_cannot_sign() {
    // priya requested CR-1042.
    let mut rig = Rig::new(Some("priya"));
    rig.keys(&["enter", "a"]);
    if rig.app.screen == Screen::Decide {
        let screen = rig.screen_text(120, 40);
        assert!(screen.contains("as it stands:"), "{screen}");
        assert!(screen.contains("requester"), "{screen}");
        assert!(
            !rig.app.decide.as_ref().unwrap().early.is_empty(),
            "refused before any rationale"
        );
    } else {
        // No role to sign in at all: said at once on the detail screen.
        let screen = rig.screen_text(120, 40);
        assert!(
            screen.contains("requester") || screen.contains("role"),
            "{screen}"
        );
    }
    // devi may approve once the blocking items are ticked: told so until they are.
    let mut ok = Rig::new(Some("devi"));
    ok.keys(&["enter", "a"]);
    assert!(ok.screen_text(120, 40).contains("as it stands:"));
    ok.key("ctrl-t");
    assert!(ok.app.decide.as_ref().unwrap().early.is_empty());
    assert!(!ok.screen_text(120, 40).contains("as it stands:"));
}

#[test]
fn the_masked_verification_time_does_not_depend_on_its_digits() {
    let line = |ms: &str| {
        let text = format!(" ✓ verified, every link intact ({ms} ms)");
        format!("\"{text:<60}\"")
    };
    assert_eq!(masked_ms(line("5")), masked_ms(line("12345")));
}

#[test]
fn tab_brings_the_selected_artifact_into_view() {
    let mut rig = Rig::new(Some("devi"));
    rig.key("enter");
    let top = rig.screen_text(80, 24);
    assert!(
        !top.contains("▸"),
        "no artifact on the first 80x24 screen:\n{top}"
    );
    rig.key("tab");
    let screen = rig.screen_text(80, 24);
    assert!(
        screen.contains("▸ model_card"),
        "the selected artifact is on screen:\n{screen}"
    );
    rig.key("tab");
    let screen = rig.screen_text(80, 24);
    assert!(screen.contains("▸ data_sheet"), "{screen}");
}

/// Every screen takes its keys from the keymap: rebound, the old keys stop working and
/// the new ones work in the filter, the emergency flow and its confirmation, with the
/// hint bar saying the new keys.
#[test]
fn rebound_keys_drive_filters_the_emergency_flow_and_its_confirmation() {
    use tollgate::tui::keymap::Action;
    let mut rig = Rig::new(Some("lena"));
    let km = &mut rig.app.settings.keymap;
    km.rebind(Action::Accept, vec![Key::parse("f2").unwrap()]);
    km.rebind(Action::Sign, vec![Key::parse("Y").unwrap()]);
    km.rebind(Action::Cancel, vec![Key::parse("N").unwrap()]);
    km.rebind(Action::ClearLine, vec![Key::parse("ctrl-k").unwrap()]);

    rig.key("/");
    rig.type_text("spam");
    rig.key("enter");
    assert!(rig.app.queue.filtering, "enter is no longer accept");
    assert!(rig.screen_text(120, 40).contains("f2 keep"));
    rig.key("f2");
    assert!(!rig.app.queue.filtering);
    assert_eq!(rig.app.queue.filter, "spam", "accept keeps the filter");
    rig.key("esc");

    rig.key("!");
    rig.key("enter");
    assert_eq!(
        rig.app.emergency.as_ref().unwrap().step,
        EmergencyStep::Pick
    );
    rig.key("f2");
    assert_eq!(
        rig.app.emergency.as_ref().unwrap().step,
        EmergencyStep::Details
    );
    rig.type_text("INC-77");
    rig.key("ctrl-u");
    assert_eq!(
        rig.app.emergency.as_ref().unwrap().incident,
        "INC-77",
        "ctrl-u unbound"
    );
    rig.key("ctrl-k");
    assert_eq!(rig.app.emergency.as_ref().unwrap().incident, "");
    rig.type_text("INC-2291");
    rig.key("tab");
    rig.type_text("conversion down 10%");
    rig.key("f2");
    assert_eq!(
        rig.app.emergency.as_ref().unwrap().step,
        EmergencyStep::Confirm
    );
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("Y sign and roll back"), "{screen}");
    rig.key("y");
    rig.key("n");
    assert_eq!(
        rig.app.emergency.as_ref().unwrap().step,
        EmergencyStep::Confirm,
        "the old keys do nothing"
    );
    assert!(rig.shared.store.emergency_entries().unwrap().is_empty());
    rig.key("N");
    assert_eq!(
        rig.app.emergency.as_ref().unwrap().step,
        EmergencyStep::Details
    );
    rig.key("f2");
    rig.key("Y");
    let kinds: Vec<String> = rig
        .shared
        .store
        .emergency_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["emergency-authorised"]);
}

/// A tick can carry a note in the TUI, as with `--tick item=note`: `n` on a checklist item
/// writes how it was checked (and ticks it); the note is shown on the confirmation and
/// signed with the tick; esc while writing restores what was there.
#[test]
fn a_tick_carries_a_note_signed_with_it() {
    let mut rig = Rig::new(Some("devi"));
    rig.keys(&["enter", "a", "shift-tab"]);
    let form = rig.app.decide.as_ref().unwrap();
    assert_eq!(form.focus, tollgate::tui::app::Field::Checklist);
    let first = form.items[0].id.clone();
    rig.key("n");
    rig.type_text("half-typed");
    rig.key("esc");
    let form = rig.app.decide.as_ref().unwrap();
    assert!(
        form.items[0].note.is_empty() && !form.items[0].ticked,
        "esc cancels"
    );
    assert_eq!(
        rig.app.screen,
        Screen::Decide,
        "esc left the note, not the form"
    );
    rig.key("n");
    rig.type_text("ran the notebook on the holdout set");
    rig.key("enter");
    assert!(
        rig.app.decide.as_ref().unwrap().items[0].ticked,
        "a note ticks"
    );
    rig.keys(&["ctrl-t", "tab"]);
    rig.type_text("checked, fine");
    rig.key("ctrl-s");
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains(&format!("{first} (ran the notebook on the holdout set)")),
        "{screen}"
    );
    rig.key("y");
    let decisions = rig.shared.store.decisions("CR-1042").unwrap();
    let tick = decisions[0].ticks.iter().find(|t| t.item == first).unwrap();
    assert_eq!(
        tick.note.as_deref(),
        Some("ran the notebook on the holdout set")
    );
}

/// A lead signs the post-incident review from the exceptions screen: `r` on the selected
/// exception, root cause and follow-ups (an empty one is named), exactly what will be
/// signed, `y`; the exception is closed. Someone without a review role is told at once.
#[test]
fn a_lead_signs_the_post_incident_review_from_the_exceptions_screen() {
    let mut rig = Rig::new(Some("sofia"));
    let lena = Identity {
        signer: seeded("lena"),
        principal: rig.app.policy.principal("lena").unwrap().clone(),
        key_path: "seeded".into(),
    };
    let book = rig.shared.book();
    let request = tollgate::workflow::RollbackRequest {
        subject: "recommender".into(),
        environment: "prod".into(),
        from_version: "8".into(),
        to_version: "7".into(),
        incident: "INC-2291".into(),
        reason: "conversion -10%".into(),
    };
    tollgate::workflow::authorise_rollback(
        rig.shared.store.as_ref(),
        &book,
        &lena,
        &request,
        now(),
    )
    .unwrap();
    rig.keys(&["ctrl-r", "E"]);
    assert_eq!(rig.app.screen, Screen::Exceptions);
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("▸INC-2291"), "{screen}");
    assert!(screen.contains("r post-incident review"), "{screen}");
    rig.key("r");
    rig.type_text("canary gate did not watch conversion");
    rig.key("enter");
    let form = rig.app.exceptions_screen.review.as_ref().unwrap();
    assert!(!form.confirming);
    assert_eq!(
        form.problem.as_deref(),
        Some("the follow-ups is empty: a review needs it")
    );
    rig.type_text("add conversion to the KPI guard");
    rig.key("enter");
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains("sofia signs this review; it closes every open exception of INC-2291"),
        "{screen}"
    );
    rig.key("y");
    let kinds: Vec<String> = rig
        .shared
        .store
        .emergency_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["emergency-authorised", "post-incident-review"]);
    assert!(rig.app.exceptions_screen.review.is_none());
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("closed"), "{screen}");
    assert!(
        screen.contains("post-incident review of INC-2291 recorded by")
            && screen.contains("its exceptions are closed"),
        "{screen}"
    );

    // devi holds no review role: told at once, no form.
    let mut devi = Rig::new(Some("devi"));
    tollgate::workflow::authorise_rollback(
        devi.shared.store.as_ref(),
        &devi.shared.book(),
        &lena,
        &request,
        now(),
    )
    .unwrap();
    devi.keys(&["ctrl-r", "E", "r"]);
    assert!(devi.app.exceptions_screen.review.is_none());
    let screen = devi.screen_text(120, 40);
    assert!(
        screen.contains("does not hold a post-incident review role"),
        "{screen}"
    );
}

/// `/` finds text in a change request as in `less`: matching lines are highlighted, the
/// view jumps to the first match and `n`/`N` go round them; esc clears the find before it
/// leaves the screen. The same works in a signed record in History.
#[test]
fn find_in_a_change_request_jumps_between_matches() {
    let mut rig = Rig::new(Some("devi"));
    rig.key("enter");
    let top = rig.screen_text(80, 24);
    rig.key("/");
    rig.type_text("versions");
    rig.key("enter");
    let found = rig.screen_text(80, 24);
    assert!(found.contains("match 1 of"), "{found}");
    assert_ne!(top, found, "the view moved to the match");
    let shown = found
        .lines()
        .filter(|l| l.to_lowercase().contains("versions"))
        .count();
    assert!(shown >= 1, "the match is on screen: {found}");
    let total: usize = found
        .split("match 1 of ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    rig.key("n");
    let next = rig.screen_text(80, 24);
    let expected = if total > 1 {
        "match 2 of"
    } else {
        "match 1 of"
    };
    assert!(next.contains(expected), "{next}");
    rig.key("N");
    assert!(rig.screen_text(80, 24).contains("match 1 of"));
    rig.key("esc");
    assert_eq!(rig.app.screen, Screen::Detail, "esc cleared the find first");
    assert!(!rig.app.detail.find.active());
    rig.key("/");
    rig.type_text("no such text anywhere");
    assert!(rig.screen_text(80, 24).contains("no match"));
    rig.keys(&["esc", "esc"]);
    assert_eq!(rig.app.screen, Screen::Queue);
}

/// A large queue's first page goes on screen while the rest is read — onto an empty
/// queue only (a refresh keeps the whole queue it shows), and only for the current load.
#[test]
fn the_first_page_shows_while_the_rest_loads_but_never_replaces_a_whole_queue() {
    let mut rig = Rig::new(Some("devi"));
    let all = rig.app.queue.rows.clone();
    assert_eq!(all.len(), 5);
    rig.app.queue.set_rows(Vec::new());
    let Effect::LoadQueue(old) = rig.app.load_queue() else {
        panic!("a queue load")
    };
    let Effect::LoadQueue(current) = rig.app.load_queue() else {
        panic!("a queue load")
    };
    rig.app.update(Msg::QueueFirst(old, all[..1].to_vec()));
    assert!(
        rig.app.queue.rows.is_empty(),
        "a superseded load's page is dropped"
    );
    rig.app.update(Msg::QueueFirst(current, all[..2].to_vec()));
    assert_eq!(rig.app.queue.rows.len(), 2, "the first page is on screen");
    assert!(rig.screen_text(120, 40).contains(&all[0].id));
    rig.app.update(Msg::Queue(
        current,
        Ok(tollgate::tui::data::QueueData {
            rows: all.clone(),
            ..Default::default()
        }),
    ));
    assert_eq!(rig.app.queue.rows.len(), 5);
    // A refresh: its first page does not replace the whole queue on screen.
    let Effect::LoadQueue(refresh) = rig.app.load_queue() else {
        panic!("a queue load")
    };
    rig.app.update(Msg::QueueFirst(refresh, all[..1].to_vec()));
    assert_eq!(rig.app.queue.rows.len(), 5);
}

/// CR-2045: the demo's CR-1045 (churn-predictor, low risk) with the latency evidence it
/// lacks, so one risk-reviewer's approval approves it.
fn approvable_low_risk() -> serde_json::Value {
    let text = tollgate::demo::FIXTURES
        .iter()
        .find(|(name, _)| *name == "CR-1045.json")
        .unwrap()
        .1;
    let mut doc: serde_json::Value = serde_json::from_str(text).unwrap();
    doc["id"] = json!("CR-2045");
    doc["checks"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "latency", "status": "pass", "detail": "p99 21 ms"}));
    doc
}

/// Submits [`approvable_low_risk`] as CI (so its checks count as evidence) and has devi
/// approve it, in the rig's store.
fn approved_low_risk(rig: &Rig) {
    use tollgate::domain::decision::Verdict;
    let doc = approvable_low_risk();
    let (cr, document) = parse_document(doc.to_string().as_bytes()).unwrap();
    let submission = Submission::new(cr, document)
        .by(tollgate::store::SubmittedBy::principal("ci", seeded("ci")));
    rig.shared.store.submit(&[submission], now()).unwrap();
    sign(
        rig,
        "devi",
        "CR-2045",
        Verdict::Approve,
        "risk-reviewer",
        &["privacy", "rollback"],
    );
}

#[test]
fn an_operator_records_the_next_rollout_stage_with_r_and_sees_the_timeline() {
    let mut rig = Rig::new(Some("marco"));
    approved_low_risk(&rig);
    rig.key("ctrl-r");
    // The "Rolling out" view holds what is approved and not fully out.
    rig.key("6");
    assert_eq!(rig.app.queue.view, View::RollingOut);
    let ids: Vec<&str> = rig
        .app
        .queue
        .visible
        .iter()
        .map(|i| rig.app.queue.rows[*i].id.as_str())
        .collect();
    assert_eq!(ids, ["CR-2045"]);
    rig.key("enter");
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("R roll out"), "{screen}");
    rig.key("R");
    insta::assert_snapshot!("rollout_confirm", rig.render(120, 40).backend());
    // 10 % by default; up once is 15 %; y records it, running the demo's deploy command.
    rig.keys(&["up", "y"]);
    let after = tollgate::workflow::rollout::rollouts(rig.shared.store.as_ref()).unwrap();
    let r = after.of("CR-2045").expect("a rollout");
    assert_eq!(r.stages.len(), 1);
    assert_eq!(r.stages[0].stage, tollgate::domain::rollout::Stage::Canary);
    assert_eq!(r.stages[0].traffic, 15);
    assert_eq!(r.stages[0].principal, "marco");
    assert_eq!(r.stages[0].deploy.as_ref().unwrap().exit_status, Some(0));
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains("CR-2045 canary recorded by marco"),
        "{screen}"
    );
    insta::assert_snapshot!("detail_in_canary", rig.render(120, 40).backend());
    // Full is refused inside the observation window, with the time it opens.
    rig.keys(&["R", "y"]);
    let screen = rig.screen_text(120, 40);
    assert!(screen.contains("[observation-window]"), "{screen}");
    assert_eq!(
        tollgate::workflow::rollout::rollouts(rig.shared.store.as_ref())
            .unwrap()
            .of("CR-2045")
            .unwrap()
            .stages
            .len(),
        1
    );
}

#[test]
fn r_is_refused_at_once_for_someone_who_is_not_an_operator() {
    let mut rig = Rig::new(Some("devi"));
    approved_low_risk(&rig);
    rig.keys(&["ctrl-r", "6", "enter", "R"]);
    assert!(rig.app.detail.stage.is_none());
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains("devi does not hold the operator role"),
        "{screen}"
    );
}

#[test]
fn a_sparkline_spans_the_readings_between_their_extremes() {
    assert_eq!(views::detail::sparkline(&[1.0, 2.0, 3.0]), "▁▅█");
    assert_eq!(views::detail::sparkline(&[0.95, 0.95]), "▄▄");
    assert_eq!(views::detail::sparkline(&[]), "");
}

#[test]
fn a_change_that_newly_needs_me_is_announced_on_the_status_line() {
    let mut rig = Rig::new(Some("devi"));
    // At the first load nothing is announced: the queue itself shows what waits.
    assert!(rig.app.message.is_none());
    // CI submits a change needing a risk-reviewer; the next load (the 5 s check or a
    // refresh) says so once.
    let doc = approvable_low_risk();
    let (cr, document) = parse_document(doc.to_string().as_bytes()).unwrap();
    rig.shared
        .store
        .submit(
            &[Submission::new(cr, document)
                .by(tollgate::store::SubmittedBy::principal("ci", seeded("ci")))],
            now(),
        )
        .unwrap();
    rig.key("ctrl-r");
    let screen = rig.screen_text(120, 40);
    assert!(
        screen.contains("CR-2045 waiting for you (risk-reviewer)"),
        "{screen}"
    );
    // Loaded again: nothing new, nothing said.
    rig.app.message = None;
    rig.key("ctrl-r");
    assert!(rig.app.message.is_none(), "{:?}", rig.app.message);
}
