//! The emergency flow (`!`): pick what to roll back, say why, confirm exactly what will
//! be signed, watch the rollback command run.

use super::Screen;
use super::line::Typed;
use crate::domain::emergency::SubjectState;
use crate::tui::error::TuiError;
use crate::tui::keymap::{Action, Context, Input, Keymap};
use crate::workflow::RollbackRequest;
use crossterm::event::KeyEvent;

/// What the status line says once an authorisation is signed.
pub const AUTHORISED: &str =
    "authorised and signed — exception open; review due within the policy's deadline";

/// What the emergency flow needs from the app after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmergencyAsk {
    /// Nothing more.
    Nothing,
    /// Leave the flow.
    Back,
    /// Sign this authorisation.
    Authorise(RollbackRequest),
    /// Run this action with the flow kept (the help and palette overlays).
    Run(Action),
    /// Leave the flow, then run this action (a global key on the picker or once done).
    Leave(Action),
}

/// How the flow ended, as its last line says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Authorised (and the command, if any, succeeded and was recorded).
    Done(String),
    /// Refused, failed, or not recorded: what happened and what to do.
    Failed(String),
}

/// Steps of the emergency flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmergencyStep {
    /// Choose the subject to roll back.
    Pick,
    /// Incident id, reason, target version.
    Details,
    /// Exactly what will be signed.
    Confirm,
    /// Authorised; the rollback command is running (output streams in).
    Running,
    /// Finished (or refused).
    Done,
}

/// Fields of the emergency details step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmergencyField {
    /// Incident ticket id.
    Incident,
    /// One-line reason.
    Reason,
    /// Version to roll back to.
    Target,
}

/// The emergency flow's state.
#[derive(Debug, Clone)]
pub struct EmergencyForm {
    /// Current step.
    pub step: EmergencyStep,
    /// The screen to return to.
    pub back_to: Screen,
    /// Cursor in the subject list.
    pub cursor: super::cursor::Cursor,
    /// The chosen subject.
    pub subject: Option<SubjectState>,
    /// Incident id being typed.
    pub incident: String,
    /// Reason being typed.
    pub reason: String,
    /// Target version (prefilled with the last good one).
    pub target: String,
    /// Focused field.
    pub focus: EmergencyField,
    /// Why the user may not proceed (not on call), or why the store refused.
    pub refusal: Option<String>,
    /// Why the details cannot be confirmed as typed (e.g. a version a command would read
    /// as an option).
    pub problem: Option<String>,
    /// Rollback command output so far.
    pub output: Vec<String>,
    /// Final line: what was recorded.
    pub result: Option<Finish>,
    /// A request is in flight.
    pub busy: bool,
    /// The target still holds the prefilled last-good version: typing replaces it.
    pub target_prefilled: bool,
}

impl EmergencyForm {
    /// The flow's first step, going back to `back_to`; `refusal` says why this person may
    /// not proceed (not on call, read-only).
    pub fn new(back_to: Screen, refusal: Option<String>) -> EmergencyForm {
        EmergencyForm {
            step: EmergencyStep::Pick,
            back_to,
            cursor: Default::default(),
            subject: None,
            incident: String::new(),
            reason: String::new(),
            target: String::new(),
            focus: EmergencyField::Incident,
            refusal,
            problem: None,
            output: Vec::new(),
            result: None,
            busy: false,
            target_prefilled: false,
        }
    }

