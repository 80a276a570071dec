//! The TUI's state and its update function.
//!
//! `update` takes a message (a key, a tick, a reply from a background task) and returns
//! effects for the runtime to perform (load, sign, open a link). It never blocks and never
//! awaits, so the screen stays responsive whatever the store or the network do. Replies
//! carry the id of the request they answer; a reply to a superseded request is dropped.

use super::data::QueueRow;
use super::keymap::{Action, Context};
pub use super::messages::{Connection, Effect, Level, Msg};
use super::requests::{Kind, Requests};
pub use super::screens::Screen;
pub use super::screens::decide::{
    DecideAsk, DecideForm, Field, TickItem, cycle_verdict, rationale_area, refresh_roles,
};
pub use super::screens::detail::{ArtifactUse, DetailScreen};
pub use super::screens::emergency::{
    AUTHORISED, EmergencyAsk, EmergencyField, EmergencyForm, EmergencyStep,
};
pub use super::screens::help::HelpState;
pub use super::screens::history::{HistoryAsk, HistorySort, HistoryState, Integrity, RecordView};
pub use super::screens::palette::{PaletteAsk, PaletteState};
pub use super::screens::queue::{QueueScreen, SortKey, View};
use super::settings::Settings;
use crate::domain::decision::Verdict;
use crate::domain::emergency::{Exception, SubjectState};
use crate::domain::policy::{Policy, Principal};
use chrono::{DateTime, Utc};
use crossterm::event::{KeyEvent, MouseEvent, MouseEventKind};
use std::sync::Arc;

/// Who is at the keyboard.
#[derive(Debug, Clone)]
pub enum Signer {
    /// A key the policy maps to this principal.
    Principal {
        /// The principal.
        principal: Principal,
        /// Key fingerprint.
        fingerprint: String,
    },
    /// Browsing only; the reason says how to be able to sign.
    ReadOnly(String),
}

/// Overlays drawn above any screen.
#[derive(Debug, Clone)]
pub enum Overlay {
    /// `?`
    Help(HelpState),
    /// `:`
    Palette(PaletteState),
}

/// The whole UI state.
pub struct App {
    /// Current screen.
    pub screen: Screen,
    /// Overlay, if any.
    pub overlay: Option<Overlay>,
    /// The queue screen.
    pub queue: QueueScreen,
    /// The detail screen.
    pub detail: DetailScreen,
    /// The decision form.
    pub decide: Option<DecideForm>,
    /// The emergency flow.
    pub emergency: Option<EmergencyForm>,
    /// Subjects an emergency can roll back, most recent first.
    pub subjects: Vec<SubjectState>,
    /// Emergency exceptions.
    pub exceptions: Vec<Exception>,
    /// The History screen.
    pub history: Option<HistoryState>,
    /// Decisions waiting for the team server.
    pub unsent: usize,
    /// The log head the screens were loaded at (to notice other people's changes).
    pub last_head: Option<crate::store::Head>,
    /// The store announced a head the screens do not show yet: reload once nothing is
    /// loading (a burst of changes makes one reload, not one each).
    pub(super) behind: bool,
    /// Whether the store's live stream is connected (then no periodic check is needed).
    pub live: bool,
    ticks: u64,
    /// Who signs.
    pub signer: Signer,
    /// Store shown in the status bar.
    pub store_label: String,
    /// Connection state shown in the status bar.
    pub connection: Connection,
    /// Requests in flight (spinner while > 0).
    pub loading: usize,
    /// Spinner frame.
    pub spinner: usize,
    /// Last message for the status bar.
    pub message: Option<(Level, String)>,
    /// Theme, keys, mouse.
    pub settings: Settings,
    /// The clock, injected so screens are reproducible in tests.
    pub now: DateTime<Utc>,
    /// The policy in force.
    pub policy: Arc<Policy>,
    /// Rows the table can show (set by the runtime from the terminal size).
    pub page_rows: usize,
    /// Set when the user quits.
    pub quit: bool,
    pub(super) requests: Requests,
    pub(super) exceptions_back: Screen,
    /// The exceptions screen: its selection and the review being written.
    pub exceptions_screen: super::screens::exceptions::ExceptionsScreen,
}

