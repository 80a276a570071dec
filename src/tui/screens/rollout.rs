//! `R` on a change request: the operator's next rollout stage, confirmed before anything
//! runs or is signed. The confirmation shows the stage, the traffic share (↑/↓ move it by
//! 5 % for a canary) and the exact deployment command the policy names; `y` records it
//! through the same workflow as `tollgate rollout`.

use crate::domain::rollout::Stage;
use crate::tui::keymap::Action;
use crate::workflow::rollout::StageRequest;

/// The share a canary starts at.
pub const DEFAULT_CANARY_TRAFFIC: u8 = 10;

/// A stage waiting for the operator's `y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageConfirm {
    /// The CR.
    pub cr_id: String,
    /// The stage.
    pub stage: Stage,
    /// Traffic share in %.
    pub traffic: u8,
    /// While the request runs: nothing more is accepted.
    pub recording: bool,
}

/// What a key asks of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageAsk {
    /// Nothing more (handled here).
    Stay,
    /// Close the confirmation.
    Close,
    /// Record it.
    Record(StageRequest),
}

impl StageConfirm {
    /// The confirmation of `stage` for `cr_id`.
    pub fn new(cr_id: String, stage: Stage) -> StageConfirm {
        StageConfirm {
            cr_id,
            stage,
            traffic: match stage {
                Stage::Canary => DEFAULT_CANARY_TRAFFIC,
                Stage::Full => 100,
            },
            recording: false,
        }
    }

    /// Handles an action while the confirmation is up.
    pub fn action(&mut self, action: Action) -> StageAsk {
        if self.recording {
            return StageAsk::Stay;
        }
        match action {
            Action::Sign => {
                self.recording = true;
                StageAsk::Record(StageRequest {
                    cr_id: self.cr_id.clone(),
                    stage: self.stage,
                    traffic: self.traffic,
                    note: "recorded from the TUI".into(),
                })
            }
            Action::Cancel | Action::Back | Action::Quit => StageAsk::Close,
            Action::Up if self.stage == Stage::Canary => {
                self.traffic = (self.traffic / 5 * 5 + 5).min(100);
                StageAsk::Stay
            }
            Action::Down if self.stage == Stage::Canary => {
                self.traffic = self.traffic.saturating_sub(5).max(1);
                StageAsk::Stay
            }
            _ => StageAsk::Stay,
        }
    }

    /// The keys worth a hint.
    pub fn hints(&self) -> Vec<(Action, &'static str)> {
        let mut hints = vec![(Action::Sign, "record"), (Action::Cancel, "cancel")];
        if self.stage == Stage::Canary {
            // The hint bar shows up and down as one "↑/↓" key.
            hints.push((Action::Down, "traffic ±5 %"));
        }
        hints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canarys_traffic_moves_in_steps_of_five_within_bounds_and_full_stays_at_100() {
        let mut c = StageConfirm::new("CR-1".into(), Stage::Canary);
        assert_eq!(c.traffic, 10);
        c.action(Action::Up);
        assert_eq!(c.traffic, 15);
        for _ in 0..5 {
            c.action(Action::Down);
        }
        assert_eq!(c.traffic, 1);
        for _ in 0..30 {
            c.action(Action::Up);
        }
        assert_eq!(c.traffic, 100);
        let mut full = StageConfirm::new("CR-1".into(), Stage::Full);
        full.action(Action::Down);
        assert_eq!(full.traffic, 100);
        match full.action(Action::Sign) {
            StageAsk::Record(r) => assert_eq!((r.stage, r.traffic), (Stage::Full, 100)),
            other => panic!("{other:?}"),
        }
        assert_eq!(full.action(Action::Sign), StageAsk::Stay, "once only");
    }
}
