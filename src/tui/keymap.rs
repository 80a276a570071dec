//! Actions and the keys bound to them: one table that drives key handling, the hint bar,
//! the `?` help and the `:` palette, so they can never disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::fmt;

/// Where an action applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// Everywhere.
    Global,
    /// The lists with a cursor, filter and sort: the queue and History.
    List,
    /// The queue table.
    Queue,
    /// The History screen (decision history and governance health).
    History,
    /// The exceptions screen (`E`).
    Exceptions,
    /// Finding text in a change request or a signed record.
    Find,
    /// The CR detail screen.
    Detail,
    /// Deciding on a CR: from the queue (the selected one) or its detail screen.
    Decision,
    /// The forms with fields: the decision form and the emergency details.
    Form,
    /// The decision form.
    Decide,
    /// The final confirmation before signing (a decision or an emergency authorisation).
    Confirm,
    /// One-line text fields and pickers: the `/` filters, the `?` search, the `:`
    /// palette, the emergency subject list and details. Printable characters are text
    /// there; these are the other keys.
    Prompt,
}

impl Context {
    /// Every context, in help order.
    pub const ALL: &'static [Context] = &[
        Context::Global,
        Context::List,
        Context::Queue,
        Context::Detail,
        Context::Decision,
        Context::Form,
        Context::Decide,
        Context::Confirm,
        Context::History,
        Context::Exceptions,
        Context::Find,
        Context::Prompt,
    ];

    /// Heading in the help overlay and the key reference.
    pub fn title(self) -> &'static str {
        match self {
            Context::Global => "Everywhere",
            Context::List => "Lists (queue and History)",
            Context::Queue => "Queue",
            Context::History => "History and governance health (H)",
            Context::Exceptions => "Emergency exceptions (E)",
            Context::Find => "Finding text (change request, signed record)",
            Context::Detail => "Change request",
            Context::Decision => "Deciding (queue and change request)",
            Context::Form => "Forms (decision, emergency rollback)",
            Context::Decide => "Decision form",
            Context::Confirm => "Confirm and sign (decision, emergency rollback)",
            Context::Prompt => {
                "Text fields and pickers (filters, search, palette, emergency rollback)"
            }
        }
    }
}

macro_rules! actions {
    ($($variant:ident => ($name:literal, $ctx:ident, $desc:literal)),* $(,)?) => {
        /// Everything a key can do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action { $(
            #[doc = $desc]
            $variant
        ),* }

        impl Action {
            /// Every action, in help order.
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];

            /// Name used in the config file and the palette.
            pub fn name(self) -> &'static str {
                match self { $(Action::$variant => $name),* }
            }

            /// Where it applies.
            pub fn context(self) -> Context {
                match self { $(Action::$variant => Context::$ctx),* }
            }

            /// What it does, for help and the palette.
            pub fn description(self) -> &'static str {
                match self { $(Action::$variant => $desc),* }
            }
        }
    };
}

