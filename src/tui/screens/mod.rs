//! One module per screen: each owns its state, its key handling and what it needs to be
//! drawn; the app keeps which screen is up and what the screens share.

pub mod cursor;
pub mod detail;
pub mod queue;
