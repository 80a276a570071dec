//! End to end on a real terminal: the real binary in tmux, driven with keystrokes the way a
//! reviewer would, then checked with `tollgate verify` and `tollgate show --json`.

mod common;

use common::Home;
use common::tmux::Session;

#[test]
fn a_reviewer_filters_opens_and_approves_at_the_keyboard() {
    let home = Home::new();
    let s = Session::tollgate(&home, &[], "demo");
    s.wait_for("CR-1046");
    s.wait_for(" devi ");
    s.keys(&["/"]);
    s.literal("fraud");
    let screen = s.wait_for("1 of 5 match");
    assert!(!screen.contains("CR-1043"), "filtered out:\n{screen}");
    s.keys(&["Enter", "Enter"]);
    s.wait_for("Sign-offs 0/4");
    s.keys(&["a"]);
    s.wait_for("Decide on CR-1042");
    s.literal("Shifts explained by the new velocity features; fairness gap within 3pp.");
    s.keys(&["Tab", "Tab", "Tab", "Space", "Down", "Space", "C-s"]);
    s.wait_until("the confirmation listing the ticks", |t| {
        t.contains("Sign this decision?") && t.contains("privacy, rollback")
    });
    s.keys(&["y"]);
    s.wait_for("signed: approve CR-1042 as risk-reviewer");
    s.wait_for("Sign-offs 1/4");
    s.keys(&["q", "q"]);
    let end = s.wait_for("EXIT=");
    assert!(end.contains("EXIT=0"), "{end}");
    // The terminal was restored: the shell's output is on the normal screen.
    assert!(
        !end.contains("Sign-offs"),
        "alternate screen left behind:\n{end}"
    );

    assert_eq!(home.verified_entries(), common::DEMO_ENTRIES + 1);
    let shown = home.run(&["show", "CR-1042", "--json"]).ok().json();
    let d = &shown["decisions"][0];
    assert_eq!(d["principal"], "devi");
    assert_eq!(d["role"], "risk-reviewer");
    assert_eq!(d["verdict"], "approve");
    assert_eq!(
        d["rationale"],
        "Shifts explained by the new velocity features; fairness gap within 3pp."
    );
    assert_eq!(shown["signoffs"]["obtained"], 1);
}

#[test]
fn a_clean_change_request_is_approved_from_the_queue_in_four_keys_plus_the_rationale() {
    let home = Home::demo();
    let s = Session::tollgate(&home, &[], "--as devi");
    s.wait_for("CR-1042");
    let rationale = "Shifts explained by the new features.";
    // The README's count: these four keys, plus typing the rationale.
    let keys = ["a", "C-t", "C-s", "y"];
    s.keys(&keys[..1]);
    s.wait_for("Decide on CR-1042");
    s.literal(rationale);
    s.keys(&keys[1..3]);
    // The whole confirmation, not a frame caught half drawn.
    s.wait_until("the confirmation listing every tick", |t| {
        t.contains("Sign this decision?") && t.contains("privacy, rollback, owner")
    });
    s.keys(&keys[3..]);
    s.wait_for("signed: approve CR-1042 as risk-reviewer");
    assert_eq!(keys.len(), 4);
    let shown = home.run(&["show", "CR-1042", "--json"]).ok().json();
    assert_eq!(shown["decisions"][0]["rationale"], rationale);
    assert_eq!(
        shown["decisions"][0]["ticks"].as_array().map(Vec::len),
        Some(3)
    );
}

#[test]
fn ctrl_c_restores_the_terminal() {
    let home = Home::new();
    home.run(&["demo"]).ok();
    let s = Session::tollgate(&home, &[], "--as kai");
    s.wait_for("CR-1042");
    s.keys(&["C-c"]);
    let end = s.wait_for("EXIT=");
    assert!(end.contains("EXIT=0"), "{end}");
    assert!(!end.contains("Pending"), "{end}");
}

/// The TUI (with mouse reporting on) in a shell that, once it ends, prints its exit
/// status and the terminal's settings: what the user's prompt would find.
fn tui_in_a_shell(home: &Home, env: &[(&str, &str)]) -> (Session, i32) {
    std::fs::write(home.path("config.toml"), "mouse = true\n").unwrap();
    let pidfile = home.path("tui.pid");
    let _ = std::fs::remove_file(&pidfile); // a previous session's
    let inner = format!(
        "echo $$ > {}; exec {} --as devi",
        common::tmux::quote(&pidfile.display().to_string()),
        common::tmux::quote(env!("CARGO_BIN_EXE_tollgate"))
    );
    let line = format!(
        "sh -c {}; echo EXIT=$?; stty -a; sleep 600",
        common::tmux::quote(&inner)
    );
    let s = Session::shell(home, env, &line, (120, 40));
    let pid = common::tmux::wait_for_pid(&pidfile);
    s.wait_for("CR-1042");
    assert_eq!(
        s.pane_format("#{alternate_on}"),
        "1",
        "the TUI uses the alternate screen"
    );
    assert_eq!(
        s.pane_format("#{mouse_any_flag}"),
        "1",
        "mouse reporting is on"
    );
    (s, pid)
}