    /// A key on any step; `subjects` are the ones that can be rolled back.
    pub fn key(&mut self, k: KeyEvent, keymap: &Keymap, subjects: &[SubjectState]) -> EmergencyAsk {
        if self.refusal.is_some() {
            return match keymap.lookup(&k, &[Context::Global]) {
                Some(Action::Back | Action::Quit) => EmergencyAsk::Back,
                Some(other) => EmergencyAsk::Leave(other),
                None => EmergencyAsk::Nothing,
            };
        }
        if self.step == EmergencyStep::Details {
            return self.details_key(k, keymap);
        }
        let Some(action) = keymap.lookup(&k, &self.contexts()) else {
            return EmergencyAsk::Nothing;
        };
        match (self.step, action) {
            (EmergencyStep::Pick, Action::Back | Action::Quit) => return EmergencyAsk::Back,
            (EmergencyStep::Pick, Action::Accept) => {
                if let Some(s) = subjects.get(self.cursor.selected).cloned() {
                    self.target = s.last_good.clone().unwrap_or_default();
                    self.target_prefilled = !self.target.is_empty();
                    self.subject = Some(s);
                    self.step = EmergencyStep::Details;
                    self.focus = EmergencyField::Incident;
                }
            }
            (EmergencyStep::Pick, other) => {
                if let Some(delta) = super::cursor::movement(other, 10) {
                    self.cursor.shift(delta, subjects.len());
                } else {
                    // Not the picker's key: leave the flow for it (H, E, ...).
                    return EmergencyAsk::Leave(other);
                }
            }
            (EmergencyStep::Confirm, Action::Sign) => {
                if !self.busy
                    && let Some(request) = self.request()
                {
                    self.busy = true;
                    return EmergencyAsk::Authorise(request);
                }
            }
            (EmergencyStep::Confirm, Action::Cancel | Action::Back) => {
                self.step = EmergencyStep::Details;
            }
            // Finished: enter, esc or q close; the global keys work again (E, H, ...).
            (EmergencyStep::Done, Action::Accept | Action::Back | Action::Quit) => {
                return EmergencyAsk::Back;
            }
            (EmergencyStep::Done, other) => return EmergencyAsk::Leave(other),
            // Mid-flow only the overlays open: nothing half-typed is left behind.
            (_, Action::Help | Action::Palette) => return EmergencyAsk::Run(action),
            _ => {}
        }
        EmergencyAsk::Nothing
    }

    /// The keymap contexts of the current step, most specific first.
    pub fn contexts(&self) -> Vec<Context> {
        match self.step {
            EmergencyStep::Pick | EmergencyStep::Done => vec![Context::Prompt, Context::Global],
            EmergencyStep::Details => vec![Context::Form, Context::Prompt, Context::Global],
            EmergencyStep::Confirm => vec![Context::Confirm, Context::Global],
            EmergencyStep::Running => vec![Context::Global],
        }
    }

    /// The keys worth a hint on the current step.
    pub fn hints(&self) -> Vec<(Action, &'static str)> {
        use Action::*;
        if self.refusal.is_some() {
            return vec![(Back, "back"), (Help, "help")];
        }
        match self.step {
            EmergencyStep::Pick => vec![(Down, "move"), (Accept, "choose"), (Back, "back")],
            EmergencyStep::Details => vec![
                (NextField, "next field"),
                (Accept, "review"),
                (ClearLine, "clear field"),
                (Back, "back"),
            ],
            EmergencyStep::Confirm if self.busy => vec![],
            EmergencyStep::Confirm => {
                vec![(Sign, "sign and roll back"), (Cancel, "no"), (Back, "back")]
            }
            EmergencyStep::Running => vec![],
            EmergencyStep::Done => vec![
                (Accept, "close"),
                (Exceptions, "exceptions"),
                (History, "history"),
            ],
        }
    }

