//! Pure types and rules of change governance: no I/O, no terminal, no clock.
//!
//! Everything here is a function of its inputs so the same rules serve the CLI, the TUI,
//! the server and the tests, and give the same answer in each.

pub mod argv;
pub mod change_request;
pub mod check;
pub mod checklist;
pub mod counted_check;
pub mod decision;
pub mod emergency;
pub mod per_level;
pub mod policy;
pub mod policy_book;
pub mod policy_change;
pub mod policy_diff;
pub mod provenance;
pub mod reader;
pub mod reminders;
pub mod risk;
pub mod rollout;
pub mod rules;
pub mod signoff;
pub mod status;
pub mod text;
