//! Line editing, the same in every one-line text field (the `/` filters, the `:` palette,
//! the `?` search, the emergency details): characters, backspace, ctrl-u clears, ctrl-w
//! deletes the last word. Control keys never insert their letter.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Applies `k` to `text` (at most `max` characters); true when the text changed.
pub fn edit(text: &mut String, k: &KeyEvent, max: usize) -> bool {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    match k.code {
        KeyCode::Backspace if ctrl || k.modifiers.contains(KeyModifiers::ALT) => delete_word(text),
        KeyCode::Backspace => text.pop().is_some(),
        KeyCode::Char('u') if ctrl => {
            let changed = !text.is_empty();
            text.clear();
            changed
        }
        KeyCode::Char('w') | KeyCode::Char('h') if ctrl => {
            if k.code == KeyCode::Char('h') {
                text.pop().is_some()
            } else {
                delete_word(text)
            }
        }
        KeyCode::Char(c) if !ctrl && !c.is_control() && text.chars().count() < max => {
            text.push(c);
            true
        }
        _ => false,
    }
}

/// Removes the last word and the spaces after it.
fn delete_word(text: &mut String) -> bool {
    let before = text.len();
    let trimmed = text.trim_end().len();
    text.truncate(trimmed);
    let cut = text
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(i, c)| i + c.len_utf8());
    text.truncate(cut);
    text.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn control_keys_edit_and_never_insert_their_letter() {
        let mut t = String::from("risk:high fraud");
        assert!(edit(
            &mut t,
            &key(KeyCode::Char('w'), KeyModifiers::CONTROL),
            100
        ));
        assert_eq!(t, "risk:high ");
        assert!(edit(
            &mut t,
            &key(KeyCode::Char('w'), KeyModifiers::CONTROL),
            100
        ));
        assert_eq!(t, "");
        t.push_str("abc");
        assert!(edit(
            &mut t,
            &key(KeyCode::Char('u'), KeyModifiers::CONTROL),
            100
        ));
        assert_eq!(t, "");
        assert!(!edit(
            &mut t,
            &key(KeyCode::Char('x'), KeyModifiers::CONTROL),
            100
        ));
        assert_eq!(t, "", "ctrl-x inserts nothing");
        assert!(edit(
            &mut t,
            &key(KeyCode::Char('é'), KeyModifiers::NONE),
            2
        ));
        assert!(edit(
            &mut t,
            &key(KeyCode::Char('Z'), KeyModifiers::SHIFT),
            2
        ));
        assert!(
            !edit(&mut t, &key(KeyCode::Char('z'), KeyModifiers::NONE), 2),
            "max"
        );
        assert_eq!(t, "éZ");
        assert!(edit(
            &mut t,
            &key(KeyCode::Backspace, KeyModifiers::NONE),
            2
        ));
        assert_eq!(t, "é");
    }
}