actions! {
    Quit => ("quit", Global, "quit (on the queue; elsewhere: back)"),
    ForceQuit => ("force_quit", Global, "quit at once, from any screen or text field"),
    Emergency => ("emergency", Global, "EMERGENCY: authorise a rollback (on-call)"),
    Exceptions => ("exceptions", Global, "emergency exceptions and review deadlines"),
    History => ("history", Global, "decision history, audit-log integrity, governance health"),
    Help => ("help", Global, "show keys (type to search)"),
    Palette => ("palette", Global, "command palette"),
    Refresh => ("refresh", Global, "reload from the store"),
    Back => ("back", Global, "go back / close"),
    Up => ("up", Global, "move up"),
    Down => ("down", Global, "move down"),
    PageUp => ("page_up", Global, "page up"),
    PageDown => ("page_down", Global, "page down"),
    Top => ("top", Global, "go to the top"),
    Bottom => ("bottom", Global, "go to the bottom"),
    Open => ("open", List, "open the selected row"),
    Filter => ("filter", List, "filter the list as you type"),
    SortNext => ("sort", List, "sort by the next column"),
    SortReverse => ("sort_reverse", List, "reverse the sort order"),
    CopyId => ("copy_id", Queue, "copy the selected change request's id"),
    NextView => ("next_view", Queue, "next quick view"),
    ViewPending => ("view_pending", Queue, "view: all pending"),
    ViewMine => ("view_mine", Queue, "view: needs my sign-off"),
    ViewBlocked => ("view_blocked", Queue, "view: blocked"),
    ViewToday => ("view_today", Queue, "view: decided today"),
    ViewAll => ("view_all", Queue, "view: everything"),
    ViewRollingOut => ("view_rolling_out", Queue, "view: approved and rolling out (canary, observation window)"),
    Approve => ("approve", Decision, "approve (sign off)"),
    Reject => ("reject", Decision, "reject"),
    RequestChanges => ("request_changes", Decision, "request changes"),
    NextArtifact => ("next_artifact", Detail, "select the next artifact link"),
    OpenArtifact => ("open_artifact", Detail, "open the selected artifact"),
    CopyUrl => ("copy_url", Detail, "copy the selected artifact's URL"),
    RecordStage => ("record_stage", Detail, "record the next rollout stage (operators): shows the deploy command, y records"),
    NextField => ("next_field", Form, "next field"),
    PrevField => ("prev_field", Form, "previous field"),
    Review => ("review", Form, "review what will be signed"),
    PrevVerdict => ("prev_verdict", Decide, "previous verdict (on the verdict field)"),
    NextVerdict => ("next_verdict", Decide, "next verdict (on the verdict field)"),
    ToggleTick => ("toggle_tick", Decide, "tick / untick a manual checklist item"),
    TickAll => ("tick_all", Decide, "tick every manual checklist item (each shown on the confirmation)"),
    TickNote => ("tick_note", Decide, "note how the selected checklist item was checked (ticks it)"),
    ExternalEditor => ("external_editor", Decide, "write the rationale in $EDITOR"),
    Sign => ("sign", Confirm, "sign and record it"),
    Cancel => ("cancel", Confirm, "do not sign: back to the form"),
    ToggleHealth => ("health", History, "switch between the history and governance health"),
    Find => ("find", Find, "find text (matches highlighted; enter keeps, esc clears)"),
    NextMatch => ("next_match", Find, "next match"),
    PrevMatch => ("prev_match", Find, "previous match"),
    IncidentReview => ("incident_review", Exceptions, "sign the post-incident review of the selected exception's incident (leads)"),
    Accept => ("accept", Prompt, "accept: keep the filter, run the command, choose the subject, go on"),
    DeleteChar => ("delete_char", Prompt, "delete the last character"),
    DeleteWord => ("delete_word", Prompt, "delete the last word"),
    ClearLine => ("clear_line", Prompt, "clear the field"),
}

/// A key with modifiers, as written in config files (`ctrl-s`, `shift-tab`, `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// The key.
    pub code: KeyCode,
    /// Ctrl / Alt (Shift is folded into the character for printable keys).
    pub mods: KeyModifiers,
}

impl Key {
    /// Normalises a terminal key event for lookup.
    pub fn from_event(e: &KeyEvent) -> Key {
        let mut mods =
            e.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        let code = match e.code {
            KeyCode::Char(c) => {
                mods.remove(KeyModifiers::SHIFT);
                KeyCode::Char(if mods.contains(KeyModifiers::CONTROL) {
                    c.to_ascii_lowercase()
                } else {
                    c
                })
            }
            KeyCode::BackTab => {
                mods.insert(KeyModifiers::SHIFT);
                KeyCode::Tab
            }
            other => other,
        };
        Key { code, mods }
    }

