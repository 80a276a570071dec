//! The one path a decision takes from every face (CLI and TUI): through the outbox when
//! a team server is in use (written first, then delivered, kept when the server is away),
//! signed straight into a local store otherwise; then, when the CR came from MLflow, its
//! state written back there. The faces only word the outcome.

use super::decide::{DecisionRequest, sign_decision};
use super::outbox::{Delivery, Outbox, Pending};
use crate::domain::policy_book::PolicyBook;
use crate::identity::Identity;
use crate::sources::mlflow;
use crate::store::{Appended, DecideError, Store};
use chrono::{DateTime, Utc};

/// Where a decision goes besides the store.
#[derive(Default, Clone, Copy)]
pub struct Route<'a> {
    /// With a team server: its outbox and URL.
    pub outbox: Option<(&'a Outbox, &'a str)>,
    /// With an MLflow source: where the CR's state is written back.
    pub source: Option<(&'a mlflow::Client, &'a mlflow::Convention)>,
}

/// What became of a decision.
#[derive(Debug)]
pub enum Recorded {
    /// Signed and in the log; with what writing it back to the source did (`None`: no
    /// source). A failed write-back never undoes the decision; `tollgate sync` retries.
    Signed {
        /// The decision entry and the adoption it completed, if any.
        appended: Box<Appended>,
        /// The write-back to the source.
        written_back: Option<Result<Option<mlflow::Pushed>, mlflow::PushError>>,
    },
    /// The server is unreachable: kept in the outbox, delivered exactly once later.
    Queued(String),
}

/// Why a decision was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The rules or the store refused it (local store).
    #[error(transparent)]
    Decide(#[from] DecideError),
    /// The team server refused it for good (moved to the outbox's `failed/`).
    #[error("{0}")]
    Refused(String),
    /// The CR moved on from the revision the reviewer saw: kept, marked stale, not sent.
    #[error("STALE, kept in the outbox and not sent: {0}")]
    Stale(String),
    /// The outbox could not be written: nothing was sent or kept.
    #[error("{0}")]
    Outbox(#[source] super::outbox::OutboxError),
}

/// Records `request` signed by `who` under `book`, by `route`.
pub fn record_decision(
    store: &dyn Store,
    book: &PolicyBook,
    who: &Identity,
    request: &DecisionRequest,
    route: Route<'_>,
    now: DateTime<Utc>,
) -> Result<Recorded, RecordError> {
    let appended = match route.outbox {
        Some((outbox, server)) => {
            let mut pending = Pending::new(server, &who.principal.id, request, now);
            outbox.put(&pending).map_err(RecordError::Outbox)?;
            match outbox.deliver(store, book, who, &mut pending) {
                Delivery::Delivered(appended) => appended,
                Delivery::Failed(why) => return Err(RecordError::Refused(why)),
                Delivery::Stale(why) => return Err(RecordError::Stale(why)),
                Delivery::Later(why) => return Ok(Recorded::Queued(why)),
            }
        }
        None => Box::new(sign_decision(store, book, who, request, now)?),
    };
    let written_back = route
        .source
        .map(|(client, conv)| mlflow::push(client, store, book, conv, &request.cr_id));
    Ok(Recorded::Signed {
        appended,
        written_back,
    })
}
