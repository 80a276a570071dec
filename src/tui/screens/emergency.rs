//! The emergency flow (`!`): pick what to roll back, say why, confirm exactly what will
//! be signed, watch the rollback command run.

use super::Screen;
use crate::domain::emergency::SubjectState;
use crate::workflow::RollbackRequest;
use crossterm::event::{KeyCode, KeyEvent};

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
    /// Not the flow's key: look it up among the global bindings.
    Global(KeyEvent),
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
    pub cursor: usize,
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
    pub result: Option<Result<String, String>>,
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
            cursor: 0,
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
    pub fn key(&mut self, k: KeyEvent, subjects: &[SubjectState]) -> EmergencyAsk {
        if k.code == KeyCode::Esc {
            match self.step {
                EmergencyStep::Details => self.step = EmergencyStep::Pick,
                EmergencyStep::Confirm => self.step = EmergencyStep::Details,
                EmergencyStep::Running => {}
                _ => return EmergencyAsk::Back,
            }
            return EmergencyAsk::Nothing;
        }
        if self.refusal.is_some() {
            return EmergencyAsk::Nothing;
        }
        match self.step {
            EmergencyStep::Pick => match k.code {
                KeyCode::Up | KeyCode::Char('k') => self.cursor = self.cursor.saturating_sub(1),
                KeyCode::Down | KeyCode::Char('j') => {
                    self.cursor = (self.cursor + 1).min(subjects.len().saturating_sub(1))
                }
                KeyCode::Enter => {
                    if let Some(s) = subjects.get(self.cursor).cloned() {
                        self.target = s.last_good.clone().unwrap_or_default();
                        self.target_prefilled = !self.target.is_empty();
                        self.subject = Some(s);
                        self.step = EmergencyStep::Details;
                        self.focus = EmergencyField::Incident;
                    }
                }
                _ => {}
            },
            EmergencyStep::Details => self.details_key(k),
            EmergencyStep::Confirm => {
                if k.code == KeyCode::Char('y') && !self.busy {
                    if let Some(request) = self.request() {
                        self.busy = true;
                        return EmergencyAsk::Authorise(request);
                    }
                } else if k.code == KeyCode::Char('n') {
                    self.step = EmergencyStep::Details;
                }
            }
            EmergencyStep::Running => {}
            EmergencyStep::Done => {
                if matches!(k.code, KeyCode::Enter | KeyCode::Char('q')) {
                    return EmergencyAsk::Back;
                }
                // Finished: the global keys work again (E exceptions, H history, ...).
                return EmergencyAsk::Global(k);
            }
        }
        EmergencyAsk::Nothing
    }

    fn details_key(&mut self, k: KeyEvent) {
        let field = match self.focus {
            EmergencyField::Incident => &mut self.incident,
            EmergencyField::Reason => &mut self.reason,
            EmergencyField::Target => &mut self.target,
        };
        match k.code {
            KeyCode::Tab | KeyCode::Down => {
                self.focus = match self.focus {
                    EmergencyField::Incident => EmergencyField::Reason,
                    EmergencyField::Reason => EmergencyField::Target,
                    EmergencyField::Target => EmergencyField::Incident,
                }
            }
            KeyCode::BackTab | KeyCode::Up => {
                self.focus = match self.focus {
                    EmergencyField::Incident => EmergencyField::Target,
                    EmergencyField::Reason => EmergencyField::Incident,
                    EmergencyField::Target => EmergencyField::Reason,
                }
            }
            KeyCode::Enter => {
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
                    self.problem = Some(format!("{what} is empty: type it, then enter"));
                } else if let Some(Err(refusal)) = self.request().map(|r| r.check()) {
                    // Refused before the confirmation shows a command to run.
                    self.problem = Some(refusal.to_string());
                } else {
                    self.problem = None;
                    self.step = EmergencyStep::Confirm;
                }
            }
            _ => {
                // The prefilled version is a suggestion: the first character typed
                // replaces it instead of being appended to it (7 + 5 is not 75).
                if self.focus == EmergencyField::Target
                    && self.target_prefilled
                    && matches!(k.code, KeyCode::Char(_))
                    && !k
                        .modifiers
                        .contains(crossterm::event::KeyModifiers::CONTROL)
                {
                    field.clear();
                }
                if super::line::edit(field, &k, 200) && self.focus == EmergencyField::Target {
                    self.target_prefilled = false;
                }
            }
        }
    }

    /// The authorisation was signed (`Ok((entry hash, a command will run))`) or refused.
    /// Returns what to run when the policy names a rollback command.
    pub fn authorised(
        &mut self,
        result: Result<(String, bool), String>,
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
                self.result = Some(Ok(format!(
                    "{AUTHORISED}; no rollback command in the policy: the operator performs the rollback"
                )));
                None
            }
            Err(e) => {
                self.result = Some(Err(e));
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
    pub fn finished(&mut self, result: Result<String, String>) {
        self.busy = false;
        self.step = EmergencyStep::Done;
        self.result = Some(result);
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
