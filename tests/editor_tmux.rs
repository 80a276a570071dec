//! On a real terminal (tmux), a decision without --rationale opens $EDITOR, and what the
//! reviewer writes there is what gets signed.

mod common;

use common::Home;
use common::tmux::Session;

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
    let session = Session::tollgate(&home, &[("EDITOR", &ed)], "--as marco reject CR-1046");
    let screen = session.wait_for("EXIT=");
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
    let session = Session::tollgate(&home, &[("EDITOR", &ed)], "--as marco reject CR-1046");
    let screen = session.wait_for("EXIT=");
    assert!(screen.contains("EXIT=1"), "{screen}");
    assert!(screen.contains("rationale-required"), "{screen}");
    assert_eq!(
        home.verified_entries(),
        1 + 5,
        "the genesis and the submissions only"
    );
}
