//! Line editing, the same in every one-line text field (the `/` filters, the `:` palette,
//! the `?` search, the emergency details): printable characters are text; backspace,
//! delete-word and clear come from the keymap's `Prompt` bindings, like every other key.
//! Control keys never insert their letter.

use crate::tui::keymap::{Action, Context, Input, Keymap};
use crossterm::event::KeyEvent;

/// What a key did in a text field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typed {
    /// The text changed.
    Changed,
    /// Nothing happened (an unbound key, a full field, nothing to delete).
    Unchanged,
    /// A bound action that is not editing: the field's owner decides what it means.
    Action(Action),
}

/// Applies `k` to `text` (at most `max` characters). Keys that are not text are looked
/// up in the `Prompt` bindings first, then in `contexts`.
pub fn type_key(
    text: &mut String,
    k: &KeyEvent,
    keymap: &Keymap,
    contexts: &[Context],
    max: usize,
) -> Typed {
    let mut all = Vec::with_capacity(contexts.len() + 1);
    all.push(Context::Prompt);
    all.extend_from_slice(contexts);
    let changed = match keymap.input(k, &all) {
        Input::Char(c) if text.chars().count() < max => {
            text.push(c);
            true
        }
        Input::Char(_) | Input::Unbound => false,
        Input::Action(Action::DeleteChar) => text.pop().is_some(),
        Input::Action(Action::DeleteWord) => delete_word(text),
        Input::Action(Action::ClearLine) => {
            let changed = !text.is_empty();
            text.clear();
            changed
        }
        Input::Action(action) => return Typed::Action(action),
    };
    if changed {
        Typed::Changed
    } else {
        Typed::Unchanged
    }
}

/// What a key did to a list's `/` filter line (the queue's, History's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKey {
    /// The query changed: filter again.
    Changed,
    /// Cleared and closed (back): filter again over everything.
    Cleared,
    /// Kept and closed (accept).
    Kept,
    /// Move the list's cursor by this much.
    Move(isize),
    /// Nothing to do.
    Nothing,
}

/// A key while a list's filter line has focus: typing edits it, accept keeps it, back
/// clears it, movement keys move the list (`page` rows to a page). `filtering` is set
/// false when the line closes.
pub fn filter_key(
    filter: &mut String,
    filtering: &mut bool,
    k: &KeyEvent,
    keymap: &Keymap,
    page: usize,
) -> FilterKey {
    match type_key(filter, k, keymap, &[Context::Global], 200) {
        Typed::Changed => FilterKey::Changed,
        Typed::Unchanged => FilterKey::Nothing,
        Typed::Action(Action::Back) => {
            *filtering = false;
            filter.clear();
            FilterKey::Cleared
        }
        Typed::Action(Action::Accept) => {
            *filtering = false;
            FilterKey::Kept
        }
        Typed::Action(action) => {
            super::cursor::movement(action, page).map_or(FilterKey::Nothing, FilterKey::Move)
        }
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
    use crate::tui::keymap::{Key, Preset};
    use crossterm::event::{KeyCode, KeyModifiers};

    fn typed(t: &mut String, keymap: &Keymap, key: &str, max: usize) -> Typed {
        let k = Key::parse(key).unwrap();
        type_key(
            t,
            &KeyEvent::new(k.code, k.mods),
            keymap,
            &[Context::Global],
            max,
        )
    }

    #[test]
    fn control_keys_edit_and_never_insert_their_letter() {
        let km = Keymap::preset(Preset::Default);
        let mut t = String::from("risk:high fraud");
        assert_eq!(typed(&mut t, &km, "ctrl-w", 100), Typed::Changed);
        assert_eq!(t, "risk:high ");
        assert_eq!(typed(&mut t, &km, "alt-backspace", 100), Typed::Changed);
        assert_eq!(t, "");
        t.push_str("abc");
        assert_eq!(typed(&mut t, &km, "ctrl-u", 100), Typed::Changed);
        assert_eq!(t, "");
        assert_eq!(typed(&mut t, &km, "ctrl-x", 100), Typed::Unchanged);
        assert_eq!(t, "", "ctrl-x inserts nothing");
        assert_eq!(typed(&mut t, &km, "é", 2), Typed::Changed);
        let shift_z = KeyEvent::new(KeyCode::Char('Z'), KeyModifiers::SHIFT);
        assert_eq!(
            type_key(&mut t, &shift_z, &km, &[], 2),
            Typed::Changed,
            "shift is part of the character"
        );
        assert_eq!(typed(&mut t, &km, "z", 2), Typed::Unchanged, "max");
        assert_eq!(t, "éZ");
        assert_eq!(typed(&mut t, &km, "backspace", 2), Typed::Changed);
        assert_eq!(t, "é");
    }

    #[test]
    fn letters_are_text_and_other_keys_are_actions() {
        // `j` and `q` are bound (down, quit) but in a text field they are letters; the
        // vim preset's ctrl-u (page up) is still "clear" in a field.
        let km = Keymap::preset(Preset::Vim);
        let mut t = String::new();
        assert_eq!(typed(&mut t, &km, "j", 10), Typed::Changed);
        assert_eq!(typed(&mut t, &km, "q", 10), Typed::Changed);
        assert_eq!(t, "jq");
        assert_eq!(typed(&mut t, &km, "down", 10), Typed::Action(Action::Down));
        assert_eq!(
            typed(&mut t, &km, "enter", 10),
            Typed::Action(Action::Accept)
        );
        assert_eq!(typed(&mut t, &km, "esc", 10), Typed::Action(Action::Back));
        assert_eq!(typed(&mut t, &km, "ctrl-u", 10), Typed::Changed);
        assert_eq!(t, "");
    }

    #[test]
    fn rebinding_clear_changes_the_field_key() {
        let mut km = Keymap::preset(Preset::Default);
        km.rebind(Action::ClearLine, vec![Key::parse("ctrl-k").unwrap()]);
        let mut t = String::from("abc");
        assert_eq!(typed(&mut t, &km, "ctrl-u", 10), Typed::Unchanged);
        assert_eq!(typed(&mut t, &km, "ctrl-k", 10), Typed::Changed);
        assert_eq!(t, "");
    }
}
