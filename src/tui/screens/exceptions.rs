//! The exceptions screen (`E`): open emergency exceptions with their deadlines. It holds no
//! state of its own (the exceptions come with the queue); it says which keys work.

use crate::tui::keymap::Action;

/// The keys worth a hint here.
pub fn hints() -> Vec<(Action, &'static str)> {
    vec![
        (Action::Back, "back"),
        (Action::Emergency, "emergency"),
        (Action::Help, "help"),
    ]
}
