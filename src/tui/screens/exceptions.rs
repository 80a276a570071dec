//! The exceptions screen (`E`): emergency exceptions with their deadlines, one selected,
//! and the post-incident review a lead signs from here (`r`): root cause, follow-ups,
//! policy changes, then exactly what will be signed.

use super::line::Typed;
use crate::domain::emergency::{Exception, ExceptionState};
use crate::tui::keymap::{Action, Context, Keymap};
use crate::workflow::ReviewRequest;
use chrono::{DateTime, Utc};
use crossterm::event::KeyEvent;

/// The exceptions in the order the screen lists them: open ones first, soonest review
/// deadline first.
pub fn ordered(exceptions: &[Exception], now: DateTime<Utc>) -> Vec<&Exception> {
    let mut list: Vec<&Exception> = exceptions.iter().collect();
    list.sort_by_key(|x| (x.state(now) == ExceptionState::Closed, x.review_due));
    list
}

/// Fields of the review form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewField {
    /// What caused the incident.
    RootCause,
    /// What will be done.
    FollowUps,
    /// Policy changes decided ("none" by default).
    PolicyChanges,
}

impl ReviewField {
    const ORDER: [ReviewField; 3] = [
        ReviewField::RootCause,
        ReviewField::FollowUps,
        ReviewField::PolicyChanges,
    ];

    fn step(self, delta: isize) -> ReviewField {
        let i = Self::ORDER.iter().position(|f| *f == self).unwrap_or(0) as isize;
        Self::ORDER[(i + delta).rem_euclid(Self::ORDER.len() as isize) as usize]
    }
}

/// A post-incident review being written.
#[derive(Debug, Clone)]
pub struct ReviewForm {
    /// The incident it reviews (every open exception of it is closed).
    pub incident: String,
    /// Root cause.
    pub root_cause: String,
    /// Follow-up actions.
    pub follow_ups: String,
    /// Policy changes decided.
    pub policy_changes: String,
    /// Focused field.
    pub focus: ReviewField,
    /// Showing exactly what will be signed.
    pub confirming: bool,
    /// Signing is in flight.
    pub busy: bool,
    /// What is missing, or why the store refused it.
    pub problem: Option<String>,
}

impl ReviewForm {
    fn new(incident: String) -> ReviewForm {
        ReviewForm {
            incident,
            root_cause: String::new(),
            follow_ups: String::new(),
            policy_changes: "none".into(),
            focus: ReviewField::RootCause,
            confirming: false,
            busy: false,
            problem: None,
        }
    }

    /// What signing would send.
    pub fn request(&self) -> ReviewRequest {
        ReviewRequest {
            incident: self.incident.clone(),
            root_cause: self.root_cause.trim().to_string(),
            follow_ups: self.follow_ups.trim().to_string(),
            policy_changes: self.policy_changes.trim().to_string(),
        }
    }
}

/// What the exceptions screen needs from the app after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExceptionsAsk {
    /// Nothing more.
    Nothing,
    /// Sign and record this review.
    Record(ReviewRequest),
    /// Run this action with the form kept (help, palette).
    Run(Action),
}

/// The exceptions screen's state.
#[derive(Debug, Clone, Default)]
pub struct ExceptionsScreen {
    /// Selected exception, in [`ordered`] order.
    pub cursor: super::cursor::Cursor,
    /// The review being written, if any.
    pub review: Option<ReviewForm>,
}

impl ExceptionsScreen {
    /// Moves the selection over `count` exceptions.
    pub fn shift(&mut self, delta: isize, count: usize) {
        self.cursor.shift(delta, count);
    }