    /// Parses `ctrl-s`, `alt-x`, `shift-tab`, `enter`, `esc`, `space`, `pgdn`, `f1`, `?`, `G`.
    pub fn parse(s: &str) -> Result<Key, KeyParseError> {
        let mut mods = KeyModifiers::NONE;
        let mut rest = s;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.len() > 1 && lower.starts_with("ctrl-") {
                mods |= KeyModifiers::CONTROL;
                rest = &rest[5..];
            } else if rest.len() > 1 && lower.starts_with("alt-") {
                mods |= KeyModifiers::ALT;
                rest = &rest[4..];
            } else if rest.len() > 1 && lower.starts_with("shift-") {
                mods |= KeyModifiers::SHIFT;
                rest = &rest[6..];
            } else {
                break;
            }
        }
        let code = match rest.to_ascii_lowercase().as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "space" => KeyCode::Char(' '),
            "backspace" => KeyCode::Backspace,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pgup" | "pageup" => KeyCode::PageUp,
            "pgdn" | "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "delete" | "del" => KeyCode::Delete,
            f if f.len() > 1 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                KeyCode::F(f[1..].parse().unwrap_or(1))
            }
            _ => {
                let mut chars = rest.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(if mods.contains(KeyModifiers::CONTROL) {
                        c.to_ascii_lowercase()
                    } else {
                        c
                    }),
                    _ => return Err(KeyParseError(crate::domain::reader::quote(s))),
                }
            }
        };
        if matches!(code, KeyCode::Char(_)) {
            mods.remove(KeyModifiers::SHIFT);
        }
        Ok(Key { code, mods })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mods.contains(KeyModifiers::CONTROL) {
            f.write_str("ctrl-")?;
        }
        if self.mods.contains(KeyModifiers::ALT) {
            f.write_str("alt-")?;
        }
        if self.mods.contains(KeyModifiers::SHIFT) {
            f.write_str("shift-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::Backspace => f.write_str("backspace"),
            KeyCode::Up => f.write_str("↑"),
            KeyCode::Down => f.write_str("↓"),
            KeyCode::Left => f.write_str("←"),
            KeyCode::Right => f.write_str("→"),
            KeyCode::PageUp => f.write_str("pgup"),
            KeyCode::PageDown => f.write_str("pgdn"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::F(n) => write!(f, "f{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// A key name that does not read (the quoted name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected a key such as \"a\", \"G\", \"?\", \"ctrl-s\", \"shift-tab\", \"enter\", \"esc\", \"space\", \"pgdn\" or \"f1\", found {0}"
)]
pub struct KeyParseError(pub String);

/// A preset of default bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Arrows, Enter/Esc, plus j/k.
    Default,
    /// Adds h/l for back/open and ctrl-d/ctrl-u paging.
    Vim,
}

fn defaults(preset: Preset) -> Vec<(Action, &'static [&'static str])> {
    use Action::*;
    let mut v: Vec<(Action, &'static [&'static str])> = vec![
        (Quit, &["q"]),
        (ForceQuit, &["ctrl-c"]),
        (Emergency, &["!"]),
        (Exceptions, &["E"]),
        (History, &["H"]),
        (Help, &["?", "f1"]),
        (Palette, &[":", "ctrl-p"]),
        (Refresh, &["ctrl-r", "f5"]),
        (Back, &["esc"]),
        (Up, &["up", "k"]),
        (Down, &["down", "j"]),
        (PageUp, &["pgup"]),
        (PageDown, &["pgdn", "space"]),
        (Top, &["home", "g"]),
        (Bottom, &["end", "G"]),
        (Open, &["enter"]),
        (Filter, &["/"]),
        (CopyId, &["y"]),
        (SortNext, &["s"]),
        (SortReverse, &["S"]),
        (NextView, &["tab"]),
        (ViewPending, &["1"]),
        (ViewMine, &["2"]),
        (ViewBlocked, &["3"]),
        (ViewToday, &["4"]),
        (ViewAll, &["5"]),
        (ViewRollingOut, &["6"]),
        (Approve, &["a"]),
        (Reject, &["x"]),
        (RequestChanges, &["c"]),
        (NextArtifact, &["tab"]),
        (OpenArtifact, &["o"]),
        (CopyUrl, &["y"]),
        (RecordStage, &["R"]),
        (NextField, &["tab"]),
        (PrevField, &["shift-tab"]),
        (Review, &["ctrl-s"]),
        (PrevVerdict, &["left"]),
        (NextVerdict, &["right"]),
        (ToggleTick, &["space"]),
        (TickAll, &["ctrl-t"]),
        (TickNote, &["n"]),
        (ExternalEditor, &["ctrl-e"]),
        (Sign, &["y"]),
        (Cancel, &["n"]),
        (ToggleHealth, &["tab"]),
        (IncidentReview, &["r"]),
        (Find, &["/"]),
        (NextMatch, &["n"]),
        (PrevMatch, &["N"]),
        (Accept, &["enter"]),
        (DeleteChar, &["backspace", "ctrl-h"]),
        (DeleteWord, &["ctrl-w", "alt-backspace", "ctrl-backspace"]),
        (ClearLine, &["ctrl-u"]),
    ];
    if preset == Preset::Vim {
        for (action, keys) in v.iter_mut() {
            *keys = match action {
                Back => &["esc", "h"],
                Open => &["enter", "l"],
                PageUp => &["pgup", "ctrl-u", "ctrl-b"],
                PageDown => &["pgdn", "ctrl-d", "ctrl-f", "space"],
                _ => keys,
            };
        }
    }
    v
}