/// The shell's view after the TUI ended: normal screen, cursor shown, no mouse reporting,
/// echo and line editing back on.
fn assert_terminal_restored(s: &Session, how: &str) {
    let end = s.wait_until("the shell after the TUI", |t| {
        t.contains("EXIT=") && t.contains("icanon")
    });
    assert_eq!(
        s.pane_format("#{alternate_on}"),
        "0",
        "{how}: still on the alternate screen\n{end}"
    );
    assert_eq!(
        s.pane_format("#{cursor_flag}"),
        "1",
        "{how}: cursor left hidden"
    );
    for flag in [
        "mouse_any_flag",
        "mouse_button_flag",
        "mouse_standard_flag",
        "mouse_sgr_flag",
    ] {
        assert_eq!(
            s.pane_format(&format!("#{{{flag}}}")),
            "0",
            "{how}: {flag} left on"
        );
    }
    let modes: Vec<&str> = end.split_whitespace().collect();
    for mode in ["echo", "icanon", "icrnl", "opost"] {
        assert!(
            modes.contains(&mode),
            "{how}: terminal left without {mode}:\n{end}"
        );
    }
    assert!(
        !end.contains("Pending"),
        "{how}: the queue is still on screen:\n{end}"
    );
}

#[test]
fn the_terminal_is_restored_after_sigterm_and_sighup() {
    let home = Home::demo();
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")] {
        let (s, pid) = tui_in_a_shell(&home, &[]);
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "{name} sent");
        assert_terminal_restored(&s, name);
        // The status of a process ended by that signal (143, 129), not success.
        let end = s.screen();
        assert!(
            end.contains(&format!("EXIT={}", 128 + signal)),
            "{name}:\n{end}"
        );
    }
}

#[test]
fn the_terminal_is_restored_after_a_panic() {
    let home = Home::demo();
    let (s, _) = tui_in_a_shell(&home, &[("TOLLGATE_DEBUG_PANIC", "1")]);
    s.keys(&["F12"]);
    assert_terminal_restored(&s, "a panic");
    let end = s.screen();
    assert!(end.contains("EXIT=101"), "{end}");
    assert!(
        end.contains("TOLLGATE_DEBUG_PANIC is set"),
        "the panic message is readable:\n{end}"
    );
}

#[test]
fn the_rationale_can_be_written_in_the_editor_from_the_form() {
    let home = Home::new();
    let editor = home.script(
        "ed.sh",
        "printf 'Written in the editor: p99 over SLO.\\n' > \"$1\"",
    );
    home.run(&["demo"]).ok();
    let s = Session::tollgate(&home, &[("EDITOR", editor.to_str().unwrap())], "--as marco");
    s.wait_for("CR-1046");
    s.keys(&["5", "G", "Enter"]);
    s.wait_for("Sign-offs 0/3"); // the detail screen, not the queue row
    s.keys(&["x"]);
    s.wait_for("Decide on CR-1046");
    s.keys(&["C-e"]);
    s.wait_for("Written in the editor: p99 over SLO.");
    s.keys(&["C-s"]);
    s.wait_for("Sign this decision?");
    s.keys(&["y"]);
    s.wait_for("signed: reject CR-1046");
    let shown = home.run(&["show", "CR-1046", "--json"]).ok().json();
    assert_eq!(
        shown["decisions"][0]["rationale"],
        "Written in the editor: p99 over SLO."
    );
    assert_eq!(shown["status"], "rejected");
}

#[test]
fn a_broken_config_is_reported_with_file_and_key_before_the_screen_opens() {
    let home = Home::new();
    home.run(&["demo"]).ok();
    std::fs::write(
        home.path("config.toml"),
        "theme = \"solarised\"\nkeys = \"emacs\"\n",
    )
    .unwrap();
    let s = Session::tollgate(&home, &[], "--as devi");
    let end = s.wait_for("EXIT=");
    assert!(end.contains("EXIT=1"), "{end}");
    assert!(
        end.contains("config.toml: keys: expected one of default, vim"),
        "{end}"
    );
    assert!(
        end.contains("config.toml: theme: unknown theme \"solarised\""),
        "{end}"
    );
}

