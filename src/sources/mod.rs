//! Systems that produce change requests without writing tollgate's document by hand.
//!
//! A source is read into the store (local or team server) as ordinary CR documents, so
//! every rule, signature and audit path applies to them unchanged; re-reading is
//! idempotent (an unchanged version is `unchanged`, a changed one a new revision).

pub mod mlflow;
pub mod mlflow_webhook;