    /// Opens the review of the selected exception's incident; `Err` says why not.
    pub fn open_review(
        &mut self,
        exceptions: &[Exception],
        now: DateTime<Utc>,
    ) -> Result<(), &'static str> {
        let list = ordered(exceptions, now);
        let Some(x) = list.get(self.cursor.selected.min(list.len().saturating_sub(1))) else {
            return Err("no exception to review");
        };
        if x.state(now) == ExceptionState::Closed {
            return Err("that exception is already closed by a review");
        }
        self.review = Some(ReviewForm::new(x.incident.clone()));
        Ok(())
    }

    /// The keymap contexts while the review form is up, most specific first.
    pub fn contexts(&self) -> Vec<Context> {
        match &self.review {
            Some(r) if r.confirming => vec![Context::Confirm, Context::Global],
            Some(_) => vec![Context::Form, Context::Prompt, Context::Global],
            None => vec![Context::Exceptions, Context::Global],
        }
    }

    /// A key while the review form is up.
    pub fn review_key(&mut self, k: KeyEvent, keymap: &Keymap) -> ExceptionsAsk {
        let Some(form) = self.review.as_mut() else {
            return ExceptionsAsk::Nothing;
        };
        if form.confirming {
            match keymap.lookup(&k, &[Context::Confirm, Context::Global]) {
                Some(Action::Sign) if !form.busy => {
                    form.busy = true;
                    return ExceptionsAsk::Record(form.request());
                }
                Some(Action::Cancel | Action::Back) if !form.busy => form.confirming = false,
                Some(a @ (Action::Help | Action::Palette)) => return ExceptionsAsk::Run(a),
                _ => {}
            }
            return ExceptionsAsk::Nothing;
        }
        let field = match form.focus {
            ReviewField::RootCause => &mut form.root_cause,
            ReviewField::FollowUps => &mut form.follow_ups,
            ReviewField::PolicyChanges => &mut form.policy_changes,
        };
        match super::line::type_key(field, &k, keymap, &[Context::Form, Context::Global], 2000) {
            Typed::Changed => form.problem = None,
            Typed::Unchanged => {}
            Typed::Action(Action::NextField | Action::Down) => form.focus = form.focus.step(1),
            Typed::Action(Action::PrevField | Action::Up) => form.focus = form.focus.step(-1),
            Typed::Action(Action::Accept | Action::Review) => {
                let missing = [
                    (
                        ReviewField::RootCause,
                        form.root_cause.trim(),
                        "the root cause",
                    ),
                    (
                        ReviewField::FollowUps,
                        form.follow_ups.trim(),
                        "the follow-ups",
                    ),
                ]
                .into_iter()
                .find(|(_, text, _)| text.is_empty());
                match missing {
                    Some((field, _, what)) => {
                        form.focus = field;
                        form.problem = Some(format!("{what} is empty: a review needs it"));
                    }
                    None => {
                        form.problem = None;
                        form.confirming = true;
                    }
                }
            }
            Typed::Action(Action::Back) => self.review = None,
            Typed::Action(a @ (Action::Help | Action::Palette)) => return ExceptionsAsk::Run(a),
            Typed::Action(_) => {}
        }
        ExceptionsAsk::Nothing
    }

    /// The review was signed (a confirmation line) or refused.
    pub fn reviewed(
        &mut self,
        result: Result<String, crate::tui::error::TuiError>,
    ) -> Option<String> {
        match result {
            Ok(line) => {
                self.review = None;
                Some(line)
            }
            Err(e) => {
                if let Some(form) = self.review.as_mut() {
                    form.busy = false;
                    form.confirming = false;
                    form.problem = Some(e.to_string());
                }
                None
            }
        }
    }

    /// The keys worth a hint here.
    pub fn hints(&self) -> Vec<(Action, &'static str)> {
        use Action::*;
        match &self.review {
            Some(r) if r.busy => vec![],
            Some(r) if r.confirming => {
                vec![(Sign, "sign the review"), (Cancel, "edit"), (Back, "back")]
            }
            Some(_) => vec![
                (NextField, "next field"),
                (Accept, "review"),
                (ClearLine, "clear field"),
                (Back, "cancel"),
            ],
            None => vec![
                (Down, "move"),
                (IncidentReview, "post-incident review"),
                (Back, "back"),
                (Emergency, "emergency"),
                (Help, "help"),
            ],
        }
    }
}