#[test]
fn a_broken_theme_file_is_named_with_its_file_and_key() {
    let home = Home::demo();
    let theme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("themes/dark.toml"),
    )
    .unwrap()
    .replace("risk_high = \"#e06c75\"", "risk_high = \"blood\"")
    .replace(
        "pass = \"#a3be8c\"",
        "pass = \"#a3be8c\"\nsparkle = \"red\"",
    );
    std::fs::write(home.path("mine.toml"), theme).unwrap();
    std::fs::write(home.path("config.toml"), "theme = \"mine.toml\"\n").unwrap();
    let s = Session::tollgate(&home, &[], "--as devi");
    let end = s.wait_for("EXIT=");
    assert!(end.contains("EXIT=1"), "{end}");
    let theme_file = home.path("mine.toml").display().to_string();
    // The screen wraps long lines at 120 columns: compare without the line breaks.
    let flat: String = end.lines().map(str::trim_end).collect();
    for want in [
        format!("{theme_file}: colors.risk_high: expected a colour"),
        "found \"blood\"".to_string(),
        format!("{theme_file}: colors.sparkle"),
        "config.toml: theme".to_string(),
    ] {
        assert!(flat.contains(&want), "{want:?} missing:\n{end}");
    }
}

/// Every SGR colour parameter (foreground 30–37, 38;…, 90–97; background 40–47, 48;…,
/// 100–107) in a `capture-pane -e` dump.
fn colour_codes(dump: &str) -> Vec<String> {
    let mut found = Vec::new();
    for seq in dump.split("\u{1b}[").skip(1) {
        let Some(end) = seq.find('m') else { continue };
        let params: Vec<&str> = seq[..end].split(';').collect();
        for p in &params {
            if let Ok(n) = p.parse::<u16>()
                && matches!(n, 30..=38 | 40..=48 | 90..=97 | 100..=107)
            {
                found.push(seq[..end].to_string());
                break;
            }
        }
    }
    found
}

#[test]
fn no_color_in_the_environment_turns_colour_off() {
    let home = Home::demo();
    let coloured = Session::tollgate(&home, &[], "--as devi");
    coloured.wait_for("CR-1046");
    assert!(
        !colour_codes(&coloured.screen_with_attributes()).is_empty(),
        "without NO_COLOR the queue is drawn in colour"
    );
    let plain = Session::tollgate(&home, &[("NO_COLOR", "1")], "--as devi");
    plain.wait_for("CR-1046");
    let dump = plain.screen_with_attributes();
    let codes = colour_codes(&dump);
    assert!(
        codes.is_empty(),
        "NO_COLOR=1 yet colours {codes:?} were drawn"
    );
    // Still readable: the selection is shown by reverse video, not colour.
    assert!(
        dump.contains("\u{1b}[7m") || dump.contains(";7m"),
        "{dump:?}"
    );
}

#[test]
fn on_call_rolls_back_from_the_keyboard_in_seconds() {
    use common::on_call::{INCIDENT, REASON};
    let home = common::on_call::home_with_rollback_script();
    let s = Session::tollgate(&home, &[], "--as lena");
    // `cargo bench --bench emergency` times this same path and counts its keystrokes.
    let run = common::on_call::roll_back(&s);
    assert!(
        run.screen.contains("│ helm rollback recommender to 7"),
        "{}",
        run.screen
    );
    assert_eq!(
        (run.keystrokes, run.typed),
        (44, 39),
        "the path the docs describe"
    );
    s.keys(&["Enter", "q"]);
    s.wait_for("EXIT=0");
    let ex: serde_json::Value =
        serde_json::from_str(&home.run(&["exceptions", "--json"]).ok().stdout).unwrap();
    assert_eq!(ex[0]["incident"], INCIDENT);
    assert_eq!(ex[0]["reason"], REASON);
    assert_eq!(ex[0]["rollbacks"][0]["outcome"]["exit_status"], 0);
    assert_eq!(
        home.verified_entries(),
        common::DEMO_ENTRIES + common::POLICY_CHANGE_ENTRIES + 2
    );
}