impl App {
    /// A new app that will load the queue first.
    pub fn new(
        settings: Settings,
        policy: Arc<Policy>,
        signer: Signer,
        store_label: String,
        now: DateTime<Utc>,
    ) -> App {
        App {
            screen: Screen::Queue,
            overlay: None,
            queue: QueueScreen::default(),
            detail: DetailScreen::default(),
            decide: None,
            emergency: None,
            subjects: Vec::new(),
            exceptions: Vec::new(),
            history: None,
            unsent: 0,
            last_head: None,
            behind: false,
            live: false,
            ticks: 0,
            signer,
            store_label,
            connection: Connection::Local,
            loading: 0,
            spinner: 0,
            message: None,
            settings,
            now,
            policy,
            page_rows: 20,
            quit: false,
            requests: Requests::default(),
            exceptions_back: Screen::Queue,
            exceptions_screen: Default::default(),
        }
    }

    fn request(&mut self) -> u64 {
        self.requests.any()
    }

    /// The effect that loads the queue (for start-up and refresh).
    pub fn load_queue(&mut self) -> Effect {
        let id = self.requests.issue(Kind::Queue);
        Effect::LoadQueue(id)
    }

    /// Reloads what is on screen after someone changed the log: the queue, and the CR
    /// open in the detail screen.
    pub(super) fn refresh(&mut self) -> Vec<Effect> {
        self.behind = false;
        let mut effects = vec![self.load_queue()];
        if let Some(id) = self
            .detail
            .id
            .clone()
            .filter(|_| self.screen == Screen::Detail)
        {
            effects.push(self.load_detail(id));
        }
        effects
    }

    pub(super) fn load_detail(&mut self, cr_id: String) -> Effect {
        let id = self.requests.issue(Kind::Detail);
        Effect::LoadDetail(id, cr_id)
    }

    /// The principal signing, if any.
    pub fn me(&self) -> Option<&Principal> {
        match &self.signer {
            Signer::Principal { principal, .. } => Some(principal),
            Signer::ReadOnly(_) => None,
        }
    }

    /// The CR selected in the queue.
    pub fn selected_row(&self) -> Option<&QueueRow> {
        self.queue.selected_row()
    }

    /// A reply to request `id` of `kind` arrived: one request fewer in flight; true when
    /// it is the reply the screen waits for (a superseded one is dropped).
    pub(super) fn reply(&mut self, kind: Kind, id: u64) -> bool {
        self.loading = self.loading.saturating_sub(1);
        self.requests.settle(kind, id)
    }

    pub(super) fn say(&mut self, level: Level, text: impl Into<String>) {
        self.message = Some((level, text.into()));
    }

