//! How the app enters and leaves the two flows that stand apart from the queue: the
//! History screen (loaded with its verification in the background) and the emergency
//! rollback flow (`!`, refused up front for anyone off the on-call roster).

use super::app::{App, EmergencyAsk, EmergencyForm, HistoryAsk, HistoryState, Signer};
use super::keymap::Action;
use super::messages::Effect;
use super::messages::Level;
use super::requests::Kind;
use super::screens::Screen;
use super::screens::exceptions::ExceptionsAsk;
use crate::domain::emergency::{Exception, check_on_call};
use crossterm::event::KeyEvent;

impl App {
    pub(super) fn open_history(&mut self) -> Vec<Effect> {
        if self.screen == Screen::History {
            return vec![];
        }
        let back_to = match self.screen {
            Screen::Emergency | Screen::Exceptions => Screen::Queue,
            other => other,
        };
        self.history = Some(HistoryState::new(back_to));
        self.screen = Screen::History;
        let history = self.requests.issue(Kind::History);
        let verify = self.requests.issue(Kind::Integrity);
        vec![Effect::LoadHistory(history), Effect::VerifyLog(verify)]
    }

    /// History-screen meanings of shared actions; `None` falls through to the default.
    pub(super) fn history_action(&mut self, action: Action) -> Option<Vec<Effect>> {
        let page = self.page_rows;
        match self.history.as_mut()?.action(action, page)? {
            HistoryAsk::Nothing => Some(vec![]),
            HistoryAsk::LoadRecord(seq) => {
                let id = self.requests.issue(Kind::Record);
                Some(vec![Effect::LoadRecord(id, seq)])
            }
            HistoryAsk::Reload => {
                let back = self.history.take().map_or(Screen::Queue, |h| h.back_to);
                self.screen = back;
                Some(self.open_history())
            }
        }
    }

    /// Exceptions whose review is overdue now.
    pub fn overdue_reviews(&self) -> Vec<&Exception> {
        crate::domain::emergency::overdue(&self.exceptions, self.now)
    }

    pub(super) fn start_emergency(&mut self) {
        if self.screen == Screen::Emergency {
            return;
        }
        let refusal = match &self.signer {
            Signer::ReadOnly(why) => Some(format!("read-only: {why}")),
            Signer::Principal { principal, .. } => check_on_call(&self.policy, principal)
                .err()
                .map(|r| format!("{} — {}", r.message, r.remedy)),
        };
        let back_to = if self.screen == Screen::Exceptions {
            self.exceptions_back
        } else {
            self.screen
        };
        self.emergency = Some(EmergencyForm::new(back_to, refusal));
        self.overlay = None;
        self.screen = Screen::Emergency;
    }

    pub(super) fn emergency_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        let Some(form) = self.emergency.as_mut() else {
            return vec![];
        };
        match form.key(k, &self.settings.keymap, &self.subjects) {
            EmergencyAsk::Nothing => vec![],
            EmergencyAsk::Back => self.run(Action::Back),
            EmergencyAsk::Authorise(request) => {
                let id = self.requests.issue(Kind::Emergency);
                vec![Effect::Authorise(id, request)]
            }
            EmergencyAsk::Run(action) => self.run(action),
            EmergencyAsk::Leave(action) => {
                // Leave the flow first, so `back` from there is not the flow.
                if let Some(form) = self.emergency.take() {
                    self.screen = form.back_to;
                }
                self.run(action)
            }
        }
    }

    /// `r` on the exceptions screen: the review form for the selected exception, if the
    /// signer holds a review role (said at once otherwise, not after the typing).
    pub(super) fn start_review(&mut self) {
        let refusal = match &self.signer {
            Signer::ReadOnly(why) => Some(format!("read-only: {why}")),
            Signer::Principal { principal, .. } => {
                crate::domain::emergency::check_reviewer(&self.policy, principal)
                    .err()
                    .map(|r| format!("{} — {}", r.message, r.remedy))
            }
        };
        if let Some(why) = refusal {
            self.say(Level::Error, why);
            return;
        }
        let now = self.now;
        if let Err(why) = self.exceptions_screen.open_review(&self.exceptions, now) {
            self.say(Level::Error, why);
        }
    }

    pub(super) fn review_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        match self.exceptions_screen.review_key(k, &self.settings.keymap) {
            ExceptionsAsk::Nothing => vec![],
            ExceptionsAsk::Run(action) => self.run(action),
            ExceptionsAsk::Record(request) => {
                let id = self.requests.issue(Kind::Review);
                vec![Effect::Review(id, request)]
            }
        }
    }

    /// `R` on a change request: the confirmation of its next rollout stage, refused at
    /// once for someone who is not an operator, a CR that is not approved, or one whose
    /// rollout is over.
    pub(super) fn start_stage(&mut self) {
        if self.screen != Screen::Detail {
            return;
        }
        let Some(d) = self.detail.data() else {
            return;
        };
        let refusal = match &self.signer {
            Signer::ReadOnly(why) => Some(format!("read-only: {why}")),
            Signer::Principal { principal, .. }
                if !principal.has_role(crate::domain::rollout::OPERATOR_ROLE) =>
            {
                Some(format!(
                    "{} does not hold the operator role: rollout stages are recorded by operators",
                    principal.id
                ))
            }
            Signer::Principal { .. }
                if d.eval.status != crate::domain::status::Status::Approved =>
            {
                Some(format!(
                    "{} is {}: only an approved change is rolled out",
                    crate::domain::text::sanitize(&d.cr.current.cr.id),
                    d.eval.status.as_str()
                ))
            }
            Signer::Principal { .. } => None,
        };
        if let Some(why) = refusal {
            self.say(Level::Error, why);
            return;
        }
        let next = crate::workflow::rollout::next_stage(
            &self.policy,
            &d.cr.current.cr,
            &d.cr.current.digest,
            d.rollout.as_ref(),
        );
        match next {
            Some(stage) => {
                self.detail.stage = Some(super::screens::rollout::StageConfirm::new(
                    d.cr.current.cr.id.clone(),
                    stage,
                ))
            }
            None => self.say(
                Level::Error,
                "its rollout is over (fully rolled out or rolled back)".to_string(),
            ),
        }
    }

    pub(super) fn stage_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        use super::screens::rollout::StageAsk;
        let Some(action) = self.settings.keymap.lookup(&k, &self.contexts()) else {
            return vec![];
        };
        let Some(confirm) = self.detail.stage.as_mut() else {
            return vec![];
        };
        match confirm.action(action) {
            StageAsk::Stay => vec![],
            StageAsk::Close => {
                self.detail.stage = None;
                vec![]
            }
            StageAsk::Record(request) => {
                let id = self.requests.issue(Kind::Stage);
                self.loading += 1;
                vec![Effect::RecordStage(id, request)]
            }
        }
    }
}