#[test]
fn on_a_team_server_the_tui_shows_others_work_and_delivers_an_offline_decision_once() {
    let server_home = Home::demo();
    let devi = server_home.token("devi");
    let server = server_home.serve("127.0.0.1:0");
    let (url, listen) = (server.url.clone(), server.listen());
    let key = server_home.path("tollgate.demo-keys/devi");
    // The reviewer's own machine: no store of its own, only the server.
    let laptop = Home::new();
    let s = Session::tollgate(
        &laptop,
        &[("TOLLGATE_REMOTE", &url), ("TOLLGATE_TOKEN", &devi)],
        &format!("--key {}", key.display()),
    );
    s.wait_for("CR-1046");
    s.wait_for("│ remote");
    s.keys(&["5"]);
    s.wait_for("All 5");

    // Someone else's decision reaches the screen without a keypress (the live stream).
    laptop
        .remote(
            &url,
            &devi,
            &[
                "--key",
                &key.display().to_string(),
                "request-changes",
                "CR-1044",
                "--role",
                "risk-reviewer",
                "--rationale",
                "per-language FPR report missing",
            ],
        )
        .ok();
    s.wait_for("changes req.");

    // Open CR-1042, then lose the server.
    s.keys(&["/"]);
    s.literal("fraud");
    s.wait_for("1 of 5 match");
    s.keys(&["Enter", "Enter"]);
    s.wait_for("Sign-offs 0/4");
    drop(server);
    s.wait_for("offline");

    // Decide anyway: the decision is kept and shown as unsent.
    s.keys(&["a"]);
    s.wait_for("Decide on CR-1042");
    s.literal("Reviewed on the train; fairness gap within 3pp.");
    s.keys(&["Tab", "Tab", "Tab", "Space", "Down", "Space", "C-s"]);
    s.wait_for("Sign this decision?");
    s.keys(&["y"]);
    s.wait_for("1 UNSENT");
    // Queued through the same path as the CLI's: the item names the server it is for.
    let queued = queued_items(laptop.dir.path());
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0]["server"], url.as_str(), "{}", queued[0]);
    assert_eq!(queued[0]["cr_id"], "CR-1042", "{}", queued[0]);

    // The server comes back: the outbox drains by itself and the decision lands once.
    let _server = server_home.serve(&listen);
    s.wait_until("the unsent decision delivered", |screen| {
        screen.contains("delivered 1 unsent decision") && !screen.contains("1 UNSENT")
    });
    s.wait_for("Sign-offs 1/4");
    s.keys(&["q", "q"]);
    s.wait_for("EXIT=0");

    assert_eq!(server_home.verified_entries(), common::DEMO_ENTRIES + 2);
    let shown = server_home.run(&["show", "CR-1042", "--json"]).ok().json();
    let decisions = shown["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 1, "{shown}");
    assert_eq!(decisions[0]["principal"], "devi");
    assert_eq!(
        decisions[0]["rationale"],
        "Reviewed on the train; fairness gap within 3pp."
    );
}

/// The outbox items (JSON files naming a server) under `dir`, failed ones excluded.
fn queued_items(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "failed") {
            found.extend(queued_items(&path));
        } else if path.extension().is_some_and(|e| e == "json")
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(
                &std::fs::read(&path).unwrap_or_default(),
            )
            && v.get("server").is_some()
        {
            found.push(v);
        }
    }
    found
}

#[test]
fn an_operator_rolls_an_approved_change_out_with_r_and_the_log_holds_it() {
    // A Wednesday morning: no freeze window of the demo policy holds.
    const T0: &str = "2026-11-25T10:00:00Z";
    let home = Home::demo_at(T0);
    home.approved_low_risk("CR-2045");
    let s = Session::tollgate(&home, &[("TOLLGATE_NOW", T0)], "--as marco");
    s.wait_for("CR-1046");
    s.keys(&["6"]);
    s.wait_for("6 Rolling out 1");
    s.keys(&["Enter"]);
    s.wait_for("not rolled out yet");
    s.keys(&["R"]);
    s.wait_for("Record canary of CR-2045 at 10% of traffic, as marco");
    s.keys(&["Up", "y"]);
    s.wait_for("CR-2045 canary recorded by marco");
    s.wait_for("full opens 11-25 11:00 (in 1h 00m)");
    s.keys(&["Escape"]);
    s.wait_for("canary 15%");
    s.keys(&["q"]);
    let end = s.wait_for("EXIT=");
    assert!(end.contains("EXIT=0"), "{end}");
    let listed = home.run(&["rollouts", "--json"]).ok().json();
    assert_eq!(listed[0]["cr_id"], "CR-2045");
    assert_eq!(listed[0]["state"], "canary 15%");
    home.verified_entries();
}