    /// Handles one message.
    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Tick => {
                if self.loading > 0 || self.decide.as_ref().is_some_and(|d| d.signing) {
                    self.spinner = self.spinner.wrapping_add(1);
                }
                self.ticks += 1;
                if self.loading > 0 {
                    return vec![];
                }
                if self.behind && !self.requests.is_open(Kind::Queue) {
                    return self.refresh();
                }
                // Without the live stream (or with decisions waiting to be delivered), a
                // cheap check now and then (`refresh_seconds`, 10 ticks a second).
                let every = u64::from(self.settings.refresh_seconds) * 10;
                if (!self.live || self.unsent > 0) && self.ticks.is_multiple_of(every.max(1)) {
                    let id = self.request();
                    return vec![Effect::CheckHead(id)];
                }
                vec![]
            }
            Msg::Resize(_, h) => {
                self.page_rows = (h as usize).saturating_sub(6).max(1);
                self.queue.set_page(self.page_rows);
                vec![]
            }
            Msg::Notice(level, text) => {
                self.say(level, text);
                vec![]
            }
            Msg::Mouse(m) => self.mouse(m),
            Msg::Key(k) => self.key(k),
            reply => self.apply_reply(reply),
        }
    }

    fn mouse(&mut self, m: MouseEvent) -> Vec<Effect> {
        if self.overlay.is_some() {
            return vec![];
        }
        match (self.screen, m.kind) {
            (Screen::Queue, MouseEventKind::ScrollDown) => self.queue.shift(3),
            (Screen::Queue, MouseEventKind::ScrollUp) => self.queue.shift(-3),
            (Screen::Detail, MouseEventKind::ScrollDown) => self.detail.scroll.shift(3),
            (Screen::Detail, MouseEventKind::ScrollUp) => self.detail.scroll.shift(-3),
            (Screen::Queue, MouseEventKind::Down(_)) => {
                // Rows start below the tab line and the table header.
                let q = &mut self.queue;
                let row = (m.row as usize).checked_sub(2).map(|r| r + q.cursor.offset);
                if let Some(r) = row.filter(|r| *r < q.visible.len()) {
                    if r == q.cursor.selected {
                        return self.run(Action::Open);
                    }
                    q.cursor.select(r, q.visible.len());
                }
            }
            _ => {}
        }
        vec![]
    }

    fn key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if k.kind == crossterm::event::KeyEventKind::Release {
            return vec![];
        }
        // Force-quit (ctrl-c) works whatever has focus, text fields included.
        if self.settings.keymap.lookup(&k, &[Context::Global]) == Some(Action::ForceQuit) {
            self.quit = true;
            return vec![];
        }
        if let Some(overlay) = self.overlay.take() {
            return self.overlay_key(overlay, k);
        }
        if self.screen == Screen::Queue && self.queue.filtering {
            self.queue.filter_key(k, &self.settings.keymap);
            return vec![];
        }
        if self.screen == Screen::Emergency {
            return self.emergency_key(k);
        }
        if self.screen == Screen::Detail && self.detail.stage.is_some() {
            return self.stage_key(k);
        }
        if self.screen == Screen::Exceptions && self.exceptions_screen.review.is_some() {
            return self.review_key(k);
        }
        if self.screen == Screen::History
            && let Some(h) = self.history.as_mut().filter(|h| h.filtering)
        {
            h.filter_key(k, &self.settings.keymap);
            return vec![];
        }
        if self.typing_find() {
            let keymap = &self.settings.keymap;
            match (self.screen, self.history.as_mut()) {
                (Screen::Detail, _) => self.detail.find.key(&k, keymap),
                (_, Some(h)) => h.find.key(&k, keymap),
                _ => {}
            }
            return vec![];
        }
        if self.screen == Screen::Decide
            && let Some(form) = self.decide.as_mut()
            && form.text_key(&k, &self.settings.keymap)
        {
            return vec![];
        }
        match self.settings.keymap.lookup(&k, &self.contexts()) {
            Some(action) => self.run(action),
            None => vec![],
        }
    }

    fn overlay_key(&mut self, overlay: Overlay, k: KeyEvent) -> Vec<Effect> {
        match overlay {
            Overlay::Help(mut h) => {
                if h.key(&k, &self.settings.keymap) {
                    self.overlay = Some(Overlay::Help(h));
                }
                vec![]
            }
            Overlay::Palette(mut p) => {
                let entries = self.palette_entries(&p.query);
                match p.key(&k, &self.settings.keymap, &entries) {
                    PaletteAsk::Stay => {
                        self.overlay = Some(Overlay::Palette(p));
                        vec![]
                    }
                    PaletteAsk::Close => vec![],
                    PaletteAsk::Run(action) => self.run(action),
                }
            }
        }
    }

    /// Actions the palette offers here, best match first.
    pub fn palette_entries(&self, query: &str) -> Vec<Action> {
        super::screens::palette::entries(query, &self.contexts())
    }

    /// Performs an action (from a key or the palette).
    pub fn run(&mut self, action: Action) -> Vec<Effect> {
        self.message = None;
        if self.screen == Screen::History
            && let Some(effects) = self.history_action(action)
        {
            return effects;
        }
        if self.screen == Screen::Queue && self.queue.action(action) {
            return vec![];
        }
        if self.screen == Screen::Detail
            && let Some(artifact) = self.detail.action(action, self.page_rows)
        {
            return match artifact {
                Some(ArtifactUse::Open(url)) => {
                    let shown = crate::domain::text::sanitize(&url);
                    self.say(Level::Info, format!("opening {shown}"));
                    vec![Effect::OpenUrl(url)]
                }
                Some(ArtifactUse::Copy(url)) => {
                    let shown = crate::domain::text::sanitize(&url);
                    self.say(Level::Info, format!("copied {shown}"));
                    vec![Effect::Copy(url)]
                }
                None => vec![],
            };
        }
        match action {
            Action::ForceQuit => self.quit = true,
            Action::Quit => {
                if self.screen == Screen::Queue {
                    self.quit = true;
                } else {
                    return self.run(Action::Back);
                }
            }
            Action::Help => self.overlay = Some(Overlay::Help(HelpState::default())),
            Action::Palette => self.overlay = Some(Overlay::Palette(PaletteState::default())),
            Action::Refresh => {
                let mut effects = vec![self.load_queue()];
                if let Some(id) = self
                    .detail
                    .id
                    .clone()
                    .filter(|_| self.screen != Screen::Queue)
                {
                    effects.push(self.load_detail(id));
                }
                return effects;
            }
            Action::Back => match self.screen {
                Screen::Queue => {}
                Screen::Detail => {
                    self.screen = Screen::Queue;
                    self.detail.close();
                }
                Screen::Decide => {
                    // A rationale already written is not thrown away on one key.
                    if let Some(form) = self.decide.as_mut()
                        && !form.rationale_text().is_empty()
                        && !form.discard_armed
                    {
                        form.discard_armed = true;
                        let back = self.settings.keymap.hint(Action::Back);
                        self.say(
                            Level::Error,
                            format!(
                                "{back} again discards the rationale you wrote; any other key keeps it"
                            ),
                        );
                        return vec![];
                    }
                    self.screen = Screen::Detail;
                    self.decide = None;
                }
                Screen::Confirm => self.screen = Screen::Decide,
                Screen::Emergency => {
                    let back = self.emergency.take().map_or(Screen::Queue, |f| f.back_to);
                    self.screen = back;
                }
                Screen::Exceptions => self.screen = self.exceptions_back,
                Screen::History => {
                    let back = self.history.as_ref().map_or(Screen::Queue, |h| h.back_to);
                    self.screen = back;
                }
            },
            Action::Up => self.scroll(-1),
            Action::Down => self.scroll(1),
            Action::PageUp => self.scroll(-(self.page_rows as isize)),
            Action::PageDown => self.scroll(self.page_rows as isize),
            Action::Top => self.scroll(isize::MIN / 2),
            Action::Bottom => self.scroll(isize::MAX / 2),
            Action::Open => {
                if self.screen == Screen::Queue
                    && let Some(id) = self.selected_row().map(|r| r.id.clone())
                {
                    return self.open(id);
                }
            }
            Action::CopyId => {
                if let Some(id) = self.selected_row().map(|r| r.id.clone()) {
                    self.say(Level::Info, format!("copied {id}"));
                    return vec![Effect::Copy(id)];
                }
            }
            // The queue's own (it handled them above when it is showing).
            Action::Filter
            | Action::SortNext
            | Action::SortReverse
            | Action::NextView
            | Action::ViewPending
            | Action::ViewMine
            | Action::ViewBlocked
            | Action::ViewToday
            | Action::ViewAll
            | Action::ViewRollingOut => {}
            Action::Approve => return self.start_decision(Verdict::Approve),
            Action::Reject => return self.start_decision(Verdict::Reject),
            Action::RequestChanges => return self.start_decision(Verdict::RequestChanges),
            // The detail's own (it handled them above when it is showing).
            Action::NextArtifact | Action::OpenArtifact | Action::CopyUrl => {}
            Action::RecordStage => self.start_stage(),
            Action::NextField
            | Action::PrevField
            | Action::PrevVerdict
            | Action::NextVerdict
            | Action::ToggleTick
            | Action::TickAll
            | Action::TickNote
            | Action::ExternalEditor
            | Action::Review => {
                return self.decide_action(action);
            }
            Action::Sign => return self.sign(),
            Action::Cancel if self.screen == Screen::Confirm => return self.run(Action::Back),
            // Text-field, find and History keys: their screens handle them where they apply.
            Action::Find
            | Action::NextMatch
            | Action::PrevMatch
            | Action::Cancel
            | Action::ToggleHealth
            | Action::Accept
            | Action::DeleteChar
            | Action::DeleteWord
            | Action::ClearLine => {}
            Action::Emergency => self.start_emergency(),
            Action::IncidentReview if self.screen == Screen::Exceptions => self.start_review(),
            Action::IncidentReview => {}
            Action::History => return self.open_history(),
            Action::Exceptions => {
                if self.screen != Screen::Exceptions {
                    self.exceptions_back = self.screen;
                }
                self.screen = Screen::Exceptions;
            }
        }
        vec![]
    }

    fn scroll(&mut self, delta: isize) {
        match self.screen {
            Screen::Queue => self.queue.shift(delta),
            Screen::Detail => self.detail.scroll.shift(delta),
            Screen::Decide => {
                let me = self.me().cloned();
                if let Some(form) = self.decide.as_mut() {
                    form.shift(delta, self.detail.data(), me.as_ref());
                }
                self.recheck_form();
            }
            Screen::Exceptions => {
                let count = self.exceptions.len();
                self.exceptions_screen.shift(delta, count);
            }
            Screen::Confirm | Screen::Emergency | Screen::History => {}
        }
    }

    fn open(&mut self, id: String) -> Vec<Effect> {
        self.screen = Screen::Detail;
        self.detail.open(id.clone());
        vec![self.load_detail(id)]
    }

    /// Opens the decision form for `verdict`. From the queue it opens the selected CR and
    /// the form over it once it has loaded (the detail stays behind the form, so nobody
    /// signs what they could not see).
    pub(super) fn start_decision(&mut self, verdict: Verdict) -> Vec<Effect> {
        let Some(me) = self.me().cloned() else {
            if let Signer::ReadOnly(why) = &self.signer {
                let why = why.clone();
                self.say(Level::Error, format!("read-only: {why}"));
            }
            return vec![];
        };
        if self.screen == Screen::Queue {
            let Some(id) = self.selected_row().map(|r| r.id.clone()) else {
                self.say(Level::Error, "no change request selected");
                return vec![];
            };
            let effects = self.open(id);
            self.detail.pending = Some(verdict);
            return effects;
        }
        let Some(detail) = self.detail.data() else {
            self.say(Level::Error, "still loading this change request");
            return vec![];
        };
        self.decide = Some(DecideForm::new(verdict, detail, &self.policy, &me));
        self.screen = Screen::Decide;
        vec![]
    }

    /// Form-level actions in the decision screen.
    pub fn decide_action(&mut self, action: Action) -> Vec<Effect> {
        let me = self.me().cloned();
        let detail = self.detail.data();
        let policy = self.policy.clone();
        let Some(form) = self.decide.as_mut() else {
            return vec![];
        };
        match form.action(action, me.as_ref(), detail, &policy) {
            DecideAsk::Nothing => {
                self.recheck_form();
                vec![]
            }
            DecideAsk::Edit(text) => vec![Effect::EditRationale(text)],
            DecideAsk::Confirm => {
                self.screen = Screen::Confirm;
                vec![]
            }
        }
    }

    /// Re-checks the open form after its verdict, role or ticks changed.
    fn recheck_form(&mut self) {
        let me = self.me().cloned();
        if let (Some(form), Some(detail), Some(me)) = (self.decide.as_mut(), self.detail.data(), me)
        {
            form.recheck(detail, &self.policy, &me);
        }
    }

    fn sign(&mut self) -> Vec<Effect> {
        if self.screen != Screen::Confirm {
            return vec![];
        }
        let Some(request) = self.decide.as_ref().and_then(DecideForm::request) else {
            return vec![];
        };
        let id = self.requests.issue(Kind::Sign);
        if let Some(form) = self.decide.as_mut() {
            form.signing = true;
        }
        vec![Effect::Sign(id, request)]
    }
}
