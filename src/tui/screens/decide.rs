//! The decision form: verdict, role, manual ticks and rationale, then the confirmation
//! of exactly what will be signed (or the rule that refuses it).

use super::line::Typed;
use crate::domain::checklist::Tick;
use crate::domain::decision::Verdict;
use crate::domain::policy::{ItemMode, Policy, Principal};
use crate::domain::rules::{Proposal, Refusal, decision_refusals};
use crate::tui::data::DetailData;
use crate::tui::keymap::{Action, Context, Keymap};
use crate::workflow::{DecisionRequest, eligible_roles};
use crossterm::event::KeyEvent;
use ratatui_textarea::TextArea;

/// Fields of the decision form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Approve / reject / request changes.
    Verdict,
    /// The role signed for.
    Role,
    /// Manual checklist ticks.
    Checklist,
    /// The rationale editor.
    Rationale,
}

/// A manual checklist item in the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickItem {
    /// Item id.
    pub id: String,
    /// Label.
    pub label: String,
    /// Blocks approval while unticked.
    pub blocking: bool,
    /// Who already ticked it on this revision.
    pub ticked_by: Vec<String>,
    /// Whether this decision ticks it.
    pub ticked: bool,
    /// How it was checked, signed with the tick (empty: no note).
    pub note: String,
}

/// The decision form.
#[derive(Debug)]
pub struct DecideForm {
    /// CR id.
    pub cr_id: String,
    /// Digest of the revision on screen: what will be signed.
    pub digest: String,
    /// Revision number on screen.
    pub revision: u32,
    /// Chosen verdict.
    pub verdict: Verdict,
    /// Roles to choose from.
    pub roles: Vec<String>,
    /// Index into `roles`.
    pub role: usize,
    /// Manual items.
    pub items: Vec<TickItem>,
    /// Cursor in `items`.
    pub item_cursor: usize,
    /// The rationale editor.
    pub rationale: TextArea<'static>,
    /// Focused field.
    pub focus: Field,
    /// Every rule that refuses the decision as it stands (shown on the confirmation).
    pub refusals: Vec<Refusal>,
    /// A signing request is in flight.
    pub signing: bool,
    /// What the store answered when signing failed, as the form shows it.
    pub error: Option<String>,
    /// `esc` was pressed once with a rationale written: the next `esc` discards it.
    pub discard_armed: bool,
    /// The rules that refuse this decision whatever the rationale says (the requester
    /// signing, a role not held, an unticked item, …): all shown before anything is
    /// typed, kept up to date as the verdict, role and ticks change.
    pub early: Vec<Refusal>,
    /// Writing the note of the selected checklist item: what it held before (restored
    /// if the edit is cancelled).
    pub note_edit: Option<String>,
}

impl DecideForm {
    /// A form for `verdict` on the CR `detail` shows, as `me`: the manual checklist items
    /// of its gate, the roles `me` could sign in.
    pub fn new(verdict: Verdict, detail: &DetailData, policy: &Policy, me: &Principal) -> Self {
        let rev = &detail.cr.current;
        let items = policy
            .checklist_for(rev.cr.gate)
            .filter(|i| i.mode == ItemMode::Manual)
            .map(|i| {
                let entry = detail.eval.checklist.items.iter().find(|e| e.id == i.id);
                TickItem {
                    id: i.id.clone(),
                    label: i.label.clone(),
                    blocking: i.blocking,
                    ticked_by: entry
                        .map(|e| e.ticked_by.iter().map(|t| t.principal.clone()).collect())
                        .unwrap_or_default(),
                    ticked: false,
                    note: String::new(),
                }
            })
            .collect();
        let mut form = DecideForm {
            cr_id: rev.cr.id.clone(),
            digest: rev.digest.clone(),
            revision: rev.revision,
            verdict,
            roles: vec![],
            role: 0,
            items,
            item_cursor: 0,
            rationale: rationale_area(""),
            focus: Field::Rationale,
            refusals: Vec::new(),
            signing: false,
            error: None,
            discard_armed: false,
            early: Vec::new(),
            note_edit: None,
        };
        refresh_roles(&mut form, Some(detail), Some(me));
        form.recheck(detail, policy, me);
        form
    }

    /// Checks the decision as it stands with a placeholder rationale, as the CLI does
    /// before asking for one: what refuses it now would refuse it after the typing too.
    pub fn recheck(&mut self, detail: &DetailData, policy: &Policy, me: &Principal) {
        let ticks = self.ticks();
        let probe = Proposal {
            principal: me,
            role: self.role(),
            verdict: self.verdict,
            rationale: "(pending)",
            ticks: &ticks,
        };
        self.early = decision_refusals(&detail.cr.current.cr, &detail.eval, policy, &probe);
    }

