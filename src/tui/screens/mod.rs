//! One module per screen: each owns its state, its key handling and what it needs to be
//! drawn; the app keeps which screen is up and what the screens share.

pub mod cursor;
pub mod decide;
pub mod detail;
pub mod emergency;
pub mod exceptions;
pub mod find;
pub mod help;
pub mod history;
pub mod line;
pub mod palette;
pub mod queue;
pub mod rollout;

/// Which screen is showing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// The queue table.
    Queue,
    /// One CR.
    Detail,
    /// The decision form, over the detail.
    Decide,
    /// The final confirmation, over the form.
    Confirm,
    /// The emergency rollback flow (`!`), from any screen.
    Emergency,
    /// Open emergency exceptions with their deadlines.
    Exceptions,
    /// Decision history, audit-log integrity and governance health.
    History,
}
