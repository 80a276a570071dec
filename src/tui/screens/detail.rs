//! The detail screen: one CR with everything a reviewer needs, scrolled within its
//! content, with a selectable artifact to open or copy.

use super::cursor::Scroll;
use crate::tui::data::DetailData;
use crate::tui::keymap::Action;

/// What an artifact action asks the runtime to do with a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactUse {
    /// Open it with the system opener.
    Open(String),
    /// Put it on the clipboard.
    Copy(String),
}

/// The detail screen's state.
#[derive(Default)]
pub struct DetailScreen {
    /// The loaded CR (`None` while loading).
    pub data: Option<Box<DetailData>>,
    /// The CR shown (set before it loads).
    pub id: Option<String>,
    /// Vertical scroll, bounded by the content.
    pub scroll: Scroll,
    /// Selected artifact.
    pub artifact: usize,
    /// A decision asked for from the queue: the form opens once the CR has loaded.
    pub pending: Option<crate::domain::decision::Verdict>,
    /// Finding text in it (`/`, `n`, `N`).
    pub find: super::find::Find,
    /// The rollout stage `R` asked for, waiting for `y`.
    pub stage: Option<super::rollout::StageConfirm>,
}

impl DetailScreen {
    /// Shows `id`: back to the top; the old data stays only if it is the same CR.
    pub fn open(&mut self, id: String) {
        self.stage = None;
        self.scroll.reset();
        self.find.clear();
        self.pending = None;
        self.artifact = 0;
        if self.data.as_ref().is_none_or(|d| d.cr.current.cr.id != id) {
            self.data = None;
        }
        self.id = Some(id);
    }

    /// Leaves the screen.
    pub fn close(&mut self) {
        self.stage = None;
        self.pending = None;
        self.data = None;
        self.id = None;
    }

    /// A load finished.
    pub fn loaded(&mut self, data: Box<DetailData>) {
        self.artifact = self
            .artifact
            .min(data.cr.current.cr.artifacts.len().saturating_sub(1));
        self.data = Some(data);
    }

    /// The loaded CR's data.
    pub fn data(&self) -> Option<&DetailData> {
        self.data.as_deref()
    }

    /// The keys worth a hint here; decisions only for someone who can sign, the next
    /// rollout stage only for an operator on an approved CR.
    pub fn hints(&self, can_sign: bool, can_roll_out: bool) -> Vec<(Action, &'static str)> {
        use Action::*;
        if let Some(stage) = &self.stage {
            return stage.hints();
        }
        if self.find.editing {
            return vec![(Accept, "keep"), (Back, "clear")];
        }
        let mut hints = Vec::new();
        if self.find.active() {
            hints.extend([(NextMatch, "next"), (PrevMatch, "previous")]);
        }
        if can_roll_out {
            hints.push((RecordStage, "roll out"));
        }
        if can_sign {
            hints.extend([
                (Approve, "approve"),
                (Reject, "reject"),
                (RequestChanges, "changes"),
            ]);
        }
        hints.extend([
            (Down, "scroll"),
            (Find, "find"),
            (Back, "back"),
            (Help, "help"),
            (NextArtifact, "link"),
            (OpenArtifact, "open link"),
            (CopyUrl, "copy"),
        ]);
        hints
    }

    /// The detail's own actions: scrolling (`page` lines per page) and artifacts. `None`
    /// when the action is not the detail's.
    pub fn action(&mut self, action: Action, page: usize) -> Option<Option<ArtifactUse>> {
        if let Some(delta) = super::cursor::movement(action, page) {
            self.scroll.shift(delta);
            return Some(None);
        }
        match action {
            Action::NextArtifact => {
                let n = self.data().map_or(0, |d| d.cr.current.cr.artifacts.len());
                if n > 0 {
                    self.artifact = (self.artifact + 1) % n;
                    // The artifacts close the layout (the right column's end when wide,
                    // just before the versions when narrow): bring them into view.
                    self.scroll.shift(isize::MAX / 2);
                }
            }
            Action::Find => self.find.start(),
            Action::NextMatch => self.find.step(1),
            Action::PrevMatch => self.find.step(-1),
            // A kept find is cleared before esc leaves the screen.
            Action::Back if self.find.active() => self.find.clear(),
            Action::OpenArtifact | Action::CopyUrl => {
                let url = self
                    .data()
                    .and_then(|d| d.cr.current.cr.artifacts.get(self.artifact))
                    .map(|a| a.url.clone())?;
                return Some(Some(if action == Action::OpenArtifact {
                    ArtifactUse::Open(url)
                } else {
                    ArtifactUse::Copy(url)
                }));
            }
            _ => return None,
        }
        Some(None)
    }
}