    /// What to do about `r` here, in this form's keys rather than the CLI's flags.
    pub fn remedy_here(&self, r: &Refusal, keymap: &Keymap) -> String {
        match r.rule {
            "rationale-required" => format!(
                "write why in the rationale field ({} to it, {} for $EDITOR)",
                keymap.hint(Action::NextField),
                keymap.hint(Action::ExternalEditor)
            ),
            "unticked-blocking-item" => {
                let unticked: Vec<&str> = self
                    .items
                    .iter()
                    .filter(|i| i.blocking && !i.ticked)
                    .map(|i| i.id.as_str())
                    .collect();
                format!(
                    "check and tick {}: {} on each in the checklist, or {} for every item",
                    unticked.join(", "),
                    keymap.hint(Action::ToggleTick),
                    keymap.hint(Action::TickAll)
                )
            }
            "role-not-held" | "role-not-required" if self.roles.len() > 1 => format!(
                "choose another role in the role field (↑/↓ there): {}",
                self.roles.join(", ")
            ),
            _ => r.remedy.clone(),
        }
    }

    /// A key while the rationale has focus: typed into it unless it is a form-level
    /// binding (next/previous field, editor, review) or `esc`. True when consumed.
    pub fn text_key(&mut self, k: &KeyEvent, keymap: &Keymap) -> bool {
        if keymap.lookup(k, &[Context::Global]) != Some(Action::Back) {
            self.discard_armed = false;
        }
        if let Some(before) = self.note_edit.clone() {
            let Some(item) = self.items.get_mut(self.item_cursor) else {
                self.note_edit = None;
                return false;
            };
            match super::line::type_key(&mut item.note, k, keymap, &[Context::Global], 500) {
                Typed::Action(Action::Accept) => {
                    // A note says how the item was checked: writing one ticks it.
                    item.ticked |= !item.note.trim().is_empty();
                    self.note_edit = None;
                }
                Typed::Action(Action::Back) => {
                    item.note = before;
                    self.note_edit = None;
                }
                Typed::Action(Action::ForceQuit) => return false,
                _ => {}
            }
            return true;
        }
        if self.focus != Field::Rationale {
            return false;
        }
        let action = keymap.lookup(k, &[Context::Form, Context::Decide, Context::Global]);
        let escapes = matches!(
            action,
            Some(
                Action::NextField
                    | Action::PrevField
                    | Action::ExternalEditor
                    | Action::Review
                    | Action::TickAll
                    | Action::Back
                    | Action::ForceQuit
            )
        );
        if escapes {
            return false;
        }
        self.rationale.input(*k);
        self.error = None;
        true
    }

    /// Up/down (or left/right on the verdict): the verdict, the role, or the checklist
    /// cursor, by the focused field.
    pub fn shift(&mut self, delta: isize, detail: Option<&DetailData>, me: Option<&Principal>) {
        match self.focus {
            Field::Role if !self.roles.is_empty() => {
                self.role = (self.role as isize + delta.signum())
                    .rem_euclid(self.roles.len() as isize) as usize;
            }
            Field::Checklist if !self.items.is_empty() => {
                self.item_cursor = (self.item_cursor as isize + delta)
                    .clamp(0, self.items.len() as isize - 1)
                    as usize;
            }
            Field::Verdict => {
                self.verdict = cycle_verdict(self.verdict, delta.signum());
                refresh_roles(self, detail, me);
            }
            _ => {}
        }
    }

    /// The keys worth a hint on the form, or on its confirmation (`confirming`): a
    /// refused decision offers no signing key.
    pub fn hints(&self, confirming: bool) -> Vec<(Action, &'static str)> {
        use Action::*;
        match (confirming, self.refusals.is_empty()) {
            (true, false) => vec![(Back, "back to the form")],
            (true, true) => vec![(Sign, "sign"), (Cancel, "no"), (Back, "back")],
            (false, _) if self.note_edit.is_some() => {
                vec![(Accept, "keep the note"), (Back, "cancel")]
            }
            (false, _) => vec![
                (NextField, "next field"),
                (ToggleTick, "tick"),
                (TickNote, "note"),
                (TickAll, "tick all"),
                (ExternalEditor, "$EDITOR"),
                (Review, "review & sign"),
                (Back, "cancel"),
            ],
        }
    }