/// The active bindings.
#[derive(Debug, Clone)]
pub struct Keymap {
    bindings: Vec<(Action, Vec<Key>)>,
}

impl Keymap {
    /// The bindings of a preset.
    pub fn preset(preset: Preset) -> Keymap {
        Keymap {
            bindings: defaults(preset)
                .into_iter()
                .map(|(a, keys)| (a, keys.iter().filter_map(|k| Key::parse(k).ok()).collect()))
                .collect(),
        }
    }

    /// Replaces the keys of `action` (from the config file).
    pub fn rebind(&mut self, action: Action, keys: Vec<Key>) {
        if let Some(entry) = self.bindings.iter_mut().find(|(a, _)| *a == action) {
            entry.1 = keys;
        }
    }

    /// Keys bound to `action`.
    pub fn keys(&self, action: Action) -> &[Key] {
        self.bindings
            .iter()
            .find(|(a, _)| *a == action)
            .map(|(_, k)| k.as_slice())
            .unwrap_or(&[])
    }

    /// The first key of `action`, for hints ("a approve").
    pub fn hint(&self, action: Action) -> String {
        self.keys(action)
            .first()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "—".into())
    }

    /// The action `event` triggers in `contexts` (searched in order, most specific first).
    pub fn lookup(&self, event: &KeyEvent, contexts: &[Context]) -> Option<Action> {
        let key = Key::from_event(event);
        contexts.iter().find_map(|ctx| {
            self.bindings
                .iter()
                .find(|(a, keys)| a.context() == *ctx && keys.contains(&key))
                .map(|(a, _)| *a)
        })
    }

    /// Actions with their keys, in help order.
    pub fn entries(&self) -> impl Iterator<Item = (Action, &[Key])> {
        Action::ALL.iter().map(|a| (*a, self.keys(*a)))
    }

    /// A key in a text field: a printable character (no ctrl/alt) is text there, so `j`
    /// types a `j`; any other key is looked up in `contexts`.
    pub fn input(&self, event: &KeyEvent, contexts: &[Context]) -> Input {
        if let KeyCode::Char(c) = event.code
            && !event
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
            && !c.is_control()
        {
            return Input::Char(c);
        }
        match self.lookup(event, contexts) {
            Some(action) => Input::Action(action),
            None => Input::Unbound,
        }
    }

    /// The key reference in docs/tui.md: the default bindings as a table per context,
    /// then what the vim preset changes (a test keeps the document the same as this).
    pub fn reference() -> String {
        let default = Keymap::preset(Preset::Default);
        let vim = Keymap::preset(Preset::Vim);
        let mut out = default.markdown();
        out.push_str("\nWith `keys = \"vim\"`:\n\n");
        for action in Action::ALL {
            if default.keys(*action) != vim.keys(*action) {
                let keys: Vec<String> =
                    vim.keys(*action).iter().map(|k| format!("`{k}`")).collect();
                out.push_str(&format!("- {}: {}\n", action.name(), keys.join(" ")));
            }
        }
        out
    }

    /// Every action's keys as a Markdown table per context.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for ctx in Context::ALL {
            out.push_str(&format!(
                "\n**{}**\n\n| keys | action | name |\n|---|---|---|\n",
                ctx.title()
            ));
            for action in Action::ALL.iter().filter(|a| a.context() == *ctx) {
                let keys: Vec<String> = self
                    .keys(*action)
                    .iter()
                    .map(|k| format!("`{}`", k.to_string().replace('|', "\\|")))
                    .collect();
                out.push_str(&format!(
                    "| {} | {} | `{}` |\n",
                    keys.join(" "),
                    action.description().replace('|', "\\|"),
                    action.name()
                ));
            }
        }
        out
    }
}

