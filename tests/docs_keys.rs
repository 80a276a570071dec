//! The key reference in docs/tui.md is the keymap's own text: a binding changed in code
//! and not in the document (or the other way round) fails here.

use std::path::Path;
use tollgate::tui::keymap::Keymap;

const BEGIN: &str = "<!-- keys:begin (generated from src/tui/keymap.rs) -->\n";
const END: &str = "<!-- keys:end -->";

#[test]
fn docs_key_reference_is_the_keymap() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tui.md");
    let doc = std::fs::read_to_string(&path).expect("docs/tui.md is readable");
    let (Some(start), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/tui.md has no key reference between {BEGIN:?} and {END:?}");
    };
    let written = &doc[start + BEGIN.len()..end];
    let generated = Keymap::reference();
    if written != generated {
        if std::env::var_os("TOLLGATE_UPDATE_DOCS").is_some() {
            let updated = format!("{}{generated}{}", &doc[..start + BEGIN.len()], &doc[end..]);
            std::fs::write(&path, updated).expect("docs/tui.md is writable");
            return;
        }
        let first = written
            .lines()
            .zip(generated.lines())
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("docs says   {a}\nkeymap says {b}"))
            .unwrap_or_else(|| "one is longer than the other".into());
        panic!(
            "docs/tui.md's key reference differs from the keymap:\n{first}\n\
             regenerate it with: TOLLGATE_UPDATE_DOCS=1 cargo test --test docs_keys"
        );
    }
}
