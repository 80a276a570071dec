//! On a real terminal (tmux), a decision without --rationale opens $EDITOR, and what the
//! reviewer writes there is what gets signed.

mod common;

use common::Home;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `cmd` in a detached tmux session and returns the screen once it printed `EXIT=`.
fn run_in_tmux(name: &str, cmd: &str) -> String {
    let status = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "120",
            "-y",
            "40",
            cmd,
        ])
        .status()
        .expect("tmux is installed (scripts/test installs it)");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("tmux")
            .args(["capture-pane", "-t", name, "-p"])
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout).into_owned();
        if screen.contains("EXIT=") {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", name])
                .status();
            return screen;
        }
        if Instant::now() > deadline {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", name])
                .status();
            panic!("command did not finish; screen:\n{screen}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn editor(home: &Home, name: &str, text: &str) -> String {
    home.script(name, &format!("printf '{text}' >> \"$1\""))
        .to_string_lossy()
        .into_owned()
}

#[test]
fn without_a_rationale_flag_the_editor_opens_and_its_text_is_signed() {
    let home = Home::demo();
    let ed = editor(
        &home,
        "ed.sh",
        "p99 97 ms breaks the 90 ms SLO.\\n# not part of it\\n",
    );
    let cmd = format!(
        "env TOLLGATE_HOME={} EDITOR={ed} {} --as marco reject CR-1046; echo EXIT=$?; sleep 60",
        home.dir.path().display(),
        env!("CARGO_BIN_EXE_tollgate")
    );
    let screen = run_in_tmux(&format!("tg-editor-{}", std::process::id()), &cmd);
    assert!(screen.contains("EXIT=0"), "{screen}");
    let shown = home.run(&["show", "CR-1046", "--json"]).ok().json();
    assert_eq!(
        shown["decisions"][0]["rationale"],
        "p99 97 ms breaks the 90 ms SLO."
    );
    home.verified_entries();
}

#[test]
fn an_empty_edit_signs_nothing() {
    let home = Home::demo();
    let ed = editor(&home, "noop.sh", "");
    let cmd = format!(
        "env TOLLGATE_HOME={} EDITOR={ed} {} --as marco reject CR-1046; echo EXIT=$?; sleep 60",
        home.dir.path().display(),
        env!("CARGO_BIN_EXE_tollgate")
    );
    let screen = run_in_tmux(&format!("tg-noedit-{}", std::process::id()), &cmd);
    assert!(screen.contains("EXIT=1"), "{screen}");
    assert!(screen.contains("rationale-required"), "{screen}");
    assert_eq!(
        home.verified_entries(),
        1 + 5,
        "the genesis and the submissions only"
    );
}