/// A key as a text field sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A character to insert.
    Char(char),
    /// A bound action.
    Action(Action),
    /// Neither.
    Unbound,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn keys_parse_and_print_round_trip() {
        for s in [
            "a",
            "G",
            "?",
            "ctrl-s",
            "shift-tab",
            "enter",
            "esc",
            "space",
            "pgdn",
            "f1",
            "alt-x",
        ] {
            let k = Key::parse(s).unwrap();
            assert_eq!(
                Key::parse(&k.to_string().replace('↑', "up")).unwrap(),
                k,
                "{s}"
            );
        }
        assert!(Key::parse("hyper-x").is_err());
    }

    #[test]
    fn lookup_prefers_the_most_specific_context() {
        let km = Keymap::preset(Preset::Default);
        let tab = ev(KeyCode::Tab, KeyModifiers::NONE);
        assert_eq!(
            km.lookup(&tab, &[Context::Queue, Context::Global]),
            Some(Action::NextView)
        );
        assert_eq!(
            km.lookup(&tab, &[Context::Detail, Context::Global]),
            Some(Action::NextArtifact)
        );
        let shift_g = ev(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(
            km.lookup(&shift_g, &[Context::Queue, Context::Global]),
            Some(Action::Bottom)
        );
        let back_tab = ev(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(
            km.lookup(&back_tab, &[Context::Decide, Context::Form]),
            Some(Action::PrevField)
        );
    }

    #[test]
    fn no_key_means_two_things_in_one_context() {
        for preset in [Preset::Default, Preset::Vim] {
            let km = Keymap::preset(preset);
            for ctx in Context::ALL {
                let mut seen: Vec<(Key, Action)> = Vec::new();
                for action in Action::ALL.iter().filter(|a| a.context() == *ctx) {
                    for key in km.keys(*action) {
                        if let Some((_, other)) = seen.iter().find(|(k, _)| k == key) {
                            panic!(
                                "{preset:?}: {key} is bound to both {other:?} and {action:?} in {ctx:?}"
                            );
                        }
                        seen.push((*key, *action));
                    }
                }
            }
            // Every action has a key by default (the help and hints never say "—").
            for action in Action::ALL {
                assert!(!km.keys(*action).is_empty(), "{action:?} has no key");
            }
        }
    }

    #[test]
    fn rebinding_replaces_keys_and_vim_adds_hl() {
        let mut km = Keymap::preset(Preset::Vim);
        let h = ev(KeyCode::Char('h'), KeyModifiers::NONE);
        assert_eq!(km.lookup(&h, &[Context::Global]), Some(Action::Back));
        km.rebind(
            Action::Approve,
            vec![Key::parse("ctrl-a").unwrap(), Key::parse("A").unwrap()],
        );
        let a = ev(KeyCode::Char('a'), KeyModifiers::NONE);
        assert_eq!(km.lookup(&a, &[Context::Detail, Context::Decision]), None);
        let ctrl_a = ev(KeyCode::Char('a'), KeyModifiers::CONTROL);
        assert_eq!(
            km.lookup(&ctrl_a, &[Context::Detail, Context::Decision]),
            Some(Action::Approve)
        );
        assert_eq!(km.hint(Action::Approve), "ctrl-a");
    }
}