    /// Form-level actions.
    pub fn action(
        &mut self,
        action: Action,
        me: Option<&Principal>,
        detail: Option<&DetailData>,
        policy: &Policy,
    ) -> DecideAsk {
        match action {
            Action::NextField | Action::PrevField => {
                let order = [
                    Field::Verdict,
                    Field::Role,
                    Field::Checklist,
                    Field::Rationale,
                ];
                let i = order.iter().position(|f| *f == self.focus).unwrap_or(0) as isize;
                let step = if action == Action::NextField { 1 } else { -1 };
                self.focus = order[(i + step).rem_euclid(order.len() as isize) as usize];
            }
            Action::ToggleTick => {
                if self.focus == Field::Checklist
                    && let Some(item) = self.items.get_mut(self.item_cursor)
                {
                    item.ticked = !item.ticked;
                }
            }
            Action::TickAll => {
                // All on, or all off again when every one was already ticked.
                let all = self.items.iter().all(|i| i.ticked);
                for item in &mut self.items {
                    item.ticked = !all;
                }
            }
            Action::PrevVerdict | Action::NextVerdict if self.focus == Field::Verdict => {
                let step = if action == Action::NextVerdict { 1 } else { -1 };
                self.shift(step, detail, me);
            }
            Action::TickNote => {
                if self.focus == Field::Checklist
                    && let Some(item) = self.items.get(self.item_cursor)
                {
                    self.note_edit = Some(item.note.clone());
                }
            }
            Action::ExternalEditor => return DecideAsk::Edit(self.rationale_text()),
            Action::Review => {
                if let (Some(me), Some(detail)) = (me, detail) {
                    let ticks = self.ticks();
                    let rationale = self.rationale_text();
                    let proposal = Proposal {
                        principal: me,
                        role: self.role(),
                        verdict: self.verdict,
                        rationale: &rationale,
                        ticks: &ticks,
                    };
                    self.refusals =
                        decision_refusals(&detail.cr.current.cr, &detail.eval, policy, &proposal);
                    self.error = None;
                    return DecideAsk::Confirm;
                }
            }
            _ => {}
        }
        DecideAsk::Nothing
    }

    /// What signing now would send, unless the rules refuse it or it is being signed.
    pub fn request(&self) -> Option<DecisionRequest> {
        if !self.refusals.is_empty() || self.signing {
            return None;
        }
        Some(DecisionRequest {
            cr_id: self.cr_id.clone(),
            verdict: self.verdict,
            role: self.role().to_string(),
            rationale: self.rationale_text(),
            ticks: self.ticks(),
            expect_digest: Some(self.digest.clone()),
        })
    }

    /// The role currently chosen.
    pub fn role(&self) -> &str {
        self.roles.get(self.role).map(String::as_str).unwrap_or("")
    }

    /// The rationale text.
    pub fn rationale_text(&self) -> String {
        self.rationale.lines().join("\n").trim().to_string()
    }

    /// The ticks this decision signs.
    pub fn ticks(&self) -> Vec<Tick> {
        self.items
            .iter()
            .filter(|i| i.ticked)
            .map(|i| Tick {
                item: i.id.clone(),
                note: Some(i.note.trim().to_string()).filter(|n| !n.is_empty()),
            })
            .collect()
    }
}

/// What the form needs from the app after an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideAsk {
    /// Nothing more.
    Nothing,
    /// Edit this rationale in `$EDITOR`.
    Edit(String),
    /// Show the confirmation (the refusal, if any, is on the form).
    Confirm,
}

/// The verdict `step` places along approve → request changes → reject.
pub fn cycle_verdict(v: Verdict, step: isize) -> Verdict {
    let all = [Verdict::Approve, Verdict::RequestChanges, Verdict::Reject];
    let i = all.iter().position(|x| *x == v).unwrap_or(0) as isize;
    all[(i + step).rem_euclid(3) as usize]
}

/// Roles offered for the form's verdict; keeps the choice when still offered.
pub fn refresh_roles(form: &mut DecideForm, detail: Option<&DetailData>, me: Option<&Principal>) {
    let (Some(detail), Some(me)) = (detail, me) else {
        return;
    };
    let current = form.role().to_string();
    form.roles = eligible_roles(me, form.verdict, &detail.eval);
    if form.roles.is_empty() {
        // Nothing open to approve as: offer the held roles so the confirmation can say why.
        form.roles = me.roles.clone();
    }
    form.role = form.roles.iter().position(|r| *r == current).unwrap_or(0);
}

/// A rationale editor holding `text`.
pub fn rationale_area(text: &str) -> TextArea<'static> {
    let lines: Vec<String> = if text.is_empty() {
        vec![String::new()]
    } else {
        text.lines().map(String::from).collect()
    };
    // The placeholder, which names the editor key, is set where it is drawn.
    TextArea::new(lines)
}
