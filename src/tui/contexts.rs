//! Which keymap contexts apply on the screen that is up: what a key means there, what `?`
//! lists first and what the `:` palette offers.

use super::app::{App, EmergencyForm};
use super::keymap::Context;
use super::screens::Screen;

impl App {
    /// The keymap contexts in force on the screen that is up, most specific first.
    pub fn contexts(&self) -> Vec<Context> {
        match self.screen {
            Screen::Queue if self.queue.filtering => vec![Context::Prompt, Context::Global],
            Screen::Queue => vec![
                Context::Queue,
                Context::List,
                Context::Decision,
                Context::Global,
            ],
            Screen::Detail if self.detail.stage.is_some() => {
                vec![Context::Confirm, Context::Global]
            }
            Screen::Detail | Screen::History if self.typing_find() => {
                vec![Context::Prompt, Context::Global]
            }
            Screen::Detail => vec![
                Context::Detail,
                Context::Find,
                Context::Decision,
                Context::Global,
            ],
            Screen::Decide => vec![Context::Decide, Context::Form, Context::Global],
            Screen::Confirm => vec![Context::Confirm, Context::Global],
            Screen::Emergency => self
                .emergency
                .as_ref()
                .map_or(vec![Context::Global], EmergencyForm::contexts),
            Screen::Exceptions => self.exceptions_screen.contexts(),
            Screen::History if self.history.as_ref().is_some_and(|h| h.filtering) => {
                vec![Context::Prompt, Context::Global]
            }
            Screen::History if self.history.as_ref().is_some_and(|h| h.record.is_some()) => vec![
                Context::History,
                Context::Find,
                Context::List,
                Context::Global,
            ],
            Screen::History => vec![Context::History, Context::List, Context::Global],
        }
    }

    /// Whether a find query is being typed (detail, or History's record).
    pub(super) fn typing_find(&self) -> bool {
        match self.screen {
            Screen::Detail => self.detail.find.editing,
            Screen::History => self.history.as_ref().is_some_and(|h| h.find.editing),
            _ => false,
        }
    }
}