    fn details_key(&mut self, k: KeyEvent, keymap: &Keymap) -> EmergencyAsk {
        // The prefilled version is a suggestion: the first character typed replaces it
        // instead of being appended to it (7 + 5 is not 75).
        let contexts = [Context::Form, Context::Global];
        if self.focus == EmergencyField::Target
            && self.target_prefilled
            && matches!(keymap.input(&k, &contexts), Input::Char(_))
        {
            self.target.clear();
        }
        let field = match self.focus {
            EmergencyField::Incident => &mut self.incident,
            EmergencyField::Reason => &mut self.reason,
            EmergencyField::Target => &mut self.target,
        };
        match super::line::type_key(field, &k, keymap, &contexts, 200) {
            Typed::Changed => {
                if self.focus == EmergencyField::Target {
                    self.target_prefilled = false;
                }
            }
            Typed::Unchanged => {}
            Typed::Action(Action::NextField | Action::Down) => {
                self.focus = match self.focus {
                    EmergencyField::Incident => EmergencyField::Reason,
                    EmergencyField::Reason => EmergencyField::Target,
                    EmergencyField::Target => EmergencyField::Incident,
                }
            }
            Typed::Action(Action::PrevField | Action::Up) => {
                self.focus = match self.focus {
                    EmergencyField::Incident => EmergencyField::Target,
                    EmergencyField::Reason => EmergencyField::Incident,
                    EmergencyField::Target => EmergencyField::Reason,
                }
            }
            Typed::Action(Action::Accept | Action::Review) => self.review(keymap),
            Typed::Action(Action::Back) => self.step = EmergencyStep::Pick,
            Typed::Action(action @ (Action::Help | Action::Palette)) => {
                return EmergencyAsk::Run(action);
            }
            Typed::Action(_) => {}
        }
        EmergencyAsk::Nothing
    }

    /// Goes on to the confirmation, or names (and focuses) what is wrong.
    fn review(&mut self, keymap: &Keymap) {
        // An empty field is named, and focused, rather than ignored.
        let empty = [
            (
                EmergencyField::Incident,
                self.incident.trim(),
                "the incident id",
            ),
            (EmergencyField::Reason, self.reason.trim(), "the reason"),
            (
                EmergencyField::Target,
                self.target.trim(),
                "the version to roll back to",
            ),
        ]
        .into_iter()
        .find(|(_, value, _)| value.is_empty())
        .map(|(field, _, what)| (field, what));
        if let Some((field, what)) = empty {
            self.focus = field;
            let accept = keymap.hint(Action::Accept);
            self.problem = Some(format!("{what} is empty: type it, then {accept}"));
        } else if let Some(Err(refusal)) = self.request().map(|r| r.check()) {
            // Refused before the confirmation shows a command to run.
            self.problem = Some(refusal.to_string());
        } else {
            self.problem = None;
            self.step = EmergencyStep::Confirm;
        }
    }

    /// The authorisation was signed (`Ok((entry hash, a command will run))`) or refused.
    /// Returns what to run when the policy names a rollback command.
    pub fn authorised(
        &mut self,
        result: Result<(String, bool), TuiError>,
    ) -> Option<(RollbackRequest, String)> {
        self.busy = false;
        self.step = EmergencyStep::Done;
        match result {
            Ok((hash, true)) => {
                let request = self.request()?;
                self.step = EmergencyStep::Running;
                self.busy = true;
                Some((request, hash))
            }
            Ok((_, false)) => {
                self.result = Some(Finish::Done(format!(
                    "{AUTHORISED}; no rollback command in the policy: the operator performs the rollback"
                )));
                None
            }
            Err(e) => {
                self.result = Some(Finish::Failed(e.to_string()));
                None
            }
        }
    }

    /// A line the rollback command printed (the last lines are kept, as by the runner).
    pub fn output_line(&mut self, line: &str) {
        if self.output.len() >= crate::workflow::TAIL_LINES {
            self.output.remove(0);
        }
        self.output.push(crate::domain::text::sanitize(line));
    }

    /// The rollback command finished and its outcome was recorded (or not).
    pub fn finished(&mut self, result: Result<String, TuiError>) {
        self.busy = false;
        self.step = EmergencyStep::Done;
        self.result = Some(match result {
            Ok(text) => Finish::Done(text),
            Err(e) => Finish::Failed(e.to_string()),
        });
    }

    /// The request the details describe.
    pub fn request(&self) -> Option<RollbackRequest> {
        let s = self.subject.as_ref()?;
        Some(RollbackRequest {
            subject: s.name.clone(),
            environment: s.environment.clone(),
            from_version: s.current.clone(),
            to_version: self.target.trim().to_string(),
            incident: self.incident.trim().to_string(),
            reason: self.reason.trim().to_string(),
        })
    }
}
