//! tollgate: keyboard-first governance of changes to production ML models.
//!
//! The core (`domain`, `audit`, `store`) holds the rules, the tamper-evident record and
//! persistence; the CLI (`cli`) is one face over it. See `README.md` and `docs/`.

#![warn(missing_docs)]

pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod editor;
pub mod export;
pub mod history;
pub mod identity;
pub mod server;
pub mod sources;
pub mod store;
pub mod tls;
pub mod tui;
pub mod workflow;
/// Offline decisions (kept under `workflow`, where they are delivered).
pub use workflow::outbox;
